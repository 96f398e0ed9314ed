//! Tiny hand-assembled guests run directly on the KVM backend.
//!
//! Each test writes a few bytes of machine code into pgm memory, points the vCPU at them
//! (or lets it start at the reset vector) and checks the exits and the state that come back.
//! The encodings are written out by hand with the assembly beside each instruction.
//!
//! Every test first checks for `/dev/kvm`; without it the test prints
//! `SKIPPED (no /dev/kvm): <name>` to stderr and returns. This host's `/dev/kvm` is kvm-pvm, a
//! software hypervisor: what it cannot do is noted in the test concerned.

use pgm::{GuestMemory, MemoryLayout, PamMode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sup::kvm::{KvmHypervisor, KvmVcpu, KvmVm};
use sup::state::{cr0, efer, reg, Segment};
use sup::{IoDirection, StateMask, Vcpu, Vm, VmExit};

static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Open KVM, or say loudly that the test is skipped.
fn kvm_or_skip(test: &str) -> Option<KvmHypervisor> {
    if !std::path::Path::new(KvmHypervisor::DEVICE).exists() {
        let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
        eprintln!("SKIPPED (no /dev/kvm): {test} ({n} skipped in this run)");
        return None;
    }
    // /dev/kvm exists: failing to use it is a failure, not a skip.
    Some(KvmHypervisor::new().expect("open /dev/kvm"))
}

/// Where test code goes in RAM.
const CODE: u64 = 0x1000;
/// An address nothing maps (above RAM, below the PCI hole's devices).
const MMIO_ADDR: u64 = 0xd000_0000;
/// A port no one claims.
const PORT: u16 = 0x5e0;

struct Guest {
    mem: Arc<GuestMemory>,
    vm: Arc<KvmVm>,
    vcpu: KvmVcpu,
}

/// A VM with 4 MiB of RAM and a 64 KiB firmware ROM just below 4 GiB.
fn guest(hv: &KvmHypervisor) -> Guest {
    let layout = MemoryLayout::pc(4 << 20)
        .unwrap()
        .with_firmware(0x1_0000)
        .unwrap();
    let mem = Arc::new(GuestMemory::new(layout).unwrap());
    let vm = hv.create_kvm_vm(mem.clone()).unwrap();
    let vcpu = vm.create_kvm_vcpu(0).unwrap();
    Guest { mem, vm, vcpu }
}

/// A guest in real mode at 0000:1000 running `code`, with SS:SP = 0000:8000.
fn real_mode_guest(hv: &KvmHypervisor, code: &[u8]) -> Guest {
    let mut g = guest(hv);
    g.mem.write(CODE, code).unwrap();
    let s = g
        .vcpu
        .state(StateMask::SEGS | StateMask::RIP | StateMask::GPRS)
        .unwrap();
    s.cs = Segment::real_mode(0, 0xb);
    s.rip = CODE;
    s.gpr[reg::RSP] = 0x8000;
    g.vcpu
        .mark_dirty(StateMask::SEGS | StateMask::RIP | StateMask::GPRS);
    g
}

fn rd<const N: usize>(mem: &GuestMemory, gpa: u64) -> u64 {
    mem.read_le::<N>(gpa).unwrap()
}

// Long mode page tables: PML4 at 0x10000; PDPT at 0x11000 identity-maps 0..4 GiB through four
// page directories of 2 MiB pages (0x12000..0x16000); PML4[1] (VA 512 GiB) maps through a
// second PDPT (0x16000) and PD (0x17000) onto physical 0, to prove translation happens.
const PML4: u64 = 0x10000;
const GDT: u64 = 0x500;
/// The virtual address that maps to physical 0.
const HIGH_ALIAS: u64 = 0x80_0000_0000;

fn build_long_mode_tables(mem: &GuestMemory) {
    let w = |a: u64, v: u64| mem.write_le::<8>(a, v).unwrap();
    w(PML4, 0x11000 | 3);
    w(PML4 + 8, 0x16000 | 3);
    for i in 0..4u64 {
        w(0x11000 + i * 8, (0x12000 + i * 0x1000) | 3);
        for j in 0..512u64 {
            w(0x12000 + i * 0x1000 + j * 8, (i << 30) | (j << 21) | 0x83);
        }
    }
    w(0x16000, 0x17000 | 3);
    w(0x17000, 0x83);
    // GDT: null, 64-bit code (0x08), data (0x10).
    w(GDT, 0);
    w(GDT + 8, 0x00af_9b00_0000_ffff);
    w(GDT + 16, 0x00cf_9300_0000_ffff);
}

/// A guest in 64-bit long mode with paging at CODE, set up entirely through the state.
fn long_mode_guest(hv: &KvmHypervisor, code: &[u8]) -> Guest {
    let mut g = guest(hv);
    build_long_mode_tables(&g.mem);
    g.mem.write(CODE, code).unwrap();
    // KVM checks EFER.LME against the guest's CPUID when the guest writes it; give the guest
    // what the host supports, as hm would after filtering.
    let cpuid = hv.supported_cpuid().unwrap();
    g.vcpu.set_cpuid(&cpuid).unwrap();
    let s = g.vcpu.state(StateMask::ALL).unwrap();
    let code_seg = Segment {
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
    s.cs = code_seg;
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.fs = data;
    s.gs = data;
    s.tr = Segment {
        selector: 0,
        base: 0,
        limit: 0x67,
        attr: 0xb | Segment::P,
    };
    s.ldtr = Segment {
        selector: 0,
        base: 0,
        limit: 0,
        attr: Segment::UNUSABLE,
    };
    s.gdtr.base = GDT;
    s.gdtr.limit = 23;
    s.idtr.base = 0;
    s.idtr.limit = 0;
    s.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG;
    s.cr3 = PML4;
    s.cr4 = (1 << 5) | (1 << 9) | (1 << 10); // PAE, OSFXSR, OSXMMEXCPT
    s.efer = efer::LME | efer::LMA;
    s.rip = CODE;
    s.rflags = 2;
    s.gpr[reg::RSP] = 0x8000;
    g.vcpu.mark_dirty(
        StateMask::SEGS
            | StateMask::SYS_SEGS
            | StateMask::DTABLES
            | StateMask::CRS
            | StateMask::RIP
            | StateMask::RFLAGS
            | StateMask::GPRS,
    );
    g
}

fn expect_hlt(v: &mut KvmVcpu) {
    match v.run().unwrap() {
        VmExit::Hlt => {}
        e => {
            let rip = v.state(StateMask::RIP).map(|s| s.rip);
            panic!("expected HLT, got {e:?} at rip {rip:x?}")
        }
    }
}

#[test]
fn hlt_exits_with_rip_after_instruction() {
    let Some(hv) = kvm_or_skip("hlt_exits_with_rip_after_instruction") else {
        return;
    };
    // nop; nop; hlt
    let mut g = real_mode_guest(&hv, &[0x90, 0x90, 0xf4]);
    expect_hlt(&mut g.vcpu);
    assert_eq!(g.vcpu.state(StateMask::RIP).unwrap().rip, CODE + 3);
    assert_eq!(g.vcpu.engine(), "kvm");
}

#[test]
fn pio_out_and_in_all_sizes() {
    let Some(hv) = kvm_or_skip("pio_out_and_in_all_sizes") else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0xba, 0xe0, 0x05,                   // mov dx, 0x5e0
        0xb0, 0x11,                         // mov al, 0x11
        0xee,                               // out dx, al
        0xb8, 0x33, 0x22,                   // mov ax, 0x2233
        0xef,                               // out dx, ax
        0x66, 0xb8, 0x77, 0x66, 0x55, 0x44, // mov eax, 0x44556677
        0x66, 0xef,                         // out dx, eax
        0xe6, 0x80,                         // out 0x80, al
        0xec,                               // in al, dx
        0x88, 0xc3,                         // mov bl, al
        0xed,                               // in ax, dx
        0x89, 0xc1,                         // mov cx, ax
        0x66, 0xed,                         // in eax, dx
        0xe4, 0x71,                         // in al, 0x71
        0xf4,                               // hlt
    ];
    let mut g = real_mode_guest(&hv, &code);
    let outs: [(u16, &[u8]); 4] = [
        (PORT, &[0x11]),
        (PORT, &[0x33, 0x22]),
        (PORT, &[0x77, 0x66, 0x55, 0x44]),
        (0x80, &[0x77]),
    ];
    for (port, data) in outs {
        let exit = g.vcpu.run().unwrap();
        assert_eq!(
            exit,
            VmExit::Io {
                port,
                size: data.len() as u8,
                count: 1,
                dir: IoDirection::Out
            }
        );
        assert_eq!(g.vcpu.io_data(), data);
    }
    let ins: [(u16, &[u8]); 4] = [
        (PORT, &[0xa1]),
        (PORT, &[0xb1, 0xb2]),
        (PORT, &[0xc1, 0xc2, 0xc3, 0xc4]),
        (0x71, &[0xd1]),
    ];
    for (port, data) in ins {
        let exit = g.vcpu.run().unwrap();
        assert_eq!(
            exit,
            VmExit::Io {
                port,
                size: data.len() as u8,
                count: 1,
                dir: IoDirection::In
            }
        );
        assert_eq!(g.vcpu.io_data().len(), data.len());
        g.vcpu.io_data().copy_from_slice(data);
        assert!(
            g.vcpu.mmio_data().is_empty(),
            "no MMIO buffer on a PIO exit"
        );
    }
    expect_hlt(&mut g.vcpu);
    let s = g.vcpu.state(StateMask::GPRS).unwrap();
    assert_eq!(s.gpr[reg::RBX] & 0xff, 0xa1);
    assert_eq!(s.gpr[reg::RCX] & 0xffff, 0xb2b1);
    // The last `in al, 0x71` replaced AL only.
    assert_eq!(s.gpr[reg::RAX] & 0xffff_ffff, 0xc4c3_c2d1);
}

#[test]
fn rep_string_io_has_count_above_one() {
    let Some(hv) = kvm_or_skip("rep_string_io_has_count_above_one") else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0xfc,             // cld
        0xbe, 0x00, 0x20, // mov si, 0x2000
        0xb9, 0x10, 0x00, // mov cx, 16
        0xba, 0xe0, 0x05, // mov dx, 0x5e0
        0xf3, 0x6e,       // rep outsb
        0xbf, 0x00, 0x30, // mov di, 0x3000
        0xb9, 0x08, 0x00, // mov cx, 8
        0xf3, 0x6d,       // rep insw
        0xf4,             // hlt
    ];
    let mut g = real_mode_guest(&hv, &code);
    let src: Vec<u8> = (0..16u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    g.mem.write(0x2000, &src).unwrap();

    let mut out = Vec::new();
    let mut max_count = 0;
    let mut in_words: Vec<u16> = Vec::new();
    let mut next_word: u16 = 0x1000;
    loop {
        match g.vcpu.run().unwrap() {
            VmExit::Io {
                port: PORT,
                size: 1,
                count,
                dir: IoDirection::Out,
            } => {
                max_count = max_count.max(count);
                assert_eq!(g.vcpu.io_data().len(), count as usize);
                out.extend_from_slice(g.vcpu.io_data());
            }
            VmExit::Io {
                port: PORT,
                size: 2,
                count,
                dir: IoDirection::In,
            } => {
                max_count = max_count.max(count);
                let buf = g.vcpu.io_data();
                assert_eq!(buf.len(), 2 * count as usize);
                for chunk in buf.chunks_mut(2) {
                    chunk.copy_from_slice(&next_word.to_le_bytes());
                    in_words.push(next_word);
                    next_word += 0x0101;
                }
            }
            VmExit::Hlt => break,
            e => panic!("unexpected exit {e:?}"),
        }
    }
    assert_eq!(out, src, "rep outsb data");
    assert!(
        max_count > 1,
        "KVM split rep string I/O into single accesses"
    );
    let mut got = [0u8; 16];
    g.mem.read(0x3000, &mut got).unwrap();
    let expect: Vec<u8> = in_words.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(in_words.len(), 8);
    assert_eq!(&got[..], &expect[..], "rep insw data in memory");
    let s = g.vcpu.state(StateMask::GPRS).unwrap();
    assert_eq!(s.gpr[reg::RCX] & 0xffff, 0);
    assert_eq!(s.gpr[reg::RDI] & 0xffff, 0x3010);
}

#[test]
fn mmio_read_write_all_sizes_in_long_mode() {
    let Some(hv) = kvm_or_skip("mmio_read_write_all_sizes_in_long_mode") else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rax, 0x1122334455667788
        0xba, 0x00, 0x00, 0x00, 0xd0,       // mov edx, 0xd0000000
        0x88, 0x02,                         // mov [rdx], al
        0x66, 0x89, 0x42, 0x02,             // mov [rdx+2], ax
        0x89, 0x42, 0x04,                   // mov [rdx+4], eax
        0x48, 0x89, 0x42, 0x08,             // mov [rdx+8], rax
        0x8a, 0x5a, 0x10,                   // mov bl, [rdx+0x10]
        0x66, 0x8b, 0x4a, 0x12,             // mov cx, [rdx+0x12]
        0x8b, 0x72, 0x14,                   // mov esi, [rdx+0x14]
        0x48, 0x8b, 0x7a, 0x18,             // mov rdi, [rdx+0x18]
        0xf4,                               // hlt
    ];
    let mut g = long_mode_guest(&hv, &code);
    let writes: [(u64, &[u8]); 4] = [
        (MMIO_ADDR, &[0x88]),
        (MMIO_ADDR + 2, &[0x88, 0x77]),
        (MMIO_ADDR + 4, &[0x88, 0x77, 0x66, 0x55]),
        (
            MMIO_ADDR + 8,
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
        ),
    ];
    for (gpa, data) in writes {
        let exit = g.vcpu.run().unwrap();
        assert_eq!(
            exit,
            VmExit::Mmio {
                gpa,
                len: data.len() as u8,
                write: true
            }
        );
        assert_eq!(g.vcpu.mmio_data(), data);
        assert!(g.vcpu.io_data().is_empty(), "no PIO buffer on an MMIO exit");
    }
    let reads: [(u64, u64); 4] = [
        (MMIO_ADDR + 0x10, 1),
        (MMIO_ADDR + 0x12, 2),
        (MMIO_ADDR + 0x14, 4),
        (MMIO_ADDR + 0x18, 8),
    ];
    for (gpa, len) in reads {
        let exit = g.vcpu.run().unwrap();
        assert_eq!(
            exit,
            VmExit::Mmio {
                gpa,
                len: len as u8,
                write: false
            }
        );
        let value = 0xf0e0_d0c0_b0a0_9080u64 ^ gpa;
        g.vcpu
            .mmio_data()
            .copy_from_slice(&value.to_le_bytes()[..len as usize]);
    }
    expect_hlt(&mut g.vcpu);
    let s = g.vcpu.state(StateMask::GPRS).unwrap();
    let v = |gpa: u64| 0xf0e0_d0c0_b0a0_9080u64 ^ gpa;
    assert_eq!(s.gpr[reg::RBX] & 0xff, v(MMIO_ADDR + 0x10) & 0xff);
    assert_eq!(s.gpr[reg::RCX] & 0xffff, v(MMIO_ADDR + 0x12) & 0xffff);
    assert_eq!(s.gpr[reg::RSI], v(MMIO_ADDR + 0x14) & 0xffff_ffff);
    assert_eq!(s.gpr[reg::RDI], v(MMIO_ADDR + 0x18));
}

