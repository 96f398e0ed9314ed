//! Hosted sparse extents (`KDMV`): header, grain directory and tables, grains,
//! including the compressed grains of streamOptimized images (read-only).
//!
//! Crash safety mirrors VDI: a new grain (and a new grain table, if one is needed) is
//! appended at the end of the file; grain-table and directory entries are written by
//! `flush` only after the data is durable, tables before the directory.

use std::collections::BTreeSet;
use std::io::Read;

use crate::bytes::{le32, le64, put_le32, put_le64};
use crate::error::{MediaError, Result};
use crate::storage::Storage;

/// "KDMV".
pub const MAGIC: u32 = 0x564D_444B;
/// Header flag: newline detection bytes are valid.
pub const FLAG_NL_DETECT: u32 = 1;
/// Header flag: a redundant grain directory exists.
pub const FLAG_RGD: u32 = 2;
/// Header flag: grain-table entry 1 means "zero grain".
pub const FLAG_ZERO_GRAIN: u32 = 4;
/// Header flag: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Header flag: markers are present (streamOptimized).
pub const FLAG_MARKERS: u32 = 1 << 17;
/// gdOffset meaning "in the footer".
pub const GD_AT_END: u64 = u64::MAX;

/// The 512-byte sparse extent header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHeader {
    /// Format version (1..=3).
    pub version: u32,
    /// Flag bits.
    pub flags: u32,
    /// Capacity in sectors.
    pub capacity: u64,
    /// Sectors per grain.
    pub grain_size: u64,
    /// Embedded descriptor start (sectors).
    pub desc_offset: u64,
    /// Embedded descriptor length (sectors).
    pub desc_size: u64,
    /// Grain table entries per table.
    pub gtes_per_gt: u32,
    /// Redundant grain directory (sectors).
    pub rgd_offset: u64,
    /// Grain directory (sectors).
    pub gd_offset: u64,
    /// Metadata sectors before the first grain.
    pub overhead: u64,
    /// Unclean-shutdown flag.
    pub unclean: u8,
    /// Compression algorithm (0 none, 1 deflate).
    pub compress: u16,
}

fn err(m: impl Into<String>) -> String {
    m.into()
}

impl SparseHeader {
    /// Parse and validate (at least 512 bytes).
    pub fn parse(b: &[u8]) -> std::result::Result<SparseHeader, String> {
        if b.len() < 512 || le32(b, 0) != MAGIC {
            return Err(err("no VMDK sparse extent magic KDMV"));
        }
        let h = SparseHeader {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le64(b, 12),
            grain_size: le64(b, 20),
            desc_offset: le64(b, 28),
            desc_size: le64(b, 36),
            gtes_per_gt: le32(b, 44),
            rgd_offset: le64(b, 48),
            gd_offset: le64(b, 56),
            overhead: le64(b, 64),
            unclean: b[72],
            compress: u16::from_le_bytes([b[77], b[78]]),
        };
        if !(1..=3).contains(&h.version) {
            return Err(format!("unsupported sparse extent version {}", h.version));
        }
        if h.flags & FLAG_NL_DETECT != 0 && b[73..77] != [b'\n', b' ', b'\r', b'\n'] {
            return Err(err(
                "newline test bytes are mangled (file transferred in text mode?)",
            ));
        }
        if !h.grain_size.is_power_of_two() || h.grain_size > 1 << 16 {
            return Err(format!(
                "grain size {} sectors is not a power of two up to 32 MiB",
                h.grain_size
            ));
        }
        if !h.gtes_per_gt.is_power_of_two() || !(1..=1 << 16).contains(&h.gtes_per_gt) {
            return Err(format!(
                "{} grain table entries per table is invalid",
                h.gtes_per_gt
            ));
        }
        if h.capacity > crate::bytes::MAX_DISK_SIZE / 512 {
            return Err(format!("absurd capacity {} sectors", h.capacity));
        }
        if h.desc_size > 20480 {
            return Err(format!(
                "descriptor of {} sectors is too large",
                h.desc_size
            ));
        }
        if h.compress > 1 {
            return Err(format!("unknown compression algorithm {}", h.compress));
        }
        if h.flags & FLAG_COMPRESSED != 0 && h.compress != 1 {
            return Err(err("compressed grains without deflate compression"));
        }
        Ok(h)
    }

