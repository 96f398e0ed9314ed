//! x87 control and state save/restore (FXSAVE/FXRSTOR, FNINIT, FNSTSW, FLDCW, ...).
//! The x87/MMX/SSE state lives in the FXSAVE image of [`sup::VcpuState`].

use crate::cpu::{fault_nc, gp0, ud, vec, Cpu, R};
use iced_x86::{Instruction, Mnemonic as M};
use sup::state::cr0;

/// FXSAVE image offsets.
pub(crate) mod off {
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    pub const FTW: usize = 4;
    pub const MXCSR: usize = 24;
    pub const ST0: usize = 32;
    pub const XMM0: usize = 160;
}

pub(crate) fn rd16(c: &Cpu, o: usize) -> u16 {
    u16::from_le_bytes([c.s.fpu.fxsave[o], c.s.fpu.fxsave[o + 1]])
}

pub(crate) fn wr16(c: &mut Cpu, o: usize, v: u16) {
    c.s.fpu.fxsave[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn rd32(c: &Cpu, o: usize) -> u32 {
    let b = &c.s.fpu.fxsave[o..o + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn wr32(c: &mut Cpu, o: usize, v: u32) {
    c.s.fpu.fxsave[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// #NM / #UD checks for x87 instructions.
pub(crate) fn check_x87(c: &Cpu) -> R<()> {
    if c.s.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(fault_nc(vec::NM));
    }
    Ok(())
}

/// Reset the x87 state like FNINIT.
pub(crate) fn fninit(c: &mut Cpu) {
    wr16(c, off::FCW, 0x037f);
    wr16(c, off::FSW, 0);
    c.s.fpu.fxsave[off::FTW] = 0;
    c.s.fpu.fxsave[6..24].fill(0);
}

/// Execute an x87 control/state instruction; None when `ins` is not one.
pub(crate) fn exec(c: &mut Cpu, ins: &Instruction) -> Option<R<()>> {
    Some(match ins.mnemonic() {
        M::Fxsave | M::Fxsave64 => fxsave(c, ins),
        M::Fxrstor | M::Fxrstor64 => fxrstor(c, ins),
        M::Fninit => check_x87(c).map(|_| fninit(c)),
        M::Fnclex => check_x87(c).map(|_| {
            let sw = rd16(c, off::FSW) & 0x7f00;
            wr16(c, off::FSW, sw);
        }),
        M::Fnstsw => check_x87(c).and_then(|_| {
            let sw = u64::from(rd16(c, off::FSW));
            c.write_op(ins, 0, 2, sw)
        }),
        M::Fnstcw => check_x87(c).and_then(|_| {
            let cw = u64::from(rd16(c, off::FCW));
            c.write_op(ins, 0, 2, cw)
        }),
        M::Fldcw => check_x87(c).and_then(|_| {
            let v = c.read_op(ins, 0, 2)? as u16;
            wr16(c, off::FCW, v | 0x40);
            Ok(())
        }),
        M::Wait => {
            if c.s.cr0 & (cr0::MP | cr0::TS) == (cr0::MP | cr0::TS) {
                Err(fault_nc(vec::NM))
            } else {
                Ok(())
            }
        }
        _ => return crate::exec::fpu_x87(c, ins),
    })
}

fn fx_check(c: &Cpu, ins: &Instruction) -> R<u64> {
    if c.s.cr0 & (cr0::EM) != 0 {
        return Err(ud());
    }
    if c.s.cr0 & cr0::TS != 0 {
        return Err(fault_nc(vec::NM));
    }
    let a = c.mem_lin(ins, 512, false)?;
    if a & 15 != 0 {
        return Err(gp0());
    }
    Ok(a)
}

fn fxsave(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let a = fx_check(c, ins)?;
    c.mem_lin(ins, 512, true)?;
    let mut img = c.s.fpu.fxsave;
    // Bytes 464..512 are available to software; FXSAVE leaves them alone.
    let u = c.user();
    let mut tail = [0u8; 48];
    c.read_bytes(a + 464, &mut tail, u)?;
    img[464..].copy_from_slice(&tail);
    if c.s.cr4 & (1 << 9) == 0 {
        // Without CR4.OSFXSR the SSE part is not saved.
        c.read_bytes(a + 160, &mut img[160..416], u)?;
        let mut m = [0u8; 8];
        c.read_bytes(a + 24, &mut m, u)?;
        img[24..32].copy_from_slice(&m);
    }
    c.write_bytes(a, &img, u)
}

fn fxrstor(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let a = fx_check(c, ins)?;
    let mut img = [0u8; 512];
    let u = c.user();
    c.read_bytes(a, &mut img, u)?;
    let mxcsr = u32::from_le_bytes([img[24], img[25], img[26], img[27]]);
    if mxcsr & !0xffff != 0 {
        return Err(gp0());
    }
    let keep_sse = c.s.cr4 & (1 << 9) == 0;
    let old = c.s.fpu.fxsave;
    c.s.fpu.fxsave[..464].copy_from_slice(&img[..464]);
    // MXCSR_MASK is not restored.
    c.s.fpu.fxsave[28..32].copy_from_slice(&old[28..32]);
    if keep_sse {
        c.s.fpu.fxsave[160..416].copy_from_slice(&old[160..416]);
        c.s.fpu.fxsave[24..28].copy_from_slice(&old[24..28]);
    }
    Ok(())
}
