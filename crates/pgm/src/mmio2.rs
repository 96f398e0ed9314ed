//! Device-owned RAM in the guest-physical map (VirtualBox's "MMIO2"): memory a device owns,
//! such as a graphics adapter's video memory, that the guest reaches through a PCI BAR like
//! plain RAM (no exit per access) wherever the BAR is programmed, and whose written pages
//! are recorded in a dirty bitmap the device reads and clears.
//!
//! Each region has its own host mapping, addressed through the same *backing offsets* as RAM
//! and ROM: region `i` starts at [`MMIO2_OFFSET_BASE`] + `i` << 40, far above any RAM. So the
//! interpreter's software TLB, which caches backing offsets, needs no change: every write it
//! makes goes through [`GuestMemory::backing_write`](crate::GuestMemory::backing_write),
//! which marks the page dirty, on the TLB-hit fast path too.
//!
//! Dirty bits are set with an atomic OR *after* the bytes are stored and taken with an
//! atomic swap *before* the device reads the bytes: a write whose bit was taken early sets
//! it again for the next round, so no write is ever lost between read and clear.
//!
//! A locked OR on every guest store was the biggest cost of a framebuffer-drawing guest
//! (measured: a third of the vCPU thread's time). So a writer first looks at the bit with a
//! plain load and skips the OR when it is already set. On its own that can lose a write:
//! the CPU may perform the load before its store is visible, see the bit the reader is about
//! to take, and skip, while the reader then reads the bytes without the store. The reader
//! closes that window with an asymmetric fence: after taking non-zero bits it runs
//! `membarrier(2)`, a full barrier on every thread of the process, before it reads the
//! bytes. Where the kernel cannot do that, writers always OR.

use crate::backing::Backing;
use crate::{GuestMemory, PgmError, Result, PAGE_SIZE};
use parking_lot::Mutex;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Backing offsets at and above this belong to MMIO2 regions (RAM and ROM lie below).
pub const MMIO2_OFFSET_BASE: u64 = 1 << 52;
/// Each region owns 1 TiB of backing offsets.
const SLOT_SHIFT: u32 = 40;
/// Largest MMIO2 region.
pub const MAX_MMIO2_SIZE: u64 = 1 << SLOT_SHIFT;
/// How many MMIO2 regions one VM can have.
pub const MAX_MMIO2_REGIONS: usize = 16;
/// MMIO2 is never mapped at or above this guest-physical address: the fixed platform
/// devices (IOAPIC, HPET, local APIC) and the firmware live there, and so do the pages a
/// hypervisor reserves for itself. A BAR programmed there stays MMIO.
pub const MMIO2_MAP_LIMIT: u64 = 0xfec0_0000;

/// One region: its memory, per-page code-watch state (as RAM has) and dirty bits.
pub(crate) struct Region {
    pub(crate) name: String,
    pub(crate) backing: Backing,
    /// Bytes (page multiple).
    pub(crate) size: u64,
    /// Per page: WATCHED bit + write generation (see `GuestMemory::watch_code_page`).
    pub(crate) page_state: Box<[AtomicU32]>,
    /// One bit per page written since the device last took the bits.
    pub(crate) dirty: Box<[AtomicU64]>,
    /// Writers may skip the OR when the bit is set (the reader fences with membarrier).
    check_first: AtomicBool,
}

impl Region {
    /// Mark the pages of `[inner, inner + len)` written (after the bytes were stored).
    #[inline]
    pub(crate) fn mark(&self, inner: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = inner / PAGE_SIZE;
        let last = (inner + len - 1) / PAGE_SIZE;
        let check_first = self.check_first.load(Ordering::Relaxed);
        for p in first..=last {
            let Some(w) = self.dirty.get((p / 64) as usize) else {
                return;
            };
            let bit = 1u64 << (p % 64);
            if check_first {
                // Keep the compiler from hoisting the check above the store; the CPU's
                // reordering is the reader's barrier's business (see the module doc).
                compiler_fence(Ordering::SeqCst);
                if w.load(Ordering::Relaxed) & bit != 0 {
                    continue;
                }
            }
            // Release: whoever swaps the bit out sees the bytes stored before.
            w.fetch_or(bit, Ordering::Release);
        }
    }

