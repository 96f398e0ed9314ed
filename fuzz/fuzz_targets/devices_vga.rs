//! Fuzz the VBoxVGA adapter as a hostile guest drives it: VGA register ports, the VBE DISPI
//! registers (mode sets with any geometry, depth and offsets), writes to the video memory
//! through the linear framebuffer and the legacy window, and HGSMI buffers submitted through
//! the guest port (raw bytes, or a valid header and checksum around a fuzzed VBVA command so
//! the commands themselves are reached), interleaved with what the display thread does on
//! the host side: render a frame and take its changed rectangles, take the pointer shape,
//! send mode hints, take a screenshot (a PNG of the frame).
//!
//! The model leaves the VBVA ring's host_events at 0 (vboxvideo then writes no ring
//! records) and never reads the ring, so ring records are just video memory writes here.
//!
//! Input: one byte of configuration (VRAM size, monitor count), then operations, each an
//! opcode byte and its operands; missing operand bytes read as zero.
#![no_main]

use devices::vga::hgsmi::{self, checksum};
use devices::vga::render::MAX_SIDE;
use devices::vga::vbe::{self, index};
use devices::vga::{Renderer, Vga, VgaConfig};
use libfuzzer_sys::fuzz_target;
use novabox_fuzz::Input;

/// Most operations one input runs.
const MAX_OPS: usize = 256;
/// Most refreshes one input runs (a full redraw of a big mode is the slowest operation).
const MAX_RENDERS: usize = 8;

/// VBVA command codes (vboxvideo's and the rest of VirtualBox's).
const VBVA_CODES: [u16; 14] = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 19, 20, 21, 0];
const DEPTHS: [u16; 8] = [0, 4, 8, 15, 16, 24, 32, 1];

/// A size: mostly small, sometimes any 32-bit value.
fn size(inp: &mut Input<'_>) -> u32 {
    match inp.u8() {
        0xff => inp.u32(),
        0xfe => u32::from(inp.u16()),
        b => u32::from(b),
    }
}

fn outb(v: &mut Vga, port: u16, b: u8) {
    v.port_write(port, &[b]);
}
fn outw(v: &mut Vga, port: u16, w: u16) {
    v.port_write(port, &w.to_le_bytes());
}
fn outl(v: &mut Vga, port: u16, w: u32) {
    v.port_write(port, &w.to_le_bytes());
}
fn inb(v: &mut Vga, port: u16) -> u8 {
    let mut d = [0u8];
    v.port_read(port, &mut d);
    d[0]
}

fn dispi(v: &mut Vga, i: u16, val: u16) {
    outw(v, vbe::INDEX_PORT, i);
    outw(v, vbe::DATA_PORT, val);
}

/// Where a buffer goes: in the driver's heap (the last 64 KiB), anywhere in VRAM, near
/// its end, or any offset at all.
fn place(inp: &mut Input<'_>, vram: u32) -> u32 {
    match inp.u8() % 4 {
        0 => vram - 65536 + u32::from(inp.u16()) % 65536,
        1 => inp.u32() % vram,
        2 => vram.wrapping_sub(u32::from(inp.u16())),
        _ => inp.u32(),
    }
}

