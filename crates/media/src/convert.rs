//! Copying a medium into a new image (VBoxManage `clonemedium`).

use std::path::Path;

use crate::create::{create, CreateOptions};
use crate::disk::Disk;
use crate::error::Result;
use crate::layer::{Format, LayerInfo};
use crate::medium::{Allocation, Medium};
use crate::open::{open, OpenOptions};

/// Copy buffer: large enough to amortise syscalls, small enough for the cache.
const CHUNK: u64 = 4 << 20;
/// Bytes written between hints that start host write-back of the destination.
const SYNC_EVERY: u64 = 64 << 20;

/// Copy `src` (the whole chain, flattened) into a new image at `dst`.
///
/// Only ranges holding data are read; all-zero chunks are not written, so dynamic
/// destinations stay sparse. `progress(done, total)` is called as bytes are done.
pub fn clone_medium(
    src: &mut Medium,
    dst: &Path,
    format: Format,
    fixed: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<LayerInfo> {
    let size = src.size();
    create(
        dst,
        &CreateOptions {
            format,
            size,
            fixed,
            parent: None,
            uuid: None,
        },
    )?;
    let mut out = open(
        dst,
        &OpenOptions {
            writable: true,
            format: Some(format),
            ..OpenOptions::default()
        },
    )?;
    let hint_files: Vec<std::fs::File> = out.info()[0]
        .files
        .iter()
        .filter_map(|p| std::fs::File::open(p).ok())
        .collect();
    progress(0, size);
    // Reader thread and writer (this thread) run in a pipeline: on a 2-core host the
    // copy-in and copy-out overlap, and the writer starts host write-back every SYNC_EVERY bytes so the
    // final fdatasync is short.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, Vec<u8>)>>(4);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            let mut off = 0u64;
            while off < size {
                let want = CHUNK.min(size - off);
                let step = (|| -> Result<Option<(u64, Vec<u8>)>> {
                    let (kind, run) = src.allocation(off, want)?;
                    let run = run.clamp(1, want);
                    if kind == Allocation::Zero {
                        return Ok(Some((run, Vec::new())));
                    }
                    let mut buf = back_rx
                        .try_recv()
                        .unwrap_or_else(|_| vec![0u8; CHUNK as usize]);
                    buf.resize(run as usize, 0);
                    src.read_at(&mut buf, off)?;
                    Ok(Some((run, buf)))
                })();
                match step {
                    Ok(Some((run, buf))) => {
                        if tx.send(Ok((off, buf))).is_err() {
                            return;
                        }
                        off += run;
                    }
                    Ok(None) => return,
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
            if !buf.is_empty() && !is_zero(&buf) {
                out.write_at(&buf, off)?;
                since_sync += buf.len() as u64;
                if since_sync >= SYNC_EVERY {
                    // Start write-back now (without waiting), so the final fdatasync
                    // finds little left to write.
                    for f in &hint_files {
                        let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
                    }
                    since_sync = 0;
                }
            }
            progress((off + buf.len() as u64).min(size), size);
            let _ = back_tx.send(buf);
        }
        Ok(())
    })?;
    progress(size, size);
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
