//! Medium commands, named and behaving as VBoxManage's: `showmediuminfo`,
//! `createmedium`, `clonemedium`, `modifymedium`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use media::{Disk, Format, LayerInfo, OpenOptions};

/// The medium command group (flattened into the top-level command list).
#[derive(Subcommand, Debug)]
pub enum MediaCommand {
    /// Show information about a disk image (and its differencing chain).
    #[command(name = "showmediuminfo", alias = "showhdinfo")]
    ShowMediumInfo(ShowArgs),
    /// Create a new disk image.
    #[command(name = "createmedium", alias = "createhd")]
    CreateMedium(CreateArgs),
    /// Copy a medium (flattening its chain) into a new image, possibly another format.
    #[command(name = "clonemedium", alias = "clonehd")]
    CloneMedium(CloneArgs),
    /// Compact or resize an image.
    #[command(name = "modifymedium", alias = "modifyhd")]
    ModifyMedium(ModifyArgs),
}

/// `showmediuminfo [disk|dvd|floppy] FILE`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Optional device type (disk, dvd, floppy), then the image file.
    #[arg(num_args = 1..=2, required = true, value_name = "FILE")]
    args: Vec<String>,
}

/// `createmedium [disk] --filename F --size MB --format VDI|VMDK|VHD [--variant ...]`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Device type; only "disk" can be created.
    #[arg(value_name = "disk")]
    kind: Option<String>,
    /// The new image file.
    #[arg(long)]
    filename: PathBuf,
    /// Size in megabytes.
    #[arg(long, conflicts_with = "sizebyte")]
    size: Option<u64>,
    /// Size in bytes.
    #[arg(long)]
    sizebyte: Option<u64>,
    /// Container format: VDI (default), VMDK, VHD, RAW.
    #[arg(long, default_value = "VDI")]
    format: String,
    /// Standard (dynamic) or Fixed.
    #[arg(long, default_value = "Standard")]
    variant: String,
    /// Create a differencing image of this parent (file name).
    #[arg(long)]
    diffparent: Option<PathBuf>,
}

/// `clonemedium [disk] SRC DST [--format ...] [--variant ...]`.
#[derive(Args, Debug)]
pub struct CloneArgs {
    /// Optional device type, then source and destination.
    #[arg(num_args = 2..=3, required = true, value_name = "SRC DST")]
    args: Vec<String>,
    /// Destination format (default: the source's).
    #[arg(long)]
    format: Option<String>,
    /// Standard (dynamic) or Fixed.
    #[arg(long, default_value = "Standard")]
    variant: String,
}

/// `modifymedium [disk] FILE --compact | --resize MB | --resizebyte B`.
#[derive(Args, Debug)]
pub struct ModifyArgs {
    /// Optional device type, then the image file.
    #[arg(num_args = 1..=2, required = true, value_name = "FILE")]
    args: Vec<String>,
    /// Reclaim blocks that contain only zeros.
    #[arg(long)]
    compact: bool,
    /// New size in megabytes (growing only).
    #[arg(long, conflicts_with = "resizebyte")]
    resize: Option<u64>,
    /// New size in bytes (growing only).
    #[arg(long)]
    resizebyte: Option<u64>,
}

/// Run one medium command; returns the process exit code.
pub fn run(cmd: MediaCommand) -> Result<i32> {
    match cmd {
        MediaCommand::ShowMediumInfo(a) => show(&a),
        MediaCommand::CreateMedium(a) => create(&a),
        MediaCommand::CloneMedium(a) => clone(&a),
        MediaCommand::ModifyMedium(a) => modify(&a),
    }
}

/// Strip a leading `disk|dvd|floppy` device-type word.
fn strip_kind(args: &[String], want: usize) -> Result<Vec<String>> {
    let mut v = args.to_vec();
    if v.len() > want {
        if matches!(v[0].as_str(), "disk" | "dvd" | "floppy") {
            v.remove(0);
        } else {
            bail!(
                "unexpected argument {:?} (expected disk, dvd or floppy)",
                v[0]
            );
        }
    }
    Ok(v)
}

fn parse_format(s: &str) -> Result<Format> {
    match Format::parse(s) {
        Some(Format::Iso) | None => bail!("invalid format {s:?}: use VDI, VMDK, VHD or RAW"),
        Some(f) => Ok(f),
    }
}

fn parse_fixed(variant: &str) -> Result<bool> {
    let mut fixed = false;
    for part in variant.split(',').map(str::trim) {
        match part.to_ascii_lowercase().as_str() {
            "standard" | "" => {}
            "fixed" => fixed = true,
            other => bail!("unsupported variant {other:?}: use Standard or Fixed"),
        }
    }
    Ok(fixed)
}

