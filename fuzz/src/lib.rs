//! Helpers shared by the fuzz targets.

use hgcm::Param;

/// Decode one HGCM call from fuzz input: a function number below `functions`, up to
/// `max_params - 1` parameters (32-bit, 64-bit or a buffer of up to 255 bytes), and the
/// rest of the input.
pub fn hgcm_call(mut d: &[u8], functions: u8, max_params: u8) -> (u32, Vec<Param>, &[u8]) {
    let Some((&f, rest)) = d.split_first() else {
        return (0, vec![], d);
    };
    d = rest;
    let mut out = Vec::new();
    let n = d.first().map(|b| b % max_params.max(1)).unwrap_or(0);
    d = d.get(1..).unwrap_or_default();
    for _ in 0..n {
        let Some((&kind, rest)) = d.split_first() else {
            break;
        };
        d = rest;
        match kind % 3 {
            0 => {
                let v = d
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                d = d.get(4..).unwrap_or_default();
                out.push(Param::U32(v));
            }
            1 => {
                let v = d
                    .get(..8)
                    .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .unwrap_or(0);
                d = d.get(8..).unwrap_or_default();
                out.push(Param::U64(v));
            }
            _ => {
                let len = usize::from(d.first().copied().unwrap_or(0));
                d = d.get(1..).unwrap_or_default();
                let take = len.min(d.len());
                out.push(Param::buf(d[..take].to_vec()));
                d = &d[take..];
            }
        }
    }
    (u32::from(f % functions.max(1)), out, d)
}

/// Reads fuzz input front to back; past the end every read gives zeros, so any input
/// decodes to a complete sequence of operations.
pub struct Input<'a> {
    d: &'a [u8],
}

impl<'a> Input<'a> {
    /// Decode `d`.
    pub fn new(d: &'a [u8]) -> Self {
        Input { d }
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.d.is_empty()
    }

    /// The next `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.d.split_at(n.min(self.d.len()));
        self.d = b;
        a
    }

    /// The next `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.take(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    /// The next `n` bytes, zero-padded.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = self.take(n).to_vec();
        v.resize(n, 0);
        v
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A byte-sized choice: `table[i]` for an even selector, the next input byte for odd.
    pub fn pick(&mut self, table: &[u8]) -> u8 {
        let sel = self.u8();
        if sel & 1 == 0 && !table.is_empty() {
            table[usize::from(sel >> 1) % table.len()]
        } else {
            self.u8()
        }
    }
}

/// What the storage controller targets attach: a small disk and an ATAPI CD, and the
/// command bytes worth steering the fuzzer to.
pub mod storage {
    use devices::storage::{Drive, DriveKind, DriveOptions};

    /// ATA commands worth reaching (the rest come as raw bytes): IDENTIFY, PIO, DMA and
    /// NCQ reads and writes, SET FEATURES, flushes, TRIM, power management, and the rest
    /// of what the models implement.
    pub const ATA_COMMANDS: &[u8] = &[
        0xec, 0xa1, 0xa0, 0x20, 0x24, 0x25, 0x29, 0x30, 0x34, 0x35, 0x39, 0x60, 0x61, 0xc4, 0xc5,
        0xc6, 0xc8, 0xca, 0xef, 0xe7, 0xea, 0xf8, 0x27, 0x40, 0x42, 0x06, 0x90, 0x91, 0x10, 0x08,
        0xe5, 0x3d,
    ];

    /// ATAPI opcodes worth reaching.
    pub const ATAPI_OPCODES: &[u8] = &[
        0x00, 0x03, 0x12, 0x1a, 0x5a, 0x1b, 0x1e, 0x25, 0x28, 0xa8, 0xbe, 0x43, 0x46, 0x4a, 0xbd,
        0xbb, 0x2b,
    ];

    fn medium(name: &str, data: Vec<u8>, format: media::Format) -> Option<Box<dyn media::Disk>> {
        let st = media::MemStorage::new(name, data);
        let layer = media::raw::RawLayer::open(Box::new(st), format).ok()?;
        let m = media::Medium::from_layers(vec![Box::new(layer)], true).ok()?;
        Some(Box::new(m))
    }

    /// A 64-sector disk with a recognisable pattern (TRIM on when `discard`) and a CD with
    /// an ISO-like 40-block image (a primary volume descriptor at block 16).
    pub fn disk_and_cd(discard: bool) -> Option<(Drive, Drive)> {
        let disk_bytes: Vec<u8> = (0..64 * 512)
            .map(|i: usize| (i / 512) as u8 ^ i as u8)
            .collect();
        let disk = medium("disk.img", disk_bytes, media::Format::Raw)?;
        let mut iso: Vec<u8> = (0..40 * 2048).map(|i: usize| (i / 2048) as u8).collect();
        iso[0x8000..0x8006].copy_from_slice(b"\x01CD001");
        let cd = medium("cd.iso", iso, media::Format::Iso)?;
        let mut opts = DriveOptions::vbox(DriveKind::HardDisk, "VB-fuzz");
        opts.discard = discard;
        Some((
            Drive::new(DriveKind::HardDisk, Some(disk), opts),
            Drive::new(
                DriveKind::Cdrom,
                Some(cd),
                DriveOptions::vbox(DriveKind::Cdrom, "VB-cd"),
            ),
        ))
    }
}
