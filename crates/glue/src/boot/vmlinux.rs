//! Host-side kernel decompression for direct boot: the bzImage's compressed payload is
//! unpacked here into its `vmlinux` ELF, whose loadable segments go straight to their
//! physical addresses, and the vCPU starts at vmlinux's own `startup_64` (the ELF entry,
//! which x86-64 kernels link as a physical address), as Firecracker boots an uncompressed
//! kernel. The guest then never runs the bzImage decompressor, which on the interpreter
//! engine is most of a direct boot (tens of seconds of LZMA decoding).
//!
//! The kernel is not relocated, so it runs at its link address without KASLR, as with
//! Firecracker's and QEMU's (PVH) vmlinux boots. A payload this module cannot unpack (a format
//! other than xz or gzip, or a kernel that does not fit) is left to the guest's
//! decompressor: [`unpack`] and [`Elf::parse`] say why.

use std::io::Read;

/// Largest vmlinux accepted: far above any distribution kernel, a bound on a hostile file
/// that inflates without end.
pub const MAX_VMLINUX: u64 = 512 << 20;

/// Decompress a bzImage payload (`payload_offset`/`payload_length` of the setup header):
/// xz (with the x86 BCJ filter Linux uses) or gzip.
pub fn unpack(payload: &[u8]) -> Result<Vec<u8>, String> {
    if payload.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return unxz(payload);
    }
    if !payload.starts_with(&[0x1f, 0x8b]) {
        let head: Vec<String> = payload.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "payload format not unpacked here ({})",
            head.join(" ")
        ));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(payload)
        .take(MAX_VMLINUX + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("payload does not decompress: {e}"))?;
    if out.len() as u64 > MAX_VMLINUX {
        return Err(format!("payload inflates past {MAX_VMLINUX} bytes"));
    }
    Ok(out)
}

/// A gzip-compressed initramfs (one or more gzip members, then optional zero padding)
/// inflated to its cpio archive, so the guest kernel does not inflate it on the
/// interpreter; None (use the initrd as it is) for anything else: other compressors,
/// uncompressed or mixed archives (early microcode before a compressed one), disk images,
/// or a result that is not a cpio archive.
pub fn inflate_initramfs(initrd: &[u8]) -> Option<Vec<u8>> {
    if !initrd.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let mut out = Vec::with_capacity(initrd.len() * 4);
    let mut z = flate2::read::MultiGzDecoder::new(initrd).take(MAX_VMLINUX + 1);
    z.read_to_end(&mut out).ok()?;
    let is_cpio = out.starts_with(b"070701") || out.starts_with(b"070702");
    (is_cpio && out.len() as u64 <= MAX_VMLINUX).then_some(out)
}

/// One xz stream (Linux appends the uncompressed size after it, which is ignored).
fn unxz(payload: &[u8]) -> Result<Vec<u8>, String> {
    use xz2::stream::{Action, Status, Stream};
    // Linux uses a 32 MiB dictionary; a header asking for more than 128 MiB of decoder
    // memory is refused rather than allocated.
    let mut z = Stream::new_stream_decoder(128 << 20, 0).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(payload.len() * 4);
    loop {
        let at = z.total_in() as usize;
        let before = (z.total_in(), z.total_out());
        let st = z
            .process_vec(&payload[at..], &mut out, Action::Run)
            .map_err(|e| format!("payload does not decompress: {e}"))?;
        if st == Status::StreamEnd {
            return Ok(out);
        }
        if out.len() as u64 > MAX_VMLINUX {
            return Err(format!("payload inflates past {MAX_VMLINUX} bytes"));
        }
        if out.len() == out.capacity() {
            out.reserve(8 << 20);
        } else if before == (z.total_in(), z.total_out()) {
            return Err("payload does not decompress: the xz stream is truncated".into());
        }
    }
}

/// A loadable segment: `file` bytes from the image at `offset`, then zeros up to `mem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address.
    pub paddr: u64,
    /// Offset of the bytes in the ELF file.
    pub offset: u64,
    /// Bytes taken from the file.
    pub file: u64,
    /// Bytes in memory (the rest zero).
    pub mem: u64,
}

/// The parts of an x86-64 ELF executable a loader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// Entry point (physical for an x86-64 vmlinux).
    pub entry: u64,
    /// PT_LOAD segments with a non-zero memory size.
    pub segments: Vec<Segment>,
}

