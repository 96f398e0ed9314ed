//! Where each part of the machine lives, per settings version. Paths are
//! lists of child element names below the owner (`Machine` or `Snapshot`),
//! so the reader and the writer agree on placement.

use crate::version::SettingsVersion;
use crate::xml::Element;

/// Path of the element carrying `CPU@count` and friends.
pub fn cpu(v: SettingsVersion) -> &'static [&'static str] {
    if v.minor >= 20 {
        &["Platform", "CPU"]
    } else {
        &["Hardware", "CPU"]
    }
}

/// Path of the element carrying the x86 CPU flags (`PAE`, `LongMode`, …).
pub fn cpu_x86(v: SettingsVersion) -> &'static [&'static str] {
    if v.minor >= 20 {
        &["Platform", "x86", "CPU"]
    } else {
        &["Hardware", "CPU"]
    }
}

/// Parent of `Chipset`, `Iommu` and `RTC`.
pub fn platform(v: SettingsVersion) -> &'static [&'static str] {
    if v.minor >= 20 {
        &["Platform"]
    } else {
        &["Hardware"]
    }
}

/// Parent of `HPET`.
pub fn hpet_parent(v: SettingsVersion) -> &'static [&'static str] {
    if v.minor >= 20 {
        &["Platform", "x86"]
    } else {
        &["Hardware"]
    }
}

/// The element holding ACPI, IOAPIC, boot menu, … (`BIOS` before 1.20).
pub fn bios(v: SettingsVersion) -> &'static [&'static str] {
    if v.minor >= 20 {
        &["Hardware", "Firmware"]
    } else {
        &["Hardware", "BIOS"]
    }
}

/// The `StorageControllers` element: read from where it is; created inside
/// `Hardware` for 1.17+ files (as VirtualBox 6.1+ writes) and beside it
/// before.
pub fn storage(owner: &Element, v: SettingsVersion) -> &'static [&'static str] {
    let in_hw = owner
        .child("Hardware")
        .is_some_and(|h| h.child("StorageControllers").is_some());
    if in_hw {
        &["Hardware", "StorageControllers"]
    } else if owner.child("StorageControllers").is_some() || v.minor < 17 {
        &["StorageControllers"]
    } else {
        &["Hardware", "StorageControllers"]
    }
}

/// Follow a path of child names.
pub fn get<'a>(owner: &'a Element, path: &[&str]) -> Option<&'a Element> {
    let mut e = owner;
    for p in path {
        e = e.child(p)?;
    }
    Some(e)
}

/// Follow a path, creating missing elements.
pub fn get_or_create<'a>(owner: &'a mut Element, path: &[&str]) -> &'a mut Element {
    let mut e = owner;
    for p in path {
        e = e.child_or_insert(p);
    }
    e
}

/// Follow a path without creating anything.
pub fn get_mut<'a>(owner: &'a mut Element, path: &[&str]) -> Option<&'a mut Element> {
    let mut e = owner;
    for p in path {
        e = e.child_mut(p)?;
    }
    Some(e)
}
