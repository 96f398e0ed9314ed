//! The ACPI power-management function: an Intel 82371AB PIIX4 "Power Management" function
//! (8086:7113), which is what VirtualBox's ACPI device presents at 00:07.0 in its PIIX3
//! machine (DevACPI.cpp) and what SeaBIOS's pciinit configures (piix4_pm_setup: interrupt
//! line 9, PMBA 0x40 = base | 1, PMREGMISC 0x80 = 1, SMBus base 0x90, 0xD2 = 9).
//!
//! PM I/O block (PIIX4 datasheet 7.2; offsets from PMBA, 64 bytes decoded):
//! - +0x00 PM1a_STS (write-1-to-clear) and +0x02 PM1a_EN: TMR (bit 0), GBL (5),
//!   PWRBTN (8), SLPBTN (9), RTC (10), WAK_STS (15).
//! - +0x04 PM1a_CNT: SCI_EN (bit 0), SLP_TYP (12:10), SLP_EN (13, write-only). Writing
//!   SLP_EN with SLP_TYP = [`SLP_TYP_S5`] (the PIIX4's "soft off" encoding 000b, which our
//!   DSDT's \_S5 package names) is a power-off request the VMM sees through a callback and
//!   a polled flag.
//! - +0x08 PM_TMR: 32-bit counter at 3.579545 MHz from the pdm clock (FADT TMR_VAL_EXT);
//!   TMR_STS is set whenever bit 31 toggles, raising the SCI when TMR_EN is set.
//! - +0x20 GPE0_STS / +0x22 GPE0_EN (16 bits each; VirtualBox's GPE0 offset).
//!
//! The SMI command port is the APM control port 0xB2 (with the APM status port 0xB3):
//! writing [`ACPI_ENABLE`] sets SCI_EN, [`ACPI_DISABLE`] clears it, which is the handshake
//! Linux performs when the FADT names an SMI_CMD port. No SMI is ever generated. DEVACTB
//! (0x58) bit 25 (APMC_EN) reads as set, like QEMU without SMM: SeaBIOS's
//! piix4_apmc_smm_setup() then believes SMM is already initialised and never waits for an
//! SMI handler we do not have.
//!
//! The SCI is ISA IRQ 9, level triggered, active high (MADT interrupt source override).

