//! The floor of VM-exit cost: the smallest exit loop that can be written on kvm-ioctls, with
//! no state cache, no bus and no sync registers. `cargo xtask bench-exits` compares the real
//! exit path against it.

use crate::{Result, SupError};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};
use std::time::{Duration, Instant};

/// What one run of the floor loop saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorRun {
    /// `out` exits handled.
    pub pio_exits: u64,
    /// Time from the first `KVM_RUN` to the `hlt` exit.
    pub elapsed: Duration,
}

fn os(op: &'static str, e: kvm_ioctls::Error) -> SupError {
    SupError::Os {
        op,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// Run the guest in `memory` from the x86 reset vector on a bare KVM vCPU until it executes
/// `hlt`, counting port-output exits (each is completed by doing nothing). Slots are
/// installed read-write regardless of pgm's read-only flag: the floor guest does not write
/// to ROM. Any other exit is an error.
pub fn run_pio_loop(memory: &pgm::GuestMemory) -> Result<FloorRun> {
    let kvm = Kvm::new().map_err(|e| SupError::Unavailable(format!("/dev/kvm: {e}")))?;
    let vm = kvm.create_vm().map_err(|e| os("KVM_CREATE_VM", e))?;
    let _ = vm.set_tss_address(super::TSS_ADDR as usize);
    for (slot, m) in memory.mappings().iter().enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: m.gpa,
            memory_size: m.size,
            userspace_addr: m.host_addr as u64,
        };
        // SAFETY: the range is pgm's backing, which outlives `vm` (a local of this function
        // that is dropped, closing the VM, before `memory` can go away).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| os("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    let mut vcpu = vm.create_vcpu(0).map_err(|e| os("KVM_CREATE_VCPU", e))?;
    // A guest that enables long mode needs CPUID to offer it; install what KVM supports.
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| os("KVM_GET_SUPPORTED_CPUID", e))?;
    vcpu.set_cpuid2(&cpuid)
        .map_err(|e| os("KVM_SET_CPUID2", e))?;
    let mut pio_exits = 0u64;
    let start = Instant::now();
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(..)) => pio_exits += 1,
            Ok(VcpuExit::Hlt) => break,
            Ok(other) => {
                return Err(SupError::Guest(format!(
                    "floor guest: unexpected exit {other:?}"
                )))
            }
            Err(e) if e.errno() == libc::EINTR => continue,
            Err(e) => return Err(os("KVM_RUN", e)),
        }
    }
    Ok(FloorRun {
        pio_exits,
        elapsed: start.elapsed(),
    })
}
