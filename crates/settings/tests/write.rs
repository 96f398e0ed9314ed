//! Writing: unchanged → identical; each change touches only its own part;
//! the schema check (xmllint) holds before → after; created files validate.

mod common;

use std::path::Path;
use std::process::Command;

use settings::write::apply;
use settings::*;

fn xmllint_available() -> bool {
    let ok = Command::new("xmllint").arg("--version").output().is_ok();
    if !ok {
        eprintln!(
            "!!! xmllint is MISSING (apt-get install libxml2-utils): schema checks are NOT run !!!"
        );
    }
    ok
}

fn xsd() -> std::path::PathBuf {
    common::corpus_dir().join("../../spec/VirtualBox-settings.xsd")
}

fn validates(bytes: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.vbox");
    std::fs::write(&p, bytes).unwrap();
    Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(xsd())
        .arg(&p)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Line-level diff: lines of `a` not in `b` and vice versa.
fn changed_lines(a: &str, b: &str) -> (Vec<String>, Vec<String>) {
    let al: Vec<&str> = a.lines().collect();
    let bl: Vec<&str> = b.lines().collect();
    let removed = al
        .iter()
        .filter(|l| !bl.contains(l))
        .map(|s| s.to_string())
        .collect();
    let added = bl
        .iter()
        .filter(|l| !al.contains(l))
        .map(|s| s.to_string())
        .collect();
    (removed, added)
}

fn modify(p: &Path, f: impl Fn(&mut Machine)) -> (String, String, MachineFile) {
    let before = std::fs::read(p).unwrap();
    let mut file = MachineFile::from_bytes(p, &before).unwrap();
    let mut m = file.machine.clone();
    f(&mut m);
    apply(&mut file, &m).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let after = file.to_bytes();
    // What was written reads back as what was asked.
    let again = MachineFile::from_bytes(p, &after).unwrap();
    assert_eq!(again.machine, m, "{}", p.display());
    (
        String::from_utf8(before).unwrap(),
        String::from_utf8(after).unwrap(),
        again,
    )
}

#[test]
fn apply_without_change_is_identical() {
    for p in common::corpus_files() {
        let (before, after, _) = modify(&p, |_| {});
        assert_eq!(before, after, "{}", p.display());
    }
}

#[test]
fn memory_change_touches_one_attribute() {
    for p in common::corpus_files() {
        let (before, after, _) = modify(&p, |m| m.hardware.memory_mb = 3333);
        let (removed, added) = changed_lines(&before, &after);
        assert_eq!(removed.len(), 1, "{}: {removed:?}", p.display());
        assert_eq!(added.len(), 1, "{}: {added:?}", p.display());
        assert!(added[0].contains("RAMSize=\"3333\""), "{added:?}");
        assert_eq!(
            removed[0].replace(|c: char| c.is_ascii_digit(), ""),
            added[0].replace(|c: char| c.is_ascii_digit(), ""),
            "{}",
            p.display()
        );
    }
}

#[test]
fn each_modifyvm_style_change_is_local() {
    let p = common::corpus_dir().join("genode__test.vbox");
    // CPUs: one attribute of <CPU>.
    let (b, a, _) = modify(&p, |m| m.hardware.cpu.count = 2);
    let (r, ad) = changed_lines(&b, &a);
    assert_eq!((r.len(), ad.len()), (1, 1));
    assert!(
        ad[0].contains("<CPU count=\"2\" hotplug=\"false\">"),
        "{ad:?}"
    );
    // Boot order: one Order line.
    let (b, a, _) = modify(&p, |m| m.hardware.boot_order[0] = BootDevice::Dvd);
    let (r, ad) = changed_lines(&b, &a);
    assert_eq!(
        ad,
        vec!["        <Order position=\"1\" device=\"DVD\"/>".to_string()],
        "{r:?}"
    );
    // Firmware: a new <Firmware type="EFI"/> element, nothing removed.
    let (b, a, _) = modify(&p, |m| m.hardware.firmware.kind = FirmwareType::Efi);
    let (r, ad) = changed_lines(&b, &a);
    assert!(r.is_empty(), "{r:?}");
    assert_eq!(ad, vec!["      <Firmware type=\"EFI\"/>".to_string()]);
    // Clipboard.
    let (_, a, _) = modify(&p, |m| m.hardware.clipboard = ClipboardMode::Bidirectional);
    assert!(a.contains("<Clipboard mode=\"Bidirectional\"/>"));
    // UART 2 to a TCP server: the existing Port element is edited in place.
    let (b, a, f) = modify(&p, |m| {
        let s = m.hardware.serial.iter_mut().find(|s| s.slot == 1).unwrap();
        s.enabled = true;
        s.mode = PortMode::Tcp;
        s.server = true;
        s.path = "5555".into();
    });
    let (r, ad) = changed_lines(&b, &a);
    // The version line (TCP needs 1.15) and the one Port line.
    assert_eq!((r.len(), ad.len()), (2, 2), "{r:?} {ad:?}");
    assert!(
        ad[1].contains("enabled=\"true\"") && ad[1].contains("hostMode=\"TCP\""),
        "{ad:?}"
    );
    assert_eq!(
        f.settings_version(),
        SettingsVersion::v(15),
        "TCP mode needs 1.15"
    );
    assert!(a.contains("version=\"1.15-linux\""));
}

#[test]
fn new_nic_and_shared_folder_are_indented_like_virtualbox() {
    let p = common::corpus_dir().join("teaching__Debian.vbox");
    let (_, a, _) = modify(&p, |m| {
        let mut n = NetworkAdapter::default_for(1, SettingsVersion::v(19));
        n.enabled = true;
        n.mac = "080027000001".into();
        n.attachment = NetAttachment::Nat;
        m.hardware.network.push(n);
        m.hardware.shared_folders.push(SharedFolder {
            name: "share".into(),
            host_path: "/srv/share".into(),
            writable: false,
            auto_mount: true,
            auto_mount_point: String::new(),
            symlink_policy: String::new(),
        });
    });
    assert!(
        a.contains("        <Adapter slot=\"1\" enabled=\"true\" MACAddress=\"080027000001\" cable=\"true\" type=\"Am79C973\">\n          <NAT/>\n        </Adapter>\n"),
        "{a}"
    );
    assert!(a.contains("<SharedFolder name=\"share\" hostPath=\"/srv/share\" writable=\"false\" autoMount=\"true\"/>"));
}

#[test]
fn schema_validity_is_kept() {
    if !xmllint_available() {
        return;
    }
    let mut checked = 0;
    for p in common::corpus_files() {
        let before = std::fs::read(&p).unwrap();
        if !validates(&before) {
            continue;
        }
        checked += 1;
        let (_, after, _) = modify(&p, |m| {
            m.hardware.memory_mb = 1024;
            m.hardware.cpu.count = 3;
            m.hardware.boot_order = [
                BootDevice::HardDisk,
                BootDevice::Dvd,
                BootDevice::None,
                BootDevice::None,
            ];
            m.hardware.clipboard = ClipboardMode::HostToGuest;
            m.hardware.dnd = DndMode::Bidirectional;
            let s = m.hardware.serial_port(0);
            m.hardware.serial.retain(|x| x.slot != 0);
            m.hardware.serial.push(SerialPort {
                enabled: true,
                mode: PortMode::RawFile,
                path: "/tmp/com1.log".into(),
                ..s
            });
            m.hardware.serial.sort_by_key(|x| x.slot);
            m.hardware.shared_folders.push(SharedFolder {
                name: "novabox-test".into(),
                host_path: "/srv/x".into(),
                writable: true,
                auto_mount: false,
                auto_mount_point: String::new(),
                symlink_policy: String::new(),
            });
        });
        assert!(
            validates(after.as_bytes()),
            "{} no longer validates:\n{after}",
            p.display()
        );
    }
    assert!(
        checked >= 10,
        "only {checked} corpus files validated before the save"
    );
}

#[test]
fn created_machine_validates_and_modifies() {
    if !xmllint_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = settings::create::settings_path(dir.path(), "New VM");
    let mut f = settings::create::new_machine(&path, "New VM", "Ubuntu_64", None).unwrap();
    assert!(validates(&f.to_bytes()));
    let mut m = f.machine.clone();
    m.hardware.memory_mb = 2048;
    m.hardware.storage.push(StorageController {
        name: "SATA".into(),
        kind: StorageControllerType::Ahci,
        port_count: 1,
        instance: 0,
        use_host_io_cache: false,
        bootable: true,
        devices: vec![],
    });
    apply(&mut f, &m).unwrap();
    assert!(
        validates(&f.to_bytes()),
        "{}",
        String::from_utf8_lossy(&f.to_bytes())
    );
}

#[test]
fn save_is_atomic_and_keeps_prev() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::corpus_dir().join("kaliconfig__kali.vbox");
    let p = dir.path().join("kali.vbox");
    std::fs::copy(&src, &p).unwrap();
    let mut f = MachineFile::load(&p).unwrap();
    let mut m = f.machine.clone();
    m.hardware.memory_mb = 4096;
    apply(&mut f, &m).unwrap();
    f.save().unwrap();
    let prev = dir.path().join("kali.vbox-prev");
    assert_eq!(std::fs::read(&prev).unwrap(), std::fs::read(&src).unwrap());
    assert!(!dir.path().join("kali.vbox-tmp").exists());
    assert_eq!(
        MachineFile::load(&p).unwrap().machine.hardware.memory_mb,
        4096
    );
}

#[test]
fn running_machine_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.vbox");
    std::fs::copy(common::corpus_dir().join("kaliconfig__kali.vbox"), &p).unwrap();
    let before = std::fs::read(&p).unwrap();
    let lock = settings::lock::RunLock::acquire(&p).unwrap();
    let mut f = MachineFile::load(&p).unwrap();
    let mut m = f.machine.clone();
    m.hardware.memory_mb = 512;
    apply(&mut f, &m).unwrap();
    let e = f.save().unwrap_err();
    assert_eq!(e.kind, ErrorKind::State);
    assert_eq!(std::fs::read(&p).unwrap(), before);
    drop(lock);
    f.save().unwrap();
}
