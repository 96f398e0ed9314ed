//! The `.vbox` and `VirtualBox.xml` model: load, validate, save.
//!
//! (Full API documentation is at the end of this module's development; see
//! the module list.)

pub mod config;
pub mod create;
pub mod document;
pub mod enums;
pub mod error;
pub mod info;
pub mod layout;
pub mod lock;
pub mod model;
pub mod read;
pub mod registry;
pub mod resolve;
pub mod values;
pub mod version;
pub mod write;
pub mod xml;

pub use document::MachineFile;
pub use enums::*;
pub use error::{Error, ErrorKind, Result};
pub use model::*;
pub use values::Uuid;
pub use version::{SettingsVersion, VersionString};
