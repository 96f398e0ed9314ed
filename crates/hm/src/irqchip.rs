//! The platform's interrupt fabric: the 8259 pair, the IOAPIC and one local APIC per vCPU,
//! wired the way a PIIX3 PC wires them. It is the GSI sink devices raise lines on
//! ([`pdm::IrqSink`]), the APIC bus the IOAPIC and IPIs travel on ([`pdm::ApicBus`]), and
//! what the exit loop asks for pending interrupts ([`CpuInterrupts`]).
//!
//! Locking: no two device locks are ever held at once. Actions a model returns (IPIs, EOIs)
//! are carried out after its lock is dropped.

use crate::exec::ExecutionManager;
use crate::irq::CpuInterrupts;
use devices::ioapic::Ioapic;
use devices::lapic::{Accepted, LapicAction, LocalApic, PicRoute, LAPIC_SIZE};
use devices::pic::Pic;
use parking_lot::Mutex;
use pdm::apic::{EoiListener, Shorthand};
use pdm::{ApicBus, ApicMessage, Clock, DeliveryMode, Timer, TimerQueue};
use std::sync::{Arc, OnceLock, Weak};

struct Cpu {
    lapic: Mutex<LocalApic>,
    timer: OnceLock<Timer>,
    /// An ExtINT message (IOAPIC pin in ExtINT mode) waits for the 8259's vector.
    extint: Mutex<bool>,
    /// NMI / INIT taken out of the model by a peek, not yet consumed by the run loop.
    stash: Mutex<(bool, bool)>,
}

/// The interrupt controllers of one VM.
pub struct IrqChip {
    pic: Arc<Mutex<Pic>>,
    ioapic: OnceLock<Arc<Ioapic>>,
    cpus: Vec<Cpu>,
    clock: Arc<dyn Clock>,
    exec: OnceLock<Weak<ExecutionManager>>,
}

/// ISA IRQ0 (the PIT) is wired to IOAPIC pin 2; the MADT says so with an override.
fn ioapic_pin(gsi: u32) -> u32 {
    if gsi == 0 {
        2
    } else {
        gsi
    }
}

impl IrqChip {
    /// Build the fabric for `cpu_count` vCPUs with LAPIC timers on `timers`. The IOAPIC
    /// gets APIC ID `cpu_count` (the MADT must say the same).
    pub fn new(cpu_count: u32, clock: Arc<dyn Clock>, timers: &Arc<TimerQueue>) -> Arc<Self> {
        let pic = Arc::new(Mutex::new(Pic::new()));
        let chip = Arc::new(IrqChip {
            pic: pic.clone(),
            ioapic: OnceLock::new(),
            cpus: (0..cpu_count)
                .map(|i| Cpu {
                    lapic: Mutex::new(LocalApic::new(i as u8, clock.clone())),
                    timer: OnceLock::new(),
                    extint: Mutex::new(false),
                    stash: Mutex::new((false, false)),
                })
                .collect(),
            clock,
            exec: OnceLock::new(),
        });
        let ioapic = Arc::new(Ioapic::new(
            cpu_count as u8,
            chip.clone() as Arc<dyn ApicBus>,
        ));
        let _ = chip.ioapic.set(ioapic);
        for i in 0..cpu_count {
            let weak = Arc::downgrade(&chip);
            let t = timers.create(move |now| {
                if let Some(chip) = weak.upgrade() {
                    chip.lapic_timer(i, now);
                }
            });
            let _ = chip.cpus[i as usize].timer.set(t);
        }
        let weak = Arc::downgrade(&chip);
        pic.lock().set_output_notifier(move |high| {
            if high {
                if let Some(chip) = weak.upgrade() {
                    chip.kick_all();
                }
            }
        });
        chip
    }

    /// Connect the execution manager so new interrupts wake vCPUs.
    pub fn attach(&self, exec: &Arc<ExecutionManager>) {
        let _ = self.exec.set(Arc::downgrade(exec));
    }

    /// The 8259 pair (for the port-I/O bus).
    pub fn pic(&self) -> &Arc<Mutex<Pic>> {
        &self.pic
    }

    /// The IOAPIC (for the MMIO bus at 0xFEC00000).
    pub fn ioapic(&self) -> &Arc<Ioapic> {
        self.ioapic.get().expect("set in new")
    }

    fn kick(&self, cpu: u32) {
        if let Some(e) = self.exec.get().and_then(Weak::upgrade) {
            e.kick(cpu);
        }
    }

    fn kick_all(&self) {
        if let Some(e) = self.exec.get().and_then(Weak::upgrade) {
            e.kick_all();
        }
    }

    fn cpu(&self, cpu: u32) -> Option<&Cpu> {
        self.cpus.get(cpu as usize)
    }

    fn rearm_timer(&self, cpu: u32) {
        if let Some(c) = self.cpu(cpu) {
            let deadline = c.lapic.lock().timer_deadline();
            if let Some(t) = c.timer.get() {
                match deadline {
                    Some(d) => t.arm_at(d),
                    None => t.disarm(),
                }
            }
        }
    }

    fn lapic_timer(&self, cpu: u32, now: u64) {
        let Some(c) = self.cpu(cpu) else { return };
        let fired = c.lapic.lock().timer_expired(now.max(self.clock.now_ns()));
        self.rearm_timer(cpu);
        if fired {
            self.kick(cpu);
        }
    }
}

