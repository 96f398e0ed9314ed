//! Adapter-level tests: modes programmed through the ports as a BIOS or driver would, the
//! picture checked pixel by pixel, dirty rectangles, HGSMI as vboxvideo drives it.

use super::hgsmi::{self, checksum};
use super::vbe::{enable, index};
use super::*;
use crate::pci::PciFunction;

fn outb(v: &mut Vga, port: u16, b: u8) {
    v.port_write(port, &[b]);
}
fn outw(v: &mut Vga, port: u16, w: u16) {
    v.port_write(port, &w.to_le_bytes());
}
fn outl(v: &mut Vga, port: u16, w: u32) {
    v.port_write(port, &w.to_le_bytes());
}
fn inl(v: &mut Vga, port: u16) -> u32 {
    let mut d = [0u8; 4];
    v.port_read(port, &mut d);
    u32::from_le_bytes(d)
}
fn inw(v: &mut Vga, port: u16) -> u16 {
    let mut d = [0u8; 2];
    v.port_read(port, &mut d);
    u16::from_le_bytes(d)
}

/// Mode 3 (80x25 text, 9x16 cells) with the standard register values, a font of our own
/// (glyph c = row pattern c) loaded into plane 2 the way a BIOS does, and a grey/blue DAC.
fn mode3(v: &mut Vga) {
    outb(v, 0x3c2, 0x67);
    for (i, b) in [0x03, 0x00, 0x03, 0x00, 0x02].into_iter().enumerate() {
        outb(v, 0x3c4, i as u8);
        outb(v, 0x3c5, b);
    }
    let crtc = [
        0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00,
        0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
    ];
    outw(v, 0x3d4, 0x0011); // lift write protection
    for (i, b) in crtc.into_iter().enumerate() {
        outb(v, 0x3d4, i as u8);
        outb(v, 0x3d5, b);
    }
    let attr = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e,
        0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00,
    ];
    let mut d = [0u8];
    v.port_read(0x3da, &mut d);
    for (i, b) in attr.into_iter().enumerate() {
        outb(v, 0x3c0, i as u8);
        outb(v, 0x3c0, b);
    }
    outw(v, 0x3ce, 0xff08); // bit mask: all bits from the CPU
                            // Font load: plane 2, sequential, A0000.
    outw(v, 0x3c4, 0x0402);
    outw(v, 0x3c4, 0x0604);
    outw(v, 0x3ce, 0x0204);
    outw(v, 0x3ce, 0x0005);
    outw(v, 0x3ce, 0x0406);
    for c in 0..256u32 {
        for line in 0..16 {
            // 'X' (0x58) gets a recognisable glyph: left half set on even lines.
            let bits = if c == 0x58 && line % 2 == 0 { 0xf0 } else { 0 };
            v.legacy_write(c * 32 + line, bits);
        }
    }
    // Back to text: planes 0/1, odd/even, B8000.
    outw(v, 0x3c4, 0x0302);
    outw(v, 0x3c4, 0x0204);
    outw(v, 0x3ce, 0x0004);
    outw(v, 0x3ce, 0x1005);
    outw(v, 0x3ce, 0x0e06);
    // DAC: 0 black, 1 blue, 7 grey, 0x3f white.
    outb(v, 0x3c8, 0);
    for rgb in [[0, 0, 0], [0, 0, 0x2a]] {
        for c in rgb {
            outb(v, 0x3c9, c);
        }
    }
    outb(v, 0x3c8, 7);
    for c in [0x2a, 0x2a, 0x2a] {
        outb(v, 0x3c9, c);
    }
    outb(v, 0x3c0, 0x20); // PAS on: display the picture
}

fn put_text(v: &mut Vga, pos: u32, s: &str, attr: u8) {
    for (i, c) in s.bytes().enumerate() {
        v.legacy_write(0x18000 + (pos + i as u32) * 2, c);
        v.legacy_write(0x18000 + (pos + i as u32) * 2 + 1, attr);
    }
}

