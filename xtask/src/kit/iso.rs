//! The kit's bootable CD image (`kit.iso`): an ISO 9660 filesystem with an El Torito
//! no-emulation boot entry for ISOLINUX, holding the kit kernel and initramfs, so a
//! machine can boot "from its DVD drive" as a VirtualBox user installs an OS.
//!
//! The image is written here rather than by genisoimage/xorriso so the kit needs no
//! further host tool: one root directory (ISOLINUX searches its config there), level-1
//! file names, both path tables, the El Torito boot record and catalog, and the boot
//! information table ISOLINUX reads to find itself (what `mkisofs -boot-info-table`
//! patches in). Dates are fixed so the same inputs give the same image.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Packages the ISO step needs (isolinux.bin; ldlinux.c32 comes from syslinux-common).
pub const PACKAGES: &[&str] = &["isolinux"];
/// Kernel command line of the CD's boot entry.
pub const APPEND: &str = "console=ttyS0,115200 panic=-1 novabox.boot=dvd";
/// The volume label (what `blkid` shows in the guest).
pub const VOLUME_ID: &str = "NOVABOX_KIT";

const SECTOR: usize = 2048;
/// Sector of the primary volume descriptor (after the 32 KiB system area).
const PVD_LBA: u32 = 16;
const BOOT_RECORD_LBA: u32 = 17;
const TERMINATOR_LBA: u32 = 18;
const PATH_L_LBA: u32 = 19;
const PATH_M_LBA: u32 = 20;
const ROOT_LBA: u32 = 21;
const CATALOG_LBA: u32 = 22;
const FIRST_FILE_LBA: u32 = 23;
/// 2024-01-01 00:00:00 UTC, for every date field.
const DATE7: [u8; 7] = [124, 1, 1, 0, 0, 0, 0];
const DATE17: &[u8; 17] = b"2024010100000000\0";

/// ISOLINUX configuration: boot the kit kernel at once, console on COM1.
pub fn isolinux_cfg() -> String {
    format!(
        "SERIAL 0 115200\nSAY novabox kit DVD: booting the kit kernel\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND {APPEND}\n"
    )
}

/// One file of the root directory.
struct File {
    /// ISO 9660 level-1 name without the `;1` version (upper case, 8.3).
    name: String,
    data: Vec<u8>,
    lba: u32,
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

fn sectors(len: usize) -> u32 {
    len.div_ceil(SECTOR).max(1) as u32
}

/// A directory record; `name` is the raw identifier (0x00 = ".", 0x01 = "..").
fn dir_record(name: &[u8], lba: u32, len: u32, dir: bool) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(lba));
    r[10..18].copy_from_slice(&both32(len));
    r[18..25].copy_from_slice(&DATE7);
    r[25] = if dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = name.len() as u8;
    r.extend_from_slice(name);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

/// A fixed-width text field padded with spaces.
fn text(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    dst[..s.len()].copy_from_slice(s.as_bytes());
}

/// The boot information table ISOLINUX expects at offset 8 of its image.
fn patch_boot_info(image: &mut [u8], lba: u32) -> Result<()> {
    if image.len() < 64 {
        bail!("isolinux.bin is only {} bytes", image.len());
    }
    let sum = image[64..]
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .fold(0u32, u32::wrapping_add);
    image[8..12].copy_from_slice(&PVD_LBA.to_le_bytes());
    image[12..16].copy_from_slice(&lba.to_le_bytes());
    let len = image.len() as u32;
    image[16..20].copy_from_slice(&len.to_le_bytes());
    image[20..24].copy_from_slice(&sum.to_le_bytes());
    image[24..64].fill(0);
    Ok(())
}

