//! x87 arithmetic. Values are held in the FXSAVE image as 80-bit extended reals; arithmetic
//! is carried out in f64 (53-bit mantissa), so results can differ from hardware in the last
//! bits of extended precision — documented limitation; control flow visible results
//! (comparisons, integer conversions, stack/tag handling) follow the architecture.

use super::fpu::{check_x87, off, rd16, wr16};
use crate::cpu::{ud, Cpu, R};
use crate::flags::fl;
use crate::regs::st;
use iced_x86::{Instruction, MemorySize as Ms, Mnemonic as M, OpKind};

/// Convert an 80-bit extended real to f64.
pub(crate) fn f80_to_f64(b: &[u8]) -> f64 {
    let mant = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let se = u16::from_le_bytes([b[8], b[9]]);
    let neg = se & 0x8000 != 0;
    let exp = i32::from(se & 0x7fff);
    let v = if exp == 0 && mant == 0 {
        0.0
    } else if exp == 0x7fff {
        if mant << 1 == 0 {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else {
        let e = exp - 16383 - 63;
        // Two steps keep the intermediate power of two representable.
        (mant as f64) * 2f64.powi(e / 2) * 2f64.powi(e - e / 2)
    };
    if neg {
        -v
    } else {
        v
    }
}

/// Convert f64 to an 80-bit extended real.
pub(crate) fn f64_to_f80(v: f64) -> [u8; 10] {
    let bits = v.to_bits();
    let neg = bits >> 63 != 0;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (e, m): (u16, u64) = if exp == 0 && frac == 0 {
        (0, 0)
    } else if exp == 0x7ff {
        if frac == 0 {
            (0x7fff, 1 << 63)
        } else {
            (0x7fff, (3 << 62) | (frac << 11))
        }
    } else if exp == 0 {
        // Subnormal double: normalise.
        let lz = frac.leading_zeros() as i32 - 11;
        let m = frac << (11 + lz + 1);
        ((-1022 - lz - 1 + 16383) as u16, m | (1 << 63))
    } else {
        ((exp - 1023 + 16383) as u16, (1 << 63) | (frac << 11))
    };
    let mut out = [0u8; 10];
    out[..8].copy_from_slice(&m.to_le_bytes());
    out[8..].copy_from_slice(&(e | if neg { 0x8000 } else { 0 }).to_le_bytes());
    out
}

/// An integer as an exact 80-bit extended real.
pub(crate) fn i64_to_f80(v: i64) -> [u8; 10] {
    let mut out = [0u8; 10];
    if v == 0 {
        return out;
    }
    let neg = v < 0;
    let mag = v.unsigned_abs();
    let lz = mag.leading_zeros();
    let mant = mag << lz;
    let exp = 16383 + 63 - lz as u16;
    out[..8].copy_from_slice(&mant.to_le_bytes());
    out[8..].copy_from_slice(&(exp | if neg { 0x8000 } else { 0 }).to_le_bytes());
    out
}

/// Round an 80-bit extended real to an integer (rounding control `rc`, 3 = truncate);
/// None when it is NaN, infinite or out of the i64 range.
pub(crate) fn f80_to_i64(b: &[u8], rc: u16) -> Option<i64> {
    let mant = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let se = u16::from_le_bytes([b[8], b[9]]);
    let neg = se & 0x8000 != 0;
    let exp = i32::from(se & 0x7fff);
    if exp == 0x7fff {
        return None;
    }
    if mant == 0 {
        return Some(0);
    }
    let shift = exp - 16383 - 63;
    let mag: u128 = if shift >= 0 {
        if shift > 64 {
            return None;
        }
        u128::from(mant) << shift
    } else {
        let s = (-shift).min(127) as u32;
        let whole = if s >= 64 { 0 } else { u128::from(mant >> s) };
        let rem = if s >= 64 {
            u128::from(mant)
        } else {
            u128::from(mant) & ((1u128 << s) - 1)
        };
        let half = if s >= 128 {
            0
        } else {
            1u128 << (s - 1).min(127)
        };
        let up = match rc {
            0 => rem > half || (rem == half && whole & 1 == 1),
            1 => neg && rem != 0,
            2 => !neg && rem != 0,
            _ => false,
        };
        whole + u128::from(up)
    };
    if neg {
        if mag > 1u128 << 63 {
            return None;
        }
        Some((mag as i128).wrapping_neg() as i64)
    } else {
        if mag >= 1u128 << 63 {
            return None;
        }
        Some(mag as i64)
    }
}

fn raw(c: &Cpu, i: usize) -> [u8; 10] {
    let o = off::ST0 + (i & 7) * 16;
    let mut b = [0u8; 10];
    b.copy_from_slice(&c.s.fpu.fxsave[o..o + 10]);
    b
}

fn set_raw(c: &mut Cpu, i: usize, v: [u8; 10]) {
    let o = off::ST0 + (i & 7) * 16;
    c.s.fpu.fxsave[o..o + 10].copy_from_slice(&v);
    c.s.fpu.fxsave[o + 10..o + 16].fill(0);
    let phys = (top(c) + i) & 7;
    c.s.fpu.fxsave[off::FTW] |= 1 << phys;
}

fn push_raw(c: &mut Cpu, v: [u8; 10]) {
    push(c, 0.0);
    set_raw(c, 0, v);
}

/// Read a memory operand exactly as an 80-bit value (integers and extended reals are
/// exact; singles and doubles widen exactly too).
fn mem_raw(c: &mut Cpu, ins: &Instruction) -> R<[u8; 10]> {
    let ms = ins.memory_size();
    let size = ms.size();
    let a = c.mem_lin(ins, size as u32, false)?;
    let u = c.user();
    let mut b = [0u8; 10];
    c.read_bytes(a, &mut b[..size], u)?;
    let q = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    Ok(match ms {
        Ms::Float80 => b,
        Ms::Int16 => i64_to_f80(i64::from(q as u16 as i16)),
        Ms::Int32 => i64_to_f80(i64::from(q as u32 as i32)),
        Ms::Int64 => i64_to_f80(q as i64),
        _ => f64_to_f80(mem_val(c, ins)?),
    })
}

fn top(c: &Cpu) -> usize {
    usize::from((rd16(c, off::FSW) >> 11) & 7)
}

fn set_top(c: &mut Cpu, t: usize) {
    let sw = (rd16(c, off::FSW) & !0x3800) | ((t as u16 & 7) << 11);
    wr16(c, off::FSW, sw);
}

fn get(c: &Cpu, i: usize) -> f64 {
    let o = off::ST0 + (i & 7) * 16;
    f80_to_f64(&c.s.fpu.fxsave[o..o + 10])
}

fn set(c: &mut Cpu, i: usize, v: f64) {
    let o = off::ST0 + (i & 7) * 16;
    c.s.fpu.fxsave[o..o + 10].copy_from_slice(&f64_to_f80(v));
    let phys = (top(c) + i) & 7;
    c.s.fpu.fxsave[off::FTW] |= 1 << phys;
}

fn is_empty(c: &Cpu, i: usize) -> bool {
    let phys = (top(c) + i) & 7;
    c.s.fpu.fxsave[off::FTW] & (1 << phys) == 0
}

fn push(c: &mut Cpu, v: f64) {
    // Shift the ST-ordered image down by one slot.
    for i in (1..8).rev() {
        let (s, d) = (off::ST0 + (i - 1) * 16, off::ST0 + i * 16);
        let tmp: [u8; 16] = c.s.fpu.fxsave[s..s + 16].try_into().unwrap_or([0; 16]);
        c.s.fpu.fxsave[d..d + 16].copy_from_slice(&tmp);
    }
    let t = (top(c) + 7) & 7;
    set_top(c, t);
    set(c, 0, v);
}

fn pop(c: &mut Cpu) {
    let phys = top(c);
    c.s.fpu.fxsave[off::FTW] &= !(1 << phys);
    let first: [u8; 16] = c.s.fpu.fxsave[off::ST0..off::ST0 + 16]
        .try_into()
        .unwrap_or([0; 16]);
    for i in 0..7 {
        let (s, d) = (off::ST0 + (i + 1) * 16, off::ST0 + i * 16);
        let tmp: [u8; 16] = c.s.fpu.fxsave[s..s + 16].try_into().unwrap_or([0; 16]);
        c.s.fpu.fxsave[d..d + 16].copy_from_slice(&tmp);
    }
    let o = off::ST0 + 7 * 16;
    c.s.fpu.fxsave[o..o + 16].copy_from_slice(&first);
    set_top(c, (phys + 1) & 7);
}

fn set_cc(c: &mut Cpu, c0: bool, c1: bool, c2: bool, c3: bool) {
    let mut sw = rd16(c, off::FSW) & !0x4700;
    if c0 {
        sw |= 0x100;
    }
    if c1 {
        sw |= 0x200;
    }
    if c2 {
        sw |= 0x400;
    }
    if c3 {
        sw |= 0x4000;
    }
    wr16(c, off::FSW, sw);
}

/// Read a memory operand as f64 according to its memory size.
fn mem_val(c: &mut Cpu, ins: &Instruction) -> R<f64> {
    let ms = ins.memory_size();
    let size = ms.size();
    let a = c.mem_lin(ins, size as u32, false)?;
    let u = c.user();
    let mut b = [0u8; 10];
    c.read_bytes(a, &mut b[..size], u)?;
    let q = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    Ok(match ms {
        Ms::Float32 => f64::from(f32::from_bits(q as u32)),
        Ms::Float64 => f64::from_bits(q),
        Ms::Float80 => f80_to_f64(&b),
        Ms::Int16 => f64::from(q as u16 as i16),
        Ms::Int32 => f64::from(q as u32 as i32),
        Ms::Int64 => q as i64 as f64,
        _ => return Err(ud()),
    })
}

fn round_fcw(c: &Cpu, x: f64) -> f64 {
    match (rd16(c, off::FCW) >> 10) & 3 {
        0 => {
            let f = x.floor();
            let d = x - f;
            if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
                f + 1.0
            } else {
                f
            }
        }
        1 => x.floor(),
        2 => x.ceil(),
        _ => x.trunc(),
    }
}

fn store_mem(c: &mut Cpu, ins: &Instruction, v: f64, trunc: bool) -> R<()> {
    let ms = ins.memory_size();
    let size = ms.size();
    let mut b = [0u8; 10];
    match ms {
        Ms::Float32 => b[..4].copy_from_slice(&(v as f32).to_bits().to_le_bytes()),
        Ms::Float64 => b[..8].copy_from_slice(&v.to_bits().to_le_bytes()),
        Ms::Float80 => b = raw(c, 0),
        Ms::Int16 | Ms::Int32 | Ms::Int64 => {
            let _ = v;
            let rc = if trunc {
                3
            } else {
                (rd16(c, off::FCW) >> 10) & 3
            };
            let bits = size as u32 * 8;
            let iv = match f80_to_i64(&raw(c, 0), rc) {
                Some(x)
                    if bits == 64 || (x >= -(1i64 << (bits - 1)) && x < (1i64 << (bits - 1))) =>
                {
                    x
                }
                _ => i64::MIN >> (64 - bits), // integer indefinite
            };
            b[..8].copy_from_slice(&iv.to_le_bytes());
        }
        _ => return Err(ud()),
    }
    let a = c.mem_lin(ins, size as u32, true)?;
    let u = c.user();
    c.write_bytes(a, &b[..size], u)
}

fn compare(c: &mut Cpu, a: f64, b: f64) {
    if a.is_nan() || b.is_nan() {
        set_cc(c, true, false, true, true);
    } else if a < b {
        set_cc(c, true, false, false, false);
    } else if a == b {
        set_cc(c, false, false, false, true);
    } else {
        set_cc(c, false, false, false, false);
    }
}

fn comi(c: &mut Cpu, a: f64, b: f64) {
    let f = if a.is_nan() || b.is_nan() {
        fl::ZF | fl::PF | fl::CF
    } else if a < b {
        fl::CF
    } else if a == b {
        fl::ZF
    } else {
        0
    };
    c.lf.set_explicit(f);
}

/// Source/destination register indexes of a two-register x87 form.
fn regs(ins: &Instruction) -> (usize, usize) {
    let d = st(ins.op0_register()).unwrap_or(0);
    let s = if ins.op_count() > 1 {
        st(ins.op1_register()).unwrap_or(0)
    } else {
        0
    };
    (d, s)
}

/// Execute an x87 instruction; None when `ins` is not one.
pub(crate) fn exec(c: &mut Cpu, ins: &Instruction) -> Option<R<()>> {
    let m = ins.mnemonic();
    let known = matches!(
        m,
        M::Fld
            | M::Fild
            | M::Fst
            | M::Fstp
            | M::Fist
            | M::Fistp
            | M::Fisttp
            | M::Fldz
            | M::Fld1
            | M::Fldpi
            | M::Fldl2t
            | M::Fldl2e
            | M::Fldlg2
            | M::Fldln2
            | M::Fadd
            | M::Faddp
            | M::Fiadd
            | M::Fsub
            | M::Fsubp
            | M::Fsubr
            | M::Fsubrp
            | M::Fisub
            | M::Fisubr
            | M::Fmul
            | M::Fmulp
            | M::Fimul
            | M::Fdiv
            | M::Fdivp
            | M::Fdivr
            | M::Fdivrp
            | M::Fidiv
            | M::Fidivr
            | M::Fchs
            | M::Fabs
            | M::Fsqrt
            | M::Frndint
            | M::Fscale
            | M::Fprem
            | M::Fprem1
            | M::Fcom
            | M::Fcomp
            | M::Fcompp
            | M::Fucom
            | M::Fucomp
            | M::Fucompp
            | M::Ficom
            | M::Ficomp
            | M::Fcomi
            | M::Fcomip
            | M::Fucomi
            | M::Fucomip
            | M::Ftst
            | M::Fxam
            | M::Fxch
            | M::Fcmovb
            | M::Fcmove
            | M::Fcmovbe
            | M::Fcmovu
            | M::Fcmovnb
            | M::Fcmovne
            | M::Fcmovnbe
            | M::Fcmovnu
            | M::Ffree
            | M::Fincstp
            | M::Fdecstp
            | M::Fnop
            | M::Fsin
            | M::Fcos
            | M::Fsincos
            | M::Fptan
            | M::Fpatan
            | M::F2xm1
            | M::Fyl2x
            | M::Fyl2xp1
            | M::Fxtract
            | M::Fnstenv
            | M::Fldenv
            | M::Fnsave
            | M::Frstor
    );
    if !known {
        return None;
    }
    Some(check_x87(c).and_then(|_| run(c, ins, m)))
}

fn run(c: &mut Cpu, ins: &Instruction, m: M) -> R<()> {
    let mem = ins.op_count() >= 1 && ins.op0_kind() == OpKind::Memory;
    match m {
        M::Fld | M::Fild => {
            let v = if mem {
                mem_raw(c, ins)?
            } else {
                raw(c, st(ins.op0_register()).unwrap_or(0))
            };
            push_raw(c, v);
        }
        M::Fldz => push(c, 0.0),
        M::Fld1 => push(c, 1.0),
        M::Fldpi => push(c, std::f64::consts::PI),
        M::Fldl2t => push(c, std::f64::consts::LOG2_10),
        M::Fldl2e => push(c, std::f64::consts::LOG2_E),
        M::Fldlg2 => push(c, std::f64::consts::LOG10_2),
        M::Fldln2 => push(c, std::f64::consts::LN_2),
        M::Fst | M::Fstp | M::Fist | M::Fistp | M::Fisttp => {
            let v = get(c, 0);
            if mem {
                store_mem(c, ins, v, m == M::Fisttp)?;
            } else {
                let d = st(ins.op0_register()).unwrap_or(0);
                let r = raw(c, 0);
                set_raw(c, d, r);
            }
            if matches!(m, M::Fstp | M::Fistp | M::Fisttp) {
                pop(c);
            }
        }
        M::Fadd
        | M::Faddp
        | M::Fiadd
        | M::Fsub
        | M::Fsubp
        | M::Fsubr
        | M::Fsubrp
        | M::Fisub
        | M::Fisubr
        | M::Fmul
        | M::Fmulp
        | M::Fimul
        | M::Fdiv
        | M::Fdivp
        | M::Fdivr
        | M::Fdivrp
        | M::Fidiv
        | M::Fidivr => {
            let (d, a, b) = if mem {
                (0, get(c, 0), mem_val(c, ins)?)
            } else if ins.op_count() == 0 {
                (1, get(c, 1), get(c, 0))
            } else {
                let (d, s) = regs(ins);
                (d, get(c, d), get(c, s))
            };
            let r = match m {
                M::Fadd | M::Faddp | M::Fiadd => a + b,
                M::Fsub | M::Fsubp | M::Fisub => a - b,
                M::Fsubr | M::Fsubrp | M::Fisubr => b - a,
                M::Fmul | M::Fmulp | M::Fimul => a * b,
                M::Fdiv | M::Fdivp | M::Fidiv => a / b,
                _ => b / a,
            };
            set(c, d, r);
            if matches!(
                m,
                M::Faddp | M::Fsubp | M::Fsubrp | M::Fmulp | M::Fdivp | M::Fdivrp
            ) {
                pop(c);
            }
        }
        M::Fchs => {
            let v = get(c, 0);
            set(c, 0, -v);
        }
        M::Fabs => {
            let v = get(c, 0);
            set(c, 0, v.abs());
        }
        M::Fsqrt => {
            let v = get(c, 0);
            set(c, 0, v.sqrt());
        }
        M::Frndint => {
            let v = get(c, 0);
            let r = round_fcw(c, v);
            set(c, 0, r);
        }
        M::Fscale => {
            let (a, b) = (get(c, 0), get(c, 1));
            set(c, 0, a * 2f64.powi(b.trunc() as i32));
        }
        M::Fprem | M::Fprem1 => {
            let (a, b) = (get(c, 0), get(c, 1));
            let q = if m == M::Fprem {
                (a / b).trunc()
            } else {
                (a / b).round()
            };
            let r = a - q * b;
            set(c, 0, r);
            let qi = q.abs() as u64;
            set_cc(c, qi & 2 != 0, qi & 1 != 0, false, qi & 4 != 0);
        }
        M::Fxtract => {
            let v = get(c, 0);
            if v == 0.0 || !v.is_finite() {
                push(c, v);
            } else {
                let e = v.abs().log2().floor();
                set(c, 0, e);
                push(c, v / 2f64.powf(e));
            }
        }
        M::Fcom
        | M::Fcomp
        | M::Fcompp
        | M::Fucom
        | M::Fucomp
        | M::Fucompp
        | M::Ficom
        | M::Ficomp => {
            let b = if mem {
                mem_val(c, ins)?
            } else if ins.op_count() >= 2 {
                get(c, st(ins.op1_register()).unwrap_or(1))
            } else if ins.op_count() == 1 {
                get(c, st(ins.op0_register()).unwrap_or(1))
            } else {
                get(c, 1)
            };
            let a = get(c, 0);
            compare(c, a, b);
            if matches!(m, M::Fcomp | M::Fucomp | M::Ficomp) {
                pop(c);
            }
            if matches!(m, M::Fcompp | M::Fucompp) {
                pop(c);
                pop(c);
            }
        }
        M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip => {
            let (_, s) = regs(ins);
            let (a, b) = (get(c, 0), get(c, s));
            comi(c, a, b);
            if matches!(m, M::Fcomip | M::Fucomip) {
                pop(c);
            }
        }
        M::Ftst => {
            let a = get(c, 0);
            compare(c, a, 0.0);
        }
        M::Fxam => {
            let v = get(c, 0);
            let neg = v.is_sign_negative();
            let (c3, c2, c0) = if is_empty(c, 0) {
                (true, false, true)
            } else if v.is_nan() {
                (false, false, true)
            } else if v.is_infinite() {
                (false, true, true)
            } else if v == 0.0 {
                (true, false, false)
            } else {
                (false, true, false)
            };
            set_cc(c, c0, neg, c2, c3);
        }
        M::Fxch => {
            let s = if ins.op_count() >= 2 { regs(ins).1 } else { 1 };
            let s = if ins.op_count() == 1 {
                st(ins.op0_register()).unwrap_or(1)
            } else {
                s
            };
            let (a, b) = (raw(c, 0), raw(c, s));
            set_raw(c, 0, b);
            set_raw(c, s, a);
        }
        M::Fcmovb
        | M::Fcmove
        | M::Fcmovbe
        | M::Fcmovu
        | M::Fcmovnb
        | M::Fcmovne
        | M::Fcmovnbe
        | M::Fcmovnu => {
            let cond = match m {
                M::Fcmovb => c.lf.cf(),
                M::Fcmove => c.lf.zf(),
                M::Fcmovbe => c.lf.cf() || c.lf.zf(),
                M::Fcmovu => c.lf.pf(),
                M::Fcmovnb => !c.lf.cf(),
                M::Fcmovne => !c.lf.zf(),
                M::Fcmovnbe => !(c.lf.cf() || c.lf.zf()),
                _ => !c.lf.pf(),
            };
            if cond {
                let (_, s) = regs(ins);
                let v = get(c, s);
                set(c, 0, v);
            }
        }
        M::Ffree => {
            let i = st(ins.op0_register()).unwrap_or(0);
            let phys = (top(c) + i) & 7;
            c.s.fpu.fxsave[off::FTW] &= !(1 << phys);
        }
        M::Fincstp => {
            let t = top(c);
            // Rotating TOP without changing tags: rotate the image too.
            let tags = c.s.fpu.fxsave[off::FTW];
            pop(c);
            c.s.fpu.fxsave[off::FTW] = tags;
            set_top(c, (t + 1) & 7);
        }
        M::Fdecstp => {
            let t = top(c);
            let tags = c.s.fpu.fxsave[off::FTW];
            let v7 = get(c, 7);
            push(c, v7);
            c.s.fpu.fxsave[off::FTW] = tags;
            set_top(c, (t + 7) & 7);
        }
        M::Fnop => {}
        M::Fsin | M::Fcos | M::Fptan | M::F2xm1 => {
            let v = get(c, 0);
            let r = match m {
                M::Fsin => v.sin(),
                M::Fcos => v.cos(),
                M::Fptan => v.tan(),
                _ => v.exp2() - 1.0,
            };
            set(c, 0, r);
            if m == M::Fptan {
                push(c, 1.0);
            }
            set_cc(c, false, false, false, false);
        }
        M::Fsincos => {
            let v = get(c, 0);
            set(c, 0, v.sin());
            push(c, v.cos());
        }
        M::Fpatan | M::Fyl2x | M::Fyl2xp1 => {
            let (x, y) = (get(c, 0), get(c, 1));
            let r = match m {
                M::Fpatan => y.atan2(x),
                M::Fyl2x => y * x.log2(),
                _ => y * (x + 1.0).log2(),
            };
            set(c, 1, r);
            pop(c);
        }
        M::Fnstenv | M::Fnsave => {
            let a = c.mem_lin(ins, 28, true)?;
            let u = c.user();
            let mut env = [0u8; 28];
            env[0..2].copy_from_slice(&rd16(c, off::FCW).to_le_bytes());
            env[4..6].copy_from_slice(&rd16(c, off::FSW).to_le_bytes());
            env[8..10].copy_from_slice(&full_tags(c).to_le_bytes());
            c.write_bytes(a, &env, u)?;
            if m == M::Fnsave {
                let mut regs_img = [0u8; 80];
                for i in 0..8 {
                    let o = off::ST0 + i * 16;
                    regs_img[i * 10..i * 10 + 10].copy_from_slice(&c.s.fpu.fxsave[o..o + 10]);
                }
                c.write_bytes(a + 28, &regs_img, u)?;
                super::fpu::fninit(c);
            }
            // FNSTENV masks all exceptions afterwards.
            let cw = rd16(c, off::FCW) | 0x3f;
            wr16(c, off::FCW, cw);
        }
        M::Fldenv | M::Frstor => {
            let a = c.mem_lin(ins, 28, false)?;
            let u = c.user();
            let mut env = [0u8; 28];
            c.read_bytes(a, &mut env, u)?;
            let mut regs_img = [0u8; 80];
            if m == M::Frstor {
                c.read_bytes(a + 28, &mut regs_img, u)?;
            }
            wr16(c, off::FCW, u16::from_le_bytes([env[0], env[1]]));
            wr16(c, off::FSW, u16::from_le_bytes([env[4], env[5]]));
            let tw = u16::from_le_bytes([env[8], env[9]]);
            let mut ab = 0u8;
            for p in 0..8 {
                if (tw >> (p * 2)) & 3 != 3 {
                    ab |= 1 << p;
                }
            }
            c.s.fpu.fxsave[off::FTW] = ab;
            if m == M::Frstor {
                for i in 0..8 {
                    let o = off::ST0 + i * 16;
                    c.s.fpu.fxsave[o..o + 10].copy_from_slice(&regs_img[i * 10..i * 10 + 10]);
                }
            }
        }
        _ => return Err(ud()),
    }
    Ok(())
}

/// The full 16-bit tag word (FSTENV format) from the abridged FXSAVE tags.
fn full_tags(c: &Cpu) -> u16 {
    let ab = c.s.fpu.fxsave[off::FTW];
    let t = top(c);
    let mut tw = 0u16;
    for p in 0..8 {
        let tag = if ab & (1 << p) == 0 {
            3
        } else {
            let i = (p + 8 - t) & 7;
            let v = get(c, i);
            if v == 0.0 {
                1
            } else if !v.is_finite() {
                2
            } else {
                0
            }
        };
        tw |= tag << (p * 2);
    }
    tw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f80_roundtrip() {
        for v in [
            0.0,
            1.0,
            -2.5,
            1e300,
            -1e-300,
            std::f64::consts::PI,
            f64::INFINITY,
        ] {
            assert_eq!(f80_to_f64(&f64_to_f80(v)), v);
        }
        assert!(f80_to_f64(&f64_to_f80(f64::NAN)).is_nan());
        // 1.0 in extended format: exponent 0x3fff, mantissa 0x8000000000000000.
        let b = f64_to_f80(1.0);
        assert_eq!(&b[8..], &[0xff, 0x3f]);
        assert_eq!(b[7], 0x80);
    }
}
