//! Host file-system access confined to a share root.
//!
//! Every access starts from the share's open root directory handle and resolves the guest's
//! (already lexically clean, see `path`) components with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`, so the kernel itself refuses anything that would leave the
//! share: `..` above the root, absolute symlinks, relative symlinks climbing out, and the
//! same done by a rename race between our check and our use (there is no separate check).
//! When the client asked to see symlinks as symlinks (Linux vboxsf does), symlinks are not
//! followed at all (`RESOLVE_NO_SYMLINKS`, `O_NOFOLLOW`). Operations that name an entry
//! (create, mkdir, unlink, rename, symlink) open the parent directory that way and then act
//! on one plain name relative to that handle, never following the final component.

use super::path::SharePath;
use super::wire::{ObjInfo, VolInfo};
use crate::status::{from_errno, VERR_ACCESS_DENIED};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// A host error turned into a guest status, keeping the errno for callers that branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsError(pub Errno);

impl FsError {
    /// The IPRT status for the guest. Escape attempts (EXDEV from RESOLVE_BENEATH, ELOOP
    /// from a refused symlink) become "access denied".
    pub fn status(&self) -> i32 {
        if self.0 == Errno::XDEV {
            VERR_ACCESS_DENIED
        } else {
            from_errno(self.0.raw_os_error())
        }
    }
}

impl From<Errno> for FsError {
    fn from(e: Errno) -> Self {
        FsError(e)
    }
}

/// Result of the file-system layer.
pub type FsResult<T> = Result<T, FsError>;

/// How symlinks are treated while resolving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Never follow a symlink (client asked for symlinks as symlinks).
    Never,
    /// Follow symlinks that stay inside the share.
    Beneath,
}

fn resolve_flags(follow: Follow) -> ResolveFlags {
    match follow {
        Follow::Never => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        Follow::Beneath => ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    }
}

/// Open `path` beneath `root` with `flags`. With [`Follow::Never`] a final symlink is
/// refused (ELOOP) unless `flags` holds `O_PATH | O_NOFOLLOW`, which opens the link itself.
pub fn open(
    root: &OwnedFd,
    path: &SharePath,
    flags: OFlags,
    mode: Mode,
    follow: Follow,
) -> FsResult<OwnedFd> {
    // openat2 is strict: O_PATH takes only O_DIRECTORY / O_NOFOLLOW / O_CLOEXEC, and a
    // mode without O_CREAT is an error.
    let mut flags = flags | OFlags::CLOEXEC;
    if !flags.contains(OFlags::PATH) {
        flags |= OFlags::NOCTTY;
        if follow == Follow::Never {
            flags |= OFlags::NOFOLLOW;
        }
    }
    let mode = if flags.contains(OFlags::CREATE) {
        mode
    } else {
        Mode::empty()
    };
    loop {
        match rustix::fs::openat2(root, path.relative(), flags, mode, resolve_flags(follow)) {
            // openat2 asks to retry when a rename raced the lookup.
            Err(Errno::AGAIN) => continue,
            r => return Ok(r?),
        }
    }
}

/// Open the directory that holds the last component of `path`, and return it with that
/// component. None for the share root (which has no name to act on).
pub fn open_parent<'p>(
    root: &OwnedFd,
    path: &'p SharePath,
    follow: Follow,
) -> FsResult<Option<(OwnedFd, &'p str)>> {
    let Some((parent, leaf)) = path.split_last() else {
        return Ok(None);
    };
    let fd = open(
        root,
        &parent,
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
        follow,
    )?;
    Ok(Some((fd, leaf)))
}

/// Object information of `path`; with `lstat` a final symlink is described itself.
pub fn stat(root: &OwnedFd, path: &SharePath, follow: Follow, lstat: bool) -> FsResult<ObjInfo> {
    let flags = if lstat {
        OFlags::PATH | OFlags::NOFOLLOW
    } else {
        OFlags::PATH
    };
    let fd = open(root, path, flags, Mode::empty(), follow)?;
    fstat(&fd)
}

/// Object information of an open handle.
pub fn fstat(fd: impl AsFd) -> FsResult<ObjInfo> {
    Ok(info_from_stat(&rustix::fs::fstat(fd)?))
}

/// Object information of `name` inside the open directory `dir`, not following it.
pub fn lstat_at(dir: impl AsFd, name: &str) -> FsResult<ObjInfo> {
    Ok(info_from_stat(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

fn ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Convert a host stat (field types differ per architecture, hence the casts).
#[allow(clippy::unnecessary_cast)]
pub fn info_from_stat(st: &rustix::fs::Stat) -> ObjInfo {
    let mtime = ns(st.st_mtime as i64, st.st_mtime_nsec as i64);
    let ctime = ns(st.st_ctime as i64, st.st_ctime_nsec as i64);
    ObjInfo {
        size: st.st_size as i64,
        allocated: (st.st_blocks as i64).saturating_mul(512),
        atime: ns(st.st_atime as i64, st.st_atime_nsec as i64),
        mtime,
        ctime,
        btime: ctime,
        mode: ObjInfo::mode_with_dos(st.st_mode as u32),
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        nlink: u32::try_from(st.st_nlink as u64).unwrap_or(u32::MAX),
        dev: st.st_dev as u32,
        ino: st.st_ino as u64,
        rdev: st.st_rdev as u32,
    }
}

/// Volume information of the file system holding `fd`.
pub fn volume(fd: impl AsFd, read_only: bool) -> FsResult<VolInfo> {
    let v = rustix::fs::fstatvfs(fd)?;
    let frsize = if v.f_frsize != 0 {
        v.f_frsize
    } else {
        v.f_bsize
    };
    let clamp = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    Ok(VolInfo {
        total: clamp(v.f_blocks.saturating_mul(frsize)),
        available: clamp(v.f_bavail.saturating_mul(frsize)),
        unit: u32::try_from(v.f_bsize).unwrap_or(4096).max(1),
        sector: 512,
        serial: v.f_fsid as u32,
        max_component: u32::try_from(v.f_namemax).unwrap_or(255),
        read_only,
    })
}

/// Lexical check of a symlink target for the "subtree only" policy: relative, and never
/// climbing above the share root from the link's directory (`depth` components below it).
pub fn target_stays_inside(target: &str, depth: usize) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut level = depth as i64;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            _ => level += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets() {
        assert!(target_stays_inside("a/b", 0));
        assert!(target_stays_inside("../x", 1));
        assert!(!target_stays_inside("../x", 0));
        assert!(!target_stays_inside("/etc/passwd", 3));
        assert!(!target_stays_inside("a/../../x", 0));
        assert!(!target_stays_inside("", 0));
    }
}
