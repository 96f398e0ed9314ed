//! SSE/SSE2 and MMX instructions operating on the XMM/MM registers in the FXSAVE image.
//!
//! Floating-point arithmetic uses the host's IEEE operations in round-to-nearest; MXCSR's
//! rounding control is honoured by the float-to-integer conversions, and exception flags
//! are not accumulated in MXCSR (documented limitation).

use super::fpu::off;
use crate::cpu::{fault_nc, gp0, ud, vec, Cpu, R};
use crate::flags::fl;
use crate::regs::{mmx, xmm};
use iced_x86::{Instruction, Mnemonic as M, OpKind};
use sup::state::cr0;

fn check(c: &Cpu) -> R<()> {
    if c.s.cr0 & cr0::EM != 0 || c.s.cr4 & (1 << 9) == 0 {
        return Err(ud());
    }
    if c.s.cr0 & cr0::TS != 0 {
        return Err(fault_nc(vec::NM));
    }
    Ok(())
}

fn check_mmx(c: &Cpu) -> R<()> {
    if c.s.cr0 & cr0::EM != 0 {
        return Err(ud());
    }
    if c.s.cr0 & cr0::TS != 0 {
        return Err(fault_nc(vec::NM));
    }
    Ok(())
}

pub(crate) fn xmm_get(c: &Cpu, i: usize) -> u128 {
    let o = off::XMM0 + i * 16;
    let mut b = [0u8; 16];
    b.copy_from_slice(&c.s.fpu.fxsave[o..o + 16]);
    u128::from_le_bytes(b)
}

pub(crate) fn xmm_set(c: &mut Cpu, i: usize, v: u128) {
    let o = off::XMM0 + i * 16;
    c.s.fpu.fxsave[o..o + 16].copy_from_slice(&v.to_le_bytes());
}

fn mm_get(c: &Cpu, i: usize) -> u64 {
    let o = off::ST0 + i * 16;
    let mut b = [0u8; 8];
    b.copy_from_slice(&c.s.fpu.fxsave[o..o + 8]);
    u64::from_le_bytes(b)
}

/// Writing an MMX register sets the x87 exponent to all ones, TOP to 0 and all tags valid.
fn mm_set(c: &mut Cpu, i: usize, v: u64) {
    let o = off::ST0 + i * 16;
    c.s.fpu.fxsave[o..o + 8].copy_from_slice(&v.to_le_bytes());
    c.s.fpu.fxsave[o + 8] = 0xff;
    c.s.fpu.fxsave[o + 9] = 0xff;
    mmx_enter(c);
}

fn mmx_enter(c: &mut Cpu) {
    c.s.fpu.fxsave[off::FTW] = 0xff;
    let sw = super::fpu::rd16(c, off::FSW) & !0x3800;
    super::fpu::wr16(c, off::FSW, sw);
}

/// Vector width of the instruction: 16 (XMM) or 8 (MMX).
fn width(ins: &Instruction) -> usize {
    for i in 0..ins.op_count() {
        if ins.op_kind(i) == OpKind::Register && mmx(ins.op_register(i)).is_some() {
            return 8;
        }
    }
    16
}

fn needs_align(m: M) -> bool {
    !matches!(
        m,
        M::Movups | M::Movupd | M::Movdqu | M::Lddqu | M::Movss | M::Movsd | M::Movq | M::Movd
    )
}

/// Read operand `i` as a vector of `w` bytes.
fn vsrc(c: &mut Cpu, ins: &Instruction, i: u32, w: usize) -> R<u128> {
    match ins.op_kind(i) {
        OpKind::Register => {
            let r = ins.op_register(i);
            if let Some(x) = xmm(r) {
                Ok(xmm_get(c, x))
            } else if let Some(m) = mmx(r) {
                Ok(u128::from(mm_get(c, m)))
            } else {
                Ok(u128::from(c.reg(r)))
            }
        }
        OpKind::Memory => {
            let size = (ins.memory_size().size()).min(16);
            let size = if size == 0 { w } else { size };
            let a = c.mem_lin(ins, size as u32, false)?;
            if size == 16 && a & 15 != 0 && needs_align(ins.mnemonic()) {
                return Err(gp0());
            }
            let mut b = [0u8; 16];
            let u = c.user();
            c.read_bytes(a, &mut b[..size], u)?;
            Ok(u128::from_le_bytes(b))
        }
        _ => Ok(u128::from(ins.immediate(i))),
    }
}

/// Write operand 0 (register or memory) with `w` bytes.
fn vdst(c: &mut Cpu, ins: &Instruction, w: usize, v: u128) -> R<()> {
    match ins.op0_kind() {
        OpKind::Register => {
            let r = ins.op0_register();
            if let Some(x) = xmm(r) {
                xmm_set(c, x, v);
            } else if let Some(m) = mmx(r) {
                mm_set(c, m, v as u64);
            } else {
                c.set_reg(r, v as u64);
            }
            Ok(())
        }
        _ => {
            let size = ins.memory_size().size().min(16);
            let size = if size == 0 { w } else { size };
            let a = c.mem_lin(ins, size as u32, true)?;
            if size == 16 && a & 15 != 0 && needs_align(ins.mnemonic()) {
                return Err(gp0());
            }
            let u = c.user();
            c.write_bytes(a, &v.to_le_bytes()[..size], u)
        }
    }
}

