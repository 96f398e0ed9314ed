//! Little-endian field access on a request copied out of guest memory. Reads past the end
//! give 0 and writes past the end are dropped: the per-type size checks come first, so this
//! only keeps a forgotten check from turning into a panic.

/// Read a u16 at `off`.
pub fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut v = [0u8; 2];
    if let Some(s) = b.get(off..off.saturating_add(2)) {
        v.copy_from_slice(s);
    }
    u16::from_le_bytes(v)
}

/// Read a u32 at `off`.
pub fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(off..off.saturating_add(4)) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

/// Read a u64 at `off` (unaligned).
pub fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(off..off.saturating_add(8)) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// Write `v` at `off`.
pub fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(off..off.saturating_add(v.len())) {
        s.copy_from_slice(v);
    }
}

/// Write a u32 at `off`.
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    put(b, off, &v.to_le_bytes());
}

/// Write a u64 at `off`.
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    put(b, off, &v.to_le_bytes());
}

/// Write an i32 at `off`.
pub fn put_i32(b: &mut [u8], off: usize, v: i32) {
    put(b, off, &v.to_le_bytes());
}

/// The NUL-terminated string in `b[off..off+len]`, if it has a terminator and is UTF-8.
pub fn cstr_at(b: &[u8], off: usize, len: usize) -> Option<&str> {
    let field = b.get(off..off.checked_add(len)?)?;
    let end = field.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&field[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_is_harmless() {
        let mut b = [1u8, 2, 3];
        assert_eq!(u32_at(&b, 0), 0);
        assert_eq!(u16_at(&b, 1), 0x0302);
        assert_eq!(u64_at(&b, usize::MAX), 0);
        put_u32(&mut b, 2, 7);
        assert_eq!(b, [1, 2, 3]);
        assert_eq!(cstr_at(b"ab\0cd", 0, 5), Some("ab"));
        assert_eq!(cstr_at(b"abcd", 0, 4), None);
        assert_eq!(cstr_at(b"ab\0", 2, usize::MAX), None);
    }
}
