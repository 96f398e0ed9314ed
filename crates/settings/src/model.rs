//! The typed machine model: every setting with VirtualBox's default already
//! applied for the file's settings version, so consumers never see "absent".

use crate::enums::*;
use crate::values::Uuid;
use crate::xml::Pos;

/// Where an element was in the source file. Positions are for messages
/// only: they are not part of a setting's value, so two models that differ
/// only in where things were written compare equal.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct SrcPos(pub Pos);

impl PartialEq for SrcPos {
    fn eq(&self, _other: &SrcPos) -> bool {
        true
    }
}

/// A machine definition (the `Machine` element and everything in it).
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Machine UUID.
    pub uuid: Uuid,
    /// Display name.
    pub name: String,
    /// Guest OS type id (legacy pre-1.5 ids already renamed).
    pub os_type: String,
    /// Free-text description.
    pub description: String,
    /// Saved-state file (present ⇒ the machine is in Saved state).
    pub state_file: Option<String>,
    /// UUID of the current snapshot.
    pub current_snapshot: Option<Uuid>,
    /// Snapshot folder as written (default `Snapshots`).
    pub snapshot_folder: String,
    /// `lastStateChange` as written.
    pub last_state_change: Option<String>,
    /// `currentStateModified` (default true).
    pub current_state_modified: bool,
    /// The machine was running when the host died.
    pub aborted: bool,
    /// Group paths (default `/`).
    pub groups: Vec<String>,
    /// Current hardware.
    pub hardware: Hardware,
    /// The per-machine media registry (1.11+).
    pub media: MediaRegistry,
    /// `ExtraData` name/value pairs in file order.
    pub extra_data: Vec<(String, String)>,
    /// Root of the snapshot tree.
    pub snapshot: Option<Box<Snapshot>>,
    /// Teleporter enabled (shown by showvminfo).
    pub teleporter: Teleporter,
    /// Autostart settings.
    pub autostart: Autostart,
    /// Default frontend (`Frontend/Default@type`), empty = GUI.
    pub default_frontend: String,
}

/// `Teleporter` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Teleporter {
    /// Enabled.
    pub enabled: bool,
    /// TCP port.
    pub port: u32,
    /// Address.
    pub address: String,
    /// Password (hashed or clear, as stored).
    pub password: String,
}

/// `Autostart` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Autostart {
    /// Start with the host.
    pub enabled: bool,
    /// Delay in seconds.
    pub delay: u32,
}

/// A snapshot and its subtree.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Snapshot UUID.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// `timeStamp` as written.
    pub timestamp: String,
    /// Saved state of an online snapshot.
    pub state_file: Option<String>,
    /// Description.
    pub description: String,
    /// Hardware at the time of the snapshot.
    pub hardware: Hardware,
    /// Child snapshots (branches).
    pub children: Vec<Snapshot>,
}