/// Apply `f` lane-wise on lanes of `lw` bytes over `w` bytes.
#[inline]
fn map2(a: u128, b: u128, lw: usize, w: usize, f: impl Fn(u64, u64) -> u64) -> u128 {
    let bits = lw * 8;
    let m: u128 = if bits == 64 {
        u64::MAX as u128
    } else {
        (1u128 << bits) - 1
    };
    let mut r = 0u128;
    for k in 0..w / lw {
        let sh = k * bits;
        let x = ((a >> sh) & m) as u64;
        let y = ((b >> sh) & m) as u64;
        r |= (u128::from(f(x, y)) & m) << sh;
    }
    r
}

fn sx(v: u64, lw: usize) -> i64 {
    let s = 64 - lw * 8;
    ((v << s) as i64) >> s
}

fn sat_s(v: i64, lw: usize) -> u64 {
    let max = (1i64 << (lw * 8 - 1)) - 1;
    let min = -(1i64 << (lw * 8 - 1));
    v.clamp(min, max) as u64
}

fn sat_u(v: i64, lw: usize) -> u64 {
    let max = (1i64 << (lw * 8)) - 1;
    v.clamp(0, max) as u64
}

fn f32s(v: u128, k: usize) -> f32 {
    f32::from_bits((v >> (k * 32)) as u32)
}

fn f64s(v: u128, k: usize) -> f64 {
    f64::from_bits((v >> (k * 64)) as u64)
}

fn set32(v: u128, k: usize, x: u32) -> u128 {
    (v & !(0xffff_ffffu128 << (k * 32))) | (u128::from(x) << (k * 32))
}

fn set64(v: u128, k: usize, x: u64) -> u128 {
    (v & !(u128::from(u64::MAX) << (k * 64))) | (u128::from(x) << (k * 64))
}

fn mxcsr(c: &Cpu) -> u32 {
    super::fpu::rd32(c, off::MXCSR)
}

/// Round per MXCSR.RC (or truncate) and convert to a signed integer of `bits`; out of
/// range and NaN give the "integer indefinite" value.
fn f2i(x: f64, bits: u32, trunc: bool, rc: u32) -> u64 {
    let r = if trunc {
        x.trunc()
    } else {
        match rc {
            0 => {
                let f = x.floor();
                let d = x - f;
                if d > 0.5 || (d == 0.5 && (f as i64) % 2 != 0) {
                    f + 1.0
                } else {
                    f
                }
            }
            1 => x.floor(),
            2 => x.ceil(),
            _ => x.trunc(),
        }
    };
    let lim = 2f64.powi(bits as i32 - 1);
    if r.is_nan() || r >= lim || r < -lim {
        if bits == 32 {
            0x8000_0000
        } else {
            0x8000_0000_0000_0000
        }
    } else if bits == 32 {
        (r as i64 as i32) as u32 as u64
    } else {
        r as i64 as u64
    }
}

fn fmin32(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}
fn fmax32(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}
fn fmin64(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}
fn fmax64(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else {
        b
    }
}

fn cmp_pred(a: f64, b: f64, p: u8) -> bool {
    match p & 7 {
        0 => a == b,
        1 => a < b,
        2 => a <= b,
        3 => a.is_nan() || b.is_nan(),
        4 => a != b || a.is_nan() || b.is_nan(),
        5 => a.partial_cmp(&b).is_none_or(|o| o.is_ge()),
        6 => a.partial_cmp(&b).is_none_or(|o| o.is_gt()),
        _ => !(a.is_nan() || b.is_nan()),
    }
}

#[derive(Clone, Copy)]
enum Fop {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Sqrt,
}

fn fop32(o: Fop, a: f32, b: f32) -> f32 {
    match o {
        Fop::Add => a + b,
        Fop::Sub => a - b,
        Fop::Mul => a * b,
        Fop::Div => a / b,
        Fop::Min => fmin32(a, b),
        Fop::Max => fmax32(a, b),
        Fop::Sqrt => b.sqrt(),
    }
}

fn fop64(o: Fop, a: f64, b: f64) -> f64 {
    match o {
        Fop::Add => a + b,
        Fop::Sub => a - b,
        Fop::Mul => a * b,
        Fop::Div => a / b,
        Fop::Min => fmin64(a, b),
        Fop::Max => fmax64(a, b),
        Fop::Sqrt => b.sqrt(),
    }
}

