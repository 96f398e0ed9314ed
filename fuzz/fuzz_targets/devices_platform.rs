//! Fuzz the PC platform devices the guest programs through ports and MMIO: fw_cfg (with
//! its DMA interface reading descriptors and writing data in real guest memory), the
//! i8042 and port 0x92, the RTC/CMOS, the PIT, the PIC pair with ELCR, a 16550A, the POST
//! and debugcon ports, the PIIX4 PM block and APM port, the PCI host bridge (mechanism #1
//! at 0xcf8/0xcfc) with the i440FX, PIIX3 ISA bridge and PIIX4 PM functions, the IOAPIC
//! and a local APIC. Time is a manual clock: the fuzzer advances it and the timer queue
//! and LAPIC timer run synchronously, so every input is deterministic.
//!
//! Input: a sequence of operations (see `Rig::op`). Port numbers are mostly picked from
//! the devices' real ports; fw_cfg DMA descriptors are built from valid-looking control
//! words (or raw ones) before the address is written to the DMA port.
#![no_main]

use devices::acpi::Piix4Pm;
use devices::fw_cfg::FwCfg;
use devices::i8042::{Port92, I8042};
use devices::ioapic::Ioapic;
use devices::lapic::{LapicAction, LocalApic};
use devices::pci::{I440fx, PciAddress, PciBus, PciIntxRouter, Piix3Isa};
use devices::pic::Pic;
use devices::pit::Pit;
use devices::post::{DebugCon, PostCode};
use devices::rtc::Rtc;
use devices::uart::Serial;
use libfuzzer_sys::fuzz_target;
use novabox_fuzz::Input;
use parking_lot::Mutex;
use pdm::apic::EoiListener;
use pdm::{ApicBus, ApicMessage, Bus, Clock, IrqLine, IrqSink, ManualClock, TimerQueue};
use pgm::{GuestMemory, MemoryLayout};
use std::sync::Arc;

/// DMA descriptors live here (or anywhere the fuzzer says).
const DESC: u64 = 0x8000;
/// DMA data buffers.
const DATA: u64 = 0x10_0000;
const MEM: u64 = 4 << 20;
const IOAPIC: u64 = 0xfec0_0000;

/// The ports worth reaching (the rest come as raw 16-bit numbers).
const PORTS: &[u16] = &[
    0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, // PIC, ELCR
    0x40, 0x41, 0x42, 0x43, 0x61, // PIT, port B
    0x60, 0x64, 0x92, // i8042, port 92
    0x70, 0x71, // RTC
    0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, // COM1
    0x80, 0x402, // POST, debugcon
    0x510, 0x511, 0x514, 0x518, // fw_cfg
    0xcf8, 0xcfc, 0xcfd, 0xcfe, 0xcff, 0xcf9, // PCI, reset control
    0xb2, 0xb3, // APM
    0x600, 0x602, 0x604, 0x608, 0x620, 0x622, // PIIX4 PM
];

/// fw_cfg DMA control flags.
const DMA_READ: u32 = 0x02;
const DMA_SKIP: u32 = 0x04;
const DMA_SELECT: u32 = 0x08;
const DMA_WRITE: u32 = 0x10;

/// GSIs to the PIC and the IOAPIC, as the chipset wires them.
struct Sink {
    pic: Arc<Mutex<Pic>>,
    ioapic: Mutex<Option<Arc<Ioapic>>>,
}

impl IrqSink for Sink {
    fn set_irq(&self, gsi: u32, level: bool) {
        if gsi < 16 {
            self.pic.lock().set_irq(gsi as u8, level);
        }
        let io = self.ioapic.lock().clone();
        if let Some(io) = io {
            io.set_irq(if gsi == 0 { 2 } else { gsi }, level);
        }
    }
}

/// Messages from the IOAPIC (and IPIs), delivered to the LAPIC between operations so no
/// lock is taken twice.
#[derive(Default)]
struct Apic(Mutex<Vec<ApicMessage>>);

impl ApicBus for Apic {
    fn deliver(&self, msg: ApicMessage) {
        let mut q = self.0.lock();
        if q.len() < 256 {
            q.push(msg);
        }
    }
}

struct Rig {
    clock: Arc<ManualClock>,
    timers: Arc<TimerQueue>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    mem: Arc<GuestMemory>,
    pic: Arc<Mutex<Pic>>,
    ioapic: Arc<Ioapic>,
    lapic: LocalApic,
    apic: Arc<Apic>,
    kbc: Arc<Mutex<I8042>>,
    uart: Arc<Mutex<Serial>>,
    _pci: Arc<Mutex<PciBus>>,
}

