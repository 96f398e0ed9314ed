//! Event delivery: exceptions, external interrupts, NMIs and software interrupts through
//! the real-mode IVT or the protected/long-mode IDT, with privilege-change stack switches,
//! IST, and IRET.

use crate::cpu::{fault, gp0, sr, vec, Cpu, R};
use crate::flags::fl;
use crate::seg::null_seg;
use sup::state::efer;
use sup::Segment;

/// What kind of event is delivered (decides DPL checks and the EXT bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ev {
    /// External interrupt or NMI.
    Ext,
    /// A CPU exception.
    Exc,
    /// INT n / INT3 / INTO: the gate DPL is checked against CPL.
    Soft,
}

/// Exception classes for the double-fault rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Benign,
    Contributory,
    PageFault,
}

/// Classify a vector.
pub(crate) fn class(v: u8) -> Class {
    match v {
        0 | 10..=13 => Class::Contributory,
        14 => Class::PageFault,
        _ => Class::Benign,
    }
}

/// True when `v` pushes an error code.
pub(crate) fn has_error_code(v: u8) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21)
}

impl Cpu {
    /// Deliver an event. `ret` is the return address pushed (the faulting instruction for
    /// faults, the next one for traps and software interrupts).
    pub(crate) fn deliver(&mut self, v: u8, ev: Ev, code: Option<u32>, ret: u64) -> R<()> {
        self.end_block = true;
        if !self.pmode() {
            return self.deliver_real(v, ret);
        }
        let ext = u32::from(ev == Ev::Ext);
        if self.s.efer & efer::LMA != 0 {
            self.deliver_long(v, ev, code, ret, ext)
        } else {
            self.deliver_prot(v, ev, code, ret, ext)
        }
    }

    fn deliver_real(&mut self, v: u8, ret: u64) -> R<()> {
        let a = u64::from(v) * 4;
        if a + 3 > u64::from(self.s.idtr.limit) {
            return Err(gp0());
        }
        let ent = self.sys_read(self.s.idtr.base.wrapping_add(a), 4)?;
        let flags = self.rflags();
        let cs = u64::from(self.s.cs.selector);
        let sp0 = self.s.gpr[4];
        if let Err(e) = self
            .push(2, flags)
            .and_then(|_| self.push(2, cs))
            .and_then(|_| self.push(2, ret))
        {
            self.s.gpr[4] = sp0;
            return Err(e);
        }
        self.s.rflags &= !(fl::IF | fl::TF | fl::AC | fl::RF);
        self.set_cs_real((ent >> 16) as u16);
        self.s.rip = ent & 0xffff;
        Ok(())
    }

    /// Read the stack pointer for privilege level `dpl` (or IST slot `ist`) from the TSS.
    fn tss_stack(&mut self, dpl: u8, ist: u8) -> R<(u16, u64)> {
        let tr = self.s.tr;
        let ts = |s: &Segment| fault(vec::TS, u32::from(s.selector & !3));
        if self.s.efer & efer::LMA != 0 {
            let off = if ist != 0 {
                0x24 + (u64::from(ist) - 1) * 8
            } else {
                4 + u64::from(dpl) * 8
            };
            if off + 7 > u64::from(tr.limit) {
                return Err(ts(&tr));
            }
            let rsp = self.sys_read(tr.base.wrapping_add(off), 8)?;
            return Ok((u16::from(dpl), rsp));
        }
        if tr.attr & 0xf == 0xb || tr.attr & 0xf == 0x9 {
            let off = 4 + u64::from(dpl) * 8;
            if off + 5 > u64::from(tr.limit) {
                return Err(ts(&tr));
            }
            let esp = self.sys_read(tr.base.wrapping_add(off), 4)?;
            let ss = self.sys_read(tr.base.wrapping_add(off + 4), 2)? as u16;
            Ok((ss, esp))
        } else {
            let off = 2 + u64::from(dpl) * 4;
            if off + 3 > u64::from(tr.limit) {
                return Err(ts(&tr));
            }
            let sp = self.sys_read(tr.base.wrapping_add(off), 2)?;
            let ss = self.sys_read(tr.base.wrapping_add(off + 2), 2)? as u16;
            Ok((ss, sp))
        }
    }

    /// Write a frame of `vals` (pushed in order) below `sp` in the stack segment `ss`.
    fn write_frame(
        &mut self,
        ss: &Segment,
        sp: u64,
        size: u32,
        vals: &[u64],
        user: bool,
    ) -> R<u64> {
        let m = if self.s.efer & efer::LMA != 0 && ss.attr & Segment::DB == 0 && size == 8 {
            u64::MAX
        } else if ss.attr & Segment::DB != 0 {
            0xffff_ffff
        } else {
            0xffff
        };
        let total = u64::from(size) * vals.len() as u64;
        let new = sp.wrapping_sub(total) & m;
        let base = if size == 8 { 0 } else { ss.base };
        for (k, &v) in vals.iter().enumerate() {
            let off = new.wrapping_add(total - u64::from(size) * (k as u64 + 1)) & m;
            let lin = base.wrapping_add(off);
            let lin = if size == 8 { lin } else { lin & 0xffff_ffff };
            if size == 8 && ((lin as i64) << 16 >> 16) as u64 != lin {
                return Err(fault(vec::SS, 0));
            }
            self.write_lin(lin, size as usize, v, user)?;
        }
        Ok((sp & !m) | new)
    }

