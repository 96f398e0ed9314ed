//! System instructions: control/debug registers, descriptor-table registers, MSRs, CPUID,
//! TSC, HLT, CLI/STI, PUSHF/POPF, SWAPGS, LAR/LSL/VERR/VERW.

use super::operand::mask;
use crate::cpu::{gp0, sr, ud, vec, Cpu, R};
use crate::flags::fl;
use iced_x86::{Code, Instruction, OpKind};
use sup::state::{cr0, efer};
use sup::VmExit;

fn need_cpl0(c: &Cpu) -> R<()> {
    if c.cpl() != 0 {
        return Err(gp0());
    }
    Ok(())
}

const CR4_VALID: u64 = (1 << 0) // VME
    | (1 << 1) // PVI
    | (1 << 2) // TSD
    | (1 << 3) // DE
    | (1 << 4) // PSE
    | (1 << 5) // PAE
    | (1 << 6) // MCE
    | (1 << 7) // PGE
    | (1 << 8) // PCE
    | (1 << 9) // OSFXSR
    | (1 << 10); // OSXMMEXCPT

/// Write a control register with the architectural checks and cache flushes.
pub(crate) fn write_cr(c: &mut Cpu, n: usize, v: u64) -> R<()> {
    c.end_block = true;
    match n {
        0 => {
            let v = v | cr0::ET;
            if v >> 32 != 0 && c.long64() {
                return Err(gp0());
            }
            let v = v & 0xffff_ffff;
            if (v & cr0::PG != 0 && v & cr0::PE == 0) || (v & cr0::NW != 0 && v & cr0::CD == 0) {
                return Err(gp0());
            }
            let old = c.s.cr0;
            let mut e = c.s.efer;
            if v & cr0::PG != 0 && old & cr0::PG == 0 && e & efer::LME != 0 {
                if c.s.cr4 & (1 << 5) == 0 {
                    return Err(gp0());
                }
                e |= efer::LMA;
            }
            if v & cr0::PG == 0 && old & cr0::PG != 0 {
                if c.long64() {
                    return Err(gp0());
                }
                e &= !efer::LMA;
            }
            c.s.efer = e;
            c.s.cr0 = v;
            if (old ^ v) & (cr0::PG | cr0::WP | cr0::PE) != 0 {
                c.tlb.flush_all();
            }
            c.update_mode();
        }
        2 => c.s.cr2 = v,
        3 => {
            c.s.cr3 = if c.s.efer & efer::LMA != 0 {
                v & 0x000f_ffff_ffff_ffff
            } else {
                v & 0xffff_ffff
            };
            c.flush_cr3();
        }
        4 => {
            if v & !CR4_VALID != 0 {
                return Err(gp0());
            }
            if c.s.efer & efer::LMA != 0 && v & (1 << 5) == 0 {
                return Err(gp0());
            }
            let old = c.s.cr4;
            c.s.cr4 = v;
            if (old ^ v) & ((1 << 4) | (1 << 5) | (1 << 7)) != 0 {
                c.tlb.flush_all();
            }
        }
        8 => {
            if v & !0xf != 0 {
                return Err(gp0());
            }
            c.s.cr8 = v;
        }
        _ => return Err(ud()),
    }
    Ok(())
}

