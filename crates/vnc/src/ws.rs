//! The browser side of the server: a small HTTP/1.1 responder for the console page and the
//! WebSocket (RFC 6455) transport that carries RFB to it. Requests are read with a size
//! limit and a timeout; frames from the browser must be masked, control frames are
//! answered, and a frame larger than the limit drops the connection.

use base64::Engine;
use parking_lot::Mutex;
use sha1::{Digest, Sha1};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// Longest HTTP request head accepted.
const MAX_REQUEST: usize = 16 * 1024;
/// Largest WebSocket frame payload accepted from a browser.
const MAX_FRAME: u64 = 2 << 20;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The console page and its script, built into the binary.
const INDEX_HTML: &str = include_str!("../web/index.html");
const CONSOLE_JS: &str = include_str!("../web/console.js");

/// A parsed HTTP request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path (with query).
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a request head (up to and including the blank line).
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

/// Read a request head from `s`.
fn read_head(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
        if s.read(&mut b)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    Ok(head)
}

/// The Sec-WebSocket-Accept value for a key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// What an HTTP connection turned into.
pub enum HttpOutcome {
    /// A WebSocket: run RFB over these halves.
    WebSocket(WsReader, WsWriter),
    /// A page was served (or an error answered); the connection is done.
    Done,
}

/// Serve one HTTP request on `s`.
pub fn serve(mut s: TcpStream) -> io::Result<HttpOutcome> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let head = read_head(&mut s)?;
    let Some(req) = parse_request(&head) else {
        respond(&mut s, "400 Bad Request", "text/plain", b"bad request\n")?;
        return Ok(HttpOutcome::Done);
    };
    if req.method != "GET" {
        respond(
            &mut s,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        )?;
        return Ok(HttpOutcome::Done);
    }
    let upgrade = req
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        let Some(key) = req.header("sec-websocket-key") else {
            respond(&mut s, "400 Bad Request", "text/plain", b"no key\n")?;
            return Ok(HttpOutcome::Done);
        };
        let mut resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            accept_key(key)
        );
        // noVNC-style clients may ask for the "binary" subprotocol.
        if req
            .header("sec-websocket-protocol")
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "binary"))
        {
            resp.push_str("Sec-WebSocket-Protocol: binary\r\n");
        }
        resp.push_str("\r\n");
        s.write_all(resp.as_bytes())?;
        s.set_read_timeout(None)?;
        let w = Arc::new(Mutex::new(s.try_clone()?));
        return Ok(HttpOutcome::WebSocket(
            WsReader {
                s,
                out: w.clone(),
                buf: Vec::new(),
                pos: 0,
            },
            WsWriter { s: w },
        ));
    }
    let path = req.path.split('?').next().unwrap_or("/");
    match path {
        "/" | "/index.html" => respond(
            &mut s,
            "200 OK",
            "text/html; charset=utf-8",
            INDEX_HTML.as_bytes(),
        )?,
        "/console.js" => respond(
            &mut s,
            "200 OK",
            "text/javascript; charset=utf-8",
            CONSOLE_JS.as_bytes(),
        )?,
        _ => respond(&mut s, "404 Not Found", "text/plain", b"not found\n")?,
    }
    Ok(HttpOutcome::Done)
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

/// Encode one unmasked server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// A decoded client frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

/// Read one frame from `r` (client frames must be masked).
pub fn read_frame(r: &mut impl Read) -> io::Result<Frame> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let fin = h[0] & 0x80 != 0;
    let opcode = h[0] & 0x0f;
    if h[0] & 0x70 != 0 {
        return Err(bad("reserved bits set"));
    }
    if h[1] & 0x80 == 0 {
        return Err(bad("unmasked client frame"));
    }
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > MAX_FRAME {
        return Err(bad("frame too large"));
    }
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask)?;
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Frame {
        fin,
        opcode,
        payload,
    })
}

/// The reading half: yields the payload bytes of data frames; answers pings, ends on close.
pub struct WsReader {
    s: TcpStream,
    out: Arc<Mutex<TcpStream>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for WsReader {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            let f = read_frame(&mut self.s)?;
            match f.opcode {
                0..=2 => {
                    self.buf = f.payload;
                    self.pos = 0;
                }
                8 => {
                    let _ = self.out.lock().write_all(&frame(8, &[]));
                    return Ok(0);
                }
                9 => self.out.lock().write_all(&frame(10, &f.payload))?,
                10 => {}
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "unknown opcode")),
            }
        }
        let n = dst.len().min(self.buf.len() - self.pos);
        dst[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The writing half: every `write` call becomes one binary frame.
pub struct WsWriter {
    s: Arc<Mutex<TcpStream>>,
}

impl Write for WsWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.s.lock().write_all(&frame(2, data))?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_round_trip_and_limits() {
        let payload = b"Hello";
        let mut f = vec![0x82, 0x80 | 5, 1, 2, 3, 4];
        f.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        let got = read_frame(&mut &f[..]).unwrap();
        assert_eq!(got.payload, payload);
        assert_eq!(got.opcode, 2);
        // Unmasked and oversized frames are refused.
        assert!(read_frame(&mut &[0x82u8, 0x01, 0][..]).is_err());
        let mut big = vec![0x82u8, 0xff];
        big.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(read_frame(&mut &big[..]).is_err());
        assert_eq!(frame(2, &[0; 200])[1], 126);
        let req = parse_request(b"GET /x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert_eq!(req.header("upgrade"), Some("websocket"));
    }
}
