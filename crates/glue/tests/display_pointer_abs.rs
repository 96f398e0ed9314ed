//! With the Guest Additions' `vboxguest` loaded, a VNC client's pointer reaches the guest as
//! absolute positions through the VMMDev: the kit's Debian kernel runs
//! `guest/tests/pointer_abs.sh`, which opens the driver's "VirtualBox mouse integration"
//! input device (so the driver tells the host it takes absolute coordinates) and the PS/2
//! mouse, and prints every event it reads. This runner connects a VNC client, moves the
//! pointer to two points, and checks that the guest read ABS_X/ABS_Y values (VMMDev range
//! 0..0xFFFF) that map back to exactly those pixels of the current screen; then a left click
//! must arrive as BTN_LEFT (mainline Linux reads buttons from the PS/2 mouse).
//!
//! Without vboxguest the PS/2 path is tested by `display_input`.
//!
//! Cost: one interpreter boot of the kit kernel to the test script plus a few seconds of
//! pointer traffic: 103 s wall on the 2-core development host. Loud skip without the guest
//! kit (`cargo xtask kit`; the kit carries `psmouse` since format 6).

mod common;

use common::Capture;
use glue::wiring_display::{Controller, VncConfig};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// evdev event types and codes the guest prints.
const EV_KEY: u32 = 1;
const EV_REL: u32 = 2;
const EV_ABS: u32 = 3;
const ABS_X: u32 = 0;
const ABS_Y: u32 = 1;
const BTN_LEFT: u32 = 272;

/// Handshake (RFB 3.8, no authentication); returns the socket and the screen size the
/// server announced.
fn handshake(addr: SocketAddr) -> (TcpStream, u32, u32) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    s.write_all(&[1]).unwrap();
    let mut r = [0u8; 4];
    s.read_exact(&mut r).unwrap();
    s.write_all(&[1]).unwrap();
    let mut init = [0u8; 24];
    s.read_exact(&mut init).unwrap();
    let w = u32::from(u16::from_be_bytes([init[0], init[1]]));
    let h = u32::from(u16::from_be_bytes([init[2], init[3]]));
    let n = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
    let mut name = vec![0u8; n];
    s.read_exact(&mut name).unwrap();
    (s, w, h)
}

/// RFB PointerEvent.
fn pointer(s: &mut TcpStream, x: u32, y: u32, buttons: u8) {
    let mut m = vec![5, buttons];
    m.extend_from_slice(&(x as u16).to_be_bytes());
    m.extend_from_slice(&(y as u16).to_be_bytes());
    s.write_all(&m).unwrap();
}

/// The (type, code, value) of every `NOVABOX-PTR-EV` line the guest printed.
fn events(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_end_matches('\r').split("NOVABOX-PTR-EV ").nth(1)?;
            let mut w = rest.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some((w.next()??, w.next()??, w.next()??))
        })
        .collect()
}

/// The pixel an absolute VMMDev coordinate `a` (0..=0xFFFF spans the screen) stands for on
/// a screen `size` pixels wide or high.
fn pixel_of(a: u32, size: u32) -> u32 {
    (u64::from(a) * u64::from(size) / 0xffff) as u32
}

/// True when the guest read an ABS_X mapping to `x` and an ABS_Y mapping to `y`.
fn saw_point(ev: &[(u32, u32, u32)], (x, y): (u32, u32), (w, h): (u32, u32)) -> bool {
    let abs = |code: u32, want: u32, size: u32| {
        ev.iter()
            .any(|&(t, c, v)| t == EV_ABS && c == code && v <= 0xffff && pixel_of(v, size) == want)
    };
    abs(ABS_X, x, w) && abs(ABS_Y, y, h)
}

