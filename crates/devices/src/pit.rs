//! The Intel 8254 programmable interval timer at ports 0x40-0x43, and PC system control
//! port B at 0x61 (channel 2 gate, speaker data, refresh toggle, OUT2).
//!
//! Register the same device at 0x40 (len 4) and 0x61 (len 1); the BusDevice implementation
//! tells the ports apart by the absolute `addr`.
//!
//! The counters run at 1.193182 MHz derived from the virtual clock. Nothing is ticked: each
//! channel remembers the clock tick at which its counting element was loaded, and the count
//! and the OUT pin are computed from the time of the read, so a guest polling OUT2 through
//! port 0x61 (Linux's TSC calibration) sees exactly the data-sheet timing.
//!
//! Channel wiring on the PC: channel 0 OUT -> ISA IRQ0 (gate tied high); channel 1 (DRAM
//! refresh on old PCs, gate high, OUT unconnected); channel 2 gate = port 0x61 bit 0, OUT ->
//! speaker and port 0x61 bit 5.
//!
//! The data sheet's six modes, with N the count written (0 = 0x10000, or 10000 in BCD):
//! - 0, interrupt on terminal count: OUT low from the mode write, high N clocks after the
//!   count is written and stays high; writing the first byte of a two-byte count stops the
//!   counter; gate low suspends counting.
//! - 1, hardware-retriggerable one-shot: a gate rising edge starts N clocks of OUT low.
//! - 2, rate generator: OUT low for one clock every N clocks; gate low stops and forces OUT
//!   high, a gate rising edge reloads.
//! - 3, square wave: OUT high for ceil(N/2), low for floor(N/2) clocks; gate as mode 2.
//! - 4, software-triggered strobe: OUT low for one clock N clocks after the count is written.
//! - 5, hardware-triggered strobe: as 4, started by a gate rising edge.
//!
//! Reading: counter latch command, read-back command (count and/or status of any set of
//! channels), LSB/MSB/LSB-then-MSB access with its flip-flop, BCD counting, status byte
//! (OUT, null count, access, mode, BCD).
//!
//! IRQ0: every rising edge of channel 0's OUT pulses the IRQ line (as VirtualBox's flip-flop
//! IRQ does). With a [`TimerQueue`] ([`Pit::new_shared`]) a timer is armed for the next
//! rising edge; edges missed while the event thread was late are coalesced into one pulse.
//! After a reset every channel runs mode 3 with count 0x10000 (channel 0 ticking IRQ0 at
//! 18.2 Hz before the BIOS programs it), as in VirtualBox and QEMU.

use iomio::BusDevice;
use parking_lot::Mutex;
use pdm::{Clock, IrqLine, Timer, TimerQueue};
use std::sync::{Arc, Weak};

/// Input clock of the counters.
pub const PIT_FREQ_HZ: u64 = 1_193_182;
/// First PIT port (channel 0 data).
pub const PIT_BASE: u64 = 0x40;
/// Control word port.
pub const PIT_CONTROL: u64 = 0x43;
/// System control port B.
pub const PORT_B: u64 = 0x61;
/// Period of the DRAM refresh request toggle seen in port 0x61 bit 4 (15.085 us).
pub const REFRESH_PERIOD_NS: u64 = 15_085;
/// Shortest interval between two IRQ0 timer events (50 kHz). A guest programming tiny
/// counts (mode 2 with N = 2 would be 600 kHz) gets its edges coalesced instead of
/// flooding the event thread; no real OS runs IRQ0 anywhere near this rate.
pub const MIN_IRQ_INTERVAL_NS: u64 = 20_000;

const NS_PER_S: u128 = 1_000_000_000;

/// Counter tick number at virtual time `ns`.
fn tick_at(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_FREQ_HZ) / NS_PER_S) as u64
}

/// First virtual time at which tick `tick` has been reached.
fn ns_of_tick(tick: u64) -> u64 {
    let ns = (u128::from(tick) * NS_PER_S).div_ceil(u128::from(PIT_FREQ_HZ));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn to_bcd(v: u32) -> u16 {
    let v = v % 10_000;
    (((v / 1000) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) | (v % 10)) as u16
}

fn from_bcd(v: u16) -> u32 {
    let d = |s: u16| u32::from((v >> s) & 0xf);
    (d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)) % 10_000
}

/// RW field of the control word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// LSB only.
    Lsb = 1,
    /// MSB only.
    Msb = 2,
    /// LSB then MSB.
    Word = 3,
}

