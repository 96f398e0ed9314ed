//! The picture shared between the VMM (which renders the guest's screen into it) and the
//! remote-display clients (which send what changed). The producer reports changed
//! rectangles; every client accumulates its own damage, so a slow client only costs
//! itself. One mutex and one condition variable: clients sleep until they have damage and
//! an outstanding update request.

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::Arc;

/// Most rectangles a client's damage list keeps before it collapses to their bounding box.
const MAX_DAMAGE_RECTS: usize = 64;

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// The whole of a `w` x `h` picture.
    pub fn full(w: u32, h: u32) -> Rect {
        Rect { x: 0, y: 0, w, h }
    }

    /// Clip to a `w` x `h` picture; None when nothing is left.
    pub fn clip(&self, w: u32, h: u32) -> Option<Rect> {
        let x1 = self.x.saturating_add(self.w).min(w);
        let y1 = self.y.saturating_add(self.h).min(h);
        (self.x < x1 && self.y < y1).then(|| Rect {
            x: self.x,
            y: self.y,
            w: x1 - self.x,
            h: y1 - self.y,
        })
    }

    /// True when the two overlap.
    pub fn intersects(&self, o: &Rect) -> bool {
        self.x < o.x.saturating_add(o.w)
            && o.x < self.x.saturating_add(self.w)
            && self.y < o.y.saturating_add(o.h)
            && o.y < self.y.saturating_add(self.h)
    }

    fn union(&self, o: &Rect) -> Rect {
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        let x1 = (self.x + self.w).max(o.x + o.w);
        let y1 = (self.y + self.h).max(o.y + o.h);
        Rect {
            x,
            y,
            w: x1 - x,
            h: y1 - y,
        }
    }
}

/// A pointer image: row-major 0xAARRGGBB pixels, alpha 0 = transparent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Hot spot.
    pub hot_x: u32,
    /// Hot spot.
    pub hot_y: u32,
    /// Pixels.
    pub pixels: Vec<u32>,
}

/// A copy of the picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Row-major 0x00RRGGBB.
    pub pixels: Vec<u32>,
}

/// Per-client state kept under the screen's lock.
#[derive(Debug, Default)]
pub(crate) struct ClientSlot {
    pub damage: Vec<Rect>,
    pub resized: bool,
    pub cursor_changed: bool,
    /// The client has asked for an update we have not answered.
    pub requested: bool,
    pub closed: bool,
    /// The client decodes CopyRect.
    pub copy_rect: bool,
    /// A move to send as CopyRect before the damage (valid against the client's picture).
    pub copy: Option<Move>,
    /// The client asked for a full picture: send the damage even where it holds the same.
    pub force: bool,
}

/// Content that moved: `dst` now shows what was at (`dst.x`, `src_y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// Where the content is now.
    pub dst: Rect,
    /// Top row it came from.
    pub src_y: u32,
}

impl Move {
    /// The rectangle the content came from.
    pub fn src(&self) -> Rect {
        Rect {
            y: self.src_y,
            ..self.dst
        }
    }
}

