//! Opening `/dev/kvm` and checking that it can run a novabox VM.

use super::cpuid::{entries_from_kvm, MAX_CPUID_ENTRIES};
use super::vm::KvmVm;
use crate::{CpuidEntry, Hypervisor, Result, SupError, Vm};
use kvm_bindings::KVM_SYNC_X86_VALID_FIELDS;
use kvm_ioctls::{Cap, Kvm};
use std::path::Path;
use std::sync::Arc;

/// The KVM API version every KVM since Linux 2.6.22 reports.
const KVM_API_VERSION: i32 = 12;

/// The MSRs [`crate::state::Msrs`] holds plus the TSC, by index.
pub(crate) mod msr {
    pub const TSC: u32 = 0x10;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const PAT: u32 = 0x277;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const FMASK: u32 = 0xc000_0084;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
    /// The ones in `Msrs`, in a fixed order.
    pub const STATE_MSRS: [u32; 11] = [
        SYSENTER_CS,
        SYSENTER_ESP,
        SYSENTER_EIP,
        STAR,
        LSTAR,
        CSTAR,
        FMASK,
        KERNEL_GS_BASE,
        PAT,
        TSC_AUX,
        MISC_ENABLE,
    ];
}

/// What a VM needs to know about the host KVM.
#[derive(Debug, Clone)]
pub(crate) struct HostCaps {
    /// The state MSRs KVM can save and restore (a subset of `msr::STATE_MSRS`, same order).
    pub msrs: Arc<[u32]>,
    /// KVM_CAP_SET_IDENTITY_MAP_ADDR.
    pub identity_map: bool,
    /// KVM_CAP_SET_TSS_ADDR.
    pub tss_addr: bool,
    /// Number of memory slots per VM.
    pub max_slots: usize,
    /// Size of the vCPU `kvm_run` mapping.
    pub run_size: usize,
}

/// The KVM hypervisor backend (`/dev/kvm`).
pub struct KvmHypervisor {
    kvm: Kvm,
    caps: HostCaps,
}

impl std::fmt::Debug for KvmHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmHypervisor")
            .field("caps", &self.caps)
            .finish()
    }
}

impl KvmHypervisor {
    /// The device node.
    pub const DEVICE: &'static str = "/dev/kvm";

    /// Open `/dev/kvm` and check the API version and the capabilities the backend needs.
    pub fn new() -> Result<Self> {
        Self::open(Path::new(Self::DEVICE))
    }

    /// True when `/dev/kvm` exists and can be opened read-write by this process.
    pub fn available() -> bool {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(Self::DEVICE)
            .is_ok()
    }

    /// Open the KVM device at `path` (normally [`Self::DEVICE`]) and check it.
    pub fn open(path: &Path) -> Result<Self> {
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            SupError::Unavailable(format!("{}: path contains a NUL byte", path.display()))
        })?;
        let kvm = Kvm::new_with_path(&cpath).map_err(|e| {
            let io = std::io::Error::from_raw_os_error(e.errno());
            let why = match e.errno() {
                libc::ENOENT => "does not exist (no KVM module loaded?)".to_string(),
                libc::EACCES | libc::EPERM => {
                    "permission denied (add the user to the kvm group)".to_string()
                }
                _ => format!("cannot be opened: {io}"),
            };
            SupError::Unavailable(format!("{} {why}", path.display()))
        })?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(SupError::Unavailable(format!(
                "{}: KVM API version {version}, expected {KVM_API_VERSION}",
                path.display()
            )));
        }
        let mut missing = Vec::new();
        let sync = kvm.check_extension_int(Cap::SyncRegs);
        let need_sync = KVM_SYNC_X86_VALID_FIELDS as i32;
        if sync & need_sync != need_sync {
            missing.push(format!(
                "KVM_CAP_SYNC_REGS with REGS|SREGS|EVENTS (host offers {sync:#x})"
            ));
        }
        for (cap, name) in [
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::ReadonlyMem, "KVM_CAP_READONLY_MEM"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
            (Cap::VcpuEvents, "KVM_CAP_VCPU_EVENTS"),
            (Cap::Debugregs, "KVM_CAP_DEBUGREGS"),
        ] {
            if !kvm.check_extension(cap) {
                missing.push(name.to_string());
            }
        }
        if !missing.is_empty() {
            return Err(SupError::Unavailable(format!(
                "{}: KVM lacks {}",
                path.display(),
                missing.join(", ")
            )));
        }
        let listed = kvm.get_msr_index_list().map_err(|e| SupError::Os {
            op: "KVM_GET_MSR_INDEX_LIST",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let listed = listed.as_slice();
        let msrs: Arc<[u32]> = msr::STATE_MSRS
            .iter()
            .copied()
            .filter(|m| listed.contains(m))
            .collect();
        let run_size = kvm.get_vcpu_mmap_size().map_err(|e| SupError::Os {
            op: "KVM_GET_VCPU_MMAP_SIZE",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let caps = HostCaps {
            msrs,
            identity_map: kvm.check_extension(Cap::SetIdentityMapAddr),
            tss_addr: kvm.check_extension(Cap::SetTssAddr),
            max_slots: kvm.get_nr_memslots(),
            run_size,
        };
        super::recall::install_handler()?;
        Ok(KvmHypervisor { kvm, caps })
    }

    /// KVM_GET_SUPPORTED_CPUID: every CPUID leaf KVM can virtualise on this host, with the
    /// bits it supports. hm filters this into the guest's CPUID policy.
    pub fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(MAX_CPUID_ENTRIES)
            .map_err(|e| SupError::Os {
                op: "KVM_GET_SUPPORTED_CPUID",
                source: std::io::Error::from_raw_os_error(e.errno()),
            })?;
        Ok(entries_from_kvm(cpuid.as_slice()))
    }

    /// The state MSRs (of [`crate::state::Msrs`]) this host's KVM saves and restores; the
    /// others keep their value in [`crate::VcpuState`] and are not transferred.
    pub fn state_msrs(&self) -> &[u32] {
        &self.caps.msrs
    }

    /// Create a VM over `memory`, typed (the trait's [`Hypervisor::create_vm`] returns it as
    /// `dyn Vm`).
    pub fn create_kvm_vm(&self, memory: Arc<pgm::GuestMemory>) -> Result<Arc<KvmVm>> {
        let fd = self.kvm.create_vm().map_err(|e| SupError::Os {
            op: "KVM_CREATE_VM",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let vm = Arc::new(KvmVm::new(fd, memory.clone(), self.caps.clone())?);
        // Guest writes to MMIO2 (video memory) land without exits: the device takes the
        // pages they dirtied from KVM's log. Weak, so the memory does not keep the VM alive.
        let weak = Arc::downgrade(&vm);
        memory.set_dirty_log_source(Some(Arc::new(move |gpa, size| {
            weak.upgrade()?.dirty_log(gpa, size)
        })));
        Ok(vm)
    }
}

impl Hypervisor for KvmHypervisor {
    fn create_vm(&self, memory: Arc<pgm::GuestMemory>) -> Result<Arc<dyn Vm>> {
        Ok(self.create_kvm_vm(memory)?)
    }

    fn name(&self) -> &'static str {
        "kvm"
    }
}
