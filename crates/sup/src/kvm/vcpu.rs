//! A KVM vCPU: the run loop, exit decoding and the transfer-mask state cache.
//!
//! State handling. `kvm_run`'s sync-regs area (KVM_CAP_SYNC_REGS) is a *mirror* of KVM's
//! `kvm_regs`, `kvm_sregs` and `kvm_vcpu_events`; groups flagged in `kvm_dirty_regs` are
//! loaded from it on the next entry without a system call. KVM copies the general registers
//! (REGS_PARTS) out on every return from `KVM_RUN`, so they are valid after an exit with a
//! memory copy. The segment/control registers and the events are not copied out on every
//! exit (measurably cheaper on the port-I/O path, which never needs them): the first handler
//! that asks for them after an exit gets them with one GET ioctl into the mirror, and
//! writing them back stays free. FPU, MSRs, debug registers and the TSC are fetched and
//! stored with ioctls only when a handler asks for them.

use super::conv::{self, REGS_PARTS, SREGS_PARTS};
use super::cpuid::entries_to_kvm;
use super::recall::{current_vcpu_thread, immediate_exit, KvmRecall, RecallShared};
use super::system::{msr, HostCaps};
use crate::exit::{IoDirection, VmExit};
use crate::state::{StateMask, VcpuState};
use crate::{CpuidEntry, Recall, Result, SupError, Vcpu};
use kvm_bindings::{
    kvm_msr_entry, kvm_run, kvm_sync_regs, CpuId, Msrs, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT,
    KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT,
    KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT,
    KVM_EXIT_UNKNOWN, KVM_SYNC_X86_EVENTS, KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS,
    KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::VcpuFd;
use std::os::fd::AsRawFd;
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `KVM_RUN` = `_IO(KVMIO, 0x80)`. Issued directly so that no Rust reference to the whole
/// `kvm_run` exists while a recalling thread writes `immediate_exit`.
const KVM_RUN: libc::c_ulong = 0xae80;

/// What the last exit left in `kvm_run` for the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExitData {
    None,
    /// Port I/O data at this offset of the `kvm_run` mapping, this many bytes.
    Io {
        offset: usize,
        len: usize,
    },
    /// MMIO data in `kvm_run.mmio.data`, this many bytes (1..=8).
    Mmio {
        len: usize,
    },
}

fn os(op: &'static str, e: kvm_ioctls::Error) -> SupError {
    SupError::Os {
        op,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// A vCPU on KVM.
pub struct KvmVcpu {
    // Field order matters: the vCPU fd (and its kvm_run mapping) goes before the memory.
    fd: VcpuFd,
    /// The `kvm_run` mapping owned by `fd`. Only ever accessed field by field (see KVM_RUN).
    run: *mut kvm_run,
    run_size: usize,
    id: u32,
    state: Box<VcpuState>,
    /// Parts of `state` that are current.
    valid: StateMask,
    /// Parts of `state` to write back before the next entry.
    dirty: StateMask,
    exit: ExitData,
    /// An interrupt or NMI was injected since the last exit.
    injected: bool,
    /// The sregs / events halves of the sync area hold KVM's current values. KVM copies
    /// only the general registers out on every exit (`kvm_valid_regs = REGS`: the port-I/O
    /// path needs nothing else, and copying sregs and events out costs a measurable part of
    /// an exit); the other two are fetched into the mirror with an ioctl when first needed.
    sregs_fresh: bool,
    events_fresh: bool,
    msrs: Arc<[u32]>,
    recall: Arc<RecallShared>,
    memory: Arc<pgm::GuestMemory>,
}

// SAFETY: `run` points into the mapping owned by `fd`, which moves with the struct; the
// vCPU is driven by one thread at a time (`&mut self`), and the only other access (a recall
// handle setting `immediate_exit`) is an atomic byte store guarded by `RecallShared`.
unsafe impl Send for KvmVcpu {}

impl std::fmt::Debug for KvmVcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmVcpu")
            .field("id", &self.id)
            .field("valid", &self.valid)
            .field("dirty", &self.dirty)
            .finish()
    }
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        // Recall handles may outlive us; they must stop touching kvm_run before it is unmapped.
        self.recall.detach();
    }
}