    /// Serialise.
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put_le32(&mut b, 0, MAGIC);
        put_le32(&mut b, 4, self.version);
        put_le32(&mut b, 8, self.flags);
        put_le64(&mut b, 12, self.capacity);
        put_le64(&mut b, 20, self.grain_size);
        put_le64(&mut b, 28, self.desc_offset);
        put_le64(&mut b, 36, self.desc_size);
        put_le32(&mut b, 44, self.gtes_per_gt);
        put_le64(&mut b, 48, self.rgd_offset);
        put_le64(&mut b, 56, self.gd_offset);
        put_le64(&mut b, 64, self.overhead);
        b[72] = self.unclean;
        b[73..77].copy_from_slice(b"\n \r\n");
        b[77..79].copy_from_slice(&self.compress.to_le_bytes());
        b
    }

    /// Bytes per grain.
    pub fn grain_bytes(&self) -> u64 {
        self.grain_size * 512
    }

    /// Number of grain tables needed for the capacity.
    pub fn num_gts(&self) -> u64 {
        self.capacity
            .div_ceil(self.grain_size)
            .div_ceil(u64::from(self.gtes_per_gt))
    }
}

/// What a grain-table entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Not allocated.
    Absent,
    /// Zero grain.
    Zero,
    /// Data at this sector of the file.
    At(u64),
}

/// An open sparse extent.
pub struct SparseExtent {
    /// The extent file.
    pub storage: Box<dyn Storage>,
    /// Its header.
    pub hdr: SparseHeader,
    gd: Vec<u32>,
    rgd: Option<Vec<u32>>,
    /// Grain tables, flattened: entry g of the whole extent at `gt[g]`.
    gt: Vec<u32>,
    dirty_gt: BTreeSet<usize>,
    dirty_gd: bool,
    next_sector: u64,
    cache: Option<(u64, Vec<u8>)>,
}

fn corrupt(p: &std::path::Path, m: impl Into<String>) -> MediaError {
    MediaError::corrupt(p, "VMDK", m)
}

