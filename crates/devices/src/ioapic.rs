//! The I/O APIC at 0xFEC00000, as VirtualBox presents it.
//!
//! VirtualBox's IOAPIC device defaults to the ICH9 flavour (`ChipType` "ICH9") and its
//! machine configuration only overrides that for an IOMMU, so a PIIX3 machine gets it too:
//! version 0x20, 24 pins (maximum redirection entry 23, so the version register reads
//! 0x0017_0020), an 8-bit ID in bits 31-24 of register 0, no arbitration register (index 2
//! reads as all ones, like every undefined index), and the directed-EOI register at offset
//! 0x40 that ICH-era IOAPICs added. Linux uses that EOI register because the version is 0x20.
//!
//! Registers (MMIO, dword accesses; the offset is taken modulo 0x100 like VirtualBox):
//! - 0x00 IOREGSEL: index of the indirect register (8 bits);
//! - 0x10 IOWIN: the indirect register selected: 0x00 ID, 0x01 version, 0x10 + 2n / 0x11 + 2n
//!   the low / high dword of redirection entry n;
//! - 0x40 EOI: writing a vector clears Remote IRR of the level-triggered entries with it.
//!
//! Redirection entry (64 bits): vector 7-0, delivery mode 10-8, destination mode 11,
//! delivery status 12 (read-only, always 0 here: delivery is immediate), polarity 13, Remote
//! IRR 14 (read-only), trigger mode 15 (1 = level), mask 16, destination 63-56. Reset value:
//! masked, everything else 0.
//!
//! Semantics (82093AA / ICH9 data sheets):
//! - edge: a rising edge on an unmasked pin sends one message; edges on a masked pin are lost;
//! - level: while the pin is asserted and the entry is unmasked with Remote IRR clear, a
//!   message is sent and Remote IRR set; the local APIC's EOI of that vector
//!   ([`EoiListener::eoi`] or the EOI register) clears Remote IRR and, if the pin is still
//!   asserted, sends again. Unmasking an asserted level pin sends too.
//! - polarity is stored but not applied: the interrupt router hands us logical levels
//!   (asserted = true), as VirtualBox does.
//!
//! Locking: the state sits behind an internal mutex so that the device can be shared by the
//! interrupt router ([`Ioapic::set_irq`]), hm's EOI broadcast ([`EoiListener`]) and the MMIO
//! bus ([`Ioapic::mmio_device`]). Messages are handed to the [`ApicBus`] after that mutex is
//! released, so hm's bus implementation may take local-APIC locks freely.

use iomio::{BusDevice, SharedDevice};
use parking_lot::Mutex;
use pdm::apic::{EoiListener, Shorthand};
use pdm::{ApicBus, ApicMessage, DeliveryMode, DestMode, TriggerMode};
use std::sync::Arc;

/// Default guest-physical base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the MMIO window.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Number of input pins.
pub const NUM_PINS: usize = 24;
/// Version register value: ICH9 IOAPIC (0x20), maximum redirection entry 23.
pub const VERSION: u32 = ((NUM_PINS as u32 - 1) << 16) | 0x20;

const REG_SELECT: u64 = 0x00;
const REG_WINDOW: u64 = 0x10;
const REG_EOI: u64 = 0x40;

const INDEX_ID: u8 = 0x00;
const INDEX_VERSION: u8 = 0x01;
const INDEX_RTE_FIRST: u8 = 0x10;
const INDEX_RTE_LAST: u8 = INDEX_RTE_FIRST + 2 * NUM_PINS as u8 - 1;

const RTE_DELIVERY_MODE_SHIFT: u32 = 8;
const RTE_DEST_MODE: u64 = 1 << 11;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_TRIGGER_LEVEL: u64 = 1 << 15;
const RTE_MASK: u64 = 1 << 16;
/// Bits the guest may write (ICH9: Remote IRR and delivery status stay read-only; the
/// extended destination ID is not writable).
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;

