//! The exits a vCPU reports to the VMM.

/// Direction of a port-I/O access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDirection {
    /// `in` / `ins`: the VMM supplies data.
    In,
    /// `out` / `outs`: the guest supplies data.
    Out,
}

/// Why [`crate::Vcpu::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// Port I/O. The data is in [`crate::Vcpu::io_data`]: `count` accesses of `size` bytes
    /// each (count > 1 for `rep ins/outs`). For `In` the handler fills the buffer and the
    /// backend completes the instruction on the next `run`.
    Io {
        /// The port.
        port: u16,
        /// Access size in bytes (1, 2 or 4).
        size: u8,
        /// Number of consecutive accesses.
        count: u32,
        /// Direction.
        dir: IoDirection,
    },
    /// An access to guest-physical memory that is not RAM. Data in
    /// [`crate::Vcpu::mmio_data`].
    Mmio {
        /// The guest-physical address.
        gpa: u64,
        /// Access size in bytes.
        len: u8,
        /// True for a write.
        write: bool,
    },
    /// The guest executed HLT with interrupts enabled (or disabled: then only NMI/INIT wake it).
    Hlt,
    /// The guest can take an external interrupt now (requested with
    /// [`crate::Vcpu::request_interrupt_window`]).
    InterruptWindow,
    /// Another thread recalled the vCPU ([`crate::Recall`]), or a host signal interrupted it.
    Recalled,
    /// Triple fault or shutdown: the VM must reset or stop.
    Shutdown,
    /// The guest wrote a value that requests a system event the backend saw itself
    /// (e.g. KVM_SYSTEM_EVENT reset).
    Reset,
    /// Something the backend cannot handle; the text says what (with the reason code).
    Unhandled(String),
}
