//! Reading the typed model out of the XML tree, applying VirtualBox's
//! per-version defaults and checking values (unknown enum values,
//! out-of-range numbers, duplicate ids) with positions.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use crate::enums::*;
use crate::error::{Error, ErrorKind, Result};
use crate::layout;
use crate::model::*;
use crate::values::{parse_bool, parse_i64, parse_u64, slashes, Uuid};
use crate::version::SettingsVersion;
use crate::xml::{Element, Pos};

/// Deepest snapshot tree VirtualBox accepts.
pub const MAX_SNAPSHOT_DEPTH: usize = 250;
/// Deepest medium tree VirtualBox accepts.
pub const MAX_MEDIUM_DEPTH: usize = 300;

fn attr_pos(el: &Element, name: &str) -> Pos {
    el.attr_node(name).map(|a| a.pos).unwrap_or(el.pos)
}

/// First present attribute of a list of spellings (current first, legacy after).
fn attr_any<'a>(el: &'a Element, names: &[&str]) -> Option<(&'a str, Pos)> {
    names
        .iter()
        .find_map(|n| el.attr(n).map(|v| (v, attr_pos(el, n))))
}

/// A boolean; an invalid value reads as absent, as VirtualBox does.
pub(crate) fn get_bool(el: Option<&Element>, name: &str, default: bool) -> bool {
    el.and_then(|e| e.attr(name))
        .and_then(parse_bool)
        .unwrap_or(default)
}

/// An unsigned number in a range; a malformed number reads as absent (as
/// VirtualBox does), a well-formed one outside the range is an error.
pub(crate) fn get_uint(
    el: Option<&Element>,
    names: &[&str],
    range: RangeInclusive<u64>,
    default: u64,
) -> Result<u64> {
    let Some(el) = el else { return Ok(default) };
    let Some((s, pos)) = attr_any(el, names) else {
        return Ok(default);
    };
    match parse_u64(s) {
        Some(v) if range.contains(&v) => Ok(v),
        Some(_) => Err(Error::at(
            ErrorKind::Range,
            pos,
            format!(
                "{} value {s} of <{}> is out of range ({}..{})",
                names[0],
                el.local(),
                range.start(),
                range.end()
            ),
        )),
        None => {
            if s.trim_start().starts_with('-') && parse_i64(s).is_some() {
                Err(Error::at(
                    ErrorKind::Range,
                    pos,
                    format!("{} value {s} of <{}> is negative", names[0], el.local()),
                ))
            } else {
                Ok(default)
            }
        }
    }
}

/// A required unsigned number in a range.
fn req_uint(el: &Element, name: &str, range: RangeInclusive<u64>) -> Result<u64> {
    if el.attr(name).is_none() {
        return Err(missing_attr(el, name));
    }
    let v = get_uint(Some(el), &[name], range, u64::MAX)?;
    if v == u64::MAX {
        return Err(Error::at(
            ErrorKind::Range,
            attr_pos(el, name),
            format!(
                "{name} value \"{}\" of <{}> is not a number",
                el.attr(name).unwrap_or(""),
                el.local()
            ),
        ));
    }
    Ok(v)
}

/// An enumeration; an unknown value is an error naming the value.
pub(crate) fn get_enum<T: XmlEnum>(el: Option<&Element>, names: &[&str], default: T) -> Result<T> {
    let Some(el) = el else { return Ok(default) };
    let Some((s, pos)) = attr_any(el, names) else {
        return Ok(default);
    };
    T::from_xml(s).ok_or_else(|| {
        Error::at(
            ErrorKind::UnknownValue,
            pos,
            format!("unknown {} \"{s}\"", T::WHAT),
        )
    })
}

fn req_enum<T: XmlEnum>(el: &Element, name: &str) -> Result<T> {
    if el.attr(name).is_none() {
        return Err(missing_attr(el, name));
    }
    get_enum(Some(el), &[name], T::all()[0])
}

fn missing_attr(el: &Element, name: &str) -> Error {
    Error::at(
        ErrorKind::Missing,
        el.pos,
        format!("<{}> lacks the required attribute {name}", el.local()),
    )
}

fn req_str<'a>(el: &'a Element, name: &str) -> Result<&'a str> {
    el.attr(name).ok_or_else(|| missing_attr(el, name))
}

fn get_str(el: Option<&Element>, name: &str) -> String {
    el.and_then(|e| e.attr(name)).unwrap_or("").to_string()
}

pub(crate) fn req_uuid(el: &Element, name: &str) -> Result<Uuid> {
    let s = req_str(el, name)?;
    Uuid::parse(s).ok_or_else(|| {
        Error::at(
            ErrorKind::Uuid,
            attr_pos(el, name),
            format!("invalid UUID \"{s}\" in {name} of <{}>", el.local()),
        )
    })
}

fn opt_uuid(el: &Element, name: &str) -> Result<Option<Uuid>> {
    match el.attr(name) {
        None => Ok(None),
        Some("") => Ok(None),
        Some(_) => req_uuid(el, name).map(Some),
    }
}

