//! `cargo xtask bench-boot [--runs N] [--memory MIB] [--cmdline LINE] [--novabox PATH]
//! [--qemu PATH]`: boot time of the guest kit's Debian kernel on novabox's interpreter and on
//! QEMU TCG, side by side.
//!
//! Both boot the same kernel and initramfs (`kit-cache/`, or `$NOVABOX_KIT_DIR`) by direct
//! kernel boot with the same memory size and command line (default
//! `console=ttyS0 novabox.test=smoke`, which makes the kit's init run its smoke test and
//! power off through ACPI). novabox unpacks the bzImage on the host and enters vmlinux
//! (glue's direct boot; `NOVABOX_GUEST_DECOMPRESS=1` makes the guest run the decompressor
//! as QEMU's guest does). Each run is timed from launch to the init's marker line
//! (`NOVABOX-INIT-START` on the serial console) and to the process exit after the ACPI
//! power-off, and the CPU time the process used is taken from the parent's reaped-children
//! accounting. Medians of N runs (default 5) and the novabox/QEMU ratios are printed.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The line the kit's init prints once user space runs.
pub const INIT_MARKER: &str = "NOVABOX-INIT-START";
/// A boot that takes longer than this is stopped and counted as failed.
const TIMEOUT: Duration = Duration::from_secs(1800);

/// The kernel's first console line: the time to it is mostly the bzImage decompressor
/// where the guest runs it (QEMU; novabox with `NOVABOX_GUEST_DECOMPRESS=1`).
const KERNEL_BANNER: &str = "Linux version";

/// What one boot measured.
#[derive(Debug, Clone, Copy)]
pub struct BootTimes {
    /// Launch to the kernel's first console line (after the bzImage decompressor), if seen.
    pub to_kernel: Option<Duration>,
    /// Launch to the init marker.
    pub to_init: Duration,
    /// Launch to the process exit (after the guest powered off).
    pub to_exit: Duration,
    /// User + system CPU time of the process.
    pub cpu: Duration,
}

/// Options shared by the boot and CPU benchmarks.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Runs per engine.
    pub runs: usize,
    /// Guest RAM in MiB.
    pub memory: u32,
    /// Kernel command line.
    pub cmdline: String,
    /// The novabox binary (built when not given).
    pub novabox: Option<PathBuf>,
    /// The QEMU binary (looked up on PATH when not given).
    pub qemu: Option<PathBuf>,
}

/// Parse `--runs N --memory MIB --cmdline LINE --novabox PATH --qemu PATH`.
pub fn parse_opts(args: &[String], default_cmdline: &str) -> Result<Opts> {
    let mut o = Opts {
        runs: 5,
        memory: 512,
        cmdline: default_cmdline.to_string(),
        novabox: None,
        qemu: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--runs" => o.runs = val()?.parse().context("--runs")?,
            "--memory" => o.memory = val()?.parse().context("--memory")?,
            "--cmdline" => o.cmdline = val()?,
            "--novabox" => o.novabox = Some(PathBuf::from(val()?)),
            "--qemu" => o.qemu = Some(PathBuf::from(val()?)),
            other => bail!("unknown option {other}"),
        }
    }
    if o.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(o)
}

/// The guest kit directory.
pub fn kit_dir() -> PathBuf {
    std::env::var_os("NOVABOX_KIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("kit-cache"))
}

/// The kit's kernel and initramfs, or an error saying how to make them.
pub fn kit_files() -> Result<(PathBuf, PathBuf)> {
    let d = kit_dir();
    let (k, i) = (d.join("vmlinuz"), d.join("initramfs.cpio.gz"));
    if !k.is_file() || !i.is_file() {
        bail!(
            "the guest kit is missing in {} (run `cargo xtask kit`)",
            d.display()
        );
    }
    Ok((k, i))
}

/// The novabox binary: the given one, or [`crate::release_novabox`]'s.
pub fn novabox_binary(given: &Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.clone()),
        None => crate::release_novabox(),
    }
}

