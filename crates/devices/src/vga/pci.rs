//! The adapter on the buses: the PCI function 80EE:BEEF (class 0300, INTA) with VRAM in
//! BAR0 (32-bit prefetchable memory) and the VGA BIOS in the expansion ROM BAR, plus the
//! legacy ranges every VGA decodes: ports 0x3B0-0x3DF, the DISPI ports 0x1CE/0x1CF and the
//! memory window 0xA0000-0xBFFFF.
//!
//! BAR0 is served twice: pgm maps the video memory as guest RAM wherever the guest
//! programs the BAR (so framebuffer accesses cost no exit), and an MMIO device on the bus
//! answers what pgm does not map: the BAR's tail past the video memory, and a BAR placed
//! where pgm refuses RAM (over other memory or in the platform area).

use super::{Vga, VgaConfig, Vram, VBOX_VENDOR_ID, VBOX_VGA_DEVICE_ID, VGA_CLASS};
use crate::pci::{BarKind, PciConfig, PciError, PciFunction, PciRegion, ROM_BAR_INDEX};
use iomio::{Bus, BusDevice, BusError, SharedDevice};
use parking_lot::Mutex;
use pdm::IrqLine;
use std::sync::Arc;

/// Base of the legacy memory window.
pub const LEGACY_MEM_BASE: u64 = 0xa_0000;
/// Size of the legacy memory window.
pub const LEGACY_MEM_SIZE: u64 = 0x2_0000;

/// Point a PCI option ROM's PCI data structure at `vendor:device` and fix the checksum, so
/// SeaBIOS accepts SeaBIOS's vgabios (built for QEMU's 1234:1111) for our adapter.
/// SeaBIOS's ROM builder keeps the checksum byte at offset 6, which we adjust. Returns false
/// (and leaves the image alone) when it is not a ROM with a PCI data structure.
pub fn patch_rom_ids(rom: &mut [u8], vendor: u16, device: u16) -> bool {
    if rom.len() < 0x1a || rom[0] != 0x55 || rom[1] != 0xaa {
        return false;
    }
    let pcir = usize::from(u16::from_le_bytes([rom[0x18], rom[0x19]]));
    if pcir < 0x1a || rom.get(pcir..pcir + 8).is_none() || &rom[pcir..pcir + 4] != b"PCIR" {
        return false;
    }
    rom[pcir + 4..pcir + 6].copy_from_slice(&vendor.to_le_bytes());
    rom[pcir + 6..pcir + 8].copy_from_slice(&device.to_le_bytes());
    let len = (usize::from(rom[2]) * 512).min(rom.len());
    rom[6] = 0;
    let sum = rom[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    rom[6] = 0u8.wrapping_sub(sum);
    true
}

/// Ports 0x1CE-0x1CF and 0x3B0-0x3DF.
struct Ports(Arc<Mutex<Vga>>);

impl BusDevice for Ports {
    fn read(&mut self, addr: u64, _offset: u64, data: &mut [u8]) {
        self.0.lock().port_read(addr as u16, data);
    }
    fn write(&mut self, addr: u64, _offset: u64, data: &[u8]) {
        self.0.lock().port_write(addr as u16, data);
    }
}

/// The 0xA0000-0xBFFFF window.
struct LegacyMem(Arc<Mutex<Vga>>);

impl BusDevice for LegacyMem {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        let mut v = self.0.lock();
        for (i, d) in data.iter_mut().enumerate() {
            *d = v.legacy_read((offset as u32).wrapping_add(i as u32));
        }
    }
    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        let mut v = self.0.lock();
        for (i, &d) in data.iter().enumerate() {
            v.legacy_write((offset as u32).wrapping_add(i as u32), d);
        }
    }
}

/// BAR0: the linear framebuffer.
struct Lfb(Arc<Mutex<Vga>>);

impl BusDevice for Lfb {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        self.0.lock().lfb_read(offset, data);
    }
    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        self.0.lock().lfb_write(offset, data);
    }
}

/// The expansion ROM (read-only).
struct Rom(Vec<u8>);

impl BusDevice for Rom {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(offset)
                .ok()
                .and_then(|o| self.0.get(o.checked_add(i)?))
                .copied()
                .unwrap_or(0xff);
        }
    }
    fn write(&mut self, _addr: u64, _offset: u64, _data: &[u8]) {}
}

/// The PCI function of the adapter.
pub struct VgaPci {
    cfg: PciConfig,
    vga: Arc<Mutex<Vga>>,
    lfb: SharedDevice,
    rom: Option<SharedDevice>,
    /// The video memory, mapped by pgm where BAR0 decodes.
    vram: Vram,
    /// Where BAR0 decodes now (None: off).
    lfb_at: Option<u64>,
}

