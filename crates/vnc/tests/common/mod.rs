//! Shared by the integration tests: a server on a text-like screen.

#![allow(dead_code)]

use std::sync::Arc;
use vnc::{Rect, Screen, ServerConfig};

/// An input sink that drops everything.
pub struct NoInput;
impl vnc::Input for NoInput {
    fn key(&self, _: u16, _: bool) {}
    fn pointer(&self, _: u32, _: u32, _: u8, _: u32, _: u32) {}
}

/// Width.
pub const W: u32 = 720;
/// Height.
pub const H: u32 = 400;

/// An 80x25 text screen in 9x16 cells: line `n` of a log, glyph-like strokes in grey.
pub fn text_screen(first_line: u32) -> Vec<u32> {
    (0..W * H)
        .map(|i| {
            let (x, y) = (i % W, i / W);
            let line = y / 16 + first_line;
            let col = x / 9;
            let ch = (line * 31 + col * 7) % 53;
            let (gx, gy) = (x % 9, y % 16);
            let on = col < 20 + (line * 17) % 50
                && gy > 2
                && gy < 14
                && gx < 8
                && (ch >> (gx % 6)) & 1 != 0
                && !(gy + ch).is_multiple_of(3);
            if on {
                0xaaaaaa
            } else if line.is_multiple_of(9) {
                0x0000aa
            } else {
                0
            }
        })
        .collect()
}

/// The whole screen.
pub fn full() -> Rect {
    Rect {
        x: 0,
        y: 0,
        w: W,
        h: H,
    }
}

/// A server on `text_screen(0)`.
pub fn server() -> (Arc<Screen>, vnc::Server) {
    let screen = Screen::new();
    screen.update(W, H, &text_screen(0), &[]);
    let server = vnc::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            password: None,
            name: "test".into(),
        },
        screen.clone(),
        Arc::new(NoInput),
    )
    .unwrap();
    (screen, server)
}
