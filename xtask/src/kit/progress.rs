//! Progress output: numbered steps and a download progress line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Prints `[n/total] what` lines with the elapsed time of the previous step.
pub struct Steps {
    total: usize,
    n: usize,
    start: Instant,
    step_start: Instant,
}

impl Steps {
    /// A step counter for `total` steps.
    pub fn new(total: usize) -> Self {
        let now = Instant::now();
        Self {
            total,
            n: 0,
            start: now,
            step_start: now,
        }
    }

    /// Starts the next step (reporting how long the previous one took).
    pub fn step(&mut self, what: &str) {
        self.end_step();
        self.n += 1;
        self.step_start = Instant::now();
        eprintln!("kit: [{}/{}] {what}", self.n, self.total);
    }

    /// Reports the duration of the current step, if one is running.
    pub fn end_step(&self) {
        if self.n > 0 {
            eprintln!("kit:       step done in {:.1} s", self.step_secs());
        }
    }

    /// Prints a detail line under the current step.
    pub fn note(&self, what: &str) {
        eprintln!("kit:       {what}");
    }

    /// Seconds since the current step started.
    pub fn step_secs(&self) -> f64 {
        self.step_start.elapsed().as_secs_f64()
    }

    /// Seconds since the first step started.
    pub fn total_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Watches a file grow while another process (apt-get) downloads it and
/// reports the progress: a live line on a terminal, every 25% otherwise.
pub struct DownloadWatch {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl DownloadWatch {
    /// Starts watching `paths` (the final file and apt's partial file); their
    /// largest size is compared with `expected` bytes.
    pub fn start(label: String, paths: Vec<PathBuf>, expected: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let tty = std::io::stderr().is_terminal();
            let started = Instant::now();
            let mut next_quarter = 25u64;
            loop {
                let done = stop2.load(Ordering::Relaxed);
                let have = paths
                    .iter()
                    .filter_map(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
                    .min(expected);
                let pct = (have * 100).checked_div(expected).unwrap_or(100);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let line = format!(
                    "kit:       {label}: {:.1}/{:.1} MB ({pct}%, {:.1} MB/s)",
                    have as f64 / 1e6,
                    expected as f64 / 1e6,
                    have as f64 / 1e6 / secs
                );
                if tty {
                    eprint!("\r{line}\x1b[K");
                    let _ = std::io::stderr().flush();
                } else if pct >= next_quarter || done {
                    eprintln!("{line}");
                    while next_quarter <= pct {
                        next_quarter += 25;
                    }
                }
                if done {
                    if tty {
                        eprintln!();
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops watching and prints the final line.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
