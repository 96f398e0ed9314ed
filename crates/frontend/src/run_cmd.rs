//! `novabox run`: boot a kernel directly, start firmware, or run a VirtualBox machine.

use anyhow::{bail, Context};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::path::PathBuf;

/// Options of `novabox run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A VirtualBox machine: a .vbox path, or the name or UUID of a registered machine.
    #[arg(value_name = "VM", conflicts_with = "kernel")]
    pub vm: Option<String>,
    /// A Linux bzImage to boot directly (64-bit boot protocol).
    #[arg(long, value_name = "FILE", conflicts_with = "bios")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line for --kernel.
    #[arg(long, default_value = "console=ttyS0")]
    pub cmdline: String,
    /// Firmware image (default: SeaBIOS from Debian's seabios package or the guest kit).
    #[arg(long, value_name = "FILE")]
    pub bios: Option<PathBuf>,
    /// Copy what the guest writes to port 0x402 (the firmware debug console) to stderr.
    #[arg(long)]
    pub debugcon: bool,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Execution engine: auto (KVM with VT-x/AMD-V, else the interpreter), kvm, interpreter.
    #[arg(long, default_value = "auto")]
    pub engine: EngineChoice,
    /// With a VM: put its first serial port (COM1) on this terminal, whatever host mode the
    /// .vbox gives it (VBoxHeadless has no such thing; it is how the demo shows its shell).
    #[arg(long, requires = "vm")]
    pub console: bool,
    /// Keep the real-time clock in UTC (VirtualBox's RTCUseUTC); default local time.
    #[arg(long)]
    pub rtc_utc: bool,
    /// Serve the screen over VNC (and a browser console at http://ADDR:PORT/) on
    /// [ADDR:]PORT; ADDR defaults to 127.0.0.1. Password: NOVABOX_VNC_PASSWORD.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub vnc: Option<String>,
    /// Share a host directory with the guest (VBoxSharedFolders); repeatable. Added to the
    /// .vbox's shared folders.
    #[arg(long = "sharedfolder", value_name = "NAME=HOSTPATH[,readonly]")]
    pub sharedfolder: Vec<String>,
    /// With --kernel or --bios: attach this disk image (VDI, VMDK, VHD, raw) as the first
    /// hard disk of a --disk-controller; repeatable (next port, or IDE position).
    #[arg(long = "disk", value_name = "FILE", conflicts_with = "vm")]
    pub disk: Vec<PathBuf>,
    /// The controller --disk images hang on: ahci (VirtualBox's AHCI), piix3 or piix4 (IDE).
    #[arg(long, value_name = "KIND", default_value = "ahci", value_parser = ["ahci", "piix3", "piix4"])]
    pub disk_controller: String,
}

/// Run a VM; returns the process exit code. `log` is the --log option.
pub fn run(args: RunArgs, log: Option<&std::path::Path>) -> anyhow::Result<i32> {
    if let Some(vm) = args.vm.clone() {
        return run_vbox(&vm, &args, log);
    }
    // Without --log, the log (with the register dump of a failed vCPU) goes to the user's
    // state folder, like a machine's Logs/VBox.log.
    let log_path = log
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(default_log);
    open_log(&log_path)?;
    validate_sizes(args.memory, args.cpus)?;
    let mut bios = None;
    let boot = match &args.kernel {
        Some(k) => Boot::Kernel {
            kernel: read_input(k, "kernel")?,
            initrd: args
                .initrd
                .as_deref()
                .map(|p| read_input(p, "initrd"))
                .transpose()?,
            cmdline: args.cmdline.clone(),
        },
        None => {
            let path = match &args.bios {
                Some(p) => p.clone(),
                None => glue::firmware::find_seabios().context("no firmware given")?,
            };
            let image = read_input(&path, "BIOS")?;
            bios = Some(path);
            Boot::Firmware { image }
        }
    };
    let mut cfg = MachineConfig::new(boot);
    cfg.memory_mib = args.memory;
    cfg.cpus = args.cpus;
    cfg.engine = args.engine;
    cfg.console = Console::Stdio;
    cfg.rtc_utc = args.rtc_utc;
    cfg.display = glue::wiring_display::run_config("VBoxVGA", 0, 1, args.vnc.as_deref(), None)
        .map_err(anyhow::Error::msg)?;
    cfg.display.guest_additions = Some(cfg.guest_additions.handle.clone());
    cfg.guest_additions.shared_folders = shared_folders(&args, &[])?;
    cfg.storage = disk_storage(&args.disk, &args.disk_controller);
    if args.debugcon {
        cfg.debugcon = Some(Box::new(std::io::stderr()));
    }
    let inputs = Inputs {
        kernel: args.kernel.as_deref(),
        initrd: args.initrd.as_deref(),
        bios: bios.as_deref(),
    };
    run_to_end(cfg, &inputs, &log_path)
}