    fn deliver_prot(&mut self, v: u8, ev: Ev, code: Option<u32>, ret: u64, ext: u32) -> R<()> {
        let idx = u64::from(v) * 8;
        let gerr = (idx as u32) | 2 | ext;
        if idx + 7 > u64::from(self.s.idtr.limit) {
            return Err(fault(vec::GP, gerr));
        }
        let g = self.sys_read(self.s.idtr.base.wrapping_add(idx), 8)?;
        let (lo, hi) = (g as u32, (g >> 32) as u32);
        let ty = (hi >> 8) & 0x1f;
        let gate32 = match ty {
            0x0e | 0x0f => true,
            0x06 | 0x07 => false,
            _ => return Err(fault(vec::GP, gerr)),
        };
        let cpl = self.cpl();
        let gdpl = ((hi >> 13) & 3) as u8;
        if ev == Ev::Soft && gdpl < cpl {
            return Err(fault(vec::GP, gerr));
        }
        if hi & (1 << 15) == 0 {
            return Err(fault(vec::NP, gerr));
        }
        let sel = (lo >> 16) as u16;
        let off = if gate32 {
            u64::from((lo & 0xffff) | (hi & 0xffff_0000))
        } else {
            u64::from(lo & 0xffff)
        };
        let cd = self.code_desc(sel)?;
        if cd.dpl() > cpl {
            return Err(fault(vec::GP, u32::from(sel & !3) | ext));
        }
        let conforming = cd.ty() & 4 != 0;
        let new_cpl = if conforming { cpl } else { cd.dpl() };
        let size = if gate32 { 4 } else { 2 };
        let flags = self.rflags();
        let cs_old = u64::from(self.s.cs.selector);
        let mut vals: Vec<u64> = Vec::with_capacity(6);
        let (new_ss, new_sp) = if new_cpl < cpl {
            let (ss_sel, sp) = self.tss_stack(new_cpl, 0)?;
            let sd = self
                .read_desc(ss_sel)
                .map_err(|_| fault(vec::TS, u32::from(ss_sel & !3)))?;
            if ss_sel & !3 == 0
                || (ss_sel & 3) as u8 != new_cpl
                || sd.dpl() != new_cpl
                || sd.code()
                || !sd.s()
            {
                return Err(fault(vec::TS, u32::from(ss_sel & !3)));
            }
            if !sd.present() {
                return Err(fault(vec::SS, u32::from(ss_sel & !3)));
            }
            vals.push(u64::from(self.s.ss.selector));
            vals.push(self.s.gpr[4]);
            (Some(sd.to_seg(ss_sel)), sp)
        } else {
            (None, self.s.gpr[4])
        };
        vals.push(flags);
        vals.push(cs_old);
        vals.push(ret);
        if let Some(c) = code {
            vals.push(u64::from(c));
        }
        let ss = new_ss.unwrap_or(self.s.ss);
        let sp = self.write_frame(&ss, new_sp, size, &vals, new_cpl == 3)?;
        self.set_cs(sel, cd, new_cpl)?;
        if let Some(mut s) = new_ss {
            s.attr |= 1;
            self.s.ss = s;
        }
        self.s.gpr[4] = sp;
        self.s.rip = off;
        self.s.rflags &= !(fl::TF | fl::NT | fl::RF | fl::VM);
        if ty & 1 == 0 {
            self.s.rflags &= !fl::IF;
        }
        Ok(())
    }

