//! Segmentation: descriptor tables, segment register loads with the protected-mode checks
//! OSes depend on, and system segment (LDT/TSS) loads.

use crate::cpu::{fault, gp0, sr, vec, Cpu, R};
use sup::Segment;

/// A raw 8-byte descriptor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Desc {
    pub lo: u32,
    pub hi: u32,
}

impl Desc {
    /// Present bit.
    pub fn present(&self) -> bool {
        self.hi & (1 << 15) != 0
    }
    /// DPL.
    pub fn dpl(&self) -> u8 {
        ((self.hi >> 13) & 3) as u8
    }
    /// S bit (code/data).
    pub fn s(&self) -> bool {
        self.hi & (1 << 12) != 0
    }
    /// Type field.
    pub fn ty(&self) -> u32 {
        (self.hi >> 8) & 0xf
    }
    /// Code segment.
    pub fn code(&self) -> bool {
        self.s() && self.ty() & 8 != 0
    }
    /// Base address (32 bits).
    pub fn base(&self) -> u64 {
        u64::from((self.lo >> 16) | ((self.hi & 0xff) << 16) | (self.hi & 0xff00_0000))
    }
    /// Limit scaled by granularity.
    pub fn limit(&self) -> u32 {
        let l = (self.lo & 0xffff) | (self.hi & 0xf_0000);
        if self.hi & (1 << 23) != 0 {
            (l << 12) | 0xfff
        } else {
            l
        }
    }
    /// Convert to a segment cache entry.
    pub fn to_seg(self, selector: u16) -> Segment {
        Segment {
            selector,
            base: self.base(),
            limit: self.limit(),
            attr: Segment::attr_from_descriptor(self.hi),
        }
    }
}

/// A null/unusable segment with the given selector.
pub(crate) fn null_seg(selector: u16) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: 0,
        attr: Segment::UNUSABLE,
    }
}

impl Cpu {
    /// Linear address of the descriptor for `sel` (GDT or LDT), checking the table limit.
    fn desc_addr(&self, sel: u16) -> R<u64> {
        let idx = u64::from(sel & !7);
        let (base, limit) = if sel & 4 != 0 {
            let l = &self.s.ldtr;
            if l.attr & Segment::UNUSABLE != 0 || l.attr & Segment::P == 0 {
                return Err(fault(vec::GP, u32::from(sel & !3)));
            }
            (l.base, u64::from(l.limit))
        } else {
            (self.s.gdtr.base, u64::from(self.s.gdtr.limit))
        };
        if idx + 7 > limit {
            return Err(fault(vec::GP, u32::from(sel & !3)));
        }
        Ok(base.wrapping_add(idx))
    }

    /// Read the descriptor for `sel`.
    pub(crate) fn read_desc(&mut self, sel: u16) -> R<Desc> {
        let a = self.desc_addr(sel)?;
        let v = self.sys_read(a, 8)?;
        Ok(Desc {
            lo: v as u32,
            hi: (v >> 32) as u32,
        })
    }

    /// Read the upper half of a 16-byte system descriptor (long mode).
    pub(crate) fn read_desc_high(&mut self, sel: u16) -> R<u64> {
        let a = self.desc_addr(sel)?;
        if sel & 4 == 0 && u64::from(sel & !7) + 15 > u64::from(self.s.gdtr.limit) {
            return Err(fault(vec::GP, u32::from(sel & !3)));
        }
        Ok(self.sys_read(a.wrapping_add(8), 4)? & 0xffff_ffff)
    }

    /// Set the accessed bit of a code/data descriptor.
    pub(crate) fn set_accessed(&mut self, sel: u16, d: Desc) -> R<()> {
        if d.hi & (1 << 8) == 0 {
            let a = self.desc_addr(sel)?;
            self.sys_write(a + 5, 1, u64::from((d.hi >> 8) as u8 | 1))?;
        }
        Ok(())
    }

