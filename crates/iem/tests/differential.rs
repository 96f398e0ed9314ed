//! Differential tests: every instruction snippet runs natively on the host CPU (in a C
//! helper compiled with gcc at test time) and in the interpreter, on thousands of random
//! operands; registers, XMM registers and the architecturally defined flags must match.
//!
//! Flags that the SDM calls undefined for an instruction are masked per class (see
//! `Class::undefined_flags`); DAA/DAS/AAA/AAS/AAM/AAD are not valid in 64-bit mode and are
//! covered by known-answer tests in `guest.rs` instead.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use sup::{StateMask, Vcpu, VmExit};

const CF: u64 = 1;
const PF: u64 = 4;
const AF: u64 = 0x10;
const ZF: u64 = 0x40;
const SF: u64 = 0x80;
const OF: u64 = 0x800;
const DF: u64 = 0x400;
const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Alu,
    Logic,
    Shift,
    Rotate,
    Mul,
    Div,
    Bit,
    Bsx,
    Str,
    Sse,
    X87,
    Misc,
}

impl Class {
    /// Flags the SDM leaves undefined for this class (masked before comparing).
    fn undefined_flags(self, count: u64) -> u64 {
        match self {
            Class::Alu | Class::Str | Class::Misc => 0,
            Class::Logic => AF,
            Class::Shift => AF | if count > 1 { OF } else { 0 },
            Class::Rotate => {
                if count != 1 {
                    OF
                } else {
                    0
                }
            }
            Class::Mul => SF | ZF | AF | PF,
            Class::Div => ARITH,
            Class::Bit => OF | SF | AF | PF,
            Class::Bsx => CF | OF | SF | AF | PF,
            Class::Sse | Class::X87 => 0,
        }
    }
}