#[test]
fn long_mode_with_paging() {
    let Some(hv) = kvm_or_skip("long_mode_with_paging") else {
        return;
    };
    let mut code = vec![0x48, 0xba]; // mov rdx, HIGH_ALIAS + 0x2000
    code.extend_from_slice(&(HIGH_ALIAS + 0x2000).to_le_bytes());
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0x48, 0x8b, 0x02,                   // mov rax, [rdx]   (physical 0x2000 via PML4[1])
        0x48, 0xc1, 0xe0, 0x04,             // shl rax, 4   (a 64-bit result)
        0x66, 0xba, 0xe0, 0x05,             // mov dx, 0x5e0
        0x66, 0xef,                         // out dx, ax
        0xf4,                               // hlt
    ]);
    let mut g = long_mode_guest(&hv, &code);
    g.mem.write_le::<8>(0x2000, 0x0abc_def0_1234_5678).unwrap();
    match g.vcpu.run().unwrap() {
        VmExit::Io {
            port: PORT,
            size: 2,
            count: 1,
            dir: IoDirection::Out,
        } => assert_eq!(g.vcpu.io_data(), &[0x80, 0x67]),
        e => panic!("unexpected exit {e:?}"),
    }
    expect_hlt(&mut g.vcpu);
    let s = g
        .vcpu
        .state(StateMask::GPRS | StateMask::CRS | StateMask::SEGS)
        .unwrap();
    assert_eq!(s.gpr[reg::RAX], 0xabc_def0_1234_5678u64 << 4);
    assert!(s.long_mode(), "EFER.LMA set");
    assert_ne!(s.cs.attr & Segment::L, 0, "64-bit code segment");
    assert_eq!(s.cr3, PML4);
}

