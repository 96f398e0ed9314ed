//! Pre-decoded fast paths for the instructions that dominate real guest code.
//!
//! When a block is decoded, every instruction is also compiled once into a [`Uop`]: a
//! handler function specialised (through const generics) on the operation and operand size,
//! plus the pre-extracted registers, immediate, branch target and effective-address recipe.
//! Executing a `Uop` is one indirect call into straight-line code: no re-matching of the
//! mnemonic, no re-reading of iced's operand kinds, no branching on the operand size.
//! Everything else (and every rare form: high-byte registers, LOCK prefixes, segment
//! registers...) is a slow `Uop` and runs through [`super::step`]. A fast path must behave
//! exactly like the generic one: same results, same flags, same faults in the same order
//! (checked by the tests against the generic interpreter).

use super::alu::Bin;
use super::is_setcc;
use super::operand::{mask, sext};
use crate::cpu::{gp0, Cpu, R};
use crate::flags::{fl, szp, Op};
use crate::regs::{gpr, Gpr};
use iced_x86::{Code, Instruction, Mnemonic as M, OpKind, Register};

/// `Mem::base` value for RIP-relative addressing.
const BASE_RIP: u8 = 16;
/// `Mem::base` value for EIP-relative addressing.
const BASE_EIP: u8 = 17;
/// No base or index register.
const NONE: u8 = 0xff;

/// A pre-extracted effective-address recipe: `seg:(disp + base + index*scale) & amask`,
/// packed into 8 bytes (see [`Uop`] for why size matters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mem {
    /// The displacement, sign-extended when used. With 16- and 32-bit addressing only its
    /// low bits matter (the address is masked); a 64-bit displacement that does not fit
    /// (a MOV with a 64-bit absolute address) has no recipe.
    disp: i32,
    base: u8,
    index: u8,
    seg: u8,
    /// log2(scale) in bits 0-1, log2(address size / 2) in bits 2-3.
    sa: u8,
}

impl Mem {
    fn new(disp: u64, base: u8, index: u8, scale: u8, seg: u8, asz: u8) -> Option<Mem> {
        let disp = if asz == 8 {
            i32::try_from(disp as i64).ok()?
        } else {
            disp as u32 as i32
        };
        let sl = scale.trailing_zeros() as u8;
        let al = (asz / 2).trailing_zeros() as u8;
        (scale.is_power_of_two() && sl < 4 && matches!(asz, 2 | 4 | 8)).then_some(Mem {
            disp,
            base,
            index,
            seg,
            sa: sl | (al << 2),
        })
    }

    #[inline(always)]
    fn disp(&self) -> u64 {
        i64::from(self.disp) as u64
    }

    #[inline(always)]
    fn scale_shift(&self) -> u32 {
        u32::from(self.sa & 3)
    }

    /// Address size in bytes (2, 4, 8).
    #[inline(always)]
    fn asz(&self) -> u32 {
        2 << (self.sa >> 2)
    }
}

const NO_MEM: Mem = Mem {
    disp: 0,
    base: NONE,
    index: NONE,
    seg: 3,
    sa: 2 << 2,
};

/// The handler of a fast `Uop`. On entry `c.s.rip` already points at the next instruction
/// and `c.delta` relocates decoded addresses; `c.start_rip` and `c.next_rip` are not set.
pub(crate) type Handler = fn(&mut Cpu, &Uop) -> R<()>;

/// A pre-decoded instruction, 32 bytes: two to a cache line. Kernel code paths are long
/// and rarely repeat within a short time, so the interpreter's speed there is bound by how
/// many cache lines of ops a path touches; every field is as narrow as its values allow.
#[derive(Clone, Copy)]
pub(crate) struct Uop {
    /// The specialised handler; None: execute the iced instruction generically.
    f: Option<Handler>,
    /// Immediate or shift count, kept as its low 32 bits: read back sign-extended when
    /// `size` is 8 (x86 sign-extends 32-bit immediates of 64-bit operations), zero-extended
    /// otherwise (see [`imm32`]). For a branch: the target (see [`Uop::target`]). For a
    /// MOV of a 64-bit immediate: its low half (the high half is in `m.disp`).
    imm: i32,
    /// Branch target of a fused compare-and-branch (see [`compile_fused`]), as `imm`.
    t: i32,
    m: Mem,
    /// Destination (or only) register.
    d: u8,
    /// Source register.
    s: u8,
    /// Condition code, or the source size of MOVZX/MOVSX.
    cc: u8,
    /// Operand size (destination size of MOVZX/MOVSX).
    size: u8,
    /// Length of the instruction in bytes (bits 0-3) and of the fused Jcc of a
    /// compare-and-branch (bits 4-7).
    lens: u8,
    /// Branch target width: 0 = 16, 1 = 32, 2 = 64 bits.
    tm: u8,
    /// The decoded instruction's IP (its offset in the page the block was decoded from).
    pub ip: u16,
}

const _: () = assert!(std::mem::size_of::<Uop>() == 32);

/// The stored form of immediate `v` of an operation of `size` bytes (see [`Uop::imm`]),
/// or None when it has none (a 64-bit immediate that is not a sign-extended 32-bit one).
fn imm32(v: u64, size: u8) -> Option<i32> {
    if size == 8 {
        i32::try_from(v as i64).ok()
    } else {
        u32::try_from(v & mask(u32::from(size)))
            .ok()
            .map(|x| x as i32)
    }
}

/// Branch target width code of a near-branch operand.
fn branch_tm(k: OpKind) -> u8 {
    match k {
        OpKind::NearBranch16 => 0,
        OpKind::NearBranch32 => 1,
        _ => 2,
    }
}

