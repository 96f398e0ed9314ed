//! Writing a changed model back into the lossless tree. Only settings whose
//! value differs from what the tree already says are touched, so everything
//! else (unknown elements, attributes, comments, layout) stays exactly where
//! it was. The settings version is raised only when a written feature needs
//! it, and the result is read back and compared with the requested model,
//! so a change that cannot be expressed is an error, never silent loss.

use crate::document::{machine_element_mut, MachineFile};
use crate::enums::*;
use crate::error::{Error, ErrorKind, Result};
use crate::layout;
use crate::model::*;
use crate::read;
use crate::values::bool_str;
use crate::version::SettingsVersion;
use crate::xml::{Element, Node};

/// The oldest settings version novabox writes into. VirtualBox writes 1.7+;
/// novabox does not (yet) convert the pre-1.9 storage layout.
pub const OLDEST_WRITABLE: SettingsVersion = SettingsVersion::v(9);

/// The settings version a model needs to be expressed (VirtualBox's
/// "bump the version only when a feature needs it").
pub fn required_version(m: &Machine) -> (SettingsVersion, &'static str) {
    let mut best = (SettingsVersion::v(7), "");
    let mut need = |minor: u32, why: &'static str| {
        if minor > best.0.minor {
            best = (SettingsVersion::v(minor), why);
        }
    };
    let hw = &m.hardware;
    if hw.firmware.kind != FirmwareType::Bios {
        need(9, "EFI firmware");
    }
    if hw.chipset == ChipsetType::Ich9 {
        need(11, "ICH9 chipset");
    }
    if hw.audio.controller == AudioController::Hda {
        need(11, "HDA audio");
    }
    if hw.display.controller != GraphicsController::VBoxVga {
        need(14, "graphics controller type");
    }
    if hw.display.controller == GraphicsController::QemuRamFb {
        need(20, "QemuRamFB graphics");
    }
    if !matches!(
        hw.paravirt,
        ParavirtProvider::Legacy | ParavirtProvider::Default
    ) {
        need(15, "paravirtualization provider");
    }
    for s in &hw.serial {
        if s.mode == PortMode::Tcp {
            need(15, "TCP serial port mode");
        }
        if s.uart_type != UartType::U16550A {
            need(17, "UART type");
        }
    }
    for u in &hw.usb_controllers {
        if u.kind == UsbControllerType::Xhci {
            need(15, "xHCI USB controller");
        }
    }
    for c in &hw.storage {
        match c.kind {
            StorageControllerType::Usb => need(15, "USB storage controller"),
            StorageControllerType::NvMe => need(16, "NVMe storage controller"),
            StorageControllerType::VirtioScsi => need(18, "virtio-scsi storage controller"),
            _ => {}
        }
    }
    for f in &hw.shared_folders {
        if !f.auto_mount_point.is_empty() {
            need(17, "shared folder auto-mount point");
        }
        if !f.symlink_policy.is_empty() {
            need(20, "shared folder symlink policy");
        }
    }
    for n in &hw.network {
        if matches!(
            n.kind,
            NicType::Am79C960
                | NicType::Ne1000
                | NicType::Ne2000
                | NicType::Wd8003
                | NicType::Wd8013
                | NicType::Elnk1
                | NicType::Elnk2
        ) {
            need(19, "ISA network adapter type");
        }
        match n.attachment {
            NetAttachment::Cloud(_) => need(18, "cloud network attachment"),
            NetAttachment::HostOnlyNetwork(_) => need(19, "host-only network attachment"),
            _ => {}
        }
    }
    if hw.cpu.x2apic || !hw.cpu.apic || hw.firmware.apic_mode != ApicMode::Apic {
        need(16, "APIC/x2APIC settings");
    }
    if hw.cpu.nested_hw_virt {
        need(17, "nested hardware virtualization");
    }
    if hw.iommu != IommuType::None {
        need(19, "IOMMU");
    }
    if hw.tpm != TpmType::None {
        need(19, "TPM");
    }
    if hw.clipboard_file_transfers {
        need(19, "clipboard file transfers");
    }
    best
}

/// Apply `new` to the file's tree. On error the tree may be partly changed:
/// callers work on a copy (the frontend reloads) and never save after an
/// error, so the file on disk is untouched.
pub fn apply(file: &mut MachineFile, new: &Machine) -> Result<()> {
    let cur = file.settings_version();
    if cur < OLDEST_WRITABLE {
        return Err(Error::new(
            ErrorKind::Version,
            format!(
                "settings version {cur} files cannot be written by novabox yet (oldest writable is {OLDEST_WRITABLE}); \
                 open the machine once in VirtualBox to upgrade it"
            ),
        ));
    }
    let (need, why) = required_version(new);
    if need > cur && !cur.is_future() {
        if need.minor >= 20 {
            return Err(Error::new(
                ErrorKind::Version,
                format!("{why} needs settings version {need}, and converting a {cur} file to the 1.20 platform layout is not supported yet"),
            ));
        }
        file.version.version = need;
        let rendered = file.version.render();
        file.doc.root.set_attr("version", &rendered);
    }
    let v = file.settings_version();
    // What the tree says now, under the (possibly raised) version.
    let old = {
        let m = crate::document::machine_element(&file.doc.root)?;
        read::read_machine(m, v)?
    };
    {
        let m = machine_element_mut(&mut file.doc.root)?;
        sync_machine(m, &old, new, v);
    }
    file.reread()?;
    if file.machine != *new {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "internal: the requested change could not be expressed in settings version {v} ({})",
                first_difference(&file.machine, new)
            ),
        ));
    }
    Ok(())
}

