//! Server-to-client rectangle encodings: Raw, zlib (RFC 6143 7.7 and the zlib encoding of
//! the RFB community registry: one zlib stream per connection, each rectangle a
//! sync-flushed chunk behind a 32-bit length), ZRLE ([`crate::zrle`]), CopyRect, the
//! rich-cursor pseudo-encoding, and the desktop-size pseudo-encodings.

use crate::proto::{encoding, PixelFormat};
use crate::screen::{CursorImage, Rect};
use crate::zrle::{deflate_sync, ZrleEncoder};
use flate2::{Compress, Compression};

/// How pixel rectangles are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelEncoding {
    /// Raw pixels.
    #[default]
    Raw,
    /// zlib over raw pixels.
    Zlib,
    /// ZRLE tiles.
    Zrle,
}

/// Per-connection encoder state.
pub struct Encoder {
    /// The client's pixel format.
    pub pf: PixelFormat,
    /// The encoding for pixel data.
    pub kind: PixelEncoding,
    z: Compress,
    zrle: ZrleEncoder,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("pf", &self.pf)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Append a rectangle header.
pub fn rect_header(out: &mut Vec<u8>, x: u32, y: u32, w: u32, h: u32, enc: i32) {
    for v in [x, y, w, h] {
        out.extend_from_slice(&(v.min(0xffff) as u16).to_be_bytes());
    }
    out.extend_from_slice(&enc.to_be_bytes());
}

impl Encoder {
    /// Raw pixels in the server's format until the client says otherwise.
    pub fn new() -> Self {
        Encoder {
            pf: PixelFormat::SERVER,
            kind: PixelEncoding::Raw,
            z: Compress::new(Compression::fast(), true),
            zrle: ZrleEncoder::new(),
        }
    }

    /// Append rectangle `r` of `pixels` (`r.w * r.h` 0x00RRGGBB values, row-major).
    pub fn pixels(&mut self, out: &mut Vec<u8>, r: Rect, pixels: &[u32]) {
        self.pixels_strided(out, r, pixels, r.w as usize);
    }

    /// [`Encoder::pixels`] from a bigger picture: row `y` of the rectangle starts at
    /// `pixels[y * stride]`.
    pub fn pixels_strided(&mut self, out: &mut Vec<u8>, r: Rect, pixels: &[u32], stride: usize) {
        if self.kind == PixelEncoding::Zrle {
            self.zrle.encode_strided(out, &self.pf, r, pixels, stride);
            return;
        }
        let mut raw = Vec::with_capacity((r.w * r.h) as usize * self.pf.bytes());
        for y in 0..r.h as usize {
            for &p in &pixels[y * stride..y * stride + r.w as usize] {
                self.pf.put(&mut raw, p);
            }
        }
        if self.kind == PixelEncoding::Zlib {
            rect_header(out, r.x, r.y, r.w, r.h, encoding::ZLIB);
            let len_at = out.len();
            out.extend_from_slice(&[0; 4]);
            let start = out.len();
            deflate_sync(&mut self.z, &raw, out);
            let n = (out.len() - start) as u32;
            out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
        } else {
            rect_header(out, r.x, r.y, r.w, r.h, encoding::RAW);
            out.extend_from_slice(&raw);
        }
    }

    /// Append a CopyRect rectangle: `dst` shows what was at (`src_x`, `src_y`).
    pub fn copy_rect(&mut self, out: &mut Vec<u8>, dst: Rect, src_x: u32, src_y: u32) {
        rect_header(out, dst.x, dst.y, dst.w, dst.h, encoding::COPY_RECT);
        out.extend_from_slice(&(src_x as u16).to_be_bytes());
        out.extend_from_slice(&(src_y as u16).to_be_bytes());
    }

    /// Append the rich-cursor pseudo-rectangle for `c`.
    pub fn cursor(&mut self, out: &mut Vec<u8>, c: &CursorImage) {
        rect_header(out, c.hot_x, c.hot_y, c.width, c.height, encoding::CURSOR);
        let mut mask = vec![0u8; (c.width as usize).div_ceil(8) * c.height as usize];
        let row = (c.width as usize).div_ceil(8);
        for (i, &p) in c.pixels.iter().enumerate() {
            self.pf.put(out, p & 0xff_ffff);
            let (x, y) = (i % c.width as usize, i / c.width as usize);
            if p >> 24 >= 0x80 {
                mask[y * row + x / 8] |= 0x80 >> (x % 8);
            }
        }
        out.extend_from_slice(&mask);
    }
}

/// Append an ExtendedDesktopSize pseudo-rectangle: `reason` 0 server, 1 this client,
/// 2 another client; `status` 0 ok, 1 prohibited, 3 invalid layout.
pub fn ext_desktop_size(out: &mut Vec<u8>, reason: u32, status: u32, w: u32, h: u32) {
    rect_header(out, reason, status, w, h, encoding::EXT_DESKTOP_SIZE);
    out.extend_from_slice(&[1, 0, 0, 0]);
    out.extend_from_slice(&0u32.to_be_bytes()); // screen id
    for v in [0u16, 0, w as u16, h as u16] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&0u32.to_be_bytes()); // flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn zlib_stream_decodes_across_rects() {
        let mut e = Encoder::new();
        e.kind = PixelEncoding::Zlib;
        let px: Vec<u32> = (0..64 * 64).map(|i| i * 7).collect();
        let mut out = Vec::new();
        let r = Rect {
            x: 0,
            y: 0,
            w: 64,
            h: 64,
        };
        e.pixels(&mut out, r, &px);
        e.pixels(&mut out, r, &px);
        // Parse both chunks and inflate them as one stream, as a client does.
        let mut stream = Vec::new();
        let mut at = 0;
        for _ in 0..2 {
            assert_eq!(&out[at + 8..at + 12], &6i32.to_be_bytes());
            let n = u32::from_be_bytes(out[at + 12..at + 16].try_into().unwrap()) as usize;
            stream.extend_from_slice(&out[at + 16..at + 16 + n]);
            at += 16 + n;
        }
        assert_eq!(at, out.len());
        let mut dec = Vec::new();
        flate2::read::ZlibDecoder::new(&stream[..])
            .read_to_end(&mut dec)
            .ok();
        assert!(dec.len() >= 64 * 64 * 4 * 2, "got {}", dec.len());
        assert_eq!(&dec[4..8], &7u32.to_le_bytes());
    }

    #[test]
    fn cursor_mask_from_alpha() {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        e.cursor(
            &mut out,
            &CursorImage {
                width: 9,
                height: 1,
                hot_x: 1,
                hot_y: 0,
                pixels: vec![0xff00_0000, 0, 0, 0, 0, 0, 0, 0, 0xffff_ffff],
            },
        );
        assert_eq!(out.len(), 12 + 9 * 4 + 2);
        assert_eq!(&out[out.len() - 2..], &[0x80, 0x80]);
    }
}
