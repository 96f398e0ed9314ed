//! RFB 3.8 wire format (RFC 6143): client-to-server messages parsed from a byte buffer,
//! and the pixel format. The parser is incremental (it says "need more" until a whole
//! message is there) and strict: unknown message types, lengths past our limits and
//! malformed fields are errors, after which the server drops the client.

/// Limits on what a client may send.
pub const MAX_ENCODINGS: usize = 1024;
/// Longest ClientCutText accepted.
pub const MAX_CUT_TEXT: usize = 1 << 20;
/// Most screens in a SetDesktopSize.
pub const MAX_SCREENS: usize = 16;

/// Encoding numbers.
pub mod encoding {
    /// Raw pixels.
    pub const RAW: i32 = 0;
    /// Copy from another place of the framebuffer.
    pub const COPY_RECT: i32 = 1;
    /// zlib-compressed raw pixels.
    pub const ZLIB: i32 = 6;
    /// Tight.
    pub const TIGHT: i32 = 7;
    /// ZRLE: zlib-compressed 64x64 tiles with palettes and runs.
    pub const ZRLE: i32 = 16;
    /// Pseudo: the last rectangle of an update (the count was 0xFFFF).
    pub const LAST_RECT: i32 = -224;
    /// Pseudo: the cursor shape.
    pub const CURSOR: i32 = -239;
    /// Pseudo: the framebuffer size changed.
    pub const DESKTOP_SIZE: i32 = -223;
    /// Pseudo: QEMU pointer motion change (relative mode).
    pub const QEMU_POINTER_MOTION: i32 = -257;
    /// Pseudo: QEMU extended key events.
    pub const QEMU_EXT_KEY: i32 = -258;
    /// Pseudo: extended desktop size (client-requested resizes).
    pub const EXT_DESKTOP_SIZE: i32 = -308;
}

/// A pixel format (RFC 6143 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bits per pixel (8, 16 or 32).
    pub bpp: u8,
    /// Colour depth.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// True colour (we accept nothing else).
    pub true_colour: bool,
    /// Maximum red value.
    pub red_max: u16,
    /// Maximum green value.
    pub green_max: u16,
    /// Maximum blue value.
    pub blue_max: u16,
    /// Shift of red.
    pub red_shift: u8,
    /// Shift of green.
    pub green_shift: u8,
    /// Shift of blue.
    pub blue_shift: u8,
}

