//! Operand access for decoded instructions: effective addresses, register/memory/immediate
//! reads and writes, and locked read-modify-write.

use crate::cpu::{Cpu, R};
use crate::regs::{gpr, Gpr};
use iced_x86::{Instruction, OpKind, Register};

/// A resolved destination: register or linear memory address.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loc {
    Reg(Register),
    Mem(u64),
}

/// Size in bytes of a general register.
#[inline]
pub(crate) fn reg_size(r: Register) -> u32 {
    match gpr(r) {
        Some(Gpr::Low8(_)) | Some(Gpr::High8(_)) => 1,
        Some(Gpr::W16(_)) => 2,
        Some(Gpr::D32(_)) => 4,
        Some(Gpr::Q64(_)) => 8,
        None => {
            if crate::regs::sreg(r).is_some() {
                2
            } else {
                8
            }
        }
    }
}

/// Mask for an operand size in bytes.
#[inline]
pub(crate) fn mask(size: u32) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Sign-extend a value of `size` bytes to 64 bits.
#[inline]
pub(crate) fn sext(v: u64, size: u32) -> u64 {
    match size {
        1 => v as u8 as i8 as i64 as u64,
        2 => v as u16 as i16 as i64 as u64,
        4 => v as u32 as i32 as i64 as u64,
        _ => v,
    }
}

impl Cpu {
    /// Effective address (segment offset) of the instruction's memory operand.
    #[inline]
    pub(crate) fn ea(&self, ins: &Instruction) -> u64 {
        let base = ins.memory_base();
        let disp = ins.memory_displacement64();
        if base == Register::RIP {
            return disp.wrapping_add(self.delta);
        }
        if base == Register::EIP {
            return disp.wrapping_add(self.delta) & 0xffff_ffff;
        }
        let idx = ins.memory_index();
        let mut a = disp;
        let mut asz = match ins.memory_displ_size() {
            2 => 2,
            4 => 4,
            8 => 8,
            _ => self.bits / 8,
        };
        if base != Register::None {
            a = a.wrapping_add(self.reg(base));
            asz = reg_size(base);
        }
        if idx != Register::None {
            a = a.wrapping_add(
                self.reg(idx)
                    .wrapping_mul(u64::from(ins.memory_index_scale())),
            );
            asz = reg_size(idx);
        }
        a & mask(asz)
    }

    /// Segment index of the memory operand.
    #[inline]
    pub(crate) fn mseg(ins: &Instruction) -> usize {
        (ins.memory_segment() as usize)
            .wrapping_sub(Register::ES as usize)
            .min(5)
    }

    /// Size in bytes of operand `i`.
    #[inline]
    pub(crate) fn op_size(ins: &Instruction, i: u32) -> u32 {
        match ins.op_kind(i) {
            OpKind::Register => reg_size(ins.op_register(i)),
            OpKind::Memory => ins.memory_size().size() as u32,
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    /// Linear address of the memory operand, checked for an access of `size` bytes.
    #[inline]
    pub(crate) fn mem_lin(&self, ins: &Instruction, size: u32, write: bool) -> R<u64> {
        let off = self.ea(ins);
        self.lin(Self::mseg(ins), off, size as usize, write)
    }

    /// Read operand `i` (register, memory or immediate) as `size` bytes.
    #[inline]
    pub(crate) fn read_op(&mut self, ins: &Instruction, i: u32, size: u32) -> R<u64> {
        match ins.op_kind(i) {
            OpKind::Register => Ok(self.reg(ins.op_register(i))),
            OpKind::Memory => {
                let a = self.mem_lin(ins, size, false)?;
                let u = self.user();
                self.read_lin(a, size as usize, u)
            }
            _ => Ok(ins.immediate(i) & mask(size)),
        }
    }

    /// Write operand `i`.
    #[inline]
    pub(crate) fn write_op(&mut self, ins: &Instruction, i: u32, size: u32, v: u64) -> R<()> {
        match ins.op_kind(i) {
            OpKind::Register => {
                self.set_reg(ins.op_register(i), v);
                Ok(())
            }
            _ => {
                let a = self.mem_lin(ins, size, true)?;
                let u = self.user();
                self.write_lin(a, size as usize, v, u)
            }
        }
    }

    /// Resolve operand 0 as a destination.
    #[inline]
    pub(crate) fn loc0(&self, ins: &Instruction, size: u32) -> R<Loc> {
        match ins.op0_kind() {
            OpKind::Register => Ok(Loc::Reg(ins.op0_register())),
            _ => Ok(Loc::Mem(self.mem_lin(ins, size, true)?)),
        }
    }

    /// Read a resolved location.
    #[inline]
    pub(crate) fn read_loc(&mut self, l: Loc, size: u32) -> R<u64> {
        match l {
            Loc::Reg(r) => Ok(self.reg(r)),
            Loc::Mem(a) => {
                let u = self.user();
                self.read_lin(a, size as usize, u)
            }
        }
    }

    /// Write a resolved location.
    #[inline]
    pub(crate) fn write_loc(&mut self, l: Loc, size: u32, v: u64) -> R<()> {
        match l {
            Loc::Reg(r) => {
                self.set_reg(r, v);
                Ok(())
            }
            Loc::Mem(a) => {
                let u = self.user();
                self.write_lin(a, size as usize, v, u)
            }
        }
    }

    /// Read-modify-write operand 0: returns (old, new). LOCK-prefixed memory operands are
    /// updated with a compare-exchange on guest memory so other vCPUs see an atomic update.
    #[inline]
    pub(crate) fn rmw0(
        &mut self,
        ins: &Instruction,
        size: u32,
        f: impl Fn(u64) -> u64,
    ) -> R<(u64, u64)> {
        let m = mask(size);
        match ins.op0_kind() {
            OpKind::Register => {
                let r = ins.op0_register();
                let old = self.reg(r);
                let new = f(old) & m;
                self.set_reg(r, new);
                Ok((old, new))
            }
            _ => {
                let a = self.mem_lin(ins, size, true)?;
                if ins.has_lock_prefix() {
                    let old = self.atomic_rmw(a, size as usize, |o| f(o) & m)?;
                    Ok((old, f(old) & m))
                } else {
                    let u = self.user();
                    let old = self.read_lin(a, size as usize, u)?;
                    let new = f(old) & m;
                    self.write_lin(a, size as usize, new, u)?;
                    Ok((old, new))
                }
            }
        }
    }

    /// Branch target of a near branch operand, relocated to the current RIP.
    #[inline]
    pub(crate) fn branch_target(&self, ins: &Instruction) -> u64 {
        let t = ins.near_branch_target().wrapping_add(self.delta);
        match ins.op0_kind() {
            OpKind::NearBranch16 => t & 0xffff,
            OpKind::NearBranch32 => t & 0xffff_ffff,
            _ => t,
        }
    }
}
