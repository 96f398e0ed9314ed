//! A VM process whose serial console is its standard output, read line by line on a
//! thread so the benchmark loop can wait for markers with a timeout.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::Instant;

/// A running VM and the console lines it printed that `keep` accepted, each stamped with
/// the host time it arrived.
pub struct Console {
    pub child: Child,
    pub lines: Receiver<(Instant, String)>,
    reader: Option<JoinHandle<()>>,
}

impl Console {
    /// Start `cmd` (stdin and stderr closed) and read its console.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        keep: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<Console> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel::<(Instant, String)>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n').map_while(|l| l.ok()) {
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if keep(&line) {
                    let _ = tx.send((Instant::now(), line));
                }
            }
        });
        Ok(Console {
            child,
            lines,
            reader: Some(reader),
        })
    }

    /// Give the VM up to `grace` to exit by itself (the guest powers off after its test),
    /// then [`Console::finish`] it.
    pub fn finish_within(mut self, grace: std::time::Duration) -> anyhow::Result<()> {
        let until = Instant::now() + grace;
        while Instant::now() < until && self.child.try_wait()?.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.finish();
        Ok(())
    }

    /// Kill the VM if it still runs and collect the reader.
    pub fn finish(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
