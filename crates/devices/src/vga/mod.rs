//! VirtualBox's graphics adapter "VBoxVGA": a VGA (text and planar modes through the
//! legacy registers and the 0xA0000 window) with the Bochs/VirtualBox VBE "DISPI"
//! extensions, a linear framebuffer in PCI BAR0, the VGA BIOS as the PCI expansion ROM,
//! and VirtualBox's HGSMI/VBVA channel for the `vboxvideo` driver.
//!
//! Pieces: [`regs`] the register file, [`planar`] the legacy memory window, [`vbe`] the
//! DISPI registers, [`hgsmi`] the HGSMI/VBVA host side, [`render`] the scan-out into a host
//! [`Framebuffer`], [`pci`] the PCI function (80EE:BEEF, class 0300) and the bus adapters,
//! [`vram`] the video memory: guest RAM owned by the adapter (pgm's MMIO2), which the guest
//! writes through BAR0 without exits while pgm records the dirty pages.
//! [`Vga`] is the adapter's state behind one lock; the buses reach it through the adapters
//! in [`pci`].

mod dirty;
pub mod hgsmi;
pub mod pci;
pub mod planar;
pub mod regs;
pub mod render;
pub mod vbe;
pub mod vram;

pub use dirty::DirtyBitmap;
pub use pci::{patch_rom_ids, VgaDevice, VgaPci};
pub use render::{Framebuffer, Rect, Renderer};
pub use vram::Vram;

use pdm::IrqLine;

/// VirtualBox's PCI vendor ID.
pub const VBOX_VENDOR_ID: u16 = 0x80ee;
/// The VBoxVGA device ID.
pub const VBOX_VGA_DEVICE_ID: u16 = 0xbeef;
/// PCI class: display controller, VGA compatible.
pub const VGA_CLASS: u32 = 0x03_0000;

/// Smallest VRAM (VirtualBox's minimum is 1 MiB; the planes alone need 256 KiB).
pub const MIN_VRAM: u32 = 1 << 20;
/// Largest VRAM (VirtualBox allows 256 MiB for VBoxVGA).
pub const MAX_VRAM: u32 = 256 << 20;

/// How the adapter is built.
#[derive(Debug, Clone)]
pub struct VgaConfig {
    /// VRAM in bytes (clamped to [`MIN_VRAM`]..=[`MAX_VRAM`]).
    pub vram_size: u32,
    /// The VGA BIOS shown through the expansion ROM BAR (its PCI data structure should
    /// carry 80EE:BEEF; see [`patch_rom_ids`]).
    pub rom: Option<Vec<u8>>,
    /// Monitors reported to the guest.
    pub monitors: u32,
}

impl Default for VgaConfig {
    fn default() -> Self {
        VgaConfig {
            vram_size: 16 << 20,
            rom: None,
            monitors: 1,
        }
    }
}

/// The adapter's state: registers, VRAM, HGSMI, and what changed since the last refresh.
pub struct Vga {
    /// Legacy VGA registers.
    pub regs: regs::VgaRegs,
    /// VBE DISPI registers.
    pub dispi: vbe::Dispi,
    /// Video memory.
    pub vram: Vram,
    /// Pages written since the last refresh (merged from pgm's bits at each refresh).
    pub dirty: DirtyBitmap,
    /// A register change requires a full redraw.
    pub redraw: bool,
    /// The graphics controller latches.
    latch: u32,
    /// HGSMI / VBVA host state.
    pub hgsmi: hgsmi::Hgsmi,
    irq: IrqLine,
}

impl std::fmt::Debug for Vga {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vga")
            .field("vram", &self.vram.len())
            .field("dispi", &self.dispi)
            .finish()
    }
}

impl Vga {
    /// A powered-on adapter with no interrupt line.
    pub fn new(cfg: &VgaConfig) -> Self {
        Self::with_irq(cfg, IrqLine::disconnected())
    }

    /// A powered-on adapter raising `irq` for HGSMI host events.
    pub fn with_irq(cfg: &VgaConfig, irq: IrqLine) -> Self {
        let size = cfg.vram_size.clamp(MIN_VRAM, MAX_VRAM);
        Self::with_vram(cfg, irq, Vram::standalone(size))
    }

    /// A powered-on adapter on `vram` (its size wins over the configuration's).
    pub fn with_vram(cfg: &VgaConfig, irq: IrqLine, vram: Vram) -> Self {
        let size = vram.len() as u32;
        Vga {
            regs: regs::VgaRegs::default(),
            dispi: vbe::Dispi::new(size),
            dirty: DirtyBitmap::new(size as usize),
            vram,
            redraw: true,
            latch: 0,
            hgsmi: hgsmi::Hgsmi::new(cfg.monitors.clamp(1, 64)),
            irq,
        }
    }

    /// VRAM size in bytes.
    pub fn vram_size(&self) -> u32 {
        self.vram.len() as u32
    }

    /// System reset: registers back to power-on, VRAM kept (as on real hardware).
    pub fn reset(&mut self) {
        self.regs = regs::VgaRegs::default();
        self.dispi = vbe::Dispi::new(self.vram_size());
        self.hgsmi.reset();
        self.irq.set(false);
        self.redraw = true;
    }

