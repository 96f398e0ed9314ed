//! VHD footer and dynamic-disk header (all big-endian): parse, validate, serialise.

use crate::bytes::{be32, be64, put_be32, put_be64};
use crate::uuid::Uuid;

/// Disk type: fixed.
pub const TYPE_FIXED: u32 = 2;
/// Disk type: dynamic.
pub const TYPE_DYNAMIC: u32 = 3;
/// Disk type: differencing.
pub const TYPE_DIFF: u32 = 4;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH: u64 = 946_684_800;
/// Largest VHD VirtualBox creates (2 TiB).
pub const MAX_VHD_SIZE: u64 = 2 << 40;

/// One's-complement byte sum with the checksum field (at `at`) taken as zero.
pub fn checksum(b: &[u8], at: usize) -> u32 {
    let mut sum: u32 = 0;
    for (i, &x) in b.iter().enumerate() {
        if !(at..at + 4).contains(&i) {
            sum = sum.wrapping_add(u32::from(x));
        }
    }
    !sum
}

/// The 512-byte footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Feature bits.
    pub features: u32,
    /// Offset of the dynamic header (u64::MAX for fixed).
    pub data_offset: u64,
    /// Seconds since 2000-01-01.
    pub timestamp: u32,
    /// Creator application (4 chars).
    pub creator_app: [u8; 4],
    /// Creator version.
    pub creator_version: u32,
    /// Creator host OS.
    pub creator_os: [u8; 4],
    /// Size at creation.
    pub original_size: u64,
    /// Virtual disk size.
    pub current_size: u64,
    /// CHS geometry: cylinders, heads, sectors per track.
    pub geometry: (u16, u8, u8),
    /// 2 fixed, 3 dynamic, 4 differencing.
    pub disk_type: u32,
    /// Image unique id.
    pub unique_id: Uuid,
    /// Saved-state flag.
    pub saved_state: u8,
}

impl Footer {
    /// Parse and validate 512 bytes.
    pub fn parse(b: &[u8]) -> Result<Footer, String> {
        if b.len() < 512 || &b[0..8] != b"conectix" {
            return Err("no VHD footer cookie \"conectix\"".into());
        }
        let stored = be32(b, 64);
        let computed = checksum(&b[..512], 64);
        if stored != computed {
            return Err(format!(
                "footer checksum {stored:#010x} is wrong (expected {computed:#010x})"
            ));
        }
        let version = be32(b, 12);
        if version >> 16 != 1 {
            return Err(format!("unsupported VHD version {version:#010x}"));
        }
        let disk_type = be32(b, 60);
        if !matches!(disk_type, TYPE_FIXED | TYPE_DYNAMIC | TYPE_DIFF) {
            return Err(format!("unknown disk type {disk_type}"));
        }
        let current_size = be64(b, 48);
        if current_size > crate::bytes::MAX_DISK_SIZE {
            return Err(format!("absurd disk size {current_size} bytes"));
        }
        let mut uid = [0u8; 16];
        uid.copy_from_slice(&b[68..84]);
        let mut app = [0u8; 4];
        app.copy_from_slice(&b[28..32]);
        let mut os = [0u8; 4];
        os.copy_from_slice(&b[36..40]);
        Ok(Footer {
            features: be32(b, 8),
            data_offset: be64(b, 16),
            timestamp: be32(b, 24),
            creator_app: app,
            creator_version: be32(b, 32),
            creator_os: os,
            original_size: be64(b, 40),
            current_size,
            geometry: (u16::from_be_bytes([b[56], b[57]]), b[58], b[59]),
            disk_type,
            unique_id: Uuid(uid),
            saved_state: b[84],
        })
    }

    /// Serialise with a correct checksum.
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..8].copy_from_slice(b"conectix");
        put_be32(&mut b, 8, self.features);
        put_be32(&mut b, 12, 0x0001_0000);
        put_be64(&mut b, 16, self.data_offset);
        put_be32(&mut b, 24, self.timestamp);
        b[28..32].copy_from_slice(&self.creator_app);
        put_be32(&mut b, 32, self.creator_version);
        b[36..40].copy_from_slice(&self.creator_os);
        put_be64(&mut b, 40, self.original_size);
        put_be64(&mut b, 48, self.current_size);
        b[56..58].copy_from_slice(&self.geometry.0.to_be_bytes());
        b[58] = self.geometry.1;
        b[59] = self.geometry.2;
        put_be32(&mut b, 60, self.disk_type);
        b[68..84].copy_from_slice(&self.unique_id.0);
        b[84] = self.saved_state;
        let c = checksum(&b, 64);
        put_be32(&mut b, 64, c);
        b
    }

    /// A new footer as VirtualBox writes it.
    pub fn new(size: u64, disk_type: u32, uuid: Uuid) -> Footer {
        Footer {
            features: 2,
            data_offset: if disk_type == TYPE_FIXED {
                u64::MAX
            } else {
                512
            },
            timestamp: now_vhd(),
            creator_app: *b"vbox",
            creator_version: 0x0007_0001,
            creator_os: *b"Wi2k",
            original_size: size,
            current_size: size,
            geometry: chs_geometry(size / 512),
            disk_type,
            unique_id: uuid,
            saved_state: 0,
        }
    }
}

/// Current time in VHD seconds.
pub fn now_vhd() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_sub(VHD_EPOCH) as u32)
        .unwrap_or(0)
}

