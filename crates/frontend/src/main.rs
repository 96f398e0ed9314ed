//! The `novabox` command: VBoxManage-style subcommands over the novabox crates.

use clap::{Parser, Subcommand};

mod run_cmd;

/// novabox: run VirtualBox machines on a small, memory-safe VMM.
#[derive(Parser, Debug)]
#[command(name = "novabox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a kernel, firmware or VirtualBox machine.
    Run(Box<run_cmd::RunArgs>),
    // Other command groups are flattened in here, one line each:
    // #[command(flatten)] Vbox(vbox_cmds::VboxCommand),
    // #[command(flatten)] Media(media_cmds::MediaCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(*args),
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