fn first_difference(a: &Machine, b: &Machine) -> String {
    let (ha, hb) = (&a.hardware, &b.hardware);
    macro_rules! cmp {
        ($($f:ident).+) => {
            if a.$($f).+ != b.$($f).+ {
                return format!("{} is {:?}, wanted {:?}", stringify!($($f).+), a.$($f).+, b.$($f).+);
            }
        };
    }
    cmp!(name);
    cmp!(os_type);
    cmp!(description);
    cmp!(extra_data);
    cmp!(media);
    if ha.network != hb.network {
        return format!(
            "network adapters are {:?}, wanted {:?}",
            ha.network, hb.network
        );
    }
    if ha.storage != hb.storage {
        return format!("storage is {:?}, wanted {:?}", ha.storage, hb.storage);
    }
    if ha != hb {
        return format!("hardware is {ha:?}, wanted {hb:?}");
    }
    "snapshot or other machine-level data".into()
}

fn set(owner: &mut Element, path: &[&str], attr: &str, value: &str) {
    layout::get_or_create(owner, path).set_attr(attr, value);
}

/// Set an attribute that has legacy spellings: update whichever spelling
/// the element already uses, else write the current one.
fn set_aliased(el: &mut Element, names: &[&str], value: &str) {
    let name = names
        .iter()
        .find(|n| el.attr(n).is_some())
        .copied()
        .unwrap_or(names[0]);
    el.set_attr(name, value);
}

fn sync_machine(m: &mut Element, old: &Machine, new: &Machine, v: SettingsVersion) {
    if old.name != new.name {
        m.set_attr("name", &new.name);
    }
    if old.os_type != new.os_type {
        m.set_attr("OSType", &new.os_type);
    }
    if old.description != new.description {
        if new.description.is_empty() {
            m.remove_elements(|e| e.local() == "Description");
            m.remove_attr("Description");
        } else {
            m.remove_attr("Description");
            let d = m.child_or_insert("Description");
            d.set_text(&new.description);
        }
    }
    if old.extra_data != new.extra_data {
        sync_extra_data(m, &old.extra_data, &new.extra_data);
    }
    if old.media != new.media {
        sync_media(m, &old.media, &new.media);
    }
    if old.default_frontend != new.default_frontend {
        set(
            m,
            &["Hardware", "Frontend", "Default"],
            "type",
            &new.default_frontend,
        );
    }
    sync_hardware(m, &old.hardware, &new.hardware, v);
    // Snapshots: normally unchanged, but a raised version changes the
    // defaults their absent attributes stand for, so they are synced too.
    if let (Some(os), Some(ns)) = (&old.snapshot, &new.snapshot) {
        if let Some(el) = m.child_mut("Snapshot") {
            sync_snapshot(el, os, ns, v);
        }
    }
}

fn sync_snapshot(el: &mut Element, old: &Snapshot, new: &Snapshot, v: SettingsVersion) {
    if old == new {
        return;
    }
    sync_hardware(el, &old.hardware, &new.hardware, v);
    if let Some(list) = el.child_mut("Snapshots") {
        let children = list.elements_mut().filter(|e| e.local() == "Snapshot");
        for ((c, o), n) in children.zip(old.children.iter()).zip(new.children.iter()) {
            sync_snapshot(c, o, n, v);
        }
    }
}

fn sync_extra_data(m: &mut Element, old: &[(String, String)], new: &[(String, String)]) {
    let x = m.child_or_insert("ExtraData");
    x.remove_elements(|e| {
        e.local() == "ExtraDataItem" && !new.iter().any(|(n, _)| Some(n.as_str()) == e.attr("name"))
    });
    for (name, value) in new {
        if old.iter().any(|(n, v)| n == name && v == value) {
            continue;
        }
        x.upsert("ExtraDataItem", "name", name, || {
            Element::new("ExtraDataItem").with_attr("name", name)
        })
        .set_attr("value", value);
    }
}

fn medium_element(tag: &str, med: &Medium, disk: bool) -> Element {
    let mut e = Element::new(tag)
        .with_attr("uuid", &med.uuid.braced())
        .with_attr("location", &med.location);
    if disk || med.format != "RAW" {
        e.set_attr("format", &med.format);
    }
    if disk && med.kind != MediumType::Normal {
        e.set_attr("type", med.kind.as_xml());
    }
    if med.auto_reset {
        e.set_attr("autoReset", "true");
    }
    for c in &med.children {
        e.push_element(medium_element(tag, c, disk));
    }
    e
}

