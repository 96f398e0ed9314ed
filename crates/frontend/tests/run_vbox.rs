//! `novabox run VM`: a machine built from its .vbox, through the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn novabox(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_novabox"));
    c.env("VBOX_USER_HOME", home);
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn seabios() -> Option<std::path::PathBuf> {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kit-cache/bios.bin");
    [kit, "/usr/share/seabios/bios.bin".into()]
        .into_iter()
        .find(|p| p.is_file())
}

/// The machine's memory, CPU count and serial port come from its .vbox; SeaBIOS runs and,
/// with no disks, says so; the log goes to Logs/VBox.log next to the machine.
#[test]
fn machine_from_vbox_reaches_firmware_with_its_settings() {
    let Some(bios) = seabios() else {
        eprintln!("SKIPPED (no SeaBIOS): machine_from_vbox_reaches_firmware_with_its_settings");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let base = t.path().join("vms");
    ok(novabox(&home)
        .args([
            "createvm",
            "--name",
            "fw",
            "--ostype",
            "Debian_64",
            "--register",
        ])
        .arg("--basefolder")
        .arg(&base));
    let com1 = t.path().join("com1.txt");
    ok(novabox(&home)
        .args([
            "modifyvm",
            "fw",
            "--memory",
            "96",
            "--cpus",
            "2",
            "--uart1",
            "0x3f8,4",
            "--uartmode1",
            "file",
        ])
        .arg(&com1));
    // Engine: the interpreter always exists; this checks the machine, not the engine.
    let mut child = novabox(&home)
        .args([
            "run",
            "fw",
            "--debugcon",
            "--engine",
            "interpreter",
            "--bios",
        ])
        .arg(&bios)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => {
                let hit = l.contains("No bootable device");
                seen.push(l);
                if hit {
                    break true;
                }
            }
            Err(_) if Instant::now() > deadline => break false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break false,
            Err(_) => {}
        }
    };
    // The control socket answers the display's requests while the machine runs.
    let shot = t.path().join("shot.png");
    let control = |args: &[&str]| {
        novabox(&home)
            .args(["controlvm", "fw"])
            .args(args)
            .output()
            .unwrap()
    };
    let shot_out = control(&["screenshotpng", shot.to_str().unwrap()]);
    let keys_out = control(&["keyboardputscancode", "1e", "9e"]);
    let bad_keys = control(&["keyboardputscancode", "zz"]);
    // SIGTERM powers the VM off cleanly.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(
        shot_out.status.success(),
        "screenshotpng: {}",
        String::from_utf8_lossy(&shot_out.stderr)
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!(
        (w, h),
        (720, 400),
        "SeaBIOS's 80x25 text screen, 9x16 cells"
    );
    assert!(
        keys_out.status.success(),
        "keyboardputscancode: {}",
        String::from_utf8_lossy(&keys_out.stderr)
    );
    let err = String::from_utf8_lossy(&bad_keys.stderr);
    assert!(
        !bad_keys.status.success() && err.contains("bad scan code byte"),
        "{err}"
    );
    assert!(
        found,
        "SeaBIOS did not report 'No bootable device':\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter().any(|l| l.contains("Found 2 cpu(s)")),
        "CPU count from the .vbox:\n{}",
        seen.join("\n")
    );
    assert!(
        status.success(),
        "power-off on SIGTERM exits 0, got {status}"
    );
    let log = std::fs::read_to_string(base.join("fw/Logs/VBox.log")).unwrap();
    assert!(
        log.contains("cpus=2") && log.contains("memory_mib=96"),
        "{log}"
    );
    assert!(com1.exists(), "the RawFile serial port was opened");
    assert!(
        !base.join("fw/fw.vbox.novabox-run").exists(),
        "the run lock is released"
    );
}

/// A machine that needs what novabox does not have yet fails with one line naming it.
#[test]
fn unsupported_firmware_is_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let base = t.path().join("vms");
    ok(novabox(&home)
        .args([
            "createvm",
            "--name",
            "efi",
            "--ostype",
            "Debian_64",
            "--register",
        ])
        .arg("--basefolder")
        .arg(&base));
    ok(novabox(&home).args(["modifyvm", "efi", "--firmware", "efi"]));
    let out = novabox(&home).args(["run", "efi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("novabox: ") && last.contains("firmware"),
        "{err}"
    );
    let missing = novabox(&home).args(["run", "nosuchvm"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let e = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("nosuchvm"), "{e}");
}
