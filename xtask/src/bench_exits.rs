//! `cargo xtask bench-exits`: the cost of one VM-exit round trip.
//!
//! One guest, three ways of running it. The guest (a 64 KiB flat firmware image entered at
//! the reset vector) executes `out dx, al` to an unclaimed port N times, then writes port
//! 0xF4 (QEMU's isa-debug-exit, so QEMU stops) and halts:
//!
//! - (a) floor: the smallest exit loop on kvm-ioctls (`sup::kvm::floor`), no state, no bus;
//! - (b) novabox: sup's `KvmVcpu` with every exit dispatched through an `iomio::Bus`, as a
//!   VMM exit loop does;
//! - (c) QEMU/KVM running the same image with `-bios`, timed as wall time minus the wall
//!   time of the same image with N = 0 (QEMU's start-up and tear-down).

use anyhow::{bail, Context, Result};
use iomio::{Bus, BusDevice};
use parking_lot::Mutex;
use pgm::{GuestMemory, MemoryLayout};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sup::kvm::KvmHypervisor;
use sup::{IoDirection, Vcpu, VmExit};

/// The port the guest hammers. Nothing in novabox or in QEMU's `-nodefaults` PC claims it,
/// and it is not an in-kernel device port, so every access is a full exit to user space.
pub const BENCH_PORT: u16 = 0x0f00;
/// QEMU's isa-debug-exit port (and one more unclaimed exit for the other two).
const EXIT_PORT: u16 = 0x00f4;
const IMAGE_SIZE: usize = 0x1_0000;

/// Where the image's parts sit (offsets in the image, which is mapped at 4 GiB - 64 KiB).
const IMAGE_BASE: u32 = 0xffff_0000;
const GDT_OFF: usize = 0x100;
const GDTR_OFF: usize = 0x120;
const LONG_OFF: usize = 0x200;

