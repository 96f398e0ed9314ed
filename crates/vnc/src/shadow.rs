//! A client's picture as the server last sent it. Damage only says where the guest wrote;
//! a redraw with the same pixels, or damage reported twice before the client asked again
//! (overlapping rectangles), would be sent again. Each update compares the damaged cells
//! (64 columns by 16 rows) against this copy and sends only the cells that really differ,
//! merged into few rectangles (every rectangle costs a header and, in ZRLE, a zlib flush).

use crate::screen::{find_move, hash_row, Move, Rect, MIN_MOVE_ROWS};

/// Cell width: one ZRLE tile column.
pub const CELL_W: u32 = 64;
/// Cell height: a text line.
pub const CELL_H: u32 = 16;

/// What the client's picture holds.
#[derive(Debug, Default)]
pub struct Shadow {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
    /// False until the whole picture has been sent once at this size.
    valid: bool,
    /// Changed-cell marks of the update being built (scratch).
    cells: Vec<bool>,
    /// A hash per row (scroll detection), valid where `stale` is false.
    hash: Vec<u64>,
    stale: Vec<bool>,
}

impl Shadow {
    /// An empty copy: everything counts as changed until sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pixels the client holds (row-major, `width` per row).
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    /// The client's picture after it applies `m` (a CopyRect) to it.
    pub fn apply_move(&mut self, m: Move) {
        if !self.valid {
            return;
        }
        let (Some(src), Some(dst)) = (
            m.src().clip(self.width, self.height),
            m.dst.clip(self.width, self.height),
        ) else {
            return;
        };
        if src != m.src() || dst != m.dst {
            return;
        }
        let w = self.width as usize;
        let rows: Box<dyn Iterator<Item = u32>> = if m.dst.y > m.src_y {
            Box::new((0..m.dst.h).rev())
        } else {
            Box::new(0..m.dst.h)
        };
        let whole = m.dst.x == 0 && m.dst.w == self.width;
        for i in rows {
            let (sy, dy) = ((m.src_y + i) as usize, (m.dst.y + i) as usize);
            let s = sy * w + m.dst.x as usize;
            let d = dy * w + m.dst.x as usize;
            self.pixels.copy_within(s..s + m.dst.w as usize, d);
            if whole {
                self.hash[dy] = self.hash[sy];
                self.stale[dy] = self.stale[sy];
            } else {
                self.stale[dy] = true;
            }
        }
    }

    /// Content of the client's picture that `current` (with its row hashes) shows moved
    /// vertically inside the full-width rows of `damage`: a scroll to send as CopyRect (and
    /// apply with [`Shadow::apply_move`]). Found against what the client holds, so moves
    /// that happened while an update was pending add up.
    pub fn find_move(
        &mut self,
        current: &[u32],
        current_hash: &[u64],
        damage: &[Rect],
    ) -> Option<Move> {
        let (w, h) = (self.width, self.height);
        if !self.valid || current.len() < self.pixels.len() || current_hash.len() != h as usize {
            return None;
        }
        // Full-width damaged rows, as runs.
        let mut rows = vec![false; h as usize];
        for r in damage.iter().filter_map(|r| r.clip(w, h)) {
            if r.x == 0 && r.w == w {
                rows[r.y as usize..(r.y + r.h) as usize].fill(true);
            }
        }
        let mut best: Option<Move> = None;
        let mut y = 0;
        while y < h as usize {
            if !rows[y] {
                y += 1;
                continue;
            }
            let s = y;
            while y < h as usize && rows[y] {
                y += 1;
            }
            if y - s < MIN_MOVE_ROWS as usize {
                continue;
            }
            self.refresh_hashes();
            let band = Rect {
                x: 0,
                y: s as u32,
                w,
                h: (y - s) as u32,
            };
            if let Some(m) = find_move(
                w,
                h,
                &self.pixels,
                &self.hash,
                current,
                &current_hash[s..y],
                band,
            ) {
                if best.is_none_or(|b| m.dst.h > b.dst.h) {
                    best = Some(m);
                }
            }
        }
        best
    }

    fn refresh_hashes(&mut self) {
        let w = self.width as usize;
        for (y, stale) in self.stale.iter_mut().enumerate() {
            if *stale {
                self.hash[y] = hash_row(&self.pixels[y * w..(y + 1) * w]);
                *stale = false;
            }
        }
    }

