//! `cargo xtask bench-media [--size-mib N] [--runs N]`: `novabox clonemedium` VDI→raw
//! of a 2 GiB image against `qemu-img convert`, side by side, ratio printed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Write a raw source: 3 of every 4 MiB filled with pseudo-random data, the rest zero
/// (so the VDI has both allocated and unallocated blocks, as real disks do).
fn make_source(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let f = std::fs::File::create(path)?;
    f.set_len(size)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut block = vec![0u8; 1 << 20];
    for mib in 0..size >> 20 {
        if mib % 4 == 3 {
            block.fill(0);
        } else {
            for c in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        w.write_all(&block)?;
    }
    w.flush()?;
    Ok(())
}

fn time(mut cmd: Command, out: &Path) -> Result<f64> {
    let _ = std::fs::remove_file(out);
    // Commit the removal before the clock starts: otherwise freeing (and, on a
    // `discard` mount, trimming) the previous run's output lands in whichever run
    // comes next.
    if let Some(dir) = out.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let t = Instant::now();
    run(&mut cmd)?;
    Ok(t.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Entry point.
pub fn run_bench(args: &[String]) -> Result<()> {
    let mut size_mib = 2048u64;
    let mut runs = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size-mib" => size_mib = it.next().context("--size-mib N")?.parse()?,
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if Command::new("qemu-img").arg("--version").output().is_err() {
        bail!("qemu-img is not installed (apt-get install qemu-utils): nothing to compare against");
    }
    let novabox = crate::release_novabox()?;
    let dir = std::env::temp_dir().join(format!("novabox-bench-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let src_raw = dir.join("src.raw");
    let vdi = dir.join("disk.vdi");
    let out_n = dir.join("out-novabox.raw");
    let out_q = dir.join("out-qemu.raw");
    let size = size_mib << 20;
    eprintln!("making a {size_mib} MiB dynamic VDI (75% of blocks allocated)...");
    make_source(&src_raw, size)?;
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vdi"])
        .arg(&src_raw)
        .arg(&vdi))?;
    std::fs::remove_file(&src_raw)?;
    // Write the source out now, so its write-back does not fall into a timed run.
    std::fs::File::open(&vdi)?.sync_all()?;
    let nb = || {
        let mut c = Command::new(&novabox);
        c.arg("clonemedium")
            .arg(&vdi)
            .arg(&out_n)
            .args(["--format", "RAW"]);
        c
    };
    let qm = || {
        let mut c = Command::new("qemu-img");
        c.args(["convert", "-f", "vdi", "-O", "raw"])
            .arg(&vdi)
            .arg(&out_q);
        c
    };
    // The same with a flush at the end: novabox syncs the clone before saying it is
    // done (as VBoxManage does); plain `qemu-img convert` (cache=unsafe) does not.
    let qs = || {
        let mut c = Command::new("qemu-img");
        c.args(["convert", "-t", "writeback", "-f", "vdi", "-O", "raw"])
            .arg(&vdi)
            .arg(&out_q);
        c
    };
    // Warm the page cache for both equally, then alternate.
    time(nb(), &out_n)?;
    time(qm(), &out_q)?;
    let (mut tn, mut tq, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..runs {
        // Rotate the order each round: a run right after a synced 1.5 GB write
        // shares the host's disk with that write's aftermath, so no tool should
        // always be the one that follows another's sync.
        for k in 0..3 {
            match (round + k) % 3 {
                0 => tn.push(time(nb(), &out_n)?),
                1 => tq.push(time(qm(), &out_q)?),
                _ => ts.push(time(qs(), &out_q)?),
            }
        }
    }
    // Same result, or the numbers mean nothing.
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&out_n)
        .arg(&out_q))?;
    let (n, q, qsync) = (median(tn.clone()), median(tq.clone()), median(ts.clone()));
    println!("clonemedium VDI -> raw, {size_mib} MiB image, median of {runs} runs (all: novabox {tn:.3?}, qemu {tq:.3?}, qemu -t writeback {ts:.3?})");
    println!(
        "  novabox clonemedium : {n:.3} s ({:.0} MiB/s)",
        size_mib as f64 / n
    );
    println!(
        "  qemu-img convert    : {q:.3} s ({:.0} MiB/s)",
        size_mib as f64 / q
    );
    println!(
        "  qemu-img convert -t writeback (synced like novabox): {qsync:.3} s, ratio qemu/novabox {:.2}x",
        qsync / n
    );
    println!(
        "  ratio qemu/novabox  : {:.2}x {}",
        q / n,
        if n <= q {
            "(novabox at least as fast)"
        } else {
            "(novabox SLOWER)"
        }
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
