//! The PIIX3 (8086:7010) and PIIX4 (8086:7111, revision 1) IDE function, as VirtualBox
//! puts it at 00:01.1: class 01:01 with programming interface 0x8A (bus-master capable,
//! both channels in legacy mode), command register I/O | memory | bus master at reset.
//! The channels sit at the fixed legacy ports (0x1F0-0x1F7 + 0x3F6, IRQ 14; 0x170-0x177 +
//! 0x376, IRQ 15), which VirtualBox registers permanently; BAR4 is the 16-byte bus-master
//! block (channel 0 at +0, channel 1 at +8). IDETIM (0x40/0x42) resets with decode enabled
//! (bit 15), which Linux's ata_piix checks before probing a channel.

use super::ata::Drive;
use super::ide::IdeChannel;
use crate::pci::{BarKind, PciConfig, PciFunction, PciRegion, PciSpace, INTEL_VENDOR_ID};
use iomio::{BusDevice, SharedDevice};
use parking_lot::Mutex;
use pdm::IrqLine;
use pgm::GuestMemory;
use std::sync::Arc;

/// Which south bridge's IDE function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiixModel {
    /// 82371SB PIIX3 IDE.
    Piix3,
    /// 82371AB/EB PIIX4 IDE.
    Piix4,
}

impl PiixModel {
    /// PCI device ID.
    pub fn device_id(self) -> u16 {
        match self {
            PiixModel::Piix3 => 0x7010,
            PiixModel::Piix4 => 0x7111,
        }
    }

    fn revision(self) -> u8 {
        match self {
            PiixModel::Piix3 => 0,
            PiixModel::Piix4 => 1,
        }
    }
}

/// Legacy command-block base, control-block port and ISA IRQ of each channel.
pub const LEGACY: [(u16, u16, u32); 2] = [(0x1f0, 0x3f6, 14), (0x170, 0x376, 15)];

/// The two channels behind one lock (the controller's critical section).
pub struct IdeController {
    /// Primary and secondary channel.
    pub channels: [IdeChannel; 2],
}

/// Port-I/O view of one channel's command block, control block, or the bus-master block.
struct Ports {
    ctl: Arc<Mutex<IdeController>>,
    kind: PortKind,
}

#[derive(Clone, Copy)]
enum PortKind {
    Command(usize),
    Control(usize),
    BusMaster,
}

impl BusDevice for Ports {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        let mut c = self.ctl.lock();
        match self.kind {
            PortKind::Command(ch) => {
                let chan = &mut c.channels[ch];
                if offset == 0 {
                    let v = chan.read_data(data.len());
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = (v >> (8 * (i % 4))) as u8;
                    }
                } else {
                    // A wider access to a byte register reads the following registers.
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = match offset + i as u64 {
                            r @ 1..=7 => chan.read_reg(r as u8),
                            _ => 0xff,
                        };
                    }
                }
            }
            PortKind::Control(ch) => {
                let s = c.channels[ch].read_alt_status();
                data.fill(0xff);
                if let Some(b) = data.first_mut() {
                    *b = s;
                }
            }
            PortKind::BusMaster => {
                for (i, b) in data.iter_mut().enumerate() {
                    let off = offset + i as u64;
                    let ch = (off / 8) as usize & 1;
                    *b = c.channels[ch].bm_read(off % 8);
                }
            }
        }
    }

    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        let mut c = self.ctl.lock();
        match self.kind {
            PortKind::Command(ch) => {
                let chan = &mut c.channels[ch];
                if offset == 0 {
                    chan.write_data(data);
                } else {
                    for (i, b) in data.iter().enumerate() {
                        if let r @ 1..=7 = offset + i as u64 {
                            chan.write_reg(r as u8, *b);
                        }
                    }
                }
            }
            PortKind::Control(ch) => {
                if let Some(b) = data.first() {
                    c.channels[ch].write_control(*b);
                }
            }
            PortKind::BusMaster => {
                for (i, b) in data.iter().enumerate() {
                    let off = offset + i as u64;
                    let ch = (off / 8) as usize & 1;
                    c.channels[ch].bm_write(off % 8, *b);
                }
            }
        }
    }
}

/// The PCI function.
pub struct PiixIde {
    config: PciConfig,
    ctl: Arc<Mutex<IdeController>>,
    bm_ports: SharedDevice,
}

impl std::fmt::Debug for PiixIde {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PiixIde({:?})", self.config)
    }
}

/// Drives by channel and position: `[[primary master, primary slave], [secondary ...]]`.
pub type IdeDrives = [[Option<Drive>; 2]; 2];

