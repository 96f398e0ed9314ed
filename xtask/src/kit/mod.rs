//! `cargo xtask kit`: builds the guest kit, real guest software from Debian
//! 12 packages for integration tests and the demo, into a git-ignored cache
//! (`kit-cache/` at the repository root, or `$NOVABOX_KIT_DIR`):
//!
//! - `vmlinuz`: the Debian kernel (bzImage) of `linux-image-amd64`;
//! - `bios.bin`, `bios-256k.bin`, `vgabios-*.bin`: SeaBIOS builds;
//! - `initramfs.cpio.gz`: busybox, `guest/init`, `guest/tests/*.sh` and the
//!   kernel modules the device tests need, with a computed `modules.dep`;
//! - `manifest.json`: package versions and the SHA-256 of every file.
//!
//! Nothing is installed on the host: packages are fetched with
//! `apt-get download` and unpacked with `dpkg-deb -x` inside the cache.
//! A rerun with a complete, matching cache only re-hashes files (no apt, no
//! network). `--check` verifies without building; `--update` re-resolves
//! the packages to apt's current candidates.

mod apt;
mod client;
mod cpio;
mod disk;
mod elf;
mod initramfs;
mod iso;
mod kconfig;
mod manifest;
mod moddep;
mod progress;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use manifest::{sha256_file, sha256_hex, FileEntry, Manifest, Package};
use progress::Steps;

/// Kit layout version; bump when the builder's output changes for the same
/// inputs, so existing caches get rebuilt.
const FORMAT: u32 = 6;
/// The kernel metapackage; its dependency is the real image package.
const KERNEL_META: &str = "linux-image-amd64";
/// Static busybox: the whole userland of the initramfs.
const BUSYBOX: &str = "busybox-static";
/// SeaBIOS builds (bios.bin, bios-256k.bin, vgabios-*.bin).
const SEABIOS: &str = "seabios";
/// Modules the kit carries (plus their dependency closure): VirtualBox
/// guest drivers, the e1000 NIC, AHCI/PIIX IDE storage and SCSI disk/CD.
const ROOT_MODULES: &[&str] = &[
    "vboxguest",
    "vboxsf",
    "vboxvideo",
    "e1000",
    "ahci",
    "ata_piix",
    "sd_mod",
    "sr_mod",
    // The Guest Additions test reads the mouse integration device's and the ACPI power
    // button's events.
    "evdev",
    "button",
    // The absolute-pointer test reads the buttons from the PS/2 mouse (with vboxguest,
    // mainline Linux takes positions from the VMMDev and buttons from psmouse).
    "psmouse",
    // QEMU's 9p share, for `cargo xtask bench-vboxsf`.
    "9p",
    "9pnet_virtio",
    "virtio_pci",
];
/// SeaBIOS files always required.
const BIOS_FILES: &[&str] = &["bios.bin", "bios-256k.bin"];

const USAGE: &str = "usage: cargo xtask kit [--check | --update]

Builds the guest kit (kernel, SeaBIOS, busybox initramfs with modules and
guest/tests) from Debian packages into kit-cache/ ($NOVABOX_KIT_DIR).
  --check    verify the cache against manifest.json; no download; exit 1
             if anything is missing, changed or stale
  --update   re-resolve packages to apt's current versions (apt-get update
             when the lists are missing or stale) and rebuild what changed";

