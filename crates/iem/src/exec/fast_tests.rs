//! The fast paths must be indistinguishable from the generic interpreter: every compiled
//! form runs on random states both ways (through [`super::super::step`] and through
//! [`super::exec`]) and the results (registers, flags, RIP, memory, fault) must agree.

use super::{compile, compile_fused, exec, Uop};
use crate::cpu::Cpu;
use crate::flags::Op;
use iced_x86::{Decoder, DecoderOptions, Instruction};
use std::sync::Arc;
use sup::{Segment, VcpuState};

/// Where the code of the test is assumed to be (linear = physical, paging off).
const CODE: u64 = 0x1_0000;
/// The data buffer r8 points at.
const BUF: u64 = 0x2_0000;
/// The stack.
const STACK: u64 = 0x3_0800;

fn assemble(src: &str) -> Vec<u8> {
    // One directory per call: the tests assemble in parallel.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("iem-fast-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (s, o, b) = (dir.join("t.s"), dir.join("t.o"), dir.join("t.bin"));
    std::fs::write(&s, format!(".intel_syntax noprefix\n{src}\n")).unwrap();
    let st = std::process::Command::new("as")
        .args(["--64", "-o"])
        .arg(&o)
        .arg(&s)
        .output()
        .expect("as");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let st = std::process::Command::new("ld")
        .args(["-m", "elf_x86_64", "--oformat", "binary", "-N"])
        .arg(format!("-Ttext={CODE:#x}"))
        .arg("-o")
        .arg(&b)
        .arg(&o)
        .output()
        .expect("ld");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let bin = std::fs::read(&b).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bin
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Operands biased towards edge values.
    fn operand(&mut self) -> u64 {
        match self.next() % 6 {
            0 => 0,
            1 => u64::MAX,
            2 => 1u64 << (self.next() % 64),
            3 => self.next() & 0xff,
            4 => 0x8000_0000 ^ (self.next() & 0xffff),
            _ => self.next(),
        }
    }
}

fn long_state() -> VcpuState {
    let mut s = VcpuState::reset();
    s.cr0 = 0x11; // PE|ET, paging off: linear = physical
    s.efer = sup::state::efer::LME | sup::state::efer::LMA;
    s.cs = Segment {
        selector: 8,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0xb | Segment::S | Segment::P | Segment::L | Segment::G,
    };
    let data = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0x3 | Segment::S | Segment::P | Segment::DB | Segment::G,
    };
    s.ss = data;
    s.ds = data;
    s.es = data;
    s
}

/// A CPU over fresh memory in the given state, with random data in the buffer and stack.
fn machine(s: VcpuState, seed: u64, lazy: (u8, u64, u64)) -> Cpu {
    let mem = Arc::new(pgm::GuestMemory::new(pgm::MemoryLayout::pc(16 << 20).unwrap()).unwrap());
    let mut r = Rng(seed | 1);
    for i in 0..512u64 {
        mem.write_le::<8>(BUF + i * 8, r.operand()).unwrap();
        mem.write_le::<8>(STACK - 0x800 + i * 8, r.next() & 0x7fff_ffff)
            .unwrap();
    }
    let mut c = Cpu::new(0, mem, s);
    let (kind, a, b) = lazy;
    match kind % 4 {
        0 => {}
        1 => c.lf.set(Op::Sub, 64, a, b, a.wrapping_sub(b)),
        2 => c.lf.set(Op::Add, 32, a, b, a.wrapping_add(b) & 0xffff_ffff),
        _ => c.lf.set(Op::Logic, 8, a & 0xff, b & 0xff, a & b & 0xff),
    }
    c
}