fn le<const N: usize>(b: &[u8], o: usize) -> Option<u64> {
    let s = b.get(o..o.checked_add(N)?)?;
    let mut a = [0u8; 8];
    a[..N].copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

impl Elf {
    /// Parse and check an ELF64 little-endian x86-64 executable: every segment's bytes
    /// inside the file, no address arithmetic that wraps, the entry inside a segment.
    pub fn parse(b: &[u8]) -> Result<Elf, String> {
        if !b.starts_with(b"\x7fELF") {
            return Err("not an ELF file".into());
        }
        let bad = |what: &str| format!("ELF header: {what}");
        if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
            return Err(bad("not 64-bit little-endian"));
        }
        if le::<2>(b, 18) != Some(62) {
            return Err(bad("not x86-64"));
        }
        let entry = le::<8>(b, 24).ok_or_else(|| bad("truncated"))?;
        let phoff = le::<8>(b, 32).ok_or_else(|| bad("truncated"))?;
        let phentsize = le::<2>(b, 54).ok_or_else(|| bad("truncated"))?;
        let phnum = le::<2>(b, 56).ok_or_else(|| bad("truncated"))?;
        if phentsize < 56 {
            return Err(bad("program header entries too small"));
        }
        let mut segments = Vec::new();
        for i in 0..phnum {
            let at = phoff
                .checked_add(i * phentsize)
                .and_then(|a| usize::try_from(a).ok())
                .ok_or_else(|| bad("program headers out of range"))?;
            let f =
                |o: usize| le::<8>(b, at + o).ok_or_else(|| bad("program headers past the end"));
            let ty = le::<4>(b, at).ok_or_else(|| bad("program headers past the end"))?;
            if ty != 1 {
                continue; // PT_LOAD only
            }
            let s = Segment {
                offset: f(8)?,
                paddr: f(24)?,
                file: f(32)?,
                mem: f(40)?,
            };
            if s.file > s.mem {
                return Err(format!("segment {i}: more file bytes than memory bytes"));
            }
            match s.offset.checked_add(s.file) {
                Some(end) if end <= b.len() as u64 => {}
                _ => return Err(format!("segment {i}: bytes past the end of the file")),
            }
            if s.paddr.checked_add(s.mem).is_none() {
                return Err(format!("segment {i}: address wraps"));
            }
            if s.mem > 0 {
                segments.push(s);
            }
        }
        if !segments
            .iter()
            .any(|s| s.paddr <= entry && entry < s.paddr + s.mem)
        {
            return Err(format!("entry {entry:#x} is in no loadable segment"));
        }
        Ok(Elf { entry, segments })
    }

    /// The lowest and the end (exclusive) of the physical range the segments occupy.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.paddr + s.mem)
            .max()
            .unwrap_or(0);
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: one PT_LOAD of `code` at `paddr` with `bss` zero bytes after it.
    pub(crate) fn tiny_elf(paddr: u64, code: &[u8], bss: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18] = 62;
        b[24..32].copy_from_slice(&paddr.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54] = 56;
        b[56] = 1;
        let ph = 64;
        b[ph] = 1;
        let off = (64 + 56) as u64;
        b[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
        b[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64 + bss).to_le_bytes());
        b.extend_from_slice(code);
        b
    }

    #[test]
    fn parses_a_loadable_segment() {
        let e = Elf::parse(&tiny_elf(0x100_0000, &[0xf4; 16], 0x1000)).unwrap();
        assert_eq!(e.entry, 0x100_0000);
        assert_eq!(
            e.segments,
            vec![Segment {
                paddr: 0x100_0000,
                offset: 120,
                file: 16,
                mem: 0x1010
            }]
        );
        assert_eq!(e.span(), (0x100_0000, 0x100_1010));
    }

    #[test]
    fn rejects_broken_headers() {
        let good = tiny_elf(0x100_0000, &[0xf4; 16], 0);
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("magic", Box::new(|b| b[0] = 0)),
            ("32-bit", Box::new(|b| b[4] = 1)),
            ("machine", Box::new(|b| b[18] = 3)),
            ("truncated", Box::new(|b| b.truncate(40))),
            (
                "phoff huge",
                Box::new(|b| b[32..40].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            ("file past end", Box::new(|b| b[64 + 32] = 200)),
            ("file > mem", Box::new(|b| b[64 + 40] = 1)),
            (
                "wrap",
                Box::new(|b| b[64 + 24..64 + 32].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            (
                "entry outside",
                Box::new(|b| b[24..32].copy_from_slice(&0x10u64.to_le_bytes())),
            ),
        ];
        for (what, f) in cases {
            let mut b = good.clone();
            f(&mut b);
            assert!(Elf::parse(&b).is_err(), "{what}");
        }
    }

    #[test]
    fn unpacks_xz_and_gzip_and_names_other_formats() {
        use std::io::Write;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut x = xz2::write::XzEncoder::new(Vec::new(), 6);
        x.write_all(&data).unwrap();
        let mut xz = x.finish().unwrap();
        // Linux appends the uncompressed size after the stream; it must not matter.
        xz.extend_from_slice(&(data.len() as u32).to_le_bytes());
        assert_eq!(unpack(&xz).unwrap(), data);
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(&data).unwrap();
        assert_eq!(unpack(&g.finish().unwrap()).unwrap(), data);
        assert!(unpack(&[0x28, 0xb5, 0x2f, 0xfd, 0])
            .unwrap_err()
            .contains("28 b5 2f fd"));
        assert!(unpack(&xz[..xz.len() / 2]).is_err(), "truncated stream");
    }

    #[test]
    fn initramfs_inflates_only_whole_gzip_cpio() {
        use std::io::Write;
        let gz = |b: &[u8]| {
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            g.write_all(b).unwrap();
            g.finish().unwrap()
        };
        let cpio = b"070701000000000000000000TRAILER!!!".to_vec();
        // Two members (as `cat a.gz b.gz`) come out as one archive stream.
        let mut two = gz(&cpio);
        two.extend(gz(&cpio));
        let mut both = cpio.clone();
        both.extend(&cpio);
        assert_eq!(inflate_initramfs(&two).unwrap(), both);
        assert!(inflate_initramfs(&cpio).is_none(), "already uncompressed");
        assert!(inflate_initramfs(&gz(b"not a cpio")).is_none());
        assert!(inflate_initramfs(&gz(&cpio)[..10]).is_none(), "truncated");
    }

    proptest::proptest! {
        #[test]
        fn random_elf_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = Elf::parse(&b);
        }

        #[test]
        fn mutated_elf_never_panics(i in 0usize..136, v in proptest::prelude::any::<u8>()) {
            let mut b = tiny_elf(0x100_0000, &[0xf4; 16], 0);
            b[i] = v;
            if let Ok(e) = Elf::parse(&b) {
                for s in e.segments {
                    proptest::prop_assert!(s.offset + s.file <= b.len() as u64);
                }
            }
        }
    }
}
