//! `cargo xtask demo`: set up the guest kit and boot the demo machine, a VirtualBox
//! machine defined by the `.vbox` embedded here (`demo.vbox`), with its serial console
//! on this terminal.
//!
//! The machine lives in `demo-vm/` at the repository root (or `$NOVABOX_DEMO_DIR`): its
//! `.vbox`, its own copy of the kit's demo disk (a VDI that SYSLINUX boots to a busybox
//! shell, so what the user changes on it stays), `Logs/VBox.log`, and `shared/`, the
//! host folder the guest sees at `/mnt/shared` through the Guest Additions' shared
//! folders. `--reset` starts again from the kit's disk. Other arguments go to
//! `novabox run` (e.g. `--vnc 5901`). `--check` boots it in a scratch folder with a
//! scripted shell session instead (see `check.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

mod check;

/// The embedded machine definition.
const DEMO_VBOX: &str = include_str!("demo.vbox");

/// Where the demo machine lives.
pub fn machine_dir() -> PathBuf {
    std::env::var_os("NOVABOX_DEMO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("demo-vm"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `.vbox` text for a machine whose disk has `disk_uuid` and whose shared folder is
/// `shared`.
pub fn vbox_text(disk_uuid: &media::Uuid, machine_uuid: &media::Uuid, shared: &Path) -> String {
    DEMO_VBOX
        .replace("@DISK_UUID@", &disk_uuid.to_string())
        .replace("@MACHINE_UUID@", &machine_uuid.to_string())
        .replace("@SHARED@", &xml_escape(&shared.to_string_lossy()))
}

/// Create (or refresh) the demo machine in `dir` from the kit in `kit`; returns the
/// `.vbox` path.
pub fn prepare(kit: &Path, dir: &Path, reset: bool) -> Result<PathBuf> {
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    let hello = shared.join("hello.txt");
    if !hello.exists() {
        std::fs::write(
            &hello,
            "This file is on the host, in demo-vm/shared/. The guest sees it at /mnt/shared.\n",
        )?;
    }
    let disk = dir.join("demo-disk.vdi");
    if reset || !disk.exists() {
        let src = kit.join("demo-disk.vdi");
        std::fs::copy(&src, &disk)
            .with_context(|| format!("copying {} to {}", src.display(), disk.display()))?;
    }
    let info = media::open(
        &disk,
        &media::OpenOptions {
            lock: false,
            ..media::OpenOptions::default()
        },
    )
    .with_context(|| format!("opening {}", disk.display()))?
    .info();
    let disk_uuid = info.first().context("the demo disk has no header")?.uuid;
    // Keep the machine's identity across runs (VirtualBox never changes it).
    let vbox = dir.join("novabox-demo.vbox");
    let machine_uuid = std::fs::read_to_string(&vbox)
        .ok()
        .and_then(|t| {
            let at = t.find("<Machine uuid=\"{")? + 16;
            media::Uuid::parse(t.get(at..at + 36)?)
        })
        .unwrap_or_else(media::Uuid::random);
    let shared_abs = std::fs::canonicalize(&shared)?;
    std::fs::write(&vbox, vbox_text(&disk_uuid, &machine_uuid, &shared_abs))
        .with_context(|| format!("writing {}", vbox.display()))?;
    Ok(vbox)
}

/// Build the kit and novabox, then boot the demo machine with its console here.
pub fn run(args: &[String]) -> Result<()> {
    let root = crate::repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .args(["xtask", "kit"])
        .current_dir(&root)
        .status()?;
    anyhow::ensure!(st.success(), "building the guest kit failed");
    let kit = std::env::var_os("NOVABOX_KIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("kit-cache"));
    if args.iter().any(|a| a == "--check") {
        let mut novabox = Command::new(&cargo);
        novabox
            .args(["run", "--release", "-q", "-p", "novabox", "--"])
            .current_dir(&root);
        return check::run(&kit, novabox);
    }
    let reset = args.iter().any(|a| a == "--reset");
    let rest: Vec<&String> = args.iter().filter(|a| *a != "--reset").collect();
    let dir = machine_dir();
    let vbox = prepare(&kit, &dir, reset)?;
    eprintln!(
        "demo: machine {} (shared folder {} -> /mnt/shared in the guest); leave the guest shell with `exit`",
        vbox.display(),
        dir.join("shared").display()
    );
    let mut cmd = Command::new(crate::release_novabox()?);
    cmd.arg("run")
        .arg(&vbox)
        .arg("--console")
        .arg("--bios")
        .arg(kit.join("bios.bin"))
        .args(rest)
        .current_dir(&root);
    let st = cmd.status()?;
    std::process::exit(st.code().unwrap_or(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vbox_fills_in_and_escapes() {
        let d = media::Uuid::parse("3420c432-39ba-4532-a255-1557101645a4").unwrap();
        let m = media::Uuid::parse("dfec529a-ecfa-4f2a-b82b-b8d8ea782ef1").unwrap();
        let t = vbox_text(&d, &m, Path::new("/tmp/a&b/shared"));
        assert!(!t.contains('@'), "every placeholder is filled: {t}");
        assert!(t.contains("hostPath=\"/tmp/a&amp;b/shared\""));
        assert_eq!(t.matches("3420c432-39ba-4532-a255-1557101645a4").count(), 2);
    }
}
