//! VBoxManage-style machine commands: showvminfo, list, createvm, modifyvm,
//! storagectl, storageattach, sharedfolder, registervm, unregistervm.
//!
//! A machine argument is a path to a `.vbox` file or the name/UUID of a
//! machine registered in the user's `VirtualBox.xml`. Every write loads the
//! file fresh, changes the model, writes only the differences back into the
//! lossless tree and saves safely; on any error nothing is written.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use settings::config::compatibility_report;
use settings::enums::{parse_cli, StorageBus, XmlEnum};
use settings::info::{showvminfo, InfoContext, InfoFormat};
use settings::registry::{user_home, GlobalRegistry};
use settings::resolve::RegistryRef;
use settings::{
    AttachedDevice, BootDevice, ClipboardMode, DeviceType, DndMode, FirmwareType,
    GraphicsController, KeyboardHid, MachineFile, Medium, MediumType, NetAttachment,
    NetworkAdapter, NicType, ParavirtProvider, PointingHid, PortMode, SerialPort, SharedFolder,
    StorageController, UartType, UsbController, UsbControllerType, Uuid,
};

/// The machine-definition commands.
#[derive(Subcommand, Debug)]
pub enum VboxCommand {
    /// Show a machine's configuration (as `VBoxManage showvminfo`).
    Showvminfo(ShowArgs),
    /// List registered machines or media: `vms`, `hdds`, `dvds`.
    List(ListArgs),
    /// Create a new machine (as `VBoxManage createvm`).
    Createvm(CreateArgs),
    /// Change a machine's settings (as `VBoxManage modifyvm`).
    Modifyvm(RawArgs),
    /// Add, change or remove a storage controller.
    Storagectl(RawArgs),
    /// Attach or detach a medium.
    Storageattach(RawArgs),
    /// Add or remove a shared folder: `add|remove VM --name N [...]`.
    Sharedfolder(RawArgs),
    /// Register an existing `.vbox` in VirtualBox.xml.
    Registervm(RegisterArgs),
    /// Remove a machine from VirtualBox.xml (`--delete` also deletes its settings file).
    Unregistervm(UnregisterArgs),
}

/// showvminfo options.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Machine: path to a .vbox, or a registered name or UUID.
    pub vm: String,
    /// key="value" lines as VBoxManage prints them.
    #[arg(long)]
    pub machinereadable: bool,
    /// The same keys and values as one JSON object.
    #[arg(long, conflicts_with = "machinereadable")]
    pub json: bool,
    /// Print the compatibility report: settings present but not supported yet.
    #[arg(long)]
    pub compat: bool,
    /// Accepted for VBoxManage compatibility (details are always shown).
    #[arg(long)]
    pub details: bool,
}

/// list options.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// What to list: vms, hdds, dvds, floppies.
    pub what: String,
}

/// createvm options.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Machine name.
    #[arg(long)]
    pub name: String,
    /// Guest OS type id.
    #[arg(long, default_value = "Other")]
    pub ostype: String,
    /// Folder under which `<name>/<name>.vbox` is created.
    #[arg(long)]
    pub basefolder: Option<PathBuf>,
    /// Register the machine in VirtualBox.xml.
    #[arg(long)]
    pub register: bool,
    /// Use this UUID instead of a random one.
    #[arg(long)]
    pub uuid: Option<String>,
}

/// registervm options.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Path to the .vbox file.
    pub file: PathBuf,
}

/// unregistervm options.
#[derive(Args, Debug)]
pub struct UnregisterArgs {
    /// Machine name or UUID.
    pub vm: String,
    /// Also delete the settings file (and its -prev copy).
    #[arg(long)]
    pub delete: bool,
}

/// Options parsed by hand, VBoxManage style (`--nic1`, `--uartmode2 ...`).
#[derive(Args, Debug)]
pub struct RawArgs {
    /// Machine and options.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    pub args: Vec<String>,
}

/// Run a machine-definition command; returns the exit status.
pub fn run(cmd: VboxCommand) -> Result<i32> {
    match cmd {
        VboxCommand::Showvminfo(a) => show(a),
        VboxCommand::List(a) => list(a),
        VboxCommand::Createvm(a) => createvm(a),
        VboxCommand::Modifyvm(a) => modifyvm(a.args),
        VboxCommand::Storagectl(a) => storagectl(a.args),
        VboxCommand::Storageattach(a) => storageattach(a.args),
        VboxCommand::Sharedfolder(a) => sharedfolder(a.args),
        VboxCommand::Registervm(a) => registervm(a),
        VboxCommand::Unregistervm(a) => unregistervm(a),
    }
}

fn registry() -> Result<GlobalRegistry> {
    Ok(GlobalRegistry::open(&user_home())?)
}

/// A path (anything that names an existing file, or ends in .vbox/.xml),
/// else a registered machine name or UUID.
fn locate(vm: &str) -> Result<PathBuf> {
    let p = Path::new(vm);
    if p.exists() || vm.ends_with(".vbox") || vm.ends_with(".xml") || vm.contains('/') {
        return Ok(p.to_path_buf());
    }
    Ok(registry()?.find(vm)?)
}

