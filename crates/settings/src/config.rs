//! The typed view of a machine that the VMM builds from ([`MachineConfig`]),
//! and the compatibility report: every setting that is present in the
//! definition but that the VMM does not support yet, by name, so `run` can
//! warn once per setting at start and `showvminfo --compat` can print it.

use std::path::PathBuf;

use crate::document::MachineFile;
use crate::enums::*;
use crate::error::{Error, ErrorKind, Result};
use crate::info::effective_paravirt;
use crate::model::*;
use crate::resolve::{check_files, resolve, RegistryRef, ResolvedMedium};
use crate::values::Uuid;

/// Host side of a serial port, ready to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UartBackend {
    /// Nothing connected (output discarded, no input).
    Disconnected,
    /// Output appended to a file.
    RawFile(PathBuf),
    /// A Unix domain socket (VirtualBox's "host pipe" on Linux).
    UnixSocket {
        /// Socket path.
        path: PathBuf,
        /// Create and listen (else connect).
        server: bool,
    },
    /// TCP server listening on `address` (`host:port` or just a port).
    TcpServer(String),
    /// TCP client connecting to `address`.
    TcpClient(String),
    /// A host device node (e.g. `/dev/ttyS0`).
    HostDevice(PathBuf),
}

/// One enabled serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UartConfig {
    /// Slot 0–3 (COM1–COM4).
    pub slot: u32,
    /// I/O base port.
    pub io_base: u16,
    /// IRQ line.
    pub irq: u8,
    /// UART chip.
    pub uart_type: UartType,
    /// Host side.
    pub backend: UartBackend,
}

/// One attached device with its medium resolved to host files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Hard disk, DVD or floppy.
    pub kind: DeviceType,
    /// Port.
    pub port: u32,
    /// Device on the port.
    pub device: u32,
    /// The medium (None = empty drive or host drive).
    pub medium: Option<ResolvedMedium>,
    /// Host drive passthrough path.
    pub host_drive: Option<String>,
    /// Report as SSD.
    pub non_rotational: bool,
    /// Discard/TRIM.
    pub discard: bool,
    /// Hot-pluggable.
    pub hotpluggable: bool,
}

/// A storage controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: StorageControllerType,
    /// Ports.
    pub port_count: u32,
    /// Instance.
    pub instance: u32,
    /// Bootable.
    pub bootable: bool,
    /// Host I/O cache.
    pub use_host_io_cache: bool,
    /// Attached devices.
    pub devices: Vec<DeviceConfig>,
}

/// A shared folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFolderConfig {
    /// Share name.
    pub name: String,
    /// Host path.
    pub host_path: PathBuf,
    /// Writable.
    pub writable: bool,
    /// Auto-mount.
    pub auto_mount: bool,
    /// Auto-mount point.
    pub auto_mount_point: String,
}

/// An enabled network adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    /// Slot (0-based).
    pub slot: u32,
    /// Device model.
    pub kind: NicType,
    /// MAC address (parsed; `None` when empty or malformed, the VMM then
    /// generates one).
    pub mac: Option<[u8; 6]>,
    /// Cable connected.
    pub cable: bool,
    /// Attachment.
    pub attachment: NetAttachment,
    /// NAT port forwarding.
    pub nat_rules: Vec<NatRule>,
    /// PXE boot priority.
    pub boot_priority: u32,
}

