//! VHD: fixed, dynamic and differencing images.
//!
//! Crash safety of an allocation: the footer is first written at the new end of the
//! file, then the block (bitmap + data) where the old footer was; the BAT entry is
//! written only by `flush`, after the data is durable. A kill at any point leaves a
//! valid footer at the end and a BAT that only points at complete blocks.

pub mod footer;

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{MediaError, Result};
use crate::layer::{Extent, Format, Layer, LayerInfo, ParentRef, Variant};
use crate::storage::Storage;
use crate::uuid::Uuid;
use footer::{DynHeader, Footer, Locator, TYPE_DIFF, TYPE_DYNAMIC, TYPE_FIXED};

const UNALLOCATED: u32 = 0xFFFF_FFFF;
/// Write granularity for fixed images (no allocation of their own).
const FIXED_UNIT: u64 = 1 << 20;
/// Default block size VirtualBox and QEMU create.
pub const DEFAULT_BLOCK: u32 = 2 << 20;

/// An open VHD image.
pub struct VhdLayer {
    storage: Box<dyn Storage>,
    footer: Footer,
    dynh: Option<DynHeader>,
    bat: Vec<u32>,
    bitmap_bytes: u64,
    bitmaps: BTreeMap<u32, Vec<u8>>,
    dirty_bat: BTreeSet<usize>,
    dirty_bitmaps: BTreeSet<u32>,
    /// Where the next block goes (the current footer position).
    next_block: u64,
    hints: Vec<String>,
}

fn corrupt(p: &std::path::Path, m: impl Into<String>) -> MediaError {
    MediaError::corrupt(p, "VHD", m)
}

fn decode_locator(code: &[u8; 4], data: &[u8]) -> Option<String> {
    let s = match code {
        b"W2ku" | b"W2ru" => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            String::from_utf16(&units).ok()?
        }
        b"MacX" => String::from_utf8(data.to_vec())
            .ok()?
            .trim_end_matches('\0')
            .trim_start_matches("file://")
            .to_string(),
        _ => return None,
    };
    let s = s.replace('\\', "/");
    let s = s.strip_prefix("./").map(str::to_string).unwrap_or(s);
    (!s.is_empty()).then_some(s)
}

impl VhdLayer {
    /// Parse and validate footer, dynamic header, BAT and locators. Nothing is written.
    pub fn open(storage: Box<dyn Storage>) -> Result<VhdLayer> {
        let path = storage.path().to_path_buf();
        let len = storage.len();
        if len < 512 {
            return Err(corrupt(
                &path,
                format!("file of {len} bytes is too short for a VHD footer"),
            ));
        }
        let mut tail = [0u8; 512];
        storage.read_at(&mut tail, len - 512)?;
        let footer = match Footer::parse(&tail) {
            Ok(f) => f,
            Err(tail_err) => {
                // A dynamic disk keeps a copy of the footer at offset 0.
                let mut head = [0u8; 512];
                storage.read_at(&mut head, 0)?;
                match Footer::parse(&head) {
                    Ok(f) if f.disk_type != TYPE_FIXED => f,
                    _ => return Err(corrupt(&path, tail_err)),
                }
            }
        };
        let mut l = VhdLayer {
            storage,
            footer,
            dynh: None,
            bat: Vec::new(),
            bitmap_bytes: 0,
            bitmaps: BTreeMap::new(),
            dirty_bat: BTreeSet::new(),
            dirty_bitmaps: BTreeSet::new(),
            next_block: len - 512,
            hints: Vec::new(),
        };
        if l.footer.disk_type == TYPE_FIXED {
            if l.footer.current_size > len - 512 {
                return Err(MediaError::Truncated {
                    path,
                    offset: 0,
                    end: l.footer.current_size + 512,
                    file_size: len,
                });
            }
            return Ok(l);
        }
        l.open_dynamic(len)?;
        Ok(l)
    }