/// Branch target width code of an operand size in bytes.
fn size_tm(size: u8) -> u8 {
    match size {
        2 => 0,
        4 => 1,
        _ => 2,
    }
}

/// The stored form of a decoded branch target (an offset from the start of the page the
/// block was decoded from, relocated by `delta` when run): a 16- or 32-bit target is used
/// modulo its width, so its low 32 bits do; a 64-bit one must fit in 32 bits signed (a
/// branch within 2 GiB of its page, which is every rel32 branch but the extreme ones).
fn target32(t: u64, tm: u8) -> Option<i32> {
    if tm == 2 {
        i32::try_from(t as i64).ok()
    } else {
        Some(t as u32 as i32)
    }
}

impl std::fmt::Debug for Uop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uop")
            .field("fast", &self.f.is_some())
            .field("imm", &self.imm())
            .field("d", &self.d)
            .field("s", &self.s)
            .field("cc", &self.cc)
            .field("size", &self.size)
            .finish()
    }
}

impl Uop {
    /// The generic-interpreter marker.
    pub(crate) const SLOW: Uop = Uop {
        f: None,
        imm: 0,
        t: 0,
        m: NO_MEM,
        d: 0,
        s: 0,
        cc: 0,
        size: 8,
        lens: 0,
        tm: 2,
        ip: 0,
    };

    /// The immediate (see the field).
    #[inline(always)]
    fn imm(&self) -> u64 {
        if self.size == 8 {
            i64::from(self.imm) as u64
        } else {
            u64::from(self.imm as u32)
        }
    }

    /// A decoded branch target, before relocation and masking.
    #[inline(always)]
    fn target(&self) -> u64 {
        i64::from(self.imm) as u64
    }

    /// The branch target of a fused compare-and-branch, before relocation and masking.
    #[inline(always)]
    fn fused_target(&self) -> u64 {
        i64::from(self.t) as u64
    }

    /// The mask a branch target is taken modulo.
    #[inline(always)]
    fn tmask(&self) -> u64 {
        match self.tm {
            0 => 0xffff,
            1 => 0xffff_ffff,
            _ => u64::MAX,
        }
    }

    /// Length of the instruction in bytes.
    #[inline(always)]
    pub(crate) fn len(&self) -> u8 {
        self.lens & 15
    }

    /// Length of the fused Jcc of a compare-and-branch.
    #[inline(always)]
    fn len2(&self) -> u8 {
        self.lens >> 4
    }

    fn new(f: Handler) -> Self {
        Uop {
            f: Some(f),
            ..Uop::SLOW
        }
    }

    /// True when the instruction has no fast path.
    #[cfg(test)]
    pub(crate) fn is_slow(&self) -> bool {
        self.f.is_none()
    }

    /// The handler, if any.
    #[inline(always)]
    pub(crate) fn handler(&self) -> Option<Handler> {
        self.f
    }
}

/// Run a fast `Uop` (a slow one does nothing here; the caller uses [`super::step`]).
#[cfg(test)]
pub(crate) fn exec(c: &mut Cpu, u: &Uop) -> R<()> {
    match u.f {
        Some(f) => f(c, u),
        None => Ok(()),
    }
}

/// ALU operation numbers (const-generic parameters).
const ADD: u8 = 0;
const OR: u8 = 1;
const ADC: u8 = 2;
const SBB: u8 = 3;
const AND: u8 = 4;
const SUB: u8 = 5;
const XOR: u8 = 6;
const CMP: u8 = 7;
const TEST: u8 = 8;

fn op_num(b: Bin) -> u8 {
    match b {
        Bin::Add => ADD,
        Bin::Or => OR,
        Bin::Adc => ADC,
        Bin::Sbb => SBB,
        Bin::And => AND,
        Bin::Sub => SUB,
        Bin::Xor => XOR,
        Bin::Cmp => CMP,
        Bin::Test => TEST,
    }
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
        let b = if base == Register::RIP {
            BASE_RIP
        } else {
            BASE_EIP
        };
        return Mem::new(disp, b, NONE, 1, seg, 8);
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
    Mem::new(disp, b, x, ins.memory_index_scale() as u8, seg, asz)
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

fn is_near_branch(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    )
}

/// Pick the handler specialised for an operand size.
macro_rules! by_size {
    ($f:ident, $sz:expr $(, $g:expr)*) => {
        match $sz {
            1 => $f::<$({ $g },)* 1> as Handler,
            2 => $f::<$({ $g },)* 2> as Handler,
            4 => $f::<$({ $g },)* 4> as Handler,
            _ => $f::<$({ $g },)* 8> as Handler,
        }
    };
}

/// Pick the handler specialised for an ALU operation and an operand size.
macro_rules! by_op {
    ($f:ident, $op:expr, $sz:expr) => {
        match $op {
            ADD => by_size!($f, $sz, ADD),
            OR => by_size!($f, $sz, OR),
            ADC => by_size!($f, $sz, ADC),
            SBB => by_size!($f, $sz, SBB),
            AND => by_size!($f, $sz, AND),
            SUB => by_size!($f, $sz, SUB),
            XOR => by_size!($f, $sz, XOR),
            CMP => by_size!($f, $sz, CMP),
            _ => by_size!($f, $sz, TEST),
        }
    };
}

/// Compile one decoded instruction for a block of code size `bits`.
pub(crate) fn compile(ins: &Instruction, bits: u32) -> Uop {
    Uop {
        lens: ins.len() as u8,
        ip: ins.ip() as u16,
        ..compile_inner(ins, bits)
            .or_else(|| kernel::compile(ins, bits))
            .unwrap_or(Uop::SLOW)
    }
}

