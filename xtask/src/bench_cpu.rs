//! `cargo xtask bench-cpu [--runs N] [--passes P] [--memory MIB] [--novabox PATH]
//! [--qemu PATH]`: guest integer throughput, novabox's interpreter vs QEMU TCG.
//!
//! The guest program is a static x86-64 Linux binary (assembled here with `as` and `ld`,
//! no libc) that checksums a 64 KiB buffer P times (default 2000) and times that loop itself
//! with `clock_gettime(CLOCK_MONOTONIC)`. Its timed region has an exact, known number of
//! user instructions, `2 + P * (4 + 8 * 8192) + 4` (straight-line code and counted loops:
//! the count is fixed by the program text, not measured), which it prints with the elapsed
//! nanoseconds and the checksum:
//! `NOVABOX-BENCH-CPU ns=N instructions=I sum=S`.
//!
//! The program is added to a copy of the kit's initramfs as a second (gzip-compressed newc)
//! cpio archive, which Linux unpacks after the first, together with a kit test script
//! `/tests/benchcpu.sh` that runs it; both engines boot that with
//! `novabox.test=benchcpu`, so the kit's init runs it and powers off. The same binary also
//! runs natively on the host for reference. Guest instructions per second are the median
//! over N runs (default 3).

use crate::bench_boot::{self, timed_boot};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 64-bit words in the checksummed buffer.
const QWORDS: u64 = 8192;
/// The marker of the program's result line.
const MARKER: &str = "NOVABOX-BENCH-CPU";

/// User instructions in the program's timed region for `passes` passes.
pub fn timed_instructions(passes: u64) -> u64 {
    2 + passes * (4 + 8 * QWORDS) + 4
}

/// The program's source (GNU as, Intel syntax).
fn program_source(passes: u64) -> String {
    format!(
        r#"
.intel_syntax noprefix
.set PASSES, {passes}
.set QWORDS, {QWORDS}
.set INSNS, {insns}
.globl _start
.bss
.align 64
buf: .skip QWORDS * 8
ts0: .skip 16
ts1: .skip 16
num: .skip 32
.section .rodata
msg0: .ascii "{MARKER} ns="
.set msg0_len, . - msg0
msg1: .ascii " instructions="
.set msg1_len, . - msg1
msg2: .ascii " sum="
.set msg2_len, . - msg2
nl: .ascii "\n"
.text
_start:
    lea rdi, [rip + buf]
    mov ecx, QWORDS
    movabs rax, 0x9e3779b97f4a7c15
    mov edx, 1
1:  mov [rdi], rdx
    add rdx, rax
    add rdi, 8
    dec ecx
    jnz 1b
    mov eax, 228                /* clock_gettime(CLOCK_MONOTONIC, &ts0) */
    mov edi, 1
    lea rsi, [rip + ts0]
    syscall
    /* Timed region: 2 + PASSES * (4 + 8 * QWORDS) + 4 instructions. */
    xor r8d, r8d
    mov r10d, PASSES
2:  lea rsi, [rip + buf]
    mov ecx, QWORDS
3:  mov rax, [rsi]
    add r8, rax
    mov rdx, r8
    shr rdx, 13
    xor r8, rdx
    add rsi, 8
    dec ecx
    jnz 3b
    dec r10d
    jnz 2b
    mov eax, 228
    mov edi, 1
    lea rsi, [rip + ts1]
    syscall
    /* End of the timed region. */
    mov r13, r8
    mov rax, [rip + ts1]
    sub rax, [rip + ts0]
    imul rax, rax, 1000000000
    add rax, [rip + ts1 + 8]
    sub rax, [rip + ts0 + 8]
    mov r12, rax
    lea rsi, [rip + msg0]
    mov edx, msg0_len
    call write
    mov rdi, r12
    call putnum
    lea rsi, [rip + msg1]
    mov edx, msg1_len
    call write
    movabs rdi, INSNS
    call putnum
    lea rsi, [rip + msg2]
    mov edx, msg2_len
    call write
    mov rdi, r13
    call putnum
    lea rsi, [rip + nl]
    mov edx, 1
    call write
    mov eax, 60                 /* exit(0) */
    xor edi, edi
    syscall
write:                          /* write(1, rsi, rdx) */
    mov eax, 1
    mov edi, 1
    syscall
    ret
putnum:                         /* print rdi in decimal */
    lea rsi, [rip + num + 32]
    mov rax, rdi
    mov ecx, 10
4:  xor edx, edx
    div rcx
    add dl, '0'
    dec rsi
    mov [rsi], dl
    test rax, rax
    jnz 4b
    lea rdx, [rip + num + 32]
    sub rdx, rsi
    jmp write
"#,
        insns = timed_instructions(passes)
    )
}

