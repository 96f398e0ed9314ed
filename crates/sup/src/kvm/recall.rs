//! Recall: kick a vCPU out of `KVM_RUN` from any thread.
//!
//! The recalling thread first sets `kvm_run.immediate_exit` (so a recall that lands just
//! before the vCPU thread enters `KVM_RUN` is not lost: KVM checks the flag on entry and
//! returns `EINTR`), then, if the vCPU is inside `run`, sends it a real-time signal whose
//! handler does nothing: the signal only makes a `KVM_RUN` in progress return `EINTR`. The
//! vCPU clears `immediate_exit` when it reports [`crate::VmExit::Recalled`] and never
//! earlier, so a recall racing with an ordinary exit shows up on the next `run`.

use crate::{Recall, Result, SupError};
use kvm_bindings::kvm_run;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

/// The signal used to recall vCPUs: `SIGRTMIN + 6`, clear of the real-time signals glibc
/// reserves (they are below `SIGRTMIN`) and of the first few that libraries tend to take.
pub fn recall_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

extern "C" fn on_recall_signal(_sig: libc::c_int) {
    // Nothing to do: being delivered is the point (it interrupts KVM_RUN).
}

/// Install the no-op handler once per process. `SA_RESTART` is left off: the signal must
/// interrupt, not be papered over.
pub(crate) fn install_handler() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let sig = recall_signal();
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler
            // is an `extern "C" fn(c_int)` that touches no state, so it is async-signal-safe;
            // `old` receives the previous action and both pointers are valid for the call.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_recall_signal as extern "C" fn(libc::c_int) as usize;
                act.sa_flags = 0;
                libc::sigemptyset(&mut act.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut old) != 0 {
                    return Err(format!(
                        "sigaction(SIGRTMIN+6): {}",
                        std::io::Error::last_os_error()
                    ));
                }
                if old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != on_recall_signal as extern "C" fn(libc::c_int) as usize
                {
                    // Someone else used the signal; put their handler back and refuse.
                    libc::sigaction(sig, &old, std::ptr::null_mut());
                    return Err(format!(
                        "signal SIGRTMIN+6 ({sig}) already has a handler in this process"
                    ));
                }
            }
            Ok(())
        })
        .clone()
        .map_err(SupError::Guest)
}

thread_local! {
    /// This thread's kernel thread id, once it has run a vCPU (and unblocked the signal).
    static THREAD_TID: Cell<libc::pid_t> = const { Cell::new(0) };
}

/// The calling thread's id, preparing the thread on first use: the recall signal must not be
/// blocked in a thread that runs a vCPU.
pub(crate) fn current_vcpu_thread() -> libc::pid_t {
    THREAD_TID.with(|t| {
        if t.get() == 0 {
            // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the
            // pointers are valid for each call; gettid has no preconditions.
            let tid = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, recall_signal());
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::syscall(libc::SYS_gettid) as libc::pid_t
            };
            t.set(tid);
        }
        t.get()
    })
}

/// Pointer to a vCPU's `kvm_run`, shared with recall handles while the vCPU exists.
struct RunPtr(*mut kvm_run);

// SAFETY: the pointer is only dereferenced (as an atomic byte) while the owning vCPU is alive,
// which the mutex around it guarantees; the mapping it points to is process-wide.
unsafe impl Send for RunPtr {}

/// State shared between a [`super::KvmVcpu`] and its recall handles.
pub(crate) struct RecallShared {
    /// `kvm_run` of the vCPU; `None` once the vCPU is gone.
    run: Mutex<Option<RunPtr>>,
    /// Kernel thread id of the thread that last entered `run`.
    pub(crate) tid: AtomicI32,
    /// True while the vCPU thread is inside `run` (around `KVM_RUN`).
    pub(crate) in_run: AtomicBool,
}

impl RecallShared {
    pub(crate) fn new(run: *mut kvm_run) -> Self {
        RecallShared {
            run: Mutex::new(Some(RunPtr(run))),
            tid: AtomicI32::new(0),
            in_run: AtomicBool::new(false),
        }
    }

    /// The vCPU is going away: recall handles must not touch its `kvm_run` any more.
    pub(crate) fn detach(&self) {
        *self.run.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// View `kvm_run.immediate_exit` as an atomic byte.
///
/// # Safety
/// `run` must point to a live, mapped `kvm_run`.
pub(crate) unsafe fn immediate_exit<'a>(run: *mut kvm_run) -> &'a AtomicU8 {
    // SAFETY: the caller guarantees `run` is live; AtomicU8 has the size and alignment of u8;
    // every access to this byte from Rust goes through this atomic view, and the kernel only
    // reads it inside KVM_RUN.
    unsafe { &*(std::ptr::addr_of_mut!((*run).immediate_exit) as *const AtomicU8) }
}

/// The recall handle of a KVM vCPU ([`crate::Vcpu::recall_handle`]).
#[derive(Clone)]
pub struct KvmRecall {
    pub(crate) shared: std::sync::Arc<RecallShared>,
}

impl std::fmt::Debug for KvmRecall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmRecall")
            .field("tid", &self.shared.tid.load(Ordering::Relaxed))
            .finish()
    }
}

impl Recall for KvmRecall {
    fn recall(&self) {
        let guard = self.shared.run.lock().unwrap_or_else(|e| e.into_inner());
        let Some(run) = guard.as_ref() else {
            return; // the vCPU no longer exists
        };
        // SAFETY: the pointer is Some only while the vCPU (and its kvm_run mapping) lives,
        // and we hold the lock that the vCPU's drop takes before unmapping.
        unsafe { immediate_exit(run.0) }.store(1, Ordering::SeqCst);
        // Pairs with the SeqCst store of `in_run` before KVM_RUN: either the vCPU thread sees
        // immediate_exit on entry, or we see in_run and signal it.
        if self.shared.in_run.load(Ordering::SeqCst) {
            let tid = self.shared.tid.load(Ordering::SeqCst);
            if tid > 0 {
                // SAFETY: plain syscall with integer arguments. A stale tid can at worst hit
                // another thread of this process, whose handler for this signal does nothing.
                unsafe {
                    libc::syscall(
                        libc::SYS_tgkill,
                        libc::getpid(),
                        tid,
                        recall_signal() as libc::c_long,
                    );
                }
            }
        }
    }
}