/// Operand forms of the flag-setting half of a fused compare-and-branch.
const F_RR: u8 = 0;
const F_RI: u8 = 1;
const F_RM: u8 = 2;
const F_MR: u8 = 3;
const F_MI: u8 = 4;

/// Pick the fused handler for an ALU operation, operand size and form.
macro_rules! fused_by_form {
    ($op:expr, $sz:expr, $form:expr) => {
        match $form {
            F_RR => by_op!(fused_rr, $op, $sz),
            F_RI => by_op!(fused_ri, $op, $sz),
            F_RM => by_op!(fused_rm, $op, $sz),
            F_MR => by_op!(fused_mr, $op, $sz),
            _ => by_op!(fused_mi, $op, $sz),
        }
    };
}

/// Compile a block's last two instructions, a flag-setting ALU instruction `a` followed by
/// a Jcc `b`, into one `Uop` that runs both (one dispatch instead of two, and the branch
/// condition evaluated right after the flags are recorded). It replaces `a`'s `Uop` and
/// the block's ops end with it. Only forms that cannot write memory are fused (so the
/// only way the pair stops part-way is a fault or MMIO exit of `a`, before anything is
/// done). When the branch is taken to a non-canonical address the fused op leaves RIP at
/// the Jcc, which then runs (and faults) on its own.
pub(crate) fn compile_fused(a: &Instruction, b: &Instruction, bits: u32) -> Option<Uop> {
    let j = compile(b, bits);
    let is_jcc = b.flow_control() == iced_x86::FlowControl::ConditionalBranch
        && b.condition_code() != iced_x86::ConditionCode::None
        && j.f.is_some()
        && matches!(b.op0_kind(), k if is_near_branch(k))
        && !matches!(
            b.mnemonic(),
            M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz | M::Jrcxz
        );
    if !is_jcc {
        return None;
    }
    // Only `compile_inner`'s forms have fused versions: the extra forms (e.g. TEST of a
    // high-byte register) would be misread by the fused handlers.
    compile_inner(a, bits)?;
    let base = compile(a, bits);
    base.f?;
    let mn = a.mnemonic();
    let f = if let Some(op) = bin_of(mn) {
        let op = op_num(op);
        let form = match (a.op0_kind(), a.op1_kind()) {
            (OpKind::Register, OpKind::Register) => F_RR,
            (OpKind::Register, k) if is_imm(k) => F_RI,
            (OpKind::Register, OpKind::Memory) => F_RM,
            (OpKind::Memory, OpKind::Register) => F_MR,
            (OpKind::Memory, k) if is_imm(k) => F_MI,
            _ => return None,
        };
        if form >= F_MR && writes(op) {
            return None;
        }
        fused_by_form!(op, base.size, form)
    } else if matches!(mn, M::Inc | M::Dec) && a.op0_kind() == OpKind::Register {
        if mn == M::Inc {
            by_size!(fused_incdec, base.size, true)
        } else {
            by_size!(fused_incdec, base.size, false)
        }
    } else {
        return None;
    };
    Some(Uop {
        f: Some(f),
        t: j.imm,
        tm: j.tm,
        cc: b.condition_code() as u8 - 1,
        lens: base.lens | ((b.len() as u8) << 4),
        ..base
    })
}

/// Kind of operand `i`, or Register when the instruction has fewer operands (so forms
/// can be matched on both kinds without checking the count).
fn kind_of(ins: &Instruction, i: u32) -> OpKind {
    if ins.op_count() > i {
        ins.op_kind(i)
    } else {
        OpKind::Register
    }
}