    fn open_dynamic(&mut self, len: u64) -> Result<()> {
        let path = self.storage.path().to_path_buf();
        let doff = self.footer.data_offset;
        if doff < 512 || doff.checked_add(1024).is_none_or(|e| e > len) {
            return Err(corrupt(
                &path,
                format!("dynamic header offset {doff:#x} is outside the file"),
            ));
        }
        let mut hb = vec![0u8; 1024];
        self.storage.read_at(&mut hb, doff)?;
        let dynh = DynHeader::parse(&hb).map_err(|m| corrupt(&path, m))?;
        let bs = u64::from(dynh.block_size);
        let need = self.footer.current_size.div_ceil(bs);
        if u64::from(dynh.max_entries) < need {
            return Err(corrupt(
                &path,
                format!(
                    "{} BAT entries of {bs} bytes cannot hold the disk size {}",
                    dynh.max_entries, self.footer.current_size
                ),
            ));
        }
        if u64::from(dynh.max_entries) > crate::bytes::MAX_DISK_SIZE / 512 {
            return Err(corrupt(
                &path,
                format!("absurd BAT size {} entries", dynh.max_entries),
            ));
        }
        let bat_bytes = 4 * u64::from(dynh.max_entries);
        let bat_end = dynh.table_offset.saturating_add(bat_bytes);
        if dynh.table_offset < 512 || bat_end > len {
            return Err(MediaError::Truncated {
                path,
                offset: dynh.table_offset,
                end: bat_end,
                file_size: len,
            });
        }
        let mut raw = vec![0u8; bat_bytes as usize];
        self.storage.read_at(&mut raw, dynh.table_offset)?;
        let bat: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        self.bitmap_bytes = crate::bytes::round_up((bs / 512).div_ceil(8), 512).unwrap_or(512);
        let block_span = self.bitmap_bytes + bs;
        // Metadata regions no block may overlap.
        let mut regions: Vec<(u64, u64, String)> = vec![
            (0, 512, "the footer copy".into()),
            (doff, doff + 1024, "the dynamic header".into()),
            (
                dynh.table_offset,
                bat_end,
                "the block allocation table".into(),
            ),
        ];
        let mut max_end = 0u64;
        for (i, &e) in bat.iter().enumerate() {
            if e == UNALLOCATED {
                continue;
            }
            let start = u64::from(e) * 512;
            let end = start + block_span;
            if end > len {
                return Err(corrupt(
                    &path,
                    format!("BAT entry {i} points at {start:#x}, past the end of the file ({len} bytes)"),
                ));
            }
            regions.push((start, end, format!("block {i}")));
            max_end = max_end.max(end);
        }
        regions.sort();
        for w in regions.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(corrupt(&path, format!("{} overlaps {}", w[1].2, w[0].2)));
            }
        }
        if self.footer.disk_type == TYPE_DIFF {
            for loc in dynh
                .locators
                .iter()
                .filter(|l| matches!(&l.code, b"W2ru" | b"W2ku" | b"MacX"))
            {
                if loc.length == 0 || loc.length > 64 * 1024 {
                    continue;
                }
                let mut d = vec![0u8; loc.length as usize];
                if self.storage.read_at(&mut d, loc.offset).is_ok() {
                    if let Some(h) = decode_locator(&loc.code, &d) {
                        // Relative locators first: they survive moving the machine folder.
                        if &loc.code == b"W2ru" {
                            self.hints.insert(0, h);
                        } else {
                            self.hints.push(h);
                        }
                    }
                }
            }
            if !dynh.parent_name.is_empty() {
                self.hints.push(dynh.parent_name.clone());
            }
        }
        self.next_block = (len - 512).max(max_end);
        self.bat = bat;
        self.dynh = Some(dynh);
        Ok(())
    }

    /// Create a new VHD in empty storage.
    pub fn create(
        mut storage: Box<dyn Storage>,
        size: u64,
        fixed: bool,
        parent: Option<(Uuid, String, String)>,
        uuid: Option<Uuid>,
    ) -> Result<VhdLayer> {
        if size > footer::MAX_VHD_SIZE || size == 0 {
            return Err(MediaError::InvalidArgument(format!(
                "VHD size must be between 1 byte and 2 TiB, not {size}"
            )));
        }
        let size = crate::bytes::round_up(size, 512).unwrap_or(size);
        let uuid = uuid.unwrap_or_else(Uuid::random);
        if fixed {
            let f = Footer::new(size, TYPE_FIXED, uuid);
            storage.preallocate(0, size)?;
            storage.write_at(&f.to_bytes(), size)?;
            storage.sync_data()?;
            return VhdLayer::open(storage);
        }
        let disk_type = if parent.is_some() {
            TYPE_DIFF
        } else {
            TYPE_DYNAMIC
        };
        let f = Footer::new(size, disk_type, uuid);
        let entries = size.div_ceil(u64::from(DEFAULT_BLOCK));
        let bat_off = 1536u64;
        let bat_bytes = crate::bytes::round_up(entries * 4, 512).unwrap_or(512);
        let mut dynh = DynHeader {
            table_offset: bat_off,
            max_entries: entries as u32,
            block_size: DEFAULT_BLOCK,
            parent_id: Uuid::NIL,
            parent_timestamp: 0,
            parent_name: String::new(),
            locators: Vec::new(),
        };
        let mut end = bat_off + bat_bytes;
        let mut loc_data = Vec::new();
        if let Some((pid, rel, abs)) = parent {
            dynh.parent_id = pid;
            dynh.parent_timestamp = footer::now_vhd();
            dynh.parent_name = std::path::Path::new(&rel)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for (code, text) in [(*b"W2ru", rel), (*b"W2ku", abs)] {
                let bytes: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
                let space = crate::bytes::round_up(bytes.len().max(1) as u64, 512).unwrap_or(512);
                dynh.locators.push(Locator {
                    code,
                    space: (space / 512) as u32,
                    length: bytes.len() as u32,
                    offset: end,
                });
                loc_data.push((end, bytes));
                end += space;
            }
        }
        storage.write_at(&f.to_bytes(), 0)?;
        storage.write_at(&dynh.to_bytes(), 512)?;
        storage.write_at(&vec![0xFF; bat_bytes as usize], bat_off)?;
        for (o, d) in loc_data {
            storage.write_at(&d, o)?;
        }
        storage.write_at(&f.to_bytes(), end)?;
        storage.sync_data()?;
        VhdLayer::open(storage)
    }

    fn block_size(&self) -> u64 {
        self.dynh
            .as_ref()
            .map(|d| u64::from(d.block_size))
            .unwrap_or(FIXED_UNIT)
    }

    fn is_fixed(&self) -> bool {
        self.dynh.is_none()
    }

    fn bitmap(&mut self, block: u32) -> Result<&mut Vec<u8>> {
        if !self.bitmaps.contains_key(&block) {
            let off = u64::from(self.bat[block as usize]) * 512;
            let mut b = vec![0u8; self.bitmap_bytes as usize];
            self.storage.read_at(&mut b, off)?;
            self.bitmaps.insert(block, b);
        }
        Ok(self.bitmaps.get_mut(&block).expect("inserted above"))
    }

    fn data_offset(&self, block: u32, in_block: u64) -> u64 {
        u64::from(self.bat[block as usize]) * 512 + self.bitmap_bytes + in_block
    }

    fn allocate(&mut self, block: u32, data: &[u8]) -> Result<()> {
        let bs = self.block_size();
        let start = crate::bytes::round_up(self.next_block, 512).unwrap_or(self.next_block);
        let sector = u32::try_from(start / 512).map_err(|_| {
            corrupt(
                self.storage.path(),
                "file grew beyond the 2 TiB a BAT can address",
            )
        })?;
        let new_end = start + self.bitmap_bytes + bs;
        // Footer first at the new end: the file always ends with a valid footer.
        self.storage.write_at(&self.footer.to_bytes(), new_end)?;
        let mut buf = vec![0u8; (self.bitmap_bytes + bs) as usize];
        buf[..self.bitmap_bytes as usize].fill(0xFF);
        let b = self.bitmap_bytes as usize;
        buf[b..b + data.len()].copy_from_slice(data);
        self.storage.write_at(&buf, start)?;
        self.next_block = new_end;
        self.bat[block as usize] = sector;
        self.bitmaps
            .insert(block, vec![0xFF; self.bitmap_bytes as usize]);
        self.dirty_bat.insert(block as usize / 128);
        Ok(())
    }

    fn write_metadata(&mut self) -> Result<()> {
        let Some(dynh) = self.dynh.as_ref() else {
            return Ok(());
        };
        let table = dynh.table_offset;
        for block in std::mem::take(&mut self.dirty_bitmaps) {
            let off = u64::from(self.bat[block as usize]) * 512;
            if let Some(b) = self.bitmaps.get(&block) {
                self.storage.write_at(b, off)?;
            }
        }
        for sector in std::mem::take(&mut self.dirty_bat) {
            let first = sector * 128;
            let last = (first + 128).min(self.bat.len());
            let raw: Vec<u8> = self.bat[first..last]
                .iter()
                .flat_map(|e| e.to_be_bytes())
                .collect();
            self.storage.write_at(&raw, table + 4 * first as u64)?;
        }
        Ok(())
    }
}

