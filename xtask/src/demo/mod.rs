//! `cargo xtask demo`: set up the guest kit and boot the demo machine with its serial
//! console on this terminal.

use std::process::Command;

/// Build the kit and novabox, then boot the kit's Linux with a shell on the console.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = crate::repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .args(["xtask", "kit"])
        .current_dir(&root)
        .status()?;
    anyhow::ensure!(st.success(), "building the guest kit failed");
    let kit = std::env::var_os("NOVABOX_KIT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("kit-cache"));
    let mut cmd = Command::new(&cargo);
    cmd.args(["run", "--release", "-q", "-p", "novabox", "--", "run"])
        .arg("--kernel")
        .arg(kit.join("vmlinuz"))
        .arg("--initrd")
        .arg(kit.join("initramfs.cpio.gz"))
        .args([
            "--memory",
            "512",
            "--cmdline",
            "console=ttyS0 quiet novabox.shell=1",
        ])
        .args(args)
        .current_dir(&root);
    let st = cmd.status()?;
    std::process::exit(st.code().unwrap_or(1));
}
