//! `cargo xtask bench-disk [--size-mib N] [--rand-secs N] [--runs N] [--controller ahci|ide]
//! [--memory MIB] [--only novabox|qemu] [--timeout-secs N]`: guest disk throughput and
//! IOPS, novabox (interpreter engine) against QEMU TCG, side by side.
//!
//! Both sides boot the kit kernel and initramfs directly with the same memory and command
//! line (`novabox.test=diskbench`, see `guest/tests/diskbench.sh`) and one disk: a fresh
//! copy, for every boot, of the same empty dynamic VDI made by `novabox createmedium`, on
//! the same controller kind (AHCI: novabox's ICH8M AHCI / QEMU's `-device ahci` +
//! `ide-hd`; IDE: novabox's PIIX3 / QEMU's on-board PIIX3 IDE). QEMU opens the VDI with
//! its default cache mode (writeback: host page cache, guest flushes are fdatasync), as
//! novabox does. In the guest, `/bin/diskbench` (guest/client/diskbench.c) runs three
//! phases with O_DIRECT on /dev/sda, one request at a time: sequential write of N MiB in
//! 1 MiB blocks + fdatasync, sequential read of it back, and 4 KiB random reads inside it
//! for a fixed time. The figures are the guest's own clock_gettime timings of each phase
//! (boot excluded; the I/O calls only: making the write pattern and checking what is read
//! run untimed between them, as they measure the guest CPU, not the disk); the host's
//! wall clock between the guest's phase markers is printed as a cross-check. Medians of
//! `--runs` runs; ratios are novabox / QEMU (above 1 = novabox faster).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The benchmark's phases, in the order the guest runs them.
const PHASES: [&str; 3] = ["write", "read", "randread"];

/// One phase as measured: the guest's own figure and the host's wall clock around it.
#[derive(Debug, Default, Clone, Copy)]
struct Phase {
    bytes: u64,
    ops: u64,
    guest_secs: f64,
    host_secs: f64,
}

impl Phase {
    fn mib_per_s(&self, host: bool) -> f64 {
        self.bytes as f64 / (1u64 << 20) as f64 / self.secs(host)
    }
    fn iops(&self, host: bool) -> f64 {
        self.ops as f64 / self.secs(host)
    }
    fn secs(&self, host: bool) -> f64 {
        if host {
            self.host_secs
        } else {
            self.guest_secs
        }
    }
}

/// One boot's three phases.
type Run = [Phase; 3];

/// Parse the client's `diskbench: MODE bytes=N ops=N secs=S` line.
fn parse_result(line: &str) -> Option<(usize, u64, u64, f64)> {
    let rest = line.trim().strip_prefix("diskbench: ")?;
    let mut w = rest.split_whitespace();
    let mode = w.next()?;
    let idx = PHASES.iter().position(|p| *p == mode)?;
    let (mut bytes, mut ops, mut secs) = (None, None, None);
    for kv in w {
        match kv.split_once('=')? {
            ("bytes", v) => bytes = v.parse().ok(),
            ("ops", v) => ops = v.parse().ok(),
            ("secs", v) => secs = v.parse().ok(),
            _ => {}
        }
    }
    Some((idx, bytes?, ops?, secs?))
}

