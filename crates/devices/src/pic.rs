//! The 8259A programmable interrupt controller pair of the PC (PIIX3 south bridge), plus the
//! PIIX3 edge/level control registers (ELCR).
//!
//! Wiring, as on every AT-compatible PC:
//! - master at ports 0x20/0x21, IR0-IR7 = IRQ0-7, its INT output is the CPU's INTR line;
//! - slave at ports 0xA0/0xA1, IR0-IR7 = IRQ8-15, its INT output drives master IR2 (cascade);
//! - ELCR1/ELCR2 at 0x4D0/0x4D1: one bit per IRQ, 1 = level-triggered (PCI), 0 = edge (ISA).
//!   IRQ0, 1, 2, 8 and 13 are always edge (the PIIX3 hardwires those bits to 0). The PIIX3
//!   ignores the LTIM bit of ICW1; the ELCR alone decides.
//!
//! Register the same device at 0x20 (len 2), 0xA0 (len 2) and 0x4D0 (len 2): the BusDevice
//! implementation tells the ports apart by the absolute `addr`.
//!
//! What the model implements, following the 8259A data sheet:
//! - initialization: ICW1 (edge-sense reset, IMR cleared, IR7 lowest priority, single/cascade,
//!   IC4), ICW2 (vector base, bits 7-3), ICW3 (accepted; the cascade wiring is fixed), ICW4
//!   (AEOI, SFNM; 8086 mode is assumed);
//! - OCW1: the interrupt mask register (IMR), read back at the odd port;
//! - OCW2: non-specific and specific EOI, rotate on (non-)specific EOI, rotate in auto-EOI mode
//!   set/clear, set priority;
//! - OCW3: read IRR / read ISR at the even port, poll command, special mask mode set/reset;
//! - edge-triggered inputs latch IRR on a rising edge (the request stays latched until the
//!   INTA cycle even if the line falls, as VirtualBox and QEMU model it); level-triggered
//!   inputs make IRR follow the line;
//! - priority resolution with rotation, special mask mode and special fully nested mode;
//! - the INTA cycle ([`Pic::acknowledge`]): with no request left the chip answers IR7 (master)
//!   or IR15 (slave, with master ISR2 set) without touching ISR: the spurious interrupt.
//!
//! Concurrency: glue keeps the `Pic` behind a mutex and calls [`Pic::set_irq`] from the
//! interrupt router; hm calls [`Pic::output`] and [`Pic::acknowledge`]. The optional notifier
//! set with [`Pic::set_output_notifier`] runs with that mutex held whenever INTR changes, so it
//! must only record the change and kick the vCPU, never lock the PIC again.

use iomio::BusDevice;

/// Master command port.
pub const MASTER_CMD: u64 = 0x20;
/// Master data port.
pub const MASTER_DATA: u64 = 0x21;
/// Slave command port.
pub const SLAVE_CMD: u64 = 0xa0;
/// Slave data port.
pub const SLAVE_DATA: u64 = 0xa1;
/// ELCR1 (IRQ0-7 trigger mode).
pub const ELCR1: u64 = 0x4d0;
/// ELCR2 (IRQ8-15 trigger mode).
pub const ELCR2: u64 = 0x4d1;

/// ELCR bits that may be set: IRQ0, 1 and 2 are always edge on the master ...
const ELCR1_MASK: u8 = 0xf8;
/// ... and IRQ8 (RTC) and IRQ13 (FPU) on the slave.
const ELCR2_MASK: u8 = 0xde;