    /// Take the dirty bits (see [`Mmio2::take_dirty`]).
    fn take(&self) -> Vec<u64> {
        let mut any = false;
        let words: Vec<u64> = self
            .dirty
            .iter()
            .map(|w| {
                // A plain load first: most words are clean and need no write.
                if w.load(Ordering::Relaxed) == 0 {
                    0
                } else {
                    let v = w.swap(0, Ordering::AcqRel);
                    any |= v != 0;
                    v
                }
            })
            .collect();
        if any && self.check_first.load(Ordering::Relaxed) && !crate::backing::process_barrier() {
            // Writers may have skipped bits we took without their bytes being visible yet:
            // stop skipping, and redraw everything once.
            self.check_first.store(false, Ordering::Relaxed);
            self.mark(0, self.size);
        }
        words
    }
}

/// Whether this process can use the asymmetric fence (registered once).
fn barrier_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(crate::backing::process_barrier_register)
}

/// The regions of one VM: a fixed table so lookups take no lock.
pub(crate) struct Regions {
    slots: [OnceLock<Region>; MAX_MMIO2_REGIONS],
    count: Mutex<usize>,
}

impl Regions {
    pub(crate) fn new() -> Self {
        Regions {
            slots: std::array::from_fn(|_| OnceLock::new()),
            count: Mutex::new(0),
        }
    }

    /// The region holding backing offset `off` (at or above [`MMIO2_OFFSET_BASE`]) and the
    /// offset inside it.
    #[inline]
    pub(crate) fn find(&self, off: u64) -> Option<(&Region, u64)> {
        let rel = off.checked_sub(MMIO2_OFFSET_BASE)?;
        let r = self.slots.get((rel >> SLOT_SHIFT) as usize)?.get()?;
        Some((r, rel & (MAX_MMIO2_SIZE - 1)))
    }

    /// The region of slot `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&Region> {
        self.slots.get(index)?.get()
    }

    fn register(&self, name: &str, size: u64) -> Result<usize> {
        let size = size.next_multiple_of(PAGE_SIZE);
        if size == 0 || size > MAX_MMIO2_SIZE {
            return Err(PgmError::Layout(format!(
                "MMIO2 region {name:?} of {size:#x} bytes is empty or too large"
            )));
        }
        let mut count = self.count.lock();
        let index = *count;
        let slot = self.slots.get(index).ok_or_else(|| {
            PgmError::Layout(format!("more than {MAX_MMIO2_REGIONS} MMIO2 regions"))
        })?;
        let pages = size / PAGE_SIZE;
        let region = Region {
            name: name.to_string(),
            backing: Backing::new(size)?,
            size,
            page_state: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            dirty: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            check_first: AtomicBool::new(barrier_available()),
        };
        slot.set(region)
            .map_err(|_| PgmError::Layout("MMIO2 slot taken twice".into()))?;
        *count += 1;
        Ok(index)
    }
}

/// Backing offset of the first byte of region `index`.
fn region_base(index: usize) -> u64 {
    MMIO2_OFFSET_BASE + ((index as u64) << SLOT_SHIFT)
}

/// A device's handle on its MMIO2 region: read and write it (device-side writes are marked
/// dirty like the guest's), map it where the guest programmed the BAR, and take the dirty
/// pages.
#[derive(Clone)]
pub struct Mmio2 {
    mem: Arc<GuestMemory>,
    index: usize,
    size: u64,
}

impl std::fmt::Debug for Mmio2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmio2")
            .field("name", &self.region().name)
            .field("size", &self.size)
            .field("gpa", &self.mapped_at())
            .finish()
    }
}

impl GuestMemory {
    /// Create a device-owned RAM region of `size` bytes (rounded up to pages), zeroed,
    /// all pages dirty, not mapped into the guest yet.
    pub fn register_mmio2(self: &Arc<Self>, name: &str, size: u64) -> Result<Mmio2> {
        let index = self.mmio2.register(name, size)?;
        let m = Mmio2 {
            mem: self.clone(),
            index,
            size: size.next_multiple_of(PAGE_SIZE),
        };
        m.mark_all_dirty();
        Ok(m)
    }
}