impl SparseExtent {
    /// Read and validate the extent's metadata (header already parsed by the caller
    /// when it held the descriptor). Nothing is written.
    pub fn open(storage: Box<dyn Storage>, hdr: SparseHeader) -> Result<SparseExtent> {
        let path = storage.path().to_path_buf();
        let len = storage.len();
        let mut hdr = hdr;
        if hdr.gd_offset == GD_AT_END {
            // streamOptimized: the real header is the footer, 1024 bytes before the end.
            if len < 1536 {
                return Err(corrupt(
                    &path,
                    "stream-optimized image too short for its footer",
                ));
            }
            let mut fb = [0u8; 512];
            storage.read_at(&mut fb, len - 1024)?;
            let footer =
                SparseHeader::parse(&fb).map_err(|m| corrupt(&path, format!("footer: {m}")))?;
            if footer.gd_offset == GD_AT_END {
                return Err(corrupt(&path, "footer has no grain directory offset"));
            }
            hdr.gd_offset = footer.gd_offset;
        }
        let num_gts = hdr.num_gts();
        let gd_bytes = num_gts
            .checked_mul(4)
            .ok_or_else(|| corrupt(&path, "absurd grain directory size"))?;
        let gd = read_u32s(
            storage.as_ref(),
            hdr.gd_offset,
            gd_bytes,
            &path,
            "grain directory",
        )?;
        let compressed = hdr.flags & FLAG_COMPRESSED != 0;
        let gt_bytes = u64::from(hdr.gtes_per_gt) * 4;
        let mut gt =
            Vec::with_capacity((num_gts * u64::from(hdr.gtes_per_gt)).min(len / 4) as usize);
        let meta_end = hdr.overhead.max(1);
        let mut regions: Vec<(u64, u64)> = Vec::new();
        for (i, &g) in gd.iter().enumerate() {
            if g == 0 {
                gt.extend(std::iter::repeat_n(0u32, hdr.gtes_per_gt as usize));
                continue;
            }
            let t = read_u32s(
                storage.as_ref(),
                u64::from(g),
                gt_bytes,
                &path,
                "grain table",
            )
            .map_err(|e| match e {
                MediaError::Truncated { .. } => corrupt(
                    &path,
                    format!(
                        "grain directory entry {i} points at sector {g}, past the end of the file"
                    ),
                ),
                e => e,
            })?;
            gt.extend(t);
        }
        let zero_ok = hdr.flags & FLAG_ZERO_GRAIN != 0;
        let grain_sectors = hdr.grain_size;
        let total_grains = hdr.capacity.div_ceil(hdr.grain_size) as usize;
        for (g, &e) in gt.iter().enumerate().take(total_grains) {
            if e == 0 || (e == 1 && zero_ok) {
                continue;
            }
            let s = u64::from(e);
            if s < meta_end && !compressed {
                return Err(corrupt(
                    &path,
                    format!("grain {g} points at sector {s}, inside the header/metadata (first grain sector {meta_end})"),
                ));
            }
            let end = if compressed { s + 1 } else { s + grain_sectors };
            if end * 512 > len {
                return Err(corrupt(
                    &path,
                    format!("grain {g} points at sector {s}, past the end of the file"),
                ));
            }
            if !compressed {
                regions.push((s, g as u64));
            }
        }
        regions.sort_unstable();
        for w in regions.windows(2) {
            if w[1].0 < w[0].0 + grain_sectors {
                return Err(corrupt(
                    &path,
                    format!(
                        "grains {} and {} overlap at sector {}",
                        w[0].1, w[1].1, w[1].0
                    ),
                ));
            }
        }
        let rgd = if hdr.flags & FLAG_RGD != 0 && hdr.rgd_offset != 0 && !compressed {
            read_u32s(
                storage.as_ref(),
                hdr.rgd_offset,
                gd_bytes,
                &path,
                "redundant grain directory",
            )
            .ok()
        } else {
            None
        };
        let next_sector = len.div_ceil(512);
        Ok(SparseExtent {
            storage,
            hdr,
            gd,
            rgd,
            gt,
            dirty_gt: BTreeSet::new(),
            dirty_gd: false,
            next_sector,
            cache: None,
        })
    }

    /// Whether grains are compressed (read-only stream).
    pub fn compressed(&self) -> bool {
        self.hdr.flags & FLAG_COMPRESSED != 0
    }

    /// Classify grain `g`.
    pub fn grain(&self, g: u64) -> Grain {
        match self.gt.get(g as usize).copied().unwrap_or(0) {
            0 => Grain::Absent,
            1 if self.hdr.flags & FLAG_ZERO_GRAIN != 0 => Grain::Zero,
            s => Grain::At(u64::from(s)),
        }
    }

