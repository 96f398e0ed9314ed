//! The kit's Debian kernel with the mainline `vboxvideo` DRM driver on VBoxVGA: the driver
//! binds (HGSMI probe), fbcon's mode set gives a 1024x768 picture, a video mode hint (what
//! `setvideomodehint` and a VNC client's resize send) makes the driver set 800x600, and a
//! VNC client's SetDesktopSize then brings it to 1024x768 again.
//!
//! Cost: one interpreter boot of the kit kernel to the vboxvideo load plus three mode sets:
//! 146 s wall on the 2-core development host (was 430 s before the interpreter's speed-ups,
//! when it was ignored by default); it runs with the other Linux-boot tests now.
//! Loud skip without the guest kit.

mod common;

use common::Capture;
use glue::wiring_display::{Controller, DisplayHandle, VncConfig};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn wait_size(h: &DisplayHandle, w: u32, hh: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(f) = h.frame() {
            if (f.width, f.height) == (w, hh) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// Ask for a size the way a VNC client does (ExtendedDesktopSize + SetDesktopSize).
fn vnc_resize(addr: std::net::SocketAddr, w: u16, h: u16) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    s.write_all(&[1]).unwrap();
    let mut r = [0u8; 4];
    s.read_exact(&mut r).unwrap();
    s.write_all(&[1]).unwrap();
    let mut init = [0u8; 24];
    s.read_exact(&mut init).unwrap();
    let n = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
    let mut name = vec![0u8; n];
    s.read_exact(&mut name).unwrap();
    let mut m = vec![2, 0, 0, 1];
    m.extend_from_slice(&(-308i32).to_be_bytes());
    m.extend_from_slice(&[251, 0]);
    m.extend_from_slice(&w.to_be_bytes());
    m.extend_from_slice(&h.to_be_bytes());
    m.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&w.to_be_bytes());
    m.extend_from_slice(&h.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    s.write_all(&m).unwrap();
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn display_vboxvideo_binds_and_follows_mode_hints() {
    let test = "display_vboxvideo_binds_and_follows_mode_hints";
    let dir = glue::firmware::kit_dir();
    let (Ok(kernel), Ok(initrd)) = (
        std::fs::read(dir.join("vmlinuz")),
        std::fs::read(dir.join("initramfs.cpio.gz")),
    ) else {
        eprintln!("SKIPPED (no guest kit; cargo xtask kit): {test}");
        return;
    };
    let com1 = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Kernel {
        kernel,
        initrd: Some(initrd),
        // The shell keeps the guest up (its console input never ends).
        cmdline: "console=ttyS0 novabox.modules=vboxvideo novabox.shell=1".into(),
    });
    cfg.memory_mib = 256;
    cfg.engine = EngineChoice::Interpreter;
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.display.controller = Some(Controller::VBoxVga);
    cfg.display.vnc = Some(VncConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: None,
    });
    let slot = cfg.display.handle.clone();
    let mut m = Machine::build(cfg).expect("build");
    let h = slot.lock().clone().unwrap();
    let addr = h.vnc_addr().unwrap();
    let stop = m.stop_handle();
    let c = com1.clone();
    let checks = std::thread::spawn(move || {
        let mut out = Vec::new();
        let start = Instant::now();
        let loaded = loop {
            let t = c.text();
            if t.contains("NOVABOX-MODULE-LOADED vboxvideo") {
                break true;
            }
            if t.contains("NOVABOX-MODULE-FAIL") || start.elapsed() > Duration::from_secs(2400) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        out.push(("vboxvideo loaded", loaded));
        out.push((
            "fbcon's mode: 1024x768",
            loaded && wait_size(&h, 1024, 768, Duration::from_secs(120)),
        ));
        let listening = h.set_video_mode_hint(800, 600, 32).unwrap_or(false);
        out.push((
            "the driver listens for hints (IRQ + mode-hint caps)",
            listening,
        ));
        out.push((
            "hint 800x600 followed",
            wait_size(&h, 800, 600, Duration::from_secs(300)),
        ));
        vnc_resize(addr, 1024, 768);
        out.push((
            "VNC client resize to 1024x768 followed",
            wait_size(&h, 1024, 768, Duration::from_secs(300)),
        ));
        stop.power_off();
        out
    });
    m.run().expect("run");
    let results = checks.join().unwrap();
    for (what, ok) in &results {
        eprintln!("{test}: {what}: {}", if *ok { "ok" } else { "FAILED" });
    }
    let text = com1.text();
    let tail = &text[text.len().saturating_sub(3000)..];
    assert!(
        results.iter().all(|(_, ok)| *ok),
        "{results:?}\n--- COM1 tail ---\n{tail}"
    );
    assert!(text.contains("[drm] Initialized vboxvideo"), "driver bound");
}