fn sync_media(m: &mut Element, old: &MediaRegistry, new: &MediaRegistry) {
    // (list element, item element, old items, new items, hard disks?)
    type MediaList<'a> = (&'a str, &'a str, &'a [Medium], &'a [Medium], bool);
    let lists: [MediaList; 3] = [
        (
            "HardDisks",
            "HardDisk",
            &old.hard_disks,
            &new.hard_disks,
            true,
        ),
        (
            "DVDImages",
            "Image",
            &old.dvd_images,
            &new.dvd_images,
            false,
        ),
        (
            "FloppyImages",
            "Image",
            &old.floppy_images,
            &new.floppy_images,
            false,
        ),
    ];
    for (list, tag, o, n, disk) in lists {
        if o == n {
            continue;
        }
        let reg = m.child_or_insert("MediaRegistry");
        let l = reg.child_or_insert(list);
        // Top-level entries removed from the model go; new ones are appended.
        l.remove_elements(|e| {
            e.local() == tag
                && !n.iter().any(|x| {
                    Some(x.uuid.braced())
                        == e.attr("uuid").map(|u| {
                            crate::values::Uuid::parse(u)
                                .map(|u| u.braced())
                                .unwrap_or_default()
                        })
                })
        });
        for med in n {
            if !o.iter().any(|x| x.uuid == med.uuid) {
                l.push_element(medium_element(tag, med, disk));
            }
        }
    }
}

fn sync_flag(owner: &mut Element, path: &[&str], child: &str, old: bool, new: bool) {
    if old != new {
        let mut p: Vec<&str> = path.to_vec();
        p.push(child);
        set(owner, &p, "enabled", bool_str(new));
    }
}