#[test]
fn text_mode_renders_from_plane_2_font() {
    let mut v = Vga::new(&VgaConfig::default());
    mode3(&mut v);
    put_text(&mut v, 0, "XAX", 0x17);
    let mut r = Renderer::new();
    let rects = r.refresh(&mut v);
    assert_eq!(rects, vec![Rect::full(720, 400)]);
    let fb = r.framebuffer();
    assert_eq!((fb.width, fb.height), (720, 400));
    let grey = 0xaaaaaa;
    let blue = 0x0000aa;
    // 'X' at column 0: line 0 has the left 4 dots set (foreground grey), rest background.
    assert_eq!(fb.pixel(0, 0), Some(grey));
    assert_eq!(fb.pixel(3, 0), Some(grey));
    assert_eq!(fb.pixel(4, 0), Some(blue));
    assert_eq!(fb.pixel(0, 1), Some(blue), "odd lines are empty");
    // 'A' has an empty glyph in our font.
    assert_eq!(fb.pixel(9, 0), Some(blue));
    assert_eq!(fb.pixel(18, 0), Some(grey), "third cell is X again");
    assert_eq!(v.text_screen().unwrap()[0], "XAX");
    // Nothing changed: nothing to send.
    assert!(r.refresh(&mut v).is_empty());
    // One character on row 3: only that character row is reported.
    put_text(&mut v, 80 * 3 + 5, "X", 0x07);
    let rects = r.refresh(&mut v);
    assert_eq!(
        rects,
        vec![Rect {
            x: 0,
            y: 48,
            w: 720,
            h: 16
        }]
    );
    assert_eq!(r.framebuffer().pixel(45, 48), Some(grey));
    assert_eq!(r.framebuffer().pixel(45, 49), Some(0));
}

#[test]
fn text_cursor_and_blanking() {
    let mut v = Vga::new(&VgaConfig::default());
    mode3(&mut v);
    put_text(&mut v, 0, "  ", 0x07);
    // Cursor at cell 1, lines 13-14 (CR0A/CR0B of mode 3).
    outw(&mut v, 0x3d4, 0x000e);
    outw(&mut v, 0x3d4, 0x010f);
    let mut r = Renderer::new();
    r.refresh(&mut v);
    assert_eq!(r.framebuffer().pixel(10, 13), Some(0xaaaaaa));
    assert_eq!(r.framebuffer().pixel(10, 14), Some(0xaaaaaa));
    assert_eq!(r.framebuffer().pixel(10, 12), Some(0));
    assert_eq!(r.framebuffer().pixel(10, 15), Some(0));
    assert_eq!(
        r.framebuffer().pixel(1, 13),
        Some(0),
        "cell 0 has no cursor"
    );
    // PAS off (palette being programmed): black screen.
    let mut d = [0u8];
    v.port_read(0x3da, &mut d);
    outb(&mut v, 0x3c0, 0x00);
    r.refresh(&mut v);
    assert!(r.framebuffer().pixels.iter().all(|&p| p == 0));
    assert!(v.text_screen().is_none());
}

fn vbe(v: &mut Vga, i: u16, val: u16) {
    outw(v, vbe::INDEX_PORT, i);
    outw(v, vbe::DATA_PORT, val);
}

