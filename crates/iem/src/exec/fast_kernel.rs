//! Fast paths for instructions that kernel code runs often and user-space integer code
//! rarely: memory INC/DEC (the per-CPU preempt counter), DIV/MUL, PUSHFQ and CLI
//! (`local_irq_save`), indirect calls through memory (paravirt and static calls), the
//! bit-test family, non-locked CMPXCHG/XADD (a uniprocessor kernel patches LOCK out),
//! LEAVE, SETcc to memory, reads of segment registers, sign extensions of RAX, BSWAP,
//! prefetches and TEST/CMP of a high-byte register with an immediate.
//!
//! Counted on the kit's boot, these were most of the instructions that still went
//! through the generic interpreter; each one there costs a mnemonic dispatch and
//! operand decoding and also ends the block's fast phase. Every handler repeats the
//! generic implementation's checks, results, flags and fault order exactly (see the
//! tests in `fast_tests.rs`). LOCK-prefixed forms stay generic (atomic on the host).

use super::{greg, is_setcc, kind_of, m_of, mem_recipe, Handler, Uop};
use crate::cpu::{fault_nc, gp0, vec, Cpu, R};
use crate::flags::{fl, szp, Op};
use crate::regs::{gpr, sreg, Gpr};
use iced_x86::{Code, Instruction, Mnemonic as M, OpKind};

/// Compile an instruction [`super::compile_inner`] has no fast path for, if it is one of
/// this module's forms.
pub(super) fn compile(ins: &Instruction, bits: u32) -> Option<Uop> {
    if ins.has_lock_prefix() {
        return None;
    }
    let mn = ins.mnemonic();
    let (k0, k1) = (kind_of(ins, 0), kind_of(ins, 1));
    let size = if ins.op_count() > 0 {
        Cpu::op_size(ins, 0) as u8
    } else {
        0
    };
    let mem = || mem_recipe(ins, bits);
    match mn {
        M::Inc | M::Dec if k0 == OpKind::Memory => {
            let f = if mn == M::Inc {
                by_size!(incdec_m, size, true)
            } else {
                by_size!(incdec_m, size, false)
            };
            Some(Uop {
                m: mem()?,
                size,
                ..Uop::new(f)
            })
        }
        M::Div | M::Mul if size >= 4 && ins.op_count() == 1 => {
            let f: Handler = match (mn == M::Div, k0 == OpKind::Memory, size) {
                (true, false, 4) => muldiv::<true, false, 4>,
                (true, false, _) => muldiv::<true, false, 8>,
                (true, true, 4) => muldiv::<true, true, 4>,
                (true, true, _) => muldiv::<true, true, 8>,
                (false, false, 4) => muldiv::<false, false, 4>,
                (false, false, _) => muldiv::<false, false, 8>,
                (false, true, 4) => muldiv::<false, true, 4>,
                (false, true, _) => muldiv::<false, true, 8>,
            };
            let (s, m) = if k0 == OpKind::Memory {
                (0, mem()?)
            } else {
                (greg(ins.op0_register())?.0, super::NO_MEM)
            };
            Some(Uop {
                s,
                m,
                size,
                ..Uop::new(f)
            })
        }
        _ if ins.code() == Code::Pushfq => Some(Uop::new(pushfq)),
        M::Cli => Some(Uop::new(cli)),
        M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw
        | M::Prefetch => Some(Uop::new(super::nop)),
        _ if ins.code() == Code::Call_rm64 && k0 == OpKind::Memory && bits == 64 => Some(Uop {
            m: mem()?,
            size: 8,
            ..Uop::new(call_m)
        }),
        _ if ins.code() == Code::Leaveq && bits == 64 => Some(Uop::new(leave_q)),
        M::Mov if k0 == OpKind::Register && k1 == OpKind::Register => {
            let s = sreg(ins.op1_register())? as u8;
            let (d, ds) = greg(ins.op0_register())?;
            (ds >= 2).then(|| Uop {
                d,
                s,
                size: ds,
                ..Uop::new(by_size!(mov_r_sreg, ds))
            })
        }
        M::Bt | M::Bts | M::Btr | M::Btc => bt_compile(ins, bits, size),
        M::Cdqe => Some(Uop::new(cdqe)),
        M::Cdq => Some(Uop::new(cdq)),
        M::Cqo => Some(Uop::new(cqo)),
        M::Bswap => {
            let (d, s) = greg(ins.op0_register())?;
            match s {
                4 => Some(Uop {
                    d,
                    ..Uop::new(bswap::<4>)
                }),
                8 => Some(Uop {
                    d,
                    ..Uop::new(bswap::<8>)
                }),
                _ => None,
            }
        }
        m if is_setcc(m) && k0 == OpKind::Memory => Some(Uop {
            cc: ins.condition_code() as u8 - 1,
            m: mem()?,
            size: 1,
            ..Uop::new(setcc_m)
        }),
        M::Test | M::Cmp if k0 == OpKind::Register && ins.op_count() == 2 => {
            let Some(Gpr::High8(d)) = gpr(ins.op0_register()) else {
                return None;
            };
            if !matches!(k1, OpKind::Immediate8) {
                return None;
            }
            let f: Handler = if mn == M::Test {
                alu_hi_ri::<{ super::TEST }>
            } else {
                alu_hi_ri::<{ super::CMP }>
            };
            Some(Uop {
                d: d as u8,
                imm: (ins.immediate(1) & 0xff) as i32,
                size: 1,
                ..Uop::new(f)
            })
        }
        M::Cmpxchg | M::Xadd if k0 == OpKind::Memory && k1 == OpKind::Register => {
            let (s, ss) = greg(ins.op1_register())?;
            if ss != size || size < 4 {
                return None;
            }
            let f: Handler = match (mn == M::Cmpxchg, size) {
                (true, 4) => cmpxchg_m::<4>,
                (true, _) => cmpxchg_m::<8>,
                (false, 4) => xadd_m::<4>,
                (false, _) => xadd_m::<8>,
            };
            Some(Uop {
                s,
                m: mem()?,
                size,
                ..Uop::new(f)
            })
        }
        _ => None,
    }
}

