//! SeaBIOS draws on the VBoxVGA adapter through SeaBIOS's vgabios (from the kit or
//! Debian's seabios package): the text screen decoded from VRAM shows SeaBIOS's banner and
//! "No bootable device", a screenshot through the display handle and the picture a VNC
//! client receives over RFB are the same image, and that image equals a golden PNG
//! (rendered once, checked by eye: `display_golden/seabios_no_boot.png`) when the SeaBIOS
//! build is the one the golden was made with.
//!
//! Runs on KVM when usable, else on the interpreter. Loud skips: `SKIPPED (no SeaBIOS)`,
//! `SKIPPED (no vgabios)`. `DISPLAY_GOLDEN_UPDATE=1` rewrites the golden image.

mod common;

use glue::wiring_display::{self, Controller, DisplayHandle, VncConfig};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The end of SeaBIOS's last line before it waits (a whole line: the screen is final).
const NO_BOOT: &str = "No bootable device.  Retrying in 60 seconds.";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/display_golden")
}

/// A minimal RFB 3.8 client: handshake without authentication, Raw encoding in the
/// server's pixel format, full-screen updates until every pixel has arrived.
struct Client {
    s: TcpStream,
    width: u32,
    height: u32,
}

impl Client {
    fn connect(addr: std::net::SocketAddr) -> Client {
        let mut s = TcpStream::connect(addr).expect("connect to the VNC server");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut v = [0u8; 12];
        s.read_exact(&mut v).unwrap();
        assert_eq!(&v, b"RFB 003.008\n");
        s.write_all(b"RFB 003.008\n").unwrap();
        let mut n = [0u8; 1];
        s.read_exact(&mut n).unwrap();
        let mut types = vec![0u8; n[0] as usize];
        s.read_exact(&mut types).unwrap();
        assert_eq!(types, vec![1], "no authentication offered");
        s.write_all(&[1]).unwrap();
        let mut r = [0u8; 4];
        s.read_exact(&mut r).unwrap();
        assert_eq!(r, [0; 4], "security result OK");
        s.write_all(&[1]).unwrap();
        let mut init = [0u8; 24];
        s.read_exact(&mut init).unwrap();
        let name_len = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
        let mut name = vec![0u8; name_len];
        s.read_exact(&mut name).unwrap();
        assert_eq!(&init[4..8], &[32, 24, 0, 1], "32 bpp true colour offered");
        let width = u32::from(u16::from_be_bytes([init[0], init[1]]));
        let height = u32::from(u16::from_be_bytes([init[2], init[3]]));
        // Raw only.
        s.write_all(&[2, 0, 0, 1, 0, 0, 0, 0]).unwrap();
        Client { s, width, height }
    }

    fn request(&mut self, incremental: bool) {
        let (w, h) = (self.width as u16, self.height as u16);
        let mut m = vec![3, u8::from(incremental), 0, 0, 0, 0];
        m.extend_from_slice(&w.to_be_bytes());
        m.extend_from_slice(&h.to_be_bytes());
        self.s.write_all(&m).unwrap();
    }

    /// The whole picture.
    fn frame(&mut self) -> vnc::Frame {
        let mut px = vec![0u32; (self.width * self.height) as usize];
        let mut covered = vec![false; px.len()];
        self.request(false);
        while covered.iter().any(|c| !c) {
            let mut h = [0u8; 4];
            self.s.read_exact(&mut h).unwrap();
            assert_eq!(h[0], 0, "FramebufferUpdate");
            let n = u16::from_be_bytes([h[2], h[3]]);
            for _ in 0..n {
                let mut r = [0u8; 12];
                self.s.read_exact(&mut r).unwrap();
                let be = |i: usize| u32::from(u16::from_be_bytes([r[i], r[i + 1]]));
                let (x, y, w, hh) = (be(0), be(2), be(4), be(6));
                let enc = i32::from_be_bytes(r[8..12].try_into().unwrap());
                assert_eq!(enc, 0, "only Raw was asked for");
                let mut data = vec![0u8; (w * hh * 4) as usize];
                self.s.read_exact(&mut data).unwrap();
                for row in 0..hh {
                    for col in 0..w {
                        let i = ((row * w + col) * 4) as usize;
                        let p = u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
                        let at = ((y + row) * self.width + x + col) as usize;
                        px[at] = p & 0xff_ffff;
                        covered[at] = true;
                    }
                }
            }
            if covered.iter().any(|c| !c) {
                self.request(true);
            }
        }
        vnc::Frame {
            width: self.width,
            height: self.height,
            pixels: px,
        }
    }
}