/// The `--disk` images on one controller of the `--disk-controller` kind: SATA ports 0, 1,
/// ... on AHCI; primary master, primary slave, secondary master, ... on IDE.
fn disk_storage(disks: &[PathBuf], kind: &str) -> glue::wiring_storage::Config {
    use glue::wiring_storage::{Attachment, Config, Controller, ControllerKind};
    let (kind, name, ide) = match kind {
        "piix3" => (ControllerKind::Piix3, "IDE", true),
        "piix4" => (ControllerKind::Piix4, "IDE", true),
        _ => (ControllerKind::Ahci, "SATA", false),
    };
    if disks.is_empty() {
        return Config::default();
    }
    let attachments = (0u32..)
        .zip(disks)
        .map(|(i, p)| {
            if ide {
                Attachment::disk(i / 2, i % 2, p)
            } else {
                Attachment::disk(i, 0, p)
            }
        })
        .collect::<Vec<_>>();
    Config {
        controllers: vec![Controller {
            name: name.into(),
            kind,
            port_count: (attachments.len() as u32).max(1),
            bootable: true,
            attachments,
        }],
        boot_order: Vec::new(),
    }
}

/// Where `run --kernel` / `run --bios` log without --log.
fn default_log() -> std::path::PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("novabox").join("Logs").join("VBox.log")
}

/// Create the log's folder, keep the previous logs, start logging.
fn open_log(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    rotate_log(path);
    crate::logging::init(Some(path))
}

/// The files a machine is built from, to name the one a build error is about.
#[derive(Default)]
struct Inputs<'a> {
    kernel: Option<&'a std::path::Path>,
    initrd: Option<&'a std::path::Path>,
    bios: Option<&'a std::path::Path>,
}

/// Turn a build error about an input file into one line that names the file.
fn explain(e: glue::MachineError, inputs: &Inputs<'_>) -> anyhow::Error {
    use glue::boot::linux::LinuxBootError as L;
    let file = match &e {
        glue::MachineError::Linux(L::BadInitrd(_) | L::NoRoom { what: "initrd", .. }) => {
            inputs.initrd.map(|p| ("initrd", p))
        }
        glue::MachineError::Linux(L::Memory(_)) => None,
        glue::MachineError::Linux(_) => inputs.kernel.map(|p| ("kernel", p)),
        glue::MachineError::Firmware(_) => inputs.bios.map(|p| ("BIOS", p)),
        _ => None,
    };
    match (file, e) {
        (Some((what, p)), glue::MachineError::Firmware(m)) => {
            anyhow::anyhow!("{what} {}: {m}", p.display())
        }
        (Some((what, p)), e) => anyhow::anyhow!("{what} {}: {e}", p.display()),
        (None, e) => e.into(),
    }
}

/// Build, run and report: the exit code for the stop reason.
fn run_to_end(
    cfg: MachineConfig,
    inputs: &Inputs<'_>,
    log: &std::path::Path,
) -> anyhow::Result<i32> {
    let mut machine = Machine::build(cfg).map_err(|e| explain(e, inputs))?;
    eprintln!("novabox: engine: {}", machine.engine_reason());
    let stop = machine.stop_handle();
    ctrlc::set_handler(move || stop.power_off()).context("cannot install the Ctrl-C handler")?;
    let reason = {
        let _tty = crate::tty::RawGuard::new();
        machine.run()?
    };
    match reason {
        hm::StopReason::PowerOff => Ok(0),
        hm::StopReason::Reset => {
            eprintln!("novabox: the guest reset the machine; stopping");
            Ok(0)
        }
        hm::StopReason::TripleFault { cpu, .. } => {
            bail!(
                "vCPU {cpu} triple-faulted (register state in {})",
                log.display()
            )
        }
        hm::StopReason::Error { cpu, message } => {
            let first = message.lines().next().unwrap_or_default().to_string();
            bail!(
                "vCPU {cpu} stopped: {first} (register state in {})",
                log.display()
            )
        }
    }
}

