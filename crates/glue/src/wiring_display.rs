//! Wiring of the display: VirtualBox's graphics adapter (VBoxVGA at 00:02.0 with the VGA
//! BIOS in its ROM BAR), a display thread that renders what the guest changed into a
//! [`vnc::Screen`], the VNC/web console server on that screen, and the host's keyboard and
//! pointer into the i8042.
//!
//! The video memory is guest RAM owned by the adapter (pgm's MMIO2, mapped wherever the
//! guest puts BAR0), so framebuffer writes cost the guest no exit; pgm marks the pages
//! written. The display thread wakes 60 times a second and asks the renderer for damage;
//! the renderer takes those dirty pages (or, in text mode, compares character cells),
//! so an idle screen costs a bitmap scan, not a picture comparison. It ends by itself when
//! the machine is gone.

use crate::machine::{MachineError, WiringContext};
use crate::wiring_guest_additions::GuestAdditions;
use devices::i8042::I8042;
use devices::pci::PciAddress;
use devices::vga::{self, Renderer, Vga, VgaConfig, VgaDevice};
use devices::vmmdev::consts::mouse as vmm_mouse;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The adapter's PCI slot (VirtualBox puts the VGA at 00:02.0).
pub const VGA_SLOT: u8 = 2;
/// How often the display thread looks for damage: 60 times a second (a tick with no damage
/// costs a scan of the dirty bitmap, one bit per 4 KiB of VRAM).
const REFRESH: Duration = Duration::from_millis(16);
/// Refresh period while no client watches.
const IDLE_REFRESH: Duration = Duration::from_millis(250);

/// Graphics adapters a `.vbox` can name (`<Display controller=...>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// VBoxVGA (VirtualBox's default for most guest types).
    VBoxVga,
    /// VBoxSVGA: not modelled yet.
    VBoxSvga,
    /// VMSVGA: not modelled yet.
    VmSvga,
}

impl Controller {
    /// Parse a `.vbox` controller name (case-insensitive; "None" gives None).
    pub fn parse(name: &str) -> Result<Option<Controller>, String> {
        match name.to_ascii_lowercase().as_str() {
            "vboxvga" => Ok(Some(Controller::VBoxVga)),
            "vboxsvga" => Ok(Some(Controller::VBoxSvga)),
            "vmsvga" => Ok(Some(Controller::VmSvga)),
            "none" | "" => Ok(None),
            other => Err(format!("unknown graphics controller {other:?}")),
        }
    }
}

/// The VNC / web console server.
#[derive(Debug, Clone)]
pub struct VncConfig {
    /// Where to listen (loopback unless the user says otherwise).
    pub listen: SocketAddr,
    /// Password (VNC authentication) or None.
    pub password: Option<String>,
}

/// What the machine has of this kind.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The graphics adapter; None: a headless machine without one.
    pub controller: Option<Controller>,
    /// VRAM in MiB (VirtualBox's VRAMSize; 0 means VirtualBox's default of 16).
    pub vram_mib: u32,
    /// Monitors (VirtualBox's monitorCount).
    pub monitors: u32,
    /// The VGA BIOS; None: look for SeaBIOS's vgabios in the kit or Debian's package.
    pub vga_bios: Option<Vec<u8>>,
    /// Remote display server.
    pub vnc: Option<VncConfig>,
    /// Filled in by [`attach`] with the handle the frontend uses (screenshots, typing,
    /// mode hints).
    pub handle: HandleSlot,
    /// The Guest Additions' handle slot (`wiring_guest_additions::Config::handle`): with
    /// it, the pointer goes to the VMMDev as absolute positions whenever the guest's
    /// Additions ask for them, else through the PS/2 mouse as relative motion.
    pub guest_additions: Option<Arc<Mutex<Option<GuestAdditions>>>>,
}

/// Where [`attach`] leaves the display handle.
pub type HandleSlot = Arc<Mutex<Option<Arc<DisplayHandle>>>>;

/// The default VNC port when `--vnc` gives only an address.
pub const DEFAULT_VNC_PORT: u16 = 5900;