fn compile_inner(ins: &Instruction, bits: u32) -> Option<Uop> {
    let mn = ins.mnemonic();
    if ins.has_lock_prefix() {
        return None;
    }
    let (k0, k1) = (kind_of(ins, 0), kind_of(ins, 1));
    if let Some(op) = bin_of(mn) {
        if ins.op_count() != 2 {
            return None;
        }
        let op = op_num(op);
        let size = Cpu::op_size(ins, 0) as u8;
        let imm = || imm32(ins.immediate(1), size);
        return match (k0, k1) {
            (OpKind::Register, OpKind::Register) => {
                let (d, ds) = greg(ins.op0_register())?;
                let (s, _) = greg(ins.op1_register())?;
                (ds == size).then(|| Uop {
                    d,
                    s,
                    size,
                    ..Uop::new(by_op!(alu_rr, op, size))
                })
            }
            (OpKind::Register, k) if is_imm(k) => {
                let (d, _) = greg(ins.op0_register())?;
                Some(Uop {
                    d,
                    imm: imm()?,
                    size,
                    ..Uop::new(by_op!(alu_ri, op, size))
                })
            }
            (OpKind::Register, OpKind::Memory) => {
                let (d, _) = greg(ins.op0_register())?;
                Some(Uop {
                    d,
                    m: mem_recipe(ins, bits)?,
                    size,
                    ..Uop::new(by_op!(alu_rm, op, size))
                })
            }
            (OpKind::Memory, OpKind::Register) => {
                let (s, _) = greg(ins.op1_register())?;
                Some(Uop {
                    s,
                    m: mem_recipe(ins, bits)?,
                    size,
                    ..Uop::new(by_op!(alu_mr, op, size))
                })
            }
            (OpKind::Memory, k) if is_imm(k) => Some(Uop {
                imm: imm()?,
                m: mem_recipe(ins, bits)?,
                size,
                ..Uop::new(by_op!(alu_mi, op, size))
            }),
            _ => None,
        };
    }
    match mn {
        M::Nop | M::Pause | M::Lfence | M::Endbr64 | M::Endbr32 => Some(Uop::new(nop)),
        M::Mov => {
            let size = Cpu::op_size(ins, 0) as u8;
            match (k0, k1) {
                (OpKind::Register, OpKind::Register) => {
                    let (d, _) = greg(ins.op0_register())?;
                    let (s, _) = greg(ins.op1_register())?;
                    Some(Uop {
                        d,
                        s,
                        size,
                        ..Uop::new(by_size!(mov_rr, size))
                    })
                }
                (OpKind::Register, k) if is_imm(k) => {
                    let (d, _) = greg(ins.op0_register())?;
                    let v = ins.immediate(1) & mask(u32::from(size));
                    Some(match imm32(v, size) {
                        Some(imm) => Uop {
                            d,
                            imm,
                            size,
                            ..Uop::new(by_size!(mov_ri, size))
                        },
                        // MOV r64, imm64: the high half goes where the (unused) address
                        // recipe's displacement would be.
                        None => Uop {
                            d,
                            imm: v as u32 as i32,
                            m: Mem {
                                disp: (v >> 32) as u32 as i32,
                                ..NO_MEM
                            },
                            size,
                            ..Uop::new(mov_ri64)
                        },
                    })
                }
                (OpKind::Register, OpKind::Memory) => {
                    let (d, _) = greg(ins.op0_register())?;
                    Some(Uop {
                        d,
                        m: mem_recipe(ins, bits)?,
                        size,
                        ..Uop::new(by_size!(mov_rm, size))
                    })
                }
                (OpKind::Memory, OpKind::Register) => {
                    let (s, _) = greg(ins.op1_register())?;
                    Some(Uop {
                        s,
                        m: mem_recipe(ins, bits)?,
                        size,
                        ..Uop::new(by_size!(mov_mr, size))
                    })
                }
                (OpKind::Memory, k) if is_imm(k) => Some(Uop {
                    imm: imm32(ins.immediate(1), size)?,
                    m: mem_recipe(ins, bits)?,
                    size,
                    ..Uop::new(by_size!(mov_mi, size))
                }),
                _ => None,
            }
        }
        M::Movzx | M::Movsx | M::Movsxd => {
            let signed = mn != M::Movzx;
            let (d, dsize) = greg(ins.op0_register())?;
            let ssize = Cpu::op_size(ins, 1) as u8;
            let u = Uop {
                d,
                size: dsize,
                cc: ssize,
                ..Uop::SLOW
            };
            match k1 {
                OpKind::Register => {
                    let (s, _) = greg(ins.op1_register())?;
                    let f: Handler = if signed {
                        ext_rr::<true>
                    } else {
                        ext_rr::<false>
                    };
                    Some(Uop { s, f: Some(f), ..u })
                }
                OpKind::Memory => {
                    let f: Handler = match (signed, ssize, dsize) {
                        (false, 1, 2) => ext_rm_sz::<false, 1, 2>,
                        (false, 1, 4) => ext_rm_sz::<false, 1, 4>,
                        (false, 1, 8) => ext_rm_sz::<false, 1, 8>,
                        (false, 2, 4) => ext_rm_sz::<false, 2, 4>,
                        (false, 2, 8) => ext_rm_sz::<false, 2, 8>,
                        (true, 1, 2) => ext_rm_sz::<true, 1, 2>,
                        (true, 1, 4) => ext_rm_sz::<true, 1, 4>,
                        (true, 1, 8) => ext_rm_sz::<true, 1, 8>,
                        (true, 2, 4) => ext_rm_sz::<true, 2, 4>,
                        (true, 2, 8) => ext_rm_sz::<true, 2, 8>,
                        (true, 4, 8) => ext_rm_sz::<true, 4, 8>,
                        (true, _, _) => ext_rm::<true>,
                        (false, _, _) => ext_rm::<false>,
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
        M::Lea => {
            let (d, size) = greg(ins.op0_register())?;
            Some(Uop {
                d,
                m: mem_recipe(ins, bits)?,
                size,
                ..Uop::new(by_size!(lea, size))
            })
        }
        M::Inc | M::Dec if k0 == OpKind::Register => {
            let (d, size) = greg(ins.op0_register())?;
            let f = if mn == M::Inc {
                by_size!(incdec, size, true)
            } else {
                by_size!(incdec, size, false)
            };
            Some(Uop {
                d,
                size,
                ..Uop::new(f)
            })
        }
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror
            if k0 == OpKind::Register && ins.op_count() == 2 =>
        {
            let (d, size) = greg(ins.op0_register())?;
            let kind = match mn {
                M::Shr => 1,
                M::Sar => 2,
                M::Rol => 3,
                M::Ror => 4,
                _ => 0,
            };
            if k1 == OpKind::Register {
                if ins.op1_register() != Register::CL {
                    return None;
                }
                let f = match kind {
                    1 => by_size!(shift_rc, size, 1),
                    2 => by_size!(shift_rc, size, 2),
                    3 => by_size!(shift_rc, size, 3),
                    4 => by_size!(shift_rc, size, 4),
                    _ => by_size!(shift_rc, size, 0),
                };
                return Some(Uop {
                    d,
                    size,
                    ..Uop::new(f)
                });
            }
            if !is_imm(k1) {
                return None;
            }
            let raw = ins.immediate(1) & 0xff;
            let cnt = raw & if size == 8 { 0x3f } else { 0x1f };
            if cnt == 0 {
                return None;
            }
            let f = match kind {
                1 => by_size!(shift_ri, size, 1),
                2 => by_size!(shift_ri, size, 2),
                3 => by_size!(shift_ri, size, 3),
                4 => by_size!(shift_ri, size, 4),
                _ => by_size!(shift_ri, size, 0),
            };
            Some(Uop {
                d,
                imm: cnt as i32,
                size,
                ..Uop::new(f)
            })
        }
        M::Not | M::Neg if k0 == OpKind::Register => {
            let (d, size) = greg(ins.op0_register())?;
            let f = if mn == M::Not {
                by_size!(not_r, size)
            } else {
                by_size!(neg_r, size)
            };
            Some(Uop {
                d,
                size,
                ..Uop::new(f)
            })
        }
        M::Imul if ins.op_count() >= 2 && k0 == OpKind::Register => {
            let (d, size) = greg(ins.op0_register())?;
            if size == 1 {
                return None;
            }
            // Two-operand form: d = d * src; three-operand form: d = src * imm.
            let (src_kind, imm) = if ins.op_count() == 3 {
                (k1, Some(imm32(ins.immediate(2), size)?))
            } else {
                (k1, None)
            };
            let mut u = Uop {
                d,
                size,
                imm: imm.unwrap_or(0),
                cc: u8::from(imm.is_some()),
                ..Uop::SLOW
            };
            match src_kind {
                OpKind::Register => {
                    let (sr, _) = greg(ins.op1_register())?;
                    u.s = sr;
                    u.f = Some(by_size!(imul_r, size));
                }
                OpKind::Memory => {
                    u.m = mem_recipe(ins, bits)?;
                    u.f = Some(by_size!(imul_m, size));
                }
                _ => return None,
            }
            Some(u)
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
                    Some(Uop {
                        d,
                        s,
                        cc,
                        size,
                        ..Uop::new(by_size!(cmov_rr, size))
                    })
                }
                OpKind::Memory => Some(Uop {
                    d,
                    cc,
                    m: mem_recipe(ins, bits)?,
                    size,
                    ..Uop::new(by_size!(cmov_rm, size))
                }),
                _ => None,
            }
        }
        m if is_setcc(m) && k0 == OpKind::Register => {
            let cc = ins.condition_code() as u8 - 1;
            let (d, _) = greg(ins.op0_register())?;
            Some(Uop {
                d,
                cc,
                size: 1,
                ..Uop::new(setcc)
            })
        }
        M::Push => {
            let size = (-ins.stack_pointer_increment()) as u8;
            match k0 {
                OpKind::Register => {
                    let (s, _) = greg(ins.op0_register())?;
                    Some(Uop {
                        s,
                        size,
                        ..Uop::new(by_size!(push_r, size))
                    })
                }
                k if is_imm(k) => Some(Uop {
                    imm: imm32(ins.immediate(0), size)?,
                    size,
                    ..Uop::new(by_size!(push_i, size))
                }),
                _ => None,
            }
        }
        M::Pop if k0 == OpKind::Register => {
            let size = ins.stack_pointer_increment() as u8;
            let (d, _) = greg(ins.op0_register())?;
            Some(Uop {
                d,
                size,
                ..Uop::new(by_size!(pop_r, size))
            })
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
            let f: Handler = match ins.condition_code() as u8 - 1 {
                0 => jcc::<0>,
                1 => jcc::<1>,
                2 => jcc::<2>,
                3 => jcc::<3>,
                4 => jcc::<4>,
                5 => jcc::<5>,
                6 => jcc::<6>,
                7 => jcc::<7>,
                8 => jcc::<8>,
                9 => jcc::<9>,
                10 => jcc::<10>,
                11 => jcc::<11>,
                12 => jcc::<12>,
                13 => jcc::<13>,
                14 => jcc::<14>,
                _ => jcc::<15>,
            };
            Some(Uop {
                imm: target32(ins.near_branch_target(), branch_tm(k0))?,
                tm: branch_tm(k0),
                ..Uop::new(f)
            })
        }
        M::Jmp if is_near_branch(k0) => Some(Uop {
            imm: target32(ins.near_branch_target(), branch_tm(k0))?,
            tm: branch_tm(k0),
            ..Uop::new(jmp)
        }),
        M::Jmp if k0 == OpKind::Register => {
            let (s, rs) = greg(ins.op0_register())?;
            let size = if bits == 64 && rs == 4 { 8 } else { rs };
            Some(Uop {
                s,
                tm: size_tm(size),
                size,
                ..Uop::new(jmp_r)
            })
        }
        M::Call if is_near_branch(k0) => {
            let size = match k0 {
                OpKind::NearBranch16 => 2,
                OpKind::NearBranch32 => 4,
                _ => 8,
            };
            Some(Uop {
                imm: target32(ins.near_branch_target(), branch_tm(k0))?,
                tm: branch_tm(k0),
                size,
                ..Uop::new(by_size!(call, size))
            })
        }
        M::Call if k0 == OpKind::Register => {
            let (s, rs) = greg(ins.op0_register())?;
            let size = if bits == 64 && rs == 4 { 8 } else { rs };
            Some(Uop {
                s,
                tm: size_tm(size),
                size,
                ..Uop::new(by_size!(call_r, size))
            })
        }
        M::Ret => {
            let size = match ins.code() {
                Code::Retnw => 2,
                Code::Retnd => 4,
                Code::Retnq => 8,
                _ => return None,
            };
            Some(Uop {
                size,
                ..Uop::new(by_size!(ret, size))
            })
        }
        _ => None,
    }
}

/// Mask of an operand size known at compile time.
#[inline(always)]
const fn m_of<const SZ: u8>() -> u64 {
    if SZ >= 8 {
        u64::MAX
    } else {
        (1u64 << (SZ as u32 * 8)) - 1
    }
}

impl Cpu {
    /// Effective address of a pre-extracted recipe.
    #[inline(always)]
    fn ea_of(&self, m: &Mem) -> u64 {
        match m.base {
            BASE_RIP => return m.disp().wrapping_add(self.delta),
            BASE_EIP => return m.disp().wrapping_add(self.delta) & 0xffff_ffff,
            _ => {}
        }
        let mut a = m.disp();
        if m.base != NONE {
            a = a.wrapping_add(self.s.gpr[usize::from(m.base & 15)]);
        }
        if m.index != NONE {
            a = a.wrapping_add(self.s.gpr[usize::from(m.index & 15)] << m.scale_shift());
        }
        a & mask(m.asz())
    }

    #[inline(always)]
    fn fread(&mut self, m: &Mem, size: usize) -> R<u64> {
        let off = self.ea_of(m);
        let a = self.lin(usize::from(m.seg), off, size, false)?;
        let u = self.user();
        self.read_lin(a, size, u)
    }

    #[inline(always)]
    fn fwrite(&mut self, m: &Mem, size: usize, v: u64) -> R<()> {
        let off = self.ea_of(m);
        let a = self.lin(usize::from(m.seg), off, size, true)?;
        let u = self.user();
        self.write_lin(a, size, v, u)
    }

    #[inline(always)]
    fn g(&self, i: u8) -> u64 {
        self.s.gpr[usize::from(i & 15)]
    }

    /// Write the low `SZ` bytes of a GPR with x86 semantics (32-bit writes zero-extend).
    #[inline(always)]
    fn setg<const SZ: u8>(&mut self, i: u8, v: u64) {
        let g = &mut self.s.gpr[usize::from(i & 15)];
        *g = match SZ {
            1 => (*g & !0xff) | (v & 0xff),
            2 => (*g & !0xffff) | (v & 0xffff),
            4 => v & 0xffff_ffff,
            _ => v,
        };
    }

    #[inline(always)]
    fn canon(&self, t: u64) -> R<u64> {
        if self.long64() && ((t as i64) << 16 >> 16) as u64 != t {
            return Err(gp0());
        }
        Ok(t)
    }
}

/// Compute an ALU operation and record its flags exactly as the generic `binop` does;
/// returns the result (not written anywhere for CMP and TEST).
#[inline(always)]
fn alu_do<const OP: u8, const SZ: u8>(c: &mut Cpu, a: u64, b: u64) -> u64 {
    let m = m_of::<SZ>();
    let bits = u32::from(SZ) * 8;
    let (a, b) = (a & m, b & m);
    let (lop, r) = match OP {
        CMP => {
            let r = a.wrapping_sub(b) & m;
            c.lf.set(Op::Sub, bits, a, b, r);
            return r;
        }
        TEST => {
            let r = a & b;
            c.lf.set(Op::Logic, bits, a, b, r);
            return r;
        }
        ADC | SBB => {
            let cin = c.lf.cf();
            let ci = u64::from(cin);
            let (lop, r) = if OP == ADC {
                (Op::Adc, a.wrapping_add(b).wrapping_add(ci))
            } else {
                (Op::Sbb, a.wrapping_sub(b).wrapping_sub(ci))
            };
            let r = r & m;
            c.lf.cin = cin;
            c.lf.set(lop, bits, a, b, r);
            return r;
        }
        ADD => (Op::Add, a.wrapping_add(b)),
        SUB => (Op::Sub, a.wrapping_sub(b)),
        AND => (Op::Logic, a & b),
        OR => (Op::Logic, a | b),
        _ => (Op::Logic, a ^ b),
    };
    let r = r & m;
    c.lf.cin = false;
    c.lf.set(lop, bits, a, b, r);
    r
}

/// True for the operations that write their destination.
const fn writes(op: u8) -> bool {
    op != CMP && op != TEST
}

fn nop(_: &mut Cpu, _: &Uop) -> R<()> {
    Ok(())
}

#[inline]
fn alu_rr<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let b = c.g(u.s);
    let a = c.g(u.d);
    let r = alu_do::<OP, SZ>(c, a, b);
    if writes(OP) {
        c.setg::<SZ>(u.d, r);
    }
    Ok(())
}

#[inline]
fn alu_ri<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let a = c.g(u.d);
    let r = alu_do::<OP, SZ>(c, a, u.imm());
    if writes(OP) {
        c.setg::<SZ>(u.d, r);
    }
    Ok(())
}

