//! vCPU state is engine-neutral: a guest started on KVM and moved to the interpreter halfway
//! (between two exits) ends in the same state, with the same port output, as a guest run on
//! one engine from start to end.

use std::sync::Arc;
use sup::{IoDirection, StateMask, Vcpu, VcpuState, VmExit};

/// A real-mode loop at 0x1000: bx = sum of 100..1, `out 0xf0, ax` with the running sum
/// each round, then hlt.
const GUEST: &[u8] = &[
    0xb9, 0x64, 0x00, // mov cx, 100
    0x31, 0xdb, // xor bx, bx
    0x01, 0xcb, // loop: add bx, cx
    0x89, 0xd8, // mov ax, bx
    0xe7, 0xf0, // out 0xf0, ax
    0x49, // dec cx
    0x75, 0xf7, // jnz loop
    0xf4, // hlt
];
const LOAD: u64 = 0x1000;

fn memory() -> Arc<pgm::GuestMemory> {
    let m = pgm::GuestMemory::new(pgm::MemoryLayout::pc(2 << 20).unwrap()).unwrap();
    m.write(LOAD, GUEST).unwrap();
    Arc::new(m)
}

fn start_state() -> VcpuState {
    let mut s = VcpuState::reset();
    s.cs = sup::Segment::real_mode(0, 0xb);
    s.rip = LOAD;
    s
}

/// Run until HLT, collecting port 0xf0 output; with `switch_after`, return early after that
/// many outputs so the caller can move the vCPU.
fn run(v: &mut dyn Vcpu, out: &mut Vec<u16>, switch_after: Option<usize>) -> bool {
    loop {
        match v.run().unwrap() {
            VmExit::Io {
                port: 0xf0,
                size: 2,
                dir: IoDirection::Out,
                ..
            } => {
                let d = v.io_data();
                out.push(u16::from_le_bytes([d[0], d[1]]));
                if Some(out.len()) == switch_after {
                    return false;
                }
            }
            VmExit::Hlt => return true,
            VmExit::Recalled | VmExit::InterruptWindow => {}
            other => panic!("unexpected exit {other:?}"),
        }
    }
}

fn expected_output() -> Vec<u16> {
    let mut sum = 0u16;
    (1..=100u16)
        .rev()
        .map(|c| {
            sum += c;
            sum
        })
        .collect()
}

#[test]
fn kvm_to_interpreter_halfway_gives_the_same_result() {
    let kvm = match sup::kvm::KvmHypervisor::new() {
        Ok(k) => k,
        Err(e) => {
            eprintln!(
                "SKIPPED (no /dev/kvm): kvm_to_interpreter_halfway_gives_the_same_result ({e})"
            );
            return;
        }
    };
    eprintln!("KVM-TEST-RAN kvm_to_interpreter_halfway_gives_the_same_result");

    // Reference: the interpreter alone.
    let mem_ref = memory();
    let mut alone = iem::IemVcpu::from_state(0, mem_ref.clone(), start_state());
    let mut out_ref = Vec::new();
    assert!(run(&mut alone, &mut out_ref, None));
    let end_ref = *alone.state(StateMask::ALL).unwrap();
    assert_eq!(out_ref, expected_output());

    // KVM for the first half, then the interpreter from KVM's state.
    let mem = memory();
    let vm = kvm.create_kvm_vm(mem.clone()).unwrap();
    let mut k = vm.create_kvm_vcpu(0).unwrap();
    *k.state(StateMask::ALL).unwrap() = start_state();
    k.mark_dirty(StateMask::ALL);
    let mut out = Vec::new();
    assert!(
        !run(&mut k, &mut out, Some(50)),
        "KVM ran to the end without a switch"
    );
    // The OUT is complete once its exit was reported; run() would resume after it. Take the
    // whole state now, as a saved state would.
    let mid = *k.state(StateMask::ALL).unwrap();
    drop(k);
    let mut i = iem::IemVcpu::from_state(0, mem.clone(), mid);
    assert!(run(&mut i, &mut out, None));
    let end = *i.state(StateMask::ALL).unwrap();

    assert_eq!(out, out_ref, "port output across the switch");
    for r in [0usize, 1, 3] {
        assert_eq!(end.gpr[r] & 0xffff, end_ref.gpr[r] & 0xffff, "register {r}");
    }
    assert_eq!(end.rip, end_ref.rip);
    assert_eq!(end.gpr[3] & 0xffff, 5050);
}
