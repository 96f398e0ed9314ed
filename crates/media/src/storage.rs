//! Byte storage under an image: a host file (locked, synced) or memory (tests, fuzzing).
//!
//! Every format works on a [`Storage`], so parsers can be exercised on in-memory
//! bytes and a file's errors always carry its path.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FallocateFlags, FlockOperation};

use crate::error::{MediaError, Result};

/// Random-access bytes that an image format lives in.
///
/// Reads are exact: a read that reaches past the end is a [`MediaError::Truncated`]
/// naming the file, never a short read.
pub trait Storage: Send {
    /// The path (or a descriptive name) used in error messages.
    fn path(&self) -> &Path;
    /// Current length in bytes.
    fn len(&self) -> u64;
    /// Whether the storage has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Fill `buf` from `offset`; error if any byte lies past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Write all of `buf` at `offset`, growing the storage if needed.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()>;
    /// Truncate or extend (with zeros).
    fn set_len(&mut self, len: u64) -> Result<()>;
    /// Make all written data durable (fdatasync for files).
    fn sync_data(&mut self) -> Result<()>;
    /// Deallocate a range so it reads as zeros; the length stays.
    fn punch_hole(&mut self, offset: u64, len: u64) -> Result<()>;
    /// Reserve host space for a range without changing contents (best effort).
    fn preallocate(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = offset.saturating_add(len);
        if end > self.len() {
            self.set_len(end)?;
        }
        Ok(())
    }
}

fn check_read_range(path: &Path, offset: u64, len: usize, file_size: u64) -> Result<()> {
    let end = offset
        .checked_add(len as u64)
        .ok_or_else(|| MediaError::Truncated {
            path: path.to_path_buf(),
            offset,
            end: u64::MAX,
            file_size,
        })?;
    if end > file_size {
        return Err(MediaError::Truncated {
            path: path.to_path_buf(),
            offset,
            end,
            file_size,
        });
    }
    Ok(())
}

/// How a [`FileStorage`] is locked against other users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// No lock (inspection tools only).
    None,
    /// Shared: any number of readers, no writer (parents of a chain, read-only media).
    Shared,
    /// Exclusive: the one writer (the top image of a running VM's disk).
    Exclusive,
}

/// A host file with an advisory `flock` held for as long as it is open.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    len: u64,
    read_only: bool,
}

impl FileStorage {
    /// Open an existing file, taking the lock without blocking.
    pub fn open(path: &Path, writable: bool, lock: LockMode) -> Result<FileStorage> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| MediaError::io(path, "open", e))?;
        Self::from_file(file, path, !writable, lock)
    }

    /// Create a new file, locked exclusively; fails if it exists (never clobber a disk
    /// image).
    pub fn create(path: &Path) -> Result<FileStorage> {
        Self::create_with_lock(path, LockMode::Exclusive)
    }

    /// Create a new file with the given lock; fails if it exists.
    pub fn create_with_lock(path: &Path, lock: LockMode) -> Result<FileStorage> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| MediaError::io(path, "create", e))?;
        Self::from_file(file, path, false, lock)
    }

    fn from_file(file: File, path: &Path, read_only: bool, lock: LockMode) -> Result<FileStorage> {
        let op = match lock {
            LockMode::None => None,
            LockMode::Shared => Some(FlockOperation::NonBlockingLockShared),
            LockMode::Exclusive => Some(FlockOperation::NonBlockingLockExclusive),
        };
        if let Some(op) = op {
            match rustix::fs::flock(&file, op) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(MediaError::Locked {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => return Err(MediaError::io(path, "lock", e.into())),
            }
        }
        let meta = file
            .metadata()
            .map_err(|e| MediaError::io(path, "stat", e))?;
        let len = if meta.file_type().is_block_device() {
            // Block devices report 0 in metadata; seek to the end instead.
            use std::io::Seek;
            let mut f = &file;
            f.seek(std::io::SeekFrom::End(0))
                .map_err(|e| MediaError::io(path, "size", e))?
        } else {
            meta.len()
        };
        Ok(FileStorage {
            file,
            path: path.to_path_buf(),
            len,
            read_only,
        })
    }

    /// The open file (for copy offload by the cloner).
    pub fn file(&self) -> &File {
        &self.file
    }
}

use std::os::unix::fs::FileTypeExt;

