//! Pre-decoded fast paths for the instructions that dominate real guest code.
//!
//! When a block is decoded, every instruction is also compiled once into a [`Uop`]: the
//! handler is picked by the `match` on its variant, and registers, immediates, operand size
//! and the effective-address recipe are pre-extracted. Executing a `Uop` therefore never
//! re-matches the mnemonic nor re-reads iced's operand kinds. Everything else (and every
//! rare form: high-byte registers, LOCK prefixes, segment registers...) compiles to
//! [`Uop::Slow`] and runs through [`super::step`]. A fast path must behave exactly like the
//! generic one: same results, same flags, same faults in the same order.

use super::alu::Bin;
use super::operand::{mask, sext};
use crate::cpu::{gp0, Cpu, R};
use crate::flags::{szp, Op};
use crate::regs::{gpr, Gpr};
use iced_x86::{Code, Instruction, Mnemonic as M, OpKind, Register};

/// `Mem::base` value for RIP-relative addressing.
const BASE_RIP: u8 = 16;
/// `Mem::base` value for EIP-relative addressing.
const BASE_EIP: u8 = 17;
/// No base or index register.
const NONE: u8 = 0xff;

/// A pre-extracted effective-address recipe: `seg:(disp + base + index*scale) & amask`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mem {
    disp: u64,
    base: u8,
    index: u8,
    scale: u8,
    seg: u8,
    /// Address size in bytes (2, 4, 8).
    asz: u8,
}

/// A pre-decoded instruction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Uop {
    /// No fast path: execute the iced instruction generically.
    Slow,
    /// No architectural effect (NOP, PAUSE, fences, ENDBR).
    Nop,
    /// `op reg, reg`.
    AluRR { op: Bin, size: u8, dst: u8, src: u8 },
    /// `op reg, imm`.
    AluRI {
        op: Bin,
        size: u8,
        dst: u8,
        imm: u64,
    },
    /// `op reg, [mem]`.
    AluRM { op: Bin, size: u8, dst: u8, m: Mem },
    /// `op [mem], reg` (no LOCK).
    AluMR { op: Bin, size: u8, m: Mem, src: u8 },
    /// `op [mem], imm` (no LOCK).
    AluMI { op: Bin, size: u8, m: Mem, imm: u64 },
    /// `mov reg, reg`.
    MovRR { size: u8, dst: u8, src: u8 },
    /// `mov reg, imm`.
    MovRI { size: u8, dst: u8, imm: u64 },
    /// `mov reg, [mem]`.
    MovRM { size: u8, dst: u8, m: Mem },
    /// `mov [mem], reg`.
    MovMR { size: u8, m: Mem, src: u8 },
    /// `mov [mem], imm`.
    MovMI { size: u8, m: Mem, imm: u64 },
    /// `movzx`/`movsx`/`movsxd reg, reg`.
    ExtRR {
        signed: bool,
        dsize: u8,
        ssize: u8,
        dst: u8,
        src: u8,
    },
    /// `movzx`/`movsx`/`movsxd reg, [mem]`.
    ExtRM {
        signed: bool,
        dsize: u8,
        ssize: u8,
        dst: u8,
        m: Mem,
    },
    /// `lea reg, [mem]`.
    Lea { size: u8, dst: u8, m: Mem },
    /// `inc`/`dec reg`.
    IncDec { inc: bool, size: u8, dst: u8 },
    /// `shl`/`shr`/`sar reg, imm` (count masked, non-zero).
    ShiftRI {
        kind: u8,
        size: u8,
        dst: u8,
        cnt: u8,
    },
    /// `cmovcc reg, reg`.
    CmovRR { cc: u8, size: u8, dst: u8, src: u8 },
    /// `cmovcc reg, [mem]`.
    CmovRM { cc: u8, size: u8, dst: u8, m: Mem },
    /// `setcc reg8`.
    SetR { cc: u8, dst: u8 },
    /// `push reg`.
    PushR { size: u8, src: u8 },
    /// `push imm`.
    PushI { size: u8, imm: u64 },
    /// `pop reg`.
    PopR { size: u8, dst: u8 },
    /// `jcc rel`: target relative to the decoded block (add `delta`).
    Jcc { cc: u8, target: u64, tmask: u64 },
    /// `jmp rel`.
    Jmp { target: u64, tmask: u64 },
    /// `jmp reg`.
    JmpR { size: u8, src: u8 },
    /// `call rel`.
    Call { size: u8, target: u64, tmask: u64 },
    /// `call reg`.
    CallR { size: u8, src: u8 },
    /// `ret` (no immediate).
    Ret { size: u8 },
}

