//! `novabox run machine.vbox` with the kit's machines: the .vbox's storage controllers,
//! its VDI disk and its DVD image reach the firmware, and the boot order picks the
//! device, on AHCI and on PIIX4 IDE. Each boot is followed until the boot loader has
//! read the kernel and initramfs from the medium (megabytes through the BIOS disk
//! services over ATA or ATAPI), then the VM is powered off.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn novabox(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_novabox"));
    c.env("VBOX_USER_HOME", home);
    c
}

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kit-cache")
}

/// A private copy of a kit machine with its disk and ISO; None (with a loud line) when
/// the kit lacks them.
fn machine(vbox: &str, dir: &Path) -> Option<PathBuf> {
    for f in [vbox, "boot-disk.vdi", "kit.iso", "bios.bin"] {
        if !kit().join(f).is_file() {
            eprintln!("SKIPPED (kit-cache/{f} missing; run `cargo xtask kit`): {vbox}");
            return None;
        }
    }
    for f in [vbox, "boot-disk.vdi", "kit.iso"] {
        std::fs::copy(kit().join(f), dir.join(f)).unwrap();
    }
    Some(dir.join(vbox))
}

/// Run the machine until its serial log (the .vbox's RawFile COM1, `serial.log`) holds
/// every string of `want`; power it off and return the log.
fn boot_until(home: &Path, vbox: &Path, want: &[&str]) -> String {
    let serial = vbox.parent().unwrap().join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let mut child = novabox(home)
        .arg("run")
        .arg(vbox)
        .args(["--engine", "interpreter", "--bios"])
        .arg(kit().join("bios.bin"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut log;
    let done = loop {
        log = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
        if want.iter().all(|w| log.contains(w)) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        done,
        "{}: wanted {want:?} on the serial port\nserial:\n{log}\nstderr:\n{stderr}",
        vbox.display()
    );
    assert!(out.status.success(), "power-off exits 0: {stderr}");
    log
}

fn disk_then_dvd(vbox: &str) {
    let t = tempfile::tempdir().unwrap();
    let Some(path) = machine(vbox, t.path()) else {
        return;
    };
    let home = t.path().join("home");
    // The kit machines boot from the hard disk first: SYSLINUX from the VDI.
    let log = boot_until(
        &home,
        &path,
        &[
            "SYSLINUX",
            "Loading /vmlinuz... ok",
            "Loading /initrd.gz...ok",
        ],
    );
    assert!(!log.contains("ISOLINUX"), "{log}");
    // With the DVD first in the boot order, ISOLINUX from kit.iso.
    let out = novabox(&home)
        .arg("modifyvm")
        .arg(&path)
        .args(["--boot1", "dvd", "--boot2", "disk"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = boot_until(
        &home,
        &path,
        &[
            "ISOLINUX",
            "Loading /vmlinuz... ok",
            "Loading /initrd.gz...ok",
        ],
    );
    assert!(!log.contains("SYSLINUX 6"), "{log}");
    let vbox_log = std::fs::read_to_string(t.path().join("Logs/VBox.log")).unwrap();
    assert!(
        vbox_log.contains("kind=Dvd") && vbox_log.contains("kit.iso"),
        "the DVD attachment is logged: {vbox_log}"
    );
}

#[test]
fn ahci_machine_boots_its_vdi_then_its_dvd() {
    disk_then_dvd("kit-ahci.vbox");
}

#[test]
fn piix4_ide_machine_boots_its_vdi_then_its_dvd() {
    disk_then_dvd("kit-ide.vbox");
}

/// Controllers novabox does not model are named; a disk on one blocks the start only when
/// no modelled controller has a disk.
#[test]
fn unmodelled_controllers_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let Some(path) = machine("kit-ahci.vbox", t.path()) else {
        return;
    };
    let home = t.path().join("home");
    let ok = |args: &[&str]| {
        let out = novabox(&home).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let p = path.to_str().unwrap();
    ok(&["storagectl", p, "--name", "SCSI", "--add", "scsi"]);
    ok(&["storagectl", p, "--name", "NVMe", "--add", "pcie"]);
    let report = ok(&["showvminfo", p, "--compat"]);
    assert!(
        report.contains("storagectl \"SCSI\"") && report.contains("LsiLogic"),
        "{report}"
    );
    assert!(report.contains("NVMe"), "{report}");
    assert!(!report.contains("\"SATA\""), "AHCI is modelled: {report}");
}
