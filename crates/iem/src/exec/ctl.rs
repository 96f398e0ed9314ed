//! Control transfer: near/far jumps, calls and returns, conditional branches, loops,
//! software interrupts, SYSCALL/SYSRET and SYSENTER/SYSEXIT.

use super::operand::mask;
use crate::cpu::{fault, gp0, sr, ud, vec, Cpu, R};
use crate::event::Ev;
use crate::flags::fl;
use iced_x86::{Code, Instruction, OpKind};
use sup::state::efer;
use sup::Segment;

/// Check that a 64-bit target is canonical.
#[inline]
fn canonical(c: &Cpu, t: u64) -> R<u64> {
    if c.long64() && ((t as i64) << 16 >> 16) as u64 != t {
        return Err(gp0());
    }
    Ok(t)
}

/// Operand size (bytes) of a near branch operand.
fn near_size(c: &Cpu, ins: &Instruction) -> u32 {
    match ins.op0_kind() {
        OpKind::NearBranch16 => 2,
        OpKind::NearBranch32 => 4,
        OpKind::NearBranch64 => 8,
        _ => {
            let s = Cpu::op_size(ins, 0);
            if c.long64() && s == 4 {
                8
            } else {
                s
            }
        }
    }
}

fn is_far(ins: &Instruction) -> bool {
    use iced_x86::MemorySize as Ms;
    matches!(
        ins.memory_size(),
        Ms::SegPtr16 | Ms::SegPtr32 | Ms::SegPtr64
    )
}

/// Near JMP (direct or indirect).
#[inline]
pub(crate) fn jmp(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let t = match ins.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => c.branch_target(ins),
        OpKind::FarBranch16 | OpKind::FarBranch32 => {
            return far_jmp(
                c,
                ins.far_branch_selector(),
                u64::from(ins.far_branch32()),
                false,
            )
        }
        OpKind::Memory if is_far(ins) => {
            let (sel, off) = read_far_ptr(c, ins)?;
            return far_jmp(c, sel, off, false);
        }
        _ => {
            let s = near_size(c, ins);
            c.read_op(ins, 0, s)? & mask(s)
        }
    };
    c.s.rip = canonical(c, t)?;
    Ok(())
}

/// Jcc.
#[inline]
pub(crate) fn jcc(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let cc = ins.condition_code() as u8 - 1;
    if c.lf.cond(cc) {
        let t = c.branch_target(ins);
        c.s.rip = canonical(c, t)?;
    }
    Ok(())
}

/// LOOP/LOOPE/LOOPNE/JCXZ/JECXZ/JRCXZ.
pub(crate) fn loop_(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let code = ins.code() as u32;
    let (asz, kind) = if (Code::Jcxz_rel8_16 as u32..=Code::Jrcxz_rel8_64 as u32).contains(&code) {
        let k = code - Code::Jcxz_rel8_16 as u32;
        (
            if k < 2 {
                2
            } else if k < 5 {
                4
            } else {
                8
            },
            3,
        )
    } else {
        let k = (code - Code::Loopne_rel8_16_CX as u32) % 7;
        let kind = (code - Code::Loopne_rel8_16_CX as u32) / 7; // 0 ne, 1 e, 2 loop
        (
            if k < 2 {
                2
            } else if k < 5 {
                4
            } else {
                8
            },
            kind,
        )
    };
    let m = mask(asz);
    let cx = c.s.gpr[1] & m;
    let take = if kind == 3 {
        cx == 0
    } else {
        let n = cx.wrapping_sub(1) & m;
        c.s.gpr[1] = (c.s.gpr[1] & !m) | n;
        if asz == 4 {
            c.s.gpr[1] = n;
        }
        n != 0
            && match kind {
                0 => !c.lf.zf(),
                1 => c.lf.zf(),
                _ => true,
            }
    };
    if take {
        let t = c.branch_target(ins);
        c.s.rip = canonical(c, t)?;
    }
    Ok(())
}

/// Near CALL.
pub(crate) fn call(c: &mut Cpu, ins: &Instruction) -> R<()> {
    match ins.op0_kind() {
        OpKind::FarBranch16 | OpKind::FarBranch32 => {
            let s = if ins.op0_kind() == OpKind::FarBranch16 {
                2
            } else {
                4
            };
            return far_call(
                c,
                ins.far_branch_selector(),
                u64::from(ins.far_branch32()),
                s,
            );
        }
        OpKind::Memory if is_far(ins) => {
            let (sel, off) = read_far_ptr(c, ins)?;
            let s = ins.memory_size().size() as u32 - 2;
            return far_call(c, sel, off, s);
        }
        _ => {}
    }
    let s = near_size(c, ins);
    let t = match ins.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => c.branch_target(ins),
        _ => c.read_op(ins, 0, s)? & mask(s),
    };
    let t = canonical(c, t)?;
    let ret = c.next_rip;
    c.push(s, ret)?;
    c.s.rip = t;
    Ok(())
}

