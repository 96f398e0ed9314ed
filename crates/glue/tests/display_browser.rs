//! The browser console: headless Chromium (driven by playwright-core) opens the page the
//! VNC port serves, receives the guest screen over the WebSocket, and its canvas shows the
//! same picture as a screenshot; a click and a key press go out as RFB messages.
//!
//! Needs node, Debian's chromium and `npm ci --prefix crates/vnc/web` (playwright-core);
//! otherwise a loud `SKIPPED (...)`. The guest is SeaBIOS at its "No bootable device"
//! screen (KVM when usable, else the interpreter).

mod common;

use glue::wiring_display::{self, Controller, VncConfig};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn display_browser_console_shows_the_guest_screen() {
    let test = "display_browser_console_shows_the_guest_screen";
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vnc/web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        eprintln!("SKIPPED (no node): {test}");
        return;
    }
    if !PathBuf::from(&chromium).is_file() {
        eprintln!("SKIPPED (no chromium at {chromium}; apt-get install chromium): {test}");
        return;
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        eprintln!("SKIPPED (no playwright-core; npm ci --prefix crates/vnc/web): {test}");
        return;
    }
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
