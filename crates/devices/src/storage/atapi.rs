//! The ATAPI (SCSI MMC) command set of a CD/DVD drive, as VirtualBox's emulated drive
//! answers it: INQUIRY ("VBOX" "CD-ROM" "1.0"), TEST UNIT READY, REQUEST SENSE, READ
//! CAPACITY, READ(10/12), READ CD (user data), MODE SENSE(6/10) (error recovery and
//! capabilities pages), READ TOC (formats 0 and 1, LBA or MSF), GET CONFIGURATION (profile
//! list + core), GET EVENT STATUS NOTIFICATION (media class), START STOP UNIT, PREVENT
//! ALLOW MEDIUM REMOVAL, SEEK, SET CD SPEED, MECHANISM STATUS. Unknown opcodes answer
//! ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE.
//!
//! Data is cut to the command's allocation length. A packet's fields are guest input:
//! LBAs and lengths are range-checked (LOGICAL BLOCK ADDRESS OUT OF RANGE) and the data
//! phase is bounded by [`super::ata::MAX_TRANSFER`].

use super::ata::MAX_TRANSFER;
use media::Disk;

/// CD sector size.
pub const CD_SECTOR: usize = 2048;

/// Sense keys.
pub mod sense {
    /// No sense.
    pub const NO_SENSE: u8 = 0x00;
    /// Not ready.
    pub const NOT_READY: u8 = 0x02;
    /// Medium error.
    pub const MEDIUM_ERROR: u8 = 0x03;
    /// Illegal request.
    pub const ILLEGAL_REQUEST: u8 = 0x05;
    /// Unit attention.
    pub const UNIT_ATTENTION: u8 = 0x06;
}

/// Additional sense codes used here.
mod asc {
    pub const INVALID_OPCODE: u8 = 0x20;
    pub const LBA_OUT_OF_RANGE: u8 = 0x21;
    pub const INVALID_FIELD_IN_CDB: u8 = 0x24;
    pub const MEDIUM_NOT_PRESENT: u8 = 0x3a;
    pub const UNRECOVERED_READ_ERROR: u8 = 0x11;
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: u8 = 0x39;
}

/// Drive state that persists between packets.
#[derive(Debug, Clone)]
pub struct Atapi {
    present: bool,
    sense_key: u8,
    asc: u8,
    ascq: u8,
    /// A "new media" event is still to be reported by GET EVENT STATUS NOTIFICATION.
    new_media_event: bool,
}

fn be16(v: &[u8]) -> u32 {
    u32::from(v[0]) << 8 | u32::from(v[1])
}

