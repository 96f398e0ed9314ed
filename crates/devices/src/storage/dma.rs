//! Scatter-gather lists in guest memory: the bus-master IDE physical region descriptor
//! table (PIIX datasheet 2.7: 8-byte entries, base, byte count with 0 = 64 KiB, EOT bit 31)
//! and the AHCI physical region descriptor table (AHCI 1.3 4.2.3.3: 16-byte entries, 64-bit
//! base, byte count - 1 in bits 21:0). Both are guest-written: walks are bounded, every
//! address goes through the checked guest-memory accessors, and a descriptor pointing
//! outside RAM ends the transfer with an error instead of a crash.

use pgm::GuestMemory;

/// A guest-physical buffer.
pub type Segment = (u64, usize);

/// A descriptor table could not be read or a buffer is not in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DMA to or from unmapped guest memory at {0:#x}")]
pub struct DmaFault(pub u64);

/// The most PRD entries walked: a PRD table may not cross a 64 KiB boundary, so it has at
/// most 8192 entries.
pub const MAX_IDE_PRD: usize = 8192;

/// Segments of an IDE PRD table at `table` covering `need` bytes (fewer if the table ends
/// first). Returns the segments and whether the table ended (EOT) exactly at `need`.
pub fn ide_prd(
    mem: &GuestMemory,
    table: u64,
    need: usize,
) -> Result<(Vec<Segment>, usize), DmaFault> {
    let mut segs = Vec::new();
    let mut total = 0usize;
    for i in 0..MAX_IDE_PRD as u64 {
        let at = table.wrapping_add(i * 8) & 0xffff_ffff;
        let mut e = [0u8; 8];
        mem.read(at, &mut e).map_err(|_| DmaFault(at))?;
        let base = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]) & !1);
        let count = match u16::from_le_bytes([e[4], e[5]]) & !1 {
            0 => 0x1_0000usize,
            n => usize::from(n),
        };
        let eot = e[7] & 0x80 != 0;
        if total < need {
            let take = count.min(need - total);
            segs.push((base, take));
        }
        total = total.saturating_add(count);
        if eot || total >= need {
            return Ok((segs, total));
        }
    }
    Ok((segs, total))
}

/// Segments of an AHCI PRDT of `entries` descriptors at `table`, at most `need` bytes.
pub fn ahci_prdt(
    mem: &GuestMemory,
    table: u64,
    entries: u16,
    need: usize,
) -> Result<Vec<Segment>, DmaFault> {
    let mut segs = Vec::new();
    let mut total = 0usize;
    for i in 0..u64::from(entries) {
        if total >= need {
            break;
        }
        let at = table.checked_add(i * 16).ok_or(DmaFault(table))?;
        let mut e = [0u8; 16];
        mem.read(at, &mut e).map_err(|_| DmaFault(at))?;
        let base = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]) & !1;
        let dbc = (u32::from_le_bytes([e[12], e[13], e[14], e[15]]) & 0x3f_ffff) as usize + 1;
        let take = dbc.min(need - total);
        segs.push((base, take));
        total += take;
    }
    Ok(segs)
}

/// Copy `data` into the segments (as far as they reach); returns the bytes copied.
pub fn scatter(mem: &GuestMemory, segs: &[Segment], data: &[u8]) -> Result<usize, DmaFault> {
    let mut done = 0usize;
    for &(addr, len) in segs {
        if done >= data.len() {
            break;
        }
        let n = len.min(data.len() - done);
        mem.write(addr, &data[done..done + n])
            .map_err(|_| DmaFault(addr))?;
        done += n;
    }
    Ok(done)
}

/// Read up to `len` bytes from the segments.
pub fn gather(mem: &GuestMemory, segs: &[Segment], len: usize) -> Result<Vec<u8>, DmaFault> {
    let mut out = vec![0u8; len];
    let mut done = 0usize;
    for &(addr, l) in segs {
        if done >= len {
            break;
        }
        let n = l.min(len - done);
        mem.read(addr, &mut out[done..done + n])
            .map_err(|_| DmaFault(addr))?;
        done += n;
    }
    out.truncate(done);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgm::MemoryLayout;

    pub(crate) fn memory() -> GuestMemory {
        GuestMemory::new(MemoryLayout::pc(16 << 20).unwrap()).unwrap()
    }

    fn prd(mem: &GuestMemory, at: u64, entries: &[(u32, u16, bool)]) {
        for (i, (base, count, eot)) in entries.iter().enumerate() {
            let mut e = [0u8; 8];
            e[0..4].copy_from_slice(&base.to_le_bytes());
            e[4..6].copy_from_slice(&count.to_le_bytes());
            e[7] = if *eot { 0x80 } else { 0 };
            mem.write(at + 8 * i as u64, &e).unwrap();
        }
    }

    #[test]
    fn ide_prd_walk_stops_at_eot_and_need() {
        let m = memory();
        prd(&m, 0x1000, &[(0x10000, 512, false), (0x20000, 0, true)]);
        let (s, total) = ide_prd(&m, 0x1000, 1024).unwrap();
        assert_eq!(s, vec![(0x10000, 512), (0x20000, 512)]);
        assert_eq!(total, 512 + 0x10000, "count 0 = 64 KiB");
        let (s, total) = ide_prd(&m, 0x1000, 0x20000).unwrap();
        assert_eq!(total, 0x10200, "table shorter than the transfer");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn scatter_gather_roundtrip_and_faults() {
        let m = memory();
        let segs = vec![(0x3000, 3), (0x5000, 5)];
        assert_eq!(scatter(&m, &segs, b"abcdefgh").unwrap(), 8);
        assert_eq!(gather(&m, &segs, 8).unwrap(), b"abcdefgh");
        assert_eq!(gather(&m, &segs, 4).unwrap(), b"abcd");
        assert!(scatter(&m, &[(0x1_0000_0000_0000, 4)], b"abcd").is_err());
    }

    #[test]
    fn ahci_prdt_entries() {
        let m = memory();
        let mut e = [0u8; 32];
        e[0..8].copy_from_slice(&0x8000u64.to_le_bytes());
        e[12..16].copy_from_slice(&(1023u32 | 1 << 31).to_le_bytes());
        e[16..24].copy_from_slice(&0x9000u64.to_le_bytes());
        e[28..32].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        m.write(0x2000, &e).unwrap();
        let s = ahci_prdt(&m, 0x2000, 2, 4096).unwrap();
        assert_eq!(s, vec![(0x8000, 1024), (0x9000, 3072)]);
        let s = ahci_prdt(&m, 0x2000, 0, 4096).unwrap();
        assert!(s.is_empty());
    }
}
