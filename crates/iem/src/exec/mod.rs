//! Instruction execution: one decoded instruction at a time, dispatched on its mnemonic.

pub(crate) mod alu;
pub(crate) mod ctl;
pub(crate) mod fast;
pub(crate) mod fpu;
pub(crate) mod operand;
pub(crate) mod sse;
pub(crate) mod string;
pub(crate) mod sys;
pub(crate) mod x87;

use crate::cpu::{fault_nc, gp0, sr, ud, vec, Cpu, R};
use crate::flags::{fl, Op};
use crate::regs::{creg, dreg, sreg};
use alu::Bin;
use iced_x86::{Code, Instruction, Mnemonic as M, OpKind};
use operand::{mask, sext};

/// Execute one instruction. On entry `c.s.rip` already points at the next instruction.
#[inline]
pub(crate) fn step(c: &mut Cpu, ins: &Instruction) -> R<()> {
    match ins.mnemonic() {
        M::Mov => mov(c, ins),
        M::Add => alu::binop(c, ins, Bin::Add),
        M::Or => alu::binop(c, ins, Bin::Or),
        M::Adc => alu::binop(c, ins, Bin::Adc),
        M::Sbb => alu::binop(c, ins, Bin::Sbb),
        M::And => alu::binop(c, ins, Bin::And),
        M::Sub => alu::binop(c, ins, Bin::Sub),
        M::Xor => alu::binop(c, ins, Bin::Xor),
        M::Cmp => alu::binop(c, ins, Bin::Cmp),
        M::Test => alu::binop(c, ins, Bin::Test),
        M::Inc | M::Dec | M::Neg | M::Not => alu::unop(c, ins, ins.mnemonic()),
        M::Jo
        | M::Jno
        | M::Jb
        | M::Jae
        | M::Je
        | M::Jne
        | M::Jbe
        | M::Ja
        | M::Js
        | M::Jns
        | M::Jp
        | M::Jnp
        | M::Jl
        | M::Jge
        | M::Jle
        | M::Jg => ctl::jcc(c, ins),
        M::Jmp => ctl::jmp(c, ins),
        M::Call => ctl::call(c, ins),
        M::Ret => ctl::ret(c, ins),
        M::Push => push(c, ins),
        M::Pop => pop(c, ins),
        M::Lea => {
            let size = Cpu::op_size(ins, 0);
            let a = c.ea(ins) & mask(size);
            c.set_reg(ins.op0_register(), a);
            Ok(())
        }
        M::Movzx => {
            let v = c.read_op(ins, 1, Cpu::op_size(ins, 1))?;
            c.set_reg(ins.op0_register(), v);
            Ok(())
        }
        M::Movsx | M::Movsxd => {
            let s = Cpu::op_size(ins, 1);
            let v = sext(c.read_op(ins, 1, s)?, s);
            let d = Cpu::op_size(ins, 0);
            c.set_reg(ins.op0_register(), v & mask(d));
            Ok(())
        }
        M::Cmovo
        | M::Cmovno
        | M::Cmovb
        | M::Cmovae
        | M::Cmove
        | M::Cmovne
        | M::Cmovbe
        | M::Cmova
        | M::Cmovs
        | M::Cmovns
        | M::Cmovp
        | M::Cmovnp
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg => {
            let size = Cpu::op_size(ins, 0);
            let v = c.read_op(ins, 1, size)?;
            let cc = ins.condition_code() as u8 - 1;
            if c.lf.cond(cc) {
                c.set_reg(ins.op0_register(), v);
            } else if size == 4 {
                // A 32-bit CMOV zero-extends the destination even when not taken.
                let r = ins.op0_register();
                let cur = c.reg(r);
                c.set_reg(r, cur);
            }
            Ok(())
        }
        m if is_setcc(m) => {
            let cc = ins.condition_code() as u8 - 1;
            let v = u64::from(c.lf.cond(cc));
            c.write_op(ins, 0, 1, v)
        }
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr => {
            alu::shift(c, ins, ins.mnemonic())
        }
        M::Shld => alu::shxd(c, ins, true),
        M::Shrd => alu::shxd(c, ins, false),
        M::Mul => alu::mul(c, ins, false),
        M::Imul => alu::mul(c, ins, true),
        M::Div => alu::div(c, ins, false),
        M::Idiv => alu::div(c, ins, true),
        M::Bt | M::Bts | M::Btr | M::Btc => alu::bt(c, ins, ins.mnemonic()),
        M::Bsf | M::Tzcnt => alu::bsx(c, ins, true),
        M::Bsr | M::Lzcnt => alu::bsx(c, ins, false),
        M::Popcnt => alu::popcnt(c, ins),
        M::Daa | M::Das | M::Aaa | M::Aas | M::Aam | M::Aad => alu::bcd(c, ins, ins.mnemonic()),
        M::Xchg => xchg(c, ins),
        M::Xadd => xadd(c, ins),
        M::Cmpxchg => cmpxchg(c, ins),
        M::Cmpxchg8b | M::Cmpxchg16b => cmpxchg_wide(c, ins),
        M::Bswap => {
            let r = ins.op0_register();
            let size = operand::reg_size(r);
            let v = c.reg(r);
            let n = if size == 8 {
                v.swap_bytes()
            } else {
                u64::from((v as u32).swap_bytes())
            };
            c.set_reg(r, n);
            Ok(())
        }
        M::Cbw => {
            let v = sext(c.s.gpr[0], 1);
            c.set_gpr_sized(0, 2, v);
            Ok(())
        }
        M::Cwde => {
            let v = sext(c.s.gpr[0], 2);
            c.set_gpr_sized(0, 4, v);
            Ok(())
        }
        M::Cdqe => {
            c.s.gpr[0] = sext(c.s.gpr[0], 4);
            Ok(())
        }
        M::Cwd => {
            let v = if c.s.gpr[0] & 0x8000 != 0 { 0xffff } else { 0 };
            c.set_gpr_sized(2, 2, v);
            Ok(())
        }
        M::Cdq => {
            let v = if c.s.gpr[0] & 0x8000_0000 != 0 {
                0xffff_ffff
            } else {
                0
            };
            c.set_gpr_sized(2, 4, v);
            Ok(())
        }
        M::Cqo => {
            c.s.gpr[2] = if (c.s.gpr[0] as i64) < 0 { u64::MAX } else { 0 };
            Ok(())
        }
        M::Lahf => {
            let f = c.rflags() & 0xff;
            c.s.gpr[0] = (c.s.gpr[0] & !0xff00) | (f << 8);
            Ok(())
        }
        M::Sahf => {
            let ah = (c.s.gpr[0] >> 8) & 0xd5;
            let f = (c.rflags() & fl::ARITH & !0xd5) | ah;
            c.lf.set_explicit(f);
            Ok(())
        }
        M::Clc | M::Stc | M::Cmc => {
            let f = c.rflags() & fl::ARITH;
            let n = match ins.mnemonic() {
                M::Clc => f & !fl::CF,
                M::Stc => f | fl::CF,
                _ => f ^ fl::CF,
            };
            c.lf.set_explicit(n);
            Ok(())
        }
        M::Cld => {
            c.s.rflags &= !fl::DF;
            Ok(())
        }
        M::Std => {
            c.s.rflags |= fl::DF;
            Ok(())
        }
        M::Cli => sys::cli_sti(c, false),
        M::Sti => sys::cli_sti(c, true),
        M::Nop
        | M::Pause
        | M::Lfence
        | M::Mfence
        | M::Sfence
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw
        | M::Prefetch
        | M::Endbr64
        | M::Endbr32 => Ok(()),
        M::Clflush | M::Clflushopt => {
            // Check the address like a read.
            let a = c.mem_lin(ins, 1, false)?;
            let u = c.user();
            c.xlate(a, crate::mmu::Acc::Read, u)?;
            Ok(())
        }
        M::Movsb
        | M::Movsw
        | M::Movsq
        | M::Stosb
        | M::Stosw
        | M::Stosd
        | M::Stosq
        | M::Lodsb
        | M::Lodsw
        | M::Lodsd
        | M::Lodsq
        | M::Cmpsb
        | M::Cmpsw
        | M::Cmpsq
        | M::Scasb
        | M::Scasw
        | M::Scasd
        | M::Scasq
        | M::Insb
        | M::Insw
        | M::Insd
        | M::Outsb
        | M::Outsw
        | M::Outsd => string::string(c, ins, ins.mnemonic()),
        M::Movsd | M::Cmpsd if ins.is_string_instruction() => {
            string::string(c, ins, ins.mnemonic())
        }
        M::In => string::in_(c, ins),
        M::Out => string::out(c, ins),
        M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz | M::Jrcxz => ctl::loop_(c, ins),
        M::Retf => ctl::retf(c, ins),
        M::Iret | M::Iretd | M::Iretq => {
            let s = match ins.code() {
                Code::Iretw => 2,
                Code::Iretd => 4,
                _ => 8,
            };
            c.iret(s)
        }
        M::Int => ctl::int(c, ins.immediate8(), true),
        M::Int3 => ctl::int(c, 3, true),
        M::Int1 => ctl::int(c, 1, false),
        M::Into => {
            if c.lf.of() {
                ctl::int(c, 4, true)
            } else {
                Ok(())
            }
        }
        M::Enter => ctl::enter(c, ins),
        M::Leave => ctl::leave(c, ins),
        M::Pushf | M::Pushfd | M::Pushfq => sys::pushf(c, ins),
        M::Popf | M::Popfd | M::Popfq => sys::popf(c, ins),
        M::Pusha | M::Pushad => pusha(c, ins),
        M::Popa | M::Popad => popa(c, ins),
        M::Xlatb => {
            // Decoded as a memory operand [rBX + AL].
            let v = c.read_op(ins, 0, 1)?;
            c.set_gpr_sized(0, 1, v);
            Ok(())
        }
        M::Hlt => sys::hlt(c),
        M::Cpuid => sys::cpuid(c),
        M::Rdtsc => sys::rdtsc(c, false),
        M::Rdtscp => sys::rdtsc(c, true),
        M::Rdmsr => sys::msr(c, false),
        M::Wrmsr => sys::msr(c, true),
        M::Rdpmc => Err(gp0()),
        M::Lgdt => sys::lgdt(c, ins, false),
        M::Lidt => sys::lgdt(c, ins, true),
        M::Sgdt => sys::sgdt(c, ins, false),
        M::Sidt => sys::sgdt(c, ins, true),
        M::Lldt | M::Ltr | M::Sldt | M::Str => sys::sys_seg(c, ins, ins.mnemonic()),
        M::Lmsw | M::Smsw | M::Clts => sys::msw(c, ins, ins.mnemonic()),
        M::Lar | M::Lsl | M::Verr | M::Verw => sys::desc_query(c, ins, ins.mnemonic()),
        M::Invlpg => sys::invlpg(c, ins),
        M::Wbinvd | M::Invd => sys::priv_nop(c),
        M::Swapgs => sys::swapgs(c),
        M::Syscall => ctl::syscall(c),
        M::Sysret | M::Sysretq => ctl::sysret(c, ins),
        M::Sysenter => ctl::sysenter(c),
        M::Sysexit | M::Sysexitq => ctl::sysexit(c, ins),
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => lxs(c, ins),
        M::Ud0 | M::Ud1 | M::Ud2 => Err(ud()),
        M::Bound => bound(c, ins),
        M::Salc => {
            let v = if c.lf.cf() { 0xff } else { 0 };
            c.set_gpr_sized(0, 1, v);
            Ok(())
        }
        M::Arpl => arpl(c, ins),
        _ => {
            if let Some(r) = sse::exec(c, ins) {
                return r;
            }
            if let Some(r) = fpu::exec(c, ins) {
                return r;
            }
            tracing::debug!(code = ?ins.code(), rip = c.start_rip, "iem: unimplemented instruction -> #UD");
            Err(ud())
        }
    }
}

