//! The interface storage controllers use: a virtual disk addressed in bytes.

use crate::error::Result;

/// A virtual disk as a device model sees it.
///
/// Ownership model: a `Disk` is *single-owner* (`&mut self`, `Send`): a storage
/// controller moves it into its I/O thread and calls it from there only. Methods block
/// until the host has done the work. Share one between threads only behind a `Mutex`.
///
/// Durability: `write_at` may sit in the host page cache and block-map updates may be
/// held in memory (a volatile write cache, as a disk has); `flush` returns only once
/// everything written before it is on stable storage (fdatasync) with metadata that
/// points at it, so a controller completes a guest FLUSH only after `flush` returns.
pub trait Disk: Send {
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Read `buf.len()` bytes at `offset`; unallocated and zero blocks read as zeros.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Write `buf` at `offset` (into the top image of a differencing chain).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()>;
    /// Make every completed write durable.
    fn flush(&mut self) -> Result<()>;
    /// Tell the image that a range is no longer used. Afterwards the range reads as
    /// zeros or as its old contents (like an ATA TRIM without deterministic zeroing);
    /// whole allocation blocks release their host space.
    fn discard(&mut self, offset: u64, len: u64) -> Result<()>;
}