fn sync_hardware(o: &mut Element, old: &Hardware, new: &Hardware, v: SettingsVersion) {
    // CPU.
    let cpu = layout::cpu(v);
    let x86 = layout::cpu_x86(v);
    let (oc, nc) = (&old.cpu, &new.cpu);
    if oc.count != nc.count {
        let el = layout::get_or_create(o, cpu);
        if v.minor < 5 && el.child("CPUCount").is_some() {
            el.child_or_insert("CPUCount")
                .set_attr("count", &nc.count.to_string());
        } else {
            el.set_attr("count", &nc.count.to_string());
        }
    }
    if oc.hotplug != nc.hotplug {
        set(o, cpu, "hotplug", bool_str(nc.hotplug));
    }
    if oc.execution_cap != nc.execution_cap {
        set(o, cpu, "executionCap", &nc.execution_cap.to_string());
    }
    if oc.profile != nc.profile {
        set(o, cpu, "CpuProfile", &nc.profile);
    }
    if oc.cpuid_portability != nc.cpuid_portability {
        set(
            o,
            cpu,
            "CpuIdPortabilityLevel",
            &nc.cpuid_portability.to_string(),
        );
    }
    sync_flag(o, x86, "HardwareVirtEx", oc.hw_virt, nc.hw_virt);
    sync_flag(
        o,
        x86,
        "HardwareVirtExNestedPaging",
        oc.nested_paging,
        nc.nested_paging,
    );
    sync_flag(o, x86, "HardwareVirtExVPID", oc.vpid, nc.vpid);
    sync_flag(o, x86, "HardwareVirtExUX", oc.ux, nc.ux);
    sync_flag(
        o,
        x86,
        "HardwareVirtExLargePages",
        oc.large_pages,
        nc.large_pages,
    );
    sync_flag(
        o,
        x86,
        "HardwareVirtForce",
        oc.hw_virt_force,
        nc.hw_virt_force,
    );
    sync_flag(o, x86, "PAE", oc.pae, nc.pae);
    sync_flag(
        o,
        x86,
        "TripleFaultReset",
        oc.triple_fault_reset,
        nc.triple_fault_reset,
    );
    sync_flag(o, x86, "APIC", oc.apic, nc.apic);
    sync_flag(o, x86, "X2APIC", oc.x2apic, nc.x2apic);
    sync_flag(o, x86, "NestedHWVirt", oc.nested_hw_virt, nc.nested_hw_virt);
    sync_flag(
        o,
        x86,
        "HardwareVirtExVirtVmsaveVmload",
        oc.virt_vmsave_vmload,
        nc.virt_vmsave_vmload,
    );
    if oc.long_mode != nc.long_mode {
        match nc.long_mode {
            Some(b) => sync_flag(o, x86, "LongMode", !b, b),
            None => {
                if let Some(c) = layout::get_mut(o, x86) {
                    c.remove_elements(|e| e.local() == "LongMode");
                }
            }
        }
    }

    // Memory.
    if old.memory_mb != new.memory_mb {
        set(
            o,
            &["Hardware", "Memory"],
            "RAMSize",
            &new.memory_mb.to_string(),
        );
    }
    if old.page_fusion != new.page_fusion {
        set(
            o,
            &["Hardware", "Memory"],
            "PageFusion",
            bool_str(new.page_fusion),
        );
    }

    // Firmware.
    let (of, nf) = (&old.firmware, &new.firmware);
    if of.kind != nf.kind {
        set(o, &["Hardware", "Firmware"], "type", nf.kind.as_xml());
    }
    let bios = layout::bios(v);
    sync_flag(o, bios, "ACPI", of.acpi, nf.acpi);
    sync_flag(o, bios, "IOAPIC", of.ioapic, nf.ioapic);
    sync_flag(o, bios, "PXEDebug", of.pxe_debug, nf.pxe_debug);
    sync_flag(
        o,
        bios,
        "SmbiosUuidLittleEndian",
        of.smbios_uuid_le,
        nf.smbios_uuid_le,
    );
    let sub = |name: &'static str| -> Vec<&'static str> {
        let mut p = bios.to_vec();
        p.push(name);
        p
    };
    if of.apic_mode != nf.apic_mode {
        set(o, &sub("APIC"), "mode", nf.apic_mode.as_xml());
    }
    if of.boot_menu != nf.boot_menu {
        set(o, &sub("BootMenu"), "mode", nf.boot_menu.as_xml());
    }
    if of.time_offset_ms != nf.time_offset_ms {
        set(
            o,
            &sub("TimeOffset"),
            "value",
            &nf.time_offset_ms.to_string(),
        );
    }
    if of.logo_fade_in != nf.logo_fade_in {
        set(o, &sub("Logo"), "fadeIn", bool_str(nf.logo_fade_in));
    }
    if of.logo_fade_out != nf.logo_fade_out {
        set(o, &sub("Logo"), "fadeOut", bool_str(nf.logo_fade_out));
    }
    if of.logo_display_time != nf.logo_display_time {
        set(
            o,
            &sub("Logo"),
            "displayTime",
            &nf.logo_display_time.to_string(),
        );
    }
    if of.nvram_path != nf.nvram_path {
        match &nf.nvram_path {
            Some(p) => set(o, &sub("NVRAM"), "path", p),
            None => {
                if let Some(b) = layout::get_mut(o, bios) {
                    b.remove_elements(|e| e.local() == "NVRAM");
                }
            }
        }
    }

    // HID.
    if old.pointing != new.pointing {
        set(o, &["Hardware", "HID"], "Pointing", new.pointing.as_xml());
    }
    if old.keyboard != new.keyboard {
        set(o, &["Hardware", "HID"], "Keyboard", new.keyboard.as_xml());
    }

    // Platform items.
    let plat = layout::platform(v);
    let psub = |name: &'static str| -> Vec<&'static str> {
        let mut p = plat.to_vec();
        p.push(name);
        p
    };
    if old.chipset != new.chipset {
        set(o, &psub("Chipset"), "type", new.chipset.as_xml());
    }
    if old.iommu != new.iommu {
        set(o, &psub("Iommu"), "type", new.iommu.as_xml());
    }
    if old.rtc_utc != new.rtc_utc {
        set(
            o,
            &psub("RTC"),
            "localOrUTC",
            if new.rtc_utc { "UTC" } else { "local" },
        );
    }
    sync_flag(o, layout::hpet_parent(v), "HPET", old.hpet, new.hpet);
    if old.paravirt != new.paravirt {
        set(
            o,
            &["Hardware", "Paravirt"],
            "provider",
            new.paravirt.as_xml(),
        );
    }
    if old.paravirt_debug != new.paravirt_debug {
        set(o, &["Hardware", "Paravirt"], "debug", &new.paravirt_debug);
    }

    // Boot order: every position written, as VirtualBox does.
    if old.boot_order != new.boot_order {
        let boot = layout::get_or_create(o, &["Hardware", "Boot"]);
        for (i, dev) in new.boot_order.iter().enumerate() {
            let pos = (i + 1).to_string();
            boot.upsert("Order", "position", &pos, || {
                Element::new("Order").with_attr("position", &pos)
            })
            .set_attr("device", dev.as_xml());
        }
    }

    // Display.
    let (od, nd) = (&old.display, &new.display);
    if od != nd {
        let d = layout::get_or_create(o, &["Hardware", "Display"]);
        if od.controller != nd.controller {
            d.set_attr("controller", nd.controller.as_xml());
        }
        if od.vram_mb != nd.vram_mb {
            d.set_attr("VRAMSize", &nd.vram_mb.to_string());
        }
        if od.monitors != nd.monitors {
            set_aliased(
                d,
                &["monitorCount", "MonitorCount"],
                &nd.monitors.to_string(),
            );
        }
        if od.accelerate_3d != nd.accelerate_3d {
            set_aliased(
                d,
                &["accelerate3D", "Accelerate3D"],
                bool_str(nd.accelerate_3d),
            );
        }
        if od.accelerate_2d != nd.accelerate_2d {
            d.set_attr("accelerate2DVideo", bool_str(nd.accelerate_2d));
        }
    }

    sync_vrde(o, &old.vrde, &new.vrde);
    sync_usb(o, &old.usb_controllers, &new.usb_controllers);
    sync_network(o, old, new, v);
    sync_serial(o, &old.serial, &new.serial, v);
    sync_audio(o, &old.audio, &new.audio);
    sync_shared_folders(o, &old.shared_folders, &new.shared_folders);

    if old.clipboard != new.clipboard {
        let hw = o.child_or_insert("Hardware");
        if hw.child("Clipboard").is_none() && hw.attr("clipboardMode").is_some() {
            hw.set_attr("clipboardMode", new.clipboard.as_xml());
        } else {
            hw.child_or_insert("Clipboard")
                .set_attr("mode", new.clipboard.as_xml());
        }
    }
    if old.clipboard_file_transfers != new.clipboard_file_transfers {
        set(
            o,
            &["Hardware", "Clipboard"],
            "fileTransfersEnabled",
            bool_str(new.clipboard_file_transfers),
        );
    }
    if old.dnd != new.dnd {
        set(o, &["Hardware", "DragAndDrop"], "mode", new.dnd.as_xml());
    }
    if old.balloon_mb != new.balloon_mb {
        let g = layout::get_or_create(o, &["Hardware", "Guest"]);
        set_aliased(
            g,
            &["memoryBalloonSize", "MemoryBalloonSize"],
            &new.balloon_mb.to_string(),
        );
    }
    if old.storage != new.storage {
        sync_storage(o, &old.storage, &new.storage, v);
    }
}