    /// Read inside one grain (`off` relative to the extent).
    pub fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let gb = self.hdr.grain_bytes();
        let g = off / gb;
        let Grain::At(s) = self.grain(g) else {
            buf.fill(0);
            return Ok(());
        };
        if !self.compressed() {
            return self.storage.read_at(buf, s * 512 + off % gb);
        }
        if self.cache.as_ref().map(|c| c.0) != Some(g) {
            let data = self.inflate(g, s)?;
            self.cache = Some((g, data));
        }
        let (_, data) = self.cache.as_ref().expect("filled above");
        let o = (off % gb) as usize;
        buf.copy_from_slice(&data[o..o + buf.len()]);
        Ok(())
    }

    fn inflate(&self, g: u64, sector: u64) -> Result<Vec<u8>> {
        let path = self.storage.path();
        let gb = self.hdr.grain_bytes() as usize;
        let mut m = [0u8; 12];
        self.storage.read_at(&mut m, sector * 512)?;
        let size = le32(&m, 8) as u64;
        if size == 0 || size > 2 * gb as u64 + 4096 {
            return Err(corrupt(
                path,
                format!("compressed grain {g} has absurd size {size}"),
            ));
        }
        let mut comp = vec![0u8; size as usize];
        self.storage.read_at(&mut comp, sector * 512 + 12)?;
        let mut out = Vec::with_capacity(gb);
        flate2::read::ZlibDecoder::new(&comp[..])
            .take(gb as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                corrupt(
                    path,
                    format!("compressed grain {g} does not decompress: {e}"),
                )
            })?;
        if out.len() > gb {
            return Err(corrupt(
                path,
                format!("compressed grain {g} inflates past the grain size"),
            ));
        }
        out.resize(gb, 0);
        Ok(out)
    }

    fn set_gt(&mut self, g: usize, value: u32) {
        self.gt[g] = value;
        self.dirty_gt.insert(g / 128);
    }

    /// Allocate grain `g` with `data` (at most one grain; padded with zeros).
    pub fn allocate(&mut self, g: u64, data: &[u8]) -> Result<()> {
        let path = self.storage.path().to_path_buf();
        if self.compressed() {
            return Err(MediaError::ReadOnly { path });
        }
        let per = u64::from(self.hdr.gtes_per_gt);
        let t = (g / per) as usize;
        if self.gd[t] == 0 {
            // A new grain table (and its redundant copy) appended, zero-filled.
            let gt_sectors = (per * 4).div_ceil(512);
            let zeros = vec![0u8; (gt_sectors * 512) as usize];
            let at = self.next_sector;
            self.storage.write_at(&zeros, at * 512)?;
            self.next_sector += gt_sectors;
            self.gd[t] = u32::try_from(at).map_err(|_| corrupt(&path, "extent grew past 2 TiB"))?;
            if let Some(rgd) = self.rgd.as_mut() {
                let rat = self.next_sector;
                self.storage.write_at(&zeros, rat * 512)?;
                self.next_sector += gt_sectors;
                rgd[t] =
                    u32::try_from(rat).map_err(|_| corrupt(&path, "extent grew past 2 TiB"))?;
            }
            self.dirty_gd = true;
        }
        let gb = self.hdr.grain_bytes() as usize;
        let at = self.next_sector;
        if data.len() == gb {
            self.storage.write_at(data, at * 512)?;
        } else {
            let mut full = vec![0u8; gb];
            full[..data.len()].copy_from_slice(data);
            self.storage.write_at(&full, at * 512)?;
        }
        self.next_sector += self.hdr.grain_size;
        let s = u32::try_from(at).map_err(|_| corrupt(&path, "extent grew past 2 TiB"))?;
        self.set_gt(g as usize, s);
        Ok(())
    }

    /// Write inside an allocated grain.
    pub fn write_in_place(&mut self, off: u64, data: &[u8]) -> Result<()> {
        let gb = self.hdr.grain_bytes();
        match self.grain(off / gb) {
            Grain::At(s) => self.storage.write_at(data, s * 512 + off % gb),
            _ => Err(MediaError::InvalidArgument(
                "internal: in-place write to unallocated grain".into(),
            )),
        }
    }

    /// Mark grain `g` as a zero grain if the extent allows it.
    pub fn mark_zero(&mut self, g: u64) -> Result<bool> {
        if self.hdr.flags & FLAG_ZERO_GRAIN == 0 || self.compressed() {
            return Ok(false);
        }
        let per = u64::from(self.hdr.gtes_per_gt);
        if self.gd[(g / per) as usize] == 0 {
            return Ok(false);
        }
        if self.grain(g) == Grain::Absent {
            self.set_gt(g as usize, 1);
        }
        Ok(true)
    }

    /// Write dirty grain-table sectors (both copies), then the directories.
    pub fn write_metadata(&mut self) -> Result<()> {
        let per = self.hdr.gtes_per_gt as usize;
        for sector in std::mem::take(&mut self.dirty_gt) {
            let first = sector * 128;
            let t = first / per;
            let in_table = first % per;
            let n = 128.min(per - in_table).min(self.gt.len() - first);
            let raw: Vec<u8> = self.gt[first..first + n]
                .iter()
                .flat_map(|e| e.to_le_bytes())
                .collect();
            let mut tables = vec![self.gd[t]];
            if let Some(rgd) = &self.rgd {
                tables.push(rgd[t]);
            }
            for base in tables.into_iter().filter(|&b| b != 0) {
                self.storage
                    .write_at(&raw, u64::from(base) * 512 + 4 * in_table as u64)?;
            }
        }
        if std::mem::take(&mut self.dirty_gd) {
            let raw: Vec<u8> = self.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.storage.write_at(&raw, self.hdr.gd_offset * 512)?;
            if let Some(rgd) = &self.rgd {
                let raw: Vec<u8> = rgd.iter().flat_map(|e| e.to_le_bytes()).collect();
                self.storage.write_at(&raw, self.hdr.rgd_offset * 512)?;
            }
        }
        Ok(())
    }

    /// Whether metadata awaits `flush`.
    pub fn dirty(&self) -> bool {
        !self.dirty_gt.is_empty() || self.dirty_gd
    }

    /// Build the metadata of a new, empty extent of `capacity` sectors laid out as QEMU
    /// and VirtualBox do: header, descriptor (`desc_sectors`, 0 for none), redundant
    /// directory and tables, directory and tables, padding to a grain.
    pub fn layout(capacity: u64, desc_sectors: u64) -> (SparseHeader, Vec<(u64, Vec<u8>)>) {
        let grain = 128u64;
        let per = 512u64;
        let num_gts = capacity.div_ceil(grain).div_ceil(per);
        let gd_sectors = (num_gts * 4).div_ceil(512).max(1);
        let gt_sectors = (per * 4).div_ceil(512);
        let desc_offset = if desc_sectors > 0 { 1 } else { 0 };
        let rgd = 1 + desc_sectors;
        let rgt = rgd + gd_sectors;
        let gd = rgt + num_gts * gt_sectors;
        let gt = gd + gd_sectors;
        let overhead = (gt + num_gts * gt_sectors).div_ceil(grain) * grain;
        let hdr = SparseHeader {
            version: 1,
            flags: FLAG_NL_DETECT | FLAG_RGD,
            capacity,
            grain_size: grain,
            desc_offset,
            desc_size: desc_sectors,
            gtes_per_gt: per as u32,
            rgd_offset: rgd,
            gd_offset: gd,
            overhead,
            unclean: 0,
            compress: 0,
        };
        let dir = |first_table: u64| -> Vec<u8> {
            let mut v = vec![0u8; (gd_sectors * 512) as usize];
            for i in 0..num_gts {
                put_le32(
                    &mut v,
                    (4 * i) as usize,
                    (first_table + i * gt_sectors) as u32,
                );
            }
            v
        };
        let writes = vec![
            (rgd * 512, dir(rgt)),
            (gd * 512, dir(gt)),
            // Tables are zero: extending the file to `overhead` provides them.
        ];
        (hdr, writes)
    }
}

