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
            for c in g.clients.values_mut() {
                c.resized = true;
                c.damage = vec![Rect {
                    x: 0,
                    y: 0,
                    w: width,
                    h: height,
                }];
            }
        } else {
            let mut changed = Vec::new();
            for r in rects {
                let Some(r) = r.clip(width, height) else {
                    continue;
                };
                for y in r.y..r.y + r.h {
                    let s = (y * width + r.x) as usize;
                    let e = s + r.w as usize;
                    g.pixels[s..e].copy_from_slice(&pixels[s..e]);
                }
                changed.push(r);
            }
            if changed.is_empty() {
                return;
            }
            for c in g.clients.values_mut() {
                for r in &changed {
                    c.add(*r);
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
mod tests {
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
