//! VNC authentication (RFC 6143 7.2.2): the server sends a 16-byte random challenge, the
//! client answers it DES-encrypted (ECB, two blocks) with the password as the key, each key
//! byte bit-reversed as the original implementation does. Passwords longer than 8 bytes are
//! cut to 8, as every VNC implementation does.

use des::cipher::{BlockEncrypt, KeyInit};
use std::io::Read;

/// A fresh challenge from the OS's random source (falls back to a clock-derived value
/// only if /dev/urandom cannot be read).
pub fn challenge() -> [u8; 16] {
    let mut c = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut c))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        c.copy_from_slice(&t.to_le_bytes());
    }
    c
}

/// The answer a client with `password` gives to `challenge`.
pub fn response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).expect("DES keys are 8 bytes");
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(block.into());
    }
    out
}

/// Check a client's answer in constant time.
pub fn verify(password: &str, challenge: &[u8; 16], answer: &[u8; 16]) -> bool {
    let want = response(password, challenge);
    want.iter().zip(answer).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // Computed with an independent DES (Python's cryptography package): password
        // "s3cret" (key bytes bit-reversed: ce cc c6 4e a6 2e 00 00), challenge 00..0f.
        let ch: [u8; 16] = std::array::from_fn(|i| i as u8);
        let want = [
            0xfc, 0x9a, 0x2b, 0xb8, 0x54, 0x6a, 0x63, 0x38, 0x8e, 0xb4, 0x5b, 0x53, 0x0d, 0x3a,
            0x63, 0x37,
        ];
        assert_eq!(response("s3cret", &ch), want);
        assert!(verify("s3cret", &ch, &want));
        assert!(!verify("s3creu", &ch, &want));
        assert!(verify("s3cret\0\0XYZ", &ch, &want), "only 8 bytes count");
        let c = challenge();
        assert_ne!(c, challenge(), "challenges differ");
    }
}