/// Entry point of `cargo xtask kit [args]`. A failed `--check` exits the
/// process with status 1 after listing what is wrong.
pub fn run(args: &[String]) -> Result<()> {
    let mut check = false;
    let mut update = false;
    for a in args {
        match a.as_str() {
            "--check" => check = true,
            "--update" => update = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if check && update {
        bail!("--check and --update exclude each other");
    }
    let started = Instant::now();
    let root = repo_root();
    let kit = kit_dir(&root);
    let guest = GuestFiles::read(&root)?;
    let inputs = guest.input_hashes();
    let old = Manifest::load(&kit);

    if check {
        let Some(m) = old else {
            check_failed(&format!(
                "kit check failed: {} has no (valid) manifest.json: the kit is missing; \
                 run `cargo xtask kit`",
                kit.display()
            ));
        };
        let problems = m.problems(&kit, FORMAT, &inputs);
        if problems.is_empty() {
            eprintln!(
                "kit: ok: {} files verified in {} (kernel {}) in {:.0} ms",
                m.files.len(),
                kit.display(),
                m.kernel_release,
                started.elapsed().as_secs_f64() * 1e3
            );
            return Ok(());
        }
        check_failed(&format!(
            "kit check failed in {}:\n  {}\nrun `cargo xtask kit` to (re)build it",
            kit.display(),
            problems.join("\n  ")
        ));
    }

    if !update {
        if let Some(m) = &old {
            let problems = m.problems(&kit, FORMAT, &inputs);
            if problems.is_empty() {
                eprintln!(
                    "kit: up to date in {} (kernel {}, {} files verified in {:.0} ms)",
                    kit.display(),
                    m.kernel_release,
                    m.files.len(),
                    started.elapsed().as_secs_f64() * 1e3
                );
                return Ok(());
            }
            for p in &problems {
                eprintln!("kit: rebuild needed: {p}");
            }
        }
    }
    build(&kit, &guest, inputs, old.as_ref(), update)
}

/// Reports a failed `--check` and exits with status 1. A plain message on
/// purpose: an error returned from main would add a backtrace when
/// RUST_BACKTRACE is set, burying the list of problems.
fn check_failed(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1)
}

/// The repository root (the workspace containing xtask).
fn repo_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The kit directory: `$NOVABOX_KIT_DIR` or `<repo>/kit-cache`.
fn kit_dir(root: &Path) -> PathBuf {
    match std::env::var_os("NOVABOX_KIT_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => root.join("kit-cache"),
    }
}

/// Writes `data` to `path` through a temporary file and a rename, so readers
/// (and an interrupted run) never see a half-written file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The guest-side sources: `guest/init`, `guest/tests/*.sh` and `guest/client/*.c`.
struct GuestFiles {
    init: Vec<u8>,
    tests: Vec<(String, Vec<u8>)>,
    clients: Vec<(String, Vec<u8>)>,
}

impl GuestFiles {
    fn read(root: &Path) -> Result<Self> {
        let init_path = root.join("guest/init");
        let init = std::fs::read(&init_path)
            .with_context(|| format!("reading {}", init_path.display()))?;
        let mut tests = Vec::new();
        let dir = root.join("guest/tests");
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".sh") {
                tests.push((name, std::fs::read(e.path())?));
            }
        }
        tests.sort();
        let mut clients = Vec::new();
        let dir = root.join("guest/client");
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".c") {
                    clients.push((name, std::fs::read(e.path())?));
                }
            }
        }
        clients.sort();
        Ok(Self {
            init,
            tests,
            clients,
        })
    }

    /// Hashes of every non-package input of the initramfs.
    fn input_hashes(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("guest/init".to_string(), sha256_hex(&self.init));
        for (name, body) in &self.tests {
            m.insert(format!("guest/tests/{name}"), sha256_hex(body));
        }
        for (name, body) in &self.clients {
            m.insert(format!("guest/client/{name}"), sha256_hex(body));
        }
        m.insert("modules".to_string(), ROOT_MODULES.join(","));
        m
    }
}

/// A package to download, with its exact version.
struct Wanted {
    name: String,
    version: String,
    /// From the old manifest, when pinned: lets a cached `.deb` be verified
    /// without asking apt.
    known: Option<(String, String)>,
}

