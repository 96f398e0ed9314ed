//! `novabox controlvm` and `novabox guestproperty`: requests to a running VM over its
//! control socket (glue::control), with VBoxManage's command shapes.

use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Commands that talk to a running VM.
#[derive(clap::Subcommand, Debug)]
pub enum ControlCommand {
    /// Control a running VM (poweroff, acpipowerbutton, mouse move X Y, clipboard ...).
    Controlvm {
        /// Name, UUID or .vbox path of the running VM.
        vm: String,
        /// What to do.
        #[command(subcommand)]
        action: ControlAction,
    },
    /// Guest properties of a running VM.
    Guestproperty {
        /// get | set | enumerate | wait.
        #[command(subcommand)]
        action: GuestPropAction,
    },
}

/// `controlvm` actions.
#[derive(clap::Subcommand, Debug)]
pub enum ControlAction {
    /// Power the VM off at once.
    Poweroff,
    /// Press the ACPI power button.
    Acpipowerbutton,
    /// The pointer.
    Mouse {
        /// move X Y: screen pixels (absolute through the Guest Additions when the guest
        /// asks for it, else PS/2 motion); on a machine without a display, the VMMDev's
        /// absolute 0..65535 range.
        #[command(subcommand)]
        action: MouseAction,
    },
    /// What the Guest Additions reported (version, run level).
    Guestinfo,
    /// The shared clipboard: its mode, and novabox's host clipboard text.
    Clipboard {
        /// mode MODE | set-text TEXT | get-text.
        #[command(subcommand)]
        action: ClipboardAction,
    },
    /// Save the guest screen as a PNG file.
    Screenshotpng {
        /// Where to write it.
        file: std::path::PathBuf,
    },
    /// Type a text on the guest keyboard (US layout).
    Keyboardputstring {
        /// The text (several words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Send raw set-1 scan code bytes (hex, e.g. 1e 9e).
    Keyboardputscancode {
        /// The bytes.
        #[arg(required = true)]
        codes: Vec<String>,
    },
    /// Ask the guest's video driver for a display mode.
    Setvideomodehint {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bits per pixel (default 32).
        bpp: Option<u32>,
    },
}

/// `controlvm VM mouse` actions.
#[derive(clap::Subcommand, Debug)]
pub enum MouseAction {
    /// Move the pointer.
    Move {
        /// X (pixels; 0..65535 without a display).
        x: u32,
        /// Y (pixels; 0..65535 without a display).
        y: u32,
    },
}

/// `controlvm VM clipboard` actions.
#[derive(clap::Subcommand, Debug)]
pub enum ClipboardAction {
    /// Set the clipboard mode: disabled | hosttoguest | guesttohost | bidirectional.
    Mode {
        /// The mode.
        mode: String,
    },
    /// Put a text on the host clipboard (the guest sees it when the mode allows).
    #[command(name = "set-text")]
    SetText {
        /// The text (several words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Print the host clipboard's text (the guest's, after it copied something and the
    /// mode allows guest to host).
    #[command(name = "get-text")]
    GetText,
}

/// `guestproperty` actions.
#[derive(clap::Subcommand, Debug)]
pub enum GuestPropAction {
    /// Print a property's value.
    Get {
        /// VM.
        vm: String,
        /// Property name.
        name: String,
    },
    /// Set (or, without a value, delete) a property.
    Set {
        /// VM.
        vm: String,
        /// Property name.
        name: String,
        /// Value (absent: delete).
        value: Option<String>,
        /// Flags (TRANSIENT, TRANSRESET, RDONLYGUEST, RDONLYHOST, READONLY).
        #[arg(long)]
        flags: Option<String>,
    },
    /// List properties, optionally only those matching patterns.
    Enumerate {
        /// VM.
        vm: String,
        /// Patterns (`*`, `?`).
        #[arg(long = "patterns")]
        patterns: Vec<String>,
    },
    /// Wait for a property matching PATTERNS to change.
    Wait {
        /// VM.
        vm: String,
        /// Patterns separated by `|`.
        patterns: String,
        /// Give up after this many milliseconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
}

fn send(vm: &str, words: &[&str], timeout: Duration) -> Result<String> {
    let (file, _) = crate::vbox_cmds::load_for_run(vm)?;
    let path = glue::control::socket_path(&file.machine_folder());
    match glue::control::request(&path, words, timeout) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(msg)) => bail!("{msg}"),
        Err(e) => Err(e).with_context(|| {
            format!(
                "machine '{vm}' is not running (no control socket at {})",
                path.display()
            )
        }),
    }
}

/// Run a control command; returns the exit code.
pub fn run(cmd: ControlCommand) -> Result<i32> {
    let t = Duration::from_secs(60);
    let out = match cmd {
        ControlCommand::Controlvm { vm, action } => match action {
            ControlAction::Poweroff => send(&vm, &["poweroff"], t)?,
            ControlAction::Acpipowerbutton => send(&vm, &["acpipowerbutton"], t)?,
            ControlAction::Mouse {
                action: MouseAction::Move { x, y },
            } => send(&vm, &["mouse", "move", &x.to_string(), &y.to_string()], t)?,
            ControlAction::Guestinfo => send(&vm, &["info"], t)?,
            ControlAction::Clipboard { action } => match action {
                ClipboardAction::Mode { mode } => send(&vm, &["clipboard", "mode", &mode], t)?,
                ClipboardAction::SetText { text } => {
                    let joined = text.join(" ");
                    send(&vm, &["clipboard", "set-text", &joined], t)?
                }
                ClipboardAction::GetText => send(&vm, &["clipboard", "get-text"], t)?,
            },
            ControlAction::Screenshotpng { file } => {
                // The VM writes the file: give it an absolute path.
                let file = std::path::absolute(&file)
                    .with_context(|| format!("bad file name {}", file.display()))?;
                let f = file.to_string_lossy();
                send(&vm, &["screenshotpng", &f], t)?
            }
            ControlAction::Keyboardputstring { text } => {
                let joined = text.join(" ");
                send(&vm, &["keyboardputstring", &joined], t)?
            }
            ControlAction::Keyboardputscancode { codes } => {
                let mut w = vec!["keyboardputscancode"];
                w.extend(codes.iter().map(String::as_str));
                send(&vm, &w, t)?
            }
            ControlAction::Setvideomodehint { width, height, bpp } => {
                let (w, h) = (width.to_string(), height.to_string());
                let b = bpp.map(|b| b.to_string());
                let mut words = vec!["setvideomodehint", w.as_str(), h.as_str()];
                if let Some(b) = &b {
                    words.push(b);
                }
                send(&vm, &words, t)?
            }
        },
        ControlCommand::Guestproperty { action } => match action {
            GuestPropAction::Get { vm, name } => send(&vm, &["guestproperty", "get", &name], t)?,
            GuestPropAction::Set {
                vm,
                name,
                value,
                flags,
            } => {
                let mut w = vec!["guestproperty", "set", name.as_str()];
                if let Some(v) = &value {
                    w.push(v);
                    if let Some(f) = &flags {
                        w.push(f);
                    }
                }
                send(&vm, &w, t)?
            }
            GuestPropAction::Enumerate { vm, patterns } => {
                let mut w = vec!["guestproperty", "enumerate"];
                w.extend(patterns.iter().map(String::as_str));
                send(&vm, &w, t)?
            }
            GuestPropAction::Wait {
                vm,
                patterns,
                timeout,
            } => {
                let ms = timeout.map(|m| m.to_string());
                let mut w = vec!["guestproperty", "wait", patterns.as_str()];
                if let Some(m) = &ms {
                    w.push(m);
                }
                let limit = timeout
                    .map(|m| Duration::from_millis(m) + t)
                    .unwrap_or(Duration::from_secs(365 * 24 * 3600));
                send(&vm, &w, limit)?
            }
        },
    };
    print!("{out}");
    if !out.is_empty() && !out.ends_with('\n') {
        println!();
    }
    Ok(0)
}

/// The guest properties a `.vbox` saved, for the Guest Additions at start (unknown flag
/// words are dropped, as VirtualBox ignores them).
pub fn saved_guest_properties(
    file: &settings::MachineFile,
) -> Vec<glue::wiring_guest_additions::GuestProperty> {
    file.machine
        .hardware
        .guest_properties
        .iter()
        .map(|p| glue::wiring_guest_additions::GuestProperty {
            name: p.name.clone(),
            value: p.value.clone(),
            timestamp: p.timestamp,
            flags: hgcm_flags(&p.flags),
        })
        .collect()
}

fn hgcm_flags(s: &str) -> u32 {
    s.split([',', ' '])
        .filter(|w| !w.is_empty())
        .filter_map(|w| glue::wiring_guest_additions::parse_guest_property_flags(w).ok())
        .fold(0, |a, f| a | f)
}

/// After the machine stopped: save its non-transient guest properties into the `.vbox`
/// (VirtualBox's safe save), as VirtualBox does at power-off. Failures are logged, not
/// fatal: the machine already ran.
pub fn persist_guest_properties(
    path: &std::path::Path,
    slot: &glue::wiring_guest_additions::HandleSlot,
) {
    let Some(ga) = slot.lock().clone() else {
        return;
    };
    let props: Vec<settings::GuestProperty> = ga
        .persistent_properties()
        .into_iter()
        .map(|p| settings::GuestProperty {
            flags: glue::wiring_guest_additions::guest_property_flags_text(p.flags),
            name: p.name,
            value: p.value,
            timestamp: p.timestamp,
        })
        .collect();
    let r = (|| -> anyhow::Result<()> {
        let mut file = settings::MachineFile::load(path)?;
        if file.machine.hardware.guest_properties == props {
            return Ok(());
        }
        settings::write::set_guest_properties(&mut file, &props)?;
        file.save()?;
        Ok(())
    })();
    if let Err(e) = r {
        tracing::warn!("guest properties not saved in {}: {e:#}", path.display());
        eprintln!(
            "novabox: guest properties not saved in {}: {e:#}",
            path.display()
        );
    }
}

/// For `showvminfo` of a running VM: the Guest Additions run level and version the guest
/// reported (asked over the control socket), in VBoxManage's human or machine-readable
/// form. Prints nothing when the VM does not answer.
pub fn print_additions_info(file: &settings::MachineFile, machine_readable: bool) {
    let path = glue::control::socket_path(&file.machine_folder());
    let Ok(Ok(info)) = glue::control::request(&path, &["info"], Duration::from_secs(5)) else {
        return;
    };
    print!("{}", format_additions_info(&info, machine_readable));
}

/// The `info` answer (`GuestAdditionsRunLevel=N`, `GuestAdditionsVersion="V"`) as
/// showvminfo prints it.
fn format_additions_info(info: &str, machine_readable: bool) -> String {
    if machine_readable {
        return info
            .lines()
            .filter(|l| l.starts_with("GuestAdditions"))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let mut out = String::new();
    for l in info.lines() {
        let (label, v) = match l.split_once('=') {
            Some(("GuestAdditionsRunLevel", v)) => ("Additions run level:", v),
            Some(("GuestAdditionsVersion", v)) => ("Additions version:", v.trim_matches('"')),
            _ => continue,
        };
        if !v.is_empty() {
            out.push_str(&format!("{label:<32}{v}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_info_in_both_forms() {
        let info = "GuestAdditionsRunLevel=2\nGuestAdditionsVersion=\"7.1.12r169051\"\n";
        assert_eq!(format_additions_info(info, true), info);
        let h = format_additions_info(info, false);
        assert!(h.contains("Additions run level:"), "{h}");
        assert!(h
            .lines()
            .any(|l| l.starts_with("Additions run level:") && l.ends_with(" 2")));
        assert!(h
            .lines()
            .any(|l| l.starts_with("Additions version:") && l.ends_with(" 7.1.12r169051")));
        // Nothing reported yet: no version line.
        let none = format_additions_info(
            "GuestAdditionsRunLevel=0\nGuestAdditionsVersion=\"\"\n",
            false,
        );
        assert!(!none.contains("version"), "{none}");
    }

    #[test]
    fn saved_flags_parse_word_by_word() {
        use glue::wiring_guest_additions::parse_guest_property_flags as p;
        let want = p("RDONLYGUEST").unwrap() | p("TRANSIENT").unwrap();
        assert_eq!(hgcm_flags("TRANSIENT, RDONLYGUEST"), want);
        assert_eq!(hgcm_flags("BOGUS, RDONLYGUEST"), p("RDONLYGUEST").unwrap());
        assert_eq!(hgcm_flags(""), 0);
    }
}