/// Where the initialization sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum InitState {
    /// Initialized: odd-port writes are OCW1.
    #[default]
    Ready,
    /// ICW1 seen, ICW2 (vector base) expected next.
    Icw2,
    /// ICW3 (cascade wiring) expected next.
    Icw3,
    /// ICW4 (mode) expected next.
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone, Default)]
struct Chip {
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    /// Current level of each IR input (for edge detection).
    lines: u8,
    /// Level-triggered inputs (ELCR), already restricted to the writable bits.
    elcr: u8,
    /// Which ELCR bits exist on this chip.
    elcr_mask: u8,
    /// ICW2: vector of IR0 (bits 7-3).
    vector_base: u8,
    /// The IR that has the highest priority (IR7 lowest after ICW1, so 0).
    priority_add: u8,
    /// OCW3 RR/RIS: the even port reads ISR instead of IRR.
    read_isr: bool,
    /// OCW3 P: the next read is a poll.
    poll: bool,
    /// OCW3 SMM: special mask mode.
    special_mask: bool,
    /// ICW4 AEOI.
    auto_eoi: bool,
    /// OCW2 rotate in automatic EOI mode.
    rotate_on_auto_eoi: bool,
    /// ICW4 SFNM (meaningful on the master only).
    special_fully_nested: bool,
    /// Initialization sequence state.
    init: InitState,
    /// ICW1 IC4: an ICW4 follows.
    icw4_needed: bool,
    /// ICW1 SNGL: no ICW3.
    single: bool,
}

impl Chip {
    fn new(elcr_mask: u8) -> Self {
        Chip {
            elcr_mask,
            ..Default::default()
        }
    }

    /// Priority number (0 = highest) of the highest-priority bit of `mask`.
    fn priority(&self, mask: u8) -> Option<u8> {
        (0..8u8).find(|p| mask & (1 << ((p + self.priority_add) & 7)) != 0)
    }