fn build(
    kit: &Path,
    guest: &GuestFiles,
    inputs: BTreeMap<String, String>,
    old: Option<&Manifest>,
    update: bool,
) -> Result<()> {
    let mut steps = Steps::new(9);
    for d in ["debs", "pkgs"] {
        std::fs::create_dir_all(kit.join(d))
            .with_context(|| format!("creating {}", kit.join(d).display()))?;
    }
    let mut updated = false;

    // 1. Versions: pinned by the previous manifest unless --update.
    steps.step("resolving package versions");
    let pinned = if update {
        None
    } else {
        old.and_then(pinned_packages)
    };
    let (meta, wanted) = match pinned {
        Some(p) => {
            steps.note("using the versions pinned in manifest.json (--update re-resolves)");
            p
        }
        None => {
            if let Some(why) = apt::lists_need_update() {
                steps.note(&format!("{why}: apt-get update"));
                apt::update()?;
                updated = true;
            }
            resolve()?
        }
    };
    for w in &wanted {
        steps.note(&format!("{} {}", w.name, w.version));
    }

    // 2. Download (or reuse) the .debs.
    steps.step("downloading packages");
    let mut debs = Vec::new();
    for w in &wanted {
        let (file, sha) = fetch(kit, w, &mut updated, &steps)?;
        debs.push((w, file, sha));
    }

    // 3. Extract each .deb into pkgs/<name>/ (skipped when unchanged).
    steps.step("extracting packages (dpkg-deb -x, nothing installed on the host)");
    let mut trees = BTreeMap::new();
    for (w, file, sha) in &debs {
        let dest = kit.join("pkgs").join(&w.name);
        let stamp = dest.join(".novabox-deb-sha256");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(sha.as_str()) {
            steps.note(&format!("{}: already extracted", w.name));
        } else {
            apt::extract(&kit.join("debs").join(file), &dest)?;
            std::fs::write(&stamp, sha)?;
            steps.note(&format!("{}: extracted", w.name));
        }
        trees.insert(w.name.clone(), dest);
    }
    let kernel_pkg = &wanted[0].name;
    let ktree = &trees[kernel_pkg];
    let bbtree = &trees[BUSYBOX];
    let biostree = &trees[SEABIOS];

    let mut files = BTreeMap::new();
    let mut put = |name: &str, data: &[u8]| -> Result<()> {
        write_atomic(&kit.join(name), data)?;
        files.insert(
            name.to_string(),
            FileEntry {
                size: data.len() as u64,
                sha256: sha256_hex(data),
            },
        );
        Ok(())
    };

    // 4. Kernel image and config check.
    steps.step("kernel: vmlinuz and config check");
    let release = kernel_release(ktree)?;
    let vmlinuz = std::fs::read(ktree.join(format!("boot/vmlinuz-{release}")))
        .context("kernel package has no /boot/vmlinuz-<release>")?;
    // bzImage: "HdrS" setup header signature at 0x202.
    if vmlinuz.get(0x202..0x206) != Some(b"HdrS") {
        bail!("boot/vmlinuz-{release} is not a bzImage (no HdrS header)");
    }
    put("vmlinuz", &vmlinuz)?;
    let cfg_text = std::fs::read_to_string(ktree.join(format!("boot/config-{release}")))
        .context("kernel package has no /boot/config-<release>")?;
    let cfg = kconfig::parse(&cfg_text);
    let missing = kconfig::missing_builtins(&cfg);
    if !missing.is_empty() {
        bail!(
            "kernel {release} lacks built-ins the kit needs: {}",
            missing.join(", ")
        );
    }
    let mut kernel_config = BTreeMap::new();
    for o in kconfig::REQUIRED_BUILTIN.iter().chain(kconfig::REPORTED) {
        kernel_config.insert(o.to_string(), kconfig::value(&cfg, o).to_string());
    }
    steps.note(&format!("release {release}; required built-ins present"));
    for (label, v) in [("built-in", "y"), ("modules", "m"), ("not set", "n")] {
        let list: Vec<&str> = kconfig::REPORTED
            .iter()
            .filter(|o| kconfig::value(&cfg, o) == v)
            .map(|o| o.trim_start_matches("CONFIG_"))
            .collect();
        steps.note(&format!("{label}: {}", list.join(" ")));
    }

    // 5. SeaBIOS.
    steps.step("firmware: SeaBIOS");
    let share = biostree.join("usr/share/seabios");
    let mut vga: Vec<String> = std::fs::read_dir(&share)
        .with_context(|| format!("reading {}", share.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vgabios") && n.ends_with(".bin"))
        .collect();
    vga.sort();
    if !vga.iter().any(|n| n == "vgabios-stdvga.bin") {
        bail!("seabios package has no vgabios-stdvga.bin (has: {vga:?})");
    }
    for f in BIOS_FILES
        .iter()
        .copied()
        .chain(vga.iter().map(String::as_str))
    {
        put(
            f,
            &std::fs::read(share.join(f)).with_context(|| format!("seabios: {f}"))?,
        )?;
    }
    steps.note(&format!(
        "{} + {} vgabios builds",
        BIOS_FILES.join(", "),
        vga.len()
    ));

    // 6. Modules and their dependency closure.
    steps.step("kernel modules: dependency closure from .modinfo");
    let moddir = ktree.join("lib/modules").join(&release);
    let sel = moddep::select(&moddir, ROOT_MODULES)?;
    let mod_bytes: usize = sel.modules.iter().map(|m| m.image.len()).sum();
    steps.note(&format!(
        "{} modules ({:.1} MB): {}",
        sel.modules.len(),
        mod_bytes as f64 / 1e6,
        sel.modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let mut module_meta = Vec::new();
    for f in ["modules.builtin", "modules.builtin.modinfo"] {
        if let Ok(b) = std::fs::read(moddir.join(f)) {
            module_meta.push((f.to_string(), b));
        }
    }

    // 7. The initramfs.
    steps.step("initramfs: cpio newc + gzip");
    let busybox =
        std::fs::read(bbtree.join("bin/busybox")).context("busybox-static: bin/busybox")?;
    let applets = busybox_applets(&bbtree.join("bin/busybox"), &steps);
    let mut kit_info = format!("kernel_release={release}\n");
    for w in &wanted {
        kit_info.push_str(&format!("package {} {}\n", w.name, w.version));
    }
    let clients = client::compile(&guest.clients)?;
    let built = initramfs::build(&initramfs::Input {
        busybox: &busybox,
        applets: &applets,
        kernel_release: &release,
        modules: &sel,
        module_meta: &module_meta,
        init: &guest.init,
        tests: &guest.tests,
        bins: &clients,
        kit_info: &kit_info,
    })?;
    put("initramfs.cpio.gz", &built.gz)?;
    steps.note(&format!(
        "{} entries ({} applet links, {} tests), {:.1} MB -> {:.1} MB gzip ({:.1} s)",
        built.entries,
        applets.len(),
        guest.tests.len(),
        built.raw_len as f64 / 1e6,
        built.gz.len() as f64 / 1e6,
        steps.step_secs()
    ));

    // 8. The bootable MBR disk (raw and VDI) and machines that boot it.
    steps.step("boot disk: MBR + FAT16 + SYSLINUX, converted to VDI");
    let (raw, vdi) = (kit.join("boot-disk.raw.tmp"), kit.join("boot-disk.vdi.tmp"));
    let uuid = disk::build(
        &trees,
        &kit.join("vmlinuz"),
        &kit.join("initramfs.cpio.gz"),
        &raw,
        &vdi,
        disk::APPEND,
    )?;
    for (tmp, name) in [(&raw, "boot-disk.raw"), (&vdi, "boot-disk.vdi")] {
        let data = std::fs::read(tmp).with_context(|| format!("reading {}", tmp.display()))?;
        put(name, &data)?;
        let _ = std::fs::remove_file(tmp);
    }
    // The demo machine's disk (`cargo xtask demo`): the same, booting to a shell.
    disk::build(
        &trees,
        &kit.join("vmlinuz"),
        &kit.join("initramfs.cpio.gz"),
        &raw,
        &vdi,
        disk::APPEND_DEMO,
    )?;
    let data = std::fs::read(&vdi).with_context(|| format!("reading {}", vdi.display()))?;
    put("demo-disk.vdi", &data)?;
    let _ = std::fs::remove_file(&vdi);
    let _ = std::fs::remove_file(&raw);
    // The same kernel and initramfs on a bootable CD, in the machines' DVD drives.
    let iso_image = iso::build(&trees, &kit.join("vmlinuz"), &kit.join("initramfs.cpio.gz"))?;
    put("kit.iso", &iso_image)?;
    let iso_uuid = media::Uuid::random();
    for (file, ctl) in [("kit-ahci.vbox", "AHCI"), ("kit-ide.vbox", "PIIX4")] {
        let name = file.trim_end_matches(".vbox");
        put(
            file,
            disk::vbox_file(
                name,
                ctl,
                "boot-disk.vdi",
                &uuid,
                Some(("kit.iso", &iso_uuid)),
                false,
            )
            .as_bytes(),
        )?;
    }
    steps.note(&format!(
        "boot-disk.raw ({} MiB) and boot-disk.vdi (UUID {uuid}), kit.iso, kit-ahci.vbox, kit-ide.vbox ({:.1} s)",
        disk::DISK_BYTES >> 20,
        steps.step_secs()
    ));

    // 9. Manifest.
    steps.step("manifest.json");
    let mut packages = vec![Package {
        name: KERNEL_META.to_string(),
        version: meta,
        resolves_to: Some(kernel_pkg.clone()),
        deb: None,
        deb_sha256: None,
    }];
    for (w, file, sha) in &debs {
        packages.push(Package {
            name: w.name.clone(),
            version: w.version.clone(),
            resolves_to: None,
            deb: Some(file.clone()),
            deb_sha256: Some(sha.clone()),
        });
    }
    let m = Manifest {
        format: FORMAT,
        kernel_release: release,
        packages,
        inputs,
        modules: sel.modules.iter().map(|m| m.name.clone()).collect(),
        kernel_config,
        files,
    };
    m.store(kit)?;
    for (name, f) in &m.files {
        steps.note(&format!(
            "{name:<28} {:>10} bytes  sha256 {}",
            f.size,
            &f.sha256[..16]
        ));
    }
    steps.end_step();
    eprintln!(
        "kit: built {} in {:.1} s",
        kit.display(),
        steps.total_secs()
    );
    Ok(())
}

/// The versions recorded in a previous manifest, if it has all packages.
fn pinned_packages(m: &Manifest) -> Option<(String, Vec<Wanted>)> {
    let meta = m.packages.iter().find(|p| p.name == KERNEL_META)?;
    let kernel = meta.resolves_to.clone()?;
    let mut wanted = Vec::new();
    for name in [kernel.as_str(), BUSYBOX, SEABIOS]
        .into_iter()
        .chain(disk::PACKAGES.iter().copied())
        .chain(iso::PACKAGES.iter().copied())
    {
        let p = m.packages.iter().find(|p| p.name == name)?;
        wanted.push(Wanted {
            name: p.name.clone(),
            version: p.version.clone(),
            known: p.deb.clone().zip(p.deb_sha256.clone()),
        });
    }
    Some((meta.version.clone(), wanted))
}

/// Current candidate versions from apt's lists: the kernel metapackage is
/// followed to the real `linux-image-<abi>-amd64` package.
fn resolve() -> Result<(String, Vec<Wanted>)> {
    let cand = |p: &str| -> Result<String> {
        apt::candidate(p)?.ok_or_else(|| anyhow!("apt knows no installable version of {p}"))
    };
    let meta = cand(KERNEL_META)?;
    let kernel = apt::depends(KERNEL_META, &meta)?
        .into_iter()
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-amd64"))
        .ok_or_else(|| anyhow!("{KERNEL_META} {meta} depends on no linux-image-*-amd64"))?;
    let mut wanted = Vec::new();
    for name in [kernel.as_str(), BUSYBOX, SEABIOS]
        .into_iter()
        .chain(disk::PACKAGES.iter().copied())
        .chain(iso::PACKAGES.iter().copied())
    {
        wanted.push(Wanted {
            name: name.to_string(),
            version: cand(name)?,
            known: None,
        });
    }
    Ok((meta, wanted))
}

/// Makes sure `debs/` holds the package's `.deb` with the right hash and
/// returns its file name and SHA-256.
fn fetch(kit: &Path, w: &Wanted, updated: &mut bool, steps: &Steps) -> Result<(String, String)> {
    let dir = kit.join("debs");
    if let Some((file, sha)) = &w.known {
        if sha256_file(&dir.join(file)).ok().as_ref() == Some(sha) {
            steps.note(&format!("{file}: cached"));
            return Ok((file.clone(), sha.clone()));
        }
    }
    let uri = match apt::print_uri(&w.name, &w.version) {
        Ok(u) => u,
        Err(e) if !*updated => {
            steps.note(&format!(
                "apt does not know {}={} ({e:#}): apt-get update",
                w.name, w.version
            ));
            apt::update()?;
            *updated = true;
            apt::print_uri(&w.name, &w.version).with_context(|| {
                format!(
                    "{}={} is no longer available; run `cargo xtask kit --update`",
                    w.name, w.version
                )
            })?
        }
        Err(e) => return Err(e),
    };
    let path = dir.join(&uri.filename);
    if sha256_file(&path).ok().as_deref() == Some(uri.sha256.as_str()) {
        steps.note(&format!("{}: cached", uri.filename));
        return Ok((uri.filename, uri.sha256));
    }
    let _ = std::fs::remove_file(&path);
    let res = apt::download(&w.name, &w.version, &uri, &dir, steps);
    if res.is_err() && !*updated {
        // Stale lists point at files the mirror dropped: refresh once.
        steps.note("download failed: apt-get update and retry");
        apt::update()?;
        *updated = true;
        apt::download(&w.name, &w.version, &uri, &dir, steps)?;
    } else {
        res?;
    }
    let got = sha256_file(&path)?;
    if got != uri.sha256 {
        let _ = std::fs::remove_file(&path);
        bail!(
            "{}: sha256 {got} does not match apt's {}",
            uri.filename,
            uri.sha256
        );
    }
    Ok((uri.filename, uri.sha256))
}

/// The single `lib/modules/<release>` directory of the kernel package.
fn kernel_release(ktree: &Path) -> Result<String> {
    let dir = ktree.join("lib/modules");
    let mut rels: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    rels.sort();
    match rels.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one kernel release in {}, found {rels:?}",
            dir.display()
        ),
    }
}

/// Applet paths from `busybox --list-full`. The binary is the guest's own
/// static x86-64 busybox, run on the (x86-64) host only to list itself; if
/// that fails, the initramfs gets only /bin/sh and init installs the links
/// at boot with `busybox --install -s`.
fn busybox_applets(busybox: &Path, steps: &Steps) -> Vec<String> {
    let out = Command::new(busybox).arg("--list-full").output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains(".."))
            .map(str::to_string)
            .collect(),
        other => {
            steps.note(&format!(
                "cannot run busybox --list-full ({other:?}): applet links made at boot"
            ));
            Vec::new()
        }
    }
}
