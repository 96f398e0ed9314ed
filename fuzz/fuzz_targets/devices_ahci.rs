//! Fuzz the AHCI HBA: a disk on port 0, an ATAPI CD on port 1 and two empty ports, driven
//! through its PCI configuration space, the ABAR (any width 1-16 at any offset, as the
//! MMIO bus delivers them), the index/data pair, and command lists, command tables, PRDTs
//! and received-FIS areas in real guest memory. Commands run synchronously in the register
//! write that issues them, so every input is deterministic.
//!
//! Input: a sequence of operations (see `op`); builder operations lay out valid-looking
//! command headers, H2D register FISes, ATAPI packets and PRDTs from a few bytes so the
//! fuzzer reaches the ATA and ATAPI command sets, while raw register and memory writes let
//! it corrupt any of it.
#![no_main]

use devices::pci::PciFunction;
use devices::storage::{Ahci, AhciPortConfig};
use libfuzzer_sys::fuzz_target;
use novabox_fuzz::{storage, Input};
use pdm::SharedDevice;
use pgm::{GuestMemory, MemoryLayout};
use std::sync::Arc;

const ABAR: u64 = 0xfebf_0000;
const IDP: u64 = 0xc000;
/// Command list of port p: CLB + p * 0x400.
const CLB: u64 = 0x10_0000;
/// Received-FIS area of port p: FB + p * 0x100.
const FB: u64 = 0x10_1000;
/// Command table of port p, slot s: CT + p * 0x4000 + s * 0x200.
const CT: u64 = 0x11_0000;
/// 1 MiB of data buffers.
const DATA: u64 = 0x20_0000;
const PORTS: u64 = 4;

/// Port registers by index (offsets in the port's 0x80 bytes).
const PREGS: &[u64] = &[
    0x00, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x20, 0x24, 0x28, 0x2c, 0x30, 0x34, 0x38,
];

struct NullApic;

impl pdm::ApicBus for NullApic {
    fn deliver(&self, _msg: pdm::ApicMessage) {}
}

struct Rig {
    ahci: Ahci,
    abar: SharedDevice,
    idp: SharedDevice,
    mem: Arc<GuestMemory>,
}

