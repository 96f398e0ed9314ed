//! Copying a medium into a new image (VBoxManage `clonemedium`).

use std::path::Path;

use crate::create::{create, CreateOptions};
use crate::disk::Disk;
use crate::error::{MediaError, Result};
use crate::layer::{Format, LayerInfo};
use crate::medium::{Allocation, Medium};

/// Copy buffer: large enough to amortise syscalls, small enough for the cache.
const CHUNK: u64 = 4 << 20;
/// Bytes written between hints that start host write-back of the destination.
const SYNC_EVERY: u64 = 64 << 20;
/// Alignment of buffers, offsets and lengths for direct (page-cache-bypassing) writes:
/// a page, which covers 512-byte and 4 KiB logical blocks.
const DIRECT_ALIGN: usize = 4096;

/// A copy buffer whose data starts on a [`DIRECT_ALIGN`] boundary, so it can be handed
/// to an `O_DIRECT` write as is (a `Vec<u8>` is only byte-aligned; the aligned window
/// inside a slightly larger one avoids `unsafe` allocation).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// An empty buffer (an all-zero run: nothing to carry), allocating nothing.
    fn empty() -> AlignedBuf {
        AlignedBuf {
            raw: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    /// A buffer that can hold `cap` bytes.
    fn with_capacity(cap: usize) -> AlignedBuf {
        let raw = vec![0u8; cap + DIRECT_ALIGN];
        let start = (DIRECT_ALIGN - raw.as_ptr().addr() % DIRECT_ALIGN) % DIRECT_ALIGN;
        AlignedBuf { raw, start, len: 0 }
    }

    /// Bytes it can hold.
    fn capacity(&self) -> usize {
        self.raw.len().saturating_sub(self.start)
    }

    fn data(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// Resize (within the capacity) and return the data.
    fn fill_to(&mut self, len: usize) -> &mut [u8] {
        self.len = len;
        &mut self.raw[self.start..self.start + len]
    }
}

/// Second handle on a raw destination opened with `O_DIRECT`: the clone's data goes
/// straight from the copy buffer to the device. Buffered writes would leave all of it
/// dirty in the page cache for the final fdatasync, whose write-back (block allocation,
/// page-by-page submission) costs more CPU and time than the copy itself; direct writes
/// overlap the device work with reading the next chunk on the reader thread.
struct DirectOut {
    file: std::fs::File,
}

impl DirectOut {
    /// Open `path` for direct writes; `None` where the host or file system has no
    /// direct I/O (the clone then takes the buffered path).
    fn open(path: &Path) -> Option<DirectOut> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                .open(path)
                .ok()
                .map(|file| DirectOut { file })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = path;
            None
        }
    }

    /// Write the longest aligned prefix of `data` at `off`; returns its length (0 when
    /// the start is unaligned, so the caller writes everything the buffered way).
    fn write_prefix(&self, data: &[u8], off: u64) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = data.len() - data.len() % DIRECT_ALIGN;
        if n == 0
            || !off.is_multiple_of(DIRECT_ALIGN as u64)
            || !data.as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
        {
            return Ok(0);
        }
        self.file.write_all_at(&data[..n], off)?;
        Ok(n)
    }
}