#[inline]
fn alu_rm<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let b = c.fread(&u.m, usize::from(SZ))?;
    let a = c.g(u.d);
    let r = alu_do::<OP, SZ>(c, a, b);
    if writes(OP) {
        c.setg::<SZ>(u.d, r);
    }
    Ok(())
}

#[inline]
fn alu_mr<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let b = c.g(u.s);
    alu_mem::<OP, SZ>(c, &u.m, b)
}

#[inline]
fn alu_mi<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    alu_mem::<OP, SZ>(c, &u.m, u.imm())
}

/// `op [mem], b`: read-only for CMP/TEST, else read-modify-write (the address is checked
/// for a write first, as the generic path does).
#[inline(always)]
fn alu_mem<const OP: u8, const SZ: u8>(c: &mut Cpu, m: &Mem, b: u64) -> R<()> {
    let off = c.ea_of(m);
    let n = usize::from(SZ);
    let user = c.user();
    let a = c.lin(usize::from(m.seg), off, n, writes(OP))?;
    let old = c.read_lin(a, n, user)?;
    if writes(OP) {
        // Compute on a copy of the flags: a faulting write must leave them unchanged.
        let saved = c.lf;
        let r = alu_do::<OP, SZ>(c, old, b);
        if let Err(e) = c.write_lin(a, n, r, user) {
            c.lf = saved;
            return Err(e);
        }
    } else {
        alu_do::<OP, SZ>(c, old, b);
    }
    Ok(())
}