/// BT/BTS/BTR/BTC: register or memory (64-bit code only) destination, immediate or
/// register bit offset; operand sizes 2, 4 and 8.
fn bt_compile(ins: &Instruction, bits: u32, size: u8) -> Option<Uop> {
    let kind = match ins.mnemonic() {
        M::Bt => 0,
        M::Bts => 1,
        M::Btr => 2,
        _ => 3,
    };
    let imm = match ins.op1_kind() {
        OpKind::Immediate8 => true,
        OpKind::Register => false,
        _ => return None,
    };
    if size < 2 {
        return None;
    }
    macro_rules! pick {
        ($f:ident, $imm:expr) => {
            match kind {
                0 => by_size!($f, size, 0, $imm),
                1 => by_size!($f, size, 1, $imm),
                2 => by_size!($f, size, 2, $imm),
                _ => by_size!($f, size, 3, $imm),
            }
        };
    }
    let s = if imm {
        0
    } else {
        let (s, ss) = greg(ins.op1_register())?;
        if ss != size {
            return None;
        }
        s
    };
    let u = Uop {
        s,
        imm: if imm {
            (ins.immediate(1) & 0xff) as i32
        } else {
            0
        },
        size,
        ..Uop::SLOW
    };
    match ins.op0_kind() {
        OpKind::Register => {
            let (d, _) = greg(ins.op0_register())?;
            let f = if imm {
                pick!(bt_r, true)
            } else {
                pick!(bt_r, false)
            };
            Some(Uop { d, f: Some(f), ..u })
        }
        // The generic path wraps the bit-offset address with the mode's address size,
        // which the recipe's mask matches only in 64-bit code.
        OpKind::Memory if bits == 64 => {
            let f = if imm {
                pick!(bt_m, true)
            } else {
                pick!(bt_m, false)
            };
            Some(Uop {
                m: mem_recipe(ins, bits)?,
                f: Some(f),
                ..u
            })
        }
        _ => None,
    }
}

/// INC/DEC of memory: CF is kept; the flags change only once the write succeeded.
fn incdec_m<const INC: bool, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let m = m_of::<SZ>();
    let n = usize::from(SZ);
    let off = c.ea_of(&u.m);
    let user = c.user();
    let a = c.lin(usize::from(u.m.seg), off, n, true)?;
    let old = c.read_lin(a, n, user)? & m;
    let r = if INC {
        old.wrapping_add(1)
    } else {
        old.wrapping_sub(1)
    } & m;
    c.write_lin(a, n, r, user)?;
    let cf = c.lf.cf();
    c.lf.cin = cf;
    let op = if INC { Op::Inc } else { Op::Dec };
    c.lf.set(op, u32::from(SZ) * 8, old, 1, r);
    Ok(())
}

