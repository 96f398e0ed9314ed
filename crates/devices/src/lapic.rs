//! The local APIC of one vCPU, in xAPIC mode, as VirtualBox presents it: a Pentium 4 APIC
//! (version 0x14, six LVT entries, so the version register reads 0x0005_0014; no directed
//! EOI), 8-bit APIC IDs, a timer clocked at 1 GHz (VirtualBox drives it from its 1 GHz
//! virtual-sync clock: one bus tick = 1 ns before the divider) and the TSC-deadline mode.
//!
//! # How hm uses it
//!
//! hm owns one `LocalApic` per vCPU, each behind its own mutex. The model never calls out: it
//! returns what must happen and hm does it *after dropping the lock* (so sending an IPI to
//! oneself, or an EOI that makes the IOAPIC deliver again, cannot deadlock).
//!
//! - Creation: [`LocalApic::new(apic_id, clock)`](LocalApic::new). APIC ID 0 is the BSP
//!   (IA32_APIC_BASE bit 8). Power-on state: enabled in IA32_APIC_BASE at 0xFEE00000,
//!   software-disabled (SVR = 0xFF), every LVT masked.
//! - MMIO: while [`LocalApic::is_enabled`] (IA32_APIC_BASE bit 11), hm routes guest accesses
//!   to [`LocalApic::mmio_base`]`..+0x1000` of *that vCPU* to [`LocalApic::read`] /
//!   [`LocalApic::write`] with the offset in the page. `write` returns a [`LapicAction`]:
//!   - `SendIpi(msg)`: deliver `msg` on the APIC bus (hm's [`pdm::ApicBus`]; the shorthand and
//!     `source` fields say who gets it: see [`LocalApic::is_target`]);
//!   - `Eoi(vector)`: the guest EOIed a level-triggered interrupt: call the IOAPIC's
//!     [`pdm::apic::EoiListener::eoi`].
//!
//!   After any write, and after [`LocalApic::write_tsc_deadline`] and
//!   [`LocalApic::set_base_msr`], re-read [`LocalApic::timer_deadline`].
//! - Interrupts in: hm's ApicBus finds the destinations with [`LocalApic::is_target`]
//!   (physical, logical flat/cluster, broadcast 0xFF, shorthands; for lowest priority hm picks
//!   one of them, e.g. the lowest [`LocalApic::arbitration_priority`]) and calls
//!   [`LocalApic::accept`], then kicks that vCPU if the result is not
//!   [`Accepted::Discarded`].
//! - Interrupts out, in the vCPU loop before entering the guest:
//!   1. [`LocalApic::take_init`] (INIT: reset the vCPU, call [`LocalApic::init_reset`], wait
//!      for SIPI), [`LocalApic::take_sipi`] (only meaningful in wait-for-SIPI),
//!      [`LocalApic::take_nmi`];
//!   2. the 8259's INTR: [`LocalApic::pic_route`] says whether it goes straight to the CPU
//!      (APIC globally or software disabled), through LINT0 in ExtINT mode (virtual wire;
//!      [`LocalApic::lint0_accepts_extint`]), or nowhere. [`LocalApic::take_extint`] reports
//!      an ExtINT *message* (IOAPIC pin in ExtINT mode). Either way the vector comes from the
//!      PIC's INTA cycle ([`crate::pic::Pic::acknowledge`]), not from this APIC, and TPR does
//!      not apply;
//!   3. if the guest can take an interrupt (IF=1, no interrupt shadow),
//!      [`LocalApic::pending_interrupt`] gives the vector, then [`LocalApic::acknowledge`]
//!      moves it from IRR to ISR and hm injects it.
//! - Timer: [`LocalApic::timer_deadline`] is the virtual time (ns, the clock given at
//!   creation) at which hm must call [`LocalApic::timer_expired`]`(now)`; it then sets IRR for
//!   the LVT timer vector (unless masked) and re-arms a periodic timer. Call it as late as you
//!   like: missed periods are coalesced.
//! - MSRs: IA32_APIC_BASE (0x1B) via [`LocalApic::base_msr`] / [`LocalApic::set_base_msr`]
//!   (an error means inject #GP); IA32_TSC_DEADLINE (0x6E0) via
//!   [`LocalApic::tsc_deadline`] / [`LocalApic::write_tsc_deadline`] (hm passes the guest's
//!   current TSC and TSC frequency); CR8 via [`LocalApic::get_cr8`] / [`LocalApic::set_cr8`].
//!
//! # Registers (offset in the 4 KiB page; dword registers on 16-byte boundaries)
//! 0x020 ID, 0x030 version, 0x080 TPR, 0x090 APR, 0x0A0 PPR, 0x0B0 EOI, 0x0C0 RRD,
//! 0x0D0 LDR, 0x0E0 DFR, 0x0F0 SVR, 0x100-0x170 ISR, 0x180-0x1F0 TMR, 0x200-0x270 IRR,
//! 0x280 ESR, 0x300/0x310 ICR low/high, 0x320 LVT timer, 0x330 thermal, 0x340 performance
//! counters, 0x350 LINT0, 0x360 LINT1, 0x370 error, 0x380 initial count, 0x390 current
//! count, 0x3E0 divide configuration. Other offsets read 0 and set ESR bit 7 (illegal
//! register address). Narrow writes are zero-extended to the dword; writes not at the start
//! of a register are dropped.

use pdm::apic::Shorthand;
use pdm::{ApicMessage, Clock, DeliveryMode, DestMode, TriggerMode};
use std::sync::Arc;

/// Default guest-physical base of the xAPIC page.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Size of the xAPIC page.
pub const LAPIC_SIZE: u64 = 0x1000;
/// Version register: Pentium 4 APIC (0x14), maximum LVT entry 5.
pub const LAPIC_VERSION: u32 = 0x0005_0014;
/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// IA32_APIC_BASE bit 8: bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode (not offered: setting it faults).
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: APIC global enable.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// Address bits of IA32_APIC_BASE (up to a 52-bit physical address).
const APIC_BASE_ADDR: u64 = 0x000f_ffff_ffff_f000;

const REG_ID: u32 = 0x020;
const REG_VERSION: u32 = 0x030;
const REG_TPR: u32 = 0x080;
const REG_APR: u32 = 0x090;
const REG_PPR: u32 = 0x0a0;
const REG_EOI: u32 = 0x0b0;
const REG_RRD: u32 = 0x0c0;
const REG_LDR: u32 = 0x0d0;
const REG_DFR: u32 = 0x0e0;
const REG_SVR: u32 = 0x0f0;
const REG_ISR: u32 = 0x100;
const REG_TMR: u32 = 0x180;
const REG_IRR: u32 = 0x200;
const REG_ESR: u32 = 0x280;
const REG_ICR_LO: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_LVT_FIRST: u32 = 0x320;
const REG_LVT_LAST: u32 = 0x370;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DCR: u32 = 0x3e0;