fn mov_rr<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.g(u.s);
    c.setg::<SZ>(u.d, v);
    Ok(())
}

fn mov_ri<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    c.setg::<SZ>(u.d, u.imm());
    Ok(())
}

fn mov_rm<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.fread(&u.m, usize::from(SZ))?;
    c.setg::<SZ>(u.d, v);
    Ok(())
}

/// MOV r64, imm64 with an immediate that is not a sign-extended 32-bit one.
fn mov_ri64(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = u64::from(u.imm as u32) | (u64::from(u.m.disp as u32) << 32);
    c.setg::<8>(u.d, v);
    Ok(())
}

fn mov_mr<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.g(u.s);
    c.fwrite(&u.m, usize::from(SZ), v)
}

fn mov_mi<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    c.fwrite(&u.m, usize::from(SZ), u.imm())
}

/// MOVZX/MOVSX/MOVSXD: destination size in `size`, source size in `cc`.
#[inline(always)]
fn ext_set<const SIGNED: bool>(c: &mut Cpu, u: &Uop, v: u64) {
    let v = if SIGNED {
        sext(v, u32::from(u.cc)) & mask(u32::from(u.size))
    } else {
        v
    };
    c.set_gpr_sized(usize::from(u.d & 15), u32::from(u.size), v);
}