/// (snippet, class). Snippets may use rax, rbx, rcx, rdx, xmm0, xmm1, and r8 = I/O block.
fn cases() -> Vec<(&'static str, Class)> {
    use Class::*;
    vec![
        ("add rax, rbx", Alu),
        ("add eax, ebx", Alu),
        ("add ax, bx", Alu),
        ("add al, bl", Alu),
        ("add ah, bl", Alu),
        ("adc rax, rbx", Alu),
        ("adc eax, ebx", Alu),
        ("adc al, bl", Alu),
        ("sub rax, rbx", Alu),
        ("sub eax, ebx", Alu),
        ("sub ax, bx", Alu),
        ("sub al, bl", Alu),
        ("sbb rax, rbx", Alu),
        ("sbb eax, ebx", Alu),
        ("sbb al, bl", Alu),
        ("cmp rax, rbx", Alu),
        ("cmp eax, 0x7f", Alu),
        ("cmp al, -3", Alu),
        ("neg rax", Alu),
        ("neg ax", Alu),
        ("inc rax", Alu),
        ("inc bl", Alu),
        ("dec eax", Alu),
        ("dec bx", Alu),
        ("add rax, -100", Alu),
        ("xadd rax, rbx", Alu),
        ("cmpxchg rdx, rbx", Alu),
        ("cmpxchg ebx, ecx", Alu),
        ("and rax, rbx", Logic),
        ("and eax, 0xff00ff", Logic),
        ("or rax, rbx", Logic),
        ("or bx, ax", Logic),
        ("xor rax, rbx", Logic),
        ("xor al, bl", Logic),
        ("test rax, rbx", Logic),
        ("test cl, 0x81", Logic),
        ("not rax", Logic),
        ("shl rax, cl", Shift),
        ("shl eax, cl", Shift),
        ("shl ax, cl", Shift),
        ("shl al, cl", Shift),
        ("shr rax, cl", Shift),
        ("shr eax, cl", Shift),
        ("shr bx, cl", Shift),
        ("shr bl, cl", Shift),
        ("sar rax, cl", Shift),
        ("sar eax, cl", Shift),
        ("sar ax, cl", Shift),
        ("sar al, cl", Shift),
        ("shld rax, rbx, cl", Shift),
        ("shld eax, ebx, cl", Shift),
        ("shrd rax, rbx, cl", Shift),
        ("shrd eax, ebx, cl", Shift),
        ("rol rax, cl", Rotate),
        ("rol eax, cl", Rotate),
        ("rol ax, cl", Rotate),
        ("rol al, cl", Rotate),
        ("ror rax, cl", Rotate),
        ("ror ebx, cl", Rotate),
        ("ror bl, cl", Rotate),
        ("rcl rax, cl", Rotate),
        ("rcl eax, cl", Rotate),
        ("rcl ax, cl", Rotate),
        ("rcl al, cl", Rotate),
        ("rcr rax, cl", Rotate),
        ("rcr eax, cl", Rotate),
        ("rcr bx, cl", Rotate),
        ("rcr bl, cl", Rotate),
        ("mul rbx", Mul),
        ("mul ebx", Mul),
        ("mul bx", Mul),
        ("mul bl", Mul),
        ("imul rbx", Mul),
        ("imul ebx", Mul),
        ("imul bl", Mul),
        ("imul rax, rbx", Mul),
        ("imul eax, ebx, 1000", Mul),
        ("imul bx, cx", Mul),
        ("div rbx", Div),
        ("div ebx", Div),
        ("div bx", Div),
        ("div bl", Div),
        ("idiv rbx", Div),
        ("idiv ebx", Div),
        ("idiv bx", Div),
        ("idiv bl", Div),
        ("bt rax, rbx", Bit),
        ("bt eax, 13", Bit),
        ("bts rax, rcx", Bit),
        ("btr eax, ecx", Bit),
        ("btc rax, 63", Bit),
        ("btc bx, cx", Bit),
        ("bsf rax, rbx", Bsx),
        ("bsr eax, ebx", Bsx),
        ("bsf ax, bx", Bsx),
        ("popcnt rax, rbx", Alu),
        ("popcnt eax, ebx", Alu),
        ("bswap rax", Misc),
        ("bswap ebx", Misc),
        ("movsx rax, bl", Misc),
        ("movsx eax, bx", Misc),
        ("movsxd rax, ebx", Misc),
        ("movzx ax, byte ptr [r8 + 41]", Misc),
        ("movzx eax, byte ptr [r8 + 42]", Misc),
        ("movzx rax, byte ptr [r8 + 43]", Misc),
        ("movzx eax, word ptr [r8 + 44]", Misc),
        ("movzx rax, word ptr [r8 + 46]", Misc),
        ("movsx ax, byte ptr [r8 + 47]", Misc),
        ("movsx eax, byte ptr [r8 + 48]", Misc),
        ("movsx rax, byte ptr [r8 + 49]", Misc),
        ("movsx eax, word ptr [r8 + 50]", Misc),
        ("movsx rax, word ptr [r8 + 52]", Misc),
        ("movsxd rax, dword ptr [r8 + 44]", Misc),
        ("movzx eax, bh", Misc),
        ("cqo", Misc),
        ("cdq", Misc),
        ("cwde", Misc),
        ("cbw", Misc),
        ("cdqe", Misc),
        ("setb al", Misc),
        ("setle bl", Misc),
        ("setp cl", Misc),
        ("seto dl", Misc),
        ("cmova rax, rbx", Misc),
        ("cmovge eax, ebx", Misc),
        ("cmovs rdx, rcx", Misc),
        ("lahf", Misc),
        ("sahf", Misc),
        ("cmc", Misc),
        ("lea rax, [rbx + rcx*4 - 7]", Misc),
        ("lea eax, [rbx + rcx*8 + 0x1234]", Misc),
        ("xchg rax, rbx", Misc),
        ("lea rsi, [r8 + 40]\nlea rdi, [r8 + 56]\nand ecx, 15\nrepe cmpsb\nsub rsi, r8\nsub rdi, r8\nmov rax, rsi\nmov rdx, rdi", Str),
        ("lea rdi, [r8 + 40]\nand ecx, 15\nrepne scasb\nsub rdi, r8\nmov rdx, rdi", Str),
        ("lea rsi, [r8 + 40]\nlea rdi, [r8 + 56]\nand ecx, 15\nrep movsb\nsub rsi, r8\nmov rax, rsi\nmovdqu xmm0, [r8 + 40]\nmovdqu xmm1, [r8 + 56]", Str),
        ("lea rdi, [r8 + 40]\nand ecx, 3\nrep stosd\nsub rdi, r8\nmov rdx, rdi\nmovdqu xmm0, [r8 + 40]", Str),
        ("lea rsi, [r8 + 40]\nlodsw\nlodsb\nsub rsi, r8\nmov rdx, rsi", Str),
        // Forward REP MOVS/STOS runs (the interpreter copies them in one go): a destination
        // just ahead of the source (the element-wise copy replicates a pattern), just
        // behind it, words, and a byte fill.
        ("lea rsi, [r8 + 40]\nlea rdi, [r8 + 43]\nand ecx, 15\nrep movsb\nsub rdi, r8\nmov rax, rdi\nmovdqu xmm0, [r8 + 40]\nmovdqu xmm1, [r8 + 56]", Str),
        ("lea rsi, [r8 + 45]\nlea rdi, [r8 + 40]\nand ecx, 15\nrep movsb\nsub rsi, r8\nmov rax, rsi\nmovdqu xmm0, [r8 + 40]\nmovdqu xmm1, [r8 + 56]", Str),
        ("lea rsi, [r8 + 40]\nlea rdi, [r8 + 58]\nand ecx, 7\nrep movsw\nsub rdi, r8\nmov rdx, rdi\nmovdqu xmm0, [r8 + 56]\nmovdqu xmm1, [r8 + 64]", Str),
        ("lea rdi, [r8 + 41]\nand ecx, 15\nrep stosb\nsub rdi, r8\nmov rdx, rdi\nmovdqu xmm0, [r8 + 40]\nmovdqu xmm1, [r8 + 56]", Str),
        ("lea rsi, [r8 + 56]\nlea rdi, [r8 + 71]\nstd\nand ecx, 15\nrep movsb\ncld\nsub rsi, r8\nmov rax, rsi\nmovdqu xmm1, [r8 + 56]", Str),
        ("paddb xmm0, xmm1", Sse),
        ("paddw xmm0, xmm1", Sse),
        ("paddd xmm0, xmm1", Sse),
        ("paddq xmm0, xmm1", Sse),
        ("psubb xmm0, xmm1", Sse),
        ("psubq xmm0, xmm1", Sse),
        ("paddusb xmm0, xmm1", Sse),
        ("paddsw xmm0, xmm1", Sse),
        ("psubusw xmm0, xmm1", Sse),
        ("psubsb xmm0, xmm1", Sse),
        ("pcmpeqb xmm0, xmm1", Sse),
        ("pcmpeqd xmm0, xmm1", Sse),
        ("pcmpgtw xmm0, xmm1", Sse),
        ("pcmpgtb xmm0, xmm1", Sse),
        ("pmovmskb eax, xmm0", Sse),
        ("movmskps eax, xmm1", Sse),
        ("pminub xmm0, xmm1", Sse),
        ("pmaxsw xmm0, xmm1", Sse),
        ("pavgb xmm0, xmm1", Sse),
        ("psadbw xmm0, xmm1", Sse),
        ("pmullw xmm0, xmm1", Sse),
        ("pmulhw xmm0, xmm1", Sse),
        ("pmulhuw xmm0, xmm1", Sse),
        ("pmuludq xmm0, xmm1", Sse),
        ("pmaddwd xmm0, xmm1", Sse),
        ("pxor xmm0, xmm1", Sse),
        ("pandn xmm0, xmm1", Sse),
        ("por xmm0, xmm1", Sse),
        ("psllw xmm0, 3", Sse),
        ("psrld xmm0, 7", Sse),
        ("psraw xmm0, 9", Sse),
        ("psrad xmm0, xmm1", Sse),
        ("psllq xmm0, xmm1", Sse),
        ("pslldq xmm0, 5", Sse),
        ("psrldq xmm0, 11", Sse),
        ("punpcklbw xmm0, xmm1", Sse),
        ("punpckhwd xmm0, xmm1", Sse),
        ("punpckldq xmm0, xmm1", Sse),
        ("punpckhqdq xmm0, xmm1", Sse),
        ("packsswb xmm0, xmm1", Sse),
        ("packssdw xmm0, xmm1", Sse),
        ("packuswb xmm0, xmm1", Sse),
        ("pshufd xmm0, xmm1, 0x1b", Sse),
        ("pshuflw xmm0, xmm1, 0x72", Sse),
        ("pshufhw xmm0, xmm1, 0xd8", Sse),
        ("shufps xmm0, xmm1, 0x4e", Sse),
        ("shufpd xmm0, xmm1, 1", Sse),
        ("unpcklps xmm0, xmm1", Sse),
        ("unpckhpd xmm0, xmm1", Sse),
        ("pextrw eax, xmm1, 5", Sse),
        ("pinsrw xmm0, ebx, 6", Sse),
        ("movd eax, xmm1", Sse),
        ("movq rax, xmm1", Sse),
        ("movd xmm0, ebx", Sse),
        ("movq xmm0, xmm1", Sse),
        ("movss xmm0, xmm1", Sse),
        ("movsd xmm0, xmm1", Sse),
        ("movhlps xmm0, xmm1", Sse),
        ("movlhps xmm0, xmm1", Sse),
        ("addps xmm0, xmm1", Sse),
        ("subpd xmm0, xmm1", Sse),
        ("mulss xmm0, xmm1", Sse),
        ("divsd xmm0, xmm1", Sse),
        ("minps xmm0, xmm1", Sse),
        ("maxsd xmm0, xmm1", Sse),
        ("sqrtpd xmm0, xmm1", Sse),
        ("cmpps xmm0, xmm1, 1", Sse),
        ("cmpsd xmm0, xmm1, 2", Sse),
        ("ucomisd xmm0, xmm1", Sse),
        ("comiss xmm0, xmm1", Sse),
        ("cvtsi2sd xmm0, rbx", Sse),
        ("cvtsi2ss xmm0, ebx", Sse),
        ("cvttsd2si rax, xmm1", Sse),
        ("cvtsd2si eax, xmm1", Sse),
        ("cvttss2si eax, xmm1", Sse),
        ("cvtss2sd xmm0, xmm1", Sse),
        ("cvtsd2ss xmm0, xmm1", Sse),
        ("cvtdq2ps xmm0, xmm1", Sse),
        ("cvttps2dq xmm0, xmm1", Sse),
        ("cvtps2dq xmm0, xmm1", Sse),
        ("cvtdq2pd xmm0, xmm1", Sse),
        ("cvttpd2dq xmm0, xmm1", Sse),
        ("cvtps2pd xmm0, xmm1", Sse),
        ("cvtpd2ps xmm0, xmm1", Sse),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 48]\nfld qword ptr [r8 + 40]\nfaddp st(1), st\nfstp qword ptr [r8 + 40]\nmovdqu xmm0, [r8 + 40]", X87),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 48]\nfld qword ptr [r8 + 40]\nfsubrp st(1), st\nfstp qword ptr [r8 + 40]\nmovdqu xmm0, [r8 + 40]", X87),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 48]\nfld qword ptr [r8 + 40]\nfmul st, st(1)\nfdiv st, st(1)\nfstp qword ptr [r8 + 40]\nfstp st(0)\nmovdqu xmm0, [r8 + 40]", X87),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 48]\nfld qword ptr [r8 + 40]\nfcomip st, st(1)\nfstp st(0)", X87),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 48]\nfld qword ptr [r8 + 40]\nfcompp\nfnstsw ax\nand eax, 0x4500", X87),
        ("fldcw word ptr [r8 + 88]\nfild qword ptr [r8 + 24]\nfistp qword ptr [r8 + 40]\nmovdqu xmm0, [r8 + 40]", X87),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 40]\nfistp dword ptr [r8 + 40]\nmovdqu xmm0, [r8 + 40]", X87),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 40]\nfabs\nfchs\nfsqrt\nfstp qword ptr [r8 + 40]\nmovdqu xmm0, [r8 + 40]", X87),
        ("fldcw word ptr [r8 + 88]\nfld qword ptr [r8 + 40]\nfrndint\nfstp qword ptr [r8 + 40]\nmovdqu xmm0, [r8 + 40]", X87),
        ("fldcw word ptr [r8 + 88]\nfld1\nfldz\nfxch\nfsubp st(1), st\nfstp qword ptr [r8 + 40]\nmovdqu xmm0, [r8 + 40]", X87),
    ]
    .into_iter()
    .chain(branch_cases())
    .collect()
}

