//! `cargo xtask test`: the whole test suite, set-up included (the README's test command and
//! what CI runs).

use std::process::Command;

fn step(name: &str, cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {name}");
    let status = cmd.status()?;
    if !status.success() {
        anyhow::bail!("{name} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Whether `npm ci` must (re)install the browser test driver in `web`: it is missing, or
/// the lock file changed since npm last installed from it (npm keeps its own copy of the
/// lock in `node_modules/.package-lock.json`).
fn browser_driver_stale(web: &std::path::Path) -> bool {
    let modified = |p: std::path::PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(web.join("package-lock.json")),
        modified(web.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    }
}

/// Run everything: host set-up, the guest kit, formatting and lint checks, all tests.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = crate::repo_root();
    let quick = args.iter().any(|a| a == "--quick");
    step(
        "host packages (scripts/setup-host.sh)",
        Command::new("bash").arg(root.join("scripts/setup-host.sh")),
    )?;
    if browser_driver_stale(&root.join("crates/vnc/web")) {
        step(
            "browser test driver (npm ci --prefix crates/vnc/web)",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(root.join("crates/vnc/web")),
        )?;
    }
    step(
        "guest kit (cargo xtask kit)",
        cargo().args(["xtask", "kit"]).current_dir(&root),
    )?;
    step(
        "format check",
        cargo()
            .args(["fmt", "--all", "--", "--check"])
            .current_dir(&root),
    )?;
    if !quick {
        step(
            "clippy",
            cargo()
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--release",
                    "--",
                    "-D",
                    "warnings",
                ])
                .current_dir(&root),
        )?;
    }
    step(
        "tests",
        cargo()
            .args([
                "test",
                "--workspace",
                "--release",
                "--",
                "--test-threads=2",
                "--nocapture",
            ])
            .current_dir(&root),
    )?;
    step(
        "demo machine (cargo xtask demo --check)",
        cargo()
            .args(["xtask", "demo", "--check"])
            .current_dir(&root),
    )?;
    eprintln!("==> all tests passed");
    Ok(())
}