/// MOV to/from CRn and DRn.
pub(crate) fn mov_cr_dr(c: &mut Cpu, ins: &Instruction) -> R<()> {
    need_cpl0(c)?;
    let r0 = ins.op0_register();
    let r1 = ins.op1_register();
    if let Some(n) = crate::regs::creg(r0) {
        let v = c.reg(r1);
        return write_cr(c, n, v);
    }
    if let Some(n) = crate::regs::creg(r1) {
        let v = match n {
            0 => c.s.cr0,
            2 => c.s.cr2,
            3 => c.s.cr3,
            4 => c.s.cr4,
            8 => c.s.cr8,
            _ => return Err(ud()),
        };
        c.set_reg(r0, v);
        return Ok(());
    }
    if let Some(n) = crate::regs::dreg(r0) {
        let n = if n == 4 || n == 5 { n + 2 } else { n };
        if n > 7 {
            return Err(ud());
        }
        let v = c.reg(r1);
        c.s.dr[n] = match n {
            6 => (v & 0xf00f) | 0xffff_0ff0,
            7 => (v & 0xffff_2bff) | 0x400,
            _ => v,
        };
        return Ok(());
    }
    if let Some(n) = crate::regs::dreg(r1) {
        let n = if n == 4 || n == 5 { n + 2 } else { n };
        if n > 7 {
            return Err(ud());
        }
        let v = c.s.dr[n];
        c.set_reg(r0, v);
        return Ok(());
    }
    Err(ud())
}

/// LGDT / LIDT.
pub(crate) fn lgdt(c: &mut Cpu, ins: &Instruction, idt: bool) -> R<()> {
    need_cpl0(c)?;
    let seg = Cpu::mseg(ins);
    let ea = c.ea(ins);
    let limit = c.read_mem(seg, ea, 2)? as u16;
    let base = if c.long64() {
        c.read_mem(seg, ea.wrapping_add(2), 8)?
    } else {
        let b = c.read_mem(seg, ea.wrapping_add(2), 4)?;
        // Operand size 16 loads a 24-bit base.
        if matches!(ins.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
            b & 0xff_ffff
        } else {
            b
        }
    };
    let t = if idt { &mut c.s.idtr } else { &mut c.s.gdtr };
    t.base = base;
    t.limit = limit;
    Ok(())
}

/// SGDT / SIDT.
pub(crate) fn sgdt(c: &mut Cpu, ins: &Instruction, idt: bool) -> R<()> {
    let t = if idt { c.s.idtr } else { c.s.gdtr };
    let seg = Cpu::mseg(ins);
    let ea = c.ea(ins);
    let bsz = if c.long64() { 8 } else { 4 };
    c.lin(seg, ea, 2 + bsz, true)?;
    c.write_mem(seg, ea, 2, u64::from(t.limit))?;
    c.write_mem(seg, ea.wrapping_add(2), bsz, t.base)
}

/// CPUID.
pub(crate) fn cpuid(c: &mut Cpu) -> R<()> {
    let leaf = c.s.gpr[0] as u32;
    let sub = c.s.gpr[1] as u32;
    let mut r = sup::cpuid::lookup(&c.cpuid, leaf, sub);
    if leaf == 1 {
        // Dynamic bits: the APIC ID of this vCPU and APIC presence from IA32_APIC_BASE.
        r[1] = (r[1] & 0x00ff_ffff) | (c.id << 24);
        if c.s.apic_base & (1 << 11) == 0 {
            r[3] &= !(1 << 9);
        }
    }
    c.s.gpr[0] = u64::from(r[0]);
    c.s.gpr[3] = u64::from(r[1]);
    c.s.gpr[1] = u64::from(r[2]);
    c.s.gpr[2] = u64::from(r[3]);
    Ok(())
}

/// RDTSC / RDTSCP.
pub(crate) fn rdtsc(c: &mut Cpu, p: bool) -> R<()> {
    if c.s.cr4 & (1 << 2) != 0 && c.cpl() != 0 {
        return Err(gp0());
    }
    let t = c.read_tsc();
    c.s.gpr[0] = t & 0xffff_ffff;
    c.s.gpr[2] = t >> 32;
    if p {
        c.s.gpr[1] = c.s.msrs.tsc_aux & 0xffff_ffff;
    }
    Ok(())
}

/// RDMSR / WRMSR.
pub(crate) fn msr(c: &mut Cpu, write: bool) -> R<()> {
    need_cpl0(c)?;
    let m = c.s.gpr[1] as u32;
    if write {
        let v = (c.s.gpr[2] << 32) | (c.s.gpr[0] & 0xffff_ffff);
        c.wrmsr(m, v)
    } else {
        let v = c.rdmsr(m)?;
        c.s.gpr[0] = v & 0xffff_ffff;
        c.s.gpr[2] = v >> 32;
        Ok(())
    }
}