/// Compare-and-branch pairs (the interpreter runs a block's final flag-setting instruction
/// and Jcc as one fused op): the branch outcome lands in RCX.
fn branch_cases() -> Vec<(&'static str, Class)> {
    use Class::*;
    const ALL: &[&str] = &[
        "o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g",
    ];
    const SOME: &[&str] = &["o", "b", "e", "be", "s", "p", "l", "le"];
    let forms: &[(&str, Class, &[&str])] = &[
        ("cmp rax, rbx", Alu, ALL),
        ("cmp eax, ebx", Alu, SOME),
        ("cmp ax, bx", Alu, SOME),
        ("cmp al, bl", Alu, SOME),
        ("cmp eax, 0x7f", Alu, SOME),
        ("cmp rax, -3", Alu, SOME),
        ("cmp rax, [r8 + 40]", Alu, SOME),
        ("cmp [r8 + 44], ebx", Alu, SOME),
        ("cmp word ptr [r8 + 40], 0x1234", Alu, SOME),
        ("test rax, rbx", Logic, SOME),
        ("test al, 0x81", Logic, SOME),
        ("test dword ptr [r8 + 40], 0x80000001", Logic, SOME),
        ("sub rax, rbx", Alu, SOME),
        ("add eax, ebx", Alu, SOME),
        ("adc rax, rbx", Alu, SOME),
        ("sbb al, bl", Alu, SOME),
        ("and eax, ebx", Logic, SOME),
        ("xor rax, rbx", Logic, SOME),
        ("or ax, 0x100", Logic, SOME),
        ("add rax, [r8 + 40]", Alu, SOME),
        ("dec edx", Alu, SOME),
        ("inc al", Alu, SOME),
        ("dec rdx", Alu, SOME),
        ("inc ax", Alu, SOME),
    ];
    let mut v = Vec::new();
    for (ins, class, ccs) in forms {
        for cc in *ccs {
            let s = format!("mov ecx, 0\n{ins}\nj{cc} 1f\nmov ecx, 1\n1:");
            v.push((&*Box::leak(s.into_boxed_str()), *class));
        }
    }
    v
}

