//! IDENTIFY DEVICE and IDENTIFY PACKET DEVICE data (ATA8-ACS 7.16/7.17), laid out as
//! VirtualBox's DevATA/DevAHCI report them: model "VBOX HARDDISK" / "VBOX CD-ROM",
//! firmware "1.0", PIO 0-4, multiword DMA 0-2, UDMA 0-6, LBA48, FLUSH CACHE (EXT), and
//! for AHCI disks the NCQ words (75, 76). Word 255 carries the integrity checksum.

/// Drive identity strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Model (at most 40 characters).
    pub model: String,
    /// Serial number (at most 20 characters).
    pub serial: String,
    /// Firmware revision (at most 8 characters).
    pub firmware: String,
}

/// Copy an ATA string: two characters per word, first character in the high byte,
/// padded with spaces.
fn put_string(words: &mut [u16; 256], first: usize, len_words: usize, s: &str) {
    let mut bytes: Vec<u8> = s.bytes().filter(|b| (0x20..0x7f).contains(b)).collect();
    bytes.resize(len_words * 2, b' ');
    for i in 0..len_words {
        words[first + i] = u16::from(bytes[2 * i]) << 8 | u16::from(bytes[2 * i + 1]);
    }
}

/// Set word 255: signature 0xA5 and a checksum making the 512-byte sum zero.
fn seal(words: &mut [u16; 256]) {
    words[255] = 0x00a5;
    let sum = words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .fold(0u8, |a, b| a.wrapping_add(b));
    words[255] |= u16::from(0u8.wrapping_sub(sum)) << 8;
}

/// Little-endian bytes of an identify block.
pub fn to_bytes(words: &[u16; 256]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// What IDENTIFY DEVICE reports for a hard disk.
#[derive(Debug, Clone)]
pub struct DiskParams {
    /// Sectors of 512 bytes.
    pub sectors: u64,
    /// Current READ/WRITE MULTIPLE block size (0 = not set).
    pub multiple: u8,
    /// Write cache enabled.
    pub write_cache: bool,
    /// Report NCQ and the SATA capabilities (AHCI).
    pub sata: bool,
    /// Report DATA SET MANAGEMENT TRIM.
    pub trim: bool,
    /// Report a solid-state medium (word 217 = 1).
    pub non_rotational: bool,
    /// Selected UDMA mode (bits 14:8 of word 88), if any.
    pub udma_selected: Option<u8>,
    /// Selected multiword DMA mode, if any.
    pub mdma_selected: Option<u8>,
}

/// The largest READ/WRITE MULTIPLE block, as VirtualBox (ATA_MAX_MULT_SECTORS).
pub const MAX_MULTIPLE: u8 = 128;

/// Logical CHS geometry for a disk of `sectors`: 16 heads, 63 sectors per track, at most
/// 16383 cylinders (what ATA reports for disks beyond 8 GB).
pub fn geometry(sectors: u64) -> (u16, u16, u16) {
    let cyl = (sectors / (16 * 63)).clamp(1, 16383) as u16;
    (cyl, 16, 63)
}

/// IDENTIFY DEVICE for a hard disk.
pub fn identify_disk(id: &Identity, p: &DiskParams) -> [u16; 256] {
    let mut w = [0u16; 256];
    let (cyl, heads, spt) = geometry(p.sectors);
    w[0] = 0x0040; // fixed, non-removable ATA device
    w[1] = cyl;
    w[3] = heads;
    w[6] = spt;
    put_string(&mut w, 10, 10, &id.serial);
    put_string(&mut w, 23, 4, &id.firmware);
    put_string(&mut w, 27, 20, &id.model);
    w[47] = 0x8000 | u16::from(MAX_MULTIPLE);
    w[48] = 1; // 32-bit PIO accesses work
    w[49] = (1 << 11) | (1 << 9) | (1 << 8); // IORDY, LBA, DMA
    w[50] = 0x4000;
    w[51] = 0x0200;
    w[53] = 0x0007; // words 54-58, 64-70 and 88 valid
    let chs = u32::from(cyl) * u32::from(heads) * u32::from(spt);
    w[54] = cyl;
    w[55] = heads;
    w[56] = spt;
    w[57] = chs as u16;
    w[58] = (chs >> 16) as u16;
    if p.multiple != 0 {
        w[59] = 0x0100 | u16::from(p.multiple);
    }
    let lba28 = p.sectors.min(0x0fff_ffff) as u32;
    w[60] = lba28 as u16;
    w[61] = (lba28 >> 16) as u16;
    w[63] = 0x0007 | p.mdma_selected.map_or(0, |m| 1 << (8 + m.min(2)));
    w[64] = 0x0003; // PIO 3 and 4
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    if p.sata {
        w[75] = 31; // queue depth - 1
        w[76] = (1 << 8) | (1 << 2) | (1 << 1); // NCQ, SATA gen 2 and gen 1
    }
    w[80] = 0x01f0; // ATA/ATAPI-4 to ATA8-ACS
    w[81] = 0x0022;
    w[82] = (1 << 14) | (1 << 6) | (1 << 5); // NOP, look-ahead, write cache
    w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10); // FLUSH EXT, FLUSH, LBA48
    w[84] = 1 << 14;
    w[85] = (1 << 14) | (1 << 6) | if p.write_cache { 1 << 5 } else { 0 };
    w[86] = (1 << 13) | (1 << 12) | (1 << 10);
    w[87] = 1 << 14;
    w[88] = 0x007f | p.udma_selected.map_or(0, |m| 1 << (8 + m.min(6)));
    w[93] = 0x6000 | 0x0001; // hardware reset result: device 0 (no CBLID on SATA/emulated)
    w[100] = p.sectors as u16;
    w[101] = (p.sectors >> 16) as u16;
    w[102] = (p.sectors >> 32) as u16;
    w[103] = (p.sectors >> 48) as u16;
    w[106] = 1 << 14; // words 106 valid; one logical sector per physical one
    if p.trim {
        w[169] = 1; // DATA SET MANAGEMENT TRIM
    }
    if p.non_rotational {
        w[217] = 1;
    }
    seal(&mut w);
    w
}

