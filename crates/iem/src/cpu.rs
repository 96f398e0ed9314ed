//! The interpreter's view of one vCPU: architectural state plus the caches and pending-exit
//! bookkeeping the execution loop needs.

use crate::flags::{fl, Lazy};
use crate::mmu::Tlb;
use crate::regs::{gpr, sreg, Gpr};
use iced_x86::Register;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use sup::state::{cr0, efer};
use sup::{CpuidEntry, Segment, VcpuState, VmExit};

/// An exception to raise (vector and optional error code).
///
/// Every error code the interpreter raises fits in 16 bits (selector-based codes and #PF's
/// bits), and keeping it at 16 bits keeps [`R<()>`] within 8 bytes, so instruction handlers
/// return it in a register rather than through memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    pub vector: u8,
    pub code: Option<u16>,
}

/// Why an instruction did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Raise an exception; the instruction has no architectural effect.
    Fault(Fault),
    /// A VM exit was prepared in [`Cpu::exit`]; the instruction is restarted on the next run.
    Exit,
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Self {
        Stop::Fault(f)
    }
}

/// Result of an instruction step.
pub(crate) type R<T> = Result<T, Stop>;

// Handlers return `R<()>` on every instruction: it must stay small enough for a register.
const _: () = assert!(std::mem::size_of::<R<()>>() <= 8);

/// Exception vectors.
#[allow(dead_code)]
pub(crate) mod vec {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const XM: u8 = 19;
}

/// Build a fault with an error code.
#[inline]
pub(crate) fn fault(vector: u8, code: u32) -> Stop {
    debug_assert!(code <= 0xffff, "error code {code:#x} wider than 16 bits");
    Stop::Fault(Fault {
        vector,
        code: Some(code as u16),
    })
}

/// Build a fault without an error code.
#[inline]
pub(crate) fn fault_nc(vector: u8) -> Stop {
    Stop::Fault(Fault { vector, code: None })
}

/// #GP(0).
#[inline]
pub(crate) fn gp0() -> Stop {
    fault(vec::GP, 0)
}

/// #UD.
#[inline]
pub(crate) fn ud() -> Stop {
    fault_nc(vec::UD)
}

/// Segment register indexes.
pub(crate) mod sr {
    pub const ES: usize = 0;
    pub const CS: usize = 1;
    pub const SS: usize = 2;
    pub const DS: usize = 3;
    pub const FS: usize = 4;
    pub const GS: usize = 5;
}

/// One buffered MMIO access (gpa, length, data).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MmioAccess {
    pub gpa: u64,
    pub len: u8,
    pub data: [u8; 16],
}

/// A port-I/O IN that is waiting for (or has received) its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingIn {
    pub port: u16,
    pub size: u8,
    /// True once the VMM has filled the buffer.
    pub ready: bool,
}

/// TSC configuration: the guest TSC is `offset + host_ns * hz / 1e9`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TscClock {
    pub hz: u64,
    pub offset: u64,
    /// IA32_TSC_ADJUST: what the guest has added to the TSC by writing it (SDM 17.17.3).
    pub adjust: u64,
}

/// The vCPU the interpreter executes.
pub(crate) struct Cpu {
    pub s: VcpuState,
    pub lf: Lazy,
    pub mem: Arc<pgm::GuestMemory>,
    pub tlb: Tlb,
    /// Code size of the current CS: 16, 32 or 64.
    pub bits: u32,
    pub map_gen: u64,
    pub id: u32,

    /// Exit prepared by the current instruction.
    pub exit: Option<VmExit>,
    /// Port-I/O data buffer.
    pub io_buf: Vec<u8>,
    pub pending_in: Option<PendingIn>,
    /// MMIO data buffer of the current exit.
    pub mmio_buf: [u8; 16],
    pub mmio_len: usize,
    /// MMIO reads the VMM answered for the instruction being restarted.
    pub mmio_replay: Vec<MmioAccess>,
    pub replay_cursor: usize,
    /// The pending MMIO read (the exit we returned), answered by the next run.
    pub mmio_read_pending: Option<(u64, u8)>,
    /// MMIO writes of completed instructions not yet reported.
    pub mmio_wq: VecDeque<MmioAccess>,

