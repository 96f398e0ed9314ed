//! `VBoxSharedFolders`: host directories exported to the guest, guest-visible-compatible
//! with VirtualBox's shared-folder service and the mainline Linux `vboxsf` driver.
//!
//! The guest is hostile: every string is validated (`wire`), every path is reduced to plain
//! components (`path`) and resolved by the kernel beneath the share's open root handle
//! (`fsops`), read-only shares refuse every modifying call, symlink creation is off unless
//! the machine allows it for the share, and every count and size is checked before use.
//! Errors reach the guest as VirtualBox status codes; nothing panics.

mod create;
pub mod fsops;
mod list;
pub mod path;
pub mod wire;

#[cfg(test)]
mod tests;

use crate::param::Param;
use crate::service::{Call, Service};
use crate::status::*;
use fsops::{Follow, FsError};
use path::SharePath;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::collections::HashMap;
use std::path::PathBuf;

/// The service name guests connect to.
pub const SERVICE_NAME: &str = "VBoxSharedFolders";
/// Most mappings VirtualBox supports.
pub const MAX_MAPPINGS: usize = 64;
/// Most open handles per client (VirtualBox's limit).
pub const MAX_HANDLES: usize = 4096;
/// Nil handle.
pub const NIL_HANDLE: u64 = u64::MAX;

/// Guest-callable function numbers (`SHFL_FN_*`).
#[allow(missing_docs)]
pub mod func {
    pub const QUERY_MAPPINGS: u32 = 1;
    pub const QUERY_MAP_NAME: u32 = 2;
    pub const CREATE: u32 = 3;
    pub const CLOSE: u32 = 4;
    pub const READ: u32 = 5;
    pub const WRITE: u32 = 6;
    pub const LOCK: u32 = 7;
    pub const LIST: u32 = 8;
    pub const INFORMATION: u32 = 9;
    pub const REMOVE: u32 = 11;
    pub const MAP_FOLDER_OLD: u32 = 12;
    pub const UNMAP_FOLDER: u32 = 13;
    pub const RENAME: u32 = 14;
    pub const FLUSH: u32 = 15;
    pub const SET_UTF8: u32 = 16;
    pub const MAP_FOLDER: u32 = 17;
    pub const READLINK: u32 = 18;
    pub const SYMLINK: u32 = 19;
    pub const SET_SYMLINKS: u32 = 20;
    pub const QUERY_MAP_INFO: u32 = 21;
    pub const WAIT_FOR_MAPPINGS_CHANGES: u32 = 22;
    pub const CANCEL_MAPPINGS_CHANGES_WAITS: u32 = 23;
    pub const SET_FILE_SIZE: u32 = 24;
    pub const QUERY_FEATURES: u32 = 25;
    pub const COPY_FILE: u32 = 26;
    pub const COPY_FILE_PART: u32 = 27;
    pub const CLOSE_AND_REMOVE: u32 = 28;
    pub const SET_ERROR_STYLE: u32 = 29;
}

/// One shared folder as the machine configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    /// The name the guest maps (matched case-insensitively).
    pub name: String,
    /// The host directory.
    pub host_path: PathBuf,
    /// The guest may modify the share.
    pub writable: bool,
    /// Mount automatically (VBoxService automount).
    pub auto_mount: bool,
    /// Where to auto-mount it in the guest ("" = the guest's default).
    pub auto_mount_point: String,
    /// The guest may create symlinks (VirtualBox: off unless enabled for the share).
    pub symlinks: bool,
}

impl ShareConfig {
    /// A writable share without auto-mount and without symlink creation.
    pub fn new(name: impl Into<String>, host_path: impl Into<PathBuf>) -> ShareConfig {
        ShareConfig {
            name: name.into(),
            host_path: host_path.into(),
            writable: true,
            auto_mount: false,
            auto_mount_point: String::new(),
            symlinks: false,
        }
    }
}

/// Errors setting up the service (host configuration, not guest input).
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The host directory cannot be opened.
    #[error("shared folder {name}: cannot open {path}: {err}")]
    Open {
        /// Share name.
        name: String,
        /// Host path.
        path: String,
        /// OS error.
        err: std::io::Error,
    },
    /// Two shares with the same name.
    #[error("shared folder {0} is defined twice")]
    Duplicate(String),
    /// More than 64 shares.
    #[error("at most {MAX_MAPPINGS} shared folders are supported")]
    TooMany,
    /// An empty or invalid name.
    #[error("invalid shared folder name {0:?}")]
    BadName(String),
}

struct Mapping {
    cfg: ShareConfig,
    root: OwnedFd,
}

enum HandleKind {
    File { append: bool, writable: bool },
    Dir(list::DirCursor),
}

struct Handle {
    root: u32,
    fd: OwnedFd,
    path: SharePath,
    kind: HandleKind,
}

struct Client {
    utf8: bool,
    show_symlinks: bool,
    delimiter: Option<char>,
    mapped: HashMap<u32, u32>,
    handles: HashMap<u64, Handle>,
    next_handle: u64,
    waits: Vec<Call>,
}