/// Whether the counting element is counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Not counting: no count yet, waiting for a gate trigger (modes 1, 5), or stopped by
    /// the gate (modes 2, 3).
    Idle,
    /// Counting since the given tick.
    Running(u64),
    /// Suspended by gate low (modes 0, 4) after this many ticks.
    Paused(u64),
}

/// One counter.
#[derive(Debug, Clone)]
struct Channel {
    mode: u8,
    bcd: bool,
    access: Access,
    /// The count loaded into the counting element, 1..=0x10000 (binary) or 1..=10000 (BCD).
    count: u32,
    /// A count has been written since the mode was set.
    loaded: bool,
    run: Run,
    gate: bool,
    /// The value the counting element holds while idle.
    idle_value: u32,
    /// LSB of a two-byte count written, MSB expected next.
    write_msb_next: bool,
    write_lsb: u8,
    /// Live two-byte reads: MSB next.
    read_msb_next: bool,
    /// Latched count and whether its MSB is next.
    latched_count: Option<(u16, bool)>,
    latched_status: Option<u8>,
    null_count: bool,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            mode: 3,
            bcd: false,
            access: Access::Word,
            count: 0x10000,
            loaded: false,
            run: Run::Idle,
            gate,
            idle_value: 0,
            write_msb_next: false,
            write_lsb: 0,
            read_msb_next: false,
            latched_count: None,
            latched_status: None,
            null_count: true,
        }
    }

    fn modulus(&self) -> u32 {
        if self.bcd {
            10_000
        } else {
            0x10000
        }
    }

    /// Ticks counted at `tick`, or None when idle.
    fn elapsed(&self, tick: u64) -> Option<u64> {
        match self.run {
            Run::Idle => None,
            Run::Running(since) => Some(tick.saturating_sub(since)),
            Run::Paused(e) => Some(e),
        }
    }

    /// The counting element's value (binary, 0..modulus) at `tick`.
    fn value(&self, tick: u64) -> u32 {
        let Some(d) = self.elapsed(tick) else {
            return self.idle_value;
        };
        let n = u64::from(self.count);
        let m = u64::from(self.modulus());
        let v = match self.mode {
            2 => n - d % n,
            3 => n - (2 * (d % n)) % n,
            // Modes 0, 1, 4, 5 count down through zero and wrap.
            _ => (n + m - d % m) % m,
        };
        (v % m) as u32
    }

    /// The OUT pin at `tick`.
    fn out(&self, tick: u64) -> bool {
        let n = u64::from(self.count);
        match (self.mode, self.elapsed(tick)) {
            (0, None) => false,
            (0, Some(d)) => d >= n,
            (1, Some(d)) => d >= n,
            (2, Some(d)) => d % n != n - 1,
            (3, Some(d)) => d % n < n.div_ceil(2),
            (4 | 5, Some(d)) => d != n,
            // Idle modes 1-5 and a stopped mode 2/3 hold OUT high.
            _ => true,
        }
    }

    /// The first tick after `tick` at which OUT rises (None if it never will on its own).
    fn next_rising_edge(&self, tick: u64) -> Option<u64> {
        let Run::Running(since) = self.run else {
            return None;
        };
        let d = tick.saturating_sub(since);
        let n = u64::from(self.count);
        let rel = match self.mode {
            0 | 1 => (d < n).then_some(n)?,
            2 | 3 => (d / n + 1) * n,
            _ => (d <= n).then_some(n + 1)?,
        };
        Some(since.saturating_add(rel))
    }

    /// Start counting from the count just loaded, as the mode and gate allow.
    fn start(&mut self, tick: u64) {
        self.run = match self.mode {
            0 | 4 if self.gate => Run::Running(tick),
            0 | 4 => Run::Paused(0),
            2 | 3 if self.gate => Run::Running(tick),
            // Modes 1 and 5 (and a gated-off 2/3) wait for a gate rising edge.
            _ => Run::Idle,
        };
        self.null_count = matches!(self.run, Run::Idle);
    }

    fn load(&mut self, raw: u16, tick: u64) {
        let n = if self.bcd {
            from_bcd(raw)
        } else {
            u32::from(raw)
        };
        self.count = if n == 0 { self.modulus() } else { n };
        self.loaded = true;
        self.start(tick);
    }

    fn write_control(&mut self, val: u8, tick: u64) {
        let access = match (val >> 4) & 3 {
            0 => {
                // Counter latch command: a second latch before the read is ignored.
                if self.latched_count.is_none() {
                    self.latch_count(tick);
                }
                return;
            }
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::Word,
        };
        self.idle_value = self.value(tick);
        self.access = access;
        self.mode = match (val >> 1) & 7 {
            6 => 2,
            7 => 3,
            m => m,
        };
        self.bcd = val & 1 != 0;
        self.loaded = false;
        self.run = Run::Idle;
        self.null_count = true;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latched_count = None;
        self.latched_status = None;
    }

    fn latch_count(&mut self, tick: u64) {
        let v = self.value(tick);
        let raw = if self.bcd { to_bcd(v) } else { v as u16 };
        self.latched_count = Some((raw, false));
    }

    fn status(&self, tick: u64) -> u8 {
        u8::from(self.out(tick)) << 7
            | u8::from(self.null_count) << 6
            | (self.access as u8) << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    fn write_data(&mut self, val: u8, tick: u64) {
        match self.access {
            Access::Lsb => self.load(u16::from(val), tick),
            Access::Msb => self.load(u16::from(val) << 8, tick),
            Access::Word if !self.write_msb_next => {
                self.write_lsb = val;
                self.write_msb_next = true;
                if self.mode == 0 {
                    // Data sheet: writing the first byte stops the count, OUT goes low.
                    self.idle_value = self.value(tick);
                    self.run = Run::Idle;
                }
            }
            Access::Word => {
                self.write_msb_next = false;
                self.load(u16::from_le_bytes([self.write_lsb, val]), tick);
            }
        }
    }

    fn read_data(&mut self, tick: u64) -> u8 {
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        if let Some((raw, msb_next)) = self.latched_count {
            let [lo, hi] = raw.to_le_bytes();
            return match self.access {
                Access::Lsb => {
                    self.latched_count = None;
                    lo
                }
                Access::Msb => {
                    self.latched_count = None;
                    hi
                }
                Access::Word if !msb_next => {
                    self.latched_count = Some((raw, true));
                    lo
                }
                Access::Word => {
                    self.latched_count = None;
                    hi
                }
            };
        }
        let v = self.value(tick);
        let [lo, hi] = if self.bcd { to_bcd(v) } else { v as u16 }.to_le_bytes();
        match self.access {
            Access::Lsb => lo,
            Access::Msb => hi,
            Access::Word => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    lo
                } else {
                    hi
                }
            }
        }
    }

    fn set_gate(&mut self, gate: bool, tick: u64) {
        let rising = gate && !self.gate;
        self.gate = gate;
        match self.mode {
            0 | 4 => match self.run {
                Run::Running(since) if !gate => {
                    self.run = Run::Paused(tick.saturating_sub(since));
                }
                Run::Paused(e) if gate => self.run = Run::Running(tick.saturating_sub(e)),
                _ => {}
            },
            2 | 3 => {
                if !gate {
                    self.idle_value = self.value(tick);
                    self.run = Run::Idle;
                } else if rising && self.loaded {
                    self.run = Run::Running(tick);
                    self.null_count = false;
                }
            }
            // Modes 1 and 5: the rising edge (re)triggers.
            _ => {
                if rising && self.loaded {
                    self.run = Run::Running(tick);
                    self.null_count = false;
                }
            }
        }
    }
}

