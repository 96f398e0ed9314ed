//! Creating new images (VBoxManage `createmedium disk`).

use std::path::{Path, PathBuf};

use crate::error::{MediaError, Result};
use crate::layer::{Format, Layer};
use crate::storage::{FileStorage, Storage};
use crate::uuid::Uuid;
use crate::vdi::VdiLayer;
use crate::vhd::VhdLayer;
use crate::vmdk::VmdkLayer;

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Container format.
    pub format: Format,
    /// Virtual size in bytes (ignored for differencing images: the parent's size).
    pub size: u64,
    /// Preallocate every block (VBoxManage `--variant Fixed`).
    pub fixed: bool,
    /// Make a differencing image of this parent (VBoxManage `--diffparent`).
    pub parent: Option<PathBuf>,
    /// Use this UUID instead of a random one.
    pub uuid: Option<Uuid>,
}

fn relative_hint(child: &Path, parent: &Path) -> String {
    let cdir = child.parent().and_then(|d| std::fs::canonicalize(d).ok());
    let pc = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    if let (Some(cd), Some(pd)) = (cdir, pc.parent()) {
        if cd == pd {
            if let Some(n) = pc.file_name() {
                return n.to_string_lossy().into_owned();
            }
        }
    }
    pc.to_string_lossy().into_owned()
}

/// Create an image file (it must not exist). Returns the new top image.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<Box<dyn Layer>> {
    let mut size = opts.size;
    let parent_info = match &opts.parent {
        Some(p) => {
            let l = crate::open::open_layer(p, None, false, true)?;
            let info = l.info();
            size = info.size;
            Some(info)
        }
        None => None,
    };
    if size == 0 {
        return Err(MediaError::InvalidArgument(
            "the disk size must not be zero".into(),
        ));
    }
    if size > crate::bytes::MAX_DISK_SIZE {
        return Err(MediaError::InvalidArgument(format!(
            "disk size {size} is absurdly large"
        )));
    }
    if opts.fixed && opts.parent.is_some() {
        return Err(MediaError::InvalidArgument(
            "a differencing image cannot be fixed".into(),
        ));
    }
    let result: Result<Box<dyn Layer>> = (|| match opts.format {
        Format::Vdi => {
            let parent = parent_info
                .as_ref()
                .map(|i| (i.uuid, parent_modify_uuid(i)));
            if let Some(i) = &parent_info {
                if i.uuid.is_nil() {
                    return Err(MediaError::InvalidArgument(format!(
                        "{}: parent has no UUID; a VDI child cannot name it",
                        i.path.display()
                    )));
                }
            }
            let st = FileStorage::create(path)?;
            Ok(Box::new(VdiLayer::create(
                Box::new(st),
                size,
                opts.fixed,
                parent,
                opts.uuid,
            )?) as Box<dyn Layer>)
        }
        Format::Vhd => {
            let parent = parent_info.as_ref().map(|i| {
                let rel = relative_hint(path, &i.path);
                let abs = std::fs::canonicalize(&i.path)
                    .unwrap_or_else(|_| i.path.clone())
                    .to_string_lossy()
                    .into_owned();
                (i.uuid, rel, abs)
            });
            let st = FileStorage::create(path)?;
            Ok(Box::new(VhdLayer::create(
                Box::new(st),
                size,
                opts.fixed,
                parent,
                opts.uuid,
            )?) as Box<dyn Layer>)
        }
        Format::Vmdk => {
            if opts.fixed {
                Ok(Box::new(VmdkLayer::create_flat(path, size, opts.uuid)?) as Box<dyn Layer>)
            } else {
                let parent = match &parent_info {
                    Some(i) => {
                        let cid = i.cid.ok_or_else(|| {
                            MediaError::InvalidArgument(format!(
                                "{}: a VMDK child needs a VMDK parent (it links by content id)",
                                i.path.display()
                            ))
                        })?;
                        Some((cid, relative_hint(path, &i.path), i.uuid))
                    }
                    None => None,
                };
                Ok(
                    Box::new(VmdkLayer::create_sparse(path, size, parent, opts.uuid)?)
                        as Box<dyn Layer>,
                )
            }
        }
        Format::Raw => {
            if opts.parent.is_some() {
                return Err(MediaError::InvalidArgument(
                    "raw images cannot be differencing".into(),
                ));
            }
            let mut st = FileStorage::create(path)?;
            if opts.fixed {
                st.preallocate(0, size)?;
            } else {
                st.set_len(size)?;
            }
            st.sync_data()?;
            Ok(Box::new(crate::raw::RawLayer::open(Box::new(st), Format::Raw)?) as Box<dyn Layer>)
        }
        Format::Iso => Err(MediaError::InvalidArgument(
            "ISO images cannot be created".into(),
        )),
    })();
    if result.is_err() && opts.format != Format::Vmdk {
        // Do not leave a half-made image behind (VMDK cleans up its own files below).
        let _ = std::fs::remove_file(path);
    }
    if result.is_err() && opts.format == Format::Vmdk {
        let _ = std::fs::remove_file(path);
        if let Some(stem) = path.file_stem() {
            let _ = std::fs::remove_file(
                path.with_file_name(format!("{}-flat.vmdk", stem.to_string_lossy())),
            );
        }
    }
    result
}

/// The parent's modification UUID for a VDI child's uuidParentModify (VDI parents
/// only; others have none, and VirtualBox does not verify it).
fn parent_modify_uuid(info: &crate::layer::LayerInfo) -> Uuid {
    if info.format != Format::Vdi {
        return Uuid::NIL;
    }
    crate::open::open_layer(&info.path, Some(Format::Vdi), false, false)
        .ok()
        .and_then(|_| {
            let st = FileStorage::open(&info.path, false, crate::storage::LockMode::None).ok()?;
            let mut b = vec![0u8; 512];
            st.read_at(&mut b, 0).ok()?;
            crate::vdi::header::VdiHeader::parse(&b)
                .ok()
                .map(|h| h.uuid_modify)
        })
        .unwrap_or(Uuid::NIL)
}
