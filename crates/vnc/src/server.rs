//! The listener and the client sessions. Each connection gets a thread that does the
//! handshake and then reads the client's messages; a second thread per client writes
//! framebuffer updates when the client has asked for one and the screen has damage. The
//! VMM's threads never wait for a client: they only mark damage on the [`Screen`].
//!
//! The same port serves RFB and HTTP: RFB clients wait for the server to speak first, a
//! browser sends "GET " at once, so a connection that sends something within a short
//! moment is HTTP (the console page, or RFB over a WebSocket), as libvncserver does.
//!
//! Misbehaving clients are dropped with a log line: malformed or unknown messages, sizes
//! past the limits, a handshake that stalls, a client that stops reading (writes time out).

use crate::auth;
use crate::encode::{self, Encoder, PixelEncoding};
use crate::keymap;
use crate::proto::{encoding, parse_client_message, ClientMessage, PixelFormat};
use crate::screen::{Move, Rect, Screen};
use crate::shadow::Shadow;
use crate::ws;
use parking_lot::Mutex;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most clients at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may take to accept a write before it is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each handshake step may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we wait for a browser's first bytes before taking the connection as RFB.
const SNIFF_TIMEOUT: Duration = Duration::from_millis(250);
/// Most scrolls found against a client's picture in one update (besides the screen's).
const MAX_EXTRA_MOVES: usize = 2;
/// Shortest time between two updates to one client (about 60 per second).
const MIN_UPDATE_INTERVAL: Duration = Duration::from_millis(16);

/// What the guest gets from the clients.
pub trait Input: Send + Sync {
    /// A key went down or up: XT (set 1) make code, 0xE0xx for extended keys.
    fn key(&self, xt: u16, down: bool);
    /// The pointer is at (x, y) of a `width` x `height` picture with `buttons` held
    /// (bit 0 left, 1 middle, 2 right, 3 wheel up, 4 wheel down: RFB's mask).
    fn pointer(&self, x: u32, y: u32, buttons: u8, width: u32, height: u32);
    /// A client asks for another screen size; true when the guest was asked to follow.
    fn resize(&self, _width: u32, _height: u32) -> bool {
        false
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// VNC password (None: no authentication).
    pub password: Option<String>,
    /// Desktop name shown by clients.
    pub name: String,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the port failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Spawning the thread failed.
    #[error("cannot start the VNC thread: {0}")]
    Thread(io::Error),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Start listening; clients are served on their own threads.
pub fn start(
    cfg: ServerConfig,
    screen: Arc<Screen>,
    input: Arc<dyn Input>,
) -> Result<Server, ServerError> {
    let listener = TcpListener::bind(cfg.listen).map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let cfg = Arc::new(cfg);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("vnc-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = conn else { continue };
                let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
                    tracing::warn!("VNC: refusing {peer}: {MAX_CLIENTS} clients already");
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (cfg, screen, input, active) =
                    (cfg.clone(), screen.clone(), input.clone(), active.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("vnc-client".into())
                        .spawn(move || {
                            if let Err(e) = connection(s, &peer, &cfg, &screen, &*input) {
                                tracing::info!("VNC client {peer}: {e}; connection closed");
                            }
                            active.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    tracing::warn!("VNC: cannot start a client thread");
                }
            }
        })
        .map_err(ServerError::Thread)?;
    tracing::info!("VNC server listening on {addr}");
    Ok(Server { addr, stop })
}

fn connection(
    s: TcpStream,
    peer: &str,
    cfg: &ServerConfig,
    screen: &Arc<Screen>,
    input: &dyn Input,
) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    s.set_read_timeout(Some(SNIFF_TIMEOUT))?;
    let mut first = [0u8; 4];
    let http = matches!(s.peek(&mut first), Ok(4) if &first == b"GET ");
    let closer = s.try_clone()?;
    if http {
        match ws::serve(s)? {
            ws::HttpOutcome::WebSocket(r, w) => {
                tracing::info!("VNC client {peer} (browser) connected");
                rfb(r, w, closer, peer, cfg, screen, input)
            }
            ws::HttpOutcome::Done => Ok(()),
        }
    } else {
        let r = s.try_clone()?;
        tracing::info!("VNC client {peer} connected");
        rfb(r, s, closer, peer, cfg, screen, input)
    }
}

/// What the reader tells the writer about the client.
#[derive(Debug)]
struct Session {
    pf: PixelFormat,
    pixels: PixelEncoding,
    cursor: bool,
    desktop_size: bool,
    ext_desktop_size: bool,
    qemu_key: bool,
    /// A QEMU extended-key acknowledgement is due.
    ack_qemu_key: bool,
    /// A reply to SetDesktopSize is due: status.
    resize_reply: Option<u32>,
    /// Tell the client (once) that it may ask for sizes: an ExtendedDesktopSize rectangle.
    announce_size: bool,
}

/// Handshake reads; the socket's read timeout bounds them.
fn read_exact_timeout(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf)
}