    /// The IR the chip would present on INT: the highest-priority unmasked request whose
    /// priority beats everything in service (with the SMM and SFNM exceptions).
    fn pending(&self, is_master: bool) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            // Special mask mode: a masked in-service level no longer inhibits anything.
            in_service &= !self.imr;
        }
        if is_master && self.special_fully_nested {
            // SFNM: a higher-priority slave request may interrupt the slave's own service.
            in_service &= !(1 << 2);
        }
        let current = self.priority(in_service).unwrap_or(8);
        (p < current).then_some((p + self.priority_add) & 7)
    }

    /// Drive input `ir` to `level`.
    fn set_input(&mut self, ir: u8, level: bool) {
        let m = 1u8 << (ir & 7);
        if self.elcr & m != 0 {
            // Level sensitive: IRR follows the line.
            if level {
                self.irr |= m;
            } else {
                self.irr &= !m;
            }
        } else if level && self.lines & m == 0 {
            // Edge sensitive: latch the rising edge.
            self.irr |= m;
        }
        if level {
            self.lines |= m;
        } else {
            self.lines &= !m;
        }
    }

    /// The INTA (or poll) acknowledge of `ir`.
    fn ack(&mut self, ir: u8) {
        let m = 1u8 << (ir & 7);
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (ir + 1) & 7;
            }
        } else {
            self.isr |= m;
        }
        // An edge request is consumed; a level request stays while the line is high.
        if self.elcr & m == 0 {
            self.irr &= !m;
        }
    }

    /// Poll command read: acknowledge like INTA and return the poll word.
    fn poll_read(&mut self, is_master: bool) -> u8 {
        self.poll = false;
        match self.pending(is_master) {
            Some(ir) => {
                self.ack(ir);
                0x80 | ir
            }
            None => 0,
        }
    }

    fn write_command(&mut self, val: u8) {
        if val & 0x10 != 0 {
            self.icw1(val);
        } else if val & 0x08 != 0 {
            self.ocw3(val);
        } else {
            self.ocw2(val);
        }
    }

    fn icw1(&mut self, val: u8) {
        // The edge sense latches are reset: only a new low-to-high transition raises an
        // edge request. Level requests still reflect their lines.
        self.irr = self.lines & self.elcr;
        self.isr = 0;
        self.imr = 0;
        self.priority_add = 0;
        self.read_isr = false;
        self.poll = false;
        self.special_mask = false;
        self.auto_eoi = false;
        self.rotate_on_auto_eoi = false;
        self.special_fully_nested = false;
        self.single = val & 0x02 != 0;
        self.icw4_needed = val & 0x01 != 0;
        self.init = InitState::Icw2;
    }

    fn write_data(&mut self, val: u8) {
        match self.init {
            InitState::Ready => self.imr = val,
            InitState::Icw2 => {
                self.vector_base = val & 0xf8;
                self.init = if !self.single {
                    InitState::Icw3
                } else if self.icw4_needed {
                    InitState::Icw4
                } else {
                    InitState::Ready
                };
            }
            InitState::Icw3 => {
                // The cascade wiring of a PC is fixed (slave on IR2, ID 2): nothing to store.
                self.init = if self.icw4_needed {
                    InitState::Icw4
                } else {
                    InitState::Ready
                };
            }
            InitState::Icw4 => {
                self.auto_eoi = val & 0x02 != 0;
                self.special_fully_nested = val & 0x10 != 0;
                self.init = InitState::Ready;
            }
        }
    }

    fn ocw2(&mut self, val: u8) {
        let level = val & 7;
        match val >> 5 {
            // Rotate in automatic EOI mode: clear (000) / set (100).
            0 => self.rotate_on_auto_eoi = false,
            4 => self.rotate_on_auto_eoi = true,
            // Non-specific EOI (001), rotate on non-specific EOI (101).
            cmd @ (1 | 5) => {
                if let Some(p) = self.priority(self.isr) {
                    let ir = (p + self.priority_add) & 7;
                    self.isr &= !(1 << ir);
                    if cmd == 5 {
                        self.priority_add = (ir + 1) & 7;
                    }
                }
            }
            // Specific EOI (011), rotate on specific EOI (111).
            cmd @ (3 | 7) => {
                self.isr &= !(1 << level);
                if cmd == 7 {
                    self.priority_add = (level + 1) & 7;
                }
            }
            // Set priority (110): `level` becomes the lowest.
            6 => self.priority_add = (level + 1) & 7,
            // No operation (010).
            _ => {}
        }
    }

    fn ocw3(&mut self, val: u8) {
        if val & 0x04 != 0 {
            self.poll = true;
        }
        if val & 0x02 != 0 {
            self.read_isr = val & 0x01 != 0;
        }
        if val & 0x40 != 0 {
            self.special_mask = val & 0x20 != 0;
        }
    }

    fn read(&mut self, odd: bool, is_master: bool) -> u8 {
        if self.poll {
            self.poll_read(is_master)
        } else if odd {
            self.imr
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    fn set_elcr(&mut self, val: u8) {
        self.elcr = val & self.elcr_mask;
        // Inputs that became level-sensitive now show their line in IRR.
        self.irr = (self.irr & !self.elcr) | (self.lines & self.elcr);
    }
}

/// The cascaded 8259A pair with the ELCR.
pub struct Pic {
    chips: [Chip; 2],
    intr: bool,
    notifier: Option<Box<dyn FnMut(bool) + Send>>,
}

impl std::fmt::Debug for Pic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pic")
            .field("master", &self.chips[0])
            .field("slave", &self.chips[1])
            .field("intr", &self.intr)
            .finish()
    }
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// A pair in its reset state (everything zero, all inputs edge-triggered).
    pub fn new() -> Self {
        Pic {
            chips: [Chip::new(ELCR1_MASK), Chip::new(ELCR2_MASK)],
            intr: false,
            notifier: None,
        }
    }

    /// Hardware reset: the chips lose their programming; input line levels are kept (they
    /// belong to the devices).
    pub fn reset(&mut self) {
        for (chip, mask) in self.chips.iter_mut().zip([ELCR1_MASK, ELCR2_MASK]) {
            let lines = chip.lines;
            *chip = Chip::new(mask);
            chip.lines = lines;
        }
        self.update();
    }

    /// Call `f(intr)` whenever the INTR output changes (see the module doc for the locking
    /// rule).
    pub fn set_output_notifier(&mut self, f: impl FnMut(bool) + Send + 'static) {
        self.notifier = Some(Box::new(f));
    }

    /// Drive ISA IRQ `irq` (0-15) to `level`. Other numbers are ignored. IRQ2 is the cascade
    /// input and cannot be driven from outside.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        if irq >= 16 || irq == 2 {
            return;
        }
        self.chips[usize::from(irq >> 3)].set_input(irq & 7, level);
        self.update();
    }

    /// The INTR line to the CPU (the master's INT output).
    pub fn output(&self) -> bool {
        self.chips[0].pending(true).is_some()
    }

    /// The INTA cycle: returns the vector the CPU reads and moves the request from IRR to
    /// ISR (unless auto-EOI). With nothing pending the answer is the spurious vector of IR7
    /// (master) or IR15 (slave).
    pub fn acknowledge(&mut self) -> u8 {
        let master = &mut self.chips[0];
        let vector = match master.pending(true) {
            Some(2) => {
                master.ack(2);
                let slave = &mut self.chips[1];
                match slave.pending(false) {
                    Some(ir) => {
                        slave.ack(ir);
                        slave.vector_base | ir
                    }
                    None => slave.vector_base | 7,
                }
            }
            Some(ir) => {
                master.ack(ir);
                master.vector_base | ir
            }
            None => master.vector_base | 7,
        };
        self.update();
        vector
    }

    /// IRR of both chips (slave in bits 15-8).
    pub fn irr(&self) -> u16 {
        u16::from_le_bytes([self.chips[0].irr, self.chips[1].irr])
    }

    /// ISR of both chips (slave in bits 15-8).
    pub fn isr(&self) -> u16 {
        u16::from_le_bytes([self.chips[0].isr, self.chips[1].isr])
    }

    /// IMR of both chips (slave in bits 15-8).
    pub fn imr(&self) -> u16 {
        u16::from_le_bytes([self.chips[0].imr, self.chips[1].imr])
    }

    /// ELCR of both chips: bit n set = IRQ n level-triggered.
    pub fn elcr(&self) -> u16 {
        u16::from_le_bytes([self.chips[0].elcr, self.chips[1].elcr])
    }

    /// Set the ELCR (the VMM does this for PCI interrupt lines when firmware does not).
    pub fn set_elcr(&mut self, elcr: u16) {
        let [lo, hi] = elcr.to_le_bytes();
        self.chips[0].set_elcr(lo);
        self.chips[1].set_elcr(hi);
        self.update();
    }

    /// Propagate the slave's INT to master IR2, then the master's INT to the notifier.
    fn update(&mut self) {
        let slave_int = self.chips[1].pending(false).is_some();
        self.chips[0].set_input(2, slave_int);
        let intr = self.chips[0].pending(true).is_some();
        if intr != self.intr {
            self.intr = intr;
            if let Some(f) = self.notifier.as_mut() {
                f(intr);
            }
        }
    }

    fn read_port(&mut self, port: u64) -> u8 {
        let v = match port {
            MASTER_CMD | MASTER_DATA => self.chips[0].read(port & 1 != 0, true),
            SLAVE_CMD | SLAVE_DATA => self.chips[1].read(port & 1 != 0, false),
            ELCR1 => return self.chips[0].elcr,
            ELCR2 => return self.chips[1].elcr,
            _ => return 0xff,
        };
        // A poll read acknowledges, which may change the outputs.
        self.update();
        v
    }

    fn write_port(&mut self, port: u64, val: u8) {
        match port {
            MASTER_CMD => self.chips[0].write_command(val),
            MASTER_DATA => self.chips[0].write_data(val),
            SLAVE_CMD => self.chips[1].write_command(val),
            SLAVE_DATA => self.chips[1].write_data(val),
            ELCR1 => self.chips[0].set_elcr(val),
            ELCR2 => self.chips[1].set_elcr(val),
            _ => return,
        }
        self.update();
    }
}

