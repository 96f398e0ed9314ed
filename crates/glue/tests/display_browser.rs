//! The browser console: headless Chromium (driven by playwright-core) opens the page the
//! VNC port serves, receives the guest screen over the WebSocket, and its canvas shows the
//! same picture as a screenshot; a click and a key press go out as RFB messages.
//!
//! Needs node, Debian's chromium and `npm ci --prefix crates/vnc/web` (playwright-core);
//! otherwise a loud `SKIPPED (...)`. The guest is SeaBIOS at its "No bootable device"
//! screen (KVM when usable, else the interpreter); a second test clicks in the browser and a
//! tiny guest with a PS/2 mouse driver reports the click.

mod common;

use common::{long_mode_state, Capture, Guest};
use glue::wiring_display::{self, Controller, VncConfig};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The browser prerequisites, or None after a loud skip line.
fn browser(test: &str) -> Option<(PathBuf, String)> {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vnc/web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        eprintln!("SKIPPED (no node): {test}");
        return None;
    }
    if !PathBuf::from(&chromium).is_file() {
        eprintln!("SKIPPED (no chromium at {chromium}; apt-get install chromium): {test}");
        return None;
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        eprintln!("SKIPPED (no playwright-core; npm ci --prefix crates/vnc/web): {test}");
        return None;
    }
    Some((web, chromium))
}

/// Set a 640x480x32 VBE mode through the DISPI ports (so the browser has a screen), turn
/// on the i8042's aux port and the mouse's data reporting, then copy every byte the mouse
/// sends (status bit 5: aux data) to COM1; keyboard bytes are read and dropped.
const PS2_MOUSE_GUEST: &str = r"
    mov dx, 0x1ce
    mov ax, 4
    out dx, ax
    inc dx
    xor ax, ax
    out dx, ax
    dec dx
    mov ax, 1
    out dx, ax
    inc dx
    mov ax, 640
    out dx, ax
    dec dx
    mov ax, 2
    out dx, ax
    inc dx
    mov ax, 480
    out dx, ax
    dec dx
    mov ax, 3
    out dx, ax
    inc dx
    mov ax, 32
    out dx, ax
    dec dx
    mov ax, 4
    out dx, ax
    inc dx
    mov ax, 0x41
    out dx, ax
    mov al, 0xa8
    out 0x64, al
    mov al, 0xd4
    out 0x64, al
    mov al, 0xf4
    out 0x60, al
poll:
    in al, 0x64
    test al, 1
    jz poll
    mov bl, al
    in al, 0x60
    test bl, 0x20
    jz poll
    mov dx, 0x3f8
    out dx, al
    jmp poll
";

