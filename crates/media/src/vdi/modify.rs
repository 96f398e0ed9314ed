//! Offline VDI maintenance: compaction and growing, by rewriting into a new file that
//! atomically replaces the old one (a kill at any point leaves one complete image).

use std::path::{Path, PathBuf};

use super::header::{VdiHeader, FREE, ZERO};
use super::VdiLayer;
use crate::error::{MediaError, Result};
use crate::storage::{FileStorage, LockMode, Storage};

/// What [`rewrite`] does to the blocks.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    /// New virtual size (grow only), or keep.
    pub new_size: Option<u64>,
    /// Drop blocks whose data is all zeros (free in a base image, zero in a child).
    pub drop_zero_blocks: bool,
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut n = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    n.push(".novabox-tmp");
    path.with_file_name(n)
}

/// Rewrite a VDI with its blocks packed in disk order. `progress(done, total)`.
pub fn rewrite(path: &Path, what: Rewrite, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let src = FileStorage::open(path, true, LockMode::Exclusive)?;
    let layer = VdiLayer::open(Box::new(src))?;
    let old = layer.header().clone();
    let map = layer.block_map().to_vec();
    let mut hdr = old.clone();
    if let Some(ns) = what.new_size {
        if ns < old.disk_size {
            return Err(MediaError::unsupported(
                path,
                "shrinking a medium is not supported",
            ));
        }
        if old.block_size != 1 << 20 || old.block_extra != 0 {
            return Err(MediaError::unsupported(
                path,
                "resizing an image with non-default block size",
            ));
        }
        let fresh = VdiHeader::new(ns, old.image_type).ok_or_else(|| {
            MediaError::InvalidArgument(format!("size {ns} is too large for VDI"))
        })?;
        hdr.disk_size = ns;
        hdr.blocks = fresh.blocks;
        hdr.off_blocks = hdr.off_blocks.max(fresh.off_blocks);
        let map_end = u64::from(hdr.off_blocks) + 4 * u64::from(hdr.blocks);
        hdr.off_data = u32::try_from(crate::bytes::round_up(map_end, 1 << 20).unwrap_or(u64::MAX))
            .map_err(|_| MediaError::InvalidArgument("block map too large".into()))?;
        hdr.off_data = hdr.off_data.max(old.off_data);
    }
    let fixed = old.image_type == super::header::TYPE_FIXED;
    let tmp = tmp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let mut out = FileStorage::create(&tmp)?;
    let result = (|| -> Result<()> {
        let bs = old.slot_size();
        let mut newmap = vec![FREE; hdr.blocks as usize];
        let mut buf = vec![0u8; bs as usize];
        let mut slot = 0u32;
        let total = map.len() as u64;
        let src = layer;
        for (b, &e) in map.iter().enumerate() {
            if e != FREE && e != ZERO {
                src.read_slot(e, &mut buf)?;
                let data_part = &buf[old.block_extra as usize..];
                if what.drop_zero_blocks && !fixed && data_part.iter().all(|&x| x == 0) {
                    newmap[b] = if old.is_diff() { ZERO } else { FREE };
                } else {
                    out.write_at(&buf, u64::from(hdr.off_data) + u64::from(slot) * bs)?;
                    newmap[b] = slot;
                    slot += 1;
                }
            } else {
                newmap[b] = e;
            }
            if b % 64 == 0 {
                progress(b as u64, total);
            }
        }
        if fixed {
            // New blocks of a fixed image are allocated too.
            for entry in newmap.iter_mut().skip(map.len()) {
                *entry = slot;
                slot += 1;
            }
        }
        hdr.blocks_allocated = slot;
        let end = u64::from(hdr.off_data) + u64::from(slot) * bs;
        if out.len() < end {
            out.set_len(end)?;
        }
        let raw: Vec<u8> = newmap.iter().flat_map(|e| e.to_le_bytes()).collect();
        out.write_at(&raw, u64::from(hdr.off_blocks))?;
        hdr.uuid_modify = crate::uuid::Uuid::random();
        out.write_at(&hdr.to_bytes(), 0)?;
        out.sync_data()?;
        progress(total, total);
        drop(src);
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| MediaError::io(path, "rename", e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Grow a VDI in place when the block map has room before the data, else rewrite.
pub fn grow(path: &Path, new_size: u64, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let hdr = {
        let st = FileStorage::open(path, false, LockMode::Shared)?;
        VdiLayer::open(Box::new(st))?.header().clone()
    };
    if new_size < hdr.disk_size {
        return Err(MediaError::unsupported(
            path,
            "shrinking a medium is not supported",
        ));
    }
    let new_blocks = new_size.div_ceil(u64::from(hdr.block_size));
    let fits = u64::from(hdr.off_blocks) + 4 * new_blocks <= u64::from(hdr.off_data)
        && hdr.image_type != super::header::TYPE_FIXED
        && new_blocks <= u64::from(super::header::MAX_BLOCKS);
    if !fits {
        return rewrite(
            path,
            Rewrite {
                new_size: Some(new_size),
                drop_zero_blocks: false,
            },
            progress,
        );
    }
    let mut st = FileStorage::open(path, true, LockMode::Exclusive)?;
    let added = (new_blocks - u64::from(hdr.blocks)) as usize;
    // New map entries first (ignored while the header still has the old count), then
    // the header in one write.
    let raw = vec![0xFFu8; 4 * added];
    st.write_at(&raw, u64::from(hdr.off_blocks) + 4 * u64::from(hdr.blocks))?;
    st.sync_data()?;
    let mut h = hdr;
    h.disk_size = new_size;
    h.blocks = new_blocks as u32;
    h.uuid_modify = crate::uuid::Uuid::random();
    st.write_at(&h.to_bytes(), 0)?;
    st.sync_data()?;
    progress(1, 1);
    Ok(())
}