impl Client {
    fn new() -> Client {
        Client {
            utf8: false,
            show_symlinks: false,
            delimiter: None,
            mapped: HashMap::new(),
            handles: HashMap::new(),
            next_handle: 0,
            waits: Vec::new(),
        }
    }

    fn follow(&self) -> Follow {
        if self.show_symlinks {
            Follow::Never
        } else {
            Follow::Beneath
        }
    }

    fn delimiter(&self) -> char {
        self.delimiter.unwrap_or('/')
    }

    fn add_handle(&mut self, h: Handle) -> Result<u64, i32> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(VERR_TOO_MANY_OPEN_FILES);
        }
        loop {
            self.next_handle = self.next_handle.wrapping_add(1);
            let id = self.next_handle;
            if id != 0 && id != NIL_HANDLE && !self.handles.contains_key(&id) {
                self.handles.insert(id, h);
                return Ok(id);
            }
        }
    }
}

/// The shared-folder service.
pub struct SharedFolders {
    mappings: Vec<Mapping>,
    clients: HashMap<u32, Client>,
    /// Bumped when the mapping set changes (WAIT_FOR_MAPPINGS_CHANGES).
    version: u32,
}

impl std::fmt::Debug for SharedFolders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFolders")
            .field(
                "shares",
                &self
                    .mappings
                    .iter()
                    .map(|m| &m.cfg.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn open_root(cfg: &ShareConfig) -> Result<OwnedFd, ShareError> {
    rustix::fs::open(
        &cfg.host_path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ShareError::Open {
        name: cfg.name.clone(),
        path: cfg.host_path.display().to_string(),
        err: e.into(),
    })
}

/// Typed access to a call's parameters; a mismatch is the status VirtualBox returns.
struct Args<'a> {
    p: &'a mut [Param],
    bad: i32,
}

impl<'a> Args<'a> {
    fn new(p: &'a mut [Param], count: usize, function: u32) -> Result<Args<'a>, i32> {
        let newer = function >= func::WAIT_FOR_MAPPINGS_CHANGES;
        if p.len() != count {
            return Err(if newer {
                VERR_WRONG_PARAMETER_COUNT
            } else {
                VERR_INVALID_PARAMETER
            });
        }
        Ok(Args {
            p,
            bad: if newer {
                VERR_WRONG_PARAMETER_TYPE
            } else {
                VERR_INVALID_PARAMETER
            },
        })
    }
    fn u32(&self, i: usize) -> Result<u32, i32> {
        self.p[i].as_u32().ok_or(self.bad)
    }
    fn u64(&self, i: usize) -> Result<u64, i32> {
        self.p[i].as_u64().ok_or(self.bad)
    }
    fn buf(&self, i: usize) -> Result<&[u8], i32> {
        self.p[i].as_buf().ok_or(self.bad)
    }
    fn buf_mut(&mut self, i: usize) -> Result<&mut Vec<u8>, i32> {
        let bad = self.bad;
        self.p[i].as_buf_mut().ok_or(bad)
    }
    fn set_u32(&mut self, i: usize, v: u32) {
        self.p[i].set_u32(v);
    }
    fn set_u64(&mut self, i: usize, v: u64) {
        self.p[i].set_u64(v);
    }
}

impl SharedFolders {
    /// A service exporting `shares` (each host directory is opened now, so a missing one
    /// is a configuration error at start-up, not a surprise for the guest).
    pub fn new(shares: &[ShareConfig]) -> Result<SharedFolders, ShareError> {
        if shares.len() > MAX_MAPPINGS {
            return Err(ShareError::TooMany);
        }
        let mut mappings: Vec<Mapping> = Vec::new();
        for cfg in shares {
            if cfg.name.is_empty() || cfg.name.contains(['/', '\\', '\0']) {
                return Err(ShareError::BadName(cfg.name.clone()));
            }
            if mappings
                .iter()
                .any(|m| m.cfg.name.eq_ignore_ascii_case(&cfg.name))
            {
                return Err(ShareError::Duplicate(cfg.name.clone()));
            }
            mappings.push(Mapping {
                root: open_root(cfg)?,
                cfg: cfg.clone(),
            });
        }
        Ok(SharedFolders {
            mappings,
            clients: HashMap::new(),
            version: 1,
        })
    }

    /// The configured shares.
    pub fn shares(&self) -> Vec<ShareConfig> {
        self.mappings.iter().map(|m| m.cfg.clone()).collect()
    }

    fn mapping(&self, client: &Client, root: u32) -> Result<&Mapping, i32> {
        if !client.mapped.contains_key(&root) {
            return Err(VERR_INVALID_PARAMETER);
        }
        self.mappings
            .get(root as usize)
            .ok_or(VERR_INVALID_PARAMETER)
    }

    /// Run one call; returns the status for the guest.
    fn dispatch(&mut self, client_id: u32, function: u32, params: &mut [Param]) -> i32 {
        let Some(mut client) = self.clients.remove(&client_id) else {
            return VERR_INVALID_CLIENT_ID;
        };
        let rc = match self.run(&mut client, function, params) {
            Ok(rc) => rc,
            Err(rc) => rc,
        };
        self.clients.insert(client_id, client);
        rc
    }

    fn run(&mut self, c: &mut Client, function: u32, params: &mut [Param]) -> Result<i32, i32> {
        match function {
            func::SET_UTF8 => {
                Args::new(params, 0, function)?;
                c.utf8 = true;
                Ok(VINF_SUCCESS)
            }
            func::SET_SYMLINKS => {
                Args::new(params, 0, function)?;
                c.show_symlinks = true;
                Ok(VINF_SUCCESS)
            }
            func::QUERY_MAPPINGS => self.query_mappings(c, Args::new(params, 3, function)?),
            func::QUERY_MAP_NAME => {
                let mut a = Args::new(params, 2, function)?;
                let root = a.u32(0)?;
                let m = self
                    .mappings
                    .get(root as usize)
                    .ok_or(VERR_INVALID_PARAMETER)?;
                let name = m.cfg.name.clone();
                wire::string_out(a.buf_mut(1)?, &name, c.utf8)?;
                Ok(VINF_SUCCESS)
            }
            func::MAP_FOLDER => {
                let mut a = Args::new(params, 4, function)?;
                let name = wire::string_in(a.buf(0)?, c.utf8)?;
                let delim = a.u32(2)?;
                let root = self.map(c, &name, delim)?;
                a.set_u32(1, root);
                Ok(VINF_SUCCESS)
            }
            func::MAP_FOLDER_OLD => {
                let mut a = Args::new(params, 3, function)?;
                // Old guests always sent UTF-16 names.
                let name = wire::string_in(a.buf(0)?, false)?;
                let delim = a.u32(2)?;
                let root = self.map(c, &name, delim)?;
                a.set_u32(1, root);
                Ok(VINF_SUCCESS)
            }
            func::UNMAP_FOLDER => {
                let a = Args::new(params, 1, function)?;
                let root = a.u32(0)?;
                let n = c.mapped.get_mut(&root).ok_or(VERR_FILE_NOT_FOUND)?;
                *n -= 1;
                if *n == 0 {
                    c.mapped.remove(&root);
                    c.handles.retain(|_, h| h.root != root);
                }
                Ok(VINF_SUCCESS)
            }
            func::CREATE => {
                let mut a = Args::new(params, 3, function)?;
                let root = a.u32(0)?;
                let path = wire::string_in(a.buf(1)?, c.utf8)?;
                let mut parms = wire::CreateParms::decode(a.buf(2)?)?;
                let rc = self.create(c, root, &path, &mut parms);
                parms.encode_into(a.buf_mut(2)?);
                Ok(rc)
            }
            func::CLOSE => {
                let a = Args::new(params, 2, function)?;
                let (root, h) = (a.u32(0)?, a.u64(1)?);
                self.close(c, root, h)
            }
            func::READ => self.read(c, Args::new(params, 5, function)?),
            func::WRITE => self.write(c, Args::new(params, 5, function)?),
            func::LOCK => self.lock(c, Args::new(params, 5, function)?),
            func::LIST => self.list(c, Args::new(params, 8, function)?),
            func::INFORMATION => self.information(c, Args::new(params, 5, function)?),
            func::REMOVE => {
                let a = Args::new(params, 3, function)?;
                let root = a.u32(0)?;
                let path = wire::string_in(a.buf(1)?, c.utf8)?;
                self.remove(c, root, &path, a.u32(2)?)
            }
            func::CLOSE_AND_REMOVE => {
                let a = Args::new(params, 4, function)?;
                let root = a.u32(0)?;
                let path = wire::string_in(a.buf(1)?, c.utf8)?;
                let (flags, h) = (a.u32(2)?, a.u64(3)?);
                self.close(c, root, h)?;
                self.remove(c, root, &path, flags)
            }
            func::RENAME => {
                let a = Args::new(params, 4, function)?;
                let root = a.u32(0)?;
                let src = wire::string_in(a.buf(1)?, c.utf8)?;
                let dst = wire::string_in(a.buf(2)?, c.utf8)?;
                self.rename(c, root, &src, &dst, a.u32(3)?)
            }
            func::FLUSH => {
                let a = Args::new(params, 2, function)?;
                let h = self.file_handle(c, a.u32(0)?, a.u64(1)?)?;
                rustix::fs::fdatasync(&h.fd).map_err(|e| FsError(e).status())?;
                Ok(VINF_SUCCESS)
            }
            func::READLINK => self.readlink(c, Args::new(params, 3, function)?),
            func::SYMLINK => self.symlink(c, Args::new(params, 4, function)?),
            func::QUERY_MAP_INFO => self.query_map_info(c, Args::new(params, 5, function)?),
            func::WAIT_FOR_MAPPINGS_CHANGES | func::CANCEL_MAPPINGS_CHANGES_WAITS => {
                // Handled in `call` (they may park).
                Err(VERR_INTERNAL_ERROR)
            }
            func::SET_FILE_SIZE => {
                let a = Args::new(params, 3, function)?;
                let root = a.u32(0)?;
                self.writable(c, root)?;
                let h = self.file_handle(c, root, a.u64(1)?)?;
                rustix::fs::ftruncate(&h.fd, a.u64(2)?).map_err(|e| FsError(e).status())?;
                Ok(VINF_SUCCESS)
            }
            func::QUERY_FEATURES => {
                let mut a = Args::new(params, 2, function)?;
                a.set_u64(0, 1); // WRITE updates the offset
                a.set_u32(1, func::SET_ERROR_STYLE);
                Ok(VINF_SUCCESS)
            }
            func::COPY_FILE => self.copy_file(c, Args::new(params, 5, function)?),
            func::COPY_FILE_PART => self.copy_file_part(c, Args::new(params, 8, function)?),
            func::SET_ERROR_STYLE => {
                let a = Args::new(params, 2, function)?;
                match (a.u32(0)?, a.u32(1)?) {
                    (1 | 2, 0) => Ok(VINF_SUCCESS),
                    _ => Err(VERR_WRONG_PARAMETER_TYPE),
                }
            }
            _ => Err(VERR_NOT_IMPLEMENTED),
        }
    }

    fn query_mappings(&self, c: &Client, mut a: Args<'_>) -> Result<i32, i32> {
        let flags = a.u32(0)?;
        if flags & !0x11 != 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        let cap = a.u32(1)? as usize;
        let buf_len = a.buf(2)?.len();
        if cap.checked_mul(8) != Some(buf_len) {
            return Err(VERR_INVALID_PARAMETER);
        }
        let _ = c;
        let list: Vec<u32> = self
            .mappings
            .iter()
            .enumerate()
            .filter(|(_, m)| flags & 0x10 == 0 || m.cfg.auto_mount)
            .map(|(i, _)| i as u32)
            .collect();
        let out = a.buf_mut(2)?;
        for (i, root) in list.iter().take(cap).enumerate() {
            out[i * 8..i * 8 + 4].copy_from_slice(&1u32.to_le_bytes());
            out[i * 8 + 4..i * 8 + 8].copy_from_slice(&root.to_le_bytes());
        }
        a.set_u32(1, list.len() as u32);
        Ok(if list.len() > cap {
            VINF_BUFFER_OVERFLOW
        } else {
            VINF_SUCCESS
        })
    }

    fn query_map_info(&self, c: &Client, mut a: Args<'_>) -> Result<i32, i32> {
        let root = a.u32(0)?;
        let m = self
            .mappings
            .get(root as usize)
            .ok_or(VERR_INVALID_PARAMETER)?;
        let (name, point) = (m.cfg.name.clone(), m.cfg.auto_mount_point.clone());
        let mut flags = 0u64;
        if m.cfg.writable {
            flags |= 0x1;
        }
        if m.cfg.auto_mount {
            flags |= 0x2;
        }
        if m.cfg.symlinks && m.cfg.writable {
            flags |= 0x10;
        }
        a.u64(3)?;
        wire::string_out(a.buf_mut(1)?, &name, c.utf8)?;
        wire::string_out(a.buf_mut(2)?, &point, c.utf8)?;
        a.set_u64(3, flags);
        a.set_u32(4, self.version);
        Ok(VINF_SUCCESS)
    }

    fn map(&self, c: &mut Client, name: &str, delim: u32) -> Result<u32, i32> {
        let d = match char::from_u32(delim) {
            Some(d @ ('/' | '\\')) => d,
            _ => return Err(VERR_INVALID_PARAMETER),
        };
        if c.delimiter.is_some_and(|cur| cur != d) {
            return Err(VERR_INVALID_PARAMETER);
        }
        // Linux sends the bare name; old Windows guests prefix it with "\\".
        let name = name.trim_start_matches(['\\', '/']);
        let idx = self
            .mappings
            .iter()
            .position(|m| m.cfg.name.to_lowercase() == name.to_lowercase())
            .ok_or(VERR_FILE_NOT_FOUND)?;
        c.delimiter = Some(d);
        *c.mapped.entry(idx as u32).or_insert(0) += 1;
        Ok(idx as u32)
    }

    fn writable(&self, c: &Client, root: u32) -> Result<(), i32> {
        if self.mapping(c, root)?.cfg.writable {
            Ok(())
        } else {
            Err(VERR_WRITE_PROTECT)
        }
    }

    fn parse(&self, c: &Client, path: &str) -> Result<SharePath, i32> {
        path::parse(path, c.delimiter())
    }

    fn handle<'c>(&self, c: &'c mut Client, root: u32, h: u64) -> Result<&'c mut Handle, i32> {
        if h == 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        let handle = c.handles.get_mut(&h).ok_or(VERR_INVALID_HANDLE)?;
        if handle.root != root {
            return Err(VERR_INVALID_HANDLE);
        }
        Ok(handle)
    }

    fn file_handle<'c>(&self, c: &'c mut Client, root: u32, h: u64) -> Result<&'c mut Handle, i32> {
        let handle = self.handle(c, root, h)?;
        match handle.kind {
            HandleKind::File { .. } => Ok(handle),
            HandleKind::Dir(_) => Err(VERR_INVALID_HANDLE),
        }
    }

    fn close(&self, c: &mut Client, root: u32, h: u64) -> Result<i32, i32> {
        self.handle(c, root, h)?;
        c.handles.remove(&h);
        Ok(VINF_SUCCESS)
    }

    fn read(&self, c: &mut Client, mut a: Args<'_>) -> Result<i32, i32> {
        let (root, h, off, count) = (a.u32(0)?, a.u64(1)?, a.u64(2)?, a.u32(3)? as usize);
        a.buf(4)?;
        a.set_u32(3, 0);
        if count > a.buf(4)?.len() {
            return Err(VERR_INVALID_PARAMETER);
        }
        let fd = self
            .file_handle(c, root, h)?
            .fd
            .try_clone()
            .map_err(|_| VERR_NO_MEMORY)?;
        if count == 0 {
            return Ok(VINF_SUCCESS);
        }
        if i64::try_from(off).is_err() {
            return Err(VERR_INVALID_PARAMETER);
        }
        let buf = a.buf_mut(4)?;
        let mut done = 0usize;
        while done < count {
            match rustix::io::pread(&fd, &mut buf[done..count], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    if done == 0 {
                        return Err(FsError(e).status());
                    }
                    break;
                }
            }
        }
        a.set_u32(3, done as u32);
        Ok(VINF_SUCCESS)
    }

    fn write(&self, c: &mut Client, mut a: Args<'_>) -> Result<i32, i32> {
        let (root, h, off, count) = (a.u32(0)?, a.u64(1)?, a.u64(2)?, a.u32(3)? as usize);
        let data_len = a.buf(4)?.len();
        a.set_u32(3, 0);
        if count > data_len {
            return Err(VERR_INVALID_PARAMETER);
        }
        self.writable(c, root)?;
        let handle = self.file_handle(c, root, h)?;
        let HandleKind::File { append, writable } = handle.kind else {
            return Err(VERR_INVALID_HANDLE);
        };
        if !writable {
            return Err(VERR_ACCESS_DENIED);
        }
        if i64::try_from(off).is_err() || off.checked_add(count as u64).is_none() {
            return Err(VERR_INVALID_PARAMETER);
        }
        let fd = handle.fd.try_clone().map_err(|_| VERR_NO_MEMORY)?;
        let data = a.buf(4)?;
        let mut done = 0usize;
        while done < count {
            // With O_APPEND the kernel writes at the end whatever the offset.
            match rustix::io::pwrite(&fd, &data[done..count], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    if done == 0 {
                        return Err(FsError(e).status());
                    }
                    break;
                }
            }
        }
        let new_off = if append {
            fsops::fstat(&fd)
                .map(|i| i.size as u64)
                .unwrap_or(off + done as u64)
        } else {
            off + done as u64
        };
        a.set_u32(3, done as u32);
        a.set_u64(2, new_off);
        Ok(VINF_SUCCESS)
    }

    fn lock(&self, c: &mut Client, a: Args<'_>) -> Result<i32, i32> {
        use rustix::fs::FlockOperation as F;
        let (root, h, _off, _len, flags) = (a.u32(0)?, a.u64(1)?, a.u64(2)?, a.u64(3)?, a.u32(4)?);
        if flags & !0xf != 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        let handle = self.file_handle(c, root, h)?;
        // Locks never wait: the service thread must not block on a guest's lock. Byte
        // ranges are widened to the whole file (BSD locks).
        let op = match flags & 3 {
            0 => F::Unlock,
            1 => F::NonBlockingLockShared,
            2 => F::NonBlockingLockExclusive,
            _ => return Err(VERR_INVALID_PARAMETER),
        };
        match rustix::fs::flock(&handle.fd, op) {
            Ok(()) => Ok(VINF_SUCCESS),
            Err(Errno::WOULDBLOCK) => Err(VERR_FILE_LOCK_VIOLATION),
            Err(e) => Err(FsError(e).status()),
        }
    }

    fn information(&self, c: &mut Client, mut a: Args<'_>) -> Result<i32, i32> {
        let (root, h, flags, cb) = (a.u32(0)?, a.u64(1)?, a.u32(2)?, a.u32(3)? as usize);
        let buf_len = a.buf(4)?.len();
        if cb > buf_len {
            return Err(VERR_INVALID_PARAMETER);
        }
        let read_only = !self.mapping(c, root)?.cfg.writable;
        match flags {
            // GET|VOLUME: the handle is ignored.
            0x10 => {
                if cb < wire::VOLINFO_SIZE {
                    return Err(VERR_INVALID_PARAMETER);
                }
                let root_fd = &self.mapping(c, root)?.root;
                let v = fsops::volume(root_fd, read_only).map_err(|e| e.status())?;
                a.buf_mut(4)?[..wire::VOLINFO_SIZE].copy_from_slice(&v.encode());
                a.set_u32(3, wire::VOLINFO_SIZE as u32);
                Ok(VINF_SUCCESS)
            }
            0x8 => {
                if cb < wire::FSOBJINFO_SIZE {
                    return Err(VERR_INVALID_PARAMETER);
                }
                let handle = self.handle(c, root, h)?;
                let info = fsops::fstat(&handle.fd).map_err(|e| e.status())?;
                a.buf_mut(4)?[..wire::FSOBJINFO_SIZE].copy_from_slice(&info.encode());
                a.set_u32(3, wire::FSOBJINFO_SIZE as u32);
                Ok(VINF_SUCCESS)
            }
            0x9 | 0x5 => {
                if cb < wire::FSOBJINFO_SIZE {
                    return Err(VERR_INVALID_PARAMETER);
                }
                if read_only {
                    return Err(VERR_WRITE_PROTECT);
                }
                let want = wire::ObjInfo::decode(a.buf(4)?);
                let handle = self.handle(c, root, h)?;
                let is_dir = matches!(handle.kind, HandleKind::Dir(_));
                if flags == 0x5 {
                    if is_dir {
                        return Err(VERR_INVALID_PARAMETER);
                    }
                    let size = u64::try_from(want.size).map_err(|_| VERR_INVALID_PARAMETER)?;
                    rustix::fs::ftruncate(&handle.fd, size).map_err(|e| FsError(e).status())?;
                } else {
                    set_times_and_mode(&handle.fd, &want, is_dir);
                }
                let info = fsops::fstat(&handle.fd).map_err(|e| e.status())?;
                a.buf_mut(4)?[..wire::FSOBJINFO_SIZE].copy_from_slice(&info.encode());
                a.set_u32(3, wire::FSOBJINFO_SIZE as u32);
                Ok(VINF_SUCCESS)
            }
            _ => Err(VERR_INVALID_PARAMETER),
        }
    }

    fn remove(&self, c: &mut Client, root: u32, path: &str, flags: u32) -> Result<i32, i32> {
        if flags & !0x7 != 0 {
            return Err(VERR_INVALID_FLAGS);
        }
        self.writable(c, root)?;
        let p = self.parse(c, path)?;
        let m = self.mapping(c, root)?;
        let (dir, leaf) = fsops::open_parent(&m.root, &p, c.follow())
            .map_err(|e| e.status())?
            .ok_or(VERR_ACCESS_DENIED)?;
        let at = if flags & 0x5 != 0 {
            rustix::fs::AtFlags::empty()
        } else {
            rustix::fs::AtFlags::REMOVEDIR
        };
        rustix::fs::unlinkat(&dir, leaf, at).map_err(|e| FsError(e).status())?;
        Ok(VINF_SUCCESS)
    }

    fn rename(
        &self,
        c: &mut Client,
        root: u32,
        src: &str,
        dst: &str,
        flags: u32,
    ) -> Result<i32, i32> {
        if flags & !0x7 != 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        self.writable(c, root)?;
        let (ps, pd) = (self.parse(c, src)?, self.parse(c, dst)?);
        let m = self.mapping(c, root)?;
        let (sdir, sleaf) = fsops::open_parent(&m.root, &ps, c.follow())
            .map_err(|e| e.status())?
            .ok_or(VERR_ACCESS_DENIED)?;
        let (ddir, dleaf) = fsops::open_parent(&m.root, &pd, c.follow())
            .map_err(|e| e.status())?
            .ok_or(VERR_ACCESS_DENIED)?;
        let r = if flags & 0x4 != 0 {
            rustix::fs::renameat(&sdir, sleaf, &ddir, dleaf)
        } else {
            rustix::fs::renameat_with(
                &sdir,
                sleaf,
                &ddir,
                dleaf,
                rustix::fs::RenameFlags::NOREPLACE,
            )
        };
        r.map_err(|e| FsError(e).status())?;
        Ok(VINF_SUCCESS)
    }

    fn readlink(&self, c: &mut Client, mut a: Args<'_>) -> Result<i32, i32> {
        let root = a.u32(0)?;
        let p = self.parse(c, &wire::string_in(a.buf(1)?, c.utf8)?)?;
        a.buf(2)?;
        let m = self.mapping(c, root)?;
        let (dir, leaf) = fsops::open_parent(&m.root, &p, c.follow())
            .map_err(|e| e.status())?
            .ok_or(VERR_NOT_SUPPORTED)?;
        let target =
            rustix::fs::readlinkat(&dir, leaf, Vec::new()).map_err(|e| FsError(e).status())?;
        let mut t = target.into_bytes();
        if c.delimiter() == '\\' {
            for b in t.iter_mut().filter(|b| **b == b'/') {
                *b = b'\\';
            }
        }
        let out = a.buf_mut(2)?;
        if t.len() + 1 > out.len() {
            return Err(VERR_BUFFER_OVERFLOW);
        }
        out[..t.len()].copy_from_slice(&t);
        out[t.len()] = 0;
        Ok(VINF_SUCCESS)
    }

    fn symlink(&self, c: &mut Client, mut a: Args<'_>) -> Result<i32, i32> {
        if !c.utf8 {
            return Err(VERR_NOT_IMPLEMENTED);
        }
        let root = a.u32(0)?;
        let p = self.parse(c, &wire::string_in(a.buf(1)?, true)?)?;
        let target = wire::string_in(a.buf(2)?, true)?;
        if a.buf(3)?.len() != wire::FSOBJINFO_SIZE {
            return Err(VERR_INVALID_PARAMETER);
        }
        let m = self.mapping(c, root)?;
        if !(m.cfg.symlinks && m.cfg.writable) {
            return Err(VERR_WRITE_PROTECT);
        }
        // Subtree policy: the target must stay inside the share as a string too, so host
        // programs that follow it cannot be led outside.
        let depth = p.components.len().saturating_sub(1);
        if !fsops::target_stays_inside(&target, depth) {
            return Err(VERR_ACCESS_DENIED);
        }
        let (dir, leaf) = fsops::open_parent(&m.root, &p, c.follow())
            .map_err(|e| e.status())?
            .ok_or(VERR_ALREADY_EXISTS)?;
        rustix::fs::symlinkat(target.as_str(), &dir, leaf).map_err(|e| FsError(e).status())?;
        let info = fsops::lstat_at(&dir, leaf).map_err(|e| e.status())?;
        a.buf_mut(3)?.copy_from_slice(&info.encode());
        Ok(VINF_SUCCESS)
    }

    fn list(&self, c: &mut Client, mut a: Args<'_>) -> Result<i32, i32> {
        let (root, h, flags, cb) = (a.u32(0)?, a.u64(1)?, a.u32(2)?, a.u32(3)? as usize);
        a.buf(4)?;
        let out_len = a.buf(5)?.len();
        a.u32(6)?;
        a.u32(7)?;
        a.set_u32(3, 0);
        a.set_u32(6, 0);
        a.set_u32(7, 0);
        if cb < wire::DIRINFO_MIN || cb > out_len || flags & !0x3 != 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        let utf8 = c.utf8;
        let follow = c.follow();
        let root_fd = self
            .mapping(c, root)?
            .root
            .try_clone()
            .map_err(|_| VERR_NO_MEMORY)?;
        let handle = self.handle(c, root, h)?;
        let Handle { fd, path, kind, .. } = handle;
        let HandleKind::Dir(cursor) = kind else {
            return Err(VERR_INVALID_HANDLE);
        };
        let out = a.buf_mut(5)?;
        let r = cursor.fill(
            &mut out[..cb],
            flags,
            list::Ctx {
                root: &root_fd,
                dir_fd: fd,
                dir_path: path,
                utf8,
                follow,
            },
        )?;
        a.set_u32(3, r.used as u32);
        a.set_u32(6, u32::from(r.more));
        a.set_u32(7, r.count);
        Ok(r.status)
    }

    fn copy_file(&self, c: &mut Client, a: Args<'_>) -> Result<i32, i32> {
        let (sroot, droot) = (a.u32(0)?, a.u32(2)?);
        let sp = self.parse(c, &wire::string_in(a.buf(1)?, c.utf8)?)?;
        let dp = self.parse(c, &wire::string_in(a.buf(3)?, c.utf8)?)?;
        if a.u32(4)? != 0 {
            return Err(VERR_INVALID_FLAGS);
        }
        self.writable(c, droot)?;
        let f = c.follow();
        let src = fsops::open(
            &self.mapping(c, sroot)?.root,
            &sp,
            OFlags::RDONLY,
            Mode::empty(),
            f,
        )
        .map_err(|e| e.status())?;
        if !fsops::fstat(&src).map_err(|e| e.status())?.is_file() {
            return Err(VERR_ACCESS_DENIED);
        }
        let dst = fsops::open(
            &self.mapping(c, droot)?.root,
            &dp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o644),
            f,
        )
        .map_err(|e| e.status())?;
        copy_range(&src, 0, &dst, 0, u64::MAX)?;
        Ok(VINF_SUCCESS)
    }

    fn copy_file_part(&self, c: &mut Client, mut a: Args<'_>) -> Result<i32, i32> {
        let (sroot, sh, soff) = (a.u32(0)?, a.u64(1)?, a.u64(2)?);
        let (droot, dh, doff) = (a.u32(3)?, a.u64(4)?, a.u64(5)?);
        let len = a.u64(6)?;
        if a.u32(7)? != 0 {
            return Err(VERR_INVALID_FLAGS);
        }
        a.set_u64(6, 0);
        self.writable(c, droot)?;
        let src = self
            .file_handle(c, sroot, sh)?
            .fd
            .try_clone()
            .map_err(|_| VERR_NO_MEMORY)?;
        let dst = self
            .file_handle(c, droot, dh)?
            .fd
            .try_clone()
            .map_err(|_| VERR_NO_MEMORY)?;
        let n = copy_range(&src, soff, &dst, doff, len)?;
        a.set_u64(6, n);
        Ok(VINF_SUCCESS)
    }
}