impl KvmVcpu {
    pub(crate) fn new(
        mut fd: VcpuFd,
        id: u32,
        caps: &HostCaps,
        memory: Arc<pgm::GuestMemory>,
    ) -> Result<Self> {
        let run: *mut kvm_run = fd.get_kvm_run();
        let recall = Arc::new(RecallShared::new(run));
        let mut v = KvmVcpu {
            fd,
            run,
            run_size: caps.run_size,
            id,
            state: Box::new(VcpuState::reset()),
            valid: StateMask::empty(),
            dirty: StateMask::empty(),
            exit: ExitData::None,
            injected: false,
            sregs_fresh: true,
            events_fresh: true,
            msrs: caps.msrs.clone(),
            recall,
            memory,
        };
        // Fill the mirror before the first KVM_RUN: the sync area holds garbage until then.
        let regs = v.fd.get_regs().map_err(|e| os("KVM_GET_REGS", e))?;
        let sregs = v.fd.get_sregs().map_err(|e| os("KVM_GET_SREGS", e))?;
        let events =
            v.fd.get_vcpu_events()
                .map_err(|e| os("KVM_GET_VCPU_EVENTS", e))?;
        {
            let m = v.mirror();
            m.regs = regs;
            m.sregs = sregs;
            m.events = events;
        }
        // SAFETY: `run` is the live mapping owned by `v.fd`; plain field write.
        unsafe {
            *addr_of_mut!((*v.run).kvm_valid_regs) = u64::from(KVM_SYNC_X86_REGS);
        }
        // Start from sup's engine-neutral power-on state, so every engine starts alike. The
        // TSC is left to KVM (it keeps the vCPUs' TSCs in step).
        let mut reset = VcpuState::reset();
        if id != 0 {
            reset.apic_base &= !(1 << 8); // only vCPU 0 is the bootstrap processor
        }
        *v.state = reset;
        v.valid = StateMask::ALL - StateMask::TSC;
        v.dirty = v.valid;
        Ok(v)
    }

    /// The guest memory this vCPU's VM maps.
    pub fn memory(&self) -> &Arc<pgm::GuestMemory> {
        &self.memory
    }

    /// The typed recall handle.
    pub fn kvm_recall(&self) -> KvmRecall {
        KvmRecall {
            shared: self.recall.clone(),
        }
    }

    /// Parts of the state currently valid without a system call (after an exit: the sync-regs
    /// parts, plus whatever was fetched since).
    pub fn valid_mask(&self) -> StateMask {
        self.valid | REGS_PARTS
    }

    /// Make the sregs half of the mirror current (one KVM_GET_SREGS after an exit).
    fn fresh_sregs(&mut self) -> Result<()> {
        if !self.sregs_fresh {
            let sregs = self.fd.get_sregs().map_err(|e| os("KVM_GET_SREGS", e))?;
            self.mirror().sregs = sregs;
            self.sregs_fresh = true;
        }
        Ok(())
    }

    /// Make the events half of the mirror current.
    fn fresh_events(&mut self) -> Result<()> {
        if !self.events_fresh {
            let ev = self
                .fd
                .get_vcpu_events()
                .map_err(|e| os("KVM_GET_VCPU_EVENTS", e))?;
            self.mirror().events = ev;
            self.events_fresh = true;
        }
        Ok(())
    }

    /// The mirror of KVM's regs/sregs/events in the sync-regs area.
    fn mirror(&mut self) -> &mut kvm_sync_regs {
        // SAFETY: `run` is the live mapping owned by `self.fd` and at least run_size bytes;
        // `s.regs` does not overlap `immediate_exit` (the only byte other threads touch), and
        // the kernel writes it only inside KVM_RUN, which needs `&mut self`.
        unsafe { &mut *addr_of_mut!((*self.run).s.regs) }
    }

    fn set_kvm_dirty(&mut self, bits: u32) {
        // SAFETY: field write into the live mapping; see `mirror`.
        unsafe { *addr_of_mut!((*self.run).kvm_dirty_regs) |= u64::from(bits) }
    }