/// `novabox run VM`: build the machine its `.vbox` describes.
fn run_vbox(vm: &str, args: &RunArgs, log: Option<&std::path::Path>) -> anyhow::Result<i32> {
    use settings::config::{compatibility_report, UartBackend};
    let (file, mc) = crate::vbox_cmds::load_for_run(vm)?;
    // The per-VM log, like VirtualBox's Logs/VBox.log next to the machine.
    let default_log = file.machine_folder().join("Logs").join("VBox.log");
    let log_path = log.map(std::path::Path::to_path_buf).unwrap_or(default_log);
    open_log(&log_path)?;
    let _running = settings::lock::RunLock::acquire(&file.path)?;
    tracing::info!(vm = %mc.name, uuid = %mc.uuid, settings = %file.path.display(), "starting");

    let report = compatibility_report(&file.machine, &supported_features());
    for issue in &report {
        eprintln!("novabox: warning: {issue}");
        tracing::warn!("{issue}");
    }
    if let Some(b) = report.iter().find(|i| i.blocking) {
        bail!(
            "{}: the machine needs {} = {}, which novabox does not support yet",
            file.path.display(),
            b.setting,
            b.value
        );
    }
    let image_path = match &args.bios {
        Some(p) => p.clone(),
        None => glue::firmware::find_seabios()?,
    };
    let mut cfg = MachineConfig::new(Boot::Firmware {
        image: read_input(&image_path, "BIOS")?,
    });
    cfg.memory_mib = mc.memory_mib;
    cfg.cpus = mc.cpu_count;
    cfg.engine = args.engine;
    cfg.rtc_utc = mc.rtc_utc;
    let (storage, storage_warnings) = crate::storage_map::storage_config(&mc);
    for w in &storage_warnings {
        eprintln!("novabox: warning: {w}");
        tracing::warn!("{w}");
    }
    for c in &storage.controllers {
        for a in &c.attachments {
            tracing::info!(
                controller = %c.name,
                port = a.port,
                device = a.device,
                kind = ?a.kind,
                medium = %a.path.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "(empty)".into()),
                read_only = a.read_only,
                "storage"
            );
        }
    }
    cfg.storage = storage;
    cfg.display = glue::wiring_display::run_config(
        settings::XmlEnum::as_xml(mc.graphics),
        mc.vram_mib,
        mc.monitors,
        args.vnc.as_deref(),
        mc.vrde_ports
            .as_deref()
            .map(|p| (p, mc.vrde_address.as_str())),
    )
    .map_err(anyhow::Error::msg)?;
    // The .vbox's VNC password (VirtualBox's VNC extension pack property) when the
    // environment gives none.
    if let Some(vnc) = cfg.display.vnc.as_mut() {
        if vnc.password.is_none() {
            vnc.password = mc.vrde_password.clone();
        }
    }
    cfg.display.guest_additions = Some(cfg.guest_additions.handle.clone());
    cfg.guest_additions.shared_folders = shared_folders(args, &mc.shared_folders)?;
    cfg.guest_additions.clipboard = match mc.clipboard {
        settings::ClipboardMode::Disabled => glue::wiring_guest_additions::ClipboardMode::Disabled,
        settings::ClipboardMode::HostToGuest => {
            glue::wiring_guest_additions::ClipboardMode::HostToGuest
        }
        settings::ClipboardMode::GuestToHost => {
            glue::wiring_guest_additions::ClipboardMode::GuestToHost
        }
        settings::ClipboardMode::Bidirectional => {
            glue::wiring_guest_additions::ClipboardMode::Bidirectional
        }
    };
    cfg.guest_additions.control_socket = Some(glue::control::socket_path(&file.machine_folder()));
    cfg.guest_additions.guest_properties = crate::control_cmds::saved_guest_properties(&file);
    cfg.guest_additions.display = Some(cfg.display.handle.clone());
    cfg.paravirt = match mc.paravirt_effective {
        settings::ParavirtProvider::None => hm::cpuid::ParavirtProvider::None,
        _ => hm::cpuid::ParavirtProvider::Minimal,
    };
    if args.debugcon {
        cfg.debugcon = Some(Box::new(std::io::stderr()));
    }
    // Serial ports: the host side as the .vbox says; without any, COM1 is disconnected.
    cfg.console = Console::None;
    for u in &mc.uarts {
        let console = match &u.backend {
            UartBackend::Disconnected => Console::None,
            UartBackend::RawFile(p) => Console::File(p.clone()),
            UartBackend::UnixSocket { path, server } => Console::UnixSocket {
                path: path.clone(),
                server: *server,
            },
            UartBackend::TcpServer(a) => Console::TcpServer(a.clone()),
            UartBackend::TcpClient(a) => Console::TcpClient(a.clone()),
            UartBackend::HostDevice(p) => Console::File(p.clone()),
        };
        if u.io_base == 0x3f8 {
            cfg.console = console;
        } else {
            cfg.extra_serial
                .push((u.io_base, u32::from(u.irq), console));
        }
    }
    if args.console {
        cfg.console = Console::Stdio;
    }
    validate_sizes(cfg.memory_mib, cfg.cpus)?;
    let inputs = Inputs {
        bios: Some(&image_path),
        ..Inputs::default()
    };
    let ga = cfg.guest_additions.handle.clone();
    let rc = run_to_end(cfg, &inputs, &log_path);
    // VirtualBox saves the non-transient guest properties at power-off.
    drop(_running);
    crate::control_cmds::persist_guest_properties(&file.path, &ga);
    rc
}