/// The 8254 with port 0x61.
pub struct Pit {
    channels: [Channel; 3],
    clock: Arc<dyn Clock>,
    irq0: IrqLine,
    timer: Option<Timer>,
    /// Rising edges of OUT0 up to and including this tick have been signalled.
    irq_tick: u64,
    /// No IRQ0 timer event before this virtual time (see [`MIN_IRQ_INTERVAL_NS`]).
    irq_holdoff_ns: u64,
    /// Port 0x61 bit 1 (speaker data enable) and bits 2-3 (parity/IOCHK check enables).
    port_b: u8,
}

impl std::fmt::Debug for Pit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pit")
            .field("channels", &self.channels)
            .field("port_b", &self.port_b)
            .finish()
    }
}

impl Pit {
    /// A PIT on `clock` whose channel 0 drives `irq0`. Without a timer (see
    /// [`Pit::new_shared`]) IRQ0 edges are only produced when [`Pit::on_timer`] is called.
    pub fn new(clock: Arc<dyn Clock>, irq0: IrqLine) -> Self {
        let mut pit = Pit {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            clock,
            irq0,
            timer: None,
            irq_tick: 0,
            irq_holdoff_ns: 0,
            port_b: 0,
        };
        pit.reset();
        pit
    }

    /// A PIT behind a mutex with a timer on `timers` that delivers IRQ0 edges.
    pub fn new_shared(
        clock: Arc<dyn Clock>,
        irq0: IrqLine,
        timers: &Arc<TimerQueue>,
    ) -> Arc<Mutex<Pit>> {
        let pit = Arc::new(Mutex::new(Pit::new(clock, irq0)));
        let weak: Weak<Mutex<Pit>> = Arc::downgrade(&pit);
        let timer = timers.create(move |_now| {
            if let Some(pit) = weak.upgrade() {
                pit.lock().on_timer();
            }
        });
        {
            let mut p = pit.lock();
            p.timer = Some(timer);
            p.rearm();
        }
        pit
    }

