//! The screen of a VirtualBox machine through the real binary: `novabox run` boots the
//! kit's SYSLINUX disk from its .vbox with `--vnc`; once SYSLINUX has loaded the kernel,
//! the text screen (read through the control socket) shows SeaBIOS's and SYSLINUX's lines,
//! and a screenshot through `novabox controlvm VM screenshotpng` equals the pictures two
//! real VNC clients receive (vncdotool's `vncdo capture`, Raw; and vncdotool with ZRLE), and
//! the golden image `crates/glue/tests/display_golden/syslinux_loaded.png` (checked by eye)
//! when the kit's SeaBIOS and SYSLINUX are the ones it was made with.
//!
//! Loud skips: no kit (`cargo xtask kit`), no vncdotool (`pip install vncdotool`).
//! `DISPLAY_GOLDEN_UPDATE=1` rewrites the golden image.

#[path = "common/vncdo.rs"]
mod vncdo;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn novabox(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_novabox"));
    c.env("VBOX_USER_HOME", home);
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_dir() -> PathBuf {
    repo().join("crates/glue/tests/display_golden")
}

/// A capture by vncdotool with ZRLE first in its encoding list.
const VNCDO_ZRLE: &str = r#"
import sys
from vncdotool import api, rfb, client as vc
def made(self):
    self.setImageMode()
    self.setEncodings([rfb.Encoding.ZRLE, rfb.Encoding.RAW])
    self.factory.clientConnectionMade(self)
vc.VNCDoToolClient.vncConnectionMade = made
c = api.connect(sys.argv[1], timeout=60)
c.captureScreen(sys.argv[2])
c.disconnect()
api.shutdown()
"#;

fn png_rgb(path: &Path) -> (u32, u32, Vec<u32>) {
    let f = vnc::decode_png(&std::fs::read(path).unwrap()).unwrap();
    let px = f.pixels.iter().map(|p| p & 0xff_ffff).collect();
    (f.width, f.height, px)
}

#[test]
fn syslinux_screen_controlvm_screenshot_equals_real_vnc_clients() {
    let test = "syslinux_screen_controlvm_screenshot_equals_real_vnc_clients";
    let kit = std::env::var_os("NOVABOX_KIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("kit-cache"));
    if !kit.join("kit-ahci.vbox").is_file() || !kit.join("boot-disk.vdi").is_file() {
        eprintln!("SKIPPED (no guest kit; cargo xtask kit): {test}");
        return;
    }
    if vncdo::vncdo().is_none() {
        eprintln!("SKIPPED (no vncdotool; pip install vncdotool): {test}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let vm = t.path().join("vm");
    std::fs::create_dir_all(&vm).unwrap();
    // A private copy: the run lock, the log and the disk stay out of the kit. Every medium
    // the .vbox names (the boot disk, the kit's ISO in the DVD drive) comes along.
    let settings = std::fs::read_to_string(kit.join("kit-ahci.vbox")).unwrap();
    std::fs::write(vm.join("kit-ahci.vbox"), &settings).unwrap();
    for part in settings.split("location=\"").skip(1) {
        let name = part.split('"').next().unwrap_or_default();
        if kit.join(name).is_file() && !name.contains('/') {
            std::fs::copy(kit.join(name), vm.join(name)).unwrap();
        }
    }
    let vbox = vm.join("kit-ahci.vbox");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = novabox(&home)
        .arg("run")
        .arg(&vbox)
        .args(["--engine", "interpreter", "--vnc"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    let socket = glue::control::socket_path(&vm);
    let text = |timeout| {
        glue::control::request(&socket, &["screentext"], timeout)
            .ok()
            .and_then(Result::ok)
    };
    // SYSLINUX's last line before the kernel takes over (it prints to serial only).
    let deadline = Instant::now() + Duration::from_secs(400);
    let mut screen = None;
    while Instant::now() < deadline {
        if let Some(t) = text(Duration::from_secs(30)) {
            if t.contains("Probing EDD (edd=off to disable)... ok") {
                screen = Some(t);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let run = |c: &mut Command| {
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut result = Err("the SYSLINUX screen never appeared".to_string());
    if screen.is_some() {
        // The screen is still while the kernel decompresses; a picture taken before and
        // after the VNC captures tells that it was.
        for attempt in 0..3 {
            let shot = |n: &str| t.path().join(format!("{n}{attempt}.png"));
            let (a, raw, zrle, b) = (shot("a"), shot("raw"), shot("zrle"), shot("b"));
            let ok_a = run(novabox(&home)
                .args(["controlvm"])
                .arg(&vbox)
                .arg("screenshotpng")
                .arg(&a));
            let ok_raw = run(vncdo::vncdo()
                .unwrap()
                .args(["-s", &format!("127.0.0.1::{port}"), "capture"])
                .arg(&raw));
            let ok_zrle = run(Command::new("python3")
                .args(["-c", VNCDO_ZRLE, &format!("127.0.0.1::{port}")])
                .arg(&zrle));
            let ok_b = run(novabox(&home)
                .args(["controlvm"])
                .arg(&vbox)
                .arg("screenshotpng")
                .arg(&b));
            for (what, (ok, err)) in [
                ("screenshotpng", ok_a),
                ("vncdo capture", ok_raw),
                ("vncdotool ZRLE", ok_zrle),
                ("screenshotpng", ok_b),
            ] {
                assert!(ok, "{what} failed: {err}");
            }
            let (pa, pb) = (png_rgb(&a), png_rgb(&b));
            if pa != pb {
                eprintln!("{test}: the screen changed during attempt {attempt}; again");
                continue;
            }
            result = Ok((a.clone(), pa, png_rgb(&raw), png_rgb(&zrle)));
            break;
        }
    }
    let final_text = text(Duration::from_secs(30));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let (png_path, shot, raw, zrle) =
        result.unwrap_or_else(|e| panic!("{e}; novabox said:\n{}", log.lock().unwrap().join("\n")));
    let screen = screen.unwrap();
    eprintln!("{test}: screen text:\n{screen}");
    let rows: Vec<&str> = screen.lines().collect();
    assert!(
        rows[0].starts_with("SeaBIOS (version"),
        "SeaBIOS banner: {rows:?}"
    );
    assert!(rows.iter().any(|r| r.starts_with("SYSLINUX ")), "{rows:?}");
    assert!(
        rows.iter().any(|r| r.contains("Loading /vmlinuz... ok")),
        "{rows:?}"
    );
    assert_eq!((shot.0, shot.1), (720, 400), "80x25 text in 9x16 cells");
    assert!(
        raw == shot,
        "vncdo's Raw capture differs from screenshotpng"
    );
    assert!(
        zrle == shot,
        "vncdotool's ZRLE capture differs from screenshotpng"
    );
    assert!(
        final_text.is_some_and(|t| t == screen),
        "the text did not change meanwhile"
    );
    assert!(status.success(), "power-off on SIGTERM exits 0: {status}");

    let golden = golden_dir().join("syslinux_loaded.png");
    let golden_text = golden_dir().join("syslinux_loaded.txt");
    if std::env::var_os("DISPLAY_GOLDEN_UPDATE").is_some() {
        std::fs::copy(&png_path, &golden).unwrap();
        std::fs::write(&golden_text, screen.clone() + "\n").unwrap();
        eprintln!("{test}: golden written to {}", golden.display());
        return;
    }
    let want_text = std::fs::read_to_string(&golden_text).expect("golden text");
    if want_text.trim_end() != screen.trim_end() {
        eprintln!("SKIPPED (golden made with another SeaBIOS/SYSLINUX) golden part of {test}");
        return;
    }
    assert!(
        png_rgb(&golden) == shot,
        "screenshot differs from {}",
        golden.display()
    );
}