fn ext_rr<const SIGNED: bool>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.g(u.s) & mask(u32::from(u.cc));
    ext_set::<SIGNED>(c, u, v);
    Ok(())
}

fn ext_rm<const SIGNED: bool>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.fread(&u.m, usize::from(u.cc))?;
    ext_set::<SIGNED>(c, u, v);
    Ok(())
}

/// MOVZX/MOVSX/MOVSXD from memory with the source (`SS`) and destination (`DS`) sizes
/// known at compile time.
fn ext_rm_sz<const SIGNED: bool, const SS: u8, const DS: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.fread(&u.m, usize::from(SS))?;
    let v = if SIGNED {
        sext(v, u32::from(SS)) & m_of::<DS>()
    } else {
        v
    };
    c.setg::<DS>(u.d, v);
    Ok(())
}

fn lea<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let a = c.ea_of(&u.m);
    c.setg::<SZ>(u.d, a);
    Ok(())
}

#[inline]
fn incdec<const INC: bool, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let m = m_of::<SZ>();
    let cf = c.lf.cf();
    let a = c.g(u.d) & m;
    let r = if INC {
        a.wrapping_add(1)
    } else {
        a.wrapping_sub(1)
    } & m;
    c.setg::<SZ>(u.d, r);
    c.lf.cin = cf;
    c.lf.set(
        if INC { Op::Inc } else { Op::Dec },
        u32::from(SZ) * 8,
        a,
        1,
        r,
    );
    Ok(())
}

/// Shift or rotate GPR `d` by a non-zero masked count, with the generic `shift`'s
/// flags: SHL/SHR/SAR define every arithmetic flag (AF cleared); ROL/ROR set CF and OF
/// and keep the others.
#[inline(always)]
fn shift_do<const KIND: u8, const SZ: u8>(c: &mut Cpu, d: u8, cnt: u32) {
    let bits = u32::from(SZ) * 8;
    let m = m_of::<SZ>();
    let a = c.g(d) & m;
    let msb = |v: u64| v >> (bits - 1) & 1 != 0;
    if KIND >= 3 {
        let k = cnt % bits;
        let r = if k == 0 {
            a
        } else if KIND == 3 {
            ((a << k) | (a >> (bits - k))) & m
        } else {
            ((a >> k) | (a << (bits - k))) & m
        };
        let (cf, of) = if KIND == 3 {
            let cf = r & 1 != 0;
            (cf, msb(r) ^ cf)
        } else {
            (msb(r), msb(r) ^ msb(r << 1))
        };
        let mut f = c.rflags() & fl::ARITH & !(fl::CF | fl::OF);
        if cf {
            f |= fl::CF;
        }
        if of {
            f |= fl::OF;
        }
        c.setg::<SZ>(d, r);
        c.lf.set_explicit(f);
        return;
    }
    let (r, cf, of) = match KIND {
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
            let sa = sext(a, u32::from(SZ)) as i64;
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
    c.setg::<SZ>(d, r);
    c.lf.set_explicit(f);
}

/// Shift or rotate by an immediate (non-zero after masking).
fn shift_ri<const KIND: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    shift_do::<KIND, SZ>(c, u.d, u.imm() as u32);
    Ok(())
}

/// Shift or rotate by CL: a zero count changes no flag, but a 32-bit register is still
/// written (its upper half cleared), as hardware does.
fn shift_rc<const KIND: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let cnt = (c.s.gpr[1] & if SZ == 8 { 0x3f } else { 0x1f }) as u32;
    if cnt == 0 {
        if SZ == 4 {
            let v = c.g(u.d);
            c.setg::<4>(u.d, v);
        }
        return Ok(());
    }
    shift_do::<KIND, SZ>(c, u.d, cnt);
    Ok(())
}

fn not_r<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = !c.g(u.d) & m_of::<SZ>();
    c.setg::<SZ>(u.d, v);
    Ok(())
}

fn neg_r<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let m = m_of::<SZ>();
    let a = c.g(u.d) & m;
    let r = 0u64.wrapping_sub(a) & m;
    c.setg::<SZ>(u.d, r);
    c.lf.set(Op::Sub, u32::from(SZ) * 8, 0, a, r);
    Ok(())
}

