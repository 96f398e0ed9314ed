//! The ZRLE encoding (RFC 6143 7.7.6): the rectangle is cut into 64x64 tiles, each tile is
//! sent in the smallest of its forms (solid colour, packed palette, palette RLE, plain RLE,
//! raw), pixels as 3-byte CPIXELs where the pixel format allows, and everything goes
//! through one zlib stream per connection. Screens of text and desktop widgets have few
//! colours per tile and long runs, so this is several times smaller than zlib over raw
//! 32-bit pixels.
//!
//! Packed palettes are used only when a tile row fills whole bytes (64-pixel tiles always
//! do): the RFC pads each row to a byte, and some clients (vncdotool) ignore the padding;
//! other tiles fall back to palette RLE, which every client decodes alike.

use crate::proto::PixelFormat;
use crate::screen::Rect;
use flate2::{Compress, Compression, FlushCompress};

/// Tile side.
pub const TILE: u32 = 64;
/// Most palette entries (sub-encodings 2..=127).
const MAX_PALETTE: usize = 127;

/// A connection's ZRLE state: its zlib stream.
pub struct ZrleEncoder {
    z: Compress,
    tile: Vec<u32>,
    raw: Vec<u8>,
    scratch: Box<TileScratch>,
}

impl std::fmt::Debug for ZrleEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZrleEncoder").finish_non_exhaustive()
    }
}

impl Default for ZrleEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes a run length takes (RFC: 255s then the remainder, length - 1 in all).
fn run_len_bytes(len: usize) -> usize {
    (len - 1) / 255 + 1
}

fn put_run_len(out: &mut Vec<u8>, len: usize) {
    let mut rest = len - 1;
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

/// Writes CPIXELs of one pixel format.
#[derive(Clone, Copy)]
struct CPixel {
    pf: PixelFormat,
    /// The bytes of a whole pixel that make the CPIXEL.
    range: (usize, usize),
    /// The server's own format: the CPIXEL is blue, green, red.
    native: bool,
}

impl CPixel {
    fn new(pf: &PixelFormat) -> Self {
        let range = pf
            .cpixel_bytes()
            .map_or((0, pf.bytes()), |r| (r.start, r.end));
        CPixel {
            pf: *pf,
            range,
            native: *pf == PixelFormat::SERVER,
        }
    }

    fn size(&self) -> usize {
        self.range.1 - self.range.0
    }

    /// Append the CPIXEL of `rgb`.
    fn put(&self, out: &mut Vec<u8>, rgb: u32) {
        if self.native {
            out.extend_from_slice(&rgb.to_le_bytes()[..3]);
            return;
        }
        let mut v = [0u8; 4];
        let mut w = Vec::with_capacity(4);
        self.pf.put(&mut w, rgb);
        v[..w.len()].copy_from_slice(&w);
        out.extend_from_slice(&v[self.range.0..self.range.1]);
    }
}

/// Colour -> palette index for one tile: open addressing, cleared by generation.
struct PaletteMap {
    slots: [(u32, u8, u32); 512],
    generation: u32,
}

impl PaletteMap {
    fn new() -> Self {
        PaletteMap {
            slots: [(0, 0, 0); 512],
            generation: 0,
        }
    }

    fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots = [(0, 0, 0); 512];
            self.generation = 1;
        }
    }

    /// The index of `c`, inserting it as `next` when absent; (index, inserted).
    fn get_or_insert(&mut self, c: u32, next: u8) -> (u8, bool) {
        let mut i = (c.wrapping_mul(0x9e37_79b1) >> 23) as usize;
        loop {
            let s = &mut self.slots[i];
            if s.2 != self.generation {
                *s = (c, next, self.generation);
                return (next, true);
            }
            if s.0 == c {
                return (s.1, false);
            }
            i = (i + 1) & 511;
        }
    }
}

/// One tile's analysis, reused from tile to tile.
struct TileScratch {
    /// (colour, length, palette index) of each run, across row ends.
    runs: Vec<(u32, u32, u8)>,
    palette: Vec<u32>,
    map: PaletteMap,
}

impl ZrleEncoder {
    /// A fresh zlib stream (one per connection: the client keeps the matching inflater).
    pub fn new() -> Self {
        ZrleEncoder {
            // zlib's default level (6), as QEMU's ZRLE uses: the tile forms leave little
            // data, so the better ratio costs little time (about 1 ms for a 1024x768 frame).
            z: Compress::new(Compression::default(), true),
            tile: Vec::with_capacity((TILE * TILE) as usize),
            raw: Vec::new(),
            scratch: Box::new(TileScratch {
                runs: Vec::with_capacity((TILE * TILE) as usize),
                palette: Vec::with_capacity(MAX_PALETTE + 1),
                map: PaletteMap::new(),
            }),
        }
    }

