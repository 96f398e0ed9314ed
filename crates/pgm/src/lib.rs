//! pgm: the guest-physical address space.
//!
//! All RAM and ROM of a VM live in one host mapping, the *backing*. The guest-physical map
//! says, for each range of guest-physical addresses, where reads come from and where writes
//! go in the backing (they differ for ROM and for PAM-shadowed BIOS segments). Everything
//! not in the map is MMIO and belongs to iomio.
//!
//! The rest of the VMM never sees a pointer: it reads and writes through checked accessors,
//! by guest-physical address ([`GuestMemory::read`], [`GuestMemory::write`]) or, on the
//! interpreter's fast path, by backing offset after one translation
//! ([`GuestMemory::translate`], [`GuestMemory::backing_read`]). Only hypervisor backends get the
//! host address of the backing ([`GuestMemory::mappings`]) to hand it to the kernel.
//!
//! Every write through pgm checks whether the page holds code the interpreter decoded and,
//! if so, bumps that page's generation so the decoded-instruction cache drops it.
//!
//! Devices can own RAM the guest maps through a BAR ([`Mmio2`], VirtualBox's MMIO2): it has
//! backing offsets of its own above [`MMIO2_OFFSET_BASE`], and every write to it marks its
//! page in the region's dirty bitmap.

mod backing;
mod cache_hint;
mod layout;
mod mmio2;

pub use cache_hint::prefetch;
pub use layout::{Mapping, MemoryLayout, PamMode, ReadSource, WriteSink};
pub use mmio2::{Mmio2, MAX_MMIO2_REGIONS, MAX_MMIO2_SIZE, MMIO2_MAP_LIMIT, MMIO2_OFFSET_BASE};

use backing::Backing;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Size of a guest page.
pub const PAGE_SIZE: u64 = 4096;

/// Errors of the guest-physical map.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PgmError {
    /// The address is not RAM or ROM.
    #[error("guest-physical address {0:#x} is not backed by memory")]
    Unmapped(u64),
    /// The host could not reserve the memory.
    #[error("cannot allocate {size} bytes of guest memory: {reason}")]
    Alloc {
        /// Requested size.
        size: u64,
        /// OS error text.
        reason: String,
    },
    /// A layout that overlaps or does not fit.
    #[error("invalid memory layout: {0}")]
    Layout(String),
}

/// Result type of pgm.
pub type Result<T> = std::result::Result<T, PgmError>;

/// Where one guest-physical page is found in the backing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// Backing offset reads come from (None: reads hit the PCI bus, i.e. read all ones).
    pub read: Option<u64>,
    /// Backing offset writes go to (None: writes are dropped, e.g. ROM).
    pub write: Option<u64>,
}

/// One host mapping a hypervisor backend installs (a KVM memory slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMapping {
    /// Guest-physical start.
    pub gpa: u64,
    /// Length in bytes (page multiple).
    pub size: u64,
    /// Host virtual address of the first byte.
    pub host_addr: usize,
    /// When true the hypervisor must trap writes (they are handed to [`GuestMemory::write`]).
    pub readonly: bool,
    /// When true the hypervisor must log the pages the guest writes (MMIO2: the device needs
    /// them dirty) and answer [`GuestMemory::set_dirty_log_source`]'s hook; a hypervisor
    /// that cannot log maps the range read-only instead, so the writes trap.
    pub dirty_log: bool,
}

/// A hypervisor's write log: given a mapping's guest-physical start and size, the pages the
/// guest wrote there since the last call (bit `p % 64` of word `p / 64` is page `p`), or
/// None when it keeps no log for that range.
pub type DirtyLogFn = std::sync::Arc<dyn Fn(u64, u64) -> Option<Vec<u64>> + Send + Sync>;

/// Bit in a page state word: the interpreter decoded code from this page.
const WATCHED: u32 = 1 << 31;

/// The guest-physical address space of one VM.
pub struct GuestMemory {
    backing: Backing,
    layout: RwLock<MemoryLayout>,
    /// Bumped on every map change (PAM), so caches of translations know to flush.
    map_generation: AtomicU64,
    /// Per backing page: WATCHED bit + write generation.
    page_state: Box<[AtomicU32]>,
    /// Device-owned RAM regions.
    mmio2: mmio2::Regions,
    /// Where guest writes the hypervisor logged (instead of trapping) are fetched from.
    dirty_log: RwLock<Option<DirtyLogFn>>,
}

impl std::fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMemory")
            .field("backing_size", &self.backing.len())
            .finish()
    }
}

