//! Opening media: format detection, locking, and resolving differencing chains.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{MediaError, Result};
use crate::layer::{Format, Layer, LayerInfo, ParentRef};
use crate::medium::{Medium, MAX_CHAIN};
use crate::storage::{FileStorage, LockMode, Storage};
use crate::uuid::Uuid;
use crate::{raw, vdi, vhd, vmdk};

/// Finds the file of a differencing image's parent.
///
/// VirtualBox takes chains from the media registry of the `.vbox`/`VirtualBox.xml`; the
/// machine loader passes that registry as a [`Registry`]. Without one, the opener uses
/// the path hints stored in the image (VMDK, VHD) and then looks for an image with the
/// right UUID next to the child and in its parent directory (VirtualBox keeps
/// differencing images in `<machine>/Snapshots/` and the base in `<machine>/`).
pub trait ParentResolver {
    /// Candidate paths for `parent` of the image `child` (best first).
    fn candidates(&self, child: &LayerInfo, parent: &ParentRef) -> Vec<PathBuf>;
}

/// A media registry: image UUID → file.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Known images.
    pub by_uuid: HashMap<Uuid, PathBuf>,
}

impl ParentResolver for Registry {
    fn candidates(&self, _child: &LayerInfo, parent: &ParentRef) -> Vec<PathBuf> {
        parent
            .uuid
            .and_then(|u| self.by_uuid.get(&u))
            .cloned()
            .into_iter()
            .collect()
    }
}

/// How to open a medium.
pub struct OpenOptions {
    /// Open the top image for writing (exclusive lock); parents are always read-only
    /// with a shared lock.
    pub writable: bool,
    /// Format of the top image; `None` detects it from the contents.
    pub format: Option<Format>,
    /// Take advisory locks (turn off only for inspection of images in use).
    pub lock: bool,
    /// Extra parent lookup (the media registry), consulted before the built-in search.
    pub resolver: Option<Box<dyn ParentResolver>>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            writable: false,
            format: None,
            lock: true,
            resolver: None,
        }
    }
}

impl OpenOptions {
    /// Read-only, detected format, locked.
    pub fn read_only() -> Self {
        Self::default()
    }

    /// Read-write, detected format, locked.
    pub fn read_write() -> Self {
        OpenOptions {
            writable: true,
            ..Self::default()
        }
    }
}

/// Detect the format of an image from its first bytes (and its last 512 for fixed VHD).
pub fn detect(storage: &dyn Storage) -> Result<Format> {
    let len = storage.len();
    let mut head = vec![0u8; 512.min(len) as usize];
    storage.read_at(&mut head, 0)?;
    if vdi::probe(&head) {
        return Ok(Format::Vdi);
    }
    if vmdk::probe(&head) {
        return Ok(Format::Vmdk);
    }
    if head.starts_with(b"conectix") {
        return Ok(Format::Vhd);
    }
    if head.starts_with(b"vhdxfile") {
        return Err(MediaError::unsupported(storage.path(), "VHDX images"));
    }
    if head.starts_with(b"QFI\xfb") {
        return Err(MediaError::unsupported(storage.path(), "QCOW/QCOW2 images"));
    }
    if len >= 512 {
        let mut tail = [0u8; 8];
        storage.read_at(&mut tail, len - 512)?;
        if &tail == b"conectix" {
            return Ok(Format::Vhd);
        }
    }
    if raw::is_iso(storage) {
        return Ok(Format::Iso);
    }
    Ok(Format::Raw)
}

/// Open one image file (no parents).
pub fn open_layer(
    path: &Path,
    format: Option<Format>,
    writable: bool,
    lock: bool,
) -> Result<Box<dyn Layer>> {
    let mode = match (lock, writable) {
        (false, _) => LockMode::None,
        (true, true) => LockMode::Exclusive,
        (true, false) => LockMode::Shared,
    };
    let storage = FileStorage::open(path, writable, mode)?;
    let detected = detect(&storage)?;
    let format = match format {
        None => detected,
        Some(Format::Raw) => Format::Raw,
        Some(f) if f == detected || (f == Format::Raw && detected == Format::Iso) => f,
        Some(Format::Iso) if detected == Format::Raw => Format::Iso,
        Some(f) => {
            return Err(MediaError::corrupt(
                path,
                f.name(),
                format!(
                    "the file is not a {} image (it looks like {})",
                    f.name(),
                    detected.name()
                ),
            ))
        }
    };
    open_storage(Box::new(storage), format, writable, lock)
}

