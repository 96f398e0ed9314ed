//! Raw images (a plain sector array) and ISO 9660 optical images (read-only raw).

use crate::error::{MediaError, Result};
use crate::layer::{Extent, Format, Layer, LayerInfo, Variant};
use crate::storage::Storage;
use crate::uuid::Uuid;

/// Granularity used to split writes; raw has no allocation of its own.
const UNIT: u64 = 1 << 20;

/// Offset of the ISO 9660 primary volume descriptor's "CD001" identifier.
const ISO_MAGIC_OFFSET: u64 = 0x8001;

/// Whether the storage holds an ISO 9660 image.
pub fn is_iso(s: &dyn Storage) -> bool {
    let mut b = [0u8; 5];
    s.read_at(&mut b, ISO_MAGIC_OFFSET).is_ok() && &b == b"CD001"
}

/// A raw or ISO image.
pub struct RawLayer {
    storage: Box<dyn Storage>,
    format: Format,
    size: u64,
}

impl RawLayer {
    /// Wrap storage as a raw disk (ISO images are always read-only).
    pub fn open(storage: Box<dyn Storage>, format: Format) -> Result<RawLayer> {
        if format == Format::Iso && !is_iso(storage.as_ref()) {
            return Err(MediaError::corrupt(
                storage.path(),
                "ISO",
                "no ISO 9660 volume descriptor (CD001 at offset 0x8001)",
            ));
        }
        let size = storage.len();
        Ok(RawLayer {
            storage,
            format,
            size,
        })
    }
}

impl Layer for RawLayer {
    fn info(&self) -> LayerInfo {
        LayerInfo {
            path: self.storage.path().to_path_buf(),
            format: self.format,
            variant: Variant {
                fixed: true,
                ..Variant::default()
            },
            uuid: Uuid::NIL,
            cid: None,
            size: self.size,
            block_size: 0,
            parent: None,
            size_on_disk: self.storage.len(),
            files: vec![self.storage.path().to_path_buf()],
        }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn writable(&self) -> bool {
        self.format == Format::Raw && !self.storage.read_only()
    }

    fn map(&mut self, _off: u64, len: u64) -> Result<(Extent, u64)> {
        Ok((Extent::Data, len))
    }

    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.storage.read_at(buf, off)
    }

    fn alloc_unit(&self, off: u64) -> (u64, u64) {
        let start = off - off % UNIT;
        (start, UNIT.min(self.size - start))
    }

    fn write(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        if !self.writable() {
            return Err(MediaError::ReadOnly {
                path: self.storage.path().to_path_buf(),
            });
        }
        self.storage.write_at(buf, off)
    }

    fn punch(&mut self, off: u64, len: u64) -> Result<()> {
        self.storage.punch_hole(off, len)
    }

    fn flush(&mut self) -> Result<()> {
        self.storage.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn iso_requires_cd001() {
        let data = vec![0u8; 0x9000];
        assert!(RawLayer::open(
            Box::new(MemStorage::new("a.iso", data.clone())),
            Format::Iso
        )
        .is_err());
        let mut good = data;
        good[0x8001..0x8006].copy_from_slice(b"CD001");
        let l = RawLayer::open(Box::new(MemStorage::new("a.iso", good)), Format::Iso).unwrap();
        assert!(!l.writable());
    }
}