fn mbytes(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

fn print_info(info: &LayerInfo, parent: Option<&LayerInfo>) {
    println!("UUID:           {}", info.uuid);
    match parent {
        Some(p) => println!("Parent UUID:    {}", p.uuid),
        None => println!("Parent UUID:    base"),
    }
    println!("State:          created");
    println!(
        "Type:           normal ({})",
        if info.parent.is_some() {
            "differencing"
        } else {
            "base"
        }
    );
    let loc = std::fs::canonicalize(&info.path).unwrap_or_else(|_| info.path.clone());
    println!("Location:       {}", loc.display());
    println!("Storage format: {}", info.format);
    println!("Format variant: {}", info.variant);
    println!("Capacity:       {} MBytes", mbytes(info.size));
    println!("Size on disk:   {} MBytes", mbytes(info.size_on_disk));
    println!("Encryption:     disabled");
    if info.block_size > 0 {
        println!("Property:       AllocationBlockSize={}", info.block_size);
    }
    if info.files.len() > 1 {
        for f in &info.files[1..] {
            println!("Extent file:    {}", f.display());
        }
    }
}

fn show(a: &ShowArgs) -> Result<i32> {
    let args = strip_kind(&a.args, 1)?;
    let path = Path::new(&args[0]);
    // Inspection must work on media in use: no lock.
    let opts = OpenOptions {
        lock: false,
        ..OpenOptions::default()
    };
    let medium =
        media::open(path, &opts).with_context(|| format!("showmediuminfo {}", path.display()))?;
    let chain = medium.info();
    print_info(&chain[0], chain.get(1));
    if chain.len() > 1 {
        println!("Chain depth:    {}", chain.len());
        for (i, l) in chain.iter().enumerate().skip(1) {
            println!(
                "  ancestor {i}:   {} ({}, {})",
                l.path.display(),
                l.uuid,
                l.format
            );
        }
    }
    Ok(0)
}

/// Progress reporting: a bar on a terminal, "0%...10%..." otherwise (as VBoxManage).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_decile: Option<u64>,
}

impl Progress {
    /// Start reporting (on stderr).
    pub fn new(label: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(100);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {percent:>3}% {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b
        });
        Progress {
            bar,
            last_decile: None,
        }
    }

    /// Report `done` of `total`.
    pub fn update(&mut self, done: u64, total: u64) {
        let total = total.max(1);
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_position(done.min(total));
            return;
        }
        let decile = done.min(total) * 10 / total;
        let from = self.last_decile.map(|d| d + 1).unwrap_or(0);
        for d in from..=decile {
            if d == 10 {
                eprintln!("100%");
            } else {
                eprint!("{}%...", d * 10);
            }
        }
        if self.last_decile.is_none_or(|l| decile > l) {
            self.last_decile = Some(decile);
        }
    }

    /// Finish (100%).
    pub fn finish(mut self) {
        self.update(1, 1);
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

fn create(a: &CreateArgs) -> Result<i32> {
    if let Some(k) = &a.kind {
        if k != "disk" {
            bail!("only disk media can be created (got {k:?})");
        }
    }
    let format = parse_format(&a.format)?;
    let fixed = parse_fixed(&a.variant)?;
    let size = match (a.size, a.sizebyte, &a.diffparent) {
        (Some(mb), _, _) => mb.checked_mul(1 << 20).context("size too large")?,
        (None, Some(b), _) => b,
        (None, None, Some(_)) => 0,
        (None, None, None) => bail!("--size (MB) or --sizebyte is required"),
    };
    let p = Progress::new("Creating");
    let layer = media::create(
        &a.filename,
        &media::CreateOptions {
            format,
            size,
            fixed,
            parent: a.diffparent.clone(),
            uuid: None,
        },
    )
    .with_context(|| format!("createmedium {}", a.filename.display()))?;
    p.finish();
    println!("Medium created. UUID: {}", layer.info().uuid);
    Ok(0)
}

fn clone(a: &CloneArgs) -> Result<i32> {
    let args = strip_kind(&a.args, 2)?;
    let (src, dst) = (Path::new(&args[0]), Path::new(&args[1]));
    let fixed = parse_fixed(&a.variant)?;
    let mut medium = media::open(src, &OpenOptions::read_only())
        .with_context(|| format!("clonemedium {}", src.display()))?;
    let format = match &a.format {
        Some(f) => parse_format(f)?,
        None => match medium.info()[0].format {
            Format::Iso => Format::Raw,
            f => f,
        },
    };
    let mut p = Progress::new("Cloning");
    let info = media::clone_medium(&mut medium, dst, format, fixed, &mut |d, t| p.update(d, t))
        .with_context(|| format!("clonemedium {} -> {}", src.display(), dst.display()))?;
    p.finish();
    println!(
        "Clone medium created in format '{}'. UUID: {}",
        format.name(),
        info.uuid
    );
    Ok(0)
}

fn modify(a: &ModifyArgs) -> Result<i32> {
    let args = strip_kind(&a.args, 1)?;
    let path = Path::new(&args[0]);
    let new_size = match (a.resize, a.resizebyte) {
        (Some(mb), _) => Some(mb.checked_mul(1 << 20).context("size too large")?),
        (None, b) => b,
    };
    if !a.compact && new_size.is_none() {
        bail!("nothing to do: give --compact or --resize MB");
    }
    if a.compact {
        let mut p = Progress::new("Compacting");
        media::compact(path, &mut |d, t| p.update(d, t))
            .with_context(|| format!("modifymedium {}", path.display()))?;
        p.finish();
    }
    if let Some(size) = new_size {
        let mut p = Progress::new("Resizing");
        media::resize(path, size, &mut |d, t| p.update(d, t))
            .with_context(|| format!("modifymedium {}", path.display()))?;
        p.finish();
    }
    // Opening checks the result is a valid image.
    let m = media::open(path, &OpenOptions::read_only())?;
    let _ = m.size();
    Ok(0)
}