fn load(vm: &str) -> Result<MachineFile> {
    Ok(MachineFile::load(&locate(vm)?)?)
}

/// The other registries VirtualBox would search for media: the global
/// one and those of the other registered machines.
struct Registries {
    global: Option<GlobalRegistry>,
    home: PathBuf,
    others: Vec<(MachineFile, PathBuf)>,
}

impl Registries {
    fn load(exclude: &Path) -> Registries {
        let global = registry().ok();
        let home = user_home();
        let mut others = Vec::new();
        if let Some(g) = &global {
            for e in &g.machines {
                let p = g.settings_path(e);
                if p == exclude {
                    continue;
                }
                if let Ok(f) = MachineFile::load(&p) {
                    let folder = f.machine_folder();
                    others.push((f, folder));
                }
            }
        }
        Registries {
            global,
            home,
            others,
        }
    }

    fn refs(&self) -> Vec<RegistryRef<'_>> {
        let mut v = Vec::new();
        if let Some(g) = &self.global {
            v.push(RegistryRef {
                registry: &g.media,
                base: &self.home,
                label: "global (VirtualBox.xml)",
            });
        }
        for (f, folder) in &self.others {
            v.push(RegistryRef {
                registry: &f.machine.media,
                base: folder,
                label: "another machine",
            });
        }
        v
    }
}

fn show(a: ShowArgs) -> Result<i32> {
    let file = load(&a.vm)?;
    let regs = Registries::load(&file.path);
    let refs = regs.refs();
    if a.compat {
        // What `run` would do: media must resolve; then every unsupported setting.
        settings::config::MachineConfig::from_file(&file, &refs)?;
        let report = compatibility_report(&file.machine, &crate::run_cmd::supported_features());
        if report.is_empty() {
            println!("All settings of '{}' are supported.", file.machine.name);
        } else {
            println!(
                "Settings of '{}' that novabox does not support yet:",
                file.machine.name
            );
            for i in report {
                println!("  {i}");
            }
        }
        return Ok(0);
    }
    let ctx = InfoContext {
        file: &file,
        registries: refs,
        running: settings::lock::running_pid(&file.path).is_some(),
    };
    let fmt = if a.json {
        InfoFormat::Json
    } else if a.machinereadable {
        InfoFormat::MachineReadable
    } else {
        InfoFormat::Human
    };
    print!("{}", showvminfo(&ctx, fmt));
    if ctx.running && !a.json {
        crate::control_cmds::print_additions_info(&file, a.machinereadable);
    }
    Ok(0)
}

fn list(a: ListArgs) -> Result<i32> {
    let reg = registry()?;
    match a.what.as_str() {
        "vms" => {
            for e in &reg.machines {
                match MachineFile::load(&reg.settings_path(e)) {
                    Ok(f) => println!("\"{}\" {{{}}}", f.machine.name, e.uuid),
                    Err(_) => println!("\"<inaccessible>\" {{{}}}", e.uuid),
                }
            }
        }
        "hdds" | "dvds" | "floppies" => {
            let home = reg.home();
            let mut lists: Vec<(Vec<Medium>, PathBuf)> = Vec::new();
            let pick = |r: &settings::MediaRegistry| match a.what.as_str() {
                "hdds" => r.hard_disks.clone(),
                "dvds" => r.dvd_images.clone(),
                _ => r.floppy_images.clone(),
            };
            lists.push((pick(&reg.media), home.clone()));
            for e in &reg.machines {
                if let Ok(f) = MachineFile::load(&reg.settings_path(e)) {
                    lists.push((pick(&f.machine.media), f.machine_folder()));
                }
            }
            let mut seen = std::collections::HashSet::new();
            for (list, base) in &lists {
                for m in list {
                    print_medium(m, None, base, &a.what, &mut seen);
                }
            }
        }
        other => bail!("unknown list type '{other}' (expected vms, hdds, dvds or floppies)"),
    }
    Ok(0)
}

fn print_medium(
    m: &Medium,
    parent: Option<&Uuid>,
    base: &Path,
    what: &str,
    seen: &mut std::collections::HashSet<Uuid>,
) {
    if !seen.insert(m.uuid) {
        return;
    }
    let path = settings::resolve::resolve_location(&m.location, base);
    println!("UUID:           {}", m.uuid);
    if what == "hdds" {
        println!(
            "Parent UUID:    {}",
            parent
                .map(|p| p.to_string())
                .unwrap_or_else(|| "base".into())
        );
    }
    println!(
        "State:          {}",
        if path.exists() {
            "created"
        } else {
            "inaccessible"
        }
    );
    let kind = match (what, m.kind) {
        ("dvds", _) => "readonly".to_string(),
        ("floppies", _) => "writethrough".to_string(),
        (_, k) => format!(
            "{} ({})",
            k.as_xml().to_ascii_lowercase(),
            if parent.is_some() {
                "differencing"
            } else {
                "base"
            }
        ),
    };
    println!("Type:           {kind}");
    println!("Location:       {}", path.display());
    println!("Storage format: {}", m.format);
    match std::fs::metadata(&path) {
        Ok(md) if what != "hdds" => println!("Capacity:       {} MBytes", md.len() / (1024 * 1024)),
        _ => {}
    }
    println!("Encryption:     disabled");
    println!();
    for c in &m.children {
        print_medium(c, Some(&m.uuid), base, what, seen);
    }
}