/// Everything under `Hardware` (plus the platform items that moved out of it
/// in 1.20, and the storage controllers wherever they sit).
#[derive(Debug, Clone, PartialEq)]
pub struct Hardware {
    /// Hardware UUID shown to the guest (absent ⇒ the machine UUID).
    pub hardware_uuid: Option<Uuid>,
    /// CPU settings.
    pub cpu: Cpu,
    /// RAM in MiB.
    pub memory_mb: u64,
    /// Page fusion.
    pub page_fusion: bool,
    /// Firmware/BIOS settings.
    pub firmware: Firmware,
    /// Pointing device.
    pub pointing: PointingHid,
    /// Keyboard.
    pub keyboard: KeyboardHid,
    /// Chipset.
    pub chipset: ChipsetType,
    /// IOMMU.
    pub iommu: IommuType,
    /// HPET.
    pub hpet: bool,
    /// Paravirtualization provider.
    pub paravirt: ParavirtProvider,
    /// Paravirtualization debug string.
    pub paravirt_debug: String,
    /// Boot order, positions 1–4.
    pub boot_order: [BootDevice; 4],
    /// Graphics adapter.
    pub display: Display,
    /// Remote display (VRDE).
    pub vrde: Vrde,
    /// USB controllers.
    pub usb_controllers: Vec<UsbController>,
    /// Network adapters explicitly present in the file, by slot. Slots not
    /// listed are disabled with the version's defaults
    /// (see [`Hardware::adapter`]).
    pub network: Vec<NetworkAdapter>,
    /// Serial ports present in the file.
    pub serial: Vec<SerialPort>,
    /// Parallel ports present in the file.
    pub parallel: Vec<ParallelPort>,
    /// Audio adapter.
    pub audio: AudioAdapter,
    /// RTC in UTC (else local time).
    pub rtc_utc: bool,
    /// Shared folders.
    pub shared_folders: Vec<SharedFolder>,
    /// Clipboard mode.
    pub clipboard: ClipboardMode,
    /// Clipboard file transfers.
    pub clipboard_file_transfers: bool,
    /// Drag and drop mode.
    pub dnd: DndMode,
    /// Memory balloon in MiB.
    pub balloon_mb: u64,
    /// Persistent guest properties.
    pub guest_properties: Vec<GuestProperty>,
    /// Host I/O cache.
    pub io_cache: bool,
    /// Host I/O cache size in MiB.
    pub io_cache_mb: u64,
    /// Bandwidth groups.
    pub bandwidth_groups: Vec<BandwidthGroup>,
    /// TPM.
    pub tpm: TpmType,
    /// Storage controllers with their attachments.
    pub storage: Vec<StorageController>,
    /// Host PCI passthrough devices present (count only; preserved verbatim).
    pub host_pci_devices: usize,
    /// Emulated USB card reader.
    pub usb_card_reader: bool,
    /// USB device filters present (count; preserved verbatim).
    pub usb_filters: usize,
    /// Video capture / recording enabled.
    pub recording: bool,
}

/// CPU settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// Virtual CPU count.
    pub count: u32,
    /// CPU hot-plug.
    pub hotplug: bool,
    /// Execution cap in percent.
    pub execution_cap: u32,
    /// CPUID portability level.
    pub cpuid_portability: u32,
    /// CPU profile name.
    pub profile: String,
    /// VT-x/AMD-V.
    pub hw_virt: bool,
    /// Nested paging.
    pub nested_paging: bool,
    /// VPID.
    pub vpid: bool,
    /// Unrestricted execution.
    pub ux: bool,
    /// Large pages.
    pub large_pages: bool,
    /// Force hardware virtualization.
    pub hw_virt_force: bool,
    /// PAE/NX.
    pub pae: bool,
    /// Long mode: `None` = follow the guest OS type.
    pub long_mode: Option<bool>,
    /// Triple-fault reset.
    pub triple_fault_reset: bool,
    /// APIC.
    pub apic: bool,
    /// x2APIC.
    pub x2apic: bool,
    /// Nested hardware virtualization.
    pub nested_hw_virt: bool,
    /// AMD-V virtualized VMSAVE/VMLOAD.
    pub virt_vmsave_vmload: bool,
    /// CPUID overrides (leaf, subleaf, eax, ebx, ecx, edx).
    pub cpuid_leaves: Vec<[u32; 6]>,
}

/// Firmware settings (the `BIOS` element before 1.20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    /// BIOS or EFI flavour.
    pub kind: FirmwareType,
    /// ACPI.
    pub acpi: bool,
    /// I/O APIC.
    pub ioapic: bool,
    /// APIC mode.
    pub apic_mode: ApicMode,
    /// Boot menu mode.
    pub boot_menu: BootMenuMode,
    /// Logo fade in.
    pub logo_fade_in: bool,
    /// Logo fade out.
    pub logo_fade_out: bool,
    /// Logo display time in ms.
    pub logo_display_time: u32,
    /// Guest clock offset in ms.
    pub time_offset_ms: i64,
    /// PXE debug.
    pub pxe_debug: bool,
    /// NVRAM file as written (None ⇒ `<VM>.nvram`).
    pub nvram_path: Option<String>,
    /// SMBIOS UUID little endian.
    pub smbios_uuid_le: bool,
}