/// One-operand DIV (`DIV` true) or MUL of RDX:RAX / EDX:EAX by a register or memory
/// operand. DIV raises #DE on a zero divisor or a quotient that does not fit and leaves
/// the flags alone; MUL sets CF = OF = high half non-zero and SF/ZF/PF from the low half.
fn muldiv<const DIV: bool, const MEM: bool, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let m = m_of::<SZ>();
    let bits = u32::from(SZ) * 8;
    let src = if MEM {
        c.fread(&u.m, usize::from(SZ))?
    } else {
        c.g(u.s)
    } & m;
    let lo = c.s.gpr[0] & m;
    if DIV {
        let hi = c.s.gpr[2] & m;
        // hi >= src is exactly "the quotient needs more than SZ bytes".
        if src == 0 || hi >= src {
            return Err(fault_nc(vec::DE));
        }
        let (q, r) = if hi == 0 {
            (lo / src, lo % src)
        } else if SZ == 4 {
            let n = (hi << 32) | lo;
            (n / src, n % src)
        } else {
            let n = (u128::from(hi) << 64) | u128::from(lo);
            ((n / u128::from(src)) as u64, (n % u128::from(src)) as u64)
        };
        c.setg::<SZ>(0, q);
        c.setg::<SZ>(2, r);
    } else {
        let p = u128::from(lo) * u128::from(src);
        let plo = p as u64 & m;
        let phi = (p >> bits) as u64 & m;
        c.setg::<SZ>(0, plo);
        c.setg::<SZ>(2, phi);
        let mut f = szp(bits, plo);
        if phi != 0 {
            f |= fl::CF | fl::OF;
        }
        c.lf.set_explicit(f);
    }
    Ok(())
}

/// PUSHFQ: the flags without VM and RF.
fn pushfq(c: &mut Cpu, _: &Uop) -> R<()> {
    if c.s.rflags & fl::VM != 0 && (c.s.rflags >> 12) & 3 != 3 {
        return Err(gp0());
    }
    let f = c.rflags() & !(fl::VM | fl::RF);
    c.push(8, f)
}

/// CLI. Unlike the generic path it does not end the block: clearing IF cannot make an
/// event deliverable, so the checks made before the block stay valid.
fn cli(c: &mut Cpu, _: &Uop) -> R<()> {
    if c.pmode() {
        let iopl = ((c.s.rflags >> 12) & 3) as u8;
        if c.cpl() > iopl {
            return Err(gp0());
        }
    }
    c.s.rflags &= !fl::IF;
    Ok(())
}

/// CALL qword [mem] in 64-bit code. On entry RIP holds the return address.
fn call_m(c: &mut Cpu, u: &Uop) -> R<()> {
    let t = c.fread(&u.m, 8)?;
    let t = c.canon(t)?;
    let ret = c.s.rip;
    c.push(8, ret)?;
    c.s.rip = t;
    Ok(())
}

/// LEAVE in 64-bit code: RSP = RBP, then pop RBP (RSP restored if the pop faults).
fn leave_q(c: &mut Cpu, _: &Uop) -> R<()> {
    let m = Cpu::mask_for(c.stack_size());
    let sp0 = c.s.gpr[4];
    c.s.gpr[4] = (sp0 & !m) | (c.s.gpr[5] & m);
    match c.pop(8) {
        Ok(v) => {
            c.s.gpr[5] = v;
            Ok(())
        }
        Err(e) => {
            c.s.gpr[4] = sp0;
            Err(e)
        }
    }
}

/// MOV r16/r32/r64, Sreg (`s` = segment register index): the selector, zero-extended.
fn mov_r_sreg<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = u64::from(c.seg(usize::from(u.s)).selector);
    c.setg::<SZ>(u.d, v);
    Ok(())
}

/// Bit `bit` of `v` set, cleared or complemented (`KIND` 1, 2, 3); BT (0) keeps `v`.
#[inline(always)]
fn bt_apply<const KIND: u8>(v: u64, bit: u64) -> u64 {
    match KIND {
        1 => v | (1 << bit),
        2 => v & !(1 << bit),
        3 => v ^ (1 << bit),
        _ => v,
    }
}

/// CF = the tested bit; the other arithmetic flags are kept.
#[inline(always)]
fn bt_flags(c: &mut Cpu, cf: bool) {
    let f = c.rflags() & fl::ARITH;
    c.lf.set_explicit((f & !fl::CF) | u64::from(cf));
}

