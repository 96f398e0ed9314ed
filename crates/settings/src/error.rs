//! The one error type of the crate: what went wrong, and where.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::xml::Pos;

/// What kind of problem an [`Error`] is (for callers that branch on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading or writing the file failed.
    Io,
    /// The file is not well-formed XML.
    Xml,
    /// Not a VirtualBox settings file (root element, missing `Machine`...).
    Format,
    /// The settings version is missing, malformed or unsupported.
    Version,
    /// An enumeration attribute has a value VirtualBox does not know.
    UnknownValue,
    /// A number is out of its allowed range.
    Range,
    /// A required attribute or element is missing.
    Missing,
    /// A UUID is malformed, null or used twice.
    Uuid,
    /// A medium referenced by the machine cannot be found.
    Medium,
    /// A machine or object named on the command line does not exist.
    NotFound,
    /// The request conflicts with the machine's state (e.g. it is running).
    State,
    /// The request itself is invalid (bad option value).
    Invalid,
}

/// An error with the file and position it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Classification.
    pub kind: ErrorKind,
    /// The file concerned, when there is one.
    pub file: Option<PathBuf>,
    /// Line and column in that file, when it applies.
    pub pos: Option<Pos>,
    /// The message, without file or position.
    pub message: String,
}

impl Error {
    /// An error without a position.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            file: None,
            pos: None,
            message: message.into(),
        }
    }

    /// An error at a position (file filled in later by [`Error::in_file`]).
    pub fn at(kind: ErrorKind, pos: Pos, message: impl Into<String>) -> Error {
        Error {
            kind,
            file: None,
            pos: if pos.line == 0 { None } else { Some(pos) },
            message: message.into(),
        }
    }

    /// Attach the file name if none is set yet.
    pub fn in_file(mut self, file: &Path) -> Error {
        if self.file.is_none() {
            self.file = Some(file.to_path_buf());
        }
        self
    }

    /// An I/O error on a file.
    pub fn io(file: &Path, e: &std::io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            file: Some(file.to_path_buf()),
            pos: None,
            message: e.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
            if let Some(p) = self.pos {
                write!(f, "{}:{}:", p.line, p.col)?;
            }
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, Error>;
