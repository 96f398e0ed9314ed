//! A small RFB client: the handshake (no authentication), and a decoder for what this
//! server and QEMU's send in the server's pixel format (32 bpp, 0x00RRGGBB little-endian):
//! Raw, CopyRect, zlib, ZRLE and the pseudo-encodings. Used by the tests (round trips of
//! the encoders) and by the display benchmark, which measures this server against QEMU's.
//! It trusts its server only as far as not panicking: bad data is an error.

use crate::proto::{encoding, PixelFormat};
use flate2::{Decompress, FlushDecompress};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn bad(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.into())
}

fn read_u8(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_vec(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    if n > 256 << 20 {
        return Err(bad(format!("{n} bytes in one piece")));
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

/// One decoded rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RectInfo {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Encoding number.
    pub encoding: i32,
}

/// What one server message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A FramebufferUpdate with these rectangles (pseudo-rectangles included).
    Update(Vec<RectInfo>),
    /// Bell, cut text, colour map: nothing for the picture.
    Other(u8),
}

/// The client's copy of the picture and its decoder state.
pub struct Decoder {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Row-major 0x00RRGGBB.
    pub pixels: Vec<u32>,
    zrle: Decompress,
    zlib: Decompress,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn inflate(z: &mut Decompress, input: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 4 + 4096);
    let mut consumed = 0usize;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let before = z.total_in();
        z.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|e| bad(format!("zlib: {e}")))?;
        consumed += (z.total_in() - before) as usize;
        if consumed >= input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        if out.len() > 512 << 20 {
            return Err(bad("inflated data too large"));
        }
    }
}

impl Decoder {
    /// A black `width` x `height` picture.
    pub fn new(width: u32, height: u32) -> Self {
        Decoder {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
            zrle: Decompress::new(true),
            zlib: Decompress::new(true),
        }
    }

    fn check(&self, x: u32, y: u32, w: u32, h: u32) -> io::Result<()> {
        if x.checked_add(w).is_none_or(|e| e > self.width)
            || y.checked_add(h).is_none_or(|e| e > self.height)
        {
            return Err(bad(format!(
                "rectangle {w}x{h}+{x}+{y} outside {}x{}",
                self.width, self.height
            )));
        }
        Ok(())
    }

    fn put_row(&mut self, x: u32, y: u32, px: impl Iterator<Item = u32>) {
        let at = (y * self.width + x) as usize;
        for (d, p) in self.pixels[at..].iter_mut().zip(px) {
            *d = p;
        }
    }