    /// The instruction asks the loop to end the current block (mode/paging changes).
    pub end_block: bool,
    /// The instruction opened an interrupt shadow (STI, MOV SS, POP SS).
    pub set_shadow: bool,
    /// Backing page of the block being executed, to catch self-modifying code.
    pub code_page: u64,
    /// The current instruction wrote the code page of its block or queued an MMIO write:
    /// the block ends after it (the one flag the fast loop checks besides RIP).
    pub smc: bool,
    /// Instructions retired by the current fast handler beyond the one it stands for (a
    /// fused compare-and-branch retires two); the execution loop adds and clears it.
    pub retired_extra: u64,
    /// rip - instruction.ip(): relocates decoded branch targets and RIP-relative operands.
    pub delta: u64,
    /// Address of the next instruction.
    pub next_rip: u64,
    /// Address of the current instruction.
    pub start_rip: u64,

    pub cpuid: Vec<CpuidEntry>,
    pub msrs: HashMap<u32, u64>,
    pub tsc: TscClock,
    pub epoch: std::time::Instant,
    pub pending_irq: Option<u8>,
    pub nmi_pending: bool,
    /// Set when the VMM looked at/edited the state: resync caches on the next run.
    pub exported: bool,
    /// Cached copies used to tell which caches an external state edit invalidates.
    pub seen_paging: (u64, u64, u64, u64),
    /// The TSC value last handed out in `s.tsc`: only a changed value is applied back, so
    /// time spent in the VMM between exits is not lost.
    pub exported_tsc: Option<u64>,
}

impl Cpu {
    pub(crate) fn new(id: u32, mem: Arc<pgm::GuestMemory>, s: VcpuState) -> Self {
        let map_gen = mem.map_generation();
        let mut c = Cpu {
            s,
            lf: Lazy::default(),
            mem,
            tlb: Tlb::new(),
            bits: 16,
            map_gen,
            id,
            exit: None,
            io_buf: Vec::new(),
            pending_in: None,
            mmio_buf: [0; 16],
            mmio_len: 0,
            mmio_replay: Vec::new(),
            replay_cursor: 0,
            mmio_read_pending: None,
            mmio_wq: VecDeque::new(),
            end_block: false,
            set_shadow: false,
            code_page: u64::MAX,
            smc: false,
            retired_extra: 0,
            delta: 0,
            next_rip: 0,
            start_rip: 0,
            cpuid: crate::cpuid::default_table(),
            msrs: HashMap::new(),
            tsc: TscClock {
                hz: crate::DEFAULT_TSC_HZ,
                offset: 0,
                adjust: 0,
            },
            epoch: std::time::Instant::now(),
            pending_irq: None,
            nmi_pending: false,
            exported: false,
            seen_paging: (0, 0, 0, 0),
            exported_tsc: None,
        };
        c.import_state();
        c
    }

    /// Re-derive every cache from `s` (after construction or an external edit).
    pub(crate) fn import_state(&mut self) {
        self.lf.set_explicit(self.s.rflags);
        self.s.rflags = (self.s.rflags & !fl::ARITH) | 2;
        let tsc = self.s.tsc;
        if self.exported_tsc != Some(tsc) {
            self.set_tsc(tsc);
        }
        self.nmi_pending |= self.s.events.nmi_pending;
        self.update_mode();
        let p = (self.s.cr0, self.s.cr3, self.s.cr4, self.s.efer);
        if p != self.seen_paging {
            self.tlb.flush_all();
            self.seen_paging = p;
        }
    }

    /// Bring `s` up to date (flags, TSC) before handing it out.
    pub(crate) fn export_state(&mut self) {
        self.s.rflags = (self.s.rflags & !fl::ARITH) | self.lf.get() | 2;
        self.s.tsc = self.read_tsc();
        self.exported_tsc = Some(self.s.tsc);
        self.s.events.nmi_pending = self.nmi_pending;
    }