fn createvm(a: CreateArgs) -> Result<i32> {
    let mut reg = registry()?;
    let base = a.basefolder.clone().unwrap_or_else(|| reg.machine_folder());
    let path = settings::create::settings_path(&base, &a.name);
    if path.exists() {
        bail!("machine settings file '{}' already exists", path.display());
    }
    let uuid = match &a.uuid {
        Some(u) => Some(Uuid::parse(u).ok_or_else(|| anyhow!("invalid UUID '{u}'"))?),
        None => None,
    };
    let mut file = settings::create::new_machine(&path, &a.name, &a.ostype, uuid)?;
    if a.register {
        if let Ok(p) = reg.find(&a.name) {
            bail!(
                "a machine named '{}' is already registered ({})",
                a.name,
                p.display()
            );
        }
        reg.register(file.machine.uuid, &path)?;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    file.save()?;
    if a.register {
        reg.save()?;
        println!("Virtual machine '{}' is created and registered.", a.name);
    } else {
        println!("Virtual machine '{}' is created.", a.name);
    }
    println!("UUID: {}", file.machine.uuid);
    println!("Settings file: '{}'", path.display());
    Ok(0)
}

fn registervm(a: RegisterArgs) -> Result<i32> {
    let path = std::fs::canonicalize(&a.file).with_context(|| format!("{}", a.file.display()))?;
    let f = MachineFile::load(&path)?;
    let mut reg = registry()?;
    reg.register(f.machine.uuid, &path)?;
    reg.save()?;
    Ok(0)
}

fn unregistervm(a: UnregisterArgs) -> Result<i32> {
    let mut reg = registry()?;
    let path = reg.find(&a.vm)?;
    let uuid = match MachineFile::load(&path) {
        Ok(f) => f.machine.uuid,
        Err(_) => reg
            .machines
            .iter()
            .find(|e| reg.settings_path(e) == path)
            .map(|e| e.uuid)
            .ok_or_else(|| anyhow!("machine '{}' not found", a.vm))?,
    };
    if let Some(pid) = settings::lock::running_pid(&path) {
        bail!(
            "machine '{}' is running (pid {pid}); power it off first",
            a.vm
        );
    }
    reg.unregister(uuid)?;
    reg.save()?;
    if a.delete {
        for p in [
            path.clone(),
            PathBuf::from(format!("{}-prev", path.display())),
        ] {
            if p.exists() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot delete {}", p.display()))?;
            }
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir); // only if now empty
        }
    }
    Ok(0)
}

/// A hand-rolled option cursor over VBoxManage-style arguments.
struct Opts {
    args: Vec<String>,
    i: usize,
}

impl Opts {
    fn new(args: Vec<String>) -> Opts {
        Opts { args, i: 0 }
    }
    fn next_opt(&mut self) -> Option<(String, Option<String>)> {
        let a = self.args.get(self.i)?.clone();
        self.i += 1;
        // --opt=value form.
        if let Some((k, v)) = a.split_once('=') {
            if k.starts_with("--") {
                return Some((k.to_string(), Some(v.to_string())));
            }
        }
        Some((a, None))
    }
    fn value(&mut self, opt: &str, inline: Option<String>) -> Result<String> {
        if let Some(v) = inline {
            return Ok(v);
        }
        let v = self
            .args
            .get(self.i)
            .cloned()
            .ok_or_else(|| anyhow!("option {opt} needs a value"))?;
        self.i += 1;
        Ok(v)
    }
}

fn on_off(opt: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => bail!("option {opt}: expected on or off, got '{v}'"),
    }
}

fn num(opt: &str, v: &str, lo: u64, hi: u64) -> Result<u64> {
    let n = settings::values::parse_u64(v)
        .ok_or_else(|| anyhow!("option {opt}: '{v}' is not a number"))?;
    if n < lo || n > hi {
        bail!("option {opt}: {n} is out of range ({lo}..{hi})");
    }
    Ok(n)
}

fn enum_opt<T: XmlEnum>(opt: &str, v: &str) -> Result<T> {
    parse_cli::<T>(v).ok_or_else(|| {
        let all: Vec<&str> = T::all().iter().map(|x| x.as_xml()).collect();
        anyhow!(
            "option {opt}: unknown {} '{v}' (one of: {})",
            T::WHAT,
            all.join(", ")
        )
    })
}

/// Split `--nic3` into ("--nic", 3).
fn indexed(opt: &str) -> (String, Option<u32>) {
    let digits = opt.len() - opt.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == opt.len() {
        return (opt.to_string(), None);
    }
    let (base, n) = opt.split_at(opt.len() - digits);
    (base.to_string(), n.parse().ok())
}