/// Everything the VMM needs to assemble a machine, with VirtualBox's
/// defaults applied and paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// Machine name.
    pub name: String,
    /// Machine UUID.
    pub uuid: Uuid,
    /// UUID shown to the guest via DMI.
    pub hardware_uuid: Uuid,
    /// Guest OS type id.
    pub os_type: String,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// vCPU count.
    pub cpu_count: u32,
    /// BIOS or EFI flavour.
    pub firmware: FirmwareType,
    /// EFI NVRAM file.
    pub nvram_path: PathBuf,
    /// Chipset.
    pub chipset: ChipsetType,
    /// ACPI.
    pub acpi: bool,
    /// I/O APIC.
    pub ioapic: bool,
    /// HPET.
    pub hpet: bool,
    /// PAE/NX exposed.
    pub pae: bool,
    /// Long mode exposed (None = by guest OS type).
    pub long_mode: Option<bool>,
    /// x2APIC.
    pub x2apic: bool,
    /// Boot order, devices only (positions with `None` dropped).
    pub boot_order: Vec<BootDevice>,
    /// Paravirt provider as configured.
    pub paravirt: ParavirtProvider,
    /// The provider VirtualBox would actually expose.
    pub paravirt_effective: ParavirtProvider,
    /// RTC runs in UTC (else local time).
    pub rtc_utc: bool,
    /// Guest clock offset in ms.
    pub time_offset_ms: i64,
    /// Enabled serial ports.
    pub uarts: Vec<UartConfig>,
    /// Storage.
    pub storage: Vec<ControllerConfig>,
    /// Shared folders.
    pub shared_folders: Vec<SharedFolderConfig>,
    /// Clipboard mode.
    pub clipboard: ClipboardMode,
    /// Drag and drop mode.
    pub dnd: DndMode,
    /// Graphics controller.
    pub graphics: GraphicsController,
    /// Video RAM in MiB.
    pub vram_mib: u32,
    /// Monitors.
    pub monitors: u32,
    /// VRDE TCP ports (`TCP/Ports`, e.g. `3389` or `5000-5050`) when enabled.
    pub vrde_ports: Option<String>,
    /// VRDE bind address when enabled (empty = all).
    pub vrde_address: String,
    /// The VNC password VirtualBox's VNC extension pack takes from the VRDE property
    /// `VNCPassword` (`VBoxManage modifyvm --vrdeproperty VNCPassword=...`).
    pub vrde_password: Option<String>,
    /// Enabled network adapters.
    pub nics: Vec<NicConfig>,
    /// Pointing device.
    pub pointing: PointingHid,
    /// Keyboard.
    pub keyboard: KeyboardHid,
    /// Saved state to restore, if the machine is saved.
    pub saved_state: Option<PathBuf>,
    /// ExtraData (e.g. `VBoxInternal/…` overrides) in file order.
    pub extra_data: Vec<(String, String)>,
}