fn be32(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

/// LBA to minutes/seconds/frames (with the 2-second lead-in). The minutes of a medium
/// past 255 minutes (an image of hundreds of GiB) keep their low 8 bits, as the field has.
fn lba_to_msf(lba: u32) -> [u8; 3] {
    let l = u64::from(lba) + 150;
    [(l / 75 / 60) as u8, (l / 75 % 60) as u8, (l % 75) as u8]
}

impl Atapi {
    /// A drive with (`present`) or without a medium.
    pub fn new(present: bool) -> Atapi {
        Atapi {
            present,
            sense_key: 0,
            asc: 0,
            ascq: 0,
            new_media_event: present,
        }
    }

    /// Reset clears the sense data.
    pub fn reset(&mut self) {
        self.set_sense(sense::NO_SENSE, 0);
    }

    fn set_sense(&mut self, key: u8, asc: u8) {
        self.sense_key = key;
        self.asc = asc;
        self.ascq = 0;
    }

    fn fail(&mut self, key: u8, asc: u8) -> Result<Vec<u8>, u8> {
        self.set_sense(key, asc);
        Err(key)
    }

    /// Run one command. `Ok(data)` (possibly empty) or `Err(sense key)`; the sense data
    /// stays for REQUEST SENSE.
    pub fn execute<D: Disk + ?Sized>(
        &mut self,
        cdb: &[u8; 12],
        medium: Option<&mut D>,
    ) -> Result<Vec<u8>, u8> {
        let op = cdb[0];
        // REQUEST SENSE and INQUIRY work in every state and do not clear the sense first.
        if op != 0x03 {
            self.set_sense(sense::NO_SENSE, 0);
        }
        let needs_medium = matches!(op, 0x00 | 0x25 | 0x28 | 0xa8 | 0xbe | 0x43 | 0x2b);
        let medium = match medium {
            Some(m) if self.present => Some(m),
            _ => None,
        };
        if needs_medium && medium.is_none() {
            return self.fail(sense::NOT_READY, asc::MEDIUM_NOT_PRESENT);
        }
        let blocks = medium.as_ref().map_or(0, |m| {
            (m.size() / CD_SECTOR as u64).min(u64::from(u32::MAX)) as u32
        });
        let data = match op {
            0x00 => Vec::new(),
            0x03 => {
                let mut d = vec![0u8; 18];
                d[0] = 0x70;
                d[2] = self.sense_key;
                d[7] = 10;
                d[12] = self.asc;
                d[13] = self.ascq;
                self.set_sense(sense::NO_SENSE, 0);
                cut(d, usize::from(cdb[4]))
            }
            0x12 => {
                if cdb[1] & 1 != 0 {
                    return self.fail(sense::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                let mut d = vec![0u8; 36];
                d[0] = 0x05; // CD/DVD device
                d[1] = 0x80; // removable
                d[2] = 0x00;
                d[3] = 0x21; // ATAPI, response format 1
                d[4] = 31;
                d[8..16].copy_from_slice(b"VBOX    ");
                d[16..32].copy_from_slice(b"CD-ROM          ");
                d[32..36].copy_from_slice(b"1.0 ");
                cut(d, usize::from(cdb[4]))
            }
            0x1a | 0x5a => self.mode_sense(cdb)?,
            0x1b | 0x1e | 0x2b | 0xbb => Vec::new(),
            0x25 => {
                let mut d = Vec::with_capacity(8);
                d.extend_from_slice(&blocks.saturating_sub(1).to_be_bytes());
                d.extend_from_slice(&(CD_SECTOR as u32).to_be_bytes());
                d
            }
            0x28 | 0xa8 | 0xbe => {
                let lba = be32(&cdb[2..6]);
                let count = match op {
                    0x28 => be16(&cdb[7..9]),
                    0xa8 => be32(&cdb[6..10]),
                    _ => u32::from(cdb[6]) << 16 | u32::from(cdb[7]) << 8 | u32::from(cdb[8]),
                };
                // READ CD: only user data (sync/header/EDC off, byte 9 = 0x10) is modelled.
                if op == 0xbe && count != 0 && cdb[9] & 0xf8 != 0x10 {
                    return self.fail(sense::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                if u64::from(lba) + u64::from(count) > u64::from(blocks) {
                    return self.fail(sense::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE);
                }
                let len = count as usize * CD_SECTOR;
                if len > MAX_TRANSFER {
                    return self.fail(sense::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                let mut d = vec![0u8; len];
                if let Some(m) = medium {
                    if let Err(e) = m.read_at(&mut d, u64::from(lba) * CD_SECTOR as u64) {
                        tracing::warn!("CD read at block {lba} failed: {e}");
                        return self.fail(sense::MEDIUM_ERROR, asc::UNRECOVERED_READ_ERROR);
                    }
                }
                d
            }
            0x43 => self.read_toc(cdb, blocks)?,
            0x46 => {
                let alloc = be16(&cdb[7..9]) as usize;
                let profile: u16 = if u64::from(blocks) * CD_SECTOR as u64 > 700 << 20 {
                    0x0010 // DVD-ROM
                } else {
                    0x0008 // CD-ROM
                };
                let current = if self.present { profile } else { 0 };
                let mut d = vec![0u8; 8];
                d[6..8].copy_from_slice(&current.to_be_bytes());
                // Profile list feature: DVD-ROM and CD-ROM.
                d.extend_from_slice(&[0x00, 0x00, 0x03, 8]);
                for p in [0x0010u16, 0x0008] {
                    d.extend_from_slice(&p.to_be_bytes());
                    d.push(u8::from(p == current));
                    d.push(0);
                }
                // Core feature: ATAPI interface.
                d.extend_from_slice(&[0x00, 0x01, 0x0b, 8, 0, 0, 0, 2, 1, 0, 0, 0]);
                let len = (d.len() - 4) as u32;
                d[0..4].copy_from_slice(&len.to_be_bytes());
                cut(d, alloc)
            }
            0x4a => {
                if cdb[1] & 1 == 0 {
                    // Only polled operation.
                    return self.fail(sense::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                }
                let alloc = be16(&cdb[7..9]) as usize;
                let mut d = vec![0u8; 4];
                d[3] = 0x10; // supported: media class
                if cdb[4] & 0x10 != 0 {
                    d[1] = 6;
                    d[2] = 0x04; // media class
                    let code = if std::mem::take(&mut self.new_media_event) {
                        2
                    } else {
                        0
                    };
                    d.extend_from_slice(&[code, u8::from(self.present) << 1, 0, 0]);
                } else {
                    d[1] = 2;
                    d[2] = 0x80; // no event available
                }
                cut(d, alloc)
            }
            0xbd => {
                let mut d = vec![0u8; 8];
                d[5] = 1; // one slot
                cut(d, be16(&cdb[8..10]) as usize)
            }
            _ => return self.fail(sense::ILLEGAL_REQUEST, asc::INVALID_OPCODE),
        };
        Ok(data)
    }

    fn mode_sense(&mut self, cdb: &[u8; 12]) -> Result<Vec<u8>, u8> {
        let ten = cdb[0] == 0x5a;
        let page = cdb[2] & 0x3f;
        let pc = cdb[2] >> 6;
        if pc == 3 {
            self.set_sense(sense::ILLEGAL_REQUEST, asc::SAVING_PARAMETERS_NOT_SUPPORTED);
            return Err(sense::ILLEGAL_REQUEST);
        }
        let alloc = if ten {
            be16(&cdb[7..9]) as usize
        } else {
            usize::from(cdb[4])
        };
        let mut pages = Vec::new();
        if page == 0x01 || page == 0x3f {
            pages.extend_from_slice(&[0x01, 0x06, 0, 5, 0, 0, 0, 0]);
        }
        if page == 0x2a || page == 0x3f {
            let mut p = vec![0u8; 20];
            p[0] = 0x2a;
            p[1] = 18;
            p[2] = 0x03; // reads CD-R/RW
            p[4] = 0x71; // multisession, mode 2 forms, audio
            p[5] = 0xff;
            p[6] = 0x2d | 0x02; // eject, tray, lock
            p[8..10].copy_from_slice(&((50 * 176) as u16).to_be_bytes());
            p[10..12].copy_from_slice(&256u16.to_be_bytes());
            p[12..14].copy_from_slice(&2048u16.to_be_bytes());
            p[14..16].copy_from_slice(&((50 * 176) as u16).to_be_bytes());
            pages.extend_from_slice(&p);
        }
        if pages.is_empty() {
            self.set_sense(sense::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
            return Err(sense::ILLEGAL_REQUEST);
        }
        let mut d = if ten {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&((pages.len() + 6) as u16).to_be_bytes());
            h[2] = 0x70; // medium type: door closed, no disc info
            h
        } else {
            vec![(pages.len() + 3) as u8, 0x70, 0, 0]
        };
        d.extend_from_slice(&pages);
        Ok(cut(d, alloc))
    }

    fn read_toc(&mut self, cdb: &[u8; 12], blocks: u32) -> Result<Vec<u8>, u8> {
        let msf = cdb[1] & 0x02 != 0;
        let format = cdb[2] & 0x0f;
        let format = if format == 0 { cdb[9] >> 6 } else { format };
        let alloc = be16(&cdb[7..9]) as usize;
        let addr = |lba: u32| -> [u8; 4] {
            if msf {
                let m = lba_to_msf(lba);
                [0, m[0], m[1], m[2]]
            } else {
                lba.to_be_bytes()
            }
        };
        let mut d = vec![0u8, 0, 1, 1];
        match format {
            0 => {
                let start = cdb[6];
                if start > 1 && start != 0xaa {
                    self.set_sense(sense::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                    return Err(sense::ILLEGAL_REQUEST);
                }
                if start <= 1 {
                    d.extend_from_slice(&[0, 0x14, 1, 0]);
                    d.extend_from_slice(&addr(0));
                }
                d.extend_from_slice(&[0, 0x14, 0xaa, 0]);
                d.extend_from_slice(&addr(blocks));
            }
            1 => {
                d.extend_from_slice(&[0, 0x14, 1, 0]);
                d.extend_from_slice(&addr(0));
            }
            _ => {
                self.set_sense(sense::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
                return Err(sense::ILLEGAL_REQUEST);
            }
        }
        let len = (d.len() - 2) as u16;
        d[0..2].copy_from_slice(&len.to_be_bytes());
        Ok(cut(d, alloc))
    }
}

fn cut(mut d: Vec<u8>, alloc: usize) -> Vec<u8> {
    d.truncate(alloc);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ata::tests::MemDisk;

    fn cdb(b: &[u8]) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..b.len()].copy_from_slice(b);
        c
    }

    #[test]
    fn no_medium_is_not_ready_then_sense() {
        let mut a = Atapi::new(false);
        assert_eq!(
            a.execute(&cdb(&[0x00]), None::<&mut MemDisk>),
            Err(sense::NOT_READY)
        );
        let s = a
            .execute(&cdb(&[0x03, 0, 0, 0, 18]), None::<&mut MemDisk>)
            .unwrap();
        assert_eq!((s[0], s[2], s[12]), (0x70, sense::NOT_READY, 0x3a));
        let s = a
            .execute(&cdb(&[0x03, 0, 0, 0, 18]), None::<&mut MemDisk>)
            .unwrap();
        assert_eq!(s[2], 0, "sense cleared after REQUEST SENSE");
    }

    #[test]
    fn inquiry_and_capacity() {
        let mut m = MemDisk::new(100 * CD_SECTOR);
        let mut a = Atapi::new(true);
        let d = a.execute(&cdb(&[0x12, 0, 0, 0, 36]), Some(&mut m)).unwrap();
        assert_eq!(&d[8..16], b"VBOX    ");
        assert_eq!(&d[16..22], b"CD-ROM");
        assert_eq!(d[0], 5);
        let d = a.execute(&cdb(&[0x12, 0, 0, 0, 5]), Some(&mut m)).unwrap();
        assert_eq!(d.len(), 5, "allocation length");
        let d = a.execute(&cdb(&[0x25]), Some(&mut m)).unwrap();
        assert_eq!(d, [0, 0, 0, 99, 0, 0, 8, 0]);
    }

    #[test]
    fn read10_and_range() {
        let mut m = MemDisk::new(100 * CD_SECTOR);
        let mut a = Atapi::new(true);
        let d = a
            .execute(&cdb(&[0x28, 0, 0, 0, 0, 98, 0, 0, 2]), Some(&mut m))
            .unwrap();
        assert_eq!(
            d,
            m.data.lock().unwrap()[98 * CD_SECTOR..100 * CD_SECTOR].to_vec()
        );
        assert_eq!(
            a.execute(&cdb(&[0x28, 0, 0, 0, 0, 99, 0, 0, 2]), Some(&mut m)),
            Err(sense::ILLEGAL_REQUEST)
        );
        assert_eq!(
            a.execute(
                &cdb(&[0xa8, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
                Some(&mut m)
            ),
            Err(sense::ILLEGAL_REQUEST)
        );
    }

    #[test]
    fn toc_msf_and_events() {
        let mut m = MemDisk::new(300 * CD_SECTOR);
        let mut a = Atapi::new(true);
        let d = a
            .execute(&cdb(&[0x43, 2, 0, 0, 0, 0, 0, 0, 100]), Some(&mut m))
            .unwrap();
        assert_eq!(d.len(), 20);
        assert_eq!(
            &d[16..20],
            &[0, 0, 6, 0],
            "lead-out 300+150 frames = 0:06:00"
        );
        let ev = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8];
        let d = a.execute(&cdb(&ev), Some(&mut m)).unwrap();
        assert_eq!((d[2], d[4], d[5]), (4, 2, 2), "new media once");
        let d = a.execute(&cdb(&ev), Some(&mut m)).unwrap();
        assert_eq!(d[4], 0);
        assert_eq!(
            a.execute(&cdb(&[0x4a, 0, 0, 0, 0x10]), Some(&mut m)),
            Err(sense::ILLEGAL_REQUEST)
        );
    }

    #[test]
    fn unknown_opcode() {
        let mut a = Atapi::new(true);
        let mut m = MemDisk::new(CD_SECTOR);
        assert_eq!(
            a.execute(&cdb(&[0xff]), Some(&mut m)),
            Err(sense::ILLEGAL_REQUEST)
        );
        let s = a.execute(&cdb(&[0x03, 0, 0, 0, 18]), Some(&mut m)).unwrap();
        assert_eq!(s[12], 0x20);
    }

    /// A medium of any size that reads as zeros.
    struct Huge(u64);

    impl Disk for Huge {
        fn size(&self) -> u64 {
            self.0
        }
        fn read_only(&self) -> bool {
            true
        }
        fn read_at(&mut self, buf: &mut [u8], _offset: u64) -> media::Result<()> {
            buf.fill(0);
            Ok(())
        }
        fn write_at(&mut self, _buf: &[u8], _offset: u64) -> media::Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> media::Result<()> {
            Ok(())
        }
        fn discard(&mut self, _offset: u64, _len: u64) -> media::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn toc_msf_of_the_largest_image() {
        // An image of 2^32 blocks (8 TiB, a sparse file will do): the lead-out's LBA
        // + 150 overflowed a u32 (a panic with overflow checks).
        let mut m = Huge(u64::from(u32::MAX) * CD_SECTOR as u64 + CD_SECTOR as u64);
        let mut a = Atapi::new(true);
        let d = a
            .execute(&cdb(&[0x43, 2, 0, 0, 0, 0, 0, 0, 100]), Some(&mut m))
            .unwrap();
        let l = u64::from(u32::MAX) + 150;
        assert_eq!(
            d[16..20],
            [0, (l / 75 / 60) as u8, (l / 75 % 60) as u8, (l % 75) as u8]
        );
    }

    proptest::proptest! {
        #[test]
        fn random_packets_never_panic(p in proptest::array::uniform12(proptest::num::u8::ANY), present in proptest::bool::ANY) {
            let mut m = MemDisk::new(64 * CD_SECTOR);
            let mut a = Atapi::new(present);
            if let Ok(d) = a.execute(&p, Some(&mut m)) {
                proptest::prop_assert!(d.len() <= MAX_TRANSFER);
            }
        }
    }
}
