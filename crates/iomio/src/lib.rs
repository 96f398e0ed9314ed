//! iomio: dispatch of port I/O and MMIO accesses to the device that registered the range.
//!
//! A [`Bus`] is a sorted set of non-overlapping ranges, each owned by a device behind its own
//! lock (VirtualBox: a per-device critical section), found by binary search. The same bus
//! type serves the 64 KiB port space and the guest-physical MMIO space.

use parking_lot::{Mutex, RwLock};
use std::sync::Arc;

/// A device on a bus. `addr` is the absolute address of the access, `offset` its distance
/// from the base of the range the device registered (a device may register several ranges).
pub trait BusDevice: Send {
    /// Handle a read; fill `data` (1, 2, 4 or 8 bytes, up to 16 for SSE MMIO).
    fn read(&mut self, addr: u64, offset: u64, data: &mut [u8]);
    /// Handle a write.
    fn write(&mut self, addr: u64, offset: u64, data: &[u8]);
}

/// A device shared between the buses and vCPU threads.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Registration errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already registered.
    #[error("range {base:#x}+{len:#x} ({name}) overlaps {other}")]
    Overlap {
        /// Base of the new range.
        base: u64,
        /// Length of the new range.
        len: u64,
        /// Name of the new range.
        name: String,
        /// Name of the range it collides with.
        other: String,
    },
    /// Zero length or wrapping range.
    #[error("range {base:#x}+{len:#x} is empty or wraps")]
    Invalid {
        /// Base.
        base: u64,
        /// Length.
        len: u64,
    },
}

#[derive(Clone)]
struct Range {
    base: u64,
    len: u64,
    name: Arc<str>,
    dev: SharedDevice,
}

/// A port-I/O or MMIO bus.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<Vec<Range>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.ranges.read();
        f.debug_list()
            .entries(r.iter().map(|r| (r.base, r.len, r.name.clone())))
            .finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `[base, base+len)` for `dev`.
    pub fn insert(
        &self,
        base: u64,
        len: u64,
        name: &str,
        dev: SharedDevice,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::Invalid { base, len })?;
        let mut ranges = self.ranges.write();
        let i = ranges.partition_point(|r| r.base < base);
        let clash = [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| ranges.get(j))
            .find(|r| r.base < end && base < r.base + r.len);
        if let Some(other) = clash {
            return Err(BusError::Overlap {
                base,
                len,
                name: name.to_string(),
                other: format!("{} at {:#x}+{:#x}", other.name, other.base, other.len),
            });
        }
        ranges.insert(
            i,
            Range {
                base,
                len,
                name: name.into(),
                dev,
            },
        );
        Ok(())
    }

    /// Remove the range starting at `base`; returns true when there was one.
    pub fn remove(&self, base: u64) -> bool {
        let mut ranges = self.ranges.write();
        match ranges.binary_search_by_key(&base, |r| r.base) {
            Ok(i) => {
                ranges.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    fn lookup(&self, addr: u64) -> Option<(u64, SharedDevice)> {
        let ranges = self.ranges.read();
        let i = ranges.partition_point(|r| r.base <= addr).checked_sub(1)?;
        let r = &ranges[i];
        (addr - r.base < r.len).then(|| (r.base, r.dev.clone()))
    }

    /// True when some device claims `addr`.
    pub fn is_claimed(&self, addr: u64) -> bool {
        self.lookup(addr).is_some()
    }

    /// Name of the range holding `addr`.
    pub fn name_at(&self, addr: u64) -> Option<Arc<str>> {
        let ranges = self.ranges.read();
        let i = ranges.partition_point(|r| r.base <= addr).checked_sub(1)?;
        let r = &ranges[i];
        (addr - r.base < r.len).then(|| r.name.clone())
    }

    /// Dispatch a read. Unclaimed addresses read as all ones (floating bus); returns whether
    /// a device answered.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.lookup(addr) {
            Some((base, dev)) => {
                dev.lock().read(addr, addr - base, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatch a write. Unclaimed writes are dropped; returns whether a device took it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.lookup(addr) {
            Some((base, dev)) => {
                dev.lock().write(addr, addr - base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Reg {
        last: Vec<(u64, u64, Vec<u8>)>,
    }
    impl BusDevice for Reg {
        fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, addr: u64, offset: u64, data: &[u8]) {
            self.last.push((addr, offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatch_by_range() {
        let bus = Bus::new();
        let a = Arc::new(Mutex::new(Reg::default()));
        bus.insert(0x3f8, 8, "uart", a.clone()).unwrap();
        bus.insert(0x20, 2, "pic", a.clone()).unwrap();
        let mut d = [0u8; 1];
        assert!(bus.read(0x3fa, &mut d));
        assert_eq!(d, [2]);
        assert!(!bus.read(0x400, &mut d));
        assert_eq!(d, [0xff]);
        assert!(bus.write(0x21, &[7]));
        assert_eq!(a.lock().last, vec![(0x21, 1, vec![7])]);
        assert!(!bus.write(0x22, &[7]));
    }

    #[test]
    fn overlaps_are_refused() {
        let bus = Bus::new();
        let a = Arc::new(Mutex::new(Reg::default()));
        bus.insert(0x100, 0x10, "a", a.clone()).unwrap();
        assert!(bus.insert(0x10f, 1, "b", a.clone()).is_err());
        assert!(bus.insert(0xf8, 0x9, "c", a.clone()).is_err());
        assert!(bus.insert(0xf8, 0x8, "d", a.clone()).is_ok());
        assert!(bus.insert(0x110, 0, "e", a.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, "f", a.clone()).is_err());
        assert!(bus.remove(0x100));
        assert!(bus.insert(0x10f, 1, "b", a).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn lookup_matches_linear_scan(ranges in proptest::collection::vec((0u64..1000, 1u64..50), 0..20), probe in 0u64..1100) {
            let bus = Bus::new();
            let dev = Arc::new(Mutex::new(Reg::default()));
            let mut accepted = Vec::new();
            for (b, l) in ranges {
                if bus.insert(b, l, "r", dev.clone()).is_ok() {
                    accepted.push((b, l));
                }
            }
            let expect = accepted.iter().any(|&(b, l)| probe >= b && probe < b + l);
            proptest::prop_assert_eq!(bus.is_claimed(probe), expect);
        }
    }
}
