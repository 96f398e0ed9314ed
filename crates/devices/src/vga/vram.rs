//! The adapter's video memory: device-owned guest RAM (pgm's MMIO2). The guest reaches it
//! through the linear framebuffer BAR as plain memory, without an exit per access; pgm
//! marks every written 4 KiB page in the region's dirty bitmap, and the adapter takes those
//! bits when it refreshes the picture. The adapter itself (the legacy window, HGSMI
//! replies, the renderer) reads and writes the same memory through checked copies.

use super::DirtyBitmap;

/// Video memory, shared with the guest.
#[derive(Debug, Clone)]
pub struct Vram(pgm::Mmio2);

impl Vram {
    /// `size` bytes of video memory in a guest memory of its own (an adapter built without
    /// a VM, as in tests). Panics only when the host cannot map the memory.
    pub fn standalone(size: u32) -> Self {
        let region = pgm::Mmio2::standalone("vram", u64::from(size))
            .expect("the host can map the video memory");
        Vram(region)
    }

    /// Video memory in the VM's guest memory (it follows the BAR there).
    pub fn new(region: pgm::Mmio2) -> Self {
        Vram(region)
    }

    /// The pgm region behind it.
    pub fn region(&self) -> &pgm::Mmio2 {
        &self.0
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.0.len() as usize
    }

    /// True when there is no video memory (never: regions are at least a page).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The byte at `i`, or None past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<u8> {
        let mut b = [0u8; 1];
        self.0.read(i as u64, &mut b).ok()?;
        Some(b[0])
    }

    /// The little-endian u32 at `i`, or None when it does not fit.
    #[inline]
    pub fn get_u32(&self, i: usize) -> Option<u32> {
        let mut b = [0u8; 4];
        self.0.read(i as u64, &mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }

    /// Copy `buf.len()` bytes at `off` into `buf`; false (and `buf` untouched) when the
    /// range does not fit.
    #[inline]
    pub fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        self.0.read(off as u64, buf).is_ok()
    }

    /// `len` bytes at `off` as a vector, or None when they do not fit.
    pub fn to_vec(&self, off: usize, len: usize) -> Option<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read(off, &mut v).then_some(v)
    }

    /// Store `data` at `off` (the pages become dirty); false (nothing written) when it
    /// does not fit.
    #[inline]
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        self.0.write(off as u64, data).is_ok()
    }

    /// Store one byte; false past the end.
    #[inline]
    pub fn set(&self, i: usize, v: u8) -> bool {
        self.write(i, &[v])
    }

    /// Fill everything with `v`.
    pub fn fill(&self, v: u8) {
        self.0.fill(v);
    }

    /// Move the pages written since the last call (by the guest or the adapter) into
    /// `dirty`.
    pub fn collect_dirty(&self, dirty: &mut DirtyBitmap) {
        dirty.merge_words(&self.0.take_dirty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_and_writes_become_dirty() {
        let v = Vram::standalone(1 << 20);
        assert_eq!(v.len(), 1 << 20);
        let mut d = DirtyBitmap::new(v.len());
        v.collect_dirty(&mut d);
        d.clear();
        assert!(v.write(4096 * 7 + 4094, &[1, 2, 3, 4]));
        assert_eq!(v.get_u32(4096 * 7 + 4094), Some(0x0403_0201));
        assert!(
            !v.write((1 << 20) - 1, &[0, 0]),
            "past the end: nothing written"
        );
        assert_eq!(v.get((1 << 20) - 1), Some(0));
        assert_eq!(v.get(1 << 20), None);
        assert_eq!(v.get_u32((1 << 20) - 2), None);
        assert_eq!(v.get(usize::MAX), None);
        assert!(v.to_vec(usize::MAX - 1, 4).is_none());
        v.collect_dirty(&mut d);
        assert!(d.any(4096 * 7, 1) && d.any(4096 * 8, 1));
        assert!(!d.any(0, 4096 * 7) && !d.any(4096 * 9, 4096 * 100));
    }
}
