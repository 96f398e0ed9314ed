//! PCI: type-0 configuration space ([`PciConfig`]), the [`PciFunction`] trait every PCI
//! device model implements, the host bus with configuration mechanism #1 ([`PciBus`]),
//! and the chipset functions of VirtualBox's PIIX3 machine: the i440FX host bridge
//! ([`I440fx`], 00:00.0) and the PIIX3 PCI-to-ISA bridge ([`Piix3Isa`], 00:01.0) with its
//! PIRQ router ([`PciIntxRouter`]).
//!
//! References: PCI Local Bus Specification 3.0 (configuration header, BARs, capability
//! list, mechanism #1), Intel 82441FX PMC datasheet (PAM, SMRAM), Intel 82371SB PIIX3
//! datasheet (PIRQ route control, reset control register 0xCF9). Behaviour cross-checked
//! with SeaBIOS (src/hw/pci.c, src/fw/pciinit.c, src/fw/shadow.c) and QEMU
//! (hw/pci-host/i440fx.c, hw/isa/piix.c).

mod bus;
mod config;
mod i440fx;
mod msi;
mod piix3;

pub use bus::{PciAddress, PciBus, PciFunction, PciRegion, CONFIG_ADDRESS_PORT};
pub use config::{
    regs, BarKind, DecodedBar, PciConfig, PciSpace, CONFIG_SPACE_SIZE, ROM_BAR_INDEX,
};
pub use i440fx::{I440fx, I440FX_DEVICE_ID, PAM0, SMRAM};
pub use msi::{Msi, MsiRoute, CAP_ID_MSI};
pub use piix3::{pirq_index, PciIntxRouter, Piix3Isa, PIIX3_ISA_DEVICE_ID, PIRQ_ROUTE_BASE};

/// Intel's PCI vendor ID.
pub const INTEL_VENDOR_ID: u16 = 0x8086;

/// Errors of the PCI helpers (all are VMM configuration mistakes, never guest input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    /// BAR index out of range, or the upper half of a 64-bit BAR is taken.
    #[error("invalid BAR index {0}")]
    BadBar(usize),
    /// A BAR or ROM size that is not a power of two or below the minimum.
    #[error("invalid region size {0:#x}")]
    BadSize(u64),
    /// No room left for a capability.
    #[error("no room for a {0}-byte capability")]
    NoCapSpace(usize),
    /// The slot already holds a function.
    #[error("PCI address {0} is already occupied")]
    Occupied(PciAddress),
    /// Device or function number out of range.
    #[error("invalid PCI address {0}")]
    BadAddress(PciAddress),
}