use crate::pci::{regs, PciConfig, PciFunction, PciRegion, PciSpace, INTEL_VENDOR_ID};
use iomio::{BusDevice, SharedDevice};
use parking_lot::Mutex;
use pdm::{Clock, IrqLine, Timer, TimerQueue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// PM timer frequency in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The PM base SeaBIOS programs when fw_cfg offers "etc/table-loader" (and our default).
pub const DEFAULT_PM_BASE: u16 = 0x600;
/// Bytes the PMBA decodes.
pub const PM_IO_SIZE: u64 = 0x40;
/// PM1a event block offset.
pub const PM1_EVT_OFFSET: u16 = 0x00;
/// PM1a control block offset.
pub const PM1_CNT_OFFSET: u16 = 0x04;
/// PM timer offset.
pub const PM_TMR_OFFSET: u16 = 0x08;
/// GPE0 block offset.
pub const GPE0_OFFSET: u16 = 0x20;
/// GPE0 block length (status + enable, 16 bits each).
pub const GPE0_LEN: u16 = 4;
/// The APM control port, our SMI_CMD.
pub const APM_CNT_PORT: u16 = 0xb2;
/// SMI_CMD value that enables ACPI mode.
pub const ACPI_ENABLE: u8 = 0xf1;
/// SMI_CMD value that disables ACPI mode.
pub const ACPI_DISABLE: u8 = 0xf0;
/// SLP_TYP value of S5 (soft off) in the PIIX4 encoding.
pub const SLP_TYP_S5: u8 = 0;
/// Device ID of the PIIX4 PM function.
pub const PIIX4_PM_DEVICE_ID: u16 = 0x7113;

const TMR_STS: u16 = 1 << 0;
const GBL_STS: u16 = 1 << 5;
const PWRBTN_STS: u16 = 1 << 8;
const SLPBTN_STS: u16 = 1 << 9;
const RTC_STS: u16 = 1 << 10;
const WAK_STS: u16 = 1 << 15;
const PM1_STS_MASK: u16 = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | WAK_STS;
const PM1_EN_MASK: u16 = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;
const SCI_EN: u16 = 1 << 0;
const SLP_EN: u16 = 1 << 13;
/// PM1_CNT bits that read back (SLP_EN is write-only).
const PM1_CNT_MASK: u16 = 0x1c07;

const PMBA: u8 = 0x40;
const DEVACTB: u8 = 0x58;
const PMREGMISC: u8 = 0x80;
const SMBBA: u8 = 0x90;
const SMBHSTCFG: u8 = 0xd2;

/// Callback for a power-off (S5) request.
pub type PowerOffCallback = Arc<dyn Fn() + Send + Sync>;

/// Ticks of the PM timer at virtual time `ns`.
fn ticks_at(ns: u64) -> u64 {
    ((u128::from(ns) * u128::from(PM_TIMER_HZ)) / 1_000_000_000) as u64
}

/// First virtual time at which the timer reaches `ticks`.
fn ns_for_ticks(ticks: u64) -> u64 {
    let ns = (u128::from(ticks) * 1_000_000_000).div_ceil(u128::from(PM_TIMER_HZ));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The PM registers, their SCI and the APM ports. Serves the PM I/O block (registered by
/// the PCI bus at PMBA) and the APM ports 0xB2-0xB3 (registered by the VMM).
pub struct PmRegisters {
    clock: Arc<dyn Clock>,
    sci: IrqLine,
    sci_level: bool,
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe0_sts: u16,
    gpe0_en: u16,
    apm_cnt: u8,
    apm_sts: u8,
    /// Timer bit-31 epoch last folded into TMR_STS.
    tmr_epoch: u64,
    timer: Option<Timer>,
    poweroff: Arc<AtomicBool>,
    on_poweroff: Option<PowerOffCallback>,
}

impl std::fmt::Debug for PmRegisters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PmRegisters")
            .field("pm1_sts", &self.pm1_sts)
            .field("pm1_en", &self.pm1_en)
            .field("pm1_cnt", &self.pm1_cnt)
            .finish()
    }
}

impl PmRegisters {
    fn new(clock: Arc<dyn Clock>, sci: IrqLine) -> Self {
        let epoch = ticks_at(clock.now_ns()) >> 31;
        PmRegisters {
            clock,
            sci,
            sci_level: false,
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: 0,
            gpe0_sts: 0,
            gpe0_en: 0,
            apm_cnt: 0,
            apm_sts: 0,
            tmr_epoch: epoch,
            timer: None,
            poweroff: Arc::new(AtomicBool::new(false)),
            on_poweroff: None,
        }
    }

    /// The PM timer value now.
    pub fn pm_timer(&self) -> u32 {
        ticks_at(self.clock.now_ns()) as u32
    }

    /// True when the OS has switched to ACPI mode (SCI_EN).
    pub fn acpi_enabled(&self) -> bool {
        self.pm1_cnt & SCI_EN != 0
    }

    /// Press the power button (VBoxManage controlvm acpipowerbutton): PWRBTN_STS, SCI.
    pub fn press_power_button(&mut self) {
        self.pm1_sts |= PWRBTN_STS;
        self.update();
    }

    /// Set general-purpose event status bits (e.g. hotplug) and raise the SCI if enabled.
    pub fn raise_gpe(&mut self, bits: u16) {
        self.gpe0_sts |= bits;
        self.update();
    }

    /// Fold bit-31 transitions of the timer into TMR_STS.
    fn sample_timer(&mut self) {
        let epoch = ticks_at(self.clock.now_ns()) >> 31;
        if epoch != self.tmr_epoch {
            self.tmr_epoch = epoch;
            self.pm1_sts |= TMR_STS;
        }
    }

    fn update(&mut self) {
        self.sample_timer();
        let pending =
            (self.pm1_sts & self.pm1_en & PM1_EN_MASK) != 0 || (self.gpe0_sts & self.gpe0_en) != 0;
        let level = pending && self.acpi_enabled();
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set(level);
        }
        // Keep a timer armed for the next bit-31 toggle while TMR_EN asks for the SCI.
        if let Some(t) = &self.timer {
            if self.pm1_en & TMR_STS != 0 {
                t.arm_at(ns_for_ticks((self.tmr_epoch + 1) << 31));
            } else {
                t.disarm();
            }
        }
    }

    fn write_pm1_cnt_high(&mut self, v: u8) {
        let v16 = u16::from(v) << 8;
        self.pm1_cnt = (self.pm1_cnt & 0x00ff) | (v16 & PM1_CNT_MASK);
        if v16 & SLP_EN != 0 {
            let typ = ((v16 >> 10) & 7) as u8;
            if typ == SLP_TYP_S5 {
                tracing::info!("ACPI: guest entered S5 (power off)");
                self.poweroff.store(true, Ordering::SeqCst);
                if let Some(cb) = &self.on_poweroff {
                    cb();
                }
            } else {
                // Sleep states other than S5 are not offered in the DSDT; a guest that
                // tries one anyway keeps running, as if it woke at once.
                tracing::warn!("ACPI: unsupported sleep type {typ}, ignoring");
                self.pm1_sts |= WAK_STS;
            }
        }
    }

    fn read_byte(&mut self, off: u64, timer: u32) -> u8 {
        let b = |v: u16, hi: bool| if hi { (v >> 8) as u8 } else { v as u8 };
        match off {
            0 | 1 => b(self.pm1_sts, off == 1),
            2 | 3 => b(self.pm1_en, off == 3),
            4 | 5 => b(self.pm1_cnt, off == 5),
            8..=11 => (timer >> (8 * (off - 8))) as u8,
            0x20 | 0x21 => b(self.gpe0_sts, off == 0x21),
            0x22 | 0x23 => b(self.gpe0_en, off == 0x23),
            _ => 0,
        }
    }

    fn write_byte(&mut self, off: u64, v: u8) {
        let lo = u16::from(v);
        let hi = u16::from(v) << 8;
        match off {
            0 => self.pm1_sts &= !(lo & PM1_STS_MASK),
            1 => self.pm1_sts &= !(hi & PM1_STS_MASK),
            2 => self.pm1_en = (self.pm1_en & 0xff00) | (lo & PM1_EN_MASK),
            3 => self.pm1_en = (self.pm1_en & 0x00ff) | (hi & PM1_EN_MASK),
            4 => self.pm1_cnt = (self.pm1_cnt & 0xff00) | (lo & PM1_CNT_MASK),
            5 => self.write_pm1_cnt_high(v),
            0x20 => self.gpe0_sts &= !lo,
            0x21 => self.gpe0_sts &= !hi,
            0x22 => self.gpe0_en = (self.gpe0_en & 0xff00) | lo,
            0x23 => self.gpe0_en = (self.gpe0_en & 0x00ff) | hi,
            _ => {}
        }
    }

    fn write_apm(&mut self, port: u64, v: u8) {
        if port == u64::from(APM_CNT_PORT) {
            self.apm_cnt = v;
            match v {
                ACPI_ENABLE => self.pm1_cnt |= SCI_EN,
                ACPI_DISABLE => self.pm1_cnt &= !SCI_EN,
                _ => {}
            }
        } else {
            self.apm_sts = v;
        }
    }
}