impl GuestMemory {
    /// Allocate the backing for `layout` and zero it.
    pub fn new(layout: MemoryLayout) -> Result<Self> {
        layout.validate()?;
        let size = layout.backing_size();
        let backing = Backing::new(size)?;
        let pages = size.div_ceil(PAGE_SIZE) as usize;
        let page_state = (0..pages).map(|_| AtomicU32::new(0)).collect();
        Ok(GuestMemory {
            backing,
            layout: RwLock::new(layout),
            map_generation: AtomicU64::new(0),
            page_state,
            mmio2: mmio2::Regions::new(),
            dirty_log: RwLock::new(None),
        })
    }

    /// Install (or remove) the hypervisor's write log for mappings with `dirty_log` set;
    /// [`Mmio2::take_dirty`] merges it. Without one, such mappings must trap writes.
    pub fn set_dirty_log_source(&self, source: Option<DirtyLogFn>) {
        *self.dirty_log.write() = source;
    }

    /// Size of the backing in bytes.
    pub fn backing_size(&self) -> u64 {
        self.backing.len()
    }

    /// Bytes of guest RAM (without ROM).
    pub fn ram_size(&self) -> u64 {
        self.layout.read().ram_size()
    }

    /// A copy of the current layout.
    pub fn layout(&self) -> MemoryLayout {
        self.layout.read().clone()
    }

    /// Current map generation (changes whenever PAM or ROM mapping changes).
    #[inline]
    pub fn map_generation(&self) -> u64 {
        self.map_generation.load(Ordering::Acquire)
    }

    /// Translate the page containing `gpa`.
    pub fn translate(&self, gpa: u64) -> Option<Translation> {
        self.layout.read().translate(gpa)
    }

    /// Change how a PAM segment of the BIOS area (0xC0000-0xFFFFF) is routed.
    pub fn set_pam(&self, start: u64, size: u64, mode: PamMode) -> Result<()> {
        let changed = self.layout.write().set_pam(start, size, mode)?;
        if changed {
            self.map_generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The mappings a hypervisor backend installs: every range readable by the guest, with
    /// its host address. Ranges whose writes go elsewhere than their reads (ROM, write-
    /// protected shadow RAM) are read-only and writes trap to the VMM.
    pub fn mappings(&self) -> Vec<HostMapping> {
        let base = self.backing.host_addr();
        self.layout
            .read()
            .mappings()
            .iter()
            .filter_map(|m| {
                let ReadSource::Backing(off) = m.read else {
                    return None;
                };
                if off >= MMIO2_OFFSET_BASE {
                    return Some(HostMapping {
                        gpa: m.gpa,
                        size: m.size,
                        host_addr: self.mmio2_host_addr(off)?,
                        readonly: false,
                        dirty_log: true,
                    });
                }
                Some(HostMapping {
                    gpa: m.gpa,
                    size: m.size,
                    host_addr: base + off as usize,
                    readonly: m.write != WriteSink::Backing(off),
                    dirty_log: false,
                })
            })
            .collect()
    }

    /// Read guest-physical memory. Fails on the first byte that is not RAM/ROM.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let layout = self.layout.read();
        let mut done = 0usize;
        while done < buf.len() {
            let addr = gpa
                .checked_add(done as u64)
                .ok_or(PgmError::Unmapped(gpa))?;
            let (m, off_in) = layout.find(addr).ok_or(PgmError::Unmapped(addr))?;
            let chunk = ((m.size - off_in) as usize).min(buf.len() - done);
            match m.read {
                ReadSource::Backing(off) => {
                    self.backing_read(off + off_in, &mut buf[done..done + chunk])?;
                }
                ReadSource::OpenBus => buf[done..done + chunk].fill(0xff),
            }
            done += chunk;
        }
        Ok(())
    }

    /// Write guest-physical memory. Writes to ROM are dropped, as on real hardware; writes
    /// outside RAM/ROM fail.
    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<()> {
        let layout = self.layout.read();
        let mut done = 0usize;
        while done < buf.len() {
            let addr = gpa
                .checked_add(done as u64)
                .ok_or(PgmError::Unmapped(gpa))?;
            let (m, off_in) = layout.find(addr).ok_or(PgmError::Unmapped(addr))?;
            let chunk = ((m.size - off_in) as usize).min(buf.len() - done);
            if let WriteSink::Backing(off) = m.write {
                self.backing_write(off + off_in, &buf[done..done + chunk])?;
            }
            done += chunk;
        }
        Ok(())
    }

    /// Read a little-endian u8/u16/u32/u64 value of `N` bytes.
    pub fn read_le<const N: usize>(&self, gpa: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b[..N])?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write the low `N` bytes of `value` little-endian.
    pub fn write_le<const N: usize>(&self, gpa: u64, value: u64) -> Result<()> {
        self.write(gpa, &value.to_le_bytes()[..N])
    }

    /// Read from the backing at `off` (after [`GuestMemory::translate`]).
    #[inline]
    pub fn backing_read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        if off >= MMIO2_OFFSET_BASE {
            return self.mmio2_read(off, buf);
        }
        self.backing.read(off, buf)
    }

