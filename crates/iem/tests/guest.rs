//! Tiny guests run on the interpreter: modes, exits, exceptions, interrupts, paging.

mod common;
use common::*;
use sup::{Vcpu, VmExit};

#[test]
fn real_mode_arith_and_port_io() {
    let mut m = Machine::real(
        r#"
        mov ax, 40
        add ax, 2
        out 0xe9, ax
        mov cx, 10
        xor bx, bx
    1:  add bx, cx
        loop 1b
        mov ax, bx
        mov dx, 0x80
        out dx, al
        in al, 0x60
        out 0xe9, al
        hlt
    "#,
        0x7c00,
    );
    m.input.push_back(0x5a);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), vec![42, 0x5a]);
    assert_eq!(m.port(0x80), vec![55]);
}

#[test]
fn real_to_protected_to_long_mode() {
    // The SMP-trampoline path: real mode -> 32-bit protected -> PAE paging -> long mode.
    let mut m = Machine::real(
        r#"
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdtr]
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        jmp 0x18:pm32
    .code32
    pm32:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, 0x90000
        mov eax, 0x1234
        out 0xe9, eax
        mov eax, cr4
        or eax, 0x20
        mov cr4, eax
        mov eax, 0x10000
        mov cr3, eax
        mov ecx, 0xc0000080
        rdmsr
        or eax, 0x100
        wrmsr
        mov eax, cr0
        or eax, 0x80000000
        mov cr0, eax
        jmp 0x08:lm64
    .code64
    lm64:
        mov rax, 0x123456789a
        mov rbx, rax
        shr rbx, 8
        out 0xe9, eax
        mov eax, ebx
        out 0xe9, eax
        mov rcx, 0xc0000080
        rdmsr
        out 0xe9, eax
        hlt
    .align 8
    gdtr:
        .word 0x47
        .long 0x1000
    "#,
        0x8000,
    );
    setup_long_tables(&m.mem);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), vec![0x1234, 0x3456789a, 0x12345678, 0x500]);
    let s = m.state();
    assert!(s.long_mode());
}

fn idt_entry64(mem: &pgm::GuestMemory, vector: u64, handler: u64, ist: u64, dpl: u64) {
    let lo = (handler & 0xffff)
        | (0x08 << 16)
        | (ist << 32)
        | ((0x8e | (dpl << 5)) << 40)
        | (((handler >> 16) & 0xffff) << 48);
    let hi = handler >> 32;
    mem.write_le::<8>(0x2000 + vector * 16, lo).unwrap();
    mem.write_le::<8>(0x2000 + vector * 16 + 8, hi).unwrap();
}

#[test]
fn long_mode_exceptions_through_idt() {
    let mut m = Machine::long(
        r#"
        mov rax, 5
        xor ecx, ecx
        div rcx              # #DE
        out 0xe9, eax        # handler returns past the div with eax = 0xde
        mov rbx, 0x140001234
        lea r15, [rip + after_pf]
        mov rax, [rbx]       # beyond the 4 GiB mapped: #PF
    after_pf:
        out 0xe9, eax
        ud2
        out 0xe9, eax
        hlt
    de_handler:
        mov eax, 0xde
        add qword ptr [rsp], 3       # skip 'div rcx' (3 bytes)
        iretq
    pf_handler:
        pop rbx                      # error code
        mov eax, ebx
        out 0xea, eax
        mov rax, cr2
        out 0xeb, eax
        mov eax, 0x9f
        mov [rsp], r15
        iretq
    ud_handler:
        mov eax, 0x06
        add qword ptr [rsp], 2
        iretq
    "#,
        0x100000,
    );
    // Handlers are found by assembling again and searching is awkward; use fixed offsets
    // computed from the binary layout via labels exported with .equ would need symbols,
    // so place handlers by scanning for their first bytes.
    let bin = asm(".code64\nmov eax, 0xde\nadd qword ptr [rsp], 3\niretq\n", 0);
    let code = {
        let mut v = vec![0u8; 0x200];
        m.mem.read(0x100000, &mut v).unwrap();
        v
    };
    let find = |pat: &[u8]| code.windows(pat.len()).position(|w| w == pat).unwrap() as u64;
    let de = 0x100000 + find(&bin);
    let pf = 0x100000 + find(&asm(".code64\npop rbx\nmov eax, ebx\nout 0xea, eax\n", 0));
    let ud = 0x100000 + find(&asm(".code64\nmov eax, 0x06\nadd qword ptr [rsp], 2\n", 0));
    // Unmap the GiB at 0xC0000000 is mapped; make the address 0x180000000 unmapped: only
    // 4 GiB are mapped, so 0x180000000 faults (PDPT entry 6 not present).
    idt_entry64(&m.mem, 0, de, 0, 0);
    idt_entry64(&m.mem, 14, pf, 0, 0);
    idt_entry64(&m.mem, 6, ud, 0, 0);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), vec![0xde, 0x9f, 0x06]);
    // Not-present read in supervisor mode: error code 0.
    assert_eq!(m.port(0xea), vec![0]);
    assert_eq!(m.port(0xeb), vec![0x4000_1234]);
}