impl BusDevice for PmRegisters {
    fn read(&mut self, addr: u64, offset: u64, data: &mut [u8]) {
        if (u64::from(APM_CNT_PORT)..u64::from(APM_CNT_PORT) + 2).contains(&addr) {
            data.fill(0xff);
            if let Some(b) = data.first_mut() {
                *b = if addr == u64::from(APM_CNT_PORT) {
                    self.apm_cnt
                } else {
                    self.apm_sts
                };
            }
            return;
        }
        self.sample_timer();
        let timer = self.pm_timer();
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_byte(offset.saturating_add(i as u64), timer);
        }
        self.update();
    }

    fn write(&mut self, addr: u64, offset: u64, data: &[u8]) {
        if (u64::from(APM_CNT_PORT)..u64::from(APM_CNT_PORT) + 2).contains(&addr) {
            if let Some(&v) = data.first() {
                self.write_apm(addr, v);
            }
        } else {
            self.sample_timer();
            for (i, &v) in data.iter().enumerate() {
                self.write_byte(offset.saturating_add(i as u64), v);
            }
        }
        self.update();
    }
}

/// The PIIX4 PM PCI function. Add it to the [`crate::pci::PciBus`] (VirtualBox: 00:07.0);
/// the bus maps the PM I/O block wherever PMBA points while PMREGMISC enables it.
/// Register [`Piix4Pm::registers`] on the port bus at [`APM_CNT_PORT`] with length 2.
pub struct Piix4Pm {
    config: PciConfig,
    regs: Arc<Mutex<PmRegisters>>,
    power_on_base: u16,
}

