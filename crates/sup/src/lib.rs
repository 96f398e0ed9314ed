//! sup: the door to the hypervisor.
//!
//! A NOVA-style VM-exit interface. A vCPU runs until it exits; the exit says what happened
//! ([`VmExit`]) and the backend says which parts of the vCPU state are valid right now (the
//! *transfer mask*, [`StateMask`]). A handler asks for more state only when it needs it
//! ([`Vcpu::state`]) and marks what it changed ([`Vcpu::mark_dirty`]) so only that is written
//! back on the next entry. Backends: KVM ([`kvm`]) and the software interpreter (crate `iem`).

pub mod cpuid;
pub mod exit;
pub mod kvm;
pub mod state;

pub use cpuid::CpuidEntry;
pub use exit::{IoDirection, VmExit};
pub use state::{DescTable, Segment, StateMask, VcpuState};

use std::sync::Arc;

/// Errors a backend reports.
#[derive(Debug, thiserror::Error)]
pub enum SupError {
    /// The hypervisor device is missing or cannot be opened.
    #[error("hypervisor not available: {0}")]
    Unavailable(String),
    /// A hypervisor call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation that failed (an ioctl name or similar).
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The guest did something the backend cannot continue from.
    #[error("{0}")]
    Guest(String),
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] pgm::PgmError),
}

/// Result type of sup.
pub type Result<T> = std::result::Result<T, SupError>;

/// A way to make a running vCPU return from [`Vcpu::run`] with [`VmExit::Recalled`] from
/// another thread (NOVA: recall). Cheap to clone; calling it when the vCPU is not running
/// makes its next `run` return at once.
pub trait Recall: Send + Sync {
    /// Kick the vCPU out of guest mode as soon as possible.
    fn recall(&self);
}

/// One virtual CPU. Owned and driven by exactly one thread (hm's vCPU thread).
pub trait Vcpu: Send {
    /// The vCPU's index (0 = bootstrap processor).
    fn id(&self) -> u32;

    /// Enter the guest and run until the next exit.
    fn run(&mut self) -> Result<VmExit>;

    /// Make sure the parts of the state in `need` are valid and return the state. Parts not
    /// in `need` may be stale. The state is engine-neutral.
    fn state(&mut self, need: StateMask) -> Result<&mut VcpuState>;

    /// Declare which parts of the state the caller changed; the backend writes exactly those
    /// back before the next entry.
    fn mark_dirty(&mut self, changed: StateMask);

    /// The data buffer of the current port-I/O exit: `size * count` bytes. For `In` the
    /// handler fills it; for `Out` it holds what the guest wrote. Empty when the last exit was
    /// not port I/O.
    fn io_data(&mut self) -> &mut [u8];

    /// The data buffer of the current MMIO exit (1..=8 bytes; up to 16 for SSE moves on the
    /// interpreter). For reads the handler fills it.
    fn mmio_data(&mut self) -> &mut [u8];

    /// True when an external interrupt can be injected now (RFLAGS.IF set, no interrupt
    /// shadow, no event already pending injection).
    fn interrupt_ready(&mut self) -> bool;

    /// Inject an external interrupt with `vector`. Only valid when [`Vcpu::interrupt_ready`].
    fn inject_interrupt(&mut self, vector: u8) -> Result<()>;

    /// Inject a non-maskable interrupt.
    fn inject_nmi(&mut self) -> Result<()>;

    /// Ask for (or stop asking for) a [`VmExit::InterruptWindow`] exit as soon as the guest can
    /// take an external interrupt.
    fn request_interrupt_window(&mut self, on: bool);

    /// Load the CPUID table the guest sees.
    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()>;

    /// A handle other threads use to recall this vCPU.
    fn recall_handle(&self) -> Arc<dyn Recall>;

    /// Name of the engine running this vCPU ("kvm", "interpreter").
    fn engine(&self) -> &'static str;
}

/// A virtual machine: guest memory plus vCPUs.
pub trait Vm: Send + Sync {
    /// Create vCPU number `id`. Its state is the x86 power-on (reset) state.
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>>;

    /// Tell the backend the guest-physical map changed (PAM shadowing, ROM/RAM switch):
    /// it re-reads [`pgm::GuestMemory::mappings`].
    fn memory_changed(&self) -> Result<()>;
}

/// A hypervisor backend.
pub trait Hypervisor: Send + Sync {
    /// Create a VM over `memory`. The VM keeps the memory alive as long as it exists.
    fn create_vm(&self, memory: Arc<pgm::GuestMemory>) -> Result<Arc<dyn Vm>>;

    /// Name of the engine ("kvm", "interpreter").
    fn name(&self) -> &'static str;
}

/// True when the host CPU has hardware virtualisation (vmx or svm in /proc/cpuinfo).
/// kvm-pvm (a software KVM) offers `/dev/kvm` without it; `--engine auto` relies on this.
pub fn host_has_hw_virt() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false)
}