    /// Read one server message and apply it.
    pub fn message(&mut self, r: &mut impl Read) -> io::Result<Message> {
        let kind = read_u8(r)?;
        match kind {
            0 => {
                read_u8(r)?;
                let n = read_u16(r)?;
                let mut rects = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    let info = self.rect(r)?;
                    rects.push(info);
                    if info.encoding == encoding::LAST_RECT {
                        break;
                    }
                }
                Ok(Message::Update(rects))
            }
            1 => {
                read_u8(r)?;
                read_u16(r)?;
                let n = read_u16(r)?;
                read_vec(r, usize::from(n) * 6)?;
                Ok(Message::Other(1))
            }
            2 => Ok(Message::Other(2)),
            3 => {
                let mut pad = [0u8; 3];
                r.read_exact(&mut pad)?;
                let n = read_u32(r)? as usize;
                read_vec(r, n)?;
                Ok(Message::Other(3))
            }
            k => Err(bad(format!("unknown server message {k}"))),
        }
    }

    /// Read one rectangle (header and data) and apply it.
    pub fn rect(&mut self, r: &mut impl Read) -> io::Result<RectInfo> {
        let x = u32::from(read_u16(r)?);
        let y = u32::from(read_u16(r)?);
        let w = u32::from(read_u16(r)?);
        let h = u32::from(read_u16(r)?);
        let enc = read_u32(r)? as i32;
        let info = RectInfo {
            x,
            y,
            w,
            h,
            encoding: enc,
        };
        match enc {
            encoding::RAW => {
                self.check(x, y, w, h)?;
                let data = read_vec(r, (w * h * 4) as usize)?;
                self.raw(x, y, w, h, &data);
            }
            encoding::ZLIB => {
                self.check(x, y, w, h)?;
                let n = read_u32(r)? as usize;
                let data = read_vec(r, n)?;
                let raw = inflate(&mut self.zlib, &data)?;
                if raw.len() < (w * h * 4) as usize {
                    return Err(bad("zlib rectangle short"));
                }
                self.raw(x, y, w, h, &raw);
            }
            encoding::COPY_RECT => {
                self.check(x, y, w, h)?;
                let sx = u32::from(read_u16(r)?);
                let sy = u32::from(read_u16(r)?);
                self.check(sx, sy, w, h)?;
                let src: Vec<u32> = (0..h)
                    .flat_map(|row| {
                        let s = ((sy + row) * self.width + sx) as usize;
                        self.pixels[s..s + w as usize].to_vec()
                    })
                    .collect();
                for (row, chunk) in src.chunks(w as usize).enumerate() {
                    self.put_row(x, y + row as u32, chunk.iter().copied());
                }
            }
            encoding::ZRLE => {
                self.check(x, y, w, h)?;
                let n = read_u32(r)? as usize;
                let data = read_vec(r, n)?;
                let raw = inflate(&mut self.zrle, &data)?;
                self.zrle(x, y, w, h, &raw)?;
            }
            encoding::CURSOR => {
                let n = (w * h) as usize;
                read_vec(r, n * 4 + (w as usize).div_ceil(8) * h as usize)?;
            }
            encoding::DESKTOP_SIZE => self.resize(w, h),
            encoding::EXT_DESKTOP_SIZE => {
                let screens = read_u8(r)?;
                read_vec(r, 3 + usize::from(screens) * 16)?;
                self.resize(w, h);
            }
            encoding::QEMU_EXT_KEY | encoding::LAST_RECT | encoding::QEMU_POINTER_MOTION => {}
            e => return Err(bad(format!("encoding {e} not decoded"))),
        }
        Ok(info)
    }

    fn resize(&mut self, w: u32, h: u32) {
        if (w, h) != (self.width, self.height) {
            *self = Decoder {
                zrle: std::mem::replace(&mut self.zrle, Decompress::new(true)),
                zlib: std::mem::replace(&mut self.zlib, Decompress::new(true)),
                ..Decoder::new(w, h)
            };
        }
    }

    fn raw(&mut self, x: u32, y: u32, w: u32, h: u32, data: &[u8]) {
        for row in 0..h {
            let s = (row * w * 4) as usize;
            let line = &data[s..s + (w * 4) as usize];
            self.put_row(
                x,
                y + row,
                line.chunks_exact(4)
                    .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & 0xff_ffff),
            );
        }
    }

    fn zrle(&mut self, x: u32, y: u32, w: u32, h: u32, data: &[u8]) -> io::Result<()> {
        let mut it = data.iter().copied();
        let mut next = || it.next().ok_or_else(|| bad("ZRLE data short"));
        let mut tile = Vec::with_capacity(64 * 64);
        let mut ty = 0;
        while ty < h {
            let th = 64.min(h - ty);
            let mut tx = 0;
            while tx < w {
                let tw = 64.min(w - tx);
                let n = (tw * th) as usize;
                tile.clear();
                let sub = next()?;
                let cpixel = |next: &mut dyn FnMut() -> io::Result<u8>| -> io::Result<u32> {
                    Ok(u32::from(next()?) | u32::from(next()?) << 8 | u32::from(next()?) << 16)
                };
                let psize = usize::from(sub & 127);
                let mut palette = Vec::with_capacity(psize);
                for _ in 0..psize {
                    palette.push(cpixel(&mut next)?);
                }
                let run = |next: &mut dyn FnMut() -> io::Result<u8>| -> io::Result<usize> {
                    let mut len = 1usize;
                    loop {
                        let b = next()?;
                        len += usize::from(b);
                        if b != 255 {
                            return Ok(len);
                        }
                    }
                };
                match (sub & 128 != 0, psize) {
                    (false, 0) => {
                        for _ in 0..n {
                            tile.push(cpixel(&mut next)?);
                        }
                    }
                    (false, 1) => tile.resize(n, palette[0]),
                    (false, 2..=16) => {
                        let bits = match psize {
                            2 => 1,
                            3 | 4 => 2,
                            _ => 4,
                        };
                        for _ in 0..th {
                            let mut have = 0;
                            let mut byte = 0u8;
                            for _ in 0..tw {
                                if have == 0 {
                                    byte = next()?;
                                    have = 8;
                                }
                                have -= bits;
                                let i = usize::from((byte >> have) & ((1 << bits) - 1));
                                tile.push(*palette.get(i).ok_or_else(|| bad("palette index"))?);
                            }
                        }
                    }
                    (false, _) => return Err(bad(format!("ZRLE sub-encoding {sub}"))),
                    (true, 0) => {
                        while tile.len() < n {
                            let c = cpixel(&mut next)?;
                            let len = run(&mut next)?;
                            tile.extend(std::iter::repeat_n(c, len));
                        }
                    }
                    (true, 1) => return Err(bad("ZRLE sub-encoding 129")),
                    (true, _) => {
                        while tile.len() < n {
                            let b = next()?;
                            let c = *palette
                                .get(usize::from(b & 127))
                                .ok_or_else(|| bad("palette index"))?;
                            let len = if b & 128 != 0 { run(&mut next)? } else { 1 };
                            tile.extend(std::iter::repeat_n(c, len));
                        }
                    }
                }
                if tile.len() != n {
                    return Err(bad("ZRLE run past the tile"));
                }
                for row in 0..th {
                    let s = (row * tw) as usize;
                    let line: Vec<u32> = tile[s..s + tw as usize].to_vec();
                    self.put_row(x + tx, y + ty + row, line.into_iter());
                }
                tx += tw;
            }
            ty += th;
        }
        Ok(())
    }
}

