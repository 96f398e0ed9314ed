//! The contract between the chain logic ([`crate::Medium`]) and one image file's format.
//!
//! A layer answers "what is at this virtual offset in *this* file" (data, known zeros,
//! or absent = ask the parent) and performs writes of whole allocation units; the chain
//! does parent fall-through and read-modify-write of partial units.

use std::fmt;
use std::path::PathBuf;

use crate::error::Result;
use crate::uuid::Uuid;

/// What one image holds for a range of the virtual disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Data stored in this image.
    Data,
    /// Known zeros in this image (discarded/zero block): do not consult the parent.
    Zero,
    /// Not present in this image: read the parent (zeros if there is none).
    Absent,
}

/// Image container formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// VirtualBox Disk Image.
    Vdi,
    /// VMware disk (descriptor + extents).
    Vmdk,
    /// Microsoft Virtual PC / Virtual Server disk.
    Vhd,
    /// Plain sector array.
    Raw,
    /// ISO 9660 optical image (read-only raw).
    Iso,
}

impl Format {
    /// VirtualBox's name for the format ("VDI", "VMDK", "VHD", "RAW").
    pub fn name(self) -> &'static str {
        match self {
            Format::Vdi => "VDI",
            Format::Vmdk => "VMDK",
            Format::Vhd => "VHD",
            Format::Raw | Format::Iso => "RAW",
        }
    }

    /// Parse a VBoxManage-style format name (case-insensitive).
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_uppercase().as_str() {
            "VDI" => Some(Format::Vdi),
            "VMDK" => Some(Format::Vmdk),
            "VHD" | "VPC" => Some(Format::Vhd),
            "RAW" | "IMG" => Some(Format::Raw),
            "ISO" => Some(Format::Iso),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an image stores its blocks (VirtualBox's "format variant").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Variant {
    /// Every block preallocated.
    pub fixed: bool,
    /// A differencing image (has a parent).
    pub diff: bool,
    /// Split into 2 GiB extent files (VMDK twoGbMaxExtent*).
    pub split2g: bool,
    /// Compressed stream (VMDK streamOptimized), read-only.
    pub stream: bool,
}

impl fmt::Display for Variant {
    /// VBoxManage's `Format variant:` text, e.g. "dynamic default", "fixed split2G".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = if self.diff {
            "diff"
        } else if self.fixed {
            "fixed"
        } else {
            "dynamic"
        };
        f.write_str(base)?;
        if self.split2g {
            f.write_str(" split2G")?;
        }
        if self.stream {
            f.write_str(" streamOptimized")?;
        }
        if !self.split2g && !self.stream {
            f.write_str(" default")?;
        }
        Ok(())
    }
}

/// How an image names its parent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentRef {
    /// The parent's image UUID (VDI uuidLinkage, VHD parent unique id, VMDK ddb.uuid.parent).
    pub uuid: Option<Uuid>,
    /// The parent's content id (VMDK parentCID).
    pub cid: Option<u32>,
    /// Path hints, relative to the child's directory or absolute, best first.
    pub hints: Vec<String>,
}

/// What `showmediuminfo` shows about one image file.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// The image file (the descriptor for VMDK).
    pub path: PathBuf,
    /// Container format.
    pub format: Format,
    /// Storage variant.
    pub variant: Variant,
    /// The image's own UUID (nil if the format has none).
    pub uuid: Uuid,
    /// Content id (VMDK CID).
    pub cid: Option<u32>,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Allocation block/grain size in bytes (0 for raw).
    pub block_size: u64,
    /// The parent link, for differencing images.
    pub parent: Option<ParentRef>,
    /// Bytes used on the host by all files of this image.
    pub size_on_disk: u64,
    /// Every host file of the image (descriptor + extents for VMDK).
    pub files: Vec<PathBuf>,
}

/// One image file's format implementation.
pub trait Layer: Send {
    /// Description of this image.
    fn info(&self) -> LayerInfo;
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// Whether writes are possible.
    fn writable(&self) -> bool;
    /// Classify `[off, off+len)`: returns the kind at `off` and how many bytes
    /// (at least 1, at most `len`) share it. `off + len <= size()`.
    fn map(&mut self, off: u64, len: u64) -> Result<(Extent, u64)>;
    /// Read bytes that [`Layer::map`] reported as [`Extent::Data`].
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()>;
    /// The allocation unit containing `off`, as (start, length); length is clipped at
    /// the disk end.
    fn alloc_unit(&self, off: u64) -> (u64, u64);
    /// Write either inside a range mapped as [`Extent::Data`], or exactly one or more
    /// whole allocation units (which get allocated).
    fn write(&mut self, off: u64, buf: &[u8]) -> Result<()>;
    /// Mark an unallocated unit as known zeros (so the parent is hidden). Returns false
    /// when the format has no such marker.
    fn mark_zero(&mut self, _unit_start: u64) -> Result<bool> {
        Ok(false)
    }
    /// Release host space of a [`Extent::Data`] range; it then reads as zeros.
    fn punch(&mut self, off: u64, len: u64) -> Result<()>;
    /// Commit pending metadata and make everything durable.
    fn flush(&mut self) -> Result<()>;
}