    fn deliver_long(&mut self, v: u8, ev: Ev, code: Option<u32>, ret: u64, ext: u32) -> R<()> {
        let idx = u64::from(v) * 16;
        let gerr = (u64::from(v) * 8) as u32 | 2 | ext;
        if idx + 15 > u64::from(self.s.idtr.limit) {
            return Err(fault(vec::GP, gerr));
        }
        let lo = self.sys_read(self.s.idtr.base.wrapping_add(idx), 8)?;
        let hi = self.sys_read(self.s.idtr.base.wrapping_add(idx + 8), 8)?;
        let ty = (lo >> 40) & 0x1f;
        if ty != 0x0e && ty != 0x0f {
            return Err(fault(vec::GP, gerr));
        }
        let cpl = self.cpl();
        let gdpl = ((lo >> 45) & 3) as u8;
        if ev == Ev::Soft && gdpl < cpl {
            return Err(fault(vec::GP, gerr));
        }
        if lo & (1 << 47) == 0 {
            return Err(fault(vec::NP, gerr));
        }
        let sel = (lo >> 16) as u16;
        let off = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
        let ist = ((lo >> 32) & 7) as u8;
        let cd = self.code_desc(sel)?;
        if cd.dpl() > cpl || cd.hi & (1 << 21) == 0 || cd.hi & (1 << 22) != 0 {
            return Err(fault(vec::GP, u32::from(sel & !3) | ext));
        }
        let conforming = cd.ty() & 4 != 0;
        let new_cpl = if conforming { cpl } else { cd.dpl() };
        let mut rsp = self.s.gpr[4];
        if ist != 0 || new_cpl < cpl {
            rsp = self.tss_stack(new_cpl, ist)?.1;
        }
        rsp &= !0xf;
        let mut vals = vec![
            u64::from(self.s.ss.selector),
            self.s.gpr[4],
            self.rflags(),
            u64::from(self.s.cs.selector),
            ret,
        ];
        if let Some(c) = code {
            vals.push(u64::from(c));
        }
        let flat = Segment {
            selector: 0,
            base: 0,
            limit: 0xffff_ffff,
            attr: Segment::P | Segment::S | 3,
        };
        let sp = self.write_frame(&flat, rsp, 8, &vals, new_cpl == 3)?;
        self.set_cs(sel, cd, new_cpl)?;
        if new_cpl < cpl {
            let mut n = null_seg(u16::from(new_cpl));
            n.attr |= u32::from(new_cpl) << 5;
            self.s.ss = n;
        }
        self.s.gpr[4] = sp;
        self.s.rip = off;
        self.s.rflags &= !(fl::TF | fl::NT | fl::RF | fl::VM);
        if ty & 1 == 0 {
            self.s.rflags &= !fl::IF;
        }
        Ok(())
    }

    /// IRET / IRETD / IRETQ with operand size `size`.
    pub(crate) fn iret(&mut self, size: u32) -> R<()> {
        self.end_block = true;
        self.s.events.nmi_masked = false;
        if !self.pmode() {
            let ip = self.peek(size, 0)?;
            let cs = self.peek(size, u64::from(size))?;
            let f = self.peek(size, 2 * u64::from(size))?;
            let m = Cpu::mask_for(self.stack_size());
            let sp = self.s.gpr[4];
            self.s.gpr[4] = (sp & !m) | (sp.wrapping_add(3 * u64::from(size)) & m);
            let newf = if size == 2 {
                (self.rflags() & !0xffff) | (f & 0xffff)
            } else {
                (f & 0x25_7fd5) | (self.rflags() & 0x1a_0000)
            };
            self.set_rflags(newf);
            self.set_cs_real(cs as u16);
            self.s.rip = ip & if size == 2 { 0xffff } else { 0xffff_ffff };
            return Ok(());
        }
        if self.s.rflags & fl::NT != 0 && self.s.efer & efer::LMA == 0 {
            // Task return: hardware task switching is not used by the OSes we run.
            return Err(gp0());
        }
        let sz = u64::from(size);
        let ip = self.peek(size, 0)?;
        let cs = self.peek(size, sz)? as u16;
        let f = self.peek(size, 2 * sz)?;
        let cpl = self.cpl();
        let rpl = (cs & 3) as u8;
        if rpl < cpl {
            return Err(fault(vec::GP, u32::from(cs & !3)));
        }
        let cd = self.code_desc(cs)?;
        let conforming = cd.ty() & 4 != 0;
        if (conforming && cd.dpl() > rpl) || (!conforming && cd.dpl() != rpl) {
            return Err(fault(vec::GP, u32::from(cs & !3)));
        }
        let outer = rpl > cpl || self.long64();
        let (nsp, nss) = if outer {
            (self.peek(size, 3 * sz)?, self.peek(size, 4 * sz)? as u16)
        } else {
            (0, 0)
        };
        // Flags: IOPL only at CPL 0, IF only when CPL <= IOPL.
        let iopl = ((self.s.rflags >> 12) & 3) as u8;
        let mut changeable = fl::ARITH | fl::TF | fl::DF | fl::NT | fl::RF | fl::AC | fl::ID;
        if cpl == 0 {
            changeable |= fl::IOPL | fl::VIF | fl::VIP;
        }
        if cpl <= iopl {
            changeable |= fl::IF;
        }
        if size == 2 {
            changeable &= 0xffff;
        }
        let newf = (self.rflags() & !changeable) | (f & changeable);
        let m = Cpu::mask_for(self.stack_size());
        let old_sp = self.s.gpr[4];
        self.set_cs(cs, cd, rpl)?;
        if outer {
            let saved_ss = self.s.ss;
            if let Err(e) = self.load_seg(sr::SS, nss) {
                self.s.ss = saved_ss;
                return Err(e);
            }
            self.s.gpr[4] = if size == 4 && !self.long64() {
                (self.s.gpr[4] & !0xffff_ffff) | (nsp & 0xffff_ffff)
            } else if size == 2 {
                (self.s.gpr[4] & !0xffff) | (nsp & 0xffff)
            } else {
                nsp
            };
            if rpl > cpl {
                self.invalidate_outer_segs();
            }
        } else {
            self.s.gpr[4] = (old_sp & !m) | (old_sp.wrapping_add(3 * sz) & m);
        }
        self.set_rflags(newf);
        self.s.rip = ip & self.ip_mask();
        Ok(())
    }
}
