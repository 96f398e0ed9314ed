//! Constants of the `VBoxSharedClipboard` protocol and its text encoding: UTF-16LE with
//! CRLF line ends and a NUL terminator on the guest side, UTF-8 with LF on the host side.

/// Guest-callable functions.
pub mod func {
    /// Legacy message wait: (v32 message out, v32 formats out); parks until a message.
    pub const MSG_OLD_GET_WAIT: u32 = 1;
    /// The guest's clipboard formats changed: (v32 formats).
    pub const REPORT_FORMATS: u32 = 2;
    /// Read host clipboard data: (v32 format, buf out, v32 size needed out).
    pub const DATA_READ: u32 = 3;
    /// Answer a host read: legacy (v32 format, buf in).
    pub const DATA_WRITE: u32 = 4;
    /// Obsolete.
    pub const CONNECT: u32 = 5;
    /// Feature negotiation: (v64 features in / host features out, v64 flags word).
    pub const REPORT_FEATURES: u32 = 6;
    /// The host's features: same two v64 parameters.
    pub const QUERY_FEATURES: u32 = 7;
    /// Completes this client's parked wait.
    pub const MSG_CANCEL: u32 = 26;
}

/// Host-to-guest messages (legacy protocol).
pub mod msg {
    /// The guest should stop its clipboard service.
    pub const QUIT: u32 = 1;
    /// The host wants the guest's data in the format given.
    pub const READ_DATA: u32 = 2;
    /// The host clipboard now has these formats.
    pub const FORMATS_REPORT: u32 = 3;
    /// A parked wait was cancelled (MSG_CANCEL).
    pub const CANCELED: u32 = 4;
}

/// Clipboard format bits.
pub mod fmt {
    /// UTF-16LE text (CF_UNICODETEXT).
    pub const UNICODETEXT: u32 = 0x1;
    /// A Windows DIB.
    pub const BITMAP: u32 = 0x2;
    /// UTF-8 HTML.
    pub const HTML: u32 = 0x4;
    /// File transfers (not offered).
    pub const URI_LIST: u32 = 0x8;
    /// Every defined bit.
    pub const VALID: u32 = UNICODETEXT | BITMAP | HTML | URI_LIST;
}

/// Bit 63 of REPORT_FEATURES' second word: set by the guest, cleared by a host that
/// understood the call (7.x guests give up when it stays set).
pub const FEATURES1_MUST_BE_ONE: u64 = 1 << 63;

/// Host text to the guest's wire form: LF becomes CRLF (a CRLF stays one), UTF-16LE,
/// NUL-terminated (the terminator is part of the data, as VirtualBox sends it).
pub fn to_guest_text(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2 + 2);
    let mut prev = '\0';
    for ch in text.chars() {
        if ch == '\n' && prev != '\r' {
            out.extend_from_slice(&u16::from(b'\r').to_le_bytes());
        }
        let mut units = [0u16; 2];
        for u in ch.encode_utf16(&mut units) {
            out.extend_from_slice(&u.to_le_bytes());
        }
        prev = ch;
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// The guest's wire text to host text: UTF-16LE up to the first NUL (an odd trailing byte
/// is ignored; unpaired surrogates become U+FFFD), CRLF becomes LF.
pub fn from_guest_text(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units).replace("\r\n", "\n")
}