impl std::fmt::Debug for Piix4Pm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Piix4Pm")
            .field("base", &self.pm_base())
            .finish()
    }
}

impl Piix4Pm {
    /// The PM function. `sci` drives ISA IRQ 9; `timers`, when given, lets TMR_EN raise
    /// the SCI on timer overflow; `pm_base` (0 = none) is programmed into PMBA with I/O
    /// enabled at power-on, as VirtualBox does, so a boot without firmware finds the
    /// block where the FADT says (SeaBIOS reprograms it to the same value).
    pub fn new(
        clock: Arc<dyn Clock>,
        sci: IrqLine,
        timers: Option<&Arc<TimerQueue>>,
        pm_base: u16,
    ) -> Self {
        let regs = Arc::new(Mutex::new(PmRegisters::new(clock, sci)));
        if let Some(q) = timers {
            let weak: Weak<Mutex<PmRegisters>> = Arc::downgrade(&regs);
            let t = q.create(move |_now| {
                if let Some(r) = weak.upgrade() {
                    r.lock().update();
                }
            });
            regs.lock().timer = Some(t);
        }
        let mut config = PciConfig::new(INTEL_VENDOR_ID, PIIX4_PM_DEVICE_ID, 0x06_8000, 0x03);
        config.set_interrupt_pin(1);
        config.set_wmask(regs::COMMAND, 2, 0);
        config.set_wmask(PMBA, 4, 0x0000_ffc0);
        config.set_wmask(PMREGMISC, 1, 0x01);
        config.set_wmask(SMBBA, 4, 0x0000_fff0);
        config.set_wmask(SMBHSTCFG, 1, 0xff);
        let mut dev = Piix4Pm {
            config,
            regs,
            power_on_base: pm_base & 0xffc0,
        };
        dev.power_on();
        dev
    }

    fn power_on(&mut self) {
        self.config.set_u16(regs::COMMAND, regs::CMD_IO);
        self.config.set_u32(PMBA, u32::from(self.power_on_base) | 1);
        self.config
            .set_u8(PMREGMISC, u8::from(self.power_on_base != 0));
        self.config.set_u32(SMBBA, 1);
        self.config.set_u8(SMBHSTCFG, 0);
        // DEVACTB: APMC_EN already set, so SeaBIOS skips its SMM setup.
        self.config.set_u32(DEVACTB, 1 << 25);
        self.config.set_u8(regs::INTERRUPT_LINE, 9);
        let mut r = self.regs.lock();
        r.pm1_sts = 0;
        r.pm1_en = 0;
        r.pm1_cnt = 0;
        r.gpe0_sts = 0;
        r.gpe0_en = 0;
        r.apm_cnt = 0;
        r.apm_sts = 0;
        r.update();
    }

    /// The register block (for the APM port registration and host-side events).
    pub fn registers(&self) -> Arc<Mutex<PmRegisters>> {
        self.regs.clone()
    }

    /// The PM I/O base the guest programmed, if decoding is enabled.
    pub fn pm_base(&self) -> Option<u16> {
        let base = (self.config.read_u32(PMBA) & 0xffc0) as u16;
        (self.config.read_u8(PMREGMISC) & 1 != 0 && base != 0).then_some(base)
    }

    /// Run `f` when the guest powers off through S5.
    pub fn set_poweroff_callback(&self, f: PowerOffCallback) {
        self.regs.lock().on_poweroff = Some(f);
    }

