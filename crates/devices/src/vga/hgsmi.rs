//! VirtualBox's HGSMI transport and the VBVA channel, as far as the mainline `vboxvideo`
//! DRM driver uses them (facts: shared/spec/guest-additions-protocol.md section 8).
//!
//! The guest writes the VRAM offset of a command buffer to port 0x3D0 (32-bit); the host
//! checks the buffer (inside VRAM, Jenkins one-at-a-time checksum), runs the command and
//! writes results into the buffer before the OUT completes. Host events reach the guest
//! through a 16-byte host-flags block at the end of VRAM plus the PCI INTA line, which the
//! guest acknowledges by writing 0xFFFFFFFF to port 0x3B0.
//!
//! Every field here comes from guest memory: offsets and sizes are checked before use and
//! a bad buffer is ignored, as VirtualBox does.

use super::vbe::{bytes_per_pixel, LinearMode};
use pdm::IrqLine;

/// Guest command port.
pub const GUEST_PORT: u16 = 0x3d0;
/// Host port (IRQ acknowledge, host buffer queue).
pub const HOST_PORT: u16 = 0x3b0;

/// Channel of HGSMI set-up commands.
pub const CHANNEL_HGSMI: u8 = 1;
/// Channel of VBVA commands.
pub const CHANNEL_VBVA: u8 = 2;

/// Host flag: an IRQ is being signalled.
pub const HOST_FLAGS_IRQ: u32 = 0x02;
/// Host flag: vertical sync.
pub const HOST_FLAGS_VSYNC: u32 = 0x10;
/// Host flag: monitors or mode hints changed.
pub const HOST_FLAGS_HOTPLUG: u32 = 0x20;
/// Host flag: cursor capabilities changed.
pub const HOST_FLAGS_CURSOR_CAPS: u32 = 0x40;

/// Guest capability: the guest handles the adapter IRQ.
pub const CAPS_IRQ: u32 = 0x02;
/// Guest capability: the guest reads mode hints.
pub const CAPS_VIDEO_MODE_HINTS: u32 = 0x04;

/// Magic of a valid mode hint.
pub const MODE_HINT_MAGIC: u32 = 0x0801_add9;

/// Header + tail bytes around a buffer's data.
const OVERHEAD: u32 = 16 + 8;
/// The host heap size reported to the guest (VirtualBox's value).
const HOST_HEAP_SIZE: u32 = 65536;
/// Largest cursor accepted (VirtualBox limits shapes to what fits in its buffer; the
/// Linux driver sends at most 64x64).
const MAX_CURSOR: u32 = 256;

/// Jenkins' one-at-a-time hash, which HGSMI uses as its buffer checksum.
fn oat(h: &mut u32, bytes: &[u8]) {
    for &b in bytes {
        *h = h.wrapping_add(u32::from(b));
        *h = h.wrapping_add(*h << 10);
        *h ^= *h >> 6;
    }
}

