//! The guest kit's Debian kernel (`kit-cache/vmlinuz`, Linux 6.1) with the kit initramfs
//! (`kit-cache/initramfs.cpio.gz`) boots by direct kernel boot on the interpreter engine to
//! its init, runs a test from the kit (`novabox.test=<name>`), and powers the VM off through
//! ACPI S5 (`poweroff -f`): with one vCPU (`smoke`) and with two (`smp`, which checks the
//! guest brought both CPUs online).
//!
//! The kit lives in `kit-cache/` (`$NOVABOX_KIT_DIR`, made by `cargo xtask kit`); without it
//! each test prints `SKIPPED (no guest kit): <name>` and returns. A run that does not reach
//! its markers within the timeout (default 40 minutes, `$NOVABOX_BOOT_TIMEOUT_SECS`) is
//! stopped by a watchdog and fails with the console tail and the vCPU states. Run in release
//! mode: `cargo test --release -p glue --test linux_boot -- --nocapture`. The boots run one
//! at a time (a global lock), so on a small CI machine they do not slow each other down.
//!
//! Measured (release, 2-core machine shared with other builds, load average about 12): one
//! vCPU about 20 minutes to power-off, most of it in the kernel's XZ decompressor; hence the
//! long default timeout (`$NOVABOX_BOOT_TIMEOUT_SECS` overrides it).
//! `$NOVABOX_BOOT_ENGINE=kvm` runs the same tests on the KVM engine (for comparisons).

mod common;

use common::Capture;
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use hm::StopReason;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kernel and initrd, or the loud skip.
fn kit_or_skip(test: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = glue::firmware::kit_dir();
    let (k, i) = (dir.join("vmlinuz"), dir.join("initramfs.cpio.gz"));
    match (std::fs::read(&k), std::fs::read(&i)) {
        (Ok(k), Ok(i)) => Some((k, i)),
        _ => {
            eprintln!(
                "SKIPPED (no guest kit): {test} (needs {} and {}; run `cargo xtask kit`)",
                k.display(),
                i.display()
            );
            None
        }
    }
}

