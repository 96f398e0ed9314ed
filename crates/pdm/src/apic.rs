//! APIC bus messages: what the IOAPIC, MSI and local-APIC IPIs send to local APICs.

/// Delivery mode (ICR / redirection-entry bits 8-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Fixed vector.
    Fixed,
    /// Lowest priority among the destinations.
    LowestPriority,
    /// System management interrupt.
    Smi,
    /// Non-maskable interrupt.
    Nmi,
    /// INIT.
    Init,
    /// Startup IPI.
    Startup,
    /// External interrupt: the vector comes from the 8259 (INTA cycle).
    ExtInt,
}

impl DeliveryMode {
    /// Decode the three-bit field.
    pub fn from_bits(b: u32) -> Option<Self> {
        Some(match b & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::Startup,
            7 => Self::ExtInt,
            _ => return None,
        })
    }
}

/// Physical or logical destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestMode {
    /// APIC ID.
    Physical,
    /// Logical (flat or cluster model, per the receiver's DFR/LDR).
    Logical,
}

/// Edge or level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Edge.
    Edge,
    /// Level.
    Level,
}

/// Destination shorthand of an IPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shorthand {
    /// Use the destination field.
    None,
    /// The sender itself.
    SelfOnly,
    /// All including self.
    AllIncludingSelf,
    /// All excluding self.
    AllExcludingSelf,
}

/// One interrupt message on the APIC bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicMessage {
    /// Destination (APIC ID or logical mask), 8 bits in xAPIC mode.
    pub dest: u32,
    /// Destination mode.
    pub dest_mode: DestMode,
    /// Delivery mode.
    pub delivery: DeliveryMode,
    /// Vector (for Startup: the page number).
    pub vector: u8,
    /// Trigger mode.
    pub trigger: TriggerMode,
    /// Level (INIT level de-assert has level false).
    pub level: bool,
    /// Shorthand (IPIs only; None for IOAPIC/MSI).
    pub shorthand: Shorthand,
    /// Sending APIC's ID (for the self shorthands).
    pub source: u32,
}

impl ApicMessage {
    /// Decode an MSI address/data pair (the format PCI devices and the IOAPIC use).
    pub fn from_msi(address: u64, data: u32) -> Option<Self> {
        if address >> 20 != 0xfee {
            return None;
        }
        Some(ApicMessage {
            dest: ((address >> 12) & 0xff) as u32,
            dest_mode: if address & (1 << 2) != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            delivery: DeliveryMode::from_bits(data >> 8)?,
            vector: data as u8,
            trigger: if data & (1 << 15) != 0 {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
            level: data & (1 << 14) != 0 || data & (1 << 15) == 0,
            shorthand: Shorthand::None,
            source: 0,
        })
    }
}

/// The APIC bus: delivers a message to the local APICs it addresses (implemented by hm,
/// which owns the per-vCPU local APICs and wakes the vCPUs).
pub trait ApicBus: Send + Sync {
    /// Deliver `msg`.
    fn deliver(&self, msg: ApicMessage);
}

/// Receives end-of-interrupt broadcasts for level-triggered vectors (the IOAPIC).
pub trait EoiListener: Send + Sync {
    /// The local APIC acknowledged `vector` with an EOI.
    fn eoi(&self, vector: u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_decode() {
        let m = ApicMessage::from_msi(0xfee0_1000, 0x4031).unwrap();
        assert_eq!(m.dest, 1);
        assert_eq!(m.vector, 0x31);
        assert_eq!(m.delivery, DeliveryMode::Fixed);
        assert_eq!(m.trigger, TriggerMode::Edge);
        assert!(ApicMessage::from_msi(0x1000, 0).is_none());
        assert!(ApicMessage::from_msi(0xfee0_0000, 3 << 8).is_none());
    }
}
