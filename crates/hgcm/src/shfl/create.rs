//! CREATE: look up, open, create or truncate a file or directory, with every
//! SHFL_CF_* combination VirtualBox accepts. "Expected" failures (not found, exists) are
//! reported in `Result` with a nil handle and status 0; real errors as a negative status.

use super::fsops::{self, FsError};
use super::path::SharePath;
use super::wire::CreateParms;
use super::{Client, Handle, HandleKind, Mapping, SharedFolders, NIL_HANDLE};
use crate::status::*;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// `SHFL_CF_*` create flags.
#[allow(missing_docs)]
pub mod cf {
    pub const LOOKUP: u32 = 0x1;
    pub const OPEN_TARGET_DIRECTORY: u32 = 0x2;
    pub const DIRECTORY: u32 = 0x4;
    pub const ACT_MASK_IF_EXISTS: u32 = 0xf0;
    pub const ACT_OPEN_IF_EXISTS: u32 = 0x00;
    pub const ACT_FAIL_IF_EXISTS: u32 = 0x10;
    pub const ACT_REPLACE_IF_EXISTS: u32 = 0x20;
    pub const ACT_OVERWRITE_IF_EXISTS: u32 = 0x30;
    pub const ACT_MASK_IF_NEW: u32 = 0xf00;
    pub const ACT_CREATE_IF_NEW: u32 = 0x000;
    pub const ACT_FAIL_IF_NEW: u32 = 0x100;
    pub const ACCESS_READ: u32 = 0x1000;
    pub const ACCESS_WRITE: u32 = 0x2000;
    pub const ACCESS_APPEND: u32 = 0x40000;
}

/// `SHFL_*` create results.
#[allow(missing_docs)]
pub mod result {
    pub const NO_RESULT: u32 = 0;
    pub const PATH_NOT_FOUND: u32 = 1;
    pub const FILE_NOT_FOUND: u32 = 2;
    pub const FILE_EXISTS: u32 = 3;
    pub const FILE_CREATED: u32 = 4;
    pub const FILE_REPLACED: u32 = 5;
}

use cf::*;

impl SharedFolders {
    /// Result code for a path that does not exist: is only the leaf missing?
    fn missing(m: &Mapping, p: &SharePath, follow: fsops::Follow) -> u32 {
        match p.split_last() {
            Some((parent, _)) => match fsops::stat(&m.root, &parent, follow, false) {
                Ok(i) if i.is_dir() => result::FILE_NOT_FOUND,
                _ => result::PATH_NOT_FOUND,
            },
            None => result::FILE_NOT_FOUND,
        }
    }

    pub(super) fn create(
        &self,
        c: &mut Client,
        root: u32,
        path: &str,
        parms: &mut CreateParms,
    ) -> i32 {
        let guest_handle = parms.handle;
        parms.handle = NIL_HANDLE;
        parms.result = result::NO_RESULT;
        let mut p = match self.parse(c, path) {
            Ok(p) => p,
            Err(rc) => return rc,
        };
        let m = match self.mapping(c, root) {
            Ok(m) => m,
            Err(rc) => return rc,
        };
        let follow = c.follow();
        let lstat = c.show_symlinks;
        let mut flags = parms.flags;
        if flags & LOOKUP != 0 {
            match fsops::stat(&m.root, &p, follow, lstat) {
                Ok(info) => {
                    parms.result = result::FILE_EXISTS;
                    parms.info = info;
                }
                Err(FsError(Errno::NOENT)) => parms.result = Self::missing(m, &p, follow),
                Err(FsError(Errno::NOTDIR)) => parms.result = result::PATH_NOT_FOUND,
                Err(e) => return e.status(),
            }
            return VINF_SUCCESS;
        }
        if flags & OPEN_TARGET_DIRECTORY != 0 {
            if let Some((parent, _)) = p.split_last() {
                p = parent;
            }
            flags |= DIRECTORY;
        }
        if let Ok(i) = fsops::stat(&m.root, &p, follow, lstat) {
            if i.is_dir() {
                flags |= DIRECTORY;
            }
        }
        let if_exists = flags & ACT_MASK_IF_EXISTS;
        let if_new = flags & ACT_MASK_IF_NEW;
        let modifies = if_exists == ACT_REPLACE_IF_EXISTS
            || if_exists == ACT_OVERWRITE_IF_EXISTS
            || if_new == ACT_CREATE_IF_NEW;
        if modifies && !m.cfg.writable {
            return VERR_WRITE_PROTECT;
        }
        let opened = if flags & DIRECTORY != 0 {
            self.create_dir(m, &p, flags, follow, parms)
        } else {
            self.create_file(m, &p, flags, follow, parms, guest_handle)
        };
        let (fd, kind) = match opened {
            Ok(Some(x)) => x,
            Ok(None) => return VINF_SUCCESS,
            Err(rc) => return rc,
        };
        match fsops::fstat(&fd) {
            Ok(i) => parms.info = i,
            Err(e) => return e.status(),
        }
        match c.add_handle(Handle {
            root,
            fd,
            path: p,
            kind,
        }) {
            Ok(h) => {
                parms.handle = h;
                VINF_SUCCESS
            }
            Err(rc) => rc,
        }
    }

