//! Scan-out: turns the adapter's state into a 32-bit host framebuffer, redrawing only what
//! changed. Text modes draw from the character/attribute planes (0 and 1) with the font the
//! BIOS loaded into plane 2; graphics modes are 16-colour planar and 256-colour (chain-4);
//! linear (VBE/HGSMI) modes are 8, 15, 16, 24 and 32 bpp. What changed comes from the VRAM
//! dirty pages (graphics) or a per-cell cache (text), never from comparing pixels.
//!
//! One [`Renderer`] per adapter: it clears the adapter's dirty bits as it consumes them.
//!
//! The video memory is guest RAM the guest may write while we read it; linear modes copy
//! each changed scanline out first, the VGA modes a snapshot of the four planes (256 KiB),
//! so a frame is drawn from one consistent copy per line.

use super::regs::AR_PAS;
use super::vbe::{bytes_per_pixel, LinearMode};
use super::{DirtyBitmap, Vga};

/// Largest picture the renderer produces per side (bigger guest modes are clipped), so a
/// guest cannot make the host allocate more than 256 MiB for the picture.
pub const MAX_SIDE: u32 = 8192;
/// The four VGA planes, interleaved at the start of VRAM.
const PLANES_SIZE: usize = 4 * 0x1_0000;

/// A rectangle of the picture in pixels.
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
}

/// The guest's picture as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framebuffer {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major pixels, `width` per row, each 0x00RRGGBB.
    pub pixels: Vec<u32>,
}