impl PixelFormat {
    /// What the server offers: 32 bpp, depth 24, little-endian 0x00RRGGBB.
    pub const SERVER: PixelFormat = PixelFormat {
        bpp: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// Parse the 16-byte wire form.
    pub fn parse(b: &[u8; 16]) -> Result<PixelFormat, ProtoError> {
        let pf = PixelFormat {
            bpp: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        };
        if !matches!(pf.bpp, 8 | 16 | 32) {
            return Err(ProtoError::BadPixelFormat("bits per pixel"));
        }
        if !pf.true_colour {
            return Err(ProtoError::BadPixelFormat(
                "colour-map formats are not supported",
            ));
        }
        let bits = u32::from(pf.bpp);
        for (max, shift) in [
            (pf.red_max, pf.red_shift),
            (pf.green_max, pf.green_shift),
            (pf.blue_max, pf.blue_shift),
        ] {
            let width = 16 - max.leading_zeros();
            if u32::from(shift) + width > bits || max == 0 {
                return Err(ProtoError::BadPixelFormat(
                    "colour channel outside the pixel",
                ));
            }
        }
        Ok(pf)
    }

    /// The 16-byte wire form.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bpp;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = u8::from(self.true_colour);
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Bytes per pixel.
    pub fn bytes(&self) -> usize {
        usize::from(self.bpp / 8)
    }

    /// ZRLE's compressed pixel (CPIXEL, RFC 6143 7.7.6): for 32-bit true-colour formats
    /// whose colour bits all lie in the low or the high three bytes, the bytes of a
    /// [`PixelFormat::put`] pixel to keep; None when CPIXEL is the whole pixel.
    pub fn cpixel_bytes(&self) -> Option<std::ops::Range<usize>> {
        if self.bpp != 32 || self.depth > 24 {
            return None;
        }
        let mask = (u32::from(self.red_max) << self.red_shift)
            | (u32::from(self.green_max) << self.green_shift)
            | (u32::from(self.blue_max) << self.blue_shift);
        let low = mask & 0xff00_0000 == 0;
        let high = mask & 0xff == 0;
        match (low, high, self.big_endian) {
            (true, _, false) | (false, true, true) => Some(0..3),
            (true, _, true) | (false, true, false) => Some(1..4),
            _ => None,
        }
    }

    /// Append one 0x00RRGGBB pixel in this format.
    pub fn put(&self, out: &mut Vec<u8>, rgb: u32) {
        let scale = |v: u32, max: u16| -> u32 { v * u32::from(max) / 255 };
        let v = (scale((rgb >> 16) & 0xff, self.red_max) << self.red_shift)
            | (scale((rgb >> 8) & 0xff, self.green_max) << self.green_shift)
            | (scale(rgb & 0xff, self.blue_max) << self.blue_shift);
        match (self.bpp, self.big_endian) {
            (8, _) => out.push(v as u8),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// SetPixelFormat.
    SetPixelFormat(PixelFormat),
    /// SetEncodings, in the client's order of preference.
    SetEncodings(Vec<i32>),
    /// FramebufferUpdateRequest.
    UpdateRequest {
        /// Only changes are wanted.
        incremental: bool,
        /// Left.
        x: u16,
        /// Top.
        y: u16,
        /// Width.
        w: u16,
        /// Height.
        h: u16,
    },
    /// KeyEvent (an X keysym).
    Key {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
    },
    /// PointerEvent.
    Pointer {
        /// Button mask (bit 0 left, 1 middle, 2 right, 3/4 wheel up/down).
        buttons: u8,
        /// X.
        x: u16,
        /// Y.
        y: u16,
    },
    /// ClientCutText (Latin-1).
    CutText(Vec<u8>),
    /// SetDesktopSize (ExtendedDesktopSize extension).
    SetDesktopSize {
        /// Requested width.
        width: u16,
        /// Requested height.
        height: u16,
    },
    /// QEMU extended key event: keysym plus the XT scan code (0xE0xx for extended keys,
    /// as QEMU encodes them: the 0xE0 prefix in bit 7 of the high byte or as 0xE0 << 8).
    QemuKey {
        /// Pressed.
        down: bool,
        /// X keysym.
        keysym: u32,
        /// XT scan code.
        keycode: u32,
    },
}

/// Protocol violations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A message type we do not know (or did not enable).
    #[error("unknown message type {0}")]
    UnknownMessage(u8),
    /// An unknown QEMU sub-message.
    #[error("unknown QEMU message {0}")]
    UnknownQemuMessage(u8),
    /// A length past our limits.
    #[error("{what} too large ({len})")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its value.
        len: usize,
    },
    /// A pixel format we cannot produce.
    #[error("unsupported pixel format: {0}")]
    BadPixelFormat(&'static str),
    /// A malformed field.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parse one message from the front of `buf`: Ok(None) when more bytes are needed,
/// Ok(Some((message, bytes used))), or the reason to drop the client.
pub fn parse_client_message(buf: &[u8]) -> Result<Option<(ClientMessage, usize)>, ProtoError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let need = |n: usize| buf.len() >= n;
    Ok(match kind {
        0 => {
            if !need(20) {
                return Ok(None);
            }
            let mut pf = [0u8; 16];
            pf.copy_from_slice(&buf[4..20]);
            Some((ClientMessage::SetPixelFormat(PixelFormat::parse(&pf)?), 20))
        }
        2 => {
            if !need(4) {
                return Ok(None);
            }
            let n = usize::from(be16(buf, 2));
            if n > MAX_ENCODINGS {
                return Err(ProtoError::TooLarge {
                    what: "encoding list",
                    len: n,
                });
            }
            let len = 4 + 4 * n;
            if !need(len) {
                return Ok(None);
            }
            let list = (0..n).map(|i| be32(buf, 4 + 4 * i) as i32).collect();
            Some((ClientMessage::SetEncodings(list), len))
        }
        3 => {
            if !need(10) {
                return Ok(None);
            }
            Some((
                ClientMessage::UpdateRequest {
                    incremental: buf[1] != 0,
                    x: be16(buf, 2),
                    y: be16(buf, 4),
                    w: be16(buf, 6),
                    h: be16(buf, 8),
                },
                10,
            ))
        }
        4 => {
            if !need(8) {
                return Ok(None);
            }
            Some((
                ClientMessage::Key {
                    down: buf[1] != 0,
                    keysym: be32(buf, 4),
                },
                8,
            ))
        }
        5 => {
            if !need(6) {
                return Ok(None);
            }
            Some((
                ClientMessage::Pointer {
                    buttons: buf[1],
                    x: be16(buf, 2),
                    y: be16(buf, 4),
                },
                6,
            ))
        }
        6 => {
            if !need(8) {
                return Ok(None);
            }
            let n = be32(buf, 4) as usize;
            if n > MAX_CUT_TEXT {
                return Err(ProtoError::TooLarge {
                    what: "cut text",
                    len: n,
                });
            }
            if !need(8 + n) {
                return Ok(None);
            }
            Some((ClientMessage::CutText(buf[8..8 + n].to_vec()), 8 + n))
        }
        251 => {
            if !need(8) {
                return Ok(None);
            }
            let n = usize::from(buf[6]);
            if n == 0 || n > MAX_SCREENS {
                return Err(ProtoError::Malformed("SetDesktopSize screen count"));
            }
            let len = 8 + 16 * n;
            if !need(len) {
                return Ok(None);
            }
            let (width, height) = (be16(buf, 2), be16(buf, 4));
            if width == 0 || height == 0 {
                return Err(ProtoError::Malformed("SetDesktopSize size"));
            }
            Some((ClientMessage::SetDesktopSize { width, height }, len))
        }
        255 => {
            if !need(2) {
                return Ok(None);
            }
            match buf[1] {
                0 => {
                    if !need(12) {
                        return Ok(None);
                    }
                    Some((
                        ClientMessage::QemuKey {
                            down: be16(buf, 2) != 0,
                            keysym: be32(buf, 4),
                            keycode: be32(buf, 8),
                        },
                        12,
                    ))
                }
                s => return Err(ProtoError::UnknownQemuMessage(s)),
            }
        }
        k => return Err(ProtoError::UnknownMessage(k)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_message_and_waits_for_more() {
        let mut set_enc = vec![2, 0, 0, 3];
        for e in [encoding::ZLIB, encoding::RAW, encoding::CURSOR] {
            set_enc.extend_from_slice(&e.to_be_bytes());
        }
        for cut in 1..set_enc.len() {
            assert_eq!(parse_client_message(&set_enc[..cut]), Ok(None));
        }
        assert_eq!(
            parse_client_message(&set_enc),
            Ok(Some((
                ClientMessage::SetEncodings(vec![6, 0, -239]),
                set_enc.len()
            )))
        );
        let req = [3, 1, 0, 1, 0, 2, 0, 3, 0, 4, 99];
        assert_eq!(
            parse_client_message(&req),
            Ok(Some((
                ClientMessage::UpdateRequest {
                    incremental: true,
                    x: 1,
                    y: 2,
                    w: 3,
                    h: 4
                },
                10
            )))
        );
        let key = [4, 1, 0, 0, 0, 0, 0xff, 0x0d];
        assert_eq!(
            parse_client_message(&key).unwrap().unwrap().0,
            ClientMessage::Key {
                down: true,
                keysym: 0xff0d
            }
        );
        let qkey = [255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e];
        assert_eq!(
            parse_client_message(&qkey).unwrap().unwrap().0,
            ClientMessage::QemuKey {
                down: true,
                keysym: 0x61,
                keycode: 0x1e
            }
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            parse_client_message(&[9]),
            Err(ProtoError::UnknownMessage(9))
        );
        assert!(matches!(
            parse_client_message(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(ProtoError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_client_message(&[2, 0, 0xff, 0xff]),
            Err(ProtoError::TooLarge { .. })
        ));
        let mut pf = [0u8; 20];
        pf[4] = 32;
        pf[7] = 0; // colour map
        assert!(matches!(
            parse_client_message(&pf),
            Err(ProtoError::BadPixelFormat(_))
        ));
        assert_eq!(
            parse_client_message(&[255, 7]),
            Err(ProtoError::UnknownQemuMessage(7))
        );
    }

    #[test]
    fn pixel_conversion() {
        let mut out = Vec::new();
        PixelFormat::SERVER.put(&mut out, 0x112233);
        assert_eq!(out, [0x33, 0x22, 0x11, 0]);
        let rgb565 = PixelFormat {
            bpp: 16,
            depth: 16,
            big_endian: true,
            true_colour: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        };
        assert_eq!(PixelFormat::parse(&rgb565.to_bytes()), Ok(rgb565));
        out.clear();
        rgb565.put(&mut out, 0xff0000);
        assert_eq!(out, [0xf8, 0x00]);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics_and_consumes_within_bounds(buf in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(Some((_, used))) = parse_client_message(&buf) {
                proptest::prop_assert!(used > 0 && used <= buf.len());
            }
        }
    }
}
