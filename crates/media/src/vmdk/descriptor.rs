//! The VMDK text descriptor: header keys, extent lines, disk database.

use std::collections::BTreeMap;

/// Access mode of an extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-write.
    Rw,
    /// Read-only.
    RdOnly,
    /// Not accessible.
    NoAccess,
}

/// Storage kind of an extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Hosted sparse extent (KDMV header).
    Sparse,
    /// Flat (raw) data.
    Flat,
    /// Reads as zeros, no file.
    Zero,
}

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// Access mode.
    pub access: Access,
    /// Size in sectors.
    pub sectors: u64,
    /// Kind.
    pub kind: ExtentKind,
    /// File name (relative to the descriptor), empty for ZERO.
    pub file: String,
    /// Start offset inside the file, in sectors (FLAT only).
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// `version`.
    pub version: u32,
    /// `CID`.
    pub cid: u32,
    /// `parentCID` (0xffffffff: none).
    pub parent_cid: u32,
    /// `createType`.
    pub create_type: String,
    /// `parentFileNameHint`.
    pub parent_hint: Option<String>,
    /// Extent lines in order.
    pub extents: Vec<ExtentLine>,
    /// `ddb.*` keys (without the `ddb.` prefix).
    pub ddb: BTreeMap<String, String>,
}

/// No parent.
pub const NO_PARENT: u32 = 0xFFFF_FFFF;

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
}

impl Descriptor {
    /// Parse descriptor text. Errors are human-readable problem descriptions.
    pub fn parse(text: &str) -> Result<Descriptor, String> {
        let mut d = Descriptor {
            parent_cid: NO_PARENT,
            ..Descriptor::default()
        };
        let mut saw_create_type = false;
        for (no, raw) in text.lines().enumerate() {
            let line = raw.trim_matches(|c: char| c.is_whitespace() || c == '\0');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
                d.extents
                    .push(parse_extent(line).map_err(|e| format!("line {}: {e}", no + 1))?);
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {}: expected key=value, got {line:?}", no + 1));
            };
            let k = k.trim();
            let v = unquote(v);
            let hex = |v: &str| {
                u32::from_str_radix(v, 16)
                    .map_err(|_| format!("line {}: bad hex number {v:?}", no + 1))
            };
            match k {
                "version" => {
                    d.version = v
                        .parse()
                        .map_err(|_| format!("line {}: bad version {v:?}", no + 1))?
                }
                "CID" => d.cid = hex(v)?,
                "parentCID" => d.parent_cid = hex(v)?,
                "createType" => {
                    d.create_type = v.to_string();
                    saw_create_type = true;
                }
                "parentFileNameHint" => d.parent_hint = Some(v.to_string()),
                _ => {
                    if let Some(key) = k.strip_prefix("ddb.") {
                        d.ddb.insert(key.to_string(), v.to_string());
                    }
                }
            }
        }
        if !saw_create_type {
            return Err("no createType".into());
        }
        if d.extents.is_empty() {
            return Err("no extents".into());
        }
        if d.extents.len() > 4096 {
            return Err(format!("absurd number of extents ({})", d.extents.len()));
        }
        Ok(d)
    }

    /// Total capacity in sectors.
    pub fn sectors(&self) -> Option<u64> {
        self.extents
            .iter()
            .try_fold(0u64, |a, e| a.checked_add(e.sectors))
    }

    /// Render as text (the layout VirtualBox and QEMU write).
    pub fn render(&self) -> String {
        let mut s = String::from("# Disk DescriptorFile\n");
        s += &format!("version={}\n", self.version.max(1));
        s += &format!("CID={:08x}\n", self.cid);
        s += &format!("parentCID={:08x}\n", self.parent_cid);
        s += &format!("createType=\"{}\"\n", self.create_type);
        if let Some(h) = &self.parent_hint {
            s += &format!("parentFileNameHint=\"{h}\"\n");
        }
        s += "\n# Extent description\n";
        for e in &self.extents {
            let acc = match e.access {
                Access::Rw => "RW",
                Access::RdOnly => "RDONLY",
                Access::NoAccess => "NOACCESS",
            };
            match e.kind {
                ExtentKind::Zero => s += &format!("{acc} {} ZERO\n", e.sectors),
                ExtentKind::Sparse => s += &format!("{acc} {} SPARSE \"{}\"\n", e.sectors, e.file),
                ExtentKind::Flat => {
                    s += &format!("{acc} {} FLAT \"{}\" {}\n", e.sectors, e.file, e.offset)
                }
            }
        }
        s += "\n# The disk Data Base\n#DDB\n\n";
        for (k, v) in &self.ddb {
            s += &format!("ddb.{k}=\"{v}\"\n");
        }
        s
    }
}

