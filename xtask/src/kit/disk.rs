//! The kit's bootable disk: an MBR disk image with one active FAT16 partition holding
//! SYSLINUX, the kit kernel and initramfs, made without root or loop devices:
//!
//! - MBR boot code: syslinux-common's `mbr.bin` (440 bytes) + one partition entry
//!   (type 0x06 FAT16, active, LBA 2048 to the end) + 0x55AA;
//! - the filesystem: mtools' `mformat` on the image at the partition's byte offset;
//! - the boot loader: `syslinux --install --offset` (the mtools-based installer, which
//!   writes the FAT boot sector and `ldlinux.sys`/`ldlinux.c32`);
//! - `syslinux.cfg`, `vmlinuz`, `initrd.gz` copied in with `mcopy`.
//!
//! Every tool runs from the packages extracted in the cache (`dpkg-deb -x`), nothing is
//! installed on the host. The raw image is then converted to a dynamic VDI with the media
//! crate (`boot-disk.vdi`), the format a VirtualBox machine uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Packages the disk step needs.
pub const PACKAGES: &[&str] = &["syslinux", "syslinux-common", "mtools"];
/// Disk size.
pub const DISK_BYTES: u64 = 64 << 20;
/// First sector of the partition.
pub const PART_LBA: u64 = 2048;
/// Kernel command line of the disk's boot entry (serial console, like direct boots).
pub const APPEND: &str = "console=ttyS0,115200 panic=-1 novabox.boot=disk";
/// Kernel command line of the demo disk: a shell on the console, the Guest Additions
/// drivers loaded and the demo machine's shared folder mounted at /mnt/shared.
pub const APPEND_DEMO: &str = "console=ttyS0,115200 quiet panic=-1 novabox.boot=disk novabox.shell=1 novabox.modules=vboxguest,vboxsf novabox.sf_mount=shared";