    /// Full RFLAGS.
    #[inline]
    pub(crate) fn rflags(&self) -> u64 {
        (self.s.rflags & !fl::ARITH) | self.lf.get() | 2
    }

    /// Set RFLAGS (all bits; caller applies privilege rules).
    #[inline]
    pub(crate) fn set_rflags(&mut self, v: u64) {
        self.lf.set_explicit(v);
        self.s.rflags = (v & !fl::ARITH & 0x3f_7fd5) | 2;
    }

    /// Recompute the code size after CS, CR0 or EFER changed.
    pub(crate) fn update_mode(&mut self) {
        if self.s.efer & efer::LMA != 0 && self.s.cs.attr & Segment::L != 0 {
            self.bits = 64;
        } else if self.s.cs.attr & Segment::DB != 0 {
            self.bits = 32;
        } else {
            self.bits = 16;
        }
    }

    /// Current privilege level.
    #[inline]
    pub(crate) fn cpl(&self) -> u8 {
        if self.s.cr0 & cr0::PE == 0 {
            0
        } else if self.s.rflags & fl::VM != 0 {
            3
        } else {
            (self.s.cs.selector & 3) as u8
        }
    }

    /// True in 64-bit mode (long mode with a 64-bit CS).
    #[inline]
    pub(crate) fn long64(&self) -> bool {
        self.bits == 64
    }

    /// True in protected mode (CR0.PE).
    #[inline]
    pub(crate) fn pmode(&self) -> bool {
        self.s.cr0 & cr0::PE != 0
    }

    /// A segment register by index.
    #[inline]
    pub(crate) fn seg(&self, i: usize) -> &Segment {
        match i {
            0 => &self.s.es,
            1 => &self.s.cs,
            2 => &self.s.ss,
            3 => &self.s.ds,
            4 => &self.s.fs,
            _ => &self.s.gs,
        }
    }

    /// A segment register by index, mutable.
    #[inline]
    pub(crate) fn seg_mut(&mut self, i: usize) -> &mut Segment {
        match i {
            0 => &mut self.s.es,
            1 => &mut self.s.cs,
            2 => &mut self.s.ss,
            3 => &mut self.s.ds,
            4 => &mut self.s.fs,
            _ => &mut self.s.gs,
        }
    }

    /// Read a register (general purpose or segment selector).
    #[inline]
    pub(crate) fn reg(&self, r: Register) -> u64 {
        match gpr(r) {
            Some(Gpr::Q64(i)) => self.s.gpr[i],
            Some(Gpr::D32(i)) => self.s.gpr[i] & 0xffff_ffff,
            Some(Gpr::W16(i)) => self.s.gpr[i] & 0xffff,
            Some(Gpr::Low8(i)) => self.s.gpr[i] & 0xff,
            Some(Gpr::High8(i)) => (self.s.gpr[i] >> 8) & 0xff,
            None => match sreg(r) {
                Some(i) => u64::from(self.seg(i).selector),
                None => 0,
            },
        }
    }

    /// Write a general register with x86 semantics (32-bit writes zero-extend).
    #[inline]
    pub(crate) fn set_reg(&mut self, r: Register, v: u64) {
        match gpr(r) {
            Some(Gpr::Q64(i)) => self.s.gpr[i] = v,
            Some(Gpr::D32(i)) => self.s.gpr[i] = v & 0xffff_ffff,
            Some(Gpr::W16(i)) => self.s.gpr[i] = (self.s.gpr[i] & !0xffff) | (v & 0xffff),
            Some(Gpr::Low8(i)) => self.s.gpr[i] = (self.s.gpr[i] & !0xff) | (v & 0xff),
            Some(Gpr::High8(i)) => self.s.gpr[i] = (self.s.gpr[i] & !0xff00) | ((v & 0xff) << 8),
            None => {}
        }
    }