#[allow(clippy::too_many_arguments)]
fn rfb<R: Read + Send + 'static, W: Write + Send + 'static>(
    mut r: R,
    mut w: W,
    closer: TcpStream,
    peer: &str,
    cfg: &ServerConfig,
    screen: &Arc<Screen>,
    input: &dyn Input,
) -> io::Result<()> {
    closer.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    // Version.
    w.write_all(b"RFB 003.008\n")?;
    let mut v = [0u8; 12];
    read_exact_timeout(&mut r, &mut v)?;
    if &v[..4] != b"RFB " || v[7] != b'.' || v[11] != b'\n' {
        return Err(bad(format!(
            "not an RFB client ({:?})",
            String::from_utf8_lossy(&v)
        )));
    }
    let minor: u32 = std::str::from_utf8(&v[8..11])
        .ok()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| bad("bad version".into()))?;
    let minor = match minor {
        0..=6 => 3,
        7 => 7,
        _ => 8,
    };
    // Security.
    let sec: u8 = if cfg.password.is_some() { 2 } else { 1 };
    if minor == 3 {
        w.write_all(&u32::from(sec).to_be_bytes())?;
    } else {
        w.write_all(&[1, sec])?;
        let mut chosen = [0u8];
        read_exact_timeout(&mut r, &mut chosen)?;
        if chosen[0] != sec {
            if minor == 8 {
                fail(&mut w, "security type not offered")?;
            }
            return Err(bad(format!("client chose security type {}", chosen[0])));
        }
    }
    if let Some(pw) = &cfg.password {
        let c = auth::challenge();
        w.write_all(&c)?;
        let mut a = [0u8; 16];
        read_exact_timeout(&mut r, &mut a)?;
        if !auth::verify(pw, &c, &a) {
            // Slow down password guessing.
            std::thread::sleep(Duration::from_secs(1));
            if minor == 8 {
                fail(&mut w, "authentication failed")?;
            } else {
                w.write_all(&1u32.to_be_bytes())?;
            }
            tracing::warn!("VNC client {peer}: wrong password");
            return Err(bad("authentication failed".into()));
        }
        w.write_all(&0u32.to_be_bytes())?;
    } else if minor == 8 {
        w.write_all(&0u32.to_be_bytes())?;
    }
    // ClientInit (shared flag: every client shares).
    let mut shared = [0u8];
    read_exact_timeout(&mut r, &mut shared)?;
    let id = screen.register();
    let (width, height) = screen.size();
    let mut init = Vec::new();
    init.extend_from_slice(&(width as u16).to_be_bytes());
    init.extend_from_slice(&(height as u16).to_be_bytes());
    init.extend_from_slice(&PixelFormat::SERVER.to_bytes());
    init.extend_from_slice(&(cfg.name.len() as u32).to_be_bytes());
    init.extend_from_slice(cfg.name.as_bytes());
    if let Err(e) = w.write_all(&init) {
        screen.unregister(id);
        return Err(e);
    }
    closer.set_read_timeout(None)?;

    let session = Arc::new(Mutex::new(Session {
        pf: PixelFormat::SERVER,
        pixels: PixelEncoding::Raw,
        cursor: false,
        desktop_size: false,
        ext_desktop_size: false,
        qemu_key: false,
        ack_qemu_key: false,
        resize_reply: None,
        announce_size: false,
    }));
    let writer = {
        let (screen, session, peer, closer) = (
            screen.clone(),
            session.clone(),
            peer.to_string(),
            closer.try_clone()?,
        );
        std::thread::Builder::new()
            .name("vnc-writer".into())
            .spawn(move || {
                if let Err(e) = write_loop(&mut w, id, &screen, &session, (width, height)) {
                    tracing::warn!("VNC client {peer}: {e}; dropping the client");
                }
                let _ = closer.shutdown(std::net::Shutdown::Both);
            })?
    };
    let result = read_loop(&mut r, id, screen, &session, input);
    screen.with_client(id, |c| c.closed = true);
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    screen.unregister(id);
    tracing::info!("VNC client {peer} disconnected");
    result
}

fn fail(w: &mut impl Write, reason: &str) -> io::Result<()> {
    w.write_all(&1u32.to_be_bytes())?;
    w.write_all(&(reason.len() as u32).to_be_bytes())?;
    w.write_all(reason.as_bytes())
}