fn run(c: &mut Cpu, ins: &Instruction, fast: Option<&Uop>) -> String {
    let rip = c.s.rip;
    c.start_rip = rip;
    c.delta = rip.wrapping_sub(ins.ip());
    let next = rip.wrapping_add(ins.len() as u64);
    c.next_rip = next;
    c.s.rip = next;
    let r = match fast {
        Some(u) => exec(c, u),
        None => super::super::step(c, ins),
    };
    let mut buf = vec![0u8; 4096];
    c.mem.read(BUF, &mut buf).unwrap();
    let mut stack = vec![0u8; 0x1000];
    c.mem.read(STACK - 0x800, &mut stack).unwrap();
    format!(
        "{r:?} rip={:#x} gpr={:x?} flags={:#x} exit={:?} buf={:x} stack={:x}",
        c.s.rip,
        c.s.gpr,
        c.rflags(),
        c.exit,
        fxhash(&buf),
        fxhash(&stack)
    )
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

const SNIPPETS: &str = "
    add rax, rbx
    add eax, ebx
    add ax, bx
    add al, bl
    add sil, dil
    adc rax, rbx
    adc ecx, 7
    sbb rax, rbx
    sbb bl, al
    sub rdx, -100
    sub eax, 0x12345678
    cmp rax, rbx
    cmp cl, 5
    test rax, rbx
    test ecx, 0x80000001
    and ecx, 0xffff0000
    cmp eax, -1
    add ax, -2
    mov dword ptr [r8 + 100], 0x80000000
    lea eax, [ecx - 8]
    lea rax, [ebx + ecx*8 - 0x10]
    mov eax, dword ptr [r8d + 4]
    mov rax, -0x80000000
    mov rax, 0x80000000
    and rax, -16
    or ebx, ecx
    xor eax, eax
    xor r9w, r10w
    add rax, [r8 + 8]
    sub ecx, [r8 + r9*4 + 16]
    cmp rbx, [r8]
    test [r8 + 24], eax
    add [r8 + 40], rbx
    sub [r8 + 42], cx
    xor [r8 + 43], dl
    or dword ptr [r8 + 48], 0x55
    cmp qword ptr [r8 + 56], -1
    adc qword ptr [r8 + 64], 3
    and byte ptr [r8 + 72], 0xf0
    mov rax, rbx
    mov eax, ebx
    mov ax, bx
    mov r11b, cl
    mov rax, 0x123456789abcdef0
    mov ecx, -1
    mov rax, [r8 + 16]
    mov ecx, [r8 + r9*8]
    mov bx, [r8 + 3]
    mov [r8 + 80], rax
    mov [r8 + 85], ecx
    mov byte ptr [r8 + 90], 7
    mov qword ptr [r8 + 96], -2
    mov rax, [rip + 0x40]
    movzx eax, bl
    movzx rcx, word ptr [r8 + 6]
    movsx rax, bl
    movsx ecx, word ptr [r8 + 10]
    movsxd rax, ebx
    movsxd rdx, dword ptr [r8 + 12]
    lea rax, [rbx + rcx*4 - 7]
    lea eax, [r8 + r9*2 + 0x1234]
    lea rsi, [rip + 0x100]
    inc rax
    inc bl
    dec ecx
    dec r10w
    shl rax, 1
    shl ebx, 7
    shl cx, 15
    shl dl, 3
    shr rax, 63
    shr eax, 1
    shr bx, 9
    sar rax, 5
    sar ecx, 31
    sar dl, 7
    shl rax, cl
    shl ebx, cl
    shr dx, cl
    sar r9b, cl
    rol eax, 7
    rol rbx, cl
    ror cx, 3
    ror r10d, cl
    rol al, 1
    ror rdx, 63
    not rax
    not ecx
    not bl
    neg rdx
    neg eax
    neg r9w
    imul rax, rbx
    imul ecx, edx
    imul si, di
    imul eax, ebx, 1000
    imul rdx, rcx, -7
    imul r9, [r8 + 8]
    imul ecx, [r8 + 16], 0x12345
    cmovb rax, rbx
    cmovge ecx, edx
    cmovne eax, [r8 + 4]
    cmovz r9w, r10w
    seta al
    setle r9b
    setp dl
    push rbx
    push 0x1234
    push -5
    pop rcx
    pop r12
    pop rsp
    jne .+0x40
    jb .-0x20
    jmp .+0x300
    jmp rbx
    call .+0x80
    call rcx
    ret
    nop
    inc dword ptr [r8 + 8]
    dec qword ptr [r8 + 16]
    inc byte ptr [r8 + 3]
    dec word ptr [r8 + 5]
    inc dword ptr gs:[r8 + 0x7c]
    div rbx
    div ecx
    div qword ptr [r8 + 24]
    div dword ptr [r8 + 28]
    mul rbx
    mul ecx
    mul qword ptr [r8 + 32]
    mul dword ptr [r8 + 36]
    pushfq
    cli
    prefetcht0 [r8]
    prefetchnta [rax]
    call qword ptr [r8 + 40]
    call qword ptr [rip + 0x20]
    leave
    mov eax, ss
    mov rcx, cs
    mov dx, ds
    bt rax, 52
    bts ecx, 3
    btr rbx, rdx
    btc eax, ecx
    bt di, 17
    bt qword ptr [r8 + 64], 12
    btr qword ptr [r8 + 64], 63
    bts dword ptr [r8 + 128], r9d
    btc qword ptr [r8 + 1024], r9
    bt word ptr [r8 + 2048], dx
    cdqe
    cdq
    cqo
    bswap rax
    bswap ecx
    setne byte ptr [r8 + 83]
    setb byte ptr [r8 + r9*2]
    test ah, 0x40
    test bh, 4
    cmp dh, 7
    cmpxchg [r8 + 40], rdx
    cmpxchg [r8 + 44], ecx
    xadd [r8 + 48], rax
    xadd [r8 + 52], ebx
";

#[test]
fn fast_paths_match_the_generic_interpreter() {
    let code = assemble(SNIPPETS);
    let mut d = Decoder::with_ip(64, &code, CODE, DecoderOptions::NONE);
    let mut n = 0;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    while d.can_decode() {
        let ins = d.decode();
        let u = compile(&ins, 64);
        assert!(!u.is_slow(), "{ins} has no fast path");
        for _ in 0..200 {
            let mut s = long_state();
            for g in s.gpr.iter_mut() {
                *g = rng.operand();
            }
            s.gpr[8] = BUF;
            s.gpr[9] = rng.next() % 64;
            s.gpr[4] = STACK - (rng.next() % 64) * 8;
            if rng.next().is_multiple_of(4) {
                // Sometimes a pop into RSP or a stack pointer outside the stack page.
                s.gpr[4] = rng.operand();
            }
            s.rip = ins.ip();
            let lazy = (rng.next() as u8, rng.operand(), rng.operand());
            let seed = rng.next();
            let mut a = machine(s, seed, lazy);
            let mut b = machine(s, seed, lazy);
            let slow = run(&mut a, &ins, None);
            let fast = run(&mut b, &ins, Some(&u));
            assert_eq!(slow, fast, "{ins}: fast path differs");
            n += 1;
        }
    }
    assert!(n > 80 * 200, "only {n} cases ran");
}

/// Compare-and-branch pairs: the fused op must match the two instructions run generically,
/// and pairs whose compare has no fused form (high-byte registers) must not fuse.
#[test]
fn fused_pairs_match_the_generic_interpreter() {
    let code = assemble(
        "
        cmp rax, rbx
        jne .+0x40
        test ecx, 0x80
        je .-0x20
        sub rdx, [r8 + 8]
        jb .+0x100
        cmp qword ptr [r8 + 16], 5
        jg .+0x10
        dec ecx
        jnz .-0x30
        test ah, 0x40
        jne .+0x40
        cmp bh, 7
        jbe .+0x40
    ",
    );
    let mut d = Decoder::with_ip(64, &code, CODE, DecoderOptions::NONE);
    let mut rng = Rng(0x0bad_cafe_1234_5679);
    let mut fused = 0;
    while d.can_decode() {
        let a = d.decode();
        let b = d.decode();
        let high8 = a.op0_register().is_gpr8()
            && a.op0_register() >= iced_x86::Register::AH
            && a.op0_register() <= iced_x86::Register::BH;
        let Some(u) = compile_fused(&a, &b, 64) else {
            assert!(high8, "{a}; {b} did not fuse");
            continue;
        };
        assert!(!high8, "{a}; {b} fused with a high-byte register");
        fused += 1;
        for _ in 0..200 {
            let mut s = long_state();
            for g in s.gpr.iter_mut() {
                *g = rng.operand();
            }
            s.gpr[8] = BUF;
            s.gpr[4] = STACK;
            s.rip = a.ip();
            let lazy = (rng.next() as u8, rng.operand(), rng.operand());
            let seed = rng.next();
            let mut x = machine(s, seed, lazy);
            let mut y = machine(s, seed, lazy);
            let first = run(&mut x, &a, None);
            let slow = if first.starts_with("Ok") {
                run(&mut x, &b, None)
            } else {
                first
            };
            let fast = run(&mut y, &a, Some(&u));
            assert_eq!(slow, fast, "{a}; {b}: fused op differs");
        }
    }
    assert_eq!(fused, 5);
}