/// IDENTIFY PACKET DEVICE for a CD/DVD drive.
pub fn identify_cdrom(id: &Identity, udma_selected: Option<u8>, sata: bool) -> [u16; 256] {
    let mut w = [0u16; 256];
    // ATAPI, CD-ROM device type, removable, DRQ within 50 us, 12-byte packets.
    w[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
    put_string(&mut w, 10, 10, &id.serial);
    put_string(&mut w, 23, 4, &id.firmware);
    put_string(&mut w, 27, 20, &id.model);
    w[49] = (1 << 11) | (1 << 9) | (1 << 8); // IORDY, LBA, DMA
    w[53] = 0x0006; // words 64-70 and 88 valid
    w[63] = 0x0007;
    w[64] = 0x0003;
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    if sata {
        w[76] = (1 << 2) | (1 << 1);
    }
    w[80] = 0x01f0;
    w[82] = (1 << 14) | (1 << 9) | (1 << 4); // NOP, DEVICE RESET, PACKET
    w[83] = 1 << 14;
    w[84] = 1 << 14;
    w[85] = (1 << 14) | (1 << 9) | (1 << 4);
    w[87] = 1 << 14;
    w[88] = 0x007f | udma_selected.map_or(0, |m| 1 << (8 + m.min(6)));
    seal(&mut w);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(model: &str) -> Identity {
        Identity {
            model: model.into(),
            serial: "VB12345678-9abcdef0".into(),
            firmware: "1.0".into(),
        }
    }

    fn string_of(w: &[u16; 256], first: usize, n: usize) -> String {
        w[first..first + n]
            .iter()
            .flat_map(|x| [(x >> 8) as u8, *x as u8])
            .map(char::from)
            .collect::<String>()
            .trim_end()
            .to_string()
    }

    fn params(sectors: u64) -> DiskParams {
        DiskParams {
            sectors,
            multiple: 0,
            write_cache: true,
            sata: false,
            trim: false,
            non_rotational: false,
            udma_selected: None,
            mdma_selected: None,
        }
    }

    #[test]
    fn disk_strings_sizes_and_checksum() {
        let w = identify_disk(&ident("VBOX HARDDISK"), &params(0x1_2345_6789));
        assert_eq!(string_of(&w, 27, 20), "VBOX HARDDISK");
        assert_eq!(string_of(&w, 23, 4), "1.0");
        assert_eq!(string_of(&w, 10, 10), "VB12345678-9abcdef0");
        assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0fff_ffff);
        let lba48 = (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i));
        assert_eq!(lba48, 0x1_2345_6789);
        let sum = to_bytes(&w).iter().fold(0u8, |a, b| a.wrapping_add(*b));
        assert_eq!(sum, 0);
        assert_eq!(w[255] & 0xff, 0xa5);
        assert_eq!(w[76], 0, "no SATA words on IDE");
        assert_ne!(w[83] & (1 << 10), 0, "LBA48");
    }

    #[test]
    fn sata_disk_reports_ncq_and_trim() {
        let mut p = params(2048);
        p.sata = true;
        p.trim = true;
        p.non_rotational = true;
        p.multiple = 16;
        let w = identify_disk(&ident("VBOX HARDDISK"), &p);
        assert_eq!(w[75], 31);
        assert_ne!(w[76] & (1 << 8), 0);
        assert_eq!(w[169], 1);
        assert_eq!(w[217], 1);
        assert_eq!(w[59], 0x0110);
        let (c, h, s) = geometry(2048);
        assert_eq!((w[1], w[3], w[6]), (c, h, s));
    }

    #[test]
    fn cdrom_is_atapi_removable() {
        let w = identify_cdrom(&ident("VBOX CD-ROM"), Some(2), false);
        assert_eq!(w[0] >> 14, 2, "ATAPI");
        assert_eq!((w[0] >> 8) & 0x1f, 5, "CD-ROM");
        assert_ne!(w[0] & 0x80, 0, "removable");
        assert_eq!(w[0] & 3, 0, "12-byte packets");
        assert_eq!(string_of(&w, 27, 20), "VBOX CD-ROM");
        assert_eq!(w[88] >> 8, 1 << 2);
    }
}
