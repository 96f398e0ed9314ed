//! Reads the kernel's shipped `/boot/config-*` to check it can boot the kit
//! (initramfs, devtmpfs, serial console built in) and to report which
//! devices the kit must carry as modules.

use std::collections::BTreeMap;

/// Options that must be built in (`=y`) for the kit to boot at all.
pub const REQUIRED_BUILTIN: &[&str] = &[
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_RD_GZIP",
    "CONFIG_DEVTMPFS",
    "CONFIG_TMPFS",
    "CONFIG_PROC_FS",
    "CONFIG_SYSFS",
    "CONFIG_BINFMT_ELF",
    "CONFIG_BINFMT_SCRIPT",
    "CONFIG_SERIAL_8250",
    "CONFIG_SERIAL_8250_CONSOLE",
    "CONFIG_MODULES",
];

/// Options reported (and recorded in the manifest) for the device work.
pub const REPORTED: &[&str] = &[
    "CONFIG_DEVTMPFS_MOUNT",
    "CONFIG_MODULE_SIG_FORCE",
    "CONFIG_MODULE_COMPRESS_XZ",
    "CONFIG_SMP",
    "CONFIG_X86_X2APIC",
    "CONFIG_ACPI",
    "CONFIG_PCI",
    "CONFIG_HPET_TIMER",
    "CONFIG_KVM_GUEST",
    "CONFIG_RTC_DRV_CMOS",
    "CONFIG_SERIO_I8042",
    "CONFIG_KEYBOARD_ATKBD",
    "CONFIG_VT",
    "CONFIG_VGA_CONSOLE",
    "CONFIG_FB_VESA",
    "CONFIG_ATA",
    "CONFIG_SATA_AHCI",
    "CONFIG_ATA_PIIX",
    "CONFIG_SCSI",
    "CONFIG_BLK_DEV_SD",
    "CONFIG_BLK_DEV_SR",
    "CONFIG_ISO9660_FS",
    "CONFIG_EXT4_FS",
    "CONFIG_E1000",
    "CONFIG_VIRTIO",
    "CONFIG_VIRTIO_PCI",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_VIRTIO_NET",
    "CONFIG_VBOXGUEST",
    "CONFIG_VBOXSF_FS",
    "CONFIG_DRM",
    "CONFIG_DRM_VBOXVIDEO",
];

/// Parses a kernel `.config`: `CONFIG_X=val` lines give `val`, `# CONFIG_X
/// is not set` gives `n`.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                out.insert(name.to_string(), "n".to_string());
            }
        } else if let Some((k, v)) = line.split_once('=') {
            if k.starts_with("CONFIG_") {
                out.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    out
}

/// Value of `opt` (`n` when absent, like Kconfig).
pub fn value<'a>(cfg: &'a BTreeMap<String, String>, opt: &str) -> &'a str {
    cfg.get(opt).map(String::as_str).unwrap_or("n")
}

/// Required options that are not built in, as `OPT=value` strings.
pub fn missing_builtins(cfg: &BTreeMap<String, String>) -> Vec<String> {
    REQUIRED_BUILTIN
        .iter()
        .filter(|o| value(cfg, o) != "y")
        .map(|o| format!("{o}={}", value(cfg, o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_not_set() {
        let cfg =
            parse("CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_S=\"x\"\n# comment\n");
        assert_eq!(value(&cfg, "CONFIG_A"), "y");
        assert_eq!(value(&cfg, "CONFIG_B"), "m");
        assert_eq!(value(&cfg, "CONFIG_C"), "n");
        assert_eq!(value(&cfg, "CONFIG_D"), "n");
        assert_eq!(value(&cfg, "CONFIG_S"), "x");
    }

    #[test]
    fn missing_builtins_lists_modules_too() {
        let mut text: String = REQUIRED_BUILTIN
            .iter()
            .map(|o| format!("{o}=y\n"))
            .collect();
        assert!(missing_builtins(&parse(&text)).is_empty());
        text = text.replace("CONFIG_DEVTMPFS=y", "CONFIG_DEVTMPFS=m");
        assert_eq!(missing_builtins(&parse(&text)), ["CONFIG_DEVTMPFS=m"]);
    }
}