    /// Reset: every channel in mode 3 with count 0x10000, counting from now (channel 2 only
    /// once its gate is raised); port 0x61 cleared.
    pub fn reset(&mut self) {
        let tick = self.now_tick();
        for (i, ch) in self.channels.iter_mut().enumerate() {
            *ch = Channel::new(i != 2);
            ch.load(0, tick);
        }
        self.port_b = 0;
        self.irq_tick = tick;
        self.rearm();
    }

    fn now_tick(&self) -> u64 {
        tick_at(self.clock.now_ns())
    }

    /// The OUT pin of channel `ch` (0-2) now.
    pub fn out(&self, ch: usize) -> bool {
        let tick = self.now_tick();
        self.channels.get(ch).is_some_and(|c| c.out(tick))
    }

    /// Virtual time of the next IRQ0 edge, if any.
    pub fn next_irq_deadline(&self) -> Option<u64> {
        self.channels[0]
            .next_rising_edge(self.irq_tick)
            .map(|edge| ns_of_tick(edge).max(self.irq_holdoff_ns))
    }

    /// Deliver IRQ0 if OUT0 rose since the last call, and re-arm the timer. The timer
    /// callback calls this; so may a VMM without a timer queue.
    pub fn on_timer(&mut self) {
        let now = self.now_tick();
        if self.channels[0]
            .next_rising_edge(self.irq_tick)
            .is_some_and(|edge| edge <= now)
        {
            self.irq0.pulse();
            self.irq_holdoff_ns = self.clock.now_ns().saturating_add(MIN_IRQ_INTERVAL_NS);
        }
        self.irq_tick = now;
        self.rearm();
    }

    fn rearm(&self) {
        if let Some(t) = &self.timer {
            match self.next_irq_deadline() {
                Some(at) => t.arm_at(at),
                None => t.disarm(),
            }
        }
    }

    /// Channel 0 was reprogrammed: edges before now are history.
    fn channel0_changed(&mut self) {
        self.irq_tick = self.now_tick();
        self.rearm();
    }

    fn read_port(&mut self, port: u64) -> u8 {
        let tick = self.now_tick();
        match port {
            0x40..=0x42 => self.channels[(port - PIT_BASE) as usize].read_data(tick),
            PORT_B => {
                let refresh = (self.clock.now_ns() / REFRESH_PERIOD_NS) & 1 != 0;
                u8::from(self.channels[2].gate)
                    | (self.port_b & 0x0e)
                    | u8::from(refresh) << 4
                    | u8::from(self.channels[2].out(tick)) << 5
            }
            // The control word register is write-only.
            _ => 0xff,
        }
    }

    fn write_port(&mut self, port: u64, val: u8) {
        let tick = self.now_tick();
        match port {
            0x40..=0x42 => {
                let ch = (port - PIT_BASE) as usize;
                self.channels[ch].write_data(val, tick);
                if ch == 0 {
                    self.channel0_changed();
                }
            }
            PIT_CONTROL => {
                if val >> 6 == 3 {
                    self.read_back(val, tick);
                } else {
                    let ch = usize::from(val >> 6);
                    self.channels[ch].write_control(val, tick);
                    if ch == 0 {
                        self.channel0_changed();
                    }
                }
            }
            PORT_B => {
                self.port_b = val & 0x0e;
                self.channels[2].set_gate(val & 1 != 0, tick);
            }
            _ => {}
        }
    }