#[inline]
/// SETcc, any condition.
pub(crate) fn is_setcc(m: M) -> bool {
    matches!(
        m,
        M::Seto
            | M::Setno
            | M::Setb
            | M::Setae
            | M::Sete
            | M::Setne
            | M::Setbe
            | M::Seta
            | M::Sets
            | M::Setns
            | M::Setp
            | M::Setnp
            | M::Setl
            | M::Setge
            | M::Setle
            | M::Setg
    )
}

fn mov(c: &mut Cpu, ins: &Instruction) -> R<()> {
    if ins.op0_kind() == OpKind::Register {
        let r = ins.op0_register();
        if let Some(i) = sreg(r) {
            let sel = c.read_op(ins, 1, 2)? as u16;
            return sys::load_sreg(c, i, sel);
        }
        if creg(r).is_some() || dreg(r).is_some() {
            return sys::mov_cr_dr(c, ins);
        }
    }
    if ins.op1_kind() == OpKind::Register {
        let r = ins.op1_register();
        if let Some(i) = sreg(r) {
            let v = u64::from(c.seg(i).selector);
            let size = if ins.op0_kind() == OpKind::Register {
                Cpu::op_size(ins, 0)
            } else {
                2
            };
            return c.write_op(ins, 0, size, v);
        }
        if creg(r).is_some() || dreg(r).is_some() {
            return sys::mov_cr_dr(c, ins);
        }
    }
    let size = Cpu::op_size(ins, 0);
    let v = c.read_op(ins, 1, size)?;
    c.write_op(ins, 0, size, v)
}

