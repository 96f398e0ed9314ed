//! VDI pre-header and version 1.1 header: parsing with full validation, serialising.

use crate::bytes::{le32, le64, put_le32, put_le64};
use crate::uuid::Uuid;

/// VDI signature at offset 0x40.
pub const SIGNATURE: u32 = 0xBEDA_107F;
/// Version 1.1.
pub const VERSION_1_1: u32 = 0x0001_0001;
/// Offset of the header proper (after text, signature and version).
pub const HEADER_START: usize = 0x48;
/// Block map value: never allocated (read the parent).
pub const FREE: u32 = 0xFFFF_FFFF;
/// Block map value: known zeros (do not read the parent).
pub const ZERO: u32 = 0xFFFF_FFFE;
/// Image type: dynamically growing.
pub const TYPE_NORMAL: u32 = 1;
/// Image type: preallocated.
pub const TYPE_FIXED: u32 = 2;
/// Image type: legacy undo image (handled like normal).
pub const TYPE_UNDO: u32 = 3;
/// Image type: differencing.
pub const TYPE_DIFF: u32 = 4;
/// Largest block count accepted (QEMU's limit).
pub const MAX_BLOCKS: u32 = 0x3FFF_FFFF;
/// The banner VirtualBox writes.
pub const BANNER: &str = "<<< Oracle VirtualBox Disk Image >>>\n";

/// A decoded VDI header (version 1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiHeader {
    /// Banner text (64 bytes).
    pub text: [u8; 64],
    /// cbHeader: 384 or 400.
    pub header_size: u32,
    /// Image type (1 normal, 2 fixed, 3 undo, 4 diff).
    pub image_type: u32,
    /// Image flags (bit 0 zero-expand).
    pub flags: u32,
    /// Free-text comment (256 bytes).
    pub comment: [u8; 256],
    /// File offset of the block map.
    pub off_blocks: u32,
    /// File offset of the first data block.
    pub off_data: u32,
    /// Legacy geometry: cylinders, heads, sectors, sector size.
    pub legacy_geometry: [u32; 4],
    /// Unused dword at 0x16C.
    pub dummy: u32,
    /// Virtual disk size in bytes.
    pub disk_size: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// Extra bytes before each block's data.
    pub block_extra: u32,
    /// Number of blocks.
    pub blocks: u32,
    /// Number of data slots present in the file (next free slot).
    pub blocks_allocated: u32,
    /// Image UUID.
    pub uuid_create: Uuid,
    /// Last-modification UUID.
    pub uuid_modify: Uuid,
    /// Parent's uuid_create (differencing only).
    pub uuid_linkage: Uuid,
    /// Parent's uuid_modify when linked.
    pub uuid_parent_modify: Uuid,
    /// LCHS geometry (only kept when header_size >= 400).
    pub lchs: [u32; 4],
}

/// Why a header was rejected (the caller adds the file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a VDI at all.
    NotVdi,
    /// A VDI version or feature novabox does not read.
    Unsupported(String),
    /// Inconsistent fields.
    Corrupt(String),
}

fn uuid_at(b: &[u8], o: usize) -> Uuid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[o..o + 16]);
    Uuid::from_guid_bytes(&a)
}

impl VdiHeader {
    /// Size of the slot (extra + data) of one block.
    pub fn slot_size(&self) -> u64 {
        u64::from(self.block_extra) + u64::from(self.block_size)
    }

    /// Whether this is a differencing image.
    pub fn is_diff(&self) -> bool {
        self.image_type == TYPE_DIFF
    }

    /// Number of header bytes on disk (pre-header + header).
    pub fn on_disk_len(&self) -> usize {
        HEADER_START + self.header_size as usize
    }

    /// Parse and validate the first bytes of a file (at least 512 are needed).
    pub fn parse(b: &[u8]) -> Result<VdiHeader, HeaderError> {
        if b.len() < 0x48 || le32(b, 0x40) != SIGNATURE {
            return Err(HeaderError::NotVdi);
        }
        let version = le32(b, 0x44);
        if version >> 16 != 1 {
            return Err(HeaderError::Unsupported(format!(
                "VDI version {}.{} (only 1.x is supported)",
                version >> 16,
                version & 0xffff
            )));
        }
        if b.len() < HEADER_START + 384 {
            return Err(HeaderError::Corrupt(
                "file too short for a VDI header".into(),
            ));
        }
        let header_size = le32(b, 0x48);
        if !(384..=0x1000).contains(&header_size) {
            return Err(HeaderError::Corrupt(format!(
                "header size {header_size} is not in 384..=4096"
            )));
        }
        let mut text = [0u8; 64];
        text.copy_from_slice(&b[0..64]);
        let mut comment = [0u8; 256];
        comment.copy_from_slice(&b[0x54..0x154]);
        let lchs = if header_size >= 400 && b.len() >= 0x1D8 {
            [
                le32(b, 0x1C8),
                le32(b, 0x1CC),
                le32(b, 0x1D0),
                le32(b, 0x1D4),
            ]
        } else {
            [0; 4]
        };
        let h = VdiHeader {
            text,
            header_size,
            image_type: le32(b, 0x4C),
            flags: le32(b, 0x50),
            comment,
            off_blocks: le32(b, 0x154),
            off_data: le32(b, 0x158),
            legacy_geometry: [
                le32(b, 0x15C),
                le32(b, 0x160),
                le32(b, 0x164),
                le32(b, 0x168),
            ],
            dummy: le32(b, 0x16C),
            disk_size: le64(b, 0x170),
            block_size: le32(b, 0x178),
            block_extra: le32(b, 0x17C),
            blocks: le32(b, 0x180),
            blocks_allocated: le32(b, 0x184),
            uuid_create: uuid_at(b, 0x188),
            uuid_modify: uuid_at(b, 0x198),
            uuid_linkage: uuid_at(b, 0x1A8),
            uuid_parent_modify: uuid_at(b, 0x1B8),
            lchs,
        };
        h.validate()?;
        Ok(h)
    }

