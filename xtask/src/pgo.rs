//! Profile-guided optimisation of the novabox binary.
//!
//! `cargo xtask pgo` builds an instrumented novabox, runs the kit guest through the paths
//! users' machines spend their time in (a boot, disk I/O on AHCI and on IDE, a shared
//! folder) and a desktop served over VNC, and merges what the runs counted into `pgo/novabox.profdata.gz`, which is
//! committed. [`build`] (behind `cargo xtask demo` and every benchmark) compiles novabox
//! with that profile: LLVM then lays the interpreter's hot paths out together and its cold
//! ones aside, which matters because the interpreter is bound by instruction-cache misses
//! on guest kernel code (measured side by side: +13 % random-read IOPS).
//!
//! A stale profile (code changed since) only loses the optimisation for the functions
//! that changed; run `cargo xtask pgo` again after interpreter work. A toolchain that
//! cannot read the profile gets a plain release build, with a warning.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The committed profile, relative to the repository root.
const PROFILE: &str = "pgo/novabox.profdata.gz";

/// Guest runs that train the profile: (what, extra novabox arguments, kernel command
/// line). `{share}` is replaced by a fresh shared-folder directory.
const TRAINING: &[(&str, &[&str], &str)] = &[
    (
        "disk I/O on AHCI",
        &["--disk", "{disk}"],
        "novabox.test=diskbench novabox.disk_driver=ahci novabox.bench_mib=32 novabox.bench_rand_secs=3",
    ),
    (
        "disk I/O on PIIX3 IDE",
        &["--disk", "{disk}", "--disk-controller", "piix3"],
        "novabox.test=diskbench novabox.disk_driver=ata_piix novabox.bench_mib=32 novabox.bench_rand_secs=3",
    ),
    (
        "a vboxsf shared folder",
        &["--sharedfolder", "bench={share}"],
        "novabox.test=sfbench novabox.bench_fs=vboxsf novabox.bench_mib=16 novabox.bench_files=100",
    ),
];

/// `cargo xtask pgo`: make the profile.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("cargo xtask pgo takes no arguments (got {a:?})");
    }
    let profdata = llvm_profdata()?;
    let (kernel, initrd) = crate::bench_boot::kit_files()?;
    let work = crate::target_dir().join("pgo-train");
    let raw = work.join("profraw");
    eprintln!("pgo: [1/3] building an instrumented novabox...");
    let gen_target = crate::target_dir().join("pgo-gen");
    let flag = format!("-Cprofile-generate={}", raw.display());
    if !crate::build_novabox(&gen_target, Some(&flag))? {
        bail!("building the instrumented novabox failed");
    }
    let bin = gen_target.join("release").join("novabox");
    // Build scripts ran instrumented too (and earlier runs may have left counts): only
    // the training runs' counts are wanted.
    let _ = std::fs::remove_dir_all(&raw);
    std::fs::create_dir_all(&raw)?;
    // Every training process writes its counts into `raw`.
    let novabox = || {
        let mut c = Command::new(&bin);
        c.env("LLVM_PROFILE_FILE", raw.join("novabox-%p.profraw"));
        c
    };
    for (i, (what, extra, cmdline)) in TRAINING.iter().enumerate() {
        eprintln!(
            "pgo: [2/3] training run {}/{}: {what}...",
            i + 1,
            TRAINING.len()
        );
        train(&novabox, &kernel, &initrd, &work, extra, cmdline)
            .with_context(|| format!("training run {what:?}"))?;
    }
    eprintln!("pgo: [2/3] training run: the desktop over VNC (VBE drawing, ZRLE, CopyRect)...");
    crate::bench_display::train(novabox, &work, 8).context("training run \"the desktop\"")?;
    eprintln!("pgo: [3/3] merging the counts...");
    let merged = work.join("novabox.profdata");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&raw)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "profraw"))
        .collect();
    inputs.sort();
    if inputs.is_empty() {
        bail!("the training runs left no profile in {}", raw.display());
    }
    let st = Command::new(&profdata)
        .args(["merge", "--sparse", "-o"])
        .arg(&merged)
        .args(&inputs)
        .status()?;
    if !st.success() {
        bail!("{} merge failed", profdata.display());
    }
    let out = crate::repo_root().join(PROFILE);
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d)?;
    }
    let data = std::fs::read(&merged)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&data)?;
    std::fs::write(&out, gz.finish()?)?;
    eprintln!(
        "pgo: wrote {} ({} KiB from {} runs); `cargo xtask demo` and the benchmarks build with it",
        out.display(),
        std::fs::metadata(&out)?.len() / 1024,
        inputs.len()
    );
    Ok(())
}

