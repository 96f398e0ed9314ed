//! Logging: warnings to stderr, everything at the chosen level to a log file when one is
//! given (like VirtualBox's Logs/VBox.log next to the VM).

use anyhow::Context;
use std::path::Path;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Set up tracing. `NOVABOX_LOG` sets the file's filter (default `info`); stderr only shows
/// warnings and errors so the guest console stays readable.
pub fn init(file: Option<&Path>) -> anyhow::Result<()> {
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_filter(EnvFilter::new(format!(
            "warn,{}=off",
            hm::exec::STATE_TARGET
        )));
    let file_layer = match file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open log file {}", p.display()))?;
            let filter =
                EnvFilter::try_from_env("NOVABOX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
            Some(
                fmt::layer()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_ansi(false)
                    .with_filter(filter),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init()
        .context("cannot set up logging")?;
    Ok(())
}