/// Execute an SSE/SSE2/MMX instruction; None when `ins` is not one.
pub(crate) fn exec(c: &mut Cpu, ins: &Instruction) -> Option<R<()>> {
    let m = ins.mnemonic();
    let fop = match m {
        M::Addps | M::Addss | M::Addpd | M::Addsd => Some(Fop::Add),
        M::Subps | M::Subss | M::Subpd | M::Subsd => Some(Fop::Sub),
        M::Mulps | M::Mulss | M::Mulpd | M::Mulsd => Some(Fop::Mul),
        M::Divps | M::Divss | M::Divpd | M::Divsd => Some(Fop::Div),
        M::Minps | M::Minss | M::Minpd | M::Minsd => Some(Fop::Min),
        M::Maxps | M::Maxss | M::Maxpd | M::Maxsd => Some(Fop::Max),
        M::Sqrtps | M::Sqrtss | M::Sqrtpd | M::Sqrtsd => Some(Fop::Sqrt),
        _ => None,
    };
    if let Some(o) = fop {
        return Some(float_arith(c, ins, o));
    }
    let r = match m {
        M::Movsd | M::Cmpsd if ins.is_string_instruction() => return None,
        M::Ldmxcsr => check(c).and_then(|_| {
            let v = c.read_op(ins, 0, 4)?;
            if v & !0xffff != 0 {
                return Err(gp0());
            }
            super::fpu::wr32(c, off::MXCSR, v as u32);
            Ok(())
        }),
        M::Stmxcsr => check(c).and_then(|_| {
            let v = u64::from(mxcsr(c));
            c.write_op(ins, 0, 4, v)
        }),
        M::Emms => check_mmx(c).map(|_| {
            c.s.fpu.fxsave[off::FTW] = 0;
        }),
        _ => {
            let w = width(ins);
            let ok = if w == 8 { check_mmx(c) } else { check(c) };
            if let Err(e) = ok {
                // Only report the fault for instructions we implement.
                return if implemented(m) { Some(Err(e)) } else { None };
            }
            return int_ops(c, ins, m, w);
        }
    };
    Some(r)
}

fn implemented(m: M) -> bool {
    matches!(
        m,
        M::Movd
            | M::Movq
            | M::Movdqa
            | M::Movdqu
            | M::Movaps
            | M::Movups
            | M::Movapd
            | M::Movupd
            | M::Movntdq
            | M::Movntps
            | M::Movntpd
            | M::Movnti
            | M::Movntq
            | M::Lddqu
            | M::Movss
            | M::Movsd
            | M::Movhps
            | M::Movhpd
            | M::Movlps
            | M::Movlpd
            | M::Movhlps
            | M::Movlhps
            | M::Pxor
            | M::Por
            | M::Pand
            | M::Pandn
            | M::Xorps
            | M::Xorpd
            | M::Orps
            | M::Orpd
            | M::Andps
            | M::Andpd
            | M::Andnps
            | M::Andnpd
            | M::Paddb
            | M::Paddw
            | M::Paddd
            | M::Paddq
            | M::Psubb
            | M::Psubw
            | M::Psubd
            | M::Psubq
            | M::Paddusb
            | M::Paddusw
            | M::Paddsb
            | M::Paddsw
            | M::Psubusb
            | M::Psubusw
            | M::Psubsb
            | M::Psubsw
            | M::Pcmpeqb
            | M::Pcmpeqw
            | M::Pcmpeqd
            | M::Pcmpgtb
            | M::Pcmpgtw
            | M::Pcmpgtd
            | M::Pmovmskb
            | M::Movmskps
            | M::Movmskpd
            | M::Pminub
            | M::Pmaxub
            | M::Pminsw
            | M::Pmaxsw
            | M::Pavgb
            | M::Pavgw
            | M::Psadbw
            | M::Pmullw
            | M::Pmulhw
            | M::Pmulhuw
            | M::Pmuludq
            | M::Pmaddwd
            | M::Psllw
            | M::Pslld
            | M::Psllq
            | M::Psrlw
            | M::Psrld
            | M::Psrlq
            | M::Psraw
            | M::Psrad
            | M::Pslldq
            | M::Psrldq
            | M::Punpcklbw
            | M::Punpcklwd
            | M::Punpckldq
            | M::Punpcklqdq
            | M::Punpckhbw
            | M::Punpckhwd
            | M::Punpckhdq
            | M::Punpckhqdq
            | M::Packsswb
            | M::Packssdw
            | M::Packuswb
            | M::Pshufd
            | M::Pshuflw
            | M::Pshufhw
            | M::Pshufw
            | M::Shufps
            | M::Shufpd
            | M::Unpcklps
            | M::Unpckhps
            | M::Unpcklpd
            | M::Unpckhpd
            | M::Pextrw
            | M::Pinsrw
            | M::Cmpps
            | M::Cmpss
            | M::Cmppd
            | M::Cmpsd
            | M::Comiss
            | M::Comisd
            | M::Ucomiss
            | M::Ucomisd
            | M::Cvtsi2ss
            | M::Cvtsi2sd
            | M::Cvttss2si
            | M::Cvtss2si
            | M::Cvttsd2si
            | M::Cvtsd2si
            | M::Cvtss2sd
            | M::Cvtsd2ss
            | M::Cvtdq2ps
            | M::Cvtps2dq
            | M::Cvttps2dq
            | M::Cvtdq2pd
            | M::Cvtpd2dq
            | M::Cvttpd2dq
            | M::Cvtps2pd
            | M::Cvtpd2ps
            | M::Movq2dq
            | M::Movdq2q
            | M::Rcpps
            | M::Rcpss
            | M::Rsqrtps
            | M::Rsqrtss
            | M::Maskmovdqu
    )
}

