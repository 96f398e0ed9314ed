//! The Intel 82371SB PIIX3 PCI-to-ISA bridge (function 0 of the PIIX3 at 00:01.0,
//! 8086:7000; PIIX3 datasheet section 2.2), and the PIRQ router it controls.
//!
//! The PIIX3 has four PCI interrupt request lines PIRQA#-PIRQD#. Each slot's INTA#-INTD#
//! are wired to them rotated by slot number (QEMU's and VirtualBox's board wiring, which
//! SeaBIOS's piix_pci_slot_get_irq() and our ACPI _PRT assume): PIRQ = (slot - 1 + pin - 1)
//! mod 4. PIRQ route control registers 0x60-0x63 steer PIRQA-D to an ISA IRQ: bits 3:0 the
//! IRQ (3-7, 9-12, 14, 15 are legal), bit 7 set = routing disabled (the reset value 0x80).
//! SeaBIOS programs 10, 10, 11, 11; for a direct kernel boot the VMM programs the same with
//! [`Piix3Isa::set_pirq_routes`] so the ACPI _PRT matches.
//!
//! [`PciIntxRouter`] is the wire-OR of all devices' INTx lines per PIRQ, and of all PIRQs
//! per ISA IRQ, forwarded to the platform's IRQ sink. Devices get their line from
//! [`PciIntxRouter::intx_line`].

use super::bus::{PciFunction, PciRegion};
use super::config::{regs, PciConfig};
use super::INTEL_VENDOR_ID;
use parking_lot::Mutex;
use pdm::{IrqLine, IrqSink};
use std::sync::Arc;

/// Device ID of the PIIX3 ISA bridge function.
pub const PIIX3_ISA_DEVICE_ID: u16 = 0x7000;
/// Offset of PIRQRC[A]; B-D follow.
pub const PIRQ_ROUTE_BASE: u8 = 0x60;

const PIRQ_DISABLED: u8 = 0x80;

/// Which PIRQ (0 = A .. 3 = D) the INTx `pin` (1 = INTA# .. 4 = INTD#) of a device in
/// `slot` on bus 0 is wired to.
pub fn pirq_index(slot: u8, pin: u8) -> usize {
    (usize::from(slot) + usize::from(pin.clamp(1, 4)) + 2) & 3
}

/// The ISA IRQ a PIRQ route register selects, if routing is enabled and legal.
fn decode_route(reg: u8) -> Option<u32> {
    if reg & PIRQ_DISABLED != 0 {
        return None;
    }
    match reg & 0x0f {
        irq @ (3..=7 | 9..=12 | 14 | 15) => Some(u32::from(irq)),
        _ => None,
    }
}

struct RouterState {
    routes: [u8; 4],
    /// Per source line: its PIRQ and level.
    sources: Vec<(usize, bool)>,
    /// ISA IRQs currently driven high.
    driven: u16,
}

/// Wire-OR of PCI INTx lines onto ISA IRQs through the PIIX3 routing registers.
pub struct PciIntxRouter {
    downstream: Arc<dyn IrqSink>,
    state: Mutex<RouterState>,
}

impl std::fmt::Debug for PciIntxRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        write!(
            f,
            "PciIntxRouter(routes {:02x?}, driven {:#06x})",
            s.routes, s.driven
        )
    }
}

impl PciIntxRouter {
    /// A router forwarding to `downstream` (the platform's GSI sink), all PIRQs disabled.
    pub fn new(downstream: Arc<dyn IrqSink>) -> Arc<Self> {
        Arc::new(PciIntxRouter {
            downstream,
            state: Mutex::new(RouterState {
                routes: [PIRQ_DISABLED; 4],
                sources: Vec::new(),
                driven: 0,
            }),
        })
    }

    /// The INTx line of a device in `slot` using `pin` (1-4). Each call makes a new
    /// source; the router ORs sources that share a PIRQ.
    pub fn intx_line(self: &Arc<Self>, slot: u8, pin: u8) -> IrqLine {
        let mut s = self.state.lock();
        s.sources.push((pirq_index(slot, pin), false));
        let id = (s.sources.len() - 1) as u32;
        drop(s);
        IrqLine::new(self.clone(), id)
    }

    /// The ISA IRQ PIRQ `pirq` (0-3) is routed to now.
    pub fn route(&self, pirq: usize) -> Option<u32> {
        let s = self.state.lock();
        decode_route(*s.routes.get(pirq)?)
    }

    /// Update PIRQ `pirq`'s route register value (the PIIX3 function calls this).
    pub fn set_route(&self, pirq: usize, reg: u8) {
        let mut s = self.state.lock();
        if let Some(r) = s.routes.get_mut(pirq) {
            *r = reg;
        }
        self.recompute(&mut s);
    }