fn push(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let size = (-ins.stack_pointer_increment()) as u32;
    let v = match ins.op0_kind() {
        OpKind::Register => c.reg(ins.op0_register()),
        OpKind::Memory => c.read_op(ins, 0, size)?,
        _ => ins.immediate(0),
    };
    c.push(size, v & mask(size))
}

fn pop(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let size = ins.stack_pointer_increment() as u32;
    let sp0 = c.s.gpr[4];
    let v = c.pop(size)?;
    if ins.op0_kind() == OpKind::Register {
        let r = ins.op0_register();
        if let Some(i) = sreg(r) {
            if let Err(e) = sys::load_sreg(c, i, v as u16) {
                c.s.gpr[4] = sp0;
                return Err(e);
            }
            return Ok(());
        }
        c.set_reg(r, v);
        return Ok(());
    }
    // The destination address is computed with the incremented stack pointer.
    if let Err(e) = c.write_op(ins, 0, size, v) {
        c.s.gpr[4] = sp0;
        return Err(e);
    }
    Ok(())
}

fn pusha(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let s = if ins.code() == Code::Pushaw { 2 } else { 4 };
    let sp0 = c.s.gpr[4];
    for i in 0..8 {
        let v = if i == 4 { sp0 } else { c.s.gpr[i] };
        if let Err(e) = c.push(s, v & mask(s)) {
            c.s.gpr[4] = sp0;
            return Err(e);
        }
    }
    Ok(())
}

