//! Every enumerated attribute of the format: its XML spellings (including
//! legacy ones), whether it is matched case-insensitively, and the names
//! VBoxManage prints.

/// Implemented by every settings enumeration.
pub trait XmlEnum: Sized + Copy + 'static {
    /// What the value is, for error messages ("storage controller type").
    const WHAT: &'static str;
    /// All values.
    fn all() -> &'static [Self];
    /// The spelling VirtualBox writes.
    fn as_xml(self) -> &'static str;
    /// Parse a spelling (current or legacy).
    fn from_xml(s: &str) -> Option<Self>;
}

macro_rules! xml_enum {
    (
        $(#[$m:meta])* $name:ident, $what:literal, ci = $ci:expr,
        { $( $var:ident = $xml:literal $(| $alias:literal)* ),* $(,)? }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( #[doc = concat!("`", $xml, "`")] $var ),*
        }
        impl XmlEnum for $name {
            const WHAT: &'static str = $what;
            fn all() -> &'static [Self] {
                &[$($name::$var),*]
            }
            fn as_xml(self) -> &'static str {
                match self { $($name::$var => $xml),* }
            }
            fn from_xml(s: &str) -> Option<Self> {
                let eq = |a: &str, b: &str| if $ci { a.eq_ignore_ascii_case(b) } else { a == b };
                $( if eq(s, $xml) $(|| eq(s, $alias))* { return Some($name::$var); } )*
                None
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_xml())
            }
        }
    };
}

xml_enum!(/// `Firmware@type`.
    FirmwareType, "firmware type", ci = false,
    { Bios = "BIOS" | "1", Efi = "EFI" | "2", Efi32 = "EFI32", Efi64 = "EFI64", EfiDual = "EFIDUAL" });
xml_enum!(/// `Chipset@type`.
    ChipsetType, "chipset type", ci = false,
    { Piix3 = "PIIX3", Ich9 = "ICH9", ArmV8Virtual = "ARMv8Virtual" });
xml_enum!(/// `Iommu@type`.
    IommuType, "IOMMU type", ci = false,
    { None = "None", Automatic = "Automatic", Amd = "AMD", Intel = "Intel" });
xml_enum!(/// `Paravirt@provider`.
    ParavirtProvider, "paravirtualization provider", ci = false,
    { None = "None", Default = "Default", Legacy = "Legacy", Minimal = "Minimal", HyperV = "HyperV", Kvm = "KVM" });
xml_enum!(/// `Boot/Order@device`.
    BootDevice, "boot device", ci = false,
    { None = "None", Floppy = "Floppy", Dvd = "DVD", HardDisk = "HardDisk", Network = "Network" });
xml_enum!(/// `Display@controller` (case-insensitive).
    GraphicsController, "graphics controller type", ci = true,
    { None = "None", VBoxVga = "VBoxVGA", VmSvga = "VMSVGA", VBoxSvga = "VBoxSVGA", QemuRamFb = "QemuRamFB" });
xml_enum!(/// `HID@Pointing`.
    PointingHid, "pointing device type", ci = false,
    { None = "None", Ps2Mouse = "PS2Mouse", UsbMouse = "USBMouse", UsbTablet = "USBTablet", ComboMouse = "ComboMouse",
      UsbMultiTouch = "USBMultiTouch", UsbMtScreenPlusPad = "USBMTScreenPlusPad" });
xml_enum!(/// `HID@Keyboard`.
    KeyboardHid, "keyboard type", ci = false,
    { None = "None", Ps2Keyboard = "PS2Keyboard", UsbKeyboard = "USBKeyboard", ComboKeyboard = "ComboKeyboard" });
xml_enum!(/// `Adapter@type`.
    NicType, "network adapter type", ci = false,
    { Am79C970A = "Am79C970A", Am79C973 = "Am79C973", Am79C960 = "Am79C960", I82540Em = "82540EM", I82543Gc = "82543GC",
      I82545Em = "82545EM", I82583V = "82583V", I82574 = "82574", Virtio = "virtio", Ne1000 = "NE1000", Ne2000 = "NE2000",
      Wd8003 = "WD8003", Wd8013 = "WD8013", Elnk2 = "3C503", Elnk1 = "3C501", UsbNet = "usbnet" });
xml_enum!(/// `Adapter@promiscuousModePolicy`.
    PromiscPolicy, "promiscuous mode policy", ci = false,
    { Deny = "Deny", AllowNetwork = "AllowNetwork", AllowAll = "AllowAll" });
