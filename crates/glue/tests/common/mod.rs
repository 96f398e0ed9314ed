//! Shared helpers for glue's integration tests: assembling tiny guests with GNU as/ld,
//! building a long-mode guest image (GDT, IDT, TSS, identity-mapped page tables) that
//! `Boot::Raw` loads at address 0, running it through the whole VMM (`glue::Machine`: hm's
//! exit loop, the interrupt fabric and the PC devices) on a chosen engine, and the loud
//! skip when KVM is not usable.
//!
//! CI counts two strings on stderr: `SKIPPED (no /dev/kvm): <test>` when a KVM variant could
//! not run, and `KVM-TEST-RAN <test>` when it did. A KVM variant never passes silently.

#![allow(dead_code)]

use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use hm::StopReason;
use parking_lot::Mutex;
use pgm::GuestMemory;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sup::{Segment, VcpuState};

/// The engine a test variant runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// sup's KVM backend (here: kvm-pvm).
    Kvm,
    /// The iem interpreter.
    Interpreter,
}

impl Engine {
    fn choice(self) -> EngineChoice {
        match self {
            Engine::Kvm => EngineChoice::Kvm,
            Engine::Interpreter => EngineChoice::Interpreter,
        }
    }
}

/// True when KVM can run guests here. Otherwise prints the loud skip line for `test`.
pub fn kvm_usable(test: &str) -> bool {
    if !std::path::Path::new(sup::kvm::KvmHypervisor::DEVICE).exists() {
        eprintln!("SKIPPED (no /dev/kvm): {test}");
        return false;
    }
    match sup::kvm::KvmHypervisor::new() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED (no /dev/kvm): {test}");
            eprintln!("  (/dev/kvm exists but is unusable: {e})");
            false
        }
    }
}