/// Parse `--vnc [ADDR:]PORT` (ADDR defaults to 127.0.0.1; IPv6 as `[::1]:5901`).
pub fn parse_vnc_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_VNC_PORT));
    }
    Err(format!(
        "--vnc {s:?}: expected [ADDR:]PORT, e.g. 5901 or 127.0.0.1:5901"
    ))
}

/// The display part of `novabox run`: the `.vbox`'s adapter (`controller`, VRAM,
/// monitors), and a VNC server from `--vnc` or else the `.vbox`'s remote display settings
/// (`vrde`: the TCP ports, of which the first is used, and the address; an empty address
/// means loopback here, unlike VirtualBox, so that a VM never listens on the network
/// unless told to). The password comes from the NOVABOX_VNC_PASSWORD environment variable.
pub fn run_config(
    controller: &str,
    vram_mib: u32,
    monitors: u32,
    vnc_arg: Option<&str>,
    vrde: Option<(&str, &str)>,
) -> Result<Config, String> {
    let listen = match (vnc_arg, vrde) {
        (Some(a), _) => Some(parse_vnc_listen(a)?),
        (None, Some((ports, address))) => {
            let first = ports.split([',', '-']).next().unwrap_or("").trim();
            let port: u16 = first
                .parse()
                .map_err(|_| format!("remote display port {ports:?} is not a port number"))?;
            let ip = if address.is_empty() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                address.parse().map_err(|_| {
                    format!("remote display address {address:?} is not an IP address")
                })?
            };
            Some(SocketAddr::new(ip, port))
        }
        (None, None) => None,
    };
    let password = std::env::var("NOVABOX_VNC_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    Ok(Config {
        controller: Controller::parse(controller)?,
        vram_mib,
        monitors,
        vga_bios: None,
        vnc: listen.map(|listen| VncConfig { listen, password }),
        handle: HandleSlot::default(),
        guest_additions: None,
    })
}

