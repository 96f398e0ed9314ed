//! The legacy memory window 0xA0000-0xBFFFF: the VGA's four 64 KiB planes seen through
//! the graphics controller (read modes 0/1, write modes 0-3, set/reset, rotate, logical
//! functions, bit mask, latches) and the sequencer (map mask, chain-4, odd/even).
//!
//! VRAM layout: byte `4 * a + p` holds plane `p` at plane address `a` (the layout QEMU's VGA
//! uses). Chain-4 (mode 13h) addresses then map linearly onto VRAM, as do the VBE banked
//! window and the linear framebuffer.

use super::Vga;

/// Expand the low 4 bits of `m` to a 32-bit mask with 0xFF in each selected plane's byte.
fn expand4(m: u8) -> u32 {
    let mut v = 0u32;
    for p in 0..4 {
        if m & (1 << p) != 0 {
            v |= 0xff << (8 * p);
        }
    }
    v
}

impl Vga {
    /// Map a window offset (0..0x20000 from 0xA0000) to an address inside the selected
    /// memory map, or None when the map does not decode it.
    fn window_address(&self, offset: u32) -> Option<u32> {
        let off = offset & 0x1_ffff;
        match (self.regs.gc[6] >> 2) & 3 {
            0 => Some(off),
            1 => {
                if off >= 0x1_0000 {
                    return None;
                }
                // The VBE bank only applies while a linear mode is on: plain VGA modes
                // (banks are programmed to 0 then anyway) see the first 64 KiB.
                Some(
                    off + if self.dispi.enabled() {
                        self.dispi.bank_offset()
                    } else {
                        0
                    },
                )
            }
            2 => off.checked_sub(0x1_0000).filter(|&a| a < 0x8000),
            _ => off.checked_sub(0x1_8000).filter(|&a| a < 0x8000),
        }
    }

    fn vram_u32(&self, plane_addr: u32) -> u32 {
        self.vram.get_u32(plane_addr as usize * 4).unwrap_or(0)
    }

    /// Read one byte of the legacy window.
    pub fn legacy_read(&mut self, offset: u32) -> u8 {
        let Some(addr) = self.window_address(offset) else {
            return 0xff;
        };
        let seq4 = self.regs.seq[4];
        let gc5 = self.regs.gc[5];
        if seq4 & 0x08 != 0 {
            return self.vram.get(addr as usize).unwrap_or(0xff);
        }
        if gc5 & 0x10 != 0 {
            // Odd/even: bit 0 of the address selects plane 0/1 (or 2/3 with the page bit).
            let plane = (self.regs.gc[4] & 2) | (addr & 1) as u8;
            let i = ((addr & !1) << 1) as usize | plane as usize;
            return self.vram.get(i).unwrap_or(0xff);
        }
        if addr >= 0x1_0000 {
            return 0xff;
        }
        self.latch = self.vram_u32(addr);
        if gc5 & 0x08 == 0 {
            (self.latch >> (8 * u32::from(self.regs.gc[4] & 3))) as u8
        } else {
            // Read mode 1: colour compare against GC2 for the planes GC7 selects; a set bit
            // means "this pixel has the compare colour".
            let diff = (self.latch ^ expand4(self.regs.gc[2])) & expand4(self.regs.gc[7]);
            let any = diff | (diff >> 8) | (diff >> 16) | (diff >> 24);
            !(any as u8)
        }
    }

    /// Write one byte of the legacy window.
    pub fn legacy_write(&mut self, offset: u32, v: u8) {
        let Some(addr) = self.window_address(offset) else {
            return;
        };
        let seq4 = self.regs.seq[4];
        let map_mask = self.regs.seq[2] & 0x0f;
        if seq4 & 0x08 != 0 {
            let plane = addr & 3;
            if map_mask & (1 << plane) != 0 {
                self.vram.set(addr as usize, v);
            }
            return;
        }
        if self.regs.gc[5] & 0x10 != 0 {
            let plane = (self.regs.gc[4] & 2) | (addr & 1) as u8;
            if map_mask & (1 << plane) != 0 {
                let i = ((addr & !1) << 1) as usize | plane as usize;
                self.vram.set(i, v);
            }
            return;
        }
        if addr >= 0x1_0000 {
            return;
        }
        let gc = self.regs.gc;
        let rotate = u32::from(gc[3] & 7);
        let mut bit_mask = gc[8];
        let val: u32 = match gc[5] & 3 {
            0 => {
                let b = v.rotate_right(rotate);
                let mut val = u32::from(b) * 0x0101_0101;
                let set_mask = expand4(gc[1]);
                val = (val & !set_mask) | (expand4(gc[0]) & set_mask);
                self.alu(val, bit_mask)
            }
            1 => self.latch,
            2 => self.alu(expand4(v & 0x0f), bit_mask),
            _ => {
                let b = v.rotate_right(rotate);
                bit_mask &= b;
                self.alu(expand4(gc[0]), bit_mask)
            }
        };
        let wmask = expand4(map_mask);
        let i = addr as usize * 4;
        if let Some(old) = self.vram.get_u32(i) {
            let new = (old & !wmask) | (val & wmask);
            self.vram.write(i, &new.to_le_bytes());
        }
    }

    /// The logical function (GC3 bits 3-4) and bit mask stage of write modes 0, 2 and 3.
    fn alu(&self, val: u32, bit_mask: u8) -> u32 {
        let val = match (self.regs.gc[3] >> 3) & 3 {
            0 => val,
            1 => val & self.latch,
            2 => val | self.latch,
            _ => val ^ self.latch,
        };
        let m = u32::from(bit_mask) * 0x0101_0101;
        (val & m) | (self.latch & !m)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Vga, VgaConfig};