/// One training boot of the kit guest; `novabox` makes the instrumented novabox's
/// command (with its profile output set).
fn train(
    novabox: &dyn Fn() -> Command,
    kernel: &Path,
    initrd: &Path,
    work: &Path,
    extra: &[&str],
    cmdline: &str,
) -> Result<()> {
    let disk = work.join("train.vdi");
    let share = work.join("share");
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(&share)?;
    let st = novabox()
        .args(["createmedium", "disk", "--filename"])
        .arg(&disk)
        .args(["--size", "256", "--format", "VDI"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !st.success() {
        bail!("createmedium failed");
    }
    let mut cmd = novabox();
    cmd.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .args(["--engine", "interpreter", "--memory", "512"]);
    for a in extra {
        cmd.arg(
            a.replace("{disk}", &disk.to_string_lossy())
                .replace("{share}", &share.to_string_lossy()),
        );
    }
    cmd.arg("--cmdline")
        .arg(format!("console=ttyS0 quiet panic=-1 {cmdline}"));
    let vm = crate::console::Console::spawn("pgo", cmd, |l: &str| {
        l.contains("NOVABOX-TEST") || l.contains("FAIL")
    })?;
    let mut passed = false;
    while let Ok((_, line)) = vm.lines.recv_timeout(Duration::from_secs(600)) {
        if line.contains("NOVABOX-TEST-PASS") {
            passed = true;
            break;
        }
        if line.contains("FAIL") {
            break;
        }
    }
    // The guest powers off by itself: novabox must exit normally to write its profile.
    vm.finish_within(Duration::from_secs(120))?;
    if !passed {
        bail!("the guest did not report success");
    }
    Ok(())
}

/// The toolchain's llvm-profdata (from rustup's llvm-tools component, installed when
/// missing: it must match the LLVM of the rustc that reads the profile).
fn llvm_profdata() -> Result<PathBuf> {
    let find = || -> Result<Option<PathBuf>> {
        let out = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()?;
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let out = Command::new("rustc").args(["-vV"]).output()?;
        let host = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            .context("rustc -vV names no host")?;
        let p = Path::new(&sysroot)
            .join("lib/rustlib")
            .join(host)
            .join("bin/llvm-profdata");
        Ok(p.is_file().then_some(p))
    };
    if let Some(p) = find()? {
        return Ok(p);
    }
    eprintln!("pgo: installing rustup's llvm-tools component (for llvm-profdata)...");
    let st = Command::new("rustup")
        .args(["component", "add", "llvm-tools"])
        .status();
    match (st, find()?) {
        (_, Some(p)) => Ok(p),
        (Ok(s), None) if s.success() => bail!("llvm-tools is installed but has no llvm-profdata"),
        _ => bail!("llvm-profdata is missing: install it with `rustup component add llvm-tools`"),
    }
}

/// Build novabox (release) with the committed profile when there is one; returns the
/// binary, or None when there is no profile or the toolchain could not use it (the
/// caller then builds without).
pub fn build() -> Result<Option<PathBuf>> {
    let gz = crate::repo_root().join(PROFILE);
    if !gz.is_file() || std::env::var_os("NOVABOX_NO_PGO").is_some() {
        return Ok(None);
    }
    let target = crate::target_dir().join("pgo");
    std::fs::create_dir_all(&target)?;
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz)?)
        .read_to_end(&mut data)
        .with_context(|| format!("reading {}", gz.display()))?;
    let profile = target.join("novabox.profdata");
    // Rewritten only when it changed, so cargo sees no new input otherwise.
    if std::fs::read(&profile).ok().as_deref() != Some(&data[..]) {
        std::fs::write(&profile, &data)?;
    }
    eprintln!("building novabox (release, with the profile {PROFILE})...");
    let flag = format!("-Cprofile-use={}", profile.display());
    if !crate::build_novabox(&target, Some(&flag))? {
        eprintln!("warning: this toolchain could not build with {PROFILE}; building without it");
        return Ok(None);
    }
    Ok(Some(target.join("release").join("novabox")))
}