impl VgaPci {
    /// Follow BAR0 with pgm's mapping of the video memory: the guest moved it, turned
    /// memory decoding on or off, or the function was reset.
    fn sync_lfb(&mut self) {
        let at = self
            .cfg
            .decoded_bars()
            .into_iter()
            .find(|b| b.index == 0)
            .map(|b| b.base);
        if at == self.lfb_at {
            return;
        }
        self.lfb_at = at;
        if let Err(e) = self.vram.region().map(at) {
            // The MMIO device on the bus answers there instead.
            tracing::debug!("VGA: video memory at {at:#x?} stays MMIO: {e}");
        }
    }

    /// Where pgm maps the video memory now.
    pub fn lfb_mapped_at(&self) -> Option<u64> {
        self.vram.region().mapped_at()
    }
}

impl PciFunction for VgaPci {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cfg.read_bytes(offset, data);
    }
    fn config_write(&mut self, offset: u8, data: &[u8]) {
        self.cfg.write_bytes(offset, data);
        self.sync_lfb();
    }
    fn regions(&self) -> Vec<PciRegion> {
        self.cfg
            .decoded_bars()
            .into_iter()
            .filter_map(|b| {
                let (name, device) = match b.index {
                    0 => ("vram", self.lfb.clone()),
                    ROM_BAR_INDEX => ("vga-rom", self.rom.clone()?),
                    _ => return None,
                };
                Some(PciRegion {
                    space: b.space,
                    base: b.base,
                    size: b.size,
                    name: name.to_string(),
                    device,
                })
            })
            .collect()
    }
    fn reset(&mut self) {
        self.vga.lock().reset();
        self.sync_lfb();
    }
}

/// The adapter: its state, its PCI function, and the legacy bus devices.
pub struct VgaDevice {
    /// The state (lock it to render or to send mode hints).
    pub vga: Arc<Mutex<Vga>>,
    /// The PCI function (add it to the PCI bus, at 00:02.0 as VirtualBox does).
    pub pci: Arc<Mutex<VgaPci>>,
    ports: SharedDevice,
    legacy: SharedDevice,
}

impl VgaDevice {
    /// Build the adapter with video memory of its own (no VM maps it); `irq` is its INTA
    /// line.
    pub fn new(cfg: VgaConfig, irq: IrqLine) -> Result<Self, PciError> {
        let size = cfg.vram_size.clamp(super::MIN_VRAM, super::MAX_VRAM);
        Self::with_vram(cfg, irq, Vram::standalone(size))
    }

    /// Build the adapter on `vram`, a region of the VM's guest memory
    /// ([`pgm::GuestMemory::register_mmio2`]) that follows BAR0.
    pub fn with_vram(cfg: VgaConfig, irq: IrqLine, vram: Vram) -> Result<Self, PciError> {
        let vga = Arc::new(Mutex::new(Vga::with_vram(&cfg, irq, vram.clone())));
        let vram_size = vga.lock().vram_size();
        let mut pc = PciConfig::new(VBOX_VENDOR_ID, VBOX_VGA_DEVICE_ID, VGA_CLASS, 0);
        pc.add_bar(
            0,
            BarKind::Mem32 { prefetchable: true },
            u64::from(vram_size).next_power_of_two(),
        )?;
        pc.set_interrupt_pin(1);
        let rom = match cfg.rom {
            Some(r) if !r.is_empty() => {
                pc.set_rom((r.len() as u64).next_power_of_two().max(0x800))?;
                Some(Arc::new(Mutex::new(Rom(r))) as SharedDevice)
            }
            _ => None,
        };
        let pci = VgaPci {
            cfg: pc,
            vga: vga.clone(),
            lfb: Arc::new(Mutex::new(Lfb(vga.clone()))),
            rom,
            vram,
            lfb_at: None,
        };
        Ok(VgaDevice {
            ports: Arc::new(Mutex::new(Ports(vga.clone()))),
            legacy: Arc::new(Mutex::new(LegacyMem(vga.clone()))),
            vga,
            pci: Arc::new(Mutex::new(pci)),
        })
    }

    /// Register the legacy ranges (ports and the 0xA0000 window).
    pub fn attach_legacy(&self, pio: &Bus, mmio: &Bus) -> Result<(), BusError> {
        pio.insert(0x1ce, 2, "vga-dispi", self.ports.clone())?;
        pio.insert(0x3b0, 0x30, "vga", self.ports.clone())?;
        mmio.insert(
            LEGACY_MEM_BASE,
            LEGACY_MEM_SIZE,
            "vga-window",
            self.legacy.clone(),
        )
    }
}