impl Layer for VhdLayer {
    fn info(&self) -> LayerInfo {
        let diff = self.footer.disk_type == TYPE_DIFF;
        LayerInfo {
            path: self.storage.path().to_path_buf(),
            format: Format::Vhd,
            variant: Variant {
                fixed: self.is_fixed(),
                diff,
                ..Variant::default()
            },
            uuid: self.footer.unique_id,
            cid: None,
            size: self.footer.current_size,
            block_size: if self.is_fixed() {
                0
            } else {
                self.block_size()
            },
            parent: diff.then(|| ParentRef {
                uuid: self.dynh.as_ref().map(|d| d.parent_id),
                cid: None,
                hints: self.hints.clone(),
            }),
            size_on_disk: self.storage.len(),
            files: vec![self.storage.path().to_path_buf()],
        }
    }

    fn size(&self) -> u64 {
        self.footer.current_size
    }

    fn writable(&self) -> bool {
        !self.storage.read_only()
    }

    fn map(&mut self, off: u64, len: u64) -> Result<(Extent, u64)> {
        if self.is_fixed() {
            return Ok((Extent::Data, len));
        }
        let bs = self.block_size();
        let block = (off / bs) as u32;
        let in_block = off % bs;
        let block_left = (bs - in_block).min(len);
        if self.bat[block as usize] == UNALLOCATED {
            let mut run = block_left;
            let mut b = block as usize + 1;
            while run < len && self.bat.get(b) == Some(&UNALLOCATED) {
                run = (run + bs).min(len);
                b += 1;
            }
            return Ok((Extent::Absent, run));
        }
        let bm = self.bitmap(block)?;
        let bit = |s: u64| bm[(s / 8) as usize] & (0x80 >> (s % 8)) != 0;
        let first = in_block / 512;
        let set = bit(first);
        let mut run = (512 - in_block % 512).min(block_left);
        let mut s = first + 1;
        while run < block_left && bit(s) == set {
            run = (run + 512).min(block_left);
            s += 1;
        }
        Ok((if set { Extent::Data } else { Extent::Absent }, run))
    }

    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        if self.is_fixed() {
            return self.storage.read_at(buf, off);
        }
        let bs = self.block_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let block = (pos / bs) as u32;
            let n = ((bs - pos % bs) as usize).min(buf.len() - done);
            if self.bat[block as usize] == UNALLOCATED {
                buf[done..done + n].fill(0);
            } else {
                let o = self.data_offset(block, pos % bs);
                self.storage.read_at(&mut buf[done..done + n], o)?;
            }
            done += n;
        }
        Ok(())
    }

    fn alloc_unit(&self, off: u64) -> (u64, u64) {
        let bs = self.block_size();
        let start = off - off % bs;
        (start, bs.min(self.footer.current_size - start))
    }

    fn write(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        if self.is_fixed() {
            return self.storage.write_at(buf, off);
        }
        let bs = self.block_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let block = (pos / bs) as u32;
            let in_block = pos % bs;
            let n = ((bs - in_block) as usize).min(buf.len() - done);
            let piece = &buf[done..done + n];
            if self.bat[block as usize] == UNALLOCATED {
                let mut full = vec![0u8; in_block as usize + n];
                full[in_block as usize..].copy_from_slice(piece);
                self.allocate(block, &full)?;
            } else {
                let o = self.data_offset(block, in_block);
                self.storage.write_at(piece, o)?;
                let first = in_block / 512;
                let last = (in_block + n as u64).div_ceil(512);
                let bm = self.bitmap(block)?;
                let mut changed = false;
                for s in first..last {
                    let (i, m) = ((s / 8) as usize, 0x80u8 >> (s % 8));
                    if bm[i] & m == 0 {
                        bm[i] |= m;
                        changed = true;
                    }
                }
                if changed {
                    self.dirty_bitmaps.insert(block);
                }
            }
            done += n;
        }
        Ok(())
    }

    fn punch(&mut self, off: u64, len: u64) -> Result<()> {
        if self.is_fixed() {
            return self.storage.punch_hole(off, len);
        }
        let bs = self.block_size();
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let block = (pos / bs) as u32;
            let n = (bs - pos % bs).min(end - pos);
            if self.bat[block as usize] != UNALLOCATED {
                let o = self.data_offset(block, pos % bs);
                self.storage.punch_hole(o, n)?;
            }
            pos += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let pending = !self.dirty_bat.is_empty() || !self.dirty_bitmaps.is_empty();
        self.storage.sync_data()?;
        if pending {
            self.write_metadata()?;
            self.storage.sync_data()?;
        }
        Ok(())
    }
}