fn parse_extent(line: &str) -> Result<ExtentLine, String> {
    let mut it = line.splitn(3, char::is_whitespace);
    let access = match it.next() {
        Some("RW") => Access::Rw,
        Some("RDONLY") => Access::RdOnly,
        _ => Access::NoAccess,
    };
    let sectors: u64 = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad extent size in {line:?}"))?;
    if sectors > crate::bytes::MAX_DISK_SIZE / 512 {
        return Err(format!("absurd extent size {sectors} sectors"));
    }
    let rest = it.next().unwrap_or("").trim();
    let (ty, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let kind = match ty {
        "SPARSE" => ExtentKind::Sparse,
        "FLAT" | "VMFS" => ExtentKind::Flat,
        "ZERO" => ExtentKind::Zero,
        other => return Err(format!("unsupported extent type {other:?}")),
    };
    if kind == ExtentKind::Zero {
        return Ok(ExtentLine {
            access,
            sectors,
            kind,
            file: String::new(),
            offset: 0,
        });
    }
    let rest = rest.trim();
    let (file, tail) = if let Some(r) = rest.strip_prefix('"') {
        let end = r
            .find('"')
            .ok_or_else(|| format!("unterminated file name in {line:?}"))?;
        (&r[..end], r[end + 1..].trim())
    } else {
        rest.split_once(char::is_whitespace).unwrap_or((rest, ""))
    };
    if file.is_empty() {
        return Err(format!("extent without a file name in {line:?}"));
    }
    let offset = if tail.is_empty() {
        0
    } else {
        tail.parse()
            .map_err(|_| format!("bad extent offset in {line:?}"))?
    };
    Ok(ExtentLine {
        access,
        sectors,
        kind,
        file: file.to_string(),
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const QEMU: &str = "# Disk DescriptorFile\nversion=1\nCID=52ba3e2c\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n\n# Extent description\nRW 4194304 SPARSE \"t-s001.vmdk\"\nRW 2048 SPARSE \"t-s002.vmdk\"\nRW 100 ZERO\nRDONLY 8 FLAT \"my flat.vmdk\" 16\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"4161\"\nddb.uuid.image=\"01234567-89ab-cdef-0123-456789abcdef\"\n";

    #[test]
    fn parses_qemu_style_descriptor() {
        let d = Descriptor::parse(QEMU).unwrap();
        assert_eq!(d.cid, 0x52ba3e2c);
        assert_eq!(d.parent_cid, NO_PARENT);
        assert_eq!(d.create_type, "twoGbMaxExtentSparse");
        assert_eq!(d.extents.len(), 4);
        assert_eq!(d.extents[3].file, "my flat.vmdk");
        assert_eq!(d.extents[3].offset, 16);
        assert_eq!(d.extents[2].kind, ExtentKind::Zero);
        assert_eq!(d.sectors(), Some(4194304 + 2048 + 100 + 8));
        assert_eq!(d.ddb["virtualHWVersion"], "4");
    }

    #[test]
    fn render_parse_roundtrip() {
        let d = Descriptor::parse(QEMU).unwrap();
        assert_eq!(Descriptor::parse(&d.render()).unwrap(), d);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Descriptor::parse("createType=\"x\"\n").is_err());
        assert!(Descriptor::parse("createType=\"x\"\nRW abc SPARSE \"a\"\n").is_err());
        assert!(Descriptor::parse("createType=\"x\"\nRW 1 WEIRD \"a\"\n").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = Descriptor::parse(&s);
        }

        #[test]
        fn never_panics_on_extentish(n in any::<u64>(), f in "[a-z\" ]{0,10}", t in "(SPARSE|FLAT|ZERO|VMFS)") {
            let _ = Descriptor::parse(&format!("createType=\"x\"\nRW {n} {t} {f}\n"));
        }
    }
}