/// Write an HGSMI buffer (header, `data`, tail with a good checksum) at `at` and submit it.
fn hgsmi_submit(v: &mut Vga, at: u32, channel: u8, code: u16, data: &[u8], size: u32) {
    let a = at as usize;
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&size.to_le_bytes());
    hdr[5] = channel;
    hdr[6..8].copy_from_slice(&code.to_le_bytes());
    v.lfb_write(a as u64, &hdr);
    v.lfb_write(a as u64 + 16, data);
    let t = a as u64 + 16 + u64::from(size);
    v.lfb_write(t, &[0; 4]);
    v.lfb_write(t + 4, &checksum(at, &hdr, 0).to_le_bytes());
    // The host answers inside the buffer's data (and in the host-flags block at the end of
    // VRAM), never around it.
    let vram = v.vram.len();
    let lo = a.saturating_sub(256).min(vram);
    let hi = (t as usize).saturating_add(8 + 256).min(vram);
    let before = v.vram.to_vec(lo, hi - lo).unwrap_or_default();
    outl(v, hgsmi::GUEST_PORT, at);
    let after = v.vram.to_vec(lo, hi - lo).unwrap_or_default();
    let data_end = (t as usize).min(vram);
    for (i, (b, n)) in before.iter().zip(&after).enumerate() {
        let o = lo + i;
        let inside = (a + 16..data_end).contains(&o) || o >= vram - 16;
        assert!(
            b == n || inside,
            "HGSMI buffer at {at:#x}: byte {o:#x} changed"
        );
    }
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The display thread's refresh: render what changed, take the pointer shape. What it
/// hands the VNC screen must describe the picture: rectangles inside it, pixel counts that
/// match the sizes.
fn refresh(r: &mut Renderer, v: &mut Vga) {
    let rects = r.refresh(v);
    let fb = r.framebuffer();
    assert!(fb.width >= 1 && fb.height >= 1 && fb.width <= MAX_SIDE && fb.height <= MAX_SIDE);
    assert_eq!(fb.pixels.len(), fb.width as usize * fb.height as usize);
    for rc in &rects {
        assert!(
            rc.w > 0
                && rc.h > 0
                && rc.x.checked_add(rc.w).is_some_and(|e| e <= fb.width)
                && rc.y.checked_add(rc.h).is_some_and(|e| e <= fb.height),
            "{rc:?} outside {}x{}",
            fb.width,
            fb.height
        );
    }
    if let Some(c) = v.take_cursor() {
        assert_eq!(c.pixels.len(), c.width as usize * c.height as usize);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    // 4 MiB; 6 MiB (not a power of two: BAR0 is larger than the memory); 1 MiB, the
    // smallest, where the biggest modes are cheap enough to render often.
    let vram_size = [4 << 20, 6 << 20, 1 << 20, 1 << 20][usize::from(cfg & 3)];
    let mut v = Vga::new(&VgaConfig {
        vram_size,
        rom: None,
        monitors: 1 + u32::from((cfg >> 2) & 3),
    });
    let vram = v.vram_size();
    let mut r = Renderer::new();
    let mut renders = 0;
    let mut screenshot = false;
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 20 {
            // VGA registers, one byte.
            0 => {
                let port = 0x3b0 + u16::from(inp.u8() % 0x30);
                let b = inp.u8();
                outb(&mut v, port, b);
            }
            // Index/data pairs as one 16-bit OUT.
            1 => {
                let port = [0x3c4, 0x3ce, 0x3d4, 0x3b4, 0x3c0][usize::from(inp.u8() % 5)];
                let w = inp.u16();
                outw(&mut v, port, w);
            }
            // Attribute controller: reset the flip-flop, index, data.
            2 => {
                let _ = inb(&mut v, 0x3da);
                let i = inp.u8();
                let d = inp.u8();
                outb(&mut v, 0x3c0, i);
                outb(&mut v, 0x3c0, d);
            }
            // DAC: write or read an entry.
            3 => {
                let i = inp.u8();
                if i & 1 == 0 {
                    outb(&mut v, 0x3c8, inp.u8());
                    for _ in 0..3 {
                        let c = inp.u8();
                        outb(&mut v, 0x3c9, c);
                    }
                } else {
                    outb(&mut v, 0x3c7, inp.u8());
                    for _ in 0..(i >> 1) % 5 {
                        let _ = inb(&mut v, 0x3c9);
                    }
                }
            }
            // Any port read, 1, 2 or 4 bytes.
            4 => {
                let p = inp.u8();
                let port = match p {
                    0..=0x2f => 0x3b0 + u16::from(p),
                    0x30..=0x7f => vbe::INDEX_PORT,
                    _ => vbe::DATA_PORT,
                };
                let mut d = [0u8; 4];
                let n = [1, 2, 4][usize::from(inp.u8() % 3)];
                v.port_read(port, &mut d[..n]);
            }
            // One DISPI register, any value (16- or 32-bit OUT).
            5 => {
                let i = inp.u8();
                let idx = if i >= 0xf0 {
                    inp.u16()
                } else {
                    u16::from(i % 16)
                };
                outw(&mut v, vbe::INDEX_PORT, idx);
                if i & 0x80 != 0 {
                    let val = inp.u32();
                    outl(&mut v, vbe::DATA_PORT, val);
                } else {
                    let val = inp.u16();
                    outw(&mut v, vbe::DATA_PORT, val);
                }
            }
            // A DISPI mode set as a BIOS or vboxvideo does it, with any geometry.
            6 => {
                let (xres, yres) = (inp.u16(), inp.u16());
                let b = inp.u8();
                let bpp = if b >= 0xf0 {
                    inp.u16()
                } else {
                    DEPTHS[usize::from(b) % DEPTHS.len()]
                };
                let (vw, xo, yo) = (inp.u16(), inp.u16(), inp.u16());
                let en = inp.u8();
                dispi(
                    &mut v,
                    index::ID,
                    if en & 0x10 != 0 {
                        vbe::ID5
                    } else {
                        vbe::ID_HGSMI
                    },
                );
                if en & 0x08 == 0 {
                    dispi(&mut v, index::ENABLE, 0);
                }
                dispi(&mut v, index::XRES, xres);
                dispi(&mut v, index::YRES, yres);
                dispi(&mut v, index::BPP, bpp);
                dispi(&mut v, index::ENABLE, u16::from(en & 0xe7) | 1);
                dispi(&mut v, index::VIRT_WIDTH, vw);
                dispi(&mut v, index::X_OFFSET, xo);
                dispi(&mut v, index::Y_OFFSET, yo);
                if en & 0x04 != 0 {
                    let bank = inp.u16();
                    dispi(&mut v, index::BANK, bank);
                }
            }
            // DISPI reads.
            7 => {
                let idx = inp.u16();
                outw(&mut v, vbe::INDEX_PORT, idx % 0x20);
                let mut d = [0u8; 4];
                let n = if idx & 0x8000 != 0 { 4 } else { 2 };
                v.port_read(vbe::DATA_PORT, &mut d[..n]);
            }
            // Video memory writes (the guest's framebuffer and ring writes), fuzz bytes or
            // a run of one byte.
            8 => {
                let off = u64::from(match inp.u8() % 3 {
                    0 => inp.u32() % vram,
                    1 => vram.wrapping_sub(u32::from(inp.u16())),
                    _ => inp.u32(),
                });
                let n = inp.u8();
                let bytes = if n & 0x80 != 0 {
                    vec![inp.u8(); usize::from(n & 0x7f) * 512]
                } else {
                    inp.bytes(usize::from(n))
                };
                v.lfb_write(off, &bytes);
            }
            9 => {
                let off = u64::from(inp.u32());
                let mut d = vec![0u8; usize::from(inp.u8())];
                v.lfb_read(off, &mut d);
            }
            // The legacy window.
            10 => {
                let off = u32::from(inp.u16()) | (u32::from(inp.u8() & 1) << 16);
                let b = inp.u8();
                if b & 1 != 0 {
                    v.legacy_write(off, inp.u8());
                } else {
                    let _ = v.legacy_read(off);
                }
            }
            // Raw bytes at some offset, then that offset to the HGSMI guest port.
            11 => {
                let at = place(&mut inp, vram);
                let n = usize::from(inp.u8());
                let bytes = inp.bytes(n);
                v.lfb_write(u64::from(at), &bytes);
                let port = if inp.u8() & 0x80 != 0 {
                    hgsmi::HOST_PORT
                } else {
                    hgsmi::GUEST_PORT
                };
                outl(&mut v, port, at);
            }
            // A well-formed HGSMI buffer around a fuzzed command.
            12 => {
                let at = place(&mut inp, vram);
                let c = inp.u8();
                let channel = match c % 8 {
                    0..=4 => hgsmi::CHANNEL_VBVA,
                    5 | 6 => hgsmi::CHANNEL_HGSMI,
                    _ => inp.u8(),
                };
                let k = inp.u8();
                let code = if k >= 0xe0 {
                    inp.u16()
                } else {
                    VBVA_CODES[usize::from(k) % VBVA_CODES.len()]
                };
                let len = size(&mut inp).min(vram);
                let body = inp.bytes((len as usize).min(4096));
                // A size larger than the bytes given: the rest is whatever VRAM holds.
                hgsmi_submit(&mut v, at, channel, code, &body, len);
            }
            // Typed VBVA commands with fuzzed fields (fast paths into the deep checks).
            13 => {
                let at = place(&mut inp, vram);
                let kind = inp.u8();
                let cmd: (u16, Vec<u8>) = match kind % 6 {
                    0 => {
                        // INFO_VIEW: one or more views.
                        let n = 1 + usize::from(inp.u8() % 4);
                        let mut d = Vec::new();
                        for _ in 0..n {
                            let i = u32::from(inp.u8() % 8);
                            d.extend(words(&[i, inp.u32(), inp.u32(), inp.u32()]));
                        }
                        (3, d)
                    }
                    1 => {
                        // INFO_SCREEN.
                        let i = u32::from(inp.u8() % 8);
                        let mut d = words(&[
                            i,
                            inp.u32(),
                            inp.u32(),
                            inp.u32(),
                            inp.u32(),
                            size(&mut inp),
                            size(&mut inp),
                        ]);
                        let b = inp.u8();
                        let bpp = if b >= 0xf0 {
                            inp.u16()
                        } else {
                            DEPTHS[usize::from(b) % DEPTHS.len()]
                        };
                        d.extend(bpp.to_le_bytes());
                        d.extend(inp.u16().to_le_bytes());
                        (6, d)
                    }
                    2 => {
                        // MOUSE_POINTER_SHAPE with a shape of any declared size.
                        let flags = u32::from(inp.u8());
                        let (w, h) = (size(&mut inp), size(&mut inp));
                        let and = (w as usize).div_ceil(8).saturating_mul(h as usize);
                        let need = ((and + 3) & !3)
                            .saturating_add((w as usize).saturating_mul(h as usize * 4));
                        let extra = usize::from(inp.u8());
                        let mut d = words(&[0, flags, inp.u32(), inp.u32(), w, h]);
                        let shape = inp.bytes(need.min(300_000) + extra % 8);
                        d.extend(shape);
                        let cut = usize::from(inp.u8() % 8);
                        d.truncate(d.len().saturating_sub(cut));
                        (8, d)
                    }
                    3 => {
                        // QUERY_MODE_HINTS.
                        let (n, sz) = (inp.u16(), inp.u16());
                        let mut d = words(&[u32::from(n) | u32::from(sz) << 16, 0xffff_ffff]);
                        let room = usize::from(inp.u16()) % 8192;
                        d.resize(8 + room, 0);
                        (19, d)
                    }
                    4 => {
                        // ENABLE (VBVA ring location), INFO_CAPS, input mapping, cursor.
                        let code = [7, 12, 20, 21, 1][usize::from(inp.u8() % 5)];
                        (code, words(&[inp.u32(), inp.u32(), inp.u32(), inp.u32()]))
                    }
                    _ => {
                        // HOST_FLAGS_LOCATION: the real one or any.
                        let d = if inp.u8() & 1 != 0 {
                            words(&[vram - 16, 16])
                        } else {
                            words(&[inp.u32(), inp.u32()])
                        };
                        (0, d)
                    }
                };
                let channel = if kind % 6 == 5 {
                    hgsmi::CHANNEL_HGSMI
                } else {
                    hgsmi::CHANNEL_VBVA
                };
                let size = cmd.1.len() as u32;
                hgsmi_submit(&mut v, at, channel, cmd.0, &cmd.1, size);
            }
            // The host port: IRQ acknowledge, queue read.
            14 => {
                if inp.u8() & 1 != 0 {
                    let w = if inp.u8() & 1 != 0 {
                        0xffff_ffff
                    } else {
                        inp.u32()
                    };
                    outl(&mut v, hgsmi::HOST_PORT, w);
                } else {
                    let mut d = [0u8; 4];
                    v.port_read(hgsmi::HOST_PORT, &mut d);
                }
            }
            // The display thread's refresh.
            15 => {
                if renders < MAX_RENDERS {
                    renders += 1;
                    refresh(&mut r, &mut v);
                }
            }
            // A mode hint from the frontend (VBoxManage setvideomodehint).
            16 => {
                let (w, h, bpp) = (inp.u32(), inp.u32(), inp.u32());
                let _ = v.set_mode_hint(w, h, bpp);
            }
            // A screenshot (once per input: encoding is slow).
            17 => {
                if !screenshot {
                    screenshot = true;
                    refresh(&mut r, &mut v);
                    let fb = r.framebuffer();
                    let png = vnc::encode_png(&vnc::Frame {
                        width: fb.width,
                        height: fb.height,
                        pixels: fb.pixels.clone(),
                    });
                    assert!(png.is_ok());
                }
                let _ = v.text_screen();
            }
            // System reset.
            18 => v.reset(),
            // What else the host asks.
            _ => {
                let _ = v.hgsmi.input_mapping();
                let _ = v.hgsmi.guest_caps();
                let _ = v.take_cursor();
                let _ = v.text_screen();
                v.collect_dirty();
            }
        }
    }
    // Whatever state the guest left: the display thread draws it, and what it has drawn
    // bit by bit (dirty pages, changed cells) is what a fresh renderer draws in one go.
    refresh(&mut r, &mut v);
    if renders > 0 {
        let mut fresh = Renderer::new();
        v.redraw = true;
        fresh.refresh(&mut v);
        assert!(
            fresh.framebuffer() == r.framebuffer(),
            "the incremental picture differs from a full redraw"
        );
    }
});