use rustix::io::Errno;

impl wire::ObjInfo {
    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & wire::S_IFMT == wire::S_IFREG
    }
}

/// Copy up to `len` bytes in 1 MiB steps; returns the bytes copied.
fn copy_range(src: &OwnedFd, soff: u64, dst: &OwnedFd, doff: u64, len: u64) -> Result<u64, i32> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let so = soff.checked_add(done).ok_or(VERR_INVALID_PARAMETER)?;
        let n = rustix::io::pread(src, &mut buf[..want], so).map_err(|e| FsError(e).status())?;
        if n == 0 {
            break;
        }
        let d = doff.checked_add(done).ok_or(VERR_INVALID_PARAMETER)?;
        let mut w = 0;
        while w < n {
            w += rustix::io::pwrite(dst, &buf[w..n], d + w as u64)
                .map_err(|e| FsError(e).status())?;
        }
        done += n as u64;
    }
    Ok(done)
}

/// SET|FILE: apply non-zero times and a non-zero mode; failures are ignored as VirtualBox
/// does (the guest re-reads the result).
fn set_times_and_mode(fd: &OwnedFd, want: &wire::ObjInfo, is_dir: bool) {
    use rustix::fs::{Timespec, Timestamps, UTIME_OMIT};
    let ts = |ns: i64| {
        if ns == 0 {
            Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            }
        } else {
            Timespec {
                tv_sec: ns.div_euclid(1_000_000_000),
                tv_nsec: ns.rem_euclid(1_000_000_000) as _,
            }
        }
    };
    if want.atime != 0 || want.mtime != 0 {
        let _ = rustix::fs::futimens(
            fd,
            &Timestamps {
                last_access: ts(want.atime),
                last_modification: ts(want.mtime),
            },
        );
    }
    if want.mode & 0o7777 != 0 {
        let mut m = want.mode & 0o777;
        m |= if is_dir { 0o500 } else { 0o400 };
        let _ = rustix::fs::fchmod(fd, Mode::from_raw_mode(m));
    }
}

