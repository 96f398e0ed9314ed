//! Timers on the virtual clock. Devices arm a deadline; the VMM's event thread sleeps until
//! the earliest one and runs the callbacks ([`TimerQueue::run_due`]). A callback runs
//! without the queue lock held, so it may re-arm its own timer.

use crate::clock::Clock;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::Arc;

type Callback = Box<dyn FnMut(u64) + Send>;

struct Slot {
    deadline: Option<u64>,
    callback: Option<Callback>,
}

/// The set of timers of one VM.
pub struct TimerQueue {
    clock: Arc<dyn Clock>,
    slots: Mutex<Vec<Slot>>,
    wake: Condvar,
}

/// A handle to one timer.
#[derive(Clone)]
pub struct Timer {
    queue: Arc<TimerQueue>,
    id: usize,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Timer({})", self.id)
    }
}

impl TimerQueue {
    /// A queue on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(TimerQueue {
            clock,
            slots: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        })
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Create a timer; `callback(now_ns)` runs on the event thread when it expires.
    pub fn create(self: &Arc<Self>, callback: impl FnMut(u64) + Send + 'static) -> Timer {
        let mut slots = self.slots.lock();
        slots.push(Slot {
            deadline: None,
            callback: Some(Box::new(callback)),
        });
        Timer {
            queue: self.clone(),
            id: slots.len() - 1,
        }
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.slots.lock().iter().filter_map(|s| s.deadline).min()
    }

    /// Run every timer whose deadline has passed; returns how many ran.
    pub fn run_due(&self) -> usize {
        let now = self.clock.now_ns();
        let mut due: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        {
            let mut slots = self.slots.lock();
            for (i, s) in slots.iter_mut().enumerate() {
                if let Some(d) = s.deadline {
                    if d <= now {
                        s.deadline = None;
                        due.entry(d).or_default().push(i);
                    }
                }
            }
        }
        let mut ran = 0;
        for id in due.into_values().flatten() {
            let cb = self.slots.lock()[id].callback.take();
            if let Some(mut cb) = cb {
                cb(now);
                ran += 1;
                self.slots.lock()[id].callback = Some(cb);
            }
        }
        ran
    }

    /// Block the calling (event) thread until the earliest deadline passes, a timer is armed
    /// or `max` elapses. Uses host time derived from the clock's rate (1 ns = 1 ns).
    pub fn wait(&self, max: std::time::Duration) {
        let mut slots = self.slots.lock();
        let now = self.clock.now_ns();
        let next = slots.iter().filter_map(|s| s.deadline).min();
        let dur = match next {
            Some(d) if d <= now => return,
            Some(d) => std::time::Duration::from_nanos(d - now).min(max),
            None => max,
        };
        self.wake.wait_for(&mut slots, dur);
    }

    fn arm(&self, id: usize, deadline: Option<u64>) {
        let mut slots = self.slots.lock();
        slots[id].deadline = deadline;
        self.wake.notify_all();
    }
}

impl Timer {
    /// Fire at virtual time `deadline_ns` (replaces an earlier deadline).
    pub fn arm_at(&self, deadline_ns: u64) {
        self.queue.arm(self.id, Some(deadline_ns));
    }

    /// Fire `delta_ns` from now.
    pub fn arm_in(&self, delta_ns: u64) {
        let now = self.queue.clock.now_ns();
        self.arm_at(now.saturating_add(delta_ns));
    }

    /// Cancel.
    pub fn disarm(&self) {
        self.queue.arm(self.id, None);
    }

    /// The armed deadline.
    pub fn deadline(&self) -> Option<u64> {
        self.queue.slots.lock()[self.id].deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn timers_fire_in_order_and_rearm() {
        let clock = Arc::new(ManualClock::new(0));
        let q = TimerQueue::new(clock.clone());
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let t = q.create(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        t.arm_at(100);
        assert_eq!(q.next_deadline(), Some(100));
        clock.set(99);
        assert_eq!(q.run_due(), 0);
        clock.set(100);
        assert_eq!(q.run_due(), 1);
        assert_eq!(q.run_due(), 0, "one-shot");
        t.arm_in(50);
        t.disarm();
        clock.set(1000);
        assert_eq!(q.run_due(), 0);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn callback_can_rearm_itself() {
        let clock = Arc::new(ManualClock::new(0));
        let q = TimerQueue::new(clock.clone());
        let slot: Arc<parking_lot::Mutex<Option<Timer>>> = Arc::default();
        let s2 = slot.clone();
        let t = q.create(move |now| {
            if let Some(t) = s2.lock().as_ref() {
                t.arm_at(now + 10);
            }
        });
        *slot.lock() = Some(t.clone());
        t.arm_at(5);
        clock.set(5);
        q.run_due();
        assert_eq!(t.deadline(), Some(15));
    }
}