/// HLT.
pub(crate) fn hlt(c: &mut Cpu) -> R<()> {
    need_cpl0(c)?;
    c.exit = Some(VmExit::Hlt);
    Ok(())
}

/// CLI / STI.
pub(crate) fn cli_sti(c: &mut Cpu, set: bool) -> R<()> {
    if c.pmode() {
        let iopl = ((c.s.rflags >> 12) & 3) as u8;
        if c.cpl() > iopl {
            return Err(gp0());
        }
    }
    if set {
        if c.s.rflags & fl::IF == 0 {
            c.set_shadow = true;
        }
        c.s.rflags |= fl::IF;
    } else {
        c.s.rflags &= !fl::IF;
    }
    c.end_block = true;
    Ok(())
}

/// PUSHF / PUSHFD / PUSHFQ.
pub(crate) fn pushf(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let s = match ins.code() {
        Code::Pushfw => 2,
        Code::Pushfd => 4,
        _ => 8,
    };
    if c.s.rflags & fl::VM != 0 && (c.s.rflags >> 12) & 3 != 3 {
        return Err(gp0());
    }
    let f = c.rflags() & !(fl::VM | fl::RF);
    c.push(s, f & mask(s))
}

/// POPF / POPFD / POPFQ with the privilege rules for IF and IOPL.
pub(crate) fn popf(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let s = match ins.code() {
        Code::Popfw => 2,
        Code::Popfd => 4,
        _ => 8,
    };
    if c.s.rflags & fl::VM != 0 && (c.s.rflags >> 12) & 3 != 3 {
        return Err(gp0());
    }
    let v = c.pop(s)?;
    let cpl = c.cpl();
    let iopl = ((c.s.rflags >> 12) & 3) as u8;
    let mut changeable = fl::ARITH | fl::TF | fl::DF | fl::NT | fl::AC | fl::ID;
    if !c.pmode() || cpl == 0 {
        changeable |= fl::IOPL;
    }
    if !c.pmode() || cpl <= iopl {
        changeable |= fl::IF;
    }
    if s == 2 {
        changeable &= 0xffff;
    }
    let old = c.rflags();
    let new = (old & !changeable) | (v & changeable);
    if new & fl::IF != 0 && old & fl::IF == 0 {
        // Like STI, POPF opening IF is visible at the next instruction boundary.
        c.end_block = true;
    }
    c.set_rflags(new);
    Ok(())
}

/// SWAPGS.
pub(crate) fn swapgs(c: &mut Cpu) -> R<()> {
    if !c.long64() {
        return Err(ud());
    }
    need_cpl0(c)?;
    std::mem::swap(&mut c.s.gs.base, &mut c.s.msrs.kernel_gs_base);
    Ok(())
}

/// LLDT / LTR / SLDT / STR.
pub(crate) fn sys_seg(c: &mut Cpu, ins: &Instruction, m: iced_x86::Mnemonic) -> R<()> {
    use iced_x86::Mnemonic as M;
    if !c.pmode() {
        return Err(ud());
    }
    match m {
        M::Lldt | M::Ltr => {
            need_cpl0(c)?;
            let sel = c.read_op(ins, 0, 2)? as u16;
            if m == M::Lldt {
                c.load_ldt(sel)
            } else {
                c.load_tr(sel)
            }
        }
        _ => {
            let v = if m == M::Sldt {
                c.s.ldtr.selector
            } else {
                c.s.tr.selector
            };
            let size = if ins.op0_kind() == OpKind::Register {
                Cpu::op_size(ins, 0)
            } else {
                2
            };
            c.write_op(ins, 0, size, u64::from(v))
        }
    }
}

