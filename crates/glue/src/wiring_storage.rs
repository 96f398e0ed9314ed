//! Wiring of the storage controllers into the machine, as VirtualBox places them: the
//! PIIX3/PIIX4 IDE function at 00:01.1 (fixed legacy ports, IRQ 14/15, bus-master BAR4)
//! and the ICH8M AHCI HBA at 00:0d.0 (INTA#), each with its drives opened through the
//! media crate (VDI, VMDK, VHD, raw, ISO). The firmware's boot order becomes SeaBIOS's
//! `bootorder` fw_cfg file. At power-off every medium is flushed and closed.
//!
//! Controller types VirtualBox has but novabox does not model yet (LsiLogic, BusLogic,
//! LsiLogicSas, NVMe, virtio-scsi, floppy, USB) are not in [`ControllerKind`]: whoever maps a
//! `.vbox` onto [`Config`] leaves them out and names them in the compatibility report.

use crate::machine::{MachineError, WiringContext};
use devices::pci::PciAddress;
use devices::storage::{Ahci, AhciPortConfig, Drive, DriveKind, DriveOptions, PiixIde, PiixModel};
use parking_lot::Mutex;
use pdm::IrqLine;
use std::path::PathBuf;
use std::sync::Arc;

/// A modelled controller type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerKind {
    /// PIIX3 IDE (8086:7010), VirtualBox `PIIX3`.
    Piix3,
    /// PIIX4 IDE (8086:7111), VirtualBox `PIIX4` (its default IDE controller).
    Piix4,
    /// ICH8M AHCI (8086:2829), VirtualBox `AHCI` ("IntelAhci").
    Ahci,
}

impl ControllerKind {
    /// Where VirtualBox puts the controller.
    pub fn pci_address(self) -> PciAddress {
        match self {
            ControllerKind::Piix3 | ControllerKind::Piix4 => PciAddress::new(1, 1),
            ControllerKind::Ahci => PciAddress::new(0x0d, 0),
        }
    }
}

/// What is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// An ATA hard disk.
    HardDisk,
    /// An ATAPI CD/DVD drive.
    Dvd,
}

/// One attached device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Port: the IDE channel (0 primary, 1 secondary) or the SATA port.
    pub port: u32,
    /// Device: IDE master (0) or slave (1); 0 on SATA.
    pub device: u32,
    /// Hard disk or DVD.
    pub kind: DeviceKind,
    /// The image (None: an empty DVD drive).
    pub path: Option<PathBuf>,
    /// Where the images of its differencing chain are (UUID to file, from the media
    /// registry): VDI children name their parent only by UUID.
    pub parents: Vec<(media::Uuid, PathBuf)>,
    /// Open the image read-only (DVDs always are).
    pub read_only: bool,
    /// Host drive passthrough was asked for; not modelled, the image (if any) is used.
    pub passthrough: bool,
    /// Hot-pluggable port (AHCI PxCMD.HPCP).
    pub hotpluggable: bool,
    /// Report a solid-state disk.
    pub non_rotational: bool,
    /// Accept TRIM.
    pub discard: bool,
}

impl Attachment {
    /// A writable hard disk at `port`/`device`.
    pub fn disk(port: u32, device: u32, path: impl Into<PathBuf>) -> Attachment {
        Attachment {
            port,
            device,
            kind: DeviceKind::HardDisk,
            path: Some(path.into()),
            parents: Vec::new(),
            read_only: false,
            passthrough: false,
            hotpluggable: false,
            non_rotational: false,
            discard: false,
        }
    }

    /// A DVD drive with `path` inserted (None: empty).
    pub fn dvd(port: u32, device: u32, path: Option<PathBuf>) -> Attachment {
        Attachment {
            kind: DeviceKind::Dvd,
            path,
            read_only: true,
            ..Attachment::disk(port, device, "")
        }
    }
}

/// One storage controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// The `.vbox` name (for messages).
    pub name: String,
    /// Type.
    pub kind: ControllerKind,
    /// SATA ports (1-30; VirtualBox's default is 30); ignored for IDE.
    pub port_count: u32,
    /// The firmware may boot from it (`Bootable` in the `.vbox`).
    pub bootable: bool,
    /// Its devices.
    pub attachments: Vec<Attachment>,
}

/// The machine's storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Controllers (at most one IDE and one AHCI, as their PCI slots are fixed).
    pub controllers: Vec<Controller>,
    /// Boot order by device kind (the `.vbox` `<Boot>` positions, floppy and network left
    /// out); empty = SeaBIOS's default order.
    pub boot_order: Vec<DeviceKind>,
}

fn err(ctl: &str, msg: impl std::fmt::Display) -> MachineError {
    MachineError::Devices(format!("storage controller \"{ctl}\": {msg}"))
}