/// Pre-1.5 guest OS ids and their current names.
pub fn convert_old_os_type(id: &str) -> Option<&'static str> {
    const MAP: &[(&str, &str)] = &[
        ("unknown", "Other"),
        ("dos", "DOS"),
        ("win31", "Windows31"),
        ("win95", "Windows95"),
        ("win98", "Windows98"),
        ("winme", "WindowsMe"),
        ("winnt4", "WindowsNT4"),
        ("win2k", "Windows2000"),
        ("winxp", "WindowsXP"),
        ("win2k3", "Windows2003"),
        ("winvista", "WindowsVista"),
        ("win2k8", "Windows2008"),
        ("os2warp3", "OS2Warp3"),
        ("os2warp4", "OS2Warp4"),
        ("os2warp45", "OS2Warp45"),
        ("ecs", "OS2eCS"),
        ("linux22", "Linux22"),
        ("linux24", "Linux24"),
        ("linux26", "Linux26"),
        ("archlinux", "ArchLinux"),
        ("debian", "Debian"),
        ("opensuse", "OpenSUSE"),
        ("fedoracore", "Fedora"),
        ("gentoo", "Gentoo"),
        ("mandriva", "Mandriva"),
        ("redhat", "RedHat"),
        ("ubuntu", "Ubuntu"),
        ("xandros", "Xandros"),
        ("freebsd", "FreeBSD"),
        ("openbsd", "OpenBSD"),
        ("netbsd", "NetBSD"),
        ("netware", "Netware"),
        ("solaris", "Solaris"),
        ("opensolaris", "OpenSolaris"),
        ("l4", "L4"),
    ];
    MAP.iter().find(|(o, _)| *o == id).map(|(_, n)| *n)
}

