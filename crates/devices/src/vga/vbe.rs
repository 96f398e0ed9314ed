//! The VBE "DISPI" interface (Bochs VBE extensions as VirtualBox's VGA has them): index port
//! 0x1CE, data port 0x1CF. A mode is XRES x YRES at BPP with a virtual width (pitch) and an
//! x/y offset into VRAM; ENABLE switches scan-out from the VGA registers to the linear
//! framebuffer at VRAM offset 0.
//!
//! VirtualBox's extras: IDs 0xBE00-0xBE03 (VBOX_VIDEO, HGSMI, ANYX, CFG), index 0xA
//! (VBOX_VIDEO: a 16-bit read is the monitor count), 0xB (FB_BASE_HI), 0xC (CFG), and the
//! 32-bit read of the data port that returns the VRAM size. One deliberate addition: a
//! 16-bit read of index 0xA while a Bochs ID (0xB0C0-0xB0C5) is selected answers the VRAM
//! size in 64 KiB units, as Bochs's VIDEO_MEMORY_64K does, because SeaBIOS's vgabios (the
//! VGA BIOS we ship) sizes the memory that way; VirtualBox's own BIOS and its Additions
//! select a 0xBE0x ID first and get VirtualBox's answer.

/// Index port.
pub const INDEX_PORT: u16 = 0x1ce;
/// Data port.
pub const DATA_PORT: u16 = 0x1cf;

/// Register indexes.
pub mod index {
    /// Interface ID.
    pub const ID: u16 = 0;
    /// Horizontal resolution.
    pub const XRES: u16 = 1;
    /// Vertical resolution.
    pub const YRES: u16 = 2;
    /// Bits per pixel.
    pub const BPP: u16 = 3;
    /// Enable flags.
    pub const ENABLE: u16 = 4;
    /// 64 KiB bank shown at 0xA0000.
    pub const BANK: u16 = 5;
    /// Virtual width (pitch in pixels).
    pub const VIRT_WIDTH: u16 = 6;
    /// Virtual height.
    pub const VIRT_HEIGHT: u16 = 7;
    /// X offset of the visible area.
    pub const X_OFFSET: u16 = 8;
    /// Y offset of the visible area.
    pub const Y_OFFSET: u16 = 9;
    /// VirtualBox command register / monitor count (Bochs: VIDEO_MEMORY_64K).
    pub const VBOX_VIDEO: u16 = 0xa;
    /// High bits of the framebuffer base.
    pub const FB_BASE_HI: u16 = 0xb;
    /// Configuration query (ID 0xBE03 only).
    pub const CFG: u16 = 0xc;
}

/// ENABLE bits.
pub mod enable {
    /// Scan out the linear framebuffer.
    pub const ENABLED: u16 = 0x01;
    /// Reads of XRES/YRES/BPP return the maxima.
    pub const GETCAPS: u16 = 0x02;
    /// 8 bits per DAC channel.
    pub const DAC8: u16 = 0x20;
    /// The linear framebuffer is in use (informational).
    pub const LFB: u16 = 0x40;
    /// Do not clear VRAM on enable.
    pub const NOCLEARMEM: u16 = 0x80;
}

/// Bochs interface IDs.
pub const ID0: u16 = 0xb0c0;
/// Newest Bochs ID a guest may select (SeaBIOS's vgabios asks for it).
pub const ID5: u16 = 0xb0c5;
/// VirtualBox: the VBOX_VIDEO register.
pub const ID_VBOX_VIDEO: u16 = 0xbe00;
/// VirtualBox: HGSMI present.
pub const ID_HGSMI: u16 = 0xbe01;
/// VirtualBox: any pitch.
pub const ID_ANYX: u16 = 0xbe02;
/// VirtualBox: configuration register.
pub const ID_CFG: u16 = 0xbe03;

/// Largest resolution.
pub const MAX_XRES: u16 = 16384;
/// Largest resolution.
pub const MAX_YRES: u16 = 16384;
/// Largest depth.
pub const MAX_BPP: u16 = 32;

/// The DISPI register file and the mode derived from it.
#[derive(Debug, Clone)]
pub struct Dispi {
    /// Selected index.
    pub index: u16,
    regs: [u16; 13],
    vram_size: u32,
    cfg_index: u16,
}

/// A linear mode being scanned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearMode {
    /// Visible width.
    pub width: u32,
    /// Visible height.
    pub height: u32,
    /// Bits per pixel (8, 15, 16, 24, 32).
    pub bpp: u32,
    /// Bytes per line.
    pub pitch: u32,
    /// VRAM offset of the first visible pixel.
    pub start: u32,
}

