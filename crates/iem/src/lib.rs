//! The x86-64 system interpreter (VirtualBox: IEM/REM): a sup Vcpu implemented in software.
//!
//! It runs real guests where hardware virtualisation is missing, producing the same exits
//! as the KVM backend (port I/O, MMIO, HLT, shutdown) so hm, glue and every device model run
//! unchanged on it. Instructions are decoded with iced-x86 into basic blocks cached per
//! guest-physical page ([`icache`]); guest-linear addresses go through a software TLB to
//! pgm backing offsets ([`mmu`]); arithmetic flags are evaluated lazily ([`flags`]);
//! interrupts, recall and the time slice are checked at block boundaries.
//!
//! Guest memory is only touched through pgm's checked accessors: this crate has no `unsafe`.
//!
//! Entry points: [`Interpreter`] (a [`sup::Hypervisor`]), [`IemVcpu::from_state`] (move a
//! vCPU from another engine), [`supported_features`] / [`default_cpuid`] (the CPU presented).

#![forbid(unsafe_code)]

mod cpu;
pub mod cpuid;
mod event;
mod exec;
mod flags;
pub mod fuzzing;
mod icache;
mod mmu;
mod msr;
mod regs;
mod seg;
mod vcpu;

pub use cpuid::{supported_features, Features};
pub use vcpu::{IemVcpu, RecallFlag, Stats, SLICE_INSTRUCTIONS};

use std::sync::Arc;
use sup::{CpuidEntry, Hypervisor, Vcpu, VcpuState, Vm};

/// Default guest TSC frequency: 1 GHz, so TSC ticks are nanoseconds of host time.
pub const DEFAULT_TSC_HZ: u64 = 1_000_000_000;

/// The default CPUID table (what [`IemVcpu`]s use until `set_cpuid` is called).
pub fn default_cpuid() -> Vec<CpuidEntry> {
    cpuid::default_table()
}

/// The interpreter as a hypervisor backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct Interpreter;

impl Interpreter {
    /// A new interpreter backend.
    pub fn new() -> Self {
        Interpreter
    }
}

impl Hypervisor for Interpreter {
    fn create_vm(&self, memory: Arc<pgm::GuestMemory>) -> sup::Result<Arc<dyn Vm>> {
        Ok(Arc::new(IemVm { memory }))
    }

    fn name(&self) -> &'static str {
        "interpreter"
    }
}

/// A VM run by the interpreter.
#[derive(Debug)]
pub struct IemVm {
    memory: Arc<pgm::GuestMemory>,
}

impl IemVm {
    /// A VM over `memory`.
    pub fn new(memory: Arc<pgm::GuestMemory>) -> Self {
        IemVm { memory }
    }

    /// Create an interpreter vCPU with a concrete type (for tests and engine switches).
    pub fn create_iem_vcpu(&self, id: u32) -> IemVcpu {
        let mut s = VcpuState::reset();
        if id != 0 {
            // Only the bootstrap processor has IA32_APIC_BASE.BSP set.
            s.apic_base &= !(1 << 8);
        }
        IemVcpu::from_state(id, self.memory.clone(), s)
    }

    /// The guest memory.
    pub fn memory(&self) -> &Arc<pgm::GuestMemory> {
        &self.memory
    }
}

impl Vm for IemVm {
    fn create_vcpu(&self, id: u32) -> sup::Result<Box<dyn Vcpu>> {
        Ok(Box::new(self.create_iem_vcpu(id)))
    }

    fn memory_changed(&self) -> sup::Result<()> {
        // Every vCPU compares pgm's map generation at block boundaries and flushes its
        // TLB itself; decoded code is keyed by backing offset and stays valid.
        Ok(())
    }
}
