//! VMDK: monolithicSparse, monolithicFlat, twoGbMaxExtentSparse/Flat (read-write),
//! streamOptimized (read-only), and differencing children (parentCID).

pub mod descriptor;
pub mod sparse;

use std::path::{Component, Path, PathBuf};

use crate::error::{MediaError, Result};
use crate::layer::{Extent, Format, Layer, LayerInfo, ParentRef, Variant};
use crate::storage::{FileStorage, LockMode, Storage};
use crate::uuid::Uuid;
use descriptor::{Access, Descriptor, ExtentKind, ExtentLine, NO_PARENT};
use sparse::{Grain, SparseExtent, SparseHeader};

/// Granularity of writes into flat extents.
const FLAT_UNIT: u64 = 1 << 20;
/// Largest descriptor file read.
const MAX_DESCRIPTOR: u64 = 10 << 20;

/// Whether the first bytes are a VMDK (sparse extent or descriptor text).
pub fn probe(head: &[u8]) -> bool {
    if head.len() >= 4 && crate::bytes::le32(head, 0) == sparse::MAGIC {
        return true;
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(512)]);
    text.starts_with("# Disk DescriptorFile") || (text.is_ascii() && text.contains("createType="))
}

enum Data {
    Sparse(Box<SparseExtent>),
    Flat {
        storage: Box<dyn Storage>,
        offset: u64,
    },
    Zero,
}

struct VExtent {
    start: u64,
    len: u64,
    data: Data,
    writable: bool,
}

/// An open VMDK image.
pub struct VmdkLayer {
    path: PathBuf,
    desc: Descriptor,
    extents: Vec<VExtent>,
    size: u64,
    writable: bool,
    files: Vec<PathBuf>,
}

fn corrupt(p: &Path, m: impl Into<String>) -> MediaError {
    MediaError::corrupt(p, "VMDK", m)
}

fn safe_extent_name(desc_path: &Path, d: &Descriptor, name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    let device = matches!(d.create_type.as_str(), "fullDevice" | "partitionedDevice");
    if !device && (p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir))) {
        return Err(MediaError::unsupported(
            desc_path,
            format!("extent file {name:?} is outside the descriptor's directory"),
        ));
    }
    Ok(desc_path.parent().unwrap_or(Path::new("")).join(p))
}

impl VmdkLayer {
    /// Open from the storage of the descriptor or of a monolithic sparse file.
    pub fn open(storage: Box<dyn Storage>, writable: bool, lock: bool) -> Result<VmdkLayer> {
        let path = storage.path().to_path_buf();
        let len = storage.len();
        let mut head = vec![0u8; 512.min(len) as usize];
        storage.read_at(&mut head, 0)?;
        if head.len() >= 4 && crate::bytes::le32(&head, 0) == sparse::MAGIC {
            return Self::open_monolithic(storage, head);
        }
        if len > MAX_DESCRIPTOR {
            return Err(corrupt(
                &path,
                format!("descriptor file of {len} bytes is too large"),
            ));
        }
        let mut text = vec![0u8; len as usize];
        storage.read_at(&mut text, 0)?;
        let desc =
            Descriptor::parse(&String::from_utf8_lossy(&text)).map_err(|m| corrupt(&path, m))?;
        let mode = match (lock, writable) {
            (false, _) => LockMode::None,
            (true, true) => LockMode::Exclusive,
            (true, false) => LockMode::Shared,
        };
        let mut extents = Vec::new();
        let mut files = vec![path.clone()];
        let mut start = 0u64;
        for e in &desc.extents {
            let elen = e.sectors * 512;
            let ew = writable && e.access == Access::Rw;
            let data = match e.kind {
                ExtentKind::Zero => Data::Zero,
                ExtentKind::Flat | ExtentKind::Sparse => {
                    let ep = safe_extent_name(&path, &desc, &e.file)?;
                    let st = FileStorage::open(&ep, ew, mode)?;
                    files.push(ep.clone());
                    if e.kind == ExtentKind::Flat {
                        let offset = e
                            .offset
                            .checked_mul(512)
                            .ok_or_else(|| corrupt(&path, "absurd flat extent offset"))?;
                        let need = offset.saturating_add(elen);
                        if need > st.len() && e.access != Access::NoAccess {
                            return Err(MediaError::Truncated {
                                path: ep,
                                offset,
                                end: need,
                                file_size: st.len(),
                            });
                        }
                        Data::Flat {
                            storage: Box::new(st),
                            offset,
                        }
                    } else {
                        let mut h = [0u8; 512];
                        st.read_at(&mut h, 0)?;
                        let hdr = SparseHeader::parse(&h).map_err(|m| corrupt(&ep, m))?;
                        if hdr.capacity < e.sectors {
                            return Err(corrupt(
                                &ep,
                                format!(
                                    "extent holds {} sectors but the descriptor says {}",
                                    hdr.capacity, e.sectors
                                ),
                            ));
                        }
                        Data::Sparse(Box::new(SparseExtent::open(Box::new(st), hdr)?))
                    }
                }
            };
            extents.push(VExtent {
                start,
                len: elen,
                data,
                writable: ew,
            });
            start = start
                .checked_add(elen)
                .filter(|&s| s <= crate::bytes::MAX_DISK_SIZE)
                .ok_or_else(|| corrupt(&path, "absurd total size"))?;
        }
        Ok(VmdkLayer {
            path,
            writable: writable
                && extents
                    .iter()
                    .all(|e| e.writable || matches!(e.data, Data::Zero)),
            desc,
            extents,
            size: start,
            files,
        })
    }