    /// The parts of `damage` where `current` (`width` x `height`) differs from what the
    /// client holds, as cell-aligned rectangles clipped to the picture; the copy takes
    /// their pixels. With `force` (the client asked for a full picture, or the size
    /// changed) every damaged cell counts as changed.
    pub fn changed(
        &mut self,
        width: u32,
        height: u32,
        current: &[u32],
        damage: &[Rect],
        force: bool,
    ) -> Vec<Rect> {
        let n = width as usize * height as usize;
        if current.len() < n {
            return Vec::new();
        }
        if (self.width, self.height) != (width, height) || self.pixels.len() != n {
            self.width = width;
            self.height = height;
            self.pixels = vec![0; n];
            self.hash = vec![0; height as usize];
            self.stale = vec![true; height as usize];
            self.valid = false;
        }
        let force = force || !self.valid;
        let cols = width.div_ceil(CELL_W) as usize;
        let rows = height.div_ceil(CELL_H) as usize;
        self.cells.clear();
        self.cells.resize(cols * rows, false);
        let w = width as usize;
        for r in damage.iter().filter_map(|r| r.clip(width, height)) {
            let (c0, c1) = (r.x / CELL_W, (r.x + r.w).div_ceil(CELL_W));
            let (r0, r1) = (r.y / CELL_H, (r.y + r.h).div_ceil(CELL_H));
            for cy in r0..r1 {
                for cx in c0..c1 {
                    let i = cy as usize * cols + cx as usize;
                    if self.cells[i] {
                        continue;
                    }
                    let x0 = (cx * CELL_W) as usize;
                    let x1 = ((cx + 1) * CELL_W).min(width) as usize;
                    let y0 = cy * CELL_H;
                    let y1 = ((cy + 1) * CELL_H).min(height);
                    let differs = force
                        || (y0..y1).any(|y| {
                            let s = y as usize * w;
                            current[s + x0..s + x1] != self.pixels[s + x0..s + x1]
                        });
                    if differs {
                        self.cells[i] = true;
                        for y in y0..y1 {
                            let s = y as usize * w;
                            self.pixels[s + x0..s + x1].copy_from_slice(&current[s + x0..s + x1]);
                            self.stale[y as usize] = true;
                        }
                    }
                }
            }
        }
        if force
            && damage
                .iter()
                .any(|r| r.clip(width, height) == Some(Rect::full(width, height)))
        {
            self.valid = true;
        }
        self.merge(cols, rows)
    }