    /// True (once) if the guest requested power-off since the last call.
    pub fn take_poweroff_request(&self) -> bool {
        self.regs.lock().poweroff.swap(false, Ordering::SeqCst)
    }

    /// Press the ACPI power button.
    pub fn press_power_button(&self) {
        self.regs.lock().press_power_button();
    }
}

impl PciFunction for Piix4Pm {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.config.read_bytes(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        self.config.write_bytes(offset, data);
    }

    fn regions(&self) -> Vec<PciRegion> {
        match self.pm_base() {
            Some(base) => vec![PciRegion {
                space: PciSpace::Io,
                base: u64::from(base),
                size: PM_IO_SIZE,
                name: "acpi-pm".into(),
                device: self.regs.clone() as SharedDevice,
            }],
            None => Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.power_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{PciAddress, PciBus};
    use pdm::ManualClock;

    struct Rig {
        clock: Arc<ManualClock>,
        pm: Arc<Mutex<Piix4Pm>>,
        pio: Arc<iomio::Bus>,
        sci: Arc<AtomicBool>,
        queue: Arc<TimerQueue>,
        _bus: Arc<Mutex<PciBus>>,
    }

    fn rig() -> Rig {
        let clock = Arc::new(ManualClock::new(0));
        let queue = TimerQueue::new(clock.clone());
        let sci = Arc::new(AtomicBool::new(false));
        let s = sci.clone();
        let sink: Arc<dyn pdm::IrqSink> =
            Arc::new(move |_g: u32, lv: bool| s.store(lv, Ordering::SeqCst));
        let pm = Piix4Pm::new(clock.clone(), IrqLine::new(sink, 9), Some(&queue), 0x600);
        let regs = pm.registers();
        let pm = Arc::new(Mutex::new(pm));
        let pio = Arc::new(iomio::Bus::new());
        let mmio = Arc::new(iomio::Bus::new());
        pio.insert(u64::from(APM_CNT_PORT), 2, "apm", regs).unwrap();
        let mut bus = PciBus::new(pio.clone(), mmio);
        bus.add_function(PciAddress::new(7, 0), pm.clone()).unwrap();
        Rig {
            clock,
            pm,
            pio,
            sci,
            queue,
            _bus: bus.attach().unwrap(),
        }
    }

    fn inw(pio: &iomio::Bus, port: u64) -> u16 {
        let mut d = [0u8; 2];
        pio.read(port, &mut d);
        u16::from_le_bytes(d)
    }

    fn inl(pio: &iomio::Bus, port: u64) -> u32 {
        let mut d = [0u8; 4];
        pio.read(port, &mut d);
        u32::from_le_bytes(d)
    }

    fn outw(pio: &iomio::Bus, port: u64, v: u16) {
        pio.write(port, &v.to_le_bytes());
    }

    fn cfg_write(pio: &iomio::Bus, reg: u8, v: u32) {
        pio.write(0xcf8, &(0x8000_3800u32 | u32::from(reg)).to_le_bytes());
        pio.write(0xcfc, &v.to_le_bytes());
    }

    #[test]
    fn s5_write_requests_poweroff() {
        let r = rig();
        let hit = Arc::new(AtomicBool::new(false));
        let h = hit.clone();
        r.pm.lock()
            .set_poweroff_callback(Arc::new(move || h.store(true, Ordering::SeqCst)));
        // SLP_TYP = 5 is not S5 here: no power-off.
        outw(&r.pio, 0x604, (5 << 10) | SLP_EN);
        assert!(!r.pm.lock().take_poweroff_request());
        outw(&r.pio, 0x604, (u16::from(SLP_TYP_S5) << 10) | SLP_EN);
        assert!(hit.load(Ordering::SeqCst));
        assert!(r.pm.lock().take_poweroff_request());
        assert_eq!(inw(&r.pio, 0x604) & SLP_EN, 0, "SLP_EN reads as 0");
    }

    #[test]
    fn pm_timer_counts_at_3_579545_mhz() {
        let r = rig();
        let t0 = inl(&r.pio, 0x608);
        r.clock.advance(1_000_000_000);
        let t1 = inl(&r.pio, 0x608);
        assert_eq!(t1.wrapping_sub(t0), 3_579_545);
        r.clock.advance(1_000); // 1 us = 3.58 ticks
        let t2 = inl(&r.pio, 0x608);
        assert!((3..=4).contains(&t2.wrapping_sub(t1)));
    }

    #[test]
    fn timer_overflow_sets_tmr_sts_and_sci() {
        let r = rig();
        r.pio.write(0xb2, &[ACPI_ENABLE]);
        outw(&r.pio, 0x602, TMR_STS);
        let deadline = r
            .queue
            .next_deadline()
            .expect("timer armed for bit-31 toggle");
        assert_eq!(ticks_at(deadline), 1 << 31);
        assert_eq!(ticks_at(deadline - 1), (1 << 31) - 1);
        r.clock.set(deadline);
        r.queue.run_due();
        assert!(r.sci.load(Ordering::SeqCst));
        assert_eq!(inw(&r.pio, 0x600) & TMR_STS, TMR_STS);
        outw(&r.pio, 0x600, TMR_STS);
        assert!(!r.sci.load(Ordering::SeqCst), "W1C dropped the SCI");
    }

    #[test]
    fn acpi_enable_handshake_and_power_button() {
        let r = rig();
        assert_eq!(inw(&r.pio, 0x604) & SCI_EN, 0);
        outw(&r.pio, 0x602, PWRBTN_STS);
        r.pm.lock().press_power_button();
        assert!(!r.sci.load(Ordering::SeqCst), "legacy mode: no SCI");
        r.pio.write(0xb2, &[ACPI_ENABLE]);
        assert_eq!(inw(&r.pio, 0x604) & SCI_EN, SCI_EN);
        assert!(r.sci.load(Ordering::SeqCst));
        assert_eq!(inw(&r.pio, 0x600) & PWRBTN_STS, PWRBTN_STS);
        outw(&r.pio, 0x600, PWRBTN_STS);
        assert!(!r.sci.load(Ordering::SeqCst));
        r.pio.write(0xb2, &[ACPI_DISABLE]);
        assert_eq!(inw(&r.pio, 0x604) & SCI_EN, 0);
    }

    #[test]
    fn gpe_block() {
        let r = rig();
        r.pio.write(0xb2, &[ACPI_ENABLE]);
        r.pm.lock().registers().lock().raise_gpe(0x2);
        assert!(!r.sci.load(Ordering::SeqCst));
        outw(&r.pio, 0x622, 0x2);
        assert!(r.sci.load(Ordering::SeqCst));
        outw(&r.pio, 0x620, 0x2);
        assert!(!r.sci.load(Ordering::SeqCst));
    }

    #[test]
    fn seabios_piix4_pm_setup_moves_block() {
        let r = rig();
        cfg_write(&r.pio, 0x40, 0xb000 | 1);
        cfg_write(&r.pio, 0x80, 1);
        assert!(!r.pio.is_claimed(0x600));
        assert!(r.pio.is_claimed(0xb008));
        assert_eq!(r.pm.lock().pm_base(), Some(0xb000));
        cfg_write(&r.pio, 0x80, 0);
        assert!(!r.pio.is_claimed(0xb008), "PMREGMISC disables decode");
        // DEVACTB bit 25 stays set: SeaBIOS skips SMM init.
        let mut d = [0u8; 4];
        r.pm.lock().config_read(0x58, &mut d);
        assert_eq!(u32::from_le_bytes(d) & (1 << 25), 1 << 25);
        r.pm.lock().config_read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x7113_8086);
    }

    proptest::proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((0u64..0x48, 0usize..3, proptest::bool::ANY, proptest::num::u32::ANY, 0u64..10_000_000), 0..200)) {
            let r = rig();
            for (off, sz, w, v, dt) in ops {
                r.clock.advance(dt);
                r.queue.run_due();
                let len = [1usize, 2, 4][sz];
                if w {
                    r.pio.write(0x600 + off, &v.to_le_bytes()[..len]);
                    r.pio.write(0xb2 + (off & 1), &[v as u8]);
                    cfg_write(&r.pio, (off as u8).wrapping_mul(4), v);
                } else {
                    let mut d = vec![0u8; len];
                    r.pio.read(0x600 + off, &mut d);
                }
            }
        }
    }
}
