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
    let mut buf = vec![0u8; CHUNK as usize];
    let mut off = 0u64;
    progress(0, size);
    while off < size {
        let want = CHUNK.min(size - off);
        let (kind, run) = src.allocation(off, want)?;
        let run = run.clamp(1, want);
        if kind == Allocation::Data {
            let piece = &mut buf[..run as usize];
            src.read_at(piece, off)?;
            if !is_zero(piece) {
                out.write_at(piece, off)?;
            }
        }
        off += run;
        progress(off, size);
    }
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