#[derive(Debug, Clone)]
struct State {
    id: u8,
    index: u8,
    rte: [u64; NUM_PINS],
    /// Current level of each input pin.
    lines: u32,
}

impl State {
    fn new(id: u8) -> Self {
        State {
            id,
            index: 0,
            rte: [RTE_MASK; NUM_PINS],
            lines: 0,
        }
    }

    /// Send the interrupt of `pin` if its entry lets it through.
    fn service(&mut self, pin: usize, out: &mut Vec<ApicMessage>) {
        let Some(&rte) = self.rte.get(pin) else {
            return;
        };
        if rte & RTE_MASK != 0 {
            return;
        }
        let level = rte & RTE_TRIGGER_LEVEL != 0;
        if level && rte & RTE_REMOTE_IRR != 0 {
            // The local APIC has not yet EOIed the previous one.
            return;
        }
        // Delivery mode 3 is reserved: nothing is sent.
        let Some(delivery) = DeliveryMode::from_bits((rte >> RTE_DELIVERY_MODE_SHIFT) as u32)
        else {
            return;
        };
        out.push(ApicMessage {
            dest: (rte >> 56) as u32,
            dest_mode: if rte & RTE_DEST_MODE != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            delivery,
            vector: rte as u8,
            trigger: if level {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
            level: true,
            shorthand: Shorthand::None,
            source: 0,
        });
        if level {
            self.rte[pin] |= RTE_REMOTE_IRR;
        }
    }

    fn set_irq(&mut self, pin: usize, level: bool, out: &mut Vec<ApicMessage>) {
        if pin >= NUM_PINS {
            return;
        }
        let m = 1u32 << pin;
        let was = self.lines & m != 0;
        if level {
            self.lines |= m;
        } else {
            self.lines &= !m;
        }
        let level_triggered = self.rte[pin] & RTE_TRIGGER_LEVEL != 0;
        if level && (level_triggered || !was) {
            self.service(pin, out);
        }
    }

    fn eoi(&mut self, vector: u8, out: &mut Vec<ApicMessage>) {
        for pin in 0..NUM_PINS {
            let rte = self.rte[pin];
            // Edge entries sharing the vector are left alone (VirtualBox bugref 10073).
            if rte as u8 == vector && rte & RTE_TRIGGER_LEVEL != 0 {
                self.rte[pin] &= !RTE_REMOTE_IRR;
                if self.lines & (1 << pin) != 0 {
                    self.service(pin, out);
                }
            }
        }
    }

    fn read_window(&self) -> u32 {
        match self.index {
            INDEX_ID => u32::from(self.id) << 24,
            INDEX_VERSION => VERSION,
            i @ INDEX_RTE_FIRST..=INDEX_RTE_LAST => {
                let n = usize::from((i - INDEX_RTE_FIRST) / 2);
                let rte = self.rte[n];
                if i & 1 == 0 {
                    rte as u32
                } else {
                    (rte >> 32) as u32
                }
            }
            _ => u32::MAX,
        }
    }

    fn write_window(&mut self, val: u32, out: &mut Vec<ApicMessage>) {
        match self.index {
            INDEX_ID => self.id = (val >> 24) as u8,
            i @ INDEX_RTE_FIRST..=INDEX_RTE_LAST => {
                let n = usize::from((i - INDEX_RTE_FIRST) / 2);
                let (shift, part) = if i & 1 == 0 {
                    (0, 0xffff_ffffu64)
                } else {
                    (32, 0xffff_ffff_0000_0000u64)
                };
                let writable = RTE_WRITABLE & part;
                let mut rte = (self.rte[n] & !writable) | ((u64::from(val) << shift) & writable);
                if rte & RTE_TRIGGER_LEVEL == 0 {
                    // Remote IRR has no meaning for edge entries; switching an entry to edge
                    // is how old guests clear a stuck one.
                    rte &= !RTE_REMOTE_IRR;
                }
                self.rte[n] = rte;
                // An asserted level pin that just got unmasked (or had its entry changed)
                // is delivered now.
                if rte & RTE_TRIGGER_LEVEL != 0 && self.lines & (1 << n) != 0 {
                    self.service(n, out);
                }
            }
            // Version and undefined indices are read-only.
            _ => {}
        }
    }

    fn read_reg(&self, reg: u64) -> u32 {
        match reg {
            REG_SELECT => u32::from(self.index),
            REG_WINDOW => self.read_window(),
            _ => u32::MAX,
        }
    }

    fn write_reg(&mut self, reg: u64, val: u32, out: &mut Vec<ApicMessage>) {
        match reg {
            REG_SELECT => self.index = val as u8,
            REG_WINDOW => self.write_window(val, out),
            REG_EOI => self.eoi(val as u8, out),
            _ => {}
        }
    }
}

/// The I/O APIC.
pub struct Ioapic {
    state: Mutex<State>,
    bus: Arc<dyn ApicBus>,
}

impl std::fmt::Debug for Ioapic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ioapic")
            .field("state", &*self.state.lock())
            .finish()
    }
}