/// Run `cmd` (a VM with its serial console on stdout) until the guest test ends or
/// `limit` passes; its phases.
fn run_vm(name: &str, cmd: Command, limit: Duration) -> Result<Run> {
    let vm = crate::console::Console::spawn(name, cmd, |l: &str| {
        l.contains("NOVABOX-") || l.contains("diskbench") || l.contains("FAIL")
    })?;
    let rx = &vm.lines;
    let start = Instant::now();
    let mut begin: [Option<Instant>; 3] = [None; 3];
    let mut run = Run::default();
    let mut seen = [false; 3];
    let (mut done, mut failure) = (false, None);
    while start.elapsed() < limit && !done && failure.is_none() {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((t, line)) => {
                if !line.starts_with("NOVABOX-KERNEL")
                    && !line.starts_with("NOVABOX-CPUS")
                    && !line.starts_with("NOVABOX-MEM")
                    && !line.starts_with("NOVABOX-UPTIME")
                {
                    eprintln!(
                        "  {name} [{:>6.1} s]: {line}",
                        start.elapsed().as_secs_f64()
                    );
                }
                let mut w = line.split_whitespace();
                let phase = |p: Option<&str>| PHASES.iter().position(|x| Some(*x) == p);
                match w.next() {
                    Some("NOVABOX-BENCH-BEGIN") => {
                        if let Some(i) = phase(w.next()) {
                            begin[i] = Some(t);
                        }
                    }
                    Some("NOVABOX-BENCH-END") => {
                        if let Some(i) = phase(w.next()) {
                            run[i].host_secs = begin[i]
                                .map(|b| t.duration_since(b).as_secs_f64())
                                .unwrap_or(f64::NAN);
                        }
                    }
                    Some("NOVABOX-TEST-PASS") => done = true,
                    Some("NOVABOX-TEST-FAIL") => failure = Some(line.clone()),
                    _ => {
                        if let Some((i, bytes, ops, secs)) = parse_result(&line) {
                            run[i].bytes = bytes;
                            run[i].ops = ops;
                            run[i].guest_secs = secs;
                            seen[i] = true;
                        }
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // The guest powers off by itself after the test; give it a moment, then make sure.
    vm.finish_within(Duration::from_secs(30))?;
    if let Some(f) = failure {
        bail!("{name}: {f} (is the kit current? `cargo xtask kit` builds /bin/diskbench)");
    }
    if !done || seen.iter().any(|s| !s) {
        bail!(
            "{name}: no complete result within {} s",
            limit.as_secs_f64()
        );
    }
    Ok(run)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Options of one benchmark invocation.
struct Opts {
    mib: u64,
    rand_secs: u64,
    runs: usize,
    ide: bool,
    memory: u64,
    only: Option<String>,
    limit: Duration,
}

fn parse_args(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        mib: 256,
        rand_secs: 10,
        runs: 3,
        ide: false,
        memory: 512,
        only: None,
        limit: Duration::from_secs(3600),
    };
    let mut it = args.iter();
    let usage = "usage: cargo xtask bench-disk [--size-mib N] [--rand-secs N] [--runs N] \
                 [--controller ahci|ide] [--memory MIB] [--only novabox|qemu] [--timeout-secs N]";
    while let Some(a) = it.next() {
        let mut val = |what: &str| it.next().with_context(|| format!("{a} {what}\n{usage}"));
        match a.as_str() {
            "--size-mib" => o.mib = val("N")?.parse()?,
            "--rand-secs" => o.rand_secs = val("N")?.parse()?,
            "--runs" => o.runs = val("N")?.parse()?,
            "--memory" => o.memory = val("MIB")?.parse()?,
            "--controller" => {
                o.ide = match val("ahci|ide")?.as_str() {
                    "ahci" => false,
                    "ide" => true,
                    other => bail!("--controller {other}: ahci or ide\n{usage}"),
                }
            }
            "--only" => o.only = Some(val("novabox|qemu")?.clone()),
            "--timeout-secs" => o.limit = Duration::from_secs(val("N")?.parse()?),
            other => bail!("unknown argument {other}\n{usage}"),
        }
    }
    if o.mib == 0 || o.rand_secs == 0 || o.runs == 0 {
        bail!("--size-mib, --rand-secs and --runs must be at least 1");
    }
    Ok(o)
}

fn cmdline(o: &Opts) -> String {
    let driver = if o.ide { "ata_piix" } else { "ahci" };
    format!(
        "console=ttyS0 quiet panic=-1 novabox.test=diskbench novabox.disk_driver={driver} \
         novabox.bench_mib={} novabox.bench_rand_secs={}",
        o.mib, o.rand_secs
    )
}

fn novabox_cmd(
    bin: &Path,
    kernel: &Path,
    initrd: &Path,
    disk: &Path,
    log: &Path,
    o: &Opts,
) -> Command {
    let mut c = Command::new(bin);
    c.arg("--log")
        .arg(log)
        .arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .args([
            "--cmdline",
            &cmdline(o),
            "--engine",
            "interpreter",
            "--memory",
        ])
        .arg(o.memory.to_string())
        .arg("--disk")
        .arg(disk)
        .args(["--disk-controller", if o.ide { "piix3" } else { "ahci" }]);
    c
}

fn qemu_cmd(kernel: &Path, initrd: &Path, disk: &Path, o: &Opts) -> Command {
    // The boot benchmark's QEMU command line, plus the disk.
    let boot = crate::bench_boot::Opts {
        runs: 1,
        memory: u32::try_from(o.memory).unwrap_or(u32::MAX),
        cmdline: cmdline(o),
        novabox: None,
        qemu: None,
    };
    let mut c = crate::bench_boot::qemu_cmd(Path::new("qemu-system-x86_64"), kernel, initrd, &boot);
    if o.ide {
        c.arg("-drive").arg(format!(
            "file={},format=vdi,if=ide,index=0,media=disk",
            disk.display()
        ));
    } else {
        c.arg("-drive")
            .arg(format!("file={},format=vdi,if=none,id=d", disk.display()))
            .args(["-device", "ahci,id=a", "-device", "ide-hd,drive=d,bus=a.0"]);
    }
    c
}

fn check(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Entry point.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse_args(args)?;
    let kit = crate::bench_boot::kit_dir();
    let (kernel, initrd) = (kit.join("vmlinuz"), kit.join("initramfs.cpio.gz"));
    if !kernel.exists() || !initrd.exists() {
        bail!("no guest kit in {} (cargo xtask kit)", kit.display());
    }
    let want = |w: &str| o.only.as_deref().is_none_or(|x| x == w);
    if want("qemu")
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
    {
        bail!("qemu-system-x86_64 is not installed: nothing to compare against");
    }
    let bin = crate::release_novabox()?;
    let dir = std::env::temp_dir().join(format!("novabox-bench-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // The empty dynamic VDI both sides start from: the data plus room to spare.
    let template = dir.join("template.vdi");
    let disk_mb = o.mib + 64;
    check(
        Command::new(&bin)
            .args(["createmedium", "disk", "--filename"])
            .arg(&template)
            .args(["--size", &disk_mb.to_string(), "--format", "VDI"]),
    )?;
    let ctl = if o.ide { "PIIX3 IDE" } else { "AHCI" };
    let mut results: Vec<(&str, Vec<Run>)> = Vec::new();
    if want("novabox") {
        results.push(("novabox", Vec::new()));
    }
    if want("qemu") {
        results.push(("qemu", Vec::new()));
    }
    for r in 0..o.runs {
        // Alternate which side goes first, so a drift in the host's load hits both.
        let order: Vec<usize> = if r % 2 == 0 {
            (0..results.len()).collect()
        } else {
            (0..results.len()).rev().collect()
        };
        for i in order {
            let name = results[i].0;
            let disk = dir.join(format!("{name}.vdi"));
            let _ = std::fs::remove_file(&disk);
            std::fs::copy(&template, &disk).context("copying the template VDI")?;
            let cmd = match name {
                "novabox" => {
                    novabox_cmd(&bin, &kernel, &initrd, &disk, &dir.join("novabox.log"), &o)
                }
                _ => qemu_cmd(&kernel, &initrd, &disk, &o),
            };
            eprintln!(
                "run {}/{}: {name} ({ctl}, {})...",
                r + 1,
                o.runs,
                disk.display()
            );
            let run = run_vm(name, cmd, o.limit)?;
            results[i].1.push(run);
            let _ = std::fs::remove_file(&disk);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&o, ctl, &results);
    Ok(())
}

/// Per side: medians of write MiB/s, read MiB/s, random-read IOPS (guest or host clock).
fn medians(runs: &[Run], host: bool) -> [f64; 3] {
    [
        median(runs.iter().map(|r| r[0].mib_per_s(host)).collect()),
        median(runs.iter().map(|r| r[1].mib_per_s(host)).collect()),
        median(runs.iter().map(|r| r[2].iops(host)).collect()),
    ]
}

fn report(o: &Opts, ctl: &str, results: &[(&str, Vec<Run>)]) {
    println!(
        "disk ({ctl}, dynamic VDI, O_DIRECT, queue depth 1): {} MiB sequential in 1 MiB \
         blocks, 4 KiB random reads for {} s; median of {} runs",
        o.mib, o.rand_secs, o.runs
    );
    for (host, title) in [
        (false, "guest clock"),
        (true, "host wall clock between markers"),
    ] {
        println!("  {title}:");
        println!(
            "  {:<28}{:>14}{:>14}{:>18}",
            "", "write MiB/s", "read MiB/s", "4K randread IOPS"
        );
        let mut rows = Vec::new();
        for (name, runs) in results {
            let label = match *name {
                "novabox" => "novabox (interpreter)",
                _ => "QEMU (TCG)",
            };
            let m = medians(runs, host);
            println!("  {label:<28}{:>14.2}{:>14.2}{:>18.0}", m[0], m[1], m[2]);
            rows.push(m);
        }
        if let [n, q] = rows.as_slice() {
            println!(
                "  {:<28}{:>14.3}{:>14.3}{:>18.3}",
                "ratio novabox/QEMU",
                n[0] / q[0],
                n[1] / q[1],
                n[2] / q[2]
            );
        }
    }
    for (name, runs) in results {
        let all = |k: usize| -> Vec<String> {
            runs.iter()
                .map(|r| {
                    if k == 2 {
                        format!("{:.0}", r[k].iops(false))
                    } else {
                        format!("{:.2}", r[k].mib_per_s(false))
                    }
                })
                .collect()
        };
        println!(
            "  {name} all runs (guest clock): write {:?} read {:?} IOPS {:?}",
            all(0),
            all(1),
            all(2)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_line() {
        let (i, b, o, s) =
            parse_result("diskbench: randread bytes=4096000 ops=1000 secs=2.500000").unwrap();
        assert_eq!((i, b, o), (2, 4096000, 1000));
        assert!((s - 2.5).abs() < 1e-9);
        let (i, ..) = parse_result("diskbench: read bytes=1 ops=1 secs=1").unwrap();
        assert_eq!(i, 1);
        assert!(parse_result("diskbench: /dev/sda 1000 sectors").is_none());
        assert!(parse_result("diskbench: write bytes=1 ops=1").is_none());
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
