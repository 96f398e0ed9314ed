//! Fuzz the settings reader end to end: XML parser, typed model, registry
//! reader, showvminfo rendering, MachineConfig, the compatibility report,
//! and the writer (an unchanged apply must reproduce the input exactly; a
//! change must read back as requested).
#![no_main]

use libfuzzer_sys::fuzz_target;
use settings::info::{showvminfo, InfoContext, InfoFormat};
use settings::MachineFile;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz/m.vbox");
    let _ = settings::registry::GlobalRegistry::from_bytes(Path::new("/fuzz/VirtualBox.xml"), data);
    let Ok(mut f) = MachineFile::from_bytes(path, data) else {
        return;
    };
    for fmt in [
        InfoFormat::Human,
        InfoFormat::MachineReadable,
        InfoFormat::Json,
    ] {
        let ctx = InfoContext {
            file: &f,
            registries: vec![],
            running: false,
        };
        let _ = showvminfo(&ctx, fmt);
    }
    let _ = settings::config::MachineConfig::from_file(&f, &[]);
    let _ = settings::config::compatibility_report(
        &f.machine,
        &settings::config::SupportedFeatures::minimal(),
    );
    // Lossless: unchanged model, unchanged bytes.
    let m = f.machine.clone();
    if settings::write::apply(&mut f, &m).is_ok() {
        assert_eq!(f.to_bytes(), data, "unchanged apply altered the file");
    }
    // A change reads back as requested.
    let mut m2 = f.machine.clone();
    m2.hardware.memory_mb = 1234;
    m2.hardware.cpu.count = 2;
    m2.hardware.clipboard = settings::ClipboardMode::Bidirectional;
    if settings::write::apply(&mut f, &m2).is_ok() {
        let bytes = f.to_bytes();
        let back = MachineFile::from_bytes(path, &bytes).expect("written file reloads");
        assert_eq!(back.machine, m2);
    }
});
