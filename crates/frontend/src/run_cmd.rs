//! `novabox run`.

/// Options of `novabox run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {}

/// Run a VM; returns the process exit code.
pub fn run(_args: RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
