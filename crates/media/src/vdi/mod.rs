//! VDI: VirtualBox's own format (normal/dynamic, fixed, differencing).
//!
//! Crash safety: a new block's data is written to a fresh slot past every slot in use;
//! the block map and header are only changed in memory. `flush` first makes the data
//! durable (fdatasync), then writes the header (one write, within one sector) and the
//! touched map sectors, then syncs again. A kill at any instant leaves either the old
//! metadata (the new slot is just unused bytes past `blocks_allocated`, reused on the
//! next allocation) or the new metadata pointing at durable data. The header goes first:
//! a kill between the header and the map write leaves at worst a leaked slot, never two
//! blocks sharing one.

pub mod header;
pub mod modify;

use std::collections::BTreeSet;

use crate::error::{MediaError, Result};
use crate::layer::{Extent, Format, Layer, LayerInfo, ParentRef, Variant};
use crate::storage::Storage;
use crate::uuid::Uuid;
use header::{HeaderError, VdiHeader, FREE, ZERO};

/// Map entries per 512-byte map sector (the unit of map writes).
const ENTRIES_PER_SECTOR: usize = 128;

/// Whether the storage starts with a VDI signature.
pub fn probe(head: &[u8]) -> bool {
    head.len() >= 0x44 && crate::bytes::le32(head, 0x40) == header::SIGNATURE
}

/// An open VDI image.
pub struct VdiLayer {
    storage: Box<dyn Storage>,
    hdr: VdiHeader,
    map: Vec<u32>,
    dirty_sectors: BTreeSet<usize>,
    header_dirty: bool,
    modified: bool,
}

fn map_header_error(path: &std::path::Path, e: HeaderError) -> MediaError {
    match e {
        HeaderError::NotVdi => MediaError::corrupt(path, "VDI", "no VDI signature"),
        HeaderError::Unsupported(m) => MediaError::unsupported(path, m),
        HeaderError::Corrupt(m) => MediaError::corrupt(path, "VDI", m),
    }
}

impl VdiLayer {
    /// Parse and validate header, block map and data area. Nothing is written.
    pub fn open(storage: Box<dyn Storage>) -> Result<VdiLayer> {
        let path = storage.path().to_path_buf();
        let file_len = storage.len();
        let mut head = vec![0u8; 0x48 + 0x1000];
        let n = head.len().min(file_len as usize);
        storage.read_at(&mut head[..n], 0)?;
        head.truncate(n);
        let hdr = VdiHeader::parse(&head).map_err(|e| map_header_error(&path, e))?;
        let map_bytes = 4 * u64::from(hdr.blocks);
        let map_end = u64::from(hdr.off_blocks) + map_bytes;
        if map_end > file_len {
            return Err(MediaError::Truncated {
                path,
                offset: u64::from(hdr.off_blocks),
                end: map_end,
                file_size: file_len,
            });
        }
        let mut raw = vec![0u8; map_bytes as usize];
        storage.read_at(&mut raw, u64::from(hdr.off_blocks))?;
        let map: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        header::validate_map(&hdr, &map).map_err(|m| MediaError::corrupt(&path, "VDI", m))?;
        let data_end = u64::from(hdr.off_data) + u64::from(hdr.blocks_allocated) * hdr.slot_size();
        if data_end > file_len {
            return Err(MediaError::corrupt(
                &path,
                "VDI",
                format!(
                    "{} allocated blocks need the file to be {data_end} bytes but it is {file_len} (truncated)",
                    hdr.blocks_allocated
                ),
            ));
        }
        Ok(VdiLayer {
            storage,
            hdr,
            map,
            dirty_sectors: BTreeSet::new(),
            header_dirty: false,
            modified: false,
        })
    }