/// Assemble and link the program into `dir`; returns the binary's path.
fn build_program(dir: &Path, passes: u64) -> Result<PathBuf> {
    let (s, o, b) = (dir.join("bench.s"), dir.join("bench.o"), dir.join("bench"));
    std::fs::write(&s, program_source(passes))?;
    for (tool, args) in [
        ("as", vec!["--64", "-o", path_str(&o)?, path_str(&s)?]),
        ("ld", vec!["-static", "-o", path_str(&b)?, path_str(&o)?]),
    ] {
        let out = Command::new(tool)
            .args(&args)
            .output()
            .with_context(|| format!("running {tool} (binutils)"))?;
        if !out.status.success() {
            bail!("{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(b)
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("temporary path is not UTF-8")
}

/// A newc cpio archive of (path, mode, data) regular files, with its trailer.
pub fn newc_archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |ino: usize, name: &str, mode: u32, data: &[u8]| {
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            namesize,
            0
        );
        out.extend_from_slice(hdr.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(0x4e_0000 + i, name, *mode, data);
    }
    entry(0, "TRAILER!!!", 0, &[]);
    out
}

/// The kit initramfs with the program and its test script appended as a second archive.
fn bench_initramfs(kit_initrd: &Path, program: &[u8], out: &Path) -> Result<()> {
    let mut bytes =
        std::fs::read(kit_initrd).with_context(|| format!("reading {}", kit_initrd.display()))?;
    let script = b"#!/bin/sh\n/bin/novabox-bench-cpu\n";
    let archive = newc_archive(&[
        ("bin/novabox-bench-cpu", 0o100_755, program),
        ("tests/benchcpu.sh", 0o100_755, script),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&archive)?;
    bytes.extend_from_slice(&gz.finish()?);
    std::fs::write(out, bytes)?;
    Ok(())
}

/// The program's result line: (nanoseconds, instructions).
pub fn parse_result(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains(MARKER))?;
    let field = |k: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    Some((field("ns=")?, field("instructions=")?))
}

fn ips(ns: u64, n: u64) -> f64 {
    n as f64 / (ns.max(1) as f64 / 1e9)
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `cargo xtask bench-cpu`.
pub fn run(args: &[String]) -> Result<()> {
    // --passes is ours; the rest are the boot benchmark's options.
    let mut passes = 2000u64;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--passes" {
            passes = it
                .next()
                .context("--passes needs a value")?
                .parse()
                .context("--passes")?;
        } else {
            rest.push(a.clone());
        }
    }
    let mut o = bench_boot::parse_opts(&rest, "console=ttyS0 quiet novabox.test=benchcpu")?;
    if !rest.iter().any(|a| a == "--runs") {
        o.runs = 3;
    }
    let (kernel, kit_initrd) = bench_boot::kit_files()?;
    let dir = std::env::temp_dir().join(format!("novabox-bench-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let prog = build_program(&dir, passes)?;
    let initrd = dir.join("initramfs-bench.cpio.gz");
    bench_initramfs(&kit_initrd, &std::fs::read(&prog)?, &initrd)?;
    let nb = bench_boot::novabox_binary(&o.novabox)?;
    let qemu = bench_boot::qemu_binary(&o.qemu);
    println!(
        "CPU benchmark: checksum of a 64 KiB buffer x {passes} = {} guest instructions, timed in the guest; {} run(s) each",
        timed_instructions(passes),
        o.runs
    );

    let host = Command::new(&prog)
        .output()
        .context("running the program on the host")?;
    let host_ips = parse_result(&String::from_utf8_lossy(&host.stdout)).map(|(ns, n)| ips(ns, n));

    let mut nova = Vec::new();
    let mut tcg = Vec::new();
    for i in 0..o.runs {
        let (_, text) = timed_boot(bench_boot::novabox_cmd(&nb, &kernel, &initrd, &o), MARKER)
            .context("novabox boot")?;
        let (ns, n) = parse_result(&text).context("no result line from novabox's guest")?;
        println!(
            "run {}: novabox interpreter: {:.3} s, {:.1} M instr/s",
            i + 1,
            ns as f64 / 1e9,
            ips(ns, n) / 1e6
        );
        nova.push(ips(ns, n));
        if let Some(q) = &qemu {
            let (_, text) = timed_boot(bench_boot::qemu_cmd(q, &kernel, &initrd, &o), MARKER)
                .context("QEMU boot")?;
            let (ns, n) = parse_result(&text).context("no result line from QEMU's guest")?;
            println!(
                "run {}: QEMU TCG:            {:.3} s, {:.1} M instr/s",
                i + 1,
                ns as f64 / 1e9,
                ips(ns, n) / 1e6
            );
            tcg.push(ips(ns, n));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    println!("{:<22} {:>16}", "median", "M instr/s");
    let nm = median_f(nova);
    println!("{:<22} {:>16.1}", "novabox interpreter", nm / 1e6);
    if tcg.is_empty() {
        println!("QEMU (qemu-system-x86_64) is not installed: no comparison");
    } else {
        let qm = median_f(tcg);
        println!("{:<22} {:>16.1}", "QEMU TCG", qm / 1e6);
        println!("{:<22} {:>15.2}x", "novabox / QEMU", nm / qm.max(1.0));
    }
    if let Some(h) = host_ips {
        println!("{:<22} {:>16.1}", "host (native)", h / 1e6);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_parses() {
        let t = "noise\nNOVABOX-BENCH-CPU ns=2000000000 instructions=131080006 sum=5\nmore";
        assert_eq!(parse_result(t), Some((2_000_000_000, 131_080_006)));
        assert_eq!(parse_result("NOVABOX-BENCH-CPU ns=x instructions=1"), None);
        assert_eq!(parse_result("nothing"), None);
        assert!((ips(2_000_000_000, 100_000_000) - 5e7).abs() < 1.0);
    }

    #[test]
    fn newc_archive_is_aligned_and_ends_with_the_trailer() {
        let a = newc_archive(&[("bin/x", 0o100_755, b"abc")]);
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        let s = String::from_utf8_lossy(&a);
        assert!(s.contains("bin/x\0"));
        assert!(s.contains("TRAILER!!!\0"));
        // File size field (7th) of the first header: 3 bytes.
        assert_eq!(&a[6 + 6 * 8..6 + 7 * 8], b"00000003");
    }

    #[test]
    fn the_program_runs_on_the_host_and_reports_its_instruction_count() {
        let dir = std::env::temp_dir().join(format!("bench-cpu-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = build_program(&dir, 3).unwrap();
        let out = Command::new(&prog).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (ns, n) = parse_result(&text).unwrap_or_else(|| panic!("bad output {text:?}"));
        assert_eq!(n, timed_instructions(3));
        assert!(ns > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
