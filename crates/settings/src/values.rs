//! Scalar value syntax as VirtualBox's XML helpers read and write it.

use std::fmt;
use std::str::FromStr;

/// A UUID (stored as 16 bytes, shown lower case without braces).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, with or without braces.
    /// The all-zero UUID is refused, as VirtualBox refuses it.
    pub fn parse(s: &str) -> Option<Uuid> {
        let s = s.trim();
        let s = match s.strip_prefix('{') {
            Some(inner) => inner.strip_suffix('}')?,
            None => s,
        };
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b[i] != b'-' {
                    return None;
                }
                i += 1;
                continue;
            }
            let hi = (b[i] as char).to_digit(16)?;
            let lo = (b[i + 1] as char).to_digit(16)?;
            out[n] = (hi * 16 + lo) as u8;
            n += 1;
            i += 2;
        }
        if out == [0; 16] {
            return None;
        }
        Some(Uuid(out))
    }

    /// A random (version 4) UUID from the operating system's generator.
    pub fn new_random() -> Uuid {
        let mut b = random_bytes::<16>();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Uuid(b)
    }

    /// The braced form VirtualBox writes: `{…}`.
    pub fn braced(&self) -> String {
        format!("{{{self}}}")
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

impl FromStr for Uuid {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Uuid::parse(s).ok_or(())
    }
}

/// Bytes from /dev/urandom, falling back to time and address entropy if it
/// cannot be read (only for identifiers, never for secrets).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut b = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut b).is_ok() {
            return b;
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = t ^ (&b as *const _ as usize as u128);
    for v in b.iter_mut() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *v = (x >> 64) as u8;
    }
    b
}

/// VirtualBox's boolean syntax: `true`/`yes`/`1` and `false`/`no`/`0`.
/// Anything else reads as absent.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The boolean form VirtualBox writes.
pub fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// An unsigned integer with automatic base (`0x` hex, leading `0` octal,
/// else decimal), as RTStrToUInt64Full does. Whole string or nothing.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// A signed integer with automatic base.
pub fn parse_i64(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix('-') {
        let v = parse_u64(rest)?;
        if v <= i64::MAX as u64 + 1 {
            Some((v as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        let v = parse_u64(t)?;
        i64::try_from(v).ok()
    }
}

/// Normalise a path as VirtualBox stores it (`\` → `/`).
pub fn slashes(p: &str) -> String {
    p.replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uuid_forms() {
        let u = Uuid::parse("{410F6221-6237-4833-b02c-a54000b7b190}").unwrap();
        assert_eq!(u.to_string(), "410f6221-6237-4833-b02c-a54000b7b190");
        assert_eq!(Uuid::parse("410f6221-6237-4833-b02c-a54000b7b190"), Some(u));
        assert_eq!(Uuid::parse("{00000000-0000-0000-0000-000000000000}"), None);
        assert_eq!(Uuid::parse("{410f6221-6237-4833-b02c-a54000b7b19}"), None);
        assert_eq!(Uuid::parse("{410f6221+6237-4833-b02c-a54000b7b190}"), None);
        assert_eq!(Uuid::parse("{410f6221-6237-4833-b02c-a54000b7b190"), None);
        let r = Uuid::new_random();
        assert_eq!(Uuid::parse(&r.braced()), Some(r));
    }

    #[test]
    fn numbers_use_automatic_base() {
        assert_eq!(parse_u64("0x3f8"), Some(0x3f8));
        assert_eq!(parse_u64("010"), Some(8));
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("12a"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_i64("-5"), Some(-5));
        assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_bool("yes"), Some(true));
        assert_eq!(parse_bool("True"), None);
    }

    proptest! {
        #[test]
        fn uuid_parse_never_panics(s in "\\PC{0,40}") {
            let _ = Uuid::parse(&s);
        }
        #[test]
        fn uuid_round_trips(b in any::<[u8; 16]>()) {
            prop_assume!(b != [0; 16]);
            let u = Uuid(b);
            prop_assert_eq!(Uuid::parse(&u.braced()), Some(u));
        }
        #[test]
        fn ints_never_panic(s in "\\PC{0,30}") {
            let _ = parse_u64(&s);
            let _ = parse_i64(&s);
        }
    }
}
