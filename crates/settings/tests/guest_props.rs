//! Guest properties written at power-off: `Hardware/GuestProperties` replaced, read back
//! identically, the rest of the file untouched, and an empty list removes the element.

use settings::write::set_guest_properties;
use settings::{GuestProperty, MachineFile};
use std::path::Path;

fn load() -> MachineFile {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1_20_platform.vbox");
    MachineFile::load(&p).expect("load the sample")
}

#[test]
fn guest_properties_round_trip_and_touch_nothing_else() {
    let mut f = load();
    let before = String::from_utf8(f.to_bytes()).unwrap();
    let props = vec![
        GuestProperty {
            name: "/VirtualBox/GuestAdd/Version".into(),
            value: "7.1.12".into(),
            timestamp: 1_700_000_000_123_456_789,
            flags: String::new(),
        },
        GuestProperty {
            name: "/my/prop".into(),
            value: "a \"quoted\" <value> & more".into(),
            timestamp: 42,
            flags: "RDONLYGUEST".into(),
        },
    ];
    set_guest_properties(&mut f, &props).unwrap();
    assert_eq!(f.machine.hardware.guest_properties, props);
    let after = String::from_utf8(f.to_bytes()).unwrap();
    assert!(after.contains("<GuestProperties>"), "{after}");
    // Reparse from the bytes.
    let g = MachineFile::from_bytes(Path::new("x.vbox"), after.as_bytes()).unwrap();
    assert_eq!(g.machine.hardware.guest_properties, props);
    // Only lines about guest properties changed.
    let old: Vec<&str> = before.lines().collect();
    for l in after.lines().filter(|l| !old.contains(l)) {
        assert!(l.contains("GuestPropert"), "unexpected new line {l:?}");
    }
    // Removing them restores the original document.
    set_guest_properties(&mut f, &[]).unwrap();
    assert!(f.machine.hardware.guest_properties.is_empty());
    let cleared = String::from_utf8(f.to_bytes()).unwrap();
    if !before.contains("GuestProperties") {
        assert_eq!(cleared, before);
    }
}
