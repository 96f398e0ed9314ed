//! The `.vbox` storage settings mapped onto the machine's storage wiring: which
//! controllers novabox models (PIIX3, PIIX4, IntelAhci), their drives with the media
//! chain resolved through the media registry, and the firmware boot order. Everything
//! left out is named as a warning (the start-up compatibility report names unmodelled
//! controller types; this names what is dropped inside a modelled one).

use glue::wiring_storage::{Attachment, Config, Controller, ControllerKind, DeviceKind};
use settings::config::{ControllerConfig, DeviceConfig, MachineConfig};
use settings::{BootDevice, DeviceType, MediumType, StorageControllerType};
use std::path::PathBuf;

/// The controller types `run VM` models (the compatibility report names the others).
pub const MODELLED: [StorageControllerType; 3] = [
    StorageControllerType::Piix3,
    StorageControllerType::Piix4,
    StorageControllerType::Ahci,
];

/// Image formats `run VM` opens (upper case, as the compatibility report compares them).
pub const FORMATS: [&str; 5] = ["VDI", "VMDK", "VHD", "RAW", "ISO"];

/// The storage part of the machine, plus warnings about what was left out.
pub fn storage_config(mc: &MachineConfig) -> (Config, Vec<String>) {
    let mut warnings = Vec::new();
    let mut cfg = Config::default();
    let (mut have_ide, mut have_ahci) = (false, false);
    for c in &mc.storage {
        let kind = match c.kind {
            StorageControllerType::Piix3 => ControllerKind::Piix3,
            StorageControllerType::Piix4 => ControllerKind::Piix4,
            StorageControllerType::Ahci => ControllerKind::Ahci,
            // Named by the compatibility report.
            _ => continue,
        };
        // VirtualBox itself allows one controller per IDE/SATA slot; a hand-edited .vbox
        // with two would collide at the same PCI address.
        let seen = match kind {
            ControllerKind::Ahci => &mut have_ahci,
            _ => &mut have_ide,
        };
        if std::mem::replace(seen, true) {
            warnings.push(format!(
                "storage controller \"{}\": a second controller of this kind is not supported; its drives are not available",
                c.name
            ));
            continue;
        }
        cfg.controllers.push(controller(c, kind, &mut warnings));
    }
    for b in &mc.boot_order {
        let kind = match b {
            BootDevice::HardDisk => DeviceKind::HardDisk,
            BootDevice::Dvd => DeviceKind::Dvd,
            BootDevice::Floppy | BootDevice::Network | BootDevice::None => continue,
        };
        if !cfg.boot_order.contains(&kind) {
            cfg.boot_order.push(kind);
        }
    }
    (cfg, warnings)
}

fn controller(
    c: &ControllerConfig,
    kind: ControllerKind,
    warnings: &mut Vec<String>,
) -> Controller {
    let mut attachments = Vec::new();
    for d in &c.devices {
        match attachment(c, d, warnings) {
            Some(a) => attachments.push(a),
            None => continue,
        }
    }
    Controller {
        name: c.name.clone(),
        kind,
        port_count: c.port_count,
        bootable: c.bootable,
        attachments,
    }
}