impl Framebuffer {
    /// A black picture.
    pub fn new(width: u32, height: u32) -> Self {
        Framebuffer {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }

    /// The pixel at (x, y), or None outside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }
}

/// What the adapter scans out, as far as the picture's layout is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Blank { w: u32, h: u32 },
    Text(TextLayout),
    Planar16 { w: u32, h: u32 },
    Chain256 { w: u32, h: u32 },
    Linear(LinearMode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TextLayout {
    cols: u32,
    rows: u32,
    cw: u32,
    ch: u32,
}

impl Layout {
    fn size(&self) -> (u32, u32) {
        let (w, h) = match *self {
            Layout::Blank { w, h } => (w, h),
            Layout::Text(t) => (t.cols * t.cw, t.rows * t.ch),
            Layout::Planar16 { w, h, .. } | Layout::Chain256 { w, h, .. } => (w, h),
            Layout::Linear(m) => (m.width, m.height),
        };
        (w.clamp(1, MAX_SIDE), h.clamp(1, MAX_SIDE))
    }
}

impl Vga {
    fn layout(&self) -> Layout {
        if let Some(m) = self.dispi.mode() {
            return Layout::Linear(m);
        }
        if let Some(m) = self.hgsmi_mode() {
            return Layout::Linear(m);
        }
        let r = &self.regs;
        let vdisp = r.vdisplay();
        let chars = r.chars_per_line();
        if r.attr_index & AR_PAS == 0 || r.seq[1] & 0x20 != 0 || chars < 8 || vdisp < 8 {
            return Layout::Blank {
                w: if chars >= 8 { chars * 8 } else { 640 },
                h: if vdisp >= 8 { vdisp } else { 480 },
            };
        }
        if r.gc[6] & 1 == 0 {
            let ch = r.char_height();
            return Layout::Text(TextLayout {
                cols: chars,
                rows: (vdisp / ch).max(1),
                cw: r.char_width(),
                ch,
            });
        }
        let mut repeat = r.char_height();
        if r.crtc[9] & 0x80 != 0 {
            repeat *= 2;
        }
        let h = (vdisp / repeat).max(1);
        if (r.gc[5] >> 5) & 2 != 0 {
            // 256 colours: two dot clocks per pixel when the attribute controller's
            // 8-bit pixel mode is on (mode 13h).
            let w = if r.attr[0x10] & 0x40 != 0 {
                chars * 4
            } else {
                chars * 8
            };
            Layout::Chain256 { w, h }
        } else {
            Layout::Planar16 { w: chars * 8, h }
        }
    }

    /// The characters on screen in a text mode, one string per row (code page 437
    /// printable ASCII as is, NUL as a space, other codes as '.'); None in graphics modes.
    pub fn text_screen(&self) -> Option<Vec<String>> {
        let Layout::Text(t) = self.layout() else {
            return None;
        };
        let start = self.regs.start_address();
        let off = self.regs.line_offset();
        let mut rows = Vec::new();
        for row in 0..t.rows {
            let mut s = String::new();
            for col in 0..t.cols {
                let a = ((start + row * off + col) & 0xffff) as usize * 4;
                let c = self.vram.get(a).unwrap_or(0);
                s.push(match c {
                    0 => ' ',
                    0x20..=0x7e => c as char,
                    _ => '.',
                });
            }
            rows.push(s.trim_end().to_string());
        }
        Some(rows)
    }
}

/// Draws an adapter's picture into a [`Framebuffer`] and reports what changed.
#[derive(Debug)]
pub struct Renderer {
    fb: Framebuffer,
    layout: Option<Layout>,
    /// Text mode: per cell (char | attr << 8 | cursor-line bits << 16) as last drawn.
    cells: Vec<u32>,
    /// Text mode: the font area of plane 2 as last drawn.
    font: Vec<u8>,
    /// VGA modes: the planes as read at this refresh.
    planes: Vec<u8>,
    /// Linear modes: one scanline's bytes.
    line: Vec<u8>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

/// Collects changed rows into full-width bands.
struct Bands {
    out: Vec<Rect>,
    width: u32,
    open: Option<(u32, u32)>,
}

impl Bands {
    fn new(width: u32) -> Self {
        Bands {
            out: Vec::new(),
            width,
            open: None,
        }
    }
    fn row(&mut self, y: u32, changed: bool) {
        match (self.open, changed) {
            (Some((s, e)), true) if e == y => self.open = Some((s, y + 1)),
            (Some(_), true) => {
                self.close();
                self.open = Some((y, y + 1));
            }
            (None, true) => self.open = Some((y, y + 1)),
            (_, false) => self.close(),
        }
    }
    fn close(&mut self) {
        if let Some((s, e)) = self.open.take() {
            self.out.push(Rect {
                x: 0,
                y: s,
                w: self.width,
                h: e - s,
            });
        }
    }
    fn finish(mut self) -> Vec<Rect> {
        self.close();
        self.out
    }
}

impl Renderer {
    /// A renderer that has drawn nothing yet.
    pub fn new() -> Self {
        Renderer {
            fb: Framebuffer::new(640, 480),
            layout: None,
            cells: Vec::new(),
            font: Vec::new(),
            planes: Vec::new(),
            line: Vec::new(),
        }
    }

    /// The picture as last refreshed.
    pub fn framebuffer(&self) -> &Framebuffer {
        &self.fb
    }

    /// Bring the picture up to date with `vga`; returns the rectangles that changed (the
    /// whole picture after a mode change).
    pub fn refresh(&mut self, vga: &mut Vga) -> Vec<Rect> {
        vga.collect_dirty();
        let layout = vga.layout();
        let (w, h) = layout.size();
        let mut full = vga.redraw || self.layout != Some(layout);
        if self.fb.width != w || self.fb.height != h {
            self.fb = Framebuffer::new(w, h);
            full = true;
        }
        if self.layout != Some(layout) {
            self.cells.clear();
            self.font.clear();
        }
        self.layout = Some(layout);
        let rects = match layout {
            Layout::Blank { .. } => {
                if full {
                    self.fb.pixels.fill(0);
                }
                if full {
                    vec![Rect::full(w, h)]
                } else {
                    Vec::new()
                }
            }
            Layout::Text(t) => {
                self.snapshot_planes(vga);
                self.draw_text(vga, t, full)
            }
            Layout::Planar16 { .. } => {
                self.snapshot_planes(vga);
                self.draw_lines(vga, full, false)
            }
            Layout::Chain256 { .. } => {
                self.snapshot_planes(vga);
                self.draw_lines(vga, full, true)
            }
            Layout::Linear(m) => self.draw_linear(vga, m, full),
        };
        vga.dirty.clear();
        vga.redraw = false;
        if full {
            vec![Rect::full(w, h)]
        } else {
            rects
        }
    }

    /// Copy the four 64 KiB planes (the first 256 KiB of VRAM) into `self.planes`.
    fn snapshot_planes(&mut self, vga: &Vga) {
        let n = vga.vram.len().min(PLANES_SIZE);
        self.planes.resize(n, 0);
        vga.vram.read(0, &mut self.planes);
    }

    fn draw_linear(&mut self, vga: &Vga, m: LinearMode, full: bool) -> Vec<Rect> {
        let w = self.fb.width;
        let h = self.fb.height;
        let bypp = bytes_per_pixel(m.bpp) as usize;
        let dac8 = vga.dispi.dac8();
        let mut bands = Bands::new(w);
        for y in 0..h {
            let off = m.start as usize + y as usize * m.pitch as usize;
            let len = w as usize * bypp;
            let changed = full || vga.dirty.any(off, len);
            if changed {
                let row =
                    &mut self.fb.pixels[y as usize * w as usize..(y as usize + 1) * w as usize];
                self.line.resize(len, 0);
                if !vga.vram.read(off, &mut self.line) {
                    row.fill(0);
                } else {
                    convert_row(row, &self.line, m.bpp, |i| vga.regs.dac_rgb(i, dac8));
                }
            }
            bands.row(y, changed);
        }
        bands.finish()
    }

    fn draw_lines(&mut self, vga: &Vga, full: bool, chain: bool) -> Vec<Rect> {
        let w = self.fb.width;
        let h = self.fb.height;
        let start = vga.regs.start_address();
        let offset = vga.regs.line_offset();
        let dac8 = vga.dispi.dac8();
        // The 16 attribute colours through the palette registers and the DAC.
        let mut pal16 = [0u32; 16];
        for (i, p) in pal16.iter_mut().enumerate() {
            *p = vga.regs.dac_rgb(vga.regs.attr_to_dac(i as u8), dac8);
        }
        let plane_mask = vga.regs.attr[0x12] & 0x0f;
        let mut bands = Bands::new(w);
        for y in 0..h {
            let addr = start.wrapping_add(y.wrapping_mul(offset)) & 0xffff;
            let vstart = addr as usize * 4;
            let vlen = if chain {
                w as usize
            } else {
                (w as usize).div_ceil(8) * 4
            };
            let changed = full || planes_dirty(&vga.dirty, vstart, vlen);
            if changed {
                let row =
                    &mut self.fb.pixels[y as usize * w as usize..(y as usize + 1) * w as usize];
                for (x, px) in row.iter_mut().enumerate() {
                    *px = if chain {
                        let i = (vstart + x) & 0x3_ffff;
                        vga.regs
                            .dac_rgb(self.planes.get(i).copied().unwrap_or(0), dac8)
                    } else {
                        let a = ((addr as usize + x / 8) & 0xffff) * 4;
                        let bit = 7 - (x % 8);
                        let mut c = 0u8;
                        for p in 0..4 {
                            let b = self.planes.get(a + p).copied().unwrap_or(0);
                            c |= ((b >> bit) & 1) << p;
                        }
                        pal16[usize::from(c & plane_mask)]
                    };
                }
            }
            bands.row(y, changed);
        }
        bands.finish()
    }

    fn draw_text(&mut self, vga: &Vga, t: TextLayout, full: bool) -> Vec<Rect> {
        let regs = &vga.regs;
        let dac8 = vga.dispi.dac8();
        let w = self.fb.width;
        // Font: character map A/B from sequencer register 3, glyphs of 32 bytes in plane 2.
        let sel = regs.seq[3];
        let map_a = (((sel >> 5) & 1) | ((sel << 1) & 6)) as usize * 8192;
        let map_b = (((sel >> 4) & 1) | ((sel >> 1) & 6)) as usize * 8192;
        let mut font = Vec::with_capacity(2 * 8192);
        for base in [map_a, map_b] {
            for i in 0..8192 {
                font.push(self.planes.get((base + i) * 4 + 2).copied().unwrap_or(0));
            }
        }
        let font_changed = font != self.font;
        self.font = font;
        let ncells = (t.cols * t.rows) as usize;
        if self.cells.len() != ncells {
            self.cells = vec![u32::MAX; ncells];
        }
        let mut pal16 = [0u32; 16];
        for (i, p) in pal16.iter_mut().enumerate() {
            *p = regs.dac_rgb(regs.attr_to_dac(i as u8), dac8);
        }
        let blink = regs.attr[0x10] & 0x08 != 0;
        let line_gfx = regs.attr[0x10] & 0x04 != 0;
        let start = regs.start_address();
        let offset = regs.line_offset();
        let cursor_on = regs.crtc[0x0a] & 0x20 == 0;
        let cursor_at =
            ((u32::from(regs.crtc[0x0e]) << 8) | u32::from(regs.crtc[0x0f])).wrapping_sub(start);
        let (cs, ce) = (
            u32::from(regs.crtc[0x0a] & 0x1f),
            u32::from(regs.crtc[0x0b] & 0x1f),
        );
        let mut bands = Bands::new(w);
        for row in 0..t.rows {
            let mut row_changed = false;
            for col in 0..t.cols {
                let a = ((start + row * offset + col) & 0xffff) as usize * 4;
                let c = self.planes.get(a).copied().unwrap_or(0);
                let attr = self.planes.get(a + 1).copied().unwrap_or(0);
                let cell = row * t.cols + col;
                let cursor = cursor_on && row * offset + col == cursor_at;
                let key = u32::from(c) | u32::from(attr) << 8 | u32::from(cursor) << 16;
                let slot = &mut self.cells[cell as usize];
                if !full && !font_changed && *slot == key {
                    continue;
                }
                *slot = key;
                row_changed = true;
                let fg = pal16[usize::from(attr & 0x0f)];
                let bg = pal16[usize::from(if blink { (attr >> 4) & 7 } else { attr >> 4 })];
                let use_b = attr & 0x08 != 0 && map_a != map_b;
                let glyph = usize::from(c) * 32 + if use_b { 8192 } else { 0 };
                for line in 0..t.ch {
                    let bits = self.font.get(glyph + line as usize).copied().unwrap_or(0);
                    let on_cursor = cursor && line >= cs && line <= ce;
                    let y = row * t.ch + line;
                    let base = y as usize * w as usize + (col * t.cw) as usize;
                    for x in 0..t.cw {
                        let set = if x < 8 {
                            bits & (0x80 >> x) != 0
                        } else {
                            line_gfx && (0xc0..=0xdf).contains(&c) && bits & 1 != 0
                        };
                        if let Some(px) = self.fb.pixels.get_mut(base + x as usize) {
                            *px = if set || on_cursor { fg } else { bg };
                        }
                    }
                }
            }
            for line in 0..t.ch {
                bands.row(row * t.ch + line, row_changed);
            }
        }
        bands.finish()
    }
}

/// True when any byte of the planes' `[start, start + len)` is dirty, the range wrapping
/// at the end of the planes as the scan-out's addresses do (a start address near the end
/// shows the beginning of the planes on the rest of the line).
fn planes_dirty(dirty: &DirtyBitmap, start: usize, len: usize) -> bool {
    let start = start % PLANES_SIZE;
    let len = len.min(PLANES_SIZE);
    let first = len.min(PLANES_SIZE - start);
    dirty.any(start, first) || dirty.any(0, len - first)
}

/// Convert one row of linear-framebuffer bytes to 0x00RRGGBB pixels. One loop per depth,
/// so the common 32 bpp case is a straight, vectorisable copy.
fn convert_row(row: &mut [u32], src: &[u8], bpp: u32, palette: impl Fn(u8) -> u32) {
    match bpp {
        32 => {
            for (px, p) in row.iter_mut().zip(src.chunks_exact(4)) {
                *px = u32::from_le_bytes([p[0], p[1], p[2], 0]);
            }
        }
        24 => {
            for (px, p) in row.iter_mut().zip(src.chunks_exact(3)) {
                *px = u32::from_le_bytes([p[0], p[1], p[2], 0]);
            }
        }
        16 => {
            for (px, p) in row.iter_mut().zip(src.chunks_exact(2)) {
                let v = u32::from(u16::from_le_bytes([p[0], p[1]]));
                *px = expand5((v >> 11) & 0x1f) << 16
                    | expand6((v >> 5) & 0x3f) << 8
                    | expand5(v & 0x1f);
            }
        }
        15 => {
            for (px, p) in row.iter_mut().zip(src.chunks_exact(2)) {
                let v = u32::from(u16::from_le_bytes([p[0], p[1]]));
                *px = expand5((v >> 10) & 0x1f) << 16
                    | expand5((v >> 5) & 0x1f) << 8
                    | expand5(v & 0x1f);
            }
        }
        _ => {
            for (px, &i) in row.iter_mut().zip(src) {
                *px = palette(i);
            }
        }
    }
}

fn expand5(v: u32) -> u32 {
    (v << 3) | (v >> 2)
}

fn expand6(v: u32) -> u32 {
    (v << 2) | (v >> 4)
}

#[cfg(test)]
mod tests {
    use super::{convert_row, planes_dirty, DirtyBitmap, PLANES_SIZE};

    #[test]
    fn plane_ranges_wrap_at_the_end_of_the_planes() {
        let mut d = DirtyBitmap::new(1 << 20);
        d.clear();
        d.mark(10);
        assert!(planes_dirty(&d, PLANES_SIZE - 16, 32), "wraps to byte 10");
        assert!(
            !planes_dirty(&d, PLANES_SIZE - 16, 16),
            "ends at the last byte"
        );
        assert!(!planes_dirty(&d, 4096, 8192));
        d.clear();
        d.mark(PLANES_SIZE + 10);
        assert!(
            !planes_dirty(&d, PLANES_SIZE - 16, 32),
            "memory past the planes is not scanned out"
        );
        assert!(!planes_dirty(&d, usize::MAX, usize::MAX));
    }

    #[test]
    fn rows_convert_at_every_depth() {
        let conv = |bpp: u32, src: &[u8], n: usize| {
            let mut row = vec![0xdead_beef; n];
            convert_row(&mut row, src, bpp, |i| u32::from(i) * 0x01_0101);
            row
        };
        assert_eq!(
            conv(32, &[0x11, 0x22, 0x33, 0x44, 1, 2, 3, 4], 2),
            [0x33_2211, 0x03_0201],
            "the unused byte is dropped"
        );
        assert_eq!(conv(24, &[1, 2, 3, 4, 5, 6], 2), [0x03_0201, 0x06_0504]);
        // 5:6:5 and 5:5:5 expand their top bits into the low ones (full scale is 0xff).
        assert_eq!(
            conv(16, &[0x00, 0xf8, 0xe0, 0x07, 0x1f, 0x00], 3),
            [0xff_0000, 0x00_ff00, 0x00_00ff]
        );
        assert_eq!(
            conv(15, &[0x00, 0x7c, 0xe0, 0x03, 0x1f, 0x00, 0x10, 0x42], 4),
            [0xff_0000, 0x00_ff00, 0x00_00ff, 0x84_8484]
        );
        assert_eq!(conv(8, &[0, 7, 255], 3), [0, 0x07_0707, 0xff_ffff]);
    }
}
