//! Finding the firmware: SeaBIOS from the guest kit or Debian's seabios package.

use std::path::PathBuf;

/// Errors finding firmware.
#[derive(Debug, thiserror::Error)]
#[error("SeaBIOS not found (looked in: {0}); run `cargo xtask kit` or `apt-get install seabios`, or pass --bios FILE")]
pub struct FirmwareNotFound(String);

/// Where the guest kit lives: NOVABOX_KIT_DIR, else kit-cache/ in the source tree.
pub fn kit_dir() -> PathBuf {
    std::env::var_os("NOVABOX_KIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../kit-cache")))
}

/// The SeaBIOS image to use when none is given: the kit's copy, else the Debian package's
/// standard place.
pub fn find_seabios() -> Result<PathBuf, FirmwareNotFound> {
    let candidates = [
        kit_dir().join("bios-256k.bin"),
        kit_dir().join("bios.bin"),
        PathBuf::from("/usr/share/seabios/bios-256k.bin"),
        PathBuf::from("/usr/share/seabios/bios.bin"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            FirmwareNotFound(
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// Check a firmware image: a size the PC ROM window accepts.
pub fn check_image(image: &[u8]) -> Result<(), String> {
    let len = image.len();
    if !(0x1_0000..=0x100_0000).contains(&len) || !len.is_multiple_of(0x1000) {
        return Err(format!(
            "firmware image is {len} bytes; expected a multiple of 4 KiB between 64 KiB and 16 MiB"
        ));
    }
    // The CPU starts at 0xFFFFFFF0, the image's last 16 bytes: every PC firmware puts a jump
    // there (SeaBIOS and VirtualBox's BIOS a far jump, OVMF `nop; nop; jmp near`). Anything
    // else is not firmware (a kernel or disk image passed by mistake, a corrupt file).
    let reset = &image[len - 16..];
    let first = reset
        .iter()
        .take(4)
        .position(|b| !matches!(b, 0x90 | 0xfa | 0xfc))
        .map(|i| reset[i]);
    // 0xE9 jmp rel16/32, 0xEA jmp far, 0xEB jmp rel8.
    if !matches!(first, Some(0xe9..=0xeb)) {
        return Err(format!(
            "not a PC firmware image: no jump at the reset vector (last 16 bytes start with {:02x} {:02x} {:02x} {:02x})",
            reset[0], reset[1], reset[2], reset[3]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_image;

    fn rom(reset: &[u8]) -> Vec<u8> {
        let mut r = vec![0xffu8; 0x1_0000];
        let at = r.len() - 16;
        r[at..at + reset.len()].copy_from_slice(reset);
        r
    }

    #[test]
    fn sizes_and_reset_vector() {
        assert!(check_image(&rom(&[0xea, 0x5b, 0xe0, 0x00, 0xf0])).is_ok());
        assert!(check_image(&rom(&[0x90, 0x90, 0xe9, 0x12, 0x34])).is_ok());
        let e = check_image(&rom(&[0x7f, b'E', b'L', b'F'])).unwrap_err();
        assert!(e.contains("no jump at the reset vector"), "{e}");
        assert!(check_image(&rom(&[0x90; 16])).is_err());
        assert!(check_image(&vec![0xea; 0x1_0000 + 1])
            .unwrap_err()
            .contains("bytes"));
        assert!(check_image(&[0xea; 0x1000]).is_err());
    }
}