impl Ioapic {
    /// An IOAPIC with APIC ID `id` (must match the ACPI MADT entry glue builds) sending its
    /// messages to `bus`.
    pub fn new(id: u8, bus: Arc<dyn ApicBus>) -> Self {
        Ioapic {
            state: Mutex::new(State::new(id)),
            bus,
        }
    }

    /// Run `f` on the state and deliver what it produced after unlocking.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, &mut Vec<ApicMessage>) -> R) -> R {
        let mut out = Vec::new();
        let r = f(&mut self.state.lock(), &mut out);
        for msg in out {
            self.bus.deliver(msg);
        }
        r
    }

    /// Drive input pin `pin` (0-23; others are ignored) to `level` (true = asserted).
    pub fn set_irq(&self, pin: u32, level: bool) {
        let pin = usize::try_from(pin).unwrap_or(usize::MAX);
        self.with_state(|s, out| s.set_irq(pin, level, out));
    }

    /// Hardware reset: every entry masked, index and ID kept as programmed at creation.
    pub fn reset(&self) {
        let mut s = self.state.lock();
        let lines = s.lines;
        let id = s.id;
        *s = State::new(id);
        s.lines = lines;
    }

    /// Redirection entry `pin` (None past pin 23).
    pub fn redirection_entry(&self, pin: usize) -> Option<u64> {
        self.state.lock().rte.get(pin).copied()
    }

    /// MMIO read at `offset` from the base.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        let s = self.state.lock();
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.wrapping_add(i as u64);
            let dword = s.read_reg(at & 0xfc);
            *b = (dword >> (8 * (at & 3))) as u8;
        }
    }

    /// MMIO write at `offset` from the base. A narrow write is zero-extended to the dword
    /// it falls in (as VirtualBox registers the region); bytes past that dword are dropped.
    pub fn mmio_write(&self, offset: u64, data: &[u8]) {
        let lane = offset & 3;
        let mut val = 0u32;
        for (i, &b) in data.iter().enumerate() {
            let shift = 8 * (lane + i as u64);
            if shift < 32 {
                val |= u32::from(b) << shift;
            }
        }
        self.with_state(|s, out| s.write_reg(offset & 0xfc, val, out));
    }

    /// A bus device for the MMIO window, to register at [`IOAPIC_BASE`] with length
    /// [`IOAPIC_SIZE`].
    pub fn mmio_device(self: &Arc<Self>) -> SharedDevice {
        Arc::new(Mutex::new(IoapicMmio(self.clone())))
    }
}

impl EoiListener for Ioapic {
    fn eoi(&self, vector: u8) {
        self.with_state(|s, out| s.eoi(vector, out));
    }
}

impl BusDevice for Ioapic {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        self.mmio_read(offset, data);
    }

    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        self.mmio_write(offset, data);
    }
}

/// The MMIO face of a shared [`Ioapic`].
pub struct IoapicMmio(pub Arc<Ioapic>);

