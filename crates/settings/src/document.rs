//! A machine settings file on disk: the lossless XML tree, its version and
//! the typed model read from it; loading with positioned errors, and safe
//! saving (write `-tmp`, keep `-prev`, rename) of only what changed.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::model::Machine;
use crate::read;
use crate::version::{SettingsVersion, VersionString};
use crate::xml::{self, Document, Element, Pos};

/// The namespaces VirtualBox has written (new, then old innotek one).
pub const NAMESPACES: [&str; 2] = [
    "http://www.virtualbox.org/",
    "http://www.innotek.de/VirtualBox-settings",
];

/// Largest settings file accepted (real ones are a few hundred KiB at most;
/// this keeps a hostile file from exhausting memory).
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// A loaded `.vbox` file.
#[derive(Debug, Clone)]
pub struct MachineFile {
    /// Where it was loaded from (or will be saved to).
    pub path: PathBuf,
    /// The lossless tree.
    pub doc: Document,
    /// The settings version and platform suffix.
    pub version: VersionString,
    /// The model as read (with defaults applied).
    pub machine: Machine,
}

/// Read a settings file into bytes with the checks every loader needs.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, &e))?;
    if meta.is_dir() {
        return Err(Error {
            kind: ErrorKind::Io,
            file: Some(path.to_path_buf()),
            pos: None,
            message: "is a directory, not a settings file".into(),
        });
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(Error {
            kind: ErrorKind::Io,
            file: Some(path.to_path_buf()),
            pos: None,
            message: format!("file is larger than {MAX_FILE_SIZE} bytes"),
        });
    }
    std::fs::read(path).map_err(|e| Error::io(path, &e))
}

/// Parse XML and check the `VirtualBox` root, namespace and version.
pub fn parse_settings_xml(bytes: &[u8]) -> Result<(Document, VersionString)> {
    let doc = xml::parse_bytes(bytes).map_err(|e| Error::at(ErrorKind::Xml, e.pos, e.msg))?;
    let root = &doc.root;
    if root.local() != "VirtualBox" {
        return Err(Error::at(
            ErrorKind::Format,
            root.pos,
            format!("root element is <{}>, expected <VirtualBox>", root.name),
        ));
    }
    let ns_attr = if root.name.contains(':') {
        let prefix = &root.name[..root.name.rfind(':').unwrap_or(0)];
        format!("xmlns:{prefix}")
    } else {
        "xmlns".to_string()
    };
    if let Some(ns) = root.attr(&ns_attr) {
        if !NAMESPACES.contains(&ns) {
            let pos = root.attr_node(&ns_attr).map(|a| a.pos).unwrap_or(root.pos);
            return Err(Error::at(
                ErrorKind::Format,
                pos,
                format!(
                    "unknown namespace \"{ns}\" (expected \"{}\")",
                    NAMESPACES[0]
                ),
            ));
        }
    }
    let Some(vs) = root.attr("version") else {
        return Err(Error::at(
            ErrorKind::Version,
            root.pos,
            "<VirtualBox> lacks the required version attribute",
        ));
    };
    let version = VersionString::parse(vs).map_err(|m| {
        let pos = root.attr_node("version").map(|a| a.pos).unwrap_or(root.pos);
        Error::at(ErrorKind::Version, pos, m)
    })?;
    if version.version.is_future() {
        tracing::warn!(
            "settings version {} is newer than {}; reading with the newest rules",
            vs,
            crate::version::NEWEST
        );
    }
    Ok((doc, version))
}

impl MachineFile {
    /// Load and validate a `.vbox` file. Errors name the file and, where it
    /// applies, line and column.
    pub fn load(path: &Path) -> Result<MachineFile> {
        let bytes = read_file(path)?;
        let mut f = Self::from_bytes(path, &bytes).map_err(|e| e.in_file(path))?;
        // Relative paths inside resolve against the machine folder, so keep
        // an absolute path to it (messages still name the file as given).
        if let Ok(abs) = std::path::absolute(path) {
            f.path = abs;
        }
        Ok(f)
    }

    /// Parse from memory (`path` is only used to resolve relative paths and
    /// in messages).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<MachineFile> {
        let (doc, version) = parse_settings_xml(bytes)?;
        let m = machine_element(&doc.root)?;
        let machine = read::read_machine(m, version.version)?;
        Ok(MachineFile {
            path: path.to_path_buf(),
            doc,
            version,
            machine,
        })
    }

    /// The settings version number.
    pub fn settings_version(&self) -> SettingsVersion {
        self.version.version
    }

    /// The folder containing the `.vbox` (relative paths resolve against it).
    pub fn machine_folder(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Re-read the model from the tree (after the tree changed).
    pub fn reread(&mut self) -> Result<()> {
        let m = machine_element(&self.doc.root)?;
        self.machine = read::read_machine(m, self.version.version)?;
        Ok(())
    }

    /// The serialised document.
    pub fn to_bytes(&mut self) -> Vec<u8> {
        self.doc.to_bytes()
    }

    /// Write the document safely: `<file>-tmp`, flush, rename the old file
    /// to `<file>-prev` (when it is at least 16 bytes, as VirtualBox does),
    /// rename `-tmp` into place, flush the directory. A running machine is
    /// refused.
    pub fn save(&mut self) -> Result<()> {
        if let Some(pid) = crate::lock::running_pid(&self.path) {
            return Err(Error {
                kind: ErrorKind::State,
                file: Some(self.path.clone()),
                pos: None,
                message: format!(
                    "machine \"{}\" is running (pid {pid}); refusing to change its settings",
                    self.machine.name
                ),
            });
        }
        let bytes = self.to_bytes();
        safe_write(&self.path, &bytes)
    }
}

/// Find the `Machine` child of the root (refusing encrypted machines).
pub fn machine_element(root: &Element) -> Result<&Element> {
    if let Some(e) = root.child("MachineEncrypted") {
        return Err(Error::at(
            ErrorKind::Format,
            e.pos,
            "the machine settings are encrypted (MachineEncrypted); novabox cannot decrypt them",
        ));
    }
    root.child("Machine").ok_or_else(|| {
        Error::at(
            ErrorKind::Format,
            root.pos,
            "<VirtualBox> has no <Machine> element: not a machine settings file",
        )
    })
}

/// Mutable access to the `Machine` element.
pub fn machine_element_mut(root: &mut Element) -> Result<&mut Element> {
    let pos = root.pos;
    root.child_mut("Machine")
        .ok_or_else(|| Error::at(ErrorKind::Format, pos, "no <Machine> element"))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// VirtualBox's safe-save sequence for any settings file.
pub fn safe_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = sibling(path, "-tmp");
    let prev = sibling(path, "-prev");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, &e));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.len() >= 16 {
            if let Err(e) = std::fs::rename(path, &prev) {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(path, &e));
            }
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, &e))?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Position helper for callers that build errors about an element.
pub fn pos_of(el: &Element) -> Pos {
    el.pos
}