/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// SVR bits the P4 APIC implements: vector, enable, focus-check disable.
const SVR_VALID: u32 = 0x3ff;

/// LVT indices, in register order.
const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_LINT1: usize = 4;
const LVT_ERROR: usize = 5;
const LVT_MASK: u32 = 1 << 16;
/// Writable bits per LVT (timer, thermal, perf, LINT0, LINT1, error); delivery status and
/// remote IRR are read-only and always 0 here.
const LVT_VALID: [u32; 6] = [
    0x0007_00ff,
    0x0001_07ff,
    0x0001_07ff,
    0x0001_a7ff,
    0x0001_a7ff,
    0x0001_00ff,
];

/// ICR low bits that are stored (delivery status, bit 12, reads 0: delivery is immediate).
const ICR_LO_VALID: u32 = 0x000c_cfff;

/// ESR bits.
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECV_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// Shortest period of the periodic timer (as KVM clamps it): a guest programming a few
/// nanoseconds would otherwise keep hm's timer busy forever. The current-count register
/// still follows the programmed period.
pub const MIN_PERIODIC_NS: u64 = 100_000;

/// Timer modes (LVT timer bits 18:17).
const TIMER_PERIODIC: u32 = 1;
const TIMER_TSC_DEADLINE: u32 = 2;

/// What hm must do after a register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicAction {
    /// Put this interprocessor interrupt on the APIC bus.
    SendIpi(ApicMessage),
    /// Broadcast an EOI for this level-triggered vector to the IOAPIC.
    Eoi(u8),
}

/// What [`LocalApic::accept`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A fixed / lowest-priority vector is now in IRR.
    Interrupt,
    /// An NMI is pending ([`LocalApic::take_nmi`]).
    Nmi,
    /// An INIT is pending ([`LocalApic::take_init`]).
    Init,
    /// A startup IPI is pending ([`LocalApic::take_sipi`]).
    Startup,
    /// An ExtINT is pending ([`LocalApic::take_extint`]).
    ExtInt,
    /// Dropped: APIC disabled, illegal vector, SMI, or an INIT level de-assert (which a
    /// Pentium 4 does not support).
    Discarded,
}

/// Where the 8259's INTR line goes on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PicRoute {
    /// Straight to the CPU's INTR pin: the APIC is globally or software disabled.
    Direct,
    /// Through LINT0, programmed for ExtINT and unmasked (virtual wire mode).
    Lint0,
    /// Nowhere: the APIC is on and LINT0 is masked or not ExtINT.
    Blocked,
}

/// IA32_APIC_BASE write errors (hm injects #GP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApicBaseError {
    /// Reserved bits set, or x2APIC requested (not offered).
    #[error("reserved bits in IA32_APIC_BASE value {0:#x}")]
    Reserved(u64),
}

/// A 256-bit vector register (ISR, TMR, IRR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bitmap([u32; 8]);

impl Bitmap {
    fn set(&mut self, v: u8) {
        self.0[usize::from(v >> 5)] |= 1 << (v & 31);
    }
    fn clear(&mut self, v: u8) {
        self.0[usize::from(v >> 5)] &= !(1 << (v & 31));
    }
    fn test(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }
    fn highest(&self) -> Option<u8> {
        (0..8usize).rev().find_map(|i| {
            let w = self.0[i];
            (w != 0).then(|| (i as u32 * 32 + 31 - w.leading_zeros()) as u8)
        })
    }
}

/// The local APIC.
pub struct LocalApic {
    /// The ID given at creation (restored by a hardware reset).
    initial_id: u8,
    id: u8,
    base_msr: u64,
    clock: Arc<dyn Clock>,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Bitmap,
    tmr: Bitmap,
    irr: Bitmap,
    /// ESR as last latched by a write.
    esr: u32,
    /// Errors collected since.
    esr_pending: u32,
    icr_lo: u32,
    icr_hi: u32,
    lvt: [u32; 6],
    timer_initial: u32,
    timer_dcr: u32,
    /// Start of the current timer period (ns), when the one-shot/periodic timer runs.
    timer_start: Option<u64>,
    tsc_deadline: u64,
    tsc_deadline_ns: Option<u64>,
    nmi: bool,
    init: bool,
    sipi: Option<u8>,
    /// The CPU is in wait-for-SIPI (an AP after power-on, any CPU after INIT until it takes
    /// a Startup IPI). Startup IPIs arriving at other times are ignored (SDM 10.4.4.1);
    /// latching them would restart a CPU at a stale vector on its next INIT.
    wait_for_sipi: bool,
    extint: bool,
}

impl std::fmt::Debug for LocalApic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApic")
            .field("id", &self.id)
            .field("base_msr", &format_args!("{:#x}", self.base_msr))
            .field("svr", &format_args!("{:#x}", self.svr))
            .field("tpr", &self.tpr)
            .field("irr", &self.irr)
            .field("isr", &self.isr)
            .finish()
    }
}

impl LocalApic {
    /// The local APIC of the vCPU with APIC ID `apic_id` (0 = the BSP), timing on `clock`.
    pub fn new(apic_id: u8, clock: Arc<dyn Clock>) -> Self {
        let mut apic = LocalApic {
            initial_id: apic_id,
            id: apic_id,
            base_msr: 0,
            clock,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            isr: Bitmap::default(),
            tmr: Bitmap::default(),
            irr: Bitmap::default(),
            esr: 0,
            esr_pending: 0,
            icr_lo: 0,
            icr_hi: 0,
            lvt: [LVT_MASK; 6],
            timer_initial: 0,
            timer_dcr: 0,
            timer_start: None,
            tsc_deadline: 0,
            tsc_deadline_ns: None,
            nmi: false,
            init: false,
            sipi: None,
            wait_for_sipi: false,
            extint: false,
        };
        apic.reset();
        apic
    }

    /// Power-on / hardware reset: IA32_APIC_BASE back to 0xFEE00000 enabled (BSP flag for
    /// APIC ID 0), the ID as created, registers as after INIT, nothing pending.
    pub fn reset(&mut self) {
        self.id = self.initial_id;
        self.base_msr = LAPIC_BASE
            | APIC_BASE_ENABLE
            | if self.initial_id == 0 {
                APIC_BASE_BSP
            } else {
                0
            };
        self.init_reset();
        self.nmi = false;
        self.init = false;
        self.sipi = None;
        self.wait_for_sipi = self.initial_id != 0;
        self.extint = false;
    }