/// The checksum of the buffer at `offset` with `header` (16 bytes) and `tail_reserved`.
pub fn checksum(offset: u32, header: &[u8], tail_reserved: u32) -> u32 {
    let mut h = 0u32;
    oat(&mut h, &offset.to_le_bytes());
    oat(&mut h, header);
    oat(&mut h, &tail_reserved.to_le_bytes());
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// The guest's pointer shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Shown at all.
    pub visible: bool,
    /// Hot spot.
    pub hot_x: u32,
    /// Hot spot.
    pub hot_y: u32,
    /// Width in pixels (0 when only visibility changed).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major 0xAARRGGBB pixels (alpha 0 = transparent).
    pub pixels: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct View {
    offset: u32,
    size: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Screen {
    start: u32,
    pitch: u32,
    width: u32,
    height: u32,
    bpp: u16,
    flags: u16,
    set: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hint {
    cx: u32,
    cy: u32,
    bpp: u32,
}

/// Mutable pieces of the adapter HGSMI works on.
pub struct Ctx<'a> {
    /// VRAM (results the host writes there mark their pages dirty, as the guest's do).
    pub vram: &'a super::Vram,
    /// The adapter's interrupt line.
    pub irq: &'a IrqLine,
}

impl Ctx<'_> {
    fn get_u32(&self, off: usize) -> Option<u32> {
        self.vram.get_u32(off)
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.vram.write(off, &v.to_le_bytes());
    }
}

/// HGSMI/VBVA host state.
#[derive(Debug)]
pub struct Hgsmi {
    monitors: u32,
    host_flags_at: Option<u32>,
    pending: u32,
    irq_on: bool,
    caps: u32,
    views: Vec<View>,
    screens: Vec<Screen>,
    hints: Vec<Option<Hint>>,
    cursor: Option<Cursor>,
    input_mapping: (i32, i32, u32, u32),
}

impl Hgsmi {
    /// State for `monitors` screens.
    pub fn new(monitors: u32) -> Self {
        let n = monitors as usize;
        Hgsmi {
            monitors,
            host_flags_at: None,
            pending: 0,
            irq_on: false,
            caps: 0,
            views: vec![View::default(); n],
            screens: vec![Screen::default(); n],
            hints: vec![None; n],
            cursor: None,
            input_mapping: (0, 0, 0, 0),
        }
    }

    /// Back to power-on (mode hints survive, as the host's wish does in VirtualBox).
    pub fn reset(&mut self) {
        let hints = std::mem::take(&mut self.hints);
        *self = Hgsmi::new(self.monitors);
        self.hints = hints;
    }

    /// Capabilities the guest reported with INFO_CAPS.
    pub fn guest_caps(&self) -> u32 {
        self.caps
    }

    /// The rectangle absolute pointer coordinates span (x, y, width, height).
    pub fn input_mapping(&self) -> (i32, i32, u32, u32) {
        self.input_mapping
    }

    /// The pointer shape, if it changed since the last call.
    pub fn take_cursor(&mut self) -> Option<Cursor> {
        self.cursor.take()
    }

    /// The linear mode screen `i` scans out, from INFO_VIEW + INFO_SCREEN.
    pub fn screen_mode(&self, i: usize, vram_size: u32) -> Option<LinearMode> {
        let s = self.screens.get(i)?;
        let v = self.views.get(i)?;
        if !s.set || s.flags & 0x2 != 0 || !matches!(s.bpp, 8 | 15 | 16 | 24 | 32) {
            return None;
        }
        let bpp = u32::from(s.bpp);
        let row = s.width.checked_mul(bytes_per_pixel(bpp))?;
        if s.width == 0 || s.height == 0 || s.pitch < row {
            return None;
        }
        let start = v.offset.checked_add(s.start)?;
        let end = u64::from(start) + u64::from(s.pitch) * u64::from(s.height - 1) + u64::from(row);
        (end <= u64::from(vram_size)).then_some(LinearMode {
            width: s.width,
            height: s.height,
            bpp,
            pitch: s.pitch,
            start,
        })
    }

    /// Port 0x3B0 read: the next host-to-guest buffer (we never queue any).
    pub fn host_port_read(&self) -> u32 {
        0xffff_ffff
    }

    /// Port 0x3B0 write of 0xFFFFFFFF: acknowledge the IRQ; flags raised meanwhile are
    /// published and keep the line up.
    pub fn ack(&mut self, ctx: &mut Ctx<'_>) {
        let Some(at) = self.host_flags_at else {
            return;
        };
        let at = at as usize;
        let flags = ctx.get_u32(at).unwrap_or(0);
        if self.pending == 0 {
            let f = flags
                & !(HOST_FLAGS_IRQ
                    | HOST_FLAGS_VSYNC
                    | HOST_FLAGS_HOTPLUG
                    | HOST_FLAGS_CURSOR_CAPS);
            ctx.put_u32(at, f);
            self.irq_on = false;
            ctx.irq.set(false);
        } else {
            ctx.put_u32(at, flags | self.pending);
            self.pending = 0;
        }
    }

    fn raise(&mut self, flags: u32, ctx: &mut Ctx<'_>) {
        let Some(at) = self.host_flags_at else {
            return;
        };
        let at = at as usize;
        if !self.irq_on {
            let f = ctx.get_u32(at).unwrap_or(0);
            ctx.put_u32(at, f | HOST_FLAGS_IRQ | flags);
            self.irq_on = true;
            ctx.irq.set(true);
        } else {
            self.pending |= flags;
        }
    }

    /// Store a mode hint for `display`; returns true when the guest will be told now.
    pub fn set_mode_hint(
        &mut self,
        display: usize,
        cx: u32,
        cy: u32,
        bpp: u32,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(h) = self.hints.get_mut(display) else {
            return false;
        };
        *h = Some(Hint { cx, cy, bpp });
        let listening = self.caps & (CAPS_IRQ | CAPS_VIDEO_MODE_HINTS)
            == (CAPS_IRQ | CAPS_VIDEO_MODE_HINTS)
            && self.host_flags_at.is_some();
        if listening {
            self.raise(HOST_FLAGS_HOTPLUG, ctx);
        }
        listening
    }

    /// Port 0x3D0 write: run the buffer at VRAM `offset`. Returns true when the picture's
    /// layout may have changed.
    pub fn guest_write(&mut self, offset: u32, ctx: &mut Ctx<'_>) -> bool {
        let vram = ctx.vram.len() as u32;
        let Some(avail) = vram.checked_sub(offset) else {
            return false;
        };
        if avail < OVERHEAD {
            return false;
        }
        let o = offset as usize;
        let mut header = [0u8; 16];
        if !ctx.vram.read(o, &mut header) {
            return false;
        }
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if size > avail - OVERHEAD {
            tracing::debug!("HGSMI: buffer at {offset:#x} with {size} bytes overruns VRAM");
            return false;
        }
        let tail = o + 16 + size as usize;
        let (Some(reserved), Some(sum)) = (ctx.get_u32(tail), ctx.get_u32(tail + 4)) else {
            return false;
        };
        if checksum(offset, &header, reserved) != sum {
            tracing::debug!("HGSMI: bad checksum on the buffer at {offset:#x}");
            return false;
        }
        let channel = header[5];
        let code = u16::from_le_bytes([header[6], header[7]]);
        let data = o + 16;
        match channel {
            CHANNEL_HGSMI if code == 0 && size >= 8 => {
                let at = ctx.get_u32(data).unwrap_or(0);
                let len = ctx.get_u32(data + 4).unwrap_or(0);
                if len == 16 && at.checked_add(16) == Some(vram) {
                    self.host_flags_at = Some(at);
                }
                false
            }
            CHANNEL_VBVA => self.vbva(code, data, size as usize, ctx),
            _ => false,
        }
    }

    fn vbva(&mut self, code: u16, d: usize, size: usize, ctx: &mut Ctx<'_>) -> bool {
        let u = |ctx: &Ctx<'_>, off: usize| -> u32 {
            if off + 4 <= size {
                ctx.get_u32(d + off).unwrap_or(0)
            } else {
                0
            }
        };
        match code {
            // QUERY_CONF32
            1 if size >= 8 => {
                let v = match u(ctx, 0) {
                    0 => Some(self.monitors),
                    1 => Some(HOST_HEAP_SIZE),
                    2 | 3 => Some(0),
                    4 => Some(0x2),
                    5 => Some(0xf),
                    6 => Some(128 << 20),
                    0xffff_ffff => Some(0xffff_ffff),
                    _ => None,
                };
                if let Some(v) = v {
                    ctx.put_u32(d + 4, v);
                }
                false
            }
            // INFO_VIEW: an array of {index, offset, size, max screen size}.
            3 => {
                for e in 0..size / 16 {
                    let b = e * 16;
                    let idx = u(ctx, b) as usize;
                    if let Some(v) = self.views.get_mut(idx) {
                        v.offset = u(ctx, b + 4);
                        v.size = u(ctx, b + 8);
                    }
                }
                true
            }
            // INFO_SCREEN: the mode set.
            6 if size >= 32 => {
                let idx = u(ctx, 0) as usize;
                let bf = u(ctx, 28);
                if let Some(s) = self.screens.get_mut(idx) {
                    *s = Screen {
                        start: u(ctx, 12),
                        pitch: u(ctx, 16),
                        width: u(ctx, 20),
                        height: u(ctx, 24),
                        bpp: bf as u16,
                        flags: (bf >> 16) as u16,
                        set: true,
                    };
                    tracing::debug!("HGSMI: screen {idx}: {:?}", s);
                }
                true
            }
            // ENABLE: we leave host_events at 0, so the guest sends no dirty records and
            // the VRAM dirty pages tell what changed; answer success.
            7 if size >= 12 => {
                ctx.put_u32(d + 8, 0);
                false
            }
            // MOUSE_POINTER_SHAPE
            8 if size >= 24 => {
                ctx.put_u32(d, 0);
                let flags = u(ctx, 4);
                let mut c = Cursor {
                    visible: flags & 1 != 0,
                    hot_x: u(ctx, 8),
                    hot_y: u(ctx, 12),
                    width: 0,
                    height: 0,
                    pixels: Vec::new(),
                };
                if flags & 4 != 0 {
                    let (w, h) = (u(ctx, 16), u(ctx, 20));
                    if w > MAX_CURSOR || h > MAX_CURSOR {
                        ctx.put_u32(d, (-2i32) as u32); // VERR_INVALID_PARAMETER
                        return false;
                    }
                    let and_len = (w as usize).div_ceil(8) * h as usize;
                    let xor_at = (and_len + 3) & !3;
                    let need = 24 + xor_at + 4 * (w * h) as usize;
                    if need > size {
                        ctx.put_u32(d, (-2i32) as u32);
                        return false;
                    }
                    let shape = d + 24;
                    let alpha = flags & 2 != 0;
                    c.width = w;
                    c.height = h;
                    for y in 0..h as usize {
                        for x in 0..w as usize {
                            let px = ctx
                                .get_u32(shape + xor_at + 4 * (y * w as usize + x))
                                .unwrap_or(0);
                            let and_byte = ctx
                                .vram
                                .get(shape + y * (w as usize).div_ceil(8) + x / 8)
                                .unwrap_or(0xff);
                            let transparent = and_byte & (0x80 >> (x % 8)) != 0;
                            let argb = if alpha {
                                px
                            } else if transparent && px & 0xff_ffff == 0 {
                                0
                            } else {
                                // AND=1 with colour inverts the screen: show it opaque.
                                px | 0xff00_0000
                            };
                            c.pixels.push(argb);
                        }
                    }
                } else if let Some(prev) = &self.cursor {
                    c.width = prev.width;
                    c.height = prev.height;
                    c.pixels = prev.pixels.clone();
                }
                self.cursor = Some(c);
                false
            }
            // INFO_CAPS
            12 if size >= 8 => {
                self.caps = u(ctx, 4);
                ctx.put_u32(d, 0);
                false
            }
            // QUERY_MODE_HINTS
            19 if size >= 8 => {
                let w = u(ctx, 0);
                let (count, hsize) = ((w & 0xffff) as usize, (w >> 16) as usize);
                if 8 + count * hsize > size || hsize < 4 {
                    return false;
                }
                for i in 0..count {
                    let slot = d + 8 + i * hsize;
                    if slot.checked_add(hsize).is_some_and(|e| e <= ctx.vram.len()) {
                        ctx.vram.write(slot, &vec![0xff; hsize]);
                    }
                    if let Some(Some(h)) = self.hints.get(i) {
                        let fields = [MODE_HINT_MAGIC, h.cx, h.cy, h.bpp, i as u32, 0, 0, 1];
                        for (k, f) in fields.iter().enumerate() {
                            if (k + 1) * 4 <= hsize {
                                ctx.put_u32(slot + k * 4, *f);
                            }
                        }
                    }
                }
                ctx.put_u32(d + 4, 0);
                false
            }
            // REPORT_INPUT_MAPPING
            20 if size >= 16 => {
                self.input_mapping = (u(ctx, 0) as i32, u(ctx, 4) as i32, u(ctx, 8), u(ctx, 12));
                false
            }
            // CURSOR_POSITION: the host reports no position of its own.
            21 if size >= 12 => {
                ctx.put_u32(d + 4, 0);
                ctx.put_u32(d + 8, 0);
                false
            }
            _ => false,
        }
    }
}
