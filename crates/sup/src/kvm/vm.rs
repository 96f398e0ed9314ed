//! A KVM VM: guest memory slots and vCPU creation.

use super::system::HostCaps;
use super::vcpu::KvmVcpu;
use crate::{Result, SupError, Vcpu, Vm};
use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use pgm::HostMapping;
use std::sync::{Arc, Mutex};

/// Guest-physical page KVM uses for the EPT identity map on Intel hosts without
/// "unrestricted guest" (one page). Like TSS_ADDR it sits in the PCI hole, just below the
/// 16 MiB that firmware ROMs may occupy under 4 GiB and above the IOAPIC/HPET/LAPIC pages
/// (0xFEC0_0000..0xFEF0_0000), where pgm maps nothing.
pub const IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
/// Guest-physical address of the three pages KVM needs for real-mode emulation on Intel
/// (KVM_SET_TSS_ADDR).
pub const TSS_ADDR: u64 = 0xfeff_d000;
/// End of the range KVM reserves for itself.
const RESERVED_END: u64 = TSS_ADDR + 3 * 4096;

/// A VM on KVM.
pub struct KvmVm {
    // Field order matters: the VM fd is closed before the memory it maps is released.
    fd: VmFd,
    caps: HostCaps,
    /// Installed slots, indexed by slot number, and whether KVM logs the slot's writes
    /// (a `dirty_log` mapping KVM refused to log is installed read-only: writes trap).
    slots: Mutex<Vec<Option<(HostMapping, bool)>>>,
    memory: Arc<pgm::GuestMemory>,
}

impl std::fmt::Debug for KvmVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmVm")
            .field(
                "slots",
                &*self.slots.lock().unwrap_or_else(|e| e.into_inner()),
            )
            .finish()
    }
}

fn os(op: &'static str, e: kvm_ioctls::Error) -> SupError {
    SupError::Os {
        op,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

impl KvmVm {
    pub(crate) fn new(fd: VmFd, memory: Arc<pgm::GuestMemory>, caps: HostCaps) -> Result<Self> {
        // No in-kernel irqchip and no in-kernel PIT: the VMM models PIC, IOAPIC, LAPIC and
        // PIT itself and injects with KVM_INTERRUPT.
        if caps.identity_map {
            fd.set_identity_map_address(IDENTITY_MAP_ADDR)
                .map_err(|e| os("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        }
        if caps.tss_addr {
            fd.set_tss_address(TSS_ADDR as usize)
                .map_err(|e| os("KVM_SET_TSS_ADDR", e))?;
        }
        let vm = KvmVm {
            fd,
            caps,
            slots: Mutex::new(Vec::new()),
            memory,
        };
        vm.sync_slots()?;
        Ok(vm)
    }

    /// The guest memory this VM maps.
    pub fn memory(&self) -> &Arc<pgm::GuestMemory> {
        &self.memory
    }

    /// The memory slots currently installed, by slot number.
    pub fn slots(&self) -> Vec<(u32, HostMapping)> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.map(|(m, _)| (i as u32, m)))
            .collect()
    }

    /// The pages the guest wrote since the last call in the logged slot at `gpa` of
    /// `size` bytes (KVM_GET_DIRTY_LOG, which also re-arms the log); None when no such slot
    /// is logged.
    pub fn dirty_log(&self, gpa: u64, size: u64) -> Option<Vec<u64>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.iter().position(|s| {
            s.as_ref()
                .is_some_and(|(m, logged)| *logged && m.gpa == gpa && m.size == size)
        })?;
        match self.fd.get_dirty_log(slot as u32, size as usize) {
            Ok(bits) => Some(bits),
            Err(e) => {
                tracing::warn!("KVM_GET_DIRTY_LOG slot {slot}: {e}; redrawing all");
                Some(vec![u64::MAX; size.div_ceil(4096 * 64) as usize])
            }
        }
    }

    /// Create vCPU `id`, typed (the trait's [`Vm::create_vcpu`] boxes it).
    pub fn create_kvm_vcpu(&self, id: u32) -> Result<KvmVcpu> {
        let fd = self
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| os("KVM_CREATE_VCPU", e))?;
        KvmVcpu::new(fd, id, &self.caps, self.memory.clone())
    }

    /// Install `m` in `slot` (size 0 deletes it); true when KVM logs its writes.
    fn set_slot(&self, slot: u32, m: &HostMapping, size: u64) -> Result<bool> {
        if m.dirty_log && !m.readonly && size > 0 {
            match self.set_slot_flags(slot, m, size, KVM_MEM_LOG_DIRTY_PAGES) {
                Ok(()) => return Ok(true),
                Err(e) => tracing::warn!("{e}: guest writes to {:#x} will trap instead", m.gpa),
            }
            self.set_slot_flags(slot, m, size, KVM_MEM_READONLY)?;
            return Ok(false);
        }
        let flags = if m.readonly { KVM_MEM_READONLY } else { 0 };
        self.set_slot_flags(slot, m, size, flags)?;
        Ok(false)
    }

    fn set_slot_flags(&self, slot: u32, m: &HostMapping, size: u64, flags: u32) -> Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: m.gpa,
            memory_size: size,
            userspace_addr: m.host_addr as u64,
        };
        // SAFETY: `host_addr..host_addr+size` lies in pgm's backing mapping, which stays
        // mapped and in place for as long as the `GuestMemory` lives. Every holder of this VM's
        // kernel object (this struct and each KvmVcpu) keeps an Arc of that memory and closes
        // its fd before dropping it, so the kernel never uses the range after it is unmapped.
        // A size of 0 deletes the slot.
        unsafe { self.fd.set_user_memory_region(region) }
            .map_err(|e| os("KVM_SET_USER_MEMORY_REGION", e))
    }

    /// Make the installed slots equal to pgm's current mappings: delete the slots that no
    /// longer match, then add the new ranges (KVM refuses overlapping slots, so deletions go
    /// first). A vCPU running meanwhile may see an MMIO exit for a range that is briefly
    /// absent; hm completes such an access through pgm.
    fn sync_slots(&self) -> Result<()> {
        let wanted = self.memory.mappings();
        for m in &wanted {
            let end = m.gpa.saturating_add(m.size);
            if m.gpa < RESERVED_END && IDENTITY_MAP_ADDR < end {
                return Err(SupError::Guest(format!(
                    "guest memory {:#x}+{:#x} overlaps the pages KVM reserves at \
                     {IDENTITY_MAP_ADDR:#x}..{RESERVED_END:#x}",
                    m.gpa, m.size
                )));
            }
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in slots.iter_mut().enumerate() {
            if let Some((m, _)) = s {
                if !wanted.contains(m) {
                    self.set_slot(i as u32, m, 0)?;
                    *s = None;
                }
            }
        }
        for m in &wanted {
            if slots
                .iter()
                .any(|s| s.as_ref().is_some_and(|(x, _)| x == m))
            {
                continue;
            }
            let i = match slots.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    slots.push(None);
                    slots.len() - 1
                }
            };
            if i >= self.caps.max_slots {
                return Err(SupError::Guest(format!(
                    "guest memory needs more than the {} KVM memory slots",
                    self.caps.max_slots
                )));
            }
            let logged = self.set_slot(i as u32, m, m.size)?;
            slots[i] = Some((*m, logged));
        }
        Ok(())
    }
}

impl Vm for KvmVm {
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        Ok(Box::new(self.create_kvm_vcpu(id)?))
    }

    fn memory_changed(&self) -> Result<()> {
        self.sync_slots()
    }
}