    fn open_monolithic(storage: Box<dyn Storage>, head: Vec<u8>) -> Result<VmdkLayer> {
        let path = storage.path().to_path_buf();
        let hdr = SparseHeader::parse(&head).map_err(|m| corrupt(&path, m))?;
        if hdr.desc_offset == 0 || hdr.desc_size == 0 {
            return Err(MediaError::unsupported(
                &path,
                "this is a VMDK extent without an embedded descriptor; open its descriptor file",
            ));
        }
        let mut text = vec![0u8; (hdr.desc_size * 512) as usize];
        let desc_at = hdr
            .desc_offset
            .checked_mul(512)
            .ok_or_else(|| corrupt(&path, "absurd descriptor offset"))?;
        storage.read_at(&mut text, desc_at)?;
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let desc = Descriptor::parse(&String::from_utf8_lossy(&text[..end]))
            .map_err(|m| corrupt(&path, m))?;
        if desc.extents.len() != 1 || desc.extents[0].kind != ExtentKind::Sparse {
            return Err(MediaError::unsupported(
                &path,
                "embedded descriptor with other than one sparse extent",
            ));
        }
        let sectors = desc.extents[0].sectors;
        if hdr.capacity < sectors {
            return Err(corrupt(
                &path,
                format!(
                    "extent holds {} sectors but the descriptor says {sectors}",
                    hdr.capacity
                ),
            ));
        }
        let writable = !storage.read_only() && desc.extents[0].access == Access::Rw;
        let ext = SparseExtent::open(storage, hdr)?;
        let writable = writable && !ext.compressed();
        Ok(VmdkLayer {
            files: vec![path.clone()],
            path,
            desc,
            extents: vec![VExtent {
                start: 0,
                len: sectors * 512,
                data: Data::Sparse(Box::new(ext)),
                writable,
            }],
            size: sectors * 512,
            writable,
        })
    }

    /// Create a monolithicSparse image (optionally a child: parent CID, hint, UUID).
    pub fn create_sparse(
        path: &Path,
        size: u64,
        parent: Option<(u32, String, Uuid)>,
        uuid: Option<Uuid>,
    ) -> Result<VmdkLayer> {
        let capacity = size.div_ceil(512);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut desc = new_descriptor("monolithicSparse", capacity, uuid);
        desc.extents.push(ExtentLine {
            access: Access::Rw,
            sectors: capacity,
            kind: ExtentKind::Sparse,
            file: name,
            offset: 0,
        });
        if let Some((cid, hint, puuid)) = parent {
            desc.parent_cid = cid;
            desc.parent_hint = Some(hint);
            desc.ddb.insert("uuid.parent".into(), puuid.to_string());
        }
        let text = desc.render();
        let desc_sectors = (text.len() as u64).div_ceil(512).max(20);
        let (hdr, writes) = SparseExtent::layout(capacity, desc_sectors);
        let mut st = FileStorage::create(path)?;
        st.set_len(hdr.overhead * 512)?;
        st.write_at(text.as_bytes(), 512)?;
        for (o, d) in writes {
            st.write_at(&d, o)?;
        }
        st.write_at(&hdr.to_bytes(), 0)?;
        st.sync_data()?;
        // Go on with the file (and the lock) `create` took: closing and reopening it
        // would let a process forked meanwhile hold the lock (see `create_flat`).
        Self::open(Box::new(st), true, true)
    }

