//! Kernel module selection: find modules in an extracted `/lib/modules/<ver>`
//! tree, read each one's `depends=` from its ELF `.modinfo`, compute the
//! dependency closure of the wanted modules and write `modules.dep` (the
//! format busybox and kmod `modprobe` read) plus an explicit load order.
//!
//! The Debian package ships no `modules.dep` (depmod runs at install time),
//! so we compute it ourselves, and only for the modules the kit carries.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::elf;

/// Errors while resolving modules.
#[derive(Debug, thiserror::Error)]
pub enum ModError {
    /// A wanted module, or a dependency, is not in the package.
    #[error("module {name:?} (needed by {needed_by}) is not in the kernel package")]
    Missing {
        /// The module that was not found.
        name: String,
        /// Who asked for it (`<kit>` for a root module).
        needed_by: String,
    },
    /// The `depends=` graph has a cycle (the kernel would refuse to load it).
    #[error("module dependency cycle: {0}")]
    Cycle(String),
    /// A module file could not be read or decompressed.
    #[error("reading module {path}: {source}")]
    Io {
        /// Path of the module file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A module file is not a valid ELF module.
    #[error("module {path}: {source}")]
    Elf {
        /// Path of the module file.
        path: PathBuf,
        /// Underlying error.
        source: elf::ElfError,
    },
    /// The `name=` in `.modinfo` disagrees with the file name.
    #[error("module file {path} declares name={declared:?}")]
    NameMismatch {
        /// Path of the module file.
        path: PathBuf,
        /// The name in `.modinfo`.
        declared: String,
    },
    /// A compression format we do not decompress.
    #[error("module {0} uses an unsupported compression (only .ko, .ko.xz, .ko.gz)")]
    Unsupported(PathBuf),
}

/// Canonical module name: the kernel treats `-` and `_` alike and reports
/// `_` (e.g. file `snd-pcm.ko` is module `snd_pcm`).
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Computes the dependency closure of `roots` and returns it in a valid
/// load order (every module after all of its dependencies). `deps_of`
/// returns a module's direct dependencies, or `None` if it does not exist.
/// Ties are broken by name, so the order is deterministic.
pub fn closure<F>(roots: &[String], mut deps_of: F) -> Result<Vec<String>, ModError>
where
    F: FnMut(&str) -> Result<Option<Vec<String>>, ModError>,
{
    #[derive(PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<String, Mark> = BTreeMap::new();
    let mut order = Vec::new();
    // Iterative DFS (post-order) so deep chains cannot overflow the stack.
    // Each frame: module name, its sorted deps, index of the next dep.
    let mut roots: Vec<String> = roots.iter().map(|r| canonical(r)).collect();
    roots.sort();
    roots.dedup();
    for root in roots {
        if marks.contains_key(&root) {
            continue;
        }
        let deps = deps_of(&root)?.ok_or_else(|| ModError::Missing {
            name: root.clone(),
            needed_by: "<kit>".into(),
        })?;
        let mut stack: Vec<(String, Vec<String>, usize)> = vec![(root.clone(), sorted(deps), 0)];
        marks.insert(root, Mark::Visiting);
        while let Some((name, deps, next)) = stack.last_mut() {
            if let Some(dep) = deps.get(*next).cloned() {
                *next += 1;
                match marks.get(&dep) {
                    Some(Mark::Done) => continue,
                    Some(Mark::Visiting) => {
                        let mut path: Vec<&str> = stack.iter().map(|f| f.0.as_str()).collect();
                        let start = path.iter().position(|p| *p == dep).unwrap_or(0);
                        path.drain(..start);
                        path.push(&dep);
                        return Err(ModError::Cycle(path.join(" -> ")));
                    }
                    None => {
                        let needed_by = name.clone();
                        let dd = deps_of(&dep)?.ok_or_else(|| ModError::Missing {
                            name: dep.clone(),
                            needed_by,
                        })?;
                        marks.insert(dep.clone(), Mark::Visiting);
                        stack.push((dep, sorted(dd), 0));
                    }
                }
            } else {
                let (done, _, _) = stack.pop().expect("stack is non-empty here");
                marks.insert(done.clone(), Mark::Done);
                order.push(done);
            }
        }
    }
    Ok(order)
}

fn sorted(deps: Vec<String>) -> Vec<String> {
    let mut d: Vec<String> = deps.iter().map(|x| canonical(x)).collect();
    d.sort();
    d.dedup();
    d
}

/// Renders `modules.dep` for the modules in `order` (a load order from
/// [`closure`]). Each line is `path: dep-paths...` with the module's full
/// transitive dependencies listed the way kmod's depmod does: a module's
/// dependencies come before the modules they depend on, so loading the list
/// from the end (as busybox and kmod modprobe do) is a valid load order.
pub fn render_modules_dep(
    order: &[String],
    direct: &BTreeMap<String, Vec<String>>,
    path_of: &BTreeMap<String, String>,
) -> String {
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut out = String::new();
    let mut lines: Vec<&String> = order.iter().collect();
    lines.sort_by_key(|m| path_of.get(*m));
    for m in lines {
        // Transitive dependencies of m.
        let mut all = BTreeSet::new();
        let mut todo: Vec<&str> = direct
            .get(m)
            .map(|d| d.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(d) = todo.pop() {
            if all.insert(d) {
                if let Some(dd) = direct.get(d) {
                    todo.extend(dd.iter().map(String::as_str));
                }
            }
        }
        let mut deps: Vec<&str> = all.into_iter().collect();
        // Latest in load order first, so the list read backwards loads
        // dependencies before their users.
        deps.sort_by_key(|d| std::cmp::Reverse(rank.get(d).copied().unwrap_or(0)));
        out.push_str(path_of.get(m).map(String::as_str).unwrap_or(m));
        out.push(':');
        for d in deps {
            out.push(' ');
            out.push_str(path_of.get(d).map(String::as_str).unwrap_or(d));
        }
        out.push('\n');
    }
    out
}

/// One module selected for the initramfs.
#[derive(Debug, Clone)]
pub struct Module {
    /// Canonical module name.
    pub name: String,
    /// Path relative to `/lib/modules/<ver>/`, always ending in `.ko`
    /// (compressed modules are stored decompressed).
    pub rel_path: String,
    /// The (decompressed) module image.
    pub image: Vec<u8>,
    /// Direct dependencies (canonical names).
    pub depends: Vec<String>,
}

/// The result of [`select`]: modules in load order plus the generated files.
#[derive(Debug)]
pub struct Selection {
    /// Selected modules, in load order (dependencies first).
    pub modules: Vec<Module>,
    /// Contents of `modules.dep`.
    pub modules_dep: String,
    /// Contents of `modules.load-order` (one module name per line).
    pub load_order: String,
}

/// Indexes `<moddir>/kernel/**/*.ko{,.xz,.gz,.zst}` by canonical module name.
pub fn index(moddir: &Path) -> Result<BTreeMap<String, PathBuf>, ModError> {
    let mut idx = BTreeMap::new();
    let mut dirs = vec![moddir.join("kernel")];
    while let Some(dir) = dirs.pop() {
        let rd = fs::read_dir(&dir).map_err(|source| ModError::Io {
            path: dir.clone(),
            source,
        })?;
        for ent in rd {
            let ent = ent.map_err(|source| ModError::Io {
                path: dir.clone(),
                source,
            })?;
            let p = ent.path();
            let ft = ent.file_type().map_err(|source| ModError::Io {
                path: p.clone(),
                source,
            })?;
            if ft.is_dir() {
                dirs.push(p);
                continue;
            }
            let fname = ent.file_name().to_string_lossy().into_owned();
            if let Some(stem) = [".ko", ".ko.xz", ".ko.gz", ".ko.zst"]
                .iter()
                .find_map(|ext| fname.strip_suffix(ext))
            {
                idx.insert(canonical(stem), p);
            }
        }
    }
    Ok(idx)
}

/// Reads a module file, decompressing `.xz` / `.gz`.
fn read_module(path: &Path) -> Result<Vec<u8>, ModError> {
    let io = |source| ModError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = fs::read(path).map_err(io)?;
    let name = path.to_string_lossy();
    if name.ends_with(".ko") {
        Ok(raw)
    } else if name.ends_with(".ko.xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("xz: {e:?}"),
            ))
        })?;
        Ok(out)
    } else if name.ends_with(".ko.gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Err(ModError::Unsupported(path.to_path_buf()))
    }
}