/// The firmware image. Entered at the reset vector in real mode, it builds identity page
/// tables in RAM (0x1000..0x5000, with A/D bits preset so the walker never writes the ROM),
/// switches straight to 64-bit long mode and runs the exit loop there, so the loop is the
/// same native instruction stream on every engine (kvm-pvm would otherwise emulate every
/// real-mode instruction).
pub fn guest_image(exits: u32) -> Vec<u8> {
    let mut img = vec![0u8; IMAGE_SIZE];
    let n = exits.to_le_bytes();
    let p = BENCH_PORT.to_le_bytes();
    let e = EXIT_PORT.to_le_bytes();
    let gdtr = (GDTR_OFF as u16).to_le_bytes();
    let target = (IMAGE_BASE + LONG_OFF as u32).to_le_bytes();
    // mov dword [addr16], imm32 (DS base is 0 after reset).
    let store = |addr: u16, v: u32| {
        let a = addr.to_le_bytes();
        let v = v.to_le_bytes();
        [0x66, 0xc7, 0x06, a[0], a[1], v[0], v[1], v[2], v[3]]
    };
    let mut real: Vec<u8> = vec![0xfa]; // cli
    for (addr, v) in [
        (0x1000, 0x2023),      // PML4[0] -> PDPT 0x2000 (P, RW, A)
        (0x2000, 0x3023),      // PDPT[0] -> PD 0x3000
        (0x2018, 0x4023),      // PDPT[3] -> PD 0x4000
        (0x3000, 0xe3),        // PD[0]: 2 MiB page at 0 (P, RW, A, D, PS)
        (0x4ff8, 0xffe0_00e3), // PD[511]: 2 MiB page at 0xFFE00000 (this ROM)
    ] {
        real.extend_from_slice(&store(addr, v));
    }
    #[rustfmt::skip]
    real.extend_from_slice(&[
        0x66, 0x2e, 0x0f, 0x01, 0x16, gdtr[0], gdtr[1], // lgdt [cs:GDTR] (32-bit base)
        0x66, 0xb8, 0x20, 0x00, 0x00, 0x00,             // mov eax, CR4.PAE
        0x0f, 0x22, 0xe0,                               // mov cr4, eax
        0x66, 0xb8, 0x00, 0x10, 0x00, 0x00,             // mov eax, 0x1000
        0x0f, 0x22, 0xd8,                               // mov cr3, eax
        0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0,             // mov ecx, EFER
        0x0f, 0x32,                                     // rdmsr
        0x66, 0x0d, 0x00, 0x01, 0x00, 0x00,             // or eax, EFER.LME
        0x0f, 0x30,                                     // wrmsr
        0x66, 0xb8, 0x11, 0x00, 0x00, 0x80,             // mov eax, PG | ET | PE
        0x0f, 0x22, 0xc0,                               // mov cr0, eax
        0x66, 0xea, target[0], target[1], target[2], target[3], 0x08, 0x00, // jmp 0x08:LONG
    ]);
    assert!(real.len() <= GDT_OFF);
    img[..real.len()].copy_from_slice(&real);
    // GDT: null, 64-bit code (accessed), data (accessed).
    img[GDT_OFF + 8..GDT_OFF + 16].copy_from_slice(&0x00af_9b00_0000_ffffu64.to_le_bytes());
    img[GDT_OFF + 16..GDT_OFF + 24].copy_from_slice(&0x00cf_9300_0000_ffffu64.to_le_bytes());
    img[GDTR_OFF..GDTR_OFF + 2].copy_from_slice(&23u16.to_le_bytes());
    img[GDTR_OFF + 2..GDTR_OFF + 6].copy_from_slice(&(IMAGE_BASE + GDT_OFF as u32).to_le_bytes());
    #[rustfmt::skip]
    let long = [
        0xb9, n[0], n[1], n[2], n[3],       // 0x00: mov ecx, exits
        0xba, p[0], p[1], 0x00, 0x00,       // 0x05: mov edx, BENCH_PORT
        0x85, 0xc9,                         // 0x0a: test ecx, ecx
        0x74, 0x05,                         // 0x0c: jz done (0x13)
        0xee,                               // 0x0e: loop: out dx, al
        0xff, 0xc9,                         // 0x0f: dec ecx
        0x75, 0xfb,                         // 0x11: jnz loop (0x0e)
        0xba, e[0], e[1], 0x00, 0x00,       // 0x13: done: mov edx, EXIT_PORT
        0xee,                               // 0x18: out dx, al
        0xf4,                               // 0x19: hlt
        0xeb, 0xfd,                         // 0x1a: jmp 0x19
    ];
    img[LONG_OFF..LONG_OFF + long.len()].copy_from_slice(&long);
    // Reset vector F000:FFF0: jmp near 0 (0xFFF3 + 0x000D wraps to 0).
    img[0xfff0..0xfff3].copy_from_slice(&[0xe9, 0x0d, 0x00]);
    img
}

fn guest_memory(exits: u32) -> Result<Arc<GuestMemory>> {
    let layout = MemoryLayout::pc(16 << 20)?.with_firmware(IMAGE_SIZE as u64)?;
    let mem = GuestMemory::new(layout)?;
    mem.load_image(0x1_0000_0000 - IMAGE_SIZE as u64, &guest_image(exits))?;
    Ok(Arc::new(mem))
}

/// A register block standing in for the devices a PC has on its port bus, so the bus lookup
/// is not trivially empty.
struct Dummy;
impl BusDevice for Dummy {
    fn read(&mut self, _addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _addr: u64, _offset: u64, _data: &[u8]) {}
}

fn pc_like_port_bus() -> Result<Bus> {
    let bus = Bus::new();
    let dev: iomio::SharedDevice = Arc::new(Mutex::new(Dummy));
    for (base, len, name) in [
        (0x20, 2, "pic1"),
        (0x40, 4, "pit"),
        (0x60, 1, "kbd-data"),
        (0x64, 1, "kbd-cmd"),
        (0x70, 2, "rtc"),
        (0x80, 1, "post"),
        (0xa0, 2, "pic2"),
        (0x1f0, 8, "ide0"),
        (0x3f8, 8, "uart0"),
        (0x4000, 0x40, "acpi-pm"),
        (0xcf8, 8, "pci-cfg"),
    ] {
        bus.insert(base, len, name, dev.clone())?;
    }
    Ok(bus)
}

