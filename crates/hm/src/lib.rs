//! hm: the execution manager (VirtualBox: HM / NEM). One thread per vCPU runs the exit loop
//! on whichever engine backs the vCPU (sup's KVM backend or the iem interpreter), routes
//! port I/O and MMIO to iomio, delivers interrupts from the local APICs and the 8259, starts
//! application processors on INIT/SIPI, and applies the CPUID policy.

pub mod cpuid;