/// Bytes a pixel of `bpp` takes.
pub fn bytes_per_pixel(bpp: u32) -> u32 {
    match bpp {
        15 | 16 => 2,
        24 => 3,
        32 => 4,
        _ => 1,
    }
}

impl Dispi {
    /// Power-on state for `vram_size` bytes of VRAM.
    pub fn new(vram_size: u32) -> Self {
        let mut d = Dispi {
            index: 0,
            regs: [0; 13],
            vram_size,
            cfg_index: 0,
        };
        d.regs[index::ID as usize] = ID0;
        d.regs[index::BPP as usize] = 8;
        d
    }

    /// Raw register value.
    pub fn reg(&self, i: u16) -> u16 {
        self.regs.get(i as usize).copied().unwrap_or(0)
    }

    /// The selected interface ID.
    pub fn id(&self) -> u16 {
        self.reg(index::ID)
    }

    /// True while the linear framebuffer is scanned out.
    pub fn enabled(&self) -> bool {
        self.reg(index::ENABLE) & enable::ENABLED != 0
    }

    /// True when the DAC uses 8 bits per channel.
    pub fn dac8(&self) -> bool {
        self.reg(index::ENABLE) & enable::DAC8 != 0
    }

    /// Offset of the 64 KiB bank shown in the legacy window.
    pub fn bank_offset(&self) -> u32 {
        u32::from(self.reg(index::BANK)) << 16
    }

    /// The active linear mode, if enabled.
    pub fn mode(&self) -> Option<LinearMode> {
        if !self.enabled() {
            return None;
        }
        let bpp = u32::from(self.reg(index::BPP));
        let bypp = bytes_per_pixel(bpp);
        let width = u32::from(self.reg(index::XRES));
        let height = u32::from(self.reg(index::YRES));
        let pitch = u32::from(self.reg(index::VIRT_WIDTH)).max(width) * bypp;
        let start = u32::from(self.reg(index::Y_OFFSET)) * pitch
            + u32::from(self.reg(index::X_OFFSET)) * bypp;
        (width > 0 && height > 0).then_some(LinearMode {
            width,
            height,
            bpp,
            pitch,
            start,
        })
    }

    /// 16-bit read of the data port.
    pub fn read16(&self) -> u16 {
        let i = self.index;
        let caps = self.reg(index::ENABLE) & enable::GETCAPS != 0;
        match i {
            index::XRES if caps => MAX_XRES,
            index::YRES if caps => MAX_YRES,
            index::BPP if caps => MAX_BPP,
            index::VBOX_VIDEO => {
                if (ID0..=ID5).contains(&self.id()) {
                    (self.vram_size >> 16).min(0xffff) as u16
                } else {
                    1
                }
            }
            index::CFG => self.cfg_index,
            _ => self.reg(i),
        }
    }

    /// 32-bit read of the data port: the VRAM size, or the CFG value with ID 0xBE03.
    pub fn read32(&self) -> u32 {
        if self.id() == ID_CFG && self.index == index::CFG {
            return self.cfg_value();
        }
        self.vram_size
    }

    fn cfg_value(&self) -> u32 {
        // VirtualBox's VBE_DISPI_CFG_ID_*: 0 version, 1 VRAM size, 2 3D, 3 VMSVGA, 4 VMSVGA
        // DX. We answer the version and VRAM size and "no" to the rest.
        match self.cfg_index {
            0 => 1,
            1 => self.vram_size,
            _ => 0,
        }
    }

    /// 16-bit write of the data port: what it means for the picture and VRAM. A write of
    /// an unknown ID leaves the ID register alone (that is how guests probe).
    pub fn write16(&mut self, v: u16) -> DispiEffect {
        let i = self.index;
        let mut effect = DispiEffect::default();
        match i {
            index::ID if (ID0..=ID5).contains(&v) || (ID_VBOX_VIDEO..=ID_CFG).contains(&v) => {
                self.regs[0] = v;
            }
            index::XRES => {
                self.regs[1] = v.min(MAX_XRES);
                effect.mode_changed = true;
            }
            index::YRES => {
                self.regs[2] = v.min(MAX_YRES);
                effect.mode_changed = true;
            }
            index::BPP => {
                let bpp = if v == 0 { 8 } else { v };
                if matches!(bpp, 4 | 8 | 15 | 16 | 24 | 32) {
                    self.regs[3] = bpp;
                }
                effect.mode_changed = true;
            }
            index::ENABLE => {
                let was = self.enabled();
                self.regs[4] = v;
                if v & enable::ENABLED != 0 && !was {
                    // Enabling resets the virtual geometry as Bochs/VirtualBox do.
                    self.regs[index::VIRT_WIDTH as usize] = self.regs[1];
                    self.regs[index::X_OFFSET as usize] = 0;
                    self.regs[index::Y_OFFSET as usize] = 0;
                    self.regs[index::BANK as usize] = 0;
                    effect.clear = v & enable::NOCLEARMEM == 0;
                }
                effect.mode_changed = true;
            }
            index::BANK => {
                let max_bank = (self.vram_size >> 16).saturating_sub(1);
                if u32::from(v) <= max_bank {
                    self.regs[5] = v;
                }
            }
            index::VIRT_WIDTH | index::X_OFFSET | index::Y_OFFSET => {
                self.regs[i as usize] = v;
                effect.mode_changed = true;
            }
            index::VBOX_VIDEO | index::FB_BASE_HI => {}
            index::CFG => self.cfg_index = v,
            _ => {}
        }
        self.fixup();
        effect
    }

