//! Host ends of the serial ports: the terminal, a file, a Unix socket (VirtualBox's "host
//! pipe"), a TCP server or client, or nothing. Output never blocks a vCPU on a slow peer
//! for long: socket writes go to whichever client is connected, and are dropped when none
//! is (as VirtualBox does).

use devices::uart::Serial;
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

/// Where a serial port's host side goes.
pub enum Console {
    /// Guest output to stdout, stdin to the guest.
    Stdio,
    /// Guest output into this writer; no input.
    Writer(Box<dyn Write + Send>),
    /// Output appended to a file (VirtualBox RawFile); no input.
    File(PathBuf),
    /// A Unix socket: listen at `path` when `server`, else connect to it.
    UnixSocket {
        /// Socket path.
        path: PathBuf,
        /// Create and listen.
        server: bool,
    },
    /// Listen for one TCP client at a time on `host:port` (or a bare port: loopback).
    TcpServer(String),
    /// Connect to a TCP server at `host:port`.
    TcpClient(String),
    /// Nothing connected.
    None,
}

/// Errors setting up a serial backend.
#[derive(Debug, thiserror::Error)]
#[error("serial port {what}: {source}")]
pub struct SerialError {
    what: String,
    #[source]
    source: std::io::Error,
}

/// The connection socket-backed ports write to.
pub(crate) type Peer = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

/// Writes to the connected peer, if any.
struct PeerSink(Peer);

impl Write for PeerSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut p = self.0.lock();
        if let Some(w) = p.as_mut() {
            if w.write_all(buf).is_err() {
                *p = None; // the peer went away; drop output until the next one
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.0.lock().as_mut() {
            let _ = w.flush();
        }
        Ok(())
    }
}

/// What a backend needs after the UART exists: a thread feeding its input.
pub(crate) enum Input {
    None,
    Stdin,
    Unix(UnixListener),
    UnixClient(UnixStream),
    Tcp(TcpListener),
    TcpClient(TcpStream),
}

/// Open the host side; returns the output sink, the input source and the peer slot
/// that the input thread fills when a client connects.
pub(crate) fn open(c: Console) -> Result<(Box<dyn Write + Send>, Input, Peer), SerialError> {
    let peer: Peer = Arc::new(Mutex::new(None));
    let err = |what: String| move |source| SerialError { what, source };
    Ok(match c {
        Console::Stdio => (Box::new(std::io::stdout()), Input::Stdin, peer),
        Console::Writer(w) => (w, Input::None, peer),
        Console::None => (Box::new(std::io::sink()), Input::None, peer),
        Console::File(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(err(format!("file {}", path.display())))?;
            (Box::new(f), Input::None, peer)
        }
        Console::UnixSocket { path, server: true } => {
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).map_err(err(format!("socket {}", path.display())))?;
            (Box::new(PeerSink(peer.clone())), Input::Unix(l), peer)
        }
        Console::UnixSocket {
            path,
            server: false,
        } => {
            let s =
                UnixStream::connect(&path).map_err(err(format!("socket {}", path.display())))?;
            *peer.lock() = Some(Box::new(s.try_clone().map_err(err("socket".into()))?));
            (Box::new(PeerSink(peer.clone())), Input::UnixClient(s), peer)
        }
        Console::TcpServer(addr) => {
            let addr = if addr.contains(':') {
                addr
            } else {
                format!("127.0.0.1:{addr}")
            };
            let l = TcpListener::bind(&addr).map_err(err(format!("TCP {addr}")))?;
            (Box::new(PeerSink(peer.clone())), Input::Tcp(l), peer)
        }
        Console::TcpClient(addr) => {
            let s = TcpStream::connect(&addr).map_err(err(format!("TCP {addr}")))?;
            *peer.lock() = Some(Box::new(s.try_clone().map_err(err("TCP".into()))?));
            (Box::new(PeerSink(peer.clone())), Input::TcpClient(s), peer)
        }
    })
}

/// Feed `r` into the UART as fast as its FIFO takes it, until EOF or `stop()`.
fn pump(mut r: impl Read, serial: &Mutex<Serial>, stop: &dyn Fn() -> bool) {
    let mut buf = [0u8; 256];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut off = 0;
        while off < n {
            if stop() {
                return;
            }
            off += serial.lock().receive(&buf[off..n]);
            if off < n {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

/// Accept one client at a time: it becomes the peer output goes to, and its input feeds
/// the UART until it disconnects.
fn serve<S: Read + Write + Send + 'static>(
    clients: impl Iterator<Item = std::io::Result<S>>,
    writer: impl Fn(&S) -> std::io::Result<S>,
    peer: &Peer,
    serial: &Mutex<Serial>,
    stop: &dyn Fn() -> bool,
) {
    for s in clients.flatten() {
        if let Ok(w) = writer(&s) {
            *peer.lock() = Some(Box::new(w));
        }
        pump(s, serial, stop);
        if stop() {
            return;
        }
    }
}

/// Start the thread that feeds the port's input.
pub(crate) fn spawn_input(
    input: Input,
    peer: Peer,
    serial: Arc<Mutex<Serial>>,
    stop: Arc<dyn Fn() -> bool + Send + Sync>,
) -> std::io::Result<()> {
    if matches!(input, Input::None) {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("serial-in".into())
        .spawn(move || match input {
            Input::None => {}
            Input::Stdin => pump(std::io::stdin(), &serial, &*stop),
            Input::UnixClient(s) => pump(s, &serial, &*stop),
            Input::TcpClient(s) => pump(s, &serial, &*stop),
            Input::Unix(l) => serve(l.incoming(), |s| s.try_clone(), &peer, &serial, &*stop),
            Input::Tcp(l) => serve(
                l.incoming(),
                |s| {
                    let _ = s.set_nodelay(true);
                    s.try_clone()
                },
                &peer,
                &serial,
                &*stop,
            ),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_backend_appends_and_tcp_server_binds_loopback() {
        let dir = std::env::temp_dir().join(format!("novabox-serial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("out.txt");
        let (mut w, _, _) = open(Console::File(f.clone())).unwrap();
        w.write_all(b"hello").unwrap();
        drop(w);
        assert_eq!(std::fs::read(&f).unwrap(), b"hello");
        let (_, input, _) = open(Console::TcpServer("0".into())).unwrap();
        match input {
            Input::Tcp(l) => assert!(l.local_addr().unwrap().ip().is_loopback()),
            _ => panic!("expected a listener"),
        }
        let e = open(Console::File(dir.join("no/such/dir/x")))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no/such/dir"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_socket_server_sends_output_to_the_client() {
        let path = std::env::temp_dir().join(format!("novabox-serial-{}.sock", std::process::id()));
        let (mut w, input, peer) = open(Console::UnixSocket {
            path: path.clone(),
            server: true,
        })
        .unwrap();
        let Input::Unix(l) = input else { panic!() };
        let mut client = UnixStream::connect(&path).unwrap();
        let (s, _) = l.accept().unwrap();
        *peer.lock() = Some(Box::new(s));
        w.write_all(b"abc").unwrap();
        let mut got = [0u8; 3];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abc");
        let _ = std::fs::remove_file(&path);
    }
}