/// What `run VM` supports today (the compatibility report names everything else).
pub(crate) fn supported_features() -> settings::config::SupportedFeatures {
    let mut s = settings::config::SupportedFeatures::minimal();
    s.max_cpus = glue::MAX_CPUS;
    s.guest_additions = true;
    s.storage_controllers = crate::storage_map::MODELLED.to_vec();
    s.disk_formats = crate::storage_map::FORMATS
        .iter()
        .map(|f| f.to_string())
        .collect();
    s
}

/// The .vbox's shared folders plus the `--sharedfolder` ones.
fn shared_folders(
    args: &RunArgs,
    vbox: &[settings::config::SharedFolderConfig],
) -> anyhow::Result<Vec<glue::wiring_guest_additions::ShareConfig>> {
    let mut out: Vec<glue::wiring_guest_additions::ShareConfig> = vbox
        .iter()
        .map(|f| glue::wiring_guest_additions::ShareConfig {
            name: f.name.clone(),
            host_path: f.host_path.clone(),
            writable: f.writable,
            auto_mount: f.auto_mount,
            auto_mount_point: f.auto_mount_point.clone(),
            symlinks: false,
        })
        .collect();
    for a in &args.sharedfolder {
        let share = glue::wiring_guest_additions::parse_shared_folder(a);
        out.push(share.map_err(anyhow::Error::msg)?);
    }
    Ok(out)
}

/// Keep the previous logs as VirtualBox does (VBox.log.1 .. VBox.log.3).
fn rotate_log(path: &std::path::Path) {
    for i in (1..3).rev() {
        let from = path.with_extension(format!("log.{i}"));
        let to = path.with_extension(format!("log.{}", i + 1));
        let _ = std::fs::rename(from, to);
    }
    let _ = std::fs::rename(path, path.with_extension("log.1"));
}

fn validate_sizes(memory: u64, cpus: u32) -> anyhow::Result<()> {
    if memory == 0 {
        bail!("--memory must be at least 1 MiB (got 0)");
    }
    if memory < 16 {
        bail!("--memory {memory} MiB is too small for a PC (at least 16 MiB)");
    }
    if let Some(h) = host_memory_mib() {
        if memory > h {
            bail!("--memory {memory} MiB is more than this host has ({h} MiB)");
        }
    }
    if cpus == 0 {
        bail!("--cpus must be at least 1 (got 0)");
    }
    if cpus > glue::MAX_CPUS {
        bail!(
            "--cpus {cpus} is more than novabox supports ({})",
            glue::MAX_CPUS
        );
    }
    Ok(())
}

fn host_memory_mib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn read_input(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let data =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    if data.is_empty() {
        bail!("{what} {} is empty", path.display());
    }
    Ok(data)
}
