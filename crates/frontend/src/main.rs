//! The `novabox` command: VBoxManage-style subcommands over the novabox crates.

use clap::{Parser, Subcommand};

mod control_cmds;
mod logging;
mod media_cmds;
mod run_cmd;
mod storage_map;
mod tty;
mod vbox_cmds;

/// novabox: run VirtualBox machines on a small, memory-safe VMM.
#[derive(Parser, Debug)]
#[command(name = "novabox", version, about)]
struct Cli {
    /// Write the log (tracing, level from NOVABOX_LOG, default info) to this file.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a kernel, firmware or VirtualBox machine.
    Run(Box<run_cmd::RunArgs>),
    // Other command groups are flattened in here, one line each:
    #[command(flatten)]
    Vbox(vbox_cmds::VboxCommand),
    /// Disk image tools (showmediuminfo, createmedium, clonemedium, modifymedium).
    #[command(flatten)]
    Media(media_cmds::MediaCommand),
    /// Running VMs: controlvm, guestproperty.
    #[command(flatten)]
    Control(control_cmds::ControlCommand),
}

fn main() {
    let cli = Cli::parse();
    // `run` sets up its own log (a machine's goes next to it, as VirtualBox's VBox.log).
    if !matches!(cli.command, Command::Run(_)) {
        if let Err(e) = logging::init(cli.log.as_deref()) {
            eprintln!("novabox: {e:#}");
            std::process::exit(1);
        }
    }
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(*args, cli.log.as_deref()),
        Command::Vbox(cmd) => vbox_cmds::run(cmd),
        Command::Media(cmd) => media_cmds::run(cmd),
        Command::Control(cmd) => control_cmds::run(cmd),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One clear line with the chain of causes, never a backtrace.
            eprintln!("novabox: {e:#}");
            std::process::exit(1);
        }
    }
}
