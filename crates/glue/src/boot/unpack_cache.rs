//! A cache of kernels unpacked on the host, so that only the first direct boot of a kernel
//! pays for its xz decoding (about 0.8 s for a Debian kernel, whose vmlinux is 66 MB) and
//! later boots of the same bzImage read the vmlinux back (a few tens of milliseconds).
//!
//! Entries are keyed by the SHA-256 of the compressed payload, so a changed kernel never
//! meets a stale entry. Each file is the vmlinux followed by a trailer (length and CRC-32 of
//! the contents), checked on every read: a file cut short or damaged (a crash while the
//! host wrote it back, a full disk) is unpacked again instead of booted. Files are written
//! under a temporary name and renamed into place, so concurrent VMs never see a half-written
//! entry. The newest [`UnpackCache::KEEP`] entries are kept.
//!
//! Where: `$NOVABOX_KERNEL_CACHE` (a directory, or `off` to disable), else
//! `$XDG_CACHE_HOME/novabox/kernels`, else `~/.cache/novabox/kernels`.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Trailer after the vmlinux bytes: magic, length (LE u64), CRC-32 (LE u32).
const MAGIC: &[u8; 8] = b"NBXVMLX1";
const TRAILER: usize = 8 + 8 + 4;

/// A directory of unpacked kernels.
#[derive(Debug, Clone)]
pub struct UnpackCache {
    dir: PathBuf,
}

impl UnpackCache {
    /// How many unpacked kernels are kept (the least recently used go first).
    pub const KEEP: usize = 4;

    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache the environment names, or None when `NOVABOX_KERNEL_CACHE=off` or no
    /// home directory is known.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(v) = var("NOVABOX_KERNEL_CACHE") {
            return (v != "off").then(|| Self::new(v));
        }
        let base = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(Self::new(base.join("novabox").join("kernels")))
    }

    /// The unpacked form of `payload`: from the cache when an intact entry exists, else
    /// from `unpack`, whose result is then stored (a failure to store is logged, not
    /// returned: the cache only saves time).
    pub fn get_or_unpack(
        &self,
        payload: &[u8],
        unpack: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, String> {
        let path = self.entry_path(payload);
        if let Some(v) = read_entry(&path) {
            // Touch it so eviction keeps the kernels in use.
            let _ = std::fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            tracing::info!("unpacked kernel from the cache {}", path.display());
            return Ok(v);
        }
        let v = unpack(payload)?;
        match self.store(&path, &v) {
            Ok(()) => tracing::info!("unpacked kernel stored in {}", path.display()),
            Err(e) => tracing::warn!("unpacked kernel not cached in {}: {e}", path.display()),
        }
        Ok(v)
    }

    fn entry_path(&self, payload: &[u8]) -> PathBuf {
        // The format tag changes whenever unpacking could give another result.
        let digest = Sha256::new()
            .chain_update(b"novabox-vmlinux-1\0")
            .chain_update(payload)
            .finalize();
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.vmlinux"))
    }

    fn store(&self, path: &Path, v: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut trailer = Vec::with_capacity(TRAILER);
        trailer.extend_from_slice(MAGIC);
        trailer.extend_from_slice(&(v.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&crc32fast::hash(v).to_le_bytes());
        // Two writes rather than one copy of the whole vmlinux with the trailer appended.
        let r = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(v)?;
                f.write_all(&trailer)
            })
            .and_then(|()| std::fs::rename(&tmp, path));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r?;
        self.evict();
        Ok(())
    }

    /// Remove all but the [`Self::KEEP`] most recently used entries.
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "vmlinux"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, p) in entries.into_iter().skip(Self::KEEP) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The vmlinux of an intact entry, or None (missing, short, damaged).
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let mut b = std::fs::read(path).ok()?;
    let body = b.len().checked_sub(TRAILER)?;
    let t = &b[body..];
    let len = u64::from_le_bytes(t[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(t[16..20].try_into().ok()?);
    if &t[..8] != MAGIC || len != body as u64 || crc32fast::hash(&b[..body]) != crc {
        tracing::warn!("damaged kernel cache entry {} ignored", path.display());
        return None;
    }
    b.truncate(body);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("novabox-ucache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn second_lookup_is_served_from_the_cache() {
        let dir = tmpdir("hit");
        let c = UnpackCache::new(&dir);
        let calls = Cell::new(0);
        let unpack = |p: &[u8]| {
            calls.set(calls.get() + 1);
            Ok(p.repeat(3))
        };
        assert_eq!(c.get_or_unpack(b"abc", unpack).unwrap(), b"abcabcabc");
        assert_eq!(c.get_or_unpack(b"abc", unpack).unwrap(), b"abcabcabc");
        assert_eq!(calls.get(), 1);
        // Another payload is another entry.
        assert_eq!(c.get_or_unpack(b"xy", unpack).unwrap(), b"xyxyxy");
        assert_eq!(calls.get(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damaged_or_short_entries_are_unpacked_again() {
        let dir = tmpdir("damage");
        let c = UnpackCache::new(&dir);
        let calls = Cell::new(0);
        let unpack = |p: &[u8]| {
            calls.set(calls.get() + 1);
            Ok(p.to_vec())
        };
        let payload = vec![7u8; 1000];
        c.get_or_unpack(&payload, unpack).unwrap();
        let path = c.entry_path(&payload);
        // Flip one byte of the contents: the CRC catches it.
        let mut b = std::fs::read(&path).unwrap();
        b[10] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(c.get_or_unpack(&payload, unpack).unwrap(), payload);
        assert_eq!(calls.get(), 2);
        // Cut short (as after a crash): unpacked again, and the entry repaired.
        let b = std::fs::read(&path).unwrap();
        std::fs::write(&path, &b[..b.len() / 2]).unwrap();
        assert_eq!(c.get_or_unpack(&payload, unpack).unwrap(), payload);
        assert_eq!(calls.get(), 3);
        assert_eq!(c.get_or_unpack(&payload, unpack).unwrap(), payload);
        assert_eq!(calls.get(), 3);
        // Shorter than a trailer.
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(c.get_or_unpack(&payload, unpack).unwrap(), payload);
        assert_eq!(calls.get(), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn failures_are_not_cached_and_old_entries_are_evicted() {
        let dir = tmpdir("evict");
        let c = UnpackCache::new(&dir);
        assert!(c.get_or_unpack(b"bad", |_| Err("no".to_string())).is_err());
        assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
        for i in 0..UnpackCache::KEEP + 3 {
            c.get_or_unpack(&[i as u8], |p| Ok(p.to_vec())).unwrap();
        }
        let n = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(n, UnpackCache::KEEP);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
