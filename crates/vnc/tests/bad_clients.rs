//! Misbehaving clients against a running server: each is dropped with a log line naming
//! it, while the producer (the VMM's display thread) never waits and a well-behaved client
//! keeps getting updates. Unknown encodings are not misbehaviour (RFC 6143 7.5.2: the
//! server ignores those it does not know) and must not cost the client its connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use vnc::client::{Connection, Message};
use vnc::proto::encoding;
use vnc::{Rect, Screen, ServerConfig};

/// Everything the server logs, for all tests of this binary.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(b.clone()))
            .finish();
        tracing::subscriber::set_global_default(sub).expect("one subscriber");
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Wait for a log line about `peer` containing `what`.
fn logged(peer: SocketAddr, what: &str, timeout: Duration) -> bool {
    let needle = format!("VNC client {peer}");
    let start = Instant::now();
    while start.elapsed() < timeout {
        let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
        if text
            .lines()
            .any(|l| l.contains(&needle) && l.contains(what))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

struct NoInput;
impl vnc::Input for NoInput {
    fn key(&self, _: u16, _: bool) {}
    fn pointer(&self, _: u32, _: u32, _: u8, _: u32, _: u32) {}
}

const W: u32 = 640;
const H: u32 = 480;

fn picture(seed: u32) -> Vec<u32> {
    (0..W * H)
        .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(seed) & 0xff_ffff)
        .collect()
}

fn server() -> (Arc<Screen>, vnc::Server) {
    log();
    let screen = Screen::new();
    // Same size as a new screen: say what changed.
    screen.update(
        W,
        H,
        &picture(0),
        &[Rect {
            x: 0,
            y: 0,
            w: W,
            h: H,
        }],
    );
    let server = vnc::start(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            password: None,
            name: "bad-clients".into(),
        },
        screen.clone(),
        Arc::new(NoInput),
    )
    .unwrap();
    (screen, server)
}

/// The handshake of RFB 3.8 without authentication; the socket after ServerInit.
fn handshake(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    s.write_all(&[1]).unwrap();
    let mut r = [0u8; 4];
    s.read_exact(&mut r).unwrap();
    s.write_all(&[1]).unwrap();
    let mut init = [0u8; 24];
    s.read_exact(&mut init).unwrap();
    let n = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
    let mut name = vec![0u8; n];
    s.read_exact(&mut name).unwrap();
    s
}