    /// Write every dirty part back: the sync parts into the mirror (KVM loads them on entry),
    /// the rest with ioctls.
    fn flush(&mut self) -> Result<()> {
        let d = self.dirty;
        if d.is_empty() {
            return Ok(());
        }
        let state = *self.state;
        if d.intersects(REGS_PARTS) {
            conv::state_to_regs(&state, &mut self.mirror().regs, d & REGS_PARTS);
            self.set_kvm_dirty(KVM_SYNC_X86_REGS);
        }
        if d.intersects(SREGS_PARTS) {
            // Only part of sregs may be dirty: the rest of the mirror must be KVM's values.
            self.fresh_sregs()?;
            conv::state_to_sregs(&state, &mut self.mirror().sregs, d & SREGS_PARTS);
            self.set_kvm_dirty(KVM_SYNC_X86_SREGS);
            if d.contains(StateMask::CRS) {
                // Without an in-kernel LAPIC, KVM_RUN loads CR8 from kvm_run.cr8 on every
                // entry (after the sync registers), so the TPR must go there too.
                // SAFETY: field write into the live mapping; see `mirror`.
                unsafe { *addr_of_mut!((*self.run).cr8) = state.cr8 }
            }
        }
        if d.contains(StateMask::EVENTS) {
            self.fresh_events()?;
            conv::events_to_kvm(&state.events, &mut self.mirror().events);
            self.set_kvm_dirty(KVM_SYNC_X86_EVENTS);
        }
        if d.intersects(StateMask::MSRS | StateMask::TSC) {
            let entries = self.msr_entries(d, &state);
            let msrs = Msrs::from_entries(&entries).map_err(|_| SupError::Os {
                op: "KVM_SET_MSRS",
                source: std::io::Error::from_raw_os_error(libc::E2BIG),
            })?;
            let n = self.fd.set_msrs(&msrs).map_err(|e| os("KVM_SET_MSRS", e))?;
            if n != entries.len() {
                return Err(SupError::Guest(format!(
                    "KVM_SET_MSRS refused MSR {:#x}",
                    entries[n].index
                )));
            }
        }
        if d.contains(StateMask::FPU) {
            self.fd
                .set_fpu(&conv::fpu_to_kvm(&state.fpu))
                .map_err(|e| os("KVM_SET_FPU", e))?;
        }
        if d.contains(StateMask::DEBUG) {
            self.fd
                .set_debug_regs(&conv::debug_to_kvm(&state.dr))
                .map_err(|e| os("KVM_SET_DEBUGREGS", e))?;
        }
        self.dirty = StateMask::empty();
        Ok(())
    }

    /// MSR entries for the MSRS / TSC parts in `parts`, with values from `s`.
    fn msr_entries(&self, parts: StateMask, s: &VcpuState) -> Vec<kvm_msr_entry> {
        let mut v = Vec::with_capacity(self.msrs.len() + 1);
        if parts.contains(StateMask::MSRS) {
            for &index in self.msrs.iter() {
                v.push(kvm_msr_entry {
                    index,
                    data: msr_value(s, index),
                    ..Default::default()
                });
            }
        }
        if parts.contains(StateMask::TSC) {
            v.push(kvm_msr_entry {
                index: msr::TSC,
                data: s.tsc,
                ..Default::default()
            });
        }
        v
    }

    fn fetch(&mut self, missing: StateMask) -> Result<()> {
        if missing.intersects(SREGS_PARTS) {
            self.fresh_sregs()?;
        }
        if missing.contains(StateMask::EVENTS) {
            self.fresh_events()?;
        }
        let mirror = *self.mirror();
        if missing.intersects(REGS_PARTS) {
            conv::regs_to_state(&mirror.regs, &mut self.state, missing & REGS_PARTS);
        }
        if missing.intersects(SREGS_PARTS) {
            conv::sregs_to_state(&mirror.sregs, &mut self.state, missing & SREGS_PARTS);
        }
        if missing.contains(StateMask::EVENTS) {
            self.state.events = conv::events_from_kvm(&mirror.events);
        }
        if missing.intersects(StateMask::MSRS | StateMask::TSC) {
            let entries = self.msr_entries(missing, &self.state.clone());
            let mut msrs = Msrs::from_entries(&entries).map_err(|_| SupError::Os {
                op: "KVM_GET_MSRS",
                source: std::io::Error::from_raw_os_error(libc::E2BIG),
            })?;
            let n = self
                .fd
                .get_msrs(&mut msrs)
                .map_err(|e| os("KVM_GET_MSRS", e))?;
            if n != entries.len() {
                return Err(SupError::Guest(format!(
                    "KVM_GET_MSRS refused MSR {:#x}",
                    entries[n].index
                )));
            }
            for e in msrs.as_slice() {
                set_msr_value(&mut self.state, e.index, e.data);
            }
        }
        if missing.contains(StateMask::FPU) {
            let f = self.fd.get_fpu().map_err(|e| os("KVM_GET_FPU", e))?;
            conv::fpu_from_kvm(&f, &mut self.state.fpu);
        }
        if missing.contains(StateMask::DEBUG) {
            let d = self
                .fd
                .get_debug_regs()
                .map_err(|e| os("KVM_GET_DEBUGREGS", e))?;
            self.state.dr = conv::debug_from_kvm(&d);
        }
        Ok(())
    }

