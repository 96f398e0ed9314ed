//! Integer arithmetic, logic, shifts/rotates, multiply/divide, bit operations and BCD.

use super::operand::{mask, sext, Loc};
use crate::cpu::{fault_nc, vec, Cpu, R};
use crate::flags::{fl, szp, Op};
use iced_x86::{Instruction, OpKind};

/// The two-operand ALU group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bin {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

#[inline]
fn bits_of(size: u32) -> u32 {
    size * 8
}

/// ADD/OR/ADC/SBB/AND/SUB/XOR/CMP/TEST.
#[inline]
pub(crate) fn binop(c: &mut Cpu, ins: &Instruction, op: Bin) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    let m = mask(size);
    let b = c.read_op(ins, 1, size)? & m;
    let bits = bits_of(size);
    match op {
        Bin::Cmp => {
            let a = c.read_op(ins, 0, size)? & m;
            c.lf.set(Op::Sub, bits, a, b, a.wrapping_sub(b) & m);
            return Ok(());
        }
        Bin::Test => {
            let a = c.read_op(ins, 0, size)? & m;
            c.lf.set(Op::Logic, bits, a, b, a & b);
            return Ok(());
        }
        _ => {}
    }
    let cin = matches!(op, Bin::Adc | Bin::Sbb) && c.lf.cf();
    let ci = u64::from(cin);
    let (a, r) = match op {
        Bin::Add => c.rmw0(ins, size, |a| a.wrapping_add(b))?,
        Bin::Or => c.rmw0(ins, size, |a| a | b)?,
        Bin::Adc => c.rmw0(ins, size, |a| a.wrapping_add(b).wrapping_add(ci))?,
        Bin::Sbb => c.rmw0(ins, size, |a| a.wrapping_sub(b).wrapping_sub(ci))?,
        Bin::And => c.rmw0(ins, size, |a| a & b)?,
        Bin::Sub => c.rmw0(ins, size, |a| a.wrapping_sub(b))?,
        _ => c.rmw0(ins, size, |a| a ^ b)?,
    };
    let a = a & m;
    let lop = match op {
        Bin::Add => Op::Add,
        Bin::Adc => Op::Adc,
        Bin::Sbb => Op::Sbb,
        Bin::Sub => Op::Sub,
        _ => Op::Logic,
    };
    c.lf.cin = cin;
    c.lf.set(lop, bits, a, b, r);
    Ok(())
}

/// INC/DEC/NEG/NOT.
pub(crate) fn unop(c: &mut Cpu, ins: &Instruction, m: iced_x86::Mnemonic) -> R<()> {
    use iced_x86::Mnemonic as M;
    let size = Cpu::op_size(ins, 0);
    let bits = bits_of(size);
    match m {
        M::Inc => {
            let cf = c.lf.cf();
            let (a, r) = c.rmw0(ins, size, |a| a.wrapping_add(1))?;
            c.lf.cin = cf;
            c.lf.set(Op::Inc, bits, a & mask(size), 1, r);
        }
        M::Dec => {
            let cf = c.lf.cf();
            let (a, r) = c.rmw0(ins, size, |a| a.wrapping_sub(1))?;
            c.lf.cin = cf;
            c.lf.set(Op::Dec, bits, a & mask(size), 1, r);
        }
        M::Neg => {
            let (a, r) = c.rmw0(ins, size, |a| 0u64.wrapping_sub(a))?;
            c.lf.set(Op::Sub, bits, 0, a & mask(size), r);
        }
        _ => {
            c.rmw0(ins, size, |a| !a)?;
        }
    }
    Ok(())
}

fn msb(v: u64, size: u32) -> bool {
    v >> (bits_of(size) - 1) & 1 != 0
}