#[test]
fn vbe_linear_mode_and_dirty_rows() {
    let mut v = Vga::new(&VgaConfig::default());
    vbe(&mut v, index::ID, vbe::ID5);
    vbe(&mut v, index::XRES, 800);
    vbe(&mut v, index::YRES, 600);
    vbe(&mut v, index::BPP, 32);
    vbe(&mut v, index::ENABLE, enable::ENABLED | enable::LFB);
    let mut r = Renderer::new();
    assert_eq!(r.refresh(&mut v), vec![Rect::full(800, 600)]);
    // A pixel at (10, 100) in BGRX.
    v.lfb_write((100 * 800 + 10) * 4, &[0x33, 0x22, 0x11, 0]);
    let rects = r.refresh(&mut v);
    // The 4 KiB page covers rows 99 (end) .. 100 (start) at 3200 bytes a row.
    assert!(rects
        .iter()
        .all(|rc| rc.y <= 100 && rc.y + rc.h > 100 && rc.h <= 3));
    assert_eq!(r.framebuffer().pixel(10, 100), Some(0x112233));
    // 16 bpp through the banked window.
    vbe(&mut v, index::ENABLE, 0);
    vbe(&mut v, index::BPP, 16);
    vbe(&mut v, index::ENABLE, enable::ENABLED);
    v.legacy_write(2, 0x00);
    v.legacy_write(3, 0xf8);
    r.refresh(&mut v);
    assert_eq!(r.framebuffer().pixel(1, 0), Some(0xff0000));
    // 8 bpp through the DAC.
    vbe(&mut v, index::ENABLE, 0);
    vbe(&mut v, index::BPP, 8);
    vbe(&mut v, index::ENABLE, enable::ENABLED | enable::DAC8);
    outb(&mut v, 0x3c8, 5);
    for c in [0x12, 0x34, 0x56] {
        outb(&mut v, 0x3c9, c);
    }
    v.lfb_write(7, &[5]);
    r.refresh(&mut v);
    assert_eq!(r.framebuffer().pixel(7, 0), Some(0x123456));
}

#[test]
fn mode_13h_and_mode_12h() {
    let mut v = Vga::new(&VgaConfig::default());
    mode3(&mut v);
    // Mode 13h: chain-4, 256-colour shift mode, 8-bit pixel mode, double scan.
    outw(&mut v, 0x3c4, 0x0e04);
    outw(&mut v, 0x3c4, 0x0f02);
    outw(&mut v, 0x3ce, 0x4005);
    outw(&mut v, 0x3ce, 0x0506);
    outw(&mut v, 0x3d4, 0x4109);
    outw(&mut v, 0x3d4, 0x4f01);
    outw(&mut v, 0x3d4, 0x8f12);
    outw(&mut v, 0x3d4, 0x2813);
    let mut d = [0u8];
    v.port_read(0x3da, &mut d);
    outb(&mut v, 0x3c0, 0x30);
    outb(&mut v, 0x3c0, 0x41);
    v.legacy_write(320 * 10 + 3, 1);
    let mut r = Renderer::new();
    r.refresh(&mut v);
    let fb = r.framebuffer();
    assert_eq!((fb.width, fb.height), (320, 200));
    assert_eq!(fb.pixel(3, 10), Some(0x0000aa));
    assert_eq!(fb.pixel(4, 10), Some(0));
    // Mode 12h-like: planar 640 wide, no chain-4; write mode 2 colour 7 at pixel 8..16.
    outw(&mut v, 0x3c4, 0x0604);
    outw(&mut v, 0x3ce, 0x0005);
    outw(&mut v, 0x3d4, 0x4009);
    outw(&mut v, 0x3d4, 0xdf12);
    outw(&mut v, 0x3d4, 0x3e07);
    v.port_read(0x3da, &mut d);
    outb(&mut v, 0x3c0, 0x30);
    outb(&mut v, 0x3c0, 0x01);
    outb(&mut v, 0x3c0, 0x20);
    outw(&mut v, 0x3ce, 0x0205);
    outw(&mut v, 0x3ce, 0xff08);
    v.legacy_write(80 * 5 + 1, 7);
    r.refresh(&mut v);
    let fb = r.framebuffer();
    assert_eq!((fb.width, fb.height), (640, 480));
    assert_eq!(fb.pixel(8, 5), Some(0xaaaaaa));
    assert_eq!(fb.pixel(7, 5), Some(0));
}

