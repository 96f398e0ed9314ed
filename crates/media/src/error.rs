//! Typed errors of the media crate. Every error that concerns a file names that file.

use std::path::PathBuf;

/// Result type of the media crate.
pub type Result<T> = std::result::Result<T, MediaError>;

/// Everything that can go wrong when opening, reading, writing or creating a disk image.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The operating system refused an operation on the file.
    #[error("{}: {op}: {source}", .path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done ("read", "write", "open", ...).
        op: &'static str,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image needs bytes beyond the end of its file.
    #[error(
        "{}: truncated image: needs bytes {offset}..{end} but the file is only {file_size} bytes",
        .path.display()
    )]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// First byte that was needed.
        offset: u64,
        /// One past the last byte that was needed.
        end: u64,
        /// Actual file size.
        file_size: u64,
    },
    /// The image's metadata is inconsistent or impossible.
    #[error("{}: corrupt {format} image: {problem}", .path.display())]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// Format name ("VDI", "VMDK", "VHD", ...).
        format: &'static str,
        /// Human-readable description of the problem.
        problem: String,
    },
    /// A valid image that uses a feature novabox does not implement.
    #[error("{}: unsupported: {what}", .path.display())]
    Unsupported {
        /// The file concerned.
        path: PathBuf,
        /// What is not supported.
        what: String,
    },
    /// Another process (or another open in this process) holds the image's lock.
    #[error("{}: image is locked by another user (is it attached to a running VM?)", .path.display())]
    Locked {
        /// The file concerned.
        path: PathBuf,
    },
    /// The differencing chain is broken: missing parent, UUID mismatch, loop.
    #[error("{}: differencing chain: {problem}", .path.display())]
    Chain {
        /// The image whose parent link is at fault.
        path: PathBuf,
        /// Human-readable description of the problem.
        problem: String,
    },
    /// A write or discard on a medium opened read-only (or a read-only format).
    #[error("{}: medium is read-only", .path.display())]
    ReadOnly {
        /// The file concerned.
        path: PathBuf,
    },
    /// An access outside the virtual disk.
    #[error("access of {len} bytes at offset {offset} is outside the disk ({size} bytes)")]
    OutOfRange {
        /// Start of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Virtual disk size.
        size: u64,
    },
    /// A bad argument from the caller (size, format, variant ...).
    #[error("{0}")]
    InvalidArgument(String),
}

impl MediaError {
    /// Shorthand for [`MediaError::Io`].
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        MediaError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// Shorthand for [`MediaError::Corrupt`].
    pub fn corrupt(
        path: impl Into<PathBuf>,
        format: &'static str,
        problem: impl Into<String>,
    ) -> Self {
        MediaError::Corrupt {
            path: path.into(),
            format,
            problem: problem.into(),
        }
    }

    /// Shorthand for [`MediaError::Unsupported`].
    pub fn unsupported(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        MediaError::Unsupported {
            path: path.into(),
            what: what.into(),
        }
    }

    /// Shorthand for [`MediaError::Chain`].
    pub fn chain(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        MediaError::Chain {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
