//! `cargo xtask bench-display`: screen-update throughput and latency over VNC, novabox's
//! server against QEMU's (`-vnc`), the same guest on the same engine class (novabox's
//! interpreter, QEMU's TCG).
//!
//! The guest is a 64 KiB flat firmware image (assembled here with GNU as/ld, entered at the
//! reset vector, so no BIOS and no boot time). It programs the VGA at 00:02.0 itself (BAR0
//! at 0xE0000000, memory decoding on), sets a 1024x784x32 VBE mode through the DISPI ports
//! (VirtualBox's VBoxVGA and QEMU's std VGA share them) and then redraws rows 16..784, a
//! 1024x768 region, for ever, in 16-row bands of 64-pixel two-colour tiles:
//!
//! - `scroll`: frame k shows band b's content of frame k-1 at band b-1 (a terminal that
//!   scrolls one line per frame);
//! - `fill`: every band gets new colours each frame (no content moves).
//!
//! Between bands it polls the i8042; each byte it reads recolours the marker band (rows
//! 0..16). After each frame it writes the frame number into rows 0..2 at x 960..1024, so
//! the client knows how many frames the guest drew (the engine's speed) and how many of
//! them it was shown. The client (this crate, `vnc::client`) asks for ZRLE, CopyRect and Raw, keeps one
//! update request outstanding, and counts updates with pixels (frames), the bytes read, and
//! every second sends a key press and times how long until the marker changes on its
//! picture: key-to-pixel latency (VNC key event -> i8042 -> guest write -> update).

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnc::client::{Connection, Message};
use vnc::proto::encoding;

/// Screen and region.
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 784;
/// The marker band's height.
const MARKER_ROWS: u32 = 16;

/// The guest. `MODE_OP` is replaced by the instruction(s) that make a band's colour seed
/// from its index (eax) and the frame number (ebp).
const GUEST_ASM: &str = r#"
    .code16
    .text
start:
    cli
    lgdtl %cs:(gdtr - start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $pm32
    .code32
pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $0x8000, %esp
    # VGA 00:02.0: BAR0 (the linear framebuffer) at 0xE0000000, I/O and memory on.
    movw $0xcf8, %dx
    movl $0x80001010, %eax
    outl %eax, %dx
    movw $0xcfc, %dx
    movl $0xe0000000, %eax
    outl %eax, %dx
    movw $0xcf8, %dx
    movl $0x80001004, %eax
    outl %eax, %dx
    movw $0xcfc, %dx
    inw %dx, %ax
    orw $3, %ax
    outw %ax, %dx
    # Attribute controller: palette address source on (the display is not blanked).
    movw $0x3da, %dx
    inb %dx, %al
    movw $0x3c0, %dx
    movb $0x20, %al
    outb %al, %dx
    .macro dispi idx, val
    movw $0x1ce, %dx
    movw $\idx, %ax
    outw %ax, %dx
    movw $0x1cf, %dx
    movw $\val, %ax
    outw %ax, %dx
    .endm
    dispi 4, 0
    dispi 1, 1024
    dispi 2, 784
    dispi 3, 32
    dispi 4, 0x41
    # PIT channel 0, rate generator, divisor 65536: a wrap every 54.9 ms paces frames.
    movb $0x34, %al
    outb %al, $0x43
    xorb %al, %al
    outb %al, $0x40
    outb %al, $0x40
    xorl %ebp, %ebp
    xorl %esi, %esi
    call marker
frame:
    incl %ebp
    movl $16, %ebx
row:
    movl %ebx, %eax
    shrl $4, %eax
    MODE_OP
    imull $0x9e3779b1, %eax, %eax
    shrl $8, %eax
    movl %ebx, %ecx
    andl $15, %ecx
    imull $0x00050301, %ecx, %ecx
    xorl %ecx, %eax
    movl %ebx, %edi
    shll $12, %edi
    addl $0xe0000000, %edi
    movl $16, %edx
1:
    movl $32, %ecx
    rep stosl
    xorl $0x00ffffff, %eax
    movl $32, %ecx
    rep stosl
    xorl $0x00ffffff, %eax
    decl %edx
    jnz 1b
    testl $15, %ebx
    jnz next
    call kbd_poll
next:
    incl %ebx
    cmpl $784, %ebx
    jb row
    # The frame number, for the client to count whole frames: rows 0..2, x 960..1024.
    movl %ebp, %eax
    andl $0x00ffffff, %eax
    movl $0xe0000f00, %edi
    movl $64, %ecx
    rep stosl
    movl $0xe0001f00, %edi
    movl $64, %ecx
    rep stosl
    # Pacing: wait for PACE_TICKS PIT wraps (none: flat out), watching the keyboard.
    movl $PACE_TICKS, %edi
    testl %edi, %edi
    jz frame
    call pit_read
    movw %ax, %bx
wait:
    call kbd_poll
    call pit_read
    cmpw %bx, %ax
    movw %ax, %bx
    jbe wait
    decl %edi
    jnz wait
    jmp frame
pit_read:
    xorb %al, %al
    outb %al, $0x43
    inb $0x40, %al
    movb %al, %cl
    inb $0x40, %al
    movb %al, %ch
    movw %cx, %ax
    ret
kbd_poll:
    inb $0x64, %al
    testb $1, %al
    jz 1f
    inb $0x60, %al
    incl %esi
    call marker
1:
    ret
marker:
    pushl %eax
    pushl %ecx
    pushl %edi
    movl %esi, %eax
    imull $0x01030507, %eax, %eax
    orl $0x00404040, %eax
    andl $0x00ffffff, %eax
    movl $0xe0000000, %edi
    movl $16384, %ecx
    rep stosl
    popl %edi
    popl %ecx
    popl %eax
    ret
    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
gdtr:
    .word 23
    .long gdt
    .org 0xfff0
    .code16
    .byte 0xe9
    .word start - 0xfff3
    .org 0x10000
"#;

/// What the guest draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scene {
    Scroll,
    Fill,
}