fn random_mac() -> String {
    let b = settings::values::random_bytes::<3>();
    format!("080027{:02X}{:02X}{:02X}", b[0], b[1], b[2])
}

/// Load, let `change` edit a copy of the model, write back and save.
fn edit(
    vm: &str,
    change: impl FnOnce(&mut settings::Machine, &MachineFile) -> Result<()>,
) -> Result<()> {
    let mut file = load(vm)?;
    if let Some(pid) = settings::lock::running_pid(&file.path) {
        bail!(
            "{}: machine '{}' is running (pid {pid}); refusing to change its settings",
            file.path.display(),
            file.machine.name
        );
    }
    let mut m = file.machine.clone();
    change(&mut m, &file)?;
    let path = file.path.clone();
    settings::write::apply(&mut file, &m).map_err(|e| e.in_file(&path))?;
    file.save()?;
    Ok(())
}

fn modifyvm(args: Vec<String>) -> Result<i32> {
    let Some((vm, rest)) = args.split_first() else {
        bail!("modifyvm needs a machine name, UUID or .vbox path");
    };
    let mut o = Opts::new(rest.to_vec());
    edit(vm, |m, file| {
        let v = file.settings_version();
        while let Some((opt, inline)) = o.next_opt() {
            let (base, idx) = indexed(&opt);
            let hw = &mut m.hardware;
            match (base.as_str(), idx) {
                ("--name", None) => m.name = o.value(&opt, inline)?,
                ("--ostype", None) => m.os_type = o.value(&opt, inline)?,
                ("--description", None) => m.description = o.value(&opt, inline)?,
                ("--memory", None) => hw.memory_mb = num(&opt, &o.value(&opt, inline)?, 4, 2_097_152)?,
                ("--cpus", None) => hw.cpu.count = num(&opt, &o.value(&opt, inline)?, 1, 64)? as u32,
                ("--cpuexecutioncap", None) => {
                    hw.cpu.execution_cap = num(&opt, &o.value(&opt, inline)?, 1, 100)? as u32
                }
                ("--firmware", None) => hw.firmware.kind = enum_opt::<FirmwareType>(&opt, &o.value(&opt, inline)?)?,
                ("--chipset", None) => hw.chipset = enum_opt(&opt, &o.value(&opt, inline)?)?,
                ("--ioapic", None) => hw.firmware.ioapic = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--acpi", None) => hw.firmware.acpi = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--hpet", None) => hw.hpet = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--pae", None) => hw.cpu.pae = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--longmode", None) => hw.cpu.long_mode = Some(on_off(&opt, &o.value(&opt, inline)?)?),
                ("--x2apic", None) => hw.cpu.x2apic = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--hwvirtex", None) => hw.cpu.hw_virt = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--nestedpaging", None) => hw.cpu.nested_paging = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--largepages", None) => hw.cpu.large_pages = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--rtcuseutc", None) => hw.rtc_utc = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--vram", None) => hw.display.vram_mb = num(&opt, &o.value(&opt, inline)?, 0, 256)? as u32,
                ("--monitorcount", None) => hw.display.monitors = num(&opt, &o.value(&opt, inline)?, 1, 64)? as u32,
                ("--accelerate3d", None) => hw.display.accelerate_3d = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--graphicscontroller", None) => {
                    let val = o.value(&opt, inline)?;
                    hw.display.controller = if val.eq_ignore_ascii_case("null") {
                        GraphicsController::None
                    } else {
                        enum_opt(&opt, &val)?
                    }
                }
                ("--paravirtprovider", None) => {
                    hw.paravirt = enum_opt::<ParavirtProvider>(&opt, &o.value(&opt, inline)?)?
                }
                ("--clipboard-mode" | "--clipboard", None) => {
                    hw.clipboard = enum_opt::<ClipboardMode>(&opt, &o.value(&opt, inline)?)?
                }
                ("--draganddrop" | "--drag-and-drop", None) => {
                    hw.dnd = enum_opt::<DndMode>(&opt, &o.value(&opt, inline)?)?
                }
                ("--mouse", None) => {
                    hw.pointing = match o.value(&opt, inline)?.to_ascii_lowercase().as_str() {
                        "ps2" => PointingHid::Ps2Mouse,
                        "usb" => PointingHid::UsbMouse,
                        "usbtablet" => PointingHid::UsbTablet,
                        "usbmultitouch" => PointingHid::UsbMultiTouch,
                        "none" => PointingHid::None,
                        other => bail!("option {opt}: unknown pointing device '{other}'"),
                    }
                }
                ("--keyboard", None) => {
                    hw.keyboard = match o.value(&opt, inline)?.to_ascii_lowercase().as_str() {
                        "ps2" => KeyboardHid::Ps2Keyboard,
                        "usb" => KeyboardHid::UsbKeyboard,
                        "none" => KeyboardHid::None,
                        other => bail!("option {opt}: unknown keyboard '{other}'"),
                    }
                }
                ("--vrde", None) => hw.vrde.enabled = on_off(&opt, &o.value(&opt, inline)?)?,
                ("--vrdeport", None) => {
                    let val = o.value(&opt, inline)?;
                    match hw.vrde.properties.iter_mut().find(|(n, _)| n == "TCP/Ports") {
                        Some((_, x)) => *x = val,
                        None => hw.vrde.properties.push(("TCP/Ports".into(), val)),
                    }
                }
                ("--audio-enabled" | "--audio", None) => {
                    let val = o.value(&opt, inline)?;
                    hw.audio.enabled = !matches!(val.as_str(), "none" | "off" | "false");
                }
                ("--usbohci" | "--usbehci" | "--usbxhci", None) => {
                    let on = on_off(&opt, &o.value(&opt, inline)?)?;
                    let (kind, name) = match base.as_str() {
                        "--usbohci" => (UsbControllerType::Ohci, "OHCI"),
                        "--usbehci" => (UsbControllerType::Ehci, "EHCI"),
                        _ => (UsbControllerType::Xhci, "xHCI"),
                    };
                    hw.usb_controllers.retain(|c| c.kind != kind);
                    if on {
                        hw.usb_controllers.push(UsbController { name: name.into(), kind });
                    }
                }
                ("--boot", Some(n @ 1..=4)) => {
                    hw.boot_order[n as usize - 1] = match o.value(&opt, inline)?.to_ascii_lowercase().as_str() {
                        "none" => BootDevice::None,
                        "floppy" => BootDevice::Floppy,
                        "dvd" => BootDevice::Dvd,
                        "disk" => BootDevice::HardDisk,
                        "net" => BootDevice::Network,
                        other => bail!("option {opt}: unknown boot device '{other}' (none, floppy, dvd, disk, net)"),
                    }
                }
                (
                    "--nic" | "--nictype" | "--macaddress" | "--cableconnected" | "--bridgeadapter" | "--intnet"
                    | "--hostonlyadapter" | "--nat-network" | "--natnet" | "--nicgenericdrv",
                    Some(n),
                ) => {
                    let max = hw.max_nics();
                    if n == 0 || n > max {
                        bail!("option {opt}: adapter number must be 1..{max}");
                    }
                    let slot = n - 1;
                    let val = o.value(&opt, inline)?;
                    if !hw.network.iter().any(|a| a.slot == slot) {
                        hw.network.push(NetworkAdapter::default_for(slot, v));
                        hw.network.sort_by_key(|a| a.slot);
                    }
                    let a = hw.network.iter_mut().find(|a| a.slot == slot).expect("inserted");
                    set_nic(a, &base, &opt, &val)?;
                }
                ("--uart", Some(n @ 1..=4)) => {
                    let val = o.value(&opt, inline)?;
                    let p = serial_slot(hw, n - 1);
                    if val.eq_ignore_ascii_case("off") {
                        p.enabled = false;
                    } else {
                        let (io, irq) = val
                            .split_once(',')
                            .ok_or_else(|| anyhow!("option {opt}: expected off or <I/O base>,<IRQ>"))?;
                        p.io_base = num(&opt, io, 0, 0xffff)? as u16;
                        p.irq = num(&opt, irq, 0, 255)? as u8;
                        p.enabled = true;
                    }
                }
                ("--uartmode", Some(n @ 1..=4)) => {
                    let mode = o.value(&opt, inline)?;
                    let p_slot = n - 1;
                    let (pm, path, server) = match mode.to_ascii_lowercase().as_str() {
                        "disconnected" => (PortMode::Disconnected, String::new(), false),
                        "server" => (PortMode::HostPipe, o.value(&opt, None)?, true),
                        "client" => (PortMode::HostPipe, o.value(&opt, None)?, false),
                        "tcpserver" => (PortMode::Tcp, o.value(&opt, None)?, true),
                        "tcpclient" => (PortMode::Tcp, o.value(&opt, None)?, false),
                        "file" => (PortMode::RawFile, o.value(&opt, None)?, false),
                        _ => (PortMode::HostDevice, mode.clone(), false),
                    };
                    let p = serial_slot(hw, p_slot);
                    p.mode = pm;
                    p.path = path;
                    p.server = server;
                }
                ("--uarttype", Some(n @ 1..=4)) => {
                    let t = enum_opt::<UartType>(&opt, &o.value(&opt, inline)?)?;
                    serial_slot(hw, n - 1).uart_type = t;
                }
                _ => bail!("unknown or unsupported modifyvm option '{opt}'"),
            }
        }
        Ok(())
    })?;
    Ok(0)
}