impl ClientSlot {
    pub(crate) fn add(&mut self, r: Rect) {
        self.damage.push(r);
        if self.damage.len() > MAX_DAMAGE_RECTS {
            let all = self
                .damage
                .iter()
                .skip(1)
                .fold(self.damage[0], |a, b| a.union(b));
            self.damage = vec![all];
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
    pub cursor: Option<Arc<CursorImage>>,
    pub clients: HashMap<u64, ClientSlot>,
    next_id: u64,
    /// A hash per row of `pixels` (scroll detection).
    pub row_hash: Vec<u64>,
}

/// Shortest move worth a CopyRect, in rows (a text line is 16).
pub(crate) const MIN_MOVE_ROWS: u32 = 8;

/// A fast hash of one row (not cryptographic: matches are verified pixel by pixel). Four
/// independent lanes, so the multiplies overlap (every changed row is hashed, 60 times a
/// second).
pub(crate) fn hash_row(px: &[u32]) -> u64 {
    let mut h = [
        0x9e37_79b9_7f4a_7c15 ^ px.len() as u64,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0x27d4_eb2f_1656_67c5,
    ];
    let mix = |h: u64, v: u64| (h ^ v).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29);
    let mut chunks = px.chunks_exact(8);
    for c in &mut chunks {
        for (l, h) in h.iter_mut().enumerate() {
            *h = mix(*h, u64::from(c[2 * l]) | u64::from(c[2 * l + 1]) << 32);
        }
    }
    for (i, &p) in chunks.remainder().iter().enumerate() {
        h[i % 4] = mix(h[i % 4], u64::from(p) | 1 << 40);
    }
    mix(mix(mix(h[0], h[1]), h[2]), h[3])
}

/// Find content of the old picture that reappears shifted vertically inside full-width
/// band `band` of the new picture (a scroll): the longest run of rows, verified pixel by
/// pixel, of at least [`MIN_MOVE_ROWS`].
pub(crate) fn find_move(
    width: u32,
    height: u32,
    old: &[u32],
    old_hash: &[u64],
    new: &[u32],
    new_hash: &[u64],
    band: Rect,
) -> Option<Move> {
    if band.x != 0 || band.w != width || band.h < MIN_MOVE_ROWS {
        return None;
    }
    let w = width as usize;
    let row = |y: u32| -> std::ops::Range<usize> {
        let s = y as usize * w;
        s..s + w
    };
    // Where each old row content was (blank rows and other common rows are left out:
    // they say nothing about a move).
    let mut at: Vec<(u64, u32)> = old_hash
        .iter()
        .enumerate()
        .map(|(y, &h)| (h, y as u32))
        .collect();
    at.sort_unstable();
    let mut votes: HashMap<i64, u32> = HashMap::new();
    for (i, &h) in new_hash.iter().enumerate() {
        let y = band.y + i as u32;
        if old_hash[y as usize] == h {
            continue;
        }
        let first = at.partition_point(|&(k, _)| k < h);
        let n = at[first..].iter().take_while(|&&(k, _)| k == h).count();
        if (1..=4).contains(&n) {
            for &(_, f) in &at[first..first + n] {
                *votes.entry(i64::from(y) - i64::from(f)).or_default() += 1;
            }
        }
    }
    let (&dy, _) = votes.iter().max_by_key(|(dy, n)| (**n, -dy.abs()))?;
    // Longest run of rows that equal the old rows dy above (or below).
    let mut best: Option<(u32, u32)> = None;
    let mut run: Option<(u32, u32)> = None;
    for (i, &h) in new_hash.iter().enumerate() {
        let y = band.y + i as u32;
        let src = i64::from(y) - dy;
        let same = (0..i64::from(height)).contains(&src)
            && old_hash[src as usize] == h
            && old[row(src as u32)] == new[row(y)];
        run = match (run, same) {
            (Some((s, n)), true) => Some((s, n + 1)),
            (None, true) => Some((y, 1)),
            (_, false) => None,
        };
        if let Some((s, n)) = run {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((s, n));
            }
        }
    }
    let (y0, n) = best?;
    (n >= MIN_MOVE_ROWS).then(|| Move {
        dst: Rect {
            x: 0,
            y: y0,
            w: width,
            h: n,
        },
        src_y: (i64::from(y0) - dy) as u32,
    })
}

/// The shared picture.
#[derive(Debug)]
pub struct Screen {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) cond: Condvar,
}

impl Screen {
    /// A black 640x480 picture.
    pub fn new() -> Arc<Screen> {
        Arc::new(Screen {
            inner: Mutex::new(Inner {
                width: 640,
                height: 480,
                pixels: vec![0; 640 * 480],
                cursor: None,
                clients: HashMap::new(),
                next_id: 1,
                row_hash: vec![hash_row(&[0; 640]); 480],
            }),
            cond: Condvar::new(),
        })
    }

