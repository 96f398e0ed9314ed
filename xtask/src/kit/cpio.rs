//! Writer (and a small reader, for verification and tests) of the SVR4
//! "newc" cpio format, the one the Linux kernel unpacks as initramfs.
//!
//! Layout of one entry: a 110-byte ASCII header (`070701` followed by 13
//! eight-digit hex fields), the NUL-terminated name padded to a multiple of
//! four bytes (counting from the header start), then the data padded to four.
//! The archive ends with an entry named `TRAILER!!!`.
//!
//! The writer is deterministic: fixed mtime, uid/gid 0, inode numbers in
//! order of appearance, so the same input gives the same bytes (and hash).

use std::collections::BTreeMap;
use std::io::{self, Write};

/// Magic of the newc format without CRC.
const MAGIC: &[u8; 6] = b"070701";
/// Size of the fixed header: magic plus 13 fields of 8 hex digits.
const HEADER_LEN: usize = 6 + 13 * 8;
/// Name of the end-of-archive marker entry.
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`, as cpio stores them.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFMT: u32 = 0o170000;

/// Errors of the cpio writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing to the underlying sink failed.
    #[error("cpio write failed: {0}")]
    Io(#[from] io::Error),
    /// A name was empty, absolute, had `..`/empty components, or a NUL.
    #[error("invalid cpio path {0:?}")]
    BadPath(String),
    /// The same path was added twice.
    #[error("duplicate cpio path {0:?}")]
    Duplicate(String),
    /// A size does not fit the format's 32-bit fields.
    #[error("{0:?} is too large for cpio newc (limit 4 GiB)")]
    TooLarge(String),
    /// The bytes being read are not a well-formed newc archive.
    #[error("malformed cpio archive at offset {offset}: {what}")]
    Malformed {
        /// Byte offset of the problem.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
}

/// Kind of an archive entry, with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link to the given target.
    Symlink(String),
    /// A character device node (major, minor).
    CharDev(u32, u32),
}

/// One parsed entry (as returned by [`read_archive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without leading `/`.
    pub path: String,
    /// Permission bits (without the file-type bits).
    pub perm: u32,
    /// What the entry is.
    pub kind: EntryKind,
}