xml_enum!(/// `UART/Port@hostMode`.
    PortMode, "serial port mode", ci = false,
    { Disconnected = "Disconnected", HostPipe = "HostPipe", HostDevice = "HostDevice", RawFile = "RawFile", Tcp = "TCP" });
xml_enum!(/// `UART/Port@uartType`.
    UartType, "UART type", ci = false,
    { U16450 = "16450", U16550A = "16550A", U16750 = "16750" });
xml_enum!(/// `AudioAdapter@controller`.
    AudioController, "audio controller type", ci = false,
    { Ac97 = "AC97", Sb16 = "SB16", Hda = "HDA", VirtioSound = "Virtio-Sound" });
xml_enum!(/// `AudioAdapter@codec`.
    AudioCodec, "audio codec type", ci = false,
    { Stac9700 = "STAC9700", Ad1980 = "AD1980", Stac9221 = "STAC9221", Sb16 = "SB16" });
xml_enum!(/// `AudioAdapter@driver` (case-insensitive; unknown values mean the host default).
    AudioDriver, "audio driver", ci = true,
    { Null = "Null", Was = "WAS", WinMm = "WinMM", DirectSound = "DirectSound" | "DSOUND", Alsa = "ALSA", Pulse = "Pulse",
      Oss = "OSS", CoreAudio = "CoreAudio", SolAudio = "SolAudio", Mmpm = "MMPM", Default = "Default" });
xml_enum!(/// `Clipboard@mode` (also the legacy `Hardware@clipboardMode`).
    ClipboardMode, "clipboard mode", ci = false,
    { Disabled = "Disabled", HostToGuest = "HostToGuest", GuestToHost = "GuestToHost", Bidirectional = "Bidirectional" });
xml_enum!(/// `DragAndDrop@mode`.
    DndMode, "drag and drop mode", ci = false,
    { Disabled = "Disabled", HostToGuest = "HostToGuest", GuestToHost = "GuestToHost", Bidirectional = "Bidirectional" });
xml_enum!(/// `StorageController@type`.
    StorageControllerType, "storage controller type", ci = false,
    { Piix3 = "PIIX3", Piix4 = "PIIX4", Ich6 = "ICH6", Ahci = "AHCI", LsiLogic = "LsiLogic", BusLogic = "BusLogic",
      LsiLogicSas = "LsiLogicSas", I82078 = "I82078", Usb = "USB", NvMe = "NVMe", VirtioScsi = "VirtioSCSI" });
xml_enum!(/// `AttachedDevice@type`.
    DeviceType, "attached device type", ci = false,
    { HardDisk = "HardDisk", Dvd = "DVD", Floppy = "Floppy" });
xml_enum!(/// `HardDisk@type` (case-insensitive).
    MediumType, "medium type", ci = true,
    { Normal = "Normal", Immutable = "Immutable", Writethrough = "Writethrough", Shareable = "Shareable",
      Readonly = "Readonly", MultiAttach = "MultiAttach" });
xml_enum!(/// `USB/Controllers/Controller@type`.
    UsbControllerType, "USB controller type", ci = false,
    { Ohci = "OHCI", Ehci = "EHCI", Xhci = "XHCI" });
xml_enum!(/// `RemoteDisplay@authType` (case-insensitive).
    AuthType, "authentication type", ci = true,
    { Null = "Null", Guest = "Guest", External = "External" });
xml_enum!(/// `BootMenu@mode` (case-insensitive).
    BootMenuMode, "boot menu mode", ci = true,
    { Disabled = "Disabled", MenuOnly = "MenuOnly", MessageAndMenu = "MessageAndMenu" });
xml_enum!(/// `APIC@mode` in the firmware settings (case-insensitive).
    ApicMode, "APIC mode", ci = true,
    { Disabled = "Disabled", Apic = "APIC", X2Apic = "X2APIC" });
xml_enum!(/// `TrustedPlatformModule@type`.
    TpmType, "TPM type", ci = false,
    { None = "None", V1_2 = "v1_2", V2_0 = "v2_0", Host = "Host", Swtpm = "Swtpm" });

/// The bus a storage controller type sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBus {
    /// Parallel ATA.
    Ide,
    /// Serial ATA (AHCI).
    Sata,
    /// Parallel SCSI.
    Scsi,
    /// Serial attached SCSI.
    Sas,
    /// Floppy.
    Floppy,
    /// USB mass storage.
    Usb,
    /// NVMe over PCIe.
    PciE,
    /// virtio-scsi.
    VirtioScsi,
}

