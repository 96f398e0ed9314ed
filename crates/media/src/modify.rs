//! `modifymedium --compact / --resize` for the formats that support them (VirtualBox:
//! VDI compaction; VDI and VHD resizing).

use std::path::Path;

use crate::error::{MediaError, Result};
use crate::layer::Format;
use crate::storage::{FileStorage, LockMode, Storage};
use crate::vhd::footer::{DynHeader, Footer, TYPE_FIXED};

/// Reclaim blocks that hold only zeros (VDI). `progress(done, total)`.
pub fn compact(path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let st = FileStorage::open(path, false, LockMode::Shared)?;
    let format = crate::open::detect(&st)?;
    drop(st);
    match format {
        Format::Vdi => crate::vdi::modify::rewrite(
            path,
            crate::vdi::modify::Rewrite {
                new_size: None,
                drop_zero_blocks: true,
            },
            progress,
        ),
        f => Err(MediaError::unsupported(
            path,
            format!(
                "compacting {} images (VirtualBox compacts VDI only)",
                f.name()
            ),
        )),
    }
}

/// Grow the virtual size to `new_size` bytes (VDI, VHD).
pub fn resize(path: &Path, new_size: u64, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    if new_size > crate::bytes::MAX_DISK_SIZE {
        return Err(MediaError::InvalidArgument(format!(
            "size {new_size} is absurdly large"
        )));
    }
    let st = FileStorage::open(path, false, LockMode::Shared)?;
    let format = crate::open::detect(&st)?;
    drop(st);
    match format {
        Format::Vdi => crate::vdi::modify::grow(path, new_size, progress),
        Format::Vhd => resize_vhd(path, new_size),
        f => Err(MediaError::unsupported(
            path,
            format!(
                "resizing {} images (VirtualBox resizes VDI and VHD only)",
                f.name()
            ),
        )),
    }
}

fn resize_vhd(path: &Path, new_size: u64) -> Result<()> {
    let new_size = crate::bytes::round_up(new_size, 512).unwrap_or(new_size);
    if new_size > crate::vhd::footer::MAX_VHD_SIZE {
        return Err(MediaError::InvalidArgument(
            "VHD images are limited to 2 TiB".into(),
        ));
    }
    // Validate everything before touching the file.
    let layer =
        crate::vhd::VhdLayer::open(Box::new(FileStorage::open(path, false, LockMode::Shared)?))?;
    drop(layer);
    let mut st = FileStorage::open(path, true, LockMode::Exclusive)?;
    let len = st.len();
    let mut fb = [0u8; 512];
    st.read_at(&mut fb, len - 512)?;
    let mut footer = Footer::parse(&fb).map_err(|m| MediaError::corrupt(path, "VHD", m))?;
    if new_size < footer.current_size {
        return Err(MediaError::unsupported(
            path,
            "shrinking a medium is not supported",
        ));
    }
    footer.current_size = new_size;
    footer.geometry = crate::vhd::footer::chs_geometry(new_size / 512);
    if footer.disk_type == TYPE_FIXED {
        let old_footer_at = len - 512;
        // New footer at the new end first, then zero the old footer's sector (now data).
        st.write_at(&footer.to_bytes(), new_size)?;
        st.sync_data()?;
        st.write_at(&[0u8; 512], old_footer_at)?;
        st.sync_data()?;
        return Ok(());
    }
    let mut hb = vec![0u8; 1024];
    st.read_at(&mut hb, footer.data_offset)?;
    let mut dynh = DynHeader::parse(&hb).map_err(|m| MediaError::corrupt(path, "VHD", m))?;
    let need = new_size.div_ceil(u64::from(dynh.block_size));
    // Room for the BAT: up to the first block, locator or the footer.
    let mut limit = len - 512;
    let mut raw = vec![0u8; 4 * dynh.max_entries as usize];
    st.read_at(&mut raw, dynh.table_offset)?;
    for c in raw.chunks_exact(4) {
        let e = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        if e != u32::MAX {
            limit = limit.min(u64::from(e) * 512);
        }
    }
    for l in &dynh.locators {
        if l.offset > dynh.table_offset {
            limit = limit.min(l.offset);
        }
    }
    if dynh.table_offset + 4 * need > limit {
        return Err(MediaError::unsupported(
            path,
            "the block allocation table has no room to grow this far",
        ));
    }
    let added = need.saturating_sub(u64::from(dynh.max_entries)) as usize;
    st.write_at(
        &vec![0xFF; 4 * added],
        dynh.table_offset + 4 * u64::from(dynh.max_entries),
    )?;
    dynh.max_entries = need as u32;
    st.write_at(&dynh.to_bytes(), footer.data_offset)?;
    st.sync_data()?;
    st.write_at(&footer.to_bytes(), 0)?;
    st.write_at(&footer.to_bytes(), len - 512)?;
    st.sync_data()?;
    Ok(())
}