/// Selects `roots` and their dependency closure from the module tree at
/// `moddir` (`.../lib/modules/<ver>`), reading only the modules needed.
pub fn select(moddir: &Path, roots: &[&str]) -> Result<Selection, ModError> {
    let idx = index(moddir)?;
    let mut loaded: BTreeMap<String, Module> = BTreeMap::new();
    let roots: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    let order = closure(&roots, |name| {
        let Some(path) = idx.get(name) else {
            return Ok(None);
        };
        let image = read_module(path)?;
        let info = elf::modinfo(&image).map_err(|source| ModError::Elf {
            path: path.clone(),
            source,
        })?;
        if let Some(declared) = &info.name {
            if canonical(declared) != name {
                return Err(ModError::NameMismatch {
                    path: path.clone(),
                    declared: declared.clone(),
                });
            }
        }
        let rel = path
            .strip_prefix(moddir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let rel_path = match rel.rfind(".ko") {
            Some(i) => format!("{}.ko", &rel[..i]),
            None => rel,
        };
        let depends: Vec<String> = info.depends.iter().map(|d| canonical(d)).collect();
        loaded.insert(
            name.to_string(),
            Module {
                name: name.to_string(),
                rel_path,
                image,
                depends: depends.clone(),
            },
        );
        Ok(Some(depends))
    })?;
    let direct: BTreeMap<String, Vec<String>> = loaded
        .iter()
        .map(|(k, m)| (k.clone(), m.depends.clone()))
        .collect();
    let path_of: BTreeMap<String, String> = loaded
        .iter()
        .map(|(k, m)| (k.clone(), m.rel_path.clone()))
        .collect();
    let modules_dep = render_modules_dep(&order, &direct, &path_of);
    let load_order = order.iter().map(|m| format!("{m}\n")).collect();
    let modules = order.iter().filter_map(|n| loaded.remove(n)).collect();
    Ok(Selection {
        modules,
        modules_dep,
        load_order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(m, d)| (m.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn run(g: &BTreeMap<String, Vec<String>>, roots: &[&str]) -> Result<Vec<String>, ModError> {
        let roots: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
        closure(&roots, |n| Ok(g.get(n).cloned()))
    }

    /// The real shape of the ahci/ata_piix chain in Debian 6.1.
    fn ata() -> BTreeMap<String, Vec<String>> {
        graph(&[
            ("ahci", &["libahci", "libata"]),
            ("libahci", &["libata"]),
            ("libata", &["scsi_mod"]),
            ("ata_piix", &["libata"]),
            ("scsi_mod", &["scsi_common"]),
            ("scsi_common", &[]),
            ("sd_mod", &["scsi_mod", "scsi_common", "t10_pi"]),
            ("t10_pi", &["crc_t10dif", "crc64_rocksoft"]),
            ("crc_t10dif", &[]),
            ("crc64_rocksoft", &[]),
            ("e1000", &[]),
            ("unused", &[]),
        ])
    }

    #[test]
    fn closure_orders_dependencies_first() {
        let g = ata();
        let order = run(&g, &["ahci", "ata_piix", "e1000"]).unwrap();
        assert_eq!(
            order,
            ["ahci", "libahci", "libata", "scsi_mod", "scsi_common"]
                .iter()
                .rev()
                .chain(["ata_piix", "e1000"].iter())
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        );
        assert!(!order.contains(&"unused".to_string()));
    }

    #[test]
    fn dash_and_underscore_are_the_same_module() {
        let g = ata();
        let order = run(&g, &["ata-piix"]).unwrap();
        assert_eq!(order.last().unwrap(), "ata_piix");
    }

    #[test]
    fn missing_dependency_names_the_user() {
        let g = graph(&[("vboxsf", &["vboxguest"])]);
        match run(&g, &["vboxsf"]) {
            Err(ModError::Missing { name, needed_by }) => {
                assert_eq!(name, "vboxguest");
                assert_eq!(needed_by, "vboxsf");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(run(&g, &["nope"]), Err(ModError::Missing { .. })));
    }

    #[test]
    fn cycle_is_reported_with_its_path() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        match run(&g, &["a"]) {
            Err(ModError::Cycle(p)) => assert_eq!(p, "a -> b -> c -> a"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn modules_dep_lists_deepest_last() {
        let g = ata();
        let order = run(&g, &["ahci", "sd_mod"]).unwrap();
        let path_of: BTreeMap<String, String> = order
            .iter()
            .map(|m| (m.clone(), format!("kernel/{m}.ko")))
            .collect();
        let dep = render_modules_dep(&order, &g, &path_of);
        let ahci = dep
            .lines()
            .find(|l| l.starts_with("kernel/ahci.ko:"))
            .unwrap();
        assert_eq!(
            ahci,
            "kernel/ahci.ko: kernel/libahci.ko kernel/libata.ko kernel/scsi_mod.ko kernel/scsi_common.ko"
        );
        assert!(dep.contains("kernel/scsi_common.ko:\n"));
        assert_eq!(dep.lines().count(), order.len());
    }

    #[test]
    fn select_reads_real_elf_modules_from_a_tree() {
        let dir = std::env::temp_dir().join(format!("novabox-kit-moddep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let put = |rel: &str, modinfo: &str| {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, elf::fake_module(modinfo.as_bytes())).unwrap();
        };
        put(
            "kernel/fs/vboxsf/vboxsf.ko",
            "depends=vboxguest\0name=vboxsf\0",
        );
        put(
            "kernel/drivers/virt/vboxguest/vboxguest.ko",
            "depends=\0name=vboxguest\0",
        );
        put("kernel/drivers/other.ko", "depends=\0name=other\0");
        // An xz-compressed module is decompressed and stored as .ko.
        let mut xz = Vec::new();
        lzma_rs::xz_compress(
            &mut &elf::fake_module(b"depends=vboxsf\0name=zmod\0")[..],
            &mut xz,
        )
        .unwrap();
        fs::write(dir.join("kernel/fs/zmod.ko.xz"), xz).unwrap();
        let sel = select(&dir, &["zmod"]).unwrap();
        let names: Vec<&str> = sel.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["vboxguest", "vboxsf", "zmod"]);
        assert_eq!(sel.modules[2].rel_path, "kernel/fs/zmod.ko");
        assert!(elf::modinfo(&sel.modules[2].image).is_ok());
        assert_eq!(sel.load_order, "vboxguest\nvboxsf\nzmod\n");
        assert!(sel
            .modules_dep
            .contains("kernel/fs/zmod.ko: kernel/fs/vboxsf/vboxsf.ko kernel/drivers/virt/vboxguest/vboxguest.ko\n"));
        // A module whose name= disagrees with its file name is rejected.
        put("kernel/bad.ko", "name=good\0");
        assert!(matches!(
            select(&dir, &["bad"]),
            Err(ModError::NameMismatch { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        /// For random DAGs (edges only from higher to lower index), the
        /// closure contains exactly the reachable set, each module after its
        /// dependencies, and modules.dep read backwards is a valid order.
        #[test]
        fn closure_is_a_topological_order(
            edges in proptest::collection::vec((0usize..12, 0usize..12), 0..40),
            roots in proptest::collection::vec(0usize..12, 1..4),
        ) {
            let mut g: BTreeMap<String, Vec<String>> =
                (0..12).map(|i| (format!("m{i}"), Vec::new())).collect();
            for (a, b) in edges {
                if a > b {
                    g.get_mut(&format!("m{a}")).unwrap().push(format!("m{b}"));
                }
            }
            let root_names: Vec<String> = roots.iter().map(|r| format!("m{r}")).collect();
            let order = closure(&root_names, |n| Ok(g.get(n).cloned())).unwrap();
            // Reachable set.
            let mut reach = BTreeSet::new();
            let mut todo = root_names.clone();
            while let Some(n) = todo.pop() {
                if reach.insert(n.clone()) { todo.extend(g[&n].clone()); }
            }
            prop_assert_eq!(order.iter().cloned().collect::<BTreeSet<_>>(), reach);
            prop_assert_eq!(order.len(), order.iter().collect::<BTreeSet<_>>().len());
            let pos: BTreeMap<&String, usize> = order.iter().enumerate().map(|(i, m)| (m, i)).collect();
            for m in &order {
                for d in &g[m] {
                    prop_assert!(pos[d] < pos[m], "{} before its dependency {}", m, d);
                }
            }
            let path_of: BTreeMap<String, String> = order.iter().map(|m| (m.clone(), m.clone())).collect();
            for line in render_modules_dep(&order, &g, &path_of).lines() {
                let (m, deps) = line.split_once(':').unwrap();
                let mut seq: Vec<&str> = deps.split_whitespace().collect();
                seq.reverse();
                seq.push(m);
                let mut loaded = BTreeSet::new();
                for x in seq {
                    for d in &g[x] { prop_assert!(loaded.contains(d.as_str()), "{} loaded before {}", x, d); }
                    loaded.insert(x);
                }
            }
        }
    }
}
