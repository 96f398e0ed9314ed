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
    Ok(())
}
