//! `cargo xtask demo --check`: boot the demo machine exactly as `cargo xtask demo` does,
//! but in a scratch folder and with a script typed into its shell instead of a user: the
//! guest reads the host's file through the shared folder, writes one back, and powers off.
//! `cargo xtask test` runs it, so the README's demo command is tested as users run it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long the whole check may take (boot on the interpreter is about a minute here).
const TIMEOUT: Duration = Duration::from_secs(600);

/// What the guest writes into the shared folder.
const GUEST_TEXT: &str = "written by the demo guest";

/// Run the check with the kit in `kit`; `novabox` is the command that starts novabox.
pub fn run(kit: &Path, mut novabox: Command) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("novabox-demo-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let vbox = super::prepare(kit, &scratch, true)?;
    let shared = scratch.join("shared");
    let result = boot_and_type(&mut novabox, &vbox, kit);
    let from_guest = std::fs::read_to_string(shared.join("from-guest.txt"));
    let log_ok = scratch.join("Logs/VBox.log").exists();
    let out = result?;
    let from_guest = from_guest.context("the guest's file did not appear in the shared folder")?;
    if from_guest.trim() != GUEST_TEXT {
        bail!("the guest's file holds {from_guest:?}, expected {GUEST_TEXT:?}");
    }
    if !out.contains("This file is on the host") {
        bail!("the guest did not print the host's hello.txt; console:\n{out}");
    }
    if !log_ok {
        bail!("no Logs/VBox.log next to the demo machine");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("demo check: the guest read the host's file and wrote one back through /mnt/shared");
    Ok(())
}

/// Boot, wait for the shell, type the script, wait for power-off; returns the console.
fn boot_and_type(novabox: &mut Command, vbox: &Path, kit: &Path) -> Result<String> {
    let mut child = novabox
        .arg("run")
        .arg(vbox)
        .arg("--console")
        .arg("--bios")
        .arg(kit.join("bios.bin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting novabox")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut console = String::new();
    let mut typed = false;
    let mut stdin = child.stdin.take();
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                console.push_str(&line);
                console.push('\n');
                if !typed && line.contains("NOVABOX-SF-FAIL") {
                    let _ = child.kill();
                    bail!("the guest could not mount the shared folder; console:\n{console}");
                }
                if !typed && line.contains("NOVABOX-SHELL") {
                    typed = true;
                    let script = format!(
                        "cat /mnt/shared/hello.txt\necho '{GUEST_TEXT}' > /mnt/shared/from-guest.txt\nsync\nexit\n"
                    );
                    if let Some(s) = stdin.as_mut() {
                        s.write_all(script.as_bytes())?;
                        s.flush()?;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break child.wait()?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(st) = child.try_wait()? {
                    break st;
                }
            }
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            bail!("the demo did not power off within {TIMEOUT:?}; console:\n{console}");
        }
    };
    drop(stdin);
    if !typed {
        bail!("the demo guest never reached its shell ({status}); console:\n{console}");
    }
    if !status.success() {
        bail!("novabox exited with {status}; console:\n{console}");
    }
    eprintln!(
        "demo check: shell reached and powered off in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(console)
}