impl BusDevice for IoapicMmio {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        self.0.mmio_read(offset, data);
    }

    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        self.0.mmio_write(offset, data);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An APIC bus that records every message, in order (also the MSI tests' bus).
    #[derive(Default)]
    pub(crate) struct Recorder(pub(crate) Mutex<Vec<ApicMessage>>);

    impl ApicBus for Recorder {
        fn deliver(&self, msg: ApicMessage) {
            self.0.lock().push(msg);
        }
    }

    impl Recorder {
        pub(crate) fn take(&self) -> Vec<ApicMessage> {
            std::mem::take(&mut self.0.lock())
        }
    }

    fn setup() -> (Arc<Recorder>, Arc<Ioapic>) {
        let rec = Arc::new(Recorder::default());
        let io = Arc::new(Ioapic::new(2, rec.clone()));
        (rec, io)
    }

    fn write_reg(io: &Ioapic, index: u32, val: u32) {
        io.mmio_write(0x00, &index.to_le_bytes());
        io.mmio_write(0x10, &val.to_le_bytes());
    }

    fn read_reg(io: &Ioapic, index: u32) -> u32 {
        io.mmio_write(0x00, &index.to_le_bytes());
        let mut d = [0u8; 4];
        io.mmio_read(0x10, &mut d);
        u32::from_le_bytes(d)
    }

    fn program(io: &Ioapic, pin: u32, lo: u32, hi: u32) {
        write_reg(io, 0x11 + 2 * pin, hi);
        write_reg(io, 0x10 + 2 * pin, lo);
    }

    #[test]
    fn id_version_and_undefined_registers() {
        let (_, io) = setup();
        assert_eq!(read_reg(&io, 0), 2 << 24);
        write_reg(&io, 0, 0x0900_0000);
        assert_eq!(read_reg(&io, 0), 0x0900_0000);
        assert_eq!(read_reg(&io, 1), 0x0017_0020);
        write_reg(&io, 1, 0);
        assert_eq!(read_reg(&io, 1), 0x0017_0020, "read-only");
        assert_eq!(
            read_reg(&io, 2),
            u32::MAX,
            "no arbitration register on ICH9"
        );
        assert_eq!(read_reg(&io, 0x40), u32::MAX, "past entry 23");
        let mut d = [0u8; 4];
        io.mmio_write(0, &[0x13]);
        io.mmio_read(0, &mut d);
        assert_eq!(d, [0x13, 0, 0, 0]);
        io.mmio_read(0x20, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn entries_reset_masked_and_readonly_bits_hold() {
        let (_, io) = setup();
        for pin in 0..24 {
            assert_eq!(read_reg(&io, 0x10 + 2 * pin), 1 << 16);
            assert_eq!(read_reg(&io, 0x11 + 2 * pin), 0);
        }
        write_reg(&io, 0x10, 0xffff_ffff);
        assert_eq!(
            read_reg(&io, 0x10),
            0x0001_afff,
            "RIRR/status/reserved read 0"
        );
        write_reg(&io, 0x11, 0xffff_ffff);
        assert_eq!(
            read_reg(&io, 0x11),
            0xff00_0000,
            "ext. dest ID not writable"
        );
    }

    #[test]
    fn edge_delivery_and_masking() {
        let (rec, io) = setup();
        program(&io, 2, 0x0000_0830, 0x0300_0000); // vector 0x30, logical, dest 3
        io.set_irq(2, true);
        let m = rec.take();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].vector, 0x30);
        assert_eq!(m[0].dest, 3);
        assert_eq!(m[0].dest_mode, DestMode::Logical);
        assert_eq!(m[0].delivery, DeliveryMode::Fixed);
        assert_eq!(m[0].trigger, TriggerMode::Edge);
        io.set_irq(2, true);
        assert!(rec.take().is_empty(), "no edge while held high");
        io.set_irq(2, false);
        io.set_irq(2, true);
        assert_eq!(rec.take().len(), 1);
        io.set_irq(2, false);

        program(&io, 2, 0x0001_0030, 0);
        io.set_irq(2, true);
        io.set_irq(2, false);
        program(&io, 2, 0x0000_0030, 0);
        assert!(rec.take().is_empty(), "edges on a masked pin are lost");
    }

    #[test]
    fn level_remote_irr_and_eoi() {
        let (rec, io) = setup();
        program(&io, 11, 0x0000_8041, 0); // level, vector 0x41
        io.set_irq(11, true);
        let m = rec.take();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].trigger, TriggerMode::Level);
        assert_ne!(read_reg(&io, 0x10 + 22) & (1 << 14), 0, "Remote IRR set");
        io.set_irq(11, true);
        assert!(rec.take().is_empty(), "held off by Remote IRR");
        // EOI of another vector changes nothing.
        io.eoi(0x42);
        assert!(rec.take().is_empty());
        // EOI while still asserted: Remote IRR cleared, re-delivered, set again.
        io.eoi(0x41);
        assert_eq!(rec.take().len(), 1);
        assert_ne!(read_reg(&io, 0x10 + 22) & (1 << 14), 0);
        io.set_irq(11, false);
        io.eoi(0x41);
        assert!(rec.take().is_empty());
        assert_eq!(read_reg(&io, 0x10 + 22) & (1 << 14), 0);
        // The EOI register at 0x40 does the same.
        io.set_irq(11, true);
        assert_eq!(rec.take().len(), 1);
        io.set_irq(11, false);
        io.mmio_write(0x40, &[0x41, 0, 0, 0]);
        assert_eq!(read_reg(&io, 0x10 + 22) & (1 << 14), 0);
    }

    #[test]
    fn unmasking_asserted_level_pin_delivers() {
        let (rec, io) = setup();
        program(&io, 16, 0x0001_8050, 0);
        io.set_irq(16, true);
        assert!(rec.take().is_empty());
        program(&io, 16, 0x0000_8050, 0);
        assert_eq!(rec.take().len(), 1);
        // Switching to edge drops the stale Remote IRR.
        program(&io, 16, 0x0000_0050, 0);
        assert_eq!(read_reg(&io, 0x10 + 32) & (1 << 14), 0);
    }

    #[test]
    fn delivery_modes_and_reserved() {
        let (rec, io) = setup();
        program(&io, 0, 0x0000_0700, 0xff00_0000); // ExtINT
        io.set_irq(0, true);
        let m = rec.take();
        assert_eq!(m[0].delivery, DeliveryMode::ExtInt);
        assert_eq!(m[0].dest, 0xff);
        program(&io, 1, 0x0000_0300, 0); // reserved delivery mode
        io.set_irq(1, true);
        assert!(rec.take().is_empty());
        program(&io, 3, 0x0000_0400, 0); // NMI
        io.set_irq(3, true);
        assert_eq!(rec.take()[0].delivery, DeliveryMode::Nmi);
        io.set_irq(99, true);
        assert!(rec.take().is_empty());
    }

    #[test]
    fn bus_device_through_shared_handle() {
        let (rec, io) = setup();
        let dev = io.mmio_device();
        let bus = iomio::Bus::new();
        bus.insert(IOAPIC_BASE, IOAPIC_SIZE, "ioapic", dev).unwrap();
        bus.write(IOAPIC_BASE, &1u32.to_le_bytes());
        let mut d = [0u8; 4];
        bus.read(IOAPIC_BASE + 0x10, &mut d);
        assert_eq!(u32::from_le_bytes(d), VERSION);
        assert!(rec.take().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u32>(), 0u8..4, 1usize..9), 0..200)) {
            let (_, io) = setup();
            for (off, val, kind, len) in ops {
                let off = u64::from(off) & 0xfff;
                match kind {
                    0 => { let mut d = vec![0; len]; io.mmio_read(off, &mut d); }
                    1 => io.mmio_write(off, &val.to_le_bytes()[..len.min(4)]),
                    2 => io.set_irq(val % 40, off & 1 != 0),
                    _ => io.eoi(val as u8),
                }
            }
        }
    }
}
