//! The KVM backend of the VM-exit interface.
//!
//! - [`KvmHypervisor`] opens `/dev/kvm` and checks the API version and capabilities.
//! - [`KvmVm`] installs pgm's mappings as memory slots (read-only ones with
//!   `KVM_MEM_READONLY`, so writes to ROM or write-protected shadow RAM exit as MMIO writes
//!   the VMM hands to [`pgm::GuestMemory::write`]). No in-kernel irqchip, no in-kernel PIT:
//!   the VMM's own PIC/IOAPIC/LAPIC inject through [`crate::Vcpu::inject_interrupt`].
//! - [`KvmVcpu`] runs the vCPU and keeps the transfer-mask state cache on top of
//!   `kvm_run`'s sync registers.
//! - [`KvmRecall`] kicks a vCPU out of the guest from any thread (`immediate_exit` plus a
//!   no-op real-time signal, [`recall_signal`]).
//! - [`floor`] is the smallest possible exit loop, the yardstick of `cargo xtask bench-exits`.

mod conv;
mod cpuid;
pub mod floor;
mod recall;
mod system;
mod vcpu;
mod vm;

pub use conv::{segment_from_kvm, segment_to_kvm};
pub use recall::{recall_signal, KvmRecall};
pub use system::KvmHypervisor;
pub use vcpu::KvmVcpu;
pub use vm::{KvmVm, IDENTITY_MAP_ADDR, TSS_ADDR};