    fn create_file(
        &self,
        m: &Mapping,
        p: &SharePath,
        flags: u32,
        follow: fsops::Follow,
        parms: &mut CreateParms,
        guest_handle: u64,
    ) -> Result<Option<(OwnedFd, HandleKind)>, i32> {
        let read = flags & ACCESS_READ != 0;
        // Write access is silently dropped on a read-only share.
        let write = flags & ACCESS_WRITE != 0 && m.cfg.writable;
        let if_exists = flags & ACT_MASK_IF_EXISTS;
        let if_new = flags & ACT_MASK_IF_NEW;
        let truncate = if_exists == ACT_REPLACE_IF_EXISTS || if_exists == ACT_OVERWRITE_IF_EXISTS;
        let access = |trunc: bool| {
            let w = write || trunc;
            let mut o = match (read, w) {
                (_, false) => OFlags::RDONLY,
                (false, true) => OFlags::WRONLY,
                (true, true) => OFlags::RDWR,
            };
            if w && flags & ACCESS_APPEND != 0 {
                o |= OFlags::APPEND;
            }
            // A FIFO planted in the share must not block the service thread in open().
            o | OFlags::NONBLOCK
        };
        let mut mode = parms.info.mode & 0o777;
        if guest_handle != NIL_HANDLE || mode == 0 {
            mode = 0o644;
        }
        let mode = Mode::from_raw_mode(mode);
        let open = |o: OFlags| fsops::open(&m.root, p, o, mode, follow);
        let exclusive = OFlags::CREATE | OFlags::EXCL;
        let outcome: Result<(OwnedFd, u32), FsError> = match (if_exists, if_new) {
            (ACT_OPEN_IF_EXISTS, ACT_CREATE_IF_NEW) => match open(access(false) | exclusive) {
                Ok(fd) => Ok((fd, result::FILE_CREATED)),
                Err(FsError(Errno::EXIST)) => {
                    open(access(false)).map(|fd| (fd, result::FILE_EXISTS))
                }
                Err(e) => Err(e),
            },
            (ACT_OPEN_IF_EXISTS, ACT_FAIL_IF_NEW) => {
                open(access(false)).map(|fd| (fd, result::FILE_EXISTS))
            }
            (ACT_FAIL_IF_EXISTS, ACT_CREATE_IF_NEW) => match open(access(false) | exclusive) {
                Ok(fd) => Ok((fd, result::FILE_CREATED)),
                Err(FsError(Errno::EXIST)) => {
                    parms.result = result::FILE_EXISTS;
                    if let Ok(i) = fsops::stat(&m.root, p, follow, true) {
                        parms.info = i;
                    }
                    return Ok(None);
                }
                Err(e) => Err(e),
            },
            (ACT_REPLACE_IF_EXISTS | ACT_OVERWRITE_IF_EXISTS, ACT_CREATE_IF_NEW) => {
                match open(access(true) | exclusive) {
                    Ok(fd) => Ok((fd, result::FILE_CREATED)),
                    Err(FsError(Errno::EXIST)) => {
                        open(access(true) | OFlags::TRUNC).map(|fd| (fd, result::FILE_REPLACED))
                    }
                    Err(e) => Err(e),
                }
            }
            (ACT_REPLACE_IF_EXISTS | ACT_OVERWRITE_IF_EXISTS, ACT_FAIL_IF_NEW) => {
                open(access(true) | OFlags::TRUNC).map(|fd| (fd, result::FILE_REPLACED))
            }
            _ => return Err(VERR_INVALID_PARAMETER),
        };
        let (fd, res) = match outcome {
            Ok(x) => x,
            Err(FsError(Errno::NOENT)) => {
                parms.result = Self::missing(m, p, follow);
                return Ok(None);
            }
            Err(FsError(Errno::NOTDIR)) => {
                parms.result = result::PATH_NOT_FOUND;
                return Ok(None);
            }
            Err(e) => return Err(e.status()),
        };
        let info = fsops::fstat(&fd).map_err(|e| e.status())?;
        // Device nodes, FIFOs and sockets planted on the host side are not for the guest.
        if !info.is_file() {
            return Err(VERR_ACCESS_DENIED);
        }
        if res == result::FILE_REPLACED && parms.info.size > 0 {
            let size = u64::try_from(parms.info.size).map_err(|_| VERR_INVALID_PARAMETER)?;
            rustix::fs::ftruncate(&fd, size).map_err(|e| FsError(e).status())?;
        }
        parms.result = res;
        Ok(Some((
            fd,
            HandleKind::File {
                append: write && flags & ACCESS_APPEND != 0,
                writable: write || truncate,
            },
        )))
    }