#[test]
fn rom_write_from_reset_vector_exits_as_mmio() {
    let Some(hv) = kvm_or_skip("rom_write_from_reset_vector_exits_as_mmio") else {
        return;
    };
    let mut g = guest(&hv);
    let mut rom = vec![0u8; 0x1_0000];
    #[rustfmt::skip]
    let code = [
        0x2e, 0xa0, 0x00, 0x02,             // mov al, [cs:0x200]   (a ROM read: no exit)
        0x2e, 0xc6, 0x06, 0x00, 0x02, 0x99, // mov byte [cs:0x200], 0x99
        0xf4,                               // hlt
    ];
    rom[..code.len()].copy_from_slice(&code);
    rom[0x200] = 0x5a;
    // Reset vector F000:FFF0 -> jmp near 0 (0xfff3 + 0x000d wraps to 0).
    rom[0xfff0..0xfff3].copy_from_slice(&[0xe9, 0x0d, 0x00]);
    g.mem.load_image(0xffff_0000, &rom).unwrap();

    match g.vcpu.run().unwrap() {
        VmExit::Mmio {
            gpa: 0xffff_0200,
            len: 1,
            write: true,
        } => {
            assert_eq!(g.vcpu.mmio_data(), &[0x99]);
            // The VMM hands ROM writes to pgm, which drops them as real ROM does.
            let data = g.vcpu.mmio_data().to_vec();
            g.mem.write(0xffff_0200, &data).unwrap();
        }
        e => panic!("expected an MMIO write to ROM, got {e:?}"),
    }
    expect_hlt(&mut g.vcpu);
    assert_eq!(rd::<1>(&g.mem, 0xffff_0200), 0x5a, "ROM unchanged");
    let s = g.vcpu.state(StateMask::GPRS | StateMask::SEGS).unwrap();
    assert_eq!(s.gpr[reg::RAX] & 0xff, 0x5a, "ROM read without an exit");
    assert_eq!(s.cs.base, 0xffff_0000);
}