/// Graphics adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Display {
    /// Controller type.
    pub controller: GraphicsController,
    /// Video RAM in MiB.
    pub vram_mb: u32,
    /// Number of monitors.
    pub monitors: u32,
    /// 3D acceleration.
    pub accelerate_3d: bool,
    /// 2D video acceleration.
    pub accelerate_2d: bool,
}

/// Remote display (VRDE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrde {
    /// Enabled (default depends on version).
    pub enabled: bool,
    /// Authentication type.
    pub auth_type: AuthType,
    /// Authentication timeout in ms.
    pub auth_timeout: u32,
    /// Allow multiple connections.
    pub multi_connection: bool,
    /// Reuse single connection.
    pub reuse_single_connection: bool,
    /// VRDE properties (`TCP/Ports`, `TCP/Address`, …) in file order.
    pub properties: Vec<(String, String)>,
}

impl Vrde {
    /// A VRDE property by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A USB controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbController {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: UsbControllerType,
}

/// How a network adapter is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetAttachment {
    /// Not attached.
    Null,
    /// NAT.
    Nat,
    /// Bridged to a host interface.
    Bridged(String),
    /// Internal network.
    Internal(String),
    /// Host-only adapter.
    HostOnly(String),
    /// Host-only network object (1.19).
    HostOnlyNetwork(String),
    /// NAT network.
    NatNetwork(String),
    /// Generic driver.
    Generic(String),
    /// Cloud network.
    Cloud(String),
}

impl NetAttachment {
    /// The element name VirtualBox writes for this attachment.
    pub fn element(&self) -> Option<&'static str> {
        Some(match self {
            NetAttachment::Null => return None,
            NetAttachment::Nat => "NAT",
            NetAttachment::Bridged(_) => "BridgedInterface",
            NetAttachment::Internal(_) => "InternalNetwork",
            NetAttachment::HostOnly(_) => "HostOnlyInterface",
            NetAttachment::HostOnlyNetwork(_) => "HostOnlyNetwork",
            NetAttachment::NatNetwork(_) => "NATNetwork",
            NetAttachment::Generic(_) => "GenericInterface",
            NetAttachment::Cloud(_) => "CloudNetwork",
        })
    }

    /// The name/driver attribute value, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            NetAttachment::Null | NetAttachment::Nat => None,
            NetAttachment::Bridged(n)
            | NetAttachment::Internal(n)
            | NetAttachment::HostOnly(n)
            | NetAttachment::HostOnlyNetwork(n)
            | NetAttachment::NatNetwork(n)
            | NetAttachment::Generic(n)
            | NetAttachment::Cloud(n) => Some(n),
        }
    }
}

/// A NAT port-forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRule {
    /// Rule name.
    pub name: String,
    /// TCP (else UDP).
    pub tcp: bool,
    /// Host bind address (empty = all).
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
    /// Guest address (empty = DHCP address).
    pub guest_ip: String,
    /// Guest port.
    pub guest_port: u16,
}

/// A network adapter slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAdapter {
    /// Slot (0-based; VBoxManage's nic1 is slot 0).
    pub slot: u32,
    /// Enabled.
    pub enabled: bool,
    /// Emulated device.
    pub kind: NicType,
    /// MAC address, 12 hex digits (may be empty).
    pub mac: String,
    /// Cable connected.
    pub cable: bool,
    /// Reported speed in kbit/s (0 = default).
    pub speed: u32,
    /// Promiscuous mode policy.
    pub promisc: PromiscPolicy,
    /// PXE boot priority.
    pub boot_priority: u32,
    /// Packet tracing.
    pub trace: bool,
    /// Trace file.
    pub trace_file: String,
    /// Bandwidth group name.
    pub bandwidth_group: String,
    /// Attachment.
    pub attachment: NetAttachment,
    /// NAT guest network (CIDR; empty = default).
    pub nat_network: String,
    /// NAT port forwarding rules.
    pub nat_rules: Vec<NatRule>,
}

