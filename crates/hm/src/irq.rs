//! What the exit loop needs from the platform's interrupt controllers, per vCPU. The
//! implementation (8259 pair + IOAPIC + local APICs wired together) lives in
//! [`crate::irqchip`]; the loop only sees this interface.

/// The interrupt controllers as one vCPU sees them.
pub trait CpuInterrupts: Send + Sync {
    /// True when a maskable interrupt is pending for `cpu` (local APIC IRR above the
    /// processor priority, or the 8259's INTR through LINT0 / directly).
    fn has_interrupt(&self, cpu: u32) -> bool;
    /// The interrupt-acknowledge cycle: the vector to inject, if one is still pending.
    fn acknowledge(&self, cpu: u32) -> Option<u8>;
    /// True when an NMI or INIT is pending (they end a HLT even with IF clear).
    fn has_nmi_or_init(&self, cpu: u32) -> bool;
    /// Take a pending NMI.
    fn take_nmi(&self, cpu: u32) -> bool;
    /// Take a pending INIT.
    fn take_init(&self, cpu: u32) -> bool;
    /// Take a pending Startup IPI (its vector).
    fn take_sipi(&self, cpu: u32) -> Option<u8>;
    /// True when `gpa` is this CPU's local-APIC page.
    fn is_lapic(&self, cpu: u32, gpa: u64) -> bool;
    /// A local-APIC register access.
    fn lapic_access(&self, cpu: u32, gpa: u64, data: &mut [u8], write: bool);
    /// The guest wrote CR8 / the engine reports the task priority.
    fn set_cr8(&self, cpu: u32, cr8: u64);
    /// The guest changed IA32_APIC_BASE.
    fn set_apic_base(&self, cpu: u32, value: u64);
}
