//! `novabox run`: boot a kernel directly, start firmware, or run a VirtualBox machine.

use anyhow::{bail, Context};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::path::PathBuf;

/// Options of `novabox run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
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
    /// Keep the real-time clock in UTC (VirtualBox's RTCUseUTC); default local time.
    #[arg(long)]
    pub rtc_utc: bool,
}

/// Run a VM; returns the process exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    validate(&args)?;
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
            Boot::Firmware {
                image: read_input(&path, "BIOS")?,
            }
        }
    };
    let mut cfg = MachineConfig::new(boot);
    cfg.memory_mib = args.memory;
    cfg.cpus = args.cpus;
    cfg.engine = args.engine;
    cfg.console = Console::Stdio;
    cfg.rtc_utc = args.rtc_utc;
    if args.debugcon {
        cfg.debugcon = Some(Box::new(std::io::stderr()));
    }
    let mut machine = Machine::build(cfg)?;
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
            bail!("vCPU {cpu} triple-faulted (the register state is in the log)")
        }
        hm::StopReason::Error { cpu, message } => {
            let first = message.lines().next().unwrap_or_default().to_string();
            bail!("vCPU {cpu} stopped: {first} (the register state is in the log)")
        }
    }
}

fn validate(a: &RunArgs) -> anyhow::Result<()> {
    if a.memory == 0 {
        bail!("--memory must be at least 1 MiB (got 0)");
    }
    if a.memory < 16 {
        bail!(
            "--memory {} MiB is too small for a PC (at least 16 MiB)",
            a.memory
        );
    }
    let host = host_memory_mib();
    if let Some(h) = host {
        if a.memory > h {
            bail!(
                "--memory {} MiB is more than this host has ({h} MiB)",
                a.memory
            );
        }
    }
    if a.cpus == 0 {
        bail!("--cpus must be at least 1 (got 0)");
    }
    if a.cpus > glue::MAX_CPUS {
        bail!(
            "--cpus {} is more than novabox supports ({})",
            a.cpus,
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
