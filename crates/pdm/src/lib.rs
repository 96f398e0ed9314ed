//! pdm: what a device model may use, and nothing more.
//!
//! Device models (crate `devices`) depend on this crate only (plus `pgm` for DMA through
//! checked accessors and `iomio` for the bus types): never on sup or hm. So every model is
//! testable without a hypervisor, with a [`clock::ManualClock`] and plain closures as IRQ
//! sinks.

pub mod apic;
pub mod clock;
pub mod irq;
pub mod timer;

pub use apic::{ApicBus, ApicMessage, DeliveryMode, DestMode, TriggerMode};
pub use clock::{Clock, ManualClock, VirtualClock};
pub use iomio::{Bus, BusDevice, SharedDevice};
pub use irq::{IrqLine, IrqSink};
pub use timer::{Timer, TimerQueue};

/// The buses and services a device is plugged into.
#[derive(Clone)]
pub struct Platform {
    /// Port-I/O space.
    pub pio: std::sync::Arc<Bus>,
    /// MMIO space (guest-physical addresses that are not RAM/ROM).
    pub mmio: std::sync::Arc<Bus>,
    /// Guest memory for DMA.
    pub memory: std::sync::Arc<pgm::GuestMemory>,
    /// The virtual clock.
    pub clock: std::sync::Arc<dyn Clock>,
    /// Timers on the virtual clock.
    pub timers: std::sync::Arc<TimerQueue>,
}