/// Streaming newc writer that also creates missing parent directories, so
/// the kernel (which never creates parents itself) can unpack every entry.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    /// Paths written so far, with whether each is a directory.
    seen: BTreeMap<String, bool>,
    mtime: u32,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`; every entry gets modification time `mtime`.
    pub fn new(out: W, mtime: u32) -> Self {
        Self {
            out,
            next_ino: 1,
            seen: BTreeMap::new(),
            mtime,
        }
    }

    /// Adds a directory (and its missing parents).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        let path = normalize(path)?;
        self.parents(&path)?;
        match self.seen.get(&path) {
            // Directories may be named again (e.g. explicitly after being
            // implied by a child); the first one wins.
            Some(true) => Ok(()),
            Some(false) => Err(CpioError::Duplicate(path)),
            None => self.entry(&path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[], true),
        }
    }

    /// Adds a regular file with `data`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.unique(&path)?;
        self.entry(&path, S_IFREG | (perm & 0o7777), 1, (0, 0), data, false)
    }

    /// Adds a symbolic link `path` -> `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        let path = normalize(path)?;
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::BadPath(target.to_string()));
        }
        self.parents(&path)?;
        self.unique(&path)?;
        self.entry(&path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes(), false)
    }

    /// Adds a character device node (needed for `/dev/console`, which the
    /// kernel opens for init before any devtmpfs is mounted).
    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.unique(&path)?;
        self.entry(
            &path,
            S_IFCHR | (perm & 0o7777),
            1,
            (major, minor),
            &[],
            false,
        )
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.raw_entry(TRAILER, 0, 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn unique(&mut self, path: &str) -> Result<(), CpioError> {
        if self.seen.contains_key(path) {
            return Err(CpioError::Duplicate(path.to_string()));
        }
        Ok(())
    }

    fn parents(&mut self, path: &str) -> Result<(), CpioError> {
        let mut end = 0;
        while let Some(pos) = path[end..].find('/') {
            let parent = &path[..end + pos];
            match self.seen.get(parent) {
                Some(true) => {}
                // A file cannot hold children: the kernel would fail to
                // create them.
                Some(false) => return Err(CpioError::BadPath(path.to_string())),
                None => {
                    let parent = parent.to_string();
                    self.entry(&parent, S_IFDIR | 0o755, 2, (0, 0), &[], true)?;
                }
            }
            end += pos + 1;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
        is_dir: bool,
    ) -> Result<(), CpioError> {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        self.seen.insert(path.to_string(), is_dir);
        self.raw_entry(path, ino, mode, nlink, rdev, data)
    }

    fn raw_entry(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(name.into()))?;
        let namesize =
            u32::try_from(name.len() + 1).map_err(|_| CpioError::TooLarge(name.into()))?;
        let fields = [
            ino, mode, 0, // uid
            0, // gid
            nlink, self.mtime, size, 0, // devmajor
            0, // devminor
            rdev.0, rdev.1, namesize, 0, // check (unused without CRC)
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for f in fields {
            header.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        header.resize(pad4(header.len()), 0);
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        let pad = pad4(data.len()) - data.len();
        self.out.write_all(&[0u8; 3][..pad])?;
        Ok(())
    }
}

/// Rounds `n` up to a multiple of four (header+name and data alignment).
fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Strips a leading `/` and rejects names the kernel would mis-handle.
fn normalize(path: &str) -> Result<String, CpioError> {
    let p = path.trim_start_matches('/');
    let bad = p.is_empty()
        || p.contains('\0')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(CpioError::BadPath(path.to_string()));
    }
    Ok(p.to_string())
}

/// Parses a newc archive (until its trailer) into entries. Used to verify
/// what the writer produced; every length is checked, so arbitrary bytes
/// give an error, never a panic.
pub fn read_archive(bytes: &[u8]) -> Result<Vec<Entry>, CpioError> {
    let mut entries = Vec::new();
    let mut off = 0usize;
    loop {
        let malformed = |what| CpioError::Malformed { offset: off, what };
        let header = bytes
            .get(off..off.checked_add(HEADER_LEN).ok_or(malformed("overflow"))?)
            .ok_or(malformed("truncated header"))?;
        if &header[..6] != MAGIC {
            return Err(malformed("bad magic"));
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let hex = &header[6 + i * 8..6 + (i + 1) * 8];
            let s = std::str::from_utf8(hex).map_err(|_| malformed("non-ascii field"))?;
            *f = u32::from_str_radix(s, 16).map_err(|_| malformed("bad hex field"))?;
        }
        let (mode, size, rmaj, rmin, namesize) = (
            fields[1],
            fields[6] as usize,
            fields[9],
            fields[10],
            fields[11] as usize,
        );
        let name_start = off + HEADER_LEN;
        let name_end = name_start
            .checked_add(namesize)
            .ok_or(malformed("overflow"))?;
        let name_bytes = bytes
            .get(name_start..name_end)
            .ok_or(malformed("truncated name"))?;
        let (last, name) = name_bytes.split_last().ok_or(malformed("empty name"))?;
        if *last != 0 {
            return Err(malformed("name not NUL-terminated"));
        }
        let name = std::str::from_utf8(name).map_err(|_| malformed("name not utf-8"))?;
        let data_start = off
            .checked_add(pad4(HEADER_LEN + namesize))
            .ok_or(malformed("overflow"))?;
        let data_end = data_start.checked_add(size).ok_or(malformed("overflow"))?;
        let data = bytes
            .get(data_start..data_end)
            .ok_or(malformed("truncated data"))?;
        if name == TRAILER {
            return Ok(entries);
        }
        let kind = match mode & S_IFMT {
            S_IFDIR => EntryKind::Dir,
            S_IFREG => EntryKind::File(data.to_vec()),
            S_IFLNK => EntryKind::Symlink(
                String::from_utf8(data.to_vec()).map_err(|_| malformed("link not utf-8"))?,
            ),
            S_IFCHR => EntryKind::CharDev(rmaj, rmin),
            _ => return Err(malformed("unsupported file type")),
        };
        entries.push(Entry {
            path: name.to_string(),
            perm: mode & 0o7777,
            kind,
        });
        off = data_start
            .checked_add(pad4(size))
            .ok_or(malformed("overflow"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new(), 0);
        w.file("/bin/busybox", 0o755, b"\x7fELFbusy").unwrap();
        w.symlink("bin/sh", "/bin/busybox").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.dir("lib/modules/6.1.0/kernel", 0o755).unwrap();
        w.file("lib/modules/6.1.0/modules.dep", 0o644, b"").unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn roundtrip_own_reader() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let entries = read_archive(&bytes).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "lib",
                "lib/modules",
                "lib/modules/6.1.0",
                "lib/modules/6.1.0/kernel",
                "lib/modules/6.1.0/modules.dep",
                "init"
            ]
        );
        assert_eq!(entries[1].kind, EntryKind::File(b"\x7fELFbusy".to_vec()));
        assert_eq!(entries[1].perm, 0o755);
        assert_eq!(entries[2].kind, EntryKind::Symlink("/bin/busybox".into()));
        assert_eq!(entries[4].kind, EntryKind::CharDev(5, 1));
        assert_eq!(entries[8].kind, EntryKind::Dir);
    }

    #[test]
    fn deterministic() {
        assert_eq!(sample(), sample());
    }

    /// Cross-checks the format with GNU cpio when the host has it.
    #[test]
    fn gnu_cpio_lists_archive() {
        use std::process::{Command, Stdio};
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio not installed: skipping GNU cpio cross-check");
            return;
        };
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 11, "{listing}");
        assert!(lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("bin/sh -> /bin/busybox"));
        assert!(lines[4].starts_with("crw-------") && lines[4].contains("5,"));
        assert!(lines[1].starts_with("-rwxr-xr-x") && lines[1].ends_with("bin/busybox"));
    }

    #[test]
    fn rejects_bad_paths_and_duplicates() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        for bad in ["", "/", "a//b", "a/../b", "./a", "a\0b"] {
            assert!(
                matches!(w.file(bad, 0o644, b""), Err(CpioError::BadPath(_))),
                "{bad:?}"
            );
        }
        w.file("x", 0o644, b"1").unwrap();
        assert!(matches!(
            w.file("/x", 0o644, b"2"),
            Err(CpioError::Duplicate(_))
        ));
        // A directory named twice is fine (first wins), and parents are implied.
        w.file("d/e", 0o644, b"").unwrap();
        w.dir("d", 0o700).unwrap();
        // Nothing can live under a file.
        assert!(matches!(
            w.file("x/y", 0o644, b""),
            Err(CpioError::BadPath(_))
        ));
        assert!(matches!(w.dir("x", 0o755), Err(CpioError::Duplicate(_))));
    }

    #[test]
    fn truncated_archives_are_errors() {
        let bytes = sample();
        for cut in [0, 5, 109, 111, 120, bytes.len() - 1] {
            assert!(read_archive(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_archive(&data);
        }

        #[test]
        fn reader_never_panics_on_mutated_archive(idx in 0usize..400, byte in any::<u8>()) {
            let mut bytes = sample();
            let i = idx % bytes.len();
            bytes[i] = byte;
            let _ = read_archive(&bytes);
        }

        #[test]
        fn files_roundtrip(files in proptest::collection::btree_map(
            "[a-z]{1,8}(/[a-z0-9_.-]{1,12}){0,3}",
            proptest::collection::vec(any::<u8>(), 0..70), 1..12)) {
            let mut w = CpioWriter::new(Vec::new(), 7);
            let mut expected = Vec::new();
            for (path, data) in &files {
                // A path may be a parent of another generated path; skip
                // those collisions, they are not what this property tests.
                if w.file(path, 0o640, data).is_ok() {
                    expected.push((path.clone(), data.clone()));
                }
            }
            let bytes = w.finish().unwrap();
            prop_assert_eq!(bytes.len() % 4, 0);
            let entries = read_archive(&bytes).unwrap();
            for (path, data) in expected {
                let e = entries.iter().find(|e| e.path == path).unwrap();
                prop_assert_eq!(&e.kind, &EntryKind::File(data));
                prop_assert_eq!(e.perm, 0o640);
            }
        }
    }
}