/// Parse `080027AABBCC` (separators `:`/`-` tolerated).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 12 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl MachineConfig {
    /// Build the VMM's view of a machine. Media are resolved through the
    /// machine's registry then `registries`; a medium that is not registered
    /// or whose file (or a parent's) is missing is an error naming it and
    /// where it was expected.
    pub fn from_file(file: &MachineFile, registries: &[RegistryRef]) -> Result<MachineConfig> {
        let m = &file.machine;
        let hw = &m.hardware;
        let folder = file.machine_folder();
        let mut regs = vec![RegistryRef {
            registry: &m.media,
            base: &folder,
            label: "machine",
        }];
        regs.extend(registries.iter().copied());
        let mut storage = Vec::new();
        for c in &hw.storage {
            let mut devices = Vec::new();
            for d in &c.devices {
                let medium = match d.medium {
                    Some(u) => {
                        let r = resolve(&u, &regs, None).map_err(|e| {
                            Error::at(
                                ErrorKind::Medium,
                                d.pos.0,
                                format!(
                                    "{} (attached to \"{}\" port {} device {})",
                                    e.message, c.name, d.port, d.device
                                ),
                            )
                            .in_file(&file.path)
                        })?;
                        check_files(&r).map_err(|e| {
                            Error::at(
                                ErrorKind::Medium,
                                d.pos.0,
                                format!(
                                    "{} (attached to \"{}\" port {} device {})",
                                    e.message, c.name, d.port, d.device
                                ),
                            )
                            .in_file(&file.path)
                        })?;
                        Some(r)
                    }
                    None => None,
                };
                devices.push(DeviceConfig {
                    kind: d.kind,
                    port: d.port,
                    device: d.device,
                    medium,
                    host_drive: d.host_drive.clone(),
                    non_rotational: d.non_rotational,
                    discard: d.discard,
                    hotpluggable: d.hotpluggable,
                });
            }
            storage.push(ControllerConfig {
                name: c.name.clone(),
                kind: c.kind,
                port_count: c.port_count,
                instance: c.instance,
                bootable: c.bootable,
                use_host_io_cache: c.use_host_io_cache,
                devices,
            });
        }
        let uarts = hw
            .serial
            .iter()
            .filter(|p| p.enabled)
            .map(|p| UartConfig {
                slot: p.slot,
                io_base: p.io_base,
                irq: p.irq,
                uart_type: p.uart_type,
                backend: match p.mode {
                    PortMode::Disconnected => UartBackend::Disconnected,
                    PortMode::RawFile => {
                        UartBackend::RawFile(crate::resolve::resolve_location(&p.path, &folder))
                    }
                    PortMode::HostPipe => UartBackend::UnixSocket {
                        path: PathBuf::from(&p.path),
                        server: p.server,
                    },
                    PortMode::Tcp if p.server => UartBackend::TcpServer(p.path.clone()),
                    PortMode::Tcp => UartBackend::TcpClient(p.path.clone()),
                    PortMode::HostDevice => UartBackend::HostDevice(PathBuf::from(&p.path)),
                },
            })
            .collect();
        Ok(MachineConfig {
            name: m.name.clone(),
            uuid: m.uuid,
            hardware_uuid: hw.hardware_uuid.unwrap_or(m.uuid),
            os_type: m.os_type.clone(),
            memory_mib: hw.memory_mb,
            cpu_count: hw.cpu.count,
            firmware: hw.firmware.kind,
            nvram_path: match &hw.firmware.nvram_path {
                Some(p) => crate::resolve::resolve_location(p, &folder),
                None => folder.join(format!("{}.nvram", m.name)),
            },
            chipset: hw.chipset,
            acpi: hw.firmware.acpi,
            ioapic: hw.firmware.ioapic,
            hpet: hw.hpet,
            pae: hw.cpu.pae,
            long_mode: hw.cpu.long_mode,
            x2apic: hw.cpu.x2apic,
            boot_order: hw
                .boot_order
                .iter()
                .copied()
                .filter(|d| *d != BootDevice::None)
                .collect(),
            paravirt: hw.paravirt,
            paravirt_effective: effective_paravirt(hw.paravirt, &m.os_type),
            rtc_utc: hw.rtc_utc,
            time_offset_ms: hw.firmware.time_offset_ms,
            uarts,
            storage,
            shared_folders: hw
                .shared_folders
                .iter()
                .map(|s| SharedFolderConfig {
                    name: s.name.clone(),
                    host_path: PathBuf::from(&s.host_path),
                    writable: s.writable,
                    auto_mount: s.auto_mount,
                    auto_mount_point: s.auto_mount_point.clone(),
                })
                .collect(),
            clipboard: hw.clipboard,
            dnd: hw.dnd,
            graphics: hw.display.controller,
            vram_mib: hw.display.vram_mb,
            monitors: hw.display.monitors,
            vrde_ports: hw
                .vrde
                .enabled
                .then(|| hw.vrde.property("TCP/Ports").unwrap_or("3389").to_string()),
            vrde_address: hw.vrde.property("TCP/Address").unwrap_or("").to_string(),
            vrde_password: hw
                .vrde
                .property("VNCPassword")
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            nics: (0..hw.max_nics())
                .map(|s| hw.adapter(s, file.settings_version()))
                .filter(|a| a.enabled)
                .map(|a| NicConfig {
                    slot: a.slot,
                    kind: a.kind,
                    mac: parse_mac(&a.mac),
                    cable: a.cable,
                    attachment: a.attachment.clone(),
                    nat_rules: a.nat_rules.clone(),
                    boot_priority: a.boot_priority,
                })
                .collect(),
            pointing: hw.pointing,
            keyboard: hw.keyboard,
            saved_state: m
                .state_file
                .as_ref()
                .map(|s| crate::resolve::resolve_location(s, &folder)),
            extra_data: m.extra_data.clone(),
        })
    }
}

