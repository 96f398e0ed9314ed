//! The execution manager: one thread per vCPU running the exit loop.

use crate::irq::CpuInterrupts;
use iomio::Bus;
use parking_lot::{Condvar, Mutex};
use pgm::GuestMemory;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sup::{IoDirection, Recall, StateMask, Vcpu, VcpuState, Vm, VmExit};

/// The tracing target of vCPU register dumps: they belong in the log file, not on the
/// console (the console gets one line).
pub const STATE_TARGET: &str = "novabox::vcpu_state";

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The guest powered off (ACPI S5) or the user asked for power-off.
    PowerOff,
    /// The guest asked for a reset (keyboard controller, 0xCF9, triple fault when reset on
    /// triple fault is configured).
    Reset,
    /// Triple fault / shutdown; the text is the vCPU state.
    TripleFault {
        /// The vCPU that faulted.
        cpu: u32,
        /// Its state.
        state: String,
    },
    /// An exit the VMM cannot handle, or an engine error.
    Error {
        /// The vCPU.
        cpu: u32,
        /// What happened, with the vCPU state.
        message: String,
    },
}

/// Per-vCPU wake-up and recall.
struct CpuSlot {
    /// Bumped whenever something may be pending; a halted vCPU sleeps until it changes.
    events: Mutex<u64>,
    cv: Condvar,
    recall: Mutex<Option<Arc<dyn Recall>>>,
}

/// Shared by all vCPU threads and the rest of the VMM.
pub struct ExecutionManager {
    memory: Arc<GuestMemory>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    irq: Arc<dyn CpuInterrupts>,
    cpus: Vec<CpuSlot>,
    stop: Mutex<Option<StopReason>>,
    stop_cv: Condvar,
    stopping: AtomicBool,
    final_states: Mutex<Vec<Option<VcpuState>>>,
    /// The VM, told when pgm's map changes (PAM), and the generation it last saw.
    vm: Mutex<Option<(Arc<dyn Vm>, u64)>>,
}

/// How a vCPU starts.
pub enum Start {
    /// Run at once from this state (the BSP).
    Now(Box<VcpuState>),
    /// Wait for INIT + Startup IPI (an AP).
    WaitForSipi,
}

impl ExecutionManager {
    /// A manager for `cpu_count` vCPUs.
    pub fn new(
        memory: Arc<GuestMemory>,
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
        irq: Arc<dyn CpuInterrupts>,
        cpu_count: u32,
    ) -> Arc<Self> {
        Arc::new(ExecutionManager {
            memory,
            pio,
            mmio,
            irq,
            cpus: (0..cpu_count)
                .map(|_| CpuSlot {
                    events: Mutex::new(0),
                    cv: Condvar::new(),
                    recall: Mutex::new(None),
                })
                .collect(),
            stop: Mutex::new(None),
            stop_cv: Condvar::new(),
            stopping: AtomicBool::new(false),
            final_states: Mutex::new(vec![None; cpu_count as usize]),
            vm: Mutex::new(None),
        })
    }

    /// The VM whose memory slots must follow guest-physical map changes (PAM shadowing).
    pub fn set_vm(&self, vm: Arc<dyn Vm>) {
        *self.vm.lock() = Some((vm, self.memory.map_generation()));
    }

