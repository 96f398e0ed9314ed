//! Inside the kit guest (direct kernel boot), the `disk_persist` test writes 1 MiB of random
//! data and its checksum to /dev/sda, the machine powers off, boots again and verifies it:
//! persistence through a VDI, once on AHCI and once on PIIX4 IDE. The host then reads the
//! checksum header from the VDI itself. Needs the guest kit (`cargo xtask kit`), else
//! `SKIPPED (no kit): <name>`. Engine: the interpreter (`NOVABOX_STORAGE_ENGINE=kvm` for KVM).

mod common;

use common::Capture;
use glue::wiring_storage::{Attachment, Config, Controller, ControllerKind};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use media::Disk;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kit(test: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = glue::firmware::kit_dir();
    match (
        std::fs::read(dir.join("vmlinuz")),
        std::fs::read(dir.join("initramfs.cpio.gz")),
    ) {
        (Ok(k), Ok(i)) => Some((k, i)),
        _ => {
            eprintln!("SKIPPED (no kit): {test}");
            None
        }
    }
}

fn engine() -> EngineChoice {
    match std::env::var("NOVABOX_STORAGE_ENGINE").as_deref() {
        Ok("kvm") => EngineChoice::Kvm,
        _ => EngineChoice::Interpreter,
    }
}

/// Boot once with `phase`; returns the COM1 text.
fn boot(kernel: &[u8], initrd: &[u8], kind: ControllerKind, disk: &Path, phase: &str) -> String {
    let driver = match kind {
        ControllerKind::Ahci => "ahci",
        _ => "ata_piix",
    };
    let com1 = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Kernel {
        kernel: kernel.to_vec(),
        initrd: Some(initrd.to_vec()),
        cmdline: format!(
            "console=ttyS0 quiet panic=-1 novabox.test=disk_persist novabox.disk_phase={phase} novabox.disk_driver={driver}"
        ),
    });
    cfg.memory_mib = 256;
    cfg.engine = engine();
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.storage = Config {
        controllers: vec![Controller {
            name: "scratch".into(),
            kind,
            port_count: 1,
            bootable: false,
            attachments: vec![Attachment::disk(0, 0, disk)],
        }],
        boot_order: Vec::new(),
    };
    let mut m = Machine::build(cfg).expect("build the machine");
    let stop = m.stop_handle();
    let running = Arc::new(AtomicBool::new(true));
    let r = running.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while r.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(1500) {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.power_off();
    });
    let _ = m.run();
    running.store(false, Ordering::SeqCst);
    watchdog.join().unwrap();
    com1.text()
}

fn persist(kind: ControllerKind, test: &str) {
    let Some((kernel, initrd)) = kit(test) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("novabox-persist-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk: PathBuf = dir.join("scratch.vdi");
    media::create(
        &disk,
        &media::CreateOptions {
            format: media::Format::Vdi,
            size: 64 << 20,
            fixed: false,
            parent: None,
            uuid: None,
        },
    )
    .unwrap();
    let t = Instant::now();
    let out = boot(&kernel, &initrd, kind, &disk, "write");
    assert!(
        out.contains("NOVABOX-TEST-PASS disk_persist"),
        "{test}: write phase:\n{out}"
    );
    let wrote = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("disk_persist: wrote "))
        .expect("checksum line")
        .to_string();
    // Host side: the VDI holds the header the guest wrote.
    {
        let mut m = media::open(&disk, &media::OpenOptions::read_only()).unwrap();
        let mut s0 = [0u8; 512];
        m.read_at(&mut s0, 0).unwrap();
        let hdr = String::from_utf8_lossy(&s0[..76]).into_owned();
        assert!(
            hdr.starts_with(&format!("NOVABOX-SUM {wrote}")),
            "{test}: sector 0 is {hdr:?}"
        );
    }
    let out = boot(&kernel, &initrd, kind, &disk, "verify");
    assert!(
        out.contains("NOVABOX-TEST-PASS disk_persist"),
        "{test}: verify phase:\n{out}"
    );
    assert!(
        out.contains(&format!("disk_persist: verified {wrote}")),
        "{out}"
    );
    eprintln!(
        "{test}: write + verify boots in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn disk_persists_through_vdi_on_ahci() {
    persist(ControllerKind::Ahci, "disk_persists_through_vdi_on_ahci");
}

#[test]
fn disk_persists_through_vdi_on_piix4_ide() {
    persist(
        ControllerKind::Piix4,
        "disk_persists_through_vdi_on_piix4_ide",
    );
}
