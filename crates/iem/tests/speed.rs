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

#[test]
fn compute_loop_speed() {
    // Register ALU loop with a conditional branch.
    let alu = measure(
        "alu loop",
        r#"
        mov ecx, 3000000
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
    );
    // Memory-heavy loop: checksum a 64 KiB buffer repeatedly.
    let mem = measure(
        "memory loop",
        r#"
        mov r9d, 40
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
    );
    // Call/return and stack traffic.
    let calls = measure(
        "call loop",
        r#"
        mov ecx, 1000000
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
    );
    assert!(alu > 1e6 && mem > 1e6 && calls > 1e6);
}