/// A start address near the end of the planes wraps the scan-out back to plane address 0
/// (hardware scrolling does this): a write to the wrapped part redraws the rows showing it.
#[test]
fn scan_out_wrapping_past_the_planes_follows_writes() {
    for planar in [false, true] {
        let mut v = Vga::new(&VgaConfig::default());
        mode3(&mut v);
        outw(&mut v, 0x3c4, 0x0f02);
        if planar {
            // Mode 12h-like: 640x480, 16 colours; write mode 2.
            outw(&mut v, 0x3c4, 0x0604);
            outw(&mut v, 0x3ce, 0x0205);
            outw(&mut v, 0x3ce, 0x0506);
            outw(&mut v, 0x3ce, 0xff08);
            outw(&mut v, 0x3d4, 0x4009);
            outw(&mut v, 0x3d4, 0xdf12);
            outw(&mut v, 0x3d4, 0x3e07);
        } else {
            // Mode 13h: chain-4, 320x200.
            outw(&mut v, 0x3c4, 0x0e04);
            outw(&mut v, 0x3ce, 0x4005);
            outw(&mut v, 0x3ce, 0x0506);
            outw(&mut v, 0x3d4, 0x4109);
            outw(&mut v, 0x3d4, 0x8f12);
        }
        outw(&mut v, 0x3d4, 0x4f01);
        outw(&mut v, 0x3d4, 0x2813);
        let mut d = [0u8];
        v.port_read(0x3da, &mut d);
        outb(&mut v, 0x3c0, 0x30);
        outb(&mut v, 0x3c0, if planar { 0x01 } else { 0x41 });
        outb(&mut v, 0x3c0, 0x20);
        // Row 0 starts 4 plane addresses before the end: the rest of it is at address 0.
        outw(&mut v, 0x3d4, 0xff0c);
        outw(&mut v, 0x3d4, 0xfc0d);
        let mut r = Renderer::new();
        r.refresh(&mut v);
        // Colour 1 at plane address 0: pixels 16.. (chain-4) or 32..39 (planar) of row 0.
        v.legacy_write(0, 1);
        r.refresh(&mut v);
        let x = if planar { 32 } else { 16 };
        assert_eq!(
            r.framebuffer().pixel(x, 0),
            Some(0x0000aa),
            "planar {planar}: the wrapped part of row 0 is redrawn"
        );
        let mut fresh = Renderer::new();
        fresh.refresh(&mut v);
        assert!(fresh.framebuffer() == r.framebuffer(), "planar {planar}");
    }
}