    /// Keep the derived registers consistent and inside VRAM (guests write any values).
    fn fixup(&mut self) {
        let bypp = bytes_per_pixel(u32::from(self.regs[3]));
        let xres = u32::from(self.regs[1]);
        let vw = u32::from(self.regs[6]).max(xres).min(u32::from(MAX_XRES));
        self.regs[6] = vw as u16;
        let line = (vw * bypp).max(1);
        let vh = (self.vram_size / line).min(0xffff);
        self.regs[7] = vh as u16;
        if u32::from(self.regs[2]) > vh {
            self.regs[2] = vh as u16;
        }
        if u32::from(self.regs[8]) + xres > vw {
            self.regs[8] = (vw - xres) as u16;
        }
        let yres = u32::from(self.regs[2]);
        if u32::from(self.regs[9]) + yres > vh {
            self.regs[9] = vh.saturating_sub(yres) as u16;
        }
    }
}

/// What a DISPI write means for the rest of the adapter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispiEffect {
    /// The visible mode may have changed.
    pub mode_changed: bool,
    /// VRAM must be cleared (linear mode just enabled).
    pub clear: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(d: &mut Dispi, i: u16, v: u16) -> DispiEffect {
        d.index = i;
        d.write16(v)
    }

    #[test]
    fn id_probe_accepts_known_ids_only() {
        let mut d = Dispi::new(16 << 20);
        set(&mut d, index::ID, ID_HGSMI);
        assert_eq!(d.read16(), ID_HGSMI);
        set(&mut d, index::ID, 0x1234);
        assert_eq!(d.read16(), ID_HGSMI, "unknown ID leaves the register");
        assert_eq!(d.read32(), 16 << 20);
        d.index = index::VBOX_VIDEO;
        assert_eq!(d.read16(), 1, "monitor count for VirtualBox IDs");
        set(&mut d, index::ID, ID5);
        d.index = index::VBOX_VIDEO;
        assert_eq!(
            d.read16(),
            256,
            "Bochs VIDEO_MEMORY_64K for SeaBIOS's vgabios"
        );
    }

    #[test]
    fn mode_set_and_caps() {
        let mut d = Dispi::new(16 << 20);
        set(&mut d, index::XRES, 1024);
        set(&mut d, index::YRES, 768);
        set(&mut d, index::BPP, 32);
        let e = set(&mut d, index::ENABLE, enable::ENABLED | enable::LFB);
        assert!(e.clear && e.mode_changed);
        let m = d.mode().unwrap();
        assert_eq!(
            (m.width, m.height, m.bpp, m.pitch, m.start),
            (1024, 768, 32, 4096, 0)
        );
        set(&mut d, index::Y_OFFSET, 10);
        assert_eq!(d.mode().unwrap().start, 40960);
        set(&mut d, index::ENABLE, enable::ENABLED | enable::GETCAPS);
        d.index = index::XRES;
        assert_eq!(d.read16(), MAX_XRES);
        set(&mut d, index::ENABLE, 0);
        assert!(d.mode().is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_writes_keep_the_mode_inside_vram(ops in proptest::collection::vec((0u16..16, proptest::num::u16::ANY), 0..64)) {
            let vram = 4u32 << 20;
            let mut d = Dispi::new(vram);
            for (i, v) in ops {
                set(&mut d, i, v);
                let _ = d.read16();
                if let Some(m) = d.mode() {
                    let end = u64::from(m.start) + u64::from(m.pitch) * u64::from(m.height - 1)
                        + u64::from(m.width) * u64::from(bytes_per_pixel(m.bpp));
                    proptest::prop_assert!(end <= u64::from(vram), "{m:?}");
                }
            }
        }
    }
}