fn serial_slot(hw: &mut settings::Hardware, slot: u32) -> &mut SerialPort {
    if !hw.serial.iter().any(|p| p.slot == slot) {
        hw.serial.push(SerialPort::default_for(slot));
        hw.serial.sort_by_key(|p| p.slot);
    }
    hw.serial
        .iter_mut()
        .find(|p| p.slot == slot)
        .expect("inserted")
}

fn set_nic(a: &mut NetworkAdapter, base: &str, opt: &str, val: &str) -> Result<()> {
    let keep_name = |a: &NetworkAdapter| a.attachment.name().unwrap_or("").to_string();
    match base {
        "--nic" => {
            let name = keep_name(a);
            a.attachment = match val.to_ascii_lowercase().as_str() {
                "none" => {
                    a.enabled = false;
                    return Ok(());
                }
                "null" => NetAttachment::Null,
                "nat" => NetAttachment::Nat,
                "bridged" => NetAttachment::Bridged(name),
                "intnet" => NetAttachment::Internal(if name.is_empty() {
                    "intnet".into()
                } else {
                    name
                }),
                "hostonly" => NetAttachment::HostOnly(name),
                "hostonlynet" => NetAttachment::HostOnlyNetwork(name),
                "natnetwork" => NetAttachment::NatNetwork(if name.is_empty() {
                    "NatNetwork".into()
                } else {
                    name
                }),
                "generic" => NetAttachment::Generic(name),
                "cloud" => NetAttachment::Cloud(name),
                other => bail!("option {opt}: unknown attachment '{other}'"),
            };
            a.enabled = true;
            if a.mac.is_empty() {
                a.mac = random_mac();
            }
        }
        "--nictype" => a.kind = enum_opt::<NicType>(opt, val)?,
        "--macaddress" => {
            a.mac = if val.eq_ignore_ascii_case("auto") {
                random_mac()
            } else {
                let mac = val.to_ascii_uppercase();
                let bytes = settings::config::parse_mac(&mac).ok_or_else(|| {
                    anyhow!("option {opt}: '{val}' is not a MAC address (12 hex digits)")
                })?;
                if bytes[0] & 1 != 0 {
                    bail!("option {opt}: '{val}' is a multicast address");
                }
                mac.replace([':', '-'], "")
            }
        }
        "--cableconnected" => a.cable = on_off(opt, val)?,
        "--bridgeadapter" => a.attachment = NetAttachment::Bridged(val.into()),
        "--intnet" => a.attachment = NetAttachment::Internal(val.into()),
        "--hostonlyadapter" => a.attachment = NetAttachment::HostOnly(val.into()),
        "--nat-network" => a.attachment = NetAttachment::NatNetwork(val.into()),
        "--nicgenericdrv" => a.attachment = NetAttachment::Generic(val.into()),
        "--natnet" => {
            a.nat_network = if val == "default" {
                String::new()
            } else {
                val.into()
            }
        }
        _ => bail!("unknown option {opt}"),
    }
    Ok(())
}