/// Headless Chromium clicks on the console's canvas; the guest's PS/2 mouse driver (no
/// Guest Additions, so the pointer goes the relative PS/2 way) receives a packet with the
/// left button down and one with it up again.
#[test]
fn display_browser_click_reaches_the_guest() {
    let test = "display_browser_click_reaches_the_guest";
    let Some((web, chromium)) = browser(test) else {
        return;
    };
    let kvm = common::kvm_usable(test);
    let com1 = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Raw {
        image: Guest::new(PS2_MOUSE_GUEST).image(),
        load_addr: 0,
        state: Box::new(long_mode_state()),
    });
    cfg.memory_mib = 32;
    cfg.engine = if kvm {
        EngineChoice::Kvm
    } else {
        EngineChoice::Interpreter
    };
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.display.controller = Some(Controller::VBoxVga);
    cfg.display.vnc = Some(VncConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: None,
    });
    let slot = cfg.display.handle.clone();
    let mut m = Machine::build(cfg).expect("build");
    let addr = slot.lock().as_ref().unwrap().vnc_addr().unwrap();
    let stop = m.stop_handle();
    let out = std::env::temp_dir().join(format!("novabox-click-{}.png", std::process::id()));
    let (o, c, cap) = (out.clone(), chromium.clone(), com1.clone());
    let checker = std::thread::spawn(move || {
        // The mouse acknowledges "enable reporting" once the guest runs.
        let start = Instant::now();
        while !cap.bytes().contains(&0xfa) && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let run = Command::new("node")
            .arg(web.join("test/console_check.mjs"))
            .arg(format!("http://{addr}/"))
            .arg(&o)
            .env("CHROMIUM", &c)
            .output()
            .expect("run node");
        // Give the last packets time to reach the guest.
        std::thread::sleep(Duration::from_millis(500));
        stop.power_off();
        run
    });
    m.run().expect("run");
    if kvm {
        eprintln!("KVM-TEST-RAN {test}");
    }
    let run = checker.join().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!(
        "{test}: browser: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(
        out.with_file_name(format!("novabox-click-{}-page.png", std::process::id())),
    );
    assert!(run.status.success(), "the browser check failed");
    assert!(
        stdout.contains("\"size\":\"640x480\""),
        "canvas size: {stdout}"
    );
    let bytes = com1.bytes();
    let at = bytes
        .iter()
        .position(|&b| b == 0xfa)
        .expect("the mouse acknowledged enable-reporting");
    // After the acknowledgement the mouse sends 3-byte packets; byte 0 always has bit 3.
    let packets: Vec<&[u8]> = bytes[at + 1..].chunks_exact(3).collect();
    eprintln!("{test}: PS/2 packets: {packets:02x?}");
    assert!(
        packets.iter().all(|p| p[0] & 0x08 != 0),
        "packets out of frame: {packets:02x?}"
    );
    let down = packets.iter().position(|p| p[0] & 0x01 != 0);
    assert!(
        down.is_some(),
        "no packet with the left button down: {packets:02x?}"
    );
    assert!(
        packets[down.unwrap()..].iter().any(|p| p[0] & 0x07 == 0),
        "the button was never released: {packets:02x?}"
    );
}

#[test]
fn display_browser_console_shows_the_guest_screen() {
    let test = "display_browser_console_shows_the_guest_screen";
    let Some((web, chromium)) = browser(test) else {
        return;
    };
    let Some(bios) = [
        glue::firmware::kit_dir().join("bios.bin"),
        PathBuf::from("/usr/share/seabios/bios.bin"),
    ]
    .into_iter()
    .find(|p| p.is_file()) else {
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
    cfg.display.controller = Some(Controller::VBoxVga);
    cfg.display.vnc = Some(VncConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: None,
    });
    let slot = cfg.display.handle.clone();
    let mut m = Machine::build(cfg).expect("build");
    let handle = slot.lock().clone().unwrap();
    let addr = handle.vnc_addr().unwrap();
    let stop = m.stop_handle();
    let out = std::env::temp_dir().join(format!("novabox-console-{}.png", std::process::id()));
    let (o, w, c) = (out.clone(), web.clone(), chromium.clone());
    let checker = std::thread::spawn(move || {
        let start = Instant::now();
        let mut ready = false;
        while start.elapsed() < Duration::from_secs(240) && !ready {
            ready = handle
                .text()
                .ok()
                .flatten()
                .is_some_and(|t| t.iter().any(|l| l.contains("Retrying in 60 seconds.")));
            std::thread::sleep(Duration::from_millis(100));
        }
        let run = ready.then(|| {
            Command::new("node")
                .arg(w.join("test/console_check.mjs"))
                .arg(format!("http://{addr}/"))
                .arg(&o)
                .env("CHROMIUM", &c)
                .output()
                .expect("run node")
        });
        let frame = handle.frame().ok();
        stop.power_off();
        (ready, run, frame)
    });
    m.run().expect("run");
    if kvm {
        eprintln!("KVM-TEST-RAN {test}");
    }
    let (ready, run, frame) = checker.join().unwrap();
    assert!(ready, "SeaBIOS never reached its last screen");
    let run = run.unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!(
        "{test}: browser: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the browser check failed");
    assert!(stdout.contains("\"size\":\"720x400\""), "canvas size");
    let canvas = vnc::decode_png(&std::fs::read(&out).unwrap()).unwrap();
    let frame = frame.unwrap();
    assert_eq!(canvas, frame, "the browser shows the guest screen");
    let _ = std::fs::remove_file(&out);
}
