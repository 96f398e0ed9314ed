//! Fuzz the PIIX3/PIIX4 IDE function: a disk as primary master and an ATAPI CD as
//! secondary master, driven through the legacy command and control blocks (task file,
//! command register, data port at any width, device control), the bus-master block
//! (command, status, PRD table address), PCI configuration, and PRD tables and buffers in
//! real guest memory. Commands and DMA run synchronously in the port write that starts
//! them, so every input is deterministic.
//!
//! Input: a sequence of operations (see `op`); the builder operations (task file plus
//! command, ATAPI packet, PRD table) make valid-looking commands from a few bytes, while
//! raw port and memory writes let the fuzzer break any of it.
#![no_main]

use devices::pci::PciFunction;
use devices::storage::{PiixIde, PiixModel};
use libfuzzer_sys::fuzz_target;
use novabox_fuzz::{storage, Input};
use pdm::SharedDevice;
use pgm::{GuestMemory, MemoryLayout};
use std::sync::Arc;

const BM: u64 = 0xc000;
/// PRD table of channel c: PRD + c * 0x1000.
const PRD: u64 = 0x10_0000;
/// 1 MiB of data buffers.
const DATA: u64 = 0x20_0000;

struct Rig {
    ide: PiixIde,
    /// Command block and control block of each channel.
    cmd: [(u64, SharedDevice); 2],
    ctl: [(u64, SharedDevice); 2],
    bm: SharedDevice,
    mem: Arc<GuestMemory>,
}