/// True when `/dev/kvm` is kvm-pvm, the software hypervisor of this project's machines.
pub fn is_kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Assemble Intel-syntax `src` (which picks its own `.code16/32/64`) linked at `base`;
/// returns the flat binary.
pub fn asm(src: &str, base: u64) -> Vec<u8> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("glue-asm-{}-{}", std::process::id(), n));
    std::fs::create_dir_all(&dir).unwrap();
    let s = dir.join("t.s");
    let o = dir.join("t.o");
    let b = dir.join("t.bin");
    std::fs::write(&s, format!(".intel_syntax noprefix\n{src}\n")).unwrap();
    let out = Command::new("as")
        .arg("--64")
        .arg("-o")
        .arg(&o)
        .arg(&s)
        .output()
        .expect("run GNU as (binutils)");
    assert!(
        out.status.success(),
        "as failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("ld")
        .args(["-m", "elf_x86_64", "--oformat", "binary", "-N"])
        .arg(format!("-Ttext={base:#x}"))
        .arg("-o")
        .arg(&b)
        .arg(&o)
        .output()
        .expect("run GNU ld (binutils)");
    assert!(
        out.status.success(),
        "ld failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = std::fs::read(&b).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bin
}

/// Guest-physical layout of the long-mode test image (loaded at 0).
pub mod layout {
    /// GDT: null, 0x08 64-bit code, 0x10 data, 0x18 32-bit code, 0x20 TSS (16 bytes).
    pub const GDT: u64 = 0x1000;
    /// IDT: 256 16-byte gates (filled by the guest with `SET_GATE`).
    pub const IDT: u64 = 0x2000;
    /// The 64-bit TSS.
    pub const TSS: u64 = 0x3000;
    /// The AP's real-mode start-up code (Startup IPI vector 0x08).
    pub const TRAMPOLINE: u64 = 0x8000;
    /// A second start-up page (Startup IPI vector 0x0A).
    pub const TRAMPOLINE2: u64 = 0xa000;
    /// Where guests leave their results.
    pub const RESULTS: u64 = 0x9000;
    /// PML4; PDPT at +0x1000; four page directories of 2 MiB pages after it.
    pub const PML4: u64 = 0x1_0000;
    /// The guest's long-mode code.
    pub const CODE: u64 = 0x2_0000;
    /// Top of the BSP's stack.
    pub const STACK: u64 = 0x8_0000;
    /// Image size without the code.
    pub const IMAGE_BASE_LEN: usize = CODE as usize;
}

/// The port whose write powers the VM off (`out 0xf4, al`, like QEMU's isa-debug-exit).
pub const EXIT_PORT: u16 = 0xf4;

/// Assembly appended to every long-mode guest: `set_gate` (edi = vector, rsi = handler)
/// writes a present 64-bit interrupt gate into the IDT; `pic_init` programs the 8259s;
/// `start_ticker` / `wait_ticks` (edi = ticks) give a halted 1 ms delay.
const GUEST_LIB: &str = r#"
set_gate:
    mov eax, edi
    shl rax, 4
    add rax, 0x2000
    mov word ptr [rax], si
    mov word ptr [rax + 2], 0x08
    mov word ptr [rax + 4], 0x8e00
    mov rdx, rsi
    shr rdx, 16
    mov word ptr [rax + 6], dx
    shr rdx, 16
    mov dword ptr [rax + 8], edx
    mov dword ptr [rax + 12], 0
    ret

# A 1 ms tick from the local APIC timer (periodic, vector 0x40) counted at 0x9100, so that
# a vCPU can wait by halting instead of spinning (a spinning vCPU starves the others on a
# busy host, and kvm-pvm exits on every PAUSE).
tick_handler:
    push rax
    lock inc dword ptr [0x9100]
    mov rax, 0xfee000b0
    mov dword ptr [rax], 0
    pop rax
    iretq
start_ticker:
    push rbx
    mov edi, 0x40
    lea rsi, [rip + tick_handler]
    call set_gate
    mov rbx, 0xfee00000
    mov dword ptr [rbx + 0xf0], 0x1ff
    mov dword ptr [rbx + 0x3e0], 0xb
    mov dword ptr [rbx + 0x320], 0x20040
    mov dword ptr [rbx + 0x380], 1000000
    pop rbx
    ret
# Wait edi ticks, halted (returns with IF clear).
wait_ticks:
    mov eax, dword ptr [0x9100]
    add eax, edi
1:  sti
    hlt
    cli
    cmp dword ptr [0x9100], eax
    jb 1b
    ret

# The 8259 pair initialised as a PC BIOS does (vectors 0x20-0x27 and 0x28-0x2f, cascade
# on IRQ2, 8086 mode), every line masked.
pic_init:
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    out 0xa1, al
    mov al, 0xff
    out 0x21, al
    out 0xa1, al
    ret
"#;

/// Assembly macros every long-mode guest may use.
const GUEST_MACROS: &str = r#"
.macro SET_GATE vec, handler
    mov edi, \vec
    lea rsi, [rip + \handler]
    call set_gate
.endm
.macro EXIT
    out 0xf4, al
1:  hlt
    jmp 1b
.endm
"#;

/// Write the GDT, TSS and the page tables (identity map of 0-4 GiB with 2 MiB pages,
/// including the IOAPIC and local APIC pages) into `img`.
fn write_tables(img: &mut [u8]) {
    let mut put = |addr: u64, v: u64| {
        let a = addr as usize;
        img[a..a + 8].copy_from_slice(&v.to_le_bytes());
    };
    let gdt: [u64; 4] = [
        0,
        0x00af_9b00_0000_ffff, // 0x08: 64-bit code
        0x00cf_9300_0000_ffff, // 0x10: data
        0x00cf_9b00_0000_ffff, // 0x18: 32-bit code
    ];
    for (i, d) in gdt.iter().enumerate() {
        put(layout::GDT + i as u64 * 8, *d);
    }
    // 0x20: 64-bit available TSS, base TSS, limit 0x67.
    let base = layout::TSS;
    put(
        layout::GDT + 0x20,
        0x67 | ((base & 0xff_ffff) << 16) | (0x89u64 << 40) | ((base >> 24 & 0xff) << 56),
    );
    put(layout::GDT + 0x28, base >> 32);
    // PML4 -> PDPT -> 4 page directories, uncached for the MMIO GiB (PCD|PWT harmless).
    let pdpt = layout::PML4 + 0x1000;
    put(layout::PML4, pdpt | 3);
    for g in 0..4u64 {
        let pd = pdpt + 0x1000 + g * 0x1000;
        put(pdpt + g * 8, pd | 3);
        for i in 0..512u64 {
            let pa = (g << 30) | (i << 21);
            let flags = if g == 3 { 0x83 | 0x18 } else { 0x83 };
            put(pd + i * 8, pa | flags);
        }
    }
}

/// The initial state of a long-mode guest: CS 0x08, data 0x10, TR 0x20, paging on, IF clear,
/// RIP at `layout::CODE`, RSP at `layout::STACK`, IDT full size (gates filled by the guest).
pub fn long_mode_state() -> VcpuState {
    let mut s = VcpuState::reset();
    let code = Segment {
        selector: 0x08,
        base: 0,
        limit: 0xffff_ffff,
        attr: Segment::attr_from_descriptor(0x00af_9b00),
    };
    let data = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xffff_ffff,
        attr: Segment::attr_from_descriptor(0x00cf_9300),
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.fs = data;
    s.gs = data;
    s.tr = Segment {
        selector: 0x20,
        base: layout::TSS,
        limit: 0x67,
        attr: 0xb | Segment::P,
    };
    s.ldtr = Segment {
        selector: 0,
        base: 0,
        limit: 0,
        attr: Segment::UNUSABLE,
    };
    s.gdtr.base = layout::GDT;
    s.gdtr.limit = 0x2f;
    s.idtr.base = layout::IDT;
    s.idtr.limit = 0xfff;
    s.cr0 = sup::state::cr0::PE
        | sup::state::cr0::MP
        | sup::state::cr0::ET
        | sup::state::cr0::NE
        | sup::state::cr0::WP
        | sup::state::cr0::PG;
    s.cr3 = layout::PML4;
    s.cr4 = (1 << 5) | (1 << 9) | (1 << 10); // PAE, OSFXSR, OSXMMEXCPT
    s.efer = sup::state::efer::LME | sup::state::efer::LMA | sup::state::efer::SCE;
    s.rip = layout::CODE;
    s.rflags = 2;
    s.gpr[sup::state::reg::RSP] = layout::STACK;
    s
}

/// A guest: long-mode code (`.code64` is prepended, the macros `SET_GATE vec, label` and
/// `EXIT` are available) plus optional real-mode code for the AP trampolines at 0x8000
/// and 0xA000.
pub struct Guest {
    /// Long-mode code, assembled at `layout::CODE`.
    pub code: String,
    /// Real-mode code for `layout::TRAMPOLINE` (linked at offset 0: CS = 0x0800).
    pub trampoline: Option<&'static str>,
    /// Real-mode code for `layout::TRAMPOLINE2` (linked at offset 0: CS = 0x0A00).
    pub trampoline2: Option<&'static str>,
    /// vCPUs.
    pub cpus: u32,
    /// Change the initial state (e.g. an empty IDT).
    pub adjust: Option<fn(&mut VcpuState)>,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Guest {
    /// A one-vCPU guest running `code` with a 30 s timeout.
    pub fn new(code: &str) -> Self {
        Guest {
            code: code.to_string(),
            trampoline: None,
            trampoline2: None,
            cpus: 1,
            adjust: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// The flat image loaded at guest-physical 0.
    pub fn image(&self) -> Vec<u8> {
        let code = asm(
            &format!(".code64\n{GUEST_MACROS}\n{}\n{GUEST_LIB}", self.code),
            layout::CODE,
        );
        let mut img = vec![0u8; layout::IMAGE_BASE_LEN + code.len()];
        write_tables(&mut img);
        img[layout::CODE as usize..].copy_from_slice(&code);
        for (t, at) in [
            (self.trampoline, layout::TRAMPOLINE),
            (self.trampoline2, layout::TRAMPOLINE2),
        ] {
            if let Some(t) = t {
                let t = asm(&format!(".code16\n{t}"), 0);
                let at = at as usize;
                assert!(t.len() <= 0x1000, "trampoline too big");
                img[at..at + t.len()].copy_from_slice(&t);
            }
        }
        img
    }
}

/// A `Write` that keeps everything in memory, shareable with the test.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().clone()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a guest run left behind.
pub struct Outcome {
    /// Why the VM stopped.
    pub reason: StopReason,
    /// True when the test's watchdog stopped it.
    pub timed_out: bool,
    /// Each vCPU's final state.
    pub states: Vec<Option<VcpuState>>,
    /// Guest memory.
    pub memory: Arc<GuestMemory>,
    /// Everything the guest wrote to COM1.
    pub console: Capture,
    /// Host time from `run` to its return.
    pub elapsed: Duration,
}

impl Outcome {
    /// Read `N` bytes little-endian at `gpa`.
    pub fn read<const N: usize>(&self, gpa: u64) -> u64 {
        self.memory.read_le::<N>(gpa).unwrap()
    }

    /// A result dword at `layout::RESULTS + off`.
    pub fn res32(&self, off: u64) -> u32 {
        self.read::<4>(layout::RESULTS + off) as u32
    }

    /// A result byte at `layout::RESULTS + off`.
    pub fn res8(&self, off: u64) -> u8 {
        self.read::<1>(layout::RESULTS + off) as u8
    }

    /// vCPU `i`'s final state (panics with the stop reason when there is none).
    pub fn state(&self, i: usize) -> &VcpuState {
        self.states
            .get(i)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("no final state for vCPU {i}; stop: {:?}", self.reason))
    }

    /// Assert that the guest powered off through the exit port (not the watchdog, not an
    /// error or a triple fault).
    pub fn assert_exited(&self) {
        assert!(
            !self.timed_out,
            "guest timed out after {:?}; vCPU 0 rip {:#x?}",
            self.elapsed,
            self.states.first().and_then(|s| s.as_ref().map(|s| s.rip))
        );
        assert_eq!(self.reason, StopReason::PowerOff, "guest did not power off");
    }
}

/// Run `guest` on `engine` through `glue::Machine` with 32 MiB of RAM and COM1 captured.
pub fn run(engine: Engine, test: &str, guest: &Guest) -> Outcome {
    let mut state = long_mode_state();
    if let Some(f) = guest.adjust {
        f(&mut state);
    }
    let console = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Raw {
        image: guest.image(),
        load_addr: 0,
        state: Box::new(state),
    });
    cfg.memory_mib = 32;
    cfg.cpus = guest.cpus;
    cfg.engine = engine.choice();
    cfg.console = Console::Writer(Box::new(console.clone()));
    cfg.exit_port = Some(EXIT_PORT);
    cfg.rtc_utc = true;
    let mut m = Machine::build(cfg).expect("build the machine");
    let (reason, timed_out, elapsed) = run_with_watchdog(&mut m, guest.timeout);
    if engine == Engine::Kvm {
        eprintln!("KVM-TEST-RAN {test}");
    }
    eprintln!(
        "{test}: ran {:.1} ms ({:?})",
        elapsed.as_secs_f64() * 1e3,
        reason
    );
    Outcome {
        reason,
        timed_out,
        states: m.final_states(),
        memory: m.memory().clone(),
        console,
        elapsed,
    }
}

/// Run `m`; power it off after `timeout`. Returns (stop reason, timed out, elapsed).
pub fn run_with_watchdog(m: &mut Machine, timeout: Duration) -> (StopReason, bool, Duration) {
    let stop = m.stop_handle();
    let done = Arc::new(AtomicBool::new(false));
    let fired = Arc::new(AtomicBool::new(false));
    let (d, f) = (done.clone(), fired.clone());
    let dog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if d.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        f.store(true, Ordering::SeqCst);
        stop.power_off();
    });
    let start = Instant::now();
    let reason = m.run().expect("run the machine");
    let elapsed = start.elapsed();
    done.store(true, Ordering::SeqCst);
    dog.join().unwrap();
    (reason, fired.load(Ordering::SeqCst), elapsed)
}

/// Run `check` on `engine` unless that engine is KVM and KVM is unusable (loud skip).
pub fn on_engine(engine: Engine, test: &str, check: fn(Engine, &str)) {
    if engine == Engine::Kvm && !kvm_usable(test) {
        return;
    }
    check(engine, test);
}

/// `both_engines!(name, check)`: a module `name` with tests `kvm` and `interpreter` that
/// run `check(engine, "name::engine")`.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $check:path) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn kvm() {
                $crate::common::on_engine(
                    $crate::common::Engine::Kvm,
                    concat!(stringify!($name), "::kvm"),
                    $check,
                );
            }
            #[test]
            fn interpreter() {
                $crate::common::on_engine(
                    $crate::common::Engine::Interpreter,
                    concat!(stringify!($name), "::interpreter"),
                    $check,
                );
            }
        }
    };
}
