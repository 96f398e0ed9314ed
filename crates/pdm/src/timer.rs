//! Timers on the virtual clock. Devices arm a deadline; the VMM's event thread sleeps until
//! the earliest one and runs the callbacks ([`TimerQueue::run_due`]). A callback runs
//! without the queue lock held, so it may re-arm its own timer.
//!
//! Arming wakes the event thread only when the new deadline is earlier than the time it
//! sleeps until. Guests re-arm constantly (Linux writes its local APIC timer, and every
//! LAPIC write re-derives the deadline), and a futex wake plus a context switch per write
//! cost the vCPU more than the write itself. A later or removed deadline needs no wake-up:
//! the event thread wakes at the old time, finds nothing due and sleeps again.

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
    slots: Mutex<Slots>,
    wake: Condvar,
}

/// The timers and, while the event thread is blocked in [`TimerQueue::wait`], the virtual
/// time it sleeps until.
#[derive(Default)]
struct Slots {
    timers: Vec<Slot>,
    sleep_until: Option<u64>,
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
            slots: Mutex::new(Slots::default()),
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
        slots.timers.push(Slot {
            deadline: None,
            callback: Some(Box::new(callback)),
        });
        Timer {
            queue: self.clone(),
            id: slots.timers.len() - 1,
        }
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.slots
            .lock()
            .timers
            .iter()
            .filter_map(|s| s.deadline)
            .min()
    }

    /// Run every timer whose deadline has passed; returns how many ran.
    pub fn run_due(&self) -> usize {
        let now = self.clock.now_ns();
        let mut due: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        {
            let mut slots = self.slots.lock();
            for (i, s) in slots.timers.iter_mut().enumerate() {
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
            let cb = self.slots.lock().timers[id].callback.take();
            if let Some(mut cb) = cb {
                cb(now);
                ran += 1;
                self.slots.lock().timers[id].callback = Some(cb);
            }
        }
        ran
    }

    /// Block the calling (event) thread until the earliest deadline passes, a timer is armed
    /// or `max` elapses. Uses host time derived from the clock's rate (1 ns = 1 ns).
    pub fn wait(&self, max: std::time::Duration) {
        let mut slots = self.slots.lock();
        let now = self.clock.now_ns();
        let next = slots.timers.iter().filter_map(|s| s.deadline).min();
        let dur = match next {
            Some(d) if d <= now => return,
            Some(d) => std::time::Duration::from_nanos(d - now).min(max),
            None => max,
        };
        slots.sleep_until = Some(now.saturating_add(dur.as_nanos() as u64));
        self.wake.wait_for(&mut slots, dur);
        slots.sleep_until = None;
    }

    fn arm(&self, id: usize, deadline: Option<u64>) {
        let mut slots = self.slots.lock();
        slots.timers[id].deadline = deadline;
        // Not sleeping: the event thread looks at the deadlines before it next sleeps.
        if let (Some(d), Some(until)) = (deadline, slots.sleep_until) {
            if d < until {
                self.wake.notify_all();
            }
        }
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
        self.queue.slots.lock().timers[self.id].deadline
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

    /// An event thread in `q.wait` (up to 30 s), once it sleeps; it returns how long it slept.
    fn asleep_in_wait(q: &Arc<TimerQueue>) -> std::thread::JoinHandle<std::time::Duration> {
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            q2.wait(std::time::Duration::from_secs(30));
            start.elapsed()
        });
        while q.slots.lock().sleep_until.is_none() {
            std::thread::yield_now();
        }
        waiter
    }

    #[test]
    fn an_earlier_deadline_wakes_the_sleeping_event_thread() {
        let clock = Arc::new(ManualClock::new(0));
        let q = TimerQueue::new(clock.clone());
        let t = q.create(|_| {});
        let waiter = asleep_in_wait(&q);
        // Arm while the event thread sleeps: it must come back long before 30 s.
        t.arm_at(1_000);
        let slept = waiter.join().unwrap();
        assert!(
            slept < std::time::Duration::from_secs(10),
            "slept {slept:?}"
        );
        assert_eq!(q.slots.lock().sleep_until, None);
    }

    #[test]
    fn a_later_deadline_leaves_the_event_thread_asleep_until_its_own() {
        let clock = Arc::new(ManualClock::new(0));
        let q = TimerQueue::new(clock.clone());
        let early = q.create(|_| {});
        let late = q.create(|_| {});
        early.arm_at(200_000_000); // 200 ms
        let waiter = asleep_in_wait(&q);
        assert_eq!(q.slots.lock().sleep_until, Some(200_000_000));
        late.arm_at(5_000_000_000);
        let slept = waiter.join().unwrap();
        assert!(
            slept >= std::time::Duration::from_millis(150),
            "slept {slept:?}"
        );
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