impl Rig {
    fn new(model: PiixModel, discard: bool) -> Option<Rig> {
        let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(4 << 20).ok()?).ok()?);
        let (disk, cd) = storage::disk_and_cd(discard)?;
        let mut ide = PiixIde::new(
            model,
            [[Some(disk), None], [Some(cd), None]],
            [pdm::IrqLine::disconnected(), pdm::IrqLine::disconnected()],
            mem.clone(),
        );
        ide.config_write(0x20, &(BM as u32 | 1).to_le_bytes());
        let bm = ide.regions().first()?.device.clone();
        let ports = ide.legacy_ports();
        let get = |i: usize| ports.get(i).map(|p| (p.0, p.3.clone()));
        Some(Rig {
            cmd: [get(0)?, get(2)?],
            ctl: [get(1)?, get(3)?],
            bm,
            ide,
            mem,
        })
    }

    fn out(&self, ch: usize, reg: u64, data: &[u8]) {
        let (base, dev) = &self.cmd[ch];
        dev.lock().write(base + reg, reg, data);
    }

    fn inp(&self, ch: usize, reg: u64, data: &mut [u8]) {
        let (base, dev) = &self.cmd[ch];
        dev.lock().read(base + reg, reg, data);
    }

    fn bm_out(&self, off: u64, data: &[u8]) {
        self.bm.lock().write(BM + off, off, data);
    }

    fn width(d: &mut Input) -> usize {
        [2, 2, 1, 4][usize::from(d.u8() & 3)]
    }

    /// One operation; false ends the input.
    fn op(&mut self, d: &mut Input) -> bool {
        if d.is_empty() {
            return false;
        }
        let code = d.u8();
        let ch = usize::from(code >> 7);
        match (code & 0x7f) % 15 {
            // Task-file register.
            0 => {
                let reg = 1 + u64::from(d.u8() % 6);
                let v = d.u8();
                self.out(ch, reg, &[v]);
            }
            // Command register.
            1 => {
                let c = d.pick(storage::ATA_COMMANDS);
                self.out(ch, 7, &[c]);
            }
            // PIO data-in: a run of data-port reads of one width.
            2 => {
                let w = Self::width(d);
                let n = (usize::from(d.u8()) + 1) * 8;
                let mut b = [0u8; 4];
                for _ in 0..n {
                    self.inp(ch, 0, &mut b[..w]);
                }
            }
            // PIO data-out: a run of data-port writes of one width.
            3 => {
                let w = Self::width(d);
                let n = (usize::from(d.u8()) + 1) * 8;
                let pat = d.array::<4>();
                for _ in 0..n {
                    self.out(ch, 0, &pat[..w]);
                }
            }
            // Device control (nIEN, SRST, HOB).
            4 => {
                let v = d.u8();
                let (base, dev) = &self.ctl[ch];
                dev.lock().write(*base, 0, &[v]);
            }
            // Register reads, any offset and width; alternate status.
            5 => {
                let reg = u64::from(d.u8() & 7);
                let w = Self::width(d);
                let mut b = [0u8; 4];
                self.inp(ch, reg, &mut b[..w]);
                let (base, dev) = &self.ctl[ch];
                dev.lock().read(*base, 0, &mut b[..1]);
            }
            // Bus-master block write, any offset and width.
            6 => {
                let off = u64::from(d.u8() & 15);
                let w = Self::width(d);
                let v = d.array::<4>();
                self.bm_out(off, &v[..w]);
            }
            // Bus-master block read.
            7 => {
                let off = u64::from(d.u8() & 15);
                let w = Self::width(d);
                let mut b = [0u8; 4];
                self.bm.lock().read(BM + off, off, &mut b[..w]);
            }
            // Bytes into guest memory: PRD tables, data buffers, anywhere.
            8 => {
                let sel = d.u8();
                let off = u64::from(d.u16());
                let base = match sel & 3 {
                    0 => PRD + (off & 0x1fff),
                    1 | 2 => DATA + (off << 4),
                    _ => u64::from(d.u32()),
                };
                let len = usize::from(d.u8() & 0x7f);
                let _ = self.mem.write(base, d.take(len));
            }
            // A PRD table for the channel, and its address in the bus-master register.
            9 => {
                let n = usize::from(d.u8() % 8) + 1;
                let mut t = Vec::with_capacity(n * 8);
                for i in 0..n {
                    let kind = d.u8();
                    let base = d.u32();
                    let count = d.u16();
                    let base = if kind & 1 == 0 {
                        (DATA as u32).wrapping_add(base % 0x10_0000)
                    } else {
                        base
                    };
                    let eot = i + 1 == n || kind & 2 != 0;
                    t.extend_from_slice(&base.to_le_bytes());
                    t.extend_from_slice(&count.to_le_bytes());
                    t.extend_from_slice(&[0, if eot { 0x80 } else { 0 }]);
                }
                let at = PRD + ch as u64 * 0x1000;
                let _ = self.mem.write(at, &t);
                self.bm_out(ch as u64 * 8 + 4, &(at as u32).to_le_bytes());
            }
            // Task file (previous and current values) and a command.
            10 => {
                let dev = d.pick(&[0xe0, 0x40, 0xa0, 0xf0, 0x50, 0xb0]);
                let lba = d.array::<6>();
                let count = d.array::<2>();
                let features = d.array::<2>();
                let c = d.pick(storage::ATA_COMMANDS);
                for (reg, hob, cur) in [
                    (1, features[1], features[0]),
                    (2, count[1], count[0]),
                    (3, lba[3], lba[0]),
                    (4, lba[4], lba[1]),
                    (5, lba[5], lba[2]),
                ] {
                    self.out(ch, reg, &[hob]);
                    self.out(ch, reg, &[cur]);
                }
                self.out(ch, 6, &[dev]);
                self.out(ch, 7, &[c]);
            }
            // PACKET with a command packet sent through the data port.
            11 => {
                let sel = d.u8();
                let limit = d.u16();
                let mut cdb = [0u8; 12];
                cdb[0] = d.pick(storage::ATAPI_OPCODES);
                cdb[1..].copy_from_slice(&d.array::<11>());
                self.out(ch, 1, &[sel & 1]);
                self.out(ch, 4, &[limit as u8]);
                self.out(ch, 5, &[(limit >> 8) as u8]);
                self.out(ch, 6, &[if sel & 2 != 0 { 0xb0 } else { 0xa0 }]);
                self.out(ch, 7, &[0xa0]);
                for w in cdb.chunks(2) {
                    self.out(ch, 0, w);
                }
            }
            // Start (device to memory or memory to device) or stop the bus master.
            12 => {
                let v = d.u8() & 0x09;
                self.bm_out(ch as u64 * 8, &[v]);
            }
            // PCI function reset (the VM's reset), and a look at the configuration.
            14 => {
                self.ide.reset();
                let mut b = [0u8; 4];
                let off = d.u8() & 0xfc;
                self.ide.config_read(off, &mut b);
            }
            // PCI configuration (command register, BAR4, timing registers).
            _ => {
                let off = d.pick(&[0x04, 0x04, 0x20, 0x40, 0x42, 0x44, 0x48, 0x4a]);
                let width = [1, 2, 4, 4][usize::from(d.u8() & 3)];
                let v = d.array::<4>();
                self.ide.config_write(off, &v[..width]);
            }
        }
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let mut d = Input::new(data);
    // First byte: bit 0 PIIX4 (else PIIX3), bit 1 discard (TRIM) on for the disk.
    let pre = d.u8();
    let model = if pre & 1 != 0 {
        PiixModel::Piix4
    } else {
        PiixModel::Piix3
    };
    let Some(mut rig) = Rig::new(model, pre & 2 != 0) else {
        return;
    };
    for _ in 0..256 {
        if !rig.op(&mut d) {
            break;
        }
    }
    // Power-off: flush and close the media like the VM does.
    let ctl = rig.ide.controller();
    let mut c = ctl.lock();
    for ch in &mut c.channels {
        if let Some(drive) = ch.drive_mut(0) {
            let _ = drive.flush();
        }
        drop(ch.take_drives());
    }
});