    /// Re-install the hypervisor's memory map if pgm's map changed since last time. Cheap
    /// when nothing changed (one atomic load).
    fn sync_memory_map(&self) -> Result<(), String> {
        let now = self.memory.map_generation();
        let mut g = self.vm.lock();
        if let Some((vm, seen)) = g.as_mut() {
            if *seen != now {
                *seen = now;
                vm.memory_changed().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Something may be pending for `cpu`: wake it if halted, recall it if running.
    pub fn kick(&self, cpu: u32) {
        let Some(slot) = self.cpus.get(cpu as usize) else {
            return;
        };
        *slot.events.lock() += 1;
        slot.cv.notify_all();
        if let Some(r) = slot.recall.lock().as_ref() {
            r.recall();
        }
    }

    /// Kick every vCPU.
    pub fn kick_all(&self) {
        for i in 0..self.cpus.len() {
            self.kick(i as u32);
        }
    }

    /// Stop the VM (first reason wins).
    pub fn request_stop(&self, reason: StopReason) {
        {
            let mut s = self.stop.lock();
            if s.is_none() {
                tracing::info!(?reason, "VM stopping");
                *s = Some(reason);
            }
            self.stopping.store(true, Ordering::SeqCst);
            self.stop_cv.notify_all();
        }
        self.kick_all();
    }

    /// True once a stop was requested.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Block until the VM stops.
    pub fn wait(&self) -> StopReason {
        let mut s = self.stop.lock();
        while s.is_none() {
            self.stop_cv.wait(&mut s);
        }
        s.clone().expect("checked above")
    }

    /// Like [`ExecutionManager::wait`] with a timeout.
    pub fn wait_timeout(&self, d: Duration) -> Option<StopReason> {
        let mut s = self.stop.lock();
        if s.is_none() {
            self.stop_cv.wait_for(&mut s, d);
        }
        s.clone()
    }

    /// Start a thread running `vcpu`.
    pub fn spawn(
        self: &Arc<Self>,
        vcpu: Box<dyn Vcpu>,
        start: Start,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        let id = vcpu.id();
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || me.vcpu_thread(vcpu, start))
    }

    /// The state each vCPU thread left its vCPU in when it ended (None: still running or
    /// never started).
    pub fn final_states(&self) -> Vec<Option<VcpuState>> {
        self.final_states.lock().clone()
    }

    fn vcpu_thread(self: Arc<Self>, mut vcpu: Box<dyn Vcpu>, start: Start) {
        let id = vcpu.id();
        self.vcpu_main(vcpu.as_mut(), start);
        if let Ok(s) = vcpu.state(StateMask::ALL) {
            if let Some(slot) = self.final_states.lock().get_mut(id as usize) {
                *slot = Some(*s);
            }
        }
        *self.cpus[id as usize].recall.lock() = None;
    }

    fn vcpu_main(&self, vcpu: &mut dyn Vcpu, start: Start) {
        let id = vcpu.id();
        *self.cpus[id as usize].recall.lock() = Some(vcpu.recall_handle());
        let mut start = start;
        loop {
            let state = match start {
                Start::Now(s) => *s,
                Start::WaitForSipi => match self.wait_for_sipi(id) {
                    Some(v) => {
                        tracing::info!(cpu = id, vector = v, "startup IPI");
                        VcpuState::after_sipi(v)
                    }
                    None => return,
                },
            };
            match vcpu.state(StateMask::ALL) {
                Ok(s) => *s = state,
                Err(e) => {
                    self.request_stop(StopReason::Error {
                        cpu: id,
                        message: e.to_string(),
                    });
                    return;
                }
            }
            vcpu.mark_dirty(StateMask::ALL);
            match self.run_loop(vcpu) {
                LoopEnd::Stop => return,
                LoopEnd::Init => start = Start::WaitForSipi,
            }
        }
    }

    fn wait_for_sipi(&self, id: u32) -> Option<u8> {
        let slot = &self.cpus[id as usize];
        let mut ev = slot.events.lock();
        loop {
            if self.stopping() {
                return None;
            }
            // An INIT before the SIPI is the normal sequence; consume it.
            let _ = self.irq.take_init(id);
            if let Some(v) = self.irq.take_sipi(id) {
                return Some(v);
            }
            slot.cv.wait_for(&mut ev, Duration::from_millis(100));
        }
    }

    fn run_loop(&self, vcpu: &mut dyn Vcpu) -> LoopEnd {
        let id = vcpu.id();
        loop {
            if self.stopping() {
                return LoopEnd::Stop;
            }
            if let Err(e) = self.deliver_events(vcpu) {
                self.fail(vcpu, e);
                return LoopEnd::Stop;
            }
            if self.irq.take_init(id) {
                tracing::info!(cpu = id, "INIT");
                return LoopEnd::Init;
            }
            let exit = match vcpu.run() {
                Ok(e) => e,
                Err(e) => {
                    self.fail(vcpu, e.to_string());
                    return LoopEnd::Stop;
                }
            };
            match exit {
                VmExit::Io {
                    port,
                    size,
                    count,
                    dir,
                } => {
                    self.port_io(vcpu, port, size, count, dir);
                    // A port write may have changed the memory map (i440FX PAM registers).
                    if let Err(e) = self.sync_memory_map() {
                        self.fail(vcpu, e);
                        return LoopEnd::Stop;
                    }
                }
                VmExit::Mmio { gpa, len, write } => self.mmio(vcpu, gpa, len, write),
                VmExit::Hlt => self.halt(vcpu),
                VmExit::InterruptWindow | VmExit::Recalled => {}
                VmExit::Shutdown => {
                    let state = dump(vcpu);
                    tracing::error!(cpu = id, "triple fault");
                    tracing::error!(target: STATE_TARGET, cpu = id, "vCPU state:\n{state}");
                    self.request_stop(StopReason::TripleFault { cpu: id, state });
                    return LoopEnd::Stop;
                }
                VmExit::Reset => {
                    self.request_stop(StopReason::Reset);
                    return LoopEnd::Stop;
                }
                VmExit::Unhandled(what) => {
                    self.fail(vcpu, what);
                    return LoopEnd::Stop;
                }
            }
        }
    }

    fn fail(&self, vcpu: &mut dyn Vcpu, what: String) {
        let id = vcpu.id();
        let state = dump(vcpu);
        tracing::error!(cpu = id, "{what}");
        tracing::error!(target: STATE_TARGET, cpu = id, "vCPU state:\n{state}");
        self.request_stop(StopReason::Error {
            cpu: id,
            message: format!("{what}\n{state}"),
        });
    }

    /// Inject what is pending, or ask for an interrupt window.
    fn deliver_events(&self, vcpu: &mut dyn Vcpu) -> Result<(), String> {
        let id = vcpu.id();
        if self.irq.take_nmi(id) {
            vcpu.inject_nmi().map_err(|e| e.to_string())?;
        }
        if self.irq.has_interrupt(id) {
            if vcpu.interrupt_ready() {
                if let Some(v) = self.irq.acknowledge(id) {
                    vcpu.inject_interrupt(v).map_err(|e| e.to_string())?;
                }
                // More may be pending behind this one.
                vcpu.request_interrupt_window(self.irq.has_interrupt(id));
            } else {
                vcpu.request_interrupt_window(true);
            }
        } else {
            vcpu.request_interrupt_window(false);
        }
        Ok(())
    }

    fn port_io(&self, vcpu: &mut dyn Vcpu, port: u16, size: u8, count: u32, dir: IoDirection) {
        let size = usize::from(size.clamp(1, 4));
        let data = vcpu.io_data();
        let n = (count as usize).min(data.len() / size);
        for chunk in data.chunks_mut(size).take(n) {
            match dir {
                IoDirection::In => {
                    self.pio.read(u64::from(port), chunk);
                }
                IoDirection::Out => {
                    self.pio.write(u64::from(port), chunk);
                }
            }
        }
    }

    fn mmio(&self, vcpu: &mut dyn Vcpu, gpa: u64, len: u8, write: bool) {
        let id = vcpu.id();
        let data = vcpu.mmio_data();
        let n = usize::from(len).min(data.len());
        let data = &mut data[..n];
        if self.irq.is_lapic(id, gpa) {
            self.irq.lapic_access(id, gpa, data, write);
            return;
        }
        if self.memory.translate(gpa).is_some() {
            // ROM or write-protected shadow RAM trapped by the hypervisor: pgm applies the
            // routing (drop, or write to shadow RAM).
            let r = if write {
                self.memory.write(gpa, data)
            } else {
                self.memory.read(gpa, data)
            };
            if let Err(e) = r {
                tracing::warn!(cpu = id, gpa, "memory access failed: {e}");
            }
            return;
        }
        let claimed = if write {
            self.mmio.write(gpa, data)
        } else {
            self.mmio.read(gpa, data)
        };
        if !claimed {
            tracing::trace!(cpu = id, gpa, write, "unclaimed MMIO");
        }
    }

    /// HLT: sleep until an interrupt the vCPU would take (IF set), an NMI, an INIT or a
    /// stop arrives. Other wake-ups leave the vCPU halted, as the hardware does.
    fn halt(&self, vcpu: &mut dyn Vcpu) {
        let id = vcpu.id();
        let if_set = vcpu
            .state(StateMask::RFLAGS)
            .map(|s| s.rflags & (1 << 9) != 0)
            .unwrap_or(true);
        let slot = &self.cpus[id as usize];
        let mut ev = slot.events.lock();
        loop {
            if self.stopping()
                || (if_set && self.irq.has_interrupt(id))
                || self.irq.has_nmi_or_init(id)
            {
                return;
            }
            // Timeout as a safety net only: wake-ups come through kick().
            slot.cv.wait_for(&mut ev, Duration::from_millis(50));
        }
    }
}

enum LoopEnd {
    Stop,
    Init,
}

/// The vCPU state as text for logs and error messages.
pub fn dump(vcpu: &mut dyn Vcpu) -> String {
    let engine = vcpu.engine();
    match vcpu.state(StateMask::ALL) {
        Ok(s) => format_state(engine, s),
        Err(e) => format!("(state unavailable: {e})"),
    }
}

/// Format a state like VirtualBox's register dump.
pub fn format_state(engine: &str, s: &VcpuState) -> String {
    let g = &s.gpr;
    let seg = |n: &str, x: &sup::Segment| {
        format!(
            "{n}={:04x} base={:016x} limit={:08x} attr={:05x}",
            x.selector, x.base, x.limit, x.attr
        )
    };
    format!(
        "engine={engine}\n\
         rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}\n\
         rsi={:016x} rdi={:016x} rbp={:016x} rsp={:016x}\n\
         r8 ={:016x} r9 ={:016x} r10={:016x} r11={:016x}\n\
         r12={:016x} r13={:016x} r14={:016x} r15={:016x}\n\
         rip={:016x} rflags={:08x}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n\
         gdtr={:016x}/{:04x} idtr={:016x}/{:04x}\n\
         cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x} apic_base={:x}",
        g[0],
        g[3],
        g[1],
        g[2],
        g[6],
        g[7],
        g[5],
        g[4],
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15],
        s.rip,
        s.rflags,
        seg("cs", &s.cs),
        seg("ss", &s.ss),
        seg("ds", &s.ds),
        seg("es", &s.es),
        seg("fs", &s.fs),
        seg("gs", &s.gs),
        seg("tr", &s.tr),
        seg("ldtr", &s.ldtr),
        s.gdtr.base,
        s.gdtr.limit,
        s.idtr.base,
        s.idtr.limit,
        s.cr0,
        s.cr2,
        s.cr3,
        s.cr4,
        s.efer,
        s.apic_base
    )
}