    /// Create a monolithicFlat image: descriptor plus a preallocated `-flat` file.
    pub fn create_flat(path: &Path, size: u64, uuid: Option<Uuid>) -> Result<VmdkLayer> {
        let capacity = size.div_ceil(512);
        let stem = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "disk".into());
        let flat_name = format!("{stem}-flat.vmdk");
        let flat_path = path.with_file_name(&flat_name);
        let mut desc = new_descriptor("monolithicFlat", capacity, uuid);
        desc.extents.push(ExtentLine {
            access: Access::Rw,
            sectors: capacity,
            kind: ExtentKind::Flat,
            file: flat_name,
            offset: 0,
        });
        // The extent is made without a lock and locked when the descriptor opens it: a
        // process forked while it was open (holding a copy of the descriptor until it
        // execs) would otherwise still hold its lock then, and the open would fail.
        let mut flat = FileStorage::create_with_lock(&flat_path, LockMode::None)?;
        flat.preallocate(0, capacity * 512)?;
        flat.sync_data()?;
        drop(flat);
        let mut st = FileStorage::create(path)?;
        st.write_at(desc.render().as_bytes(), 0)?;
        st.sync_data()?;
        Self::open(Box::new(st), true, true)
    }

    fn find(&self, off: u64) -> usize {
        self.extents.partition_point(|e| e.start + e.len <= off)
    }
}

fn new_descriptor(create_type: &str, capacity: u64, uuid: Option<Uuid>) -> Descriptor {
    let mut d = Descriptor {
        version: 1,
        cid: u32::from_le_bytes(Uuid::random().0[..4].try_into().unwrap_or([1, 2, 3, 4])) | 1,
        parent_cid: NO_PARENT,
        create_type: create_type.into(),
        ..Descriptor::default()
    };
    let (c, h, s) = {
        let cyl = (capacity / (16 * 63)).min(16383);
        (cyl.max(1), 16, 63)
    };
    d.ddb.insert("virtualHWVersion".into(), "4".into());
    d.ddb.insert("adapterType".into(), "ide".into());
    d.ddb.insert("geometry.cylinders".into(), c.to_string());
    d.ddb.insert("geometry.heads".into(), h.to_string());
    d.ddb.insert("geometry.sectors".into(), s.to_string());
    d.ddb.insert(
        "uuid.image".into(),
        uuid.unwrap_or_else(Uuid::random).to_string(),
    );
    d.ddb
        .insert("uuid.modification".into(), Uuid::random().to_string());
    d.ddb.insert("uuid.parent".into(), Uuid::NIL.to_string());
    d.ddb
        .insert("uuid.parentmodification".into(), Uuid::NIL.to_string());
    d
}