/// What the VMM can do today; the compatibility report lists everything a
/// machine uses beyond this. Build it with [`SupportedFeatures::minimal`]
/// and widen fields as devices land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedFeatures {
    /// Maximum vCPU count.
    pub max_cpus: u32,
    /// Firmware types.
    pub firmware: Vec<FirmwareType>,
    /// Chipsets.
    pub chipsets: Vec<ChipsetType>,
    /// Paravirt providers (effective ones).
    pub paravirt: Vec<ParavirtProvider>,
    /// Serial port host modes.
    pub uart_modes: Vec<PortMode>,
    /// UART chips.
    pub uart_types: Vec<UartType>,
    /// Storage controller types (empty = no disks at all).
    pub storage_controllers: Vec<StorageControllerType>,
    /// Disk image formats (upper case, e.g. `VDI`).
    pub disk_formats: Vec<String>,
    /// NIC models.
    pub nic_types: Vec<NicType>,
    /// Attachment kinds, by element name (`NAT`, `BridgedInterface`, …).
    pub net_attachments: Vec<String>,
    /// Graphics controllers.
    pub graphics: Vec<GraphicsController>,
    /// 3D acceleration.
    pub accelerate_3d: bool,
    /// Pointing devices.
    pub pointing: Vec<PointingHid>,
    /// Keyboards.
    pub keyboards: Vec<KeyboardHid>,
    /// Guest Additions services (shared folders, clipboard, drag and drop).
    pub guest_additions: bool,
    /// Audio.
    pub audio: bool,
    /// USB controllers.
    pub usb: bool,
    /// Parallel ports.
    pub parallel: bool,
    /// Remote display (VRDE).
    pub vrde: bool,
    /// HPET.
    pub hpet: bool,
    /// Restoring saved state.
    pub saved_state: bool,
    /// Other rarely used hardware (IOMMU, TPM, nested virtualization, PCI
    /// passthrough, CPU hot-plug, execution cap, CPUID overrides).
    pub exotic: bool,
}

impl SupportedFeatures {
    /// What point 6 of the issue asks for first: memory, CPUs, BIOS,
    /// PIIX3, boot order, paravirt None/Minimal/KVM, UARTs (Disconnected,
    /// RawFile, HostPipe as Unix socket, TCP), PS/2 input, VBoxVGA; no disks,
    /// network, Guest Additions or audio yet.
    pub fn minimal() -> SupportedFeatures {
        SupportedFeatures {
            max_cpus: 64,
            firmware: vec![FirmwareType::Bios],
            chipsets: vec![ChipsetType::Piix3],
            paravirt: vec![
                ParavirtProvider::None,
                ParavirtProvider::Minimal,
                ParavirtProvider::Kvm,
            ],
            uart_modes: vec![
                PortMode::Disconnected,
                PortMode::RawFile,
                PortMode::HostPipe,
                PortMode::Tcp,
            ],
            uart_types: vec![UartType::U16450, UartType::U16550A],
            storage_controllers: vec![],
            disk_formats: vec![],
            nic_types: vec![],
            net_attachments: vec![],
            graphics: vec![GraphicsController::VBoxVga, GraphicsController::None],
            accelerate_3d: false,
            pointing: vec![PointingHid::Ps2Mouse, PointingHid::None],
            keyboards: vec![KeyboardHid::Ps2Keyboard, KeyboardHid::None],
            guest_additions: false,
            audio: false,
            usb: false,
            parallel: false,
            vrde: false,
            hpet: false,
            saved_state: false,
            exotic: false,
        }
    }
}

/// One present-but-unsupported setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatIssue {
    /// The setting's name as the user knows it (VBoxManage option or
    /// settings element), e.g. `--audio` / `AudioAdapter`.
    pub setting: String,
    /// Its value in this machine.
    pub value: String,
    /// What novabox does instead.
    pub effect: String,
    /// The machine cannot work without it (disks, Guest Additions a share
    /// depends on…) rather than just missing a device.
    pub blocking: bool,
}

