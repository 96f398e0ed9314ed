//! The server's encodings as clients decode them: ZRLE and CopyRect (a scroll of a
//! text-like screen) through this crate's decoder, and through a real client, vncdotool
//! (PyPI), whose picture must equal the server's pixel for pixel. Loud skip without
//! vncdotool (`pip install vncdotool`).

mod common;

use common::{full, server, text_screen, H, W};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vnc::client::{Connection, Message};
use vnc::proto::encoding;

/// Read updates until the client's picture equals `want`; the encodings seen and bytes.
fn until_equal(c: &mut Connection, want: &[u32]) -> Vec<i32> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while c.decoder.pixels != want {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "picture never matched"
        );
        if let Message::Update(rects) = c.message().unwrap() {
            seen.extend(rects.iter().map(|r| r.encoding));
            if c.decoder.pixels != want {
                c.request(true).unwrap();
            }
        }
    }
    seen
}

#[test]
fn zrle_and_copyrect_decode_to_the_servers_picture() {
    let (screen, server) = server();
    let mut c = Connection::connect(
        server.local_addr(),
        &[encoding::COPY_RECT, encoding::ZRLE, encoding::RAW],
    )
    .unwrap();
    c.request(false).unwrap();
    let seen = until_equal(&mut c, &text_screen(0));
    assert!(seen.contains(&encoding::ZRLE), "{seen:?}");
    // Scroll by one line, as vgacon or fbcon does: a CopyRect and the new line only.
    c.request(true).unwrap();
    screen.update(W, H, &text_screen(1), &[full()]);
    let seen = until_equal(&mut c, &text_screen(1));
    assert_eq!(seen[0], encoding::COPY_RECT, "{seen:?}");
    assert_eq!(c.decoder.pixels, screen.snapshot().pixels);
}

#[test]
fn zrle_is_much_smaller_than_zlib_over_raw_on_text() {
    let (_screen, server) = server();
    let mut sizes = Vec::new();
    for enc in [encoding::ZLIB, encoding::ZRLE] {
        let c = Connection::connect(server.local_addr(), &[enc]).unwrap();
        let mut counted = Counting {
            inner: c.stream.try_clone().unwrap(),
            n: 0,
        };
        let mut c = c;
        c.request(false).unwrap();
        let mut d = vnc::client::Decoder::new(W, H);
        while d.pixels != text_screen(0) {
            d.message(&mut counted).unwrap();
        }
        sizes.push(counted.n);
    }
    eprintln!(
        "text screen 720x400: zlib {} bytes, ZRLE {} bytes",
        sizes[0], sizes[1]
    );
    assert!(sizes[1] * 2 < sizes[0], "{sizes:?}");
}

struct Counting<R> {
    inner: R,
    n: usize,
}
impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.n += n;
        Ok(n)
    }
}

/// vncdotool with ZRLE and CopyRect (its client advertises Raw only; the script swaps
/// in this list), a full capture, then an incremental one after a scroll. vncdotool decodes
/// ZRLE itself; for CopyRect it parses the rectangle and calls a hook the script fills.
const VNCDO_SCRIPT: &str = r#"
import sys, json
from vncdotool import api, rfb, client as vc
encs = [rfb.Encoding.ZRLE, rfb.Encoding.COPY_RECTANGLE, rfb.Encoding.RAW,
        rfb.Encoding.PSEUDO_DESKTOP_SIZE]
def made(self):
    self.setImageMode()
    self.setEncodings(encs)
    self.factory.clientConnectionMade(self)
vc.VNCDoToolClient.vncConnectionMade = made
# vncdotool parses CopyRect but leaves applying it to a subclass (RFBClient.copyRectangle
# is a no-op): apply it on its PIL picture.
def copy_rect(self, sx, sy, x, y, w, h):
    self.screen.paste(self.screen.crop((sx, sy, sx + w, sy + h)), (x, y))
vc.VNCDoToolClient.copyRectangle = copy_rect
counts = {}
for name in ["_handleDecodeCopyrect", "_handleDecodeZRLE", "_handleDecodeRAW"]:
    f = getattr(rfb.RFBClient, name)
    def wrap(self, *a, _f=f, _n=name, **k):
        counts[_n] = counts.get(_n, 0) + 1
        return _f(self, *a, **k)
    setattr(rfb.RFBClient, name, wrap)
c = api.connect(sys.argv[1], timeout=30)
c.captureScreen(sys.argv[2])
print("FIRST " + json.dumps(counts), flush=True)
sys.stdin.readline()
counts.clear()
c.captureScreen(sys.argv[3], incremental=True)
print("SECOND " + json.dumps(counts), flush=True)
c.disconnect()
api.shutdown()
"#;

fn vncdotool() -> bool {
    Command::new("python3")
        .args(["-c", "import vncdotool"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn vncdotool_decodes_zrle_and_copyrect() {
    let test = "vncdotool_decodes_zrle_and_copyrect";
    if !vncdotool() {
        eprintln!("SKIPPED (no vncdotool; pip install vncdotool): {test}");
        return;
    }
    let (screen, server) = server();
    let dir = std::env::temp_dir().join(format!("vnc-real-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("client.py");
    std::fs::write(&script, VNCDO_SCRIPT).unwrap();
    let (one, two) = (dir.join("one.png"), dir.join("two.png"));
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(format!("127.0.0.1::{}", server.local_addr().port()))
        .arg(&one)
        .arg(&two)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("FIRST"), "vncdotool: {line:?}");
    assert!(
        line.contains("ZRLE"),
        "the first picture came as ZRLE: {line}"
    );
    let first = vnc::decode_png(&std::fs::read(&one).unwrap()).unwrap();
    // Scroll two lines, then let the client ask.
    screen.update(W, H, &text_screen(2), &[full()]);
    writeln!(child.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let status = child.wait().unwrap();
    eprintln!("{test}: {}", line.trim());
    assert!(status.success(), "vncdotool failed");
    assert!(
        line.contains("Copyrect"),
        "the scroll came as CopyRect: {line}"
    );
    let second = vnc::decode_png(&std::fs::read(&two).unwrap()).unwrap();
    let rgb = |f: &vnc::Frame| f.pixels.iter().map(|p| p & 0xffffff).collect::<Vec<_>>();
    assert_eq!((first.width, first.height), (W, H));
    assert!(rgb(&first) == text_screen(0), "first picture differs");
    assert!(
        rgb(&second) == text_screen(2),
        "picture after the scroll differs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