impl StorageControllerType {
    /// The bus of this controller.
    pub fn bus(self) -> StorageBus {
        use StorageControllerType::*;
        match self {
            Piix3 | Piix4 | Ich6 => StorageBus::Ide,
            Ahci => StorageBus::Sata,
            LsiLogic | BusLogic => StorageBus::Scsi,
            LsiLogicSas => StorageBus::Sas,
            I82078 => StorageBus::Floppy,
            Usb => StorageBus::Usb,
            NvMe => StorageBus::PciE,
            VirtioScsi => StorageBus::VirtioScsi,
        }
    }

    /// Ports the controller can have at most.
    pub fn max_ports(self) -> u32 {
        match self.bus() {
            StorageBus::Ide => 2,
            StorageBus::Sata => 30,
            StorageBus::Scsi => 16,
            StorageBus::Sas => 255,
            StorageBus::Floppy => 1,
            StorageBus::Usb => 8,
            StorageBus::PciE => 255,
            StorageBus::VirtioScsi => 256,
        }
    }

    /// Devices per port (master/slave on IDE, two drives on floppy).
    pub fn devices_per_port(self) -> u32 {
        match self.bus() {
            StorageBus::Ide | StorageBus::Floppy => 2,
            _ => 1,
        }
    }

    /// The name VBoxManage prints (`IntelAhci` for AHCI).
    pub fn vboxmanage_name(self) -> &'static str {
        match self {
            StorageControllerType::Ahci => "IntelAhci",
            other => other.as_xml(),
        }
    }
}

impl StorageBus {
    /// The `--add` name of `VBoxManage storagectl`.
    pub fn cli_name(self) -> &'static str {
        match self {
            StorageBus::Ide => "ide",
            StorageBus::Sata => "sata",
            StorageBus::Scsi => "scsi",
            StorageBus::Sas => "sas",
            StorageBus::Floppy => "floppy",
            StorageBus::Usb => "usb",
            StorageBus::PciE => "pcie",
            StorageBus::VirtioScsi => "virtio",
        }
    }

    /// Parse the `--add` name.
    pub fn from_cli(s: &str) -> Option<StorageBus> {
        Some(match s.to_ascii_lowercase().as_str() {
            "ide" => StorageBus::Ide,
            "sata" => StorageBus::Sata,
            "scsi" => StorageBus::Scsi,
            "sas" => StorageBus::Sas,
            "floppy" => StorageBus::Floppy,
            "usb" => StorageBus::Usb,
            "pcie" => StorageBus::PciE,
            "virtio" | "virtio-scsi" => StorageBus::VirtioScsi,
            _ => return None,
        })
    }

    /// The controller type VBoxManage picks for a bus when none is given.
    pub fn default_controller(self) -> StorageControllerType {
        match self {
            StorageBus::Ide => StorageControllerType::Piix4,
            StorageBus::Sata => StorageControllerType::Ahci,
            StorageBus::Scsi => StorageControllerType::LsiLogic,
            StorageBus::Sas => StorageControllerType::LsiLogicSas,
            StorageBus::Floppy => StorageControllerType::I82078,
            StorageBus::Usb => StorageControllerType::Usb,
            StorageBus::PciE => StorageControllerType::NvMe,
            StorageBus::VirtioScsi => StorageControllerType::VirtioScsi,
        }
    }
}

/// Parse any settings enum from text with VBoxManage's relaxed matching
/// (case-insensitive), for command-line options.
pub fn parse_cli<T: XmlEnum>(s: &str) -> Option<T> {
    T::all()
        .iter()
        .copied()
        .find(|v| v.as_xml().eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(
            GraphicsController::from_xml("vmsvga"),
            Some(GraphicsController::VmSvga)
        );
        assert_eq!(
            StorageControllerType::from_xml("ahci"),
            None,
            "case-sensitive"
        );
        assert_eq!(
            AudioDriver::from_xml("DSOUND"),
            Some(AudioDriver::DirectSound)
        );
        assert_eq!(FirmwareType::from_xml("1"), Some(FirmwareType::Bios));
        assert_eq!(
            MediumType::from_xml("immutable"),
            Some(MediumType::Immutable)
        );
        for v in NicType::all() {
            assert_eq!(NicType::from_xml(v.as_xml()), Some(*v));
        }
        assert_eq!(parse_cli::<NicType>("VIRTIO"), Some(NicType::Virtio));
    }
}