/// Near RET [imm16].
pub(crate) fn ret(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let (s, imm) = match ins.code() {
        Code::Retnw => (2, 0),
        Code::Retnd => (4, 0),
        Code::Retnq => (8, 0),
        Code::Retnw_imm16 => (2, ins.immediate16()),
        Code::Retnd_imm16 => (4, ins.immediate16()),
        _ => (8, ins.immediate16()),
    };
    let t = c.peek(s, 0)?;
    let t = canonical(c, t)?;
    let m = Cpu::mask_for(c.stack_size());
    let sp = c.s.gpr[4];
    c.s.gpr[4] = (sp & !m) | (sp.wrapping_add(u64::from(s) + u64::from(imm)) & m);
    c.s.rip = t;
    Ok(())
}

/// Read an m16:16/m16:32/m16:64 far pointer operand.
pub(crate) fn read_far_ptr(c: &mut Cpu, ins: &Instruction) -> R<(u16, u64)> {
    let total = ins.memory_size().size() as u32;
    let osz = total - 2;
    let seg = Cpu::mseg(ins);
    let ea = c.ea(ins);
    let off = c.read_mem(seg, ea, osz as usize)?;
    let asz = if c.long64() { u64::MAX } else { 0xffff_ffff };
    let sel = c.read_mem(seg, ea.wrapping_add(u64::from(osz)) & asz, 2)? as u16;
    Ok((sel, off))
}

/// Validate a far JMP/CALL target and return (descriptor, new CPL).
fn far_target(c: &mut Cpu, sel: u16) -> R<crate::seg::Desc> {
    let d = c.code_desc(sel)?;
    let cpl = c.cpl();
    let rpl = (sel & 3) as u8;
    let conforming = d.ty() & 4 != 0;
    if (conforming && d.dpl() > cpl) || (!conforming && (rpl > cpl || d.dpl() != cpl)) {
        return Err(fault(vec::GP, u32::from(sel & !3)));
    }
    Ok(d)
}

/// Far JMP.
pub(crate) fn far_jmp(c: &mut Cpu, sel: u16, off: u64, _call: bool) -> R<()> {
    if !c.pmode() || c.s.rflags & fl::VM != 0 {
        c.set_cs_real(sel);
        c.s.rip = off & 0xffff_ffff;
        return Ok(());
    }
    let d = far_target(c, sel)?;
    let cpl = c.cpl();
    c.set_cs(sel, d, cpl)?;
    c.s.rip = off & c.ip_mask();
    Ok(())
}

/// Far CALL (same privilege; call gates are not used by the OSes we run).
pub(crate) fn far_call(c: &mut Cpu, sel: u16, off: u64, size: u32) -> R<()> {
    let cs = u64::from(c.s.cs.selector);
    let ret = c.next_rip;
    let sp0 = c.s.gpr[4];
    if !c.pmode() || c.s.rflags & fl::VM != 0 {
        c.push(size, cs)?;
        if let Err(e) = c.push(size, ret) {
            c.s.gpr[4] = sp0;
            return Err(e);
        }
        c.set_cs_real(sel);
        c.s.rip = off & mask(size);
        return Ok(());
    }
    let d = far_target(c, sel)?;
    c.push(size, cs)?;
    if let Err(e) = c.push(size, ret) {
        c.s.gpr[4] = sp0;
        return Err(e);
    }
    let cpl = c.cpl();
    if let Err(e) = c.set_cs(sel, d, cpl) {
        c.s.gpr[4] = sp0;
        return Err(e);
    }
    c.s.rip = off & c.ip_mask();
    Ok(())
}

