//! The virtual clock devices keep time with. Injected so device models are testable with a
//! clock the test moves by hand.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Monotonic virtual time in nanoseconds since the VM was created.
pub trait Clock: Send + Sync {
    /// Now, in ns.
    fn now_ns(&self) -> u64;
}

/// Host-monotonic virtual clock that can be paused (a paused VM's devices see no time pass).
pub struct VirtualClock {
    start: Instant,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualClock {
    /// A running clock at 0.
    pub fn new() -> Self {
        VirtualClock {
            start: Instant::now(),
            state: Mutex::new((None, 0)),
        }
    }

    /// Stop time.
    pub fn pause(&self) {
        let mut s = self.state.lock();
        if s.0.is_none() {
            s.0 = Some(Instant::now());
        }
    }

    /// Let time run again; the paused interval is not counted.
    pub fn resume(&self) {
        let mut s = self.state.lock();
        if let Some(p) = s.0.take() {
            s.1 += p.elapsed().as_nanos() as u64;
        }
    }

    /// Host instant at which virtual time reaches `ns` (while running).
    pub fn host_instant(&self, ns: u64) -> Instant {
        let s = self.state.lock();
        self.start + std::time::Duration::from_nanos(ns.saturating_add(s.1))
    }
}

impl Clock for VirtualClock {
    fn now_ns(&self) -> u64 {
        let s = self.state.lock();
        let at = s.0.unwrap_or_else(Instant::now);
        (at.duration_since(self.start).as_nanos() as u64).saturating_sub(s.1)
    }
}

/// A clock for tests: time moves only when the test says so.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// At time `ns`.
    pub fn new(ns: u64) -> Self {
        ManualClock(AtomicU64::new(ns))
    }
    /// Move forward.
    pub fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
    /// Set.
    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_time_does_not_count() {
        let c = VirtualClock::new();
        c.pause();
        let a = c.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.now_ns(), a);
        c.resume();
        assert!(c.now_ns() >= a && c.now_ns() < a + 15_000_000);
    }
}
