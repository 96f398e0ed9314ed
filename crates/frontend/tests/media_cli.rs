//! The medium commands end to end through the `novabox` binary.

use std::path::Path;
use std::process::{Command, Output};

fn novabox(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_novabox"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run novabox")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn create_show_clone_modify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&novabox(
        &[
            "createmedium",
            "disk",
            "--filename",
            "base.vdi",
            "--size",
            "32",
        ],
        d,
    ));
    assert!(out.starts_with("Medium created. UUID: "), "{out}");
    let uuid = out.trim().rsplit(' ').next().unwrap().to_string();

    let info = ok(&novabox(&["showmediuminfo", "disk", "base.vdi"], d));
    assert!(info.contains(&format!("UUID:           {uuid}")), "{info}");
    assert!(info.contains("Storage format: VDI"));
    assert!(info.contains("Format variant: dynamic default"));
    assert!(info.contains("Capacity:       32 MBytes"));
    assert!(info.contains("Parent UUID:    base"));

    let out = ok(&novabox(
        &[
            "createmedium",
            "--filename",
            "child.vdi",
            "--diffparent",
            "base.vdi",
        ],
        d,
    ));
    assert!(out.contains("Medium created"));
    let info = ok(&novabox(&["showmediuminfo", "child.vdi"], d));
    assert!(info.contains(&format!("Parent UUID:    {uuid}")), "{info}");
    assert!(info.contains("Type:           normal (differencing)"));

    for (fmt, name) in [("VMDK", "c.vmdk"), ("VHD", "c.vhd"), ("RAW", "c.raw")] {
        let o = novabox(&["clonemedium", "child.vdi", name, "--format", fmt], d);
        let out = ok(&o);
        assert!(
            out.contains(&format!("Clone medium created in format '{fmt}'")),
            "{out}"
        );
        // Not a terminal: VBoxManage-style plain percentages.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("0%...10%") && err.contains("100%"), "{err}");
        let info = ok(&novabox(&["showmediuminfo", name], d));
        assert!(info.contains("Capacity:       32 MBytes"), "{info}");
    }
    ok(&novabox(&["modifymedium", "base.vdi", "--compact"], d));
    ok(&novabox(
        &["modifymedium", "disk", "base.vdi", "--resize", "64"],
        d,
    ));
    let info = ok(&novabox(&["showmediuminfo", "base.vdi"], d));
    assert!(info.contains("Capacity:       64 MBytes"), "{info}");

    let fixed = ok(&novabox(
        &[
            "createmedium",
            "--filename",
            "f.vhd",
            "--size",
            "4",
            "--format",
            "VHD",
            "--variant",
            "Fixed",
        ],
        d,
    ));
    assert!(fixed.contains("Medium created"));
    let info = ok(&novabox(&["showmediuminfo", "f.vhd"], d));
    assert!(info.contains("Format variant: fixed default"), "{info}");
}

#[test]
fn errors_name_the_file_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut bad = vec![0u8; 4096];
    bad[0x40..0x44].copy_from_slice(&0xBEDA_107Fu32.to_le_bytes());
    bad[0x44..0x48].copy_from_slice(&0x0001_0001u32.to_le_bytes());
    bad[0x48..0x4C].copy_from_slice(&400u32.to_le_bytes());
    bad[0x4C..0x50].copy_from_slice(&77u32.to_le_bytes());
    std::fs::write(d.join("broken.vdi"), &bad).unwrap();
    let o = novabox(&["showmediuminfo", "broken.vdi"], d);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("broken.vdi") && err.contains("unknown image type 77"),
        "{err}"
    );
    let o = novabox(&["modifymedium", "broken.vdi", "--compact"], d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        std::fs::read(d.join("broken.vdi")).unwrap(),
        bad,
        "damaged image was written"
    );
    let o = novabox(&["createmedium", "--filename", "x.vdi"], d);
    assert!(!o.status.success());
}