    /// Write the low `size` bytes of GPR `i` with x86 semantics.
    #[inline]
    pub(crate) fn set_gpr_sized(&mut self, i: usize, size: u32, v: u64) {
        let g = &mut self.s.gpr[i];
        match size {
            1 => *g = (*g & !0xff) | (v & 0xff),
            2 => *g = (*g & !0xffff) | (v & 0xffff),
            4 => *g = v & 0xffff_ffff,
            _ => *g = v,
        }
    }

    /// The TSC now.
    pub(crate) fn read_tsc(&self) -> u64 {
        let ns = self.epoch.elapsed().as_nanos();
        let ticks = ns.saturating_mul(u128::from(self.tsc.hz)) / 1_000_000_000;
        self.tsc.offset.wrapping_add(ticks as u64)
    }

    /// Make the TSC read `value` now (the VMM's write: IA32_TSC_ADJUST stays, as KVM
    /// keeps it on host-initiated writes).
    pub(crate) fn set_tsc(&mut self, value: u64) {
        self.tsc.offset = 0;
        let now = self.read_tsc();
        self.tsc.offset = value.wrapping_sub(now);
    }

    /// The guest's WRMSR to the TSC: IA32_TSC_ADJUST moves by as much as the TSC.
    pub(crate) fn write_tsc_msr(&mut self, value: u64) {
        let delta = value.wrapping_sub(self.read_tsc());
        self.tsc.adjust = self.tsc.adjust.wrapping_add(delta);
        self.tsc.offset = self.tsc.offset.wrapping_add(delta);
    }

    /// Write IA32_TSC_ADJUST: the TSC moves by the difference to the old value.
    pub(crate) fn set_tsc_adjust(&mut self, value: u64) {
        let delta = value.wrapping_sub(self.tsc.adjust);
        self.tsc.offset = self.tsc.offset.wrapping_add(delta);
        self.tsc.adjust = value;
    }

    /// Stack pointer width in bytes (SS.B / 64-bit mode).
    #[inline]
    pub(crate) fn stack_size(&self) -> u32 {
        if self.long64() {
            8
        } else if self.s.ss.attr & Segment::DB != 0 {
            4
        } else {
            2
        }
    }

    /// Address mask of the instruction's address size.
    #[inline]
    pub(crate) fn mask_for(size: u32) -> u64 {
        match size {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => u64::MAX,
        }
    }

    /// Mask the instruction pointer to the current code size.
    #[inline]
    pub(crate) fn ip_mask(&self) -> u64 {
        match self.bits {
            16 => 0xffff,
            32 => 0xffff_ffff,
            _ => u64::MAX,
        }
    }

    /// Push a value of `size` bytes on the stack.
    #[inline]
    pub(crate) fn push(&mut self, size: u32, v: u64) -> R<()> {
        let ss = self.stack_size();
        let m = Self::mask_for(ss);
        let rsp = self.s.gpr[4];
        let new = rsp.wrapping_sub(u64::from(size)) & m;
        self.write_mem(sr::SS, new, size as usize, v)?;
        self.s.gpr[4] = (rsp & !m) | new;
        Ok(())
    }

    /// Pop a value of `size` bytes from the stack.
    #[inline]
    pub(crate) fn pop(&mut self, size: u32) -> R<u64> {
        let v = self.peek(size, 0)?;
        let m = Self::mask_for(self.stack_size());
        let rsp = self.s.gpr[4];
        self.s.gpr[4] = (rsp & !m) | (rsp.wrapping_add(u64::from(size)) & m);
        Ok(v)
    }

    /// Read the stack at `rsp + off` without popping.
    #[inline]
    pub(crate) fn peek(&mut self, size: u32, off: u64) -> R<u64> {
        let m = Self::mask_for(self.stack_size());
        let addr = self.s.gpr[4].wrapping_add(off) & m;
        self.read_mem(sr::SS, addr, size as usize)
    }
}
