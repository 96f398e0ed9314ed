//! The legacy VGA register file (IBM VGA Technical Reference; ports 0x3B4/0x3B5/0x3BA in
//! monochrome emulation, 0x3C0-0x3CF, 0x3D4/0x3D5/0x3DA in colour emulation): attribute
//! controller, miscellaneous output, sequencer, DAC, graphics controller and CRT
//! controller. Only state lives here; the memory window and scan-out read it.

/// Attribute controller palette-address-source bit: clear while the BIOS reprograms the
/// palette, and the screen shows the border colour (we show black).
pub const AR_PAS: u8 = 0x20;

/// Registers of one VGA adapter.
#[derive(Debug, Clone)]
pub struct VgaRegs {
    /// Miscellaneous output (bit 0: colour I/O addresses 0x3Dx).
    pub misc: u8,
    /// Feature control.
    pub feature: u8,
    /// Sequencer index.
    pub seq_index: u8,
    /// Sequencer registers 0-7.
    pub seq: [u8; 8],
    /// Graphics controller index.
    pub gc_index: u8,
    /// Graphics controller registers 0-8 (and spares).
    pub gc: [u8; 16],
    /// CRT controller index.
    pub crtc_index: u8,
    /// CRT controller registers 0-0x18 (and spares).
    pub crtc: [u8; 0x40],
    /// Attribute controller index (with the PAS bit).
    pub attr_index: u8,
    /// Attribute controller registers 0-0x14.
    pub attr: [u8; 0x15],
    /// Attribute flip-flop: false = next write to 0x3C0 is an index.
    pub attr_data_next: bool,
    /// DAC read index.
    pub dac_read: u8,
    /// DAC write index.
    pub dac_write: u8,
    /// Component (0-2) of the current DAC entry.
    pub dac_sub: u8,
    /// Last DAC operation was a read (0x3C7 state bits).
    pub dac_reading: bool,
    /// Entry being written.
    pub dac_latch: [u8; 3],
    /// 256 DAC entries, 3 components each (6 or 8 bits).
    pub dac: [u8; 768],
    /// PEL mask.
    pub pel_mask: u8,
    /// Input status 1 retrace toggle.
    pub st01: u8,
    /// Video subsystem enable (0x3C3).
    pub vse: u8,
}

impl Default for VgaRegs {
    fn default() -> Self {
        VgaRegs {
            misc: 0,
            feature: 0,
            seq_index: 0,
            seq: [0; 8],
            gc_index: 0,
            gc: [0; 16],
            crtc_index: 0,
            crtc: [0; 0x40],
            attr_index: 0,
            attr: [0; 0x15],
            attr_data_next: false,
            dac_read: 0,
            dac_write: 0,
            dac_sub: 0,
            dac_reading: false,
            dac_latch: [0; 3],
            dac: [0; 768],
            pel_mask: 0xff,
            st01: 0,
            vse: 1,
        }
    }
}

/// What a register write means for the picture.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RegEffect {
    /// Palette, geometry or mode registers changed: redraw everything.
    pub redraw: bool,
}

impl VgaRegs {
    /// True when CRTC and input status live at 0x3Dx (colour), false for 0x3Bx.
    pub fn color(&self) -> bool {
        self.misc & 1 != 0
    }