#[test]
fn triple_fault_shuts_down() {
    // No IDT entries at all: #UD -> #GP (gate not present = #NP... contributory) -> #DF -> shutdown.
    let mut m = Machine::long("ud2\nhlt\n", 0x100000);
    m.vcpu.state(sup::StateMask::ALL).unwrap().idtr.limit = 0;
    assert_eq!(m.run(), VmExit::Shutdown);
}

#[test]
fn mmio_read_write_and_rmw() {
    let mut m = Machine::long(
        r#"
        mov rbx, 0xfee00000
        mov dword ptr [rbx + 0x80], 0x77      # write exit
        mov eax, [rbx + 0x20]                 # read exit
        out 0xe9, eax
        add dword ptr [rbx + 0x30], 5         # read then write
        mov eax, [rbx + 0x30]
        out 0xe9, eax
        hlt
    "#,
        0x100000,
    );
    m.mmio.insert(0xfee0_0020, 0x1400_0000);
    m.mmio.insert(0xfee0_0030, 10);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), vec![0x1400_0000, 15]);
    assert_eq!(m.mmio_writes[0], (0xfee0_0080, 0x77, 4));
    assert_eq!(m.mmio_writes[1], (0xfee0_0030, 15, 4));
    assert_eq!(
        m.mmio_reads,
        vec![(0xfee0_0020, 4), (0xfee0_0030, 4), (0xfee0_0030, 4)]
    );
}

#[test]
fn rep_ins_outs_batches_within_a_page() {
    let mut m = Machine::long(
        r#"
        cld
        mov rdi, 0x200ff0
        mov ecx, 8
        mov dx, 0x1f0
        rep insw                 # crosses a page boundary after 8 words? 0x200ff0+16 = 0x201000
        mov rsi, 0x200ff0
        mov ecx, 8
        mov dx, 0xe9
        rep outsw
        mov rax, rcx
        out 0xea, eax
        hlt
    "#,
        0x100000,
    );
    for i in 0..8 {
        m.input.push_back(0x100 + i);
    }
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), (0..8).map(|i| 0x100 + i).collect::<Vec<_>>());
    assert_eq!(m.port(0xea), vec![0]);
    // One batched IN exit and one OUT exit (all in one page).
    assert!(m.exits <= 6, "exits: {}", m.exits);
}

#[test]
fn external_interrupt_injection() {
    let mut m = Machine::long(
        r#"
        sti
    1:  hlt
        cmp dword ptr [0x5000], 0
        je 1b
        mov eax, [0x5000]
        out 0xe9, eax
        cli
        hlt
    handler:
        mov dword ptr [0x5000], 0x42
        iretq
    "#,
        0x100000,
    );
    let pat = asm(".code64\nmov dword ptr [0x5000], 0x42\n", 0);
    let mut code = vec![0u8; 0x100];
    m.mem.read(0x100000, &mut code).unwrap();
    let h = 0x100000 + code.windows(pat.len()).position(|w| w == &pat[..]).unwrap() as u64;
    idt_entry64(&m.mem, 0x30, h, 0, 0);
    assert_eq!(m.run(), VmExit::Hlt);
    assert!(m.vcpu.interrupt_ready());
    m.vcpu.inject_interrupt(0x30).unwrap();
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), vec![0x42]);
}

#[test]
fn syscall_sysret_and_user_mode_paging() {
    let mut m = Machine::long(
        r#"
        # STAR: kernel CS 0x08, user base 0x20 (user CS = 0x33, SS = 0x2b)
        mov ecx, 0xc0000081
        xor eax, eax
        mov edx, 0x00200008
        wrmsr
        mov ecx, 0xc0000082
        lea rax, [rip + kentry]
        mov rdx, rax
        shr rdx, 32
        wrmsr
        mov ecx, 0xc0000084
        mov eax, 0x200
        xor edx, edx
        wrmsr
        # to user mode via sysret
        lea rcx, [rip + user]
        mov r11, 0x202
        mov rsp, 0x70000
        sysretq
    user:
        mov eax, 7
        syscall
        out 0xe9, eax
        hlt
    kentry:
        mov rax, rcx
        add eax, 1        # returns to user 'out' after adjusting... just report
        mov eax, 0x5c
        mov edx, 0x33
        out 0xea, eax
        hlt
    "#,
        0x100000,
    );
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xea), vec![0x5c]);
    let s = m.state();
    assert_eq!(s.cs.selector, 0x08);
    assert_eq!(s.gpr[11] & 0x200, 0x200, "user RFLAGS saved in R11");
}