/// LMSW / SMSW / CLTS.
pub(crate) fn msw(c: &mut Cpu, ins: &Instruction, m: iced_x86::Mnemonic) -> R<()> {
    use iced_x86::Mnemonic as M;
    match m {
        M::Lmsw => {
            need_cpl0(c)?;
            let v = c.read_op(ins, 0, 2)?;
            // LMSW can set but not clear PE.
            let new = (c.s.cr0 & !0xe) | (v & 0xf) | (c.s.cr0 & 1);
            write_cr(c, 0, new)
        }
        M::Clts => {
            need_cpl0(c)?;
            c.s.cr0 &= !cr0::TS;
            Ok(())
        }
        _ => {
            let size = if ins.op0_kind() == OpKind::Register {
                Cpu::op_size(ins, 0)
            } else {
                2
            };
            let v = c.s.cr0 & mask(size);
            c.write_op(ins, 0, size, v)
        }
    }
}

/// LAR / LSL / VERR / VERW: descriptor queries that set ZF.
pub(crate) fn desc_query(c: &mut Cpu, ins: &Instruction, m: iced_x86::Mnemonic) -> R<()> {
    use iced_x86::Mnemonic as M;
    if !c.pmode() {
        return Err(ud());
    }
    let src = if matches!(m, M::Verr | M::Verw) { 0 } else { 1 };
    let sel = c.read_op(ins, src, 2)? as u16;
    let flags = c.rflags() & fl::ARITH;
    let cpl = c.cpl();
    let ok_desc = if sel & !3 == 0 {
        None
    } else {
        match c.read_desc(sel) {
            Ok(d) => Some(d),
            Err(crate::cpu::Stop::Fault(f)) if f.vector == vec::GP => None,
            Err(e) => return Err(e),
        }
    };
    let mut ok = false;
    if let Some(d) = ok_desc {
        let conforming = d.code() && d.ty() & 4 != 0;
        let priv_ok = conforming || (d.dpl() >= cpl && d.dpl() >= (sel & 3) as u8);
        ok = match m {
            M::Verr => d.s() && priv_ok && (!d.code() || d.ty() & 2 != 0),
            M::Verw => d.s() && priv_ok && !d.code() && d.ty() & 2 != 0,
            M::Lsl => priv_ok && (d.s() || matches!(d.ty(), 1 | 2 | 3 | 9 | 11)),
            _ => priv_ok && (d.s() || matches!(d.ty(), 1 | 2 | 3 | 4 | 5 | 9 | 11 | 12)),
        };
        if ok && m == M::Lsl {
            let size = Cpu::op_size(ins, 0);
            c.set_reg(ins.op0_register(), u64::from(d.limit()) & mask(size));
        } else if ok && m == M::Lar {
            let size = Cpu::op_size(ins, 0);
            c.set_reg(
                ins.op0_register(),
                u64::from(d.hi & 0x00f0_ff00) & mask(size),
            );
        }
    }
    c.lf.set_explicit(if ok { flags | fl::ZF } else { flags & !fl::ZF });
    Ok(())
}

/// MOV Sreg, r/m and POP Sreg helpers: load a segment register.
pub(crate) fn load_sreg(c: &mut Cpu, i: usize, sel: u16) -> R<()> {
    if i == sr::CS {
        return Err(ud());
    }
    c.load_seg(i, sel)?;
    if i == sr::SS {
        c.set_shadow = true;
        c.end_block = true;
    }
    Ok(())
}

/// INVLPG.
pub(crate) fn invlpg(c: &mut Cpu, ins: &Instruction) -> R<()> {
    need_cpl0(c)?;
    let off = c.ea(ins);
    let seg = Cpu::mseg(ins);
    let base = if c.long64() && seg < 4 {
        0
    } else {
        c.seg(seg).base
    };
    let lin = base.wrapping_add(off);
    let lin = if c.long64() { lin } else { lin & 0xffff_ffff };
    c.tlb.flush_page(lin);
    c.end_block = true;
    Ok(())
}

/// Privileged no-ops (WBINVD, INVD).
pub(crate) fn priv_nop(c: &mut Cpu) -> R<()> {
    need_cpl0(c)
}
