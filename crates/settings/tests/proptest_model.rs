//! Property test: random valid machine models, written into a new machine
//! file (and into real corpus files), survive save and load unchanged.

mod common;

use proptest::prelude::*;
use settings::write::apply;
use settings::*;

fn pick<T: XmlEnum + std::fmt::Debug>() -> impl Strategy<Value = T> {
    (0..T::all().len()).prop_map(|i| T::all()[i])
}

fn name() -> impl Strategy<Value = String> {
    // Printable text including XML specials and non-ASCII.
    "[a-zA-Z0-9 <>&\"'äé_./-]{1,12}"
}

fn nic() -> impl Strategy<Value = NetworkAdapter> {
    (
        0u32..8,
        any::<bool>(),
        pick::<NicType>(),
        "[0-9A-F]{12}",
        any::<bool>(),
        0u32..5,
        0usize..6,
        "[a-z0-9]{1,8}",
    )
        .prop_map(|(slot, enabled, kind, mac, cable, prio, att, n)| {
            let mut a = NetworkAdapter::default_for(slot, SettingsVersion::v(19));
            a.enabled = enabled;
            a.kind = kind;
            a.mac = mac;
            a.cable = cable;
            a.boot_priority = prio;
            a.attachment = match att {
                0 => NetAttachment::Null,
                1 => NetAttachment::Nat,
                2 => NetAttachment::Bridged(n),
                3 => NetAttachment::Internal(n),
                4 => NetAttachment::HostOnly(n),
                _ => NetAttachment::NatNetwork(n),
            };
            a
        })
}

fn uart() -> impl Strategy<Value = SerialPort> {
    (
        0u32..4,
        any::<bool>(),
        any::<u16>(),
        any::<u8>(),
        pick::<PortMode>(),
        "[a-z/0-9:]{0,12}",
        any::<bool>(),
        pick::<UartType>(),
    )
        .prop_map(
            |(slot, enabled, io_base, irq, mode, path, server, uart_type)| SerialPort {
                slot,
                enabled,
                io_base,
                irq,
                mode,
                path: if mode == PortMode::Disconnected {
                    String::new()
                } else {
                    path
                },
                server,
                uart_type,
            },
        )
}

fn folder() -> impl Strategy<Value = SharedFolder> {
    (
        name(),
        "[a-zA-Z0-9 /\\\\:]{1,20}",
        any::<bool>(),
        any::<bool>(),
        "[a-z/]{0,8}",
    )
        .prop_map(
            |(name, host_path, writable, auto_mount, auto_mount_point)| SharedFolder {
                name,
                host_path,
                writable,
                auto_mount,
                auto_mount_point,
                symlink_policy: String::new(),
            },
        )
}

fn controller() -> impl Strategy<Value = StorageController> {
    (
        "[A-Za-z ]{1,10}",
        pick::<StorageControllerType>(),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(
            (0u32..2, 0u32..2, pick::<DeviceType>(), any::<bool>()),
            0..3,
        ),
    )
        .prop_map(|(name, kind, bootable, cache, devs)| {
            let mut devices: Vec<AttachedDevice> = Vec::new();
            for (port, device, dt, flag) in devs {
                let port = port.min(kind.max_ports() - 1);
                let device = device.min(kind.devices_per_port() - 1);
                if devices.iter().any(|d| d.port == port && d.device == device) {
                    continue;
                }
                // Hard disks need a medium; keep drives empty here.
                let dt = if dt == DeviceType::HardDisk {
                    DeviceType::Dvd
                } else {
                    dt
                };
                devices.push(AttachedDevice {
                    kind: dt,
                    port,
                    device,
                    medium: None,
                    host_drive: None,
                    passthrough: false,
                    temp_eject: flag,
                    non_rotational: false,
                    discard: false,
                    hotpluggable: flag,
                    bandwidth_group: String::new(),
                    pos: Default::default(),
                });
            }
            StorageController {
                name: name.trim().to_string() + "C",
                kind,
                port_count: kind.max_ports().min(2),
                instance: 0,
                use_host_io_cache: cache,
                bootable,
                devices,
            }
        })
}

#[derive(Debug, Clone)]
struct Changes {
    mem: u64,
    cpus: u32,
    fw: FirmwareType,
    chipset: ChipsetType,
    boot: [BootDevice; 4],
    pv: ParavirtProvider,
    clip: ClipboardMode,
    dnd: DndMode,
    gfx: GraphicsController,
    vram: u32,
    rtc: bool,
    ioapic: bool,
    pae: bool,
    long_mode: Option<bool>,
    nics: Vec<NetworkAdapter>,
    uarts: Vec<SerialPort>,
    folders: Vec<SharedFolder>,
    ctls: Vec<StorageController>,
    nm: String,
    desc: String,
    vrde: bool,
    port: String,
}