/// The QEMU binary: the given one, or `qemu-system-x86_64` on PATH.
pub fn qemu_binary(given: &Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p.clone());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("qemu-system-x86_64"))
            .find(|p| p.is_file())
    })
}

/// The novabox command line for a direct kernel boot on the interpreter.
pub fn novabox_cmd(bin: &Path, kernel: &Path, initrd: &Path, o: &Opts) -> Command {
    let mut c = Command::new(bin);
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .args(["--engine", "interpreter", "--memory"])
        .arg(o.memory.to_string())
        .arg("--cmdline")
        .arg(&o.cmdline);
    c
}

/// The same boot on QEMU TCG: one vCPU, serial console on stdout, exit on ACPI power-off.
pub fn qemu_cmd(bin: &Path, kernel: &Path, initrd: &Path, o: &Opts) -> Command {
    let mut c = Command::new(bin);
    c.args(["-accel", "tcg", "-smp", "1", "-m"])
        .arg(o.memory.to_string())
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&o.cmdline)
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]);
    c
}

/// User + system CPU time of this process's reaped children so far (Linux `/proc`).
fn children_cpu() -> Result<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the parenthesised command name; cutime and cstime are fields 16 and 17.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let t = ticks(16 - 3) + ticks(17 - 3);
    // USER_HZ is 100 on every Linux architecture we run on.
    Ok(Duration::from_millis(t * 10))
}

