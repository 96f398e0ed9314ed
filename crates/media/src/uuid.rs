//! 128-bit UUIDs as VirtualBox uses them, with the two on-disk byte orders.

use std::fmt;

/// A UUID kept in string (RFC 4122 / big-endian) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID ("no UUID").
    pub const NIL: Uuid = Uuid([0; 16]);

    /// A fresh random (version 4) UUID.
    pub fn random() -> Uuid {
        let mut b = [0u8; 16];
        // The OS random source only fails on exotic platforms; a clock-based
        // fallback still gives distinct UUIDs for a VMM's purposes.
        if getrandom::fill(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            b = t.to_le_bytes();
            b[15] ^= std::process::id() as u8;
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Uuid(b)
    }

    /// Whether this is the nil UUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Decode the IPRT/Microsoft GUID layout (first three fields little-endian) used by VDI.
    pub fn from_guid_bytes(b: &[u8; 16]) -> Uuid {
        let mut o = *b;
        o[0..4].reverse();
        o[4..6].reverse();
        o[6..8].reverse();
        Uuid(o)
    }

    /// Encode into the IPRT/Microsoft GUID layout used by VDI.
    pub fn to_guid_bytes(&self) -> [u8; 16] {
        let mut o = self.0;
        o[0..4].reverse();
        o[4..6].reverse();
        o[6..8].reverse();
        o
    }

    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, optionally in braces.
    pub fn parse(s: &str) -> Option<Uuid> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(s);
        if s.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut n = 0;
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if bytes[i] != b'-' {
                    return None;
                }
                i += 1;
                continue;
            }
            let hi = (bytes[i] as char).to_digit(16)?;
            let lo = (*bytes.get(i + 1)? as char).to_digit(16)?;
            *out.get_mut(n)? = (hi * 16 + lo) as u8;
            n += 1;
            i += 2;
        }
        (n == 16).then_some(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_layout_matches_spec_example() {
        let u = Uuid::parse("{01234567-89ab-cdef-0123-456789abcdef}").unwrap();
        assert_eq!(
            u.to_guid_bytes(),
            [
                0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef
            ]
        );
        assert_eq!(Uuid::from_guid_bytes(&u.to_guid_bytes()), u);
        assert_eq!(u.to_string(), "01234567-89ab-cdef-0123-456789abcdef");
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(Uuid::parse("0123").is_none());
        assert!(Uuid::parse("01234567x89ab-cdef-0123-456789abcdef").is_none());
        assert!(Uuid::parse("0123456g-89ab-cdef-0123-456789abcdef").is_none());
    }

    #[test]
    fn random_is_v4_and_distinct() {
        let a = Uuid::random();
        let b = Uuid::random();
        assert_ne!(a, b);
        assert_eq!(a.0[6] >> 4, 4);
        assert!(!a.is_nil());
    }
}