impl Scene {
    fn name(self) -> &'static str {
        match self {
            Scene::Scroll => "scroll",
            Scene::Fill => "fill",
        }
    }
    fn op(self) -> &'static str {
        match self {
            Scene::Scroll => "addl %ebp, %eax",
            Scene::Fill => "movl %ebp, %ecx\n    shll $16, %ecx\n    addl %ecx, %eax",
        }
    }
}

/// Assemble the guest for `scene` into `dir`.
fn guest_image(dir: &Path, scene: Scene, pace: u32) -> Result<PathBuf> {
    let src = dir.join(format!("guest-{}-{pace}.S", scene.name()));
    let obj = src.with_extension("o");
    let bin = src.with_extension("bin");
    std::fs::write(
        &src,
        GUEST_ASM
            .replace("MODE_OP", scene.op())
            .replace("PACE_TICKS", &pace.to_string()),
    )?;
    let ok = |c: &mut Command| -> Result<()> {
        let out = c.output().with_context(|| format!("running {c:?}"))?;
        if !out.status.success() {
            bail!("{c:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    ok(Command::new("as").arg("--32").arg("-o").arg(&obj).arg(&src))?;
    ok(Command::new("ld")
        .args(["-m", "elf_i386", "-Ttext=0xffff0000", "-e", "0xffff0000"])
        .args(["--oformat", "binary", "-o"])
        .arg(&bin)
        .arg(&obj))?;
    let len = std::fs::metadata(&bin)?.len();
    if len != 0x1_0000 {
        bail!("guest image is {len} bytes, expected 64 KiB");
    }
    Ok(bin)
}

/// A free loopback port at or above 5900 (QEMU takes display numbers).
fn free_port() -> Result<u16> {
    for p in 5910..5999 {
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    bail!("no free port in 5910..5999")
}

/// Stops the child when dropped: asks with SIGINT first (novabox powers the VM off and
/// exits normally, so its log and, in a profiling build, its profile are written; QEMU
/// quits), and kills it if it is still there after a while.
struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect(addr: SocketAddr) -> Result<Connection> {
    let start = Instant::now();
    loop {
        match Connection::connect(addr, &[encoding::ZRLE, encoding::COPY_RECT, encoding::RAW]) {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                return Err(e).context(format!("connecting to {addr}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Counts what is read.
struct Counting<R> {
    inner: R,
    bytes: u64,
}
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Frames the guest drew per second.
    guest_fps: f64,
    /// Distinct guest frames the client saw per second.
    shown_fps: f64,
    /// Updates with pixels per second.
    fps: f64,
    bytes_per_frame: f64,
    /// Bytes per frame the guest drew (what one full repaint costs on the wire).
    bytes_per_guest_frame: f64,
    kib_per_s: f64,
    latency_ms: f64,
    latency_samples: usize,
    copy_rects: u64,
}

/// Measure a server at `addr` for `secs`.
fn measure(addr: SocketAddr, secs: u64) -> Result<Figures> {
    let mut c = connect(addr)?;
    let mut stream = Counting {
        inner: c.stream.try_clone()?,
        bytes: 0,
    };
    let mut dec = vnc::client::Decoder::new(c.decoder.width, c.decoder.height);
    c.request(false)?;
    // Warm up: until the guest's mode is on and its picture has arrived.
    let warm = Instant::now();
    loop {
        if let Message::Update(_) = dec.message(&mut stream)? {
            c.request(true)?;
        }
        if (dec.width, dec.height) == (WIDTH, HEIGHT) && warm.elapsed() > Duration::from_secs(3) {
            break;
        }
        if warm.elapsed() > Duration::from_secs(60) {
            bail!(
                "the guest's {WIDTH}x{HEIGHT} mode never arrived ({}x{})",
                dec.width,
                dec.height
            );
        }
    }
    let marker = |d: &vnc::client::Decoder| d.pixels[(WIDTH * (MARKER_ROWS / 2) + 5) as usize];
    let counter = |d: &vnc::client::Decoder| d.pixels[1000];
    let first_frame = counter(&dec);
    let mut last_frame = first_frame;
    let mut shown = 0u64;
    let start = Instant::now();
    let start_bytes = stream.bytes;
    let mut frames = 0u64;
    let mut copies = 0u64;
    let mut latencies = Vec::new();
    // Key state: when the press went out and the marker before it.
    let mut pending: Option<(Instant, u32)> = None;
    let mut next_key = start + Duration::from_millis(500);
    let mut release_at: Option<Instant> = None;
    while start.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        if pending.is_none() && release_at.is_none() && now >= next_key {
            pending = Some((Instant::now(), marker(&dec)));
            c.key('a' as u32, true)?;
        }
        if let Some(t) = release_at {
            if now >= t {
                c.key('a' as u32, false)?;
                release_at = None;
                next_key = now + Duration::from_millis(700);
            }
        }
        if let Message::Update(rects) = dec.message(&mut stream)? {
            c.request(true)?;
            if rects.iter().any(|r| r.encoding >= 0) {
                frames += 1;
            }
            // A newer frame number (the marker band, when a key recolours it, is no
            // frame number: those are far off).
            let now_frame = counter(&dec);
            if (1..1 << 20).contains(&(now_frame.wrapping_sub(last_frame) & 0xff_ffff)) {
                last_frame = now_frame;
                shown += 1;
            }
            copies += rects
                .iter()
                .filter(|r| r.encoding == encoding::COPY_RECT)
                .count() as u64;
            if let Some((t0, before)) = pending {
                if marker(&dec) != before {
                    latencies.push(t0.elapsed());
                    pending = None;
                    release_at = Some(Instant::now() + Duration::from_millis(100));
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bytes = (stream.bytes - start_bytes) as f64;
    latencies.sort();
    let median = latencies
        .get(latencies.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let drawn = f64::from(last_frame.wrapping_sub(first_frame) & 0xff_ffff);
    Ok(Figures {
        guest_fps: drawn / elapsed,
        shown_fps: shown as f64 / elapsed,
        bytes_per_guest_frame: if drawn > 0.0 { bytes / drawn } else { 0.0 },
        fps: frames as f64 / elapsed,
        bytes_per_frame: if frames > 0 {
            bytes / frames as f64
        } else {
            0.0
        },
        kib_per_s: bytes / elapsed / 1024.0,
        latency_ms: median,
        latency_samples: latencies.len(),
        copy_rects: copies,
    })
}

fn run_novabox(bin: &Path, image: &Path, engine: &str, secs: u64) -> Result<Figures> {
    run_novabox_with(Command::new(bin), image, engine, secs)
}

/// [`run_novabox`] with `cmd` (novabox, perhaps with environment set) as the VM.
fn run_novabox_with(mut cmd: Command, image: &Path, engine: &str, secs: u64) -> Result<Figures> {
    let port = free_port()?;
    let child = cmd
        .arg("run")
        .arg("--bios")
        .arg(image)
        .args(["--engine", engine, "--memory", "64", "--vnc"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let _guard = Running(child);
    measure(SocketAddr::from(([127, 0, 0, 1], port)), secs)
}

/// Profile training (see `crate::pgo`): `novabox` (a command with its profile output
/// set) serves each scene to a VNC client for `secs` seconds.
pub fn train(novabox: impl Fn() -> Command, dir: &Path, secs: u64) -> Result<()> {
    for scene in [Scene::Scroll, Scene::Fill] {
        let image = guest_image(dir, scene, 0)?;
        let f = run_novabox_with(novabox(), &image, "interpreter", secs)?;
        if f.fps <= 0.0 {
            bail!("the VNC client saw no update of the {} scene", scene.name());
        }
    }
    Ok(())
}

fn run_qemu(image: &Path, accel: &str, secs: u64) -> Result<Figures> {
    let port = free_port()?;
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", accel, "-machine", "pc", "-m", "64", "-nodefaults"])
        .args([
            "-vga", "std", "-serial", "null", "-monitor", "none", "-bios",
        ])
        .arg(image)
        .arg("-vnc")
        .arg(format!("127.0.0.1:{}", port - 5900))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let _guard = Running(child);
    measure(SocketAddr::from(([127, 0, 0, 1], port)), secs)
}

fn show(who: &str, f: &Figures) {
    println!(
        "{:<26} {:>6.1} {:>6.1} {:>7.1} {:>10.0} {:>10.0} {:>8.0} {:>7.1} ({:>2}) {:>6}",
        who,
        f.guest_fps,
        f.shown_fps,
        f.fps,
        f.bytes_per_frame,
        f.bytes_per_guest_frame,
        f.kib_per_s,
        f.latency_ms,
        f.latency_samples,
        f.copy_rects
    );
}

/// Entry point.
pub fn run(args: &[String]) -> Result<()> {
    let mut secs = 20u64;
    let mut pace = 9u32;
    let mut scenes = vec![Scene::Scroll, Scene::Fill];
    let mut flat = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                secs = it
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds")?
            }
            "--pace" => {
                pace = it
                    .next()
                    .context("--pace needs a number")?
                    .parse()
                    .context("--pace")?
            }
            "--scene" => {
                scenes = match it.next().map(String::as_str) {
                    Some("scroll") => vec![Scene::Scroll],
                    Some("fill") => vec![Scene::Fill],
                    _ => bail!("--scene takes scroll or fill"),
                }
            }
            "--flat" => flat = true,
            _ => {
                println!("usage: cargo xtask bench-display [--seconds S (20)] [--pace TICKS (9)] [--scene scroll|fill] [--flat]");
                println!("  --scene: that scene only; --flat: no paced runs");
                println!("  runs each scene flat out, then paced to one frame per TICKS PIT wraps");
                println!("  (54.9 ms each), so both guests draw the same frames");
                return Ok(());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("bench-display-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bin = crate::release_novabox()?;
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "guest redraws {WIDTH}x{} below a {MARKER_ROWS}-row marker; client asks ZRLE, CopyRect, Raw; {secs} s per run",
        HEIGHT - MARKER_ROWS
    );
    println!(
        "{:<26} {:>6} {:>6} {:>7} {:>10} {:>10} {:>8} {:>12} {:>6}",
        "server (scene)",
        "drawn",
        "shown",
        "upd/s",
        "B/update",
        "B/drawn",
        "KiB/s",
        "key->px ms",
        "copies"
    );
    println!("  drawn: guest frames/s; shown: of those, frames/s the client saw; B/drawn: bytes per guest frame");
    // KVM is left out: kvm-pvm runs 64-bit guests only, and this guest is 32-bit.
    let paces: &[u32] = if flat { &[0] } else { &[0, pace] };
    for &p in paces {
        for &scene in &scenes {
            compare(&dir, &bin, qemu, scene, p, secs)?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One scene on one engine class: novabox, then QEMU, then the ratios.
fn compare(dir: &Path, bin: &Path, qemu: bool, scene: Scene, pace: u32, secs: u64) -> Result<()> {
    {
        let image = guest_image(dir, scene, pace)?;
        let label = format!("{} pace {pace}", scene.name());
        let nb = run_novabox(bin, &image, "interpreter", secs)?;
        show(&format!("novabox interp {label}"), &nb);
        if qemu {
            let q = run_qemu(&image, "tcg", secs)?;
            show(&format!("QEMU TCG {label}"), &q);
            println!(
                "  {label}: novabox/QEMU shown fps {:.2}, updates/s {:.2}, bytes per drawn frame {:.3}, bandwidth {:.3}, latency {:.2}",
                nb.shown_fps / q.shown_fps,
                nb.fps / q.fps,
                nb.bytes_per_guest_frame / q.bytes_per_guest_frame,
                nb.kib_per_s / q.kib_per_s,
                nb.latency_ms / q.latency_ms
            );
        } else {
            println!("  QEMU (qemu-system-x86_64) is not installed: no comparison");
        }
    }
    Ok(())
}