fn storagectl(args: Vec<String>) -> Result<i32> {
    let Some((vm, rest)) = args.split_first() else {
        bail!("storagectl needs a machine");
    };
    let mut o = Opts::new(rest.to_vec());
    let (mut name, mut add, mut ctl, mut ports, mut bootable, mut cache, mut remove) =
        (None, None, None, None, None, None, false);
    while let Some((opt, inline)) = o.next_opt() {
        match opt.as_str() {
            "--name" => name = Some(o.value(&opt, inline)?),
            "--add" => {
                let v = o.value(&opt, inline)?;
                add = Some(
                    StorageBus::from_cli(&v)
                        .ok_or_else(|| anyhow!("option --add: unknown bus '{v}'"))?,
                )
            }
            "--controller" => {
                let v = o.value(&opt, inline)?;
                ctl = Some(if v.eq_ignore_ascii_case("IntelAhci") {
                    settings::StorageControllerType::Ahci
                } else {
                    enum_opt(&opt, &v)?
                })
            }
            "--portcount" => ports = Some(num(&opt, &o.value(&opt, inline)?, 1, 256)? as u32),
            "--bootable" => bootable = Some(on_off(&opt, &o.value(&opt, inline)?)?),
            "--hostiocache" => cache = Some(on_off(&opt, &o.value(&opt, inline)?)?),
            "--remove" => remove = true,
            _ => bail!("unknown storagectl option '{opt}'"),
        }
    }
    let name = name.ok_or_else(|| anyhow!("storagectl needs --name"))?;
    edit(vm, |m, _| {
        let list = &mut m.hardware.storage;
        if remove {
            let before = list.len();
            list.retain(|c| c.name != name);
            if before == list.len() {
                bail!("no storage controller named '{name}'");
            }
            return Ok(());
        }
        if let Some(bus) = add {
            if list.iter().any(|c| c.name == name) {
                bail!("a storage controller named '{name}' already exists");
            }
            let kind = ctl.unwrap_or(bus.default_controller());
            if kind.bus() != bus {
                bail!(
                    "controller type {kind} does not sit on a {} bus",
                    bus.cli_name()
                );
            }
            list.push(StorageController {
                name: name.clone(),
                kind,
                port_count: if bus == StorageBus::Sata {
                    30
                } else {
                    2.min(kind.max_ports())
                },
                instance: list.iter().filter(|c| c.kind.bus() == bus).count() as u32,
                use_host_io_cache: !matches!(
                    bus,
                    StorageBus::Sata | StorageBus::PciE | StorageBus::VirtioScsi
                ),
                bootable: true,
                devices: Vec::new(),
            });
        }
        let c = list
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("no storage controller named '{name}'"))?;
        if let Some(k) = ctl {
            if k.bus() != c.kind.bus() {
                bail!("controller type {k} does not fit the bus of '{name}'");
            }
            c.kind = k;
        }
        if let Some(p) = ports {
            if p > c.kind.max_ports() {
                bail!(
                    "--portcount {p} exceeds the maximum of {} for {}",
                    c.kind.max_ports(),
                    c.kind
                );
            }
            if c.devices.iter().any(|d| d.port >= p) {
                bail!("--portcount {p}: a device is attached to a port beyond it");
            }
            c.port_count = p;
        }
        if let Some(b) = bootable {
            c.bootable = b;
        }
        if let Some(h) = cache {
            c.use_host_io_cache = h;
        }
        Ok(())
    })?;
    Ok(0)
}

