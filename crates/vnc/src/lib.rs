//! vnc: the remote display of a VM. A [`Screen`] holds the guest's picture (the VMM renders
//! into it and reports changed rectangles); an RFB 3.8 server ([`start`]) sends it to VNC
//! clients and, on the same port, to a browser console page over a WebSocket; key and
//! pointer events go back to the VMM through the [`Input`] trait. Screenshots are PNGs
//! ([`encode_png`]).
//!
//! Encodings: Raw, CopyRect (scrolls found by comparing row hashes), zlib and ZRLE, the
//! rich-cursor, DesktopSize and ExtendedDesktopSize
//! pseudo-encodings, and QEMU's extended key events. Authentication: None or VNC
//! (DES challenge). The server never blocks the VMM: clients have their own threads and a
//! client that stops reading is dropped when a write times out.

pub mod auth;
pub mod client;
pub mod encode;
pub mod keymap;
pub mod png;
pub mod proto;
pub mod screen;
pub mod server;
pub mod shadow;
pub mod ws;
pub mod zrle;

pub use png::{decode_png, encode_png};
pub use screen::{CursorImage, Frame, Rect, Screen};
pub use server::{start, Input, Server, ServerConfig, ServerError};