/// True when the server closes the connection within `timeout` (data before that is read
/// and thrown away).
fn closed_by_server(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    while start.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// A good client still gets the current picture.
fn good_client_sees(addr: SocketAddr, want: &[u32]) {
    let mut c = Connection::connect(addr, &[encoding::ZRLE, encoding::RAW]).unwrap();
    c.request(false).unwrap();
    let start = Instant::now();
    while c.decoder.pixels != want {
        assert!(start.elapsed() < Duration::from_secs(20), "no picture");
        if let Message::Update(_) = c.message().unwrap() {
            c.request(true).unwrap();
        }
    }
}

#[test]
fn malformed_and_oversized_messages_drop_the_client_with_a_log_line() {
    let (screen, server) = server();
    let addr = server.local_addr();
    let mut pf_bad_bpp = vec![0u8, 0, 0, 0, 24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0];
    pf_bad_bpp.extend_from_slice(&[0, 0, 0]);
    let mut pf_shift = vec![0u8, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 30, 8, 0];
    pf_shift.extend_from_slice(&[0, 0, 0]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown message type",
            vec![99, 1, 2, 3],
            "unknown message type 99",
        ),
        (
            "4 GiB of cut text",
            vec![6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            "cut text too large",
        ),
        (
            "65535 encodings",
            vec![2, 0, 0xff, 0xff],
            "encoding list too large",
        ),
        ("24 bits per pixel", pf_bad_bpp, "bits per pixel"),
        (
            "colour channel shifted out of the pixel",
            pf_shift,
            "outside the pixel",
        ),
        (
            "SetDesktopSize with no screens",
            vec![251, 0, 4, 0, 3, 0, 0, 0],
            "screen count",
        ),
        (
            "SetDesktopSize 0x0",
            {
                let mut m = vec![251, 0, 0, 0, 0, 0, 1, 0];
                m.extend_from_slice(&[0; 16]);
                m
            },
            "SetDesktopSize size",
        ),
        (
            "unknown QEMU message",
            vec![255, 9, 0, 0],
            "unknown QEMU message 9",
        ),
    ];
    for (what, bytes, reason) in cases {
        let mut s = handshake(addr);
        let me = s.local_addr().unwrap();
        s.write_all(&bytes).unwrap();
        assert!(
            closed_by_server(&mut s, Duration::from_secs(10)),
            "{what}: not dropped"
        );
        assert!(
            logged(me, reason, Duration::from_secs(5)),
            "{what}: no log line with {reason:?} for {me}:\n{}",
            String::from_utf8_lossy(&log().lock().unwrap())
        );
    }
    // Handshake-level misbehaviour.
    let mut s = TcpStream::connect(addr).unwrap();
    let me = s.local_addr().unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).unwrap();
    s.write_all(b"HELLO WORLD!").unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(10)));
    assert!(logged(me, "not an RFB client", Duration::from_secs(5)));
    let mut s = TcpStream::connect(addr).unwrap();
    let me = s.local_addr().unwrap();
    s.read_exact(&mut v).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    s.write_all(&[2]).unwrap(); // VNC auth, not offered
    assert!(closed_by_server(&mut s, Duration::from_secs(10)));
    assert!(logged(me, "security type", Duration::from_secs(5)));
    // The server is none the worse.
    screen.update(
        W,
        H,
        &picture(7),
        &[Rect {
            x: 0,
            y: 0,
            w: W,
            h: H,
        }],
    );
    good_client_sees(addr, &picture(7));
}

#[test]
fn unknown_encodings_are_ignored_not_fatal() {
    let (_screen, server) = server();
    let addr = server.local_addr();
    for list in [
        vec![
            12345,
            -999,
            i32::MAX,
            i32::MIN,
            encoding::TIGHT,
            encoding::RAW,
        ],
        vec![42],
    ] {
        let mut c = Connection::connect(addr, &list).unwrap();
        c.request(false).unwrap();
        let start = Instant::now();
        while c.decoder.pixels != picture(0) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{list:?}: no picture"
            );
            let m = c.message().unwrap_or_else(|e| panic!("{list:?}: {e}"));
            match m {
                Message::Update(rects) => {
                    assert!(
                        rects.iter().all(|r| r.encoding == encoding::RAW),
                        "{list:?}: {rects:?}"
                    );
                    c.request(true).unwrap();
                }
                Message::Other(_) => {}
            }
        }
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_producer_never_waits() {
    let (screen, server) = server();
    let addr = server.local_addr();
    // A client that completes the handshake and then goes silent for good holds no more
    // than its own threads; one that never finishes the handshake is dropped too (after
    // the handshake timeout, tested in the server's unit of time, not here).
    let mut lazy = handshake(addr);
    let me = lazy.local_addr().unwrap();
    // Small buffers so the server's writes block soon.
    let mut seed = 1;
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut dropped = false;
    while start.elapsed() < vnc::server::WRITE_TIMEOUT * 4 {
        // Ask for everything, read nothing.
        if lazy
            .write_all(&[3, 0, 0, 0, 0, 0, 0x02, 0x80, 0x01, 0xe0])
            .is_err()
        {
            dropped = true;
            break;
        }
        let t = Instant::now();
        screen.update(
            W,
            H,
            &picture(seed),
            &[Rect {
                x: 0,
                y: 0,
                w: W,
                h: H,
            }],
        );
        slowest = slowest.max(t.elapsed());
        seed += 1;
        if logged(me, "stopped reading", Duration::from_millis(100)) {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the non-reading client was not dropped");
    assert!(
        logged(me, "the client stopped reading", Duration::from_secs(15)),
        "no log line for {me}"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "the producer waited {slowest:?} for a client"
    );
    // Others are served as before.
    good_client_sees(addr, &picture(seed - 1));
}
