//! The `novabox` command.

fn main() -> anyhow::Result<()> {
    Ok(())
}
