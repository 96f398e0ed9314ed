//! "Is this machine running?": novabox marks a running machine with a lock
//! file beside its settings (`<file>.novabox-run`, holding the PID), so
//! settings writers can refuse to change a live machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// The lock file of a settings file.
pub fn lock_path(settings: &Path) -> PathBuf {
    let mut s = settings.as_os_str().to_os_string();
    s.push(".novabox-run");
    PathBuf::from(s)
}

fn pid_alive(pid: u32) -> bool {
    // /proc/<pid> exists while the process (or zombie) exists; no syscall
    // (and no unsafe) needed on Linux.
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The PID of the novabox process running this machine, if any. A stale
/// lock (process gone) counts as not running.
pub fn running_pid(settings: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(lock_path(settings)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    pid_alive(pid).then_some(pid)
}

/// Held while a machine runs; removes the lock file on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Mark the machine as running by this process. Fails when another live
    /// process holds it; replaces a stale lock.
    pub fn acquire(settings: &Path) -> Result<RunLock> {
        let path = lock_path(settings);
        if let Some(pid) = running_pid(settings) {
            return Err(Error {
                kind: ErrorKind::State,
                file: Some(settings.to_path_buf()),
                pos: None,
                message: format!("machine is already running (pid {pid})"),
            });
        }
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, &e))?;
        writeln!(f, "{}", std::process::id()).map_err(|e| Error::io(&path, &e))?;
        Ok(RunLock { path })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