/// BT* on a register: the offset is taken modulo the operand width.
fn bt_r<const KIND: u8, const IMM: bool, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let m = m_of::<SZ>();
    let off = if IMM { u.imm() } else { c.g(u.s) & m };
    let bit = off % (u64::from(SZ) * 8);
    let v = c.g(u.d) & m;
    if KIND != 0 {
        c.setg::<SZ>(u.d, bt_apply::<KIND>(v, bit));
    }
    bt_flags(c, (v >> bit) & 1 != 0);
    Ok(())
}

/// BT* on memory: a register offset is signed and may address outside the operand (the
/// address moves by whole operands); an immediate one is taken modulo the width.
fn bt_m<const KIND: u8, const IMM: bool, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let n = usize::from(SZ);
    let bits = i64::from(SZ) * 8;
    let (disp, bit) = if IMM {
        (0, u.imm() % bits as u64)
    } else {
        let so = super::sext(c.g(u.s) & m_of::<SZ>(), u32::from(SZ)) as i64;
        (
            so.div_euclid(bits) * i64::from(SZ),
            so.rem_euclid(bits) as u64,
        )
    };
    let off = c.ea_of(&u.m).wrapping_add(disp as u64);
    let user = c.user();
    let a = c.lin(usize::from(u.m.seg), off, n, KIND != 0)?;
    let v = c.read_lin(a, n, user)?;
    if KIND != 0 {
        c.write_lin(a, n, bt_apply::<KIND>(v, bit), user)?;
    }
    bt_flags(c, (v >> bit) & 1 != 0);
    Ok(())
}

/// CDQE: RAX = sign-extended EAX.
fn cdqe(c: &mut Cpu, _: &Uop) -> R<()> {
    c.s.gpr[0] = c.s.gpr[0] as u32 as i32 as i64 as u64;
    Ok(())
}

/// CDQ: EDX = the sign of EAX (RDX's upper half cleared).
fn cdq(c: &mut Cpu, _: &Uop) -> R<()> {
    c.s.gpr[2] = if c.s.gpr[0] & 0x8000_0000 != 0 {
        0xffff_ffff
    } else {
        0
    };
    Ok(())
}

/// CQO: RDX = the sign of RAX.
fn cqo(c: &mut Cpu, _: &Uop) -> R<()> {
    c.s.gpr[2] = if (c.s.gpr[0] as i64) < 0 { u64::MAX } else { 0 };
    Ok(())
}

fn bswap<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.g(u.d);
    let n = if SZ == 8 {
        v.swap_bytes()
    } else {
        u64::from((v as u32).swap_bytes())
    };
    c.setg::<8>(u.d, n);
    Ok(())
}

fn setcc_m(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = u64::from(c.lf.cond(u.cc));
    c.fwrite(&u.m, 1, v)
}

/// TEST/CMP of AH, CH, DH or BH (`d` = the full register's index) with an immediate.
fn alu_hi_ri<const OP: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let a = (c.g(u.d) >> 8) & 0xff;
    super::alu_do::<OP, 1>(c, a, u.imm());
    Ok(())
}

/// CMPXCHG [mem], r without LOCK: the destination is always written (with its old value
/// when the comparison fails), as the generic path and hardware do.
fn cmpxchg_m<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let m = m_of::<SZ>();
    let n = usize::from(SZ);
    let acc = c.s.gpr[0] & m;
    let src = c.g(u.s) & m;
    let off = c.ea_of(&u.m);
    let user = c.user();
    let a = c.lin(usize::from(u.m.seg), off, n, true)?;
    let old = c.read_lin(a, n, user)? & m;
    let new = if old == acc { src } else { old };
    c.write_lin(a, n, new, user)?;
    c.lf.set(
        Op::Sub,
        u32::from(SZ) * 8,
        acc,
        old,
        acc.wrapping_sub(old) & m,
    );
    if old != acc {
        c.setg::<SZ>(0, old);
    }
    Ok(())
}

/// XADD [mem], r without LOCK: memory gets the sum, the register the old value.
fn xadd_m<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let m = m_of::<SZ>();
    let n = usize::from(SZ);
    let b = c.g(u.s) & m;
    let off = c.ea_of(&u.m);
    let user = c.user();
    let a = c.lin(usize::from(u.m.seg), off, n, true)?;
    let old = c.read_lin(a, n, user)? & m;
    let r = old.wrapping_add(b) & m;
    c.write_lin(a, n, r, user)?;
    c.setg::<SZ>(u.s, old);
    c.lf.set(Op::Add, u32::from(SZ) * 8, old, b, r);
    Ok(())
}