/// The partition table entry and boot signature for a disk of `total` sectors.
pub fn mbr(boot_code: &[u8], total_sectors: u64) -> Result<Vec<u8>> {
    if boot_code.len() < 440 {
        bail!(
            "mbr.bin is {} bytes, expected at least 440",
            boot_code.len()
        );
    }
    let size = total_sectors
        .checked_sub(PART_LBA)
        .filter(|s| *s > 0 && *s <= u64::from(u32::MAX))
        .context("disk too small or too large for an MBR partition")?;
    let mut m = vec![0u8; 512];
    m[..440].copy_from_slice(&boot_code[..440]);
    let e = &mut m[446..462];
    e[0] = 0x80; // active
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: use LBA
    e[4] = 0x06; // FAT16
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&(PART_LBA as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(size as u32).to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    Ok(m)
}

/// SYSLINUX configuration: boot the kit kernel at once with `append`, console on COM1.
pub fn syslinux_cfg(append: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND {append}\n"
    )
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Build `raw` (the MBR disk) from the extracted packages in `trees` (package name →
/// directory), then `vdi`. Returns the VDI's UUID.
pub fn build(
    trees: &std::collections::BTreeMap<String, PathBuf>,
    vmlinuz: &Path,
    initramfs: &Path,
    raw: &Path,
    vdi: &Path,
    append: &str,
) -> Result<media::Uuid> {
    let tree = |p: &str| {
        trees
            .get(p)
            .with_context(|| format!("package {p} was not extracted"))
    };
    let mtools_bin = tree("mtools")?.join("usr/bin");
    let syslinux = tree("syslinux")?.join("usr/bin/syslinux");
    let mbr_bin = tree("syslinux-common")?.join("usr/lib/syslinux/mbr/mbr.bin");
    let path = format!(
        "{}:{}",
        mtools_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tool = |name: &str| {
        let mut c = Command::new(mtools_bin.join(name));
        c.env("PATH", &path).env("MTOOLS_SKIP_CHECK", "1");
        c
    };

    let _ = std::fs::remove_file(raw);
    let boot = std::fs::read(&mbr_bin).with_context(|| format!("reading {}", mbr_bin.display()))?;
    let mut image = mbr(&boot, DISK_BYTES / 512)?;
    image.resize(DISK_BYTES as usize, 0);
    std::fs::write(raw, &image).with_context(|| format!("writing {}", raw.display()))?;
    let offset = PART_LBA * 512;
    let fs = format!("{}@@{offset}", raw.display());
    let sectors = DISK_BYTES / 512 - PART_LBA;
    run(tool("mformat").args([
        "-i",
        &fs,
        "-T",
        &sectors.to_string(),
        "-h",
        "16",
        "-s",
        "63",
        "-H",
        &PART_LBA.to_string(),
        "-v",
        "NOVABOX",
        "::",
    ]))?;
    run(Command::new(&syslinux)
        .env("PATH", &path)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["--install", "--offset", &offset.to_string()])
        .arg(raw))?;
    let cfg = raw.with_extension("cfg.tmp");
    std::fs::write(&cfg, syslinux_cfg(append))?;
    let copies = [
        (cfg.as_path(), "::/syslinux.cfg"),
        (vmlinuz, "::/vmlinuz"),
        (initramfs, "::/initrd.gz"),
    ];
    for (src, dst) in copies {
        run(tool("mcopy").args(["-o", "-i", &fs]).arg(src).arg(dst))?;
    }
    let _ = std::fs::remove_file(&cfg);

    let _ = std::fs::remove_file(vdi);
    let mut src = media::open(
        raw,
        &media::OpenOptions {
            format: Some(media::Format::Raw),
            lock: false,
            ..media::OpenOptions::default()
        },
    )
    .with_context(|| format!("opening {}", raw.display()))?;
    let info = media::clone_medium(&mut src, vdi, media::Format::Vdi, false, &mut |_, _| {})
        .with_context(|| format!("converting to {}", vdi.display()))?;
    Ok(info.uuid)
}

/// A `.vbox` machine booting `disk` (a file name next to it) from `controller`
/// ("AHCI" or "PIIX4"), with `iso` in a DVD drive when given, in `boot_first` order.
pub fn vbox_file(
    name: &str,
    controller: &str,
    disk: &str,
    disk_uuid: &media::Uuid,
    dvd: Option<(&str, &media::Uuid)>,
    dvd_first: bool,
) -> String {
    let (bus, ctl_name, ports) = if controller == "AHCI" {
        ("SATA", "SATA", 2)
    } else {
        ("IDE", "IDE", 2)
    };
    let _ = bus;
    let (o1, o2) = if dvd_first {
        ("DVD", "HardDisk")
    } else {
        ("HardDisk", "DVD")
    };
    let machine_uuid = media::Uuid::random();
    let (dvd_image, dvd_registry) = match dvd {
        Some((file, u)) => (
            format!("\n            <Image uuid=\"{{{u}}}\"/>\n          "),
            format!(
                "\n      <DVDImages>\n        <Image uuid=\"{{{u}}}\" location=\"{file}\"/>\n      </DVDImages>"
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.16-linux">
  <Machine uuid="{{{machine_uuid}}}" name="{name}" OSType="Linux_64" snapshotFolder="Snapshots">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{{{disk_uuid}}}" location="{disk}" format="VDI" type="Normal"/>
      </HardDisks>{dvd_registry}
    </MediaRegistry>
    <Hardware>
      <CPU count="1"/>
      <Memory RAMSize="256"/>
      <Boot>
        <Order position="1" device="{o1}"/>
        <Order position="2" device="{o2}"/>
        <Order position="3" device="None"/>
        <Order position="4" device="None"/>
      </Boot>
      <UART>
        <Port slot="0" enabled="true" IOBase="0x3f8" IRQ="4" hostMode="RawFile" path="serial.log"/>
      </UART>
      <StorageControllers>
        <StorageController name="{ctl_name}" type="{controller}" PortCount="{ports}" useHostIOCache="false" Bootable="true">
          <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
            <Image uuid="{{{disk_uuid}}}"/>
          </AttachedDevice>
          <AttachedDevice passthrough="false" type="DVD" hotpluggable="false" port="1" device="0">{dvd_image}</AttachedDevice>
        </StorageController>
      </StorageControllers>
    </Hardware>
  </Machine>
</VirtualBox>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_has_one_active_fat16_partition() {
        let code = vec![0xeb; 440];
        let m = mbr(&code, 131072).unwrap();
        assert_eq!(m.len(), 512);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x06);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(
            u32::from_le_bytes(m[458..462].try_into().unwrap()),
            131072 - 2048
        );
        assert!(m[462..510].iter().all(|&b| b == 0), "one entry only");
        assert!(mbr(&code, 2048).is_err());
        assert!(mbr(&code[..100], 131072).is_err());
    }

    #[test]
    fn config_boots_the_kit_kernel_on_com1() {
        let c = syslinux_cfg(APPEND);
        assert!(c.contains("KERNEL /vmlinuz"));
        assert!(c.contains("INITRD /initrd.gz"));
        assert!(c.contains("console=ttyS0"));
        assert!(c.contains("TIMEOUT 0"));
    }
}