    fn recompute(&self, s: &mut RouterState) {
        let mut want = 0u16;
        for &(pirq, level) in &s.sources {
            if level {
                if let Some(irq) = decode_route(s.routes[pirq]) {
                    want |= 1 << irq;
                }
            }
        }
        let changed = want ^ s.driven;
        s.driven = want;
        // Forward under the lock so concurrent changes reach the sink in order.
        for irq in 0..16u32 {
            if changed & (1 << irq) != 0 {
                self.downstream.set_irq(irq, want & (1 << irq) != 0);
            }
        }
    }
}

impl IrqSink for PciIntxRouter {
    /// `gsi` is the source id handed out by [`PciIntxRouter::intx_line`].
    fn set_irq(&self, gsi: u32, level: bool) {
        let mut s = self.state.lock();
        let Some(src) = s.sources.get_mut(gsi as usize) else {
            return;
        };
        if src.1 == level {
            return;
        }
        src.1 = level;
        self.recompute(&mut s);
    }
}

/// The PIIX3 PCI-to-ISA bridge function.
pub struct Piix3Isa {
    config: PciConfig,
    router: Arc<PciIntxRouter>,
}

impl std::fmt::Debug for Piix3Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Piix3Isa")
            .field("router", &self.router)
            .finish()
    }
}

/// Device-specific registers with their reset values (PIIX3 datasheet table 2-1).
const RESET_VALUES: [(u8, u8); 16] = [
    (0x4c, 0x4d), // IORT
    (0x4e, 0x03), // XBCS
    (0x4f, 0x00),
    (0x60, 0x80), // PIRQRC A-D
    (0x61, 0x80),
    (0x62, 0x80),
    (0x63, 0x80),
    (0x69, 0x02), // TOM
    (0x6a, 0x00), // MSTAT
    (0x6b, 0x00),
    (0x70, 0x80), // MBIRQ0
    (0x71, 0x80), // MBIRQ1
    (0x76, 0x0c), // MBDMA0
    (0x77, 0x0c), // MBDMA1
    (0x78, 0x02), // PCSC
    (0x80, 0x00), // APICBASE
];

impl Piix3Isa {
    /// The bridge; `multifunction` sets header type bit 7 (VirtualBox's PIIX3 has the IDE
    /// controller at function 1, so it must be set whenever that is present).
    pub fn new(router: Arc<PciIntxRouter>, multifunction: bool) -> Self {
        let mut config = PciConfig::new(INTEL_VENDOR_ID, PIIX3_ISA_DEVICE_ID, 0x06_0100, 0x00);
        config.set_multifunction(multifunction);
        config.set_wmask(regs::COMMAND, 2, 0);
        config.set_u16(
            regs::COMMAND,
            regs::CMD_IO | regs::CMD_MEMORY | regs::CMD_MASTER,
        );
        config.set_wmask(regs::INTERRUPT_LINE, 1, 0);
        for &(off, _) in RESET_VALUES.iter() {
            config.set_wmask(off, 1, 0xff);
        }
        for i in 0..4 {
            config.set_wmask(PIRQ_ROUTE_BASE + i, 1, 0x8f);
        }
        // SMI control and timers (0xA0-0xAF) and the misc status (0x82) are storage.
        config.set_wmask(0x82, 1, 0xff);
        for off in 0xa0u8..0xb0 {
            config.set_wmask(off, 1, 0xff);
        }
        let mut dev = Piix3Isa { config, router };
        dev.power_on();
        dev
    }

    fn power_on(&mut self) {
        for &(off, v) in RESET_VALUES.iter() {
            self.config.set_u8(off, v);
        }
        for off in 0xa0u8..0xb0 {
            self.config.set_u8(off, 0);
        }
        self.config.set_u8(0xa0, 0x08);
        self.config.set_u8(0xa8, 0x0f);
        self.sync_routes();
    }

    fn sync_routes(&self) {
        for i in 0..4u8 {
            self.router
                .set_route(i as usize, self.config.read_u8(PIRQ_ROUTE_BASE + i));
        }
    }

    /// Program PIRQA-D to ISA IRQs as the firmware would (for a boot without firmware).
    pub fn set_pirq_routes(&mut self, irqs: [u8; 4]) {
        for (i, irq) in irqs.into_iter().enumerate() {
            self.config.set_u8(PIRQ_ROUTE_BASE + i as u8, irq & 0x0f);
        }
        self.sync_routes();
    }

    /// The raw PIRQ route registers A-D.
    pub fn pirq_routes(&self) -> [u8; 4] {
        [0u8, 1, 2, 3].map(|i| self.config.read_u8(PIRQ_ROUTE_BASE + i))
    }