const PROLOGUE: &str = "push qword ptr [r8 + 32]\npopfq\nmov rax, [r8]\nmov rbx, [r8 + 8]\nmov rcx, [r8 + 16]\nmov rdx, [r8 + 24]\nmovdqu xmm0, [r8 + 40]\nmovdqu xmm1, [r8 + 56]\n";
const EPILOGUE: &str = "pushfq\npop qword ptr [r8 + 32]\nmov [r8], rax\nmov [r8 + 8], rbx\nmov [r8 + 16], rcx\nmov [r8 + 24], rdx\nmovdqu [r8 + 40], xmm0\nmovdqu [r8 + 56], xmm1\n";

/// I/O block: rax rbx rcx rdx rflags xmm0(2) xmm1(2) pad fcw pad = 12 u64.
const WORDS: usize = 12;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn operand(&mut self) -> u64 {
        const SPECIAL: [u64; 12] = [
            0,
            1,
            2,
            u64::MAX,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0x7fff_ffff,
            0x8000_0000,
            0x8000_0000_0000_0000,
        ];
        match self.next() % 8 {
            0 => SPECIAL[(self.next() % 12) as usize],
            1 => self.next() & 0xff,
            2 => self.next() & 0xffff,
            3 => self.next() & 0xffff_ffff,
            _ => self.next(),
        }
    }
    fn double(&mut self) -> u64 {
        let v = (self.next() as i64 as f64) / ((self.next() % 100_000 + 1) as f64);
        match self.next() % 6 {
            0 => 0.5f64.to_bits(),
            1 => (-((self.next() % 1000) as f64) + 0.5).to_bits(),
            _ => v.to_bits(),
        }
    }
    fn float_pair(&mut self) -> u64 {
        let a = ((self.next() % 2_000_000) as f32 - 1_000_000.0) / 7.0;
        let b = ((self.next() % 2000) as f32 - 1000.0) / 3.0;
        u64::from(a.to_bits()) | (u64::from(b.to_bits()) << 32)
    }
}