impl Mmio2 {
    /// A region in a guest memory of its own (no guest maps it): for devices built
    /// without a VM, as in unit tests.
    pub fn standalone(name: &str, size: u64) -> Result<Mmio2> {
        let layout = crate::MemoryLayout::pc(crate::layout::ONE_MIB)?;
        Arc::new(GuestMemory::new(layout)?).register_mmio2(name, size)
    }

    fn region(&self) -> &Region {
        // The slot was filled before this handle existed and is never emptied.
        self.mem
            .mmio2
            .get(self.index)
            .expect("an MMIO2 handle's region exists")
    }

    /// Size in bytes (a page multiple).
    pub fn len(&self) -> u64 {
        self.size
    }

    /// True for an empty region (never: regions are at least one page).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The guest memory the region belongs to.
    pub fn memory(&self) -> &Arc<GuestMemory> {
        &self.mem
    }

    /// Backing offset of the region's first byte (what [`GuestMemory::translate`] gives
    /// for the first page while it is mapped).
    pub fn backing_offset(&self) -> u64 {
        region_base(self.index)
    }

    fn check(&self, off: u64, len: usize) -> Result<u64> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(self.backing_offset() + off),
            _ => Err(PgmError::Unmapped(off)),
        }
    }

    /// Read `buf.len()` bytes at `off`; fails (reading nothing) past the end.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let o = self.check(off, buf.len())?;
        self.mem.backing_read(o, buf)
    }

    /// Write `data` at `off` and mark the pages dirty; fails (writing nothing) past the end.
    pub fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        let o = self.check(off, data.len())?;
        self.mem.backing_write(o, data)
    }

    /// Fill the whole region with `byte` (all pages become dirty).
    pub fn fill(&self, byte: u8) {
        let chunk = vec![byte; 64 << 10];
        let mut off = 0;
        while off < self.size {
            let n = (self.size - off).min(chunk.len() as u64) as usize;
            // In range by construction.
            let _ = self.write(off, &chunk[..n]);
            off += n as u64;
        }
    }

    /// Take the dirty pages: bit `p % 64` of word `p / 64` is page `p` (4 KiB) of the
    /// region, set when it was written since the last call. The bits are cleared
    /// atomically word by word, so a concurrent write is either in this answer or in the
    /// next one.
    ///
    /// Pages a hypervisor wrote without trapping (a `dirty_log` mapping) are fetched from
    /// its log first.
    pub fn take_dirty(&self) -> Vec<u64> {
        let source = self.mem.dirty_log.read().clone();
        let logged = match (source, self.mapped_at()) {
            (Some(log), Some(gpa)) => log(gpa, self.size),
            _ => None,
        };
        let mut words = self.region().take();
        // Same layout (page p of the mapping is page p of the region): OR the log in.
        for (w, l) in words.iter_mut().zip(logged.unwrap_or_default()) {
            *w |= l;
        }
        words
    }

    /// Mark every page dirty (e.g. to force a full redraw).
    pub fn mark_all_dirty(&self) {
        self.region().mark(0, self.size);
    }

    /// Map the region at guest-physical `gpa` (page aligned), or unmap it with None.
    /// Accesses by every vCPU follow at their next block (the map generation changes).
    /// A mapping that would overlap other memory, lies at or above [`MMIO2_MAP_LIMIT`] or
    /// is unaligned is refused and the region left unmapped, so the guest's accesses there
    /// stay MMIO.
    pub fn map(&self, gpa: Option<u64>) -> Result<()> {
        let base = self.backing_offset();
        let (before, after, r) = {
            let mut l = self.mem.layout.write();
            let before = l.mmio2_gpa(base);
            let r = l.set_mmio2(base, self.size, gpa);
            (before, l.mmio2_gpa(base), r)
        };
        if before != after {
            // Translations cached by vCPUs (TLBs, hypervisor slots) are stale now.
            self.mem.map_generation.fetch_add(1, Ordering::AcqRel);
            // A hypervisor's write log for the old place goes with its slot: redraw all.
            self.mark_all_dirty();
        }
        r
    }

    /// Where the region is mapped now.
    pub fn mapped_at(&self) -> Option<u64> {
        self.mem.layout.read().mmio2_gpa(self.backing_offset())
    }
}

