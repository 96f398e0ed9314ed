//! Assembles the kit initramfs: busybox and its applet links, `/init`, the
//! guest tests, the selected kernel modules with our `modules.dep`, and the
//! device nodes the kernel needs before devtmpfs is mounted. Written as
//! newc cpio by our own writer and gzip-compressed.

use std::io::Write;

use anyhow::Result;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::cpio::CpioWriter;
use super::moddep::Selection;

/// Everything that goes into the initramfs.
pub struct Input<'a> {
    /// The static busybox binary.
    pub busybox: &'a [u8],
    /// Applet paths relative to `/` (e.g. `usr/bin/awk`), from
    /// `busybox --list-full`; each becomes a symlink to `/bin/busybox`.
    pub applets: &'a [String],
    /// `uname -r` of the kernel (module directory name).
    pub kernel_release: &'a str,
    /// The modules to carry.
    pub modules: &'a Selection,
    /// Extra files for `/lib/modules/<ver>/` (e.g. `modules.builtin`).
    pub module_meta: &'a [(String, Vec<u8>)],
    /// The `/init` script.
    pub init: &'a [u8],
    /// Test scripts: (file name, contents), installed under `/tests/`.
    pub tests: &'a [(String, Vec<u8>)],
    /// Guest test clients: (name, static binary), installed under `/bin/`.
    pub bins: &'a [(String, Vec<u8>)],
    /// Text of `/etc/novabox-kit` (what the kit was built from).
    pub kit_info: &'a str,
}

/// Builds the uncompressed cpio archive.
pub fn cpio(inp: &Input) -> Result<Vec<u8>> {
    // mtime 0 keeps the archive reproducible: same inputs, same hash.
    let mut w = CpioWriter::new(Vec::new(), 0);
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root",
        "mnt", "tests",
    ] {
        w.dir(d, 0o755)?;
    }
    // The kernel opens /dev/console for init's stdio before init can mount
    // devtmpfs; without the node init would run with no console at all.
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.char_dev("dev/null", 0o666, 1, 3)?;
    w.file("bin/busybox", 0o755, inp.busybox)?;
    // /init is a `#!/bin/sh` script: /bin/sh must exist even if the applet
    // list is unavailable (then init runs `busybox --install -s`).
    w.symlink("bin/sh", "/bin/busybox")?;
    for a in inp.applets {
        let a = a.trim_start_matches('/');
        if a == "bin/busybox" || a == "bin/sh" || a == "init" || a.is_empty() {
            continue;
        }
        w.symlink(a, "/bin/busybox")?;
    }
    w.file("init", 0o755, inp.init)?;
    for (name, body) in inp.tests {
        w.file(&format!("tests/{name}"), 0o755, body)?;
    }
    for (name, body) in inp.bins {
        w.file(&format!("bin/{name}"), 0o755, body)?;
    }
    w.file("etc/novabox-kit", 0o644, inp.kit_info.as_bytes())?;
    let moddir = format!("lib/modules/{}", inp.kernel_release);
    w.dir(&moddir, 0o755)?;
    for m in &inp.modules.modules {
        w.file(&format!("{moddir}/{}", m.rel_path), 0o644, &m.image)?;
    }
    w.file(
        &format!("{moddir}/modules.dep"),
        0o644,
        inp.modules.modules_dep.as_bytes(),
    )?;
    w.file(
        &format!("{moddir}/modules.load-order"),
        0o644,
        inp.modules.load_order.as_bytes(),
    )?;
    for (name, body) in inp.module_meta {
        w.file(&format!("{moddir}/{name}"), 0o644, body)?;
    }
    Ok(w.finish()?)
}

/// What [`build`] made.
pub struct Built {
    /// The gzip-compressed archive.
    pub gz: Vec<u8>,
    /// Size of the uncompressed archive.
    pub raw_len: usize,
    /// Number of entries (read back from the archive as a self-check).
    pub entries: usize,
}

