//! hm: the execution manager (VirtualBox: HM / NEM). One thread per vCPU runs the exit loop
//! on whichever engine backs the vCPU (sup's KVM backend or the iem interpreter), routes
//! port I/O and MMIO to iomio, delivers interrupts from the local APICs and the 8259, starts
//! application processors on INIT/SIPI, and applies the CPUID policy.

pub mod cpuid;
pub mod exec;
pub mod irq;
pub mod irqchip;

pub use exec::{ExecutionManager, Start, StopReason};
pub use irq::CpuInterrupts;
pub use irqchip::IrqChip;