impl PiixIde {
    /// The function with its drives; `irqs` are the lines of IRQ 14 and 15.
    pub fn new(
        model: PiixModel,
        drives: IdeDrives,
        irqs: [IrqLine; 2],
        mem: Arc<GuestMemory>,
    ) -> Self {
        let mut config = PciConfig::new(
            INTEL_VENDOR_ID,
            model.device_id(),
            0x01018a,
            model.revision(),
        );
        config
            .add_bar(4, BarKind::Io, 16)
            .unwrap_or_else(|e| unreachable!("static BAR layout: {e}"));
        config.set_u16(
            crate::pci::regs::COMMAND,
            crate::pci::regs::CMD_IO | crate::pci::regs::CMD_MEMORY | crate::pci::regs::CMD_MASTER,
        );
        // IDETIM, SIDETIM, UDMACTL, UDMATIM: timing registers the guest may program freely.
        config.set_wmask(0x40, 4, 0xffff_ffff);
        config.set_wmask(0x44, 1, 0xff);
        config.set_wmask(0x48, 1, 0x0f);
        config.set_wmask(0x4a, 2, 0x3333);
        config.set_u16(0x40, 0x8000);
        config.set_u16(0x42, 0x8000);
        let [[m0, s0], [m1, s1]] = drives;
        let [i0, i1] = irqs;
        let ctl = Arc::new(Mutex::new(IdeController {
            channels: [
                IdeChannel::new(m0, s0, i0, mem.clone()),
                IdeChannel::new(m1, s1, i1, mem),
            ],
        }));
        let bm_ports: SharedDevice = Arc::new(Mutex::new(Ports {
            ctl: ctl.clone(),
            kind: PortKind::BusMaster,
        }));
        PiixIde {
            config,
            ctl,
            bm_ports,
        }
    }

    /// The controller (power-off flush, tests).
    pub fn controller(&self) -> Arc<Mutex<IdeController>> {
        self.ctl.clone()
    }

    /// The fixed legacy port ranges to register on the port bus: (base, length, name, device).
    pub fn legacy_ports(&self) -> Vec<(u64, u64, &'static str, SharedDevice)> {
        let mut v = Vec::new();
        for (ch, (cmd, ctl, _)) in LEGACY.iter().enumerate() {
            let c: SharedDevice = Arc::new(Mutex::new(Ports {
                ctl: self.ctl.clone(),
                kind: PortKind::Command(ch),
            }));
            let k: SharedDevice = Arc::new(Mutex::new(Ports {
                ctl: self.ctl.clone(),
                kind: PortKind::Control(ch),
            }));
            v.push((u64::from(*cmd), 8, "ide-cmd", c));
            v.push((u64::from(*ctl), 1, "ide-ctl", k));
        }
        v
    }

    fn sync_command(&self) {
        let bm = self.config.bus_master_enabled();
        let mut c = self.ctl.lock();
        for ch in &mut c.channels {
            ch.bus_master_enabled = bm;
        }
    }
}

impl PciFunction for PiixIde {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.config.read_bytes(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        self.config.write_bytes(offset, data);
        self.sync_command();
    }

    fn regions(&self) -> Vec<PciRegion> {
        self.config
            .decoded_bars()
            .into_iter()
            .filter(|b| b.index == 4 && b.space == PciSpace::Io)
            .map(|b| PciRegion {
                space: b.space,
                base: b.base,
                size: b.size,
                name: "ide-busmaster".into(),
                device: self.bm_ports.clone(),
            })
            .collect()
    }

    fn reset(&mut self) {
        let mut c = self.ctl.lock();
        for ch in &mut c.channels {
            ch.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ata::tests::disk;
    use pgm::MemoryLayout;

    fn ide(model: PiixModel) -> PiixIde {
        let (d, _) = disk(16);
        let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(16 << 20).unwrap()).unwrap());
        PiixIde::new(
            model,
            [[Some(d), None], [None, None]],
            [IrqLine::disconnected(), IrqLine::disconnected()],
            mem,
        )
    }

    #[test]
    fn ids_match_virtualbox() {
        let mut f = ide(PiixModel::Piix3);
        let mut b = [0u8; 4];
        f.config_read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x7010_8086);
        f.config_read(8, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x0101_8a00);
        let mut f = ide(PiixModel::Piix4);
        f.config_read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x7111_8086);
        f.config_read(8, &mut b);
        assert_eq!(b[0], 1);
        f.config_read(0x40, &mut b);
        assert_eq!(b, [0, 0x80, 0, 0x80], "IDETIM decode enabled");
    }

    #[test]
    fn bar4_maps_the_bus_master_block() {
        let mut f = ide(PiixModel::Piix3);
        assert!(f.regions().is_empty(), "BAR not programmed yet");
        f.config_write(0x20, &0xc000u32.to_le_bytes());
        let r = f.regions();
        assert_eq!((r[0].base, r[0].size), (0xc000, 16));
        // Through the port device: the PRD pointer of channel 1 is at +0x0C.
        r[0].device
            .lock()
            .write(0xc00c, 0xc, &0x1234_5677u32.to_le_bytes());
        let mut v = [0u8; 4];
        r[0].device.lock().read(0xc00c, 0xc, &mut v);
        assert_eq!(u32::from_le_bytes(v), 0x1234_5674);
        // Bus mastering off: the channels refuse to DMA.
        f.config_write(4, &[1, 0]);
        assert!(!f.controller().lock().channels[0].bus_master_enabled);
    }

    #[test]
    fn legacy_ports_reach_the_channels() {
        let f = ide(PiixModel::Piix4);
        let ports = f.legacy_ports();
        assert_eq!(
            ports.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
            vec![(0x1f0, 8), (0x3f6, 1), (0x170, 8), (0x376, 1)]
        );
        let mut s = [0u8];
        ports[0].3.lock().read(0x1f7, 7, &mut s);
        assert_eq!(s[0], 0x50);
        ports[2].3.lock().read(0x177, 7, &mut s);
        assert_eq!(s[0], 0, "empty secondary channel");
    }
}