/// A general register usable by the fast paths: (index, size in bytes). High-byte
/// registers (AH..BH) and non-GPRs are not.
#[inline]
fn greg(r: Register) -> Option<(u8, u8)> {
    match gpr(r)? {
        Gpr::Low8(i) => Some((i as u8, 1)),
        Gpr::High8(_) => None,
        Gpr::W16(i) => Some((i as u8, 2)),
        Gpr::D32(i) => Some((i as u8, 4)),
        Gpr::Q64(i) => Some((i as u8, 8)),
    }
}

/// The effective-address recipe of the instruction's memory operand (same rules as
/// [`Cpu::ea`]), or None when it uses something the recipe cannot express.
fn mem_recipe(ins: &Instruction, bits: u32) -> Option<Mem> {
    let base = ins.memory_base();
    let idx = ins.memory_index();
    let seg = Cpu::mseg(ins) as u8;
    let disp = ins.memory_displacement64();
    if base == Register::RIP || base == Register::EIP {
        if idx != Register::None {
            return None;
        }
        return Some(Mem {
            disp,
            base: if base == Register::RIP {
                BASE_RIP
            } else {
                BASE_EIP
            },
            index: NONE,
            scale: 1,
            seg,
            asz: 8,
        });
    }
    let mut asz = match ins.memory_displ_size() {
        2 => 2,
        4 => 4,
        8 => 8,
        _ => (bits / 8) as u8,
    };
    let b = if base == Register::None {
        NONE
    } else {
        let (i, s) = greg(base)?;
        if s < 2 {
            return None;
        }
        asz = s;
        i
    };
    let x = if idx == Register::None {
        NONE
    } else {
        let (i, s) = greg(idx)?;
        if s < 2 {
            return None;
        }
        asz = s;
        i
    };
    Some(Mem {
        disp,
        base: b,
        index: x,
        scale: ins.memory_index_scale() as u8,
        seg,
        asz,
    })
}

fn bin_of(m: M) -> Option<Bin> {
    Some(match m {
        M::Add => Bin::Add,
        M::Or => Bin::Or,
        M::Adc => Bin::Adc,
        M::Sbb => Bin::Sbb,
        M::And => Bin::And,
        M::Sub => Bin::Sub,
        M::Xor => Bin::Xor,
        M::Cmp => Bin::Cmp,
        M::Test => Bin::Test,
        _ => return None,
    })
}