fn read_loop(
    r: &mut impl Read,
    id: u64,
    screen: &Screen,
    session: &Mutex<Session>,
    input: &dyn Input,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut shift_held = false;
    loop {
        loop {
            let msg = match parse_client_message(&buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("VNC: protocol error from a client: {e}; dropping it");
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                }
            };
            buf.drain(..msg.1);
            handle(msg.0, id, screen, session, input, &mut shift_held);
        }
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn handle(
    msg: ClientMessage,
    id: u64,
    screen: &Screen,
    session: &Mutex<Session>,
    input: &dyn Input,
    shift_held: &mut bool,
) {
    match msg {
        ClientMessage::SetPixelFormat(pf) => session.lock().pf = pf,
        ClientMessage::SetEncodings(list) => {
            let mut s = session.lock();
            // The first pixel encoding of the client's list that we have; unknown ones
            // are skipped, as RFC 6143 says.
            s.pixels = list
                .iter()
                .find_map(|&e| match e {
                    encoding::RAW => Some(PixelEncoding::Raw),
                    encoding::ZLIB => Some(PixelEncoding::Zlib),
                    encoding::ZRLE => Some(PixelEncoding::Zrle),
                    _ => None,
                })
                .unwrap_or(PixelEncoding::Raw);
            let copy_rect = list.contains(&encoding::COPY_RECT);
            s.cursor = list.contains(&encoding::CURSOR);
            s.desktop_size = list.contains(&encoding::DESKTOP_SIZE);
            let ext = list.contains(&encoding::EXT_DESKTOP_SIZE);
            if ext && !s.ext_desktop_size {
                s.announce_size = true;
            }
            s.ext_desktop_size = ext;
            let q = list.contains(&encoding::QEMU_EXT_KEY);
            if q && !s.qemu_key {
                s.ack_qemu_key = true;
            }
            s.qemu_key = q;
            drop(s);
            screen.with_client(id, |c| {
                c.cursor_changed = true;
                c.copy_rect = copy_rect;
                if !copy_rect {
                    // A pending move becomes plain damage.
                    if let Some(m) = c.copy.take() {
                        c.add(m.dst);
                    }
                }
            });
        }
        ClientMessage::UpdateRequest {
            incremental,
            x,
            y,
            w,
            h,
        } => screen.with_client(id, |c| {
            c.requested = true;
            if !incremental {
                c.force = true;
                c.add(Rect {
                    x: x.into(),
                    y: y.into(),
                    w: w.into(),
                    h: h.into(),
                });
            }
        }),
        ClientMessage::Key { down, keysym } => {
            let Some((code, needs_shift)) = keymap::keysym_to_xt(keysym) else {
                tracing::debug!("VNC: no key for keysym {keysym:#x}");
                return;
            };
            if code == keymap::LSHIFT || code == 0x36 {
                *shift_held = down;
            }
            // A shifted character from a client that did not press Shift itself.
            let wrap = needs_shift && !*shift_held && down;
            if wrap {
                input.key(keymap::LSHIFT, true);
            }
            input.key(code, down);
            if wrap {
                input.key(keymap::LSHIFT, false);
            }
        }
        ClientMessage::QemuKey {
            down,
            keysym,
            keycode,
        } => match keymap::qemu_keycode_to_xt(keycode) {
            Some(code) => input.key(code, down),
            None => {
                if let Some((code, _)) = keymap::keysym_to_xt(keysym) {
                    input.key(code, down);
                }
            }
        },
        ClientMessage::Pointer { buttons, x, y } => {
            let (w, h) = screen.size();
            input.pointer(
                u32::from(x).min(w.saturating_sub(1)),
                u32::from(y).min(h.saturating_sub(1)),
                buttons,
                w,
                h,
            );
        }
        ClientMessage::CutText(t) => {
            tracing::debug!("VNC: ignoring {} bytes of cut text", t.len());
        }
        ClientMessage::SetDesktopSize { width, height } => {
            let ok = input.resize(width.into(), height.into());
            session.lock().resize_reply = Some(if ok { 0 } else { 1 });
            screen.with_client(id, |_| {});
        }
    }
}

fn write_loop(
    w: &mut impl Write,
    id: u64,
    screen: &Screen,
    session: &Mutex<Session>,
    mut known: (u32, u32),
) -> io::Result<()> {
    let mut enc = Encoder::new();
    let mut shadow = Shadow::new();
    let mut last = Instant::now() - MIN_UPDATE_INTERVAL;
    loop {
        let since = last.elapsed();
        if since < MIN_UPDATE_INTERVAL {
            std::thread::sleep(MIN_UPDATE_INTERVAL - since);
        }
        // Wait for a request and something to send.
        let mut g = screen.inner.lock();
        let (damage, copies, resized, cursor, width, height) = loop {
            let acks = {
                let s = session.lock();
                s.ack_qemu_key || s.resize_reply.is_some() || s.announce_size
            };
            let inner = &mut *g;
            let Some(c) = inner.clients.get_mut(&id) else {
                return Ok(());
            };
            if c.closed {
                return Ok(());
            }
            if c.requested
                && (!c.damage.is_empty()
                    || c.copy.is_some()
                    || c.resized
                    || c.cursor_changed
                    || acks)
            {
                let mut copy = c.copy.take();
                let mut damage = std::mem::take(&mut c.damage);
                let resized = std::mem::take(&mut c.resized);
                let force = std::mem::take(&mut c.force) || resized;
                // A move the client's picture cannot hold is sent as pixels.
                if let Some(m) = copy {
                    let fits = |r: Rect| r.clip(known.0, known.1) == Some(r);
                    if resized || !fits(m.src()) || !fits(m.dst) {
                        damage.push(m.dst);
                        copy = None;
                    }
                }
                let cursor_changed = std::mem::take(&mut c.cursor_changed);
                let (width, height) = (inner.width, inner.height);
                let mut copies: Vec<Move> = Vec::new();
                if let Some(m) = copy {
                    shadow.apply_move(m);
                    copies.push(m);
                }
                // Scrolls the screen's move did not cover (more than one happened since
                // the last update), found against the client's picture.
                if c.copy_rect && !force && (width, height) == known {
                    for _ in 0..MAX_EXTRA_MOVES {
                        let Some(m) = shadow.find_move(&inner.pixels, &inner.row_hash, &damage)
                        else {
                            break;
                        };
                        shadow.apply_move(m);
                        copies.push(m);
                    }
                }
                // Only what differs from the client's picture (the shadow takes it).
                let rects = shadow.changed(width, height, &inner.pixels, &damage, force);
                if rects.is_empty() && copies.is_empty() && !resized && !cursor_changed && !acks {
                    screen.cond.wait_for(&mut g, Duration::from_secs(1));
                    continue;
                }
                c.requested = false;
                let cursor = if cursor_changed {
                    Some(inner.cursor.clone())
                } else {
                    None
                };
                break (rects, copies, resized, cursor, width, height);
            }
            screen.cond.wait_for(&mut g, Duration::from_secs(1));
        };
        drop(g);
        let mut s = session.lock();
        enc.pf = s.pf;
        enc.kind = s.pixels;
        // The message header, its rectangle count filled in at the end.
        let mut body = vec![0u8; 4];
        let mut n = 0u16;
        if s.ack_qemu_key && s.qemu_key {
            encode::rect_header(&mut body, 0, 0, 0, 0, encoding::QEMU_EXT_KEY);
            n += 1;
        }
        s.ack_qemu_key = false;
        if std::mem::take(&mut s.announce_size) && s.ext_desktop_size {
            encode::ext_desktop_size(&mut body, 0, 0, width, height);
            n += 1;
            known = (width, height);
        }
        let size_changed = resized || (width, height) != known;
        if let Some(status) = s.resize_reply.take() {
            if s.ext_desktop_size {
                encode::ext_desktop_size(&mut body, 1, status, width, height);
                n += 1;
                known = (width, height);
            }
        }
        if size_changed && (width, height) != known {
            if s.ext_desktop_size {
                encode::ext_desktop_size(&mut body, 0, 0, width, height);
                n += 1;
                known = (width, height);
            } else if s.desktop_size {
                encode::rect_header(&mut body, 0, 0, width, height, encoding::DESKTOP_SIZE);
                n += 1;
                known = (width, height);
            }
        }
        if let Some(Some(c)) = &cursor {
            if s.cursor
                && c.width > 0
                && c.height > 0
                && c.pixels.len() == (c.width * c.height) as usize
            {
                enc.cursor(&mut body, c);
                n += 1;
            }
        }
        drop(s);
        // The moves first, in order: each reads the client's picture as the one before
        // left it, before this update's pixels.
        for m in copies {
            enc.copy_rect(&mut body, m.dst, m.dst.x, m.src_y);
            n = n.saturating_add(1);
        }
        for r in &damage {
            // A client that cannot follow a resize keeps its old size: clip to it.
            let Some(c) = r.clip(known.0, known.1) else {
                continue;
            };
            // Straight from the shadow, which holds these pixels now.
            let at = (c.y * width + c.x) as usize;
            enc.pixels_strided(&mut body, c, &shadow.pixels()[at..], width as usize);
            n = n.saturating_add(1);
        }
        body[2..4].copy_from_slice(&n.to_be_bytes());
        w.write_all(&body).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading (write timed out)",
                )
            } else {
                e
            }
        })?;
        w.flush()?;
        last = Instant::now();
    }
}