/// Open an image of a known format from storage (also used on in-memory bytes).
pub fn open_storage(
    storage: Box<dyn Storage>,
    format: Format,
    writable: bool,
    lock: bool,
) -> Result<Box<dyn Layer>> {
    let layer: Box<dyn Layer> = match format {
        Format::Vdi => Box::new(vdi::VdiLayer::open(storage)?),
        Format::Vhd => Box::new(vhd::VhdLayer::open(storage)?),
        Format::Vmdk => Box::new(vmdk::VmdkLayer::open(storage, writable, lock)?),
        Format::Raw | Format::Iso => Box::new(raw::RawLayer::open(storage, format)?),
    };
    Ok(layer)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Built-in parent search: hints, then a UUID scan of nearby directories.
fn builtin_candidates(child: &LayerInfo, parent: &ParentRef) -> Vec<PathBuf> {
    let dir = match child.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out: Vec<PathBuf> = parent
        .hints
        .iter()
        .map(|h| {
            let p = Path::new(h);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        })
        .collect();
    if let Some(uuid) = parent.uuid.filter(|u| !u.is_nil()) {
        let mut dirs = vec![dir.clone()];
        if let Some(up) = dir.parent() {
            dirs.push(up.to_path_buf());
        }
        dirs.push(dir.join("Snapshots"));
        for d in dirs {
            out.extend(scan_dir_for_uuid(&d, uuid, &child.path));
        }
    }
    out
}

/// Images in `dir` (by extension) whose own UUID is `uuid`.
fn scan_dir_for_uuid(dir: &Path, uuid: Uuid, skip: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let skip = canonical(skip);
    let mut found = Vec::new();
    for entry in rd.flatten().take(10_000) {
        let p = entry.path();
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if !matches!(ext.as_str(), "vdi" | "vmdk" | "vhd") || canonical(&p) == skip {
            continue;
        }
        if let Ok(l) = open_layer(&p, None, false, false) {
            if l.info().uuid == uuid {
                found.push(p);
            }
        }
    }
    found
}

/// Check that `parent` is the image `child_ref` asks for.
fn verify_parent(child: &LayerInfo, child_ref: &ParentRef, parent: &LayerInfo) -> Result<()> {
    let mut cid_checked = false;
    if let Some(want) = child_ref.cid {
        if parent.cid != Some(want) {
            return Err(MediaError::chain(
                &child.path,
                format!(
                    "parent {} has content id {} but this image expects {want:08x}",
                    parent.path.display(),
                    parent
                        .cid
                        .map(|c| format!("{c:08x}"))
                        .unwrap_or_else(|| "none".into())
                ),
            ));
        }
        cid_checked = true;
    }
    if let Some(want) = child_ref.uuid.filter(|u| !u.is_nil()) {
        // A VMDK parent without a ddb.uuid.image is identified by its CID alone.
        let anonymous_ok = parent.uuid.is_nil() && cid_checked;
        if parent.uuid != want && !anonymous_ok {
            return Err(MediaError::chain(
                &child.path,
                format!(
                    "parent {} has UUID {} but this image expects {}",
                    parent.path.display(),
                    parent.uuid,
                    want
                ),
            ));
        }
    }
    if child_ref.cid.is_none() && child_ref.uuid.is_none_or(|u| u.is_nil()) {
        return Err(MediaError::chain(
            &child.path,
            "differencing image names no parent UUID",
        ));
    }
    Ok(())
}

/// Open a medium: the image at `path` and, for differencing images, all its ancestors.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Medium> {
    let top = open_layer(path, opts.format, opts.writable, opts.lock)?;
    if opts.writable && !top.writable() {
        return Err(MediaError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    let mut visited: Vec<(PathBuf, Uuid)> = vec![(canonical(path), top.info().uuid)];
    let mut layers: Vec<Box<dyn Layer>> = vec![top];
    loop {
        let child = layers
            .last()
            .map(|l| l.info())
            .ok_or_else(|| MediaError::InvalidArgument("empty chain".into()))?;
        let Some(pref) = child.parent.clone() else {
            break;
        };
        if layers.len() >= MAX_CHAIN {
            return Err(MediaError::chain(
                &child.path,
                format!("chain is longer than {MAX_CHAIN} images"),
            ));
        }
        let mut cands = opts
            .resolver
            .as_ref()
            .map(|r| r.candidates(&child, &pref))
            .unwrap_or_default();
        cands.extend(builtin_candidates(&child, &pref));
        let mut last_err = None;
        let mut chosen = None;
        for c in cands {
            let cc = canonical(&c);
            if let Some((p, _)) = visited.iter().find(|(p, _)| *p == cc) {
                return Err(MediaError::chain(
                    &child.path,
                    format!(
                        "loop in the parent chain: {} is already in the chain",
                        p.display()
                    ),
                ));
            }
            if !c.exists() {
                continue;
            }
            match open_layer(&c, None, false, opts.lock) {
                Ok(l) => match verify_parent(&child, &pref, &l.info()) {
                    Ok(()) => {
                        chosen = Some((cc, l));
                        break;
                    }
                    Err(e) => last_err = Some(e),
                },
                Err(e) => last_err = Some(e),
            }
        }
        let Some((cpath, parent)) = chosen else {
            return Err(last_err.unwrap_or_else(|| {
                MediaError::chain(
                    &child.path,
                    format!(
                        "parent image not found (UUID {}{})",
                        pref.uuid
                            .map(|u| u.to_string())
                            .unwrap_or_else(|| "unknown".into()),
                        if pref.hints.is_empty() {
                            String::new()
                        } else {
                            format!(", hint {:?}", pref.hints)
                        }
                    ),
                )
            }));
        };
        let puuid = parent.info().uuid;
        if !puuid.is_nil() && visited.iter().any(|(_, u)| *u == puuid) {
            return Err(MediaError::chain(
                &child.path,
                format!("loop in the parent chain: UUID {puuid} appears twice"),
            ));
        }
        visited.push((cpath, puuid));
        layers.push(parent);
    }
    Medium::from_layers(layers, opts.writable)
}