    fn create_dir(
        &self,
        m: &Mapping,
        p: &SharePath,
        flags: u32,
        follow: fsops::Follow,
        parms: &mut CreateParms,
    ) -> Result<Option<(OwnedFd, HandleKind)>, i32> {
        let if_exists = flags & ACT_MASK_IF_EXISTS;
        let if_new = flags & ACT_MASK_IF_NEW;
        let mut created = false;
        match if_new {
            ACT_CREATE_IF_NEW => {
                let made = match fsops::open_parent(&m.root, p, follow) {
                    Ok(Some((dir, leaf))) => {
                        rustix::fs::mkdirat(&dir, leaf, Mode::from_raw_mode(0o777)).map_err(FsError)
                    }
                    Ok(None) => Err(FsError(Errno::EXIST)),
                    Err(e) => Err(e),
                };
                match made {
                    Ok(()) => created = true,
                    Err(FsError(Errno::EXIST)) => {
                        parms.result = result::FILE_EXISTS;
                        if if_exists != ACT_OPEN_IF_EXISTS {
                            if let Ok(i) = fsops::stat(&m.root, p, follow, true) {
                                parms.info = i;
                            }
                            return Err(VERR_ALREADY_EXISTS);
                        }
                    }
                    Err(FsError(Errno::NOENT | Errno::NOTDIR)) => {
                        parms.result = result::PATH_NOT_FOUND;
                        return Err(VERR_PATH_NOT_FOUND);
                    }
                    Err(e) => return Err(e.status()),
                }
            }
            ACT_FAIL_IF_NEW => {}
            _ => return Err(VERR_INVALID_PARAMETER),
        }
        match fsops::open(
            &m.root,
            p,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
            follow,
        ) {
            Ok(fd) => {
                parms.result = if created {
                    result::FILE_CREATED
                } else {
                    result::FILE_EXISTS
                };
                Ok(Some((fd, HandleKind::Dir(Default::default()))))
            }
            Err(FsError(Errno::NOENT)) => {
                let r = Self::missing(m, p, follow);
                parms.result = r;
                Err(if r == result::FILE_NOT_FOUND {
                    VERR_FILE_NOT_FOUND
                } else {
                    VERR_PATH_NOT_FOUND
                })
            }
            Err(FsError(Errno::NOTDIR)) => {
                if fsops::stat(&m.root, p, follow, true).is_ok() {
                    parms.result = result::FILE_EXISTS;
                    Err(VERR_NOT_A_DIRECTORY)
                } else {
                    parms.result = result::PATH_NOT_FOUND;
                    Err(VERR_PATH_NOT_FOUND)
                }
            }
            Err(e) => Err(e.status()),
        }
    }
}