    /// Read-back command: bit 5 clear latches the count, bit 4 clear latches the status,
    /// bits 1-3 select channels 0-2.
    fn read_back(&mut self, val: u8, tick: u64) {
        for (i, ch) in self.channels.iter_mut().enumerate() {
            if val & (2 << i) == 0 {
                continue;
            }
            if val & 0x20 == 0 && ch.latched_count.is_none() {
                ch.latch_count(tick);
            }
            if val & 0x10 == 0 && ch.latched_status.is_none() {
                ch.latched_status = Some(ch.status(tick));
            }
        }
    }
}

impl BusDevice for Pit {
    fn read(&mut self, addr: u64, _offset: u64, data: &mut [u8]) {
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
    use pdm::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// ns of `ticks` counter clocks (rounded up to the tick boundary).
    fn ns(ticks: u64) -> u64 {
        ns_of_tick(ticks)
    }

    struct Rig {
        clock: Arc<ManualClock>,
        pit: Pit,
    }

    impl Rig {
        fn new() -> Self {
            let clock = Arc::new(ManualClock::new(0));
            let pit = Pit::new(clock.clone(), IrqLine::disconnected());
            Rig { clock, pit }
        }
        fn out(&mut self, port: u64, v: u8) {
            self.pit.write(port, 0, &[v]);
        }
        fn inb(&mut self, port: u64) -> u8 {
            let mut d = [0];
            self.pit.read(port, 0, &mut d);
            d[0]
        }
        /// Latch and read a channel's count (LSB/MSB access).
        fn latched(&mut self, ch: u8) -> u16 {
            self.out(0x43, ch << 6);
            let lo = self.inb(0x40 + u64::from(ch));
            let hi = self.inb(0x40 + u64::from(ch));
            u16::from_le_bytes([lo, hi])
        }
        fn at(&self, ticks: u64) {
            self.clock.set(ns(ticks));
        }
    }

    #[test]
    fn tick_conversion_round_trips() {
        for t in [0u64, 1, 2, 1193181, 1193182, 59659, 1 << 40] {
            assert_eq!(tick_at(ns_of_tick(t)), t);
            assert_eq!(
                tick_at(ns_of_tick(t).saturating_sub(1)),
                t.saturating_sub(1)
            );
        }
        assert_eq!(tick_at(1_000_000_000), PIT_FREQ_HZ);
    }

    #[test]
    fn mode0_counts_down_and_out_rises_at_terminal_count() {
        let mut r = Rig::new();
        r.out(0x43, 0x30); // ch0, LSB/MSB, mode 0, binary
        assert!(!r.pit.out(0), "mode 0 OUT low after the control word");
        r.out(0x40, 0x00);
        r.out(0x40, 0x10); // N = 0x1000
        assert_eq!(r.latched(0), 0x1000);
        r.at(0x100);
        assert_eq!(r.latched(0), 0x0f00);
        r.at(0xfff);
        assert!(!r.pit.out(0));
        assert_eq!(r.latched(0), 1);
        r.at(0x1000);
        assert!(r.pit.out(0));
        assert_eq!(r.latched(0), 0);
        r.at(0x1001);
        assert_eq!(r.latched(0), 0xffff, "keeps counting through zero");
        assert!(r.pit.out(0), "and OUT stays high");
    }

    #[test]
    fn mode0_first_byte_stops_counting() {
        let mut r = Rig::new();
        r.out(0x43, 0x30);
        r.out(0x40, 0x00);
        r.out(0x40, 0x10);
        r.at(0x20);
        r.out(0x40, 0x00); // LSB of a new count: counting stops
        r.at(0x40);
        assert_eq!(
            r.latched(0),
            0x0fe0,
            "held at the value when the LSB was written"
        );
        assert!(!r.pit.out(0));
        r.out(0x40, 0x01); // MSB: N = 0x100 loaded
        r.at(0x40 + 0x100);
        assert!(r.pit.out(0));
    }

    #[test]
    fn mode2_rate_generator_low_for_one_clock() {
        let mut r = Rig::new();
        r.out(0x43, 0x34); // ch0 mode 2
        r.out(0x40, 10);
        r.out(0x40, 0);
        let outs: Vec<bool> = (0..21)
            .map(|t| {
                r.at(t);
                r.pit.out(0)
            })
            .collect();
        let lows: Vec<usize> = (0..21).filter(|&t| !outs[t]).collect();
        assert_eq!(lows, vec![9, 19]);
        r.at(3);
        assert_eq!(r.latched(0), 7);
        r.at(10);
        assert_eq!(r.latched(0), 10, "reloaded");
    }

    #[test]
    fn mode3_square_wave_duty_cycle() {
        let mut r = Rig::new();
        r.out(0x43, 0x36); // ch0 mode 3
        r.out(0x40, 10);
        r.out(0x40, 0);
        let high = (0..10u64)
            .filter(|&t| {
                r.at(t);
                r.pit.out(0)
            })
            .count();
        assert_eq!(high, 5);
        r.at(0);
        r.out(0x43, 0x36);
        r.out(0x40, 9);
        r.out(0x40, 0);
        let pattern: Vec<bool> = (0..9u64)
            .map(|t| {
                r.at(t);
                r.pit.out(0)
            })
            .collect();
        assert_eq!(
            pattern.iter().filter(|&&o| o).count(),
            5,
            "odd N: high (N+1)/2"
        );
        assert!(pattern[..5].iter().all(|&o| o));
        // The counter decrements by two.
        r.at(0);
        r.out(0x43, 0x36);
        r.out(0x40, 10);
        r.out(0x40, 0);
        r.at(2);
        assert_eq!(r.latched(0), 6);
    }

    #[test]
    fn mode4_strobe_and_modes_1_5_wait_for_gate() {
        let mut r = Rig::new();
        r.out(0x43, 0xb8); // ch2 mode 4 (gate is low: paused)
        r.out(0x42, 5);
        r.out(0x42, 0);
        r.at(100);
        assert_eq!(r.latched(2), 5, "gate low suspends mode 4");
        r.out(0x61, 1);
        r.at(105);
        assert!(!r.pit.out(2), "strobe");
        r.at(106);
        assert!(r.pit.out(2));

        r.out(0x61, 0);
        r.out(0x43, 0xb2); // ch2 mode 1
        r.out(0x42, 4);
        r.out(0x42, 0);
        assert!(r.pit.out(2));
        r.at(200);
        r.out(0x61, 1); // trigger
        r.at(201);
        assert!(!r.pit.out(2));
        r.at(204);
        assert!(r.pit.out(2));
        r.out(0x61, 0);
        r.out(0x61, 1); // retrigger
        r.at(205);
        assert!(!r.pit.out(2));

        r.out(0x61, 0);
        r.out(0x43, 0xba); // ch2 mode 5
        r.out(0x42, 3);
        r.out(0x42, 0);
        r.at(300);
        assert!(r.pit.out(2));
        r.out(0x61, 1);
        r.at(303);
        assert!(!r.pit.out(2));
        r.at(304);
        assert!(r.pit.out(2));
    }

    #[test]
    fn mode2_gate_low_forces_out_high_and_rising_edge_reloads() {
        let mut r = Rig::new();
        r.out(0x61, 1);
        r.out(0x43, 0xb4); // ch2 mode 2
        r.out(0x42, 4);
        r.out(0x42, 0);
        r.at(3);
        assert!(!r.pit.out(2));
        r.out(0x61, 0);
        assert!(r.pit.out(2));
        r.at(50);
        r.out(0x61, 1);
        r.at(52);
        assert_eq!(r.latched(2), 2);
    }

    #[test]
    fn counter_latch_freezes_value_until_read() {
        let mut r = Rig::new();
        r.out(0x43, 0x34);
        r.out(0x40, 0x00);
        r.out(0x40, 0x80);
        r.at(0x10);
        r.out(0x43, 0x00); // latch
        r.at(0x50);
        r.out(0x43, 0x00); // ignored: already latched
        assert_eq!(r.inb(0x40), 0xf0);
        r.at(0x60);
        assert_eq!(r.inb(0x40), 0x7f, "MSB of the latched 0x7ff0");
        // Latch released: live reads now.
        assert_eq!(r.inb(0x40), 0xa0);
        assert_eq!(r.inb(0x40), 0x7f);
    }

    #[test]
    fn lsb_msb_access_modes_and_flip_flop() {
        let mut r = Rig::new();
        r.out(0x43, 0x14); // ch0 LSB only, mode 2
        r.out(0x40, 0x80);
        assert_eq!(r.latched(0) & 0xff, 0x80);
        r.out(0x43, 0x24); // MSB only
        r.out(0x40, 0x02);
        r.at(0);
        r.out(0x43, 0x00);
        assert_eq!(r.inb(0x40), 0x02, "MSB-only read of 0x200");
        // Live word reads alternate LSB, MSB.
        r.out(0x43, 0x34);
        r.out(0x40, 0x34);
        r.out(0x40, 0x12);
        assert_eq!(r.inb(0x40), 0x34);
        assert_eq!(r.inb(0x40), 0x12);
        assert_eq!(r.inb(0x40), 0x34);
    }

    #[test]
    fn bcd_counting() {
        let mut r = Rig::new();
        r.out(0x43, 0x35); // mode 2, BCD
        r.out(0x40, 0x00);
        r.out(0x40, 0x10); // 1000 decimal
        r.at(1);
        assert_eq!(r.latched(0), 0x0999);
        r.at(990);
        assert_eq!(r.latched(0), 0x0010);
        r.out(0x43, 0x31); // mode 0, BCD, count 0 = 10000
        r.out(0x40, 0);
        r.out(0x40, 0);
        r.at(990 + 1);
        assert_eq!(r.latched(0), 0x9999);
        r.at(990 + 10_000);
        assert!(r.pit.out(0));
    }

    #[test]
    fn read_back_status_and_count() {
        let mut r = Rig::new();
        r.out(0x43, 0xb0); // ch2 mode 0 LSB/MSB
        r.out(0x43, 0xe8); // read-back status only, ch2
        assert_eq!(r.inb(0x42), 0x70, "OUT 0, null count, RW 3, mode 0");
        r.out(0x61, 1);
        r.out(0x42, 0x10);
        r.out(0x42, 0x00);
        r.at(0x20);
        r.out(0x43, 0xc8); // count and status of ch2
        assert_eq!(r.inb(0x42), 0xb0, "status first: OUT high after 16 ticks");
        assert_eq!(r.inb(0x42), 0xf0);
        assert_eq!(r.inb(0x42), 0xff);
        // Multiple channels at once; a second read-back does not overwrite pending latches.
        r.out(0x43, 0xda); // count of ch0 and ch2... (bit 4 set: no status)
        r.at(0x30);
        r.out(0x43, 0xda);
        assert_eq!(r.inb(0x42), 0xf0, "first latch kept");
        assert_eq!(r.inb(0x42), 0xff);
    }

    #[test]
    fn status_reports_out_high_after_terminal_count() {
        let mut r = Rig::new();
        r.out(0x61, 1);
        r.out(0x43, 0xb0);
        r.out(0x42, 4);
        r.out(0x42, 0);
        r.at(10);
        r.out(0x43, 0xe8);
        assert_eq!(r.inb(0x42), 0xb0);
    }

    #[test]
    fn port_61_gate_speaker_refresh_and_out2() {
        let mut r = Rig::new();
        assert_eq!(r.inb(0x61) & 0x03, 0);
        r.out(0x61, 0x03);
        assert_eq!(r.inb(0x61) & 0x0f, 0x03);
        // Refresh toggles every 15.085 us.
        r.clock.set(0);
        let a = r.inb(0x61) & 0x10;
        r.clock.set(REFRESH_PERIOD_NS);
        let b = r.inb(0x61) & 0x10;
        r.clock.set(2 * REFRESH_PERIOD_NS);
        let c = r.inb(0x61) & 0x10;
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    /// Linux `pit_calibrate_tsc()`: channel 2, mode 0, count 1193182/20, gate high through
    /// port 0x61, then poll bit 5 of 0x61 until OUT2 goes high: 50 ms.
    #[test]
    fn linux_tsc_calibration_sequence() {
        let mut r = Rig::new();
        r.clock.set(123_456_789);
        let v = r.inb(0x61);
        r.out(0x61, (v & !0x02) | 0x01);
        r.out(0x43, 0xb0);
        let latch: u16 = (PIT_FREQ_HZ / 20) as u16;
        r.out(0x42, latch as u8);
        r.out(0x42, (latch >> 8) as u8);
        let start = r.clock.now_ns();
        let mut loops = 0u64;
        while r.inb(0x61) & 0x20 == 0 {
            r.clock.advance(1_000);
            loops += 1;
            assert!(loops < 1_000_000, "OUT2 never rose");
        }
        let took = r.clock.now_ns() - start;
        assert!((49_999_000..=50_001_000).contains(&took), "{took} ns");
    }

    /// Linux `quick_pit_calibrate()`: mode 0, count 0xffff, reading LSB then MSB: the MSB
    /// steps down once every 256 clocks.
    #[test]
    fn linux_quick_calibration_msb_steps() {
        let mut r = Rig::new();
        r.out(0x61, 0x01);
        r.out(0x43, 0xb0);
        r.out(0x42, 0xff);
        r.out(0x42, 0xff);
        let mut last_msb = 0xff;
        for step in 1..200u64 {
            r.at(step * 256);
            let _lsb = r.inb(0x42);
            let msb = r.inb(0x42);
            assert_eq!(msb, last_msb - 1, "step {step}");
            last_msb = msb;
        }
    }

    #[test]
    fn channel0_irq_edges_through_timer_queue() {
        let clock = Arc::new(ManualClock::new(0));
        let queue = TimerQueue::new(clock.clone());
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let irq = IrqLine::new(
            Arc::new(move |_gsi: u32, level: bool| {
                if level {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            }),
            0,
        );
        let pit = Pit::new_shared(clock.clone(), irq, &queue);
        // Reset state: mode 3, 65536 clocks: 18.2 Hz.
        assert_eq!(queue.next_deadline(), Some(ns_of_tick(0x10000)));
        // Program 1 kHz (Linux's PIT_LATCH for HZ=1000: 1193).
        pit.lock().write(0x43, 0, &[0x34]);
        pit.lock().write(0x40, 0, &[(1193 & 0xff) as u8]);
        pit.lock().write(0x40, 0, &[(1193 >> 8) as u8]);
        for _ in 0..100 {
            let d = queue.next_deadline().expect("armed");
            clock.set(d);
            queue.run_due();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 100);
        let elapsed = clock.now_ns();
        assert!((99_900_000..100_100_000).contains(&elapsed), "{elapsed}");
        // Late event thread: missed edges coalesce into one pulse.
        clock.advance(10_000_000);
        queue.run_due();
        assert_eq!(hits.load(Ordering::SeqCst), 101);
        // Mode 0 one-shot: one edge, then the timer stays disarmed.
        pit.lock().write(0x43, 0, &[0x30]);
        pit.lock().write(0x40, 0, &[100]);
        pit.lock().write(0x40, 0, &[0]);
        let d = queue.next_deadline().expect("armed");
        clock.set(d);
        queue.run_due();
        assert_eq!(hits.load(Ordering::SeqCst), 102);
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn tiny_counts_are_rate_limited() {
        let clock = Arc::new(ManualClock::new(0));
        let queue = TimerQueue::new(clock.clone());
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let irq = IrqLine::new(
            Arc::new(move |_gsi: u32, level: bool| {
                if level {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            }),
            0,
        );
        let pit = Pit::new_shared(clock.clone(), irq, &queue);
        pit.lock().write(0x43, 0, &[0x34]);
        pit.lock().write(0x40, 0, &[2]);
        pit.lock().write(0x40, 0, &[0]);
        let mut events = 0;
        while let Some(d) = queue.next_deadline().filter(|&d| d <= 1_000_000) {
            clock.set(d);
            queue.run_due();
            events += 1;
        }
        assert!(events <= 51, "{events} timer events in 1 ms");
        assert!(hits.load(Ordering::SeqCst) >= 49);
        // The counter itself still runs at full speed.
        let mut p = pit.lock();
        p.write(0x43, 0, &[0x00]);
        let mut lo = [0u8];
        let mut hi = [0u8];
        p.read(0x40, 0, &mut lo);
        p.read(0x40, 0, &mut hi);
        assert!((1..=2).contains(&u16::from_le_bytes([lo[0], hi[0]])));
    }

    proptest::proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((0u64..6, proptest::prelude::any::<u8>(), 0u64..2_000_000, 1usize..5), 0..300)) {
            let clock = Arc::new(ManualClock::new(0));
            let queue = TimerQueue::new(clock.clone());
            let pit = Pit::new_shared(clock.clone(), IrqLine::disconnected(), &queue);
            let ports = [0x40u64, 0x41, 0x42, 0x43, 0x61, 0x44];
            for (p, val, dt, len) in ops {
                clock.advance(dt);
                let port = ports[p as usize];
                if val & 1 == 0 {
                    let mut d = vec![0; len];
                    pit.lock().read(port, 0, &mut d);
                } else {
                    pit.lock().write(port, 0, &vec![val; len]);
                }
                queue.run_due();
                let _ = pit.lock().next_irq_deadline();
            }
        }
    }
}