fn read_u32s(
    s: &dyn Storage,
    sector: u64,
    bytes: u64,
    path: &std::path::Path,
    what: &str,
) -> Result<Vec<u32>> {
    let off = sector
        .checked_mul(512)
        .ok_or_else(|| corrupt(path, format!("{what} offset overflows")))?;
    let end = off.saturating_add(bytes);
    if end > s.len() {
        return Err(MediaError::Truncated {
            path: path.to_path_buf(),
            offset: off,
            end,
            file_size: s.len(),
        });
    }
    let mut raw = vec![0u8; bytes as usize];
    s.read_at(&mut raw, off)?;
    Ok(raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_roundtrip() {
        let (h, _) = SparseExtent::layout(2048 * 100, 20);
        assert_eq!(SparseHeader::parse(&h.to_bytes()).unwrap(), h);
        assert_eq!(h.overhead % 128, 0);
    }

    #[test]
    fn mangled_newlines_rejected() {
        let (h, _) = SparseExtent::layout(2048, 20);
        let mut b = h.to_bytes();
        b[75] = b'\n';
        assert!(SparseHeader::parse(&b).unwrap_err().contains("newline"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut d = data;
            if d.len() >= 4 { d[0..4].copy_from_slice(&MAGIC.to_le_bytes()); }
            let _ = SparseHeader::parse(&d);
        }
    }
}