    /// Load a data segment register (or SS) with `sel` as MOV/POP/LxS do.
    pub(crate) fn load_seg(&mut self, i: usize, sel: u16) -> R<()> {
        if !self.pmode() || self.s.rflags & crate::flags::fl::VM != 0 {
            let s = self.seg_mut(i);
            s.selector = sel;
            s.base = u64::from(sel) << 4;
            if i == sr::CS {
                self.update_mode();
            }
            return Ok(());
        }
        let cpl = self.cpl();
        let rpl = (sel & 3) as u8;
        if sel & !3 == 0 {
            if i == sr::SS && !(self.long64() && cpl != 3 && rpl == cpl) {
                return Err(gp0());
            }
            let mut n = null_seg(sel);
            if i == sr::SS {
                // A null SS in 64-bit mode keeps DPL = CPL so CPL stays readable.
                n.attr |= u32::from(cpl) << 5;
            }
            *self.seg_mut(i) = n;
            return Ok(());
        }
        let d = self.read_desc(sel)?;
        let err = u32::from(sel & !3);
        if i == sr::SS {
            if rpl != cpl || !d.s() || d.code() || d.ty() & 2 == 0 || d.dpl() != cpl {
                return Err(fault(vec::GP, err));
            }
            if !d.present() {
                return Err(fault(vec::SS, err));
            }
        } else {
            if !d.s() || (d.code() && d.ty() & 2 == 0) {
                return Err(fault(vec::GP, err));
            }
            let conforming_code = d.code() && d.ty() & 4 != 0;
            if !conforming_code && (rpl > d.dpl() || cpl > d.dpl()) {
                return Err(fault(vec::GP, err));
            }
            if !d.present() {
                return Err(fault(vec::NP, err));
            }
        }
        self.set_accessed(sel, d)?;
        let mut s = d.to_seg(sel);
        s.attr |= 1; // accessed
        *self.seg_mut(i) = s;
        Ok(())
    }

    /// Check and fetch a code segment descriptor for a far JMP/CALL/RET/IRET to `sel`
    /// landing at privilege `new_cpl`.
    pub(crate) fn code_desc(&mut self, sel: u16) -> R<Desc> {
        if sel & !3 == 0 {
            return Err(gp0());
        }
        let d = self.read_desc(sel)?;
        if !d.code() {
            return Err(fault(vec::GP, u32::from(sel & !3)));
        }
        if !d.present() {
            return Err(fault(vec::NP, u32::from(sel & !3)));
        }
        Ok(d)
    }

    /// Install CS from a checked descriptor with CPL `cpl`.
    pub(crate) fn set_cs(&mut self, sel: u16, d: Desc, cpl: u8) -> R<()> {
        let sel = (sel & !3) | u16::from(cpl);
        self.set_accessed(sel, d)?;
        let mut s = d.to_seg(sel);
        s.attr |= 1;
        self.s.cs = s;
        self.update_mode();
        self.end_block = true;
        Ok(())
    }

    /// Load CS in real mode.
    pub(crate) fn set_cs_real(&mut self, sel: u16) {
        self.s.cs.selector = sel;
        self.s.cs.base = u64::from(sel) << 4;
        self.update_mode();
        self.end_block = true;
    }

    /// After a return to an outer privilege level: data segments the new CPL may not use
    /// become null.
    pub(crate) fn invalidate_outer_segs(&mut self) {
        let cpl = self.cpl();
        for i in [sr::ES, sr::DS, sr::FS, sr::GS] {
            let s = *self.seg(i);
            let ty = s.attr & 0xf;
            let conforming_code = ty & 0xc == 0xc;
            if s.attr & Segment::UNUSABLE == 0 && !conforming_code && s.dpl() < cpl {
                *self.seg_mut(i) = null_seg(0);
            }
        }
    }

    /// LLDT.
    pub(crate) fn load_ldt(&mut self, sel: u16) -> R<()> {
        if sel & !3 == 0 {
            self.s.ldtr = null_seg(0);
            return Ok(());
        }
        if sel & 4 != 0 {
            return Err(fault(vec::GP, u32::from(sel & !3)));
        }
        let d = self.read_desc(sel)?;
        if d.s() || d.ty() != 2 {
            return Err(fault(vec::GP, u32::from(sel & !3)));
        }
        if !d.present() {
            return Err(fault(vec::NP, u32::from(sel & !3)));
        }
        let mut s = d.to_seg(sel);
        if self.s.efer & sup::state::efer::LMA != 0 {
            s.base |= self.read_desc_high(sel)? << 32;
        }
        self.s.ldtr = s;
        Ok(())
    }

    /// LTR: load the task register and mark the TSS busy.
    pub(crate) fn load_tr(&mut self, sel: u16) -> R<()> {
        if sel & !3 == 0 || sel & 4 != 0 {
            return Err(fault(vec::GP, u32::from(sel & !3)));
        }
        let d = self.read_desc(sel)?;
        if d.s() || (d.ty() != 1 && d.ty() != 9) {
            return Err(fault(vec::GP, u32::from(sel & !3)));
        }
        if !d.present() {
            return Err(fault(vec::NP, u32::from(sel & !3)));
        }
        let mut s = d.to_seg(sel);
        if self.s.efer & sup::state::efer::LMA != 0 {
            s.base |= self.read_desc_high(sel)? << 32;
        }
        s.attr |= 2; // busy
        let a = self.desc_addr(sel)?;
        self.sys_write(a + 5, 1, u64::from((d.hi >> 8) as u8 | 2))?;
        self.s.tr = s;
        Ok(())
    }
}