    /// The router these registers steer.
    pub fn router(&self) -> &Arc<PciIntxRouter> {
        &self.router
    }
}

impl PciFunction for Piix3Isa {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.config.read_bytes(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        self.config.write_bytes(offset, data);
        let end = usize::from(offset) + data.len();
        if usize::from(offset) < usize::from(PIRQ_ROUTE_BASE) + 4
            && end > usize::from(PIRQ_ROUTE_BASE)
        {
            self.sync_routes();
        }
    }

    fn regions(&self) -> Vec<PciRegion> {
        Vec::new()
    }

    fn reset(&mut self) {
        self.power_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = Arc<Mutex<Vec<(u32, bool)>>>;

    fn router() -> (Arc<PciIntxRouter>, Log) {
        let log: Log = Arc::default();
        let l = log.clone();
        let sink: Arc<dyn IrqSink> = Arc::new(move |g: u32, lv: bool| l.lock().push((g, lv)));
        (PciIntxRouter::new(sink), log)
    }

    #[test]
    fn slot_rotation_matches_seabios() {
        // SeaBIOS: pci_irqs[(pin - 1 + slot - 1) & 3].
        assert_eq!(pirq_index(1, 1), 0);
        assert_eq!(pirq_index(2, 1), 1);
        assert_eq!(pirq_index(3, 2), 3);
        assert_eq!(pirq_index(4, 1), 3);
        assert_eq!(pirq_index(0, 1), 3);
        assert_eq!(pirq_index(5, 4), 3);
    }

    #[test]
    fn reset_values_and_ids() {
        let (r, _) = router();
        let mut d = Piix3Isa::new(r, true);
        let mut b = [0u8; 4];
        d.config_read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x7000_8086);
        d.config_read(0x0c, &mut b);
        assert_eq!(b[2], 0x80, "multi-function header");
        d.config_read(0x08, &mut b);
        assert_eq!(u32::from_le_bytes(b) >> 8, 0x06_0100, "ISA bridge class");
        assert_eq!(d.pirq_routes(), [0x80; 4]);
    }

    #[test]
    fn guest_programs_routes_and_intx_follows() {
        let (r, log) = router();
        let mut d = Piix3Isa::new(r.clone(), true);
        let nic = r.intx_line(3, 1); // PIRQC
        nic.set(true);
        assert!(log.lock().is_empty(), "routing disabled at reset");
        // SeaBIOS: byte writes of 10, 10, 11, 11.
        for (i, irq) in [10u8, 10, 11, 11].into_iter().enumerate() {
            d.config_write(PIRQ_ROUTE_BASE + i as u8, &[irq]);
        }
        assert_eq!(
            *log.lock(),
            vec![(11, true)],
            "level line appears on routing"
        );
        nic.set(false);
        assert_eq!(log.lock().last(), Some(&(11, false)));
        assert_eq!(r.route(0), Some(10));
        d.config_write(PIRQ_ROUTE_BASE, &[0x8a]);
        assert_eq!(r.route(0), None);
        d.config_write(PIRQ_ROUTE_BASE, &[0x02]);
        assert_eq!(r.route(0), None, "IRQ 2 is not a legal route");
    }

    #[test]
    fn shared_lines_are_wire_ored() {
        let (r, log) = router();
        let mut d = Piix3Isa::new(r.clone(), false);
        d.set_pirq_routes([10, 10, 11, 11]);
        let a = r.intx_line(1, 1); // PIRQA -> 10
        let b = r.intx_line(2, 1); // PIRQB -> 10
        a.set(true);
        b.set(true);
        a.set(false);
        assert_eq!(*log.lock(), vec![(10, true)], "still held by b");
        b.set(false);
        assert_eq!(*log.lock(), vec![(10, true), (10, false)]);
        d.reset();
        assert_eq!(d.pirq_routes(), [0x80; 4]);
    }

    proptest::proptest! {
        #[test]
        fn random_config_and_lines_never_panic(ops in proptest::collection::vec((proptest::num::u8::ANY, proptest::num::u8::ANY, 0u8..3), 0..200)) {
            let (r, log) = router();
            let mut d = Piix3Isa::new(r.clone(), true);
            let lines: Vec<IrqLine> = (0..4).map(|s| r.intx_line(s, (s % 4) + 1)).collect();
            for (a, b, kind) in ops {
                match kind {
                    0 => d.config_write(a, &[b]),
                    1 => lines[(a % 4) as usize].set(b & 1 != 0),
                    _ => r.set_irq(u32::from(a), b & 1 != 0),
                }
            }
            for &(irq, _) in log.lock().iter() {
                proptest::prop_assert!(irq < 16 && irq != 0 && irq != 1 && irq != 2 && irq != 8 && irq != 13);
            }
        }
    }
}