fn format_of(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("vdi") => "VDI",
        Some("vmdk") => "VMDK",
        Some("vhd") => "VHD",
        Some("vhdx") => "VHDX",
        Some("qcow" | "qcow2") => "QCOW",
        Some("qed") => "QED",
        Some("hdd") => "Parallels",
        Some("dmg") => "DMG",
        _ => "RAW",
    }
}

fn storageattach(args: Vec<String>) -> Result<i32> {
    let Some((vm, rest)) = args.split_first() else {
        bail!("storageattach needs a machine");
    };
    let mut o = Opts::new(rest.to_vec());
    let (mut ctl, mut port, mut device, mut typ, mut medium) = (None, None, 0u32, None, None);
    let mut flags: Vec<(String, bool)> = Vec::new();
    while let Some((opt, inline)) = o.next_opt() {
        match opt.as_str() {
            "--storagectl" => ctl = Some(o.value(&opt, inline)?),
            "--port" => port = Some(num(&opt, &o.value(&opt, inline)?, 0, 255)? as u32),
            "--device" => device = num(&opt, &o.value(&opt, inline)?, 0, 1)? as u32,
            "--type" => {
                let v = o.value(&opt, inline)?;
                typ = Some(match v.to_ascii_lowercase().as_str() {
                    "hdd" => DeviceType::HardDisk,
                    "dvddrive" => DeviceType::Dvd,
                    "fdd" => DeviceType::Floppy,
                    other => {
                        bail!("option --type: unknown device type '{other}' (hdd, dvddrive, fdd)")
                    }
                })
            }
            "--medium" => medium = Some(o.value(&opt, inline)?),
            "--nonrotational" | "--discard" | "--hotpluggable" | "--tempeject"
            | "--passthrough" => {
                let v = o.value(&opt, inline)?;
                flags.push((opt.clone(), on_off(&opt, &v)?));
            }
            _ => bail!("unknown storageattach option '{opt}'"),
        }
    }
    let ctl = ctl.ok_or_else(|| anyhow!("storageattach needs --storagectl"))?;
    let port = port.ok_or_else(|| anyhow!("storageattach needs --port"))?;
    let medium = medium.ok_or_else(|| anyhow!("storageattach needs --medium"))?;
    edit(vm, |m, file| {
        let folder = file.machine_folder();
        let c = m
            .hardware
            .storage
            .iter()
            .position(|c| c.name == ctl)
            .ok_or_else(|| anyhow!("no storage controller named '{ctl}'"))?;
        let kind = m.hardware.storage[c].kind;
        if port >= kind.max_ports() || device >= kind.devices_per_port() {
            bail!("port {port} device {device} does not exist on a {kind} controller");
        }
        let existing = m.hardware.storage[c]
            .devices
            .iter()
            .position(|d| d.port == port && d.device == device);
        if medium.eq_ignore_ascii_case("none") {
            match existing {
                Some(i) => {
                    m.hardware.storage[c].devices.remove(i);
                }
                None => bail!("nothing is attached to '{ctl}' port {port} device {device}"),
            }
            return Ok(());
        }
        let dtype = typ
            .or_else(|| existing.map(|i| m.hardware.storage[c].devices[i].kind))
            .ok_or_else(|| anyhow!("storageattach needs --type for a new attachment"))?;
        let uuid = if medium.eq_ignore_ascii_case("emptydrive") {
            if dtype == DeviceType::HardDisk {
                bail!("a hard disk cannot be an empty drive");
            }
            None
        } else if let Some(u) = Uuid::parse(&medium) {
            if m.media.find(&u).is_none() {
                bail!("medium {{{u}}} is not registered in this machine's media registry");
            }
            Some(u)
        } else {
            let p = Path::new(&medium);
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir()?.join(p)
            };
            if !abs.is_file() {
                bail!("medium '{}' does not exist", abs.display());
            }
            let location = abs
                .strip_prefix(&folder)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|_| abs.to_string_lossy().into_owned());
            let known = m
                .media
                .all()
                .into_iter()
                .find(|x| settings::resolve::resolve_location(&x.location, &folder) == abs);
            match known {
                Some(x) => Some(x.uuid),
                None => {
                    let u = Uuid::new_random();
                    let med = Medium {
                        uuid: u,
                        location,
                        format: format_of(&abs).to_string(),
                        kind: match dtype {
                            DeviceType::HardDisk => MediumType::Normal,
                            DeviceType::Dvd => MediumType::Readonly,
                            DeviceType::Floppy => MediumType::Writethrough,
                        },
                        auto_reset: false,
                        description: String::new(),
                        children: Vec::new(),
                        pos: Default::default(),
                    };
                    match dtype {
                        DeviceType::HardDisk => m.media.hard_disks.push(med),
                        DeviceType::Dvd => m.media.dvd_images.push(med),
                        DeviceType::Floppy => m.media.floppy_images.push(med),
                    }
                    Some(u)
                }
            }
        };
        let mut dev = match existing {
            Some(i) if m.hardware.storage[c].devices[i].kind == dtype => {
                m.hardware.storage[c].devices.remove(i)
            }
            Some(i) => {
                m.hardware.storage[c].devices.remove(i);
                new_device(dtype, port, device)
            }
            None => new_device(dtype, port, device),
        };
        dev.medium = uuid;
        dev.host_drive = None;
        for (f, b) in &flags {
            match f.as_str() {
                "--nonrotational" => dev.non_rotational = *b,
                "--discard" => dev.discard = *b,
                "--hotpluggable" => dev.hotpluggable = *b,
                "--tempeject" => dev.temp_eject = *b,
                _ => dev.passthrough = *b,
            }
        }
        let ctl_ref = &mut m.hardware.storage[c];
        if port >= ctl_ref.port_count {
            ctl_ref.port_count = port + 1;
        }
        ctl_ref.devices.push(dev);
        ctl_ref.devices.sort_by_key(|d| (d.port, d.device));
        Ok(())
    })?;
    Ok(0)
}