    /// A port read (0x1CE-0x1CF, 0x3B0-0x3DF) of 1, 2 or 4 bytes.
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        match port {
            vbe::INDEX_PORT => {
                let v = self.dispi.index.to_le_bytes();
                for (d, s) in data.iter_mut().zip(v) {
                    *d = s;
                }
            }
            vbe::DATA_PORT => {
                if data.len() == 4 {
                    data.copy_from_slice(&self.dispi.read32().to_le_bytes());
                } else {
                    let v = self.dispi.read16().to_le_bytes();
                    for (d, s) in data.iter_mut().zip(v) {
                        *d = s;
                    }
                }
            }
            hgsmi::HOST_PORT | hgsmi::GUEST_PORT if data.len() == 4 => {
                let v = if port == hgsmi::HOST_PORT {
                    self.hgsmi.host_port_read()
                } else {
                    0xffff_ffff
                };
                data.copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                for (i, d) in data.iter_mut().enumerate() {
                    *d = self.regs.read(port.wrapping_add(i as u16));
                }
            }
        }
    }

    /// A port write.
    pub fn port_write(&mut self, port: u16, data: &[u8]) {
        let mut v = [0u8; 4];
        v[..data.len().min(4)].copy_from_slice(&data[..data.len().min(4)]);
        let word = u32::from_le_bytes(v);
        match port {
            vbe::INDEX_PORT => self.dispi.index = word as u16,
            vbe::DATA_PORT => {
                let e = self.dispi.write16(word as u16);
                if e.clear {
                    self.vram.fill(0);
                }
                if e.mode_changed {
                    self.redraw = true;
                    if self.dispi.enabled() {
                        // As VirtualBox/Bochs do: a linear mode puts the VGA in graphics
                        // mode with chain-4 and the 64 KiB window at 0xA0000, so banked
                        // access through the window reaches VRAM linearly.
                        self.regs.gc[6] = (self.regs.gc[6] & !0x0c) | 0x05;
                        self.regs.seq[4] |= 0x08;
                        self.regs.seq[2] |= 0x0f;
                    }
                }
            }
            hgsmi::GUEST_PORT if data.len() == 4 => {
                let mut ctx = hgsmi::Ctx {
                    vram: &self.vram,
                    irq: &self.irq,
                };
                if self.hgsmi.guest_write(word, &mut ctx) {
                    self.redraw = true;
                }
            }
            hgsmi::HOST_PORT if data.len() == 4 && word == 0xffff_ffff => {
                let mut ctx = hgsmi::Ctx {
                    vram: &self.vram,
                    irq: &self.irq,
                };
                self.hgsmi.ack(&mut ctx);
            }
            _ => {
                for (i, &b) in data.iter().enumerate() {
                    if self.regs.write(port.wrapping_add(i as u16), b).redraw {
                        self.redraw = true;
                    }
                }
            }
        }
    }

    /// A read of the linear framebuffer (BAR0) at `offset` that reached the adapter as
    /// MMIO: the part of the BAR past the video memory, or all of it while pgm could not
    /// map the memory there (reads past the end are open bus).
    pub fn lfb_read(&self, offset: u64, data: &mut [u8]) {
        let Ok(o) = usize::try_from(offset) else {
            data.fill(0xff);
            return;
        };
        if self.vram.read(o, data) {
            return;
        }
        for (i, d) in data.iter_mut().enumerate() {
            *d = o
                .checked_add(i)
                .and_then(|o| self.vram.get(o))
                .unwrap_or(0xff);
        }
    }

    /// A write to the linear framebuffer (BAR0) at `offset` that reached the adapter as
    /// MMIO (see [`Vga::lfb_read`]); pgm marks the pages dirty.
    pub fn lfb_write(&mut self, offset: u64, data: &[u8]) {
        let Ok(o) = usize::try_from(offset) else {
            return;
        };
        if self.vram.write(o, data) {
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            if let Some(a) = o.checked_add(i) {
                self.vram.set(a, b);
            }
        }
    }

    /// Take the pages pgm saw written since the last call into [`Vga::dirty`].
    pub fn collect_dirty(&mut self) {
        self.vram.collect_dirty(&mut self.dirty);
    }

    /// The mode `vboxvideo` set through HGSMI when the VBE registers are off.
    fn hgsmi_mode(&self) -> Option<vbe::LinearMode> {
        self.hgsmi.screen_mode(0, self.vram_size())
    }

    /// Ask the guest for a new mode (VirtualBox's video mode hint). Returns true when the
    /// guest's driver listens for hints (HGSMI with IRQ and mode-hint capabilities).
    pub fn set_mode_hint(&mut self, width: u32, height: u32, bpp: u32) -> bool {
        let mut ctx = hgsmi::Ctx {
            vram: &self.vram,
            irq: &self.irq,
        };
        self.hgsmi.set_mode_hint(0, width, height, bpp, &mut ctx)
    }

    /// The guest pointer shape reported through HGSMI, if any changed since the last call.
    pub fn take_cursor(&mut self) -> Option<hgsmi::Cursor> {
        self.hgsmi.take_cursor()
    }
}

#[cfg(test)]
mod tests;