/// SeaBIOS's VGA BIOS for Bochs-VBE adapters, from the kit or Debian's seabios package.
pub fn find_vgabios() -> Option<PathBuf> {
    [
        crate::firmware::kit_dir().join("vgabios-stdvga.bin"),
        PathBuf::from("/usr/share/seabios/vgabios-stdvga.bin"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The frontend's handle on the display: screenshots, keyboard, pointer, mode hints.
pub struct DisplayHandle {
    vga: Weak<Mutex<Vga>>,
    renderer: Mutex<Renderer>,
    screen: Arc<vnc::Screen>,
    input: Arc<GuestInput>,
    server_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for DisplayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisplayHandle")
            .field("server", &self.server_addr)
            .finish()
    }
}

/// Errors of display operations.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// The machine is gone.
    #[error("the machine has stopped")]
    Stopped,
    /// PNG encoding.
    #[error("cannot encode the screenshot: {0}")]
    Png(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
}

impl DisplayHandle {
    /// Render what changed into the shared screen (the display thread calls this).
    fn refresh(&self) -> Result<(), DisplayError> {
        let vga = self.vga.upgrade().ok_or(DisplayError::Stopped)?;
        let mut r = self.renderer.lock();
        let (rects, cursor) = {
            let mut v = vga.lock();
            (r.refresh(&mut v), v.take_cursor())
        };
        if !rects.is_empty() {
            let fb = r.framebuffer();
            let rects: Vec<vnc::Rect> = rects
                .iter()
                .map(|r| vnc::Rect {
                    x: r.x,
                    y: r.y,
                    w: r.w,
                    h: r.h,
                })
                .collect();
            self.screen.update(fb.width, fb.height, &fb.pixels, &rects);
        }
        if let Some(c) = cursor {
            self.screen
                .set_cursor((c.visible && c.width > 0).then_some(vnc::CursorImage {
                    width: c.width,
                    height: c.height,
                    hot_x: c.hot_x,
                    hot_y: c.hot_y,
                    pixels: c.pixels,
                }));
        }
        Ok(())
    }

    /// The picture now.
    pub fn frame(&self) -> Result<vnc::Frame, DisplayError> {
        self.refresh()?;
        Ok(self.screen.snapshot())
    }

    /// The picture now as a PNG.
    pub fn screenshot_png(&self) -> Result<Vec<u8>, DisplayError> {
        vnc::encode_png(&self.frame()?).map_err(|e| DisplayError::Png(e.to_string()))
    }

    /// The characters on screen in a text mode (None in graphics modes).
    pub fn text(&self) -> Result<Option<Vec<String>>, DisplayError> {
        let vga = self.vga.upgrade().ok_or(DisplayError::Stopped)?;
        let t = vga.lock().text_screen();
        Ok(t)
    }

    /// The shared screen (what the VNC clients see).
    pub fn screen(&self) -> &Arc<vnc::Screen> {
        &self.screen
    }

    /// Where the VNC server listens, if it runs.
    pub fn vnc_addr(&self) -> Option<SocketAddr> {
        self.server_addr
    }

    /// Type `text` on a US keyboard layout; returns the characters that have no key.
    pub fn put_string(&self, text: &str) -> Vec<char> {
        let (keys, skipped) = vnc::keymap::type_string(text);
        for (code, down) in keys {
            vnc::Input::key(&*self.input, code, down);
        }
        skipped
    }

    /// Send raw scan code bytes (set 1, as VBoxManage keyboardputscancode takes them).
    pub fn put_scancodes(&self, bytes: &[u8]) -> bool {
        self.input.kbd.lock().push_scancodes_set1(bytes)
    }

    /// Move the pointer to (x, y) of the screen with `buttons` (bit 0 left, 1 right,
    /// 2 middle).
    pub fn mouse_move(&self, x: u32, y: u32, buttons: u8) {
        // The screen is only kept current while someone watches it: bring its size up to
        // date (a stopped machine keeps the last one).
        let _ = self.refresh();
        let (w, h) = self.screen.size();
        // RFB's mask has middle in bit 1 and right in bit 2.
        let rfb = (buttons & 1) | ((buttons & 2) << 1) | ((buttons & 4) >> 1);
        vnc::Input::pointer(
            &*self.input,
            x.min(w.saturating_sub(1)),
            y.min(h.saturating_sub(1)),
            rfb,
            w,
            h,
        );
    }

    /// Ask the guest for a video mode (VirtualBox's setvideomodehint); false when the
    /// guest's driver does not listen for hints.
    pub fn set_video_mode_hint(
        &self,
        width: u32,
        height: u32,
        bpp: u32,
    ) -> Result<bool, DisplayError> {
        if !(64..=16384).contains(&width) || !(64..=16384).contains(&height) {
            return Err(DisplayError::Invalid(format!(
                "mode {width}x{height} out of range"
            )));
        }
        if self.vga.upgrade().is_none() {
            return Err(DisplayError::Stopped);
        }
        Ok(self.input.hint(width, height, bpp))
    }
}

/// The display part of the control channel (`novabox controlvm VM ...`): answers
/// `screenshotpng FILE`, `keyboardputstring TEXT...`, `keyboardputscancode HEX...`,
/// `setvideomodehint W H [BPP]`, `mouse move X Y` (pixels, through the PS/2 mouse) and
/// `screentext` (the characters of a text-mode screen);
/// None for anything else, so a control handler can try it after its own requests.
pub fn handle_control(h: &DisplayHandle, words: &[&str]) -> Option<Result<String, String>> {
    let r = match words {
        ["screenshotpng", file] => h
            .screenshot_png()
            .map_err(|e| e.to_string())
            .and_then(|png| {
                std::fs::write(file, png).map_err(|e| format!("cannot write {file}: {e}"))
            })
            .map(|_| String::new()),
        // Not a VBoxManage command: the characters of a text-mode screen, one row per line
        // (tests and scripts check what the firmware or boot loader printed).
        ["screentext"] => h.text().map_err(|e| e.to_string()).and_then(|t| {
            t.map(|rows| rows.join("\n"))
                .ok_or_else(|| "the screen is in a graphics mode".to_string())
        }),
        ["keyboardputstring", text @ ..] if !text.is_empty() => {
            let skipped = h.put_string(&text.join(" "));
            if skipped.is_empty() {
                Ok(String::new())
            } else {
                Ok(format!(
                    "typed; no key on the US layout for: {}",
                    skipped.iter().collect::<String>()
                ))
            }
        }
        ["keyboardputscancode", hex @ ..] if !hex.is_empty() => hex
            .iter()
            .map(|b| {
                u8::from_str_radix(b.trim_start_matches("0x"), 16)
                    .map_err(|_| format!("bad scan code byte {b:?} (expected hex, e.g. 1e 9e)"))
            })
            .collect::<Result<Vec<u8>, String>>()
            .and_then(|bytes| {
                if h.put_scancodes(&bytes) {
                    Ok(String::new())
                } else {
                    Err("the keyboard buffer is full or scanning is off".into())
                }
            }),
        ["setvideomodehint", w, hh, rest @ ..] if rest.len() <= 1 => {
            let num = |s: &str| s.parse::<u32>().map_err(|_| format!("bad number {s:?}"));
            (|| {
                let bpp = match rest.first() {
                    Some(b) => num(b)?,
                    None => 32,
                };
                let listening = h
                    .set_video_mode_hint(num(w)?, num(hh)?, bpp)
                    .map_err(|e| e.to_string())?;
                Ok(if listening {
                    String::new()
                } else {
                    "hint stored; the guest's video driver has not asked for hints (yet)".into()
                })
            })()
        }
        ["mouse", "move", x, y] => {
            let num = |s: &str| {
                s.parse::<u32>()
                    .map_err(|_| format!("bad coordinate {s:?}"))
            };
            (|| {
                h.mouse_move(num(x)?, num(y)?, 0);
                Ok(String::new())
            })()
        }
        _ => return None,
    };
    Some(r)
}

/// The guest's keyboard and pointer as the VNC server drives them.
struct GuestInput {
    kbd: Arc<Mutex<I8042>>,
    vga: Weak<Mutex<Vga>>,
    /// Last pointer position and RFB button mask.
    last: Mutex<Option<(u32, u32, u8)>>,
    /// The VMMDev, once the Guest Additions wiring has made it.
    guest_additions: Option<Arc<Mutex<Option<GuestAdditions>>>>,
}

/// Map pixel `v` of `size` onto the VMMDev's 0..0xFFFF range (as VirtualBox does, rounding
/// towards the pixel's left/top edge so guests that round land on the same pixel).
fn to_absolute(v: u32, size: u32) -> i32 {
    let size = u64::from(size.max(1));
    let a = (u64::from(v) + 1) * 0xffff;
    (a.saturating_sub(0xbfff) / size).min(0xffff) as i32
}

/// An i8042 extension the display uses: queue set-1 bytes as if the keyboard sent them.
trait Set1Bytes {
    fn push_scancodes_set1(&mut self, bytes: &[u8]) -> bool;
}

impl Set1Bytes for I8042 {
    fn push_scancodes_set1(&mut self, bytes: &[u8]) -> bool {
        // Split the byte stream into keys: [E0] code, bit 7 = release.
        let mut ok = true;
        let mut i = 0;
        while i < bytes.len() {
            let (prefix, code) = if bytes[i] == 0xe0 && i + 1 < bytes.len() {
                i += 2;
                (true, bytes[i - 1])
            } else {
                i += 1;
                (false, bytes[i - 1])
            };
            let make = code & 0x7f;
            let seq: &[u8] = if prefix { &[0xe0, make] } else { &[make] };
            ok &= self.key_event_set1(seq, code & 0x80 == 0);
        }
        ok
    }
}

impl vnc::Input for GuestInput {
    fn key(&self, xt: u16, down: bool) {
        let mut k = self.kbd.lock();
        if xt > 0xff {
            k.key_event_set1(&[0xe0, xt as u8], down);
        } else {
            k.key_event_set1(&[xt as u8], down);
        }
    }

    fn pointer(&self, x: u32, y: u32, buttons: u8, width: u32, height: u32) {
        let vmmdev = self
            .guest_additions
            .as_ref()
            .and_then(|slot| slot.lock().as_ref().map(|ga| ga.vmmdev.clone()));
        let ps2_buttons = (buttons & 1) | ((buttons & 4) >> 1) | ((buttons & 2) << 1);
        let wheel = if buttons & 8 != 0 {
            -1
        } else if buttons & 16 != 0 {
            1
        } else {
            0
        };
        if let Some(v) = vmmdev {
            // The host wants absolute positions while a remote pointer is in use.
            if v.mouse().caps & vmm_mouse::HOST_WANTS_ABSOLUTE == 0 {
                v.update_mouse_capabilities(vmm_mouse::HOST_WANTS_ABSOLUTE, 0);
            }
            if v.guest_wants_absolute() {
                v.set_absolute_mouse(
                    to_absolute(x, width),
                    to_absolute(y, height),
                    wheel,
                    0,
                    u32::from(ps2_buttons),
                );
                // Mainline Linux reads buttons and the wheel from the PS/2 mouse only:
                // send them there without motion.
                let mut last = self.last.lock();
                let lb = last.map_or(0, |l| l.2);
                *last = Some((x, y, buttons & 7));
                if lb != buttons & 7 || wheel != 0 {
                    self.kbd.lock().mouse_event(0, 0, wheel, ps2_buttons);
                }
                return;
            }
        }
        // Relative PS/2 motion from the last absolute position.
        let mut last = self.last.lock();
        let (lx, ly, lb) = last.unwrap_or((x, y, 0));
        *last = Some((x, y, buttons & 7));
        let dx = x as i32 - lx as i32;
        let dy = y as i32 - ly as i32;
        let dz = if buttons & 8 != 0 {
            -1
        } else if buttons & 16 != 0 {
            1
        } else {
            0
        };
        if dx == 0 && dy == 0 && dz == 0 && lb == buttons & 7 {
            return;
        }
        // RFB: bit 1 middle, bit 2 right; PS/2: bit 1 right, bit 2 middle.
        let ps2 = (buttons & 1) | ((buttons & 4) >> 1) | ((buttons & 2) << 1);
        self.kbd.lock().mouse_event(dx, dy, dz, ps2);
    }

    fn resize(&self, width: u32, height: u32) -> bool {
        if !(64..=16384).contains(&width) || !(64..=16384).contains(&height) {
            return false;
        }
        self.hint(width, height, 32)
    }
}

impl GuestInput {
    /// A video mode hint through both of VirtualBox's paths: HGSMI (vboxvideo) and the
    /// VMMDev display change request (VBoxClient, VMSVGA guests). True when a driver that
    /// listens for hints will be told now.
    fn hint(&self, width: u32, height: u32, bpp: u32) -> bool {
        let hgsmi = self
            .vga
            .upgrade()
            .is_some_and(|v| v.lock().set_mode_hint(width, height, bpp));
        let vmmdev = self
            .guest_additions
            .as_ref()
            .and_then(|slot| slot.lock().as_ref().map(|ga| ga.vmmdev.clone()));
        if let Some(v) = vmmdev {
            // VMMDEV_DISPLAY_PRIMARY | CX | CY | BPP valid.
            v.request_display_change(devices::vmmdev::DisplayDef {
                flags: 0x1 | 0x8 | 0x10 | if bpp != 0 { 0x20 } else { 0 },
                id: 0,
                x: 0,
                y: 0,
                cx: width,
                cy: height,
                bpp,
            });
        }
        hgsmi
    }
}

/// Plug the devices into the machine.
pub fn attach(cfg: &Config, ctx: &mut WiringContext<'_>) -> Result<(), MachineError> {
    let Some(controller) = cfg.controller else {
        return Ok(());
    };
    if controller != Controller::VBoxVga {
        // VBoxSVGA and VMSVGA guests get the VGA-compatible part: VBoxVGA.
        tracing::warn!("graphics controller {controller:?} is not modelled yet; using VBoxVGA");
        eprintln!("novabox: warning: graphics controller {controller:?} is not modelled yet; the guest gets VBoxVGA");
    }
    let vram_mib = if cfg.vram_mib == 0 { 16 } else { cfg.vram_mib };
    let vram = vram_mib
        .checked_mul(1 << 20)
        .filter(|&v| (vga::MIN_VRAM..=vga::MAX_VRAM).contains(&v))
        .ok_or_else(|| {
            MachineError::Devices(format!("VRAM size {vram_mib} MiB is outside 1..256 MiB"))
        })?;
    let mut rom = match &cfg.vga_bios {
        Some(r) => Some(r.clone()),
        None => find_vgabios().and_then(|p| std::fs::read(p).ok()),
    };
    if let Some(r) = rom.as_mut() {
        if !vga::patch_rom_ids(r, vga::VBOX_VENDOR_ID, vga::VBOX_VGA_DEVICE_ID) {
            tracing::warn!("the VGA BIOS has no PCI data structure; the firmware may skip it");
        }
    } else {
        tracing::warn!("no VGA BIOS found (install Debian's seabios package); the screen stays blank until a driver sets a mode");
    }
    let irq = ctx.intx.intx_line(VGA_SLOT, 1);
    // The video memory is guest RAM owned by the adapter (VirtualBox's MMIO2): the guest
    // writes the framebuffer without exits and pgm records the pages it dirtied.
    let region = ctx
        .memory
        .register_mmio2("vram", u64::from(vram))
        .map_err(|e| MachineError::Devices(format!("video memory: {e}")))?;
    let dev = VgaDevice::with_vram(
        VgaConfig {
            vram_size: vram,
            rom,
            monitors: cfg.monitors.max(1),
        },
        irq,
        vga::Vram::new(region),
    )
    .map_err(|e| MachineError::Devices(e.to_string()))?;
    dev.attach_legacy(ctx.pio, ctx.mmio)
        .map_err(|e| MachineError::Devices(e.to_string()))?;
    ctx.pci
        .add_function(PciAddress::new(VGA_SLOT, 0), dev.pci.clone())
        .map_err(|e| MachineError::Devices(e.to_string()))?;

    let screen = vnc::Screen::new();
    let input = Arc::new(GuestInput {
        kbd: ctx.keyboard.clone(),
        vga: Arc::downgrade(&dev.vga),
        last: Mutex::new(None),
        guest_additions: cfg.guest_additions.clone(),
    });
    let server = match &cfg.vnc {
        Some(v) => Some(
            vnc::start(
                vnc::ServerConfig {
                    listen: v.listen,
                    password: v.password.clone(),
                    name: "novabox".into(),
                },
                screen.clone(),
                input.clone(),
            )
            .map_err(|e| MachineError::Devices(e.to_string()))?,
        ),
        None => None,
    };
    let handle = Arc::new(DisplayHandle {
        vga: Arc::downgrade(&dev.vga),
        renderer: Mutex::new(Renderer::new()),
        screen,
        input,
        server_addr: server.as_ref().map(|s| s.local_addr()),
    });
    if let Some(addr) = handle.server_addr {
        eprintln!("novabox: VNC server on {addr} (browser console: http://{addr}/)");
    }
    *cfg.handle.lock() = Some(handle.clone());
    let exec = Arc::downgrade(ctx.exec);
    std::thread::Builder::new()
        .name("display".into())
        .spawn(move || {
            // The server lives as long as this thread: until the machine stops or is gone.
            let _server = server;
            let mut last = std::time::Instant::now();
            let _ = handle.refresh();
            loop {
                std::thread::sleep(REFRESH);
                if exec.upgrade().is_none_or(|e| e.stopping()) {
                    break;
                }
                // With no client watching, the picture is refreshed only a few times a
                // second (its size stays current for a client that connects) and on
                // demand (screenshots, pointer moves): rendering 60 times a second for
                // nobody took about a tenth of a host CPU. The guest's changes accumulate
                // in the VGA's dirty state meanwhile, so the next refresh sends them all.
                if handle.screen.client_count() == 0 && last.elapsed() < IDLE_REFRESH {
                    continue;
                }
                last = std::time::Instant::now();
                if handle.refresh().is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_requests_parse() {
        // A handle on a machine that is gone: requests still parse, then report the error.
        let h = DisplayHandle {
            vga: Weak::new(),
            renderer: Mutex::new(Renderer::new()),
            screen: vnc::Screen::new(),
            input: Arc::new(GuestInput {
                kbd: Arc::new(Mutex::new(I8042::new(
                    pdm::IrqLine::disconnected(),
                    pdm::IrqLine::disconnected(),
                ))),
                vga: Weak::new(),
                last: Mutex::new(None),
                guest_additions: None,
            }),
            server_addr: None,
        };
        assert!(handle_control(&h, &["poweroff"]).is_none());
        assert!(
            handle_control(&h, &["screentext"]).unwrap().is_err(),
            "stopped"
        );
        assert_eq!(
            handle_control(&h, &["keyboardputstring", "hi", "there"]),
            Some(Ok(String::new()))
        );
        // 'h' 'i' ' ' 't' ... reached the keyboard (set 2 with translation off): 0x33 = h.
        assert!(h.input.kbd.lock().read_port(false) == 0x33);
        assert!(handle_control(&h, &["keyboardputscancode", "1e", "zz"])
            .unwrap()
            .is_err());
        assert!(
            handle_control(&h, &["setvideomodehint", "1024", "768"])
                .unwrap()
                .is_err(),
            "stopped"
        );
        assert!(handle_control(&h, &["setvideomodehint", "x", "768"])
            .unwrap()
            .is_err());
        assert!(
            handle_control(&h, &["screenshotpng", "/nonexistent/dir/x.png"])
                .unwrap()
                .is_err()
        );
        assert_eq!(
            handle_control(&h, &["mouse", "move", "5", "7"]),
            Some(Ok(String::new()))
        );
    }

    #[test]
    fn absolute_mapping_spans_the_range() {
        assert_eq!(
            to_absolute(0, 1024),
            (0xffff - 0xbfff) / 1024,
            "VirtualBox's formula, x 1-based"
        );
        assert_eq!(to_absolute(1023, 1024), (1024 * 0xffff - 0xbfff) / 1024);
        assert!(to_absolute(512, 1024) > 0x7f00 && to_absolute(512, 1024) < 0x8100);
        assert_eq!(to_absolute(5000, 0), 0xffff, "degenerate sizes clamp");
    }

    #[test]
    fn vnc_listen_forms() {
        assert_eq!(
            parse_vnc_listen("5901").unwrap(),
            "127.0.0.1:5901".parse().unwrap()
        );
        assert_eq!(
            parse_vnc_listen("0.0.0.0:5902").unwrap(),
            "0.0.0.0:5902".parse().unwrap()
        );
        assert_eq!(
            parse_vnc_listen("[::1]:5903").unwrap(),
            "[::1]:5903".parse().unwrap()
        );
        assert_eq!(
            parse_vnc_listen("::1").unwrap(),
            "[::1]:5900".parse().unwrap()
        );
        assert!(parse_vnc_listen("host:99999").is_err());
    }

    #[test]
    fn run_config_from_vbox_settings() {
        let c = run_config("VBoxVGA", 32, 1, None, Some(("5000-5050", ""))).unwrap();
        assert_eq!(c.controller, Some(Controller::VBoxVga));
        assert_eq!(c.vnc.unwrap().listen, "127.0.0.1:5000".parse().unwrap());
        let c = run_config("VMSVGA", 16, 1, Some("5901"), Some(("3389", "0.0.0.0"))).unwrap();
        assert_eq!(c.controller, Some(Controller::VmSvga));
        assert_eq!(
            c.vnc.unwrap().listen,
            "127.0.0.1:5901".parse().unwrap(),
            "--vnc wins"
        );
        assert!(run_config("None", 16, 1, None, None)
            .unwrap()
            .controller
            .is_none());
        assert!(run_config("Voodoo", 16, 1, None, None).is_err());
        assert!(run_config("VBoxVGA", 16, 1, None, Some(("abc", ""))).is_err());
    }
}
