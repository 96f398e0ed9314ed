//! String instructions (MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS) with REP prefixes, and
//! port I/O (IN, OUT).
//!
//! Every REP iteration commits RSI/RDI/RCX before the next one starts, so a fault, an MMIO
//! exit or the end of the time slice leaves a restartable state, as on hardware.

use super::operand::mask;
use crate::cpu::{gp0, sr, Cpu, PendingIn, Stop, R};
use crate::flags::{fl, Op};
use crate::mmu::Acc;
use iced_x86::{Instruction, Mnemonic, OpKind};
use sup::{IoDirection, VmExit};

/// Iterations executed per call before yielding to the block loop (interrupt checks).
const CHUNK: u64 = 16384;

fn addr_size(ins: &Instruction) -> u32 {
    for i in 0..ins.op_count() {
        match ins.op_kind(i) {
            OpKind::MemorySegSI | OpKind::MemoryESDI => return 2,
            OpKind::MemorySegESI | OpKind::MemoryESEDI => return 4,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => return 8,
            _ => {}
        }
    }
    8
}

/// Segment of the source (DS:rSI, overridable) operand.
fn src_seg(ins: &Instruction) -> usize {
    for i in 0..ins.op_count() {
        if matches!(
            ins.op_kind(i),
            OpKind::MemorySegSI | OpKind::MemorySegESI | OpKind::MemorySegRSI
        ) {
            return Cpu::mseg(ins);
        }
    }
    sr::DS
}

fn io_allowed(c: &Cpu) -> R<()> {
    if c.pmode() && (c.cpl() > ((c.s.rflags >> 12) & 3) as u8 || c.s.rflags & fl::VM != 0) {
        // The TSS I/O permission bitmap is not consulted: guests we run give user space
        // port access only through IOPL.
        return Err(gp0());
    }
    Ok(())
}

/// Execute a string instruction.
pub(crate) fn string(c: &mut Cpu, ins: &Instruction, mn: Mnemonic) -> R<()> {
    let size = ins.memory_size().size() as u64;
    let asz = addr_size(ins);
    let am = mask(asz);
    let rep = ins.has_rep_prefix() || ins.has_repne_prefix();
    let down = c.s.rflags & fl::DF != 0;
    let step = if down { size.wrapping_neg() } else { size };
    let sseg = src_seg(ins);
    let mut done = 0u64;
    if matches!(
        mn,
        Mnemonic::Insb
            | Mnemonic::Insw
            | Mnemonic::Insd
            | Mnemonic::Outsb
            | Mnemonic::Outsw
            | Mnemonic::Outsd
    ) {
        io_allowed(c)?;
    }
    loop {
        if rep && c.s.gpr[1] & am == 0 {
            return Ok(());
        }
        let si = c.s.gpr[6] & am;
        let di = c.s.gpr[7] & am;
        let mut n = 1u64; // iterations this step
        let mut adv_si = false;
        let mut adv_di = false;
        let mut stop_cond = false;
        match mn {
            Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => {
                n = if rep && !down {
                    bulk(c, Some((sseg, si)), di, size, am, 0)?
                } else {
                    0
                };
                if n == 0 {
                    n = 1;
                    let v = c.read_mem(sseg, si, size as usize)?;
                    c.write_mem(sr::ES, di, size as usize, v)?;
                }
                adv_si = true;
                adv_di = true;
            }
            Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
                let v = c.s.gpr[0] & mask(size as u32);
                n = if rep && !down {
                    bulk(c, None, di, size, am, v)?
                } else {
                    0
                };
                if n == 0 {
                    n = 1;
                    c.write_mem(sr::ES, di, size as usize, v)?;
                }
                adv_di = true;
            }
            Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => {
                let v = c.read_mem(sseg, si, size as usize)?;
                c.set_gpr_sized(0, size as u32, v);
                adv_si = true;
            }
            Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq => {
                let a = c.read_mem(sseg, si, size as usize)?;
                let b = c.read_mem(sr::ES, di, size as usize)?;
                let bits = (size * 8) as u32;
                c.lf.set(Op::Sub, bits, a, b, a.wrapping_sub(b) & mask(size as u32));
                adv_si = true;
                adv_di = true;
                stop_cond = true;
            }
            Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq => {
                let a = c.s.gpr[0] & mask(size as u32);
                let b = c.read_mem(sr::ES, di, size as usize)?;
                let bits = (size * 8) as u32;
                c.lf.set(Op::Sub, bits, a, b, a.wrapping_sub(b) & mask(size as u32));
                adv_di = true;
                stop_cond = true;
            }
            Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => {
                n = batch(c, rep, di, size, down, am);
                ins_step(c, ins, di, size, step, n)?;
                adv_di = true;
            }
            Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => {
                n = batch(c, rep, si, size, down, am);
                outs_step(c, ins, sseg, si, size, step, n)?;
                adv_si = true;
            }
            _ => return Err(crate::cpu::ud()),
        }
        let delta = step.wrapping_mul(n);
        if adv_si {
            c.s.gpr[6] = (c.s.gpr[6] & !am) | (si.wrapping_add(delta) & am);
            if asz == 4 {
                c.s.gpr[6] &= 0xffff_ffff;
            }
        }
        if adv_di {
            c.s.gpr[7] = (c.s.gpr[7] & !am) | (di.wrapping_add(delta) & am);
            if asz == 4 {
                c.s.gpr[7] &= 0xffff_ffff;
            }
        }
        if !rep {
            return Ok(());
        }
        let cx = (c.s.gpr[1] & am).wrapping_sub(n) & am;
        c.s.gpr[1] = (c.s.gpr[1] & !am) | cx;
        if asz == 4 {
            c.s.gpr[1] &= 0xffff_ffff;
        }
        c.commit_point();
        done += n;
        if stop_cond {
            let zf = c.lf.zf();
            if (ins.has_repe_prefix() && !zf) || (ins.has_repne_prefix() && zf) {
                return Ok(());
            }
        }
        if cx == 0 {
            return Ok(());
        }
        if done >= CHUNK || c.exit.is_some() || !c.mmio_wq.is_empty() {
            // More to do: re-execute this instruction after the loop had its say.
            c.s.rip = c.start_rip;
            return Ok(());
        }
    }
}