impl Storage for FileStorage {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_read_range(&self.path, offset, buf.len(), self.len)?;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                MediaError::Truncated {
                    path: self.path.clone(),
                    offset,
                    end: offset.saturating_add(buf.len() as u64),
                    file_size: self.len,
                }
            } else {
                MediaError::io(&self.path, "read", e)
            }
        })
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        if self.read_only {
            return Err(MediaError::ReadOnly {
                path: self.path.clone(),
            });
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| MediaError::InvalidArgument("write offset overflows".into()))?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| MediaError::io(&self.path, "write", e))?;
        self.len = self.len.max(end);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        if self.read_only {
            return Err(MediaError::ReadOnly {
                path: self.path.clone(),
            });
        }
        self.file
            .set_len(len)
            .map_err(|e| MediaError::io(&self.path, "truncate", e))?;
        self.len = len;
        Ok(())
    }

    fn sync_data(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        // File::sync_data is fdatasync(2) on Linux.
        self.file
            .sync_data()
            .map_err(|e| MediaError::io(&self.path, "fdatasync", e))
    }

    fn punch_hole(&mut self, offset: u64, len: u64) -> Result<()> {
        if self.read_only {
            return Err(MediaError::ReadOnly {
                path: self.path.clone(),
            });
        }
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, flags, offset, len) {
            Ok(()) => Ok(()),
            Err(_) => {
                // File systems without hole punching: write zeros instead, so the
                // range still reads as zeros.
                let zeros = vec![0u8; 1 << 20];
                let mut pos = offset;
                let end = offset.saturating_add(len);
                while pos < end {
                    let n = (end - pos).min(zeros.len() as u64) as usize;
                    self.write_at(&zeros[..n], pos)?;
                    pos += n as u64;
                }
                Ok(())
            }
        }
    }

    fn preallocate(&mut self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if rustix::fs::fallocate(&self.file, FallocateFlags::empty(), offset, len).is_err() {
            // Not supported (e.g. tmpfs variants): a sparse extension reads the same.
        }
        let end = offset.saturating_add(len);
        if end > self.len {
            self.set_len(end)?;
        }
        Ok(())
    }
}

/// Bytes in memory: for unit tests and fuzz targets.
#[derive(Debug, Clone)]
pub struct MemStorage {
    /// The contents.
    pub data: Vec<u8>,
    name: PathBuf,
    read_only: bool,
    /// Largest size writes may grow to (keeps fuzzed "absurd sizes" from eating memory).
    pub max_len: u64,
}

impl MemStorage {
    /// Wrap bytes under a display name.
    pub fn new(name: &str, data: Vec<u8>) -> MemStorage {
        MemStorage {
            data,
            name: PathBuf::from(name),
            read_only: false,
            max_len: 1 << 32,
        }
    }

    /// A read-only view.
    pub fn read_only(name: &str, data: Vec<u8>) -> MemStorage {
        MemStorage {
            read_only: true,
            ..MemStorage::new(name, data)
        }
    }
}

impl Storage for MemStorage {
    fn path(&self) -> &Path {
        &self.name
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_read_range(&self.name, offset, buf.len(), self.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        if self.read_only {
            return Err(MediaError::ReadOnly {
                path: self.name.clone(),
            });
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.max_len)
            .ok_or_else(|| {
                MediaError::io(
                    &self.name,
                    "write",
                    std::io::Error::other("memory storage limit"),
                )
            })?;
        if end as usize > self.data.len() {
            self.data.resize(end as usize, 0);
        }
        self.data[offset as usize..end as usize].copy_from_slice(buf);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        if len > self.max_len {
            return Err(MediaError::io(
                &self.name,
                "truncate",
                std::io::Error::other("memory storage limit"),
            ));
        }
        self.data.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&mut self) -> Result<()> {
        Ok(())
    }

    fn punch_hole(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = offset.saturating_add(len).min(self.len());
        if offset < end {
            self.data[offset as usize..end as usize].fill(0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_past_end_is_truncated_error_naming_file() {
        let s = MemStorage::new("disk.vdi", vec![1, 2, 3]);
        let mut b = [0u8; 4];
        let e = s.read_at(&mut b, 0).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("disk.vdi") && msg.contains("truncated"),
            "{msg}"
        );
        assert!(s.read_at(&mut b[..1], u64::MAX).is_err());
    }

    #[test]
    fn exclusive_lock_excludes_second_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.img");
        std::fs::write(&p, [0u8; 512]).unwrap();
        let _a = FileStorage::open(&p, true, LockMode::Exclusive).unwrap();
        let e = FileStorage::open(&p, true, LockMode::Exclusive).unwrap_err();
        assert!(matches!(e, MediaError::Locked { .. }), "{e}");
        let e = FileStorage::open(&p, false, LockMode::Shared).unwrap_err();
        assert!(matches!(e, MediaError::Locked { .. }), "{e}");
    }

    #[test]
    fn shared_locks_coexist() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.img");
        std::fs::write(&p, [0u8; 512]).unwrap();
        let _a = FileStorage::open(&p, false, LockMode::Shared).unwrap();
        let _b = FileStorage::open(&p, false, LockMode::Shared).unwrap();
        assert!(FileStorage::open(&p, true, LockMode::Exclusive).is_err());
    }
}