/// Builds the gzip-compressed initramfs, reading the archive back first so
/// a writer bug fails the build instead of the guest boot.
pub fn build(inp: &Input) -> Result<Built> {
    let raw = cpio(inp)?;
    let entries = super::cpio::read_archive(&raw)?.len();
    // flate2's gzip header carries mtime 0 and no name: reproducible.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&raw)?;
    Ok(Built {
        gz: gz.finish()?,
        raw_len: raw.len(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::super::cpio::{read_archive, EntryKind};
    use super::super::moddep::Module;
    use super::*;
    use std::io::Read;

    #[test]
    fn layout_roundtrips() {
        let sel = Selection {
            modules: vec![Module {
                name: "e1000".into(),
                rel_path: "kernel/drivers/net/ethernet/intel/e1000/e1000.ko".into(),
                image: b"\x7fELF-e1000".to_vec(),
                depends: vec![],
            }],
            modules_dep: "kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n".into(),
            load_order: "e1000\n".into(),
        };
        let applets = vec![
            "bin/ls".to_string(),
            "usr/bin/awk".to_string(),
            "bin/busybox".to_string(),
            "bin/sh".to_string(),
        ];
        let tests = vec![("smoke.sh".to_string(), b"exit 0\n".to_vec())];
        let meta = vec![("modules.builtin".to_string(), b"kernel/x.ko\n".to_vec())];
        let inp = Input {
            busybox: b"\x7fELF-busybox",
            applets: &applets,
            kernel_release: "6.1.0-48-amd64",
            modules: &sel,
            module_meta: &meta,
            init: b"#!/bin/sh\necho hi\n",
            tests: &tests,
            bins: &[],
            kit_info: "kernel=6.1\n",
        };
        let built = build(&inp).unwrap();
        let gz = built.gz;
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(gz, build(&inp).unwrap().gz, "reproducible");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        let entries = read_archive(&raw).unwrap();
        assert_eq!(built.raw_len, raw.len());
        assert_eq!(built.entries, entries.len());
        let get = |p: &str| {
            entries
                .iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("{p} missing"))
        };
        assert_eq!(
            get("init").kind,
            EntryKind::File(b"#!/bin/sh\necho hi\n".to_vec())
        );
        assert_eq!(get("init").perm, 0o755);
        assert_eq!(get("dev/console").kind, EntryKind::CharDev(5, 1));
        assert_eq!(
            get("bin/sh").kind,
            EntryKind::Symlink("/bin/busybox".into())
        );
        assert_eq!(
            get("usr/bin/awk").kind,
            EntryKind::Symlink("/bin/busybox".into())
        );
        assert_eq!(
            get("bin/busybox").kind,
            EntryKind::File(b"\x7fELF-busybox".to_vec())
        );
        assert_eq!(
            get("tests/smoke.sh").kind,
            EntryKind::File(b"exit 0\n".to_vec())
        );
        assert_eq!(
            get("lib/modules/6.1.0-48-amd64/kernel/drivers/net/ethernet/intel/e1000/e1000.ko").kind,
            EntryKind::File(b"\x7fELF-e1000".to_vec())
        );
        assert!(matches!(
            get("lib/modules/6.1.0-48-amd64/modules.dep").kind,
            EntryKind::File(_)
        ));
        assert!(matches!(
            get("lib/modules/6.1.0-48-amd64/modules.builtin").kind,
            EntryKind::File(_)
        ));
        // Every entry's parent directory comes before it.
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                let pi = entries
                    .iter()
                    .position(|x| x.path == parent)
                    .expect("parent present");
                assert!(pi < i, "{} before its parent", e.path);
                assert_eq!(entries[pi].kind, EntryKind::Dir);
            }
        }
    }

    /// Checks the real kit initramfs when one has been built: every
    /// modules.dep path is in the archive, and each module's ELF
    /// `depends=` is covered by its modules.dep line.
    #[test]
    fn real_kit_initramfs_is_consistent() {
        let kit = std::env::var_os("NOVABOX_KIT_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| super::super::repo_root().join("kit-cache"));
        let Ok(gz) = std::fs::read(kit.join("initramfs.cpio.gz")) else {
            eprintln!("no kit built in {}: skipping", kit.display());
            return;
        };
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        let entries = read_archive(&raw).unwrap();
        let dep = entries
            .iter()
            .find(|e| e.path.ends_with("/modules.dep"))
            .expect("modules.dep present");
        let moddir = dep.path.trim_end_matches("/modules.dep").to_string();
        let EntryKind::File(text) = &dep.kind else {
            panic!("modules.dep is not a file")
        };
        let text = String::from_utf8(text.clone()).unwrap();
        let file = |rel: &str| -> Vec<u8> {
            let p = format!("{moddir}/{rel}");
            match &entries
                .iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("{p} missing"))
                .kind
            {
                EntryKind::File(b) => b.clone(),
                k => panic!("{p} is {k:?}"),
            }
        };
        let name_of = |rel: &str| {
            super::super::moddep::canonical(rel.rsplit('/').next().unwrap().trim_end_matches(".ko"))
        };
        let mut lines = 0;
        for line in text.lines() {
            let (m, deps) = line.split_once(':').unwrap();
            let listed: Vec<String> = deps.split_whitespace().map(name_of).collect();
            let info = super::super::elf::modinfo(&file(m)).unwrap();
            for d in &info.depends {
                assert!(
                    listed.contains(&super::super::moddep::canonical(d)),
                    "{m}: {d} not in its modules.dep line"
                );
            }
            for d in deps.split_whitespace() {
                file(d);
            }
            lines += 1;
        }
        for root in super::super::ROOT_MODULES {
            assert!(
                text.lines()
                    .any(|l| name_of(l.split(':').next().unwrap()) == *root),
                "{root} missing"
            );
        }
        assert!(lines >= super::super::ROOT_MODULES.len());
        assert!(entries.iter().any(|e| e.path == "init"));
    }
}
