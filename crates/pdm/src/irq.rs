//! Interrupt lines from devices to the interrupt controllers.

use std::sync::Arc;

/// Whatever receives line-level changes: the platform's interrupt router, which forwards a
/// GSI to the 8259 pair (GSI 0-15) and the IOAPIC (every GSI).
pub trait IrqSink: Send + Sync {
    /// Set global system interrupt `gsi` to `level` (true = asserted).
    fn set_irq(&self, gsi: u32, level: bool);
}

impl<F: Fn(u32, bool) + Send + Sync> IrqSink for F {
    fn set_irq(&self, gsi: u32, level: bool) {
        self(gsi, level)
    }
}

/// One interrupt line of a device.
#[derive(Clone)]
pub struct IrqLine {
    sink: Arc<dyn IrqSink>,
    gsi: u32,
}

impl std::fmt::Debug for IrqLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IrqLine({})", self.gsi)
    }
}

impl IrqLine {
    /// A line wired to `gsi` of `sink`.
    pub fn new(sink: Arc<dyn IrqSink>, gsi: u32) -> Self {
        IrqLine { sink, gsi }
    }

    /// A line connected to nothing (for unit tests and unwired devices).
    pub fn disconnected() -> Self {
        IrqLine {
            sink: Arc::new(|_, _| {}),
            gsi: u32::MAX,
        }
    }

    /// The GSI.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Drive the line.
    pub fn set(&self, level: bool) {
        self.sink.set_irq(self.gsi, level);
    }

    /// An edge: raise then lower (ISA edge-triggered devices).
    pub fn pulse(&self) {
        self.set(true);
        self.set(false);
    }
}