#[test]
fn pci_identity_rom_and_bar() {
    let mut rom = std::fs::read("/usr/share/seabios/vgabios-stdvga.bin").unwrap_or_else(|_| {
        // A minimal ROM with a PCI data structure when Debian's seabios is absent.
        let mut r = vec![0u8; 2048];
        r[0] = 0x55;
        r[1] = 0xaa;
        r[2] = 4;
        r[0x18] = 0x40;
        r[0x40..0x44].copy_from_slice(b"PCIR");
        r
    });
    assert!(patch_rom_ids(&mut rom, VBOX_VENDOR_ID, VBOX_VGA_DEVICE_ID));
    let len = usize::from(rom[2]) * 512;
    assert_eq!(rom[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
    assert!(!patch_rom_ids(&mut [0u8; 64], 1, 2));
    let dev = VgaDevice::new(
        VgaConfig {
            vram_size: 12 << 20,
            rom: Some(rom.clone()),
            monitors: 1,
        },
        pdm::IrqLine::disconnected(),
    )
    .unwrap();
    let mut p = dev.pci.lock();
    let mut d = [0u8; 4];
    p.config_read(0, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0xbeef_80ee);
    p.config_read(8, &mut d);
    assert_eq!(u32::from_le_bytes(d) >> 8, 0x03_0000);
    // BAR0 sizes to 16 MiB (12 MiB rounded up), prefetchable memory.
    p.config_write(0x10, &[0xff; 4]);
    p.config_read(0x10, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0xff00_0008);
    p.config_write(0x10, &0xe000_0000u32.to_le_bytes());
    p.config_write(0x30, &0xfeb0_0001u32.to_le_bytes());
    p.config_write(4, &[0x03, 0]);
    let regions = p.regions();
    assert_eq!(regions.len(), 2);
    let mut b = [0u8; 2];
    regions[1].device.lock().read(0, 0, &mut b);
    assert_eq!(b, [0x55, 0xaa]);
    assert_eq!(dev.vga.lock().vram_size(), 12 << 20);
}

/// Write an HGSMI buffer into VRAM at `at` and submit it.
fn hgsmi_call(v: &mut Vga, at: u32, channel: u8, code: u16, data: &[u8]) -> Vec<u8> {
    let a = at as usize;
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    hdr[5] = channel;
    hdr[6..8].copy_from_slice(&code.to_le_bytes());
    assert!(v.vram.write(a, &hdr));
    assert!(v.vram.write(a + 16, data));
    let t = a + 16 + data.len();
    assert!(v.vram.write(t, &[0; 4]));
    assert!(v.vram.write(t + 4, &checksum(at, &hdr, 0).to_le_bytes()));
    outl(v, hgsmi::GUEST_PORT, at);
    v.vram.to_vec(a + 16, data.len()).unwrap()
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}
fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

#[test]
fn vboxvideo_probe_mode_set_and_hint() {
    struct Level(std::sync::atomic::AtomicBool);
    impl pdm::IrqSink for Level {
        fn set_irq(&self, _gsi: u32, level: bool) {
            self.0.store(level, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let sink = std::sync::Arc::new(Level(false.into()));
    let irq = pdm::IrqLine::new(sink.clone(), 11);
    let mut v = Vga::with_irq(&VgaConfig::default(), irq);
    let vram = 16u32 << 20;
    // 1-2: HGSMI ID and the VRAM size.
    vbe(&mut v, index::ID, vbe::ID_HGSMI);
    assert_eq!(inw(&mut v, vbe::DATA_PORT), vbe::ID_HGSMI);
    assert_eq!(inl(&mut v, vbe::DATA_PORT), vram);
    let heap = vram - 65536;
    // 3-4: QUERY_CONF32.
    let r = hgsmi_call(&mut v, heap, 2, 1, &words(&[0xffff_ffff, 0xffff_ffff]));
    assert_eq!(word(&r, 1), 0xffff_ffff);
    for (idx, want) in [(0, 1), (2, 0), (3, 0), (4, 2)] {
        let r = hgsmi_call(&mut v, heap, 2, 1, &words(&[idx, 0xffff_ffff]));
        assert_eq!(word(&r, 1), want, "conf {idx}");
    }
    // A corrupted checksum is ignored: the value stays as the guest left it.
    let a = heap as usize;
    hgsmi_call(&mut v, heap, 2, 1, &words(&[0, 0xffff_ffff]));
    v.vram.write(a + 20, &0xffff_ffffu32.to_le_bytes());
    // The tail's reserved word changes: the checksum no longer matches.
    v.vram.set(a + 24, v.vram.get(a + 24).unwrap() ^ 1);
    outl(&mut v, hgsmi::GUEST_PORT, heap);
    assert_eq!(v.vram.get_u32(a + 20), Some(0xffff_ffff));
    // 8: host flags location and caps.
    hgsmi_call(&mut v, heap, 1, 0, &words(&[vram - 16, 16]));
    hgsmi_call(&mut v, heap, 2, 12, &words(&[0xffff_fffe, 0x1a]));
    let r = hgsmi_call(&mut v, heap, 2, 12, &words(&[0xffff_fffe, 0x1e]));
    assert_eq!(word(&r, 0), 0);
    // 9: mode set 1024x768x32 through INFO_VIEW + INFO_SCREEN only (VBE off).
    hgsmi_call(&mut v, heap, 2, 3, &words(&[0, 0, vram - 2 * 65536, vram]));
    let mut scr = words(&[0, 0, 0, 0, 4096, 1024, 768]);
    scr.extend_from_slice(&32u16.to_le_bytes());
    scr.extend_from_slice(&1u16.to_le_bytes());
    hgsmi_call(&mut v, heap, 2, 6, &scr);
    let mut r = Renderer::new();
    r.refresh(&mut v);
    assert_eq!((r.framebuffer().width, r.framebuffer().height), (1024, 768));
    // A resize hint: IRQ with HOTPLUG in the host flags, then QUERY_MODE_HINTS has it.
    assert!(v.set_mode_hint(1280, 1024, 32));
    assert!(sink.0.load(std::sync::atomic::Ordering::SeqCst));
    let flags = v.vram.get_u32((vram - 16) as usize).unwrap();
    assert_eq!(flags & 0x22, 0x22);
    let mut q = words(&[1 | (32 << 16), 0xffff_ffff]);
    q.extend(vec![0u8; 32]);
    let r = hgsmi_call(&mut v, heap, 2, 19, &q);
    assert_eq!(word(&r, 1), 0);
    assert_eq!(
        &[word(&r, 2), word(&r, 3), word(&r, 4)],
        &[hgsmi::MODE_HINT_MAGIC, 1280, 1024]
    );
    outl(&mut v, hgsmi::HOST_PORT, 0xffff_ffff);
    assert!(!sink.0.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(v.vram.get_u32((vram - 16) as usize).unwrap() & 0x22, 0);
    // Pointer shape: 2x1, alpha.
    let mut s = words(&[0, 0x7, 1, 0, 2, 1]);
    s.extend_from_slice(&[0, 0, 0, 0]); // AND mask (1 byte, padded to 4)
    s.extend(words(&[0xff11_2233, 0x0000_0000]));
    hgsmi_call(&mut v, heap, 2, 8, &s);
    let c = v.take_cursor().unwrap();
    assert_eq!((c.width, c.height, c.hot_x), (2, 1, 1));
    assert_eq!(c.pixels, vec![0xff11_2233, 0]);
}

proptest::proptest! {
    #[test]
    fn hostile_hgsmi_buffers_never_panic(at in 0u32..(1 << 20) + 64, size in proptest::num::u32::ANY,
                                         channel in 0u8..4, code in 0u16..24,
                                         body in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
        let mut v = Vga::new(&VgaConfig { vram_size: 1 << 20, ..Default::default() });
        let a = at as usize;
        if a + 16 + body.len() + 8 <= v.vram.len() {
            hgsmi_call(&mut v, at, channel, code, &body);
            // Now lie about the size.
            v.vram.write(a, &size.to_le_bytes());
            outl(&mut v, hgsmi::GUEST_PORT, at);
        } else {
            outl(&mut v, hgsmi::GUEST_PORT, at);
        }
        let mut r = Renderer::new();
        r.refresh(&mut v);
    }

    #[test]
    fn random_port_and_memory_traffic_renders(ops in proptest::collection::vec((0u16..0x40, proptest::num::u16::ANY, 0u8..3), 0..200)) {
        let mut v = Vga::new(&VgaConfig { vram_size: 1 << 20, ..Default::default() });
        let mut r = Renderer::new();
        for (i, (p, val, kind)) in ops.into_iter().enumerate() {
            match kind {
                0 => outb(&mut v, 0x3b0 + p, val as u8),
                1 => { outw(&mut v, vbe::INDEX_PORT, p & 0xf); outw(&mut v, vbe::DATA_PORT, val); }
                _ => v.legacy_write(u32::from(val) * 2, val as u8),
            }
            if i % 16 == 0 {
                r.refresh(&mut v);
                let fb = r.framebuffer();
                proptest::prop_assert_eq!(fb.pixels.len(), (fb.width * fb.height) as usize);
            }
        }
    }
}

/// The video memory as the VM maps it: guest RAM at BAR0 (through pgm, no device call),
/// following the BAR, with pgm's dirty pages driving the renderer.
#[test]
fn lfb_is_guest_ram_that_follows_bar0() {
    use std::sync::Arc;
    let mem = Arc::new(
        pgm::GuestMemory::new(
            pgm::MemoryLayout::pc(16 << 20)
                .unwrap()
                .with_firmware(0x20000)
                .unwrap(),
        )
        .unwrap(),
    );
    let region = mem.register_mmio2("vram", 12 << 20).unwrap();
    let dev = VgaDevice::with_vram(
        VgaConfig {
            vram_size: 12 << 20,
            ..Default::default()
        },
        pdm::IrqLine::disconnected(),
        Vram::new(region),
    )
    .unwrap();
    const BAR: u64 = 0xe000_0000;
    {
        let mut p = dev.pci.lock();
        p.config_write(0x10, &(BAR as u32).to_le_bytes());
        assert!(mem.translate(BAR).is_none(), "memory decoding still off");
        let g = mem.map_generation();
        p.config_write(4, &[0x03, 0]);
        assert_ne!(mem.map_generation(), g, "vCPU TLBs must flush");
        assert_eq!(p.lfb_mapped_at(), Some(BAR));
    }
    {
        let mut v = dev.vga.lock();
        vbe(&mut v, index::XRES, 1024);
        vbe(&mut v, index::YRES, 768);
        vbe(&mut v, index::BPP, 32);
        vbe(&mut v, index::ENABLE, enable::ENABLED | enable::LFB);
    }
    let mut r = Renderer::new();
    assert_eq!(r.refresh(&mut dev.vga.lock()), vec![Rect::full(1024, 768)]);
    assert!(r.refresh(&mut dev.vga.lock()).is_empty(), "nothing written");
    // The guest writes a pixel at (5, 300) straight into RAM: the row is redrawn.
    mem.write(BAR + (300 * 1024 + 5) * 4, &[0x33, 0x22, 0x11, 0])
        .unwrap();
    let rects = r.refresh(&mut dev.vga.lock());
    assert_eq!(
        rects,
        vec![Rect {
            x: 0,
            y: 300,
            w: 1024,
            h: 1
        }]
    );
    assert_eq!(r.framebuffer().pixel(5, 300), Some(0x112233));
    // A bulk write over rows 400..410 (as REP STOS does) redraws exactly those rows.
    mem.write(BAR + 400 * 4096, &[0xff; 10 * 4096]).unwrap();
    let rects = r.refresh(&mut dev.vga.lock());
    assert_eq!(
        rects,
        vec![Rect {
            x: 0,
            y: 400,
            w: 1024,
            h: 10
        }]
    );
    assert_eq!(r.framebuffer().pixel(1023, 409), Some(0xffffff));
    // The banked window at 0xA0000 reaches the same memory.
    {
        let mut v = dev.vga.lock();
        vbe(&mut v, index::BANK, 3);
        v.legacy_write(0x10, 0x5a);
    }
    assert_eq!(mem.read_le::<1>(BAR + 3 * 0x1_0000 + 0x10).unwrap(), 0x5a);
    let rects = r.refresh(&mut dev.vga.lock());
    assert_eq!(rects.len(), 1, "the window's write is dirty too: {rects:?}");
    // The BAR's tail past the 12 MiB of video memory stays MMIO (open bus).
    assert!(mem.translate(BAR + (12 << 20)).is_none());
    let lfb = dev
        .pci
        .lock()
        .regions()
        .into_iter()
        .find(|r| r.name == "vram")
        .unwrap();
    let mut b = [0u8; 4];
    lfb.device.lock().read(BAR + (12 << 20), 12 << 20, &mut b);
    assert_eq!(b, [0xff; 4]);
    lfb.device.lock().read(BAR + 400 * 4096, 400 * 4096, &mut b);
    assert_eq!(b, [0xff; 4], "the MMIO path sees the same memory");
    // The guest moves the BAR: the memory follows, the old place is gone.
    dev.pci
        .lock()
        .config_write(0x10, &0xd000_0000u32.to_le_bytes());
    assert!(mem.translate(BAR).is_none());
    assert_eq!(
        mem.read_le::<4>(0xd000_0000 + (300 * 1024 + 5) * 4)
            .unwrap(),
        0x0011_2233
    );
    // Over RAM pgm refuses: the BAR is served as MMIO there.
    dev.pci
        .lock()
        .config_write(0x10, &0x0040_0000u32.to_le_bytes());
    assert_eq!(dev.pci.lock().lfb_mapped_at(), None);
    assert_eq!(mem.translate(0x40_0000).unwrap().read, Some(0x40_0000));
    // Memory decoding off unmaps it.
    dev.pci
        .lock()
        .config_write(0x10, &(BAR as u32).to_le_bytes());
    assert_eq!(dev.pci.lock().lfb_mapped_at(), Some(BAR));
    dev.pci.lock().config_write(4, &[0x01, 0]);
    assert_eq!(dev.pci.lock().lfb_mapped_at(), None);
}