    fn vga() -> Vga {
        Vga::new(&VgaConfig {
            vram_size: 1 << 20,
            ..Default::default()
        })
    }

    #[test]
    fn odd_even_text_layout() {
        let mut v = vga();
        // Text mode as the BIOS sets it: B8000 window, odd/even, planes 0 and 1.
        v.regs.gc[6] = 0x0e;
        v.regs.gc[5] = 0x10;
        v.regs.seq[2] = 0x03;
        v.regs.seq[4] = 0x02;
        v.legacy_write(0x18000, b'H');
        v.legacy_write(0x18001, 0x1f);
        v.legacy_write(0x18002, b'i');
        assert_eq!(v.vram.get(0), Some(b'H'));
        assert_eq!(v.vram.get(1), Some(0x1f));
        assert_eq!(v.vram.get(4), Some(b'i'));
        assert_eq!(v.legacy_read(0x18001), 0x1f);
        assert_eq!(v.legacy_read(0x10000), 0xff, "B0000 not mapped with map 3");
    }

    #[test]
    fn font_load_to_plane_2() {
        let mut v = vga();
        // What a BIOS does before loading the font: sequential plane 2, A0000 map.
        v.regs.seq[2] = 0x04;
        v.regs.seq[4] = 0x06;
        v.regs.gc[4] = 0x02;
        v.regs.gc[5] = 0x00;
        v.regs.gc[6] = 0x04;
        v.regs.gc[8] = 0xff;
        v.legacy_write(0x20 * 32 + 3, 0x5a);
        assert_eq!(v.vram.get((0x20 * 32 + 3) * 4 + 2), Some(0x5a));
        assert_eq!(
            v.vram.get((0x20 * 32 + 3) * 4),
            Some(0),
            "other planes untouched"
        );
        assert_eq!(
            v.legacy_read(0x20 * 32 + 3),
            0x5a,
            "read map select = plane 2"
        );
    }

    #[test]
    fn write_modes_and_latches() {
        let mut v = vga();
        v.regs.seq[2] = 0x0f;
        v.regs.gc[6] = 0x05;
        v.regs.gc[8] = 0xff;
        // Write mode 2: colour 0b0101 to all 8 pixels of address 10.
        v.regs.gc[5] = 0x02;
        v.legacy_write(10, 0x05);
        assert_eq!(v.vram.to_vec(40, 4).unwrap(), &[0xff, 0, 0xff, 0]);
        // Latch it, then write mode 1 copies it to address 20.
        let _ = v.legacy_read(10);
        v.regs.gc[5] = 0x01;
        v.legacy_write(20, 0);
        assert_eq!(v.vram.to_vec(80, 4).unwrap(), &[0xff, 0, 0xff, 0]);
        // Write mode 0 with set/reset on plane 1, bit mask 0x0f, XOR.
        v.regs.gc[5] = 0x00;
        v.regs.gc[0] = 0x02;
        v.regs.gc[1] = 0x02;
        v.regs.gc[3] = 0x18;
        v.regs.gc[8] = 0x0f;
        let _ = v.legacy_read(20);
        v.legacy_write(20, 0xff);
        assert_eq!(v.vram.to_vec(80, 4).unwrap(), &[0xf0, 0x0f, 0xf0, 0x0f]);
        // Read mode 1: compare colour 0b0101 on all planes.
        v.regs.gc[5] = 0x08;
        v.regs.gc[2] = 0x05;
        v.regs.gc[7] = 0x0f;
        assert_eq!(v.legacy_read(10), 0xff);
        assert_eq!(v.legacy_read(20), 0xf0, "pixels 4-7 have colour 5");
    }

    #[test]
    fn chain4_and_vbe_bank() {
        let mut v = vga();
        v.regs.seq[2] = 0x0f;
        v.regs.seq[4] = 0x0e;
        v.regs.gc[6] = 0x05;
        v.legacy_write(321, 7);
        assert_eq!(v.vram.get(321), Some(7));
        v.dispi.index = super::super::vbe::index::XRES;
        v.dispi.write16(640);
        v.dispi.index = super::super::vbe::index::YRES;
        v.dispi.write16(480);
        v.dispi.index = super::super::vbe::index::ENABLE;
        v.dispi.write16(1);
        v.dispi.index = super::super::vbe::index::BANK;
        v.dispi.write16(2);
        v.legacy_write(5, 9);
        assert_eq!(v.vram.get(0x2_0005), Some(9));
        assert_eq!(v.legacy_read(5), 9);
    }

    proptest::proptest! {
        #[test]
        fn any_register_state_any_access_is_safe(
            gc in proptest::array::uniform9(proptest::num::u8::ANY),
            seq2 in proptest::num::u8::ANY, seq4 in proptest::num::u8::ANY,
            ops in proptest::collection::vec((proptest::num::u32::ANY, proptest::num::u8::ANY, proptest::bool::ANY), 0..100)) {
            let mut v = Vga::new(&VgaConfig { vram_size: 256 << 10, ..Default::default() });
            v.regs.gc[..9].copy_from_slice(&gc);
            v.regs.seq[2] = seq2;
            v.regs.seq[4] = seq4;
            for (off, val, w) in ops {
                if w { v.legacy_write(off, val) } else { let _ = v.legacy_read(off); }
            }
        }
    }
}