fn attachment(
    c: &ControllerConfig,
    d: &DeviceConfig,
    warnings: &mut Vec<String>,
) -> Option<Attachment> {
    let at = format!(
        "storage controller \"{}\" port {} device {}",
        c.name, d.port, d.device
    );
    let kind = match d.kind {
        DeviceType::HardDisk => DeviceKind::HardDisk,
        DeviceType::Dvd => DeviceKind::Dvd,
        DeviceType::Floppy => {
            warnings.push(format!("{at}: floppy drives are not modelled; left out"));
            return None;
        }
    };
    let mut a = match kind {
        DeviceKind::HardDisk => Attachment::disk(d.port, d.device, PathBuf::new()),
        DeviceKind::Dvd => Attachment::dvd(d.port, d.device, None),
    };
    match &d.medium {
        Some(m) => {
            a.path = Some(m.leaf.path.clone());
            a.parents = m
                .parents
                .iter()
                .filter_map(|l| {
                    media::Uuid::parse(&l.uuid.to_string()).map(|u| (u, l.path.clone()))
                })
                .collect();
            match m.kind {
                MediumType::Readonly => a.read_only = true,
                // VirtualBox gives an attached immutable or multi-attach base a fresh
                // differencing image per power-on; novabox has no such overlay yet, so the
                // base stays untouched and guest writes fail.
                MediumType::Immutable | MediumType::MultiAttach if m.parents.is_empty() => {
                    a.read_only = true;
                    warnings.push(format!(
                        "{at}: {:?} medium {} is attached read-only (no automatic differencing image yet); guest writes to it fail",
                        m.kind,
                        m.leaf.path.display()
                    ));
                }
                _ => {}
            }
        }
        None if d.host_drive.is_some() => {
            a.passthrough = true;
            warnings.push(format!(
                "{at}: host drive passthrough ({}) is not modelled; the drive is empty",
                d.host_drive.as_deref().unwrap_or_default()
            ));
            if kind == DeviceKind::HardDisk {
                return None;
            }
        }
        None if kind == DeviceKind::HardDisk => {
            warnings.push(format!("{at}: hard disk without a medium; left out"));
            return None;
        }
        None => {}
    }
    a.hotpluggable = d.hotpluggable;
    a.non_rotational = d.non_rotational;
    a.discard = d.discard;
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(vbox: &str) -> (tempfile::TempDir, MachineConfig) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m.vbox");
        std::fs::write(&p, vbox).unwrap();
        // The media must exist (their contents are not read here).
        std::fs::create_dir(t.path().join("Snapshots")).unwrap();
        for f in [
            "base.vdi",
            "ro.vdi",
            "kit.iso",
            "Snapshots/{11111111-2222-3333-4444-555555555555}.vdi",
        ] {
            std::fs::write(t.path().join(f), b"").unwrap();
        }
        let file = settings::MachineFile::load(&p).unwrap();
        let mc = MachineConfig::from_file(&file, &[]).unwrap();
        (t, mc)
    }

    const VBOX: &str = r#"<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.16-linux">
  <Machine uuid="{dfec529a-ecfa-4f2a-b82b-b8d8ea782ef1}" name="m" OSType="Linux_64">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{3420c432-39ba-4532-a255-1557101645a4}" location="base.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{11111111-2222-3333-4444-555555555555}" location="Snapshots/{11111111-2222-3333-4444-555555555555}.vdi" format="VDI"/>
        </HardDisk>
        <HardDisk uuid="{aaaaaaaa-2222-3333-4444-555555555555}" location="ro.vdi" format="VDI" type="Readonly"/>
      </HardDisks>
      <DVDImages>
        <Image uuid="{bbbbbbbb-2222-3333-4444-555555555555}" location="kit.iso"/>
      </DVDImages>
    </MediaRegistry>
    <Hardware>
      <Memory RAMSize="128"/>
      <Boot>
        <Order position="1" device="DVD"/>
        <Order position="2" device="Floppy"/>
        <Order position="3" device="HardDisk"/>
        <Order position="4" device="None"/>
      </Boot>
      <StorageControllers>
        <StorageController name="IDE" type="PIIX4" PortCount="2" Bootable="true">
          <AttachedDevice passthrough="false" type="DVD" port="1" device="0">
            <Image uuid="{bbbbbbbb-2222-3333-4444-555555555555}"/>
          </AttachedDevice>
        </StorageController>
        <StorageController name="SATA" type="AHCI" PortCount="4" Bootable="true">
          <AttachedDevice type="HardDisk" port="0" device="0" nonrotational="true" discard="true">
            <Image uuid="{11111111-2222-3333-4444-555555555555}"/>
          </AttachedDevice>
          <AttachedDevice type="HardDisk" port="2" device="0">
            <Image uuid="{aaaaaaaa-2222-3333-4444-555555555555}"/>
          </AttachedDevice>
        </StorageController>
        <StorageController name="SCSI" type="LsiLogic" PortCount="16" Bootable="true"/>
        <StorageController name="Floppy" type="I82078" PortCount="1" Bootable="true">
          <AttachedDevice type="Floppy" port="0" device="0"/>
        </StorageController>
      </StorageControllers>
    </Hardware>
  </Machine>
</VirtualBox>
"#;

    #[test]
    fn controllers_drives_chains_and_boot_order() {
        let (t, mc) = machine(VBOX);
        let (cfg, warnings) = storage_config(&mc);
        assert_eq!(
            cfg.boot_order,
            vec![DeviceKind::Dvd, DeviceKind::HardDisk],
            "floppy is dropped from the order"
        );
        assert_eq!(
            cfg.controllers.len(),
            2,
            "LsiLogic and the floppy controller are left to the compatibility report"
        );
        let ide = &cfg.controllers[0];
        assert_eq!((ide.kind, ide.bootable), (ControllerKind::Piix4, true));
        assert_eq!(ide.attachments.len(), 1);
        let dvd = &ide.attachments[0];
        assert_eq!((dvd.kind, dvd.port, dvd.device), (DeviceKind::Dvd, 1, 0));
        assert_eq!(
            dvd.path.as_deref(),
            Some(t.path().join("kit.iso").as_path())
        );
        assert!(dvd.read_only);

        let sata = &cfg.controllers[1];
        assert_eq!((sata.kind, sata.port_count), (ControllerKind::Ahci, 4));
        let disk = &sata.attachments[0];
        assert_eq!(
            disk.path.as_deref(),
            Some(
                t.path()
                    .join("Snapshots/{11111111-2222-3333-4444-555555555555}.vdi")
                    .as_path()
            ),
            "the leaf of the chain receives writes"
        );
        assert_eq!(
            disk.parents,
            vec![(
                media::Uuid::parse("3420c432-39ba-4532-a255-1557101645a4").unwrap(),
                t.path().join("base.vdi")
            )]
        );
        assert!(disk.non_rotational && disk.discard && !disk.read_only);
        assert!(
            sata.attachments[1].read_only,
            "a Readonly medium stays read-only"
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_second_ide_controller_is_named() {
        let two = VBOX.replace(
            r#"<StorageController name="SCSI" type="LsiLogic" PortCount="16" Bootable="true"/>"#,
            r#"<StorageController name="IDE2" type="PIIX3" PortCount="2" Bootable="true"/>"#,
        );
        let (_t, mc) = machine(&two);
        let (cfg, warnings) = storage_config(&mc);
        assert_eq!(cfg.controllers.len(), 2);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("\"IDE2\"") && w.contains("second controller")),
            "{warnings:?}"
        );
    }
}
