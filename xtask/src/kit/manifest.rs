//! `manifest.json`: what the kit was built from (package versions, guest
//! script hashes) and the size and SHA-256 of every produced file, so a
//! rerun can tell in milliseconds, without apt or network, that the kit is
//! complete and current.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One Debian package the kit came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Exact Debian version.
    pub version: String,
    /// For a metapackage: the package it resolved to (not downloaded itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves_to: Option<String>,
    /// File name of the downloaded `.deb` under `debs/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deb: Option<String>,
    /// SHA-256 of the `.deb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deb_sha256: Option<String>,
}

/// Size and hash of one produced file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// The whole manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Kit layout version: bumped when the builder changes what it makes.
    pub format: u32,
    /// `uname -r` of the kit kernel (e.g. `6.1.0-48-amd64`).
    pub kernel_release: String,
    /// Source packages.
    pub packages: Vec<Package>,
    /// Hashes of the builder inputs that are not packages (guest scripts,
    /// the wanted module list), keyed by name.
    pub inputs: BTreeMap<String, String>,
    /// Modules in the initramfs, in load order.
    pub modules: Vec<String>,
    /// Relevant kernel config options (`y`, `m` or `n`).
    pub kernel_config: BTreeMap<String, String>,
    /// Produced files (relative to the kit directory).
    pub files: BTreeMap<String, FileEntry>,
}

/// SHA-256 of a byte slice as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SHA-256 of a file's contents as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Reads `manifest.json` from the kit directory, `None` if absent or
    /// unreadable (then the kit is rebuilt).
    pub fn load(kit: &Path) -> Option<Manifest> {
        let text = std::fs::read_to_string(kit.join("manifest.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes `manifest.json` atomically.
    pub fn store(&self, kit: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        super::write_atomic(&kit.join("manifest.json"), text.as_bytes())
    }

    /// Problems that make the kit in `kit` not match this manifest or the
    /// current inputs: empty means up to date. Hashes every produced file.
    pub fn problems(
        &self,
        kit: &Path,
        format: u32,
        inputs: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != format {
            out.push(format!(
                "kit format {} is not the current {format}",
                self.format
            ));
        }
        for (k, v) in inputs {
            match self.inputs.get(k) {
                None => out.push(format!("{k} is new since the kit was built")),
                Some(old) if old != v => out.push(format!("{k} changed since the kit was built")),
                _ => {}
            }
        }
        for k in self.inputs.keys().filter(|k| !inputs.contains_key(*k)) {
            out.push(format!("{k} was removed since the kit was built"));
        }
        for (name, want) in &self.files {
            let p = kit.join(name);
            match std::fs::metadata(&p) {
                Err(_) => out.push(format!("{name} is missing")),
                Ok(m) if m.len() != want.size => out.push(format!(
                    "{name} has size {} (manifest: {})",
                    m.len(),
                    want.size
                )),
                Ok(_) => match sha256_file(&p) {
                    Ok(h) if h == want.sha256 => {}
                    Ok(_) => out.push(format!("{name} has a different sha256 than the manifest")),
                    Err(e) => out.push(format!("{name}: {e:#}")),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn problems_detects_changes() {
        let dir = std::env::temp_dir().join(format!("novabox-kit-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.bin"), b"abc").unwrap();
        let inputs: BTreeMap<String, String> =
            [("guest/init".to_string(), "h1".to_string())].into();
        let m = Manifest {
            format: 3,
            kernel_release: "6.1".into(),
            packages: vec![],
            inputs: inputs.clone(),
            modules: vec![],
            kernel_config: BTreeMap::new(),
            files: [(
                "a.bin".to_string(),
                FileEntry {
                    size: 3,
                    sha256: sha256_hex(b"abc"),
                },
            )]
            .into(),
        };
        m.store(&dir).unwrap();
        let loaded = Manifest::load(&dir).unwrap();
        assert_eq!(loaded, m);
        assert!(loaded.problems(&dir, 3, &inputs).is_empty());
        assert_eq!(loaded.problems(&dir, 4, &inputs).len(), 1);
        let changed: BTreeMap<String, String> =
            [("guest/init".to_string(), "h2".to_string())].into();
        assert_eq!(
            loaded.problems(&dir, 3, &changed),
            ["guest/init changed since the kit was built"]
        );
        std::fs::write(dir.join("a.bin"), b"abd").unwrap();
        assert_eq!(
            loaded.problems(&dir, 3, &inputs),
            ["a.bin has a different sha256 than the manifest"]
        );
        std::fs::remove_file(dir.join("a.bin")).unwrap();
        assert_eq!(loaded.problems(&dir, 3, &inputs), ["a.bin is missing"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