fn width(d: &mut Input) -> usize {
    [1, 2, 4, 1][usize::from(d.u8() & 3)]
}

impl Rig {
    fn new() -> Option<Rig> {
        let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(MEM).ok()?).ok()?);
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let dclock: Arc<dyn Clock> = clock.clone();
        let timers = TimerQueue::new(dclock.clone());
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let pic = Arc::new(Mutex::new(Pic::new()));
        let sink = Arc::new(Sink {
            pic: pic.clone(),
            ioapic: Mutex::new(None),
        });
        let apic = Arc::new(Apic::default());
        let ioapic = Arc::new(Ioapic::new(1, apic.clone()));
        *sink.ioapic.lock() = Some(ioapic.clone());
        let dsink: Arc<dyn IrqSink> = sink.clone();
        let line = |gsi: u32| IrqLine::new(dsink.clone(), gsi);

        for base in [0x20u64, 0xa0, 0x4d0] {
            pio.insert(base, 2, "pic", pic.clone()).ok()?;
        }
        mmio.insert(IOAPIC, 0x1000, "ioapic", ioapic.mmio_device())
            .ok()?;
        let pit = Pit::new_shared(dclock.clone(), line(0), &timers);
        pio.insert(0x40, 4, "pit", pit.clone()).ok()?;
        pio.insert(0x61, 1, "port-b", pit).ok()?;
        let rtc = Rtc::new_shared(dclock.clone(), line(8), &timers, 1_700_000_000);
        {
            let mut r = rtc.lock();
            r.set_memory_size(MEM, 0);
            r.set_cpu_count(1);
            r.update_checksum();
        }
        pio.insert(0x70, 2, "rtc", rtc).ok()?;
        let uart = Arc::new(Mutex::new(Serial::new(line(4), Box::new(std::io::sink()))));
        pio.insert(0x3f8, 8, "uart", uart.clone()).ok()?;
        let kbc = I8042::new(line(1), line(12));
        let p92 = Port92::new(kbc.a20_gate());
        let kbc = Arc::new(Mutex::new(kbc));
        pio.insert(0x60, 1, "i8042", kbc.clone()).ok()?;
        pio.insert(0x64, 1, "i8042", kbc.clone()).ok()?;
        pio.insert(0x92, 1, "port92", Arc::new(Mutex::new(p92)))
            .ok()?;
        pio.insert(0x80, 1, "post", Arc::new(Mutex::new(PostCode::new())))
            .ok()?;
        pio.insert(
            0x402,
            1,
            "debugcon",
            Arc::new(Mutex::new(DebugCon::discard())),
        )
        .ok()?;

        let mut pci = PciBus::new(pio.clone(), mmio.clone());
        let router = PciIntxRouter::new(dsink.clone());
        pci.add_function(
            PciAddress::new(0, 0),
            Arc::new(Mutex::new(I440fx::new(mem.clone()))),
        )
        .ok()?;
        pci.add_function(
            PciAddress::new(1, 0),
            Arc::new(Mutex::new(Piix3Isa::new(router, true))),
        )
        .ok()?;
        let pm = Piix4Pm::new(
            dclock.clone(),
            line(9),
            Some(&timers),
            devices::acpi::DEFAULT_PM_BASE,
        );
        pio.insert(
            u64::from(devices::acpi::APM_CNT_PORT),
            2,
            "apm",
            pm.registers(),
        )
        .ok()?;
        pci.add_function(PciAddress::new(7, 0), Arc::new(Mutex::new(pm)))
            .ok()?;
        let pci = pci.attach().ok()?;

        let mut fw = FwCfg::new(mem.clone());
        fw.add_cpus(1, 1).ok()?;
        fw.add_ram_size(MEM).ok()?;
        fw.add_file("etc/e820", vec![0xab; 40]).ok()?;
        fw.add_file("bootorder", Vec::new()).ok()?;
        fw.add_file("etc/small", vec![1, 2, 3]).ok()?;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i ^ (i >> 8)) as u8).collect();
        fw.add_file("etc/big", big).ok()?;
        pio.insert(
            0x510,
            devices::fw_cfg::FW_CFG_PORTS,
            "fw_cfg",
            Arc::new(Mutex::new(fw)),
        )
        .ok()?;

        Some(Rig {
            lapic: LocalApic::new(0, dclock),
            clock,
            timers,
            pio,
            mmio,
            mem,
            pic,
            ioapic,
            apic,
            kbc,
            uart,
            _pci: pci,
        })
    }

    fn port(d: &mut Input) -> u64 {
        let sel = d.u8();
        if sel < 0xe0 {
            u64::from(PORTS[usize::from(sel) % PORTS.len()])
        } else {
            u64::from(d.u16())
        }
    }

    fn outl(&self, port: u64, v: u32) {
        self.pio.write(port, &v.to_le_bytes());
    }

    /// Deliver queued APIC messages and LAPIC actions (bounded: an IPI to self can chain).
    fn settle(&mut self, mut action: Option<LapicAction>) {
        for _ in 0..64 {
            match action.take() {
                Some(LapicAction::Eoi(v)) => self.ioapic.eoi(v),
                Some(LapicAction::SendIpi(m)) => self.apic.deliver(m),
                None => {}
            }
            let msgs = std::mem::take(&mut *self.apic.0.lock());
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if self.lapic.is_target(&m) {
                    self.lapic.accept(&m);
                }
            }
        }
    }

    fn dma(&mut self, d: &mut Input) {
        let sel = d.u8();
        let key = match d.u8() & 7 {
            0 => 0x20 + u16::from(d.u8() & 3),
            1 => 0x19,
            2 => 0x00,
            3 => 0x01,
            4 => 0x03,
            5 => 0x4000 | 0x20 + u16::from(d.u8() & 3),
            _ => d.u16(),
        };
        let control = match sel & 7 {
            0 => DMA_SELECT | DMA_READ,
            1 => DMA_SELECT | DMA_SKIP,
            2 => DMA_SELECT | DMA_WRITE,
            3 => DMA_READ,
            4 => DMA_SKIP,
            5 => DMA_WRITE,
            6 => DMA_SELECT | DMA_READ | DMA_WRITE | DMA_SKIP,
            _ => d.u32(),
        };
        let control = if sel & 7 == 7 {
            control
        } else {
            (u32::from(key) << 16) | control
        };
        let len = match (sel >> 3) & 3 {
            0 => u32::from(d.u8()),
            1 => u32::from(d.u16()),
            2 => u32::from(d.u16()) << 4,
            _ => d.u32(),
        };
        let dst = match (sel >> 5) & 3 {
            0 => DATA + u64::from(d.u16()),
            1 => DATA + (u64::from(d.u16()) << 4),
            2 => MEM - u64::from(d.u16()),
            _ => d.u64(),
        };
        let at = if sel & 0x80 == 0 {
            DESC + u64::from(d.u8() & 0xf0)
        } else {
            u64::from(d.u32())
        };
        let mut desc = [0u8; 16];
        desc[..4].copy_from_slice(&control.to_be_bytes());
        desc[4..8].copy_from_slice(&len.to_be_bytes());
        desc[8..].copy_from_slice(&dst.to_be_bytes());
        let _ = self.mem.write(at, &desc);
        let high = (at >> 32) as u32;
        if high != 0 || d.u8() & 1 != 0 {
            self.pio.write(0x514, &high.to_be_bytes());
        }
        self.pio.write(0x518, &(at as u32).to_be_bytes());
    }

    fn pci(&mut self, d: &mut Input) {
        let sel = d.u8();
        let dev = match sel & 7 {
            0 | 1 => 0,
            2 | 3 => 1,
            4 | 5 => 7,
            _ => d.u8() & 0x1f,
        };
        let func = if sel & 8 != 0 { d.u8() & 7 } else { 0 };
        let reg = d.u8();
        let bus = if sel & 0x10 != 0 { d.u8() } else { 0 };
        let enable = if sel & 0x20 != 0 { 0 } else { 0x8000_0000 };
        let addr = enable
            | (u32::from(bus) << 16)
            | (u32::from(dev) << 11)
            | (u32::from(func) << 8)
            | u32::from(reg & 0xfc);
        self.outl(0xcf8, addr);
        let w = width(d);
        let port = 0xcfc + u64::from(reg & 3);
        if sel & 0x40 != 0 {
            let v = d.array::<4>();
            self.pio.write(port, &v[..w]);
        } else {
            let mut b = [0u8; 4];
            self.pio.read(port, &mut b[..w]);
        }
    }

    fn advance(&mut self, d: &mut Input) {
        let sel = d.u8();
        let ns = match sel & 3 {
            0 => u64::from(d.u16()) * 1000,
            1 => u64::from(d.u16()) * 1_000_000,
            2 => u64::from(d.u8()),
            _ => u64::from(d.u32()) << (sel >> 4),
        };
        self.clock.advance(ns);
        for _ in 0..4 {
            if self.timers.run_due() == 0 {
                break;
            }
        }
        let now = self.clock.now_ns();
        self.lapic.timer_expired(now);
        self.settle(None);
    }

    /// One operation; false ends the input.
    fn op(&mut self, d: &mut Input) -> bool {
        if d.is_empty() {
            return false;
        }
        match d.u8() % 14 {
            // Port write.
            0 | 1 => {
                let port = Self::port(d);
                let w = width(d);
                let v = d.array::<4>();
                self.pio.write(port, &v[..w]);
            }
            // Port read.
            2 => {
                let port = Self::port(d);
                let w = width(d);
                let mut b = [0u8; 4];
                self.pio.read(port, &mut b[..w]);
            }
            // A burst of reads of one port (fw_cfg data, UART RBR, i8042 output).
            3 => {
                let port = Self::port(d);
                let n = usize::from(d.u8()) + 1;
                let mut b = [0u8; 1];
                for _ in 0..n {
                    self.pio.read(port, &mut b);
                }
            }
            // fw_cfg DMA.
            4 | 5 => self.dma(d),
            // PCI configuration space.
            6 | 7 => self.pci(d),
            // LAPIC MMIO.
            8 => {
                let sel = d.u8();
                let off = u64::from(d.u16() & 0xfff);
                let w = [4, 1, 2, 8][usize::from(sel & 3)];
                if sel & 4 != 0 {
                    let v = d.array::<8>();
                    let a = self.lapic.write(off, &v[..w]);
                    self.settle(a);
                } else {
                    let mut b = [0u8; 8];
                    self.lapic.read(off, &mut b[..w]);
                }
            }
            // IOAPIC MMIO: index register then window, or anywhere.
            9 => {
                let sel = d.u8();
                let w = [4, 1, 2, 8][usize::from(sel & 3)];
                if sel & 8 != 0 {
                    let off = u64::from(d.u16() & 0xfff);
                    if sel & 4 != 0 {
                        let v = d.array::<8>();
                        self.mmio.write(IOAPIC + off, &v[..w]);
                    } else {
                        let mut b = [0u8; 8];
                        self.mmio.read(IOAPIC + off, &mut b[..w]);
                    }
                } else {
                    let index = d.u8();
                    self.mmio.write(IOAPIC, &[index, 0, 0, 0]);
                    if sel & 4 != 0 {
                        let v = d.array::<4>();
                        self.mmio.write(IOAPIC + 0x10, &v[..w.min(4)]);
                    } else {
                        let mut b = [0u8; 4];
                        self.mmio.read(IOAPIC + 0x10, &mut b[..w.min(4)]);
                    }
                }
                self.settle(None);
            }
            // Time passes.
            10 => self.advance(d),
            // Interrupt acknowledge cycles.
            11 => {
                let v = self.pic.lock().acknowledge();
                let _ = v;
                if let Some(v) = self.lapic.pending_interrupt() {
                    self.lapic.acknowledge(v);
                }
                self.lapic.take_extint();
                self.lapic.take_nmi();
            }
            // Bytes into guest memory (descriptors the DMA op did not build).
            12 => {
                let at = if d.u8() & 1 == 0 {
                    DESC + u64::from(d.u8())
                } else {
                    u64::from(d.u32())
                };
                let n = usize::from(d.u8() & 31);
                let b = d.take(n);
                let _ = self.mem.write(at, b);
            }
            // Host-side input: keys, mouse, serial bytes.
            _ => {
                let sel = d.u8();
                let b = d.take(usize::from(sel >> 4));
                match sel & 3 {
                    0 => {
                        self.kbc.lock().key_event(b, sel & 4 != 0);
                    }
                    1 => {
                        let m = d.array::<4>();
                        self.kbc.lock().mouse_event(
                            i32::from(m[0] as i8) * 8,
                            i32::from(m[1] as i8) * 8,
                            i32::from(m[2] as i8),
                            m[3],
                        );
                    }
                    2 => {
                        self.uart.lock().receive(b);
                    }
                    _ => {
                        self.kbc.lock().push_keyboard_bytes(b);
                    }
                }
            }
        }
        true
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The PCI bus holds the port bus it is registered on: break the cycle.
        self.pio.remove(0xcf8);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let mut d = Input::new(data);
    let mut n = 0;
    while n < 4096 && rig.op(&mut d) {
        n += 1;
    }
});