    /// The producer's side: the picture is now `width` x `height` with `pixels` (row-major,
    /// `width` per row); only `rects` changed unless the size did.
    pub fn update(&self, width: u32, height: u32, pixels: &[u32], rects: &[Rect]) {
        if pixels.len() < width as usize * height as usize {
            return;
        }
        let mut g = self.inner.lock();
        if g.width != width || g.height != height {
            g.width = width;
            g.height = height;
            g.pixels = pixels[..width as usize * height as usize].to_vec();
            g.row_hash = g.pixels.chunks(width as usize).map(hash_row).collect();
            for c in g.clients.values_mut() {
                c.resized = true;
                c.copy = None;
                c.damage = vec![Rect {
                    x: 0,
                    y: 0,
                    w: width,
                    h: height,
                }];
            }
        } else {
            let mut changed = Vec::new();
            let mut moves = Vec::new();
            let any_copy_client = g.clients.values().any(|c| c.copy_rect);
            let clipped: Vec<Rect> = rects.iter().filter_map(|r| r.clip(width, height)).collect();
            // The new rows' hashes, once for every rectangle (full-width ones hash what
            // they bring; others after they land).
            let w = width as usize;
            let hashes: Vec<Option<Vec<u64>>> = clipped
                .iter()
                .map(|r| {
                    (r.x == 0 && r.w == width).then(|| {
                        (r.y..r.y + r.h)
                            .map(|y| hash_row(&pixels[y as usize * w..(y as usize + 1) * w]))
                            .collect()
                    })
                })
                .collect();
            // Moves are found against the old picture, before any rectangle lands.
            if any_copy_client {
                let inner = &*g;
                for (&r, nh) in clipped.iter().zip(&hashes) {
                    let Some(nh) = nh else { continue };
                    if let Some(m) =
                        find_move(width, height, &inner.pixels, &inner.row_hash, pixels, nh, r)
                    {
                        moves.push((r, m));
                    }
                }
            }
            for (r, nh) in clipped.into_iter().zip(hashes) {
                for y in r.y..r.y + r.h {
                    let s = (y * width + r.x) as usize;
                    let e = s + r.w as usize;
                    g.pixels[s..e].copy_from_slice(&pixels[s..e]);
                    let h = match &nh {
                        Some(nh) => nh[(y - r.y) as usize],
                        None => hash_row(&g.pixels[y as usize * w..(y as usize + 1) * w]),
                    };
                    g.row_hash[y as usize] = h;
                }
                changed.push(r);
            }
            if changed.is_empty() {
                return;
            }
            for c in g.clients.values_mut() {
                for r in &changed {
                    let m = moves.iter().find(|(band, _)| band == r).map(|(_, m)| *m);
                    match m {
                        Some(m)
                            if c.copy_rect
                                && c.copy.is_none()
                                && !c.resized
                                && !c.damage.iter().any(|d| d.intersects(&m.src())) =>
                        {
                            c.copy = Some(m);
                            // The rest of the band still needs pixels.
                            if m.dst.y > r.y {
                                c.add(Rect {
                                    h: m.dst.y - r.y,
                                    ..*r
                                });
                            }
                            let end = m.dst.y + m.dst.h;
                            if end < r.y + r.h {
                                c.add(Rect {
                                    y: end,
                                    h: r.y + r.h - end,
                                    ..*r
                                });
                            }
                        }
                        _ => c.add(*r),
                    }
                }
            }
        }
        drop(g);
        self.cond.notify_all();
    }

    /// Set the pointer image (None: the clients draw their own pointer).
    pub fn set_cursor(&self, cursor: Option<CursorImage>) {
        let mut g = self.inner.lock();
        g.cursor = cursor.map(Arc::new);
        for c in g.clients.values_mut() {
            c.cursor_changed = true;
        }
        drop(g);
        self.cond.notify_all();
    }

    /// A copy of the picture (screenshots).
    pub fn snapshot(&self) -> Frame {
        let g = self.inner.lock();
        Frame {
            width: g.width,
            height: g.height,
            pixels: g.pixels.clone(),
        }
    }

    /// Current size.
    pub fn size(&self) -> (u32, u32) {
        let g = self.inner.lock();
        (g.width, g.height)
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.inner.lock().clients.len()
    }

    pub(crate) fn register(&self) -> u64 {
        let mut g = self.inner.lock();
        let id = g.next_id;
        g.next_id += 1;
        let (w, h) = (g.width, g.height);
        g.clients.insert(
            id,
            ClientSlot {
                damage: vec![Rect { x: 0, y: 0, w, h }],
                cursor_changed: true,
                ..Default::default()
            },
        );
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.inner.lock().clients.remove(&id);
        self.cond.notify_all();
    }