/// (a) The floor.
fn run_floor(exits: u32) -> Result<(u64, Duration)> {
    let mem = guest_memory(exits)?;
    let r = sup::kvm::floor::run_pio_loop(&mem)?;
    Ok((r.pio_exits, r.elapsed))
}

/// (b) novabox: KvmVcpu + bus dispatch.
fn run_novabox(hv: &KvmHypervisor, exits: u32) -> Result<(u64, Duration)> {
    let mem = guest_memory(exits)?;
    let vm = hv.create_kvm_vm(mem)?;
    let mut vcpu = vm.create_kvm_vcpu(0)?;
    // The guest enables long mode itself: KVM wants CPUID to offer it.
    vcpu.set_cpuid(&hv.supported_cpuid()?)?;
    let io_bus = pc_like_port_bus()?;
    let mmio_bus = Bus::new();
    let mut n = 0u64;
    let start = Instant::now();
    loop {
        match vcpu.run()? {
            VmExit::Io {
                port,
                size,
                count: _,
                dir,
            } => {
                n += 1;
                let size = usize::from(size.max(1));
                let data = vcpu.io_data();
                match dir {
                    IoDirection::Out => {
                        for chunk in data.chunks(size) {
                            io_bus.write(u64::from(port), chunk);
                        }
                    }
                    IoDirection::In => {
                        for chunk in data.chunks_mut(size) {
                            io_bus.read(u64::from(port), chunk);
                        }
                    }
                }
            }
            VmExit::Mmio { gpa, write, .. } => {
                let data = vcpu.mmio_data();
                if write {
                    mmio_bus.write(gpa, data);
                } else {
                    mmio_bus.read(gpa, data);
                }
            }
            VmExit::Hlt => break,
            VmExit::Recalled => {}
            other => bail!("novabox guest: unexpected exit {other:?}"),
        }
    }
    Ok((n, start.elapsed()))
}

fn qemu_binary() -> Option<&'static str> {
    let bin = "qemu-system-x86_64";
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| bin)
}