    /// Append rectangle `r` of `pixels` (`r.w * r.h` 0x00RRGGBB values) as a ZRLE
    /// rectangle (header, length, zlib data).
    pub fn encode(&mut self, out: &mut Vec<u8>, pf: &PixelFormat, r: Rect, pixels: &[u32]) {
        self.encode_strided(out, pf, r, pixels, r.w as usize);
    }

    /// [`ZrleEncoder::encode`] from a bigger picture: row `y` of the rectangle starts at
    /// `pixels[y * stride]`.
    pub fn encode_strided(
        &mut self,
        out: &mut Vec<u8>,
        pf: &PixelFormat,
        r: Rect,
        pixels: &[u32],
        stride: usize,
    ) {
        self.raw.clear();
        let cp = CPixel::new(pf);
        let mut ty = 0;
        while ty < r.h {
            let th = TILE.min(r.h - ty);
            let mut tx = 0;
            while tx < r.w {
                let tw = TILE.min(r.w - tx);
                self.tile.clear();
                for y in ty..ty + th {
                    let s = y as usize * stride + tx as usize;
                    self.tile
                        .extend(pixels[s..s + tw as usize].iter().map(|&p| p & 0x00ff_ffff));
                }
                encode_tile(
                    &mut self.raw,
                    &cp,
                    &mut self.scratch,
                    &self.tile,
                    tw as usize,
                    th as usize,
                );
                tx += tw;
            }
            ty += th;
        }
        crate::encode::rect_header(out, r.x, r.y, r.w, r.h, crate::proto::encoding::ZRLE);
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        deflate_sync(&mut self.z, &self.raw, out);
        let n = (out.len() - start) as u32;
        out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
    }
}

/// Compress `input` into `out` and sync-flush, so the client can decode this rectangle
/// without waiting for more.
pub(crate) fn deflate_sync(z: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    let mut consumed = 0usize;
    loop {
        out.reserve(input.len() - consumed + 1024);
        let before_in = z.total_in();
        let r = z.compress_vec(&input[consumed..], out, FlushCompress::Sync);
        consumed += (z.total_in() - before_in) as usize;
        // Done when all input is in and the flush fitted (spare room left behind).
        if r.is_err() || (consumed >= input.len() && out.len() < out.capacity()) {
            break;
        }
    }
}