/// REP MOVS (`src` = Some) or REP STOS (`src` = None, storing `value`) forward over RAM:
/// move as many whole elements as fit in the current source and destination pages with one
/// copy, instead of one translated access per element. Returns the elements moved, or 0
/// when this step must take the one-element path: fewer than two elements, an element that
/// crosses a page, a segment limit or address wrap inside the run, MMIO or ROM on either
/// side, or a destination that overlaps the source ahead of it (an element-wise forward
/// copy then replicates a pattern, which one copy would not). Faults are raised exactly as
/// the first element would raise them: both pages are translated before anything moves.
fn bulk(c: &mut Cpu, src: Option<(usize, u64)>, di: u64, size: u64, am: u64, value: u64) -> R<u64> {
    let cx = c.s.gpr[1] & am;
    let room = |a: u64| (4096 - (a & 0xfff)) / size;
    let mut n = cx.min(room(di)).min(CHUNK);
    if let Some((_, si)) = src {
        n = n.min(room(si));
    }
    if n < 2 {
        return Ok(0);
    }
    let len = n * size;
    // The whole run must stay inside the address size (no wrap of rSI/rDI).
    if di + len - 1 > am || src.is_some_and(|(_, si)| si + len - 1 > am) {
        return Ok(0);
    }
    let user = c.user();
    let Ok(dlin) = c.lin(sr::ES, di, len as usize, true) else {
        return Ok(0);
    };
    let slin = match src {
        Some((seg, si)) => match c.lin(seg, si, len as usize, false) {
            Ok(a) => Some(a),
            Err(_) => return Ok(0),
        },
        None => None,
    };
    // Both runs lie within one page each (checked above on offsets; bases may shift them).
    if (dlin & 0xfff) + len > 4096 || slin.is_some_and(|a| (a & 0xfff) + len > 4096) {
        return Ok(0);
    }
    let se = match slin {
        Some(a) => Some(c.xlate(a, Acc::Read, user)?),
        None => None,
    };
    let de = c.xlate(dlin, Acc::Write, user)?;
    if de.wr >= crate::mmu::DROP || se.is_some_and(|e| e.rd == crate::mmu::MMIO) {
        return Ok(0);
    }
    let dst = de.wr + (dlin & 0xfff);
    let mut buf = [0u8; 4096];
    let buf = &mut buf[..len as usize];
    match (se, slin) {
        (Some(e), Some(a)) => {
            let s0 = e.rd + (a & 0xfff);
            if dst > s0 && dst < s0 + len {
                return Ok(0);
            }
            c.mem.backing_read(s0, buf).map_err(|_| gp0())?;
        }
        _ => {
            let v = value.to_le_bytes();
            for ch in buf.chunks_exact_mut(size as usize) {
                ch.copy_from_slice(&v[..size as usize]);
            }
        }
    }
    if dst >> 12 == c.code_page {
        c.smc = true;
    }
    c.mem.backing_write(dst, buf).map_err(|_| gp0())?;
    Ok(n)
}

