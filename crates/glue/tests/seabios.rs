//! SeaBIOS boots on the assembled PC platform until it reports "No bootable device" (the
//! machine has no disks), on the KVM engine and on the interpreter.
//!
//! The image is the guest kit's `kit-cache/bios.bin` (`$NOVABOX_KIT_DIR/bios.bin`), else
//! Debian's `/usr/share/seabios/bios.bin`; without either the tests print
//! `SKIPPED (no SeaBIOS): <name>`. Without a usable `/dev/kvm` the KVM variant prints
//! `SKIPPED (no /dev/kvm): <name>`; when it runs it prints `KVM-TEST-RAN <name>`.
//!
//! SeaBIOS's debug output goes to port 0x402 (the debug console, captured here through
//! `MachineConfig::debugcon`); COM1 is captured too. Once the string appears the test stops
//! the machine with its stop handle; it fails if the string has not appeared in time.

mod common;

use common::{Capture, Engine};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use hm::StopReason;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NO_BOOT: &str = "No bootable device";

/// The SeaBIOS image, or the loud skip.
fn seabios_or_skip(test: &str) -> Option<PathBuf> {
    let candidates = [
        glue::firmware::kit_dir().join("bios.bin"),
        PathBuf::from("/usr/share/seabios/bios.bin"),
    ];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Some(p.clone()),
        None => {
            eprintln!("SKIPPED (no SeaBIOS): {test}");
            None
        }
    }
}

fn boot_to_no_bootable_device(engine: Engine, test: &str) {
    let Some(bios) = seabios_or_skip(test) else {
        return;
    };
    if engine == Engine::Kvm && !common::kvm_usable(test) {
        return;
    }
    let image = std::fs::read(&bios).unwrap();
    let debugcon = Capture::default();
    let com1 = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Firmware { image });
    cfg.memory_mib = 128;
    cfg.engine = match engine {
        Engine::Kvm => EngineChoice::Kvm,
        Engine::Interpreter => EngineChoice::Interpreter,
    };
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.debugcon = Some(Box::new(debugcon.clone()));
    cfg.rtc_utc = true;
    let mut m = Machine::build(cfg).expect("build the machine");

    // Watch the output; stop the machine when the string appears or time runs out.
    let timeout = Duration::from_secs(180);
    let stop = m.stop_handle();
    let seen = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(true));
    let (s, r, d, c) = (
        seen.clone(),
        running.clone(),
        debugcon.clone(),
        com1.clone(),
    );
    let watcher = std::thread::spawn(move || {
        let start = Instant::now();
        while r.load(Ordering::SeqCst) {
            if d.text().contains(NO_BOOT) || c.text().contains(NO_BOOT) {
                s.store(true, Ordering::SeqCst);
                stop.power_off();
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                stop.power_off();
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    });
    let start = Instant::now();
    let reason = m.run().expect("run the machine");
    let elapsed = start.elapsed();
    running.store(false, Ordering::SeqCst);
    let seen_after = watcher.join().unwrap();
    if engine == Engine::Kvm {
        eprintln!("KVM-TEST-RAN {test}");
    }
    eprintln!(
        "{test}: {} in {:.2} s ({} bytes of debug output; {reason:?})",
        if seen.load(Ordering::SeqCst) {
            "reached \"No bootable device\""
        } else {
            "did not reach \"No bootable device\""
        },
        seen_after.as_secs_f64(),
        debugcon.bytes().len()
    );
    let tail = |c: &Capture| {
        let t = c.text();
        let n = t.len().saturating_sub(3000);
        t.get(n..).unwrap_or_default().to_string()
    };
    assert!(
        seen.load(Ordering::SeqCst),
        "SeaBIOS ({}) did not print {NO_BOOT:?} within {timeout:?} (stopped after {elapsed:?}: \
         {reason:?})\n--- debugcon tail ---\n{}\n--- COM1 tail ---\n{}",
        bios.display(),
        tail(&debugcon),
        tail(&com1)
    );
    assert_eq!(reason, StopReason::PowerOff, "stopped by the stop handle");
    let log = debugcon.text();
    // SEABIOS_LOG=1 shows the whole debug log (for looking into device behaviour).
    if std::env::var_os("SEABIOS_LOG").is_some() {
        eprintln!("{log}");
    }
    assert!(log.contains("SeaBIOS (version"), "SeaBIOS banner on 0x402");
}

#[test]
fn seabios_no_bootable_device_kvm() {
    boot_to_no_bootable_device(Engine::Kvm, "seabios_no_bootable_device_kvm");
}

#[test]
fn seabios_no_bootable_device_interpreter() {
    boot_to_no_bootable_device(
        Engine::Interpreter,
        "seabios_no_bootable_device_interpreter",
    );
}