    /// Read one byte port (0x3B0-0x3DF).
    pub fn read(&mut self, port: u16) -> u8 {
        let color = self.color();
        match port {
            0x3c0 => self.attr_index,
            0x3c1 => self
                .attr
                .get((self.attr_index & 0x1f) as usize)
                .copied()
                .unwrap_or(0),
            0x3c2 => 0x10, // input status 0: switch sense as an attached colour monitor reads
            0x3c3 => self.vse,
            0x3c4 => self.seq_index,
            0x3c5 => self.seq.get(self.seq_index as usize).copied().unwrap_or(0),
            0x3c6 => self.pel_mask,
            0x3c7 => {
                if self.dac_reading {
                    3
                } else {
                    0
                }
            }
            0x3c8 => self.dac_write,
            0x3c9 => {
                let i = usize::from(self.dac_read) * 3 + usize::from(self.dac_sub);
                let v = self.dac.get(i).copied().unwrap_or(0);
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    self.dac_sub = 0;
                    self.dac_read = self.dac_read.wrapping_add(1);
                }
                v
            }
            0x3ca => self.feature,
            0x3cc => self.misc,
            0x3ce => self.gc_index,
            0x3cf => self.gc.get(self.gc_index as usize).copied().unwrap_or(0),
            0x3b4 | 0x3d4 if (port == 0x3d4) == color => self.crtc_index,
            0x3b5 | 0x3d5 if (port == 0x3d5) == color => self
                .crtc
                .get(self.crtc_index as usize)
                .copied()
                .unwrap_or(0),
            0x3ba | 0x3da if (port == 0x3da) == color => {
                // Reading input status 1 resets the attribute flip-flop. The retrace bits
                // toggle on every read so that polling loops (wait for retrace start, then
                // end) finish at once.
                self.attr_data_next = false;
                self.st01 ^= 0x09;
                self.st01
            }
            _ => 0xff,
        }
    }

    /// Write one byte port.
    pub fn write(&mut self, port: u16, v: u8) -> RegEffect {
        let color = self.color();
        let mut redraw = false;
        match port {
            0x3c0 => {
                if !self.attr_data_next {
                    let old = self.attr_index & AR_PAS;
                    self.attr_index = v & 0x3f;
                    redraw = old != (v & AR_PAS);
                } else {
                    let i = (self.attr_index & 0x1f) as usize;
                    if let Some(r) = self.attr.get_mut(i) {
                        *r = match i {
                            0..=0xf => v & 0x3f,
                            0x14 => v & 0x0f,
                            _ => v,
                        };
                        redraw = true;
                    }
                }
                self.attr_data_next = !self.attr_data_next;
            }
            0x3c2 => {
                self.misc = v;
                redraw = true;
            }
            0x3c3 => self.vse = v & 1,
            0x3c4 => self.seq_index = v & 7,
            0x3c5 => {
                if let Some(r) = self.seq.get_mut(self.seq_index as usize) {
                    *r = v;
                    redraw = true;
                }
            }
            0x3c6 => {
                self.pel_mask = v;
                redraw = true;
            }
            0x3c7 => {
                self.dac_read = v;
                self.dac_sub = 0;
                self.dac_reading = true;
            }
            0x3c8 => {
                self.dac_write = v;
                self.dac_sub = 0;
                self.dac_reading = false;
            }
            0x3c9 => {
                let s = usize::from(self.dac_sub);
                self.dac_latch[s] = v;
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    let base = usize::from(self.dac_write) * 3;
                    self.dac[base..base + 3].copy_from_slice(&self.dac_latch);
                    self.dac_sub = 0;
                    self.dac_write = self.dac_write.wrapping_add(1);
                    redraw = true;
                }
            }
            0x3ce => self.gc_index = v & 0x0f,
            0x3cf => {
                if let Some(r) = self.gc.get_mut(self.gc_index as usize) {
                    *r = v;
                    redraw = true;
                }
            }
            0x3b4 | 0x3d4 if (port == 0x3d4) == color => self.crtc_index = v & 0x3f,
            0x3b5 | 0x3d5 if (port == 0x3d5) == color => {
                let i = self.crtc_index as usize;
                // CR7 bit 4 and CR0-CR7 are write-protected by CR11 bit 7 (except CR7's
                // line compare bit): BIOSes clear the bit before a mode set.
                let protected = self.crtc[0x11] & 0x80 != 0 && i <= 7;
                if let Some(r) = self.crtc.get_mut(i) {
                    if protected {
                        if i == 7 {
                            *r = (*r & !0x10) | (v & 0x10);
                        }
                    } else {
                        *r = v;
                    }
                    redraw = true;
                }
            }
            0x3ba | 0x3da if (port == 0x3da) == color => self.feature = v,
            _ => {}
        }
        RegEffect { redraw }
    }

    /// Start address of the display in plane addresses.
    pub fn start_address(&self) -> u32 {
        (u32::from(self.crtc[0x0c]) << 8) | u32::from(self.crtc[0x0d])
    }

    /// Distance between lines (character rows in text mode) in plane addresses.
    pub fn line_offset(&self) -> u32 {
        u32::from(self.crtc[0x13]) * 2
    }

    /// Horizontal display end in characters.
    pub fn chars_per_line(&self) -> u32 {
        u32::from(self.crtc[0x01]) + 1
    }

    /// Vertical display end in scanlines.
    pub fn vdisplay(&self) -> u32 {
        let c7 = u32::from(self.crtc[0x07]);
        (u32::from(self.crtc[0x12]) | ((c7 & 0x02) << 7) | ((c7 & 0x40) << 3)) + 1
    }

    /// Maximum scan line field + 1 (character height, or line repeat in graphics).
    pub fn char_height(&self) -> u32 {
        u32::from(self.crtc[0x09] & 0x1f) + 1
    }

    /// Character cell width: 8 or 9 dots (sequencer clocking mode bit 0).
    pub fn char_width(&self) -> u32 {
        if self.seq[1] & 1 != 0 {
            8
        } else {
            9
        }
    }

    /// A DAC entry as 0x00RRGGBB; `dac8` when the DAC holds 8-bit components.
    pub fn dac_rgb(&self, index: u8, dac8: bool) -> u32 {
        let i = usize::from(index & self.pel_mask) * 3;
        let c = |v: u8| -> u32 {
            if dac8 {
                u32::from(v)
            } else {
                // 6 -> 8 bits, replicating the top bits so 0x3F becomes 0xFF.
                let v = u32::from(v & 0x3f);
                (v << 2) | (v >> 4)
            }
        };
        (c(self.dac[i]) << 16) | (c(self.dac[i + 1]) << 8) | c(self.dac[i + 2])
    }

    /// The DAC index a 4-bit attribute colour maps to (attribute palette + colour select).
    pub fn attr_to_dac(&self, color: u8) -> u8 {
        let p = self.attr[usize::from(color & 0x0f)];
        let mode = self.attr[0x10];
        let sel = self.attr[0x14];
        if mode & 0x80 != 0 {
            // P5-P4 from the colour select register.
            (p & 0x0f) | ((sel & 0x03) << 4) | ((sel & 0x0c) << 4)
        } else {
            (p & 0x3f) | ((sel & 0x0c) << 4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_flip_flop_and_status_reset() {
        let mut r = VgaRegs {
            misc: 1,
            ..Default::default()
        };
        r.write(0x3c0, 0x21);
        r.write(0x3c0, 0x3f);
        assert_eq!(r.attr[1], 0x3f);
        assert_eq!(r.read(0x3c0), 0x21);
        r.write(0x3c0, 0x02); // index, PAS off
        r.read(0x3da); // resets the flip-flop
        r.write(0x3c0, 0x23); // again an index
        r.write(0x3c0, 0x05);
        assert_eq!(r.attr[3], 0x05);
        assert_eq!(r.attr[2], 0);
    }

    #[test]
    fn retrace_toggles_and_mono_ports_follow_misc() {
        let mut r = VgaRegs {
            misc: 1,
            ..Default::default()
        };
        let a = r.read(0x3da);
        let b = r.read(0x3da);
        assert_ne!(a & 8, b & 8);
        assert_eq!(r.read(0x3ba), 0xff, "mono status unmapped in colour mode");
        r.write(0x3d4, 0x0e);
        r.write(0x3d5, 0x12);
        assert_eq!(r.crtc[0x0e], 0x12);
        r.write(0x3b4, 0x0f);
        assert_eq!(r.crtc_index, 0x0e, "mono CRTC ignored in colour mode");
    }

    #[test]
    fn dac_auto_increments() {
        let mut r = VgaRegs::default();
        r.write(0x3c8, 254);
        for v in [1, 2, 3, 4, 5, 6, 7] {
            r.write(0x3c9, v);
        }
        assert_eq!(&r.dac[254 * 3..], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.dac[0], 0, "index wrapped to 0; its entry is not complete");
        r.write(0x3c7, 255);
        assert_eq!([r.read(0x3c9), r.read(0x3c9), r.read(0x3c9)], [4, 5, 6]);
        r.dac[0..3].copy_from_slice(&[0x3f, 0, 0x20]);
        assert_eq!(r.dac_rgb(0, false), 0xff0082);
    }

    #[test]
    fn crtc_write_protect() {
        let mut r = VgaRegs {
            misc: 1,
            ..Default::default()
        };
        r.write(0x3d4, 0x11);
        r.write(0x3d5, 0x80);
        r.write(0x3d4, 0x01);
        r.write(0x3d5, 0x4f);
        assert_eq!(r.crtc[1], 0);
        r.write(0x3d4, 0x11);
        r.write(0x3d5, 0x00);
        r.write(0x3d4, 0x01);
        r.write(0x3d5, 0x4f);
        assert_eq!(r.crtc[1], 0x4f);
    }
}
