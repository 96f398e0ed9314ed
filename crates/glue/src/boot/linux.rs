//! Direct kernel boot: the x86-64 Linux boot protocol's 64-bit entry (as Firecracker and
//! Cloud Hypervisor do). The VMM loads the protected-mode kernel and initrd, fills the zero
//! page (`struct boot_params`), builds identity page tables and a GDT, and starts the BSP in
//! long mode at `startup_64` with RSI pointing at the zero page.
//!
//! Reference: Documentation/arch/x86/boot.rst (THE LINUX/x86 BOOT PROTOCOL).

use super::e820::E820Entry;
use pgm::GuestMemory;
use sup::state::{cr0, efer, reg};
use sup::{DescTable, Segment, VcpuState};

/// Where the zero page goes.
pub const BOOT_PARAMS: u64 = 0x7000;
/// Where the command line goes.
pub const CMDLINE: u64 = 0x2_0000;
/// The boot GDT.
const GDT: u64 = 0x500;
/// PML4, PDPT and four page directories (identity map of the first 4 GiB with 2 MiB pages).
const PML4: u64 = 0x9000;
const PDPT: u64 = 0xa000;
const PD: u64 = 0xb000;

/// Errors of the kernel loader.
#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    /// The file is not a bzImage.
    #[error("not a Linux bzImage ({0})")]
    NotBzImage(&'static str),
    /// The kernel is too old for the 64-bit entry.
    #[error("kernel boot protocol {0:#x} is too old (need 2.12+ with a 64-bit entry point)")]
    TooOld(u16),
    /// The kernel does not fit.
    #[error("{what} ({size} bytes) does not fit in guest RAM below {limit:#x}")]
    NoRoom {
        /// What.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The command line is too long.
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The file is shorter than its setup header says (an interrupted copy or download).
    #[error("the kernel is truncated: its header says {expected} bytes, the file has {actual}")]
    Truncated {
        /// Size the header implies.
        expected: u64,
        /// Size of the file.
        actual: u64,
    },
    /// The initrd is in no format Linux can unpack or mount.
    #[error("initrd is not a cpio archive, a compressed archive or a file-system image Linux can use ({0})")]
    BadInitrd(String),
    /// Guest memory refused a write.
    #[error(transparent)]
    Memory(#[from] pgm::PgmError),
}

/// What to boot.
pub struct LinuxImage<'a> {
    /// The bzImage file contents.
    pub kernel: &'a [u8],
    /// The initrd contents.
    pub initrd: Option<&'a [u8]>,
    /// The command line.
    pub cmdline: &'a str,
    /// The memory map.
    pub e820: &'a [E820Entry],
    /// Where the ACPI RSDP is (boot_params.acpi_rsdp_addr).
    pub rsdp: Option<u64>,
    /// Unpack the kernel on the host and enter vmlinux directly, and inflate a gzip
    /// initramfs (see [`super::vmlinux`]); false, or input that cannot be unpacked here,
    /// leaves both to the guest.
    pub unpack_on_host: bool,
    /// Where kernels unpacked on the host are kept between boots (None: unpack every time).
    pub unpack_cache: Option<&'a super::unpack_cache::UnpackCache>,
}

/// The parts of the setup header the loader needs.
#[derive(Debug, Clone, Copy)]
pub struct SetupHeader {
    /// Boot protocol version.
    pub version: u16,
    /// Number of 512-byte setup sectors.
    pub setup_sects: u8,
    /// Bit 0 of xloadflags: 64-bit entry at +0x200.
    pub xloadflags: u16,
    /// Highest address the initrd may end at.
    pub initrd_addr_max: u32,
    /// Physical alignment of a relocatable kernel.
    pub kernel_alignment: u32,
    /// Relocatable.
    pub relocatable: bool,
    /// Longest command line.
    pub cmdline_size: u32,
    /// Preferred load address.
    pub pref_address: u64,
    /// Memory the kernel needs from its load address while decompressing.
    pub init_size: u32,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl SetupHeader {
    /// Parse and check the header of a bzImage.
    pub fn parse(k: &[u8]) -> Result<Self, LinuxBootError> {
        if k.len() < 0x1000 {
            return Err(LinuxBootError::NotBzImage("file too short"));
        }
        if le16(k, 0x1fe) != 0xaa55 {
            return Err(LinuxBootError::NotBzImage("no boot sector signature"));
        }
        if le32(k, 0x202) != 0x5372_6448 {
            return Err(LinuxBootError::NotBzImage("no HdrS setup header"));
        }
        let version = le16(k, 0x206);
        if version < 0x020c {
            return Err(LinuxBootError::TooOld(version));
        }
        let h = SetupHeader {
            version,
            setup_sects: k[0x1f1],
            xloadflags: le16(k, 0x236),
            initrd_addr_max: le32(k, 0x22c),
            kernel_alignment: le32(k, 0x230),
            relocatable: k[0x234] != 0,
            cmdline_size: le32(k, 0x238),
            pref_address: u64::from(le32(k, 0x258)) | (u64::from(le32(k, 0x25c)) << 32),
            init_size: le32(k, 0x260),
        };
        if h.xloadflags & 1 == 0 {
            return Err(LinuxBootError::NotBzImage(
                "kernel has no 64-bit entry point",
            ));
        }
        Ok(h)
    }

    /// Offset of the protected-mode kernel in the file.
    pub fn kernel_offset(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        (usize::from(sects) + 1) * 512
    }
}

/// Check that `initrd` starts like something Linux can use: an initramfs (cpio archive,
/// plain or compressed with a decompressor Linux has, after optional zero padding) or an
/// old-style initial RAM disk (ext2, minix, romfs, cramfs, squashfs). Random bytes would
/// only make the guest kernel panic after booting.
pub fn check_initrd(initrd: &[u8]) -> Result<(), LinuxBootError> {
    // Linux's initramfs unpacker skips zero bytes between (and before) archives.
    let start = initrd.iter().position(|&b| b != 0).unwrap_or(initrd.len());
    let body = &initrd[start..];
    const MAGICS: [&[u8]; 12] = [
        b"070701",                             // cpio newc
        b"070702",                             // cpio newc with CRC
        &[0x1f, 0x8b],                         // gzip
        &[0x1f, 0x9e],                         // old gzip
        b"BZh",                                // bzip2
        &[0x5d, 0x00, 0x00],                   // lzma
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x89, b'L', b'Z', b'O'],             // lzo
        &[0x02, 0x21, 0x4c, 0x18],             // lz4 (legacy frame)
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd
        b"-rom1fs-",                           // romfs
        b"hsqs",                               // squashfs
    ];
    if MAGICS.iter().any(|m| body.starts_with(m)) {
        return Ok(());
    }
    let at16 = |o: usize| {
        initrd
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let at32 = |o: usize| {
        initrd
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let ext2 = at16(1024 + 56) == Some(0xef53);
    let minix = matches!(at16(1024 + 16), Some(0x137f | 0x138f | 0x2468 | 0x2478));
    let cramfs = at32(0) == Some(0x28cd_3d45) || at32(512) == Some(0x28cd_3d45);
    if ext2 || minix || cramfs {
        return Ok(());
    }
    let head: Vec<String> = body.iter().take(4).map(|b| format!("{b:02x}")).collect();
    Err(LinuxBootError::BadInitrd(if body.is_empty() {
        "only zero bytes".into()
    } else {
        format!("it starts with {}", head.join(" "))
    }))
}

/// Load the kernel and return the BSP's initial state.
pub fn load(mem: &GuestMemory, img: &LinuxImage<'_>) -> Result<VcpuState, LinuxBootError> {
    let k = img.kernel;
    let h = SetupHeader::parse(k)?;
    let koff = h.kernel_offset();
    if koff >= k.len() {
        return Err(LinuxBootError::NotBzImage(
            "setup sectors run past the end of the file",
        ));
    }
    let payload = &k[koff..];
    // syssize (32 bits since protocol 2.04, in 16-byte units) is the size of the
    // protected-mode code. A shorter file would crash the guest's decompressor instead of
    // giving a clear error. (Signed kernels carry more bytes after it; that is fine.)
    let syssize = u64::from(le32(k, 0x1f4)) * 16;
    if (payload.len() as u64) < syssize {
        return Err(LinuxBootError::Truncated {
            expected: koff as u64 + syssize,
            actual: k.len() as u64,
        });
    }
    let ram_top = mem.layout().ram_below_4g();
    let unpacked = if img.unpack_on_host {
        load_vmlinux(mem, k, koff, ram_top, img.unpack_cache)
    } else {
        None
    };
    let (entry, kernel_end) = match unpacked {
        Some(r) => r,
        None => {
            let need = u64::from(h.init_size).max(payload.len() as u64);
            let align = u64::from(h.kernel_alignment.max(0x20_0000));
            let load_addr = if !h.relocatable || h.pref_address + need <= ram_top {
                h.pref_address.max(0x10_0000)
            } else {
                0x10_0000u64.next_multiple_of(align)
            };
            if load_addr + need > ram_top {
                return Err(LinuxBootError::NoRoom {
                    what: "kernel",
                    size: need,
                    limit: ram_top,
                });
            }
            mem.write(load_addr, payload)?;
            // The bzImage's 64-bit entry: its decompressor, then vmlinux.
            (load_addr + 0x200, load_addr + need)
        }
    };

    // Zero page: copy the setup header as the protocol asks, then fill loader fields.
    let mut bp = vec![0u8; 4096];
    let hdr_end = (0x202 + usize::from(k[0x201])).min(0x280).min(k.len());
    bp[0x1f1..hdr_end].copy_from_slice(&k[0x1f1..hdr_end]);
    bp[0x210] = 0xff; // type_of_loader: undefined loader
    bp[0x211] |= 0x80 | 0x01; // CAN_USE_HEAP, LOADED_HIGH
    bp[0x224..0x226].copy_from_slice(&(0xe000u16 - 0x200).to_le_bytes());

    let cmd = img.cmdline.as_bytes();
    let max_cmd = if h.cmdline_size == 0 {
        255
    } else {
        h.cmdline_size as usize
    };
    if cmd.len() > max_cmd {
        return Err(LinuxBootError::CmdlineTooLong {
            len: cmd.len(),
            max: max_cmd,
        });
    }
    let mut c = cmd.to_vec();
    c.push(0);
    mem.write(CMDLINE, &c)?;
    bp[0x228..0x22c].copy_from_slice(&(CMDLINE as u32).to_le_bytes());

    if let Some(initrd) = img.initrd {
        check_initrd(initrd)?;
        let inflated = if img.unpack_on_host {
            super::vmlinux::inflate_initramfs(initrd)
        } else {
            None
        };
        let initrd = inflated.as_deref().unwrap_or(initrd);
        let limit = ram_top.min(u64::from(h.initrd_addr_max) + 1);
        // Only usable RAM may hold the initrd: the top of RAM can carry the ACPI tables
        // (reserved in the E820 map), which the initrd would otherwise overwrite.
        let (lo, limit) = img
            .e820
            .iter()
            .filter(|e| e.kind == super::e820::E820_RAM)
            .map(|e| (e.addr, e.addr.saturating_add(e.size).min(limit)))
            .filter(|&(a, end)| end > a)
            .max_by_key(|&(_, end)| end)
            .unwrap_or((0, limit));
        let size = initrd.len() as u64;
        let addr = limit
            .checked_sub(size)
            .map(|a| a & !0xfff)
            .filter(|&a| a >= kernel_end && a >= lo)
            .ok_or(LinuxBootError::NoRoom {
                what: "initrd",
                size,
                limit,
            })?;
        mem.write(addr, initrd)?;
        bp[0x218..0x21c].copy_from_slice(&(addr as u32).to_le_bytes());
        bp[0x21c..0x220].copy_from_slice(&(size as u32).to_le_bytes());
    }
    if let Some(rsdp) = img.rsdp {
        bp[0x70..0x78].copy_from_slice(&rsdp.to_le_bytes());
    }
    let n = img.e820.len().min(128);
    bp[0x1e8] = n as u8;
    for (i, e) in img.e820.iter().take(n).enumerate() {
        let o = 0x2d0 + i * 20;
        bp[o..o + 20].copy_from_slice(&e.to_bytes());
    }
    mem.write(BOOT_PARAMS, &bp)?;

    // GDT: null, null, 64-bit code (0x10), data (0x18).
    let gdt: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_le::<8>(GDT + i as u64 * 8, *d)?;
    }
    // Identity map 4 GiB with 2 MiB pages.
    mem.write_le::<8>(PML4, PDPT | 3)?;
    for i in 0..4u64 {
        mem.write_le::<8>(PDPT + i * 8, (PD + i * 0x1000) | 3)?;
    }
    for i in 0..2048u64 {
        mem.write_le::<8>(PD + i * 8, (i << 21) | 0x83)?;
    }

    let mut s = VcpuState::reset();
    let code = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xffff_ffff,
        attr: Segment::attr_from_descriptor((gdt[2] >> 32) as u32),
    };
    let data = Segment {
        selector: 0x18,
        base: 0,
        limit: 0xffff_ffff,
        attr: Segment::attr_from_descriptor((gdt[3] >> 32) as u32),
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.fs = data;
    s.gs = data;
    s.gdtr = DescTable {
        base: GDT,
        limit: (gdt.len() * 8 - 1) as u16,
    };
    s.idtr = DescTable { base: 0, limit: 0 };
    s.cr0 = cr0::PE | cr0::PG | cr0::ET | cr0::NE;
    s.cr3 = PML4;
    s.cr4 = 1 << 5; // PAE
    s.efer = efer::LME | efer::LMA;
    s.rip = entry;
    s.gpr[reg::RSI] = BOOT_PARAMS;
    s.rflags = 2;
    Ok(s)
}

/// Unpack the payload of the bzImage `k` (protected-mode kernel at `koff`) and load its
/// vmlinux segments: the entry and the end of the kernel, or None (with the reason logged)
/// when the guest's decompressor has to do it.
fn load_vmlinux(
    mem: &GuestMemory,
    k: &[u8],
    koff: usize,
    ram_top: u64,
    cache: Option<&super::unpack_cache::UnpackCache>,
) -> Option<(u64, u64)> {
    use super::vmlinux::{unpack, Elf};
    let off = koff.checked_add(le32(k, 0x248) as usize)?;
    let len = le32(k, 0x24c) as usize;
    let payload = k.get(off..off.checked_add(len)?)?;
    let elf = match cache {
        Some(c) => c.get_or_unpack(payload, unpack),
        None => unpack(payload),
    };
    let r = elf.and_then(|elf| {
        let e = Elf::parse(&elf)?;
        let (lo, hi) = e.span();
        // Below 1 MiB lie the zero page, command line and page tables this loader builds.
        if lo < 0x10_0000 || hi > ram_top {
            return Err(format!(
                "vmlinux needs {lo:#x}..{hi:#x}, RAM below 4 GiB ends at {ram_top:#x}"
            ));
        }
        for s in &e.segments {
            let start = s.offset as usize;
            let bytes = &elf[start..start + s.file as usize];
            mem.write(s.paddr, bytes).map_err(|e| e.to_string())?;
            let zeros = vec![0u8; (s.mem - s.file) as usize];
            mem.write(s.paddr + s.file, &zeros)
                .map_err(|e| e.to_string())?;
        }
        Ok((e.entry, hi, elf.len()))
    });
    match r {
        Ok((entry, end, size)) => {
            tracing::info!(
                "kernel unpacked on the host: vmlinux of {size} bytes, entry {entry:#x}"
            );
            Some((entry, end))
        }
        Err(why) => {
            tracing::info!("kernel left to its own decompressor: {why}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgm::MemoryLayout;

    fn fake_bzimage() -> Vec<u8> {
        let mut k = vec![0u8; 0x4000];
        k[0x1f1] = 3;
        k[0x1fe] = 0x55;
        k[0x1ff] = 0xaa;
        k[0x201] = 0x6a; // jump offset: header ends at 0x26c
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        k[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        k[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        k[0x234] = 1;
        k[0x236..0x238].copy_from_slice(&3u16.to_le_bytes());
        k[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes());
        k[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        k[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes());
        k[0x800] = 0xf4; // first byte of the protected-mode kernel
        k
    }

    #[test]
    fn loads_kernel_initrd_and_zero_page() {
        let mem = GuestMemory::new(MemoryLayout::pc(64 << 20).unwrap()).unwrap();
        let k = fake_bzimage();
        let mut initrd = vec![0x5a; 10_000];
        initrd[..2].copy_from_slice(&[0x1f, 0x8b]); // gzip magic
        let e820 = [
            E820Entry {
                addr: 0,
                size: 0x9fc00,
                kind: 1,
            },
            E820Entry {
                addr: 0x10_0000,
                size: (60 << 20) - 0x10_0000,
                kind: 1,
            },
            // The top 4 MiB reserved (where the ACPI tables go): no initrd there.
            E820Entry {
                addr: 60 << 20,
                size: 4 << 20,
                kind: 2,
            },
        ];
        let s = load(
            &mem,
            &LinuxImage {
                kernel: &k,
                initrd: Some(&initrd),
                cmdline: "console=ttyS0",
                e820: &e820,
                rsdp: Some(0xe0000),
                unpack_on_host: true,
                unpack_cache: None,
            },
        )
        .unwrap();
        assert_eq!(s.rip, 0x100_0000 + 0x200);
        assert_eq!(mem.read_le::<1>(0x100_0000).unwrap(), 0xf4);
        assert_eq!(s.gpr[reg::RSI], BOOT_PARAMS);
        assert!(s.long_mode() && s.cs.attr & Segment::L != 0);
        let rd = mem.read_le::<4>(BOOT_PARAMS + 0x218).unwrap();
        assert_eq!(rd % 4096, 0);
        assert!(rd + 10_000 <= 60 << 20, "initrd in usable RAM (at {rd:#x})");
        assert!(rd >= 0x100_0000 + 0x10_0000, "initrd above the kernel");
        assert_eq!(mem.read_le::<1>(rd + 2).unwrap(), 0x5a);
        assert_eq!(mem.read_le::<4>(BOOT_PARAMS + 0x21c).unwrap(), 10_000);
        assert_eq!(mem.read_le::<1>(BOOT_PARAMS + 0x1e8).unwrap(), 3);
        assert_eq!(mem.read_le::<8>(BOOT_PARAMS + 0x70).unwrap(), 0xe0000);
        let mut c = [0u8; 14];
        mem.read(CMDLINE, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
        // Page tables map 3 GiB + 2 MiB to itself.
        assert_eq!(
            mem.read_le::<8>(PD + 3 * 0x1000 + 8).unwrap(),
            (3 << 30) | (2 << 20) | 0x83
        );
    }

    #[test]
    fn rejects_garbage_and_small_memory() {
        let mem = GuestMemory::new(MemoryLayout::pc(2 << 20).unwrap()).unwrap();
        let e = |k: &[u8]| {
            load(
                &mem,
                &LinuxImage {
                    kernel: k,
                    initrd: None,
                    cmdline: "",
                    e820: &[],
                    rsdp: None,
                    unpack_on_host: true,
                    unpack_cache: None,
                },
            )
            .unwrap_err()
            .to_string()
        };
        assert!(e(&[]).contains("too short"));
        assert!(e(&[0u8; 8192]).contains("signature"));
        assert!(e(&fake_bzimage()).contains("does not fit"));
        let mut old = fake_bzimage();
        old[0x206] = 0x04;
        assert!(e(&old).contains("too old"));
        // syssize says 0x4000 bytes of protected-mode code; the file has 0x3800.
        let mut cut = fake_bzimage();
        cut[0x1f4..0x1f8].copy_from_slice(&0x400u32.to_le_bytes());
        assert!(e(&cut).contains("truncated: its header says 18432 bytes, the file has 16384"));
    }

    #[test]
    fn initrd_formats() {
        let ok = |d: &[u8]| check_initrd(d).is_ok();
        assert!(ok(b"070701000000"));
        assert!(ok(&[0, 0, 0, 0, 0x1f, 0x8b, 8, 0]));
        assert!(ok(&[0x28, 0xb5, 0x2f, 0xfd, 1]));
        assert!(ok(b"\xfd7zXZ\0rest"));
        let mut ext2 = vec![0u8; 2048];
        ext2[1024 + 56..1024 + 58].copy_from_slice(&0xef53u16.to_le_bytes());
        assert!(ok(&ext2));
        let err = check_initrd(&[0x12, 0x34, 0x56, 0x78, 0x9a]).unwrap_err();
        assert!(
            err.to_string().contains("it starts with 12 34 56 78"),
            "{err}"
        );
        assert!(check_initrd(&[0; 64])
            .unwrap_err()
            .to_string()
            .contains("only zero bytes"));
        assert!(!ok(b""));
        assert!(!ok(b"0707"), "a cut-off cpio magic");
    }
}
