//! `cargo xtask bench-vboxsf [--size-mib N] [--files N] [--only novabox|qemu]`: shared
//! folder throughput (sequential write and read of an N MiB file in 1 MiB blocks) and
//! metadata rate (create, stat and unlink N files), novabox's vboxsf (interpreter engine)
//! against QEMU's 9p share (`-virtfs`, TCG), same kit kernel and initramfs, same host
//! folder kind; the guest runs `guest/tests/sfbench.sh`. Each phase is timed on the host
//! by wall clock between the guest's BEGIN/END console markers; ratios are novabox / QEMU
//! (above 1 = novabox faster).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Seconds per phase (write, read, meta), host wall clock.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    write: f64,
    read: f64,
    meta: f64,
}

/// Run `cmd` (a VM with its serial console on stdout) until it exits or `limit` passes;
/// the phases from its markers.
fn run_vm(name: &str, cmd: Command, limit: Duration) -> Result<Phases> {
    let vm = crate::console::Console::spawn(name, cmd, |l: &str| {
        l.contains("NOVABOX-") || l.contains("FAIL")
    })?;
    let rx = &vm.lines;
    let start = Instant::now();
    let mut begin = std::collections::HashMap::new();
    let mut p = Phases::default();
    let mut done = false;
    let mut failure = None;
    while start.elapsed() < limit {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((t, line)) => {
                eprintln!(
                    "  {name} [{:>6.1} s]: {line}",
                    start.elapsed().as_secs_f64()
                );
                let mut w = line.split_whitespace();
                match (w.next(), w.next()) {
                    (Some("NOVABOX-BENCH-BEGIN"), Some(ph)) => {
                        begin.insert(ph.to_string(), t);
                    }
                    (Some("NOVABOX-BENCH-END"), Some(ph)) => {
                        let secs = begin
                            .get(ph)
                            .map(|b| t.duration_since(*b).as_secs_f64())
                            .unwrap_or(f64::NAN);
                        match ph {
                            "write" => p.write = secs,
                            "read" => p.read = secs,
                            "meta" => p.meta = secs,
                            _ => {}
                        }
                    }
                    (Some("NOVABOX-TEST-PASS"), _) => done = true,
                    (Some("NOVABOX-TEST-FAIL"), _) => failure = Some(line.clone()),
                    _ => {}
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if done || failure.is_some() {
            break;
        }
    }
    // The guest powers off by itself after the test; give it a moment, then make sure.
    vm.finish_within(Duration::from_secs(60))?;
    if let Some(f) = failure {
        bail!("{name}: {f}");
    }
    if !done {
        bail!("{name}: no result within {} s", limit.as_secs());
    }
    Ok(p)
}

fn cmdline(fs: &str, mib: u64, files: u64) -> String {
    format!(
        "console=ttyS0 quiet novabox.test=sfbench novabox.bench_fs={fs} \
         novabox.bench_mib={mib} novabox.bench_files={files}"
    )
}

fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf> {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Entry point.
pub fn run(args: &[String]) -> Result<()> {
    let (mut mib, mut files, mut only) = (256u64, 1000u64, None::<String>);
    let mut limit = Duration::from_secs(3 * 3600);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size-mib" => mib = it.next().context("--size-mib N")?.parse()?,
            "--files" => files = it.next().context("--files N")?.parse()?,
            "--only" => only = Some(it.next().context("--only novabox|qemu")?.clone()),
            "--timeout-secs" => {
                limit = Duration::from_secs(it.next().context("--timeout-secs N")?.parse()?)
            }
            other => bail!(
                "unknown argument {other}\nusage: cargo xtask bench-vboxsf [--size-mib N] \
                 [--files N] [--only novabox|qemu] [--timeout-secs N]"
            ),
        }
    }
    let kit = crate::bench_boot::kit_dir();
    let (kernel, initrd) = (kit.join("vmlinuz"), kit.join("initramfs.cpio.gz"));
    if !kernel.exists() || !initrd.exists() {
        bail!("no guest kit in {} (cargo xtask kit)", kit.display());
    }
    let base = std::env::temp_dir().join(format!("novabox-bench-vboxsf-{}", std::process::id()));
    let want = |w: &str| only.as_deref().is_none_or(|o| o == w);

    let qemu = if want("qemu") {
        if Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
        {
            bail!("qemu-system-x86_64 is not installed: nothing to compare against");
        }
        let share = fresh_dir(&base, "qemu")?;
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &cmdline("9p", mib, files), "-virtfs"])
        .arg(format!(
            "local,path={},mount_tag=bench,security_model=none,id=bench",
            share.display()
        ));
        eprintln!("QEMU TCG, 9p share in {}...", share.display());
        Some(run_vm("qemu", c, limit)?)
    } else {
        None
    };

    let novabox = if want("novabox") {
        let bin = crate::release_novabox()?;
        let share = fresh_dir(&base, "novabox")?;
        let mut c = Command::new(bin);
        c.arg("run")
            .arg("--kernel")
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .args(["--cmdline", &cmdline("vboxsf", mib, files)])
            .args([
                "--engine",
                "interpreter",
                "--memory",
                "512",
                "--sharedfolder",
            ])
            .arg(format!("bench={}", share.display()));
        eprintln!(
            "novabox (interpreter), vboxsf share in {}...",
            share.display()
        );
        Some(run_vm("novabox", c, limit)?)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&base);

    let rates = |p: &Phases| {
        let m = mib as f64;
        (m / p.write, m / p.read, (3 * files) as f64 / p.meta)
    };
    println!(
        "shared folder: {mib} MiB sequential (1 MiB blocks), {files} files create+stat+unlink"
    );
    println!(
        "{:<26}{:>16}{:>16}{:>22}",
        "", "write MiB/s", "read MiB/s", "metadata ops/s"
    );
    for (name, p) in [
        ("novabox vboxsf (interp.)", &novabox),
        ("QEMU 9p (TCG)", &qemu),
    ] {
        if let Some(p) = p {
            let (w, r, m) = rates(p);
            println!("{name:<26}{w:>16.2}{r:>16.2}{m:>22.1}");
        }
    }
    if let (Some(n), Some(q)) = (&novabox, &qemu) {
        let (nw, nr, nm) = rates(n);
        let (qw, qr, qm) = rates(q);
        println!(
            "{:<26}{:>16.3}{:>16.3}{:>22.3}",
            "ratio novabox/QEMU",
            nw / qw,
            nr / qr,
            nm / qm
        );
    }
    Ok(())
}
