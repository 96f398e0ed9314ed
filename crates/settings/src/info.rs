//! `showvminfo`: the machine printed the way `VBoxManage showvminfo` prints
//! it (human form with 28-column labels, `--machinereadable` key="value"
//! lines with VBoxManage's keys and quoting), and the same data as JSON.
//!
//! novabox additions, each on its own line/key so VBoxManage parsers are
//! not disturbed: the differencing chain of an attachment (`Chain:` /
//! `"<ctl>-ParentChain-<p>-<d>"`) and persistent guest properties
//! (`Guest properties:` / `GuestProperty<N>=`).

use std::path::Path;

use crate::document::MachineFile;
use crate::enums::*;
use crate::model::*;
use crate::resolve::{resolve, RegistryRef};

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoFormat {
    /// Human-readable.
    Human,
    /// `--machinereadable`.
    MachineReadable,
    /// `--json` (the machine-readable keys as one JSON object).
    Json,
}

/// Everything showvminfo needs besides the file.
#[derive(Debug, Clone)]
pub struct InfoContext<'a> {
    /// The machine.
    pub file: &'a MachineFile,
    /// Extra media registries to search after the machine's own (global…).
    pub registries: Vec<RegistryRef<'a>>,
    /// Whether novabox is running the machine now.
    pub running: bool,
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(i64),
}

struct Out {
    mr: bool,
    text: String,
    kv: Vec<(String, Val, bool)>,
}