/// Shift and rotate group (count from operand 1).
pub(crate) fn shift(c: &mut Cpu, ins: &Instruction, mn: iced_x86::Mnemonic) -> R<()> {
    use iced_x86::Mnemonic as M;
    let size = Cpu::op_size(ins, 0);
    let bits = bits_of(size);
    let m = mask(size);
    let raw = if ins.op_count() > 1 {
        c.read_op(ins, 1, 1)?
    } else {
        1
    };
    let cnt = (raw & if size == 8 { 0x3f } else { 0x1f }) as u32;
    if cnt == 0 {
        // No flags change, but a 32-bit register destination is still written (its upper
        // half is cleared), as hardware does.
        let l = c.loc0(ins, size)?;
        let v = c.read_loc(l, size)?;
        if size == 4 && matches!(l, Loc::Reg(_)) {
            c.write_loc(l, size, v)?;
        }
        return Ok(());
    }
    let l = c.loc0(ins, size)?;
    let a = c.read_loc(l, size)? & m;
    let old = c.rflags();
    let mut f = old & fl::ARITH;
    let set = |f: &mut u64, bit: u64, on: bool| {
        if on {
            *f |= bit
        } else {
            *f &= !bit
        }
    };
    let r;
    match mn {
        M::Shl | M::Sal => {
            r = if cnt >= 64 { 0 } else { (a << cnt) & m };
            let cf = if cnt <= bits {
                (a >> (bits - cnt)) & 1 != 0
            } else {
                false
            };
            set(&mut f, fl::CF, cf);
            set(&mut f, fl::OF, msb(r, size) ^ cf);
            f = (f & !(fl::ZF | fl::SF | fl::PF | fl::AF)) | szp(bits, r);
        }
        M::Shr => {
            r = if cnt >= 64 { 0 } else { a >> cnt };
            let cf = if cnt <= bits {
                (a >> (cnt - 1)) & 1 != 0
            } else {
                false
            };
            set(&mut f, fl::CF, cf);
            set(&mut f, fl::OF, msb(a, size));
            f = (f & !(fl::ZF | fl::SF | fl::PF | fl::AF)) | szp(bits, r);
        }
        M::Sar => {
            let sa = sext(a, size) as i64;
            r = (sa >> cnt.min(63)) as u64 & m;
            let cf = (sa >> (cnt - 1).min(63)) & 1 != 0;
            set(&mut f, fl::CF, cf);
            set(&mut f, fl::OF, false);
            f = (f & !(fl::ZF | fl::SF | fl::PF | fl::AF)) | szp(bits, r);
        }
        M::Rol => {
            let k = cnt % bits;
            r = if k == 0 {
                a
            } else {
                ((a << k) | (a >> (bits - k))) & m
            };
            let cf = r & 1 != 0;
            set(&mut f, fl::CF, cf);
            set(&mut f, fl::OF, msb(r, size) ^ cf);
        }
        M::Ror => {
            let k = cnt % bits;
            r = if k == 0 {
                a
            } else {
                ((a >> k) | (a << (bits - k))) & m
            };
            let cf = msb(r, size);
            set(&mut f, fl::CF, cf);
            set(&mut f, fl::OF, msb(r, size) ^ msb(r << 1, size));
        }
        M::Rcl | M::Rcr => {
            let k = if size <= 2 { cnt % (bits + 1) } else { cnt };
            let mut v = a;
            let mut cf = old & fl::CF != 0;
            for _ in 0..k {
                if mn == M::Rcl {
                    let out = msb(v, size);
                    v = ((v << 1) | u64::from(cf)) & m;
                    cf = out;
                } else {
                    let out = v & 1 != 0;
                    v = (v >> 1) | (u64::from(cf) << (bits - 1));
                    cf = out;
                }
            }
            r = v;
            set(&mut f, fl::CF, cf);
            if mn == M::Rcl {
                set(&mut f, fl::OF, msb(r, size) ^ cf);
            } else {
                set(&mut f, fl::OF, msb(r, size) ^ msb(r << 1, size));
            }
        }
        _ => return Err(crate::cpu::ud()),
    }
    c.write_loc(l, size, r)?;
    c.lf.set_explicit(f);
    Ok(())
}

/// SHLD / SHRD.
pub(crate) fn shxd(c: &mut Cpu, ins: &Instruction, left: bool) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    let bits = bits_of(size);
    let m = mask(size);
    let src = c.read_op(ins, 1, size)? & m;
    let raw = c.read_op(ins, 2, 1)?;
    let cnt = (raw & if size == 8 { 0x3f } else { 0x1f }) as u32;
    let l = c.loc0(ins, size)?;
    let a = c.read_loc(l, size)? & m;
    if cnt == 0 {
        if size == 4 && matches!(l, Loc::Reg(_)) {
            c.write_loc(l, size, a)?;
        }
        return Ok(());
    }
    // Work in 128 bits on the concatenation; 16-bit operands with counts above 16 give
    // architecturally undefined results.
    let (r, cf) = if left {
        let wide = (u128::from(a) << bits) | u128::from(src);
        let r = (wide << cnt) >> bits;
        let cf = (wide >> (2 * bits - cnt)) & 1 != 0;
        (r as u64 & m, cf)
    } else {
        let wide = (u128::from(src) << bits) | u128::from(a);
        let r = wide >> cnt;
        let cf = (wide >> (cnt - 1)) & 1 != 0;
        (r as u64 & m, cf)
    };
    c.write_loc(l, size, r)?;
    let mut f = szp(bits, r);
    if cf {
        f |= fl::CF;
    }
    if msb(r, size) != msb(a, size) {
        f |= fl::OF;
    }
    c.lf.set_explicit(f);
    Ok(())
}