fn float_arith(c: &mut Cpu, ins: &Instruction, o: Fop) -> R<()> {
    check(c)?;
    let m = ins.mnemonic();
    let d = xmm(ins.op0_register()).ok_or_else(ud)?;
    let a = xmm_get(c, d);
    let b = vsrc(c, ins, 1, 16)?;
    let kind = match m {
        M::Addps | M::Subps | M::Mulps | M::Divps | M::Minps | M::Maxps | M::Sqrtps => 0,
        M::Addpd | M::Subpd | M::Mulpd | M::Divpd | M::Minpd | M::Maxpd | M::Sqrtpd => 1,
        M::Addss | M::Subss | M::Mulss | M::Divss | M::Minss | M::Maxss | M::Sqrtss => 2,
        _ => 3,
    };
    let r = if kind == 0 {
        let mut r = a;
        for k in 0..4 {
            r = set32(r, k, fop32(o, f32s(a, k), f32s(b, k)).to_bits());
        }
        r
    } else if kind == 1 {
        let mut r = a;
        for k in 0..2 {
            r = set64(r, k, fop64(o, f64s(a, k), f64s(b, k)).to_bits());
        }
        r
    } else if kind == 2 {
        set32(a, 0, fop32(o, f32s(a, 0), f32s(b, 0)).to_bits())
    } else {
        set64(a, 0, fop64(o, f64s(a, 0), f64s(b, 0)).to_bits())
    };
    xmm_set(c, d, r);
    Ok(())
}

