//! The MSI capability (PCI Local Bus Specification 3.0, 6.8.1) in its smallest form, the one
//! VirtualBox's PDM gives its devices: one vector, 32-bit message address, no per-vector
//! masking. The guest writes the address and data and sets the enable bit; the device then
//! signals by "writing" that data to that address, which this VMM hands straight to the
//! local APICs ([`pdm::ApicBus`]) instead of going through the memory bus.

use super::config::PciConfig;
use super::PciError;
use pdm::{ApicBus, ApicMessage};
use std::sync::Arc;

/// Capability ID of MSI.
pub const CAP_ID_MSI: u8 = 0x05;
/// Message control: MSI enable.
const CTRL_ENABLE: u16 = 1 << 0;
/// Message control: multiple message enable (written by the guest, one vector used).
const CTRL_MME: u16 = 7 << 4;

/// Where a function's MSI capability sits and where its messages go.
#[derive(Clone)]
pub struct Msi {
    at: u8,
    bus: Arc<dyn ApicBus>,
}

impl std::fmt::Debug for Msi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Msi(cap at {:#x})", self.at)
    }
}

impl Msi {
    /// Add the capability to `config` at offset `at` (see
    /// [`PciConfig::add_capability_at`]); messages go to `bus`.
    pub fn add(config: &mut PciConfig, at: u8, bus: Arc<dyn ApicBus>) -> Result<Msi, PciError> {
        // Control (one vector, 32-bit), address, data.
        let at = config.add_capability_at(at, CAP_ID_MSI, &[0; 8])?;
        config.set_wmask(at + 2, 2, u32::from(CTRL_ENABLE | CTRL_MME));
        config.set_wmask(at + 4, 4, 0xffff_fffc);
        config.set_wmask(at + 8, 2, 0xffff);
        Ok(Msi { at, bus })
    }

    /// The guest enabled MSI (the function must then leave INTx alone).
    pub fn enabled(&self, config: &PciConfig) -> bool {
        config.read_u16(self.at + 2) & CTRL_ENABLE != 0
    }

    /// Where messages go as `config` stands: None while MSI is disabled (use INTx).
    /// Take it again after every configuration write.
    pub fn route(&self, config: &PciConfig) -> Option<MsiRoute> {
        if !self.enabled(config) {
            return None;
        }
        let addr = u64::from(config.read_u32(self.at + 4));
        let data = u32::from(config.read_u16(self.at + 8));
        Some(MsiRoute {
            bus: self.bus.clone(),
            message: ApicMessage::from_msi(addr, data),
        })
    }
}

/// An enabled MSI: the message the guest programmed (None when its address and data
/// decode to no APIC message: then nothing is sent, and INTx stays off all the same).
#[derive(Clone)]
pub struct MsiRoute {
    bus: Arc<dyn ApicBus>,
    message: Option<ApicMessage>,
}

impl std::fmt::Debug for MsiRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MsiRoute({:?})", self.message)
    }
}

impl MsiRoute {
    /// Send the message; false when there is none to send.
    pub fn signal(&self) -> bool {
        match self.message {
            Some(m) => {
                self.bus.deliver(m);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioapic::tests::Recorder;

    #[test]
    fn guest_programs_and_enables_the_message() {
        let log = Arc::new(Recorder::default());
        let mut c = PciConfig::new(0x8086, 0x2829, 0x010601, 2);
        let msi = Msi::add(&mut c, 0x80, log.clone()).unwrap();
        assert_eq!(c.read_u8(0x34), 0x80, "first capability");
        assert_eq!(c.read_u8(0x80), CAP_ID_MSI);
        assert!(msi.route(&c).is_none(), "disabled after reset");
        // The guest's writes through the write mask: address low bits and the 64-bit and
        // vector-count fields are read-only.
        c.write_bytes(0x84, &0xfee0_1003u32.to_le_bytes());
        c.write_bytes(0x88, &0x0041u16.to_le_bytes());
        c.write_bytes(0x82, &0xffffu16.to_le_bytes());
        assert_eq!(c.read_u32(0x84), 0xfee0_1000);
        assert_eq!(c.read_u16(0x82), CTRL_ENABLE | CTRL_MME);
        assert!(msi.enabled(&c));
        assert!(msi.route(&c).unwrap().signal());
        let m = log.0.lock()[0];
        assert_eq!((m.vector, m.dest), (0x41, 1));
        // An address outside the APIC window sends nothing.
        c.write_bytes(0x84, &0x1000u32.to_le_bytes());
        assert!(!msi.route(&c).unwrap().signal());
        assert_eq!(log.0.lock().len(), 1);
    }

    #[test]
    fn capabilities_at_fixed_offsets_chain_in_order_and_refuse_overlaps() {
        let log = Arc::new(Recorder::default());
        let mut c = PciConfig::new(0x8086, 0x2829, 0x010601, 2);
        Msi::add(&mut c, 0x80, log).unwrap();
        c.add_capability_at(0x70, 0x01, &[3, 0, 0, 0, 0, 0])
            .unwrap();
        c.add_capability_at(0xa8, 0x12, &[0x10, 0, 0x28, 0, 0, 0])
            .unwrap();
        let chain: Vec<u8> = std::iter::successors(Some(c.read_u8(0x34)), |&p| {
            Some(c.read_u8(p + 1)).filter(|&n| n != 0)
        })
        .collect();
        assert_eq!(chain, [0x80, 0x70, 0xa8]);
        assert!(c.add_capability_at(0x80, 0x09, &[0; 2]).is_err(), "taken");
        assert!(
            c.add_capability_at(0x71, 0x09, &[0; 2]).is_err(),
            "unaligned"
        );
        assert!(c.add_capability_at(0x20, 0x09, &[0; 2]).is_err(), "header");
        assert!(
            c.add_capability_at(0xfc, 0x09, &[0; 4]).is_err(),
            "past the end"
        );
    }
}