#[test]
fn pam_change_reinstalls_slots() {
    let Some(hv) = kvm_or_skip("pam_change_reinstalls_slots") else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0xb8, 0x00, 0xf0,                   // mov ax, 0xf000
        0x8e, 0xd8,                         // mov ds, ax
        0xc6, 0x06, 0x00, 0x01, 0x77,       // mov byte [0x100], 0x77
        0xf4,                               // hlt
        0xc6, 0x06, 0x00, 0x01, 0x66,       // mov byte [0x100], 0x66
        0x8a, 0x1e, 0x00, 0x01,             // mov bl, [0x100]
        0xf4,                               // hlt
    ];
    let mut g = real_mode_guest(&hv, &code);
    // PAM disabled: 0xF0000 reads the BIOS alias (ROM) and writes trap.
    match g.vcpu.run().unwrap() {
        VmExit::Mmio {
            gpa: 0xf_0100,
            len: 1,
            write: true,
        } => assert_eq!(g.vcpu.mmio_data(), &[0x77]),
        e => panic!("expected an MMIO write, got {e:?}"),
    }
    expect_hlt(&mut g.vcpu);
    let slots_before = g.vm.slots().len();
    g.mem
        .set_pam(0xf_0000, 0x1_0000, PamMode::ReadWrite)
        .unwrap();
    g.vm.memory_changed().unwrap();
    // Now shadow RAM: the write lands without an exit.
    expect_hlt(&mut g.vcpu);
    assert_eq!(rd::<1>(&g.mem, 0xf_0100), 0x66);
    let s = g.vcpu.state(StateMask::GPRS).unwrap();
    assert_eq!(s.gpr[reg::RBX] & 0xff, 0x66);
    let slots = g.vm.slots();
    assert_eq!(slots.len(), slots_before);
    let shadow = slots
        .iter()
        .find(|(_, m)| m.gpa == 0xf_0000)
        .expect("slot for 0xF0000");
    assert!(!shadow.1.readonly);
}