#[test]
fn self_modifying_code_is_seen() {
    let mut m = Machine::long(
        r#"
        mov ecx, 3
    again:
        lea rbx, [rip + patch]
        mov eax, 1
    patch:
        add eax, 0x10          # 83 C0 10: imm at patch+2
        out 0xe9, eax
        inc byte ptr [rbx + 2]
        dec ecx
        jnz again
        hlt
    "#,
        0x100000,
    );
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), vec![0x11, 0x12, 0x13]);
}

#[test]
fn recall_and_time_slice() {
    let mut m = Machine::long("1: jmp 1b\n", 0x100000);
    m.vcpu.set_slice(1000);
    assert_eq!(m.vcpu.run().unwrap(), VmExit::Recalled);
    let h = m.vcpu.recall_handle();
    h.recall();
    m.vcpu.set_slice(u64::MAX);
    assert_eq!(m.vcpu.run().unwrap(), VmExit::Recalled);
}

#[test]
fn locked_add_is_atomic_across_vcpus() {
    let src = r#"
        mov ecx, 20000
    1:  lock add qword ptr [0x6000], 1
        mov eax, 1
        lock xadd qword ptr [0x6008], rax
        dec ecx
        jnz 1b
        hlt
    "#;
    let m = Machine::long(src, 0x100000);
    let mem = m.mem.clone();
    let mut threads = Vec::new();
    for id in 0..2 {
        let mem = mem.clone();
        threads.push(std::thread::spawn(move || {
            let mut v = iem::IemVcpu::from_state(id, mem, long_state(0x100000));
            let mut s = *v.state(sup::StateMask::ALL).unwrap();
            s.gpr[0] = 1;
            *v.state(sup::StateMask::ALL).unwrap() = s;
            loop {
                match v.run().unwrap() {
                    VmExit::Hlt => break,
                    VmExit::Recalled => continue,
                    e => panic!("{e:?}"),
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(mem.read_le::<8>(0x6000).unwrap(), 40000);
    assert_eq!(mem.read_le::<8>(0x6008).unwrap(), 40000);
}

#[test]
fn engine_switch_mid_run_keeps_state() {
    // Run part of a loop, move the vCPU state to a fresh interpreter vCPU (as hm does when
    // switching engines), and finish there.
    let mut m = Machine::long(
        r#"
        mov ecx, 100000
        xor eax, eax
        movq xmm3, rcx
    1:  add rax, rcx
        dec ecx
        jnz 1b
        movq rbx, xmm3
        out 0xe9, eax
        mov eax, ebx
        out 0xe9, eax
        hlt
    "#,
        0x100000,
    );
    m.vcpu.set_slice(5000);
    assert_eq!(m.vcpu.run().unwrap(), VmExit::Recalled);
    let s = m.vcpu.to_state();
    assert_ne!(s.gpr[1], 0);
    m.vcpu = iem::IemVcpu::from_state(0, m.mem.clone(), s);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe9), vec![(100000u64 * 100001 / 2) as u32, 100000]);
}

#[test]
fn tsc_advances_across_state_round_trips() {
    let mut m = Machine::long("rdtsc\nhlt\n", 0x100000);
    let t0 = m.vcpu.state(sup::StateMask::ALL).unwrap().tsc;
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(m.run(), VmExit::Hlt);
    let s = m.state();
    let t1 = (s.gpr[2] << 32) | (s.gpr[0] & 0xffff_ffff);
    // 1 GHz default: at least 15 ms worth of ticks passed.
    assert!(t1 - t0 >= 15_000_000, "tsc {t0} -> {t1}");
}

#[test]
fn bcd_known_answers() {
    // Values from the SDM's descriptions of DAA/DAS/AAA/AAS/AAM/AAD.
    let mut m = Machine::real(
        r#"
        mov al, 0x79
        add al, 0x35
        daa
        out 0xe9, al       # 0x14
        setc al
        out 0xea, al       # CF=1
        mov al, 0x35
        sub al, 0x47
        das
        out 0xe9, al       # 0x88
        setc al
        out 0xea, al       # CF=1
        mov ax, 0x0009
        add al, 0x08
        aaa
        out 0xe9, ax       # 0x0107
        mov ax, 0x0205
        sub al, 0x08
        aas
        out 0xe9, ax       # 0x0107
        mov al, 79
        aam
        out 0xe9, ax       # 0x0709
        aad
        out 0xe9, ax       # 0x004f
        hlt
    "#,
        0x7c00,
    );
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(
        m.port(0xe9),
        vec![0x14, 0x88, 0x0107, 0x0107, 0x0709, 0x004f]
    );
    assert_eq!(m.port(0xea), vec![1, 1]);
}

/// The Linux decompressor's on-demand mapping: with SS (and DS) null at CPL 0 in 64-bit
/// mode, a read from an unmapped 2 MiB page raises #PF through a gate without IST; the
/// handler sees the error code, CR2 and a frame with SS = 0 on a 16-byte aligned stack, maps
/// the page and IRETQs back (loading the null SS again), and the read is retried.
#[test]
fn page_fault_with_null_ss_maps_on_demand_and_retries() {
    let mut m = Machine::long(
        r#"
        xor eax, eax
        mov ss, ax
        mov ds, ax
        mov es, ax
        mov rsp, 0x80008             # not 16-byte aligned: delivery aligns it
        mov ecx, 0xffffffff
        mov edx, 0x1ff0c0c
        mov ecx, [rdx]               # PD entry for 0x1e00000 not present: #PF
        mov eax, ecx
        out 0xe6, eax
        mov eax, ss
        out 0xe7, eax
        mov rax, rsp
        out 0xe8, eax
        hlt
        .org 0x400
    pf_handler:
        pop r14                      # error code
        mov eax, r14d
        out 0xe0, eax
        mov rax, rsp
        out 0xe3, eax
        mov rax, [rsp + 32]          # SS in the frame
        out 0xe1, eax
        mov rax, [rsp + 24]          # RSP in the frame
        out 0xe2, eax
        mov rax, [rsp + 8]           # CS in the frame
        out 0xe4, eax
        mov rax, cr2
        out 0xe5, eax
        mov rax, 0x1e00087           # map the 2 MiB page again
        mov [0x12078], rax
        invlpg [rdx]
        iretq
    "#,
        0x100000,
    );
    m.mem.write_le::<4>(0x1ff_0c0c, 0x5244_5358).unwrap();
    // PD entry 0xf of the first GiB (0x1e00000-0x1ffffff) not present.
    m.mem.write_le::<8>(0x12000 + 0xf * 8, 0).unwrap();
    idt_entry64(&m.mem, 14, 0x100400, 0, 0);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe0), vec![0], "not present, supervisor read");
    assert_eq!(m.port(0xe5), vec![0x1ff_0c0c], "CR2");
    assert_eq!(m.port(0xe1), vec![0], "null SS pushed");
    assert_eq!(m.port(0xe2), vec![0x80008], "old RSP pushed");
    assert_eq!(m.port(0xe4), vec![8], "CS pushed");
    // Aligned to 16 (0x80000), five quadwords and the error code pushed, error code popped.
    assert_eq!(m.port(0xe3), vec![0x80000 - 5 * 8]);
    assert_eq!(
        m.port(0xe6),
        vec![0x5244_5358],
        "the read was retried after the mapping"
    );
    assert_eq!(m.port(0xe7), vec![0], "IRETQ reloaded the null SS");
    assert_eq!(m.port(0xe8), vec![0x80008], "IRETQ restored RSP");
}

/// Long straight-line blocks in 64-bit mode, where the interpreter runs the leading fast
/// instructions without per-instruction RIP bookkeeping: a #PF, an MMIO read, an MMIO
/// write and a write to the block's own code in the middle of a block each stop it at the
/// right instruction, the instructions before it take effect exactly once, and the
/// retired-instruction count is exact.
#[test]
fn mid_block_faults_exits_and_code_writes_in_64_bit_blocks() {
    let mut m = Machine::long(
        r#"
        mov rbx, 0xfee00000
        mov edx, 0x1ff0c0c
        xor r8d, r8d
        xor r9d, r9d
        xor r10d, r10d
        xor r11d, r11d
        lea rdi, [rip + patch]
        add r8, 1
        add r8, 2
        mov ecx, [rdx]               # #PF (not present), handled, retried
        add r8, 4
        add r9, 1
        mov dword ptr [rbx + 0x80], 0x77   # MMIO write exit
        add r9, 2
        mov eax, [rbx + 0x20]        # MMIO read exit
        add r9, 4
        add r10, 1
        mov byte ptr [rdi + 3], 0x40 # patch the imm8 below in this very block
        add r10, 2
    patch:
        add r11, 0x10                # 49 83 C3 10 -> 49 83 C3 40
        add r10, 4
        mov eax, r8d
        out 0xe0, eax
        mov eax, r9d
        out 0xe1, eax
        mov eax, r10d
        out 0xe2, eax
        mov eax, r11d
        out 0xe3, eax
        mov eax, ecx
        out 0xe4, eax
        hlt
        .org 0x400
    pf_handler:
        add rsp, 8                   # error code
        inc r12
        mov rax, 0x1e00087           # map the 2 MiB page again
        mov [0x12078], rax
        invlpg [rdx]
        iretq
    "#,
        0x100000,
    );
    m.mem.write_le::<4>(0x1ff_0c0c, 0x5244_5358).unwrap();
    m.mem.write_le::<8>(0x12000 + 0xf * 8, 0).unwrap();
    idt_entry64(&m.mem, 14, 0x100400, 0, 0);
    m.mmio.insert(0xfee0_0020, 0x1234);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe0), vec![7]);
    assert_eq!(m.port(0xe1), vec![7]);
    assert_eq!(m.port(0xe2), vec![7]);
    assert_eq!(
        m.port(0xe3),
        vec![0x40],
        "the patched immediate was executed"
    );
    assert_eq!(m.port(0xe4), vec![0x5244_5358]);
    assert_eq!(m.mmio_writes, vec![(0xfee0_0080, 0x77, 4)]);
    assert_eq!(m.mmio_reads, vec![(0xfee0_0020, 4)]);
    let s = m.state();
    assert_eq!(s.gpr[12], 1, "one #PF");
    assert_eq!(s.gpr[0], 0x5244_5358);
    // 32 instructions up to and including HLT (the faulting load counted once), plus the
    // 6 of the #PF handler.
    assert_eq!(m.vcpu.stats().instructions, 32 + 6);
}