/// The VHD specification's CHS algorithm (cylinders, heads, sectors per track).
pub fn chs_geometry(total_sectors: u64) -> (u16, u8, u8) {
    let total = total_sectors.min(65535 * 16 * 255);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

/// One parent locator entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    /// Platform code (`W2ku`, `W2ru`, ...).
    pub code: [u8; 4],
    /// Data space (sectors or bytes, producer dependent).
    pub space: u32,
    /// Data length in bytes.
    pub length: u32,
    /// Absolute file offset of the data.
    pub offset: u64,
}

/// The 1024-byte dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynHeader {
    /// Offset of the block allocation table.
    pub table_offset: u64,
    /// Number of BAT entries.
    pub max_entries: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Differencing: the parent's unique id.
    pub parent_id: Uuid,
    /// Differencing: the parent's modification time.
    pub parent_timestamp: u32,
    /// Differencing: the parent's file name (UTF-16BE decoded).
    pub parent_name: String,
    /// Parent locators.
    pub locators: Vec<Locator>,
}

impl DynHeader {
    /// Parse and validate 1024 bytes.
    pub fn parse(b: &[u8]) -> Result<DynHeader, String> {
        if b.len() < 1024 || &b[0..8] != b"cxsparse" {
            return Err("no dynamic header cookie \"cxsparse\"".into());
        }
        let block_size = be32(b, 32);
        if !block_size.is_power_of_two() || !(512..=(1 << 28)).contains(&block_size) {
            return Err(format!(
                "block size {block_size} is not a power of two in 512..=256 MiB"
            ));
        }
        let stored = be32(b, 36);
        if stored != checksum(&b[..1024], 36) {
            tracing::warn!(
                "VHD dynamic header checksum mismatch (ignored, as VirtualBox and QEMU do)"
            );
        }
        let mut pid = [0u8; 16];
        pid.copy_from_slice(&b[40..56]);
        let units: Vec<u16> = b[64..576]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let mut locators = Vec::new();
        for i in 0..8 {
            let o = 576 + 24 * i;
            let mut code = [0u8; 4];
            code.copy_from_slice(&b[o..o + 4]);
            if code == [0; 4] {
                continue;
            }
            locators.push(Locator {
                code,
                space: be32(b, o + 4),
                length: be32(b, o + 8),
                offset: be64(b, o + 16),
            });
        }
        Ok(DynHeader {
            table_offset: be64(b, 16),
            max_entries: be32(b, 28),
            block_size,
            parent_id: Uuid(pid),
            parent_timestamp: be32(b, 56),
            parent_name: String::from_utf16_lossy(&units),
            locators,
        })
    }

    /// Serialise with a correct checksum.
    pub fn to_bytes(&self) -> [u8; 1024] {
        let mut b = [0u8; 1024];
        b[0..8].copy_from_slice(b"cxsparse");
        put_be64(&mut b, 8, u64::MAX);
        put_be64(&mut b, 16, self.table_offset);
        put_be32(&mut b, 24, 0x0001_0000);
        put_be32(&mut b, 28, self.max_entries);
        put_be32(&mut b, 32, self.block_size);
        b[40..56].copy_from_slice(&self.parent_id.0);
        put_be32(&mut b, 56, self.parent_timestamp);
        for (i, u) in self.parent_name.encode_utf16().take(256).enumerate() {
            b[64 + 2 * i..66 + 2 * i].copy_from_slice(&u.to_be_bytes());
        }
        for (i, l) in self.locators.iter().take(8).enumerate() {
            let o = 576 + 24 * i;
            b[o..o + 4].copy_from_slice(&l.code);
            put_be32(&mut b, o + 4, l.space);
            put_be32(&mut b, o + 8, l.length);
            put_be64(&mut b, o + 16, l.offset);
        }
        let c = checksum(&b, 36);
        put_be32(&mut b, 36, c);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn footer_roundtrip_and_checksum() {
        let f = Footer::new(64 << 20, TYPE_DYNAMIC, Uuid::random());
        let b = f.to_bytes();
        assert_eq!(Footer::parse(&b).unwrap(), f);
        let mut bad = b;
        bad[100] ^= 1;
        assert!(Footer::parse(&bad).unwrap_err().contains("checksum"));
    }

    #[test]
    fn geometry_matches_spec_examples() {
        // 64 MiB: 131072 sectors -> spt 17 would need 7710 cth with heads 8... spec result.
        let (c, h, s) = chs_geometry(131072);
        assert!(u64::from(c) * u64::from(h) * u64::from(s) <= 131072);
        assert_eq!(chs_geometry(65535 * 16 * 255 + 5), (65535, 16, 255));
    }

    #[test]
    fn dyn_header_roundtrip() {
        let h = DynHeader {
            table_offset: 1536,
            max_entries: 10,
            block_size: 2 << 20,
            parent_id: Uuid::random(),
            parent_timestamp: 5,
            parent_name: "base.vhd".into(),
            locators: vec![Locator {
                code: *b"W2ru",
                space: 1,
                length: 20,
                offset: 4096,
            }],
        };
        assert_eq!(DynHeader::parse(&h.to_bytes()).unwrap(), h);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = Footer::parse(&data);
            let _ = DynHeader::parse(&data);
        }
    }
}