impl pdm::IrqSink for IrqChip {
    fn set_irq(&self, gsi: u32, level: bool) {
        if gsi < 16 {
            self.pic.lock().set_irq(gsi as u8, level);
        }
        self.ioapic().set_irq(ioapic_pin(gsi), level);
    }
}

impl ApicBus for IrqChip {
    fn deliver(&self, msg: ApicMessage) {
        let targets: Vec<u32> = (0..self.cpus.len() as u32)
            .filter(|&i| {
                let l = self.cpus[i as usize].lapic.lock();
                match msg.shorthand {
                    Shorthand::None => l.is_target(&msg),
                    Shorthand::SelfOnly => u32::from(l.apic_id()) == msg.source,
                    Shorthand::AllIncludingSelf => true,
                    Shorthand::AllExcludingSelf => u32::from(l.apic_id()) != msg.source,
                }
            })
            .collect();
        let chosen: Vec<u32> = if msg.delivery == DeliveryMode::LowestPriority && targets.len() > 1
        {
            targets
                .iter()
                .copied()
                .min_by_key(|&i| self.cpus[i as usize].lapic.lock().arbitration_priority())
                .into_iter()
                .collect()
        } else {
            targets
        };
        for i in chosen {
            let r = self.cpus[i as usize].lapic.lock().accept(&msg);
            if r == Accepted::ExtInt {
                *self.cpus[i as usize].extint.lock() = true;
            }
            if r != Accepted::Discarded {
                self.kick(i);
            }
        }
    }
}

impl CpuInterrupts for IrqChip {
    fn has_interrupt(&self, cpu: u32) -> bool {
        let Some(c) = self.cpu(cpu) else { return false };
        let (pending, route) = {
            let mut l = c.lapic.lock();
            if l.take_extint() {
                *c.extint.lock() = true;
            }
            (l.pending_interrupt().is_some(), l.pic_route())
        };
        if pending {
            return true;
        }
        let pic_wanted = *c.extint.lock() || route != PicRoute::Blocked;
        pic_wanted && self.pic.lock().output()
    }

    fn acknowledge(&self, cpu: u32) -> Option<u8> {
        let c = self.cpu(cpu)?;
        let route = {
            let mut l = c.lapic.lock();
            if let Some(v) = l.pending_interrupt() {
                l.acknowledge(v);
                return Some(v);
            }
            l.pic_route()
        };
        let mut extint = c.extint.lock();
        if *extint || route != PicRoute::Blocked {
            let mut pic = self.pic.lock();
            if pic.output() {
                *extint = false;
                return Some(pic.acknowledge());
            }
        }
        None
    }

    fn has_nmi_or_init(&self, cpu: u32) -> bool {
        let Some(c) = self.cpu(cpu) else { return false };
        let (nmi, init) = {
            let mut l = c.lapic.lock();
            (l.take_nmi(), l.take_init())
        };
        let mut st = c.stash.lock();
        st.0 |= nmi;
        st.1 |= init;
        st.0 || st.1
    }

    fn take_nmi(&self, cpu: u32) -> bool {
        let Some(c) = self.cpu(cpu) else { return false };
        let model = c.lapic.lock().take_nmi();
        std::mem::take(&mut c.stash.lock().0) || model
    }

    fn take_init(&self, cpu: u32) -> bool {
        let Some(c) = self.cpu(cpu) else { return false };
        let mut l = c.lapic.lock();
        let init = l.take_init() | std::mem::take(&mut c.stash.lock().1);
        if init {
            l.init_reset();
        }
        init
    }

    fn take_sipi(&self, cpu: u32) -> Option<u8> {
        self.cpu(cpu)?.lapic.lock().take_sipi()
    }

    fn is_lapic(&self, cpu: u32, gpa: u64) -> bool {
        self.cpu(cpu).is_some_and(|c| {
            let l = c.lapic.lock();
            l.is_enabled() && gpa.wrapping_sub(l.mmio_base()) < LAPIC_SIZE
        })
    }

    fn lapic_access(&self, cpu: u32, gpa: u64, data: &mut [u8], write: bool) {
        let Some(c) = self.cpu(cpu) else { return };
        let action = {
            let mut l = c.lapic.lock();
            let off = gpa.wrapping_sub(l.mmio_base());
            if write {
                l.write(off, data)
            } else {
                l.read(off, data);
                None
            }
        };
        match action {
            Some(LapicAction::SendIpi(msg)) => self.deliver(msg),
            Some(LapicAction::Eoi(v)) => self.ioapic().eoi(v),
            None => {}
        }
        if write {
            self.rearm_timer(cpu);
        }
    }

    fn set_cr8(&self, cpu: u32, cr8: u64) {
        if let Some(c) = self.cpu(cpu) {
            c.lapic.lock().set_cr8(cr8);
        }
    }

    fn set_apic_base(&self, cpu: u32, value: u64) {
        if let Some(c) = self.cpu(cpu) {
            let mut l = c.lapic.lock();
            if l.base_msr() != value {
                if let Err(e) = l.set_base_msr(value) {
                    tracing::warn!(cpu, value, "IA32_APIC_BASE write refused: {e}");
                }
            }
        }
        self.rearm_timer(cpu);
    }
}