/// A connected client.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// The picture.
    pub decoder: Decoder,
    /// The desktop name.
    pub name: String,
}

impl Connection {
    /// Connect without authentication (RFB 3.8), ask for the server's 32-bit 0x00RRGGBB
    /// format and the given encodings (client's order of preference).
    pub fn connect(addr: SocketAddr, encodings: &[i32]) -> io::Result<Connection> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut v = [0u8; 12];
        s.read_exact(&mut v)?;
        if &v[..4] != b"RFB " {
            return Err(bad("not an RFB server"));
        }
        s.write_all(b"RFB 003.008\n")?;
        let n = read_u8(&mut s)?;
        let types = read_vec(&mut s, usize::from(n))?;
        if !types.contains(&1) {
            return Err(bad(format!("no 'None' security type in {types:?}")));
        }
        s.write_all(&[1])?;
        if read_u32(&mut s)? != 0 {
            return Err(bad("security failed"));
        }
        s.write_all(&[1])?;
        let w = u32::from(read_u16(&mut s)?);
        let h = u32::from(read_u16(&mut s)?);
        read_vec(&mut s, 16)?;
        let nl = read_u32(&mut s)? as usize;
        let name = String::from_utf8_lossy(&read_vec(&mut s, nl.min(4096))?).into_owned();
        let mut m = vec![0u8, 0, 0, 0];
        m.extend_from_slice(&PixelFormat::SERVER.to_bytes()[..16]);
        m.push(2);
        m.push(0);
        m.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for e in encodings {
            m.extend_from_slice(&e.to_be_bytes());
        }
        s.write_all(&m)?;
        Ok(Connection {
            stream: s,
            decoder: Decoder::new(w, h),
            name,
        })
    }

    /// Send a FramebufferUpdateRequest for the whole picture.
    pub fn request(&mut self, incremental: bool) -> io::Result<()> {
        let mut m = vec![3, u8::from(incremental), 0, 0, 0, 0];
        m.extend_from_slice(&(self.decoder.width as u16).to_be_bytes());
        m.extend_from_slice(&(self.decoder.height as u16).to_be_bytes());
        self.stream.write_all(&m)
    }

    /// Read and apply one server message.
    pub fn message(&mut self) -> io::Result<Message> {
        self.decoder.message(&mut self.stream)
    }

    /// Send a key press or release (X keysym).
    pub fn key(&mut self, keysym: u32, down: bool) -> io::Result<()> {
        let mut m = vec![4, u8::from(down), 0, 0];
        m.extend_from_slice(&keysym.to_be_bytes());
        self.stream.write_all(&m)
    }
}