impl Rig {
    fn new(discard: bool) -> Option<Rig> {
        let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(4 << 20).ok()?).ok()?);
        let (disk, cd) = storage::disk_and_cd(discard)?;
        let devices = vec![
            AhciPortConfig {
                port: 0,
                drive: disk,
                hotplug: false,
            },
            AhciPortConfig {
                port: 1,
                drive: cd,
                hotplug: true,
            },
        ];
        let irq = pdm::IrqLine::disconnected();
        let mut ahci = Ahci::new(
            PORTS as usize,
            devices,
            irq,
            Some(Arc::new(NullApic)),
            mem.clone(),
        );
        // The firmware's part: BARs, then I/O, memory and bus mastering on.
        ahci.config_write(0x20, &(IDP as u32).to_le_bytes());
        ahci.config_write(0x24, &(ABAR as u32).to_le_bytes());
        ahci.config_write(0x04, &7u16.to_le_bytes());
        let regions = ahci.regions();
        let find = |name: &str| {
            regions
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.device.clone())
        };
        Some(Rig {
            abar: find("ahci-abar")?,
            idp: find("ahci-idp")?,
            ahci,
            mem,
        })
    }

    fn w32(&self, off: u64, v: u32) {
        self.abar.lock().write(ABAR + off, off, &v.to_le_bytes());
    }

    fn port_on(&self, p: u64) {
        let r = 0x100 + p * 0x80;
        self.w32(r, (CLB + p * 0x400) as u32);
        self.w32(r + 4, 0);
        self.w32(r + 8, (FB + p * 0x100) as u32);
        self.w32(r + 0xc, 0);
        self.w32(r + 0x30, u32::MAX);
        self.w32(r + 0x10, u32::MAX);
        self.w32(r + 0x14, u32::MAX);
        self.w32(r + 0x18, 0x11); // FRE | ST
    }

    fn slot_table(p: u64, slot: u64) -> u64 {
        CT + p * 0x4000 + slot * 0x200
    }

    /// One operation; false ends the input.
    fn op(&mut self, d: &mut Input) -> bool {
        if d.is_empty() {
            return false;
        }
        match d.u8() % 13 {
            // A meaningful register with a useful or a raw value.
            0 => {
                let sel = d.u8();
                let raw = d.u32();
                let p = u64::from(sel >> 4) % PORTS;
                let useful = sel & 0x80 != 0;
                let idx = usize::from(sel & 0xf);
                let (off, v) = match idx {
                    0 => (0x04, if useful { 2 } else { raw }), // GHC (IE / HR)
                    1 => (0x08, if useful { u32::MAX } else { raw }), // IS
                    i => {
                        let r = PREGS[(i - 2) % PREGS.len()];
                        let v = match (useful, r) {
                            (true, 0x00) => (CLB + p * 0x400) as u32,
                            (true, 0x08) => (FB + p * 0x100) as u32,
                            (true, 0x18) => 0x11,
                            (true, 0x04 | 0x0c) => 0,
                            (true, _) => u32::MAX,
                            (false, _) => raw,
                        };
                        (0x100 + p * 0x80 + r, v)
                    }
                };
                self.w32(off, v);
            }
            // Any ABAR access, any width (1-16), any offset.
            1 | 2 => {
                let write = d.u8() & 1 != 0;
                let off = u64::from(d.u16() & 0x1fff);
                let width = match d.pick(&[4, 4, 1, 2, 8, 16]) {
                    w @ 1..=16 => usize::from(w),
                    w => usize::from(w % 16) + 1,
                };
                if write {
                    let v = d.array::<16>();
                    self.abar.lock().write(ABAR + off, off, &v[..width]);
                } else {
                    let mut v = [0u8; 16];
                    self.abar.lock().read(ABAR + off, off, &mut v[..width]);
                }
            }
            // Bytes into guest memory: command lists, FIS areas, command tables, data.
            3 => {
                let sel = d.u8();
                let off = u64::from(d.u16());
                let p = u64::from(sel >> 4) % PORTS;
                let base = match sel & 7 {
                    0 => CLB + p * 0x400 + (off & 0x3ff),
                    1 => FB + p * 0x100 + (off & 0xff),
                    2 | 3 => CT + p * 0x4000 + (off & 0x3fff),
                    4 => DATA + (off << 4),
                    _ => u64::from(d.u32()),
                };
                let len = usize::from(d.u8() & 0x7f);
                let bytes = d.take(len);
                let _ = self.mem.write(base, bytes);
            }
            // A command in a slot: header, H2D FIS, packet, PRDT; optionally issued.
            4 | 5 => self.build(d),
            // Issue slots (and NCQ tags).
            6 => {
                let p = u64::from(d.u8()) % PORTS;
                let sact = d.u32();
                let ci = d.u32();
                let r = 0x100 + p * 0x80;
                self.w32(r + 0x34, sact);
                self.w32(r + 0x38, ci);
            }
            // PCI configuration (command register, MSI capability, anything).
            7 => {
                let off = d.pick(&[0x04, 0x04, 0x82, 0x84, 0x88, 0x92, 0x93, 0x24]);
                let width = [1, 2, 4, 4][usize::from(d.u8() & 3)];
                let v = d.array::<4>();
                self.ahci.config_write(off, &v[..width]);
            }
            // Index/data pair.
            8 => {
                let sel = d.u8();
                let v = d.u32();
                let off = u64::from(sel & 4);
                if sel & 1 != 0 {
                    self.idp.lock().write(IDP + off, off, &v.to_le_bytes());
                } else {
                    let mut b = [0u8; 4];
                    self.idp.lock().read(IDP + off, off, &mut b);
                }
            }
            // The driver's port start-up sequence.
            9 => {
                let p = u64::from(d.u8()) % PORTS;
                self.port_on(p);
                self.w32(0x04, 2);
            }
            // COMRESET or an HBA reset.
            10 => {
                let p = u64::from(d.u8()) % PORTS;
                if p == 3 {
                    self.w32(0x04, 1);
                } else {
                    let r = 0x100 + p * 0x80 + 0x2c;
                    self.w32(r, 1);
                    self.w32(r, 0);
                }
            }
            // PCI function reset (the VM's reset), and a look at the configuration.
            12 => {
                self.ahci.reset();
                let mut b = [0u8; 4];
                let off = d.u8() & 0xfc;
                self.ahci.config_read(off, &mut b);
            }
            // Reads of every register (cheap, exercises the read paths).
            _ => {
                for off in (0..0x100 + PORTS * 0x80).step_by(4) {
                    let mut b = [0u8; 4];
                    self.abar.lock().read(ABAR + off, off, &mut b);
                }
            }
        }
        true
    }

    fn build(&mut self, d: &mut Input) {
        let flags = d.u8();
        let slot = u64::from(d.u8() & 31);
        let p = u64::from(flags & 1) | u64::from(flags >> 7) << 1; // mostly ports 0/1
        let write = flags & 2 != 0;
        let atapi = flags & 4 != 0;
        let issue = flags & 8 != 0;
        let ncq_tag = flags & 0x10 != 0;
        let control = flags & 0x20 != 0;
        let raw_header = flags & 0x40 != 0;

        let command = d.pick(storage::ATA_COMMANDS);
        let lba = d.array::<6>();
        let count = d.array::<2>();
        let features = d.array::<2>();
        let device = d.u8();
        let ctl = d.u8();
        let mut fis = [0u8; 64];
        fis[0] = 0x27;
        fis[1] = if control { 0 } else { 0x80 };
        fis[2] = command;
        fis[3] = features[0];
        fis[4..7].copy_from_slice(&lba[0..3]);
        fis[7] = device;
        fis[8..11].copy_from_slice(&lba[3..6]);
        fis[11] = features[1];
        fis[12] = count[0];
        fis[13] = count[1];
        fis[15] = ctl;
        let mut cdb = [0u8; 16];
        cdb[0] = d.pick(storage::ATAPI_OPCODES);
        cdb[1..12].copy_from_slice(&d.array::<11>());

        let ct = Self::slot_table(p, slot);
        let n = usize::from(d.u8() % 9);
        let mut prdt = Vec::with_capacity(n * 16);
        for _ in 0..n {
            let kind = d.u8();
            let off = d.u32();
            let dbc = d.u32();
            let addr = if kind & 1 == 0 {
                DATA + u64::from(off % 0x10_0000)
            } else {
                u64::from(off) | u64::from(kind >> 1) << 32
            };
            prdt.extend_from_slice(&addr.to_le_bytes());
            prdt.extend_from_slice(&0u32.to_le_bytes());
            prdt.extend_from_slice(&(dbc & 0x803f_ffff).to_le_bytes());
        }

        let (dw0, ctba) = if raw_header {
            (d.u32(), d.u64())
        } else {
            let dw0 = 5 | u32::from(atapi) << 5 | u32::from(write) << 6 | (n as u32) << 16;
            (dw0, ct)
        };
        let mut hdr = [0u8; 32];
        hdr[0..4].copy_from_slice(&dw0.to_le_bytes());
        hdr[8..16].copy_from_slice(&ctba.to_le_bytes());
        let _ = self.mem.write(CLB + p * 0x400 + slot * 32, &hdr);
        let _ = self.mem.write(ct, &fis);
        let _ = self.mem.write(ct + 0x40, &cdb);
        let _ = self.mem.write(ct + 0x80, &prdt);
        if issue {
            let r = 0x100 + p * 0x80;
            if ncq_tag {
                self.w32(r + 0x34, 1 << slot);
            }
            self.w32(r + 0x38, 1 << slot);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut d = Input::new(data);
    // First byte: bit 0 starts ports 0 and 1 the way a driver does (most inputs want
    // that), bit 1 turns discard (TRIM) on for the disk.
    let pre = d.u8();
    let Some(mut rig) = Rig::new(pre & 2 != 0) else {
        return;
    };
    if pre & 1 != 0 {
        rig.port_on(0);
        rig.port_on(1);
        rig.w32(0x04, 2);
    }
    for _ in 0..256 {
        if !rig.op(&mut d) {
            break;
        }
    }
    // Power-off: flush and close the media like the VM does.
    let hba = rig.ahci.hba();
    let mut h = hba.lock();
    for p in 0..PORTS as usize {
        if let Some(drive) = h.drive_mut(p) {
            let _ = drive.flush();
        }
    }
    drop(h.take_drives());
});