    /// Before an ioctl that changes KVM's event state (KVM_INTERRUPT, KVM_NMI): a dirty
    /// EVENTS part must reach KVM first, or writing it back on entry would undo the ioctl.
    fn flush_events_now(&mut self) -> Result<()> {
        if self.dirty.contains(StateMask::EVENTS) {
            self.fresh_events()?;
            let mut ev = self.mirror().events;
            conv::events_to_kvm(&self.state.events, &mut ev);
            self.fd
                .set_vcpu_events(&ev)
                .map_err(|e| os("KVM_SET_VCPU_EVENTS", e))?;
            self.mirror().events = ev;
            self.dirty -= StateMask::EVENTS;
        }
        Ok(())
    }

    /// Decode the exit KVM left in `kvm_run`.
    fn decode_exit(&mut self) -> VmExit {
        let run = self.run;
        // SAFETY: `run` is the live mapping (at least run_size bytes, which covers the
        // union); each union member read below is the one `exit_reason` says the kernel
        // filled, and all members are plain data (any bit pattern is valid).
        unsafe {
            let reason = *addr_of!((*run).exit_reason);
            match reason {
                KVM_EXIT_IO => {
                    let io = *addr_of!((*run).__bindgen_anon_1.io);
                    let len = usize::from(io.size) * io.count as usize;
                    let offset = io.data_offset as usize;
                    let fits = matches!(offset.checked_add(len), Some(end) if end <= self.run_size);
                    if offset < std::mem::size_of::<kvm_run>() || !fits {
                        return VmExit::Unhandled(format!(
                            "KVM_EXIT_IO with data at {offset:#x}+{len:#x} outside kvm_run"
                        ));
                    }
                    let dir = match u32::from(io.direction) {
                        KVM_EXIT_IO_IN => IoDirection::In,
                        KVM_EXIT_IO_OUT => IoDirection::Out,
                        d => return VmExit::Unhandled(format!("KVM_EXIT_IO direction {d}")),
                    };
                    self.exit = ExitData::Io { offset, len };
                    VmExit::Io {
                        port: io.port,
                        size: io.size,
                        count: io.count,
                        dir,
                    }
                }
                KVM_EXIT_MMIO => {
                    let m = *addr_of!((*run).__bindgen_anon_1.mmio);
                    if m.len == 0 || m.len > 8 {
                        return VmExit::Unhandled(format!("KVM_EXIT_MMIO with length {}", m.len));
                    }
                    self.exit = ExitData::Mmio {
                        len: m.len as usize,
                    };
                    VmExit::Mmio {
                        gpa: m.phys_addr,
                        len: m.len as u8,
                        write: m.is_write != 0,
                    }
                }
                KVM_EXIT_HLT => VmExit::Hlt,
                KVM_EXIT_IRQ_WINDOW_OPEN => VmExit::InterruptWindow,
                KVM_EXIT_SHUTDOWN => VmExit::Shutdown,
                KVM_EXIT_SYSTEM_EVENT => {
                    let ev = *addr_of!((*run).__bindgen_anon_1.system_event);
                    match ev.type_ {
                        KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
                        KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::Shutdown,
                        KVM_SYSTEM_EVENT_CRASH => {
                            VmExit::Unhandled("KVM_EXIT_SYSTEM_EVENT: guest crash".into())
                        }
                        t => VmExit::Unhandled(format!("KVM_EXIT_SYSTEM_EVENT type {t}")),
                    }
                }
                KVM_EXIT_FAIL_ENTRY => {
                    let f = *addr_of!((*run).__bindgen_anon_1.fail_entry);
                    VmExit::Unhandled(format!(
                        "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {:#x} on host cpu {}",
                        f.hardware_entry_failure_reason, f.cpu
                    ))
                }
                KVM_EXIT_INTERNAL_ERROR => {
                    let ie = *addr_of!((*run).__bindgen_anon_1.internal);
                    let n = (ie.ndata as usize).min(ie.data.len());
                    VmExit::Unhandled(format!(
                        "KVM_EXIT_INTERNAL_ERROR: suberror {} data {:x?}",
                        ie.suberror,
                        &ie.data[..n]
                    ))
                }
                KVM_EXIT_UNKNOWN => {
                    let hw = *addr_of!((*run).__bindgen_anon_1.hw);
                    VmExit::Unhandled(format!(
                        "KVM_EXIT_UNKNOWN: hardware exit reason {:#x}",
                        hw.hardware_exit_reason
                    ))
                }
                r => VmExit::Unhandled(format!("KVM exit reason {r}")),
            }
        }
    }
}