    /// Changed cells as rectangles: runs along each cell row, then runs with the same
    /// columns in consecutive rows joined.
    fn merge(&self, cols: usize, rows: usize) -> Vec<Rect> {
        let mut done = Vec::new();
        // Open rectangles: (first column, end column, rectangle so far).
        let mut open: Vec<(usize, usize, Rect)> = Vec::new();
        for cy in 0..rows {
            let mut runs = Vec::new();
            let mut cx = 0;
            while cx < cols {
                if self.cells[cy * cols + cx] {
                    let s = cx;
                    while cx < cols && self.cells[cy * cols + cx] {
                        cx += 1;
                    }
                    runs.push((s, cx));
                } else {
                    cx += 1;
                }
            }
            let y = cy as u32 * CELL_H;
            let h = CELL_H.min(self.height - y);
            let mut next = Vec::with_capacity(runs.len());
            for (s, e) in runs {
                if let Some(i) = open.iter().position(|&(a, b, _)| (a, b) == (s, e)) {
                    let (a, b, mut r) = open.swap_remove(i);
                    r.h += h;
                    next.push((a, b, r));
                } else {
                    let x = s as u32 * CELL_W;
                    let x1 = (e as u32 * CELL_W).min(self.width);
                    next.push((s, e, Rect { x, y, w: x1 - x, h }));
                }
            }
            done.extend(open.drain(..).map(|(_, _, r)| r));
            open = next;
        }
        done.extend(open.into_iter().map(|(_, _, r)| r));
        done.sort_by_key(|r| (r.y, r.x));
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screen::tests::lines;

    fn full(w: u32, h: u32) -> Rect {
        Rect::full(w, h)
    }

    #[test]
    fn first_update_sends_everything_then_only_real_changes() {
        let (w, h) = (200u32, 50u32);
        let mut s = Shadow::new();
        let mut px = vec![5u32; (w * h) as usize];
        assert_eq!(s.changed(w, h, &px, &[full(w, h)], false), vec![full(w, h)]);
        // The same pixels again: nothing.
        assert!(s.changed(w, h, &px, &[full(w, h)], false).is_empty());
        // One pixel in the last (partial) cell column and row.
        px[(49 * w + 199) as usize] = 9;
        assert_eq!(
            s.changed(w, h, &px, &[full(w, h)], false),
            vec![Rect {
                x: 192,
                y: 48,
                w: 8,
                h: 2
            }]
        );
        // A forced request sends what it covers even though nothing changed.
        let r = Rect {
            x: 70,
            y: 10,
            w: 5,
            h: 5,
        };
        assert_eq!(
            s.changed(w, h, &px, &[r], true),
            vec![Rect {
                x: 64,
                y: 0,
                w: 64,
                h: 16
            }]
        );
        assert_eq!(s.pixels(), &px[..]);
    }

    #[test]
    fn cells_merge_into_few_rects() {
        let (w, h) = (256u32, 64u32);
        let mut s = Shadow::new();
        let mut px = vec![0u32; (w * h) as usize];
        s.changed(w, h, &px, &[full(w, h)], false);
        // Columns 64..192 of rows 0..48 and one cell at (0, 48).
        for y in 0..48 {
            for x in 64..192 {
                px[(y * w + x) as usize] = 1;
            }
        }
        px[(50 * w + 3) as usize] = 1;
        // Overlapping damage counts once.
        let d = [
            full(w, h),
            full(w, h),
            Rect {
                x: 0,
                y: 0,
                w: 100,
                h: 30,
            },
        ];
        assert_eq!(
            s.changed(w, h, &px, &d, false),
            vec![
                Rect {
                    x: 64,
                    y: 0,
                    w: 128,
                    h: 48
                },
                Rect {
                    x: 0,
                    y: 48,
                    w: 64,
                    h: 16
                }
            ]
        );
    }

    #[test]
    fn moves_and_resizes_follow_the_client() {
        let (w, h) = (64u32, 64u32);
        let mut s = Shadow::new();
        let px: Vec<u32> = (0..w * h).map(|i| i / w).collect();
        s.changed(w, h, &px, &[full(w, h)], false);
        // Scroll up 16 rows: after the move only the bottom line differs.
        let scrolled: Vec<u32> = (0..w * h).map(|i| i / w + 16).collect();
        s.apply_move(Move {
            dst: Rect {
                x: 0,
                y: 0,
                w,
                h: 48,
            },
            src_y: 16,
        });
        assert_eq!(
            s.changed(w, h, &scrolled, &[full(w, h)], false),
            vec![Rect {
                x: 0,
                y: 48,
                w: 64,
                h: 16
            }]
        );
        // A new size: everything again.
        let big = vec![0u32; 128 * 64];
        assert_eq!(
            s.changed(128, 64, &big, &[full(128, 64)], false),
            vec![full(128, 64)]
        );
    }

    #[test]
    fn scrolls_add_up_against_the_client_picture() {
        let (w, h) = (128u32, 96u32);
        let mut s = Shadow::new();
        s.changed(w, h, &lines(w, h, 0), &[full(w, h)], false);
        // Two lines scrolled while no update went out.
        let now = lines(w, h, 2);
        let hashes: Vec<u64> = now.chunks(w as usize).map(hash_row).collect();
        let m = s.find_move(&now, &hashes, &[full(w, h)]).expect("a move");
        assert_eq!(
            m,
            Move {
                dst: Rect {
                    x: 0,
                    y: 0,
                    w,
                    h: h - 32
                },
                src_y: 32
            }
        );
        s.apply_move(m);
        assert_eq!(
            s.changed(w, h, &now, &[full(w, h)], false),
            vec![Rect {
                x: 0,
                y: h - 32,
                w,
                h: 32
            }]
        );
        assert_eq!(s.pixels(), &now[..]);
        // Nothing moved now: no move; and none on damage that is not full width.
        assert_eq!(s.find_move(&now, &hashes, &[full(w, h)]), None);
        let later = lines(w, h, 3);
        let hashes: Vec<u64> = later.chunks(w as usize).map(hash_row).collect();
        assert_eq!(
            s.find_move(
                &later,
                &hashes,
                &[Rect {
                    x: 0,
                    y: 0,
                    w: 64,
                    h
                }]
            ),
            None
        );
    }
}