#[test]
fn triple_fault_is_shutdown() {
    let Some(hv) = kvm_or_skip("triple_fault_is_shutdown") else {
        return;
    };
    // Long mode with an empty IDT: UD2 raises #UD, whose delivery faults (#GP), whose delivery
    // faults again (#DF) -> triple fault -> shutdown. (The same in real mode with IDTR.limit 0
    // works on hardware KVM, but kvm-pvm emulates real mode and reports an emulation failure
    // for the fault delivery, so the test uses long mode.)
    let mut g = long_mode_guest(&hv, &[0x0f, 0x0b, 0xf4]);
    assert_eq!(g.vcpu.run().unwrap(), VmExit::Shutdown);
}

/// True when `/dev/kvm` is kvm-pvm, the software hypervisor of this project's machines.
fn is_kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Exit the test process if a guest never comes back (a broken recall would hang forever).
fn watchdog(limit: Duration, what: &'static str) -> Arc<std::sync::atomic::AtomicBool> {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if d.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("watchdog: {what} did not return within {limit:?}");
        std::process::exit(101);
    });
    done
}

#[test]
fn recall_from_another_thread_stops_a_spinning_guest() {
    let Some(hv) = kvm_or_skip("recall_from_another_thread_stops_a_spinning_guest") else {
        return;
    };
    // spin: jmp spin; then a hlt the test jumps to.
    let mut g = real_mode_guest(&hv, &[0xeb, 0xfe, 0xf4]);
    let recall = g.vcpu.recall_handle();

    // A recall before run makes the next run return at once.
    recall.recall();
    assert_eq!(g.vcpu.run().unwrap(), VmExit::Recalled);

    // A recall while the guest spins inside KVM_RUN.
    let done = watchdog(Duration::from_secs(30), "recall of a spinning guest");
    let r = recall.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        r.recall();
    });
    let start = Instant::now();
    assert_eq!(g.vcpu.run().unwrap(), VmExit::Recalled);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "ran until recalled"
    );
    t.join().unwrap();

    // The recall is consumed: the guest keeps running afterwards (recall it once more, then
    // send it to the hlt).
    let r = recall.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        r.recall();
    });
    assert_eq!(g.vcpu.run().unwrap(), VmExit::Recalled);
    t.join().unwrap();
    let s = g.vcpu.state(StateMask::RIP).unwrap();
    assert_eq!(s.rip, CODE, "still spinning on the jmp");
    s.rip = CODE + 2;
    g.vcpu.mark_dirty(StateMask::RIP);
    expect_hlt(&mut g.vcpu);
    done.store(true, Ordering::SeqCst);

    // The handle outlives the vCPU harmlessly.
    drop(g);
    recall.recall();
}