/// Append one tile's sub-encoding byte and data: the smallest of its forms.
fn encode_tile(
    out: &mut Vec<u8>,
    cp: &CPixel,
    t: &mut TileScratch,
    px: &[u32],
    tw: usize,
    th: usize,
) {
    let cps = cp.size();
    // Runs, the palette (up to 127 colours) and the sizes of the RLE forms, in one pass.
    t.runs.clear();
    t.palette.clear();
    t.map.clear();
    let mut plain_rle = 0usize;
    let mut pal_rle = 0usize;
    let mut i = 0;
    while i < px.len() {
        let c = px[i];
        let mut j = i + 1;
        while j < px.len() && px[j] == c {
            j += 1;
        }
        let len = j - i;
        plain_rle += cps + run_len_bytes(len);
        pal_rle += if len == 1 { 1 } else { 1 + run_len_bytes(len) };
        let mut index = 0;
        if t.palette.len() <= MAX_PALETTE {
            let (k, new) = t.map.get_or_insert(c, t.palette.len() as u8);
            if new {
                t.palette.push(c);
            }
            index = k;
        }
        t.runs.push((c, len as u32, index));
        i = j;
    }
    let n = px.len();
    let p = t.palette.len();
    if p == 1 {
        out.push(1);
        cp.put(out, t.palette[0]);
        return;
    }
    let raw = n * cps;
    let has_palette = p <= MAX_PALETTE;
    let bits = match p {
        2 => 1,
        3 | 4 => 2,
        5..=16 => 4,
        _ => 0,
    };
    let packed = if bits > 0 && (tw * bits).is_multiple_of(8) {
        Some(p * cps + th * (tw * bits / 8))
    } else {
        None
    };
    let pal_rle = has_palette.then_some(p * cps + pal_rle);
    let best = [Some(raw), Some(plain_rle), pal_rle, packed]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(raw);
    if Some(best) == packed {
        out.push(p as u8);
        for &c in &t.palette {
            cp.put(out, c);
        }
        // Rows fill whole bytes (checked above), so the bits run on across row ends.
        let mut acc = 0u8;
        let mut nbits = 0;
        for &(_, len, k) in &t.runs {
            for _ in 0..len {
                acc = (acc << bits) | k;
                nbits += bits;
                if nbits == 8 {
                    out.push(acc);
                    acc = 0;
                    nbits = 0;
                }
            }
        }
    } else if Some(best) == pal_rle {
        out.push(128 | p as u8);
        for &c in &t.palette {
            cp.put(out, c);
        }
        for &(_, len, k) in &t.runs {
            if len == 1 {
                out.push(k);
            } else {
                out.push(128 | k);
                put_run_len(out, len as usize);
            }
        }
    } else if best == plain_rle {
        out.push(128);
        for &(c, len, _) in &t.runs {
            cp.put(out, c);
            put_run_len(out, len as usize);
        }
    } else {
        out.push(0);
        for &c in px {
            cp.put(out, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Decoder;

    fn roundtrip(w: u32, h: u32, px: &[u32]) -> usize {
        let mut e = ZrleEncoder::new();
        let mut out = Vec::new();
        let r = Rect { x: 0, y: 0, w, h };
        e.encode(&mut out, &PixelFormat::SERVER, r, px);
        // Twice through the same stream: the second rectangle depends on the first's
        // dictionary, as on a real connection.
        e.encode(&mut out, &PixelFormat::SERVER, r, px);
        let mut d = Decoder::new(w, h);
        let mut input = &out[..];
        for _ in 0..2 {
            d.rect(&mut input).expect("decodes");
            assert_eq!(d.pixels, px, "{w}x{h}");
        }
        assert!(input.is_empty());
        out.len() / 2
    }

    #[test]
    fn every_tile_form_roundtrips() {
        // Solid, 2 colours (packed, and RLE on a 13-wide edge tile), 5 colours, many
        // colours, long runs over 255 pixels.
        let (w, h) = (141, 70);
        let solid = vec![0x123456; (w * h) as usize];
        roundtrip(w, h, &solid);
        let two: Vec<u32> = (0..w * h)
            .map(|i| if (i % w) % 3 == 0 { 0xffffff } else { 0 })
            .collect();
        roundtrip(w, h, &two);
        let five: Vec<u32> = (0..w * h).map(|i| (i % 5) * 0x010203).collect();
        roundtrip(w, h, &five);
        let many: Vec<u32> = (0..w * h)
            .map(|i| i.wrapping_mul(2_654_435_761) & 0xffffff)
            .collect();
        roundtrip(w, h, &many);
        let bands: Vec<u32> = (0..w * h).map(|i| (i / 600) * 0x0a0a0a).collect();
        roundtrip(w, h, &bands);
        let pal100: Vec<u32> = (0..w * h).map(|i| ((i / 7) % 100) * 0x020100).collect();
        roundtrip(w, h, &pal100);
    }

    #[test]
    fn text_like_tiles_are_much_smaller_than_raw() {
        let (w, h) = (720u32, 400u32);
        let px: Vec<u32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if (x / 9 + y / 16) % 7 == 0 && (x % 9) < 7 && (y % 16) > 3 {
                    0xaaaaaa
                } else {
                    0
                }
            })
            .collect();
        let n = roundtrip(w, h, &px);
        assert!(n * 50 < (w * h * 4) as usize, "{n} bytes");
    }

    proptest::proptest! {
        #[test]
        fn strided_is_the_same_as_copied(x in 0u32..40, y in 0u32..30, w in 1u32..100, h in 1u32..70, seed in 0u32..1000) {
            let (pw, ph) = (140u32, 100u32);
            let (w, h) = (w.min(pw - x), h.min(ph - y));
            let pic: Vec<u32> = (0..pw * ph)
                .map(|i| (i.wrapping_mul(seed | 1) / 7 % 13).wrapping_mul(0x030507) & 0xffffff)
                .collect();
            let sub: Vec<u32> = (y..y + h)
                .flat_map(|row| pic[(row * pw + x) as usize..(row * pw + x + w) as usize].to_vec())
                .collect();
            let r = Rect { x, y, w, h };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            ZrleEncoder::new().encode(&mut a, &PixelFormat::SERVER, r, &sub);
            ZrleEncoder::new().encode_strided(&mut b, &PixelFormat::SERVER, r, &pic[(y * pw + x) as usize..], pw as usize);
            proptest::prop_assert_eq!(a, b);
        }

        #[test]
        fn random_rects_roundtrip(w in 1u32..150, h in 1u32..90, seed in 0u32..1000, colours in 1u32..200) {
            let px: Vec<u32> = (0..w * h)
                .map(|i| (i.wrapping_mul(seed | 1) / 3 % colours).wrapping_mul(0x010f03) & 0xffffff)
                .collect();
            roundtrip(w, h, &px);
        }
    }
}