fn sync_vrde(o: &mut Element, old: &Vrde, new: &Vrde) {
    if old == new {
        return;
    }
    let rd = layout::get_or_create(o, &["Hardware", "RemoteDisplay"]);
    if old.enabled != new.enabled {
        rd.set_attr("enabled", bool_str(new.enabled));
    }
    if old.auth_type != new.auth_type {
        rd.set_attr("authType", new.auth_type.as_xml());
    }
    if old.auth_timeout != new.auth_timeout {
        rd.set_attr("authTimeout", &new.auth_timeout.to_string());
    }
    if old.multi_connection != new.multi_connection {
        rd.set_attr("allowMultiConnection", bool_str(new.multi_connection));
    }
    if old.reuse_single_connection != new.reuse_single_connection {
        rd.set_attr(
            "reuseSingleConnection",
            bool_str(new.reuse_single_connection),
        );
    }
    if old.properties != new.properties {
        for (name, value) in &new.properties {
            if old.properties.iter().any(|(n, v)| n == name && v == value) {
                continue;
            }
            // Legacy attribute forms (< 1.11) are updated in place.
            let legacy = match name.as_str() {
                "TCP/Ports" => "port",
                "TCP/Address" => "netAddress",
                _ => "",
            };
            if !legacy.is_empty() && rd.attr(legacy).is_some() {
                rd.set_attr(legacy, value);
                continue;
            }
            let props = rd.child_or_insert("VRDEProperties");
            props
                .upsert("Property", "name", name, || {
                    Element::new("Property").with_attr("name", name)
                })
                .set_attr("value", value);
        }
        if let Some(props) = rd.child_mut("VRDEProperties") {
            props.remove_elements(|e| {
                e.local() == "Property"
                    && !new
                        .properties
                        .iter()
                        .any(|(n, _)| Some(n.as_str()) == e.attr("name"))
            });
        }
    }
}

fn sync_usb(o: &mut Element, old: &[UsbController], new: &[UsbController]) {
    if old == new {
        return;
    }
    let hw = o.child_or_insert("Hardware");
    if let Some(legacy) = hw.child_mut("USBController") {
        let has = |k| new.iter().any(|c| c.kind == k);
        legacy.set_attr("enabled", bool_str(has(UsbControllerType::Ohci)));
        legacy.set_attr("enabledEhci", bool_str(has(UsbControllerType::Ehci)));
        return;
    }
    let ctls = layout::get_or_create(hw, &["USB", "Controllers"]);
    ctls.remove_elements(|e| {
        e.local() == "Controller" && !new.iter().any(|c| Some(c.name.as_str()) == e.attr("name"))
    });
    for c in new {
        ctls.upsert("Controller", "name", &c.name, || {
            Element::new("Controller").with_attr("name", &c.name)
        })
        .set_attr("type", c.kind.as_xml());
    }
}

const ATTACHMENT_ELEMENTS: &[&str] = &[
    "NAT",
    "BridgedInterface",
    "HostInterface",
    "InternalNetwork",
    "HostOnlyInterface",
    "HostOnlyNetwork",
    "NATNetwork",
    "GenericInterface",
    "VDE",
    "CloudNetwork",
];

fn attachment_element(a: &NetAttachment, n: &NetworkAdapter) -> Option<Element> {
    let tag = a.element()?;
    let mut e = Element::new(tag);
    match a {
        NetAttachment::Generic(d) => e.set_attr("driver", d),
        NetAttachment::Nat => {
            if !n.nat_network.is_empty() {
                e.set_attr("network", &n.nat_network);
            }
        }
        other => {
            if let Some(name) = other.name() {
                e.set_attr("name", name);
            }
        }
    }
    Some(e)
}

fn nat_rule_element(r: &NatRule) -> Element {
    let mut e = Element::new("Forwarding")
        .with_attr("name", &r.name)
        .with_attr("proto", if r.tcp { "1" } else { "0" });
    if !r.host_ip.is_empty() {
        e.set_attr("hostip", &r.host_ip);
    }
    e.set_attr("hostport", &r.host_port.to_string());
    if !r.guest_ip.is_empty() {
        e.set_attr("guestip", &r.guest_ip);
    }
    e.set_attr("guestport", &r.guest_port.to_string());
    e
}