impl Drop for VhdLayer {
    fn drop(&mut self) {
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

    #[test]
    fn dynamic_roundtrip_in_memory() {
        let l = VhdLayer::create(
            Box::new(MemStorage::new("t.vhd", Vec::new())),
            8 << 20,
            false,
            None,
            None,
        )
        .unwrap();
        let mut m = crate::Medium::from_layers(vec![Box::new(l)], true).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        m.write_at(&data, (3 << 20) - 1000).unwrap();
        let mut back = vec![0u8; 5000];
        m.read_at(&mut back, (3 << 20) - 1000).unwrap();
        assert_eq!(back, data);
        let mut z = vec![9u8; 4096];
        m.read_at(&mut z, 6 << 20).unwrap();
        assert!(z.iter().all(|&b| b == 0));
    }

    #[test]
    fn bat_entry_past_end_is_rejected() {
        let mut bytes = Vec::new();
        {
            let l = VhdLayer::create(
                Box::new(MemStorage::new("t.vhd", Vec::new())),
                4 << 20,
                false,
                None,
                None,
            )
            .unwrap();
            // Rebuild the bytes: footer, header, BAT with a bogus entry.
            let f = l.footer.to_bytes();
            let d = l.dynh.as_ref().unwrap().to_bytes();
            bytes.extend_from_slice(&f);
            bytes.extend_from_slice(&d);
            let mut bat = vec![0xFFu8; 512];
            bat[0..4].copy_from_slice(&0x10_0000u32.to_be_bytes());
            bytes.extend_from_slice(&bat);
            bytes.extend_from_slice(&f);
        }
        let e = VhdLayer::open(Box::new(MemStorage::new("bad.vhd", bytes)))
            .err()
            .unwrap();
        assert!(e.to_string().contains("past the end"), "{e}");
    }
}