/// VirtualBox's serial number form ("VB" + the image UUID's first and last 32 bits).
fn serial_for(m: &media::Medium, fallback: &str) -> String {
    match m.info().first() {
        Some(i) if !i.uuid.is_nil() => {
            let b = i.uuid.to_guid_bytes();
            let a = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let d = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
            format!("VB{a:08x}-{d:08x}")
        }
        _ => fallback.to_string(),
    }
}

fn open_drive(
    ctl: &Controller,
    a: &Attachment,
    fallback_serial: &str,
) -> Result<Drive, MachineError> {
    if a.passthrough {
        tracing::warn!(
            "storage controller \"{}\" port {} device {}: host drive passthrough is not modelled; using the image",
            ctl.name,
            a.port,
            a.device
        );
    }
    let kind = match a.kind {
        DeviceKind::HardDisk => DriveKind::HardDisk,
        DeviceKind::Dvd => DriveKind::Cdrom,
    };
    let medium = match &a.path {
        None if kind == DriveKind::HardDisk => {
            return Err(err(
                &ctl.name,
                format!(
                    "port {} device {}: a hard disk needs an image",
                    a.port, a.device
                ),
            ))
        }
        None => None,
        Some(p) => {
            let writable = kind == DriveKind::HardDisk && !a.read_only;
            let registry = media::Registry {
                by_uuid: a.parents.iter().cloned().collect(),
            };
            let opts = media::OpenOptions {
                writable,
                resolver: Some(Box::new(registry)),
                ..media::OpenOptions::default()
            };
            let m = media::open(p, &opts).map_err(|e| {
                err(
                    &ctl.name,
                    format!("port {} device {}: {e}", a.port, a.device),
                )
            })?;
            Some(m)
        }
    };
    let serial = medium.as_ref().map_or_else(
        || fallback_serial.to_string(),
        |m| serial_for(m, fallback_serial),
    );
    let mut opts = DriveOptions::vbox(kind, &serial);
    opts.non_rotational = a.non_rotational;
    opts.discard = a.discard;
    Ok(Drive::new(
        kind,
        medium.map(|m| Box::new(m) as Box<dyn media::Disk>),
        opts,
    ))
}

/// SeaBIOS's device path of a drive (what `bootorder` lists).
fn boot_path(kind: ControllerKind, port: u32, device: u32) -> String {
    let a = kind.pci_address();
    let dev = if a.function == 0 {
        format!("{:x}", a.device)
    } else {
        format!("{:x},{:x}", a.device, a.function)
    };
    let name = match kind {
        ControllerKind::Ahci => "sata",
        _ => "ide",
    };
    format!("/pci@i0cf8/{name}@{dev}/drive@{port:x}/disk@{device:x}")
}

