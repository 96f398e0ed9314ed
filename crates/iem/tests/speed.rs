//! Throughput measurement: guest instructions per second on compute loops. Prints the
//! number; asserts only a low floor so it cannot flake on a loaded machine. Run with
//! `cargo test --release -p iem --test speed -- --nocapture` for meaningful numbers.

mod common;
use common::*;
use sup::VmExit;

/// Nanoseconds this thread has spent on a CPU (Linux schedstat), so the figure does not
/// depend on how busy the machine is; None where unavailable.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn measure(name: &str, src: &str) -> f64 {
    let mut m = Machine::long(src, 0x100000);
    let t = std::time::Instant::now();
    let c0 = thread_cpu_ns();
    let e = m.run();
    let dt = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns()
        .zip(c0)
        .map(|(b, a)| b.saturating_sub(a) as f64 / 1e9);
    assert_eq!(e, VmExit::Hlt);
    let n = m.vcpu.stats().instructions;
    let ips = n as f64 / dt;
    let cpu_ips = cpu.filter(|&c| c > 0.0).map(|c| n as f64 / c);
    eprintln!(
        "{name}: {n} instructions in {dt:.3} s = {:.1} M instr/s (wall); {}",
        ips / 1e6,
        match cpu_ips {
            Some(x) => format!("{:.1} M instr/s of CPU time", x / 1e6),
            None => "CPU time unavailable".into(),
        }
    );
    ips
}

/// Loop trip counts are divided by `$IEM_SPEED_DIV` (default 1), so the loops can run under
/// an instruction-counting tool (valgrind) in reasonable time.
fn trips(n: u64) -> u64 {
    let div = std::env::var("IEM_SPEED_DIV")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    (n / div).max(1)
}

#[test]
fn speed_alu_loop() {
    // Register ALU loop with a conditional branch.
    let ips = measure(
        "alu loop",
        &format!(
            r#"
        mov ecx, {}
        xor eax, eax
        mov ebx, 1
    1:  add eax, ebx
        xor ebx, eax
        shl ebx, 1
        inc edx
        dec ecx
        jnz 1b
        hlt
    "#,
            trips(3_000_000)
        ),
    );
    assert!(ips > 1e6);
}

#[test]
fn speed_memory_loop() {
    // Memory-heavy loop: checksum a 64 KiB buffer repeatedly.
    let ips = measure(
        "memory loop",
        &format!(
            r#"
        mov r9d, {}
    2:  mov rsi, 0x200000
        mov ecx, 8192
        xor eax, eax
    1:  add rax, [rsi]
        mov [rsi + 0x10000], rax
        add rsi, 8
        dec ecx
        jnz 1b
        dec r9d
        jnz 2b
        hlt
    "#,
            trips(40)
        ),
    );
    assert!(ips > 1e6);
}

#[test]
fn speed_call_loop() {
    // Call/return and stack traffic.
    let ips = measure(
        "call loop",
        &format!(
            r#"
        mov ecx, {}
    1:  call f
        dec ecx
        jnz 1b
        hlt
    f:  push rbx
        mov rbx, rcx
        imul rbx, rbx, 3
        pop rbx
        ret
    "#,
            trips(1_000_000)
        ),
    );
    assert!(ips > 1e6);
}

#[test]
fn speed_straight_line() {
    // Straight-line register work in long blocks: the per-instruction dispatch cost.
    let ips = measure(
        "straight-line loop",
        &format!(
            "mov ecx, {}\n1:\n{}dec ecx\njnz 1b\nhlt\n",
            trips(300_000),
            "mov eax, ebx\nmov edx, esi\nlea rdi, [rsi + 8]\nadd eax, 1\n".repeat(12)
        ),
    );
    assert!(ips > 1e6);
}
