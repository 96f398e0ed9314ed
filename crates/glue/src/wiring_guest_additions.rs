//! Wiring of the Guest Additions device into the machine, as VirtualBox places it: the
//! VMMDev at PCI 00:04.0 (INTA#), its backdoor log port 0x504, and the HGCM services
//! (VBoxSharedFolders with the machine's shared folders, VBoxGuestPropSvc,
//! VBoxSharedClipboard in the machine's clipboard mode), each on its own thread.
//!
//! After [`attach`], [`Config::handle`] gives the host side (mouse injection, guest
//! information, service access) to the frontend and the control socket.

use crate::machine::{MachineError, WiringContext};
use devices::pci::PciAddress;
use devices::vmmdev::{consts, PowerRequest, VmmDev, VmmDevConfig};
pub use hgcm::clipboard::Mode as ClipboardMode;
use hgcm::clipboard::SharedClipboard;
use hgcm::guestprop::GuestProperties;
pub use hgcm::guestprop::Property as GuestProperty;
pub use hgcm::shfl::ShareConfig;
use hgcm::shfl::SharedFolders;
use hgcm::HgcmHost;
use hm::StopReason;
use parking_lot::Mutex;
use std::sync::Arc;

/// Where VirtualBox puts the VMMDev.
pub const VMMDEV_PCI_ADDRESS: PciAddress = PciAddress::new(4, 0);

/// The host side of a running machine's Guest Additions.
#[derive(Clone)]
pub struct GuestAdditions {
    /// The VMMDev (mouse, events, what the guest reported).
    pub vmmdev: VmmDev,
    /// The HGCM services.
    pub hgcm: Arc<HgcmHost>,
}

impl GuestAdditions {
    /// The guest properties VirtualBox saves in the .vbox at power-off: all but the
    /// transient ones (TRANSIENT, TRANSRESET).
    pub fn persistent_properties(&self) -> Vec<GuestProperty> {
        use hgcm::guestprop::{flags, SERVICE_NAME};
        self.hgcm
            .with_service::<GuestProperties, _>(SERVICE_NAME, |s| s.persistent())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.flags & (flags::TRANSIENT | flags::TRANSRESET) == 0)
            .collect()
    }
}

impl std::fmt::Debug for GuestAdditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestAdditions")
            .field("hgcm", &self.hgcm)
            .finish()
    }
}

/// Where [`attach`] puts the host side.
pub type HandleSlot = Arc<Mutex<Option<GuestAdditions>>>;

/// Parse one guest property flag word (or a list: "TRANSIENT, RDONLYGUEST").
pub fn parse_guest_property_flags(s: &str) -> Result<u32, i32> {
    hgcm::guestprop::parse_flags(s)
}

/// Guest property flags as VirtualBox writes them.
pub fn guest_property_flags_text(f: u32) -> String {
    hgcm::guestprop::write_flags(f)
}

/// What the machine has of this kind.
#[derive(Debug, Default)]
pub struct Config {
    /// No VMMDev at all (VirtualBox always has one; tests may want a bare machine).
    pub disabled: bool,
    /// Shared folders (from the .vbox and `--sharedfolder`).
    pub shared_folders: Vec<ShareConfig>,
    /// The clipboard mode (.vbox `Clipboard@mode`); `controlvm VM clipboard mode` changes it
    /// while the machine runs.
    pub clipboard: ClipboardMode,
    /// Guest properties at start (the .vbox's saved ones).
    pub guest_properties: Vec<GuestProperty>,
    /// Serve the control socket here (`novabox controlvm`); None: no control channel.
    pub control_socket: Option<std::path::PathBuf>,
    /// The display's handle slot (`wiring_display::Config::handle`): the control socket
    /// answers the display requests (screenshots, typing, mode hints, pointer in pixels)
    /// through it when the machine has a graphics adapter.
    pub display: Option<crate::wiring_display::HandleSlot>,
    /// Filled by [`attach`]: the host side, for the frontend.
    pub handle: HandleSlot,
}

/// Parse a `--sharedfolder NAME=HOSTPATH[,readonly]` argument.
pub fn parse_shared_folder(arg: &str) -> Result<ShareConfig, String> {
    let (name, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("--sharedfolder {arg}: expected NAME=HOSTPATH[,readonly]"))?;
    let (path, opts) = match rest.rsplit_once(',') {
        Some((p, o)) if o == "readonly" || o == "automount" => (p, Some(o)),
        _ => (rest, None),
    };
    if name.is_empty() || path.is_empty() {
        return Err(format!("--sharedfolder {arg}: empty name or path"));
    }
    let mut cfg = ShareConfig::new(name, path);
    match opts {
        Some("readonly") => cfg.writable = false,
        Some("automount") => cfg.auto_mount = true,
        _ => {}
    }
    Ok(cfg)
}

/// Plug the devices into the machine.
pub fn attach(cfg: &Config, ctx: &mut WiringContext<'_>) -> Result<(), MachineError> {
    if cfg.disabled {
        return Ok(());
    }
    let shares = SharedFolders::new(&cfg.shared_folders)
        .map_err(|e| MachineError::Devices(e.to_string()))?;
    let mut host = HgcmHost::new();
    host.register(Box::new(shares))?;
    host.register(Box::new(GuestProperties::with(
        cfg.guest_properties.clone(),
    )))?;
    host.register(Box::new(SharedClipboard::new(cfg.clipboard)))?;
    let hgcm = Arc::new(host);

    let exec = ctx.exec.clone();
    let vcfg = VmmDevConfig {
        power: Some(Arc::new(move |p: PowerRequest| {
            tracing::info!("VMMDev: guest requested {p:?}");
            // No pause or saved state yet: every request ends the VM, as power off.
            exec.request_stop(StopReason::PowerOff);
        })),
        ..VmmDevConfig::default()
    };
    let irq = ctx.intx.intx_line(VMMDEV_PCI_ADDRESS.device, 1);
    let vmmdev = VmmDev::new(vcfg, ctx.memory.clone(), irq, Some(hgcm.clone()));
    ctx.pci
        .add_function(VMMDEV_PCI_ADDRESS, vmmdev.pci_function())
        .map_err(|e| MachineError::Devices(e.to_string()))?;
    ctx.pio
        .insert(
            u64::from(consts::BACKDOOR_LOG_PORT),
            1,
            "vmmdev-log",
            vmmdev.backdoor_log_device(),
        )
        .map_err(|e| MachineError::Devices(e.to_string()))?;
    let ga = GuestAdditions { vmmdev, hgcm };
    if let Some(path) = &cfg.control_socket {
        crate::control::serve(
            path,
            crate::control::machine_handler(
                ga.clone(),
                ctx.exec.clone(),
                cfg.display.clone(),
                Some(ctx.acpi_pm.clone()),
            ),
        )
        .map_err(|e| MachineError::Devices(format!("control socket {}: {e}", path.display())))?;
    }
    *cfg.handle.lock() = Some(ga);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_folder_arguments() {
        let s = parse_shared_folder("data=/srv/data").unwrap();
        assert_eq!((s.name.as_str(), s.writable), ("data", true));
        assert_eq!(s.host_path, std::path::PathBuf::from("/srv/data"));
        let s = parse_shared_folder("ro=/a,b,readonly").unwrap();
        assert_eq!(s.host_path, std::path::PathBuf::from("/a,b"));
        assert!(!s.writable);
        assert!(parse_shared_folder("nopath").is_err());
        assert!(parse_shared_folder("=/x").is_err());
        assert!(parse_shared_folder("x=").is_err());
    }
}
