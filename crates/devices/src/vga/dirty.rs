//! Per-page dirty tracking of the video memory, as the renderer consumes it: pgm marks
//! every written 4 KiB page of the video memory (guest writes through the linear
//! framebuffer BAR or the legacy window, the adapter's own), the adapter merges those bits
//! in here at each refresh, and the renderer redraws only the scanlines whose bytes lie on
//! dirty pages and then clears the bits.

/// Granule of the dirty bitmap.
pub const PAGE_SHIFT: u32 = 12;

/// One bit per 4 KiB page of VRAM.
#[derive(Debug, Clone)]
pub struct DirtyBitmap {
    words: Vec<u64>,
    pages: usize,
}

impl DirtyBitmap {
    /// A bitmap covering `bytes` of memory, all pages dirty (nothing rendered yet).
    pub fn new(bytes: usize) -> Self {
        let pages = bytes.div_ceil(1 << PAGE_SHIFT);
        let mut b = DirtyBitmap {
            words: vec![0; pages.div_ceil(64)],
            pages,
        };
        b.mark_all();
        b
    }

    /// Mark the page holding byte `offset` (offsets past the end are ignored).
    pub fn mark(&mut self, offset: usize) {
        let p = offset >> PAGE_SHIFT;
        if p < self.pages {
            if let Some(w) = self.words.get_mut(p / 64) {
                *w |= 1 << (p % 64);
            }
        }
    }

    /// Mark every page touched by `[offset, offset + len)`.
    pub fn mark_range(&mut self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        let first = offset >> PAGE_SHIFT;
        let last = offset.saturating_add(len - 1) >> PAGE_SHIFT;
        for p in first..=last.min(self.pages.saturating_sub(1)) {
            if let Some(w) = self.words.get_mut(p / 64) {
                *w |= 1 << (p % 64);
            }
        }
    }

    /// Set the pages whose bits are set in `words` (bit `p % 64` of word `p / 64`, as
    /// pgm's MMIO2 dirty bitmap); bits past the end are ignored.
    pub fn merge_words(&mut self, words: &[u64]) {
        for (w, &m) in self.words.iter_mut().zip(words) {
            *w |= m;
        }
    }

    /// Mark everything.
    pub fn mark_all(&mut self) {
        self.words.fill(u64::MAX);
    }

    /// True when any page touched by `[offset, offset + len)` is dirty.
    pub fn any(&self, offset: usize, len: usize) -> bool {
        if len == 0 {
            return false;
        }
        let first = offset >> PAGE_SHIFT;
        let last = (offset.saturating_add(len - 1) >> PAGE_SHIFT).min(self.pages.saturating_sub(1));
        (first..=last).any(|p| {
            self.words
                .get(p / 64)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }

    /// True when no page at all is dirty.
    pub fn is_clean(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Forget all dirty bits.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_queries_pages() {
        let mut b = DirtyBitmap::new(64 * 4096 + 5);
        assert!(b.any(0, 1));
        b.clear();
        assert!(b.is_clean());
        b.mark(4096 * 3 + 17);
        assert!(b.any(4096 * 3, 1));
        assert!(!b.any(0, 4096 * 3));
        assert!(b.any(4096 * 2, 4097));
        b.mark_range(4096 * 64, 100);
        assert!(b.any(4096 * 64 + 99, 1));
        // Out of range is ignored, never a panic.
        b.mark(usize::MAX);
        b.mark_range(usize::MAX - 3, 10);
        assert!(!b.any(usize::MAX - 1, 1));
        assert!(!b.any(5, 0));
    }
}