    /// Run `f` on a client's slot and wake the writers.
    pub(crate) fn with_client(&self, id: u64, f: impl FnOnce(&mut ClientSlot)) {
        if let Some(c) = self.inner.lock().clients.get_mut(&id) {
            f(c);
        }
        self.cond.notify_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn damage_is_per_client_and_clipped() {
        let s = Screen::new();
        let a = s.register();
        let px = vec![7u32; 640 * 480];
        s.update(
            640,
            480,
            &px,
            &[Rect {
                x: 600,
                y: 470,
                w: 100,
                h: 100,
            }],
        );
        let g = s.inner.lock();
        let d = &g.clients[&a].damage;
        assert_eq!(d.len(), 2, "initial full damage plus the new rectangle");
        assert_eq!(
            d[1],
            Rect {
                x: 600,
                y: 470,
                w: 40,
                h: 10
            }
        );
        assert_eq!(g.pixels[479 * 640 + 639], 7);
        assert_eq!(g.pixels[0], 0, "outside the rectangles nothing is copied");
    }

    /// A text-like picture: each 16-row line has its own pattern.
    pub(crate) fn lines(w: u32, h: u32, first: u32) -> Vec<u32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let line = y / 16 + first;
                if (x * 7 + (y % 16) * 3 + line * 13) % 11 < 3 {
                    0xaaaaaa
                } else {
                    line * 0x10
                }
            })
            .collect()
    }

    #[test]
    fn a_scroll_becomes_a_move_for_copyrect_clients_only() {
        let (w, h) = (160u32, 128u32);
        let s = Screen::new();
        s.update(w, h, &lines(w, h, 0), &[]);
        let a = s.register();
        let b = s.register();
        s.with_client(a, |c| {
            c.damage.clear();
            c.copy_rect = true;
        });
        s.with_client(b, |c| c.damage.clear());
        // Scroll up one text line: rows 16.. move to 0.., a new line at the bottom.
        let full = Rect { x: 0, y: 0, w, h };
        s.update(w, h, &lines(w, h, 1), &[full]);
        let g = s.inner.lock();
        let ca = &g.clients[&a];
        assert_eq!(
            ca.copy,
            Some(Move {
                dst: Rect {
                    x: 0,
                    y: 0,
                    w,
                    h: h - 16
                },
                src_y: 16
            })
        );
        assert_eq!(
            ca.damage,
            vec![Rect {
                x: 0,
                y: h - 16,
                w,
                h: 16
            }],
            "only the new line"
        );
        let cb = &g.clients[&b];
        assert_eq!(cb.copy, None);
        assert_eq!(cb.damage, vec![full]);
        drop(g);
        // A second scroll while the first is pending: plain damage (still correct).
        s.update(w, h, &lines(w, h, 2), &[full]);
        let g = s.inner.lock();
        assert!(g.clients[&a].damage.contains(&full));
    }

    #[test]
    fn no_move_when_content_is_new_or_source_is_stale() {
        let (w, h) = (64u32, 64u32);
        let s = Screen::new();
        s.update(w, h, &lines(w, h, 0), &[]);
        let a = s.register();
        s.with_client(a, |c| {
            c.damage.clear();
            c.copy_rect = true;
        });
        let full = Rect { x: 0, y: 0, w, h };
        let fresh: Vec<u32> = (0..w * h).map(|i| i * 31 % 977).collect();
        s.update(w, h, &fresh, &[full]);
        assert_eq!(s.inner.lock().clients[&a].copy, None, "nothing moved");
        // The client has not seen rows 16..32 yet: a scroll from there cannot be a copy.
        s.update(w, h, &lines(w, h, 0), &[full]);
        s.with_client(a, |c| {
            c.damage = vec![Rect {
                x: 0,
                y: 16,
                w,
                h: 16,
            }]
        });
        s.update(w, h, &lines(w, h, 1), &[full]);
        assert_eq!(s.inner.lock().clients[&a].copy, None);
    }

    #[test]
    fn resize_replaces_damage_and_many_rects_collapse() {
        let s = Screen::new();
        let a = s.register();
        s.update(100, 50, &vec![1u32; 5000], &[]);
        {
            let g = s.inner.lock();
            assert!(g.clients[&a].resized);
            assert_eq!(
                g.clients[&a].damage,
                vec![Rect {
                    x: 0,
                    y: 0,
                    w: 100,
                    h: 50
                }]
            );
        }
        s.with_client(a, |c| c.damage.clear());
        let rects: Vec<Rect> = (0..100)
            .map(|i| Rect {
                x: i % 90,
                y: i % 40,
                w: 2,
                h: 2,
            })
            .collect();
        s.update(100, 50, &vec![2u32; 5000], &rects);
        let g = s.inner.lock();
        assert!(g.clients[&a].damage.len() <= MAX_DAMAGE_RECTS);
        // Too-short pixel buffers are refused, not a panic.
        drop(g);
        s.update(100, 50, &[0u32; 10], &rects);
    }
}