fn popa(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let s = if ins.code() == Code::Popaw { 2 } else { 4 };
    let mut vals = [0u64; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = c.peek(s, u64::from(s) * k as u64)?;
    }
    for (k, v) in vals.iter().enumerate() {
        let reg = 7 - k;
        if reg != 4 {
            c.set_gpr_sized(reg, s, *v);
        }
    }
    let m = Cpu::mask_for(c.stack_size());
    let sp = c.s.gpr[4];
    c.s.gpr[4] = (sp & !m) | (sp.wrapping_add(8 * u64::from(s)) & m);
    Ok(())
}

fn xchg(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    if ins.op0_kind() == OpKind::Register && ins.op1_kind() == OpKind::Register {
        let (a, b) = (ins.op0_register(), ins.op1_register());
        let (va, vb) = (c.reg(a), c.reg(b));
        c.set_reg(a, vb);
        c.set_reg(b, va);
        return Ok(());
    }
    // XCHG with memory is always locked.
    let (mi, ri) = if ins.op0_kind() == OpKind::Register {
        (1, 0)
    } else {
        (0, 1)
    };
    let r = ins.op_register(ri);
    let v = c.reg(r);
    let a = c.mem_lin(ins, size, true)?;
    let _ = mi;
    let old = c.atomic_rmw(a, size as usize, |_| v)?;
    c.set_reg(r, old);
    Ok(())
}

fn xadd(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    let src_r = ins.op1_register();
    let b = c.reg(src_r);
    let (a, r) = c.rmw0(ins, size, |a| a.wrapping_add(b))?;
    c.set_reg(src_r, a);
    if ins.op0_kind() == OpKind::Register && ins.op0_register() == src_r {
        c.set_reg(src_r, r);
    }
    c.lf.set(Op::Add, size * 8, a & mask(size), b & mask(size), r);
    Ok(())
}