/// The value of state MSR `index` in `s`.
fn msr_value(s: &VcpuState, index: u32) -> u64 {
    let m = &s.msrs;
    match index {
        msr::SYSENTER_CS => m.sysenter_cs,
        msr::SYSENTER_ESP => m.sysenter_esp,
        msr::SYSENTER_EIP => m.sysenter_eip,
        msr::STAR => m.star,
        msr::LSTAR => m.lstar,
        msr::CSTAR => m.cstar,
        msr::FMASK => m.fmask,
        msr::KERNEL_GS_BASE => m.kernel_gs_base,
        msr::PAT => m.pat,
        msr::TSC_AUX => m.tsc_aux,
        msr::MISC_ENABLE => m.misc_enable,
        msr::TSC => s.tsc,
        _ => 0,
    }
}

fn set_msr_value(s: &mut VcpuState, index: u32, v: u64) {
    let m = &mut s.msrs;
    match index {
        msr::SYSENTER_CS => m.sysenter_cs = v,
        msr::SYSENTER_ESP => m.sysenter_esp = v,
        msr::SYSENTER_EIP => m.sysenter_eip = v,
        msr::STAR => m.star = v,
        msr::LSTAR => m.lstar = v,
        msr::CSTAR => m.cstar = v,
        msr::FMASK => m.fmask = v,
        msr::KERNEL_GS_BASE => m.kernel_gs_base = v,
        msr::PAT => m.pat = v,
        msr::TSC_AUX => m.tsc_aux = v,
        msr::MISC_ENABLE => m.misc_enable = v,
        msr::TSC => s.tsc = v,
        _ => {}
    }
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<VmExit> {
        self.flush()?;
        self.valid = StateMask::empty();
        self.sregs_fresh = false;
        self.events_fresh = false;
        self.exit = ExitData::None;
        self.injected = false;
        let tid = current_vcpu_thread();
        self.recall.tid.store(tid, Ordering::Relaxed);
        // SeqCst pairs with the recall side: it stores immediate_exit then loads in_run.
        self.recall.in_run.store(true, Ordering::SeqCst);
        // SAFETY: KVM_RUN on our own vCPU fd; the kernel reads and writes the kvm_run mapping
        // (owned by `self.fd`, alive) and no Rust reference into it is live across the call.
        // The argument must be 0 (KVM refuses anything else with EINVAL), so pass it
        // explicitly rather than leave a variadic slot to chance.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), KVM_RUN as _, 0usize) };
        let err = (ret < 0).then(std::io::Error::last_os_error);
        self.recall.in_run.store(false, Ordering::Release);
        match err {
            None => Ok(self.decode_exit()),
            Some(e) if e.raw_os_error() == Some(libc::EINTR) => {
                // Consume the recall. A recall arriving after this point is for the next run.
                // SAFETY: `run` is the live mapping owned by `self.fd`.
                unsafe { immediate_exit(self.run) }.store(0, Ordering::SeqCst);
                Ok(VmExit::Recalled)
            }
            Some(source) => Err(SupError::Os {
                op: "KVM_RUN",
                source,
            }),
        }
    }

    fn state(&mut self, need: StateMask) -> Result<&mut VcpuState> {
        let missing = need - self.valid;
        if !missing.is_empty() {
            self.fetch(missing)?;
            self.valid |= missing;
        }
        Ok(&mut self.state)
    }

    fn mark_dirty(&mut self, changed: StateMask) {
        // What the caller changed is by definition what the state now holds.
        self.dirty |= changed;
        self.valid |= changed;
    }

    fn io_data(&mut self) -> &mut [u8] {
        match self.exit {
            ExitData::Io { offset, len } => {
                // SAFETY: decode_exit checked offset+len against the mapping size and that the
                // buffer lies past the kvm_run header (so it does not hold immediate_exit);
                // the slice borrows `self` mutably, so no KVM_RUN can happen while it lives.
                unsafe { std::slice::from_raw_parts_mut((self.run as *mut u8).add(offset), len) }
            }
            _ => &mut [],
        }
    }

    fn mmio_data(&mut self) -> &mut [u8] {
        match self.exit {
            ExitData::Mmio { len } => {
                // SAFETY: the last exit was KVM_EXIT_MMIO so the mmio member is the live one;
                // len <= 8 was checked; the borrow of `self` keeps KVM_RUN away.
                unsafe {
                    let data: &mut [u8; 8] =
                        &mut *addr_of_mut!((*self.run).__bindgen_anon_1.mmio.data);
                    &mut data[..len]
                }
            }
            _ => &mut [],
        }
    }

    fn interrupt_ready(&mut self) -> bool {
        if self.injected {
            return false;
        }
        // SAFETY: plain byte reads from the live mapping.
        let (ready, if_flag) = unsafe {
            (
                *addr_of!((*self.run).ready_for_interrupt_injection),
                *addr_of!((*self.run).if_flag),
            )
        };
        ready != 0 && if_flag != 0
    }

    fn inject_interrupt(&mut self, vector: u8) -> Result<()> {
        self.flush_events_now()?;
        let irq = kvm_bindings::kvm_interrupt {
            irq: u32::from(vector),
        };
        // SAFETY: KVM_INTERRUPT = _IOW(KVMIO, 0x86, struct kvm_interrupt) on our vCPU fd with
        // a pointer to a live kvm_interrupt.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                kvm_interrupt_ioctl() as _,
                &irq as *const kvm_bindings::kvm_interrupt,
            )
        };
        if ret < 0 {
            return Err(SupError::Os {
                op: "KVM_INTERRUPT",
                source: std::io::Error::last_os_error(),
            });
        }
        // Keep the mirror equal to KVM's state, which now has the interrupt queued.
        let m = self.mirror();
        m.events.interrupt.injected = 1;
        m.events.interrupt.nr = vector;
        m.events.interrupt.soft = 0;
        m.sregs.interrupt_bitmap = [0; 4];
        m.sregs.interrupt_bitmap[usize::from(vector / 64)] = 1 << (vector % 64);
        self.injected = true;
        Ok(())
    }

    fn inject_nmi(&mut self) -> Result<()> {
        self.flush_events_now()?;
        self.fd.nmi().map_err(|e| os("KVM_NMI", e))?;
        self.mirror().events.nmi.pending = 1;
        if self.valid.contains(StateMask::EVENTS) {
            self.state.events.nmi_pending = true;
        }
        Ok(())
    }

    fn request_interrupt_window(&mut self, on: bool) {
        // SAFETY: plain byte write into the live mapping.
        unsafe { *addr_of_mut!((*self.run).request_interrupt_window) = u8::from(on) }
    }

    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()> {
        let cpuid = CpuId::from_entries(&entries_to_kvm(entries)).map_err(|_| {
            SupError::Guest(format!(
                "CPUID table has {} entries, more than the {} KVM_SET_CPUID2 takes here",
                entries.len(),
                super::cpuid::MAX_CPUID_ENTRIES
            ))
        })?;
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(|e| os("KVM_SET_CPUID2", e))
    }

    fn recall_handle(&self) -> Arc<dyn Recall> {
        Arc::new(self.kvm_recall())
    }

    fn engine(&self) -> &'static str {
        "kvm"
    }
}

/// `KVM_INTERRUPT` = `_IOW(KVMIO, 0x86, struct kvm_interrupt)`.
const fn kvm_interrupt_ioctl() -> libc::c_ulong {
    const IOC_WRITE: libc::c_ulong = 1;
    (IOC_WRITE << 30)
        | ((std::mem::size_of::<kvm_bindings::kvm_interrupt>() as libc::c_ulong) << 16)
        | (0xae << 8)
        | 0x86
}