fn gen_input(rng: &mut Rng, snippet: &str, class: Class) -> [u64; WORDS] {
    let mut v = [0u64; WORDS];
    for w in v.iter_mut().take(4) {
        *w = rng.operand();
    }
    v[4] = (rng.next() & ARITH) | 2;
    for w in v.iter_mut().take(9).skip(5) {
        *w = rng.next();
    }
    v[11] = 0x27f; // x87: double precision, all exceptions masked
    match class {
        Class::Div => {
            // Avoid #DE: divisor non-zero and quotient in range.
            let signed = snippet.starts_with("idiv");
            let bits = if snippet.ends_with("rbx") {
                64
            } else if snippet.ends_with("ebx") {
                32
            } else if snippet.ends_with(" bx") {
                16
            } else {
                8
            };
            let m = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            let mut d = rng.operand() & m;
            if d == 0 {
                d = 3;
            }
            v[1] = d;
            if signed {
                // Dividend = sign-extended small value so the quotient fits.
                let ds = ((d << (64 - bits)) as i64) >> (64 - bits);
                // |quotient * divisor| < 2^(bits-2) keeps the quotient in range.
                let lim = ((1i128 << (bits - 2)) / i128::from(ds.unsigned_abs().max(1))).min(100);
                let q = if lim == 0 {
                    0
                } else {
                    (rng.next() % (2 * lim as u64 + 1)) as i64 - lim as i64
                };
                let r = if ds == 0 {
                    0
                } else {
                    (rng.next() % ds.unsigned_abs()) as i64
                };
                let n = (q as i128) * (ds as i128) + r as i128 * q.signum() as i128;
                let n = n as i64;
                if bits == 8 {
                    v[0] = (n as u64) & 0xffff;
                } else {
                    v[0] = (n as u64) & m;
                    v[3] = if n < 0 { m } else { 0 };
                }
                if bits == 8 && !(-32768..=32767).contains(&n) {
                    v[0] = 100;
                }
            } else if bits == 8 {
                v[0] = (rng.next() % (d * 256)) & 0xffff;
            } else {
                v[3] = rng.next() % d;
            }
        }
        Class::Sse if snippet.contains("ps") || snippet.contains("ss") => {
            v[5] = rng.float_pair();
            v[6] = rng.float_pair();
            v[7] = rng.float_pair();
            v[8] = rng.float_pair();
        }
        Class::Sse
            if snippet.contains("pd") || snippet.contains("sd") || snippet.contains("cvt") =>
        {
            for w in v.iter_mut().take(9).skip(5) {
                *w = rng.double();
            }
        }
        Class::X87 => {
            v[5] = rng.double();
            v[6] = rng.double();
            if snippet.contains("fsqrt") {
                v[5] = f64::from_bits(v[5]).abs().to_bits();
            }
            v[3] = (rng.next() as i64 >> (rng.next() % 40)) as u64;
        }
        Class::Str => {
            // Mostly equal buffers so REPE runs for a while.
            if rng.next().is_multiple_of(2) {
                v[7] = v[5];
                v[8] = v[6] ^ (1u64 << (rng.next() % 64));
            }
            if snippet.contains("std") {
                v[4] &= !DF;
            }
        }
        _ => {}
    }
    if snippet.starts_with("sahf") {
        v[0] = rng.next();
    }
    v
}

