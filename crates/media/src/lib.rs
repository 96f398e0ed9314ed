//! Disk images: VDI, VMDK, VHD, raw, ISO, differencing chains (VirtualBox: VD).
//!
//! Entry points:
//! - [`open`] a medium (an image and its differencing ancestors) as a [`Medium`],
//!   which implements [`Disk`], the interface storage controllers use;
//! - [`create()`](create::create) new images, [`clone_medium`](convert::clone_medium)
//!   between formats, [`compact`](modify::compact) and [`resize`](modify::resize).
//!
//! Every image file is untrusted input: parsers validate all metadata on open and
//! report a [`MediaError`] naming the file and the problem; nothing is written to an
//! image that failed validation.

pub mod bytes;
pub mod convert;
pub mod create;
pub mod disk;
pub mod error;
pub mod layer;
pub mod medium;
pub mod modify;
pub mod open;
pub mod raw;
pub mod storage;
pub mod uuid;
pub mod vdi;
pub mod vhd;
pub mod vmdk;

pub use convert::clone_medium;
pub use create::{create, CreateOptions};
pub use disk::Disk;
pub use error::{MediaError, Result};
pub use layer::{Extent, Format, Layer, LayerInfo, ParentRef, Variant};
pub use medium::{Allocation, Medium};
pub use modify::{compact, resize};
pub use open::{detect, open, open_layer, OpenOptions, ParentResolver, Registry};
pub use storage::{FileStorage, LockMode, MemStorage, Storage};
pub use uuid::Uuid;
