//! Wire structures of the shared-folder protocol (VirtualBox shflsvc.h, Linux
//! shfl_hostintf.h): SHFLSTRING, SHFLFSOBJINFO, SHFLCREATEPARMS, SHFLDIRINFO, SHFLVOLINFO.
//! Decoders take guest bytes and trust nothing in them.

use crate::status::*;

/// Size of SHFLFSOBJINFO.
pub const FSOBJINFO_SIZE: usize = 92;
/// Size of SHFLCREATEPARMS.
pub const CREATEPARMS_SIZE: usize = 108;
/// Size of SHFLVOLINFO.
pub const VOLINFO_SIZE: usize = 40;
/// sizeof(SHFLDIRINFO) with a one-character name (the LIST minimum).
pub const DIRINFO_MIN: usize = 128;
/// Offset of the name's SHFLSTRING inside SHFLDIRINFO.
pub const DIRINFO_NAME: usize = 122;

/// Decode an input SHFLSTRING as VirtualBox's ShflStringIsValidIn does.
pub fn string_in(buf: &[u8], utf8: bool) -> Result<String, i32> {
    if buf.len() <= 4 {
        return Err(VERR_INVALID_PARAMETER);
    }
    let size = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
    let len = usize::from(u16::from_le_bytes([buf[2], buf[3]]));
    if 4 + size > buf.len() {
        return Err(VERR_INVALID_PARAMETER);
    }
    let body = &buf[4..4 + size];
    if utf8 {
        if len >= size || body[len] != 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        let s = std::str::from_utf8(&body[..len]).map_err(|_| VERR_NO_TRANSLATION)?;
        if s.contains('\0') {
            return Err(VERR_INVALID_NAME);
        }
        Ok(s.to_string())
    } else {
        if len % 2 != 0 || len + 2 > size || body[len] != 0 || body[len + 1] != 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        let units: Vec<u16> = body[..len]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let s = String::from_utf16(&units).map_err(|_| VERR_NO_TRANSLATION)?;
        if s.contains('\0') {
            return Err(VERR_INVALID_NAME);
        }
        Ok(s)
    }
}

/// Encode `s` as a SHFLSTRING (header + string + terminator) in the client's encoding.
pub fn string_bytes(s: &str, utf8: bool) -> Vec<u8> {
    let body: Vec<u8> = if utf8 {
        s.as_bytes().to_vec()
    } else {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    };
    let term = if utf8 { 1 } else { 2 };
    let len = body.len().min(usize::from(u16::MAX) - term);
    let size = len + term;
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(size as u16).to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&body[..len]);
    out.extend(std::iter::repeat_n(0, term));
    out
}

/// Write `s` into an output SHFLSTRING buffer whose `u16Size` the guest set. Fails with
/// VERR_BUFFER_OVERFLOW when it does not fit.
pub fn string_out(buf: &mut [u8], s: &str, utf8: bool) -> Result<(), i32> {
    if buf.len() < 4 {
        return Err(VERR_INVALID_PARAMETER);
    }
    let size = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
    if 4 + size > buf.len() {
        return Err(VERR_INVALID_PARAMETER);
    }
    let enc = string_bytes(s, utf8);
    let needed = enc.len() - 4;
    if needed > size {
        return Err(VERR_BUFFER_OVERFLOW);
    }
    buf[2..4].copy_from_slice(&enc[2..4]);
    buf[4..4 + needed].copy_from_slice(&enc[4..]);
    Ok(())
}

/// Object information (SHFLFSOBJINFO), host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjInfo {
    /// Size.
    pub size: i64,
    /// Allocated bytes.
    pub allocated: i64,
    /// Access time, ns since the epoch.
    pub atime: i64,
    /// Modification time.
    pub mtime: i64,
    /// Change time.
    pub ctime: i64,
    /// Birth time.
    pub btime: i64,
    /// fMode: POSIX type and permissions plus DOS attributes.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links.
    pub nlink: u32,
    /// Device of the inode.
    pub dev: u32,
    /// Inode.
    pub ino: u64,
    /// Device number for device files.
    pub rdev: u32,
}

/// POSIX type bits.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
const DOS_READONLY: u32 = 0x0001 << 16;
const DOS_DIRECTORY: u32 = 0x0010 << 16;
const DOS_NT_NORMAL: u32 = 0x0080 << 16;
const DOS_NT_REPARSE_POINT: u32 = 0x0400 << 16;