/// Copy `src` (the whole chain, flattened) into a new image at `dst`.
///
/// Only ranges holding data are read; all-zero chunks are not written, so dynamic
/// destinations stay sparse. `progress(done, total)` is called as bytes are done.
/// The new image is flushed to stable storage before this returns.
pub fn clone_medium(
    src: &mut Medium,
    dst: &Path,
    format: Format,
    fixed: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<LayerInfo> {
    let size = src.size();
    // Write through the image `create` made, which holds the file and its lock from the
    // start: closing it and opening it again would leave a window in which another
    // process (one forked meanwhile, holding a copy of the descriptor until it execs)
    // still has the lock, and the reopen would fail as "locked".
    let made = create(
        dst,
        &CreateOptions {
            format,
            size,
            fixed,
            parent: None,
            uuid: None,
        },
    )?;
    if !made.writable() {
        return Err(MediaError::InvalidArgument(format!(
            "{}: the new image is not writable",
            dst.display()
        )));
    }
    let mut out = Medium::from_layers(vec![made], true)?;
    let files = out.info()[0].files.clone();
    // A raw image is its bytes, so its data can bypass the layer (and the page cache);
    // other formats place data through their block maps, so they go through `out`.
    let mut direct = match (format, files.as_slice()) {
        (Format::Raw, [f]) => DirectOut::open(f),
        _ => None,
    };
    let hint_files: Vec<std::fs::File> = files
        .iter()
        .filter_map(|p| std::fs::File::open(p).ok())
        .collect();
    progress(0, size);
    // Reader thread and writer (this thread) run in a pipeline: on a 2-core host the
    // copy-in and copy-out overlap. Buffered writes start host write-back every
    // SYNC_EVERY bytes so the final fdatasync is short.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, AlignedBuf)>>(4);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<AlignedBuf>();
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            let mut off = 0u64;
            while off < size {
                // Chunks end on CHUNK boundaries, so a run that starts off a page
                // boundary (odd sectors) puts only itself on the buffered path.
                let want = (CHUNK - off % CHUNK).min(size - off);
                let step = (|| -> Result<(u64, AlignedBuf)> {
                    let (kind, run) = src.allocation(off, want)?;
                    let run = run.clamp(1, want);
                    if kind == Allocation::Zero {
                        return Ok((run, AlignedBuf::empty()));
                    }
                    let mut buf = back_rx
                        .try_recv()
                        .ok()
                        .filter(|b| b.capacity() >= CHUNK as usize)
                        .unwrap_or_else(|| AlignedBuf::with_capacity(CHUNK as usize));
                    src.read_at(buf.fill_to(run as usize), off)?;
                    Ok((run, buf))
                })();
                match step {
                    Ok((run, buf)) => {
                        if tx.send(Ok((off, buf))).is_err() {
                            return;
                        }
                        off += run;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let mut since_sync = 0u64;
        for msg in rx {
            let (off, buf) = msg?;
            let data = buf.data();
            if !data.is_empty() && !is_zero(data) {
                let mut done = 0;
                if let Some(d) = &direct {
                    match d.write_prefix(data, off) {
                        Ok(n) => done = n,
                        // Refused (an alignment this file system does not accept):
                        // this piece and all later ones take the buffered path.
                        Err(e)
                            if e.raw_os_error()
                                == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
                        {
                            direct = None;
                        }
                        Err(e) => return Err(MediaError::io(&files[0], "write", e)),
                    }
                }
                if done < data.len() {
                    out.write_at(&data[done..], off + done as u64)?;
                    since_sync += (data.len() - done) as u64;
                }
                if since_sync >= SYNC_EVERY {
                    // Start write-back now (without waiting), so the final fdatasync
                    // finds little left to write.
                    for f in &hint_files {
                        let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
                    }
                    since_sync = 0;
                }
            }
            progress((off + data.len() as u64).min(size), size);
            let _ = back_tx.send(buf);
        }
        Ok(())
    })?;
    progress(size, size);
    // Direct writes are on the device but maybe only in its volatile cache, and the
    // allocations they made are file system metadata: the fdatasync covers both (it
    // acts on the file, whichever descriptor wrote).
    out.flush()?;
    Ok(out.info().remove(0))
}

/// Fast all-zero test (64 bytes at a time; the optimiser vectorises the inner loop).
pub fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        let mut acc = 0u64;
        for w in c.chunks_exact(8) {
            acc |= u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_starts_on_the_direct_boundary() {
        for cap in [1, 4096, 3 << 20] {
            let mut b = AlignedBuf::with_capacity(cap);
            assert!(b.capacity() >= cap);
            assert_eq!(b.fill_to(cap).as_ptr().addr() % DIRECT_ALIGN, 0);
            assert_eq!(b.data().len(), cap);
        }
        assert_eq!(AlignedBuf::empty().capacity(), 0);
    }

    #[test]
    fn direct_writes_only_the_aligned_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.raw");
        std::fs::write(&p, vec![0u8; 64 << 10]).unwrap();
        let Some(d) = DirectOut::open(&p) else {
            eprintln!("no direct I/O on this file system: nothing to check");
            return;
        };
        let mut b = AlignedBuf::with_capacity(3 * DIRECT_ALIGN);
        b.fill_to(2 * DIRECT_ALIGN + 100).fill(7);
        // Unaligned offset or start: nothing (the caller writes it buffered).
        assert_eq!(d.write_prefix(b.data(), 512).unwrap(), 0);
        assert_eq!(d.write_prefix(&b.data()[1..], 4096).unwrap(), 0);
        assert_eq!(d.write_prefix(&b.data()[..100], 4096).unwrap(), 0);
        assert_eq!(d.write_prefix(b.data(), 4096).unwrap(), 2 * DIRECT_ALIGN);
        let back = std::fs::read(&p).unwrap();
        assert!(back[..4096].iter().all(|&x| x == 0));
        assert!(back[4096..3 * 4096].iter().all(|&x| x == 7));
        assert!(back[3 * 4096..].iter().all(|&x| x == 0));
    }

    #[test]
    fn is_zero_finds_any_nonzero_byte() {
        let mut v = vec![0u8; 1000];
        assert!(is_zero(&v));
        for i in [0, 63, 64, 500, 999] {
            v[i] = 1;
            assert!(!is_zero(&v), "{i}");
            v[i] = 0;
        }
    }
}