/// Build the image from ISOLINUX's files and the kit's kernel and initramfs.
pub fn image(
    isolinux_bin: &[u8],
    ldlinux_c32: &[u8],
    vmlinuz: &[u8],
    initrd: &[u8],
) -> Result<Vec<u8>> {
    let mut files = vec![
        File {
            name: "BOOT.CAT".into(),
            data: Vec::new(),
            lba: CATALOG_LBA,
        },
        File {
            name: "INITRD.GZ".into(),
            data: initrd.to_vec(),
            lba: 0,
        },
        File {
            name: "ISOLINUX.BIN".into(),
            data: isolinux_bin.to_vec(),
            lba: 0,
        },
        File {
            name: "ISOLINUX.CFG".into(),
            data: isolinux_cfg().into_bytes(),
            lba: 0,
        },
        File {
            name: "LDLINUX.C32".into(),
            data: ldlinux_c32.to_vec(),
            lba: 0,
        },
        File {
            name: "VMLINUZ.".into(),
            data: vmlinuz.to_vec(),
            lba: 0,
        },
    ];
    // Records are sorted by identifier, as ISO 9660 requires.
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut next = FIRST_FILE_LBA;
    for f in files.iter_mut().filter(|f| f.name != "BOOT.CAT") {
        f.lba = next;
        next = next
            .checked_add(sectors(f.data.len()))
            .context("image too large")?;
    }
    let total = next;
    let boot = files
        .iter_mut()
        .find(|f| f.name == "ISOLINUX.BIN")
        .expect("listed above");
    // The catalog's sector count is in 512-byte units; 4 is what every ISOLINUX CD uses.
    boot.data.resize(boot.data.len().next_multiple_of(4), 0);
    let boot_lba = boot.lba;
    patch_boot_info(&mut boot.data, boot_lba)?;

    let mut img = vec![0u8; total as usize * SECTOR];
    let at = |lba: u32| lba as usize * SECTOR;

    // Root directory: ".", "..", then the files.
    let mut root = dir_record(&[0], ROOT_LBA, SECTOR as u32, true);
    root.extend(dir_record(&[1], ROOT_LBA, SECTOR as u32, true));
    for f in &files {
        let len = if f.name == "BOOT.CAT" {
            SECTOR as u32
        } else {
            f.data.len() as u32
        };
        root.extend(dir_record(
            format!("{};1", f.name).as_bytes(),
            f.lba,
            len,
            false,
        ));
    }
    if root.len() > SECTOR {
        bail!("root directory does not fit one sector");
    }
    img[at(ROOT_LBA)..at(ROOT_LBA) + root.len()].copy_from_slice(&root);

    // Path tables: the root only (directory number 1, its own parent).
    let mut path_l = vec![1u8, 0];
    path_l.extend(ROOT_LBA.to_le_bytes());
    path_l.extend(1u16.to_le_bytes());
    path_l.extend([0, 0]);
    let mut path_m = vec![1u8, 0];
    path_m.extend(ROOT_LBA.to_be_bytes());
    path_m.extend(1u16.to_be_bytes());
    path_m.extend([0, 0]);
    img[at(PATH_L_LBA)..at(PATH_L_LBA) + 10].copy_from_slice(&path_l);
    img[at(PATH_M_LBA)..at(PATH_M_LBA) + 10].copy_from_slice(&path_m);

    // Primary volume descriptor.
    let p = &mut img[at(PVD_LBA)..at(PVD_LBA + 1)];
    p[0] = 1;
    p[1..6].copy_from_slice(b"CD001");
    p[6] = 1;
    text(&mut p[8..40], "LINUX");
    text(&mut p[40..72], VOLUME_ID);
    p[80..88].copy_from_slice(&both32(total));
    p[120..124].copy_from_slice(&both16(1));
    p[124..128].copy_from_slice(&both16(1));
    p[128..132].copy_from_slice(&both16(SECTOR as u16));
    p[132..140].copy_from_slice(&both32(10));
    p[140..144].copy_from_slice(&PATH_L_LBA.to_le_bytes());
    p[148..152].copy_from_slice(&PATH_M_LBA.to_be_bytes());
    p[156..190].copy_from_slice(&dir_record(&[0], ROOT_LBA, SECTOR as u32, true));
    text(&mut p[190..318], "");
    text(&mut p[318..446], "NOVABOX");
    text(&mut p[446..574], "");
    text(&mut p[574..702], "NOVABOX XTASK KIT");
    text(&mut p[702..813], "");
    for off in [813, 830, 864] {
        p[off..off + 17].copy_from_slice(DATE17);
    }
    p[847..863].fill(b'0');
    p[881] = 1;

    // El Torito boot record.
    let b = &mut img[at(BOOT_RECORD_LBA)..at(BOOT_RECORD_LBA + 1)];
    b[1..6].copy_from_slice(b"CD001");
    b[6] = 1;
    b[7..7 + 23].copy_from_slice(b"EL TORITO SPECIFICATION");
    b[0x47..0x4b].copy_from_slice(&CATALOG_LBA.to_le_bytes());

    // Terminator.
    let t = &mut img[at(TERMINATOR_LBA)..at(TERMINATOR_LBA + 1)];
    t[0] = 255;
    t[1..6].copy_from_slice(b"CD001");
    t[6] = 1;

    // Boot catalog: validation entry (x86, checksummed, 55 AA) and the default entry.
    let c = &mut img[at(CATALOG_LBA)..at(CATALOG_LBA) + 64];
    c[0] = 1;
    c[30] = 0x55;
    c[31] = 0xaa;
    let sum = c[..32]
        .chunks(2)
        .map(|w| u16::from_le_bytes([w[0], w[1]]))
        .fold(0u16, u16::wrapping_add);
    c[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    c[32] = 0x88; // bootable, no emulation
    c[38..40].copy_from_slice(&4u16.to_le_bytes());
    c[40..44].copy_from_slice(&boot_lba.to_le_bytes());

    for f in files.iter().filter(|f| f.name != "BOOT.CAT") {
        img[at(f.lba)..at(f.lba) + f.data.len()].copy_from_slice(&f.data);
    }
    Ok(img)
}

/// Build `kit.iso` from the extracted packages in `trees`.
pub fn build(
    trees: &std::collections::BTreeMap<String, std::path::PathBuf>,
    vmlinuz: &Path,
    initramfs: &Path,
) -> Result<Vec<u8>> {
    let tree = |p: &str| {
        trees
            .get(p)
            .with_context(|| format!("package {p} was not extracted"))
    };
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    image(
        &read(&tree("isolinux")?.join("usr/lib/ISOLINUX/isolinux.bin"))?,
        &read(&tree("syslinux-common")?.join("usr/lib/syslinux/modules/bios/ldlinux.c32"))?,
        &read(vmlinuz)?,
        &read(initramfs)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let boot: Vec<u8> = (0..3001u32).map(|i| i as u8).collect();
        image(&boot, b"ldlinux", &[7u8; 5000], b"initrd").unwrap()
    }

    #[test]
    fn descriptors_and_catalog() {
        let img = sample();
        assert_eq!(img.len() % SECTOR, 0);
        let pvd = &img[16 * SECTOR..17 * SECTOR];
        assert_eq!(&pvd[..6], b"\x01CD001");
        let total = u32::from_le_bytes(pvd[80..84].try_into().unwrap());
        assert_eq!(total as usize * SECTOR, img.len());
        assert_eq!(
            &img[17 * SECTOR + 7..17 * SECTOR + 30],
            b"EL TORITO SPECIFICATION"
        );
        assert_eq!(img[18 * SECTOR], 255);
        let cat = &img[22 * SECTOR..22 * SECTOR + 64];
        let sum = cat[..32]
            .chunks(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .fold(0u16, u16::wrapping_add);
        assert_eq!(sum, 0, "validation entry checksum");
        assert_eq!(cat[32], 0x88);
        // The boot image's info table points at the PVD and at itself.
        let lba = u32::from_le_bytes(cat[40..44].try_into().unwrap()) as usize;
        let bi = &img[lba * SECTOR..];
        assert_eq!(u32::from_le_bytes(bi[8..12].try_into().unwrap()), 16);
        assert_eq!(
            u32::from_le_bytes(bi[12..16].try_into().unwrap()) as usize,
            lba
        );
        assert_eq!(u32::from_le_bytes(bi[16..20].try_into().unwrap()), 3004);
    }

    /// The image reads back with an independent ISO 9660 reader (libarchive's bsdtar,
    /// installed by scripts/setup-host.sh).
    #[test]
    fn readable_by_bsdtar() {
        if std::process::Command::new("bsdtar")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED (no bsdtar; run scripts/setup-host.sh): readable_by_bsdtar");
            return;
        }
        let t = std::env::temp_dir().join(format!("novabox-iso-{}.iso", std::process::id()));
        std::fs::write(&t, sample()).unwrap();
        let list = std::process::Command::new("bsdtar")
            .arg("-tf")
            .arg(&t)
            .output()
            .unwrap();
        let x = std::process::Command::new("bsdtar")
            .arg("-xOf")
            .arg(&t)
            .arg("VMLINUZ")
            .output()
            .unwrap();
        if std::env::var_os("KEEP_ISO").is_none() {
            let _ = std::fs::remove_file(&t);
        }
        let listing = String::from_utf8_lossy(&list.stdout).to_lowercase();
        for f in [
            "isolinux.cfg",
            "isolinux.bin",
            "ldlinux.c32",
            "initrd.gz",
            "boot.cat",
        ] {
            assert!(listing.contains(f), "{f} missing from:\n{listing}");
        }
        assert!(
            x.stdout == vec![7u8; 5000],
            "VMLINUZ. read back {} bytes: {}\nlisting:\n{listing}",
            x.stdout.len(),
            String::from_utf8_lossy(&x.stderr)
        );
    }
}
