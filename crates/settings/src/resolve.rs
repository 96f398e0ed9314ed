//! Finding the files behind attached media the way VirtualBox does: by UUID
//! through the machine's own media registry, then the global registry (and
//! other registries the caller knows), relative locations against the folder
//! of the registry they were found in, differencing images through their
//! parents.

use std::path::{Path, PathBuf};

use crate::enums::MediumType;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{MediaRegistry, Medium};
use crate::values::Uuid;

/// A registry to search, with the folder its relative locations resolve
/// against.
#[derive(Debug, Clone, Copy)]
pub struct RegistryRef<'a> {
    /// The registry.
    pub registry: &'a MediaRegistry,
    /// Base folder for relative locations.
    pub base: &'a Path,
    /// Describes the registry in messages ("machine", "global", …).
    pub label: &'a str,
}

/// One image of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// Medium UUID.
    pub uuid: Uuid,
    /// Resolved host path.
    pub path: PathBuf,
    /// Format (`VDI`, `VMDK`, …).
    pub format: String,
}

/// A medium resolved to host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMedium {
    /// The attached image (the one that receives writes).
    pub leaf: ChainLink,
    /// Its ancestors, immediate parent first, base image last.
    pub parents: Vec<ChainLink>,
    /// Type of the base image (children inherit it).
    pub kind: MediumType,
    /// Reset to empty on every power-on (Immutable children).
    pub auto_reset: bool,
    /// Which registry had it.
    pub registry: String,
}

impl ResolvedMedium {
    /// Every path of the chain, leaf first.
    pub fn all_paths(&self) -> Vec<&Path> {
        std::iter::once(&self.leaf)
            .chain(self.parents.iter())
            .map(|l| l.path.as_path())
            .collect()
    }
}

/// A remapping hook for absolute paths written on other hosts (Windows drive
/// letters, other users' home folders).
pub type PathMap<'a> = &'a dyn Fn(&str) -> Option<PathBuf>;

/// Resolve a location as VirtualBox does: `\` → `/`, absolute kept,
/// relative joined to the registry's folder.
pub fn resolve_location(location: &str, base: &Path) -> PathBuf {
    let loc = location.replace('\\', "/");
    let p = Path::new(&loc);
    if p.is_absolute() || is_windows_absolute(&loc) {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `C:/…` style paths are absolute on the host that wrote them.
pub fn is_windows_absolute(loc: &str) -> bool {
    let b = loc.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'/' || b[2] == b'\\')
}

fn link(m: &Medium, base: &Path, map: Option<PathMap>) -> ChainLink {
    let path = map
        .and_then(|f| f(&m.location))
        .unwrap_or_else(|| resolve_location(&m.location, base));
    ChainLink {
        uuid: m.uuid,
        path,
        format: m.format.clone(),
    }
}

/// Look a medium up by UUID in the registries, in order.
pub fn resolve(
    uuid: &Uuid,
    registries: &[RegistryRef],
    map: Option<PathMap>,
) -> Result<ResolvedMedium> {
    for r in registries {
        if let Some((m, ancestors)) = r.registry.find(uuid) {
            let base = ancestors.last().copied().unwrap_or(m);
            return Ok(ResolvedMedium {
                leaf: link(m, r.base, map),
                parents: ancestors.iter().map(|a| link(a, r.base, map)).collect(),
                kind: base.kind,
                auto_reset: m.auto_reset,
                registry: r.label.to_string(),
            });
        }
    }
    let searched: Vec<&str> = registries.iter().map(|r| r.label).collect();
    Err(Error::new(
        ErrorKind::Medium,
        format!(
            "medium {{{uuid}}} is not registered in any media registry (searched: {})",
            if searched.is_empty() {
                "none".to_string()
            } else {
                searched.join(", ")
            }
        ),
    ))
}

/// Check that every file of a resolved chain exists; the error names the
/// medium and where it was expected.
pub fn check_files(m: &ResolvedMedium) -> Result<()> {
    for l in std::iter::once(&m.leaf).chain(m.parents.iter()) {
        if l.format.eq_ignore_ascii_case("iSCSI") {
            continue;
        }
        if !l.path.exists() {
            let what = if l.uuid == m.leaf.uuid {
                "medium"
            } else {
                "parent medium"
            };
            return Err(Error::new(
                ErrorKind::Medium,
                format!(
                    "{what} {{{}}} ({}) is missing: expected at {}",
                    l.uuid,
                    l.format,
                    l.path.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let b = Path::new("/vms/a");
        assert_eq!(
            resolve_location("disk.vdi", b),
            PathBuf::from("/vms/a/disk.vdi")
        );
        assert_eq!(
            resolve_location("Snapshots\\x.vdi", b),
            PathBuf::from("/vms/a/Snapshots/x.vdi")
        );
        assert_eq!(
            resolve_location("/abs/d.vdi", b),
            PathBuf::from("/abs/d.vdi")
        );
        assert_eq!(
            resolve_location("C:/Users/x.vmdk", b),
            PathBuf::from("C:/Users/x.vmdk")
        );
    }
}