/// Compare-and-branch pairs at the end of blocks run fused but retire as two instructions:
/// the count stays exact, with taken and not-taken branches.
#[test]
fn fused_compare_and_branch_counts_both_instructions() {
    let mut m = Machine::long(
        r#"
        mov ecx, 100
        xor eax, eax
    1:  add eax, 1
        cmp eax, 50
        jb 2f
        add ebx, 1
    2:  dec ecx
        jnz 1b
        mov eax, ebx
        out 0xe0, eax
        hlt
    "#,
        0x100000,
    );
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe0), vec![51]);
    // 2 + 100 * 5 + 51 (the ADD when not below) + 3.
    assert_eq!(m.vcpu.stats().instructions, 2 + 500 + 51 + 3);
}

/// User-mode data accesses on the fast paths (flat and segment-relative addressing) are
/// checked with user privilege: a user page reads, a supervisor page raises #PF with the
/// user bit in the error code.
#[test]
fn user_mode_fast_loads_check_page_privilege() {
    let mut m = Machine::long(
        r#"
        mov ecx, 0xc0000081          # STAR: user CS 0x33, SS 0x2b
        xor eax, eax
        mov edx, 0x00200008
        wrmsr
        lea rcx, [rip + user]
        mov r11, 0x2
        mov rsp, 0x70000
        mov rsi, 0x100800
        mov edx, 0x1ff0c0c
        sysretq
    user:
        mov eax, [0x100804]          # user page, absolute address
        mov edi, [rsi]               # user page, flat
        mov ebx, [rdx]               # supervisor page: #PF
        hlt
        .org 0x400
    pf_handler:
        mov r9d, eax
        pop rax                      # error code
        out 0xe0, eax
        mov rax, cr2
        out 0xe1, eax
        mov eax, r9d
        out 0xe2, eax
        mov eax, edi
        out 0xe3, eax
        hlt
    "#,
        0x100000,
    );
    m.mem.write_le::<4>(0x100800, 0x1111).unwrap();
    m.mem.write_le::<4>(0x100804, 0x2222).unwrap();
    // The 2 MiB page at 0x1e00000: present, writable, supervisor only.
    m.mem.write_le::<8>(0x12000 + 0xf * 8, 0x1e0_0083).unwrap();
    // TSS.RSP0 for the switch to CPL 0.
    m.mem.write_le::<8>(0x3004, 0x90000).unwrap();
    idt_entry64(&m.mem, 14, 0x100400, 0, 0);
    assert_eq!(m.run(), VmExit::Hlt);
    assert_eq!(m.port(0xe0), vec![5], "present, user, read");
    assert_eq!(m.port(0xe1), vec![0x1ff_0c0c]);
    assert_eq!(m.port(0xe2), vec![0x2222]);
    assert_eq!(m.port(0xe3), vec![0x1111]);
}