fn new_device(kind: DeviceType, port: u32, device: u32) -> AttachedDevice {
    AttachedDevice {
        kind,
        port,
        device,
        medium: None,
        host_drive: None,
        passthrough: false,
        temp_eject: false,
        non_rotational: false,
        discard: false,
        hotpluggable: false,
        bandwidth_group: String::new(),
        pos: Default::default(),
    }
}

fn sharedfolder(args: Vec<String>) -> Result<i32> {
    let [action, vm, rest @ ..] = args.as_slice() else {
        bail!("usage: sharedfolder add|remove VM --name NAME [--hostpath PATH] [--readonly] [--automount] [--auto-mount-point PATH]");
    };
    let mut o = Opts::new(rest.to_vec());
    let (mut name, mut host, mut ro, mut auto, mut point) =
        (None, None, false, false, String::new());
    while let Some((opt, inline)) = o.next_opt() {
        match opt.as_str() {
            "--name" => name = Some(o.value(&opt, inline)?),
            "--hostpath" => host = Some(o.value(&opt, inline)?),
            "--readonly" => ro = true,
            "--automount" => auto = true,
            "--auto-mount-point" => point = o.value(&opt, inline)?,
            "--transient" => bail!("transient shared folders need a running machine"),
            _ => bail!("unknown sharedfolder option '{opt}'"),
        }
    }
    let name = name.ok_or_else(|| anyhow!("sharedfolder needs --name"))?;
    match action.as_str() {
        "add" => {
            let host = host.ok_or_else(|| anyhow!("sharedfolder add needs --hostpath"))?;
            edit(vm, |m, _| {
                if m.hardware.shared_folders.iter().any(|f| f.name == name) {
                    bail!("a shared folder named '{name}' already exists");
                }
                m.hardware.shared_folders.push(SharedFolder {
                    name: name.clone(),
                    host_path: host.clone(),
                    writable: !ro,
                    auto_mount: auto,
                    auto_mount_point: point.clone(),
                    symlink_policy: String::new(),
                });
                Ok(())
            })?;
        }
        "remove" => edit(vm, |m, _| {
            let before = m.hardware.shared_folders.len();
            m.hardware.shared_folders.retain(|f| f.name != name);
            if before == m.hardware.shared_folders.len() {
                bail!("no shared folder named '{name}'");
            }
            Ok(())
        })?,
        other => bail!("sharedfolder: unknown action '{other}' (add or remove)"),
    }
    Ok(0)
}

/// For `novabox run VM`: the machine file (path, name or UUID) and the VMM's view of it,
/// with media resolved through every registry VirtualBox would search.
pub(crate) fn load_for_run(vm: &str) -> Result<(MachineFile, settings::config::MachineConfig)> {
    let file = load(vm)?;
    let regs = Registries::load(&file.path);
    let cfg = settings::config::MachineConfig::from_file(&file, &regs.refs())?;
    Ok((file, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_options() {
        assert_eq!(indexed("--nic3"), ("--nic".to_string(), Some(3)));
        assert_eq!(
            indexed("--uartmode12"),
            ("--uartmode".to_string(), Some(12))
        );
        assert_eq!(indexed("--memory"), ("--memory".to_string(), None));
        assert_eq!(random_mac().len(), 12);
        assert_eq!(format_of(Path::new("/a/b.VDI")), "VDI");
    }
}
