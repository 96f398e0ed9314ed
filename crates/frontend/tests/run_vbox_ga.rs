//! `novabox run VM` with the Guest Additions host side, through the real binary and the
//! control socket (the guest is SeaBIOS with no disk: nothing runs inside, the host side
//! is what is checked): guest properties set while it runs are saved in the .vbox at
//! power-off (transient ones are not) and offered again at the next start; the clipboard
//! requests; acpipowerbutton; showvminfo of the running VM shows the Additions lines.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
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

/// Start the VM and wait until SeaBIOS gave up booting (the control socket is up by then).
fn start(home: &Path, bios: &Path) -> Child {
    let mut child = novabox(home)
        .args([
            "run",
            "ga",
            "--debugcon",
            "--engine",
            "interpreter",
            "--bios",
        ])
        .arg(bios)
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
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) if l.contains("No bootable device") => break,
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the VM ended early"),
            Err(_) => assert!(Instant::now() < deadline, "SeaBIOS did not finish"),
        }
    }
    // Keep draining stderr so the VM never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    child
}

fn ctl(home: &Path, args: &[&str]) -> Output {
    novabox(home).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn guest_properties_persist_and_control_requests_work() {
    let test = "guest_properties_persist_and_control_requests_work";
    let Some(bios) = seabios() else {
        eprintln!("SKIPPED (no SeaBIOS): {test}");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let base = t.path().join("vms");
    ok(novabox(&home)
        .args([
            "createvm",
            "--name",
            "ga",
            "--ostype",
            "Debian_64",
            "--register",
        ])
        .arg("--basefolder")
        .arg(&base));
    ok(novabox(&home).args(["modifyvm", "ga", "--memory", "64"]));
    let vbox = base.join("ga/ga.vbox");

    let mut child = start(&home, &bios);
    let set = ctl(
        &home,
        &["guestproperty", "set", "ga", "/my/persist", "hello world"],
    );
    let set_t = ctl(
        &home,
        &[
            "guestproperty",
            "set",
            "ga",
            "/my/trans",
            "gone",
            "--flags",
            "TRANSIENT",
        ],
    );
    let get = ctl(&home, &["guestproperty", "get", "ga", "/my/persist"]);
    let clip_set = ctl(
        &home,
        &["controlvm", "ga", "clipboard", "set-text", "two words"],
    );
    let clip_get = ctl(&home, &["controlvm", "ga", "clipboard", "get-text"]);
    let clip_mode = ctl(
        &home,
        &["controlvm", "ga", "clipboard", "mode", "hosttoguest"],
    );
    let clip_bad = ctl(&home, &["controlvm", "ga", "clipboard", "mode", "sideways"]);
    let button = ctl(&home, &["controlvm", "ga", "acpipowerbutton"]);
    let info = ctl(&home, &["showvminfo", "ga"]);
    let info_m = ctl(&home, &["showvminfo", "ga", "--machinereadable"]);
    let off = ctl(&home, &["controlvm", "ga", "poweroff"]);
    let status = child.wait().unwrap();

    for (what, o) in [
        ("set", &set),
        ("set transient", &set_t),
        ("get", &get),
        ("clipboard set-text", &clip_set),
        ("clipboard get-text", &clip_get),
        ("clipboard mode", &clip_mode),
        ("acpipowerbutton", &button),
        ("showvminfo", &info),
        ("poweroff", &off),
    ] {
        assert!(o.status.success(), "{what}: {}", text(o));
    }
    assert_eq!(String::from_utf8_lossy(&get.stdout), "Value: hello world\n");
    assert_eq!(String::from_utf8_lossy(&clip_get.stdout), "two words\n");
    assert!(!clip_bad.status.success() && text(&clip_bad).contains("sideways"));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("Additions run level:"), "{info}");
    let info_m = String::from_utf8_lossy(&info_m.stdout).into_owned();
    assert!(info_m.contains("GuestAdditionsRunLevel=0"), "{info_m}");
    assert!(status.success(), "poweroff exits 0: {status}");

    // Saved as VirtualBox does: the non-transient property only.
    let xml = std::fs::read_to_string(&vbox).unwrap();
    assert!(
        xml.contains("<GuestProperty name=\"/my/persist\" value=\"hello world\""),
        "{xml}"
    );
    assert!(
        !xml.contains("/my/trans"),
        "transient property saved:\n{xml}"
    );
    assert!(
        base.join("ga/ga.vbox-prev").exists(),
        "safe save keeps -prev"
    );

    // The next start offers it again.
    let mut child = start(&home, &bios);
    let get = ctl(&home, &["guestproperty", "get", "ga", "/my/persist"]);
    let gone = ctl(&home, &["guestproperty", "get", "ga", "/my/trans"]);
    ok(novabox(&home).args(["controlvm", "ga", "poweroff"]));
    child.wait().unwrap();
    assert_eq!(String::from_utf8_lossy(&get.stdout), "Value: hello world\n");
    assert_eq!(String::from_utf8_lossy(&gone.stdout), "No value set!\n");
}