/// Read the `Machine` element.
pub fn read_machine(m: &Element, v: SettingsVersion) -> Result<Machine> {
    let uuid = req_uuid(m, "uuid")?;
    let name = req_str(m, "name")?.to_string();
    let mut os_type = get_str(Some(m), "OSType");
    if v.minor < 5 {
        if let Some(n) = convert_old_os_type(&os_type) {
            os_type = n.to_string();
        }
    }
    if v.minor == 20 {
        if let Some(base) = os_type.strip_suffix("_x64") {
            os_type = format!("{base}_64");
        }
    }
    let description = m
        .child("Description")
        .map(|d| d.text())
        .or_else(|| m.attr("Description").map(str::to_string))
        .unwrap_or_default();
    let hw_el = m.child("Hardware").ok_or_else(|| {
        Error::at(
            ErrorKind::Missing,
            m.pos,
            "<Machine> lacks the required <Hardware> element",
        )
    })?;
    let _ = hw_el;
    let hardware = read_hardware(m, v)?;
    let media = match m.child("MediaRegistry") {
        Some(r) => read_media_registry(r)?,
        None => MediaRegistry::default(),
    };
    let extra_data = match m.child("ExtraData") {
        Some(x) => x
            .children_named("ExtraDataItem")
            .map(|i| {
                Ok((
                    req_str(i, "name")?.to_string(),
                    req_str(i, "value")?.to_string(),
                ))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let snapshot = match m.child("Snapshot") {
        Some(s) => Some(Box::new(read_snapshot(s, v, 1)?)),
        None => None,
    };
    let current_snapshot = opt_uuid(m, "currentSnapshot")?;
    // Every snapshot UUID must be unique, and currentSnapshot must name one.
    let mut mach = Machine {
        uuid,
        name,
        os_type,
        description,
        state_file: m.attr("stateFile").filter(|s| !s.is_empty()).map(slashes),
        current_snapshot,
        snapshot_folder: m
            .attr("snapshotFolder")
            .filter(|s| !s.is_empty())
            .map(slashes)
            .unwrap_or_else(|| "Snapshots".to_string()),
        last_state_change: m.attr("lastStateChange").map(str::to_string),
        current_state_modified: get_bool(Some(m), "currentStateModified", true),
        aborted: get_bool(Some(m), "aborted", false),
        groups: match m.child("Groups") {
            Some(g) => g
                .children_named("Group")
                .map(|e| get_str(Some(e), "name"))
                .collect(),
            None => vec!["/".to_string()],
        },
        hardware,
        media,
        extra_data,
        snapshot,
        teleporter: {
            let t = m.child("Teleporter");
            Teleporter {
                enabled: get_bool(t, "enabled", false),
                port: get_uint(t, &["port"], 0..=65535, 0)? as u32,
                address: get_str(t, "address"),
                password: get_str(t, "password"),
            }
        },
        autostart: {
            let a = m.child("Autostart");
            Autostart {
                enabled: get_bool(a, "enabled", false),
                delay: get_uint(a, &["delay"], 0..=u32::MAX as u64, 0)? as u32,
            }
        },
        default_frontend: layout::get(m, &["Hardware", "Frontend", "Default"])
            .map(|e| get_str(Some(e), "type"))
            .unwrap_or_default(),
    };
    check_snapshots(&mut mach, m)?;
    check_media_uuids(&mach.media, m)?;
    Ok(mach)
}

fn check_snapshots(mach: &mut Machine, m: &Element) -> Result<()> {
    let mut seen = HashSet::new();
    for s in mach.snapshots() {
        if !seen.insert(s.uuid) {
            return Err(Error::at(
                ErrorKind::Uuid,
                m.pos,
                format!("duplicate snapshot UUID {{{}}}", s.uuid),
            ));
        }
    }
    match (&mach.current_snapshot, &mach.snapshot) {
        (Some(cur), _) if !seen.contains(cur) => Err(Error::at(
            ErrorKind::Uuid,
            attr_pos(m, "currentSnapshot"),
            format!("currentSnapshot {{{cur}}} names no snapshot of this machine"),
        )),
        (None, Some(_)) => Err(Error::at(
            ErrorKind::Missing,
            m.pos,
            "<Machine> has snapshots but no currentSnapshot attribute",
        )),
        _ => Ok(()),
    }
}

fn check_media_uuids(reg: &MediaRegistry, m: &Element) -> Result<()> {
    let mut seen = HashSet::new();
    for med in reg.all() {
        if !seen.insert(med.uuid) {
            let _ = m;
            return Err(Error::at(
                ErrorKind::Uuid,
                med.pos.0,
                format!(
                    "duplicate medium UUID {{{}}} (also used by another medium in this registry)",
                    med.uuid
                ),
            ));
        }
    }
    Ok(())
}

fn read_snapshot(s: &Element, v: SettingsVersion, depth: usize) -> Result<Snapshot> {
    if depth > MAX_SNAPSHOT_DEPTH {
        return Err(Error::at(
            ErrorKind::Range,
            s.pos,
            format!("snapshot tree deeper than {MAX_SNAPSHOT_DEPTH} levels"),
        ));
    }
    if s.child("Hardware").is_none() {
        return Err(Error::at(
            ErrorKind::Missing,
            s.pos,
            "<Snapshot> lacks the required <Hardware> element",
        ));
    }
    let mut children = Vec::new();
    if let Some(list) = s.child("Snapshots") {
        for c in list.children_named("Snapshot") {
            children.push(read_snapshot(c, v, depth + 1)?);
        }
    }
    Ok(Snapshot {
        uuid: req_uuid(s, "uuid")?,
        name: req_str(s, "name")?.to_string(),
        timestamp: req_str(s, "timeStamp")?.to_string(),
        state_file: s.attr("stateFile").filter(|x| !x.is_empty()).map(slashes),
        description: s
            .child("Description")
            .map(|d| d.text())
            .or_else(|| s.attr("Description").map(str::to_string))
            .unwrap_or_default(),
        hardware: read_hardware(s, v)?,
        children,
    })
}

/// Read a media registry (`MediaRegistry` element).
pub fn read_media_registry(r: &Element) -> Result<MediaRegistry> {
    let mut reg = MediaRegistry::default();
    if let Some(hd) = r.child("HardDisks") {
        for d in hd.children_named("HardDisk") {
            reg.hard_disks.push(read_medium(d, true, 1, None)?);
        }
    }
    if let Some(l) = r.child("DVDImages") {
        for d in l.children_named("Image") {
            reg.dvd_images
                .push(read_medium(d, false, 1, Some(MediumType::Readonly))?);
        }
    }
    if let Some(l) = r.child("FloppyImages") {
        for d in l.children_named("Image") {
            reg.floppy_images
                .push(read_medium(d, false, 1, Some(MediumType::Writethrough))?);
        }
    }
    Ok(reg)
}

fn read_medium(
    d: &Element,
    disk: bool,
    depth: usize,
    implied: Option<MediumType>,
) -> Result<Medium> {
    if depth > MAX_MEDIUM_DEPTH {
        return Err(Error::at(
            ErrorKind::Range,
            d.pos,
            format!("medium tree deeper than {MAX_MEDIUM_DEPTH} levels"),
        ));
    }
    let location = d
        .attr("location")
        .or_else(|| d.attr("src"))
        .ok_or_else(|| missing_attr(d, "location"))?;
    let kind = match implied {
        Some(k) => get_enum(Some(d), &["type"], k)?,
        None => get_enum(Some(d), &["type"], MediumType::Normal)?,
    };
    let mut children = Vec::new();
    if disk {
        for c in d.children_named("HardDisk") {
            children.push(read_medium(c, true, depth + 1, Some(kind))?);
        }
    }
    let format = d.attr("format").map(str::to_string).unwrap_or_else(|| {
        if disk {
            String::new()
        } else {
            "RAW".to_string()
        }
    });
    if disk && format.is_empty() {
        return Err(missing_attr(d, "format"));
    }
    Ok(Medium {
        uuid: req_uuid(d, "uuid")?,
        location: slashes(location),
        format,
        kind,
        auto_reset: get_bool(Some(d), "autoReset", false),
        description: d
            .child("Description")
            .map(|x| x.text())
            .or_else(|| d.attr("Description").map(str::to_string))
            .unwrap_or_default(),
        children,
        pos: SrcPos(d.pos),
    })
}

/// Read the hardware of a `Machine` or `Snapshot` element.
pub fn read_hardware(owner: &Element, v: SettingsVersion) -> Result<Hardware> {
    let hw = owner.child("Hardware");
    let g = |p: &[&str]| layout::get(owner, p);
    let cpu_el = g(layout::cpu(v));
    let x86 = g(layout::cpu_x86(v));
    let flag =
        |name: &str, default: bool| get_bool(x86.and_then(|c| c.child(name)), "enabled", default);
    let count = if v.minor < 5 {
        match cpu_el.and_then(|c| c.child("CPUCount")) {
            Some(c) => get_uint(Some(c), &["count"], 1..=64, 1)?,
            None => get_uint(cpu_el, &["count"], 1..=64, 1)?,
        }
    } else {
        get_uint(cpu_el, &["count"], 1..=64, 1)?
    };
    let mut cpuid_leaves = Vec::new();
    if let Some(tree) = x86.and_then(|c| c.child("CpuIdTree")) {
        for l in tree.children_named("CpuIdLeaf") {
            let n = |a: &str| get_uint(Some(l), &[a], 0..=u32::MAX as u64, 0).map(|x| x as u32);
            cpuid_leaves.push([
                req_uint(l, "id", 0..=u32::MAX as u64)? as u32,
                n("subleaf")?,
                n("eax")?,
                n("ebx")?,
                n("ecx")?,
                n("edx")?,
            ]);
        }
    }
    let synthetic = get_bool(x86.and_then(|c| c.child("SyntheticCpu")), "enabled", false);
    let cpu = Cpu {
        count: count as u32,
        hotplug: get_bool(cpu_el, "hotplug", false),
        execution_cap: get_uint(cpu_el, &["executionCap"], 1..=100, 100)? as u32,
        cpuid_portability: get_uint(
            cpu_el,
            &["CpuIdPortabilityLevel"],
            0..=u32::MAX as u64,
            u64::from(synthetic),
        )? as u32,
        profile: cpu_el
            .and_then(|c| c.attr("CpuProfile"))
            .unwrap_or("host")
            .to_string(),
        hw_virt: flag("HardwareVirtEx", true),
        nested_paging: flag("HardwareVirtExNestedPaging", true),
        vpid: flag("HardwareVirtExVPID", true),
        ux: flag("HardwareVirtExUX", true),
        // Linux hosts: large pages default off (see the fact sheet §7.1).
        large_pages: flag("HardwareVirtExLargePages", false),
        hw_virt_force: flag("HardwareVirtForce", false),
        pae: flag("PAE", v.minor >= 9),
        long_mode: x86
            .and_then(|c| c.child("LongMode"))
            .and_then(|e| e.attr("enabled"))
            .and_then(parse_bool),
        triple_fault_reset: flag("TripleFaultReset", false),
        apic: flag("APIC", true),
        x2apic: flag("X2APIC", false),
        nested_hw_virt: flag("NestedHWVirt", false),
        virt_vmsave_vmload: flag("HardwareVirtExVirtVmsaveVmload", true),
        cpuid_leaves,
    };

    let mem = hw.and_then(|h| h.child("Memory"));
    let memory_mb = match mem {
        Some(m) => req_uint(m, "RAMSize", 4..=2_097_152)?,
        None => {
            return Err(Error::at(
                ErrorKind::Missing,
                hw.map(|h| h.pos).unwrap_or(owner.pos),
                "<Hardware> lacks the required <Memory RAMSize=...> element",
            ))
        }
    };

    let fw_el = hw.and_then(|h| h.child("Firmware"));
    let bios = g(layout::bios(v));
    let bc = |name: &str| bios.and_then(|b| b.child(name));
    let logo = bc("Logo");
    let firmware = Firmware {
        kind: get_enum(fw_el, &["type"], FirmwareType::Bios)?,
        acpi: get_bool(bc("ACPI"), "enabled", true),
        ioapic: get_bool(bc("IOAPIC"), "enabled", false),
        apic_mode: get_enum(bc("APIC"), &["mode"], ApicMode::Apic)?,
        boot_menu: get_enum(bc("BootMenu"), &["mode"], BootMenuMode::MessageAndMenu)?,
        logo_fade_in: get_bool(logo, "fadeIn", true),
        logo_fade_out: get_bool(logo, "fadeOut", true),
        logo_display_time: get_uint(logo, &["displayTime"], 0..=u32::MAX as u64, 0)? as u32,
        time_offset_ms: bc("TimeOffset")
            .and_then(|t| t.attr("value"))
            .and_then(parse_i64)
            .unwrap_or(0),
        pxe_debug: get_bool(bc("PXEDebug"), "enabled", false),
        nvram_path: bc("NVRAM")
            .and_then(|n| n.attr("path"))
            .filter(|p| !p.is_empty())
            .map(slashes),
        smbios_uuid_le: get_bool(bc("SmbiosUuidLittleEndian"), "enabled", false),
    };

    let hid = hw.and_then(|h| h.child("HID"));
    let plat = g(layout::platform(v));
    let pc = |n: &str| plat.and_then(|p| p.child(n));
    let paravirt_el = hw.and_then(|h| h.child("Paravirt"));

    let boot_order = match hw.and_then(|h| h.child("Boot")) {
        None => [
            BootDevice::Floppy,
            BootDevice::Dvd,
            BootDevice::HardDisk,
            BootDevice::None,
        ],
        Some(b) => {
            let mut order = [BootDevice::None; 4];
            let mut seen = [false; 4];
            for o in b.children_named("Order") {
                let pos = req_uint(o, "position", 1..=4)? as usize;
                if seen[pos - 1] {
                    return Err(Error::at(
                        ErrorKind::Invalid,
                        o.pos,
                        format!("boot position {pos} is listed twice"),
                    ));
                }
                seen[pos - 1] = true;
                order[pos - 1] = req_enum(o, "device")?;
            }
            order
        }
    };

    let disp = hw.and_then(|h| h.child("Display"));
    let display = Display {
        controller: get_enum(disp, &["controller"], GraphicsController::VBoxVga)?,
        vram_mb: get_uint(disp, &["VRAMSize"], 0..=1024, 8)? as u32,
        monitors: get_uint(disp, &["monitorCount", "MonitorCount"], 1..=64, 1)? as u32,
        accelerate_3d: disp
            .and_then(|d| d.attr("accelerate3D").or_else(|| d.attr("Accelerate3D")))
            .and_then(parse_bool)
            .unwrap_or(false),
        accelerate_2d: get_bool(disp, "accelerate2DVideo", false),
    };

    let rd = hw.and_then(|h| h.child("RemoteDisplay"));
    let mut vrde_props = Vec::new();
    if let Some(r) = rd {
        if let Some(p) = r.attr("port") {
            vrde_props.push(("TCP/Ports".to_string(), p.to_string()));
        }
        if let Some(a) = r.attr("netAddress") {
            vrde_props.push(("TCP/Address".to_string(), a.to_string()));
        }
        if let Some(vp) = r.child("VRDEProperties") {
            for p in vp.children_named("Property") {
                vrde_props.push((get_str(Some(p), "name"), get_str(Some(p), "value")));
            }
        }
    }
    let vrde = Vrde {
        enabled: get_bool(rd, "enabled", v.minor < 16),
        auth_type: get_enum(rd, &["authType"], AuthType::Null)?,
        auth_timeout: get_uint(rd, &["authTimeout"], 0..=u32::MAX as u64, 5000)? as u32,
        multi_connection: get_bool(rd, "allowMultiConnection", false),
        reuse_single_connection: get_bool(rd, "reuseSingleConnection", false),
        properties: vrde_props,
    };

    let mut usb_controllers = Vec::new();
    let mut usb_filters = 0;
    if let Some(u) = hw.and_then(|h| h.child("USB")) {
        if let Some(c) = u.child("Controllers") {
            for e in c.children_named("Controller") {
                usb_controllers.push(UsbController {
                    name: req_str(e, "name")?.to_string(),
                    kind: req_enum(e, "type")?,
                });
            }
        }
        usb_filters += u
            .child("DeviceFilters")
            .map_or(0, |f| f.children_named("DeviceFilter").count());
    }
    if let Some(u) = hw.and_then(|h| h.child("USBController")) {
        if get_bool(Some(u), "enabled", false) {
            usb_controllers.push(UsbController {
                name: "OHCI".into(),
                kind: UsbControllerType::Ohci,
            });
        }
        if get_bool(Some(u), "enabledEhci", false) {
            usb_controllers.push(UsbController {
                name: "EHCI".into(),
                kind: UsbControllerType::Ehci,
            });
        }
        usb_filters += u.children_named("DeviceFilter").count();
    }

    let network = read_network(hw, v)?;
    let serial = read_serial(hw)?;
    let parallel = read_parallel(hw)?;

    let au = hw.and_then(|h| h.child("AudioAdapter"));
    let controller = get_enum(au, &["controller"], AudioController::Ac97)?;
    let default_codec = match controller {
        AudioController::Sb16 => AudioCodec::Sb16,
        AudioController::Hda => AudioCodec::Stac9221,
        _ => AudioCodec::Stac9700,
    };
    let driver = match au.and_then(|a| a.attr("driver")) {
        // Unknown or unavailable drivers mean the host default (§7.12).
        Some(d) => AudioDriver::from_xml(d).unwrap_or(AudioDriver::Default),
        None => AudioDriver::Null,
    };
    let audio = AudioAdapter {
        enabled: get_bool(au, "enabled", v.minor < 16),
        controller,
        codec: get_enum(au, &["codec"], default_codec)?,
        driver: if get_bool(au, "useDefault", false) {
            AudioDriver::Default
        } else {
            driver
        },
        enabled_in: get_bool(au, "enabledIn", v.minor <= 16),
        enabled_out: get_bool(au, "enabledOut", v.minor <= 16),
    };

    let mut shared_folders: Vec<SharedFolder> = Vec::new();
    if let Some(h) = hw {
        for list in h.children_named("SharedFolders") {
            for f in list.children_named("SharedFolder") {
                let sf = SharedFolder {
                    name: req_str(f, "name")?.to_string(),
                    host_path: req_str(f, "hostPath")?.to_string(),
                    writable: get_bool(Some(f), "writable", false),
                    auto_mount: get_bool(Some(f), "autoMount", false),
                    auto_mount_point: get_str(Some(f), "autoMountPoint"),
                    symlink_policy: get_str(Some(f), "symlinkPolicy"),
                };
                if shared_folders.iter().any(|x| x.name == sf.name) {
                    return Err(Error::at(
                        ErrorKind::Invalid,
                        f.pos,
                        format!("shared folder \"{}\" is defined twice", sf.name),
                    ));
                }
                shared_folders.push(sf);
            }
        }
    }

    let clip = hw.and_then(|h| h.child("Clipboard"));
    let clipboard = match clip {
        Some(c) => get_enum(Some(c), &["mode"], ClipboardMode::Disabled)?,
        None => get_enum(hw, &["clipboardMode"], ClipboardMode::Disabled)?,
    };

    let mut guest_properties = Vec::new();
    if let Some(gp) = hw.and_then(|h| h.child("GuestProperties")) {
        for p in gp.children_named("GuestProperty") {
            guest_properties.push(GuestProperty {
                name: req_str(p, "name")?.to_string(),
                value: get_str(Some(p), "value"),
                timestamp: get_uint(Some(p), &["timestamp"], 0..=u64::MAX, 0)?,
                flags: get_str(Some(p), "flags"),
            });
        }
    }

    let io = hw.and_then(|h| h.child("IO"));
    let ioc = io.and_then(|i| i.child("IoCache"));
    let mut bandwidth_groups = Vec::new();
    if let Some(bg) = io.and_then(|i| i.child("BandwidthGroups")) {
        for b in bg.children_named("BandwidthGroup") {
            let bytes = match b.attr("maxBytesPerSec") {
                Some(_) => get_uint(Some(b), &["maxBytesPerSec"], 0..=u64::MAX, 0)?,
                None => get_uint(Some(b), &["maxMbPerSec"], 0..=u64::MAX >> 20, 0)? << 20,
            };
            bandwidth_groups.push(BandwidthGroup {
                name: req_str(b, "name")?.to_string(),
                kind: req_str(b, "type")?.to_string(),
                max_bytes_per_sec: bytes,
            });
        }
    }

    let storage = read_storage(owner, v)?;

    Ok(Hardware {
        hardware_uuid: match hw {
            Some(h) => opt_uuid(h, "uuid")?,
            None => None,
        },
        cpu,
        memory_mb,
        page_fusion: get_bool(mem, "PageFusion", false),
        firmware,
        pointing: get_enum(hid, &["Pointing"], PointingHid::Ps2Mouse)?,
        keyboard: get_enum(hid, &["Keyboard"], KeyboardHid::Ps2Keyboard)?,
        chipset: get_enum(pc("Chipset"), &["type"], ChipsetType::Piix3)?,
        iommu: get_enum(pc("Iommu"), &["type"], IommuType::None)?,
        hpet: get_bool(
            g(layout::hpet_parent(v)).and_then(|p| p.child("HPET")),
            "enabled",
            false,
        ),
        paravirt: get_enum(
            paravirt_el,
            &["provider"],
            if v.minor >= 16 {
                ParavirtProvider::Default
            } else {
                ParavirtProvider::Legacy
            },
        )?,
        paravirt_debug: get_str(paravirt_el, "debug"),
        boot_order,
        display,
        vrde,
        usb_controllers,
        network,
        serial,
        parallel,
        audio,
        rtc_utc: pc("RTC").and_then(|r| r.attr("localOrUTC")) == Some("UTC"),
        shared_folders,
        clipboard,
        clipboard_file_transfers: get_bool(clip, "fileTransfersEnabled", false),
        dnd: get_enum(
            hw.and_then(|h| h.child("DragAndDrop")),
            &["mode"],
            DndMode::Disabled,
        )?,
        balloon_mb: get_uint(
            hw.and_then(|h| h.child("Guest")),
            &["memoryBalloonSize", "MemoryBalloonSize"],
            0..=2_097_152,
            0,
        )?,
        guest_properties,
        io_cache: get_bool(ioc, "enabled", true),
        io_cache_mb: get_uint(ioc, &["size"], 0..=u32::MAX as u64, 5)?,
        bandwidth_groups,
        tpm: get_enum(
            hw.and_then(|h| h.child("TrustedPlatformModule")),
            &["type"],
            TpmType::None,
        )?,
        storage,
        host_pci_devices: layout::get(owner, &["Hardware", "HostPci", "Devices"])
            .map_or(0, |d| d.children_named("Device").count()),
        usb_card_reader: get_bool(
            layout::get(owner, &["Hardware", "EmulatedUSB", "CardReader"]),
            "enabled",
            false,
        ),
        usb_filters,
        recording: get_bool(hw.and_then(|h| h.child("VideoCapture")), "enabled", false)
            || get_bool(owner.child("Recording"), "enabled", false),
    })
}

fn read_network(hw: Option<&Element>, v: SettingsVersion) -> Result<Vec<NetworkAdapter>> {
    let mut out: Vec<NetworkAdapter> = Vec::new();
    let Some(net) = hw.and_then(|h| h.child("Network")) else {
        return Ok(out);
    };
    for a in net.children_named("Adapter") {
        let slot = req_uint(a, "slot", 0..=35)? as u32;
        if out.iter().any(|x| x.slot == slot) {
            return Err(Error::at(
                ErrorKind::Invalid,
                a.pos,
                format!("network adapter slot {slot} is defined twice"),
            ));
        }
        let def = NetworkAdapter::default_for(slot, v);
        let mut attachment = NetAttachment::Null;
        let mut nat_network = String::new();
        let mut nat_rules = Vec::new();
        // The active attachment is the first child that is not DisabledModes.
        for c in a.elements() {
            let name = get_str(Some(c), "name");
            attachment = match c.local() {
                "NAT" => {
                    nat_network = get_str(Some(c), "network");
                    for f in c.children_named("Forwarding") {
                        nat_rules.push(NatRule {
                            name: get_str(Some(f), "name"),
                            tcp: get_uint(Some(f), &["proto"], 0..=1, 1)? == 1,
                            host_ip: get_str(Some(f), "hostip"),
                            host_port: get_uint(Some(f), &["hostport"], 0..=65535, 0)? as u16,
                            guest_ip: get_str(Some(f), "guestip"),
                            guest_port: get_uint(Some(f), &["guestport"], 0..=65535, 0)? as u16,
                        });
                    }
                    NetAttachment::Nat
                }
                "BridgedInterface" | "HostInterface" => NetAttachment::Bridged(name),
                "InternalNetwork" => NetAttachment::Internal(if c.attr("name").is_some() {
                    name
                } else {
                    "intnet".into()
                }),
                "HostOnlyInterface" => NetAttachment::HostOnly(name),
                "HostOnlyNetwork" => NetAttachment::HostOnlyNetwork(name),
                "NATNetwork" => NetAttachment::NatNetwork(if c.attr("name").is_some() {
                    name
                } else {
                    "NatNetwork".into()
                }),
                "GenericInterface" => NetAttachment::Generic(get_str(Some(c), "driver")),
                "VDE" => NetAttachment::Generic("VDE".into()),
                "CloudNetwork" => NetAttachment::Cloud(name),
                _ => continue,
            };
            break;
        }
        out.push(NetworkAdapter {
            slot,
            enabled: get_bool(Some(a), "enabled", false),
            kind: get_enum(Some(a), &["type"], def.kind)?,
            mac: get_str(Some(a), "MACAddress"),
            cable: get_bool(Some(a), "cable", def.cable),
            speed: get_uint(Some(a), &["speed"], 0..=u32::MAX as u64, 0)? as u32,
            promisc: get_enum(Some(a), &["promiscuousModePolicy"], PromiscPolicy::Deny)?,
            boot_priority: get_uint(Some(a), &["bootPriority"], 0..=4, 0)? as u32,
            trace: get_bool(Some(a), "trace", false),
            trace_file: get_str(Some(a), "tracefile"),
            bandwidth_group: get_str(Some(a), "bandwidthGroup"),
            attachment,
            nat_network,
            nat_rules,
        });
    }
    // Slots are identities, file order is not significant.
    out.sort_by_key(|a| a.slot);
    Ok(out)
}

fn ports_el(hw: Option<&Element>, names: &[&str]) -> Option<Element> {
    hw.and_then(|h| names.iter().find_map(|n| h.child(n)).cloned())
}

fn read_serial(hw: Option<&Element>) -> Result<Vec<SerialPort>> {
    let mut out: Vec<SerialPort> = Vec::new();
    let Some(u) = ports_el(hw, &["UART", "Uart"]) else {
        return Ok(out);
    };
    for p in u.children_named("Port") {
        let slot = req_uint(p, "slot", 0..=3)? as u32;
        if out.iter().any(|x| x.slot == slot) {
            return Err(Error::at(
                ErrorKind::Invalid,
                p.pos,
                format!("serial port slot {slot} is defined twice"),
            ));
        }
        let def = SerialPort::default_for(slot);
        out.push(SerialPort {
            slot,
            enabled: get_bool(Some(p), "enabled", false),
            io_base: get_uint(
                Some(p),
                &["IOAddress", "IOBase"],
                0..=0xffff,
                def.io_base as u64,
            )? as u16,
            irq: get_uint(Some(p), &["IRQ"], 0..=255, def.irq as u64)? as u8,
            mode: get_enum(Some(p), &["hostMode"], PortMode::Disconnected)?,
            path: get_str(Some(p), "path"),
            server: get_bool(Some(p), "server", false),
            uart_type: get_enum(Some(p), &["uartType"], UartType::U16550A)?,
        });
    }
    out.sort_by_key(|p| p.slot);
    Ok(out)
}

fn read_parallel(hw: Option<&Element>) -> Result<Vec<ParallelPort>> {
    let mut out: Vec<ParallelPort> = Vec::new();
    let Some(l) = ports_el(hw, &["LPT", "Lpt"]) else {
        return Ok(out);
    };
    for p in l.children_named("Port") {
        let slot = req_uint(p, "slot", 0..=1)? as u32;
        if out.iter().any(|x| x.slot == slot) {
            return Err(Error::at(
                ErrorKind::Invalid,
                p.pos,
                format!("parallel port slot {slot} is defined twice"),
            ));
        }
        out.push(ParallelPort {
            slot,
            enabled: get_bool(Some(p), "enabled", false),
            io_base: get_uint(Some(p), &["IOBase"], 0..=0xffff, 0x378)? as u16,
            irq: get_uint(Some(p), &["IRQ"], 0..=255, 7)? as u8,
            path: get_str(Some(p), "path"),
        });
    }
    out.sort_by_key(|p| p.slot);
    Ok(out)
}

fn read_storage(owner: &Element, v: SettingsVersion) -> Result<Vec<StorageController>> {
    let mut out: Vec<StorageController> = Vec::new();
    let sc = layout::get(owner, layout::storage(owner, v));
    if let Some(sc) = sc {
        for c in sc.children_named("StorageController") {
            let mut name = req_str(c, "name")?.to_string();
            if v.minor < 9 {
                // Renamed on load by VirtualBox (§3.2, 1.9).
                name = match name.as_str() {
                    "IDE" => "IDE Controller".into(),
                    "SATA" => "SATA Controller".into(),
                    "SCSI" => "SCSI Controller".into(),
                    _ => name,
                };
            }
            if out.iter().any(|x| x.name == name) {
                return Err(Error::at(
                    ErrorKind::Invalid,
                    c.pos,
                    format!("storage controller \"{name}\" is defined twice"),
                ));
            }
            let kind: StorageControllerType = req_enum(c, "type")?;
            let port_count = get_uint(
                Some(c),
                &["PortCount"],
                1..=kind.max_ports() as u64,
                2.min(kind.max_ports() as u64),
            )? as u32;
            let mut devices: Vec<AttachedDevice> = Vec::new();
            for d in c.children_named("AttachedDevice") {
                let Some(dt) = d.attr("type") else {
                    return Err(missing_attr(d, "type"));
                };
                let Some(kind_d) = DeviceType::from_xml(dt) else {
                    // VirtualBox skips attachments of types it does not know.
                    continue;
                };
                let port = req_uint(d, "port", 0..=kind.max_ports() as u64 - 1)? as u32;
                let device = req_uint(d, "device", 0..=kind.devices_per_port() as u64 - 1)? as u32;
                if devices.iter().any(|x| x.port == port && x.device == device) {
                    return Err(Error::at(
                        ErrorKind::Invalid,
                        d.pos,
                        format!("port {port} device {device} of \"{name}\" is used twice"),
                    ));
                }
                let image = d.child("Image");
                let medium = match image {
                    Some(i) => Some(req_uuid(i, "uuid")?),
                    None => None,
                };
                if kind_d == DeviceType::HardDisk && medium.is_none() {
                    return Err(Error::at(
                        ErrorKind::Missing,
                        d.pos,
                        "hard disk attachment without an <Image uuid=...>",
                    ));
                }
                devices.push(AttachedDevice {
                    kind: kind_d,
                    port,
                    device,
                    medium,
                    host_drive: d.child("HostDrive").map(|h| get_str(Some(h), "src")),
                    passthrough: get_bool(Some(d), "passthrough", false),
                    temp_eject: get_bool(Some(d), "tempeject", false),
                    non_rotational: get_bool(Some(d), "nonrotational", false),
                    discard: get_bool(Some(d), "discard", false),
                    hotpluggable: get_bool(
                        Some(d),
                        "hotpluggable",
                        v.minor < 15 && kind == StorageControllerType::Ahci,
                    ),
                    bandwidth_group: get_str(Some(d), "bandwidthGroup"),
                    pos: SrcPos(d.pos),
                });
            }
            out.push(StorageController {
                name,
                kind,
                port_count,
                instance: get_uint(Some(c), &["Instance"], 0..=u32::MAX as u64, 0)? as u32,
                use_host_io_cache: get_bool(Some(c), "useHostIOCache", true),
                bootable: get_bool(Some(c), "Bootable", true),
                devices,
            });
        }
    }
    if v.minor < 9 {
        read_legacy_storage(owner, v, &mut out)?;
    }
    Ok(out)
}

/// Pre-1.7 `HardDiskAttachments`/`SATAController`/`BIOS/IDEController` and
/// pre-1.9 `DVDDrive`/`FloppyDrive`, converted as VirtualBox converts them.
fn read_legacy_storage(
    owner: &Element,
    v: SettingsVersion,
    out: &mut Vec<StorageController>,
) -> Result<()> {
    let hw = owner.child("Hardware");
    let legacy_dev = |kind, port, device, medium, host_drive, pos| AttachedDevice {
        kind,
        port,
        device,
        medium,
        host_drive,
        passthrough: false,
        temp_eject: false,
        non_rotational: false,
        discard: false,
        hotpluggable: false,
        bandwidth_group: String::new(),
        pos: SrcPos(pos),
    };
    if v.minor < 7 {
        let ide_type = match layout::get(owner, &["Hardware", "BIOS", "IDEController"]) {
            Some(e) => get_enum(Some(e), &["type"], StorageControllerType::Piix3)?,
            None => StorageControllerType::Piix3,
        };
        out.push(StorageController {
            name: "IDE Controller".into(),
            kind: ide_type,
            port_count: 2,
            instance: 0,
            use_host_io_cache: true,
            bootable: true,
            devices: Vec::new(),
        });
        if let Some(s) = hw.and_then(|h| h.child("SATAController")) {
            if get_bool(Some(s), "enabled", false) {
                out.push(StorageController {
                    name: "SATA Controller".into(),
                    kind: StorageControllerType::Ahci,
                    port_count: get_uint(Some(s), &["PortCount"], 1..=30, 2)? as u32,
                    instance: 0,
                    use_host_io_cache: get_bool(Some(s), "useHostIOCache", true),
                    bootable: true,
                    devices: Vec::new(),
                });
            }
        }
        if let Some(list) = owner.child("HardDiskAttachments") {
            for a in list.children_named("HardDiskAttachment") {
                let bus = get_str(Some(a), "bus");
                let ctl = if bus == "SATA" {
                    "SATA Controller"
                } else {
                    "IDE Controller"
                };
                let uuid = req_uuid(a, "hardDisk")?;
                let port = get_uint(Some(a), &["channel"], 0..=29, 0)? as u32;
                let device = get_uint(Some(a), &["device"], 0..=1, 0)? as u32;
                match out.iter_mut().find(|c| c.name == ctl) {
                    Some(c) => c.devices.push(legacy_dev(
                        DeviceType::HardDisk,
                        port,
                        device,
                        Some(uuid),
                        None,
                        a.pos,
                    )),
                    None => {
                        return Err(Error::at(
                            ErrorKind::Invalid,
                            a.pos,
                            format!(
                            "hard disk attached to bus \"{bus}\" whose controller is not enabled"
                        ),
                        ))
                    }
                }
            }
        }
    }
    if let Some(d) = hw.and_then(|h| h.child("DVDDrive")) {
        let medium = match d.child("Image") {
            Some(i) => Some(req_uuid(i, "uuid")?),
            None => None,
        };
        let host = d.child("HostDrive").map(|h| get_str(Some(h), "src"));
        let mut dev = legacy_dev(DeviceType::Dvd, 1, 0, medium, host, d.pos);
        dev.passthrough = get_bool(Some(d), "passthrough", false);
        dev.temp_eject = get_bool(Some(d), "tempeject", false);
        if let Some(ide) = out.iter_mut().find(|c| c.kind.bus() == StorageBus::Ide) {
            ide.devices.retain(|x| !(x.port == 1 && x.device == 0));
            ide.devices.push(dev);
        }
    }
    if let Some(f) = hw.and_then(|h| h.child("FloppyDrive")) {
        if get_bool(Some(f), "enabled", false) {
            let medium = match f.child("Image") {
                Some(i) => Some(req_uuid(i, "uuid")?),
                None => None,
            };
            let host = f.child("HostDrive").map(|h| get_str(Some(h), "src"));
            out.push(StorageController {
                name: "Floppy Controller".into(),
                kind: StorageControllerType::I82078,
                port_count: 1,
                instance: 0,
                use_host_io_cache: true,
                bootable: true,
                devices: vec![legacy_dev(DeviceType::Floppy, 0, 0, medium, host, f.pos)],
            });
        }
    }
    Ok(())
}