/// Signed multiply truncated to `SZ` bytes with the generic `mul`'s flags (CF = OF =
/// the product does not fit; ZF/SF/PF from the result).
#[inline(always)]
fn imul_do<const SZ: u8>(c: &mut Cpu, d: u8, x: u64, y: u64) {
    let s = u32::from(SZ);
    let p = i128::from(sext(x, s) as i64) * i128::from(sext(y, s) as i64);
    let r = p as u64 & m_of::<SZ>();
    let ovf = i128::from(sext(r, s) as i64) != p;
    c.setg::<SZ>(d, r);
    let mut f = szp(s * 8, r);
    if ovf {
        f |= fl::CF | fl::OF;
    }
    c.lf.set_explicit(f);
}

/// IMUL r, r/m (`cc` = 0) or IMUL r, r/m, imm (`cc` = 1) with a register source.
fn imul_r<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let src = c.g(u.s);
    let (x, y) = if u.cc != 0 {
        (src, u.imm())
    } else {
        (c.g(u.d), src)
    };
    imul_do::<SZ>(c, u.d, x, y);
    Ok(())
}

/// IMUL r, m or IMUL r, m, imm.
fn imul_m<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let src = c.fread(&u.m, usize::from(SZ))?;
    let (x, y) = if u.cc != 0 {
        (src, u.imm())
    } else {
        (c.g(u.d), src)
    };
    imul_do::<SZ>(c, u.d, x, y);
    Ok(())
}

#[inline(always)]
fn cmov_set<const SZ: u8>(c: &mut Cpu, u: &Uop, v: u64) {
    if c.lf.cond(u.cc) {
        c.setg::<SZ>(u.d, v);
    } else if SZ == 4 {
        // A 32-bit CMOV zero-extends the destination even when not taken.
        let cur = c.g(u.d);
        c.setg::<4>(u.d, cur);
    }
}

fn cmov_rr<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.g(u.s);
    cmov_set::<SZ>(c, u, v);
    Ok(())
}

fn cmov_rm<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.fread(&u.m, usize::from(SZ))?;
    cmov_set::<SZ>(c, u, v);
    Ok(())
}

fn setcc(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = u64::from(c.lf.cond(u.cc));
    c.setg::<1>(u.d, v);
    Ok(())
}

fn push_r<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.g(u.s) & m_of::<SZ>();
    c.push(u32::from(SZ), v)
}

fn push_i<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    c.push(u32::from(SZ), u.imm())
}

fn pop_r<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let v = c.pop(u32::from(SZ))?;
    c.setg::<SZ>(u.d, v);
    Ok(())
}

/// The Jcc half of a fused compare-and-branch. On entry RIP holds the Jcc's address.
#[inline(always)]
fn fused_branch(c: &mut Cpu, u: &Uop) -> R<()> {
    let at = c.s.rip;
    if c.lf.cond(u.cc) {
        let t = u.fused_target().wrapping_add(c.delta) & u.tmask();
        match c.canon(t) {
            Ok(t) => c.s.rip = t,
            // Leave RIP at the Jcc: it runs alone next and raises the #GP itself.
            Err(_) => return Ok(()),
        }
    } else {
        c.s.rip = at.wrapping_add(u64::from(u.len2())) & c.ip_mask();
    }
    c.retired_extra += 1;
    Ok(())
}

fn fused_rr<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    alu_rr::<OP, SZ>(c, u)?;
    fused_branch(c, u)
}

fn fused_ri<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    alu_ri::<OP, SZ>(c, u)?;
    fused_branch(c, u)
}

fn fused_rm<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    alu_rm::<OP, SZ>(c, u)?;
    fused_branch(c, u)
}

fn fused_mr<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    alu_mr::<OP, SZ>(c, u)?;
    fused_branch(c, u)
}

fn fused_mi<const OP: u8, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    alu_mi::<OP, SZ>(c, u)?;
    fused_branch(c, u)
}

fn fused_incdec<const INC: bool, const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    incdec::<INC, SZ>(c, u)?;
    fused_branch(c, u)
}

fn jcc<const CC: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    if c.lf.cond(CC) {
        let t = u.target().wrapping_add(c.delta) & u.tmask();
        c.s.rip = c.canon(t)?;
    }
    Ok(())
}

fn jmp(c: &mut Cpu, u: &Uop) -> R<()> {
    let t = u.target().wrapping_add(c.delta) & u.tmask();
    c.s.rip = c.canon(t)?;
    Ok(())
}

fn jmp_r(c: &mut Cpu, u: &Uop) -> R<()> {
    let t = c.g(u.s) & u.tmask();
    c.s.rip = c.canon(t)?;
    Ok(())
}

fn call<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let t = u.target().wrapping_add(c.delta) & u.tmask();
    let t = c.canon(t)?;
    // On entry RIP already holds the return address.
    let ret = c.s.rip;
    c.push(u32::from(SZ), ret)?;
    c.s.rip = t;
    Ok(())
}

fn call_r<const SZ: u8>(c: &mut Cpu, u: &Uop) -> R<()> {
    let t = c.g(u.s) & u.tmask();
    let t = c.canon(t)?;
    // On entry RIP already holds the return address.
    let ret = c.s.rip;
    c.push(u32::from(SZ), ret)?;
    c.s.rip = t;
    Ok(())
}

fn ret<const SZ: u8>(c: &mut Cpu, _: &Uop) -> R<()> {
    let s = u32::from(SZ);
    let t = c.peek(s, 0)?;
    let t = c.canon(t)?;
    let m = Cpu::mask_for(c.stack_size());
    let sp = c.s.gpr[4];
    c.s.gpr[4] = (sp & !m) | (sp.wrapping_add(u64::from(s)) & m);
    c.s.rip = t;
    Ok(())
}

#[path = "fast_kernel.rs"]
mod kernel;

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