fn cmpxchg(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let size = Cpu::op_size(ins, 0);
    let m = mask(size);
    let acc = c.s.gpr[0] & m;
    let src = c.reg(ins.op1_register());
    let old = if ins.op0_kind() == OpKind::Register {
        // A register destination is only written when the comparison succeeds (so a
        // 32-bit destination keeps its upper half on failure, as hardware does).
        let r = ins.op0_register();
        let o = c.reg(r);
        if o == acc {
            c.set_reg(r, src);
        }
        o
    } else {
        c.rmw0(ins, size, |o| if o & m == acc { src } else { o })?.0
    };
    let old = old & m;
    c.lf.set(Op::Sub, size * 8, acc, old, acc.wrapping_sub(old) & m);
    if old != acc {
        c.set_gpr_sized(0, size, old);
    }
    Ok(())
}

fn cmpxchg_wide(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let wide = ins.mnemonic() == M::Cmpxchg16b;
    let n = if wide { 16 } else { 8 };
    let a = c.mem_lin(ins, n, true)?;
    if wide && a & 15 != 0 {
        return Err(gp0());
    }
    let f = c.rflags() & fl::ARITH;
    if !wide {
        let exp = (c.s.gpr[2] << 32) | (c.s.gpr[0] & 0xffff_ffff);
        let new = (c.s.gpr[1] << 32) | (c.s.gpr[3] & 0xffff_ffff);
        let old = c.atomic_rmw(a, 8, |o| if o == exp { new } else { o })?;
        if old == exp {
            c.lf.set_explicit(f | fl::ZF);
        } else {
            c.lf.set_explicit(f & !fl::ZF);
            c.s.gpr[0] = old & 0xffff_ffff;
            c.s.gpr[2] = old >> 32;
        }
        return Ok(());
    }
    // 16-byte compare-exchange: serialised against other CMPXCHG16Bs with a global lock
    // (pgm offers 8-byte atomics only, so CX16 is not advertised).
    static LOCK16: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let _g = LOCK16.lock();
    let u = c.user();
    let mut cur = [0u8; 16];
    c.read_bytes(a, &mut cur, u)?;
    let lo = u64::from_le_bytes(cur[..8].try_into().unwrap_or([0; 8]));
    let hi = u64::from_le_bytes(cur[8..].try_into().unwrap_or([0; 8]));
    if lo == c.s.gpr[0] && hi == c.s.gpr[2] {
        let mut nb = [0u8; 16];
        nb[..8].copy_from_slice(&c.s.gpr[3].to_le_bytes());
        nb[8..].copy_from_slice(&c.s.gpr[1].to_le_bytes());
        c.write_bytes(a, &nb, u)?;
        c.lf.set_explicit(f | fl::ZF);
    } else {
        c.write_bytes(a, &cur, u)?;
        c.lf.set_explicit(f & !fl::ZF);
        c.s.gpr[0] = lo;
        c.s.gpr[2] = hi;
    }
    Ok(())
}

fn lxs(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let (sel, off) = ctl::read_far_ptr(c, ins)?;
    let seg = match ins.mnemonic() {
        M::Lds => sr::DS,
        M::Les => sr::ES,
        M::Lfs => sr::FS,
        M::Lgs => sr::GS,
        _ => sr::SS,
    };
    sys::load_sreg(c, seg, sel)?;
    c.set_reg(ins.op0_register(), off);
    Ok(())
}

fn bound(c: &mut Cpu, ins: &Instruction) -> R<()> {
    let size = operand::reg_size(ins.op0_register());
    let idx = sext(c.reg(ins.op0_register()), size) as i64;
    let seg = Cpu::mseg(ins);
    let ea = c.ea(ins);
    let lo = sext(c.read_mem(seg, ea, size as usize)?, size) as i64;
    let hi = sext(
        c.read_mem(seg, ea.wrapping_add(u64::from(size)), size as usize)?,
        size,
    ) as i64;
    if idx < lo || idx > hi {
        return Err(fault_nc(vec::BR));
    }
    Ok(())
}

fn arpl(c: &mut Cpu, ins: &Instruction) -> R<()> {
    if !c.pmode() {
        return Err(ud());
    }
    let src = c.reg(ins.op1_register()) & 3;
    let (old, _) = c.rmw0(ins, 2, |d| if d & 3 < src { (d & !3) | src } else { d })?;
    let f = c.rflags() & fl::ARITH;
    c.lf.set_explicit(if old & 3 < src {
        f | fl::ZF
    } else {
        f & !fl::ZF
    });
    Ok(())
}

/// x87 arithmetic.
pub(crate) fn fpu_x87(c: &mut Cpu, ins: &Instruction) -> Option<R<()>> {
    x87::exec(c, ins)
}
