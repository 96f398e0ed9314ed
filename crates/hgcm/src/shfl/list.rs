//! LIST: directory entries as back-to-back SHFLDIRINFO records, with a cursor per handle
//! so the guest can read a directory in several calls. Entries come from the host iterator
//! including `.` and `..` (Linux vboxsf shows whatever the host returns); `..` of the share
//! root describes the root itself, so nothing about the host directory above the share
//! leaks. An entry that does not fit is kept for the next call.

use super::fsops::{self, Follow};
use super::path::SharePath;
use super::wire;
use crate::status::*;
use rustix::fd::OwnedFd;

/// What one LIST call needs besides the cursor.
pub(super) struct Ctx<'a> {
    pub root: &'a OwnedFd,
    pub dir_fd: &'a OwnedFd,
    pub dir_path: &'a SharePath,
    pub utf8: bool,
    pub follow: Follow,
}

/// Outcome of one LIST call.
pub(super) struct Filled {
    pub used: usize,
    pub count: u32,
    pub more: bool,
    pub status: i32,
}

/// Iteration state of one directory handle.
#[derive(Default)]
pub(super) struct DirCursor {
    dir: Option<rustix::fs::Dir>,
    pending: Option<Vec<u8>>,
    exhausted: bool,
}

impl DirCursor {
    fn next_entry(&mut self, ctx: &Ctx<'_>) -> Result<Option<Vec<u8>>, i32> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        if self.exhausted {
            return Ok(None);
        }
        if self.dir.is_none() {
            self.dir = Some(
                rustix::fs::Dir::read_from(ctx.dir_fd).map_err(|e| fsops::FsError(e).status())?,
            );
        }
        let Some(dir) = self.dir.as_mut() else {
            return Ok(None);
        };
        loop {
            let entry = match dir.read() {
                None => {
                    self.exhausted = true;
                    return Ok(None);
                }
                Some(Err(e)) => return Err(fsops::FsError(e).status()),
                Some(Ok(e)) => e,
            };
            let Ok(name) = entry.file_name().to_str() else {
                continue; // not representable for the guest
            };
            let name = name.to_string();
            let info = match name.as_str() {
                "." => fsops::fstat(ctx.dir_fd),
                ".." if ctx.dir_path.is_root() => fsops::fstat(ctx.dir_fd),
                ".." => fsops::lstat_at(ctx.dir_fd, ".."),
                n => match ctx.follow {
                    Follow::Never => fsops::lstat_at(ctx.dir_fd, n),
                    Follow::Beneath => {
                        fsops::stat(ctx.root, &ctx.dir_path.join(n), Follow::Beneath, false)
                            .or_else(|_| fsops::lstat_at(ctx.dir_fd, n))
                    }
                },
            };
            // An entry that vanished meanwhile is skipped.
            let Ok(info) = info else { continue };
            return Ok(Some(wire::dir_entry(&info, &name, ctx.utf8)));
        }
    }

    /// Fill `out` (the guest's `cb` bytes) with whole entries.
    pub fn fill(&mut self, out: &mut [u8], flags: u32, ctx: Ctx<'_>) -> Result<Filled, i32> {
        if flags & 0x2 != 0 {
            if let Some(d) = self.dir.as_mut() {
                d.rewind();
            }
            self.pending = None;
            self.exhausted = false;
        }
        let mut used = 0usize;
        let mut count = 0u32;
        while let Some(e) = self.next_entry(&ctx)? {
            if e.len() > out.len() - used {
                self.pending = Some(e);
                if count == 0 {
                    return Ok(Filled {
                        used: 0,
                        count: 0,
                        more: true,
                        status: VINF_BUFFER_OVERFLOW,
                    });
                }
                break;
            }
            out[used..used + e.len()].copy_from_slice(&e);
            used += e.len();
            count += 1;
            if flags & 0x1 != 0 {
                break;
            }
        }
        if count == 0 {
            return Ok(Filled {
                used: 0,
                count: 0,
                more: false,
                status: VERR_NO_MORE_FILES,
            });
        }
        Ok(Filled {
            used,
            count,
            more: self.pending.is_some() || !self.exhausted,
            status: VINF_SUCCESS,
        })
    }
}