fn sync_network(o: &mut Element, old_hw: &Hardware, new_hw: &Hardware, v: SettingsVersion) {
    if old_hw.network == new_hw.network {
        return;
    }
    let net = layout::get_or_create(o, &["Hardware", "Network"]);
    net.remove_elements(|e| {
        e.local() == "Adapter"
            && !new_hw
                .network
                .iter()
                .any(|a| Some(a.slot.to_string().as_str()) == e.attr("slot"))
    });
    for n in &new_hw.network {
        let slot = n.slot.to_string();
        let old = old_hw.network.iter().find(|a| a.slot == n.slot).cloned();
        if old.as_ref() == Some(n) {
            continue;
        }
        let exists = net
            .elements()
            .any(|e| e.local() == "Adapter" && e.attr("slot") == Some(&slot));
        if !exists {
            // A new slot: written in full, as VirtualBox writes adapters.
            net.push_element(
                Element::new("Adapter")
                    .with_attr("slot", &slot)
                    .with_attr("enabled", bool_str(n.enabled))
                    .with_attr("MACAddress", &n.mac)
                    .with_attr("cable", bool_str(n.cable))
                    .with_attr("type", n.kind.as_xml()),
            );
        }
        let old = old.unwrap_or_else(|| {
            let mut d = NetworkAdapter::default_for(n.slot, v);
            d.enabled = n.enabled;
            d.mac = n.mac.clone();
            d.cable = n.cable;
            d.kind = n.kind;
            d
        });
        let Some(a) = net
            .elements_mut()
            .find(|e| e.local() == "Adapter" && e.attr("slot") == Some(&slot))
        else {
            continue;
        };
        if old.enabled != n.enabled {
            a.set_attr("enabled", bool_str(n.enabled));
        }
        if old.kind != n.kind {
            a.set_attr("type", n.kind.as_xml());
        }
        if old.mac != n.mac {
            a.set_attr("MACAddress", &n.mac);
        }
        if old.cable != n.cable {
            a.set_attr("cable", bool_str(n.cable));
        }
        if old.speed != n.speed {
            a.set_attr("speed", &n.speed.to_string());
        }
        if old.promisc != n.promisc {
            a.set_attr("promiscuousModePolicy", n.promisc.as_xml());
        }
        if old.boot_priority != n.boot_priority {
            a.set_attr("bootPriority", &n.boot_priority.to_string());
        }
        if old.trace != n.trace {
            a.set_attr("trace", bool_str(n.trace));
        }
        if old.trace_file != n.trace_file {
            a.set_attr("tracefile", &n.trace_file);
        }
        if old.bandwidth_group != n.bandwidth_group {
            a.set_attr("bandwidthGroup", &n.bandwidth_group);
        }
        if old.attachment != n.attachment {
            // Replace the active attachment element in place.
            let idx = a.children.iter().position(
                |c| matches!(c, Node::Element(e) if ATTACHMENT_ELEMENTS.contains(&e.local())),
            );
            let new_el = attachment_element(&n.attachment, n);
            match (idx, new_el) {
                (Some(i), Some(mut e)) => {
                    if let Node::Element(old_el) = &a.children[i] {
                        // Keep the old rules/settings when NAT stays NAT.
                        if old_el.local() == e.local() {
                            e = old_el.clone();
                            if let Some(name) = n.attachment.name() {
                                let key = if matches!(n.attachment, NetAttachment::Generic(_)) {
                                    "driver"
                                } else {
                                    "name"
                                };
                                e.set_attr(key, name);
                            }
                        } else {
                            e.fresh = true;
                        }
                    }
                    a.children[i] = Node::Element(e);
                }
                (Some(i), None) => {
                    a.children.remove(i);
                    if i > 0 && matches!(&a.children[i - 1], Node::Text(t) if t.trim().is_empty()) {
                        a.children.remove(i - 1);
                    }
                }
                (None, Some(e)) => {
                    // Before DisabledModes, as VirtualBox orders them.
                    let dm = a.children.iter().position(
                        |c| matches!(c, Node::Element(x) if x.local() == "DisabledModes"),
                    );
                    match dm {
                        Some(i) => a.children.insert(i, Node::Element(e)),
                        None => a.push_element(e),
                    }
                }
                (None, None) => {}
            }
        }
        if (old.nat_network != n.nat_network || old.nat_rules != n.nat_rules)
            && n.attachment == NetAttachment::Nat
        {
            if let Some(nat) = a.child_mut("NAT") {
                if old.nat_network != n.nat_network {
                    nat.set_attr("network", &n.nat_network);
                }
                if old.nat_rules != n.nat_rules {
                    nat.remove_elements(|e| e.local() == "Forwarding");
                    for r in &n.nat_rules {
                        nat.push_element(nat_rule_element(r));
                    }
                }
            }
        }
    }
}

fn sync_serial(o: &mut Element, old: &[SerialPort], new: &[SerialPort], v: SettingsVersion) {
    if old == new {
        return;
    }
    let hw = o.child_or_insert("Hardware");
    let tag = if hw.child("UART").is_none() && hw.child("Uart").is_some() {
        "Uart"
    } else {
        "UART"
    };
    let u = hw.child_or_insert(tag);
    let io_attr = if v.minor >= 20 { "IOAddress" } else { "IOBase" };
    u.remove_elements(|e| {
        e.local() == "Port"
            && !new
                .iter()
                .any(|p| Some(p.slot.to_string().as_str()) == e.attr("slot"))
    });
    for p in new {
        let slot = p.slot.to_string();
        let prev = old.iter().find(|x| x.slot == p.slot);
        if prev == Some(p) {
            continue;
        }
        let exists = u
            .elements()
            .any(|e| e.local() == "Port" && e.attr("slot") == Some(&slot));
        if !exists {
            let mut e = Element::new("Port")
                .with_attr("slot", &slot)
                .with_attr("enabled", bool_str(p.enabled))
                .with_attr(io_attr, &format!("{:#x}", p.io_base))
                .with_attr("IRQ", &p.irq.to_string());
            if p.mode != PortMode::Disconnected || !p.path.is_empty() {
                e.set_attr("path", &p.path);
            }
            e.set_attr("hostMode", p.mode.as_xml());
            if p.server {
                e.set_attr("server", "true");
            }
            if p.uart_type != UartType::U16550A {
                e.set_attr("uartType", p.uart_type.as_xml());
            }
            u.push_element(e);
            continue;
        }
        let prev = prev
            .cloned()
            .unwrap_or_else(|| SerialPort::default_for(p.slot));
        let Some(e) = u
            .elements_mut()
            .find(|e| e.local() == "Port" && e.attr("slot") == Some(&slot))
        else {
            continue;
        };
        if prev.enabled != p.enabled {
            e.set_attr("enabled", bool_str(p.enabled));
        }
        if prev.io_base != p.io_base {
            set_aliased(
                e,
                &[io_attr, "IOAddress", "IOBase"],
                &format!("{:#x}", p.io_base),
            );
        }
        if prev.irq != p.irq {
            e.set_attr("IRQ", &p.irq.to_string());
        }
        if prev.mode != p.mode {
            e.set_attr("hostMode", p.mode.as_xml());
        }
        if prev.path != p.path {
            e.set_attr("path", &p.path);
        }
        if prev.server != p.server {
            e.set_attr("server", bool_str(p.server));
        }
        if prev.uart_type != p.uart_type {
            e.set_attr("uartType", p.uart_type.as_xml());
        }
    }
}

