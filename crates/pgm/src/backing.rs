//! The host memory behind guest RAM and ROM: one anonymous mapping, accessed only with
//! bounds-checked copies; and the process-wide memory barrier MMIO2 dirty tracking uses.
//! This is the only unsafe code of pgm.

use crate::{PgmError, Result};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// An anonymous, zero-filled, private host mapping.
pub(crate) struct Backing {
    ptr: *mut u8,
    len: u64,
}

// SAFETY: the mapping is plain memory owned by this struct for its whole life; concurrent
// access from several threads is what guest memory is (the guest's own vCPUs race on it
// too); every access goes through bounds-checked copies or atomics below.
unsafe impl Send for Backing {}
// SAFETY: as above; no method hands out references into the mapping.
unsafe impl Sync for Backing {}

impl Backing {
    pub(crate) fn new(len: u64) -> Result<Self> {
        let size = usize::try_from(len).map_err(|_| PgmError::Alloc {
            size: len,
            reason: "too large for this host".into(),
        })?;
        if size == 0 {
            return Err(PgmError::Alloc {
                size: len,
                reason: "empty".into(),
            });
        }
        // SAFETY: an anonymous private mapping with no address hint touches no existing
        // memory; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PgmError::Alloc {
                size: len,
                reason: std::io::Error::last_os_error().to_string(),
            });
        }
        Ok(Backing {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn host_addr(&self) -> usize {
        self.ptr as usize
    }

    #[inline]
    fn check(&self, off: u64, n: usize) -> Result<usize> {
        match off.checked_add(n as u64) {
            Some(end) if end <= self.len => Ok(off as usize),
            _ => Err(PgmError::Unmapped(off)),
        }
    }

    #[inline]
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let o = self.check(off, buf.len())?;
        // SAFETY: [o, o+len) lies inside the live mapping (checked above); `buf` is a
        // distinct Rust buffer so the ranges cannot overlap. Other threads may write the
        // same guest bytes concurrently; like real memory, the guest sees torn values then.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(o), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    #[inline]
    pub(crate) fn write(&self, off: u64, buf: &[u8]) -> Result<()> {
        let o = self.check(off, buf.len())?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr.add(o), buf.len()) };
        Ok(())
    }

    pub(crate) fn cmpxchg(&self, off: u64, size: u8, expected: u64, new: u64) -> Result<u64> {
        let o = self.check(off, usize::from(size))?;
        let aligned = o % usize::from(size.max(1)) == 0;
        if !aligned {
            // A split-lock access. Real CPUs lock the bus; we take a global lock so two
            // split locked operations serialise.
            static SPLIT: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
            let _g = SPLIT.lock();
            let mut cur = [0u8; 8];
            self.read(off, &mut cur[..usize::from(size)])?;
            let found = u64::from_le_bytes(cur);
            if found == expected {
                self.write(off, &new.to_le_bytes()[..usize::from(size)])?;
            }
            return Ok(found);
        }
        // SAFETY: the address is inside the mapping (checked) and naturally aligned for
        // the atomic type (checked); the atomic types have the same layout as the integers.
        let r = unsafe {
            let p = self.ptr.add(o);
            match size {
                1 => AtomicU8::from_ptr(p)
                    .compare_exchange(
                        expected as u8,
                        new as u8,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .map_or_else(u64::from, u64::from),
                2 => AtomicU16::from_ptr(p.cast())
                    .compare_exchange(
                        expected as u16,
                        new as u16,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .map_or_else(u64::from, u64::from),
                4 => AtomicU32::from_ptr(p.cast())
                    .compare_exchange(
                        expected as u32,
                        new as u32,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .map_or_else(u64::from, u64::from),
                _ => AtomicU64::from_ptr(p.cast())
                    .compare_exchange(expected, new, Ordering::SeqCst, Ordering::SeqCst)
                    .unwrap_or_else(|v| v),
            }
        };
        Ok(r)
    }
}

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Register this process for [`process_barrier`]; false when the kernel cannot do it (then
/// callers must not rely on it).
pub(crate) fn process_barrier_register() -> bool {
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0 as libc::c_long,
        )
    };
    r == 0
}

/// A full memory barrier on every thread of this process that is running now (an IPI per
/// CPU); the others pass one when they are next scheduled. Only valid after
/// [`process_barrier_register`] returned true; false if the kernel refused.
pub(crate) fn process_barrier() -> bool {
    // SAFETY: as in `process_barrier_register`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            0 as libc::c_long,
        )
    };
    r == 0
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing refers into the mapping
        // once the owner is dropped (no references are ever handed out).
        unsafe { libc::munmap(self.ptr.cast(), self.len as usize) };
    }
}