/// MUL / IMUL (one operand form) / IMUL two- and three-operand forms.
pub(crate) fn mul(c: &mut Cpu, ins: &Instruction, signed: bool) -> R<()> {
    if ins.op_count() >= 2 {
        let size = Cpu::op_size(ins, 0);
        let (x, y) = if ins.op_count() == 3 {
            (c.read_op(ins, 1, size)?, c.read_op(ins, 2, size)?)
        } else {
            (c.read_op(ins, 0, size)?, c.read_op(ins, 1, size)?)
        };
        let p = i128::from(sext(x, size) as i64) * i128::from(sext(y, size) as i64);
        let r = p as u64 & mask(size);
        let ovf = i128::from(sext(r, size) as i64) != p;
        c.set_reg(ins.op0_register(), r);
        let mut f = szp(size * 8, r);
        if ovf {
            f |= fl::CF | fl::OF;
        }
        c.lf.set_explicit(f);
        return Ok(());
    }
    let size = Cpu::op_size(ins, 0);
    let src = c.read_op(ins, 0, size)? & mask(size);
    let a = c.s.gpr[0] & mask(size);
    let (lo, hi, ovf) = if signed {
        let p = i128::from(sext(a, size) as i64) * i128::from(sext(src, size) as i64);
        let lo = p as u64 & mask(size);
        let hi = (p >> (size * 8)) as u64 & mask(size);
        (lo, hi, i128::from(sext(lo, size) as i64) != p)
    } else {
        let p = u128::from(a) * u128::from(src);
        let lo = p as u64 & mask(size);
        let hi = (p >> (size * 8)) as u64 & mask(size);
        (lo, hi, hi != 0)
    };
    if size == 1 {
        c.set_gpr_sized(0, 2, (hi << 8) | lo);
    } else {
        c.set_gpr_sized(0, size, lo);
        c.set_gpr_sized(2, size, hi);
    }
    let mut f = szp(size * 8, lo);
    if ovf {
        f |= fl::CF | fl::OF;
    }
    c.lf.set_explicit(f);
    Ok(())
}

/// DIV / IDIV.
pub(crate) fn div(c: &mut Cpu, ins: &Instruction, signed: bool) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    let d = c.read_op(ins, 0, size)? & mask(size);
    if d == 0 {
        return Err(fault_nc(vec::DE));
    }
    let bits = size * 8;
    let (lo, hi) = if size == 1 {
        (c.s.gpr[0] & 0xff, (c.s.gpr[0] >> 8) & 0xff)
    } else {
        (c.s.gpr[0] & mask(size), c.s.gpr[2] & mask(size))
    };
    let n = (u128::from(hi) << bits) | u128::from(lo);
    let (q, r) = if signed {
        let sn = if bits == 64 {
            n as i128
        } else {
            ((n << (128 - 2 * bits)) as i128) >> (128 - 2 * bits)
        };
        let sd = i128::from(sext(d, size) as i64);
        let q = sn / sd;
        let r = sn % sd;
        let lim = 1i128 << (bits - 1);
        if q >= lim || q < -lim {
            return Err(fault_nc(vec::DE));
        }
        (q as u64 & mask(size), r as u64 & mask(size))
    } else {
        let q = n / u128::from(d);
        if q > u128::from(mask(size)) {
            return Err(fault_nc(vec::DE));
        }
        (q as u64, (n % u128::from(d)) as u64)
    };
    if size == 1 {
        c.set_gpr_sized(0, 2, (r << 8) | q);
    } else {
        c.set_gpr_sized(0, size, q);
        c.set_gpr_sized(2, size, r);
    }
    Ok(())
}

/// BT / BTS / BTR / BTC.
pub(crate) fn bt(c: &mut Cpu, ins: &Instruction, mn: iced_x86::Mnemonic) -> R<()> {
    use iced_x86::Mnemonic as M;
    let size = Cpu::op_size(ins, 0);
    let bits = u64::from(size * 8);
    let off = c.read_op(
        ins,
        1,
        if ins.op1_kind() == OpKind::Register {
            size
        } else {
            1
        },
    )?;
    let (loc, bit) = match ins.op0_kind() {
        OpKind::Register => (Loc::Reg(ins.op0_register()), off % bits),
        _ => {
            let ea = c.ea(ins);
            let (disp, bit) = if ins.op1_kind() == OpKind::Register {
                let so = sext(off, size) as i64;
                (
                    so.div_euclid(bits as i64) * i64::from(size),
                    so.rem_euclid(bits as i64) as u64,
                )
            } else {
                (0, off % bits)
            };
            let asz = if c.long64() { 8 } else { c.bits / 8 };
            let off = ea.wrapping_add(disp as u64) & mask(asz.max(2));
            let write = mn != M::Bt;
            (
                Loc::Mem(c.lin(Cpu::mseg(ins), off, size as usize, write)?),
                bit,
            )
        }
    };
    let cf = if mn == M::Bt {
        let v = c.read_loc(loc, size)?;
        (v >> bit) & 1 != 0
    } else {
        let f = move |v: u64| match mn {
            M::Bts => v | (1 << bit),
            M::Btr => v & !(1 << bit),
            _ => v ^ (1 << bit),
        };
        let old = match loc {
            Loc::Mem(a) if ins.has_lock_prefix() => c.atomic_rmw(a, size as usize, f)?,
            _ => {
                let v = c.read_loc(loc, size)?;
                c.write_loc(loc, size, f(v))?;
                v
            }
        };
        (old >> bit) & 1 != 0
    };
    let fl_ = c.rflags() & fl::ARITH;
    c.lf.set_explicit((fl_ & !fl::CF) | u64::from(cf));
    Ok(())
}