    /// Create a new image in empty storage: dynamic, fixed, or a child of `parent`
    /// (its image UUID and modification UUID).
    pub fn create(
        mut storage: Box<dyn Storage>,
        size: u64,
        fixed: bool,
        parent: Option<(Uuid, Uuid)>,
        uuid: Option<Uuid>,
    ) -> Result<VdiLayer> {
        let ty = match (fixed, parent.is_some()) {
            (_, true) => header::TYPE_DIFF,
            (true, false) => header::TYPE_FIXED,
            (false, false) => header::TYPE_NORMAL,
        };
        let mut hdr = VdiHeader::new(size, ty).ok_or_else(|| {
            MediaError::InvalidArgument(format!("disk size {size} is too large for VDI"))
        })?;
        if let Some(u) = uuid {
            hdr.uuid_create = u;
        }
        if let Some((pu, pm)) = parent {
            hdr.uuid_linkage = pu;
            hdr.uuid_parent_modify = pm;
        }
        let blocks = hdr.blocks as usize;
        let map: Vec<u32> = if ty == header::TYPE_FIXED {
            hdr.blocks_allocated = hdr.blocks;
            (0..hdr.blocks).collect()
        } else {
            vec![FREE; blocks]
        };
        if ty == header::TYPE_FIXED {
            let data_len = u64::from(hdr.blocks) * hdr.slot_size();
            storage.preallocate(u64::from(hdr.off_data), data_len)?;
        }
        let raw: Vec<u8> = map.iter().flat_map(|e| e.to_le_bytes()).collect();
        storage.write_at(&raw, u64::from(hdr.off_blocks))?;
        let end = u64::from(hdr.off_data) + u64::from(hdr.blocks_allocated) * hdr.slot_size();
        if storage.len() < end {
            storage.set_len(end)?;
        }
        storage.write_at(&hdr.to_bytes(), 0)?;
        storage.sync_data()?;
        Ok(VdiLayer {
            storage,
            hdr,
            map,
            dirty_sectors: BTreeSet::new(),
            header_dirty: false,
            modified: false,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &VdiHeader {
        &self.hdr
    }

    /// The block map.
    pub fn block_map(&self) -> &[u32] {
        &self.map
    }

    /// Read a whole data slot (extra + data) for offline maintenance.
    pub fn read_slot(&self, slot: u32, buf: &mut [u8]) -> Result<()> {
        let off = self.slot_offset(slot) - u64::from(self.hdr.block_extra);
        self.storage.read_at(buf, off)
    }

    fn block_size(&self) -> u64 {
        u64::from(self.hdr.block_size)
    }

    fn slot_offset(&self, slot: u32) -> u64 {
        u64::from(self.hdr.off_data)
            + u64::from(slot) * self.hdr.slot_size()
            + u64::from(self.hdr.block_extra)
    }

    fn extent_of(entry: u32) -> Extent {
        match entry {
            FREE => Extent::Absent,
            ZERO => Extent::Zero,
            _ => Extent::Data,
        }
    }

    fn set_entry(&mut self, block: usize, value: u32) {
        self.map[block] = value;
        self.dirty_sectors.insert(block / ENTRIES_PER_SECTOR);
        self.modified = true;
    }

    fn allocate(&mut self, block: usize, data: &[u8]) -> Result<()> {
        let slot = self.hdr.blocks_allocated;
        if slot >= self.hdr.blocks {
            return Err(MediaError::corrupt(
                self.storage.path(),
                "VDI",
                "no free data slot left although a block is unallocated",
            ));
        }
        let bs = self.block_size() as usize;
        let extra = self.hdr.block_extra as usize;
        let off = self.slot_offset(slot) - extra as u64;
        if extra == 0 && data.len() == bs {
            self.storage.write_at(data, off)?;
        } else {
            // Pad the last (short) block and any per-block prefix with zeros.
            let mut full = vec![0u8; extra + bs];
            full[extra..extra + data.len()].copy_from_slice(data);
            self.storage.write_at(&full, off)?;
        }
        self.hdr.blocks_allocated = slot + 1;
        self.header_dirty = true;
        self.set_entry(block, slot);
        Ok(())
    }

    /// Write the header and dirty map sectors (data must already be durable).
    fn write_metadata(&mut self) -> Result<()> {
        if self.modified {
            // VirtualBox gives every modified state a fresh modification UUID.
            self.hdr.uuid_modify = Uuid::random();
            self.header_dirty = true;
            self.modified = false;
        }
        if self.header_dirty {
            let bytes = self.hdr.to_bytes();
            self.storage.write_at(&bytes, 0)?;
            self.header_dirty = false;
        }
        let sectors: Vec<usize> = std::mem::take(&mut self.dirty_sectors)
            .into_iter()
            .collect();
        // Coalesce neighbouring sectors into one write each.
        let mut i = 0;
        while i < sectors.len() {
            let mut j = i;
            while j + 1 < sectors.len() && sectors[j + 1] == sectors[j] + 1 {
                j += 1;
            }
            let first = sectors[i] * ENTRIES_PER_SECTOR;
            let last = ((sectors[j] + 1) * ENTRIES_PER_SECTOR).min(self.map.len());
            let raw: Vec<u8> = self.map[first..last]
                .iter()
                .flat_map(|e| e.to_le_bytes())
                .collect();
            self.storage
                .write_at(&raw, u64::from(self.hdr.off_blocks) + 4 * first as u64)?;
            i = j + 1;
        }
        Ok(())
    }
}

impl Layer for VdiLayer {
    fn info(&self) -> LayerInfo {
        let parent = self.hdr.is_diff().then(|| ParentRef {
            uuid: Some(self.hdr.uuid_linkage),
            cid: None,
            hints: Vec::new(),
        });
        LayerInfo {
            path: self.storage.path().to_path_buf(),
            format: Format::Vdi,
            variant: Variant {
                fixed: self.hdr.image_type == header::TYPE_FIXED,
                diff: self.hdr.is_diff(),
                ..Variant::default()
            },
            uuid: self.hdr.uuid_create,
            cid: None,
            size: self.hdr.disk_size,
            block_size: self.block_size(),
            parent,
            size_on_disk: self.storage.len(),
            files: vec![self.storage.path().to_path_buf()],
        }
    }

    fn size(&self) -> u64 {
        self.hdr.disk_size
    }

    fn writable(&self) -> bool {
        !self.storage.read_only()
    }

    fn map(&mut self, off: u64, len: u64) -> Result<(Extent, u64)> {
        let bs = self.block_size();
        let mut block = (off / bs) as usize;
        let kind = Self::extent_of(self.map[block]);
        let mut run = (bs - off % bs).min(len);
        // Merge following blocks of the same kind so big reads take few steps.
        while run < len {
            block += 1;
            match self.map.get(block) {
                Some(&e) if Self::extent_of(e) == kind => run = (run + bs).min(len),
                _ => break,
            }
        }
        Ok((kind, run))
    }

    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let bs = self.block_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let block = (pos / bs) as usize;
            let n = ((bs - pos % bs) as usize).min(buf.len() - done);
            let piece = &mut buf[done..done + n];
            match self.map[block] {
                FREE | ZERO => piece.fill(0),
                slot => self
                    .storage
                    .read_at(piece, self.slot_offset(slot) + pos % bs)?,
            }
            done += n;
        }
        Ok(())
    }

    fn alloc_unit(&self, off: u64) -> (u64, u64) {
        let bs = self.block_size();
        let start = off - off % bs;
        (start, bs.min(self.hdr.disk_size - start))
    }

    fn write(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        let bs = self.block_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let block = (pos / bs) as usize;
            let n = ((bs - pos % bs) as usize).min(buf.len() - done);
            let piece = &buf[done..done + n];
            match self.map[block] {
                FREE | ZERO => {
                    // The chain hands us whole units here; a partial one means the rest
                    // of the block is zeros.
                    if pos & (bs - 1) == 0 {
                        self.allocate(block, piece)?;
                    } else {
                        let mut full = vec![0u8; n + (pos % bs) as usize];
                        full[(pos % bs) as usize..].copy_from_slice(piece);
                        self.allocate(block, &full)?;
                    }
                }
                slot => {
                    let o = self.slot_offset(slot) + pos % bs;
                    self.storage.write_at(piece, o)?;
                    self.modified = true;
                }
            }
            done += n;
        }
        Ok(())
    }

