//! `cargo xtask <task>`: project tasks, dispatched on the first argument.

mod bench_boot;
mod bench_cpu;
mod bench_disk;
mod bench_display;
mod bench_exits;
mod bench_media;
mod bench_vboxsf;
mod console;
mod demo;
mod kit;
mod pgo;
mod test_cmd;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("kit") => kit::run(rest),
        Some("bench-exits") => bench_exits::run(rest),
        Some("bench-boot") => bench_boot::run(rest),
        Some("bench-cpu") => bench_cpu::run(rest),
        Some("bench-disk") => bench_disk::run(rest),
        Some("bench-display") => bench_display::run(rest),
        Some("bench-media") => bench_media::run_bench(rest),
        Some("bench-vboxsf") => bench_vboxsf::run(rest),
        Some("test") => test_cmd::run(rest),
        Some("demo") => demo::run(rest),
        Some("pgo") => pgo::run(rest),
        _ => anyhow::bail!(
            "usage: cargo xtask <task> [args]; tasks: kit, test, demo, pgo, bench-exits"
        ),
    }
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the repository")
        .to_path_buf()
}

/// The novabox binary the demo and the benchmarks run: `$NOVABOX_BIN` when set (to compare
/// two builds in one sitting), else the release build with the committed profile (see
/// [`pgo`]), else `cargo build --release -p novabox`'s; built now if needed.
pub fn release_novabox() -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("NOVABOX_BIN") {
        eprintln!(
            "novabox binary: {} (NOVABOX_BIN)",
            std::path::Path::new(&p).display()
        );
        return Ok(p.into());
    }
    if let Some(p) = pgo::build()? {
        return Ok(p);
    }
    eprintln!("building novabox (release)...");
    if !build_novabox(&target_dir(), None)? {
        anyhow::bail!("cargo build --release -p novabox failed");
    }
    Ok(target_dir().join("release").join("novabox"))
}

/// `cargo build --release -p novabox` into `target`, with `rustflag` added to the
/// caller's RUSTFLAGS when given; true when it succeeded.
pub fn build_novabox(target: &std::path::Path, rustflag: Option<&str>) -> anyhow::Result<bool> {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "-q", "-p", "novabox"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(repo_root());
    if let Some(flag) = rustflag {
        let flags = match std::env::var("RUSTFLAGS") {
            Ok(f) if !f.trim().is_empty() => format!("{f} {flag}"),
            _ => flag.to_string(),
        };
        cmd.env("RUSTFLAGS", flags);
    }
    Ok(cmd.status()?.success())
}

/// Where cargo builds (CARGO_TARGET_DIR, else target/ in the repository).
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}
