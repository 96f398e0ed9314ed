//! SeaBIOS boots the kit's MBR disk (`kit-cache/boot-disk.vdi`: SYSLINUX on FAT16, made by
//! `cargo xtask kit`) through each storage controller until the kit kernel prints on COM1;
//! and with an empty disk it reports the drive it found. Without the kit the tests print
//! `SKIPPED (no kit boot disk): <name>`.
//!
//! The engine is the interpreter (on this project's hosts /dev/kvm is kvm-pvm, too slow for
//! real-mode BIOS loops); `NOVABOX_STORAGE_ENGINE=kvm` selects KVM.

mod common;

use common::Capture;
use glue::wiring_storage::{Attachment, Config, Controller, ControllerKind, DeviceKind};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kit_file(name: &str, test: &str) -> Option<PathBuf> {
    let p = glue::firmware::kit_dir().join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED (no kit boot disk): {test} ({} missing; run `cargo xtask kit`)",
            p.display()
        );
        None
    }
}

fn engine() -> EngineChoice {
    match std::env::var("NOVABOX_STORAGE_ENGINE").as_deref() {
        Ok("kvm") => EngineChoice::Kvm,
        _ => EngineChoice::Interpreter,
    }
}

/// A private copy of the kit disk (the machine opens it writable).
fn copy_disk(src: &Path, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("novabox-storage-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dst = dir.join("boot-disk.vdi");
    std::fs::copy(src, &dst).unwrap();
    dst
}

/// Run the machine until COM1 or the debug console shows `want` (true) or `timeout`.
fn run_until(
    cfg: MachineConfig,
    com1: &Capture,
    debugcon: &Capture,
    want: &str,
    timeout: Duration,
) -> (bool, Duration) {
    let mut m = Machine::build(cfg).expect("build the machine");
    let stop = m.stop_handle();
    let seen = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(true));
    let (s, r, c, d, w) = (
        seen.clone(),
        running.clone(),
        com1.clone(),
        debugcon.clone(),
        want.to_string(),
    );
    let start = Instant::now();
    let watcher = std::thread::spawn(move || {
        while r.load(Ordering::SeqCst) {
            if c.text().contains(&w) || d.text().contains(&w) {
                s.store(true, Ordering::SeqCst);
                break;
            }
            if start.elapsed() > timeout {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.power_off();
    });
    let _ = m.run();
    running.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    (seen.load(Ordering::SeqCst), start.elapsed())
}

fn boot_disk(kind: ControllerKind, test: &str) {
    let (Some(vdi), Some(bios)) = (kit_file("boot-disk.vdi", test), kit_file("bios.bin", test))
    else {
        return;
    };
    let disk = copy_disk(&vdi, test);
    let (port, device) = match kind {
        ControllerKind::Ahci => (0, 0),
        _ => (0, 0),
    };
    let com1 = Capture::default();
    let debugcon = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Firmware {
        image: std::fs::read(bios).unwrap(),
    });
    cfg.memory_mib = 256;
    cfg.engine = engine();
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.debugcon = Some(Box::new(debugcon.clone()));
    cfg.rtc_utc = true;
    cfg.storage = Config {
        controllers: vec![Controller {
            name: "disk".into(),
            kind,
            port_count: 2,
            bootable: true,
            attachments: vec![Attachment::disk(port, device, &disk)],
        }],
        boot_order: vec![DeviceKind::HardDisk],
    };
    // The kernel's first console line; SYSLINUX has loaded 10 MB through the controller.
    let (ok, took) = run_until(
        cfg,
        &com1,
        &debugcon,
        "Linux version",
        Duration::from_secs(900),
    );
    let _ = std::fs::remove_dir_all(disk.parent().unwrap());
    let dbg = debugcon.text();
    let tail: String = dbg
        .lines()
        .rev()
        .take(25)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        ok,
        "{test}: the kit kernel did not start within {took:?}\n--- COM1 ---\n{}\n--- SeaBIOS (last lines) ---\n{tail}",
        com1.text()
    );
    eprintln!(
        "{test}: SeaBIOS -> SYSLINUX -> kernel in {:.1} s",
        took.as_secs_f64()
    );
}

#[test]
fn seabios_boots_the_kit_disk_from_ahci() {
    boot_disk(ControllerKind::Ahci, "seabios_boots_the_kit_disk_from_ahci");
}

#[test]
fn seabios_boots_the_kit_disk_from_piix4_ide() {
    boot_disk(
        ControllerKind::Piix4,
        "seabios_boots_the_kit_disk_from_piix4_ide",
    );
}

#[test]
fn seabios_boots_the_kit_disk_from_piix3_ide() {
    boot_disk(
        ControllerKind::Piix3,
        "seabios_boots_the_kit_disk_from_piix3_ide",
    );
}