impl NetworkAdapter {
    /// A slot that is not in the file: disabled, with the version's defaults.
    pub fn default_for(slot: u32, v: crate::SettingsVersion) -> NetworkAdapter {
        NetworkAdapter {
            slot,
            enabled: false,
            kind: if v.minor >= 16 {
                NicType::Am79C973
            } else {
                NicType::Am79C970A
            },
            mac: String::new(),
            cable: v.minor >= 16,
            speed: 0,
            promisc: PromiscPolicy::Deny,
            boot_priority: 0,
            trace: false,
            trace_file: String::new(),
            bandwidth_group: String::new(),
            attachment: NetAttachment::Null,
            nat_network: String::new(),
            nat_rules: Vec::new(),
        }
    }
}

/// A serial port slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPort {
    /// Slot 0–3 (COM1–COM4).
    pub slot: u32,
    /// Enabled.
    pub enabled: bool,
    /// I/O base port.
    pub io_base: u16,
    /// IRQ.
    pub irq: u8,
    /// Host side.
    pub mode: PortMode,
    /// Pipe/socket/device/file path or TCP `host:port`.
    pub path: String,
    /// Act as server (pipe and TCP).
    pub server: bool,
    /// Emulated UART chip.
    pub uart_type: UartType,
}

impl SerialPort {
    /// The defaults of a slot not listed in the file.
    pub fn default_for(slot: u32) -> SerialPort {
        let (io_base, irq) = match slot {
            1 => (0x2f8, 3),
            2 => (0x3e8, 4),
            3 => (0x2e8, 3),
            _ => (0x3f8, 4),
        };
        SerialPort {
            slot,
            enabled: false,
            io_base,
            irq,
            mode: PortMode::Disconnected,
            path: String::new(),
            server: false,
            uart_type: UartType::U16550A,
        }
    }
}

/// A parallel port slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParallelPort {
    /// Slot 0–1.
    pub slot: u32,
    /// Enabled.
    pub enabled: bool,
    /// I/O base.
    pub io_base: u16,
    /// IRQ.
    pub irq: u8,
    /// Host device path.
    pub path: String,
}

/// Audio adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioAdapter {
    /// Enabled.
    pub enabled: bool,
    /// Controller.
    pub controller: AudioController,
    /// Codec.
    pub codec: AudioCodec,
    /// Host driver.
    pub driver: AudioDriver,
    /// Input enabled.
    pub enabled_in: bool,
    /// Output enabled.
    pub enabled_out: bool,
}

/// A shared folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFolder {
    /// Share name seen by the guest.
    pub name: String,
    /// Host path, verbatim.
    pub host_path: String,
    /// Writable.
    pub writable: bool,
    /// Auto-mount.
    pub auto_mount: bool,
    /// Auto-mount point.
    pub auto_mount_point: String,
    /// Symlink policy as written (1.20), empty = host default.
    pub symlink_policy: String,
}

/// A guest property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestProperty {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Timestamp in ns since the epoch.
    pub timestamp: u64,
    /// Flags as written.
    pub flags: String,
}

/// A bandwidth group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandwidthGroup {
    /// Name.
    pub name: String,
    /// `Disk` or `Network`.
    pub kind: String,
    /// Limit in bytes per second.
    pub max_bytes_per_sec: u64,
}

/// A storage controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageController {
    /// Name (unique).
    pub name: String,
    /// Type.
    pub kind: StorageControllerType,
    /// Ports in use.
    pub port_count: u32,
    /// Instance number.
    pub instance: u32,
    /// Host I/O cache.
    pub use_host_io_cache: bool,
    /// Bootable.
    pub bootable: bool,
    /// Attached devices.
    pub devices: Vec<AttachedDevice>,
}