/// Far RET [imm16].
pub(crate) fn retf(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let (s, imm) = match ins.code() {
        Code::Retfw => (2u32, 0u16),
        Code::Retfd => (4, 0),
        Code::Retfq => (8, 0),
        Code::Retfw_imm16 => (2, ins.immediate16()),
        Code::Retfd_imm16 => (4, ins.immediate16()),
        _ => (8, ins.immediate16()),
    };
    let sz = u64::from(s);
    let ip = c.peek(s, 0)?;
    let cs = c.peek(s, sz)? as u16;
    let m = Cpu::mask_for(c.stack_size());
    let sp = c.s.gpr[4];
    let after = sp.wrapping_add(2 * sz + u64::from(imm)) & m;
    if !c.pmode() || c.s.rflags & fl::VM != 0 {
        c.s.gpr[4] = (sp & !m) | after;
        c.set_cs_real(cs);
        c.s.rip = ip & mask(s);
        return Ok(());
    }
    let cpl = c.cpl();
    let rpl = (cs & 3) as u8;
    if rpl < cpl {
        return Err(fault(vec::GP, u32::from(cs & !3)));
    }
    let d = c.code_desc(cs)?;
    let conforming = d.ty() & 4 != 0;
    if (conforming && d.dpl() > rpl) || (!conforming && d.dpl() != rpl) {
        return Err(fault(vec::GP, u32::from(cs & !3)));
    }
    if rpl > cpl {
        let nsp = c.peek(s, 2 * sz + u64::from(imm))?;
        let nss = c.peek(s, 3 * sz + u64::from(imm))? as u16;
        c.set_cs(cs, d, rpl)?;
        let saved = c.s.ss;
        if let Err(e) = c.load_seg(sr::SS, nss) {
            c.s.ss = saved;
            return Err(e);
        }
        let m2 = Cpu::mask_for(c.stack_size());
        c.s.gpr[4] = (c.s.gpr[4] & !m2) | (nsp.wrapping_add(u64::from(imm)) & m2);
        c.invalidate_outer_segs();
    } else {
        c.set_cs(cs, d, rpl)?;
        c.s.gpr[4] = (sp & !m) | after;
    }
    c.s.rip = ip & mask(s);
    Ok(())
}

/// INT n / INT3 / INTO / INT1.
pub(crate) fn int(c: &mut Cpu, v: u8, soft: bool) -> R<()> {
    if soft && c.pmode() && c.s.rflags & fl::VM != 0 {
        let iopl = (c.s.rflags >> 12) & 3;
        if iopl < 3 {
            return Err(gp0());
        }
    }
    let ret = c.next_rip;
    c.deliver(v, if soft { Ev::Soft } else { Ev::Exc }, None, ret)
}

fn flat_code(sel: u16, long: bool, dpl: u8) -> Segment {
    Segment {
        selector: sel,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0xb
            | Segment::S
            | Segment::P
            | (u32::from(dpl) << 5)
            | Segment::G
            | if long { Segment::L } else { Segment::DB },
    }
}

fn flat_data(sel: u16, dpl: u8) -> Segment {
    Segment {
        selector: sel,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0x3 | Segment::S | Segment::P | (u32::from(dpl) << 5) | Segment::G | Segment::DB,
    }
}

/// SYSCALL.
pub(crate) fn syscall(c: &mut Cpu) -> R<()> {
    if c.s.efer & efer::SCE == 0 || !c.pmode() {
        return Err(ud());
    }
    let star = c.s.msrs.star;
    let sel = ((star >> 32) & 0xfffc) as u16;
    let next = c.next_rip;
    if c.s.efer & efer::LMA != 0 {
        c.s.gpr[1] = next;
        c.s.gpr[11] = c.rflags() & !fl::RF;
        c.s.cs = flat_code(sel, true, 0);
        c.s.ss = flat_data(sel + 8, 0);
        let target = if c.long64() {
            c.s.msrs.lstar
        } else {
            c.s.msrs.cstar
        };
        let f = c.rflags() & !c.s.msrs.fmask & !fl::RF;
        c.set_rflags(f);
        c.update_mode();
        c.s.rip = target;
    } else {
        c.s.gpr[1] = next & 0xffff_ffff;
        c.s.cs = flat_code(sel, false, 0);
        c.s.ss = flat_data(sel + 8, 0);
        let f = c.rflags() & !(fl::VM | fl::IF | fl::RF);
        c.set_rflags(f);
        c.update_mode();
        c.s.rip = star & 0xffff_ffff;
    }
    c.end_block = true;
    Ok(())
}