/// BSF / BSR (also TZCNT/LZCNT, which execute as BSF/BSR on CPUs without BMI1/ABM, as
/// on the CPU we present).
pub(crate) fn bsx(c: &mut Cpu, ins: &Instruction, forward: bool) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    let v = c.read_op(ins, 1, size)? & mask(size);
    let old = c.rflags() & fl::ARITH;
    if v == 0 {
        c.lf.set_explicit((old & !fl::ZF) | fl::ZF);
        return Ok(());
    }
    let r = if forward {
        u64::from(v.trailing_zeros())
    } else {
        u64::from(63 - v.leading_zeros())
    };
    c.set_reg(ins.op0_register(), r);
    c.lf.set_explicit(old & !fl::ZF);
    Ok(())
}

/// POPCNT.
pub(crate) fn popcnt(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    let v = c.read_op(ins, 1, size)? & mask(size);
    c.set_reg(ins.op0_register(), u64::from(v.count_ones()));
    c.lf.set_explicit(if v == 0 { fl::ZF } else { 0 });
    Ok(())
}

/// DAA / DAS / AAA / AAS / AAM / AAD.
pub(crate) fn bcd(c: &mut Cpu, ins: &Instruction, mn: iced_x86::Mnemonic) -> R<()> {
    use iced_x86::Mnemonic as M;
    let ax = c.s.gpr[0] & 0xffff;
    let al = ax & 0xff;
    let f = c.rflags() & fl::ARITH;
    let (cf0, af0) = (f & fl::CF != 0, f & fl::AF != 0);
    let mut nf;
    let new_ax;
    match mn {
        M::Daa | M::Das => {
            let mut a = al;
            let mut cf = false;
            let mut af = false;
            if (al & 0xf) > 9 || af0 {
                if mn == M::Daa {
                    cf = cf0 || al + 6 > 0xff;
                    a = (a + 6) & 0xff;
                } else {
                    cf = cf0 || al < 6;
                    a = a.wrapping_sub(6) & 0xff;
                }
                af = true;
            }
            if al > 0x99 || cf0 {
                a = if mn == M::Daa {
                    (a + 0x60) & 0xff
                } else {
                    a.wrapping_sub(0x60) & 0xff
                };
                cf = true;
            } else if mn == M::Daa {
                cf = false;
            }
            nf = szp(8, a) | if cf { fl::CF } else { 0 } | if af { fl::AF } else { 0 };
            new_ax = (ax & 0xff00) | a;
        }
        M::Aaa | M::Aas => {
            if (al & 0xf) > 9 || af0 {
                let v = if mn == M::Aaa {
                    ax.wrapping_add(0x106)
                } else {
                    let lo = al.wrapping_sub(6) & 0xff;
                    let hi = ((ax >> 8).wrapping_sub(1)) & 0xff;
                    (hi << 8) | lo
                };
                new_ax = v & 0xff0f;
                nf = fl::AF | fl::CF | (szp(8, new_ax & 0xff) & !fl::ZF & !fl::SF);
            } else {
                new_ax = ax & 0xff0f;
                nf = szp(8, new_ax & 0xff) & !fl::ZF & !fl::SF;
            }
            nf |= szp(8, new_ax & 0xff) & (fl::ZF | fl::SF);
        }
        M::Aam => {
            let b = u64::from(ins.immediate8());
            if b == 0 {
                return Err(fault_nc(vec::DE));
            }
            let a = al % b;
            new_ax = ((al / b) << 8) | a;
            nf = szp(8, a);
        }
        _ => {
            let b = u64::from(ins.immediate8());
            let a = (al + (ax >> 8) * b) & 0xff;
            new_ax = a;
            nf = szp(8, a);
        }
    }
    c.set_gpr_sized(0, 2, new_ax);
    c.lf.set_explicit(nf);
    Ok(())
}