fn is_imm(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

fn branch_mask(k: OpKind) -> u64 {
    match k {
        OpKind::NearBranch16 => 0xffff,
        OpKind::NearBranch32 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

fn is_near_branch(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    )
}

/// Compile one decoded instruction for a block of code size `bits`.
pub(crate) fn compile(ins: &Instruction, bits: u32) -> Uop {
    compile_inner(ins, bits).unwrap_or(Uop::Slow)
}

fn compile_inner(ins: &Instruction, bits: u32) -> Option<Uop> {
    let mn = ins.mnemonic();
    if ins.has_lock_prefix() && mn != M::Nop {
        return None;
    }
    let k0 = if ins.op_count() > 0 {
        ins.op0_kind()
    } else {
        OpKind::Register
    };
    let k1 = if ins.op_count() > 1 {
        ins.op1_kind()
    } else {
        OpKind::Register
    };
    if let Some(op) = bin_of(mn) {
        if ins.op_count() != 2 {
            return None;
        }
        let size = Cpu::op_size(ins, 0) as u8;
        return match (k0, k1) {
            (OpKind::Register, OpKind::Register) => {
                let (d, ds) = greg(ins.op0_register())?;
                let (s, _) = greg(ins.op1_register())?;
                (ds == size).then_some(Uop::AluRR {
                    op,
                    size,
                    dst: d,
                    src: s,
                })
            }
            (OpKind::Register, k) if is_imm(k) => {
                let (d, _) = greg(ins.op0_register())?;
                Some(Uop::AluRI {
                    op,
                    size,
                    dst: d,
                    imm: ins.immediate(1) & mask(u32::from(size)),
                })
            }
            (OpKind::Register, OpKind::Memory) => {
                let (d, _) = greg(ins.op0_register())?;
                Some(Uop::AluRM {
                    op,
                    size,
                    dst: d,
                    m: mem_recipe(ins, bits)?,
                })
            }
            (OpKind::Memory, OpKind::Register) => {
                let (s, _) = greg(ins.op1_register())?;
                Some(Uop::AluMR {
                    op,
                    size,
                    m: mem_recipe(ins, bits)?,
                    src: s,
                })
            }
            (OpKind::Memory, k) if is_imm(k) => Some(Uop::AluMI {
                op,
                size,
                m: mem_recipe(ins, bits)?,
                imm: ins.immediate(1) & mask(u32::from(size)),
            }),
            _ => None,
        };
    }
    match mn {
        M::Nop | M::Pause | M::Lfence | M::Endbr64 | M::Endbr32 => Some(Uop::Nop),
        M::Mov => {
            let size = Cpu::op_size(ins, 0) as u8;
            match (k0, k1) {
                (OpKind::Register, OpKind::Register) => {
                    let (d, _) = greg(ins.op0_register())?;
                    let (s, _) = greg(ins.op1_register())?;
                    Some(Uop::MovRR {
                        size,
                        dst: d,
                        src: s,
                    })
                }
                (OpKind::Register, k) if is_imm(k) => {
                    let (d, _) = greg(ins.op0_register())?;
                    Some(Uop::MovRI {
                        size,
                        dst: d,
                        imm: ins.immediate(1) & mask(u32::from(size)),
                    })
                }
                (OpKind::Register, OpKind::Memory) => {
                    let (d, _) = greg(ins.op0_register())?;
                    Some(Uop::MovRM {
                        size,
                        dst: d,
                        m: mem_recipe(ins, bits)?,
                    })
                }
                (OpKind::Memory, OpKind::Register) => {
                    let (s, _) = greg(ins.op1_register())?;
                    Some(Uop::MovMR {
                        size,
                        m: mem_recipe(ins, bits)?,
                        src: s,
                    })
                }
                (OpKind::Memory, k) if is_imm(k) => Some(Uop::MovMI {
                    size,
                    m: mem_recipe(ins, bits)?,
                    imm: ins.immediate(1) & mask(u32::from(size)),
                }),
                _ => None,
            }
        }
        M::Movzx | M::Movsx | M::Movsxd => {
            let signed = mn != M::Movzx;
            let (d, dsize) = greg(ins.op0_register())?;
            let ssize = Cpu::op_size(ins, 1) as u8;
            match k1 {
                OpKind::Register => {
                    let (s, _) = greg(ins.op1_register())?;
                    Some(Uop::ExtRR {
                        signed,
                        dsize,
                        ssize,
                        dst: d,
                        src: s,
                    })
                }
                OpKind::Memory => Some(Uop::ExtRM {
                    signed,
                    dsize,
                    ssize,
                    dst: d,
                    m: mem_recipe(ins, bits)?,
                }),
                _ => None,
            }
        }
        M::Lea => {
            let (d, size) = greg(ins.op0_register())?;
            Some(Uop::Lea {
                size,
                dst: d,
                m: mem_recipe(ins, bits)?,
            })
        }
        M::Inc | M::Dec if k0 == OpKind::Register => {
            let (d, size) = greg(ins.op0_register())?;
            Some(Uop::IncDec {
                inc: mn == M::Inc,
                size,
                dst: d,
            })
        }
        M::Shl | M::Sal | M::Shr | M::Sar
            if k0 == OpKind::Register && ins.op_count() == 2 && is_imm(k1) =>
        {
            let (d, size) = greg(ins.op0_register())?;
            let raw = ins.immediate(1) & 0xff;
            let cnt = (raw & if size == 8 { 0x3f } else { 0x1f }) as u8;
            if cnt == 0 {
                return None;
            }
            let kind = match mn {
                M::Shr => 1,
                M::Sar => 2,
                _ => 0,
            };
            Some(Uop::ShiftRI {
                kind,
                size,
                dst: d,
                cnt,
            })
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
            let cc = ins.condition_code() as u8 - 1;
            let (d, size) = greg(ins.op0_register())?;
            match k1 {
                OpKind::Register => {
                    let (s, _) = greg(ins.op1_register())?;
                    Some(Uop::CmovRR {
                        cc,
                        size,
                        dst: d,
                        src: s,
                    })
                }
                OpKind::Memory => Some(Uop::CmovRM {
                    cc,
                    size,
                    dst: d,
                    m: mem_recipe(ins, bits)?,
                }),
                _ => None,
            }
        }
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
            if k0 == OpKind::Register =>
        {
            let cc = ins.condition_code() as u8 - 1;
            let (d, _) = greg(ins.op0_register())?;
            Some(Uop::SetR { cc, dst: d })
        }
        M::Push => {
            let size = (-ins.stack_pointer_increment()) as u8;
            match k0 {
                OpKind::Register => {
                    let (s, _) = greg(ins.op0_register())?;
                    Some(Uop::PushR { size, src: s })
                }
                k if is_imm(k) => Some(Uop::PushI {
                    size,
                    imm: ins.immediate(0) & mask(u32::from(size)),
                }),
                _ => None,
            }
        }
        M::Pop if k0 == OpKind::Register => {
            let size = ins.stack_pointer_increment() as u8;
            let (d, _) = greg(ins.op0_register())?;
            Some(Uop::PopR { size, dst: d })
        }
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
        | M::Jg
            if is_near_branch(k0) =>
        {
            Some(Uop::Jcc {
                cc: ins.condition_code() as u8 - 1,
                target: ins.near_branch_target(),
                tmask: branch_mask(k0),
            })
        }
        M::Jmp if is_near_branch(k0) => Some(Uop::Jmp {
            target: ins.near_branch_target(),
            tmask: branch_mask(k0),
        }),
        M::Jmp if k0 == OpKind::Register => {
            let (s, rs) = greg(ins.op0_register())?;
            let size = if bits == 64 && rs == 4 { 8 } else { rs };
            Some(Uop::JmpR { size, src: s })
        }
        M::Call if is_near_branch(k0) => Some(Uop::Call {
            size: match k0 {
                OpKind::NearBranch16 => 2,
                OpKind::NearBranch32 => 4,
                _ => 8,
            },
            target: ins.near_branch_target(),
            tmask: branch_mask(k0),
        }),
        M::Call if k0 == OpKind::Register => {
            let (s, rs) = greg(ins.op0_register())?;
            let size = if bits == 64 && rs == 4 { 8 } else { rs };
            Some(Uop::CallR { size, src: s })
        }
        M::Ret => match ins.code() {
            Code::Retnw => Some(Uop::Ret { size: 2 }),
            Code::Retnd => Some(Uop::Ret { size: 4 }),
            Code::Retnq => Some(Uop::Ret { size: 8 }),
            _ => None,
        },
        _ => None,
    }
}

impl Cpu {
    /// Effective address of a pre-extracted recipe.
    #[inline(always)]
    fn ea_of(&self, m: &Mem) -> u64 {
        match m.base {
            BASE_RIP => return m.disp.wrapping_add(self.delta),
            BASE_EIP => return m.disp.wrapping_add(self.delta) & 0xffff_ffff,
            _ => {}
        }
        let mut a = m.disp;
        if m.base != NONE {
            a = a.wrapping_add(self.s.gpr[usize::from(m.base & 15)]);
        }
        if m.index != NONE {
            a = a.wrapping_add(
                self.s.gpr[usize::from(m.index & 15)].wrapping_mul(u64::from(m.scale)),
            );
        }
        a & mask(u32::from(m.asz))
    }

    #[inline(always)]
    fn fread(&mut self, m: &Mem, size: u8) -> R<u64> {
        let off = self.ea_of(m);
        let a = self.lin(usize::from(m.seg), off, usize::from(size), false)?;
        let u = self.user();
        self.read_lin(a, usize::from(size), u)
    }

    #[inline(always)]
    fn fwrite(&mut self, m: &Mem, size: u8, v: u64) -> R<()> {
        let off = self.ea_of(m);
        let a = self.lin(usize::from(m.seg), off, usize::from(size), true)?;
        let u = self.user();
        self.write_lin(a, usize::from(size), v, u)
    }

    #[inline(always)]
    fn g(&self, i: u8) -> u64 {
        self.s.gpr[usize::from(i & 15)]
    }

    #[inline(always)]
    fn setg(&mut self, i: u8, size: u8, v: u64) {
        self.set_gpr_sized(usize::from(i & 15), u32::from(size), v);
    }

    #[inline(always)]
    fn canon(&self, t: u64) -> R<u64> {
        if self.long64() && ((t as i64) << 16 >> 16) as u64 != t {
            return Err(gp0());
        }
        Ok(t)
    }
}

/// Compute an ALU operation on `size`-byte operands and record its flags as the generic
/// `binop` does; returns the result (not written anywhere for CMP and TEST).
#[inline(always)]
fn alu(c: &mut Cpu, op: Bin, size: u8, a: u64, b: u64) -> u64 {
    let size = u32::from(size);
    let m = mask(size);
    let bits = size * 8;
    let (a, b) = (a & m, b & m);
    let (lop, r) = match op {
        Bin::Cmp => {
            let r = a.wrapping_sub(b) & m;
            c.lf.set(Op::Sub, bits, a, b, r);
            return r;
        }
        Bin::Test => {
            let r = a & b;
            c.lf.set(Op::Logic, bits, a, b, r);
            return r;
        }
        Bin::Add => (Op::Add, a.wrapping_add(b)),
        Bin::Sub => (Op::Sub, a.wrapping_sub(b)),
        Bin::And => (Op::Logic, a & b),
        Bin::Or => (Op::Logic, a | b),
        Bin::Xor => (Op::Logic, a ^ b),
        Bin::Adc => {
            let cin = c.lf.cf();
            let r = a.wrapping_add(b).wrapping_add(u64::from(cin)) & m;
            c.lf.cin = cin;
            c.lf.set(Op::Adc, bits, a, b, r);
            return r;
        }
        Bin::Sbb => {
            let cin = c.lf.cf();
            let r = a.wrapping_sub(b).wrapping_sub(u64::from(cin)) & m;
            c.lf.cin = cin;
            c.lf.set(Op::Sbb, bits, a, b, r);
            return r;
        }
    };
    let r = r & m;
    c.lf.cin = false;
    c.lf.set(lop, bits, a, b, r);
    r
}

#[inline(always)]
fn writes(op: Bin) -> bool {
    !matches!(op, Bin::Cmp | Bin::Test)
}

/// Execute a pre-decoded instruction (not [`Uop::Slow`]). On entry `c.s.rip` already
/// points at the next instruction.
#[inline(always)]
pub(crate) fn exec(c: &mut Cpu, u: &Uop) -> R<()> {
    match *u {
        Uop::Slow | Uop::Nop => {}
        Uop::AluRR { op, size, dst, src } => {
            let b = c.g(src);
            let a = c.g(dst);
            let r = alu(c, op, size, a, b);
            if writes(op) {
                c.setg(dst, size, r);
            }
        }
        Uop::AluRI { op, size, dst, imm } => {
            let a = c.g(dst);
            let r = alu(c, op, size, a, imm);
            if writes(op) {
                c.setg(dst, size, r);
            }
        }
        Uop::AluRM { op, size, dst, m } => {
            let b = c.fread(&m, size)?;
            let a = c.g(dst);
            let r = alu(c, op, size, a, b);
            if writes(op) {
                c.setg(dst, size, r);
            }
        }
        Uop::AluMR { op, size, m, src } => {
            let b = c.g(src);
            alu_mem(c, op, size, &m, b)?;
        }
        Uop::AluMI { op, size, m, imm } => alu_mem(c, op, size, &m, imm)?,
        Uop::MovRR { size, dst, src } => {
            let v = c.g(src);
            c.setg(dst, size, v);
        }
        Uop::MovRI { size, dst, imm } => c.setg(dst, size, imm),
        Uop::MovRM { size, dst, m } => {
            let v = c.fread(&m, size)?;
            c.setg(dst, size, v);
        }
        Uop::MovMR { size, m, src } => {
            let v = c.g(src);
            c.fwrite(&m, size, v)?;
        }
        Uop::MovMI { size, m, imm } => c.fwrite(&m, size, imm)?,
        Uop::ExtRR {
            signed,
            dsize,
            ssize,
            dst,
            src,
        } => {
            let v = c.g(src) & mask(u32::from(ssize));
            ext_set(c, signed, dsize, ssize, dst, v);
        }
        Uop::ExtRM {
            signed,
            dsize,
            ssize,
            dst,
            m,
        } => {
            let v = c.fread(&m, ssize)?;
            ext_set(c, signed, dsize, ssize, dst, v);
        }
        Uop::Lea { size, dst, m } => {
            let a = c.ea_of(&m) & mask(u32::from(size));
            c.setg(dst, size, a);
        }
        Uop::IncDec { inc, size, dst } => {
            let s = u32::from(size);
            let m = mask(s);
            let cf = c.lf.cf();
            let a = c.g(dst) & m;
            let r = if inc {
                a.wrapping_add(1)
            } else {
                a.wrapping_sub(1)
            } & m;
            c.setg(dst, size, r);
            c.lf.cin = cf;
            c.lf.set(if inc { Op::Inc } else { Op::Dec }, s * 8, a, 1, r);
        }
        Uop::ShiftRI {
            kind,
            size,
            dst,
            cnt,
        } => shift_ri(c, kind, size, dst, u32::from(cnt)),
        Uop::CmovRR { cc, size, dst, src } => {
            let v = c.g(src);
            cmov_set(c, cc, size, dst, v);
        }
        Uop::CmovRM { cc, size, dst, m } => {
            let v = c.fread(&m, size)?;
            cmov_set(c, cc, size, dst, v);
        }
        Uop::SetR { cc, dst } => {
            let v = u64::from(c.lf.cond(cc));
            c.setg(dst, 1, v);
        }
        Uop::PushR { size, src } => {
            let v = c.g(src) & mask(u32::from(size));
            c.push(u32::from(size), v)?;
        }
        Uop::PushI { size, imm } => c.push(u32::from(size), imm)?,
        Uop::PopR { size, dst } => {
            let v = c.pop(u32::from(size))?;
            c.setg(dst, size, v);
        }
        Uop::Jcc { cc, target, tmask } => {
            if c.lf.cond(cc) {
                let t = target.wrapping_add(c.delta) & tmask;
                c.s.rip = c.canon(t)?;
            }
        }
        Uop::Jmp { target, tmask } => {
            let t = target.wrapping_add(c.delta) & tmask;
            c.s.rip = c.canon(t)?;
        }
        Uop::JmpR { size, src } => {
            let t = c.g(src) & mask(u32::from(size));
            c.s.rip = c.canon(t)?;
        }
        Uop::Call {
            size,
            target,
            tmask,
        } => {
            let t = target.wrapping_add(c.delta) & tmask;
            let t = c.canon(t)?;
            let ret = c.next_rip;
            c.push(u32::from(size), ret)?;
            c.s.rip = t;
        }
        Uop::CallR { size, src } => {
            let t = c.g(src) & mask(u32::from(size));
            let t = c.canon(t)?;
            let ret = c.next_rip;
            c.push(u32::from(size), ret)?;
            c.s.rip = t;
        }
        Uop::Ret { size } => {
            let s = u32::from(size);
            let t = c.peek(s, 0)?;
            let t = c.canon(t)?;
            let m = Cpu::mask_for(c.stack_size());
            let sp = c.s.gpr[4];
            c.s.gpr[4] = (sp & !m) | (sp.wrapping_add(u64::from(s)) & m);
            c.s.rip = t;
        }
    }
    Ok(())
}

/// `op [mem], b`: read-only for CMP/TEST, else read-modify-write (checked for a write
/// first, as the generic path does).
#[inline(always)]
fn alu_mem(c: &mut Cpu, op: Bin, size: u8, m: &Mem, b: u64) -> R<()> {
    let off = c.ea_of(m);
    let n = usize::from(size);
    let u = c.user();
    if writes(op) {
        let a = c.lin(usize::from(m.seg), off, n, true)?;
        let old = c.read_lin(a, n, u)?;
        let r = alu_value(c, op, size, old, b);
        c.write_lin(a, n, r, u)?;
        // Flags only once the write succeeded: a faulting instruction changes nothing.
        alu(c, op, size, old, b);
    } else {
        let a = c.lin(usize::from(m.seg), off, n, false)?;
        let old = c.read_lin(a, n, u)?;
        alu(c, op, size, old, b);
    }
    Ok(())
}

/// The result `alu` would compute, without touching the flags.
#[inline(always)]
fn alu_value(c: &Cpu, op: Bin, size: u8, a: u64, b: u64) -> u64 {
    let m = mask(u32::from(size));
    let r = match op {
        Bin::Add => a.wrapping_add(b),
        Bin::Sub | Bin::Cmp => a.wrapping_sub(b),
        Bin::And | Bin::Test => a & b,
        Bin::Or => a | b,
        Bin::Xor => a ^ b,
        Bin::Adc => a.wrapping_add(b).wrapping_add(u64::from(c.lf.cf())),
        Bin::Sbb => a.wrapping_sub(b).wrapping_sub(u64::from(c.lf.cf())),
    };
    r & m
}

#[inline(always)]
fn ext_set(c: &mut Cpu, signed: bool, dsize: u8, ssize: u8, dst: u8, v: u64) {
    let v = if signed {
        sext(v, u32::from(ssize)) & mask(u32::from(dsize))
    } else {
        v
    };
    c.setg(dst, dsize, v);
}

#[inline(always)]
fn cmov_set(c: &mut Cpu, cc: u8, size: u8, dst: u8, v: u64) {
    if c.lf.cond(cc) {
        c.setg(dst, size, v);
    } else if size == 4 {
        // A 32-bit CMOV zero-extends the destination even when not taken.
        let cur = c.g(dst);
        c.setg(dst, 4, cur);
    }
}

/// SHL/SHR/SAR by a non-zero immediate count: every arithmetic flag is defined by the
/// result (as the generic `shift` computes them), so no old flag is needed.
#[inline(always)]
fn shift_ri(c: &mut Cpu, kind: u8, size: u8, dst: u8, cnt: u32) {
    use crate::flags::fl;
    let s = u32::from(size);
    let bits = s * 8;
    let m = mask(s);
    let a = c.g(dst) & m;
    let msb = |v: u64| v >> (bits - 1) & 1 != 0;
    let (r, cf, of) = match kind {
        0 => {
            let r = if cnt >= 64 { 0 } else { (a << cnt) & m };
            let cf = cnt <= bits && (a >> (bits - cnt)) & 1 != 0;
            (r, cf, msb(r) ^ cf)
        }
        1 => {
            let r = if cnt >= 64 { 0 } else { a >> cnt };
            let cf = cnt <= bits && (a >> (cnt - 1)) & 1 != 0;
            (r, cf, msb(a))
        }
        _ => {
            let sa = sext(a, s) as i64;
            let r = (sa >> cnt.min(63)) as u64 & m;
            let cf = (sa >> (cnt - 1).min(63)) & 1 != 0;
            (r, cf, false)
        }
    };
    let mut f = szp(bits, r);
    if cf {
        f |= fl::CF;
    }
    if of {
        f |= fl::OF;
    }
    c.setg(dst, size, r);
    c.lf.set_explicit(f);
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