    /// Write to the backing at `off`, invalidating decoded code on the touched pages (and,
    /// in an MMIO2 region, marking them dirty).
    #[inline]
    pub fn backing_write(&self, off: u64, buf: &[u8]) -> Result<()> {
        if off >= MMIO2_OFFSET_BASE {
            return self.mmio2_write(off, buf);
        }
        self.backing.write(off, buf)?;
        if !buf.is_empty() {
            let first = off / PAGE_SIZE;
            let last = (off + buf.len() as u64 - 1) / PAGE_SIZE;
            for p in first..=last {
                self.note_write(p as usize);
            }
        }
        Ok(())
    }

    /// Atomically compare-and-exchange `size` bytes (1, 2, 4, 8) at backing offset `off`.
    /// Returns the value found; the exchange happened when it equals `expected`. This is
    /// what LOCK-prefixed instructions use so SMP guests see atomic updates.
    pub fn backing_cmpxchg(&self, off: u64, size: u8, expected: u64, new: u64) -> Result<u64> {
        if off >= MMIO2_OFFSET_BASE {
            return self.mmio2_cmpxchg(off, size, expected, new);
        }
        let found = self.backing.cmpxchg(off, size, expected, new)?;
        if found == expected {
            self.note_write((off / PAGE_SIZE) as usize);
            let last = (off + u64::from(size) - 1) / PAGE_SIZE;
            if last != off / PAGE_SIZE {
                self.note_write(last as usize);
            }
        }
        Ok(found)
    }

    /// Mark the backing page at `off` as holding decoded code; returns its write generation.
    /// Any later write to the page changes the generation.
    pub fn watch_code_page(&self, off: u64) -> u32 {
        let Some(s) = self.page_state_at(off) else {
            return 0;
        };
        s.fetch_or(WATCHED, Ordering::AcqRel) & !WATCHED
    }

    /// The write generation of the backing page at `off`.
    #[inline]
    pub fn code_page_generation(&self, off: u64) -> u32 {
        self.page_state_at(off)
            .map(|s| s.load(Ordering::Acquire) & !WATCHED)
            .unwrap_or(0)
    }

    /// The state word of the backing page at `off` (RAM/ROM or MMIO2).
    #[inline]
    fn page_state_at(&self, off: u64) -> Option<&AtomicU32> {
        match self.page_state.get((off / PAGE_SIZE) as usize) {
            Some(s) => Some(s),
            None => self.mmio2_page_state(off),
        }
    }

    #[inline]
    fn note_write(&self, page: usize) {
        if let Some(s) = self.page_state.get(page) {
            note_write_state(s);
        }
    }

    /// Copy a file image into guest memory at `gpa`, bypassing ROM write protection (used
    /// to load firmware and kernels before the VM starts).
    pub fn load_image(&self, gpa: u64, data: &[u8]) -> Result<()> {
        let layout = self.layout.read();
        let mut done = 0usize;
        while done < data.len() {
            let addr = gpa + done as u64;
            let (m, off_in) = layout.find(addr).ok_or(PgmError::Unmapped(addr))?;
            let chunk = ((m.size - off_in) as usize).min(data.len() - done);
            let target = match (m.read, m.write) {
                (ReadSource::Backing(o), _) => o,
                (_, WriteSink::Backing(o)) => o,
                _ => return Err(PgmError::Unmapped(addr)),
            };
            self.backing_write(target + off_in, &data[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }
}

/// A write hit the page whose state word is `s`: if the interpreter decoded code from it,
/// clear WATCHED and bump the generation in one step.
#[inline]
pub(crate) fn note_write_state(s: &AtomicU32) {
    if s.load(Ordering::Relaxed) & WATCHED != 0 {
        let _ = s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(((v & !WATCHED).wrapping_add(1)) & !WATCHED)
        });
    }
}

#[cfg(test)]
mod tests;