#[test]
fn injected_interrupt_runs_the_ivt_handler() {
    let Some(hv) = kvm_or_skip("injected_interrupt_runs_the_ivt_handler") else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0xc7, 0x06, 0x80, 0x00, 0x00, 0x11, // mov word [0x80], 0x1100   (IVT[0x20].offset)
        0xc7, 0x06, 0x82, 0x00, 0x00, 0x00, // mov word [0x82], 0         (IVT[0x20].segment)
        0xc7, 0x06, 0x08, 0x00, 0x10, 0x11, // mov word [0x08], 0x1110   (IVT[2] NMI)
        0xc7, 0x06, 0x0a, 0x00, 0x00, 0x00, // mov word [0x0a], 0
        0xfb,                               // sti
        0xf4,                               // hlt    <- interrupt arrives here
        0xf4,                               // hlt    <- NMI arrives here
        0xf4,                               // hlt
    ];
    let mut g = real_mode_guest(&hv, &code);
    // Handlers: vector 0x20 sets BL, the NMI handler sets CL.
    g.mem.write(0x1100, &[0xb3, 0x42, 0xcf]).unwrap(); // mov bl, 0x42; iret
    g.mem.write(0x1110, &[0xb1, 0x24, 0xcf]).unwrap(); // mov cl, 0x24; iret
    assert!(!g.vcpu.interrupt_ready(), "not ready before the guest ran");

    expect_hlt(&mut g.vcpu);
    if !g.vcpu.interrupt_ready() {
        g.vcpu.request_interrupt_window(true);
        assert_eq!(g.vcpu.run().unwrap(), VmExit::InterruptWindow);
        g.vcpu.request_interrupt_window(false);
    }
    assert!(g.vcpu.interrupt_ready());
    let s = g.vcpu.state(StateMask::RFLAGS | StateMask::RIP).unwrap();
    assert_ne!(s.rflags & 0x200, 0, "IF set");
    g.vcpu.inject_interrupt(0x20).unwrap();
    assert!(!g.vcpu.interrupt_ready(), "one injection per entry");
    expect_hlt(&mut g.vcpu);
    let s = g.vcpu.state(StateMask::GPRS | StateMask::RIP).unwrap();
    assert_eq!(s.gpr[reg::RBX] & 0xff, 0x42, "interrupt handler ran");
    assert_eq!(s.rip, CODE + 27, "returned to and executed the second hlt");

    g.vcpu.inject_nmi().unwrap();
    expect_hlt(&mut g.vcpu);
    let s = g.vcpu.state(StateMask::GPRS | StateMask::RIP).unwrap();
    assert_eq!(s.gpr[reg::RCX] & 0xff, 0x24, "NMI handler ran");
    assert_eq!(s.rip, CODE + 28);
}

#[test]
fn interrupt_window_exit_after_sti() {
    let Some(hv) = kvm_or_skip("interrupt_window_exit_after_sti") else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0xfa,                   // cli
        0xba, 0xe0, 0x05,       // mov dx, 0x5e0
        0xee,                   // out dx, al       (exit with IF clear)
        0xfb,                   // sti
        0x90,                   // nop              (window opens after the STI shadow)
        0xeb, 0xfe,             // jmp $
    ];
    let mut g = real_mode_guest(&hv, &code);
    assert!(matches!(g.vcpu.run().unwrap(), VmExit::Io { .. }));
    assert!(!g.vcpu.interrupt_ready(), "IF clear");
    g.vcpu.request_interrupt_window(true);
    let done = watchdog(Duration::from_secs(30), "interrupt window exit");
    assert_eq!(g.vcpu.run().unwrap(), VmExit::InterruptWindow);
    done.store(true, Ordering::SeqCst);
    assert!(g.vcpu.interrupt_ready());
    let rip = g.vcpu.state(StateMask::RIP).unwrap().rip;
    assert!(rip >= CODE + 6, "window opened after sti (rip {rip:#x})");
}