fn sync_audio(o: &mut Element, old: &AudioAdapter, new: &AudioAdapter) {
    if old == new {
        return;
    }
    let a = layout::get_or_create(o, &["Hardware", "AudioAdapter"]);
    if old.enabled != new.enabled {
        a.set_attr("enabled", bool_str(new.enabled));
    }
    if old.controller != new.controller {
        a.set_attr("controller", new.controller.as_xml());
    }
    if old.codec != new.codec {
        a.set_attr("codec", new.codec.as_xml());
    }
    if old.driver != new.driver {
        if a.attr("useDefault").and_then(crate::values::parse_bool) == Some(true)
            && new.driver != AudioDriver::Default
        {
            a.set_attr("useDefault", "false");
        }
        a.set_attr("driver", new.driver.as_xml());
    }
    if old.enabled_in != new.enabled_in {
        a.set_attr("enabledIn", bool_str(new.enabled_in));
    }
    if old.enabled_out != new.enabled_out {
        a.set_attr("enabledOut", bool_str(new.enabled_out));
    }
}

fn sync_shared_folders(o: &mut Element, old: &[SharedFolder], new: &[SharedFolder]) {
    if old == new {
        return;
    }
    let hw = o.child_or_insert("Hardware");
    // Removals and updates in every SharedFolders list (Genode files repeat it).
    for list in hw.elements_mut().filter(|e| e.local() == "SharedFolders") {
        list.remove_elements(|e| {
            e.local() == "SharedFolder"
                && !new.iter().any(|f| Some(f.name.as_str()) == e.attr("name"))
        });
        for f in list.elements_mut().filter(|e| e.local() == "SharedFolder") {
            let Some(want) = new.iter().find(|n| Some(n.name.as_str()) == f.attr("name")) else {
                continue;
            };
            let Some(was) = old.iter().find(|x| x.name == want.name) else {
                continue;
            };
            if was.host_path != want.host_path {
                f.set_attr("hostPath", &want.host_path);
            }
            if was.writable != want.writable {
                f.set_attr("writable", bool_str(want.writable));
            }
            if was.auto_mount != want.auto_mount {
                f.set_attr("autoMount", bool_str(want.auto_mount));
            }
            if was.auto_mount_point != want.auto_mount_point {
                f.set_attr("autoMountPoint", &want.auto_mount_point);
            }
            if was.symlink_policy != want.symlink_policy {
                f.set_attr("symlinkPolicy", &want.symlink_policy);
            }
        }
    }
    let list = hw.child_or_insert("SharedFolders");
    for f in new {
        if old.iter().any(|x| x.name == f.name) {
            continue;
        }
        let mut e = Element::new("SharedFolder")
            .with_attr("name", &f.name)
            .with_attr("hostPath", &f.host_path)
            .with_attr("writable", bool_str(f.writable))
            .with_attr("autoMount", bool_str(f.auto_mount));
        if !f.auto_mount_point.is_empty() {
            e.set_attr("autoMountPoint", &f.auto_mount_point);
        }
        if !f.symlink_policy.is_empty() {
            e.set_attr("symlinkPolicy", &f.symlink_policy);
        }
        list.push_element(e);
    }
}

fn device_element(d: &AttachedDevice) -> Element {
    let mut e = Element::new("AttachedDevice");
    if d.kind == DeviceType::Dvd || d.passthrough {
        e.set_attr("passthrough", bool_str(d.passthrough));
    }
    if d.temp_eject {
        e.set_attr("tempeject", "true");
    }
    if d.non_rotational {
        e.set_attr("nonrotational", "true");
    }
    if d.discard {
        e.set_attr("discard", "true");
    }
    e.set_attr("type", d.kind.as_xml());
    e.set_attr("hotpluggable", bool_str(d.hotpluggable));
    e.set_attr("port", &d.port.to_string());
    e.set_attr("device", &d.device.to_string());
    if !d.bandwidth_group.is_empty() {
        e.set_attr("bandwidthGroup", &d.bandwidth_group);
    }
    if let Some(u) = d.medium {
        e.push_element(Element::new("Image").with_attr("uuid", &u.braced()));
    } else if let Some(h) = &d.host_drive {
        e.push_element(Element::new("HostDrive").with_attr("src", h));
    }
    e
}