impl GuestMemory {
    /// `backing_read` for an MMIO2 offset.
    #[cold]
    pub(crate) fn mmio2_read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let (r, inner) = self.mmio2.find(off).ok_or(PgmError::Unmapped(off))?;
        r.backing.read(inner, buf)
    }

    /// `backing_write` for an MMIO2 offset: store, then note code writes and mark dirty.
    #[cold]
    pub(crate) fn mmio2_write(&self, off: u64, buf: &[u8]) -> Result<()> {
        let (r, inner) = self.mmio2.find(off).ok_or(PgmError::Unmapped(off))?;
        // Fixed sizes for the guest's stores: a move, not a memcpy call.
        match buf.len() {
            1 => r.backing.write(inner, &buf[..1])?,
            2 => r.backing.write(inner, &buf[..2])?,
            4 => r.backing.write(inner, &buf[..4])?,
            8 => r.backing.write(inner, &buf[..8])?,
            _ => r.backing.write(inner, buf)?,
        }
        if !buf.is_empty() {
            let first = inner / PAGE_SIZE;
            let last = (inner + buf.len() as u64 - 1) / PAGE_SIZE;
            for p in first..=last {
                if let Some(s) = r.page_state.get(p as usize) {
                    crate::note_write_state(s);
                }
            }
            r.mark(inner, buf.len() as u64);
        }
        Ok(())
    }

    /// `backing_cmpxchg` for an MMIO2 offset.
    #[cold]
    pub(crate) fn mmio2_cmpxchg(&self, off: u64, size: u8, expected: u64, new: u64) -> Result<u64> {
        let (r, inner) = self.mmio2.find(off).ok_or(PgmError::Unmapped(off))?;
        let found = r.backing.cmpxchg(inner, size, expected, new)?;
        if found == expected {
            for p in [inner / PAGE_SIZE, (inner + u64::from(size) - 1) / PAGE_SIZE] {
                if let Some(s) = r.page_state.get(p as usize) {
                    crate::note_write_state(s);
                }
            }
            r.mark(inner, u64::from(size));
        }
        Ok(found)
    }

    /// The code-watch state word of the MMIO2 page at `off`.
    #[cold]
    pub(crate) fn mmio2_page_state(&self, off: u64) -> Option<&AtomicU32> {
        let (r, inner) = self.mmio2.find(off)?;
        r.page_state.get((inner / PAGE_SIZE) as usize)
    }

    /// Host address of MMIO2 backing offset `off` (for hypervisor mappings).
    pub(crate) fn mmio2_host_addr(&self, off: u64) -> Option<usize> {
        let (r, inner) = self.mmio2.find(off)?;
        (inner < r.size).then(|| r.backing.host_addr() + inner as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryLayout;

    const BAR: u64 = 0xe000_0000;

    fn vm() -> (Arc<GuestMemory>, Mmio2) {
        let mem = Arc::new(
            GuestMemory::new(
                MemoryLayout::pc(16 << 20)
                    .unwrap()
                    .with_firmware(0x20000)
                    .unwrap(),
            )
            .unwrap(),
        );
        let vram = mem.register_mmio2("vram", 1 << 20).unwrap();
        (mem, vram)
    }

    /// Pages set in a bitmap from `take_dirty`.
    fn pages(bits: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, &w) in bits.iter().enumerate() {
            for b in 0..64 {
                if w & (1 << b) != 0 {
                    out.push(i as u64 * 64 + b);
                }
            }
        }
        out
    }

    #[test]
    fn new_region_is_all_dirty_then_clean() {
        let (_, vram) = vm();
        assert_eq!(pages(&vram.take_dirty()).len(), 256);
        assert!(pages(&vram.take_dirty()).is_empty());
    }

    #[test]
    fn guest_writes_through_pgm_mark_pages() {
        let (mem, vram) = vm();
        vram.map(Some(BAR)).unwrap();
        assert_eq!(vram.mapped_at(), Some(BAR));
        // Mapping (moving the BAR) makes every page dirty once.
        assert_eq!(pages(&vram.take_dirty()).len(), 256);
        // One byte.
        mem.write(BAR + 5 * 4096 + 7, &[0xaa]).unwrap();
        assert_eq!(pages(&vram.take_dirty()), vec![5]);
        // A write crossing a page boundary marks both pages.
        mem.write(BAR + 9 * 4096 - 2, &[1, 2, 3, 4]).unwrap();
        assert_eq!(pages(&vram.take_dirty()), vec![8, 9]);
        // A bulk write over several pages (a string instruction's chunk).
        mem.write(BAR + 100 * 4096 + 10, &vec![7u8; 3 * 4096])
            .unwrap();
        assert_eq!(pages(&vram.take_dirty()), vec![100, 101, 102, 103]);
        // Reads mark nothing, and see what was written.
        let mut b = [0u8; 4];
        mem.read(BAR + 9 * 4096 - 2, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(pages(&vram.take_dirty()).is_empty());
        // The device sees the guest's bytes, and its own writes count too.
        let mut d = [0u8; 1];
        vram.read(5 * 4096 + 7, &mut d).unwrap();
        assert_eq!(d, [0xaa]);
        vram.write(200 * 4096, &[1]).unwrap();
        assert_eq!(pages(&vram.take_dirty()), vec![200]);
    }

    #[test]
    fn interpreter_path_translate_then_backing_write_marks() {
        let (mem, vram) = vm();
        vram.map(Some(BAR)).unwrap();
        vram.take_dirty();
        let t = mem.translate(BAR + 3 * 4096 + 100).unwrap();
        assert_eq!(t.read, Some(vram.backing_offset() + 3 * 4096));
        assert_eq!(t.write, t.read);
        let off = t.write.unwrap() + 100;
        mem.backing_write(off, &0x1234_5678u32.to_le_bytes())
            .unwrap();
        assert_eq!(pages(&vram.take_dirty()), vec![3]);
        let mut b = [0u8; 4];
        mem.backing_read(off, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x1234_5678);
        // A locked compare-exchange marks its page only when it stores.
        assert_eq!(mem.backing_cmpxchg(off, 4, 1, 2).unwrap(), 0x1234_5678);
        assert!(pages(&vram.take_dirty()).is_empty());
        assert_eq!(
            mem.backing_cmpxchg(off, 4, 0x1234_5678, 2).unwrap(),
            0x1234_5678
        );
        assert_eq!(pages(&vram.take_dirty()), vec![3]);
        // Past the region's end: an error, not a wrap into another region.
        assert!(mem
            .backing_read(vram.backing_offset() + (1 << 20), &mut b)
            .is_err());
        assert!(vram.write((1 << 20) - 2, &[0; 4]).is_err());
    }

    #[test]
    fn code_in_mmio2_is_watched_like_ram() {
        let (mem, vram) = vm();
        let off = vram.backing_offset() + 4096;
        let g = mem.watch_code_page(off);
        assert_eq!(mem.code_page_generation(off), g);
        mem.backing_write(off + 8, &[0x90]).unwrap();
        assert_ne!(mem.code_page_generation(off), g);
    }

    #[test]
    fn bar_moves_follow_the_guest() {
        let (mem, vram) = vm();
        let g0 = mem.map_generation();
        vram.map(Some(BAR)).unwrap();
        assert_ne!(
            mem.map_generation(),
            g0,
            "TLBs must flush when the BAR appears"
        );
        mem.write(BAR + 0x10, b"pixels").unwrap();
        let g1 = mem.map_generation();
        vram.map(Some(0xd000_0000)).unwrap();
        assert_ne!(mem.map_generation(), g1);
        assert_eq!(
            mem.read_le::<1>(BAR + 0x10),
            Err(PgmError::Unmapped(BAR + 0x10))
        );
        let mut b = [0u8; 6];
        mem.read(0xd000_0010, &mut b).unwrap();
        assert_eq!(&b, b"pixels", "same memory at the new address");
        // The same place again changes nothing.
        let g2 = mem.map_generation();
        vram.map(Some(0xd000_0000)).unwrap();
        assert_eq!(mem.map_generation(), g2);
        // Over RAM, unaligned, or in the platform area: refused, left unmapped (MMIO).
        assert!(vram.map(Some(0x10_0000)).is_err());
        assert_eq!(vram.mapped_at(), None);
        assert_ne!(mem.map_generation(), g2);
        assert!(vram.map(Some(BAR + 1)).is_err());
        assert!(vram.map(Some(0xfee0_0000)).is_err());
        assert!(vram.map(Some(!0xfff)).is_err());
        assert_eq!(
            mem.translate(0x10_0000).unwrap().read,
            Some(0x10_0000),
            "RAM intact"
        );
        vram.map(Some(BAR)).unwrap();
        vram.map(None).unwrap();
        assert!(mem.translate(BAR).is_none());
    }

    #[test]
    fn hypervisor_mapping_logs_writes_at_the_region() {
        let (mem, vram) = vm();
        vram.map(Some(BAR)).unwrap();
        let m = mem.mappings().into_iter().find(|m| m.gpa == BAR).unwrap();
        assert_eq!(m.size, 1 << 20);
        assert!(m.dirty_log && !m.readonly, "writes are logged, not trapped");
        assert_eq!(
            Some(m.host_addr),
            mem.mmio2_host_addr(vram.backing_offset())
        );
    }

    #[test]
    fn take_dirty_merges_the_hypervisor_log_for_the_mapped_range() {
        let (mem, vram) = vm();
        vram.map(Some(BAR)).unwrap();
        vram.take_dirty();
        let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let a = asked.clone();
        mem.set_dirty_log_source(Some(Arc::new(move |gpa, size| {
            a.lock().push((gpa, size));
            let mut w = vec![0u64; size.div_ceil(PAGE_SIZE * 64) as usize];
            w[1] = 1 << 2; // page 66
            Some(w)
        })));
        let d = vram.take_dirty();
        assert_eq!(d[1], 1 << 2, "page 66 from the log");
        assert!(d.iter().enumerate().all(|(i, &w)| i == 1 || w == 0));
        assert_eq!(asked.lock().as_slice(), &[(BAR, 1 << 20)]);
        // Unmapped: the log is not asked; moving the BAR makes everything dirty.
        vram.map(None).unwrap();
        assert!(vram.take_dirty().iter().all(|&w| w == u64::MAX));
        assert_eq!(asked.lock().len(), 1);
    }

    #[test]
    fn registration_limits() {
        let (mem, _) = vm();
        assert!(mem.register_mmio2("empty", 0).is_err());
        assert!(mem.register_mmio2("huge", MAX_MMIO2_SIZE + 1).is_err());
        for _ in 1..MAX_MMIO2_REGIONS {
            mem.register_mmio2("page", 1).unwrap();
        }
        assert!(mem.register_mmio2("one too many", 4096).is_err());
    }

    /// A writer stores once into each page (a new value each round, as a guest redrawing
    /// its framebuffer) while a reader repeatedly takes the dirty bits and copies the dirty
    /// pages into a shadow. After each round and one last read, the shadow must equal the
    /// memory: no write may slip between a read and its clear.
    #[test]
    fn read_and_clear_loses_no_write() {
        // With the check-before-OR writers (where membarrier exists) and without.
        for check_first in [barrier_available(), false] {
            read_and_clear_case(check_first);
        }
    }

    fn read_and_clear_case(check_first: bool) {
        let vram = Mmio2::standalone("vram", 4 << 20).unwrap();
        vram.region()
            .check_first
            .store(check_first, Ordering::Relaxed);
        let pages_n = vram.len() / 4096;
        let mut shadow = vec![0u8; vram.len() as usize];
        let sync = |shadow: &mut Vec<u8>| {
            for p in pages(&vram.take_dirty()) {
                let o = (p * 4096) as usize;
                vram.read(p * 4096, &mut shadow[o..o + 4096]).unwrap();
            }
        };
        for round in 1..=10u64 {
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let w = {
                let (vram, done) = (vram.clone(), done.clone());
                std::thread::spawn(move || {
                    for p in 0..pages_n {
                        vram.write(p * 4096 + (round * 8) % 4096, &round.to_le_bytes())
                            .unwrap();
                        // Spread the stores so the reader's rounds interleave with them.
                        for _ in 0..200 {
                            std::hint::spin_loop();
                        }
                    }
                    done.store(true, Ordering::Release);
                })
            };
            while !done.load(Ordering::Acquire) {
                sync(&mut shadow);
            }
            w.join().unwrap();
            sync(&mut shadow);
            let mut now = vec![0u8; shadow.len()];
            vram.read(0, &mut now).unwrap();
            assert!(
                now == shadow,
                "round {round}: a write was lost between read and clear"
            );
        }
    }
}