impl BusDevice for Pic {
    fn read(&mut self, addr: u64, _offset: u64, data: &mut [u8]) {
        // A wide access reaches consecutive ports, as the ISA bus splits it.
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_port(addr.wrapping_add(i as u64));
        }
    }

    fn write(&mut self, addr: u64, _offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            self.write_port(addr.wrapping_add(i as u64), b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn out(p: &mut Pic, port: u64, v: u8) {
        p.write(port, 0, &[v]);
    }

    fn inb(p: &mut Pic, port: u64) -> u8 {
        let mut d = [0];
        p.read(port, 0, &mut d);
        d[0]
    }

    /// The BIOS / Linux initialization: edge, cascade, ICW4, vectors 0x08 and 0x70.
    fn bios_init(p: &mut Pic, icw4: u8) {
        out(p, 0x20, 0x11);
        out(p, 0x21, 0x08);
        out(p, 0x21, 0x04);
        out(p, 0x21, icw4);
        out(p, 0xa0, 0x11);
        out(p, 0xa1, 0x70);
        out(p, 0xa1, 0x02);
        out(p, 0xa1, icw4);
        out(p, 0x21, 0);
        out(p, 0xa1, 0);
    }

    fn pic() -> Pic {
        let mut p = Pic::new();
        bios_init(&mut p, 0x01);
        p
    }

    #[test]
    fn init_sequence_sets_vector_base_and_clears_mask() {
        let mut p = Pic::new();
        out(&mut p, 0x21, 0xff);
        bios_init(&mut p, 0x01);
        assert_eq!(inb(&mut p, 0x21), 0);
        p.set_irq(1, true);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x09);
        out(&mut p, 0x20, 0x20);
        p.set_irq(9, true);
        assert_eq!(p.acknowledge(), 0x71);
    }

    #[test]
    fn icw1_without_icw4_and_single_mode_skip_steps() {
        let mut p = Pic::new();
        out(&mut p, 0x20, 0x12); // single, no ICW4
        out(&mut p, 0x21, 0x40);
        out(&mut p, 0x21, 0xfe); // already OCW1
        assert_eq!(inb(&mut p, 0x21), 0xfe);
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x40);
    }

    #[test]
    fn fixed_priority_lowest_number_wins() {
        let mut p = pic();
        p.set_irq(5, true);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x0b);
        // IRQ5 is lower priority than the in-service IRQ3: INTR stays low.
        assert!(!p.output());
        out(&mut p, 0x20, 0x20); // non-specific EOI
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x0d);
    }

    #[test]
    fn higher_priority_nests() {
        let mut p = pic();
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x0d);
        p.set_irq(1, true);
        assert!(p.output(), "IRQ1 beats in-service IRQ5");
        assert_eq!(p.acknowledge(), 0x09);
        assert_eq!(p.isr(), 0b10_0010);
        out(&mut p, 0x20, 0x20); // clears IRQ1 (highest in service)
        assert_eq!(p.isr(), 0b10_0000);
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.isr(), 0);
    }

    #[test]
    fn specific_eoi_clears_named_level() {
        let mut p = pic();
        p.set_irq(5, true);
        p.acknowledge();
        p.set_irq(1, true);
        p.acknowledge();
        out(&mut p, 0x20, 0x65); // specific EOI IR5
        assert_eq!(p.isr(), 0b10);
    }

    #[test]
    fn irr_and_isr_reads_through_ocw3() {
        let mut p = pic();
        out(&mut p, 0x21, 0xff);
        p.set_irq(4, true);
        assert_eq!(inb(&mut p, 0x20), 0x10, "IRR is the default");
        out(&mut p, 0x21, 0);
        p.acknowledge();
        out(&mut p, 0x20, 0x0b);
        assert_eq!(inb(&mut p, 0x20), 0x10, "ISR");
        out(&mut p, 0x20, 0x0a);
        assert_eq!(inb(&mut p, 0x20), 0x00, "IRR after INTA");
    }

    #[test]
    fn edge_latched_until_inta_level_follows_line() {
        let mut p = pic();
        p.set_irq(3, true);
        p.set_irq(3, false);
        assert!(p.output(), "edge stays latched");
        assert_eq!(p.acknowledge(), 0x0b);
        out(&mut p, 0x20, 0x20);
        // Holding the line high does not raise a second edge.
        p.set_irq(3, true);
        p.acknowledge();
        out(&mut p, 0x20, 0x20);
        p.set_irq(3, true);
        assert!(!p.output());

        // Level: IRR follows the line, and the request is re-raised after EOI while high.
        out(&mut p, 0x4d1, 0x08); // IRQ11 level
        assert_eq!(inb(&mut p, 0x4d1), 0x08);
        p.set_irq(11, true);
        assert_eq!(p.acknowledge(), 0x73);
        out(&mut p, 0xa0, 0x20);
        out(&mut p, 0x20, 0x20);
        assert!(p.output(), "still asserted");
        p.set_irq(11, false);
        assert_eq!(p.irr() & (1 << 11), 0, "level request withdrawn");
        // The master latched the cascade edge: the INTA finds the slave empty and gets the
        // slave's default IR7, the spurious IRQ15 of the data sheet.
        assert_eq!(p.acknowledge(), 0x77);
        out(&mut p, 0x20, 0x20);
        assert!(!p.output());
    }

    #[test]
    fn elcr_hardwired_bits() {
        let mut p = pic();
        out(&mut p, 0x4d0, 0xff);
        out(&mut p, 0x4d1, 0xff);
        assert_eq!(inb(&mut p, 0x4d0), 0xf8);
        assert_eq!(inb(&mut p, 0x4d1), 0xde);
        let mut w = [0u8; 2];
        p.read(0x4d0, 0, &mut w);
        assert_eq!(w, [0xf8, 0xde]);
    }

    #[test]
    fn spurious_irq7_when_request_vanishes() {
        let mut p = pic();
        out(&mut p, 0x4d0, 0x20); // IRQ5 level
        p.set_irq(5, true);
        assert!(p.output());
        p.set_irq(5, false);
        assert_eq!(p.acknowledge(), 0x0f);
        assert_eq!(p.isr(), 0, "spurious IRQ7 does not set ISR");
    }

    #[test]
    fn cascade_and_spurious_irq15() {
        let mut p = pic();
        p.set_irq(12, true);
        assert!(p.output());
        assert_eq!(p.irr() & 0x04, 0x04, "slave INT on master IR2");
        assert_eq!(p.acknowledge(), 0x74);
        assert_eq!(p.isr(), (1 << 12) | (1 << 2));
        out(&mut p, 0xa0, 0x20);
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.isr(), 0);

        out(&mut p, 0x4d1, 0x10); // IRQ12 level
        p.set_irq(12, true);
        p.set_irq(12, false);
        // Slave withdrew its request, but the edge on master IR2 was latched.
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x77);
        assert_eq!(p.isr(), 1 << 2, "master ISR2 set, slave ISR clear");
    }

    #[test]
    fn masked_slave_via_master_imr() {
        let mut p = pic();
        out(&mut p, 0x21, 0x04);
        p.set_irq(10, true);
        assert!(!p.output());
        out(&mut p, 0x21, 0x00);
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x72);
    }

    #[test]
    fn auto_eoi_leaves_isr_clear() {
        let mut p = Pic::new();
        bios_init(&mut p, 0x03);
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x08);
        assert_eq!(p.isr(), 0);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x09);
        assert_eq!(p.isr(), 0);
    }

    #[test]
    fn rotate_on_auto_eoi_makes_serviced_level_lowest() {
        let mut p = Pic::new();
        bios_init(&mut p, 0x03);
        out(&mut p, 0x20, 0x80); // rotate in AEOI set
        p.set_irq(0, true);
        p.acknowledge();
        p.set_irq(0, false);
        p.set_irq(0, true);
        p.set_irq(4, true);
        // IR0 is now lowest: IR4 wins.
        assert_eq!(p.acknowledge(), 0x0c);
    }

    #[test]
    fn rotate_on_nonspecific_eoi_and_set_priority() {
        let mut p = pic();
        p.set_irq(1, true);
        p.acknowledge();
        out(&mut p, 0x20, 0xa0); // rotate on non-specific EOI: IR1 lowest, IR2 highest
        p.set_irq(1, false);
        p.set_irq(1, true);
        p.set_irq(6, true);
        assert_eq!(p.acknowledge(), 0x0e, "IR6 outranks IR1 after rotation");
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.acknowledge(), 0x09);
        out(&mut p, 0x20, 0x20);

        out(&mut p, 0x20, 0xc4); // set priority: IR4 lowest, IR5 highest
        p.set_irq(3, true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x0d);
        out(&mut p, 0x20, 0xe5); // rotate on specific EOI 5: IR6 highest
        assert_eq!(p.acknowledge(), 0x0b);
    }

    #[test]
    fn poll_mode_acknowledges_without_inta() {
        let mut p = pic();
        p.set_irq(6, true);
        out(&mut p, 0x20, 0x0c);
        assert_eq!(inb(&mut p, 0x20), 0x86);
        assert_eq!(p.isr(), 0x40);
        assert!(!p.output());
        out(&mut p, 0x20, 0x0c);
        assert_eq!(inb(&mut p, 0x20), 0x00, "nothing pending");
        // After a poll the port reads IRR again.
        assert_eq!(inb(&mut p, 0x20), 0x00);
    }

    #[test]
    fn special_mask_mode_enables_lower_levels() {
        let mut p = pic();
        p.set_irq(3, true);
        p.acknowledge();
        p.set_irq(5, true);
        assert!(!p.output());
        out(&mut p, 0x21, 0x08); // mask the in-service level
        assert!(!p.output(), "masking alone does not help");
        out(&mut p, 0x20, 0x68); // set special mask mode
        assert!(p.output());
        assert_eq!(p.acknowledge(), 0x0d);
        out(&mut p, 0x20, 0x48); // reset special mask mode
        out(&mut p, 0x20, 0x65);
        out(&mut p, 0x20, 0x63);
        assert_eq!(p.isr(), 0);
    }

    #[test]
    fn special_fully_nested_lets_higher_slave_irq_through() {
        let mut p = Pic::new();
        bios_init(&mut p, 0x11); // SFNM + 8086
        p.set_irq(12, true);
        assert_eq!(p.acknowledge(), 0x74);
        p.set_irq(9, true);
        assert!(
            p.output(),
            "SFNM: IR9 beats in-service IR12 through master ISR2"
        );
        assert_eq!(p.acknowledge(), 0x71);

        let mut q = pic();
        q.set_irq(12, true);
        q.acknowledge();
        q.set_irq(9, true);
        assert!(!q.output(), "without SFNM master ISR2 blocks");
    }

    #[test]
    fn notifier_sees_intr_edges() {
        let mut p = pic();
        let n = Arc::new(AtomicU32::new(0));
        let n2 = n.clone();
        p.set_output_notifier(move |l| {
            n2.fetch_add(if l { 1 } else { 100 }, Ordering::SeqCst);
        });
        p.set_irq(4, true);
        p.set_irq(3, true);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        p.acknowledge();
        assert_eq!(n.load(Ordering::SeqCst), 101);
    }

    #[test]
    fn icw1_resets_edge_latches() {
        let mut p = pic();
        out(&mut p, 0x21, 0xff);
        p.set_irq(3, true);
        bios_init(&mut p, 0x01);
        assert!(!p.output(), "old edge forgotten");
        assert_eq!(p.irr(), 0);
    }

    proptest::proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((0u8..6, 0u64..4, proptest::prelude::any::<u8>(), 1usize..5), 0..200)) {
            let mut p = Pic::new();
            let ports = [0x20u64, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1];
            for (kind, port, val, len) in ops {
                let port = ports[usize::from(kind) % ports.len()] + port % 2;
                match val % 4 {
                    0 => { let mut d = vec![0; len]; p.read(port, 0, &mut d); }
                    1 => p.set_irq(val >> 2, val & 1 != 0),
                    2 => { p.acknowledge(); }
                    _ => p.write(port, 0, &vec![val; len]),
                }
                let _ = p.output();
            }
        }
    }
}
