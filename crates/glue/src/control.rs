//! The control channel of a running VM: a Unix socket in the machine folder
//! ([`socket_path`]), readable and writable by its owner only, that `novabox controlvm`
//! and `novabox guestproperty` talk to.
//!
//! Protocol: one request per connection, one line each way. A request is the command's
//! words, each percent-encoded (so any byte, spaces and newlines included, survives) and
//! separated by single spaces; the answer is `OK <text>` or `ERR <message>`, the text
//! percent-encoded the same way.

use crate::wiring_display::HandleSlot;
use crate::wiring_guest_additions::GuestAdditions;
use hgcm::clipboard::{self, SharedClipboard};
use hgcm::guestprop::{self, GuestProperties};
use hm::{ExecutionManager, StopReason};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest request line accepted (a clipboard text or property value fits).
const MAX_LINE: usize = 1 << 20;

/// The control socket of the machine in `machine_folder`.
pub fn socket_path(machine_folder: &Path) -> PathBuf {
    machine_folder.join("novabox.ctl")
}

/// Percent-encode everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:,=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undo [`encode`]; None for malformed input.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What answers requests.
pub type Handler = Arc<dyn Fn(&[String]) -> Result<String, String> + Send + Sync>;

/// Serve `handler` on a new socket at `path` (a stale socket file is replaced). The
/// listener thread runs until the process ends.
pub fn serve(path: &Path, handler: Handler) -> std::io::Result<()> {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if md.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                let _ = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || answer(conn, &h));
            }
        })?;
    Ok(())
}

fn answer(conn: UnixStream, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    let mut limited = (&mut reader).take(MAX_LINE as u64);
    if limited.read_line(&mut line).is_err() {
        return;
    }
    let words: Option<Vec<String>> = line
        .trim_end_matches('\n')
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(decode)
        .collect();
    let reply = match words {
        None => Err("malformed request".to_string()),
        Some(w) => handler(&w),
    };
    let text = match reply {
        Ok(t) => format!("OK {}\n", encode(&t)),
        Err(e) => format!("ERR {}\n", encode(&e)),
    };
    let mut conn = conn;
    let _ = conn.write_all(text.as_bytes());
}

use std::io::Read;

/// Send one request; `Ok(Err(msg))` is the VM's refusal.
pub fn request(
    path: &Path,
    words: &[&str],
    timeout: Duration,
) -> std::io::Result<Result<String, String>> {
    let mut conn = UnixStream::connect(path)?;
    conn.set_read_timeout(Some(timeout))?;
    let line: Vec<String> = words.iter().map(|w| encode(w)).collect();
    conn.write_all(format!("{}\n", line.join(" ")).as_bytes())?;
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply)?;
    let reply = reply.trim_end_matches('\n');
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed reply");
    let (tag, body) = reply.split_once(' ').unwrap_or((reply, ""));
    let body = decode(body).ok_or_else(bad)?;
    match tag {
        "OK" => Ok(Ok(body)),
        "ERR" => Ok(Err(body)),
        _ => Err(bad()),
    }
}

fn prop_line(p: &guestprop::Property) -> String {
    format!(
        "Name: {}, value: {}, timestamp: {}, flags: {}",
        p.name,
        p.value,
        p.timestamp,
        guestprop::write_flags(p.flags)
    )
}

/// Work run on the guest property service's thread.
type PropJob = Box<dyn FnOnce(&mut GuestProperties) -> Result<String, String> + Send>;
/// Work run on the clipboard service's thread.
type ClipJob = Box<dyn FnOnce(&mut SharedClipboard) -> Result<String, String> + Send>;