impl Changes {
    fn apply_to(&self, m: &mut Machine) {
        let hw = &mut m.hardware;
        m.name = self.nm.clone();
        m.description = self.desc.clone();
        hw.memory_mb = self.mem;
        hw.cpu.count = self.cpus;
        hw.cpu.pae = self.pae;
        hw.cpu.long_mode = self.long_mode;
        hw.firmware.kind = self.fw;
        hw.firmware.ioapic = self.ioapic;
        hw.chipset = self.chipset;
        hw.boot_order = self.boot;
        hw.paravirt = self.pv;
        hw.clipboard = self.clip;
        hw.dnd = self.dnd;
        hw.display.controller = self.gfx;
        hw.display.vram_mb = self.vram;
        hw.rtc_utc = self.rtc;
        hw.vrde.enabled = self.vrde;
        hw.vrde.properties.retain(|(n, _)| n != "TCP/Ports");
        hw.vrde
            .properties
            .push(("TCP/Ports".into(), self.port.clone()));
        for n in &self.nics {
            hw.network.retain(|a| a.slot != n.slot);
            hw.network.push(n.clone());
        }
        hw.network.sort_by_key(|a| a.slot);
        for u in &self.uarts {
            hw.serial.retain(|p| p.slot != u.slot);
            hw.serial.push(u.clone());
        }
        hw.serial.sort_by_key(|p| p.slot);
        for f in &self.folders {
            if !hw.shared_folders.iter().any(|x| x.name == f.name) {
                hw.shared_folders.push(f.clone());
            }
        }
        for c in &self.ctls {
            if !hw.storage.iter().any(|x| x.name == c.name) {
                hw.storage.push(c.clone());
            }
        }
    }
}

prop_compose! {
    fn changes()(
        mem in 4u64..65536,
        cpus in 1u32..=64,
        fw in pick::<FirmwareType>(),
        chipset in prop_oneof![Just(ChipsetType::Piix3), Just(ChipsetType::Ich9)],
        boot in proptest::array::uniform4(pick::<BootDevice>()),
        pv in pick::<ParavirtProvider>(),
        clip in pick::<ClipboardMode>(),
        dnd in pick::<DndMode>(),
        gfx in prop_oneof![Just(GraphicsController::VBoxVga), Just(GraphicsController::VmSvga), Just(GraphicsController::VBoxSvga), Just(GraphicsController::None)],
        vram in 0u32..=256,
        rtc in any::<bool>(),
        ioapic in any::<bool>(),
        pae in any::<bool>(),
        long_mode in proptest::option::of(any::<bool>()),
        nics in proptest::collection::vec(nic(), 0..4),
        uarts in proptest::collection::vec(uart(), 0..4),
        folders in proptest::collection::vec(folder(), 0..3),
        ctls in proptest::collection::vec(controller(), 0..3),
        nm in name(),
        desc in "[a-z <&>\n]{0,20}",
        vrde in any::<bool>(),
        port in "[0-9]{1,5}",
    ) -> Changes {
        Changes { mem, cpus, fw, chipset, boot, pv, clip, dnd, gfx, vram, rtc, ioapic, pae, long_mode, nics, uarts, folders, ctls, nm, desc, vrde, port }
    }
}

fn check(file: &mut MachineFile, change: &Changes) -> std::result::Result<(), TestCaseError> {
    let mut m = file.machine.clone();
    change.apply_to(&mut m);
    apply(file, &m).map_err(|e| TestCaseError::fail(format!("apply: {e}")))?;
    let bytes = file.to_bytes();
    let back = MachineFile::from_bytes(&file.path, &bytes).map_err(|e| {
        TestCaseError::fail(format!("reload: {e}\n{}", String::from_utf8_lossy(&bytes)))
    })?;
    prop_assert_eq!(&back.machine, &m);
    // And a second save of the loaded file is byte-identical.
    let mut again = back.clone();
    prop_assert_eq!(again.to_bytes(), bytes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn new_machine_models_survive_save_and_load(c in changes()) {
        let mut f = settings::create::new_machine(std::path::Path::new("/vms/t/t.vbox"), "t", "Other", None).unwrap();
        check(&mut f, &c)?;
    }

    #[test]
    fn corpus_models_survive_save_and_load(c in changes(), idx in 0usize..22) {
        let files = common::corpus_files();
        let p = &files[idx % files.len()];
        let mut f = MachineFile::load(p).unwrap();
        check(&mut f, &c)?;
    }
}