fn int_ops(c: &mut Cpu, ins: &Instruction, m: M, w: usize) -> Option<R<()>> {
    let r = (|| -> R<()> {
        match m {
            M::Movd | M::Movq => {
                let k0 = ins.op0_kind();
                let r0 = if k0 == OpKind::Register {
                    Some(ins.op0_register())
                } else {
                    None
                };
                let dst_vec = r0
                    .map(|r| xmm(r).is_some() || mmx(r).is_some())
                    .unwrap_or(false);
                let size = if m == M::Movd { 4 } else { 8 };
                if dst_vec {
                    let v = vsrc(c, ins, 1, size)?
                        & if size == 4 {
                            0xffff_ffff
                        } else {
                            u64::MAX as u128
                        };
                    vdst(c, ins, w, v)
                } else {
                    let v = vsrc(c, ins, 1, size)?;
                    let v = if size == 4 {
                        v & 0xffff_ffff
                    } else {
                        v & u64::MAX as u128
                    };
                    if k0 == OpKind::Register {
                        c.set_reg(ins.op0_register(), v as u64);
                        Ok(())
                    } else {
                        let a = c.mem_lin(ins, size as u32, true)?;
                        let u = c.user();
                        c.write_lin(a, size, v as u64, u)
                    }
                }
            }
            M::Movdqa
            | M::Movdqu
            | M::Movaps
            | M::Movups
            | M::Movapd
            | M::Movupd
            | M::Movntdq
            | M::Movntps
            | M::Movntpd
            | M::Lddqu
            | M::Movntq => {
                let v = vsrc(c, ins, 1, w)?;
                vdst(c, ins, w, v)
            }
            M::Movnti => {
                let size = Cpu::op_size(ins, 0);
                let v = c.read_op(ins, 1, size)?;
                c.write_op(ins, 0, size, v)
            }
            M::Movss | M::Movsd => {
                let lw = if m == M::Movss { 4 } else { 8 };
                let lm: u128 = if lw == 4 {
                    0xffff_ffff
                } else {
                    u64::MAX as u128
                };
                match (ins.op0_kind(), ins.op1_kind()) {
                    (OpKind::Register, OpKind::Register) => {
                        let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                        let a = xmm_get(c, d);
                        let b = vsrc(c, ins, 1, 16)?;
                        xmm_set(c, d, (a & !lm) | (b & lm));
                        Ok(())
                    }
                    (OpKind::Register, _) => {
                        let b = vsrc(c, ins, 1, lw)?;
                        let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                        xmm_set(c, d, b & lm);
                        Ok(())
                    }
                    _ => {
                        let b = vsrc(c, ins, 1, 16)?;
                        vdst(c, ins, lw, b & lm)
                    }
                }
            }
            M::Movhps | M::Movhpd | M::Movlps | M::Movlpd => {
                let high = matches!(m, M::Movhps | M::Movhpd);
                if ins.op0_kind() == OpKind::Register {
                    let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                    let a = xmm_get(c, d);
                    let b = vsrc(c, ins, 1, 8)? & u64::MAX as u128;
                    let r = if high {
                        set64(a, 1, b as u64)
                    } else {
                        set64(a, 0, b as u64)
                    };
                    xmm_set(c, d, r);
                    Ok(())
                } else {
                    let b = vsrc(c, ins, 1, 16)?;
                    let v = if high { b >> 64 } else { b & u64::MAX as u128 };
                    vdst(c, ins, 8, v)
                }
            }
            M::Movhlps | M::Movlhps => {
                let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                let a = xmm_get(c, d);
                let b = vsrc(c, ins, 1, 16)?;
                let r = if m == M::Movhlps {
                    set64(a, 0, (b >> 64) as u64)
                } else {
                    set64(a, 1, b as u64)
                };
                xmm_set(c, d, r);
                Ok(())
            }
            M::Movq2dq | M::Movdq2q => {
                let b = vsrc(c, ins, 1, 16)? & u64::MAX as u128;
                if m == M::Movq2dq {
                    let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                    xmm_set(c, d, b);
                } else {
                    let d = mmx(ins.op0_register()).ok_or_else(ud)?;
                    mm_set(c, d, b as u64);
                }
                Ok(())
            }
            M::Pmovmskb | M::Movmskps | M::Movmskpd => {
                let v = vsrc(c, ins, 1, w)?;
                let (lw, n) = match m {
                    M::Pmovmskb => (1, w),
                    M::Movmskps => (4, 4),
                    _ => (8, 2),
                };
                let mut r = 0u64;
                for k in 0..n {
                    if (v >> (k * lw * 8 + lw * 8 - 1)) & 1 != 0 {
                        r |= 1 << k;
                    }
                }
                c.set_reg(ins.op0_register(), r);
                Ok(())
            }
            M::Pextrw => {
                let v = vsrc(c, ins, 1, w)?;
                let k = (ins.immediate8() as usize) % (w / 2);
                c.set_reg(ins.op0_register(), ((v >> (k * 16)) & 0xffff) as u64);
                Ok(())
            }
            M::Pinsrw => {
                let dst = vsrc(c, ins, 0, w)?;
                let v = if ins.op1_kind() == OpKind::Register {
                    c.reg(ins.op1_register())
                } else {
                    c.read_op(ins, 1, 2)?
                } & 0xffff;
                let k = (ins.immediate8() as usize) % (w / 2);
                let r = (dst & !(0xffffu128 << (k * 16))) | (u128::from(v) << (k * 16));
                vdst(c, ins, w, r)
            }
            M::Maskmovdqu => Err(ud()),
            M::Cvtsi2ss | M::Cvtsi2sd => {
                let size = Cpu::op_size(ins, 1);
                let v = super::operand::sext(c.read_op(ins, 1, size)?, size) as i64;
                let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                let a = xmm_get(c, d);
                let r = if m == M::Cvtsi2ss {
                    set32(a, 0, (v as f32).to_bits())
                } else {
                    set64(a, 0, (v as f64).to_bits())
                };
                xmm_set(c, d, r);
                Ok(())
            }
            M::Cvttss2si | M::Cvtss2si | M::Cvttsd2si | M::Cvtsd2si => {
                let single = matches!(m, M::Cvttss2si | M::Cvtss2si);
                let b = vsrc(c, ins, 1, if single { 4 } else { 8 })?;
                let x = if single {
                    f64::from(f32s(b, 0))
                } else {
                    f64s(b, 0)
                };
                let bits = super::operand::reg_size(ins.op0_register()) * 8;
                let trunc = matches!(m, M::Cvttss2si | M::Cvttsd2si);
                let rc = (mxcsr(c) >> 13) & 3;
                c.set_reg(ins.op0_register(), f2i(x, bits, trunc, rc));
                Ok(())
            }
            M::Cvtss2sd | M::Cvtsd2ss => {
                let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                let a = xmm_get(c, d);
                let b = vsrc(c, ins, 1, if m == M::Cvtss2sd { 4 } else { 8 })?;
                let r = if m == M::Cvtss2sd {
                    set64(a, 0, f64::from(f32s(b, 0)).to_bits())
                } else {
                    set32(a, 0, (f64s(b, 0) as f32).to_bits())
                };
                xmm_set(c, d, r);
                Ok(())
            }
            M::Cvtdq2ps
            | M::Cvtps2dq
            | M::Cvttps2dq
            | M::Cvtdq2pd
            | M::Cvtpd2dq
            | M::Cvttpd2dq
            | M::Cvtps2pd
            | M::Cvtpd2ps => {
                let b = vsrc(c, ins, 1, 16)?;
                let rc = (mxcsr(c) >> 13) & 3;
                let mut r = 0u128;
                match m {
                    M::Cvtdq2ps => {
                        for k in 0..4 {
                            r = set32(r, k, ((b >> (k * 32)) as u32 as i32 as f32).to_bits());
                        }
                    }
                    M::Cvtps2dq | M::Cvttps2dq => {
                        for k in 0..4 {
                            let v = f2i(f64::from(f32s(b, k)), 32, m == M::Cvttps2dq, rc);
                            r = set32(r, k, v as u32);
                        }
                    }
                    M::Cvtdq2pd => {
                        for k in 0..2 {
                            r = set64(r, k, f64::from((b >> (k * 32)) as u32 as i32).to_bits());
                        }
                    }
                    M::Cvtpd2dq | M::Cvttpd2dq => {
                        for k in 0..2 {
                            let v = f2i(f64s(b, k), 32, m == M::Cvttpd2dq, rc);
                            r = set32(r, k, v as u32);
                        }
                    }
                    M::Cvtps2pd => {
                        for k in 0..2 {
                            r = set64(r, k, f64::from(f32s(b, k)).to_bits());
                        }
                    }
                    _ => {
                        for k in 0..2 {
                            r = set32(r, k, (f64s(b, k) as f32).to_bits());
                        }
                    }
                }
                vdst(c, ins, 16, r)
            }
            M::Comiss | M::Comisd | M::Ucomiss | M::Ucomisd => {
                let single = matches!(m, M::Comiss | M::Ucomiss);
                let a = xmm_get(c, xmm(ins.op0_register()).ok_or_else(ud)?);
                let b = vsrc(c, ins, 1, if single { 4 } else { 8 })?;
                let (x, y) = if single {
                    (f64::from(f32s(a, 0)), f64::from(f32s(b, 0)))
                } else {
                    (f64s(a, 0), f64s(b, 0))
                };
                let f = if x.is_nan() || y.is_nan() {
                    fl::ZF | fl::PF | fl::CF
                } else if x < y {
                    fl::CF
                } else if x == y {
                    fl::ZF
                } else {
                    0
                };
                c.lf.set_explicit(f);
                Ok(())
            }
            M::Cmpps | M::Cmpss | M::Cmppd | M::Cmpsd => {
                let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                let a = xmm_get(c, d);
                let b = vsrc(c, ins, 1, 16)?;
                let p = ins.immediate8();
                let r = match m {
                    M::Cmpps => {
                        let mut r = 0;
                        for k in 0..4 {
                            let t = cmp_pred(f64::from(f32s(a, k)), f64::from(f32s(b, k)), p);
                            r = set32(r, k, if t { u32::MAX } else { 0 });
                        }
                        r
                    }
                    M::Cmpss => {
                        let t = cmp_pred(f64::from(f32s(a, 0)), f64::from(f32s(b, 0)), p);
                        set32(a, 0, if t { u32::MAX } else { 0 })
                    }
                    M::Cmppd => {
                        let mut r = 0;
                        for k in 0..2 {
                            let t = cmp_pred(f64s(a, k), f64s(b, k), p);
                            r = set64(r, k, if t { u64::MAX } else { 0 });
                        }
                        r
                    }
                    _ => {
                        let t = cmp_pred(f64s(a, 0), f64s(b, 0), p);
                        set64(a, 0, if t { u64::MAX } else { 0 })
                    }
                };
                xmm_set(c, d, r);
                Ok(())
            }
            M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss => {
                let d = xmm(ins.op0_register()).ok_or_else(ud)?;
                let a = xmm_get(c, d);
                let b = vsrc(c, ins, 1, 16)?;
                let f = |x: f32| {
                    if matches!(m, M::Rcpps | M::Rcpss) {
                        1.0 / x
                    } else {
                        1.0 / x.sqrt()
                    }
                };
                let r = if matches!(m, M::Rcpps | M::Rsqrtps) {
                    let mut r = 0;
                    for k in 0..4 {
                        r = set32(r, k, f(f32s(b, k)).to_bits());
                    }
                    r
                } else {
                    set32(a, 0, f(f32s(b, 0)).to_bits())
                };
                xmm_set(c, d, r);
                Ok(())
            }
            _ => {
                let a = vsrc(c, ins, 0, w)?;
                let two_src = ins.op_count() >= 2;
                let b = if two_src { vsrc(c, ins, 1, w)? } else { 0 };
                let r = match lanes(c, ins, m, a, b, w) {
                    Some(r) => r,
                    None => return Err(Stop2::NotMine.into()),
                };
                vdst(c, ins, w, r)
            }
        }
    })();
    match r {
        Err(crate::cpu::Stop::Fault(f)) if f.vector == 0xff => None,
        other => Some(other),
    }
}

