//! Minimal ELF64 little-endian section reader: just enough to find a
//! kernel module's `.modinfo` section and parse its `key=value` strings.
//!
//! Module files come from a downloaded package, so they are treated as
//! untrusted input: every offset and size is bounds-checked and malformed
//! files give an error, never a panic.

/// Errors while reading a module's ELF image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF64 little-endian file.
    #[error("not an ELF64 little-endian object")]
    NotElf64Le,
    /// A header or table points outside the file or overflows.
    #[error("corrupt ELF: {0}")]
    Corrupt(&'static str),
    /// The object has no section with the requested name.
    #[error("no {0} section")]
    NoSection(&'static str),
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, ElfError> {
    let s = b
        .get(
            off..off
                .checked_add(2)
                .ok_or(ElfError::Corrupt("offset overflow"))?,
        )
        .ok_or(ElfError::Corrupt("truncated"))?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, ElfError> {
    let s = b
        .get(
            off..off
                .checked_add(4)
                .ok_or(ElfError::Corrupt("offset overflow"))?,
        )
        .ok_or(ElfError::Corrupt("truncated"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, ElfError> {
    let s = b
        .get(
            off..off
                .checked_add(8)
                .ok_or(ElfError::Corrupt("offset overflow"))?,
        )
        .ok_or(ElfError::Corrupt("truncated"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn to_usize(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError::Corrupt("value exceeds address space"))
}

/// Returns the contents of the section called `name` (e.g. `.modinfo`).
pub fn section<'a>(elf: &'a [u8], name: &'static str) -> Result<&'a [u8], ElfError> {
    // e_ident: magic, EI_CLASS = 2 (64-bit), EI_DATA = 1 (little endian).
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(ElfError::NotElf64Le);
    }
    let shoff = to_usize(u64_at(elf, 0x28)?)?;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    let shstrndx = usize::from(u16_at(elf, 0x3e)?);
    if shentsize < 64 {
        return Err(ElfError::Corrupt("section header entry too small"));
    }
    // The whole table must lie inside the file; after this check every
    // header offset plus a field offset below 64 is in bounds and cannot
    // overflow.
    let table_end = shnum
        .checked_mul(shentsize)
        .and_then(|n| n.checked_add(shoff))
        .ok_or(ElfError::Corrupt("section header table overflow"))?;
    if table_end > elf.len() {
        return Err(ElfError::Corrupt("section header table outside file"));
    }
    // Section header fields used: sh_name (0), sh_type (4), sh_offset
    // (0x18), sh_size (0x20).
    let header = |i: usize| -> Result<usize, ElfError> {
        i.checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or(ElfError::Corrupt("section header offset overflow"))
    };
    let contents = |h: usize| -> Result<&'a [u8], ElfError> {
        // SHT_NOBITS (8) occupies no file space.
        if u32_at(elf, h + 4)? == 8 {
            return Ok(&[]);
        }
        let off = to_usize(u64_at(elf, h + 0x18)?)?;
        let size = to_usize(u64_at(elf, h + 0x20)?)?;
        let end = off
            .checked_add(size)
            .ok_or(ElfError::Corrupt("section size overflow"))?;
        elf.get(off..end)
            .ok_or(ElfError::Corrupt("section outside file"))
    };
    if shstrndx >= shnum {
        return Err(ElfError::Corrupt("bad section name table index"));
    }
    let strtab = contents(header(shstrndx)?)?;
    for i in 0..shnum {
        let h = header(i)?;
        let name_off = to_usize(u64::from(u32_at(elf, h)?))?;
        let rest = strtab
            .get(name_off..)
            .ok_or(ElfError::Corrupt("section name outside table"))?;
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return contents(h);
        }
    }
    Err(ElfError::NoSection(name))
}

/// Iterates the `key=value` pairs of a `.modinfo` section (NUL-separated
/// strings, possibly with alignment padding of extra NULs).
pub fn modinfo_pairs(modinfo: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    modinfo
        .split(|&c| c == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter_map(|s| s.split_once('='))
}

/// What the dependency computation needs from one module's `.modinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModInfo {
    /// `name=` (the kernel's module name; absent in very old modules).
    pub name: Option<String>,
    /// `depends=` split on commas, empties dropped.
    pub depends: Vec<String>,
    /// `vermagic=` (kernel version the module was built for).
    pub vermagic: Option<String>,
}

/// Parses the `.modinfo` section of a kernel module image.
pub fn modinfo(elf: &[u8]) -> Result<ModInfo, ElfError> {
    let sec = section(elf, ".modinfo")?;
    let mut info = ModInfo::default();
    for (k, v) in modinfo_pairs(sec) {
        match k {
            "name" => info.name = Some(v.to_string()),
            "vermagic" => info.vermagic = Some(v.to_string()),
            "depends" => {
                info.depends = v
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Test helper shared with the module-dependency tests: builds a tiny but
/// well-formed ELF64 relocatable with a `.modinfo` section.
#[cfg(test)]
pub fn fake_module(modinfo: &[u8]) -> Vec<u8> {
    // Layout: ELF header (64) | .modinfo | .shstrtab | section headers (3 x 64).
    let shstrtab = b"\0.modinfo\0.shstrtab\0";
    let modinfo_off = 64usize;
    let shstr_off = modinfo_off + modinfo.len();
    let shoff = (shstr_off + shstrtab.len() + 7) & !7;
    let mut f = vec![0u8; shoff + 3 * 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[0x10..0x12].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    f[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
    f[modinfo_off..shstr_off].copy_from_slice(modinfo);
    f[shstr_off..shstr_off + shstrtab.len()].copy_from_slice(shstrtab);
    let mut sh = |i: usize, name: u32, off: usize, size: usize| {
        let h = shoff + i * 64;
        f[h..h + 4].copy_from_slice(&name.to_le_bytes());
        f[h + 4..h + 8].copy_from_slice(&1u32.to_le_bytes()); // PROGBITS
        f[h + 0x18..h + 0x20].copy_from_slice(&(off as u64).to_le_bytes());
        f[h + 0x20..h + 0x28].copy_from_slice(&(size as u64).to_le_bytes());
    };
    sh(1, 1, modinfo_off, modinfo.len());
    sh(2, 10, shstr_off, shstrtab.len());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_fake_module() {
        let elf =
            fake_module(b"license=GPL\0depends=libata,scsi_mod\0\0name=ahci\0vermagic=6.1.0 SMP\0");
        let info = modinfo(&elf).unwrap();
        assert_eq!(info.name.as_deref(), Some("ahci"));
        assert_eq!(info.depends, ["libata", "scsi_mod"]);
        assert_eq!(info.vermagic.as_deref(), Some("6.1.0 SMP"));
    }

    #[test]
    fn empty_depends_is_no_dependency() {
        let info = modinfo(&fake_module(b"depends=\0name=e1000\0")).unwrap();
        assert!(info.depends.is_empty());
    }

    #[test]
    fn missing_section_and_non_elf() {
        let mut elf = fake_module(b"name=x\0");
        // Rename ".modinfo" in the string table.
        let pos = elf.windows(8).position(|w| w == b".modinfo").unwrap();
        elf[pos + 1] = b'M';
        assert_eq!(modinfo(&elf), Err(ElfError::NoSection(".modinfo")));
        assert_eq!(modinfo(b"#!/bin/sh"), Err(ElfError::NotElf64Le));
        let mut elf32 = fake_module(b"name=x\0");
        elf32[4] = 1;
        assert_eq!(modinfo(&elf32), Err(ElfError::NotElf64Le));
    }

    #[test]
    fn section_outside_file_is_corrupt() {
        let mut elf = fake_module(b"name=x\0");
        let shoff = u64_at(&elf, 0x28).unwrap() as usize;
        // .modinfo's sh_size -> huge.
        elf[shoff + 64 + 0x20..shoff + 64 + 0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(modinfo(&elf), Err(ElfError::Corrupt(_))));
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = modinfo(&data);
        }

        #[test]
        fn never_panics_on_mutated_header(idx in 0usize..64, val in any::<u8>(),
                                          idx2 in 0usize..400, val2 in any::<u8>()) {
            let mut elf = fake_module(b"depends=a,b\0name=m\0");
            elf[idx] = val;
            let j = idx2 % elf.len();
            elf[j] = val2;
            let _ = modinfo(&elf);
        }

        #[test]
        fn depends_roundtrip(deps in proptest::collection::vec("[a-z_][a-z0-9_]{0,15}", 0..8)) {
            let mi = format!("depends={}\0name=m\0", deps.join(","));
            let info = modinfo(&fake_module(mi.as_bytes())).unwrap();
            prop_assert_eq!(info.depends, deps);
        }
    }
}