    /// Check every field against the others.
    pub fn validate(&self) -> Result<(), HeaderError> {
        let corrupt = |m: String| Err(HeaderError::Corrupt(m));
        if !matches!(
            self.image_type,
            TYPE_NORMAL | TYPE_FIXED | TYPE_UNDO | TYPE_DIFF
        ) {
            return corrupt(format!("unknown image type {}", self.image_type));
        }
        if !self.block_size.is_power_of_two() || !(512..=(1 << 28)).contains(&self.block_size) {
            return corrupt(format!(
                "block size {} is not a power of two between 512 bytes and 256 MiB",
                self.block_size
            ));
        }
        if self.block_extra != 0
            && (!self.block_extra.is_power_of_two() || self.block_extra > self.block_size)
        {
            return corrupt(format!("block extra size {} is invalid", self.block_extra));
        }
        if self.disk_size > crate::bytes::MAX_DISK_SIZE {
            return corrupt(format!(
                "absurd disk size {} bytes (limit 1 PiB)",
                self.disk_size
            ));
        }
        if self.blocks > MAX_BLOCKS {
            return corrupt(format!("absurd block count {}", self.blocks));
        }
        let capacity = u64::from(self.blocks) * u64::from(self.block_size);
        if capacity < self.disk_size {
            return corrupt(format!(
                "{} blocks of {} bytes cannot hold the disk size {}",
                self.blocks, self.block_size, self.disk_size
            ));
        }
        if self.blocks_allocated > self.blocks {
            return corrupt(format!(
                "{} blocks allocated but the image has only {}",
                self.blocks_allocated, self.blocks
            ));
        }
        let header_end = HEADER_START as u64 + u64::from(self.header_size);
        if u64::from(self.off_blocks) < header_end {
            return corrupt(format!(
                "block map offset {:#x} overlaps the header (ends at {header_end:#x})",
                self.off_blocks
            ));
        }
        let map_end = u64::from(self.off_blocks) + 4 * u64::from(self.blocks);
        if u64::from(self.off_data) < map_end {
            return corrupt(format!(
                "data offset {:#x} overlaps the block map (ends at {map_end:#x})",
                self.off_data
            ));
        }
        if self.is_diff() && self.uuid_linkage.is_nil() {
            return corrupt("differencing image without a parent UUID".into());
        }
        Ok(())
    }

    /// Serialise the pre-header and header (`on_disk_len()` bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.on_disk_len().max(0x1D8)];
        b[0..64].copy_from_slice(&self.text);
        put_le32(&mut b, 0x40, SIGNATURE);
        put_le32(&mut b, 0x44, VERSION_1_1);
        put_le32(&mut b, 0x48, self.header_size);
        put_le32(&mut b, 0x4C, self.image_type);
        put_le32(&mut b, 0x50, self.flags);
        b[0x54..0x154].copy_from_slice(&self.comment);
        put_le32(&mut b, 0x154, self.off_blocks);
        put_le32(&mut b, 0x158, self.off_data);
        for (i, v) in self.legacy_geometry.iter().enumerate() {
            put_le32(&mut b, 0x15C + 4 * i, *v);
        }
        put_le32(&mut b, 0x16C, self.dummy);
        put_le64(&mut b, 0x170, self.disk_size);
        put_le32(&mut b, 0x178, self.block_size);
        put_le32(&mut b, 0x17C, self.block_extra);
        put_le32(&mut b, 0x180, self.blocks);
        put_le32(&mut b, 0x184, self.blocks_allocated);
        b[0x188..0x198].copy_from_slice(&self.uuid_create.to_guid_bytes());
        b[0x198..0x1A8].copy_from_slice(&self.uuid_modify.to_guid_bytes());
        b[0x1A8..0x1B8].copy_from_slice(&self.uuid_linkage.to_guid_bytes());
        b[0x1B8..0x1C8].copy_from_slice(&self.uuid_parent_modify.to_guid_bytes());
        if self.header_size >= 400 {
            for (i, v) in self.lchs.iter().enumerate() {
                put_le32(&mut b, 0x1C8 + 4 * i, *v);
            }
        }
        b.truncate(self.on_disk_len());
        b
    }

    /// A fresh VirtualBox-layout header (map at 1 MiB, data 1 MiB-aligned).
    pub fn new(disk_size: u64, image_type: u32) -> Option<VdiHeader> {
        const MIB: u64 = 1 << 20;
        let blocks = disk_size.div_ceil(MIB);
        if blocks > u64::from(MAX_BLOCKS) || disk_size > crate::bytes::MAX_DISK_SIZE {
            return None;
        }
        let off_data = crate::bytes::round_up(MIB + 4 * blocks, MIB)?;
        let mut text = [0u8; 64];
        text[..BANNER.len()].copy_from_slice(BANNER.as_bytes());
        Some(VdiHeader {
            text,
            header_size: 400,
            image_type,
            flags: 0,
            comment: [0; 256],
            off_blocks: MIB as u32,
            off_data: u32::try_from(off_data).ok()?,
            legacy_geometry: [0, 0, 0, 512],
            dummy: 0,
            disk_size,
            block_size: MIB as u32,
            block_extra: 0,
            blocks: blocks as u32,
            blocks_allocated: 0,
            uuid_create: Uuid::random(),
            uuid_modify: Uuid::random(),
            uuid_linkage: Uuid::NIL,
            uuid_parent_modify: Uuid::NIL,
            lchs: [0, 0, 0, 512],
        })
    }
}