/// Wall time of one QEMU run of the image with `exits` exits.
fn run_qemu_once(bin: &str, image: &std::path::Path) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(bin)
        .args([
            "-accel",
            "kvm",
            "-nodefaults",
            "-nographic",
            "-m",
            "16",
            "-bios",
        ])
        .arg(image)
        .args([
            "-device",
            &format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04"),
        ])
        .stdin(Stdio::null())
        .output()
        .context("running QEMU")?;
    let elapsed = start.elapsed();
    // isa-debug-exit makes QEMU exit with (value << 1) | 1.
    if !matches!(out.status.code(), Some(c) if c & 1 == 1) {
        bail!(
            "QEMU did not leave through isa-debug-exit ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(elapsed)
}

/// (c) QEMU: best-of-`runs` wall time with `exits`, minus best-of-`runs` with 0 exits.
fn run_qemu(bin: &str, exits: u32, runs: u32) -> Result<(Duration, Duration)> {
    let dir = std::env::temp_dir().join(format!("novabox-bench-exits-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let full = dir.join("exits.bin");
    let empty = dir.join("empty.bin");
    std::fs::write(&full, guest_image(exits))?;
    std::fs::write(&empty, guest_image(0))?;
    let best = |img: &std::path::Path| -> Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..runs {
            best = best.min(run_qemu_once(bin, img)?);
        }
        Ok(best)
    };
    let base = best(&empty)?;
    let total = best(&full)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((total, base))
}

fn best_of(runs: u32, mut f: impl FnMut() -> Result<(u64, Duration)>) -> Result<(u64, Duration)> {
    let mut best: Option<(u64, Duration)> = None;
    for _ in 0..runs {
        let r = f()?;
        if !matches!(best, Some(b) if b.1 <= r.1) {
            best = Some(r);
        }
    }
    best.context("no runs")
}

fn ns_per(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

fn parse_args(args: &[String]) -> Result<(u32, u32)> {
    let mut exits = 1_000_000u32;
    let mut runs = 3u32;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exits" => exits = it.next().context("--exits N")?.parse()?,
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            "-h" | "--help" => {
                println!("usage: cargo xtask bench-exits [--exits N (1000000)] [--runs R (3)]");
                std::process::exit(0);
            }
            other => bail!("bench-exits: unknown argument {other}"),
        }
    }
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok((exits, runs))
}

/// Entry point of `cargo xtask bench-exits`.
pub fn run(args: &[String]) -> Result<()> {
    let (exits, runs) = parse_args(args)?;
    let hv = KvmHypervisor::new().context("bench-exits needs /dev/kvm")?;
    let kvm_kind = if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        "kvm-pvm (software hypervisor)"
    } else if sup::host_has_hw_virt() {
        "KVM on VT-x/AMD-V"
    } else {
        "KVM"
    };
    println!(
        "VM-exit round trip: {exits} `out` exits to unclaimed port {BENCH_PORT:#x}, best of {runs}, on {kvm_kind}"
    );

    let (fn_, fd) = best_of(runs, || run_floor(exits))?;
    let (nn, nd) = best_of(runs, || run_novabox(&hv, exits))?;
    if fn_ < u64::from(exits) || nn < u64::from(exits) {
        bail!("guest made {fn_} / {nn} exits, expected at least {exits}");
    }
    let floor = ns_per(fd, fn_);
    let nova = ns_per(nd, nn);
    let qemu = match qemu_binary() {
        None => {
            println!("QEMU (qemu-system-x86_64) is not installed: skipping (c)");
            None
        }
        Some(bin) => {
            let (total, base) = run_qemu(bin, exits, runs)?;
            let work = total.saturating_sub(base);
            println!(
                "QEMU wall time: {:.3} s with {exits} exits, {:.3} s with 0 (start-up)",
                total.as_secs_f64(),
                base.as_secs_f64()
            );
            Some(ns_per(work, u64::from(exits) + 1))
        }
    };

    println!();
    println!("{:<46} {:>10}", "loop", "ns/exit");
    println!("{:<46} {:>10.0}", "(a) floor: bare kvm-ioctls loop", floor);
    println!(
        "{:<46} {:>10.0}",
        "(b) novabox: sup KvmVcpu + iomio::Bus dispatch", nova
    );
    if let Some(q) = qemu {
        println!(
            "{:<46} {:>10.0}",
            "(c) QEMU -accel kvm (wall - start-up)", q
        );
    }
    println!();
    println!("novabox / floor = {:.2}", nova / floor);
    if let Some(q) = qemu {
        println!("novabox / qemu  = {:.2}", nova / q);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_layout() {
        let img = guest_image(0x0102_0304);
        assert_eq!(img.len(), IMAGE_SIZE);
        assert_eq!(&img[LONG_OFF + 1..LONG_OFF + 5], &[4, 3, 2, 1]);
        assert_eq!(&img[0xfff0..0xfff3], &[0xe9, 0x0d, 0x00]);
        // The near jump at the reset vector lands on offset 0.
        let rel = u16::from_le_bytes([img[0xfff1], img[0xfff2]]);
        assert_eq!(0xfff3u16.wrapping_add(rel), 0);
        // jz and jnz targets inside the long-mode loop.
        assert_eq!(0x0e + i32::from(img[LONG_OFF + 0x0d] as i8), 0x13);
        assert_eq!(0x13 + i32::from(img[LONG_OFF + 0x12] as i8), 0x0e);
        // The far jump goes to the long-mode code.
        let far = img.windows(2).position(|w| w == [0x66, 0xea]).unwrap();
        let target = u32::from_le_bytes(img[far + 2..far + 6].try_into().unwrap());
        assert_eq!(target, IMAGE_BASE + LONG_OFF as u32);
    }

    #[test]
    fn args() {
        assert_eq!(parse_args(&[]).unwrap(), (1_000_000, 3));
        let a: Vec<String> = ["--exits", "10", "--runs", "2"].map(String::from).to_vec();
        assert_eq!(parse_args(&a).unwrap(), (10, 2));
        assert!(parse_args(&["--runs".into(), "0".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
    }
}