#[test]
fn state_round_trip_through_the_guest() {
    let Some(hv) = kvm_or_skip("state_round_trip_through_the_guest") else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0x48, 0x89, 0xd8,                   // mov rax, rbx
        0x4c, 0x89, 0xf9,                   // mov rcx, r15
        0xd9, 0x3c, 0x25, 0x00, 0x30, 0x00, 0x00, // fnstcw [0x3000]
        0x0f, 0x20, 0xd7,                   // mov rdi, cr2
        0xf4,                               // hlt
        0xb9, 0x82, 0x00, 0x00, 0xc0,       // mov ecx, 0xc0000082 (LSTAR)
        0x0f, 0x32,                         // rdmsr
        0x0f, 0x21, 0xc3,                   // mov rbx, dr0
        0xf4,                               // hlt
    ];
    let mut g = long_mode_guest(&hv, &code);
    let s = g.vcpu.state(StateMask::ALL).unwrap();
    s.gpr[reg::RBX] = 0x0123_4567_89ab_cdef;
    s.gpr[15] = 0xfeed_face_cafe_beef;
    s.cr2 = 0xdead_b000;
    s.cr8 = 0x5;
    s.fpu.fxsave[160..168].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    s.fpu.fxsave[0..2].copy_from_slice(&0x027fu16.to_le_bytes()); // FCW
    s.msrs.lstar = 0xffff_8000_1234_5000;
    s.msrs.kernel_gs_base = 0xffff_8880_0000_0000;
    s.msrs.sysenter_eip = 0x1234_5678;
    s.dr[0] = 0x4000;
    s.fs.base = 0x7fff_0000_1000;
    s.gs.base = 0xffff_8880_0001_0000;
    s.idtr = sup::DescTable {
        base: 0x9000,
        limit: 0xfff,
    };
    let expected = *s;
    g.vcpu.mark_dirty(StateMask::ALL - StateMask::TSC);
    expect_hlt(&mut g.vcpu);

    // The guest saw the values.
    let s = g.vcpu.state(StateMask::ALL).unwrap();
    assert_eq!(
        s.gpr[reg::RAX],
        0x0123_4567_89ab_cdef,
        "rbx reached the guest"
    );
    assert_eq!(
        s.gpr[reg::RCX],
        0xfeed_face_cafe_beef,
        "r15 reached the guest"
    );
    assert_eq!(s.gpr[reg::RDI], 0xdead_b000, "cr2 reached the guest");
    // And everything reads back as set.
    assert_eq!(s.rip, CODE + 17);
    for (name, a, b) in [
        ("cs", s.cs, expected.cs),
        ("ds", s.ds, expected.ds),
        ("es", s.es, expected.es),
        ("ss", s.ss, expected.ss),
        ("fs", s.fs, expected.fs),
        ("gs", s.gs, expected.gs),
        ("tr", s.tr, expected.tr),
        ("ldtr", s.ldtr, expected.ldtr),
    ] {
        // KVM may report attributes of an unusable segment differently; the unusable bit
        // itself must survive.
        if b.attr & Segment::UNUSABLE != 0 {
            assert_ne!(a.attr & Segment::UNUSABLE, 0, "{name} unusable");
        } else {
            assert_eq!(a, b, "{name}");
        }
    }
    assert_eq!(s.gdtr, expected.gdtr);
    assert_eq!(s.idtr, expected.idtr);
    assert_eq!(
        (s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer),
        (
            expected.cr0,
            expected.cr2,
            expected.cr3,
            expected.cr4,
            expected.cr8,
            expected.efer
        )
    );
    assert_eq!(s.msrs.lstar, expected.msrs.lstar);
    assert_eq!(s.msrs.kernel_gs_base, expected.msrs.kernel_gs_base);
    assert_eq!(s.msrs.sysenter_eip, expected.msrs.sysenter_eip);
    assert_eq!(s.dr[0], 0x4000);
    if is_kvm_pvm() {
        // kvm-pvm loses the XMM registers KVM_SET_FPU loaded when the host preempts the
        // vCPU thread before the guest runs (about one run in three on a busy host, never
        // on an idle one): a host bug, so XMM0 is checked only on real KVM.
        if s.fpu.fxsave[160..168] != expected.fpu.fxsave[160..168] {
            eprintln!("NOTE: kvm-pvm lost XMM0 across the run (host bug); not checked here");
        }
    } else {
        assert_eq!(&s.fpu.fxsave[160..168], &expected.fpu.fxsave[160..168]);
    }
    assert_eq!(&s.fpu.fxsave[0..2], &[0x7f, 0x02]);
    assert_eq!(s.apic_base, expected.apic_base);
    // x87 state reached the guest: it stored the FCW we set. kvm-pvm does not run the guest
    // on the FPU state KVM_SET_FPU loads (the guest stores the default 0x037f although
    // KVM_GET_FPU returns what was set), and it hands SSE moves between XMM and general
    // registers to KVM's emulator, which fails; there only the KVM side is checked.
    if is_kvm_pvm() {
        eprintln!("note: kvm-pvm: guest-visible FPU state not checked");
    } else {
        assert_eq!(rd::<2>(&g.mem, 0x3000), 0x027f, "FCW reached the guest");
    }

    // Transfer-mask exactness: change RIP and RBX in the cache but mark only GPRS dirty:
    // RBX reaches the guest, the RIP change is not written back.
    s.gpr[reg::RBX] = 0x55;
    s.rip = 0x9999;
    g.vcpu.mark_dirty(StateMask::GPRS);
    expect_hlt(&mut g.vcpu);
    let s = g.vcpu.state(StateMask::GPRS | StateMask::RIP).unwrap();
    assert_eq!(s.rip, CODE + 28, "rip not marked dirty, so not written");
    let lstar = (s.gpr[reg::RDX] << 32) | (s.gpr[reg::RAX] & 0xffff_ffff);
    assert_eq!(lstar, 0xffff_8000_1234_5000, "rdmsr LSTAR in the guest");
    assert_eq!(s.gpr[reg::RBX], 0x4000, "dr0 in the guest");
}

