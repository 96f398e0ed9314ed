//! showvminfo for every corpus file against golden files. Each golden file
//! was generated once and checked by hand against the `.vbox` it describes
//! (see tests/data/golden/CHECKED.md); set NOVABOX_BLESS=1 to regenerate
//! after an intended change (and check the diff by hand again).
//!
//! Paths in the output are made relative to the corpus folder so the golden
//! files do not depend on where the checkout lives.

mod common;

use settings::info::{showvminfo, InfoContext, InfoFormat};
use settings::MachineFile;

fn render(name: &str, fmt: InfoFormat) -> String {
    let p = common::corpus_dir().join(name);
    let f = MachineFile::load(&p).unwrap();
    let ctx = InfoContext {
        file: &f,
        registries: vec![],
        running: false,
    };
    let dir = common::corpus_dir().canonicalize().unwrap();
    showvminfo(&ctx, fmt)
        .replace(
            &common::corpus_dir().to_string_lossy().to_string(),
            "<corpus>",
        )
        .replace(&dir.to_string_lossy().to_string(), "<corpus>")
}

fn check(fmt: InfoFormat, ext: &str) {
    let bless = std::env::var_os("NOVABOX_BLESS").is_some();
    let mut failures = Vec::new();
    for p in common::corpus_files() {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let out = render(&name, fmt);
        let golden = common::data_dir()
            .join("golden")
            .join(format!("{name}.{ext}"));
        if bless {
            std::fs::write(&golden, &out).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!("{}: {e} (run with NOVABOX_BLESS=1 once)", golden.display())
        });
        if want != out {
            failures.push(name);
        }
    }
    assert!(
        failures.is_empty(),
        "output differs from golden for {failures:?}"
    );
}

#[test]
fn human_matches_golden() {
    check(InfoFormat::Human, "txt");
}

#[test]
fn machinereadable_matches_golden() {
    check(InfoFormat::MachineReadable, "mr");
}

/// Facts read by hand from the corpus files, asserted directly (these do
/// not depend on the golden files).
#[test]
fn hand_read_facts() {
    let t = render("genode__test.vbox", InfoFormat::MachineReadable);
    for line in [
        "name=\"Tinycore\"",
        "ostype=\"Linux26\"",
        "UUID=\"410f6221-6237-4833-b02c-a54000b7b190\"",
        "memory=256",
        "vram=12",
        "cpus=1",
        "chipset=\"piix3\"",
        "firmware=\"BIOS\"",
        "boot1=\"floppy\"",
        "boot2=\"dvd\"",
        "boot3=\"disk\"",
        "boot4=\"none\"",
        "rtcuseutc=\"on\"",
        "paravirtprovider=\"legacy\"",
        "\"IDE-1-0\"=\"<corpus>/test.iso\"",
        "\"IDE-ImageUUID-1-0\"=\"81763434-9a51-49e8-9444-528a5a28c4bc\"",
        "\"IDE-tempeject-1-0\"=\"on\"",
        "nic1=\"none\"",
        "uart1=\"0x03f8,4\"",
        "uartmode1=\"/dev/terminal\"",
        "uart2=\"off\"",
        "clipboard=\"disabled\"",
        "vrde=\"off\"",
        "usb=\"on\"",
        "VMState=\"poweroff\"",
    ] {
        assert!(
            t.lines().any(|l| l == line),
            "genode__test: missing {line}\n{t}"
        );
    }

    let w = render("ubuntu__WinXP.vbox", InfoFormat::MachineReadable);
    assert!(w.contains("nictype1=\"82543GC\""), "{w}");
    assert!(w.contains("nic1=\"bridged\""), "{w}");
    assert!(w.contains("SharedFolderNameMachineMapping1="), "{w}");

    let c = render("Corne__default.vbox", InfoFormat::MachineReadable);
    assert!(c.contains("nic1=\"nat\""), "{c}");
    assert!(c.contains("nic2=\"hostonly\""), "{c}");
    assert!(c.contains("Forwarding(0)=\"ssh,tcp,127.0.0.1,"), "{c}");
    assert!(
        c.contains("SharedFolderPathMachineMapping1=\"\\\\\\\\?\\\\c:\\\\Users\""),
        "{c}"
    );

    let m = render("teaching__Meta.vbox", InfoFormat::MachineReadable);
    assert!(m.contains("SnapshotName=\"Sicherungspunkt 1\""), "{m}");
    assert!(
        m.contains("SnapshotName-1=\"Root. End Practice One\""),
        "{m}"
    );
    assert!(
        m.contains("SnapshotName-2=\"Root Hacked - Student version\""),
        "{m}"
    );
    assert!(m.contains("CurrentSnapshotNode=\"SnapshotName-2\""), "{m}");
    assert!(
        m.contains("\"SATA-ParentChain-0-0\"="),
        "differencing chain shown: {m}"
    );

    let u = render("VirtualBox__Ubuntu.vbox", InfoFormat::MachineReadable);
    assert!(u.contains("VMState=\"saved\""), "{u}");

    let x = render("nixosacademic__macOS.vbox", InfoFormat::MachineReadable);
    assert!(
        x.contains("firmware=\"EFI\"") && x.contains("chipset=\"ich9\""),
        "{x}"
    );
    assert!(x.contains("nictype1=\"82545EM\""), "{x}");
    assert!(x.contains("cpus=5") && x.contains("memory=12288"), "{x}");

    let k = render("kaliconfig__kali.vbox", InfoFormat::MachineReadable);
    assert!(k.contains("paravirtprovider=\"hyperv\""), "{k}");
    let i = render("ITLS__Ubuntu.vbox", InfoFormat::MachineReadable);
    assert!(
        i.contains("clipboard=\"hosttoguest\"") && i.contains("draganddrop=\"hosttoguest\""),
        "{i}"
    );
}

#[test]
fn json_has_the_same_keys() {
    let mr = render("genode__test.vbox", InfoFormat::MachineReadable);
    let js = render("genode__test.vbox", InfoFormat::Json);
    assert!(js.starts_with("{\n") && js.ends_with("}\n"));
    assert!(js.contains("\"memory\": 256"));
    assert!(js.contains("\"IDE-1-0\": \"<corpus>/test.iso\""));
    assert_eq!(mr.lines().count() + 2, js.lines().count());
}