    /// The INIT reset (SDM 10.4.7.3): everything but the APIC ID and IA32_APIC_BASE returns to
    /// its power-up value; pending IRR/ISR/TMR are lost. Pending NMI/INIT/SIPI flags are left
    /// for hm.
    pub fn init_reset(&mut self) {
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = u32::MAX;
        self.svr = 0xff;
        self.isr = Bitmap::default();
        self.tmr = Bitmap::default();
        self.irr = Bitmap::default();
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_lo = 0;
        self.icr_hi = 0;
        self.lvt = [LVT_MASK; 6];
        self.timer_initial = 0;
        self.timer_dcr = 0;
        self.timer_start = None;
        self.tsc_deadline = 0;
        self.tsc_deadline_ns = None;
        self.extint = false;
    }

    /// The APIC ID (register 0x20 bits 31-24).
    pub fn apic_id(&self) -> u8 {
        self.id
    }

    /// IA32_APIC_BASE bit 11.
    pub fn is_enabled(&self) -> bool {
        self.base_msr & APIC_BASE_ENABLE != 0
    }

    /// SVR bit 8.
    pub fn is_software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// Guest-physical base of the register page.
    pub fn mmio_base(&self) -> u64 {
        self.base_msr & APIC_BASE_ADDR
    }

    /// IA32_APIC_BASE.
    pub fn base_msr(&self) -> u64 {
        self.base_msr
    }

    /// Write IA32_APIC_BASE: relocation and global enable/disable. The BSP flag is read-only.
    /// Disabling resets the registers as INIT does; x2APIC mode is refused.
    pub fn set_base_msr(&mut self, value: u64) -> Result<(), ApicBaseError> {
        let allowed = APIC_BASE_ADDR | APIC_BASE_ENABLE | APIC_BASE_BSP;
        if value & !allowed != 0 {
            return Err(ApicBaseError::Reserved(value));
        }
        let was_enabled = self.is_enabled();
        self.base_msr =
            (value & (APIC_BASE_ADDR | APIC_BASE_ENABLE)) | (self.base_msr & APIC_BASE_BSP);
        if was_enabled && !self.is_enabled() {
            self.init_reset();
        }
        Ok(())
    }

    /// CR8 (TPR bits 7-4).
    pub fn get_cr8(&self) -> u64 {
        u64::from(self.tpr >> 4)
    }

    /// Write CR8: TPR = CR8[3:0] << 4.
    pub fn set_cr8(&mut self, cr8: u64) {
        self.tpr = ((cr8 & 0xf) as u8) << 4;
    }

    /// Processor priority (register 0xA0).
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// Arbitration priority (register 0x90): for lowest-priority delivery.
    pub fn arbitration_priority(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        let irrv = self.irr.highest().unwrap_or(0);
        if self.tpr >> 4 >= irrv >> 4 && self.tpr >> 4 > isrv >> 4 {
            self.tpr
        } else {
            (self.tpr & 0xf0).max(isrv & 0xf0).max(irrv & 0xf0)
        }
    }

    // ---- destination matching -------------------------------------------------------

    /// Does a message with destination `dest` in mode `mode` address this APIC? 0xFF is the
    /// broadcast in both modes; logical destinations use the flat (DFR model 0xF: LDR bitmap
    /// AND dest) or cluster (model 0x0: cluster ID in bits 7-4 equal, member bits AND) model.
    pub fn matches_destination(&self, dest: u32, mode: DestMode) -> bool {
        let dest = (dest & 0xff) as u8;
        if dest == 0xff {
            return true;
        }
        match mode {
            DestMode::Physical => dest == self.id,
            DestMode::Logical => {
                let ldr = (self.ldr >> 24) as u8;
                if self.dfr >> 28 == 0xf {
                    ldr & dest != 0
                } else {
                    ldr >> 4 == dest >> 4 && ldr & dest & 0x0f != 0
                }
            }
        }
    }

    /// Is this APIC a target of `msg`, shorthand included (`msg.source` is the sender's
    /// APIC ID)? A globally disabled APIC is never a target.
    pub fn is_target(&self, msg: &ApicMessage) -> bool {
        if !self.is_enabled() {
            return false;
        }
        match msg.shorthand {
            Shorthand::None => self.matches_destination(msg.dest, msg.dest_mode),
            Shorthand::SelfOnly => msg.source == u32::from(self.id),
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => msg.source != u32::from(self.id),
        }
    }

    // ---- interrupt acceptance and delivery ------------------------------------------