/// How many INS/OUTS elements to move in one exit: stay within the page of `addr` and
/// within a 4 KiB I/O buffer.
fn batch(c: &Cpu, rep: bool, addr: u64, size: u64, down: bool, am: u64) -> u64 {
    if !rep {
        return 1;
    }
    let cx = c.s.gpr[1] & am;
    let in_page = if down {
        (addr & 0xfff) / size + 1
    } else {
        (4096 - (addr & 0xfff)) / size
    };
    cx.min(in_page).min(4096 / size).max(1)
}

fn port_of(c: &Cpu, ins: &Instruction) -> u16 {
    for i in 0..ins.op_count() {
        match ins.op_kind(i) {
            OpKind::Immediate8 => return u16::from(ins.immediate8()),
            OpKind::Register if ins.op_register(i) == iced_x86::Register::DX => {
                return c.s.gpr[2] as u16
            }
            _ => {}
        }
    }
    c.s.gpr[2] as u16
}

fn ins_step(c: &mut Cpu, ins: &Instruction, di: u64, size: u64, step: u64, n: u64) -> R<()> {
    let port = port_of(c, ins);
    // Check that the destination is writable before the port is read (reads have side
    // effects on devices).
    let mut lins = Vec::with_capacity(n as usize);
    for k in 0..n {
        let off = di.wrapping_add(step.wrapping_mul(k));
        let lin = c.lin(sr::ES, off, size as usize, true)?;
        let u = c.user();
        c.xlate(lin, Acc::Write, u)?;
        lins.push(lin);
    }
    match c.pending_in {
        Some(p)
            if p.ready
                && p.port == port
                && u64::from(p.size) == size
                && c.io_buf.len() as u64 == size * n =>
        {
            c.pending_in = None;
            let u = c.user();
            for (k, lin) in lins.iter().enumerate() {
                let mut b = [0u8; 8];
                let s = size as usize;
                b[..s].copy_from_slice(&c.io_buf[k * s..(k + 1) * s]);
                c.write_lin(*lin, s, u64::from_le_bytes(b), u)?;
            }
            Ok(())
        }
        _ => {
            c.io_buf.clear();
            c.io_buf.resize((size * n) as usize, 0);
            c.pending_in = Some(PendingIn {
                port,
                size: size as u8,
                ready: false,
            });
            c.exit = Some(VmExit::Io {
                port,
                size: size as u8,
                count: n as u32,
                dir: IoDirection::In,
            });
            Err(Stop::Exit)
        }
    }
}

fn outs_step(
    c: &mut Cpu,
    ins: &Instruction,
    seg: usize,
    si: u64,
    size: u64,
    step: u64,
    n: u64,
) -> R<()> {
    let port = port_of(c, ins);
    let mut buf = Vec::with_capacity((size * n) as usize);
    for k in 0..n {
        let off = si.wrapping_add(step.wrapping_mul(k));
        let v = c.read_mem(seg, off, size as usize)?;
        buf.extend_from_slice(&v.to_le_bytes()[..size as usize]);
    }
    c.io_buf = buf;
    c.exit = Some(VmExit::Io {
        port,
        size: size as u8,
        count: n as u32,
        dir: IoDirection::Out,
    });
    Ok(())
}

/// IN AL/AX/EAX, imm8/DX.
pub(crate) fn in_(c: &mut Cpu, ins: &Instruction) -> R<()> {
    io_allowed(c)?;
    let size = super::operand::reg_size(ins.op0_register()) as u8;
    let port = port_of(c, ins);
    match c.pending_in {
        Some(p)
            if p.ready
                && p.port == port
                && p.size == size
                && c.io_buf.len() == usize::from(size) =>
        {
            c.pending_in = None;
            let mut b = [0u8; 8];
            b[..usize::from(size)].copy_from_slice(&c.io_buf);
            c.set_reg(ins.op0_register(), u64::from_le_bytes(b));
            Ok(())
        }
        _ => {
            c.io_buf.clear();
            c.io_buf.resize(usize::from(size), 0);
            c.pending_in = Some(PendingIn {
                port,
                size,
                ready: false,
            });
            c.exit = Some(VmExit::Io {
                port,
                size,
                count: 1,
                dir: IoDirection::In,
            });
            Err(Stop::Exit)
        }
    }
}

/// OUT imm8/DX, AL/AX/EAX.
pub(crate) fn out(c: &mut Cpu, ins: &Instruction) -> R<()> {
    io_allowed(c)?;
    let size = super::operand::reg_size(ins.op1_register()) as u8;
    let port = port_of(c, ins);
    let v = c.reg(ins.op1_register());
    c.io_buf.clear();
    c.io_buf
        .extend_from_slice(&v.to_le_bytes()[..usize::from(size)]);
    c.exit = Some(VmExit::Io {
        port,
        size,
        count: 1,
        dir: IoDirection::Out,
    });
    Ok(())
}