fn wait_for_text(h: &DisplayHandle, what: &str, timeout: Duration) -> Option<Vec<String>> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(t)) = h.text() {
            if t.iter().any(|l| l.contains(what)) {
                return Some(t);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn display_seabios_text_screen_vnc_and_screenshot_agree() {
    let test = "display_seabios_text_screen_vnc_and_screenshot_agree";
    let bios = [
        glue::firmware::kit_dir().join("bios.bin"),
        PathBuf::from("/usr/share/seabios/bios.bin"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let Some(bios) = bios else {
        eprintln!("SKIPPED (no SeaBIOS): {test}");
        return;
    };
    if wiring_display::find_vgabios().is_none() {
        eprintln!("SKIPPED (no vgabios): {test}");
        return;
    }
    let kvm = common::kvm_usable(test);
    let mut cfg = MachineConfig::new(Boot::Firmware {
        image: std::fs::read(&bios).unwrap(),
    });
    cfg.memory_mib = 128;
    cfg.engine = if kvm {
        EngineChoice::Kvm
    } else {
        EngineChoice::Interpreter
    };
    cfg.console = Console::None;
    cfg.rtc_utc = true;
    cfg.display.controller = Some(Controller::VBoxVga);
    cfg.display.vnc = Some(VncConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: None,
    });
    let slot = cfg.display.handle.clone();
    let mut m = Machine::build(cfg).expect("build the machine");
    let handle: Arc<DisplayHandle> = slot.lock().clone().expect("display handle");
    let addr = handle.vnc_addr().expect("VNC server address");
    let stop = m.stop_handle();
    let h = handle.clone();
    let checker = std::thread::spawn(move || {
        let text = wait_for_text(&h, NO_BOOT, Duration::from_secs(240));
        let result = text.map(|t| {
            // Let the screen settle: the last line is printed before the wait.
            std::thread::sleep(Duration::from_millis(300));
            let shot = h.screenshot_png().expect("screenshot");
            let mut c = Client::connect(addr);
            let over_vnc = c.frame();
            let shot2 = h.frame().expect("frame");
            (t, shot, over_vnc, shot2)
        });
        stop.power_off();
        result
    });
    let reason = m.run().expect("run");
    if kvm {
        eprintln!("KVM-TEST-RAN {test}");
    }
    let (text, png, over_vnc, frame) = checker
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("{NO_BOOT:?} never appeared on the screen ({reason:?})"));
    eprintln!("{test}: screen text:\n{}", text.join("\n"));
    assert!(
        text[0].starts_with("SeaBIOS (version"),
        "banner on row 0: {:?}",
        text[0]
    );
    let shot = vnc::decode_png(&png).unwrap();
    assert_eq!(
        (shot.width, shot.height),
        (720, 400),
        "80x25 text with 9x16 cells"
    );
    assert_eq!(
        over_vnc, shot,
        "the VNC client sees the screenshot's picture"
    );
    assert_eq!(frame, shot, "the picture did not change meanwhile");
    // The banner's first glyph is drawn in light grey on black.
    assert!(shot.pixels.contains(&0xaaaaaa) && shot.pixels.contains(&0));

    let golden = golden_dir().join("seabios_no_boot.png");
    let golden_text = golden_dir().join("seabios_no_boot.txt");
    if std::env::var_os("DISPLAY_GOLDEN_UPDATE").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&golden, &png).unwrap();
        std::fs::write(&golden_text, text.join("\n") + "\n").unwrap();
        eprintln!("{test}: golden image written to {}", golden.display());
        return;
    }
    let want_text = std::fs::read_to_string(&golden_text).expect("golden text");
    let banner = want_text.lines().next().unwrap_or_default();
    if banner != text[0] {
        eprintln!(
            "SKIPPED (golden image made with another SeaBIOS: {banner:?}) golden part of {test}"
        );
        return;
    }
    assert_eq!(
        want_text.trim_end(),
        text.join("\n").trim_end(),
        "screen text as the golden"
    );
    let want = vnc::decode_png(&std::fs::read(&golden).unwrap()).unwrap();
    assert!(want == shot, "screenshot differs from {}", golden.display());
}