#[test]
fn tsc_round_trip() {
    let Some(hv) = kvm_or_skip("tsc_round_trip") else {
        return;
    };
    let mut g = real_mode_guest(&hv, &[0xf4, 0xf4]);
    let s = g.vcpu.state(StateMask::TSC).unwrap();
    s.tsc = 1 << 40;
    g.vcpu.mark_dirty(StateMask::TSC);
    expect_hlt(&mut g.vcpu);
    let tsc = g.vcpu.state(StateMask::TSC).unwrap().tsc;
    if is_kvm_pvm() {
        // kvm-pvm runs the guest on the host TSC and ignores TSC writes; check only that the
        // TSC part is read through KVM and moves forward.
        eprintln!("note: kvm-pvm ignores TSC writes; checking reads only");
        expect_hlt(&mut g.vcpu);
        let later = g.vcpu.state(StateMask::TSC).unwrap().tsc;
        assert!(later > tsc, "tsc advances ({tsc:#x} -> {later:#x})");
        return;
    }
    assert!(
        (1u64 << 40..(1u64 << 40) + (1u64 << 36)).contains(&tsc),
        "tsc {tsc:#x} continues from the value set"
    );
}

#[test]
fn supported_cpuid_is_installable() {
    let Some(hv) = kvm_or_skip("supported_cpuid_is_installable") else {
        return;
    };
    let cpuid = hv.supported_cpuid().unwrap();
    let leaf0 = sup::cpuid::lookup(&cpuid, 0, 0);
    assert!(leaf0[0] >= 1, "max basic leaf");
    // CPUID as the guest sees it: execute CPUID leaf 0 and compare the vendor.
    #[rustfmt::skip]
    let code = [
        0x66, 0x31, 0xc0, // xor eax, eax
        0x0f, 0xa2,       // cpuid
        0xf4,             // hlt
    ];
    let mut g = real_mode_guest(&hv, &code);
    g.vcpu.set_cpuid(&cpuid).unwrap();
    expect_hlt(&mut g.vcpu);
    let s = g.vcpu.state(StateMask::GPRS).unwrap();
    assert_eq!(s.gpr[reg::RBX] as u32, leaf0[1]);
    assert_eq!(s.gpr[reg::RDX] as u32, leaf0[3]);
    assert_eq!(s.gpr[reg::RCX] as u32, leaf0[2]);
}

#[test]
fn missing_device_is_unavailable() {
    match KvmHypervisor::open(std::path::Path::new("/dev/novabox-no-such-kvm")) {
        Err(sup::SupError::Unavailable(msg)) => assert!(msg.contains("does not exist"), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Video memory (pgm MMIO2) is an ordinary writable slot with KVM's dirty log: the guest's
/// stores land without exits, and the device's `take_dirty` gets exactly the pages written
/// since its last call; moving the BAR makes every page dirty once.
#[test]
fn mmio2_writes_land_without_exits_and_come_back_as_dirty_pages() {
    let Some(hv) = kvm_or_skip("mmio2_writes_land_without_exits_and_come_back_as_dirty_pages")
    else {
        return;
    };
    #[rustfmt::skip]
    let code = [
        0xba, 0x00, 0x00, 0x00, 0xd0,                   // mov edx, 0xd0000000
        0xc7, 0x82, 0x00, 0x30, 0x00, 0x00,             // mov dword [rdx+0x3000], 0x11223344
        0x44, 0x33, 0x22, 0x11,
        0xf4,                                           // hlt
        0xc7, 0x82, 0x08, 0x50, 0x00, 0x00,             // mov dword [rdx+0x5008], 0x55667788
        0x88, 0x77, 0x66, 0x55,
        0xc7, 0x82, 0x00, 0xf0, 0x00, 0x00,             // mov dword [rdx+0xf000], 0x99
        0x99, 0x00, 0x00, 0x00,
        0xf4,                                           // hlt
    ];
    let mut g = long_mode_guest(&hv, &code);
    let vram = g.mem.register_mmio2("vram", 0x1_0000).unwrap();
    vram.map(Some(MMIO_ADDR)).unwrap();
    g.vm.memory_changed().unwrap();
    let pages = |d: Vec<u64>| -> Vec<u64> {
        (0..d.len() as u64 * 64)
            .filter(|&p| d[(p / 64) as usize] & (1 << (p % 64)) != 0)
            .collect()
    };
    assert_eq!(pages(vram.take_dirty()).len(), 16, "all dirty once mapped");
    assert!(pages(vram.take_dirty()).is_empty());
    expect_hlt(&mut g.vcpu);
    assert_eq!(
        pages(vram.take_dirty()),
        vec![3],
        "the page the guest wrote"
    );
    let mut b = [0u8; 4];
    vram.read(0x3000, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x1122_3344);
    expect_hlt(&mut g.vcpu);
    assert_eq!(pages(vram.take_dirty()), vec![5, 15]);
    vram.read(0x5008, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x5566_7788);
    assert!(pages(vram.take_dirty()).is_empty(), "the log re-arms");
    // Moving the BAR: a new slot, every page dirty once.
    vram.map(Some(MMIO_ADDR + 0x10_0000)).unwrap();
    g.vm.memory_changed().unwrap();
    assert_eq!(pages(vram.take_dirty()).len(), 16);
}
