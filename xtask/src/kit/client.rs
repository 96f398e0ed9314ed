//! The guest-side test clients: each `guest/client/NAME.c` is compiled with the host's
//! gcc as a static binary (`gcc -static -O2 -s`, glibc's libc.a and the kernel's uapi
//! headers) and installed in the initramfs as `/bin/NAME`.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Compiles every source; (binary name, image) pairs.
pub fn compile(sources: &[(String, Vec<u8>)]) -> Result<Vec<(String, Vec<u8>)>> {
    let dir = std::env::temp_dir().join(format!("novabox-kit-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    for (file, src) in sources {
        let name = file.trim_end_matches(".c");
        let (c, bin) = (dir.join(file), dir.join(name));
        std::fs::write(&c, src).with_context(|| format!("writing {}", c.display()))?;
        out.push((name.to_string(), gcc(&c, &bin)?));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn gcc(src: &Path, bin: &Path) -> Result<Vec<u8>> {
    let o = Command::new("gcc")
        .args(["-static", "-O2", "-s", "-Wall", "-o"])
        .arg(bin)
        .arg(src)
        .output()
        .context("running gcc (the guest test clients need gcc and libc6-dev)")?;
    if !o.status.success() {
        bail!(
            "gcc {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))
}