/// Internal marker: not an instruction of this module.
enum Stop2 {
    NotMine,
}

impl From<Stop2> for crate::cpu::Stop {
    fn from(_: Stop2) -> Self {
        crate::cpu::Stop::Fault(crate::cpu::Fault {
            vector: 0xff,
            code: None,
        })
    }
}

fn shift_count(ins: &Instruction, b: u128) -> u64 {
    if ins.op1_kind() == OpKind::Immediate8 {
        u64::from(ins.immediate8())
    } else if b >> 64 != 0 {
        u64::MAX
    } else {
        b as u64
    }
}

/// Lane-wise integer and logic operations.
fn lanes(c: &Cpu, ins: &Instruction, m: M, a: u128, b: u128, w: usize) -> Option<u128> {
    let _ = c;
    let wm: u128 = if w == 16 { u128::MAX } else { u64::MAX as u128 };
    Some(
        match m {
            M::Pxor | M::Xorps | M::Xorpd => a ^ b,
            M::Por | M::Orps | M::Orpd => a | b,
            M::Pand | M::Andps | M::Andpd => a & b,
            M::Pandn | M::Andnps | M::Andnpd => !a & b & wm,
            M::Paddb => map2(a, b, 1, w, |x, y| x.wrapping_add(y)),
            M::Paddw => map2(a, b, 2, w, |x, y| x.wrapping_add(y)),
            M::Paddd => map2(a, b, 4, w, |x, y| x.wrapping_add(y)),
            M::Paddq => map2(a, b, 8, w, |x, y| x.wrapping_add(y)),
            M::Psubb => map2(a, b, 1, w, |x, y| x.wrapping_sub(y)),
            M::Psubw => map2(a, b, 2, w, |x, y| x.wrapping_sub(y)),
            M::Psubd => map2(a, b, 4, w, |x, y| x.wrapping_sub(y)),
            M::Psubq => map2(a, b, 8, w, |x, y| x.wrapping_sub(y)),
            M::Paddusb => map2(a, b, 1, w, |x, y| sat_u(x as i64 + y as i64, 1)),
            M::Paddusw => map2(a, b, 2, w, |x, y| sat_u(x as i64 + y as i64, 2)),
            M::Psubusb => map2(a, b, 1, w, |x, y| sat_u(x as i64 - y as i64, 1)),
            M::Psubusw => map2(a, b, 2, w, |x, y| sat_u(x as i64 - y as i64, 2)),
            M::Paddsb => map2(a, b, 1, w, |x, y| sat_s(sx(x, 1) + sx(y, 1), 1)),
            M::Paddsw => map2(a, b, 2, w, |x, y| sat_s(sx(x, 2) + sx(y, 2), 2)),
            M::Psubsb => map2(a, b, 1, w, |x, y| sat_s(sx(x, 1) - sx(y, 1), 1)),
            M::Psubsw => map2(a, b, 2, w, |x, y| sat_s(sx(x, 2) - sx(y, 2), 2)),
            M::Pcmpeqb => map2(a, b, 1, w, |x, y| if x == y { u64::MAX } else { 0 }),
            M::Pcmpeqw => map2(a, b, 2, w, |x, y| if x == y { u64::MAX } else { 0 }),
            M::Pcmpeqd => map2(a, b, 4, w, |x, y| if x == y { u64::MAX } else { 0 }),
            M::Pcmpgtb => map2(
                a,
                b,
                1,
                w,
                |x, y| if sx(x, 1) > sx(y, 1) { u64::MAX } else { 0 },
            ),
            M::Pcmpgtw => map2(
                a,
                b,
                2,
                w,
                |x, y| if sx(x, 2) > sx(y, 2) { u64::MAX } else { 0 },
            ),
            M::Pcmpgtd => map2(
                a,
                b,
                4,
                w,
                |x, y| if sx(x, 4) > sx(y, 4) { u64::MAX } else { 0 },
            ),
            M::Pminub => map2(a, b, 1, w, |x, y| x.min(y)),
            M::Pmaxub => map2(a, b, 1, w, |x, y| x.max(y)),
            M::Pminsw => map2(a, b, 2, w, |x, y| sx(x, 2).min(sx(y, 2)) as u64),
            M::Pmaxsw => map2(a, b, 2, w, |x, y| sx(x, 2).max(sx(y, 2)) as u64),
            M::Pavgb => map2(a, b, 1, w, |x, y| (x + y + 1) >> 1),
            M::Pavgw => map2(a, b, 2, w, |x, y| (x + y + 1) >> 1),
            M::Pmullw => map2(a, b, 2, w, |x, y| (sx(x, 2) * sx(y, 2)) as u64),
            M::Pmulhw => map2(a, b, 2, w, |x, y| ((sx(x, 2) * sx(y, 2)) >> 16) as u64),
            M::Pmulhuw => map2(a, b, 2, w, |x, y| (x * y) >> 16),
            M::Pmuludq => map2(a, b, 8, w, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
            M::Pmaddwd => map2(a, b, 4, w, |x, y| {
                let p0 = sx(x & 0xffff, 2) * sx(y & 0xffff, 2);
                let p1 = sx(x >> 16, 2) * sx(y >> 16, 2);
                (p0 + p1) as u64
            }),
            M::Psadbw => map2(a, b, 8, w, |x, y| {
                let mut s = 0u64;
                for k in 0..8 {
                    let p = (x >> (k * 8)) & 0xff;
                    let q = (y >> (k * 8)) & 0xff;
                    s += p.abs_diff(q);
                }
                s
            }),
            M::Psllw
            | M::Pslld
            | M::Psllq
            | M::Psrlw
            | M::Psrld
            | M::Psrlq
            | M::Psraw
            | M::Psrad => {
                let n = shift_count(ins, b);
                let lw = match m {
                    M::Psllw | M::Psrlw | M::Psraw => 2,
                    M::Pslld | M::Psrld | M::Psrad => 4,
                    _ => 8,
                };
                let bits = (lw * 8) as u64;
                map2(a, 0, lw, w, |x, _| match m {
                    M::Psllw | M::Pslld | M::Psllq => {
                        if n >= bits {
                            0
                        } else {
                            x << n
                        }
                    }
                    M::Psrlw | M::Psrld | M::Psrlq => {
                        if n >= bits {
                            0
                        } else {
                            x >> n
                        }
                    }
                    _ => (sx(x, lw) >> n.min(bits - 1)) as u64,
                })
            }
            M::Pslldq => {
                let n = u32::from(ins.immediate8());
                if n >= 16 {
                    0
                } else {
                    a << (n * 8)
                }
            }
            M::Psrldq => {
                let n = u32::from(ins.immediate8());
                if n >= 16 {
                    0
                } else {
                    a >> (n * 8)
                }
            }
            M::Punpcklbw
            | M::Punpcklwd
            | M::Punpckldq
            | M::Punpcklqdq
            | M::Punpckhbw
            | M::Punpckhwd
            | M::Punpckhdq
            | M::Punpckhqdq
            | M::Unpcklps
            | M::Unpckhps
            | M::Unpcklpd
            | M::Unpckhpd => {
                let lw = match m {
                    M::Punpcklbw | M::Punpckhbw => 1,
                    M::Punpcklwd | M::Punpckhwd => 2,
                    M::Punpckldq | M::Punpckhdq | M::Unpcklps | M::Unpckhps => 4,
                    _ => 8,
                };
                let high = matches!(
                    m,
                    M::Punpckhbw
                        | M::Punpckhwd
                        | M::Punpckhdq
                        | M::Punpckhqdq
                        | M::Unpckhps
                        | M::Unpckhpd
                );
                let n = w / lw / 2;
                let bits = lw * 8;
                let lm: u128 = if bits == 64 {
                    u64::MAX as u128
                } else {
                    (1u128 << bits) - 1
                };
                let base = if high { n } else { 0 };
                let mut r = 0u128;
                for k in 0..n {
                    let x = (a >> ((base + k) * bits)) & lm;
                    let y = (b >> ((base + k) * bits)) & lm;
                    r |= x << (2 * k * bits);
                    r |= y << ((2 * k + 1) * bits);
                }
                r
            }
            M::Packsswb | M::Packssdw | M::Packuswb => {
                let (lw, sat): (usize, fn(i64) -> u64) = match m {
                    M::Packsswb => (2, |v| sat_s(v, 1)),
                    M::Packssdw => (4, |v| sat_s(v, 2)),
                    _ => (2, |v| sat_u(v, 1)),
                };
                let n = w / lw;
                let ob = lw * 4;
                let om: u128 = (1u128 << ob) - 1;
                let mut r = 0u128;
                for k in 0..n {
                    let x = sx(((a >> (k * lw * 8)) as u64) & ((1u64 << (lw * 8)) - 1), lw);
                    r |= (u128::from(sat(x)) & om) << (k * ob);
                }
                for k in 0..n {
                    let y = sx(((b >> (k * lw * 8)) as u64) & ((1u64 << (lw * 8)) - 1), lw);
                    r |= (u128::from(sat(y)) & om) << ((n + k) * ob);
                }
                r
            }
            M::Pshufd => {
                let imm = ins.immediate8();
                let mut r = 0;
                for k in 0..4 {
                    let s = ((imm >> (k * 2)) & 3) as usize;
                    r = set32(r, k, (b >> (s * 32)) as u32);
                }
                r
            }
            M::Pshuflw | M::Pshufhw | M::Pshufw => {
                let imm = ins.immediate8();
                let base = if m == M::Pshufhw { 4 } else { 0 };
                let mut r = b;
                for k in 0..4 {
                    let s = ((imm >> (k * 2)) & 3) as usize;
                    let v = (b >> ((base + s) * 16)) & 0xffff;
                    r = (r & !(0xffffu128 << ((base + k) * 16))) | (v << ((base + k) * 16));
                }
                r
            }
            M::Shufps => {
                let imm = ins.immediate8();
                let mut r = 0;
                for k in 0..4 {
                    let s = ((imm >> (k * 2)) & 3) as usize;
                    let src = if k < 2 { a } else { b };
                    r = set32(r, k, (src >> (s * 32)) as u32);
                }
                r
            }
            M::Shufpd => {
                let imm = ins.immediate8();
                let lo = (a >> ((imm & 1) as usize * 64)) as u64;
                let hi = (b >> (((imm >> 1) & 1) as usize * 64)) as u64;
                set64(set64(0, 0, lo), 1, hi)
            }
            _ => return None,
        } & wm,
    )
}