impl std::fmt::Display for CompatIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {}: not supported yet; {}{}",
            self.setting,
            self.value,
            self.effect,
            if self.blocking {
                " (the machine needs it)"
            } else {
                ""
            }
        )
    }
}

/// Every setting of `m` that is present but not supported by `s`, each
/// reported once, in showvminfo order.
pub fn compatibility_report(m: &Machine, s: &SupportedFeatures) -> Vec<CompatIssue> {
    let hw = &m.hardware;
    let mut out: Vec<CompatIssue> = Vec::new();
    let mut add = |setting: &str, value: String, effect: &str, blocking: bool| {
        if !out.iter().any(|i| i.setting == setting && i.value == value) {
            out.push(CompatIssue {
                setting: setting.to_string(),
                value,
                effect: effect.to_string(),
                blocking,
            });
        }
    };
    if hw.cpu.count > s.max_cpus {
        add(
            "--cpus",
            hw.cpu.count.to_string(),
            "fewer CPUs are started",
            false,
        );
    }
    if !s.exotic {
        if hw.cpu.hotplug {
            add("--cpuhotplug", "on".into(), "ignored", false);
        }
        if hw.cpu.execution_cap != 100 {
            add(
                "--cpuexecutioncap",
                hw.cpu.execution_cap.to_string(),
                "ignored",
                false,
            );
        }
        if !hw.cpu.cpuid_leaves.is_empty() {
            add(
                "--cpuid-set",
                format!("{} leaves", hw.cpu.cpuid_leaves.len()),
                "ignored",
                false,
            );
        }
        if hw.cpu.nested_hw_virt {
            add("--nested-hw-virt", "on".into(), "ignored", false);
        }
        if hw.iommu != IommuType::None {
            add("--iommu", hw.iommu.as_xml().into(), "no IOMMU", false);
        }
        if hw.tpm != TpmType::None {
            add("--tpm-type", hw.tpm.as_xml().into(), "no TPM", false);
        }
        if hw.host_pci_devices > 0 {
            add(
                "--pciattach",
                format!("{} devices", hw.host_pci_devices),
                "not attached",
                false,
            );
        }
        if hw.usb_card_reader {
            add("EmulatedUSB/CardReader", "on".into(), "ignored", false);
        }
    }
    if !s.firmware.contains(&hw.firmware.kind) {
        add(
            "--firmware",
            hw.firmware.kind.as_xml().into(),
            "the machine cannot boot",
            true,
        );
    }
    if !s.chipsets.contains(&hw.chipset) {
        add(
            "--chipset",
            hw.chipset.as_xml().into(),
            "PIIX3 is emulated instead",
            false,
        );
    }
    let eff = effective_paravirt(hw.paravirt, &m.os_type);
    if !s.paravirt.contains(&eff) {
        add(
            "--paravirtprovider",
            eff.as_xml().into(),
            "no paravirtualization interface",
            false,
        );
    }
    if hw.hpet && !s.hpet {
        add("--hpet", "on".into(), "no HPET", false);
    }
    for p in hw.serial.iter().filter(|p| p.enabled) {
        if !s.uart_modes.contains(&p.mode) {
            add(
                &format!("--uartmode{}", p.slot + 1),
                p.mode.as_xml().into(),
                "the port stays disconnected",
                false,
            );
        }
        if !s.uart_types.contains(&p.uart_type) {
            add(
                &format!("--uarttype{}", p.slot + 1),
                p.uart_type.as_xml().into(),
                "a 16550A is emulated",
                false,
            );
        }
    }
    if !s.parallel && hw.parallel.iter().any(|p| p.enabled) {
        add("--lpt1", "on".into(), "no parallel port", false);
    }
    // A disk on an unmodelled controller blocks the start only when no modelled controller
    // has a disk the firmware could boot from instead.
    let has_disk = |c: &StorageController| c.devices.iter().any(|d| d.kind == DeviceType::HardDisk);
    let bootable_elsewhere = hw
        .storage
        .iter()
        .any(|c| s.storage_controllers.contains(&c.kind) && has_disk(c));
    for c in &hw.storage {
        let disks = has_disk(c);
        if !s.storage_controllers.contains(&c.kind) {
            add(
                &format!("storagectl \"{}\"", c.name),
                c.kind.as_xml().into(),
                if disks && !bootable_elsewhere {
                    "its disks are not available: the guest cannot boot from them"
                } else if disks {
                    "its disks are not available to the guest"
                } else {
                    "its drives are not available"
                },
                disks && !bootable_elsewhere,
            );
        }
    }
    for med in m.media.all() {
        let f = med.format.to_ascii_uppercase();
        if !s.storage_controllers.is_empty() && !s.disk_formats.contains(&f) && f != "RAW" {
            add(
                "medium format",
                med.format.clone(),
                "media of this format cannot be opened",
                true,
            );
        }
    }
    for a in hw.network.iter().filter(|a| a.enabled) {
        let n = a.slot + 1;
        if !s.nic_types.contains(&a.kind) {
            add(
                &format!("--nictype{n}"),
                a.kind.as_xml().into(),
                "the adapter is not present",
                false,
            );
        } else if let Some(el) = a.attachment.element() {
            if !s.net_attachments.iter().any(|x| x == el) {
                add(
                    &format!("--nic{n}"),
                    el.into(),
                    "the cable is unplugged",
                    false,
                );
            }
        }
    }
    if !s.graphics.contains(&hw.display.controller) {
        add(
            "--graphicscontroller",
            hw.display.controller.as_xml().into(),
            "VBoxVGA is emulated instead",
            false,
        );
    }
    if hw.display.accelerate_3d && !s.accelerate_3d {
        add("--accelerate3d", "on".into(), "no 3D acceleration", false);
    }
    if !s.pointing.contains(&hw.pointing) {
        add(
            "--mouse",
            hw.pointing.as_xml().into(),
            "a PS/2 mouse is emulated",
            false,
        );
    }
    if !s.keyboards.contains(&hw.keyboard) {
        add(
            "--keyboard",
            hw.keyboard.as_xml().into(),
            "a PS/2 keyboard is emulated",
            false,
        );
    }
    if !s.guest_additions {
        for f in &hw.shared_folders {
            add(
                "sharedfolder",
                f.name.clone(),
                "needs the Guest Additions services, which are not there yet: the share is not offered",
                false,
            );
        }
        if hw.clipboard != ClipboardMode::Disabled {
            add(
                "--clipboard-mode",
                hw.clipboard.as_xml().into(),
                "needs the Guest Additions services: no clipboard sharing",
                false,
            );
        }
        if hw.dnd != DndMode::Disabled {
            add(
                "--draganddrop",
                hw.dnd.as_xml().into(),
                "needs the Guest Additions services: no drag and drop",
                false,
            );
        }
    }
    if hw.audio.enabled && !s.audio {
        add(
            "--audio-enabled",
            hw.audio.controller.as_xml().into(),
            "no sound device",
            false,
        );
    }
    if !hw.usb_controllers.is_empty() && !s.usb {
        for u in &hw.usb_controllers {
            add("--usb", u.kind.as_xml().into(), "no USB controller", false);
        }
    }
    if hw.vrde.enabled && !s.vrde {
        add(
            "--vrde",
            "on".into(),
            "no remote display (use the novabox console)",
            false,
        );
    }
    if m.state_file.is_some() && !s.saved_state {
        add(
            "saved state",
            m.state_file.clone().unwrap_or_default(),
            "the machine boots fresh instead of resuming",
            false,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("080027BB3AD9"),
            Some([0x08, 0, 0x27, 0xbb, 0x3a, 0xd9])
        );
        assert_eq!(
            parse_mac("08:00:27:bb:3a:d9"),
            Some([0x08, 0, 0x27, 0xbb, 0x3a, 0xd9])
        );
        assert_eq!(parse_mac("08002"), None);
        assert_eq!(parse_mac("0800é7BB3AD9"), None);
    }
}
