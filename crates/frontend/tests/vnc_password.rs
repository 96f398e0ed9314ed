//! A machine whose `.vbox` enables the remote display with a VNC password (VirtualBox's
//! VNC extension pack property `VNCPassword`) serves VNC on the `.vbox`'s `TCP/Ports`, on
//! loopback, and only with that password: the server offers VNC authentication alone, a
//! real client (vncdotool) with the password gets the screen, one with a wrong password is
//! refused. The guest is SeaBIOS with no bootable device.
//!
//! Loud skips: no SeaBIOS (`cargo xtask kit`), no vncdotool (`pip install vncdotool`).

#[path = "common/vncdo.rs"]
mod vncdo;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vbox(port: u16, password: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{{6c1f8a56-3b0e-4d7e-9f5e-2a8d4c1b7e90}}" name="vncpw" OSType="Other_64">
    <Hardware>
      <Memory RAMSize="64"/>
      <Display controller="VBoxVGA" VRAMSize="16"/>
      <RemoteDisplay enabled="true">
        <VRDEProperties>
          <Property name="TCP/Ports" value="{port}"/>
          <Property name="VNCPassword" value="{password}"/>
        </VRDEProperties>
      </RemoteDisplay>
    </Hardware>
  </Machine>
</VirtualBox>
"#
    )
}

/// The security types the server offers (RFB 3.8 greeting).
fn security_types(port: u16) -> Option<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut v = [0u8; 12];
    s.read_exact(&mut v).ok()?;
    s.write_all(b"RFB 003.008\n").ok()?;
    let mut n = [0u8; 1];
    s.read_exact(&mut n).ok()?;
    let mut t = vec![0u8; usize::from(n[0])];
    s.read_exact(&mut t).ok()?;
    Some(t)
}

#[test]
fn vbox_vnc_password_is_required() {
    let test = "vbox_vnc_password_is_required";
    let kit = std::env::var_os("NOVABOX_KIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("kit-cache"));
    let bios = kit.join("bios.bin");
    if !bios.is_file() {
        eprintln!("SKIPPED (no guest kit; cargo xtask kit): {test}");
        return;
    }
    if vncdo::vncdo().is_none() {
        eprintln!("SKIPPED (no vncdotool; pip install vncdotool): {test}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = t.path().join("vncpw.vbox");
    std::fs::write(&file, vbox(port, "s3cret")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_novabox"))
        .env("VBOX_USER_HOME", t.path().join("home"))
        .env_remove("NOVABOX_VNC_PASSWORD")
        .arg("run")
        .arg(&file)
        .args(["--engine", "interpreter", "--bios"])
        .arg(&bios)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut types = None;
    while Instant::now() < deadline && types.is_none() {
        types = security_types(port);
        if types.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let vncdo = |password: &str, png: &Path| {
        vncdo::vncdo()
            .unwrap()
            .arg("-s")
            .arg(format!("127.0.0.1::{port}"))
            .args(["-p", password, "-t", "30", "capture"])
            .arg(png)
            .output()
            .unwrap()
    };
    let good_png = t.path().join("good.png");
    let good = vncdo("s3cret", &good_png);
    let bad_png = t.path().join("bad.png");
    let bad = vncdo("wrong", &bad_png);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        types.as_deref(),
        Some(&[2u8][..]),
        "only VNC authentication is offered on the .vbox's port"
    );
    assert!(
        good.status.success() && good_png.is_file(),
        "the right password gets the screen: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let frame = vnc::decode_png(&std::fs::read(&good_png).unwrap()).unwrap();
    assert!(frame.width > 0 && frame.height > 0);
    assert!(
        !bad.status.success() && !bad_png.is_file(),
        "a wrong password is refused"
    );
}
