//! The browser console decodes CopyRect: headless Chromium (playwright-core) shows a text
//! screen, the screen scrolls by two lines, and the canvas then equals the server's
//! picture pixel for pixel, with at least one CopyRect applied.
//!
//! Needs node, Debian's chromium and `npm ci --prefix crates/vnc/web`; otherwise a loud
//! `SKIPPED (...)`.

mod common;

use common::{full, server, text_screen, H, W};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn browser_console_applies_copyrect_scrolls() {
    let test = "browser_console_applies_copyrect_scrolls";
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !PathBuf::from(&chromium).is_file() {
        eprintln!("SKIPPED (no node or no chromium at {chromium}): {test}");
        return;
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        eprintln!("SKIPPED (no playwright-core; npm ci --prefix crates/vnc/web): {test}");
        return;
    }
    let (screen, server) = server();
    let dir = std::env::temp_dir().join(format!("vnc-browser-copyrect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (one, two) = (dir.join("one.png"), dir.join("two.png"));
    let mut child = Command::new("node")
        .arg(web.join("test/scroll_check.mjs"))
        .arg(format!("http://{}/", server.local_addr()))
        .arg(&one)
        .arg(&two)
        .env("CHROMIUM", &chromium)
        .current_dir(&web)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "the page showed no picture");
    screen.update(W, H, &text_screen(2), &[full()]);
    writeln!(child.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let status = child.wait().unwrap();
    eprintln!("{test}: {}", line.trim());
    assert!(status.success(), "the browser check failed: {line}");
    assert!(line.contains("\"copies\":"), "{line}");
    let rgb = |p: &PathBuf| {
        let f = vnc::decode_png(&std::fs::read(p).unwrap()).unwrap();
        assert_eq!((f.width, f.height), (W, H));
        f.pixels.iter().map(|p| p & 0xff_ffff).collect::<Vec<_>>()
    };
    assert!(rgb(&one) == text_screen(0), "first picture differs");
    assert!(
        rgb(&two) == text_screen(2),
        "the picture after the CopyRect scroll differs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