impl Layer for VmdkLayer {
    fn info(&self) -> LayerInfo {
        let uuid = self
            .desc
            .ddb
            .get("uuid.image")
            .and_then(|s| Uuid::parse(s))
            .unwrap_or(Uuid::NIL);
        let diff = self.desc.parent_cid != NO_PARENT;
        let mut size_on_disk = 0;
        let mut block_size = 0;
        for e in &self.extents {
            match &e.data {
                Data::Sparse(s) => {
                    size_on_disk += s.storage.len();
                    if block_size == 0 {
                        block_size = s.hdr.grain_bytes();
                    }
                }
                Data::Flat { storage, .. } => size_on_disk += storage.len(),
                Data::Zero => {}
            }
        }
        if self.files.len() > 1 {
            size_on_disk += std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        }
        LayerInfo {
            path: self.path.clone(),
            format: Format::Vmdk,
            variant: Variant {
                fixed: self
                    .extents
                    .iter()
                    .all(|e| !matches!(e.data, Data::Sparse(_))),
                diff,
                split2g: self.desc.create_type.starts_with("twoGbMaxExtent"),
                stream: self.desc.create_type == "streamOptimized",
            },
            uuid,
            cid: Some(self.desc.cid),
            size: self.size,
            block_size,
            parent: diff.then(|| ParentRef {
                uuid: self
                    .desc
                    .ddb
                    .get("uuid.parent")
                    .and_then(|s| Uuid::parse(s))
                    .filter(|u| !u.is_nil()),
                cid: Some(self.desc.parent_cid),
                hints: self.desc.parent_hint.iter().cloned().collect(),
            }),
            size_on_disk,
            files: self.files.clone(),
        }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn writable(&self) -> bool {
        self.writable
    }

    fn map(&mut self, off: u64, len: u64) -> Result<(Extent, u64)> {
        let i = self.find(off);
        let e = &self.extents[i];
        let rel = off - e.start;
        let limit = len.min(e.len - rel);
        match &e.data {
            Data::Zero => Ok((Extent::Zero, limit)),
            Data::Flat { .. } => Ok((Extent::Data, limit)),
            Data::Sparse(s) => {
                let gb = s.hdr.grain_bytes();
                let kind_of = |g: u64| match s.grain(g) {
                    Grain::Absent => Extent::Absent,
                    Grain::Zero => Extent::Zero,
                    Grain::At(_) => Extent::Data,
                };
                let mut g = rel / gb;
                let kind = kind_of(g);
                let mut run = (gb - rel % gb).min(limit);
                while run < limit {
                    g += 1;
                    if kind_of(g) != kind {
                        break;
                    }
                    run = (run + gb).min(limit);
                }
                Ok((kind, run))
            }
        }
    }

    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let i = self.find(pos);
            let e = &mut self.extents[i];
            let rel = pos - e.start;
            let mut n = ((e.len - rel) as usize).min(buf.len() - done);
            match &mut e.data {
                Data::Zero => buf[done..done + n].fill(0),
                Data::Flat { storage, offset } => {
                    storage.read_at(&mut buf[done..done + n], *offset + rel)?
                }
                Data::Sparse(s) => {
                    let gb = s.hdr.grain_bytes();
                    n = n.min((gb - rel % gb) as usize);
                    s.read(rel, &mut buf[done..done + n])?;
                }
            }
            done += n;
        }
        Ok(())
    }

    fn alloc_unit(&self, off: u64) -> (u64, u64) {
        let e = &self.extents[self.find(off)];
        let rel = off - e.start;
        let unit = match &e.data {
            Data::Sparse(s) => s.hdr.grain_bytes(),
            _ => FLAT_UNIT,
        };
        let ustart = rel - rel % unit;
        (e.start + ustart, unit.min(e.len - ustart))
    }

    fn write(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        let path = self.path.clone();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let i = self.find(pos);
            let e = &mut self.extents[i];
            if !e.writable {
                return Err(MediaError::ReadOnly { path });
            }
            let rel = pos - e.start;
            let mut n = ((e.len - rel) as usize).min(buf.len() - done);
            match &mut e.data {
                Data::Zero => return Err(MediaError::ReadOnly { path }),
                Data::Flat { storage, offset } => {
                    storage.write_at(&buf[done..done + n], *offset + rel)?
                }
                Data::Sparse(s) => {
                    let gb = s.hdr.grain_bytes();
                    n = n.min((gb - rel % gb) as usize);
                    let g = rel / gb;
                    let piece = &buf[done..done + n];
                    if let Grain::At(_) = s.grain(g) {
                        s.write_in_place(rel, piece)?;
                    } else if rel & (gb - 1) == 0 {
                        s.allocate(g, piece)?;
                    } else {
                        let mut full = vec![0u8; (rel % gb) as usize + n];
                        full[(rel % gb) as usize..].copy_from_slice(piece);
                        s.allocate(g, &full)?;
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    fn mark_zero(&mut self, unit_start: u64) -> Result<bool> {
        let i = self.find(unit_start);
        let e = &mut self.extents[i];
        match &mut e.data {
            Data::Sparse(s) if e.writable => {
                let g = (unit_start - e.start) / s.hdr.grain_bytes();
                s.mark_zero(g)
            }
            _ => Ok(false),
        }
    }

    fn punch(&mut self, off: u64, len: u64) -> Result<()> {
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let i = self.find(pos);
            let e = &mut self.extents[i];
            let rel = pos - e.start;
            let mut n = (e.len - rel).min(end - pos);
            match &mut e.data {
                Data::Zero => {}
                Data::Flat { storage, offset } => storage.punch_hole(*offset + rel, n)?,
                Data::Sparse(s) => {
                    let gb = s.hdr.grain_bytes();
                    n = n.min(gb - rel % gb);
                    if let Grain::At(sector) = s.grain(rel / gb) {
                        if !s.compressed() {
                            s.storage.punch_hole(sector * 512 + rel % gb, n)?;
                        }
                    }
                }
            }
            pos += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for e in &mut self.extents {
            if !e.writable {
                continue;
            }
            match &mut e.data {
                Data::Sparse(s) => {
                    let pending = s.dirty();
                    s.storage.sync_data()?;
                    if pending {
                        s.write_metadata()?;
                        s.storage.sync_data()?;
                    }
                }
                Data::Flat { storage, .. } => storage.sync_data()?,
                Data::Zero => {}
            }
        }
        Ok(())
    }
}

impl Drop for VmdkLayer {
    fn drop(&mut self) {
        if self.writable {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn absurd_descriptor_offset_is_an_error_not_a_panic() {
        // Found by the media_vmdk fuzz target: desc_offset * 512 overflowed.
        let (mut h, _) = SparseExtent::layout(2048, 20);
        h.desc_offset = u64::MAX / 100;
        let st = MemStorage::new("x.vmdk", h.to_bytes().to_vec());
        let e = VmdkLayer::open(Box::new(st), false, false).err().unwrap();
        assert!(e.to_string().contains("x.vmdk"), "{e}");
    }
}