/// SYSRET.
pub(crate) fn sysret(c: &mut Cpu, ins: &Instruction) -> R<()> {
    if c.s.efer & efer::SCE == 0 || !c.pmode() {
        return Err(ud());
    }
    if c.cpl() != 0 {
        return Err(gp0());
    }
    let star = c.s.msrs.star;
    let base = ((star >> 48) & 0xffff) as u16;
    let q = ins.code() == Code::Sysretq;
    if c.s.efer & efer::LMA != 0 {
        let target = if q {
            c.s.gpr[1]
        } else {
            c.s.gpr[1] & 0xffff_ffff
        };
        if q && ((target as i64) << 16 >> 16) as u64 != target {
            return Err(gp0());
        }
        let f = (c.s.gpr[11] & 0x3c_7fd7) | 2;
        c.set_rflags(f);
        c.s.cs = if q {
            flat_code((base + 16) | 3, true, 3)
        } else {
            flat_code(base | 3, false, 3)
        };
        c.s.rip = target;
    } else {
        c.s.cs = flat_code(base | 3, false, 3);
        c.s.rflags |= fl::IF;
        c.s.rip = c.s.gpr[1] & 0xffff_ffff;
    }
    // SS keeps a flat writable descriptor with DPL 3.
    c.s.ss = flat_data((base + 8) | 3, 3);
    c.update_mode();
    c.end_block = true;
    Ok(())
}

/// SYSENTER.
pub(crate) fn sysenter(c: &mut Cpu) -> R<()> {
    if !c.pmode() {
        return Err(gp0());
    }
    let cs = (c.s.msrs.sysenter_cs & 0xfffc) as u16;
    if cs == 0 {
        return Err(gp0());
    }
    let long = c.s.efer & efer::LMA != 0;
    c.s.rflags &= !(fl::VM | fl::IF | fl::RF);
    c.s.cs = flat_code(cs, long, 0);
    c.s.ss = flat_data(cs + 8, 0);
    c.s.rip = if long {
        c.s.msrs.sysenter_eip
    } else {
        c.s.msrs.sysenter_eip & 0xffff_ffff
    };
    c.s.gpr[4] = if long {
        c.s.msrs.sysenter_esp
    } else {
        c.s.msrs.sysenter_esp & 0xffff_ffff
    };
    c.update_mode();
    c.end_block = true;
    Ok(())
}

/// SYSEXIT.
pub(crate) fn sysexit(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let cs = (c.s.msrs.sysenter_cs & 0xfffc) as u16;
    if !c.pmode() || c.cpl() != 0 || cs == 0 {
        return Err(gp0());
    }
    let q = ins.code() == Code::Sysexitq;
    if q {
        c.s.cs = flat_code((cs + 32) | 3, true, 3);
        c.s.ss = flat_data((cs + 40) | 3, 3);
        c.s.rip = c.s.gpr[2];
        c.s.gpr[4] = c.s.gpr[1];
    } else {
        c.s.cs = flat_code((cs + 16) | 3, false, 3);
        c.s.ss = flat_data((cs + 24) | 3, 3);
        c.s.rip = c.s.gpr[2] & 0xffff_ffff;
        c.s.gpr[4] = c.s.gpr[1] & 0xffff_ffff;
    }
    c.update_mode();
    c.end_block = true;
    Ok(())
}

/// ENTER imm16, imm8.
pub(crate) fn enter(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let s = match ins.code() {
        Code::Enterw_imm16_imm8 => 2,
        Code::Enterd_imm16_imm8 => 4,
        _ => 8,
    };
    let alloc = u64::from(ins.immediate16());
    let level = u64::from(ins.immediate8_2nd() & 31);
    let sp0 = c.s.gpr[4];
    let bp0 = c.s.gpr[5];
    let res = (|| -> R<()> {
        c.push(s, bp0)?;
        let frame = c.s.gpr[4];
        let m = Cpu::mask_for(c.stack_size());
        if level > 0 {
            let mut bp = bp0;
            for _ in 1..level {
                bp = bp.wrapping_sub(u64::from(s));
                let v = c.read_mem(sr::SS, bp & m, s as usize)?;
                c.push(s, v)?;
            }
            c.push(s, frame)?;
        }
        let sp = c.s.gpr[4];
        let nsp = sp.wrapping_sub(alloc) & m;
        c.s.gpr[4] = (sp & !m) | nsp;
        c.set_gpr_sized(5, s, frame);
        Ok(())
    })();
    if res.is_err() {
        c.s.gpr[4] = sp0;
        c.s.gpr[5] = bp0;
    }
    res
}

/// LEAVE.
pub(crate) fn leave(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let s = match ins.code() {
        Code::Leavew => 2,
        Code::Leaved => 4,
        _ => 8,
    };
    let m = Cpu::mask_for(c.stack_size());
    let sp0 = c.s.gpr[4];
    c.s.gpr[4] = (sp0 & !m) | (c.s.gpr[5] & m);
    match c.pop(s) {
        Ok(v) => {
            c.set_gpr_sized(5, s, v);
            Ok(())
        }
        Err(e) => {
            c.s.gpr[4] = sp0;
            Err(e)
        }
    }
}