fn native_helper(snips: &[String]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("iem-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = String::from(
        "#include <stdio.h>\n#include <stdint.h>\n#include <inttypes.h>\n#include <string.h>\n",
    );
    for (i, s) in snips.iter().enumerate() {
        let body: String = s
            .lines()
            .map(|l| format!("\"{}\\n\"\n", l.replace('"', "\\\"")))
            .collect();
        c.push_str(&format!(
            "static void f{i}(uint64_t *io) {{ __asm__ volatile(\"mov r8, %0\\n\" {body} :: \"r\"(io) : \"rax\",\"rbx\",\"rcx\",\"rdx\",\"rsi\",\"rdi\",\"r8\",\"xmm0\",\"xmm1\",\"memory\",\"cc\",\"st\",\"st(1)\"); }}\n"
        ));
    }
    c.push_str("typedef void (*fn)(uint64_t*);\nstatic fn table[] = {");
    for i in 0..snips.len() {
        c.push_str(&format!("f{i},"));
    }
    c.push_str("};\nint main(void){ unsigned idx; uint64_t io[12] __attribute__((aligned(16)));\n while (scanf(\"%u\", &idx) == 1) { for (int k = 0; k < 12; k++) scanf(\"%\" SCNx64, &io[k]); table[idx](io); for (int k = 0; k < 12; k++) printf(\"%\" PRIx64 \" \", io[k]); printf(\"\\n\"); fflush(stdout); } return 0; }\n");
    let src = dir.join("ref.c");
    let bin = dir.join("ref");
    std::fs::write(&src, c).unwrap();
    let out = Command::new("gcc")
        .args(["-O0", "-masm=intel", "-mno-red-zone", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn run_native(bin: &std::path::Path, inputs: &[(usize, [u64; WORDS])]) -> Vec<[u64; WORDS]> {
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut text = String::new();
    for (i, v) in inputs {
        text.push_str(&i.to_string());
        for w in v {
            text.push_str(&format!(" {w:x}"));
        }
        text.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    if !out.status.success() {
        let done = out.stdout.iter().filter(|&&b| b == b'\n').count();
        panic!(
            "native helper failed ({:?}) on input #{done}: {:x?}",
            out.status,
            inputs.get(done)
        );
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v = [0u64; WORDS];
            for (k, t) in l.split_whitespace().enumerate() {
                v[k] = u64::from_str_radix(t, 16).unwrap();
            }
            v
        })
        .collect()
}

const SLOT: u64 = 0x200;
const CODE: u64 = 0x100000;
const IO: u64 = 0x7000;

#[test]
fn differential_against_host_cpu() {
    let list = cases();
    let snips: Vec<String> = list
        .iter()
        .map(|(s, _)| format!("{PROLOGUE}{s}\n{EPILOGUE}"))
        .collect();
    let bin = native_helper(&snips);
    let per = std::env::var("IEM_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400usize);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut inputs = Vec::new();
    for (i, (s, class)) in list.iter().enumerate() {
        for _ in 0..per {
            inputs.push((i, gen_input(&mut rng, s, *class)));
        }
    }
    let native = run_native(&bin, &inputs);
    assert_eq!(native.len(), inputs.len(), "native helper crashed");

    // Guest: every snippet at CODE + i*SLOT, ending in HLT.
    let mut src = String::new();
    for s in &snips {
        src.push_str(&format!(".balign {SLOT}\n{s}hlt\n"));
    }
    let mut m = Machine::long(&src, CODE);
    let mut failures = Vec::new();
    let mut per_class: std::collections::BTreeMap<&str, usize> = Default::default();
    for ((i, input), want) in inputs.iter().zip(&native) {
        let (snip, class) = list[*i];
        for (k, w) in input.iter().enumerate() {
            m.mem.write_le::<8>(IO + k as u64 * 8, *w).unwrap();
        }
        {
            let st = m.vcpu.state(StateMask::ALL).unwrap();
            st.rip = CODE + *i as u64 * SLOT;
            st.gpr[4] = 0x80000;
            st.gpr[8] = IO;
            st.rflags = 2;
            st.fpu = sup::state::FpuState::default();
        }
        m.vcpu.mark_dirty(StateMask::ALL);
        let e = m.run();
        assert_eq!(e, VmExit::Hlt, "{snip}: guest stopped with {e:?}");
        let mut got = [0u64; WORDS];
        for (k, g) in got.iter_mut().enumerate() {
            *g = m.mem.read_le::<8>(IO + k as u64 * 8).unwrap();
        }
        let undefined = class.undefined_flags(
            input[2]
                & if snip.contains("rax") || snip.contains("rbx") {
                    63
                } else {
                    31
                },
        );
        let fmask = (ARITH | DF) & !undefined;
        let mut want_cmp = *want;
        let mut got_cmp = got;
        want_cmp[4] &= fmask;
        got_cmp[4] &= fmask;
        if class == Class::Bsx && input[1] == 0 {
            // Destination undefined when the source is zero.
            want_cmp[0] = 0;
            got_cmp[0] = 0;
        }
        if class == Class::Shift && snip.contains("sh") && snip.contains("d ") {
            // SHLD/SHRD with count > operand size: result and flags undefined.
            let bits = if snip.contains("rax") { 64 } else { 32 };
            if input[2] & if bits == 64 { 63 } else { 31 } >= bits {
                continue;
            }
        }
        want_cmp[9] = 0;
        got_cmp[9] = 0;
        if want_cmp != got_cmp {
            *per_class
                .entry(snip.lines().nth(1).unwrap_or(snip))
                .or_default() += 1;
            if failures.len() < 25 {
                failures.push(format!(
                    "{}\n   in   {:x?}\n   want {:x?}\n   got  {:x?}",
                    snip.replace('\n', "; "),
                    input,
                    want_cmp,
                    got_cmp
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(bin.parent().unwrap());
    assert!(
        failures.is_empty(),
        "{} mismatching instructions {:?}\n{}",
        per_class.len(),
        per_class,
        failures.join("\n")
    );
    eprintln!(
        "differential: {} cases over {} snippets matched",
        inputs.len(),
        list.len()
    );
}