fn sync_storage(
    o: &mut Element,
    old: &[StorageController],
    new: &[StorageController],
    v: SettingsVersion,
) {
    let path = layout::storage(o, v);
    let sc = layout::get_or_create(o, path);
    sc.remove_elements(|e| {
        e.local() == "StorageController"
            && !new.iter().any(|c| Some(c.name.as_str()) == e.attr("name"))
    });
    for c in new {
        let prev = old.iter().find(|x| x.name == c.name);
        if prev == Some(c) {
            continue;
        }
        if prev.is_none() {
            let mut e = Element::new("StorageController")
                .with_attr("name", &c.name)
                .with_attr("type", c.kind.as_xml())
                .with_attr("PortCount", &c.port_count.to_string())
                .with_attr("useHostIOCache", bool_str(c.use_host_io_cache))
                .with_attr("Bootable", bool_str(c.bootable));
            if c.instance != 0 {
                e.set_attr("Instance", &c.instance.to_string());
            }
            for d in &c.devices {
                e.push_element(device_element(d));
            }
            sc.push_element(e);
            continue;
        }
        let prev = prev.cloned().unwrap_or_else(|| c.clone());
        let Some(e) = sc
            .elements_mut()
            .find(|e| e.local() == "StorageController" && e.attr("name") == Some(&c.name))
        else {
            continue;
        };
        if prev.kind != c.kind {
            e.set_attr("type", c.kind.as_xml());
        }
        if prev.port_count != c.port_count {
            e.set_attr("PortCount", &c.port_count.to_string());
        }
        if prev.instance != c.instance {
            e.set_attr("Instance", &c.instance.to_string());
        }
        if prev.use_host_io_cache != c.use_host_io_cache {
            e.set_attr("useHostIOCache", bool_str(c.use_host_io_cache));
        }
        if prev.bootable != c.bootable {
            e.set_attr("Bootable", bool_str(c.bootable));
        }
        let key = |x: &Element| -> Option<(u32, u32)> {
            Some((
                crate::values::parse_u64(x.attr("port")?)? as u32,
                crate::values::parse_u64(x.attr("device")?)? as u32,
            ))
        };
        e.remove_elements(|x| {
            x.local() == "AttachedDevice"
                && !c.devices.iter().any(|d| key(x) == Some((d.port, d.device)))
        });
        for d in &c.devices {
            let was = prev
                .devices
                .iter()
                .find(|x| x.port == d.port && x.device == d.device);
            let same = |a: &AttachedDevice, b: &AttachedDevice| a == b;
            match was {
                Some(w) if same(w, d) => {}
                Some(w) if w.kind == d.kind => {
                    let Some(x) = e.elements_mut().find(|x| {
                        x.local() == "AttachedDevice" && key(x) == Some((d.port, d.device))
                    }) else {
                        continue;
                    };
                    if w.passthrough != d.passthrough {
                        x.set_attr("passthrough", bool_str(d.passthrough));
                    }
                    if w.temp_eject != d.temp_eject {
                        x.set_attr("tempeject", bool_str(d.temp_eject));
                    }
                    if w.non_rotational != d.non_rotational {
                        x.set_attr("nonrotational", bool_str(d.non_rotational));
                    }
                    if w.discard != d.discard {
                        x.set_attr("discard", bool_str(d.discard));
                    }
                    if w.hotpluggable != d.hotpluggable {
                        x.set_attr("hotpluggable", bool_str(d.hotpluggable));
                    }
                    if w.bandwidth_group != d.bandwidth_group {
                        x.set_attr("bandwidthGroup", &d.bandwidth_group);
                    }
                    if w.medium != d.medium || w.host_drive != d.host_drive {
                        x.remove_elements(|c| c.local() == "Image" || c.local() == "HostDrive");
                        if let Some(u) = d.medium {
                            x.push_element(Element::new("Image").with_attr("uuid", &u.braced()));
                        } else if let Some(h) = &d.host_drive {
                            x.push_element(Element::new("HostDrive").with_attr("src", h));
                        }
                    }
                }
                _ => {
                    e.remove_elements(|x| {
                        x.local() == "AttachedDevice" && key(x) == Some((d.port, d.device))
                    });
                    e.push_element(device_element(d));
                }
            }
        }
    }
}

/// Replace the machine's guest properties (`Hardware/GuestProperties`, one
/// `GuestProperty name value timestamp flags` each, as VirtualBox saves the
/// non-transient ones at power-off) and re-read the model. Everything else in
/// the document stays as it was; an empty list removes the element.
pub fn set_guest_properties(file: &mut MachineFile, props: &[GuestProperty]) -> Result<()> {
    {
        let m = machine_element_mut(&mut file.doc.root)?;
        let hw = m.child_or_insert("Hardware");
        hw.remove_elements(|e| e.local() == "GuestProperties");
        if !props.is_empty() {
            let mut gp = Element::new("GuestProperties");
            for p in props {
                gp.push_element(
                    Element::new("GuestProperty")
                        .with_attr("name", &p.name)
                        .with_attr("value", &p.value)
                        .with_attr("timestamp", &p.timestamp.to_string())
                        .with_attr("flags", &p.flags),
                );
            }
            hw.push_element(gp);
        }
    }
    file.reread()
}