fn wait_for(c: &Capture, what: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let t = c.text();
        if t.contains(what) {
            return true;
        }
        if t.contains("NOVABOX-TEST-FAIL") || t.contains("NOVABOX-POWEROFF") {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn display_pointer_abs_through_vmmdev_with_vboxguest() {
    let test = "display_pointer_abs_through_vmmdev_with_vboxguest";
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
        cmdline: "console=ttyS0 quiet novabox.test=pointer_abs".into(),
    });
    cfg.memory_mib = 256;
    cfg.engine = std::env::var("NOVABOX_BOOT_ENGINE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(EngineChoice::Interpreter);
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.display.controller = Some(Controller::VBoxVga);
    cfg.display.vnc = Some(VncConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: None,
    });
    // As `novabox run` wires it: the display sends the pointer to the VMMDev while the
    // guest's Additions ask for absolute positions.
    cfg.display.guest_additions = Some(cfg.guest_additions.handle.clone());
    let slot = cfg.display.handle.clone();
    let mut m = Machine::build(cfg).expect("build");
    let handle = slot.lock().clone().unwrap();
    let addr = handle.vnc_addr().unwrap();
    let stop = m.stop_handle();
    let c = com1.clone();
    let checks = std::thread::spawn(move || {
        let mut out: Vec<(String, bool)> = Vec::new();
        let ready = wait_for(&c, "NOVABOX-PTR-READY", Duration::from_secs(2400));
        out.push(("the guest opened both input devices".into(), ready));
        if !ready {
            stop.power_off();
            return out;
        }
        let (mut s, w, h) = handshake(addr);
        out.push((
            format!("ServerInit size {w}x{h} is the screen's"),
            handle.screen().size() == (w, h),
        ));
        // Two points well inside the screen; alternating between them, so every move
        // changes the position (evdev drops repeated values).
        let p1 = (w / 5 + 3, h * 2 / 3 + 1);
        let p2 = (w * 3 / 4, h / 6);
        let start = Instant::now();
        let (mut got1, mut got2) = (false, false);
        let mut flip = false;
        while start.elapsed() < Duration::from_secs(180) && !(got1 && got2) {
            flip = !flip;
            let (x, y) = if flip { p1 } else { p2 };
            pointer(&mut s, x, y, 0);
            std::thread::sleep(Duration::from_millis(700));
            let ev = events(&c.text());
            got1 |= saw_point(&ev, p1, (w, h));
            got2 |= saw_point(&ev, p2, (w, h));
        }
        out.push((
            format!("move to {p1:?} read as that pixel's ABS_X/ABS_Y"),
            got1,
        ));
        out.push((
            format!("move to {p2:?} read as that pixel's ABS_X/ABS_Y"),
            got2,
        ));
        // A left click at p1: press, release, until the guest read the press.
        let start = Instant::now();
        let mut clicked = false;
        while start.elapsed() < Duration::from_secs(120) && !clicked {
            pointer(&mut s, p1.0, p1.1, 1);
            std::thread::sleep(Duration::from_millis(300));
            pointer(&mut s, p1.0, p1.1, 0);
            std::thread::sleep(Duration::from_millis(1200));
            clicked = events(&c.text()).contains(&(EV_KEY, BTN_LEFT, 1));
        }
        out.push(("left click read as BTN_LEFT press".into(), clicked));
        out.push((
            "no relative PS/2 motion while the Additions take absolute positions".into(),
            !events(&c.text()).iter().any(|e| e.0 == EV_REL),
        ));
        out.push((
            "the guest script passed".into(),
            wait_for(&c, "NOVABOX-TEST-PASS pointer_abs", Duration::from_secs(60)),
        ));
        stop.power_off();
        out
    });
    let start = Instant::now();
    m.run().expect("run");
    let results = checks.join().unwrap();
    eprintln!(
        "{test}: stopped after {:.0} s",
        start.elapsed().as_secs_f64()
    );
    let text = com1.text();
    for l in text
        .lines()
        .filter(|l| l.contains("NOVABOX-") || l.starts_with("FAIL"))
    {
        eprintln!("  guest: {l}");
    }
    for (what, ok) in &results {
        eprintln!("{test}: {what}: {}", if *ok { "ok" } else { "FAILED" });
    }
    let tail = &text[text.len().saturating_sub(3000)..];
    assert!(
        results.iter().all(|(_, ok)| *ok),
        "{results:?}\n--- COM1 tail ---\n{tail}"
    );
}

#[test]
fn pixel_mapping_of_the_check_is_the_inverse_of_virtualbox_scaling() {
    // The check must accept what VirtualBox sends (pixel x of w as (x+1)*0xFFFF/w
    // rounded towards the pixel's left edge) and reject a neighbouring pixel.
    for w in [640u32, 720, 800, 1024, 1920] {
        for x in [0, 1, w / 5 + 3, w / 2, w - 1] {
            let a = ((u64::from(x) + 1) * 0xffff - 0xbfff) / u64::from(w);
            assert_eq!(pixel_of(a as u32, w), x, "w {w} x {x}");
            assert_ne!(pixel_of(a as u32, w), x + 1);
        }
    }
    let ev =
        events("x\nNOVABOX-PTR-EV 3 0 13439\r\nNOVABOX-PTR-EV 3 1 44000\nNOVABOX-PTR-EV 1 272 1\n");
    assert_eq!(ev, vec![(3, 0, 13439), (3, 1, 44000), (1, 272, 1)]);
    assert!(saw_point(&ev, (131, 322), (640, 480)));
    assert!(!saw_point(&ev, (132, 322), (640, 480)));
}