impl Service for SharedFolders {
    fn name(&self) -> &'static str {
        SERVICE_NAME
    }

    fn max_clients(&self) -> usize {
        66
    }

    fn connect(&mut self, client: u32, _requestor: u32) -> i32 {
        self.clients.insert(client, Client::new());
        VINF_SUCCESS
    }

    fn disconnect(&mut self, client: u32) {
        if let Some(c) = self.clients.remove(&client) {
            for w in c.waits {
                w.complete(VERR_CANCELLED);
            }
        }
    }

    fn call(&mut self, mut call: Call) {
        match call.function {
            func::WAIT_FOR_MAPPINGS_CHANGES => {
                let Some(c) = self.clients.get_mut(&call.client) else {
                    return call.complete(VERR_INVALID_CLIENT_ID);
                };
                let version = match call.params.as_slice() {
                    [Param::U32(v)] => *v,
                    [_] => return call.complete(VERR_WRONG_PARAMETER_TYPE),
                    _ => return call.complete(VERR_WRONG_PARAMETER_COUNT),
                };
                if version != self.version {
                    call.params[0].set_u32(self.version);
                    return call.complete(VINF_SUCCESS);
                }
                c.waits.retain(|w| !w.is_cancelled());
                let total: usize = self.clients.values().map(|c| c.waits.len()).sum();
                if total >= 64 {
                    return call.complete(VERR_OUT_OF_RESOURCES);
                }
                if let Some(c) = self.clients.get_mut(&call.client) {
                    c.waits.push(call);
                }
            }
            func::CANCEL_MAPPINGS_CHANGES_WAITS => {
                let Some(c) = self.clients.get_mut(&call.client) else {
                    return call.complete(VERR_INVALID_CLIENT_ID);
                };
                if !call.params.is_empty() {
                    return call.complete(VERR_WRONG_PARAMETER_COUNT);
                }
                for w in c.waits.drain(..) {
                    w.complete(VERR_CANCELLED);
                }
                call.complete(VINF_SUCCESS);
            }
            f => {
                let rc = self.dispatch(call.client, f, &mut call.params);
                call.complete(rc);
            }
        }
    }

    fn reset(&mut self) {
        self.clients.clear();
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
