//! Tiny hand-assembled guests run through the whole VMM: `glue::Machine` with hm's exit
//! loop, the interrupt fabric (8259 pair, IOAPIC, local APICs) and the PC devices.
//!
//! Every guest runs twice, on the KVM engine (`<name>::kvm`) and on the interpreter
//! (`<name>::interpreter`), with the same expectations. The guests run in 64-bit long mode
//! (see `common::long_mode_state`), except the AP start-up code, which is real mode as the
//! Startup IPI requires. They leave results in memory at `layout::RESULTS` (0x9000) and in
//! registers, then write port 0xF4, which powers the VM off.
//!
//! Without a usable `/dev/kvm` the KVM variants print `SKIPPED (no /dev/kvm): <name>`; when
//! they run they print `KVM-TEST-RAN <name>`.

mod common;

use common::{layout, run, Engine, Guest};
use hm::StopReason;
use std::time::Duration;
use sup::state::reg;

// ---- port I/O ---------------------------------------------------------------------------

/// PIC mask registers read back, CMOS memory size and scratch bytes, RTC register D, the
/// UART scratch register, and an unclaimed port reading all ones.
fn check_pio_in_out(engine: Engine, test: &str) {
    let g = Guest::new(
        r#"
    mov al, 0xa5
    out 0x21, al
    in al, 0x21
    mov byte ptr [0x9000], al
    mov al, 0x3c
    out 0xa1, al
    in al, 0xa1
    mov byte ptr [0x9001], al
    # CMOS 0x34/0x35: RAM above 16 MiB in 64 KiB units (32 MiB machine: 0x0100).
    mov al, 0x34
    out 0x70, al
    in al, 0x71
    mov byte ptr [0x9002], al
    mov al, 0x35
    out 0x70, al
    in al, 0x71
    mov byte ptr [0x9003], al
    # CMOS general-purpose bytes 0x40/0x41 keep what is written.
    mov al, 0x40
    out 0x70, al
    mov al, 0x5a
    out 0x71, al
    mov al, 0x41
    out 0x70, al
    mov al, 0xc3
    out 0x71, al
    mov al, 0x40
    out 0x70, al
    in al, 0x71
    mov byte ptr [0x9004], al
    # RTC register D: valid RAM and time (bit 7).
    mov al, 0x0d
    out 0x70, al
    in al, 0x71
    mov byte ptr [0x9005], al
    # COM1 scratch register.
    mov dx, 0x3ff
    mov al, 0x77
    out dx, al
    xor eax, eax
    in al, dx
    mov byte ptr [0x9006], al
    # CMOS 0x5f: CPU count - 1.
    mov al, 0x5f
    out 0x70, al
    in al, 0x71
    mov byte ptr [0x9007], al
    # Nothing at 0x5e0: a dword read returns all ones.
    mov dx, 0x5e0
    in eax, dx
    mov dword ptr [0x9008], eax
    mov r12, 0x1122334455667788
    mov r13d, dword ptr [0x9000]
    mov al, 0x41
    out 0x70, al
    xor eax, eax
    in al, 0x71
    mov r14, rax
    EXIT
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    let r = |i| o.res8(i);
    assert_eq!(r(0), 0xa5, "master PIC IMR read back");
    assert_eq!(r(1), 0x3c, "slave PIC IMR read back");
    assert_eq!(
        (r(2), r(3)),
        (0x00, 0x01),
        "CMOS 0x34/0x35 memory above 16 MiB"
    );
    assert_eq!(r(4), 0x5a, "CMOS scratch byte 0x40");
    assert_eq!(r(5), 0x80, "RTC register D (VRT)");
    assert_eq!(r(6), 0x77, "COM1 scratch register");
    assert_eq!(r(7), 0, "CMOS 0x5f: one CPU");
    assert_eq!(o.res32(8), 0xffff_ffff, "unclaimed port");
    let s = o.state(0);
    assert_eq!(s.gpr[12], 0x1122_3344_5566_7788);
    assert_eq!(s.gpr[13], 0x0100_3ca5);
    assert_eq!(s.gpr[14], 0xc3, "CMOS scratch byte 0x41");
}
both_engines!(pio_in_out, check_pio_in_out);

// ---- string I/O -------------------------------------------------------------------------

/// `rep outsb` to COM1 (captured through Console::Writer), `rep insb` from the CMOS data
/// port into a buffer that crosses a page boundary, `rep insw` from an unclaimed port.
fn check_string_io(engine: Engine, test: &str) {
    let g = Guest::new(
        r#"
    cld
    lea rsi, [rip + msg]
    mov ecx, msg_end - msg
    mov dx, 0x3f8
    rep outsb
    mov r12, rsi
    lea r13, [rip + msg_end]
    mov al, 0x35
    out 0x70, al
    mov rdi, 0x50ffa
    mov ecx, 12
    mov dx, 0x71
    rep insb
    mov r14, rdi
    mov r15, rcx
    mov rdi, 0x52000
    mov ecx, 4
    mov dx, 0x5e0
    rep insw
    mov rbx, rdi
    EXIT
msg:
    .ascii "novabox: rep outsb to COM1\r\n"
msg_end:
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    assert_eq!(o.console.text(), "novabox: rep outsb to COM1\r\n");
    let s = o.state(0);
    assert_eq!(s.gpr[12], s.gpr[13], "rsi advanced over the whole message");
    assert_eq!(s.gpr[14], 0x51006, "rdi after rep insb");
    assert_eq!(s.gpr[15], 0, "rcx after rep insb");
    assert_eq!(s.gpr[reg::RBX], 0x52008, "rdi after rep insw");
    let mut buf = [0u8; 14];
    o.memory.read(0x50ff9, &mut buf).unwrap();
    assert_eq!(buf[0], 0, "byte before the buffer untouched");
    assert_eq!(&buf[1..13], &[0x01; 12], "CMOS 0x35 twelve times");
    assert_eq!(buf[13], 0, "byte after the buffer untouched");
    let mut w = [0u8; 10];
    o.memory.read(0x52000, &mut w).unwrap();
    assert_eq!(&w[..8], &[0xff; 8]);
    assert_eq!(&w[8..], &[0, 0]);
}
both_engines!(string_io, check_string_io);

// ---- MMIO -------------------------------------------------------------------------------

/// IOAPIC registers through IOREGSEL/IOWIN (version, ID, a redirection entry written and
/// read back with its read-only bits), and local APIC registers.
fn check_mmio_ioapic_lapic(engine: Engine, test: &str) {
    let g = Guest::new(
        r#"
    mov rbx, 0xfec00000
    mov dword ptr [rbx], 1
    mov eax, dword ptr [rbx + 0x10]
    mov dword ptr [0x9000], eax
    mov dword ptr [rbx], 0
    mov eax, dword ptr [rbx + 0x10]
    mov dword ptr [0x9004], eax
    # Redirection entry 5 (indices 0x1a/0x1b): all ones low (masked), a pattern high.
    mov dword ptr [rbx], 0x1a
    mov dword ptr [rbx + 0x10], 0xffffffff
    mov dword ptr [rbx], 0x1b
    mov dword ptr [rbx + 0x10], 0xabcdef12
    mov dword ptr [rbx], 0x1a
    mov eax, dword ptr [rbx + 0x10]
    mov dword ptr [0x9008], eax
    mov dword ptr [rbx], 0x1b
    mov eax, dword ptr [rbx + 0x10]
    mov dword ptr [0x900c], eax
    mov eax, dword ptr [rbx]
    mov dword ptr [0x9010], eax
    # Redirection entry 6: vector 0x36, masked.
    mov dword ptr [rbx], 0x1c
    mov dword ptr [rbx + 0x10], 0x00010036
    mov eax, dword ptr [rbx + 0x10]
    mov dword ptr [0x9014], eax
    # Local APIC: version, ID, spurious-vector register after reset.
    mov rcx, 0xfee00000
    mov eax, dword ptr [rcx + 0x30]
    mov dword ptr [0x9018], eax
    mov eax, dword ptr [rcx + 0x20]
    mov dword ptr [0x901c], eax
    mov eax, dword ptr [rcx + 0xf0]
    mov dword ptr [0x9020], eax
    # Task priority written and read back.
    mov dword ptr [rcx + 0x80], 0x20
    mov eax, dword ptr [rcx + 0x80]
    mov dword ptr [0x9024], eax
    EXIT
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    assert_eq!(o.res32(0x00), 0x0017_0020, "IOAPIC version: 24 pins, 0x20");
    assert_eq!(o.res32(0x04), 0x0100_0000, "IOAPIC ID = CPU count");
    assert_eq!(
        o.res32(0x08),
        0x0001_afff,
        "RTE low: read-only bits 12 and 14 clear"
    );
    assert_eq!(
        o.res32(0x0c),
        0xab00_0000,
        "RTE high: destination byte only"
    );
    assert_eq!(o.res32(0x10), 0x1b, "IOREGSEL reads back");
    assert_eq!(o.res32(0x14), 0x0001_0036, "RTE 6");
    assert_eq!(o.res32(0x18), 0x0005_0014, "LAPIC version");
    assert_eq!(o.res32(0x1c), 0, "BSP LAPIC ID");
    assert_eq!(o.res32(0x20), 0xff, "SVR after reset");
    assert_eq!(o.res32(0x24), 0x20, "TPR");
}
both_engines!(mmio_ioapic_lapic, check_mmio_ioapic_lapic);

// ---- HLT --------------------------------------------------------------------------------

/// `sti; hlt` sleeps until the RTC's periodic interrupt (IRQ8 through the slave 8259)
/// arrives; the handler runs once with the RIP after HLT on its frame.
fn check_hlt_woken_by_interrupt(engine: Engine, test: &str) {
    let g = Guest::new(
        r#"
    call pic_init
    SET_GATE 0x28, rtc_irq
    mov al, 0xfb
    out 0x21, al
    mov al, 0xfe
    out 0xa1, al
    # Register A: 32.768 kHz base, rate 10 (64 Hz); register B: periodic interrupt on.
    mov al, 0x0a
    out 0x70, al
    mov al, 0x2a
    out 0x71, al
    mov al, 0x0b
    out 0x70, al
    in al, 0x71
    or al, 0x40
    mov bl, al
    mov al, 0x0b
    out 0x70, al
    mov al, bl
    out 0x71, al
    lea rax, [rip + after_hlt]
    mov qword ptr [0x9010], rax
    sti
    hlt
after_hlt:
    cli
    mov r12d, dword ptr [0x9000]
    mov al, 0x0b
    out 0x70, al
    in al, 0x71
    and al, 0xbf
    mov bl, al
    mov al, 0x0b
    out 0x70, al
    mov al, bl
    out 0x71, al
    EXIT
rtc_irq:
    push rax
    inc dword ptr [0x9000]
    mov rax, qword ptr [rsp + 8]
    mov qword ptr [0x9008], rax
    mov al, 0x0c
    out 0x70, al
    in al, 0x71
    mov byte ptr [0x9004], al
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop rax
    iretq
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    assert_eq!(o.state(0).gpr[12], 1, "one interrupt ended the HLT");
    assert_eq!(
        o.read::<8>(layout::RESULTS + 8),
        o.read::<8>(layout::RESULTS + 0x10),
        "the interrupt returned to the instruction after HLT"
    );
    assert_eq!(o.res8(4) & 0xc0, 0xc0, "register C: IRQF and PF");
}
both_engines!(hlt_woken_by_interrupt, check_hlt_woken_by_interrupt);

// ---- PIT through the 8259 ---------------------------------------------------------------

/// The PIT's channel 0 at 100 Hz through the master 8259 (vector 0x20); the guest halts
/// until its handler has counted five ticks.
fn check_pit_through_8259(engine: Engine, test: &str) {
    let g = Guest::new(
        r#"
    call pic_init
    SET_GATE 0x20, pit_irq
    mov al, 0xfe
    out 0x21, al
    # Channel 0, lobyte/hibyte, mode 2, divisor 11932 (100 Hz).
    mov al, 0x34
    out 0x43, al
    mov al, 0x9c
    out 0x40, al
    mov al, 0x2e
    out 0x40, al
    # Latch and read the count.
    mov al, 0x00
    out 0x43, al
    in al, 0x40
    mov bl, al
    in al, 0x40
    mov bh, al
    mov word ptr [0x9004], bx
1:  sti
    hlt
    cli
    cmp dword ptr [0x9000], 5
    jb 1b
    mov r12d, dword ptr [0x9000]
    mov al, 0xff
    out 0x21, al
    EXIT
pit_irq:
    inc dword ptr [0x9000]
    push rax
    mov al, 0x20
    out 0x20, al
    pop rax
    iretq
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    assert_eq!(o.state(0).gpr[12], 5, "five ticks counted");
    let latched = o.read::<2>(layout::RESULTS + 4);
    assert!(
        (1..=11932).contains(&latched),
        "latched count {latched} within the divisor"
    );
    assert!(
        o.elapsed >= Duration::from_millis(40),
        "five 10 ms ticks took only {:?}",
        o.elapsed
    );
}
both_engines!(pit_through_8259, check_pit_through_8259);

// ---- PIT through the IOAPIC -------------------------------------------------------------

/// The PIT through IOAPIC pin 2 (ISA IRQ0's override) to the BSP's local APIC as vector
/// 0x30, with both 8259s masked; nothing may arrive on the 8259's vectors.
fn check_pit_through_ioapic(engine: Engine, test: &str) {
    let g = Guest::new(
        r#"
    call pic_init
    mov r15d, 0x20
2:  mov edi, r15d
    lea rsi, [rip + stray]
    call set_gate
    inc r15d
    cmp r15d, 0x30
    jb 2b
    SET_GATE 0xff, stray
    SET_GATE 0x30, ioapic_irq
    mov rbx, 0xfee00000
    mov dword ptr [rbx + 0xf0], 0x1ff
    mov rcx, 0xfec00000
    mov dword ptr [rcx], 0x15
    mov dword ptr [rcx + 0x10], 0
    mov dword ptr [rcx], 0x14
    mov dword ptr [rcx + 0x10], 0x30
    mov al, 0x34
    out 0x43, al
    mov al, 0x9c
    out 0x40, al
    mov al, 0x2e
    out 0x40, al
1:  sti
    hlt
    cli
    cmp dword ptr [0x9000], 5
    jb 1b
    mov r12d, dword ptr [0x9000]
    mov dword ptr [rcx], 0x14
    mov dword ptr [rcx + 0x10], 0x10030
    # ISR bit for vector 0x30 (register 0x110, bit 16) is clear after the EOIs.
    mov eax, dword ptr [rbx + 0x110]
    mov dword ptr [0x9008], eax
    EXIT
ioapic_irq:
    inc dword ptr [0x9000]
    push rax
    mov rax, 0xfee000b0
    mov dword ptr [rax], 0
    pop rax
    iretq
stray:
    inc dword ptr [0x9004]
    iretq
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    assert_eq!(o.state(0).gpr[12], 5, "five ticks through the IOAPIC");
    assert_eq!(
        o.res32(4),
        0,
        "no interrupt on an 8259 or the spurious vector"
    );
    assert_eq!(o.res32(8), 0, "ISR empty after EOI");
    assert!(
        o.elapsed >= Duration::from_millis(40),
        "five 10 ms ticks took only {:?}",
        o.elapsed
    );
}
both_engines!(pit_through_ioapic, check_pit_through_ioapic);

// ---- LAPIC timer ------------------------------------------------------------------------

/// The local APIC timer: periodic (2 ms, vector 0x40) for ten ticks, then masked, then one
/// one-shot (1 ms, vector 0x41) whose current count reads 0 after it fired.
fn check_lapic_timer(engine: Engine, test: &str) {
    let g = Guest::new(
        r#"
    SET_GATE 0x40, timer_irq
    SET_GATE 0x41, oneshot_irq
    mov rbx, 0xfee00000
    mov dword ptr [rbx + 0xf0], 0x1ff
    mov dword ptr [rbx + 0x3e0], 0xb
    mov dword ptr [rbx + 0x320], 0x20040
    mov dword ptr [rbx + 0x380], 2000000
    mov eax, dword ptr [rbx + 0x390]
    mov dword ptr [0x9004], eax
1:  sti
    hlt
    cli
    cmp dword ptr [0x9000], 10
    jb 1b
    mov dword ptr [rbx + 0x320], 0x10040
    mov r12d, dword ptr [0x9000]
    mov dword ptr [rbx + 0x320], 0x41
    mov dword ptr [rbx + 0x380], 1000000
2:  sti
    hlt
    cli
    cmp dword ptr [0x9008], 0
    je 2b
    mov eax, dword ptr [rbx + 0x390]
    mov dword ptr [0x900c], eax
    mov r13d, dword ptr [0x9000]
    mov r14d, dword ptr [0x9008]
    EXIT
timer_irq:
    inc dword ptr [0x9000]
    push rax
    mov rax, 0xfee000b0
    mov dword ptr [rax], 0
    pop rax
    iretq
oneshot_irq:
    inc dword ptr [0x9008]
    push rax
    mov rax, 0xfee000b0
    mov dword ptr [rax], 0
    pop rax
    iretq
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    let s = o.state(0);
    let first = o.res32(4);
    assert!(
        first > 0 && first <= 2_000_000,
        "current count {first} right after arming"
    );
    assert_eq!(s.gpr[12], 10, "ten periodic ticks");
    // One tick may already sit in IRR when the guest masks the LVT with IF clear.
    assert!(
        (10..=11).contains(&s.gpr[13]),
        "periodic ticks after masking: {}",
        s.gpr[13]
    );
    assert_eq!(s.gpr[14], 1, "exactly one one-shot expiry");
    assert_eq!(o.res32(0x0c), 0, "one-shot current count after expiry");
    assert!(
        o.elapsed >= Duration::from_millis(20),
        "ten 2 ms periods and a 1 ms one-shot took only {:?}",
        o.elapsed
    );
}
both_engines!(lapic_timer, check_lapic_timer);

// ---- INIT / SIPI --------------------------------------------------------------------------

/// Two vCPUs: the BSP sends INIT and a Startup IPI (vector 8) to APIC ID 1; the AP starts in
/// real mode at 0800:0000, records its initial APIC ID (CPUID) and CS, writes a marker and
/// halts; the BSP waits for the marker and powers off.
fn check_init_sipi_starts_ap(engine: Engine, test: &str) {
    let mut g = Guest::new(
        r#"
    call start_ticker
    mov rbx, 0xfee00000
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x00004500
    mov edi, 10
    call wait_ticks
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x00004608
2:  sti
    hlt
    cli
    cmp dword ptr [0x9000], 0x600dbeef
    jne 2b
    mov eax, dword ptr [rbx + 0x300]
    mov dword ptr [0x9010], eax
    mov r12d, dword ptr [0x9004]
    EXIT
"#,
    );
    g.cpus = 2;
    g.trampoline = Some(
        r#"
    cli
    xor ax, ax
    mov ds, ax
    mov eax, 1
    cpuid
    shr ebx, 24
    mov dword ptr [0x9004], ebx
    mov ax, cs
    mov word ptr [0x9008], ax
    lock inc dword ptr [0x900c]
    mov dword ptr [0x9000], 0x600dbeef
1:  hlt
    jmp 1b
"#,
    );
    let o = run(engine, test, &g);
    o.assert_exited();
    assert_eq!(o.res32(0), 0x600d_beef, "AP marker");
    assert_eq!(o.res32(4), 1, "the AP's initial APIC ID");
    assert_eq!(o.res32(8), 0x0800, "AP CS = vector << 8");
    assert_eq!(o.res32(0x0c), 1, "the AP started once");
    assert_eq!(o.res32(0x10) & (1 << 12), 0, "ICR delivery status idle");
    assert_eq!(o.state(0).gpr[12], 1, "BSP saw the AP's APIC ID");
    let ap = o.state(1);
    assert_eq!(
        (ap.cs.selector, ap.cs.base),
        (0x0800, 0x8000),
        "AP in real mode"
    );
    assert_eq!(ap.cr0 & 1, 0, "AP CR0.PE clear");
    assert!(
        ap.rip < 0x40,
        "AP still in its trampoline (ip {:#x})",
        ap.rip
    );
}
both_engines!(init_sipi_starts_ap, check_init_sipi_starts_ap);

// ---- triple fault -----------------------------------------------------------------------

/// UD2 with an empty IDT: #UD cannot be delivered (#GP), nor can that (#DF): a triple fault
/// stops the VM with StopReason::TripleFault. (Long mode: kvm-pvm reports an emulation
/// failure for fault delivery in real mode, see sup's tiny-guest tests.)
fn check_triple_fault(engine: Engine, test: &str) {
    let mut g = Guest::new(
        r#"
    mov r12, 0x7f7f
    ud2
    EXIT
"#,
    );
    g.adjust = Some(|s| s.idtr.limit = 0);
    let o = run(engine, test, &g);
    assert!(!o.timed_out, "timed out");
    match &o.reason {
        StopReason::TripleFault { cpu, state } => {
            assert_eq!(*cpu, 0);
            assert!(state.contains("rip="), "state dump: {state}");
        }
        other => panic!("expected a triple fault, got {other:?}"),
    }
    assert_eq!(o.state(0).gpr[12], 0x7f7f, "ran up to the UD2");
}
both_engines!(triple_fault, check_triple_fault);

// ---- INIT / SIPI, restart ---------------------------------------------------------------

/// Start the AP as Linux does (INIT assert, INIT de-assert, two Startup IPIs), let it halt,
/// send one more Startup IPI while it is not waiting for one (the SDM says it is ignored),
/// then restart it with INIT + a Startup IPI for another page (0xA000), as CPU hot-plug
/// does. The AP must run the second trampoline once, and the first one only once.
fn check_init_sipi_restart(engine: Engine, test: &str) {
    let mut g = Guest::new(
        r#"
    call start_ticker
    mov rbx, 0xfee00000
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x0000c500
    mov edi, 10
    call wait_ticks
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x00008500
    mov edi, 1
    call wait_ticks
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x00000608
    mov edi, 1
    call wait_ticks
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x00000608
1:  sti
    hlt
    cli
    cmp dword ptr [0x9000], 0x600dbeef
    jne 1b
    mov edi, 5
    call wait_ticks
    # A Startup IPI to a running AP: ignored.
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x00000608
    mov edi, 5
    call wait_ticks
    # Restart at 0xA000.
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x0000c500
    mov edi, 10
    call wait_ticks
    mov dword ptr [rbx + 0x310], 0x01000000
    mov dword ptr [rbx + 0x300], 0x0000060a
2:  sti
    hlt
    cli
    cmp dword ptr [0x9010], 0x0a0a0a0a
    jne 2b
    mov edi, 5
    call wait_ticks
    EXIT
"#,
    );
    g.cpus = 2;
    g.timeout = Duration::from_secs(20);
    g.trampoline = Some(
        r#"
    cli
    xor ax, ax
    mov ds, ax
    lock inc dword ptr [0x900c]
    mov dword ptr [0x9000], 0x600dbeef
1:  hlt
    jmp 1b
"#,
    );
    g.trampoline2 = Some(
        r#"
    cli
    xor ax, ax
    mov ds, ax
    mov ax, cs
    mov word ptr [0x9014], ax
    lock inc dword ptr [0x9018]
    mov dword ptr [0x9010], 0x0a0a0a0a
1:  hlt
    jmp 1b
"#,
    );
    let o = run(engine, test, &g);
    assert_eq!(o.res32(0x0c), 1, "first trampoline ran once");
    assert_eq!(o.res32(0x10), 0x0a0a_0a0a, "second trampoline's marker");
    assert_eq!(o.res32(0x18), 1, "second trampoline ran once");
    assert_eq!(o.res32(0x14), 0x0a00, "restarted with CS = 0x0A00");
    o.assert_exited();
    assert_eq!(o.state(1).cs.base, 0xa000);
}
both_engines!(init_sipi_restart, check_init_sipi_restart);