/// The requests a running machine answers. With a display, its requests
/// (`wiring_display::handle_control`: screenshots, typing, mode hints, the pointer in
/// screen pixels) come first; the rest are the machine's and the Guest Additions'.
pub fn machine_handler(
    ga: GuestAdditions,
    exec: Arc<ExecutionManager>,
    display: Option<HandleSlot>,
    acpi_pm: Option<Arc<parking_lot::Mutex<devices::acpi::PmRegisters>>>,
) -> Handler {
    Arc::new(move |w: &[String]| {
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        let display_handle = display.as_ref().and_then(|slot| slot.lock().clone());
        if let Some(h) = display_handle {
            if let Some(r) = crate::wiring_display::handle_control(&h, &w) {
                return r;
            }
        }
        let props = |f: PropJob| {
            ga.hgcm
                .with_service::<GuestProperties, _>(guestprop::SERVICE_NAME, f)
                .unwrap_or_else(|| Err("no guest property service".into()))
        };
        let clip = |f: ClipJob| {
            ga.hgcm
                .with_service::<SharedClipboard, _>(clipboard::SERVICE_NAME, f)
                .unwrap_or_else(|| Err("no shared clipboard service".into()))
        };
        match w.as_slice() {
            ["clipboard", "mode", m] => {
                let mode = clipboard::Mode::parse(m).ok_or_else(|| {
                    format!(
                        "clipboard mode {m}: use disabled|hosttoguest|guesttohost|bidirectional"
                    )
                })?;
                clip(Box::new(move |s| {
                    s.set_mode(mode);
                    Ok(String::new())
                }))
            }
            ["clipboard", "set-text", text] => {
                let text = text.to_string();
                clip(Box::new(move |s| {
                    s.host_set_text(&text);
                    Ok(String::new())
                }))
            }
            ["clipboard", "get-text"] => clip(Box::new(|s| {
                s.host_text()
                    .ok_or_else(|| "the clipboard holds no text".to_string())
            })),
            ["poweroff"] => {
                exec.request_stop(StopReason::PowerOff);
                Ok(String::new())
            }
            ["mouse", "move", x, y] => {
                let x: i32 = x.parse().map_err(|_| format!("bad X {x}"))?;
                let y: i32 = y.parse().map_err(|_| format!("bad Y {y}"))?;
                if !(0..=0xffff).contains(&x) || !(0..=0xffff).contains(&y) {
                    return Err("X and Y are absolute coordinates 0..65535".into());
                }
                ga.vmmdev.set_absolute_mouse(x, y, 0, 0, 0);
                let wants = ga.vmmdev.guest_wants_absolute();
                Ok(if wants {
                    String::new()
                } else {
                    "the guest has not enabled absolute pointing (yet)".into()
                })
            }
            ["acpipowerbutton"] => match &acpi_pm {
                Some(pm) => {
                    let mut pm = pm.lock();
                    let listening = pm.acpi_enabled();
                    pm.press_power_button();
                    Ok(if listening {
                        String::new()
                    } else {
                        "the guest has not enabled ACPI (yet): the press may go unnoticed".into()
                    })
                }
                None => Err("this machine has no ACPI power button".into()),
            },
            ["info"] => {
                let g = ga.vmmdev.guest_info();
                let version = g
                    .additions
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                Ok(format!(
                    "GuestAdditionsRunLevel={}\nGuestAdditionsVersion=\"{version}\"\n",
                    g.run_level().as_u32()
                ))
            }
            ["guestproperty", "get", name] => {
                let name = name.to_string();
                props(Box::new(move |s| {
                    Ok(match s.get(&name) {
                        Some(p) => format!("Value: {}\n", p.value),
                        None => "No value set!\n".into(),
                    })
                }))
            }
            ["guestproperty", "set", name, rest @ ..] => {
                let (name, value, flags) = (
                    name.to_string(),
                    rest.first().map(|s| s.to_string()),
                    rest.get(1).map(|s| s.to_string()).unwrap_or_default(),
                );
                props(Box::new(move |s| {
                    let f =
                        guestprop::parse_flags(&flags).map_err(|_| format!("bad flags {flags}"))?;
                    s.host_set(&name, value.as_deref(), f)
                        .map(|_| String::new())
                        .map_err(|rc| format!("cannot set {name}: VirtualBox status {rc}"))
                }))
            }
            ["guestproperty", "enumerate", pats @ ..] => {
                let pats = pats.join("|");
                props(Box::new(move |s| {
                    Ok(s.enumerate(&pats)
                        .iter()
                        .map(|p| prop_line(p) + "\n")
                        .collect())
                }))
            }
            ["guestproperty", "wait", pats, rest @ ..] => {
                let ms: u64 = match rest.first() {
                    Some(t) => t.parse().map_err(|_| format!("bad timeout {t}"))?,
                    None => u64::MAX,
                };
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let pats = pats.to_string();
                props(Box::new(move |s| {
                    s.host_wait(
                        &pats,
                        Box::new(move |p| {
                            let _ = tx.send(p);
                        }),
                    );
                    Ok(String::new())
                }))?;
                let got = if ms == u64::MAX {
                    rx.recv().ok()
                } else {
                    rx.recv_timeout(Duration::from_millis(ms)).ok()
                };
                match got {
                    Some(p) => Ok(prop_line(&p) + "\n"),
                    None => {
                        Err("Time out or interruption while waiting for a notification.".into())
                    }
                }
            }
            _ => Err(format!("unknown request: {}", w.join(" "))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        for s in ["", "plain", "two words", "nl\nand %25 ü", "a=b,c"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
            assert!(!encode(s).contains([' ', '\n']));
        }
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
    }

    #[test]
    fn socket_is_owner_only_and_answers() {
        let dir = tempfile_dir();
        let path = socket_path(&dir);
        serve(
            &path,
            Arc::new(|w: &[String]| match w {
                [a, b] if a == "echo" => Ok(b.clone()),
                _ => Err("nope".into()),
            }),
        )
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let t = Duration::from_secs(5);
        assert_eq!(
            request(&path, &["echo", "hi there\n"], t).unwrap(),
            Ok("hi there\n".into())
        );
        assert_eq!(request(&path, &["other"], t).unwrap(), Err("nope".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("novabox-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