/// A device attached to a controller port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedDevice {
    /// Device type.
    pub kind: DeviceType,
    /// Port.
    pub port: u32,
    /// Device on the port.
    pub device: u32,
    /// Medium UUID (None = empty drive).
    pub medium: Option<Uuid>,
    /// Host drive instead of an image.
    pub host_drive: Option<String>,
    /// DVD passthrough.
    pub passthrough: bool,
    /// Temporary eject.
    pub temp_eject: bool,
    /// Report as SSD.
    pub non_rotational: bool,
    /// Discard support.
    pub discard: bool,
    /// Hot-pluggable.
    pub hotpluggable: bool,
    /// Bandwidth group.
    pub bandwidth_group: String,
    /// Where the element is (for error messages).
    pub pos: SrcPos,
}

/// A medium in a media registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Medium {
    /// UUID.
    pub uuid: Uuid,
    /// Location as written (backslashes turned into slashes).
    pub location: String,
    /// Format (`VDI`, `VMDK`, `RAW`, …).
    pub format: String,
    /// Type (base disks; children inherit).
    pub kind: MediumType,
    /// Differencing image reset on every power-on.
    pub auto_reset: bool,
    /// Description.
    pub description: String,
    /// Differencing children.
    pub children: Vec<Medium>,
    /// Where the element is.
    pub pos: SrcPos,
}

/// The three media lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaRegistry {
    /// Hard disks (trees of differencing images).
    pub hard_disks: Vec<Medium>,
    /// DVD images.
    pub dvd_images: Vec<Medium>,
    /// Floppy images.
    pub floppy_images: Vec<Medium>,
}

impl MediaRegistry {
    /// Find a medium by UUID; returns it with its ancestors (parent first…
    /// root last) for differencing images.
    pub fn find(&self, uuid: &Uuid) -> Option<(&Medium, Vec<&Medium>)> {
        fn walk<'a>(
            list: &'a [Medium],
            uuid: &Uuid,
            chain: &mut Vec<&'a Medium>,
        ) -> Option<&'a Medium> {
            for m in list {
                if &m.uuid == uuid {
                    return Some(m);
                }
                chain.push(m);
                if let Some(found) = walk(&m.children, uuid, chain) {
                    return Some(found);
                }
                chain.pop();
            }
            None
        }
        for list in [&self.hard_disks, &self.dvd_images, &self.floppy_images] {
            let mut chain = Vec::new();
            if let Some(m) = walk(list, uuid, &mut chain) {
                chain.reverse();
                return Some((m, chain));
            }
        }
        None
    }

    /// All media (flattened, depth first).
    pub fn all(&self) -> Vec<&Medium> {
        fn walk<'a>(list: &'a [Medium], out: &mut Vec<&'a Medium>) {
            for m in list {
                out.push(m);
                walk(&m.children, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.hard_disks, &mut out);
        walk(&self.dvd_images, &mut out);
        walk(&self.floppy_images, &mut out);
        out
    }
}

impl Hardware {
    /// The adapter in a slot, with defaults when the slot is not listed.
    pub fn adapter(&self, slot: u32, v: crate::SettingsVersion) -> NetworkAdapter {
        self.network
            .iter()
            .find(|a| a.slot == slot)
            .cloned()
            .unwrap_or_else(|| NetworkAdapter::default_for(slot, v))
    }

    /// The serial port in a slot, with defaults when not listed.
    pub fn serial_port(&self, slot: u32) -> SerialPort {
        self.serial
            .iter()
            .find(|p| p.slot == slot)
            .cloned()
            .unwrap_or_else(|| SerialPort::default_for(slot))
    }

    /// Number of NIC slots for the chipset (8 for PIIX3, 36 for ICH9).
    pub fn max_nics(&self) -> u32 {
        if self.chipset == ChipsetType::Ich9 {
            36
        } else {
            8
        }
    }
}

impl Machine {
    /// Walk all snapshots depth first.
    pub fn snapshots(&self) -> Vec<&Snapshot> {
        fn walk<'a>(s: &'a Snapshot, out: &mut Vec<&'a Snapshot>) {
            out.push(s);
            for c in &s.children {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        if let Some(s) = &self.snapshot {
            walk(s, &mut out);
        }
        out
    }
}
