//! Files at the edges of the version range: a 1.3 file with the legacy
//! spellings and storage forms, and a 1.20 file with the Platform layout.

mod common;

use settings::*;

fn load(name: &str) -> MachineFile {
    MachineFile::load(&common::data_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn v1_3_legacy_forms_are_converted() {
    let f = load("v1_3_legacy.vbox");
    let m = &f.machine;
    let hw = &m.hardware;
    assert_eq!(m.os_type, "WindowsXP", "pre-1.5 OS ids are renamed");
    assert_eq!(hw.cpu.count, 2, "CPU/CPUCount@count");
    assert!(!hw.cpu.pae, "PAE defaults off before 1.9");
    assert_eq!((hw.display.monitors, hw.display.accelerate_3d), (2, true));
    assert_eq!(hw.balloon_mb, 8);
    assert!(hw.vrde.enabled, "VRDE defaults on before 1.16");
    assert_eq!(hw.paravirt, ParavirtProvider::Legacy);
    let a = &hw.network[0];
    assert!(!a.cable, "cable defaults off before 1.16");
    assert_eq!(a.attachment, NetAttachment::Nat);
    assert_eq!(hw.serial[0].io_base, 0x3f8, "legacy <Uart> element");
    let ide = &hw.storage[0];
    assert_eq!(
        (ide.name.as_str(), ide.kind),
        ("IDE Controller", StorageControllerType::Piix4)
    );
    let disk = ide
        .devices
        .iter()
        .find(|d| d.kind == DeviceType::HardDisk)
        .unwrap();
    assert_eq!((disk.port, disk.device), (0, 0));
    let dvd = ide
        .devices
        .iter()
        .find(|d| d.kind == DeviceType::Dvd)
        .unwrap();
    assert_eq!((dvd.port, dvd.device), (1, 0));
    assert!(
        hw.storage
            .iter()
            .all(|c| c.kind != StorageControllerType::I82078),
        "floppy disabled"
    );
    // Writing such a file is refused clearly instead of half-converting it.
    let mut f2 = f.clone();
    let mut m2 = f2.machine.clone();
    m2.hardware.memory_mb = 256;
    let e = settings::write::apply(&mut f2, &m2).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Version);
}

#[test]
fn v1_20_platform_layout() {
    let f = load("v1_20_platform.vbox");
    let m = &f.machine;
    let hw = &m.hardware;
    assert_eq!(
        m.os_type, "Ubuntu_64",
        "_x64 ids of 1.20 dev builds are mapped back"
    );
    assert_eq!(hw.cpu.count, 4);
    assert_eq!(hw.chipset, ChipsetType::Ich9);
    assert!(hw.rtc_utc && hw.hpet);
    assert!(!hw.cpu.pae);
    assert_eq!(hw.cpu.long_mode, Some(true));
    assert_eq!(hw.firmware.kind, FirmwareType::Efi);
    assert!(hw.firmware.ioapic, "1.20 reads Firmware, ignores BIOS");
    assert_eq!(hw.firmware.boot_menu, BootMenuMode::Disabled);
    assert_eq!(hw.serial[0].io_base, 0x2f8, "IOAddress");
    assert_eq!(hw.serial[0].mode, PortMode::Tcp);
    assert_eq!(hw.shared_folders[0].symlink_policy, "subtree");
    // Writes go to the 1.20 places.
    let mut f2 = f.clone();
    let mut m2 = f2.machine.clone();
    m2.hardware.cpu.count = 8;
    m2.hardware.hpet = false;
    m2.hardware.firmware.acpi = false;
    settings::write::apply(&mut f2, &m2).unwrap();
    let text = String::from_utf8(f2.to_bytes()).unwrap();
    assert!(text.contains("<CPU count=\"8\"/>"), "{text}");
    assert!(text.contains("<HPET enabled=\"false\"/>"), "{text}");
    assert!(text.contains("<Firmware type=\"EFI\">\n        <IOAPIC enabled=\"true\"/>\n        <BootMenu mode=\"Disabled\"/>\n        <ACPI enabled=\"false\"/>"), "{text}");
    let cfg = settings::config::MachineConfig::from_file(&f, &[]).unwrap();
    assert_eq!(
        cfg.uarts[0].backend,
        settings::config::UartBackend::TcpClient("127.0.0.1:7000".into())
    );
    assert_eq!(cfg.cpu_count, 4);
    assert_eq!(cfg.paravirt_effective, ParavirtProvider::Kvm);
}