/// Check a block map against its header: every entry is free, zero, or a distinct slot
/// below `blocks_allocated`. Returns the problem as text.
pub fn validate_map(h: &VdiHeader, map: &[u32]) -> Result<(), String> {
    let mut owner: Vec<u32> = vec![FREE; h.blocks_allocated as usize];
    for (block, &entry) in map.iter().enumerate() {
        if entry == FREE || entry == ZERO {
            continue;
        }
        if entry >= h.blocks_allocated {
            return Err(format!(
                "block map entry {block} points at data slot {entry}, past the {} allocated slots (beyond the end of the data area)",
                h.blocks_allocated
            ));
        }
        let o = &mut owner[entry as usize];
        if *o != FREE {
            return Err(format!(
                "blocks {} and {block} overlap: both use data slot {entry}",
                *o
            ));
        }
        *o = block as u32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_new_header() {
        let h = VdiHeader::new(10 << 20, TYPE_NORMAL).unwrap();
        let b = h.to_bytes();
        assert_eq!(b.len(), 0x48 + 400);
        let mut padded = b.clone();
        padded.resize(512, 0);
        assert_eq!(VdiHeader::parse(&padded).unwrap(), h);
    }

    #[test]
    fn rejects_map_overlapping_header_and_data_overlapping_map() {
        let mut h = VdiHeader::new(10 << 20, TYPE_NORMAL).unwrap();
        h.off_blocks = 0x100;
        assert!(
            matches!(h.validate(), Err(HeaderError::Corrupt(m)) if m.contains("overlaps the header"))
        );
        let mut h = VdiHeader::new(10 << 20, TYPE_NORMAL).unwrap();
        h.off_data = h.off_blocks + 4;
        assert!(
            matches!(h.validate(), Err(HeaderError::Corrupt(m)) if m.contains("overlaps the block map"))
        );
    }

    #[test]
    fn rejects_absurd_sizes() {
        let mut h = VdiHeader::new(10 << 20, TYPE_NORMAL).unwrap();
        h.disk_size = u64::MAX;
        assert!(h.validate().is_err());
        let mut h = VdiHeader::new(10 << 20, TYPE_NORMAL).unwrap();
        h.disk_size = 100 << 20;
        assert!(h.validate().is_err(), "10 blocks cannot hold 100 MiB");
    }

    #[test]
    fn map_validation_finds_overlap_and_out_of_range() {
        let mut h = VdiHeader::new(4 << 20, TYPE_NORMAL).unwrap();
        h.blocks_allocated = 2;
        assert!(validate_map(&h, &[0, 1, FREE, ZERO]).is_ok());
        assert!(validate_map(&h, &[0, 0, FREE, FREE])
            .unwrap_err()
            .contains("overlap"));
        assert!(validate_map(&h, &[0, 2, FREE, FREE])
            .unwrap_err()
            .contains("past"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), sig in any::<bool>()) {
            let mut d = data;
            if sig && d.len() >= 0x48 {
                d[0x40..0x44].copy_from_slice(&SIGNATURE.to_le_bytes());
                d[0x44..0x48].copy_from_slice(&VERSION_1_1.to_le_bytes());
            }
            if let Ok(h) = VdiHeader::parse(&d) {
                // Whatever parses is self-consistent.
                prop_assert!(h.validate().is_ok());
                prop_assert!(u64::from(h.blocks) * u64::from(h.block_size) >= h.disk_size);
            }
        }

        #[test]
        fn mutated_valid_header_never_panics(idx in 0x48usize..0x1D8, val in any::<u8>()) {
            let h = VdiHeader::new(64 << 20, TYPE_NORMAL).unwrap();
            let mut b = h.to_bytes();
            b.resize(512, 0);
            b[idx] = val;
            let _ = VdiHeader::parse(&b);
        }
    }
}