fn timeout() -> Duration {
    let secs = std::env::var("NOVABOX_BOOT_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2400);
    Duration::from_secs(secs)
}

fn engine() -> EngineChoice {
    std::env::var("NOVABOX_BOOT_ENGINE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(EngineChoice::Interpreter)
}

/// Where the debugging variant puts the bzImage so the ELF kernel can sit at 16 MiB.
const MOVED_BZIMAGE: u64 = 0x800_0000;

/// The loadable segments of an ELF64 kernel (`vmlinux`) as one flat image starting at the
/// lowest physical address, and that address.
fn flatten_elf(elf: &[u8]) -> (u64, Vec<u8>) {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    let segs: Vec<(u64, u64, u64, u64)> = (0..usize::from(phnum))
        .map(|i| phoff + i * usize::from(phentsize))
        .filter(|&o| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 1)
        .map(|o| {
            (
                u64_at(o + 8),
                u64_at(o + 24),
                u64_at(o + 32),
                u64_at(o + 40),
            )
        })
        .collect();
    let lo = segs.iter().map(|s| s.1).min().expect("no PT_LOAD");
    let hi = segs.iter().map(|s| s.1 + s.3).max().unwrap();
    let mut img = vec![0u8; (hi - lo) as usize];
    for (off, pa, filesz, _) in segs {
        let (o, d) = (off as usize, (pa - lo) as usize);
        img[d..d + filesz as usize].copy_from_slice(&elf[o..o + filesz as usize]);
    }
    (lo, img)
}

/// A debugging aid: the kernel proper (an uncompressed `vmlinux` from `$NOVABOX_VMLINUX`,
/// e.g. extracted from the kit's bzImage) started at its 64-bit entry with the same zero
/// page, initrd and ACPI tables, skipping the decompressor (which takes most of the boot
/// time on the interpreter). The bzImage is moved out of the way and its 64-bit entry jumps
/// to the ELF entry.
#[test]
#[ignore = "debugging aid: needs $NOVABOX_VMLINUX"]
fn kernel_proper_from_vmlinux() {
    let test = "kernel_proper_from_vmlinux";
    let Some((mut kernel, initrd)) = kit_or_skip(test) else {
        return;
    };
    let Some(elf) = std::env::var_os("NOVABOX_VMLINUX").and_then(|p| std::fs::read(p).ok()) else {
        eprintln!("SKIPPED (no $NOVABOX_VMLINUX): {test}");
        return;
    };
    let cpus = std::env::var("NOVABOX_BOOT_CPUS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let entry = u64::from_le_bytes(elf[0x18..0x20].try_into().unwrap());
    let (at, image) = flatten_elf(&elf);
    kernel[0x258..0x260].copy_from_slice(&MOVED_BZIMAGE.to_le_bytes());
    let cmdline = format!(
        "console=ttyS0 novabox.test={} novabox.expect_cpus={cpus}",
        if cpus > 1 { "smp" } else { "smoke" }
    );
    let b = boot_with(kernel, initrd, cpus, &cmdline, |m| {
        m.memory().write(at, &image).expect("write vmlinux");
        // mov rax, entry; jmp rax
        let mut t = vec![0x48, 0xb8];
        t.extend_from_slice(&entry.to_le_bytes());
        t.extend_from_slice(&[0xff, 0xe0]);
        m.memory()
            .write(MOVED_BZIMAGE + 0x200, &t)
            .expect("write trampoline");
    });
    let want = ["NOVABOX-INIT-START", "NOVABOX-TEST-PASS"].map(String::from);
    check(test, &b, &want);
}

/// What one boot produced.
struct Boot1 {
    console: String,
    reason: StopReason,
    timed_out: bool,
    elapsed: Duration,
    states: String,
}

/// Boot the kit with `cmdline` on `cpus` vCPUs until the VM stops (or the watchdog stops it).
fn boot(kernel: Vec<u8>, initrd: Vec<u8>, cpus: u32, cmdline: &str) -> Boot1 {
    boot_with(kernel, initrd, cpus, cmdline, |_| {})
}

/// [`boot`], with `prepare` changing the built machine before it runs.
fn boot_with(
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    cpus: u32,
    cmdline: &str,
    prepare: impl FnOnce(&mut Machine),
) -> Boot1 {
    // One boot at a time; a boot that panicked still lets the next one run.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let com1 = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Kernel {
        kernel,
        initrd: Some(initrd),
        cmdline: cmdline.to_string(),
    });
    cfg.memory_mib = 512;
    cfg.cpus = cpus;
    cfg.engine = engine();
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.rtc_utc = true;
    let mut m = Machine::build(cfg).expect("build the machine");
    prepare(&mut m);
    let stop = m.stop_handle();
    let running = Arc::new(AtomicBool::new(true));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (r, t) = (running.clone(), timed_out.clone());
    let limit = timeout();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while r.load(Ordering::SeqCst) {
            if start.elapsed() > limit {
                t.store(true, Ordering::SeqCst);
                stop.power_off();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let start = Instant::now();
    let reason = m.run().expect("run the machine");
    let elapsed = start.elapsed();
    running.store(false, Ordering::SeqCst);
    watchdog.join().expect("watchdog thread");
    let states = m
        .final_states()
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Some(s) => format!("vCPU {i}:\n{}\n", hm::exec::format_state("final", s)),
            None => format!("vCPU {i}: no state\n"),
        })
        .collect();
    Boot1 {
        console: com1.text(),
        reason,
        timed_out: timed_out.load(Ordering::SeqCst),
        elapsed,
        states,
    }
}

/// Check that the boot reached init, printed every marker in `want` (in order), and powered
/// off by itself.
fn check(test: &str, b: &Boot1, want: &[String]) {
    let tail = {
        let n = b.console.len().saturating_sub(6000);
        b.console.get(n..).unwrap_or(&b.console).to_string()
    };
    let report = format!(
        "after {:.1} s ({:?}{}):\n--- console tail ---\n{tail}\n--- vCPU states ---\n{}",
        b.elapsed.as_secs_f64(),
        b.reason,
        if b.timed_out {
            ", stopped by the watchdog"
        } else {
            ""
        },
        b.states
    );
    let mut at = 0;
    for w in want {
        match b.console[at..].find(w.as_str()) {
            Some(p) => at += p + w.len(),
            None => panic!("{test}: the guest did not print {w:?} {report}"),
        }
    }
    assert!(
        !b.console.contains("NOVABOX-TEST-FAIL"),
        "{test}: the guest test failed {report}"
    );
    assert!(
        !b.timed_out && b.reason == StopReason::PowerOff,
        "{test}: the guest did not power off by itself {report}"
    );
    eprintln!(
        "{test}: NOVABOX-TEST-PASS and ACPI power-off after {:.1} s",
        b.elapsed.as_secs_f64()
    );
}

#[test]
fn kernel_boots_to_smoke_test_one_cpu() {
    let test = "kernel_boots_to_smoke_test_one_cpu";
    let Some((kernel, initrd)) = kit_or_skip(test) else {
        return;
    };
    let b = boot(kernel, initrd, 1, "console=ttyS0 novabox.test=smoke");
    let want = [
        "NOVABOX-INIT-START",
        "NOVABOX-CPUS=1",
        "NOVABOX-TEST-PASS smoke",
    ]
    .map(String::from);
    check(test, &b, &want);
}

#[test]
fn kernel_boots_with_two_cpus() {
    let test = "kernel_boots_with_two_cpus";
    let Some((kernel, initrd)) = kit_or_skip(test) else {
        return;
    };
    let b = boot(
        kernel,
        initrd,
        2,
        "console=ttyS0 novabox.test=smp novabox.expect_cpus=2",
    );
    let want = [
        "NOVABOX-INIT-START",
        "NOVABOX-CPUS=2",
        "NOVABOX-TEST-PASS smp",
    ]
    .map(String::from);
    check(test, &b, &want);
}