/// Run one boot: times to `marker` and to exit, CPU time, and the console output.
pub fn timed_boot(mut cmd: Command, marker: &str) -> Result<(BootTimes, String)> {
    let cpu0 = children_cpu()?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let out = child.stdout.take().context("child stdout")?;
    // Read the console on a thread so a hung guest is caught by the timeout below.
    type Seen = (Option<Duration>, Option<Duration>, String);
    let (tx, rx) = std::sync::mpsc::channel::<Seen>();
    let marker_owned = marker.to_string();
    let reader = std::thread::spawn(move || {
        let mut seen = None;
        let mut banner = None;
        let mut text = String::new();
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            if banner.is_none() && line.contains(KERNEL_BANNER) {
                banner = Some(start.elapsed());
            }
            if seen.is_none() && line.contains(&marker_owned) {
                seen = Some(start.elapsed());
            }
            text.push_str(&line);
            text.push('\n');
        }
        let _ = tx.send((seen, banner, text));
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the boot did not finish within {} s", TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let to_exit = start.elapsed();
    let cpu = children_cpu()?.saturating_sub(cpu0);
    let (seen, banner, text) =
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or((None, None, String::new()));
    let _ = reader.join();
    let Some(to_init) = seen else {
        let tail: String = text
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("no {marker} on the console (exit {status}); console tail:\n{tail}");
    };
    Ok((
        BootTimes {
            to_kernel: banner,
            to_init,
            to_exit,
            cpu,
        },
        text,
    ))
}

/// The median of some durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// Medians over runs: (to the kernel banner, to init, to exit, CPU).
fn medians(runs: &[BootTimes]) -> (Duration, Duration, Duration, Duration) {
    (
        median(
            runs.iter()
                .map(|r| r.to_kernel.unwrap_or_default())
                .collect(),
        ),
        median(runs.iter().map(|r| r.to_init).collect()),
        median(runs.iter().map(|r| r.to_exit).collect()),
        median(runs.iter().map(|r| r.cpu).collect()),
    )
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `cargo xtask bench-boot`.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse_opts(args, "console=ttyS0 novabox.test=smoke")?;
    let (kernel, initrd) = kit_files()?;
    let nb = novabox_binary(&o.novabox)?;
    let qemu = qemu_binary(&o.qemu);
    println!(
        "boot benchmark: {} and {}, {} MiB, cmdline {:?}, {} run(s) each",
        kernel.display(),
        initrd.display(),
        o.memory,
        o.cmdline,
        o.runs
    );
    let mut nova = Vec::new();
    let mut tcg = Vec::new();
    // Alternate the engines so a change in the machine's load hits both alike.
    for i in 0..o.runs {
        let (t, _) = timed_boot(novabox_cmd(&nb, &kernel, &initrd, &o), INIT_MARKER)
            .context("novabox boot")?;
        println!(
            "run {}: novabox interpreter: kernel {:.1} s, init {:.1} s, power-off {:.1} s, CPU {:.1} s",
            i + 1,
            secs(t.to_kernel.unwrap_or_default()),
            secs(t.to_init),
            secs(t.to_exit),
            secs(t.cpu)
        );
        nova.push(t);
        if let Some(q) = &qemu {
            let (t, _) =
                timed_boot(qemu_cmd(q, &kernel, &initrd, &o), INIT_MARKER).context("QEMU boot")?;
            println!(
                "run {}: QEMU TCG:            kernel {:.1} s, init {:.1} s, power-off {:.1} s, CPU {:.1} s",
                i + 1,
                secs(t.to_kernel.unwrap_or_default()),
                secs(t.to_init),
                secs(t.to_exit),
                secs(t.cpu)
            );
            tcg.push(t);
        }
    }
    let (nk, ni, ne, nc) = medians(&nova);
    println!();
    println!(
        "{:<22} {:>12} {:>12} {:>14} {:>10}",
        "median", "to kernel", "to init (s)", "to power-off", "CPU (s)"
    );
    println!(
        "{:<22} {:>12.1} {:>12.1} {:>14.1} {:>10.1}",
        "novabox interpreter",
        secs(nk),
        secs(ni),
        secs(ne),
        secs(nc)
    );
    if tcg.is_empty() {
        println!("QEMU (qemu-system-x86_64) is not installed: no comparison");
        return Ok(());
    }
    let (qk, qi, qe, qc) = medians(&tcg);
    println!(
        "{:<22} {:>12.1} {:>12.1} {:>14.1} {:>10.1}",
        "QEMU TCG",
        secs(qk),
        secs(qi),
        secs(qe),
        secs(qc)
    );
    let ratio = |a: Duration, b: Duration| secs(a) / secs(b).max(1e-9);
    println!(
        "{:<22} {:>11.2}x {:>11.2}x {:>13.2}x {:>9.2}x",
        "novabox / QEMU",
        ratio(nk, qk),
        ratio(ni, qi),
        ratio(ne, qe),
        ratio(nc, qc)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let d = Duration::from_secs;
        assert_eq!(median(vec![d(5), d(1), d(3)]), d(3));
        assert_eq!(
            median(vec![d(4), d(1), d(3), d(2)]),
            Duration::from_millis(2500)
        );
        assert_eq!(median(vec![]), Duration::ZERO);
    }

    #[test]
    fn options_parse_and_reject_unknown() {
        let a: Vec<String> = [
            "--runs",
            "3",
            "--memory",
            "256",
            "--cmdline",
            "console=ttyS0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = parse_opts(&a, "x").unwrap();
        assert_eq!(
            (o.runs, o.memory, o.cmdline.as_str()),
            (3, 256, "console=ttyS0")
        );
        assert!(parse_opts(&["--bogus".to_string()], "x").is_err());
        assert!(parse_opts(&["--runs".to_string()], "x").is_err());
        assert!(parse_opts(&["--runs".to_string(), "0".to_string()], "x").is_err());
    }

    #[test]
    fn a_boot_is_timed_to_its_marker_and_exit() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "echo Linux version x; sleep 0.2; echo NOVABOX-INIT-START; sleep 0.2",
        ]);
        let (t, text) = timed_boot(c, INIT_MARKER).unwrap();
        assert!(t.to_kernel.unwrap() < t.to_init, "{t:?}");
        assert!(t.to_init >= Duration::from_millis(150), "{t:?}");
        assert!(t.to_exit >= t.to_init + Duration::from_millis(150), "{t:?}");
        assert!(text.contains("Linux version"));
        let mut c = Command::new("sh");
        c.args(["-c", "echo no marker"]);
        assert!(timed_boot(c, INIT_MARKER).is_err());
    }
}