/// The `bootorder` file for `cfg` (empty when no order is given).
pub fn bootorder(cfg: &Config) -> Vec<u8> {
    let mut out = String::new();
    for want in &cfg.boot_order {
        for c in cfg.controllers.iter().filter(|c| c.bootable) {
            let mut atts: Vec<&Attachment> =
                c.attachments.iter().filter(|a| a.kind == *want).collect();
            atts.sort_by_key(|a| (a.port, a.device));
            for a in atts {
                out.push_str(&boot_path(c.kind, a.port, a.device));
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}

/// Plug the devices into the machine.
pub fn attach(cfg: &Config, ctx: &mut WiringContext<'_>) -> Result<(), MachineError> {
    let mut ide_done = false;
    let mut ahci_done = false;
    for ctl in &cfg.controllers {
        match ctl.kind {
            ControllerKind::Piix3 | ControllerKind::Piix4 => {
                if std::mem::replace(&mut ide_done, true) {
                    return Err(err(&ctl.name, "only one IDE controller is supported"));
                }
                attach_ide(ctl, ctx)?;
            }
            ControllerKind::Ahci => {
                if std::mem::replace(&mut ahci_done, true) {
                    return Err(err(&ctl.name, "only one AHCI controller is supported"));
                }
                attach_ahci(ctl, ctx)?;
            }
        }
    }
    let order = bootorder(cfg);
    if !order.is_empty() {
        ctx.fw_files.push(("bootorder".into(), order));
    }
    Ok(())
}

fn attach_ide(ctl: &Controller, ctx: &mut WiringContext<'_>) -> Result<(), MachineError> {
    let model = match ctl.kind {
        ControllerKind::Piix4 => PiixModel::Piix4,
        _ => PiixModel::Piix3,
    };
    let mut drives: devices::storage::IdeDrives = Default::default();
    for a in &ctl.attachments {
        if a.port > 1 || a.device > 1 {
            return Err(err(
                &ctl.name,
                format!(
                    "IDE has ports 0-1 and devices 0-1, not port {} device {}",
                    a.port, a.device
                ),
            ));
        }
        let slot = &mut drives[a.port as usize][a.device as usize];
        if slot.is_some() {
            return Err(err(
                &ctl.name,
                format!("port {} device {} attached twice", a.port, a.device),
            ));
        }
        let fallback = format!("VB{:x}-{:04x}{:04x}", a.port * 2 + a.device, 0x1f0, 0x3f6);
        *slot = Some(open_drive(ctl, a, &fallback)?);
    }
    let irqs = [
        IrqLine::new(ctx.irq.clone(), 14),
        IrqLine::new(ctx.irq.clone(), 15),
    ];
    let ide = PiixIde::new(model, drives, irqs, ctx.memory.clone());
    for (base, len, name, dev) in ide.legacy_ports() {
        ctx.pio
            .insert(base, len, name, dev)
            .map_err(|e| err(&ctl.name, e))?;
    }
    let controller = ide.controller();
    ctx.pci
        .add_function(ctl.kind.pci_address(), Arc::new(Mutex::new(ide)))
        .map_err(|e| err(&ctl.name, e))?;
    let name = ctl.name.clone();
    ctx.on_power_off.push(Box::new(move || {
        let mut c = controller.lock();
        for ch in &mut c.channels {
            for d in ch.take_drives() {
                close(&name, d);
            }
        }
    }));
    Ok(())
}

fn attach_ahci(ctl: &Controller, ctx: &mut WiringContext<'_>) -> Result<(), MachineError> {
    let ports = ctl
        .port_count
        .clamp(1, devices::storage::ahci::MAX_PORTS as u32) as usize;
    let mut devs = Vec::new();
    for a in &ctl.attachments {
        if a.port as usize >= ports || a.device != 0 {
            return Err(err(
                &ctl.name,
                format!(
                    "SATA has ports 0-{} with device 0, not port {} device {}",
                    ports - 1,
                    a.port,
                    a.device
                ),
            ));
        }
        if devs
            .iter()
            .any(|d: &AhciPortConfig| d.port == a.port as usize)
        {
            return Err(err(&ctl.name, format!("port {} attached twice", a.port)));
        }
        let fallback = format!("VB{:x}-ahci", a.port);
        devs.push(AhciPortConfig {
            port: a.port as usize,
            drive: open_drive(ctl, a, &fallback)?,
            hotplug: a.hotpluggable,
        });
    }
    let addr = ctl.kind.pci_address();
    let irq = ctx.intx.intx_line(addr.device, 1);
    let ahci = Ahci::new(ports, devs, irq, Some(ctx.apic.clone()), ctx.memory.clone());
    let hba = ahci.hba();
    ctx.pci
        .add_function(addr, Arc::new(Mutex::new(ahci)))
        .map_err(|e| err(&ctl.name, e))?;
    let name = ctl.name.clone();
    ctx.on_power_off.push(Box::new(move || {
        for d in hba.lock().take_drives() {
            close(&name, d);
        }
    }));
    Ok(())
}

/// Flush and close a drive's medium (logging, never failing: the VM is gone).
fn close(ctl: &str, mut d: Drive) {
    if let Err(e) = d.flush() {
        tracing::error!("storage controller \"{ctl}\": flushing a disk at power-off failed: {e}");
    }
    drop(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootorder_paths_follow_seabios() {
        let cfg = Config {
            controllers: vec![
                Controller {
                    name: "IDE".into(),
                    kind: ControllerKind::Piix4,
                    port_count: 2,
                    bootable: true,
                    attachments: vec![Attachment::dvd(1, 0, None), Attachment::disk(0, 1, "a.vdi")],
                },
                Controller {
                    name: "SATA".into(),
                    kind: ControllerKind::Ahci,
                    port_count: 4,
                    bootable: true,
                    attachments: vec![Attachment::disk(2, 0, "b.vdi")],
                },
                Controller {
                    name: "off".into(),
                    kind: ControllerKind::Ahci,
                    port_count: 1,
                    bootable: false,
                    attachments: vec![Attachment::disk(0, 0, "c.vdi")],
                },
            ],
            boot_order: vec![DeviceKind::Dvd, DeviceKind::HardDisk],
        };
        assert_eq!(
            String::from_utf8(bootorder(&cfg)).unwrap(),
            "/pci@i0cf8/ide@1,1/drive@1/disk@0\n\
             /pci@i0cf8/ide@1,1/drive@0/disk@1\n\
             /pci@i0cf8/sata@d/drive@2/disk@0\n"
        );
        assert!(bootorder(&Config::default()).is_empty());
    }
}