    /// Accept a message this APIC is a target of.
    pub fn accept(&mut self, msg: &ApicMessage) -> Accepted {
        if !self.is_enabled() {
            return Accepted::Discarded;
        }
        match msg.delivery {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                if !self.is_software_enabled() {
                    return Accepted::Discarded;
                }
                if self.set_irr(msg.vector, msg.trigger == TriggerMode::Level) {
                    Accepted::Interrupt
                } else {
                    Accepted::Discarded
                }
            }
            DeliveryMode::Nmi => {
                self.nmi = true;
                Accepted::Nmi
            }
            DeliveryMode::Init => {
                if msg.trigger == TriggerMode::Level && !msg.level {
                    return Accepted::Discarded;
                }
                self.init = true;
                self.wait_for_sipi = true;
                Accepted::Init
            }
            DeliveryMode::Startup => {
                if !self.wait_for_sipi {
                    return Accepted::Discarded;
                }
                self.sipi = Some(msg.vector);
                Accepted::Startup
            }
            DeliveryMode::ExtInt => {
                self.extint = true;
                Accepted::ExtInt
            }
            DeliveryMode::Smi => Accepted::Discarded,
        }
    }

    /// Put `vector` in IRR (TMR per trigger); vectors 0-15 are illegal and raise an error.
    fn set_irr(&mut self, vector: u8, level: bool) -> bool {
        if vector < 16 {
            self.error(ESR_RECV_ILLEGAL_VECTOR);
            return false;
        }
        self.irr.set(vector);
        if level {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
        true
    }

    /// Record an APIC error and signal the error LVT.
    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        let vector = lvt as u8;
        // An illegal error vector is dropped rather than reported again (no recursion).
        if lvt & LVT_MASK == 0 && vector >= 16 {
            self.irr.set(vector);
            self.tmr.clear(vector);
        }
    }

    /// Deliver a local (LVT) interrupt: timer, error.
    fn fire_lvt(&mut self, idx: usize) -> bool {
        let lvt = self.lvt[idx];
        if lvt & LVT_MASK != 0 || !self.is_software_enabled() {
            return false;
        }
        self.set_irr(lvt as u8, false)
    }

    /// The highest IRR vector whose priority class beats PPR, if the APIC is enabled.
    pub fn pending_interrupt(&self) -> Option<u8> {
        if !self.is_enabled() || !self.is_software_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// The CPU took `vector` (from [`LocalApic::pending_interrupt`]): IRR -> ISR. TMR keeps
    /// the trigger mode for the EOI.
    pub fn acknowledge(&mut self, vector: u8) {
        self.irr.clear(vector);
        self.isr.set(vector);
    }

    /// End of interrupt: retire the highest in-service vector.
    fn eoi(&mut self) -> Option<LapicAction> {
        let v = self.isr.highest()?;
        self.isr.clear(v);
        self.tmr.test(v).then_some(LapicAction::Eoi(v))
    }

    /// Take a pending NMI.
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi)
    }

    /// Take a pending INIT.
    pub fn take_init(&mut self) -> bool {
        std::mem::take(&mut self.init)
    }

    /// Take a pending startup IPI: its vector (the AP starts at vector * 0x1000).
    pub fn take_sipi(&mut self) -> Option<u8> {
        let v = self.sipi.take();
        if v.is_some() {
            self.wait_for_sipi = false;
        }
        v
    }

    /// Take a pending ExtINT message (the vector comes from the 8259's INTA).
    pub fn take_extint(&mut self) -> bool {
        std::mem::take(&mut self.extint)
    }

    /// LINT0 is unmasked, in ExtINT mode, on an enabled APIC: the PIC's INTR is delivered
    /// through it.
    pub fn lint0_accepts_extint(&self) -> bool {
        let lvt = self.lvt[LVT_LINT0];
        self.is_enabled()
            && self.is_software_enabled()
            && lvt & LVT_MASK == 0
            && (lvt >> 8) & 7 == 7
    }

    /// Where the 8259's INTR goes (see [`PicRoute`]).
    pub fn pic_route(&self) -> PicRoute {
        if !self.is_enabled() || !self.is_software_enabled() {
            PicRoute::Direct
        } else if self.lint0_accepts_extint() {
            PicRoute::Lint0
        } else {
            PicRoute::Blocked
        }
    }

    /// LINT1 is unmasked in NMI mode: an NMI source wired to LINT1 (the PC's NMI logic)
    /// reaches the CPU as an NMI.
    pub fn lint1_accepts_nmi(&self) -> bool {
        let lvt = self.lvt[LVT_LINT1];
        self.is_enabled() && lvt & LVT_MASK == 0 && (lvt >> 8) & 7 == 4
    }

    // ---- timer ----------------------------------------------------------------------

    fn timer_mode(&self) -> u32 {
        (self.lvt[LVT_TIMER] >> 17) & 3
    }

    /// log2 of the divide configuration: 0b000 -> /2 ... 0b110 -> /128, 0b111 -> /1.
    fn timer_shift(&self) -> u32 {
        let v = (self.timer_dcr & 3) | ((self.timer_dcr >> 1) & 4);
        (v + 1) & 7
    }

    fn timer_period(&self) -> u64 {
        u64::from(self.timer_initial) << self.timer_shift()
    }

    /// Virtual time (ns) at which [`LocalApic::timer_expired`] must run, if the timer is armed.
    pub fn timer_deadline(&self) -> Option<u64> {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return self.tsc_deadline_ns;
        }
        let start = self.timer_start?;
        Some(start.saturating_add(self.expiry_period()))
    }

    /// The programmed period, clamped to [`MIN_PERIODIC_NS`] in periodic mode.
    fn expiry_period(&self) -> u64 {
        if self.timer_mode() == TIMER_PERIODIC {
            self.timer_period().max(MIN_PERIODIC_NS)
        } else {
            self.timer_period()
        }
    }

    /// Let the timer expire if its deadline has passed at `now`: sets IRR for the LVT timer
    /// vector (unless masked) and re-arms a periodic timer (missed periods coalesce). Returns
    /// true when an interrupt was raised.
    pub fn timer_expired(&mut self, now: u64) -> bool {
        match self.timer_deadline() {
            Some(d) if d <= now => {}
            _ => return false,
        }
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline_ns = None;
            self.tsc_deadline = 0;
        } else if self.timer_mode() == TIMER_PERIODIC {
            let period = self.expiry_period().max(1);
            if let Some(start) = self.timer_start {
                let periods = (now - start) / period;
                self.timer_start = Some(start + periods * period);
            }
        } else {
            self.timer_start = None;
        }
        self.fire_lvt(LVT_TIMER)
    }

    fn timer_current(&self) -> u32 {
        if self.timer_mode() == TIMER_TSC_DEADLINE || self.timer_initial == 0 {
            return 0;
        }
        let Some(start) = self.timer_start else {
            return 0;
        };
        let ticks = self.clock.now_ns().saturating_sub(start) >> self.timer_shift();
        let initial = u64::from(self.timer_initial);
        if self.timer_mode() == TIMER_PERIODIC {
            (initial - ticks % initial) as u32
        } else {
            initial.saturating_sub(ticks) as u32
        }
    }

    /// IA32_TSC_DEADLINE as the guest reads it (0 when not armed or not in TSC-deadline mode).
    pub fn tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline
        } else {
            0
        }
    }

    /// Write IA32_TSC_DEADLINE. `guest_tsc` is the guest's TSC now, `tsc_hz` its frequency.
    /// Ignored outside TSC-deadline mode; 0 disarms; a deadline in the past fires at once.
    pub fn write_tsc_deadline(&mut self, value: u64, guest_tsc: u64, tsc_hz: u64) {
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline = value;
        if value == 0 {
            self.tsc_deadline_ns = None;
            return;
        }
        let now = self.clock.now_ns();
        let ticks = u128::from(value.saturating_sub(guest_tsc));
        let ns = (ticks * 1_000_000_000).div_ceil(u128::from(tsc_hz.max(1)));
        self.tsc_deadline_ns = Some(now.saturating_add(u64::try_from(ns).unwrap_or(u64::MAX)));
    }

    // ---- register access ------------------------------------------------------------

    fn read_reg(&mut self, reg: u32) -> u32 {
        match reg {
            REG_ID => u32::from(self.id) << 24,
            REG_VERSION => LAPIC_VERSION,
            REG_TPR => u32::from(self.tpr),
            REG_APR => u32::from(self.arbitration_priority()),
            REG_PPR => u32::from(self.ppr()),
            REG_EOI | REG_RRD => 0,
            REG_LDR => self.ldr,
            REG_DFR => self.dfr | 0x0fff_ffff,
            REG_SVR => self.svr,
            0x100..=0x170 => self.isr.0[((reg - REG_ISR) >> 4) as usize],
            0x180..=0x1f0 => self.tmr.0[((reg - REG_TMR) >> 4) as usize],
            0x200..=0x270 => self.irr.0[((reg - REG_IRR) >> 4) as usize],
            REG_ESR => self.esr,
            REG_ICR_LO => self.icr_lo,
            REG_ICR_HI => self.icr_hi,
            REG_LVT_FIRST..=REG_LVT_LAST => self.lvt[((reg - REG_LVT_FIRST) >> 4) as usize],
            REG_TIMER_INITIAL => self.timer_initial,
            REG_TIMER_CURRENT => self.timer_current(),
            REG_TIMER_DCR => self.timer_dcr,
            _ => {
                self.error(ESR_ILLEGAL_REGISTER);
                0
            }
        }
    }

    fn write_reg(&mut self, reg: u32, val: u32) -> Option<LapicAction> {
        match reg {
            REG_ID => self.id = (val >> 24) as u8,
            REG_TPR => self.tpr = val as u8,
            REG_EOI => return self.eoi(),
            REG_LDR => self.ldr = val & 0xff00_0000,
            REG_DFR => self.dfr = val | 0x0fff_ffff,
            REG_SVR => {
                self.svr = val & SVR_VALID;
                if !self.is_software_enabled() {
                    // Software disable masks every LVT entry.
                    for l in &mut self.lvt {
                        *l |= LVT_MASK;
                    }
                }
            }
            REG_ESR => {
                // Write-then-read: a write latches the errors seen since the last one.
                self.esr = std::mem::take(&mut self.esr_pending);
            }
            REG_ICR_LO => {
                self.icr_lo = val & ICR_LO_VALID;
                return self.send_ipi();
            }
            REG_ICR_HI => self.icr_hi = val & 0xff00_0000,
            REG_LVT_FIRST..=REG_LVT_LAST => {
                let idx = ((reg - REG_LVT_FIRST) >> 4) as usize;
                let mut v = val & LVT_VALID[idx];
                if !self.is_software_enabled() {
                    v |= LVT_MASK;
                }
                let old_mode = self.timer_mode();
                self.lvt[idx] = v;
                if idx == LVT_TIMER && old_mode != self.timer_mode() {
                    // Switching between counting and TSC-deadline disarms the timer.
                    let leaving_or_entering_tsc =
                        old_mode == TIMER_TSC_DEADLINE || self.timer_mode() == TIMER_TSC_DEADLINE;
                    if leaving_or_entering_tsc {
                        self.timer_start = None;
                        self.timer_initial = 0;
                        self.tsc_deadline = 0;
                        self.tsc_deadline_ns = None;
                    }
                }
            }
            REG_TIMER_INITIAL => {
                if self.timer_mode() != TIMER_TSC_DEADLINE {
                    self.timer_initial = val;
                    self.timer_start = (val != 0).then(|| self.clock.now_ns());
                }
            }
            REG_TIMER_DCR => self.timer_dcr = val & 0xb,
            // Read-only registers ignore writes.
            REG_VERSION | REG_APR | REG_PPR | REG_RRD | 0x100..=0x270 | REG_TIMER_CURRENT => {}
            _ => self.error(ESR_ILLEGAL_REGISTER),
        }
        None
    }

    /// Build the IPI the ICR describes.
    fn send_ipi(&mut self) -> Option<LapicAction> {
        let lo = self.icr_lo;
        let vector = lo as u8;
        // Delivery mode 3 (reserved) sends nothing.
        let delivery = DeliveryMode::from_bits(lo >> 8)?;
        if matches!(delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return None;
        }
        let shorthand = match (lo >> 18) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        };
        let trigger = if lo & (1 << 15) != 0 {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        };
        Some(LapicAction::SendIpi(ApicMessage {
            dest: self.icr_hi >> 24,
            dest_mode: if lo & (1 << 11) != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            delivery,
            vector,
            trigger,
            // Edge-triggered messages are always "assert".
            level: lo & (1 << 14) != 0 || trigger == TriggerMode::Edge,
            shorthand,
            source: u32::from(self.id),
        }))
    }

    /// MMIO read at `offset` in the APIC page. Bytes 4-15 of each 16-byte slot read 0.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut cached: Option<(u64, u32)> = None;
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.wrapping_add(i as u64) & 0xfff;
            let lane = at & 0xf;
            if lane >= 4 {
                *b = 0;
                continue;
            }
            let reg = at & 0xff0;
            let val = match cached {
                Some((r, v)) if r == reg => v,
                _ => {
                    let v = self.read_reg(reg as u32);
                    cached = Some((reg, v));
                    v
                }
            };
            *b = (val >> (8 * lane)) as u8;
        }
    }

    /// MMIO write at `offset` in the APIC page (see the module doc for what hm does with the
    /// result).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<LapicAction> {
        let offset = offset & 0xfff;
        if offset & 0xf != 0 || data.is_empty() {
            return None;
        }
        let mut bytes = [0u8; 4];
        for (d, s) in bytes.iter_mut().zip(data) {
            *d = *s;
        }
        self.write_reg(offset as u32, u32::from_le_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdm::ManualClock;

    fn apic(id: u8) -> (Arc<ManualClock>, LocalApic) {
        let clock = Arc::new(ManualClock::new(1_000));
        let a = LocalApic::new(id, clock.clone());
        (clock, a)
    }

    fn rd(a: &mut LocalApic, reg: u64) -> u32 {
        let mut d = [0u8; 4];
        a.read(reg, &mut d);
        u32::from_le_bytes(d)
    }

    fn wr(a: &mut LocalApic, reg: u64, v: u32) -> Option<LapicAction> {
        a.write(reg, &v.to_le_bytes())
    }

    fn enabled(id: u8) -> (Arc<ManualClock>, LocalApic) {
        let (c, mut a) = apic(id);
        wr(&mut a, 0xf0, 0x1ff);
        (c, a)
    }

    fn fixed(vector: u8, level: bool) -> ApicMessage {
        ApicMessage {
            dest: 0,
            dest_mode: DestMode::Physical,
            delivery: DeliveryMode::Fixed,
            vector,
            trigger: if level {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
            level: true,
            shorthand: Shorthand::None,
            source: 0,
        }
    }

    #[test]
    fn power_on_state() {
        let (_, mut a) = apic(0);
        assert_eq!(rd(&mut a, 0x30), 0x0005_0014);
        assert_eq!(rd(&mut a, 0x20), 0);
        assert_eq!(a.base_msr(), 0xfee0_0900);
        assert_eq!(rd(&mut a, 0xf0), 0xff);
        assert_eq!(rd(&mut a, 0xe0), 0xffff_ffff);
        for lvt in (0x320..=0x370).step_by(0x10) {
            assert_eq!(rd(&mut a, lvt), 0x1_0000, "LVT {lvt:#x} masked");
        }
        let (_, b) = apic(3);
        assert_eq!(b.base_msr(), 0xfee0_0800, "AP: no BSP flag");
        assert_eq!(b.apic_id(), 3);
    }

    #[test]
    fn one_shot_timer_with_divide_by_16() {
        let (clock, mut a) = enabled(0);
        wr(&mut a, 0x3e0, 0x3); // divide by 16
        wr(&mut a, 0x320, 0x40); // one-shot, vector 0x40
        wr(&mut a, 0x380, 1000);
        let start = clock.now_ns();
        assert_eq!(a.timer_deadline(), Some(start + 16_000));
        clock.advance(8_000);
        assert_eq!(rd(&mut a, 0x390), 500);
        assert!(!a.timer_expired(clock.now_ns()), "too early");
        clock.advance(8_000);
        assert_eq!(rd(&mut a, 0x390), 0);
        assert!(a.timer_expired(clock.now_ns()));
        assert_eq!(a.pending_interrupt(), Some(0x40));
        assert_eq!(a.timer_deadline(), None, "one-shot is done");
        assert_eq!(rd(&mut a, 0x380), 1000, "initial count kept");
    }

    #[test]
    fn periodic_timer_reloads_and_coalesces() {
        const P: u64 = 200_000;
        let (clock, mut a) = enabled(0);
        wr(&mut a, 0x3e0, 0xb); // divide by 1
        wr(&mut a, 0x320, 0x2_0031); // periodic, vector 0x31
        wr(&mut a, 0x380, P as u32);
        let start = clock.now_ns();
        for k in 1..=3 {
            let d = a.timer_deadline().unwrap();
            assert_eq!(d, start + k * P);
            clock.set(d);
            assert!(a.timer_expired(d));
            let v = a.pending_interrupt().unwrap();
            a.acknowledge(v);
            assert_eq!(wr(&mut a, 0xb0, 0), None);
        }
        clock.set(start + 3 * P + 40);
        assert_eq!(rd(&mut a, 0x390), (P - 40) as u32);
        // Late by several periods: one interrupt, next deadline on the grid.
        clock.set(start + 10 * P + 50);
        assert!(a.timer_expired(clock.now_ns()));
        assert_eq!(a.timer_deadline(), Some(start + 11 * P));
        // Masked: still counts, no interrupt.
        a.acknowledge(0x31);
        wr(&mut a, 0xb0, 0);
        wr(&mut a, 0x320, 0x3_0031);
        clock.set(start + 11 * P);
        assert!(!a.timer_expired(clock.now_ns()));
        assert_eq!(a.pending_interrupt(), None);
        // Writing 0 stops it.
        wr(&mut a, 0x380, 0);
        assert_eq!(a.timer_deadline(), None);
        // A tiny periodic count is clamped for expiry, not for the count register.
        wr(&mut a, 0x380, 10);
        let now = clock.now_ns();
        assert_eq!(a.timer_deadline(), Some(now + MIN_PERIODIC_NS));
        clock.advance(3);
        assert_eq!(rd(&mut a, 0x390), 7);
    }

    #[test]
    fn divide_configurations() {
        let (_, mut a) = enabled(0);
        for (dcr, shift) in [
            (0x0, 1),
            (0x1, 2),
            (0x2, 3),
            (0x3, 4),
            (0x8, 5),
            (0x9, 6),
            (0xa, 7),
            (0xb, 0),
        ] {
            wr(&mut a, 0x3e0, dcr);
            assert_eq!(a.timer_shift(), shift, "dcr {dcr:#x}");
            assert_eq!(rd(&mut a, 0x3e0), dcr);
        }
    }

    #[test]
    fn tsc_deadline_mode() {
        let (clock, mut a) = enabled(0);
        a.write_tsc_deadline(5_000, 0, 1_000_000_000);
        assert_eq!(a.tsc_deadline(), 0, "ignored outside TSC-deadline mode");
        wr(&mut a, 0x320, 0x4_0050);
        wr(&mut a, 0x380, 1234);
        assert_eq!(
            rd(&mut a, 0x380),
            0,
            "initial count ignored in TSC-deadline mode"
        );
        // TSC at 2 GHz: 4000 ticks ahead = 2000 ns.
        a.write_tsc_deadline(10_000, 6_000, 2_000_000_000);
        assert_eq!(a.tsc_deadline(), 10_000);
        let now = clock.now_ns();
        assert_eq!(a.timer_deadline(), Some(now + 2_000));
        clock.advance(2_000);
        assert!(a.timer_expired(clock.now_ns()));
        assert_eq!(a.pending_interrupt(), Some(0x50));
        assert_eq!(a.tsc_deadline(), 0, "cleared on expiry");
        a.write_tsc_deadline(1, 6_000, 2_000_000_000);
        assert_eq!(
            a.timer_deadline(),
            Some(clock.now_ns()),
            "past deadline fires at once"
        );
        a.write_tsc_deadline(0, 6_000, 2_000_000_000);
        assert_eq!(a.timer_deadline(), None);
    }

    #[test]
    fn tpr_ppr_gating_and_cr8() {
        let (_, mut a) = enabled(0);
        a.accept(&fixed(0x45, false));
        wr(&mut a, 0x80, 0x50);
        assert_eq!(a.pending_interrupt(), None, "class 4 <= TPR class 5");
        wr(&mut a, 0x80, 0x45);
        assert_eq!(a.pending_interrupt(), None, "same class is blocked too");
        a.set_cr8(3);
        assert_eq!(rd(&mut a, 0x80), 0x30);
        assert_eq!(a.get_cr8(), 3);
        assert_eq!(a.pending_interrupt(), Some(0x45));
        assert_eq!(rd(&mut a, 0xa0), 0x30, "PPR = TPR with nothing in service");
    }

    #[test]
    fn isr_nesting_and_eoi() {
        let (_, mut a) = enabled(0);
        a.accept(&fixed(0x30, false));
        assert_eq!(a.pending_interrupt(), Some(0x30));
        a.acknowledge(0x30);
        assert_eq!(rd(&mut a, 0xa0), 0x30, "PPR = ISR class");
        a.accept(&fixed(0x50, false));
        assert_eq!(a.pending_interrupt(), Some(0x50), "higher class nests");
        a.acknowledge(0x50);
        a.accept(&fixed(0x40, false));
        assert_eq!(a.pending_interrupt(), None, "0x40 below in-service 0x50");
        assert_eq!(rd(&mut a, 0x100 + 0x10 * (0x50 / 32)), 1 << (0x50 % 32));
        assert_eq!(rd(&mut a, 0x200 + 0x10 * (0x40 / 32)), 1 << (0x40 % 32));
        assert_eq!(wr(&mut a, 0xb0, 0), None, "edge: no EOI broadcast");
        assert_eq!(a.pending_interrupt(), Some(0x40));
        a.acknowledge(0x40);
        wr(&mut a, 0xb0, 0);
        wr(&mut a, 0xb0, 0);
        assert_eq!(a.ppr(), 0);
        assert_eq!(wr(&mut a, 0xb0, 0), None, "EOI with nothing in service");
    }

    #[test]
    fn level_triggered_eoi_is_broadcast() {
        let (_, mut a) = enabled(0);
        a.accept(&fixed(0x61, true));
        assert_eq!(rd(&mut a, 0x180 + 0x10 * 3), 1 << 1, "TMR bit 0x61");
        let v = a.pending_interrupt().unwrap();
        a.acknowledge(v);
        assert_eq!(wr(&mut a, 0xb0, 0), Some(LapicAction::Eoi(0x61)));
    }

    #[test]
    fn software_disabled_apic() {
        let (_, mut a) = apic(0);
        assert_eq!(a.accept(&fixed(0x40, false)), Accepted::Discarded);
        assert_eq!(a.pending_interrupt(), None);
        wr(&mut a, 0x350, 0x700);
        assert_eq!(
            rd(&mut a, 0x350),
            0x1_0700,
            "LVT stays masked while disabled"
        );
        assert_eq!(a.pic_route(), PicRoute::Direct);
        wr(&mut a, 0xf0, 0x1ff);
        assert_eq!(a.pic_route(), PicRoute::Blocked);
        wr(&mut a, 0x350, 0x700);
        assert!(a.lint0_accepts_extint());
        assert_eq!(a.pic_route(), PicRoute::Lint0);
        wr(&mut a, 0xf0, 0x0ff);
        assert_eq!(rd(&mut a, 0x350), 0x1_0700, "disabling masks LVTs");
        assert_eq!(a.pic_route(), PicRoute::Direct);
        // NMI, INIT, SIPI still accepted.
        let mut m = fixed(0, false);
        m.delivery = DeliveryMode::Nmi;
        assert_eq!(a.accept(&m), Accepted::Nmi);
        assert!(a.take_nmi());
        assert!(!a.take_nmi());
    }

    #[test]
    fn ipi_encoding() {
        let (_, mut a) = enabled(2);
        wr(&mut a, 0x310, 0x0300_0000);
        // INIT level assert.
        let Some(LapicAction::SendIpi(m)) = wr(&mut a, 0x300, 0x0000_c500) else {
            panic!("no IPI")
        };
        assert_eq!(
            m,
            ApicMessage {
                dest: 3,
                dest_mode: DestMode::Physical,
                delivery: DeliveryMode::Init,
                vector: 0,
                trigger: TriggerMode::Level,
                level: true,
                shorthand: Shorthand::None,
                source: 2,
            }
        );
        // INIT de-assert.
        let Some(LapicAction::SendIpi(m)) = wr(&mut a, 0x300, 0x0000_8500) else {
            panic!("no IPI")
        };
        assert!(!m.level);
        // Startup, vector 0x9a.
        let Some(LapicAction::SendIpi(m)) = wr(&mut a, 0x300, 0x0000_069a) else {
            panic!("no IPI")
        };
        assert_eq!(
            (m.delivery, m.vector, m.trigger),
            (DeliveryMode::Startup, 0x9a, TriggerMode::Edge)
        );
        // Fixed to self; logical lowest priority; NMI to all but self.
        let Some(LapicAction::SendIpi(m)) = wr(&mut a, 0x300, 0x0004_0031) else {
            panic!("no IPI")
        };
        assert_eq!((m.shorthand, m.vector), (Shorthand::SelfOnly, 0x31));
        let Some(LapicAction::SendIpi(m)) = wr(&mut a, 0x300, 0x0000_0941) else {
            panic!("no IPI")
        };
        assert_eq!(
            (m.delivery, m.dest_mode),
            (DeliveryMode::LowestPriority, DestMode::Logical)
        );
        let Some(LapicAction::SendIpi(m)) = wr(&mut a, 0x300, 0x000c_0400) else {
            panic!("no IPI")
        };
        assert_eq!(
            (m.delivery, m.shorthand),
            (DeliveryMode::Nmi, Shorthand::AllExcludingSelf)
        );
        assert_eq!(rd(&mut a, 0x300), 0x000c_0400, "delivery status reads idle");
        // Illegal vector: nothing sent, ESR bit 5 after the write-then-read.
        assert_eq!(wr(&mut a, 0x300, 0x0000_0005), None);
        assert_eq!(rd(&mut a, 0x280), 0);
        wr(&mut a, 0x280, 0);
        assert_eq!(rd(&mut a, 0x280), ESR_SEND_ILLEGAL_VECTOR);
        wr(&mut a, 0x280, 0);
        assert_eq!(rd(&mut a, 0x280), 0);
        // Reserved delivery mode.
        assert_eq!(wr(&mut a, 0x300, 0x0000_0330), None);
    }

    #[test]
    fn sipi_init_extint_acceptance() {
        let (_, mut a) = enabled(1);
        let mut m = fixed(0x9a, false);
        m.delivery = DeliveryMode::Startup;
        assert_eq!(a.accept(&m), Accepted::Startup);
        assert_eq!(a.take_sipi(), Some(0x9a));
        assert_eq!(a.take_sipi(), None);
        // The CPU runs now: another Startup IPI is ignored, also after a later INIT.
        assert_eq!(
            a.accept(&m),
            Accepted::Discarded,
            "SIPI outside wait-for-SIPI"
        );
        m.delivery = DeliveryMode::Init;
        m.trigger = TriggerMode::Level;
        m.level = false;
        assert_eq!(a.accept(&m), Accepted::Discarded, "INIT de-assert");
        assert!(!a.take_init());
        m.level = true;
        assert_eq!(a.accept(&m), Accepted::Init);
        assert!(a.take_init());
        assert_eq!(a.take_sipi(), None, "no stale SIPI after INIT");
        let mut s = fixed(0x9b, false);
        s.delivery = DeliveryMode::Startup;
        assert_eq!(
            a.accept(&s),
            Accepted::Startup,
            "INIT re-arms wait-for-SIPI"
        );
        assert_eq!(a.take_sipi(), Some(0x9b));
        let (_, mut bsp) = enabled(0);
        assert_eq!(
            bsp.accept(&s),
            Accepted::Discarded,
            "the BSP runs from reset"
        );
        m.delivery = DeliveryMode::ExtInt;
        assert_eq!(a.accept(&m), Accepted::ExtInt);
        assert!(a.take_extint());
        // Illegal received vector.
        assert_eq!(a.accept(&fixed(3, false)), Accepted::Discarded);
        wr(&mut a, 0x280, 0);
        assert_eq!(rd(&mut a, 0x280), ESR_RECV_ILLEGAL_VECTOR);
    }

    #[test]
    fn error_lvt_and_illegal_register() {
        let (_, mut a) = enabled(0);
        wr(&mut a, 0x370, 0xfe);
        assert_eq!(rd(&mut a, 0x2f0), 0, "no CMCI LVT on a P4");
        assert_eq!(a.pending_interrupt(), Some(0xfe));
        wr(&mut a, 0x280, 0);
        assert_eq!(rd(&mut a, 0x280), ESR_ILLEGAL_REGISTER);
    }

    #[test]
    fn logical_destination_matching() {
        let (_, mut a) = enabled(5);
        assert!(a.matches_destination(5, DestMode::Physical));
        assert!(!a.matches_destination(4, DestMode::Physical));
        assert!(a.matches_destination(0xff, DestMode::Physical));
        // Flat model: LDR bitmap.
        wr(&mut a, 0xd0, 0x0400_0000);
        assert!(a.matches_destination(0x04, DestMode::Logical));
        assert!(a.matches_destination(0x0f, DestMode::Logical));
        assert!(!a.matches_destination(0x0b, DestMode::Logical));
        assert!(a.matches_destination(0xff, DestMode::Logical));
        // Cluster model: cluster 2, member bit 1.
        wr(&mut a, 0xe0, 0x0fff_ffff);
        assert_eq!(rd(&mut a, 0xe0), 0x0fff_ffff);
        wr(&mut a, 0xd0, 0x2200_0000);
        assert!(a.matches_destination(0x22, DestMode::Logical));
        assert!(a.matches_destination(0x2f, DestMode::Logical));
        assert!(
            !a.matches_destination(0x12, DestMode::Logical),
            "other cluster"
        );
        assert!(
            !a.matches_destination(0x21, DestMode::Logical),
            "other member"
        );
        // Shorthands.
        let mut m = fixed(0x40, false);
        m.source = 5;
        m.shorthand = Shorthand::SelfOnly;
        assert!(a.is_target(&m));
        m.shorthand = Shorthand::AllExcludingSelf;
        assert!(!a.is_target(&m));
        m.source = 1;
        assert!(a.is_target(&m));
    }

    #[test]
    fn apic_base_msr() {
        let (_, mut a) = enabled(0);
        assert!(a.set_base_msr(0xfee0_0900 | APIC_BASE_EXTD).is_err());
        assert!(a.set_base_msr(0xfee0_0901).is_err());
        a.set_base_msr(0xfed0_0800).unwrap();
        assert_eq!(a.mmio_base(), 0xfed0_0000);
        assert_eq!(a.base_msr(), 0xfed0_0900, "BSP flag is read-only");
        a.accept(&fixed(0x40, false));
        a.set_base_msr(0xfed0_0000).unwrap();
        assert!(!a.is_enabled());
        assert_eq!(a.pic_route(), PicRoute::Direct);
        assert_eq!(a.accept(&fixed(0x41, false)), Accepted::Discarded);
        a.set_base_msr(0xfee0_0800).unwrap();
        assert_eq!(a.pending_interrupt(), None, "disable reset the APIC");
        assert!(!a.is_software_enabled());
    }

    #[test]
    fn narrow_and_misaligned_accesses() {
        let (_, mut a) = enabled(0);
        a.write(0x80, &[0x7f]);
        assert_eq!(rd(&mut a, 0x80), 0x7f);
        a.write(0x81, &[0x10]);
        assert_eq!(rd(&mut a, 0x80), 0x7f, "misaligned write dropped");
        let mut d = [0xaau8; 8];
        a.read(0x30, &mut d);
        assert_eq!(d, [0x14, 0, 0x05, 0, 0, 0, 0, 0]);
        let mut b = [0u8; 1];
        a.read(0x32, &mut b);
        assert_eq!(b, [0x05]);
    }

    #[test]
    fn init_reset_keeps_id_and_base() {
        let (_, mut a) = enabled(7);
        wr(&mut a, 0x20, 0x0900_0000);
        a.set_base_msr(0xfed0_0800).unwrap();
        a.accept(&fixed(0x40, false));
        a.init_reset();
        assert_eq!(a.apic_id(), 9);
        assert_eq!(a.mmio_base(), 0xfed0_0000);
        assert_eq!(rd(&mut a, 0xf0), 0xff);
        assert_eq!(rd(&mut a, 0x200 + 0x20), 0);
        a.reset();
        assert_eq!(a.apic_id(), 7);
        assert_eq!(a.mmio_base(), LAPIC_BASE);
    }

    proptest::proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u32>(), 0u8..6, 1usize..9, 0u64..1_000_000), 0..300)) {
            let clock = Arc::new(ManualClock::new(0));
            let mut a = LocalApic::new(0, clock.clone());
            for (off, val, kind, len, dt) in ops {
                clock.advance(dt);
                let off = u64::from(off);
                match kind {
                    0 => { let mut d = vec![0; len]; a.read(off, &mut d); }
                    1 => { let _ = a.write(off & 0xff0, &val.to_le_bytes()); }
                    2 => { let _ = a.write(off, &vec![val as u8; len]); }
                    3 => {
                        let mut m = fixed(val as u8, val & 0x100 != 0);
                        m.delivery = DeliveryMode::from_bits(val >> 9).unwrap_or(DeliveryMode::Fixed);
                        m.level = val & 0x1000 != 0;
                        let _ = a.accept(&m);
                    }
                    4 => {
                        if let Some(v) = a.pending_interrupt() { a.acknowledge(v); }
                        let _ = a.timer_expired(clock.now_ns());
                    }
                    _ => {
                        let _ = a.set_base_msr(u64::from(val) << 4);
                        a.write_tsc_deadline(u64::from(val), dt, u64::from(val >> 8));
                        a.set_cr8(u64::from(val));
                    }
                }
                let _ = (a.timer_deadline(), a.pic_route(), a.arbitration_priority());
            }
        }
    }
}
