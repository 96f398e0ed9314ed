//! The VMMDev event and interrupt protocol (interface 1.4) as a pure state machine.
//!
//! Host events accumulate in `host_events`; the guest chooses which it wants with a filter.
//! INTA# is asserted (and `VMMDevMemory.fHaveEvents` set) when a wanted event becomes
//! pending after the guest reported itself; acknowledging returns the wanted pending
//! events, clears exactly those and lowers the line. A filter change while wanted events
//! are still unacknowledged is staged until the next acknowledge, as VirtualBox does, so a
//! guest never loses an event it was about to read.

use super::consts::event;

/// Event state of one VMMDev.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    /// Pending host events.
    pub host_events: u32,
    /// Events the guest wants.
    pub filter: u32,
    /// A filter change waiting for the next acknowledge.
    pub staged_filter: Option<u32>,
    /// The guest passed ReportGuestInfo (interface 1.4).
    pub additions_ok: bool,
    /// INTA# level, mirrored in `fHaveEvents`.
    pub irq: bool,
}

impl Events {
    fn wanted(&self) -> u32 {
        self.host_events & self.filter
    }

    fn maybe_raise(&mut self) {
        if self.additions_ok && self.wanted() != 0 {
            self.irq = true;
        }
    }

    /// The host raises `bits`.
    pub fn raise(&mut self, bits: u32) {
        let had = self.wanted() != 0;
        self.host_events |= bits & event::VALID_MASK;
        if !had {
            self.maybe_raise();
        }
    }

    /// AcknowledgeEvents: the wanted pending events, now cleared.
    pub fn acknowledge(&mut self) -> u32 {
        if let Some(f) = self.staged_filter.take() {
            self.filter = f;
        }
        let ev = self.wanted();
        self.host_events &= !ev;
        self.irq = false;
        ev
    }

    /// CtlGuestFilterMask. Bit 1 (HGCM) cannot be removed once set.
    pub fn change_filter(&mut self, or_mask: u32, not_mask: u32) {
        let not_mask = not_mask & !event::HGCM;
        if self.wanted() != 0 {
            let base = self.staged_filter.unwrap_or(self.filter);
            self.staged_filter = Some((base | or_mask) & !not_mask & event::VALID_MASK);
        } else {
            self.filter = (self.filter | or_mask) & !not_mask & event::VALID_MASK;
            self.maybe_raise();
        }
    }

    /// The first HGCM request forces the HGCM event into the filter.
    pub fn force_hgcm(&mut self) {
        if self.filter & event::HGCM == 0 {
            self.filter |= event::HGCM;
            self.maybe_raise();
        }
        if let Some(f) = self.staged_filter.as_mut() {
            *f |= event::HGCM;
        }
    }

    /// A successful ReportGuestInfo (VirtualBox lowers the line there).
    pub fn guest_reported(&mut self) {
        self.additions_ok = true;
        self.irq = false;
    }

    /// System reset: only a pending display-change request survives.
    pub fn reset(&mut self) {
        self.host_events &= event::DISPLAY_CHANGE_REQUEST;
        self.filter = 0;
        self.staged_filter = None;
        self.additions_ok = false;
        self.irq = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(filter: u32) -> Events {
        let mut e = Events::default();
        e.guest_reported();
        e.change_filter(filter, 0);
        e
    }

    #[test]
    fn events_before_report_fire_once_the_filter_allows() {
        let mut e = Events::default();
        e.raise(event::MOUSE_POSITION_CHANGED);
        assert!(!e.irq);
        e.guest_reported();
        assert!(!e.irq);
        e.change_filter(0x202, 0);
        assert!(e.irq);
        assert_eq!(e.acknowledge(), event::MOUSE_POSITION_CHANGED);
        assert!(!e.irq);
        assert_eq!(e.acknowledge(), 0);
    }

    #[test]
    fn unfiltered_events_stay_pending() {
        let mut e = reported(event::HGCM);
        e.raise(event::DISPLAY_CHANGE_REQUEST);
        assert!(!e.irq);
        e.raise(event::HGCM);
        assert!(e.irq);
        assert_eq!(e.acknowledge(), event::HGCM);
        assert_eq!(e.host_events, event::DISPLAY_CHANGE_REQUEST);
    }

    #[test]
    fn filter_change_with_pending_events_is_staged() {
        let mut e = reported(event::HGCM | event::MOUSE_POSITION_CHANGED);
        e.raise(event::MOUSE_POSITION_CHANGED);
        e.change_filter(0, event::MOUSE_POSITION_CHANGED);
        // Still delivered: the removal applies at the next acknowledge... which reads with
        // the new filter, so the pending mouse event is not returned but stays pending.
        assert_eq!(e.filter, event::HGCM | event::MOUSE_POSITION_CHANGED);
        assert_eq!(e.acknowledge(), 0);
        assert_eq!(e.filter, event::HGCM);
        assert_eq!(e.host_events, event::MOUSE_POSITION_CHANGED);
    }

    #[test]
    fn hgcm_bit_cannot_be_removed() {
        let mut e = reported(event::HGCM);
        e.change_filter(0, u32::MAX);
        assert_eq!(e.filter, event::HGCM);
    }

    #[test]
    fn reset_keeps_only_display_change() {
        let mut e = reported(0x7ff);
        e.raise(0x7ff);
        e.reset();
        assert_eq!(e.host_events, event::DISPLAY_CHANGE_REQUEST);
        assert_eq!(e.filter, 0);
        assert!(!e.irq && !e.additions_ok);
    }

    #[test]
    fn second_raise_of_pending_event_does_not_reassert_after_ack() {
        let mut e = reported(event::HGCM);
        e.raise(event::HGCM);
        e.raise(event::HGCM);
        assert_eq!(e.acknowledge(), event::HGCM);
        assert!(!e.irq);
        e.raise(event::HGCM);
        assert!(e.irq);
    }
}