impl ObjInfo {
    /// fMode with the DOS attributes VirtualBox derives from the POSIX mode.
    pub fn mode_with_dos(posix: u32) -> u32 {
        let mut m = posix & 0xffff;
        match posix & S_IFMT {
            S_IFDIR => m |= DOS_DIRECTORY,
            S_IFLNK => m |= DOS_NT_REPARSE_POINT,
            _ => {}
        }
        if posix & 0o222 == 0 {
            m |= DOS_READONLY;
        }
        if m >> 16 == 0 {
            m |= DOS_NT_NORMAL;
        }
        m
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Encode as SHFLFSOBJINFO.
    pub fn encode(&self) -> [u8; FSOBJINFO_SIZE] {
        let mut b = [0u8; FSOBJINFO_SIZE];
        b[0..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..16].copy_from_slice(&self.allocated.to_le_bytes());
        b[16..24].copy_from_slice(&self.atime.to_le_bytes());
        b[24..32].copy_from_slice(&self.mtime.to_le_bytes());
        b[32..40].copy_from_slice(&self.ctime.to_le_bytes());
        b[40..48].copy_from_slice(&self.btime.to_le_bytes());
        b[48..52].copy_from_slice(&self.mode.to_le_bytes());
        b[52..56].copy_from_slice(&2u32.to_le_bytes()); // RTFSOBJATTRADD_UNIX
        b[56..60].copy_from_slice(&self.uid.to_le_bytes());
        b[60..64].copy_from_slice(&self.gid.to_le_bytes());
        b[64..68].copy_from_slice(&self.nlink.to_le_bytes());
        b[68..72].copy_from_slice(&self.dev.to_le_bytes());
        b[72..80].copy_from_slice(&self.ino.to_le_bytes());
        // fFlags @80, GenerationId @84 stay 0.
        b[88..92].copy_from_slice(&self.rdev.to_le_bytes());
        b
    }

    /// Decode the fields a guest may set (times and mode; SET|FILE and SHFLCREATEPARMS).
    pub fn decode(b: &[u8]) -> ObjInfo {
        let i64_at = |o: usize| {
            b.get(o..o + 8)
                .map(|s| i64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
                .unwrap_or(0)
        };
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
                .unwrap_or(0)
        };
        ObjInfo {
            size: i64_at(0),
            allocated: i64_at(8),
            atime: i64_at(16),
            mtime: i64_at(24),
            ctime: i64_at(32),
            btime: i64_at(40),
            mode: u32_at(48),
            ..Default::default()
        }
    }
}

/// SHFLCREATEPARMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreateParms {
    /// Handle (in: nil; out: the new handle or nil).
    pub handle: u64,
    /// `SHFL_*` result.
    pub result: u32,
    /// `SHFL_CF_*` flags.
    pub flags: u32,
    /// Object info (in: mode and size; out: the object's).
    pub info: ObjInfo,
}

impl CreateParms {
    /// Decode from exactly 108 bytes.
    pub fn decode(b: &[u8]) -> Result<CreateParms, i32> {
        if b.len() != CREATEPARMS_SIZE {
            return Err(VERR_INVALID_PARAMETER);
        }
        Ok(CreateParms {
            handle: u64::from_le_bytes(b[0..8].try_into().map_err(|_| VERR_INVALID_PARAMETER)?),
            result: u32::from_le_bytes(b[8..12].try_into().map_err(|_| VERR_INVALID_PARAMETER)?),
            flags: u32::from_le_bytes(b[12..16].try_into().map_err(|_| VERR_INVALID_PARAMETER)?),
            info: ObjInfo::decode(&b[16..]),
        })
    }

    /// Encode into the 108-byte guest buffer.
    pub fn encode_into(&self, b: &mut [u8]) {
        if b.len() != CREATEPARMS_SIZE {
            return;
        }
        b[0..8].copy_from_slice(&self.handle.to_le_bytes());
        b[8..12].copy_from_slice(&self.result.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..].copy_from_slice(&self.info.encode());
    }
}

/// One SHFLDIRINFO entry for `name`.
pub fn dir_entry(info: &ObjInfo, name: &str, utf8: bool) -> Vec<u8> {
    let mut e = Vec::with_capacity(DIRINFO_NAME + 4 + name.len() + 2);
    e.extend_from_slice(&info.encode());
    // cucShortName + uszShortName[14]: no 8.3 name.
    e.extend(std::iter::repeat_n(0u8, 2 + 28));
    e.extend_from_slice(&string_bytes(name, utf8));
    e
}

/// SHFLVOLINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolInfo {
    /// Total bytes.
    pub total: i64,
    /// Available bytes.
    pub available: i64,
    /// Allocation unit.
    pub unit: u32,
    /// Sector size.
    pub sector: u32,
    /// Serial.
    pub serial: u32,
    /// Longest component.
    pub max_component: u32,
    /// The share is read-only.
    pub read_only: bool,
}

impl VolInfo {
    /// Encode as SHFLVOLINFO.
    pub fn encode(&self) -> [u8; VOLINFO_SIZE] {
        let mut b = [0u8; VOLINFO_SIZE];
        b[0..8].copy_from_slice(&self.total.to_le_bytes());
        b[8..16].copy_from_slice(&self.available.to_le_bytes());
        b[16..20].copy_from_slice(&self.unit.max(1).to_le_bytes());
        b[20..24].copy_from_slice(&self.sector.to_le_bytes());
        b[24..28].copy_from_slice(&self.serial.to_le_bytes());
        b[28..32].copy_from_slice(&self.max_component.to_le_bytes());
        b[32] = 0; // fRemote
        b[33] = 1; // fCaseSensitive
        b[34] = u8::from(self.read_only);
        b[35] = 1; // fSupportsUnicode
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shfl(s: &[u8], size: u16, len: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(s);
        b
    }

    #[test]
    fn utf8_strings() {
        assert_eq!(string_in(&shfl(b"/a\0", 3, 2), true).unwrap(), "/a");
        // Unterminated, length beyond size, size beyond buffer, interior NUL, bad UTF-8.
        assert!(string_in(&shfl(b"/ab", 3, 3), true).is_err());
        assert!(string_in(&shfl(b"/a\0", 3, 5), true).is_err());
        assert!(string_in(&shfl(b"/a\0", 40, 2), true).is_err());
        assert_eq!(
            string_in(&shfl(b"a\0b\0", 4, 3), true),
            Err(VERR_INVALID_NAME)
        );
        assert_eq!(
            string_in(&shfl(b"\xff\0", 2, 1), true),
            Err(VERR_NO_TRANSLATION)
        );
        assert!(string_in(&[1, 0, 0, 0], true).is_err());
        let enc = string_bytes("hé", true);
        assert_eq!(string_in(&enc, true).unwrap(), "hé");
    }

    #[test]
    fn utf16_strings() {
        let enc = string_bytes("a\u{263a}", false);
        assert_eq!(enc[0..4], [6, 0, 4, 0]);
        assert_eq!(string_in(&enc, false).unwrap(), "a\u{263a}");
        assert!(string_in(&shfl(b"a\0b", 3, 1), false).is_err());
        // Lone surrogate.
        assert_eq!(
            string_in(&shfl(b"\x00\xd8\0\0", 4, 2), false),
            Err(VERR_NO_TRANSLATION)
        );
    }

    #[test]
    fn string_out_respects_guest_size() {
        let mut b = shfl(&[0; 4], 4, 0);
        assert_eq!(string_out(&mut b, "abcd", true), Err(VERR_BUFFER_OVERFLOW));
        assert_eq!(string_out(&mut b, "abc", true), Ok(()));
        assert_eq!(&b[2..8], b"\x03\0abc\0");
        let mut lying = shfl(&[0; 4], 400, 0);
        assert_eq!(
            string_out(&mut lying, "a", true),
            Err(VERR_INVALID_PARAMETER)
        );
    }

    #[test]
    fn dir_entry_layout_matches_linux_walk() {
        let e = dir_entry(&ObjInfo::default(), "name", true);
        assert_eq!(e.len(), 126 + 5);
        assert_eq!(u16::from_le_bytes([e[122], e[123]]), 5);
        assert_eq!(u16::from_le_bytes([e[124], e[125]]), 4);
        assert_eq!(&e[126..], b"name\0");
    }

    #[test]
    fn dos_bits() {
        assert_eq!(ObjInfo::mode_with_dos(0o040755), 0o040755 | 0x10_0000);
        assert_eq!(ObjInfo::mode_with_dos(0o100444), 0o100444 | 0x1_0000);
        assert_eq!(ObjInfo::mode_with_dos(0o100644), 0o100644 | 0x80_0000);
    }

    proptest! {
        #[test]
        fn string_in_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64), utf8 in any::<bool>()) {
            let _ = string_in(&b, utf8);
            let mut o = b.clone();
            let _ = string_out(&mut o, "x", utf8);
            let _ = CreateParms::decode(&b);
        }
    }
}