    fn mark_zero(&mut self, unit_start: u64) -> Result<bool> {
        let block = (unit_start / self.block_size()) as usize;
        if self.map[block] == FREE {
            self.set_entry(block, ZERO);
        }
        Ok(true)
    }

    fn punch(&mut self, off: u64, len: u64) -> Result<()> {
        let bs = self.block_size();
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let block = (pos / bs) as usize;
            let n = (bs - pos % bs).min(end - pos);
            let slot = self.map[block];
            if slot != FREE && slot != ZERO {
                self.storage
                    .punch_hole(self.slot_offset(slot) + pos % bs, n)?;
                self.modified = true;
            }
            pos += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let pending = self.header_dirty || self.modified || !self.dirty_sectors.is_empty();
        // Data first: the metadata written below must never point at data that could
        // still be lost.
        self.storage.sync_data()?;
        if pending {
            self.write_metadata()?;
            self.storage.sync_data()?;
        }
        Ok(())
    }
}

impl Drop for VdiLayer {
    fn drop(&mut self) {
        // Closing commits pending metadata, as closing a VM's disk does.
        if !self.storage.read_only() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::Disk;

    fn mem_vdi(size: u64, fixed: bool) -> VdiLayer {
        VdiLayer::create(
            Box::new(MemStorage::new("t.vdi", Vec::new())),
            size,
            fixed,
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn write_read_roundtrip_and_sparse() {
        let l = mem_vdi(5 << 20, false);
        let mut m = crate::Medium::from_layers(vec![Box::new(l)], true).unwrap();
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        m.write_at(&data, (1 << 20) + 100).unwrap();
        let mut back = vec![0u8; 3000];
        m.read_at(&mut back, (1 << 20) + 100).unwrap();
        assert_eq!(back, data);
        let mut z = vec![1u8; 512];
        m.read_at(&mut z, 0).unwrap();
        assert!(z.iter().all(|&b| b == 0));
        m.flush().unwrap();
    }

    #[test]
    fn open_rejects_truncated_data_area() {
        let l = mem_vdi(3 << 20, true);
        let hdr = l.header().clone();
        let mut bytes = vec![0u8; hdr.off_data as usize + 100];
        let h = hdr.to_bytes();
        bytes[..h.len()].copy_from_slice(&h);
        for (i, e) in l.block_map().iter().enumerate() {
            let o = hdr.off_blocks as usize + 4 * i;
            bytes[o..o + 4].copy_from_slice(&e.to_le_bytes());
        }
        let err = VdiLayer::open(Box::new(MemStorage::new("bad.vdi", bytes)))
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("bad.vdi") && msg.contains("truncated"),
            "{msg}"
        );
    }
}