fn esc_mr(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Out {
    fn human(&mut self, line: &str) {
        if !self.mr {
            self.text.push_str(line);
            self.text.push('\n');
        }
    }
    fn kv(&mut self, key: &str, v: Val, quote_name: bool) {
        if self.mr {
            self.kv.push((key.to_string(), v, quote_name));
        }
    }
    fn s(&mut self, key: &str, label: &str, value: &str) {
        self.kv(key, Val::Str(value.to_string()), false);
        self.human(&format!("{label:<28} {value}"));
    }
    fn s2(&mut self, key: &str, mr_value: &str, label: &str, human_value: &str) {
        self.kv(key, Val::Str(mr_value.to_string()), false);
        self.human(&format!("{label:<28} {human_value}"));
    }
    fn b(&mut self, key: &str, label: &str, v: bool) {
        self.s2(
            key,
            on_off(v),
            label,
            if v { "enabled" } else { "disabled" },
        );
    }
    fn n(&mut self, key: &str, label: &str, v: i64, unit: &str) {
        self.kv(key, Val::Num(v), false);
        self.human(&format!("{label:<28} {v}{unit}"));
    }
    fn render_mr(&self) -> String {
        let mut o = String::new();
        for (k, v, q) in &self.kv {
            let quote = *q || k.contains('=');
            let key = if quote {
                format!("\"{}\"", esc_mr(k))
            } else {
                esc_mr(k)
            };
            match v {
                Val::Num(n) => o.push_str(&format!("{key}={n}\n")),
                Val::Str(s) => o.push_str(&format!("{key}=\"{}\"\n", esc_mr(s))),
            }
        }
        o
    }
    fn render_json(&self) -> String {
        let mut o = String::from("{\n");
        for (i, (k, v, _)) in self.kv.iter().enumerate() {
            let val = match v {
                Val::Num(n) => n.to_string(),
                Val::Str(s) => json_str(s),
            };
            o.push_str(&format!("  {}: {}", json_str(k), val));
            o.push_str(if i + 1 < self.kv.len() { ",\n" } else { "\n" });
        }
        o.push_str("}\n");
        o
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The guest OS family, enough for the effective paravirt provider.
fn os_family(os: &str) -> &'static str {
    let l = os.to_ascii_lowercase();
    if l.starts_with("win") {
        "windows"
    } else if l.starts_with("macos") {
        "macos"
    } else if [
        "linux",
        "arch",
        "debian",
        "fedora",
        "gentoo",
        "mandriva",
        "opensuse",
        "redhat",
        "turbolinux",
        "ubuntu",
        "xandros",
        "oracle",
        "rhel",
        "centos",
        "mint",
        "kali",
    ]
    .iter()
    .any(|p| l.starts_with(p))
    {
        if l.starts_with("linux22") || l.starts_with("linux24") {
            "oldlinux"
        } else {
            "linux"
        }
    } else {
        "other"
    }
}

/// The provider VirtualBox actually uses for `Default`/`Legacy`.
pub fn effective_paravirt(p: ParavirtProvider, os_type: &str) -> ParavirtProvider {
    let fam = os_family(os_type);
    match p {
        ParavirtProvider::Default => match fam {
            "macos" => ParavirtProvider::Minimal,
            "windows" => ParavirtProvider::HyperV,
            "linux" => ParavirtProvider::Kvm,
            _ => ParavirtProvider::None,
        },
        ParavirtProvider::Legacy => {
            if fam == "macos" {
                ParavirtProvider::Minimal
            } else {
                ParavirtProvider::None
            }
        }
        other => other,
    }
}

fn paravirt_names(p: ParavirtProvider) -> (&'static str, &'static str) {
    match p {
        ParavirtProvider::None => ("none", "None"),
        ParavirtProvider::Default => ("default", "Default"),
        ParavirtProvider::Legacy => ("legacy", "Legacy"),
        ParavirtProvider::Minimal => ("minimal", "Minimal"),
        ParavirtProvider::HyperV => ("hyperv", "HyperV"),
        ParavirtProvider::Kvm => ("kvm", "KVM"),
    }
}

/// The machine state as VBoxManage names it (short, long).
pub fn machine_state(m: &Machine, running: bool) -> (&'static str, &'static str) {
    if running {
        ("running", "running")
    } else if m.aborted && m.state_file.is_some() {
        ("aborted-saved", "aborted-saved")
    } else if m.aborted {
        ("aborted", "aborted")
    } else if m.state_file.is_some() {
        ("saved", "saved")
    } else {
        ("poweroff", "powered off")
    }
}

fn state_time(m: &Machine) -> String {
    match &m.last_state_change {
        Some(t) if t.len() >= 20 && t.as_bytes()[19] == b'Z' => format!("{}.000000000Z", &t[..19]),
        _ => "1970-01-01T00:00:00.000000000Z".to_string(),
    }
}

fn abs(folder: &Path, p: &str) -> String {
    crate::resolve::resolve_location(p, folder)
        .to_string_lossy()
        .into_owned()
}

/// Render showvminfo.
pub fn showvminfo(ctx: &InfoContext, fmt: InfoFormat) -> String {
    let mut o = Out {
        mr: fmt != InfoFormat::Human,
        text: String::new(),
        kv: Vec::new(),
    };
    let f = ctx.file;
    let m = &f.machine;
    let hw = &m.hardware;
    let v = f.settings_version();
    let folder = f.machine_folder();
    let mut regs = vec![RegistryRef {
        registry: &m.media,
        base: &folder,
        label: "machine",
    }];
    regs.extend(ctx.registries.iter().copied());

    o.s("name", "Name:", &m.name);
    o.s("encryption", "Encryption:", "disabled");
    o.s("groups", "Groups:", &m.groups.join(","));
    o.s("platformArchitecture", "Platform Architecture:", "x86");
    o.s("ostype", "Guest OS:", &m.os_type);
    o.s("UUID", "UUID:", &m.uuid.to_string());
    o.s("CfgFile", "Config file:", &f.path.to_string_lossy());
    o.s(
        "SnapFldr",
        "Snapshot folder:",
        &abs(&folder, &m.snapshot_folder),
    );
    o.s(
        "LogFldr",
        "Log folder:",
        &folder.join("Logs").to_string_lossy(),
    );
    o.s(
        "hardwareuuid",
        "Hardware UUID:",
        &hw.hardware_uuid.unwrap_or(m.uuid).to_string(),
    );
    o.n("memory", "Memory size:", hw.memory_mb as i64, "MB");
    o.b("pagefusion", "Page Fusion:", hw.page_fusion);
    o.n("vram", "VRAM size:", hw.display.vram_mb as i64, "MB");
    o.n(
        "cpuexecutioncap",
        "CPU exec cap:",
        hw.cpu.execution_cap as i64,
        "%",
    );
    if hw.cpu.profile != "host" {
        o.s("cpu-profile", "CPUProfile:", &hw.cpu.profile);
    }
    let chipset = match hw.chipset {
        ChipsetType::Piix3 => "piix3",
        ChipsetType::Ich9 => "ich9",
        ChipsetType::ArmV8Virtual => "armv8virtual",
    };
    o.s("chipset", "Chipset:", chipset);
    o.s("firmware", "Firmware:", hw.firmware.kind.as_xml());
    o.n("cpus", "Number of CPUs:", hw.cpu.count as i64, "");
    o.b("hpet", "HPET:", hw.hpet);
    o.b("pae", "PAE:", hw.cpu.pae);
    o.b("longmode", "Long Mode:", hw.cpu.long_mode.unwrap_or(true));
    o.b(
        "triplefaultreset",
        "Triple Fault Reset:",
        hw.cpu.triple_fault_reset,
    );
    o.b("apic", "APIC:", hw.cpu.apic);
    o.b("x2apic", "X2APIC:", hw.cpu.x2apic);
    o.b(
        "nested-hw-virt",
        "Nested VT-x/AMD-V:",
        hw.cpu.nested_hw_virt,
    );
    if hw.cpu.cpuid_leaves.is_empty() {
        o.human(&format!("{:<28} None", "CPUID overrides:"));
    } else {
        o.human(&format!(
            "{:<28} Leaf no.      EAX      EBX      ECX      EDX",
            "CPUID overrides:"
        ));
        for l in &hw.cpu.cpuid_leaves {
            o.human(&format!(
                "{:<28} {:08x}/{:03x}  {:08x} {:08x} {:08x} {:08x}",
                "", l[0], l[1], l[2], l[3], l[4], l[5]
            ));
            o.kv(
                "cpuid",
                Val::Str(format!(
                    "{:08x},{:08x},{:08x},{:08x},{:08x},{:08x}",
                    l[0], l[1], l[2], l[3], l[4], l[5]
                )),
                false,
            );
        }
    }
    o.b("hwvirtex", "Hardware Virtualization:", hw.cpu.hw_virt);
    o.b("nestedpaging", "Nested Paging:", hw.cpu.nested_paging);
    o.b("largepages", "Large Pages:", hw.cpu.large_pages);
    o.b("vtxvpid", "VT-x VPID:", hw.cpu.vpid);
    o.b("vtxux", "VT-x Unrestricted Exec.:", hw.cpu.ux);
    o.b(
        "virtvmsavevmload",
        "AMD-V Virt. Vmsave/Vmload:",
        hw.cpu.virt_vmsave_vmload,
    );
    o.n(
        "cpuid-portability-level",
        "CPUID Portability Level:",
        hw.cpu.cpuid_portability as i64,
        "",
    );
    let (bm_mr, bm_h) = match hw.firmware.boot_menu {
        BootMenuMode::Disabled => ("disabled", "disabled"),
        BootMenuMode::MenuOnly => ("menuonly", "menu only"),
        BootMenuMode::MessageAndMenu => ("messageandmenu", "message and menu"),
    };
    o.s2("bootmenu", bm_mr, "Boot menu mode:", bm_h);
    for (i, d) in hw.boot_order.iter().enumerate() {
        let (mr, h) = match d {
            BootDevice::Floppy => ("floppy", "Floppy"),
            BootDevice::Dvd => ("dvd", "DVD"),
            BootDevice::HardDisk => ("disk", "HardDisk"),
            BootDevice::Network => ("net", "Network"),
            BootDevice::None => ("none", "Not Assigned"),
        };
        o.s2(
            &format!("boot{}", i + 1),
            mr,
            &format!("Boot Device {}:", i + 1),
            h,
        );
    }
    o.b("acpi", "ACPI:", hw.firmware.acpi);
    o.b("ioapic", "IOAPIC:", hw.firmware.ioapic);
    let (am, ah) = match hw.firmware.apic_mode {
        ApicMode::Disabled => ("disabled", "disabled"),
        ApicMode::Apic => ("apic", "APIC"),
        ApicMode::X2Apic => ("x2apic", "x2APIC"),
    };
    o.s2("biosapic", am, "BIOS APIC mode:", ah);
    o.n(
        "biossystemtimeoffset",
        "Time offset:",
        hw.firmware.time_offset_ms,
        "ms",
    );
    let efi = hw.firmware.kind != FirmwareType::Bios;
    if efi || hw.firmware.nvram_path.is_some() {
        let nv = match &hw.firmware.nvram_path {
            Some(p) => abs(&folder, p),
            None => folder
                .join(format!("{}.nvram", m.name))
                .to_string_lossy()
                .into_owned(),
        };
        o.s("NvramFile", "BIOS NVRAM File:", &nv);
    }
    o.s2(
        "rtcuseutc",
        on_off(hw.rtc_utc),
        "RTC:",
        if hw.rtc_utc { "UTC" } else { "local time" },
    );
    let (im, ih) = match hw.iommu {
        IommuType::None => ("none", "None"),
        IommuType::Automatic => ("automatic", "Automatic"),
        IommuType::Amd => ("amd", "AMD"),
        IommuType::Intel => ("intel", "Intel"),
    };
    o.s2("iommu", im, "IOMMU:", ih);
    let (pm, ph) = paravirt_names(hw.paravirt);
    o.s2("paravirtprovider", pm, "Paravirt. Provider:", ph);
    let (em, eh) = paravirt_names(effective_paravirt(hw.paravirt, &m.os_type));
    o.s2("effparavirtprovider", em, "Effective Paravirt. Prov.:", eh);
    if !hw.paravirt_debug.is_empty() {
        o.s("paravirtdebug", "Paravirt. Debug:", &hw.paravirt_debug);
    }
    let (st_short, st_long) = machine_state(m, ctx.running);
    let since = state_time(m);
    o.kv("VMState", Val::Str(st_short.into()), false);
    o.kv("VMStateChangeTime", Val::Str(since.clone()), false);
    if let Some(sf) = &m.state_file {
        o.kv("VMStateFile", Val::Str(abs(&folder, sf)), false);
    }
    o.human(&format!("{:<28} {} (since {})", "State:", st_long, since));
    let (gm, gh) = match hw.display.controller {
        GraphicsController::None => ("null", "Null"),
        GraphicsController::VBoxVga => ("vboxvga", "VBoxVGA"),
        GraphicsController::VmSvga => ("vmsvga", "VMSVGA"),
        GraphicsController::VBoxSvga => ("vboxsvga", "VBoxSVGA"),
        GraphicsController::QemuRamFb => ("qemuramfb", "QemuRamFB"),
    };
    o.s2("graphicscontroller", gm, "Graphics Controller:", gh);
    o.n(
        "monitorcount",
        "Monitor count:",
        hw.display.monitors as i64,
        "",
    );
    o.b("accelerate3d", "3D Acceleration:", hw.display.accelerate_3d);
    o.b(
        "accelerate2dvideo",
        "2D Video Acceleration:",
        hw.display.accelerate_2d,
    );
    o.b(
        "teleporterenabled",
        "Teleporter Enabled:",
        m.teleporter.enabled,
    );
    o.n(
        "teleporterport",
        "Teleporter Port:",
        m.teleporter.port as i64,
        "",
    );
    o.s(
        "teleporteraddress",
        "Teleporter Address:",
        &m.teleporter.address,
    );
    o.s(
        "teleporterpassword",
        "Teleporter Password:",
        &m.teleporter.password,
    );
    o.b("tracing-enabled", "Tracing Enabled:", false);
    o.b(
        "tracing-allow-vm-access",
        "Allow Tracing to Access VM:",
        false,
    );
    o.s("tracing-config", "Tracing Configuration:", "");
    o.b(
        "autostart-enabled",
        "Autostart Enabled:",
        m.autostart.enabled,
    );
    o.n(
        "autostart-delay",
        "Autostart Delay:",
        m.autostart.delay as i64,
        "",
    );
    o.s("defaultfrontend", "Default Frontend:", &m.default_frontend);
    o.s("vmprocpriority", "VM process priority:", "default");

    // Storage.
    if hw.storage.is_empty() {
        o.human(&format!("{:<28} <none>", "Storage Controllers:"));
    } else {
        o.human("Storage Controllers:");
    }
    for (i, c) in hw.storage.iter().enumerate() {
        o.kv(
            &format!("storagecontrollername{i}"),
            Val::Str(c.name.clone()),
            false,
        );
        o.kv(
            &format!("storagecontrollertype{i}"),
            Val::Str(c.kind.vboxmanage_name().into()),
            false,
        );
        o.kv(
            &format!("storagecontrollerinstance{i}"),
            Val::Str(c.instance.to_string()),
            false,
        );
        o.kv(
            &format!("storagecontrollermaxportcount{i}"),
            Val::Str(c.kind.max_ports().to_string()),
            false,
        );
        o.kv(
            &format!("storagecontrollerportcount{i}"),
            Val::Str(c.port_count.to_string()),
            false,
        );
        o.kv(
            &format!("storagecontrollerbootable{i}"),
            Val::Str(on_off(c.bootable).into()),
            false,
        );
        if !o.mr {
            o.human(&format!(
                "#{i}: '{}', Type: {}, Instance: {}, Ports: {} (max {}), {}",
                c.name,
                c.kind.vboxmanage_name(),
                c.instance,
                c.port_count,
                c.kind.max_ports(),
                if c.bootable {
                    "Bootable"
                } else {
                    "Not bootable"
                }
            ));
            attachments(&mut o, c, &regs);
        }
    }
    if o.mr {
        for c in &hw.storage {
            attachments(&mut o, c, &regs);
        }
    }

    // Network.
    for slot in 0..hw.max_nics() {
        let a = hw.adapter(slot, v);
        let n = slot + 1;
        if !a.enabled {
            o.s2(&format!("nic{n}"), "none", &format!("NIC {n}:"), "disabled");
            continue;
        }
        let (mr_att, h_att) = match &a.attachment {
            NetAttachment::Null => ("null".to_string(), "none".to_string()),
            NetAttachment::Nat => {
                o.kv(
                    &format!("natnet{n}"),
                    Val::Str(if a.nat_network.is_empty() {
                        "nat".into()
                    } else {
                        a.nat_network.clone()
                    }),
                    false,
                );
                ("nat".into(), "NAT".into())
            }
            NetAttachment::Bridged(x) => {
                o.kv(&format!("bridgeadapter{n}"), Val::Str(x.clone()), false);
                ("bridged".into(), format!("Bridged Interface '{x}'"))
            }
            NetAttachment::Internal(x) => {
                o.kv(&format!("intnet{n}"), Val::Str(x.clone()), false);
                ("intnet".into(), format!("Internal Network '{x}'"))
            }
            NetAttachment::HostOnly(x) => {
                o.kv(&format!("hostonlyadapter{n}"), Val::Str(x.clone()), false);
                ("hostonly".into(), format!("Host-only Interface '{x}'"))
            }
            NetAttachment::HostOnlyNetwork(x) => {
                o.kv(&format!("hostonly-network{n}"), Val::Str(x.clone()), false);
                ("hostonlynetwork".into(), format!("Host Only Network '{x}'"))
            }
            NetAttachment::NatNetwork(x) => {
                o.kv(&format!("nat-network{n}"), Val::Str(x.clone()), false);
                ("natnetwork".into(), format!("NAT Network '{x}'"))
            }
            NetAttachment::Generic(x) => {
                o.kv(&format!("generic{n}"), Val::Str(x.clone()), false);
                ("Generic".into(), format!("Generic '{x}'"))
            }
            NetAttachment::Cloud(x) => {
                o.kv(&format!("cloud-network{n}"), Val::Str(x.clone()), false);
                ("cloudnetwork".into(), format!("Cloud Network '{x}'"))
            }
        };
        let promisc = match a.promisc {
            PromiscPolicy::Deny => "deny",
            PromiscPolicy::AllowNetwork => "allow-vms",
            PromiscPolicy::AllowAll => "allow-all",
        };
        if a.attachment == NetAttachment::Nat {
            o.kv("mtu", Val::Str("0".into()), false);
            o.kv("sockSnd", Val::Str("64".into()), false);
            o.kv("sockRcv", Val::Str("64".into()), false);
            o.kv("tcpWndSnd", Val::Str("64".into()), false);
            o.kv("tcpWndRcv", Val::Str("64".into()), false);
        }
        o.kv(&format!("macaddress{n}"), Val::Str(a.mac.clone()), false);
        o.kv(
            &format!("cableconnected{n}"),
            Val::Str(on_off(a.cable).into()),
            false,
        );
        o.kv(&format!("nic{n}"), Val::Str(mr_att), false);
        o.kv(
            &format!("nictype{n}"),
            Val::Str(a.kind.as_xml().into()),
            false,
        );
        o.kv(
            &format!("nicspeed{n}"),
            Val::Str(a.speed.to_string()),
            false,
        );
        o.human(&format!(
            "{:<28} MAC: {}, Attachment: {}, Cable connected: {}, Trace: {} (file: {}), Type: {}, Reported speed: {} Mbps, Boot priority: {}, Promisc Policy: {}, Bandwidth group: {}",
            format!("NIC {n}:"),
            a.mac,
            h_att,
            on_off(a.cable),
            on_off(a.trace),
            if a.trace_file.is_empty() { "none" } else { &a.trace_file },
            a.kind.as_xml(),
            a.speed / 1000,
            a.boot_priority,
            promisc,
            if a.bandwidth_group.is_empty() { "none" } else { &a.bandwidth_group },
        ));
        if a.attachment == NetAttachment::Nat {
            o.human(&format!(
                "NIC {n} Settings:  MTU: 0, Socket (send: 64, receive: 64), TCP Window (send:64, receive: 64)"
            ));
            for (i, r) in a.nat_rules.iter().enumerate() {
                let proto = if r.tcp { "tcp" } else { "udp" };
                o.kv(
                    &format!("Forwarding({i})"),
                    Val::Str(format!(
                        "{},{},{},{},{},{}",
                        r.name, proto, r.host_ip, r.host_port, r.guest_ip, r.guest_port
                    )),
                    false,
                );
                o.human(&format!(
                    "NIC {n} Rule({i}):   name = {}, protocol = {proto}, host ip = {}, host port = {}, guest ip = {}, guest port = {}",
                    r.name, r.host_ip, r.host_port, r.guest_ip, r.guest_port
                ));
            }
        }
    }

    let (ph_mr, ph_h) = match hw.pointing {
        PointingHid::None => ("none", "None"),
        PointingHid::Ps2Mouse => ("ps2mouse", "PS/2 Mouse"),
        PointingHid::UsbMouse => ("usbmouse", "USB Mouse"),
        PointingHid::UsbTablet => ("usbtablet", "USB Tablet"),
        PointingHid::ComboMouse => ("combomouse", "USB Tablet and PS/2 Mouse"),
        PointingHid::UsbMultiTouch => ("usbmultitouch", "USB Multi-Touch"),
        PointingHid::UsbMtScreenPlusPad => ("usbmtscreenpluspad", "USB Multi-Touch Screen and Pad"),
    };
    o.s2("hidpointing", ph_mr, "Pointing Device:", ph_h);
    let (kh_mr, kh_h) = match hw.keyboard {
        KeyboardHid::None => ("none", "None"),
        KeyboardHid::Ps2Keyboard => ("ps2kbd", "PS/2 Keyboard"),
        KeyboardHid::UsbKeyboard => ("usbkbd", "USB Keyboard"),
        KeyboardHid::ComboKeyboard => ("combokbd", "USB and PS/2 Keyboard"),
    };
    o.s2("hidkeyboard", kh_mr, "Keyboard Device:", kh_h);

    for slot in 0..4 {
        let p = hw.serial_port(slot);
        let n = slot + 1;
        if !p.enabled {
            o.s2(
                &format!("uart{n}"),
                "off",
                &format!("UART {n}:"),
                "disabled",
            );
            continue;
        }
        o.kv(
            &format!("uart{n}"),
            Val::Str(format!("{:#06x},{}", p.io_base, p.irq)),
            false,
        );
        let (mr_mode, h_mode) = match p.mode {
            PortMode::Disconnected => ("disconnected".to_string(), ", disconnected".to_string()),
            PortMode::RawFile => (
                format!("file,{}", p.path),
                format!(", attached to raw file '{}'", p.path),
            ),
            PortMode::Tcp => (
                format!(
                    "{},{}",
                    if p.server { "tcpserver" } else { "tcpclient" },
                    p.path
                ),
                format!(
                    ", attached to tcp ({}) '{}'",
                    if p.server { "server" } else { "client" },
                    p.path
                ),
            ),
            PortMode::HostPipe => (
                format!("{},{}", if p.server { "server" } else { "client" }, p.path),
                format!(
                    ", attached to pipe ({}) '{}'",
                    if p.server { "server" } else { "client" },
                    p.path
                ),
            ),
            PortMode::HostDevice => (p.path.clone(), format!(", attached to device '{}'", p.path)),
        };
        o.kv(&format!("uartmode{n}"), Val::Str(mr_mode), false);
        o.kv(
            &format!("uarttype{n}"),
            Val::Str(p.uart_type.as_xml().into()),
            false,
        );
        o.human(&format!(
            "{:<28} I/O address: {:#06x}, IRQ: {}{}, {}",
            format!("UART {n}:"),
            p.io_base,
            p.irq,
            h_mode,
            p.uart_type.as_xml()
        ));
    }
    for slot in 0..2u32 {
        let n = slot + 1;
        match hw.parallel.iter().find(|p| p.slot == slot && p.enabled) {
            None => o.s2(&format!("lpt{n}"), "off", &format!("LPT {n}:"), "disabled"),
            Some(p) => {
                o.kv(
                    &format!("lpt{n}"),
                    Val::Str(format!("{:#06x},{}", p.io_base, p.irq)),
                    false,
                );
                o.kv(&format!("lptmode{n}"), Val::Str(p.path.clone()), false);
                o.human(&format!(
                    "{:<28} I/O base: {:#06x}, IRQ: {}, attached to device '{}'",
                    format!("LPT {n}:"),
                    p.io_base,
                    p.irq,
                    p.path
                ));
            }
        }
    }

    let au = &hw.audio;
    let (drv_mr, drv_h) = match au.driver {
        AudioDriver::Default => ("default", "Default"),
        AudioDriver::Null => ("null", "Null"),
        AudioDriver::Oss => ("oss", "OSS"),
        AudioDriver::Alsa => ("alsa", "ALSA"),
        AudioDriver::Pulse => ("pulse", "PulseAudio"),
        AudioDriver::WinMm => ("winmm", "WINMM"),
        AudioDriver::DirectSound => ("dsound", "DirectSound"),
        AudioDriver::Was => ("was", "Windows Audio Session (WAS)"),
        AudioDriver::CoreAudio => ("coreaudio", "CoreAudio"),
        AudioDriver::SolAudio => ("solaudio", "SolAudio"),
        AudioDriver::Mmpm => ("mmpm", "MMPM"),
    };
    let ctl = match au.controller {
        AudioController::Ac97 => "AC97",
        AudioController::Sb16 => "SB16",
        AudioController::Hda => "HDA",
        AudioController::VirtioSound => "Virtio-Sound",
    };
    o.kv(
        "audio",
        Val::Str(if au.enabled {
            drv_mr.into()
        } else {
            "none".into()
        }),
        false,
    );
    if au.enabled {
        o.human(&format!(
            "{:<28} enabled (Driver: {drv_h}, Controller: {ctl}, Codec: {})",
            "Audio:",
            au.codec.as_xml()
        ));
    } else {
        o.human(&format!("{:<28} disabled", "Audio:"));
    }
    o.b("audio_out", "Audio playback:", au.enabled_out);
    o.b("audio_in", "Audio capture:", au.enabled_in);

    let modes = |c: ClipboardMode| match c {
        ClipboardMode::Disabled => ("disabled", "disabled"),
        ClipboardMode::HostToGuest => ("hosttoguest", "HostToGuest"),
        ClipboardMode::GuestToHost => ("guesttohost", "GuestToHost"),
        ClipboardMode::Bidirectional => ("bidirectional", "Bidirectional"),
    };
    let (cm, ch) = modes(hw.clipboard);
    o.s2("clipboard", cm, "Clipboard Mode:", ch);
    o.b(
        "clipboard_file_transfers",
        "Clipboard file transfers:",
        hw.clipboard_file_transfers,
    );
    let dnd_as_clip = match hw.dnd {
        DndMode::Disabled => ClipboardMode::Disabled,
        DndMode::HostToGuest => ClipboardMode::HostToGuest,
        DndMode::GuestToHost => ClipboardMode::GuestToHost,
        DndMode::Bidirectional => ClipboardMode::Bidirectional,
    };
    let (dm, dh) = modes(dnd_as_clip);
    o.s2("draganddrop", dm, "Drag and drop Mode:", dh);

    let vr = &hw.vrde;
    if vr.enabled {
        let ports = vr.property("TCP/Ports").unwrap_or("3389").to_string();
        let addr = vr.property("TCP/Address").unwrap_or("").to_string();
        let auth = match vr.auth_type {
            AuthType::Null => "null",
            AuthType::Guest => "guest",
            AuthType::External => "external",
        };
        o.kv("vrde", Val::Str("on".into()), false);
        o.kv("vrdeport", Val::Num(-1), false);
        o.kv("vrdeports", Val::Str(ports.clone()), false);
        o.kv("vrdeaddress", Val::Str(addr.clone()), false);
        o.kv("vrdeauthtype", Val::Str(auth.into()), false);
        o.kv(
            "vrdemulticon",
            Val::Str(on_off(vr.multi_connection).into()),
            false,
        );
        o.kv(
            "vrdereusecon",
            Val::Str(on_off(vr.reuse_single_connection).into()),
            false,
        );
        o.kv("vrdevideochannel", Val::Str("off".into()), false);
        o.human(&format!(
            "{:<28} enabled (Address {}, Ports {}, MultiConn: {}, ReuseSingleConn: {}, Authentication type: {})",
            "VRDE:",
            if addr.is_empty() { "0.0.0.0" } else { &addr },
            ports,
            on_off(vr.multi_connection),
            on_off(vr.reuse_single_connection),
            auth
        ));
        o.human(&format!("{:<28} disabled", "Video redirection:"));
        for (k, val) in &vr.properties {
            o.kv(&format!("vrdeproperty[{k}]"), Val::Str(val.clone()), false);
            o.human(&format!("{:<28}: {:<10} = \"{}\"", "VRDE property", k, val));
        }
    } else {
        o.s2("vrde", "off", "VRDE:", "disabled");
    }

    let has = |k| hw.usb_controllers.iter().any(|c| c.kind == k);
    o.b("usb", "OHCI USB:", has(UsbControllerType::Ohci));
    o.b("ehci", "EHCI USB:", has(UsbControllerType::Ehci));
    o.b("xhci", "xHCI USB:", has(UsbControllerType::Xhci));
    if hw.usb_filters == 0 {
        o.human(&format!("{:<28} <none>", "USB Device Filters:"));
    } else {
        o.human(&format!(
            "{:<28} {} (not shown)",
            "USB Device Filters:", hw.usb_filters
        ));
    }

    if hw.bandwidth_groups.is_empty() {
        o.human(&format!("{:<28} <none>", "Bandwidth groups:"));
    } else {
        o.human(&format!("{:<28} ", "Bandwidth groups:"));
        for (i, g) in hw.bandwidth_groups.iter().enumerate() {
            o.kv(
                &format!("BandwidthGroup{i}"),
                Val::Str(format!("{},{},{}", g.name, g.kind, g.max_bytes_per_sec)),
                false,
            );
            o.human(&format!(
                "#{i}: Name: '{}', Type: {}, Limit: {} bytes/s",
                g.name, g.kind, g.max_bytes_per_sec
            ));
        }
    }

    if hw.shared_folders.is_empty() {
        o.human(&format!("{:<28} <none>", "Shared folders:"));
    } else {
        o.human(&format!("{:<28} \n", "Shared folders:"));
        for (i, s) in hw.shared_folders.iter().enumerate() {
            let n = i + 1;
            o.kv(
                &format!("SharedFolderNameMachineMapping{n}"),
                Val::Str(s.name.clone()),
                false,
            );
            o.kv(
                &format!("SharedFolderPathMachineMapping{n}"),
                Val::Str(s.host_path.clone()),
                false,
            );
            let mut line = format!(
                "Name: '{}', Host path: '{}' (machine mapping), {}{}",
                s.name,
                s.host_path,
                if s.writable { "writable" } else { "readonly" },
                if s.auto_mount { ", auto-mount" } else { "" }
            );
            if !s.symlink_policy.is_empty() {
                line.push_str(&format!(", symlink-policy: {}", s.symlink_policy));
            }
            if !s.auto_mount_point.is_empty() {
                line.push_str(&format!(", mount-point: '{}'", s.auto_mount_point));
            }
            o.human(&line);
        }
        o.human("");
    }

    o.s2(
        "recording_enabled",
        on_off(hw.recording),
        "Recording enabled:",
        if hw.recording { "yes" } else { "no" },
    );

    if !m.description.is_empty() {
        o.kv("description", Val::Str(m.description.clone()), false);
        o.human(&format!("Description:\n{}", m.description));
    }

    if let Some(root) = &m.snapshot {
        o.human("* Snapshots:");
        snapshots(&mut o, root, m.current_snapshot, "");
    }

    o.human("* Guest:");
    o.n(
        "GuestMemoryBalloon",
        "Configured memory balloon:",
        hw.balloon_mb as i64,
        "MB",
    );
    if !hw.guest_properties.is_empty() {
        o.human("Guest properties:");
        for (i, p) in hw.guest_properties.iter().enumerate() {
            o.kv(
                &format!("GuestProperty{}", i + 1),
                Val::Str(format!("{}={}", p.name, p.value)),
                false,
            );
            o.human(&format!(
                "Name: {}, value: {}, timestamp: {}, flags: {}",
                p.name, p.value, p.timestamp, p.flags
            ));
        }
    }
    o.human("");

    match fmt {
        InfoFormat::Human => o.text,
        InfoFormat::MachineReadable => o.render_mr(),
        InfoFormat::Json => o.render_json(),
    }
}

fn snapshots(o: &mut Out, s: &Snapshot, current: Option<crate::Uuid>, prefix: &str) {
    let cur = current == Some(s.uuid);
    if o.mr {
        o.kv(
            &format!("SnapshotName{prefix}"),
            Val::Str(s.name.clone()),
            false,
        );
        o.kv(
            &format!("SnapshotUUID{prefix}"),
            Val::Str(s.uuid.to_string()),
            false,
        );
        if !s.description.is_empty() {
            o.kv(
                &format!("SnapshotDescription{prefix}"),
                Val::Str(s.description.clone()),
                false,
            );
        }
        if cur {
            o.kv("CurrentSnapshotName", Val::Str(s.name.clone()), false);
            o.kv("CurrentSnapshotUUID", Val::Str(s.uuid.to_string()), false);
            o.kv(
                "CurrentSnapshotNode",
                Val::Str(format!("SnapshotName{prefix}")),
                false,
            );
        }
    } else {
        o.human(&format!(
            "   {prefix}Name: {} (UUID: {}){}",
            s.name,
            s.uuid,
            if cur { " *" } else { "" }
        ));
        if !s.description.is_empty() {
            if s.description.contains('\n') {
                o.human(&format!("   {prefix}Description:\n{}", s.description));
            } else {
                o.human(&format!("   {prefix}Description: {}", s.description));
            }
        }
    }
    for (i, c) in s.children.iter().enumerate() {
        let p = if o.mr {
            format!("{prefix}-{}", i + 1)
        } else {
            format!("{prefix}   ")
        };
        snapshots(o, c, current, &p);
    }
}

fn attachments(o: &mut Out, c: &StorageController, regs: &[RegistryRef]) {
    for port in 0..c.port_count {
        for dev in 0..c.kind.devices_per_port() {
            let a = c.devices.iter().find(|d| d.port == port && d.device == dev);
            let Some(a) = a else {
                o.kv(
                    &format!("{}-{port}-{dev}", c.name),
                    Val::Str("none".into()),
                    true,
                );
                continue;
            };
            let name = &c.name;
            match (a.medium, &a.host_drive) {
                (Some(u), _) => {
                    let resolved = resolve(&u, regs, None).ok();
                    let loc = resolved
                        .as_ref()
                        .map(|r| r.leaf.path.to_string_lossy().into_owned())
                        .unwrap_or_else(|| {
                            format!("<medium {{{u}}} not found in any media registry>")
                        });
                    o.kv(&format!("{name}-{port}-{dev}"), Val::Str(loc.clone()), true);
                    o.kv(
                        &format!("{name}-ImageUUID-{port}-{dev}"),
                        Val::Str(u.to_string()),
                        true,
                    );
                    if a.passthrough {
                        o.kv(
                            &format!("{name}-dvdpassthrough-{port}-{dev}"),
                            Val::Str("on".into()),
                            true,
                        );
                    }
                    if a.kind == DeviceType::Dvd {
                        o.kv(
                            &format!("{name}-tempeject-{port}-{dev}"),
                            Val::Str(on_off(a.temp_eject).into()),
                            true,
                        );
                        o.kv(
                            &format!("{name}-IsEjected-{port}-{dev}"),
                            Val::Str("off".into()),
                            true,
                        );
                    }
                    if name.eq_ignore_ascii_case("SATA") || name.eq_ignore_ascii_case("USB") {
                        o.kv(
                            &format!("{name}-hot-pluggable-{port}-{dev}"),
                            Val::Str(on_off(a.hotpluggable).into()),
                            true,
                        );
                    }
                    o.kv(
                        &format!("{name}-nonrotational-{port}-{dev}"),
                        Val::Str(on_off(a.non_rotational).into()),
                        true,
                    );
                    o.kv(
                        &format!("{name}-discard-{port}-{dev}"),
                        Val::Str(on_off(a.discard).into()),
                        true,
                    );
                    let chain: Vec<String> = resolved
                        .as_ref()
                        .map(|r| {
                            r.parents
                                .iter()
                                .map(|p| p.path.to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    if !chain.is_empty() {
                        o.kv(
                            &format!("{name}-ParentChain-{port}-{dev}"),
                            Val::Str(chain.join(";")),
                            true,
                        );
                    }
                    if !o.mr {
                        o.human(&format!(
                            "  Port {port}, Unit {dev}: UUID: {u}{}{}{}{}{}",
                            if a.passthrough {
                                ", passthrough enabled"
                            } else {
                                ""
                            },
                            if a.temp_eject { ", temp eject" } else { "" },
                            if a.hotpluggable {
                                ", hot-pluggable"
                            } else {
                                ""
                            },
                            if a.non_rotational {
                                ", non-rotational (SSD)"
                            } else {
                                ""
                            },
                            if a.discard {
                                ", discards unused blocks"
                            } else {
                                ""
                            },
                        ));
                        o.human(&format!("    Location: \"{loc}\""));
                        if !chain.is_empty() {
                            let all: Vec<String> =
                                std::iter::once(loc.clone()).chain(chain).collect();
                            o.human(&format!("    Chain: \"{}\"", all.join("\" -> \"")));
                        }
                    }
                }
                (None, Some(h)) => {
                    o.kv(
                        &format!("{name}-{port}-{dev}"),
                        Val::Str(format!("host:{h}")),
                        true,
                    );
                    o.human(&format!("  Port {port}, Unit {dev}: Host drive {h}"));
                }
                (None, None) => {
                    o.kv(
                        &format!("{name}-{port}-{dev}"),
                        Val::Str("emptydrive".into()),
                        true,
                    );
                    if a.kind == DeviceType::Dvd {
                        o.kv(
                            &format!("{name}-IsEjected-{port}-{dev}"),
                            Val::Str("off".into()),
                            true,
                        );
                    }
                    o.human(&format!(
                        "  Port {port}, Unit {dev}: Empty{}",
                        if a.temp_eject { ", temp eject" } else { "" }
                    ));
                }
            }
        }
    }
}
