//! The machine commands end to end: a private VBOX_USER_HOME with a
//! VirtualBox.xml of several machines; list, lookup by name and UUID,
//! create/register/unregister, modifyvm and friends, and bad input (one
//! error line, exit status 1, file untouched).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../settings/tests/corpus/vbox")
}

fn bad(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../settings/tests/data/bad")
        .join(name)
}

fn nb(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_novabox"))
        .args(args)
        .env("VBOX_USER_HOME", home)
        .env("HOME", home)
        .output()
        .expect("novabox runs")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let o = nb(home, args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Asserts the VBoxManage-style failure contract.
fn fails(home: &Path, args: &[&str], needle: &str) -> String {
    let o = nb(home, args);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
    assert!(err.starts_with("novabox: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    err
}

/// A home with three machines copied from the corpus and registered.
fn home_with_machines() -> (tempfile::TempDir, Vec<(String, String, PathBuf)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    let mut entries = String::new();
    for (file, name, uuid) in [
        (
            "genode__test.vbox",
            "Tinycore",
            "410f6221-6237-4833-b02c-a54000b7b190",
        ),
        ("kaliconfig__kali.vbox", "", ""),
        (
            "teaching__Debian.vbox",
            "Debian",
            "2b0d56c6-75a2-4456-895e-f074b77ecbd1",
        ),
    ] {
        let vmdir = dir.path().join("VMs").join(file.trim_end_matches(".vbox"));
        std::fs::create_dir_all(&vmdir).unwrap();
        let p = vmdir.join(file);
        std::fs::copy(corpus().join(file), &p).unwrap();
        let f = settings::MachineFile::load(&p).unwrap();
        let (n, u) = if name.is_empty() {
            (f.machine.name.clone(), f.machine.uuid.to_string())
        } else {
            (name.to_string(), uuid.to_string())
        };
        entries.push_str(&format!(
            "      <MachineEntry uuid=\"{{{u}}}\" src=\"{}\"/>\n",
            p.display()
        ));
        out.push((n, u, p));
    }
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<VirtualBox xmlns=\"http://www.virtualbox.org/\" version=\"1.12-linux\">\n  <Global>\n    <MachineRegistry>\n{entries}    </MachineRegistry>\n    <MediaRegistry>\n      <HardDisks/>\n      <DVDImages>\n        <Image uuid=\"{{12345678-1234-1234-1234-123456789abc}}\" location=\"isos/boot.iso\"/>\n      </DVDImages>\n      <FloppyImages/>\n    </MediaRegistry>\n  </Global>\n</VirtualBox>\n"
    );
    std::fs::write(dir.path().join("VirtualBox.xml"), xml).unwrap();
    (dir, out)
}

#[test]
fn list_and_lookup() {
    let (home, vms) = home_with_machines();
    let list = ok(home.path(), &["list", "vms"]);
    for (n, u, _) in &vms {
        assert!(list.contains(&format!("\"{n}\" {{{u}}}")), "{list}");
    }
    assert_eq!(list.lines().count(), 3);
    // By name and by UUID.
    let by_name = ok(
        home.path(),
        &["showvminfo", "Tinycore", "--machinereadable"],
    );
    let by_uuid = ok(home.path(), &["showvminfo", &vms[0].1, "--machinereadable"]);
    assert_eq!(by_name, by_uuid);
    assert!(by_name.contains("name=\"Tinycore\""));
    fails(
        home.path(),
        &["showvminfo", "NoSuchVM"],
        "could not find a registered machine named 'NoSuchVM'",
    );
    let dvds = ok(home.path(), &["list", "dvds"]);
    assert!(
        dvds.contains("12345678-1234-1234-1234-123456789abc"),
        "{dvds}"
    );
    assert!(
        dvds.contains(&format!("{}/isos/boot.iso", home.path().display())),
        "{dvds}"
    );
    assert!(
        dvds.contains("81763434-9a51-49e8-9444-528a5a28c4bc"),
        "machine registries too: {dvds}"
    );
    let hdds = ok(home.path(), &["list", "hdds"]);
    assert!(hdds.contains("Parent UUID:    base"), "{hdds}");
    assert!(
        hdds.contains("(differencing)"),
        "Debian has a differencing child: {hdds}"
    );
}

#[test]
fn create_register_modify_unregister() {
    let (home, _) = home_with_machines();
    let base = home.path().join("new");
    let out = ok(
        home.path(),
        &[
            "createvm",
            "--name",
            "Fresh",
            "--ostype",
            "Ubuntu_64",
            "--basefolder",
            base.to_str().unwrap(),
            "--register",
        ],
    );
    assert!(
        out.contains("Virtual machine 'Fresh' is created and registered."),
        "{out}"
    );
    let vbox = base.join("Fresh/Fresh.vbox");
    assert!(vbox.exists());
    assert!(ok(home.path(), &["list", "vms"]).contains("\"Fresh\""));
    fails(
        home.path(),
        &[
            "createvm",
            "--name",
            "Fresh",
            "--basefolder",
            base.to_str().unwrap(),
            "--register",
        ],
        "already exists",
    );

    ok(
        home.path(),
        &[
            "modifyvm",
            "Fresh",
            "--memory",
            "2048",
            "--cpus",
            "2",
            "--firmware",
            "efi",
            "--boot1",
            "disk",
            "--boot2",
            "dvd",
            "--nic1",
            "nat",
            "--nictype1",
            "virtio",
            "--macaddress1",
            "080027AABBCC",
            "--uart1",
            "0x3f8,4",
            "--uartmode1",
            "file",
            "/tmp/fresh-com1.log",
            "--uart2",
            "0x2f8,3",
            "--uartmode2",
            "server",
            "/tmp/fresh.sock",
            "--clipboard-mode",
            "bidirectional",
            "--paravirtprovider",
            "kvm",
            "--rtcuseutc",
            "on",
        ],
    );
    let mr = ok(home.path(), &["showvminfo", "Fresh", "--machinereadable"]);
    for l in [
        "memory=2048",
        "cpus=2",
        "firmware=\"EFI\"",
        "boot1=\"disk\"",
        "boot2=\"dvd\"",
        "nic1=\"nat\"",
        "nictype1=\"virtio\"",
        "macaddress1=\"080027AABBCC\"",
        "uart1=\"0x03f8,4\"",
        "uartmode1=\"file,/tmp/fresh-com1.log\"",
        "uartmode2=\"server,/tmp/fresh.sock\"",
        "clipboard=\"bidirectional\"",
        "paravirtprovider=\"kvm\"",
        "rtcuseutc=\"on\"",
    ] {
        assert!(mr.lines().any(|x| x == l), "missing {l}\n{mr}");
    }
    assert!(base.join("Fresh/Fresh.vbox-prev").exists(), "-prev kept");

    // Storage and shared folders.
    let disk = home.path().join("new/Fresh/disk.vdi");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    ok(
        home.path(),
        &[
            "storagectl",
            "Fresh",
            "--name",
            "SATA",
            "--add",
            "sata",
            "--portcount",
            "2",
        ],
    );
    ok(
        home.path(),
        &[
            "storageattach",
            "Fresh",
            "--storagectl",
            "SATA",
            "--port",
            "0",
            "--type",
            "hdd",
            "--medium",
            disk.to_str().unwrap(),
        ],
    );
    ok(
        home.path(),
        &[
            "sharedfolder",
            "add",
            "Fresh",
            "--name",
            "data",
            "--hostpath",
            "/srv/data",
            "--readonly",
            "--automount",
        ],
    );
    let mr = ok(home.path(), &["showvminfo", "Fresh", "--machinereadable"]);
    assert!(
        mr.contains(&format!("\"SATA-0-0\"=\"{}\"", disk.display())),
        "{mr}"
    );
    assert!(mr.contains("storagecontrollertype0=\"IntelAhci\""), "{mr}");
    assert!(
        mr.contains("SharedFolderNameMachineMapping1=\"data\""),
        "{mr}"
    );
    let text = std::fs::read_to_string(&vbox).unwrap();
    assert!(
        text.contains("location=\"disk.vdi\""),
        "relative to the machine folder: {text}"
    );
    ok(
        home.path(),
        &["sharedfolder", "remove", "Fresh", "--name", "data"],
    );
    fails(
        home.path(),
        &["sharedfolder", "remove", "Fresh", "--name", "data"],
        "no shared folder named 'data'",
    );
    let human = ok(home.path(), &["showvminfo", "Fresh"]);
    assert!(
        human.contains("Shared folders:              <none>"),
        "{human}"
    );
    let compat = ok(home.path(), &["showvminfo", "Fresh", "--compat"]);
    assert!(compat.contains("--firmware = EFI"), "{compat}");
    // AHCI is modelled now: the SATA controller is not in the report, the virtio NIC is.
    assert!(!compat.contains("storagectl \"SATA\""), "{compat}");
    assert!(compat.contains("--nictype1 = virtio"), "{compat}");

    ok(home.path(), &["unregistervm", "Fresh", "--delete"]);
    assert!(!vbox.exists());
    assert!(!ok(home.path(), &["list", "vms"]).contains("Fresh"));
    fails(home.path(), &["unregistervm", "Fresh"], "could not find");
}

#[test]
fn bad_input_is_one_line_exit_1_and_file_untouched() {
    let home = tempfile::tempdir().unwrap();
    for (file, needle) in [
        (
            "malformed.vbox",
            "malformed.vbox:6:5: end tag </Hardware> does not match <Memory>",
        ),
        ("namespace.vbox", "namespace.vbox:2:13: unknown namespace"),
        (
            "version.vbox",
            "version.vbox:2:48: cannot handle settings version \"1.2-linux\"",
        ),
        (
            "enum.vbox",
            "enum.vbox:8:35: unknown storage controller type \"Foo\"",
        ),
        (
            "range.vbox",
            "range.vbox:5:12: count value 9999 of <CPU> is out of range",
        ),
        ("dupuuid.vbox", "dupuuid.vbox:7:9: duplicate medium UUID"),
    ] {
        let p = home.path().join(file);
        std::fs::copy(bad(file), &p).unwrap();
        let before = std::fs::read(&p).unwrap();
        fails(home.path(), &["showvminfo", p.to_str().unwrap()], needle);
        fails(
            home.path(),
            &["modifyvm", p.to_str().unwrap(), "--memory", "512"],
            needle,
        );
        assert_eq!(std::fs::read(&p).unwrap(), before, "{file} untouched");
        assert!(!home.path().join(format!("{file}-prev")).exists());
    }
    let p = home.path().join("missingmedium.vbox");
    std::fs::copy(bad("missingmedium.vbox"), &p).unwrap();
    fails(
        home.path(),
        &["showvminfo", p.to_str().unwrap(), "--compat"],
        "missing-disk.vdi (attached to \"SATA\" port 0 device 0)",
    );
    // A directory, a missing file.
    fails(
        home.path(),
        &["showvminfo", home.path().to_str().unwrap()],
        "is a directory",
    );
    fails(
        home.path(),
        &["showvminfo", "/nonexistent/x.vbox"],
        "No such file",
    );
    // Bad option values leave a good file untouched.
    let good = home.path().join("kali.vbox");
    std::fs::copy(corpus().join("kaliconfig__kali.vbox"), &good).unwrap();
    let before = std::fs::read(&good).unwrap();
    let g = good.to_str().unwrap();
    fails(
        home.path(),
        &["modifyvm", g, "--memory", "0"],
        "out of range",
    );
    fails(
        home.path(),
        &["modifyvm", g, "--firmware", "coreboot"],
        "unknown firmware type 'coreboot'",
    );
    fails(
        home.path(),
        &["modifyvm", g, "--nictype1", "rtl8139"],
        "unknown network adapter type",
    );
    fails(
        home.path(),
        &["modifyvm", g, "--bogus", "1"],
        "unknown or unsupported modifyvm option '--bogus'",
    );
    fails(
        home.path(),
        &["modifyvm", g, "--macaddress1", "010000000000"],
        "multicast",
    );
    fails(
        home.path(),
        &[
            "storageattach",
            g,
            "--storagectl",
            "SATA",
            "--port",
            "1",
            "--type",
            "hdd",
            "--medium",
            "/nonexistent.vdi",
        ],
        "does not exist",
    );
    assert_eq!(std::fs::read(&good).unwrap(), before);
}

#[test]
fn running_machine_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let p = home.path().join("kali.vbox");
    std::fs::copy(corpus().join("kaliconfig__kali.vbox"), &p).unwrap();
    let before = std::fs::read(&p).unwrap();
    let lock = settings::lock::RunLock::acquire(&p).unwrap();
    fails(
        home.path(),
        &["modifyvm", p.to_str().unwrap(), "--memory", "512"],
        "is running",
    );
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let mr = ok(
        home.path(),
        &["showvminfo", p.to_str().unwrap(), "--machinereadable"],
    );
    assert!(mr.contains("VMState=\"running\""));
    drop(lock);
    ok(
        home.path(),
        &["modifyvm", p.to_str().unwrap(), "--memory", "512"],
    );
}
