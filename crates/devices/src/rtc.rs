//! The Motorola MC146818 real-time clock with its 128 bytes of CMOS memory, at ports
//! 0x70 (index; bit 7 = NMI disable) and 0x71 (data). Register the device at 0x70, len 2.
//!
//! Clock registers (data sheet layout):
//! - 0x00 seconds, 0x02 minutes, 0x04 hours (bit 7 = PM in 12-hour mode), 0x06 day of week
//!   (1 = Sunday), 0x07 day of month, 0x08 month, 0x09 year (00-99); 0x01/0x03/0x05 the
//!   seconds/minutes/hours alarm (0xC0-0xFF = "don't care");
//! - 0x0A register A: bit 7 UIP (read-only), bits 6-4 DV divider (010 = 32.768 kHz time base,
//!   11x = divider held in reset), bits 3-0 RS periodic rate;
//! - 0x0B register B: SET (halt updates), PIE, AIE, UIE, SQWE, DM (1 = binary), 24/12 (1 =
//!   24-hour), DSE;
//! - 0x0C register C (read-only, cleared by reading): IRQF, PF, AF, UF;
//! - 0x0D register D: VRT (battery good), always 0x80.
//!
//! Time keeping: the clock holds the RTC's wall time (seconds since 1970-01-01 00:00 in the
//! zone the VM wants: UTC, or host local time when VirtualBox's RTCUseUTC is off; glue
//! chooses when it builds the device, see [`host_seconds`]) and advances it with the virtual
//! clock: the time registers step once per second at the update boundaries of the divider
//! chain. Nothing is ticked; the registers are formatted on read (BCD or binary, 12 or 24
//! hours, as register B says at that moment) and the interrupt flags are worked out from the
//! boundaries crossed since the last access.
//!
//! Timing (32.768 kHz time base): UIP rises 244 us before the update cycle begins and stays
//! up for the 1984 us of the update cycle; at its end the new time is visible, UF is set and
//! the alarm compared. So UIP reads 1 during the last 2228 us of every second. SET stops the
//! updates (and clears UIP and UIE); the divider keeps its phase. Releasing a divider reset
//! makes the first update come 500 ms later (Linux relies on that when it sets the clock).
//! Periodic interrupts come from the divider chain at the rate RS selects (256 Hz for RS 1,
//! 128 Hz for RS 2, 32768 >> (RS - 1) Hz for RS 3-15).
//!
//! IRQ8: IRQF (= PF&PIE | AF&AIE | UF&UIE) drives the line; reading register C clears the
//! flags and drops it. With a [`TimerQueue`] ([`Rtc::new_shared`]) a timer is armed for the
//! next event that would raise IRQF.
//!
//! CMOS bytes the VMM fills (see [`Rtc::set_memory_size`], [`Rtc::set_cpu_count`],
//! [`Rtc::set_cmos`], [`Rtc::update_checksum`]), because the firmware reads them:
//! - 0x10 floppy types, 0x12 hard-disk types, 0x14 equipment byte (bit 0 floppy present,
//!   bit 1 FPU, bits 5-4 video 00 = EGA/VGA, bits 7-6 floppy count - 1): the BIOS data area
//!   equipment word comes from here;
//! - 0x15/0x16 base memory in KiB (640);
//! - 0x17/0x18 and 0x30/0x31 extended memory above 1 MiB in KiB (capped at 0xFFFF, 63 MiB):
//!   INT 15h AH=88h and old guests;
//! - 0x34/0x35 memory between 16 MiB and 4 GiB in 64 KiB units: SeaBIOS's RAM size below
//!   4 GiB on its QEMU path;
//! - 0x5B-0x5D memory above 4 GiB in 64 KiB units (24 bits): SeaBIOS's high RAM;
//! - 0x5F number of CPUs minus one: SeaBIOS's CPU count on its QEMU path;
//! - 0x32 century (BCD), read by guests through the ACPI FADT century index;
//! - 0x2E/0x2F checksum (big-endian sum of 0x10-0x2D), checked by the BIOS setup code.

use iomio::BusDevice;
use parking_lot::Mutex;
use pdm::{Clock, IrqLine, Timer, TimerQueue};
use std::sync::{Arc, Weak};

/// Index port.
pub const RTC_INDEX: u64 = 0x70;
/// Data port.
pub const RTC_DATA: u64 = 0x71;

/// Register A.
pub const REG_A: u8 = 0x0a;
/// Register B.
pub const REG_B: u8 = 0x0b;
/// Register C.
pub const REG_C: u8 = 0x0c;
/// Register D.
pub const REG_D: u8 = 0x0d;
/// Century byte (IBM convention, ACPI FADT CENTURY).
pub const CMOS_CENTURY: u8 = 0x32;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;

const NS_PER_S: i64 = 1_000_000_000;
/// UIP is set this long before the time registers change: 244 us lead + 1984 us update.
pub const UIP_WINDOW_NS: i64 = 244_000 + 1_984_000;
/// Divider chain input.
const TIME_BASE_HZ: i128 = 32_768;

/// The host's wall time for a new RTC, in seconds since 1970: UTC plus `utc_offset_secs`
/// (0 for VirtualBox's RTCUseUTC, the host's local offset otherwise).
pub fn host_seconds(utc_offset_secs: i64) -> i64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    unix.saturating_add(utc_offset_secs)
}

/// The host's wall time for a new RTC the way VirtualBox picks it: UTC when the machine's
/// RTCUseUTC is set, the host's local time otherwise.
pub fn host_seconds_for(use_utc: bool) -> i64 {
    if use_utc {
        host_seconds(0)
    } else {
        host_seconds(local_utc_offset(host_seconds(0)))
    }
}

/// The host's offset from UTC in seconds at Unix time `unix`: from the zone file `TZ` names
/// (`:Area/City`, `Area/City` or an absolute path) or `/etc/localtime`; 0 when there is none
/// or it cannot be read.
pub fn local_utc_offset(unix: i64) -> i64 {
    let path = match std::env::var("TZ") {
        Ok(tz) => {
            let tz = tz.trim_start_matches(':').to_string();
            if tz.is_empty() {
                return 0;
            }
            if tz.starts_with('/') {
                tz
            } else {
                format!("/usr/share/zoneinfo/{tz}")
            }
        }
        Err(_) => "/etc/localtime".to_string(),
    };
    std::fs::read(path)
        .ok()
        .and_then(|data| tzif_utc_offset(&data, unix))
        .unwrap_or(0)
}

/// Bounds-checked big-endian reader over a TZif file.
struct TzReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> TzReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A TZif header: (version, isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt).
    fn header(&mut self) -> Option<(u8, [usize; 6])> {
        if self.take(4)? != b"TZif" {
            return None;
        }
        let version = self.take(16)?[0];
        let mut counts = [0usize; 6];
        for c in &mut counts {
            *c = usize::try_from(self.u32()?).ok()?;
        }
        Some((version, counts))
    }
}

/// The UTC offset a TZif (RFC 8536) zone file gives for Unix time `unix`: the type of the
/// last transition at or before it (type 0 before the first). None for a malformed file.
pub fn tzif_utc_offset(data: &[u8], unix: i64) -> Option<i64> {
    let mut r = TzReader { data, pos: 0 };
    let (version, mut counts) = r.header()?;
    let mut time_size = 4;
    if version >= b'2' {
        // Skip the 32-bit block; the 64-bit one follows with its own header.
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts;
        let v1 = timecnt
            .checked_mul(5)?
            .checked_add(typecnt.checked_mul(6)?)?
            .checked_add(charcnt)?
            .checked_add(leap.checked_mul(8)?)?
            .checked_add(isstd)?
            .checked_add(isut)?;
        r.take(v1)?;
        counts = r.header()?.1;
        time_size = 8;
    }
    let [_, _, _, timecnt, typecnt, _] = counts;
    if typecnt == 0 {
        return None;
    }
    let times = r.take(timecnt.checked_mul(time_size)?)?;
    let indices = r.take(timecnt)?;
    let types = r.take(typecnt.checked_mul(6)?)?;
    let mut current = 0usize;
    for (i, t) in times.chunks_exact(time_size).enumerate() {
        let at = if time_size == 8 {
            i64::from_be_bytes(t.try_into().ok()?)
        } else {
            i64::from(i32::from_be_bytes(t.try_into().ok()?))
        };
        if at > unix {
            break;
        }
        current = usize::from(*indices.get(i)?);
    }
    let tt = types.get(current.checked_mul(6)?..current.checked_mul(6)?.checked_add(4)?)?;
    Some(i64::from(i32::from_be_bytes(tt.try_into().ok()?)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Broken-down time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    /// 0 = Sunday.
    wday: u32,
}

impl Fields {
    fn from_secs(t: i64) -> Self {
        let days = t.div_euclid(86_400);
        let sod = t.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Fields {
            year,
            month,
            day,
            hour: sod / 3600,
            min: sod / 60 % 60,
            sec: sod % 60,
            wday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// Seconds since 1970, after clamping each field into its range.
    fn to_secs(self) -> i64 {
        let month = self.month.clamp(1, 12);
        let day = self.day.clamp(1, days_in_month(self.year, month));
        days_from_civil(self.year, month, day) * 86_400
            + i64::from(self.hour.min(23)) * 3600
            + i64::from(self.min.min(59)) * 60
            + i64::from(self.sec.min(59))
    }
}

/// What the timer callback needs to find the device.
type Shared = Arc<Mutex<Rtc>>;

/// The RTC and CMOS memory.
pub struct Rtc {
    cmos: [u8; 128],
    index: u8,
    nmi_masked: bool,
    clock: Arc<dyn Clock>,
    irq: IrqLine,
    timer: Option<Timer>,
    /// Update boundaries are at `base_ns + k * 1 s`; the RTC time at `base_ns` was
    /// `base_secs`.
    base_ns: i64,
    base_secs: i64,
    /// Time frozen by SET or a divider reset.
    halted_secs: Option<i64>,
    /// Guest-written day-of-week correction (the chip does not derive it from the date).
    wday_offset: u32,
    /// Events up to this virtual time have been accounted in register C.
    synced_ns: i64,
    irq_level: bool,
}

impl std::fmt::Debug for Rtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtc")
            .field("base_secs", &self.base_secs)
            .field("halted_secs", &self.halted_secs)
            .field("reg_b", &self.cmos[usize::from(REG_B)])
            .finish()
    }
}

fn ns_i64(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

impl Rtc {
    /// An RTC showing wall time `start_secs` (seconds since 1970 in the guest's zone, see
    /// [`host_seconds`]) at the current virtual time, raising `irq` (ISA IRQ8). Without a
    /// timer (see [`Rtc::new_shared`]) interrupts are raised only on register accesses and
    /// [`Rtc::on_timer`] calls.
    pub fn new(clock: Arc<dyn Clock>, irq: IrqLine, start_secs: i64) -> Self {
        let now = ns_i64(clock.now_ns());
        let mut rtc = Rtc {
            cmos: [0; 128],
            index: 0,
            nmi_masked: false,
            clock,
            irq,
            timer: None,
            base_ns: now,
            base_secs: start_secs,
            halted_secs: None,
            wday_offset: 0,
            synced_ns: now,
            irq_level: false,
        };
        rtc.cmos[usize::from(REG_A)] = 0x26;
        rtc.cmos[usize::from(REG_B)] = B_24H;
        rtc.cmos[usize::from(REG_D)] = 0x80;
        rtc.cmos[usize::from(CMOS_CENTURY)] =
            rtc.encode(Fields::from_secs(start_secs).year.rem_euclid(10_000) as u32 / 100);
        rtc
    }

    /// As [`Rtc::new`], behind a mutex, with a timer on `timers` raising the interrupts on
    /// time.
    pub fn new_shared(
        clock: Arc<dyn Clock>,
        irq: IrqLine,
        timers: &Arc<TimerQueue>,
        start_secs: i64,
    ) -> Shared {
        let rtc = Arc::new(Mutex::new(Rtc::new(clock, irq, start_secs)));
        let weak: Weak<Mutex<Rtc>> = Arc::downgrade(&rtc);
        let timer = timers.create(move |_now| {
            if let Some(rtc) = weak.upgrade() {
                rtc.lock().on_timer();
            }
        });
        rtc.lock().timer = Some(timer);
        rtc
    }

    /// Whether port 0x70 bit 7 currently masks NMI.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// Set CMOS byte `index` (0x0E-0x7F is battery-backed memory; clock registers are better
    /// left to the guest). Indices past 0x7F are ignored.
    pub fn set_cmos(&mut self, index: u8, value: u8) {
        if let Some(b) = self.cmos.get_mut(usize::from(index)) {
            *b = value;
        }
    }

    /// CMOS byte `index` as stored (0 past 0x7F).
    pub fn cmos(&self, index: u8) -> u8 {
        self.cmos.get(usize::from(index)).copied().unwrap_or(0)
    }

    /// Fill the memory-size bytes for `below_4g` bytes of RAM from address 0 and `above_4g`
    /// bytes from 4 GiB up.
    pub fn set_memory_size(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let base_kib = (below_4g / KIB).min(640) as u16;
        self.set_u16(0x15, base_kib);
        let ext_kib = (below_4g.saturating_sub(MIB) / KIB).min(0xffff) as u16;
        self.set_u16(0x17, ext_kib);
        self.set_u16(0x30, ext_kib);
        let above_16m = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff) as u16;
        self.set_u16(0x34, above_16m);
        let high = (above_4g / (64 * KIB)).min(0xff_ffff) as u32;
        let [a, b, c, _] = high.to_le_bytes();
        self.cmos[0x5b] = a;
        self.cmos[0x5c] = b;
        self.cmos[0x5d] = c;
    }

    /// Byte 0x5F: number of CPUs minus one.
    pub fn set_cpu_count(&mut self, cpus: u32) {
        self.cmos[0x5f] = cpus.saturating_sub(1).min(255) as u8;
    }

    /// Recompute the standard checksum: the sum of bytes 0x10-0x2D, big-endian at 0x2E/0x2F.
    pub fn update_checksum(&mut self) {
        let sum: u16 = self.cmos[0x10..=0x2d].iter().map(|&b| u16::from(b)).sum();
        let [hi, lo] = sum.to_be_bytes();
        self.cmos[0x2e] = hi;
        self.cmos[0x2f] = lo;
    }

    fn set_u16(&mut self, index: usize, v: u16) {
        let [lo, hi] = v.to_le_bytes();
        self.cmos[index] = lo;
        self.cmos[index + 1] = hi;
    }

    fn reg(&self, r: u8) -> u8 {
        self.cmos[usize::from(r)]
    }

    fn now_ns(&self) -> i64 {
        ns_i64(self.clock.now_ns())
    }

    fn binary(&self) -> bool {
        self.reg(REG_B) & B_DM_BINARY != 0
    }

    fn divider_running(&self) -> bool {
        self.reg(REG_A) & 0x60 != 0x60
    }

    fn updating(&self) -> bool {
        self.halted_secs.is_none()
    }

    /// Whole update boundaries passed from `base_ns` to `t`.
    fn seconds_at(&self, t: i64) -> i64 {
        (t - self.base_ns).div_euclid(NS_PER_S)
    }

    /// The RTC time at virtual time `t`.
    fn time_at(&self, t: i64) -> i64 {
        match self.halted_secs {
            Some(s) => s,
            None => self.base_secs + self.seconds_at(t),
        }
    }

    /// Make `secs` the RTC time now, keeping the divider phase.
    fn set_time(&mut self, now: i64, secs: i64) {
        match self.halted_secs.as_mut() {
            Some(h) => *h = secs,
            None => self.base_secs = secs - self.seconds_at(now),
        }
    }

    fn encode(&self, v: u32) -> u8 {
        if self.binary() {
            v as u8
        } else {
            (((v / 10 % 10) << 4) | (v % 10)) as u8
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.binary() {
            u32::from(v)
        } else {
            u32::from(v >> 4) * 10 + u32::from(v & 0xf)
        }
    }

    fn encode_hour(&self, h: u32) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            self.encode(h)
        } else {
            let h12 = match h % 12 {
                0 => 12,
                h12 => h12,
            };
            self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn decode_hour(&self, v: u8) -> u32 {
        if self.reg(REG_B) & B_24H != 0 {
            self.decode(v)
        } else {
            let h = self.decode(v & 0x7f) % 12;
            h + if v & 0x80 != 0 { 12 } else { 0 }
        }
    }

    /// The time register `r` (0x00-0x09, not an alarm byte) formatted for time `t`.
    fn time_register(&self, r: u8, secs: i64) -> u8 {
        let f = Fields::from_secs(secs);
        match r {
            0x00 => self.encode(f.sec),
            0x02 => self.encode(f.min),
            0x04 => self.encode_hour(f.hour),
            0x06 => self.encode((f.wday + self.wday_offset) % 7 + 1),
            0x07 => self.encode(f.day),
            0x08 => self.encode(f.month),
            _ => self.encode(f.year.rem_euclid(100) as u32),
        }
    }

    fn write_time_register(&mut self, r: u8, v: u8, now: i64) {
        let cur = self.time_at(now);
        let mut f = Fields::from_secs(cur);
        match r {
            0x00 => f.sec = self.decode(v),
            0x02 => f.min = self.decode(v),
            0x04 => f.hour = self.decode_hour(v),
            0x06 => {
                let want = self.decode(v).clamp(1, 7) - 1;
                self.wday_offset = (want + 7 - f.wday) % 7;
                return;
            }
            0x07 => f.day = self.decode(v),
            0x08 => f.month = self.decode(v),
            _ => {
                let century = f.year.div_euclid(100);
                f.year = century * 100 + i64::from(self.decode(v).min(99));
            }
        }
        self.set_time(now, f.to_secs());
    }

    /// Does the alarm match wall time `secs`?
    fn alarm_matches(&self, secs: i64) -> bool {
        [(0x01, 0x00), (0x03, 0x02), (0x05, 0x04)]
            .into_iter()
            .all(|(alarm, reg)| {
                let a = self.reg(alarm);
                a & 0xc0 == 0xc0 || a == self.time_register(reg, secs)
            })
    }

    /// 32.768 kHz cycles of one periodic interrupt, None when RS = 0.
    fn periodic_cycles(&self) -> Option<i128> {
        match self.reg(REG_A) & 0x0f {
            0 => None,
            rs @ 1..=2 => Some(1 << (rs + 6)),
            rs => Some(1 << (rs - 1)),
        }
    }

    /// Periodic interrupt number at virtual time `t`.
    fn periodic_index(&self, t: i64, cycles: i128) -> i128 {
        (i128::from(t - self.base_ns) * TIME_BASE_HZ).div_euclid(i128::from(NS_PER_S) * cycles)
    }

    /// Account the updates and periodic ticks between the last sync and now in register C.
    fn sync(&mut self, now: i64) {
        let last = self.synced_ns;
        if now <= last {
            return;
        }
        let mut flags = 0;
        if self.divider_running() {
            if let Some(cycles) = self.periodic_cycles() {
                if self.periodic_index(now, cycles) > self.periodic_index(last, cycles) {
                    flags |= C_PF;
                }
            }
        }
        if self.updating() {
            let (s_last, s_now) = (self.seconds_at(last), self.seconds_at(now));
            if s_now > s_last {
                flags |= C_UF;
                // The alarm pattern repeats daily: a day of updates covers every match.
                let first = (s_last + 1).max(s_now - 86_399);
                if (first..=s_now).any(|s| self.alarm_matches(self.base_secs + s)) {
                    flags |= C_AF;
                }
                let year = |s: i64| Fields::from_secs(self.base_secs + s).year;
                if year(s_last) != year(s_now) {
                    self.refresh_century(now);
                }
            }
        }
        self.cmos[usize::from(REG_C)] |= flags;
        self.synced_ns = now;
    }

    /// Recompute IRQF and the line, then arm the timer for the next event that matters.
    fn update_irq(&mut self) {
        let b = self.reg(REG_B);
        let c = self.reg(REG_C) & (C_PF | C_AF | C_UF);
        let enabled = b & (B_PIE | B_AIE | B_UIE);
        let irqf = c & enabled != 0;
        self.cmos[usize::from(REG_C)] = c | if irqf { C_IRQF } else { 0 };
        if irqf != self.irq_level {
            self.irq_level = irqf;
            self.irq.set(irqf);
        }
        let Some(timer) = &self.timer else {
            return;
        };
        let now = self.synced_ns;
        let mut next: Option<i64> = None;
        if !irqf {
            if b & B_PIE != 0 && self.divider_running() {
                if let Some(cycles) = self.periodic_cycles() {
                    let k = self.periodic_index(now, cycles) + 1;
                    let at = (k * cycles * i128::from(NS_PER_S) + TIME_BASE_HZ - 1)
                        .div_euclid(TIME_BASE_HZ)
                        + i128::from(self.base_ns);
                    next = i64::try_from(at).ok();
                }
            }
            if b & (B_UIE | B_AIE) != 0 && self.updating() {
                let at = self.base_ns + (self.seconds_at(now) + 1) * NS_PER_S;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        match next {
            Some(at) => timer.arm_at(u64::try_from(at).unwrap_or(0)),
            None => timer.disarm(),
        }
    }

    /// Bring register C up to date and raise IRQ8 if due; re-arm the timer. The timer
    /// callback calls this.
    pub fn on_timer(&mut self) {
        let now = self.now_ns();
        self.sync(now);
        self.update_irq();
    }

    fn uip(&self, now: i64) -> bool {
        self.updating() && (now - self.base_ns).rem_euclid(NS_PER_S) >= NS_PER_S - UIP_WINDOW_NS
    }

    fn read_data(&mut self) -> u8 {
        let now = self.now_ns();
        self.sync(now);
        self.update_irq();
        let r = self.index;
        let v = match r {
            0x00 | 0x02 | 0x04 | 0x06..=0x09 => self.time_register(r, self.time_at(now)),
            REG_A => (self.reg(REG_A) & !A_UIP) | if self.uip(now) { A_UIP } else { 0 },
            REG_C => {
                let c = self.reg(REG_C);
                self.cmos[usize::from(REG_C)] = 0;
                c
            }
            REG_D => 0x80,
            _ => self.reg(r),
        };
        self.update_irq();
        v
    }

    fn write_data(&mut self, v: u8) {
        let now = self.now_ns();
        self.sync(now);
        let r = self.index;
        match r {
            0x00 | 0x02 | 0x04 | 0x06..=0x09 => self.write_time_register(r, v, now),
            REG_A => {
                let was_reset = !self.divider_running();
                self.cmos[usize::from(REG_A)] = v & !A_UIP;
                let reset = !self.divider_running();
                if reset && !was_reset {
                    self.halt(now);
                } else if was_reset && !reset {
                    // The first update comes 500 ms after the divider is released.
                    self.base_ns = now - NS_PER_S / 2;
                    self.resume(now);
                }
            }
            REG_B => {
                let mut v = v;
                if v & B_SET != 0 {
                    // SET aborts updates and clears UIE.
                    v &= !B_UIE;
                    self.halt(now);
                }
                self.cmos[usize::from(REG_B)] = v;
                if v & B_SET == 0 {
                    self.resume(now);
                }
            }
            // C and D are read-only.
            REG_C | REG_D => {}
            _ => self.cmos[usize::from(r)] = v,
        }
        self.update_irq();
    }

    fn halt(&mut self, now: i64) {
        if self.halted_secs.is_none() {
            self.halted_secs = Some(self.time_at(now));
        }
    }

    /// Let updates run again when neither SET nor a divider reset holds them.
    fn resume(&mut self, now: i64) {
        if self.reg(REG_B) & B_SET != 0 || !self.divider_running() {
            return;
        }
        if let Some(secs) = self.halted_secs.take() {
            self.base_secs = secs - self.seconds_at(now);
        }
        // Boundaries before now are not updates that happened.
        self.synced_ns = now;
        self.refresh_century(now);
    }

    /// Keep the century byte in step with the time (as QEMU does).
    fn refresh_century(&mut self, now: i64) {
        let year = Fields::from_secs(self.time_at(now)).year;
        self.cmos[usize::from(CMOS_CENTURY)] = self.encode(year.rem_euclid(10_000) as u32 / 100);
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, addr: u64, _offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = match addr.wrapping_add(i as u64) {
                RTC_DATA => self.read_data(),
                // The index register is write-only.
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, addr: u64, _offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            match addr.wrapping_add(i as u64) {
                RTC_INDEX => {
                    self.index = b & 0x7f;
                    self.nmi_masked = b & 0x80 != 0;
                }
                RTC_DATA => self.write_data(b),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdm::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// 2024-02-28 23:59:58 (a Wednesday), RTC time.
    const T0: i64 = 1_709_164_798;

    struct Rig {
        clock: Arc<ManualClock>,
        rtc: Rtc,
    }

    impl Rig {
        fn new() -> Self {
            let clock = Arc::new(ManualClock::new(5_000_000_000));
            let rtc = Rtc::new(clock.clone(), IrqLine::disconnected(), T0);
            Rig { clock, rtc }
        }
        fn read(&mut self, r: u8) -> u8 {
            self.rtc.write(0x70, 0, &[r]);
            let mut d = [0];
            self.rtc.read(0x71, 0, &mut d);
            d[0]
        }
        fn write(&mut self, r: u8, v: u8) {
            self.rtc.write(0x70, 0, &[r]);
            self.rtc.write(0x71, 0, &[v]);
        }
        fn time(&mut self) -> [u8; 7] {
            [0x09, 0x08, 0x07, 0x06, 0x04, 0x02, 0x00].map(|r| self.read(r))
        }
    }

    #[test]
    fn civil_conversions_round_trip() {
        for days in [-800_000i64, -1, 0, 59, 11_016, 19_781, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        let f = Fields::from_secs(T0);
        assert_eq!(
            (f.year, f.month, f.day, f.hour, f.min, f.sec, f.wday),
            (2024, 2, 28, 23, 59, 58, 3)
        );
    }

    #[test]
    fn bcd_24h_time_and_update_cycle_rollover() {
        let mut r = Rig::new();
        assert_eq!(r.time(), [0x24, 0x02, 0x28, 0x04, 0x23, 0x59, 0x58]);
        assert_eq!(r.read(CMOS_CENTURY), 0x20);
        r.clock.advance(999_999_999);
        assert_eq!(r.read(0x00), 0x58);
        r.clock.advance(1);
        assert_eq!(r.read(0x00), 0x59);
        r.clock.advance(1_000_000_000);
        // Leap day, Thursday.
        assert_eq!(r.time(), [0x24, 0x02, 0x29, 0x05, 0x00, 0x00, 0x00]);
        r.clock.advance(86_400 * NS_PER_S as u64);
        assert_eq!(r.time(), [0x24, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn binary_and_12_hour_formats() {
        let mut r = Rig::new();
        r.write(REG_B, B_DM_BINARY | B_24H);
        assert_eq!(r.time(), [24, 2, 28, 4, 23, 59, 58]);
        r.write(REG_B, B_DM_BINARY);
        assert_eq!(r.read(0x04), 0x80 | 11, "11 PM");
        r.write(REG_B, 0);
        assert_eq!(r.read(0x04), 0x91, "BCD 11 PM");
        r.clock.advance(2 * NS_PER_S as u64);
        assert_eq!(r.read(0x04), 0x12, "midnight is 12 AM");
        r.clock.advance(12 * 3600 * NS_PER_S as u64);
        assert_eq!(r.read(0x04), 0x92, "noon is 12 PM");
        // Writing 12-hour values.
        r.write(0x04, 0x81); // 1 PM
        r.write(REG_B, B_24H);
        assert_eq!(r.read(0x04), 0x13);
    }

    #[test]
    fn uip_rises_2228us_before_the_update() {
        let mut r = Rig::new();
        let start = r.clock.now_ns();
        let boundary = start + 1_000_000_000;
        r.clock.set(boundary - UIP_WINDOW_NS as u64 - 1);
        assert_eq!(r.read(REG_A) & A_UIP, 0);
        r.clock.set(boundary - UIP_WINDOW_NS as u64);
        assert_eq!(r.read(REG_A), 0x26 | A_UIP);
        assert_eq!(r.read(0x00), 0x58, "old time during the update cycle");
        r.clock.set(boundary - 1);
        assert_ne!(r.read(REG_A) & A_UIP, 0);
        r.clock.set(boundary);
        assert_eq!(r.read(REG_A), 0x26);
        assert_eq!(r.read(0x00), 0x59);
        // Under SET, no UIP.
        r.write(REG_B, B_SET | B_24H);
        r.clock.set(boundary + 999_000_000);
        assert_eq!(r.read(REG_A) & A_UIP, 0);
    }

    #[test]
    fn set_halts_updates_and_time_writes_take_effect() {
        let mut r = Rig::new();
        r.write(REG_B, B_SET | B_24H | B_UIE);
        assert_eq!(r.read(REG_B), B_SET | B_24H, "SET clears UIE");
        r.write(0x09, 0x99);
        r.write(0x08, 0x12);
        r.write(0x07, 0x31);
        r.write(0x04, 0x23);
        r.write(0x02, 0x59);
        r.write(0x00, 0x59);
        r.clock.advance(5 * NS_PER_S as u64);
        assert_eq!(r.read(0x00), 0x59, "halted");
        r.write(REG_B, B_24H);
        r.clock.advance(NS_PER_S as u64);
        assert_eq!(r.time()[..3], [0x00, 0x01, 0x01]);
        assert_eq!(r.read(0x00), 0x00);
        assert_eq!(r.read(0x02), 0x00);
        // The century byte follows the year rollover 2099 -> 2100.
        assert_eq!(r.read(CMOS_CENTURY), 0x21);
    }

    #[test]
    fn divider_reset_release_updates_500ms_later() {
        let mut r = Rig::new();
        r.write(REG_A, 0x70);
        r.write(0x00, 0x10);
        r.clock.advance(3 * NS_PER_S as u64);
        assert_eq!(r.read(0x00), 0x10);
        r.write(REG_A, 0x26);
        r.clock.advance(499_999_999);
        assert_eq!(r.read(0x00), 0x10);
        r.clock.advance(1);
        assert_eq!(r.read(0x00), 0x11);
    }

    #[test]
    fn register_c_flags_and_clear_on_read() {
        let mut r = Rig::new();
        assert_eq!(r.read(REG_C), 0);
        r.clock.advance(NS_PER_S as u64);
        // UF and PF (1024 Hz default rate) set even with interrupts disabled; no IRQF.
        assert_eq!(r.read(REG_C), C_UF | C_PF);
        assert_eq!(r.read(REG_C), 0, "cleared by reading");
        assert_eq!(r.read(REG_D), 0x80);
    }

    #[test]
    fn alarm_with_and_without_dont_care() {
        let mut r = Rig::new();
        r.write(0x05, 0x00);
        r.write(0x03, 0x00);
        r.write(0x01, 0x05);
        r.write(REG_B, B_24H | B_AIE);
        r.read(REG_C);
        r.clock.advance(6 * NS_PER_S as u64); // 00:00:04
        assert_eq!(r.read(REG_C) & C_AF, 0);
        r.clock.advance(NS_PER_S as u64); // 00:00:05
        assert_eq!(r.read(REG_C), C_IRQF | C_AF | C_UF | C_PF);
        // Every minute at :30 with hours and minutes "don't care".
        r.write(0x05, 0xff);
        r.write(0x03, 0xc0);
        r.write(0x01, 0x30);
        r.clock.advance(24 * NS_PER_S as u64); // 00:00:29
        assert_eq!(r.read(REG_C) & C_AF, 0);
        r.clock.advance(61 * NS_PER_S as u64); // passed 00:00:30 and 00:01:30
        assert_ne!(r.read(REG_C) & C_AF, 0);
    }

    fn rig_with_timer() -> (Arc<ManualClock>, Arc<TimerQueue>, Shared, Arc<AtomicU32>) {
        let clock = Arc::new(ManualClock::new(0));
        let queue = TimerQueue::new(clock.clone());
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let irq = IrqLine::new(
            Arc::new(move |_gsi: u32, level: bool| {
                if level {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            }),
            8,
        );
        let rtc = Rtc::new_shared(clock.clone(), irq, &queue, T0);
        (clock, queue, rtc, hits)
    }

    fn reg_rw(rtc: &Shared, r: u8, w: Option<u8>) -> u8 {
        let mut rtc = rtc.lock();
        rtc.write(0x70, 0, &[r]);
        match w {
            Some(v) => {
                rtc.write(0x71, 0, &[v]);
                0
            }
            None => {
                let mut d = [0];
                rtc.read(0x71, 0, &mut d);
                d[0]
            }
        }
    }

    /// Run the event loop for `ns`, acknowledging each interrupt like a guest handler.
    fn run_for(clock: &ManualClock, queue: &TimerQueue, rtc: &Shared, ns: u64) {
        let end = clock.now_ns() + ns;
        while let Some(d) = queue.next_deadline().filter(|&d| d <= end) {
            clock.set(d);
            queue.run_due();
            reg_rw(rtc, REG_C, None);
        }
        clock.set(end);
    }

    #[test]
    fn periodic_interrupt_rates() {
        let (clock, queue, rtc, hits) = rig_with_timer();
        assert_eq!(queue.next_deadline(), None, "nothing enabled");
        reg_rw(&rtc, REG_B, Some(B_24H | B_PIE));
        run_for(&clock, &queue, &rtc, NS_PER_S as u64);
        assert_eq!(hits.load(Ordering::SeqCst), 1024, "RS=6: 1024 Hz");
        hits.store(0, Ordering::SeqCst);
        reg_rw(&rtc, REG_A, Some(0x2f)); // RS=15: 2 Hz
        run_for(&clock, &queue, &rtc, 2 * NS_PER_S as u64);
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        hits.store(0, Ordering::SeqCst);
        reg_rw(&rtc, REG_A, Some(0x21)); // RS=1: 256 Hz
        run_for(&clock, &queue, &rtc, NS_PER_S as u64);
        assert_eq!(hits.load(Ordering::SeqCst), 256);
        hits.store(0, Ordering::SeqCst);
        reg_rw(&rtc, REG_A, Some(0x20)); // RS=0: off
        run_for(&clock, &queue, &rtc, NS_PER_S as u64);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn update_ended_interrupt_once_per_second_and_line_held_until_c_read() {
        let (clock, queue, rtc, hits) = rig_with_timer();
        reg_rw(&rtc, REG_B, Some(B_24H | B_UIE));
        run_for(&clock, &queue, &rtc, 10 * NS_PER_S as u64);
        assert_eq!(hits.load(Ordering::SeqCst), 10);
        // Without reading C the line stays up and no timer is needed.
        let d = queue.next_deadline().unwrap();
        clock.set(d);
        queue.run_due();
        assert_eq!(queue.next_deadline(), None);
        assert_eq!(reg_rw(&rtc, REG_C, None) & (C_IRQF | C_UF), C_IRQF | C_UF);
        assert!(queue.next_deadline().is_some());
    }

    #[test]
    fn cmos_memory_bytes_and_checksum() {
        let mut r = Rig::new();
        const MIB: u64 = 1 << 20;
        r.rtc.set_memory_size(3072 * MIB, 2048 * MIB);
        assert_eq!(r.read(0x15), 0x80);
        assert_eq!(r.read(0x16), 0x02);
        assert_eq!([r.read(0x17), r.read(0x18)], [0xff, 0xff]);
        assert_eq!([r.read(0x30), r.read(0x31)], [0xff, 0xff]);
        let above16 = (3072 - 16) * 16;
        assert_eq!(
            u16::from_le_bytes([r.read(0x34), r.read(0x35)]),
            above16 as u16
        );
        assert_eq!(
            [r.read(0x5b), r.read(0x5c), r.read(0x5d)],
            [0x00, 0x80, 0x00]
        );
        r.rtc.set_memory_size(32 * MIB, 0);
        assert_eq!(u16::from_le_bytes([r.read(0x17), r.read(0x18)]), 31 * 1024);
        assert_eq!(u16::from_le_bytes([r.read(0x34), r.read(0x35)]), 256);
        r.rtc.set_cpu_count(4);
        assert_eq!(r.read(0x5f), 3);
        r.rtc.set_cmos(0x14, 0x06);
        r.rtc.set_cmos(0x10, 0x40);
        r.rtc.update_checksum();
        let sum: u16 = (0x10..=0x2du8).map(|i| u16::from(r.read(i))).sum();
        assert_eq!(u16::from_be_bytes([r.read(0x2e), r.read(0x2f)]), sum);
        // NVRAM is plain memory for the guest too.
        r.write(0x40, 0x5a);
        assert_eq!(r.read(0x40), 0x5a);
    }

    #[test]
    fn nmi_mask_and_index_port() {
        let mut r = Rig::new();
        r.rtc.write(0x70, 0, &[0x8f]);
        assert!(r.rtc.nmi_masked());
        r.rtc.write(0x71, 0, &[0x0a]);
        assert_eq!(r.rtc.cmos(0x0f), 0x0a);
        let mut d = [0];
        r.rtc.read(0x70, 0, &mut d);
        assert_eq!(d[0], 0xff);
        r.rtc.write(0x70, 0, &[0x0f]);
        assert!(!r.rtc.nmi_masked());
    }

    #[test]
    fn day_of_week_register_is_independent() {
        let mut r = Rig::new();
        r.write(0x06, 0x01);
        assert_eq!(r.read(0x06), 0x01);
        r.clock.advance(3 * NS_PER_S as u64);
        assert_eq!(r.read(0x06), 0x02);
    }

    /// A TZif v2 file: CET (+1h) / CEST (+2h), transitions at 1000 and 2000.
    fn tzif_sample() -> Vec<u8> {
        let header = |timecnt: u32, typecnt: u32, charcnt: u32| {
            let mut h = b"TZif2".to_vec();
            h.extend([0u8; 15]);
            for c in [0, 0, 0, timecnt, typecnt, charcnt] {
                h.extend(c.to_be_bytes());
            }
            h
        };
        let mut f = header(2, 2, 8);
        for t in [1000i32, 2000] {
            f.extend(t.to_be_bytes());
        }
        f.extend([1u8, 0]);
        f.extend(3600i32.to_be_bytes());
        f.extend([0, 0]);
        f.extend(7200i32.to_be_bytes());
        f.extend([1, 4]);
        f.extend(b"CET\0CES\0");
        f.extend(header(2, 2, 8));
        for t in [1000i64, 2000] {
            f.extend(t.to_be_bytes());
        }
        f.extend([1u8, 0]);
        f.extend(3600i32.to_be_bytes());
        f.extend([0, 0]);
        f.extend(7200i32.to_be_bytes());
        f.extend([1, 4]);
        f.extend(b"CET\0CES\0");
        f.extend(b"\nCET-1CEST\n");
        f
    }

    #[test]
    fn tzif_offsets() {
        let f = tzif_sample();
        assert_eq!(
            tzif_utc_offset(&f, 0),
            Some(3600),
            "type 0 before the first transition"
        );
        assert_eq!(tzif_utc_offset(&f, 1000), Some(7200));
        assert_eq!(tzif_utc_offset(&f, 1999), Some(7200));
        assert_eq!(tzif_utc_offset(&f, 5000), Some(3600));
        assert_eq!(tzif_utc_offset(b"TZif", 0), None);
        assert_eq!(tzif_utc_offset(b"nope", 0), None);
        if let Ok(utc) = std::fs::read("/usr/share/zoneinfo/Etc/UTC") {
            assert_eq!(tzif_utc_offset(&utc, 1_700_000_000), Some(0));
        }
        if let Ok(tokyo) = std::fs::read("/usr/share/zoneinfo/Asia/Tokyo") {
            assert_eq!(tzif_utc_offset(&tokyo, 1_700_000_000), Some(9 * 3600));
        }
        let utc = host_seconds_for(true);
        assert!((utc - host_seconds(0)).abs() <= 1);
    }

    proptest::proptest! {
        #[test]
        fn tzif_never_panics(cut in 0usize..200, flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 0..8), unix in proptest::prelude::any::<i64>()) {
            let mut f = tzif_sample();
            for (i, b) in flips {
                if let Some(x) = f.get_mut(i) { *x = b; }
            }
            f.truncate(cut);
            let _ = tzif_utc_offset(&f, unix);
        }

        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((0u8..3, proptest::prelude::any::<u8>(), 0u64..3_000_000_000, 1usize..4), 0..200), start in proptest::prelude::any::<i32>()) {
            let clock = Arc::new(ManualClock::new(0));
            let queue = TimerQueue::new(clock.clone());
            let rtc = Rtc::new_shared(clock.clone(), IrqLine::disconnected(), &queue, i64::from(start) * 16);
            for (kind, val, dt, len) in ops {
                clock.advance(dt);
                match kind {
                    0 => rtc.lock().write(0x70, 0, &vec![val; len]),
                    1 => rtc.lock().write(0x71, 0, &vec![val; len]),
                    _ => { let mut d = vec![0; len]; rtc.lock().read(0x70, 0, &mut d); }
                }
                queue.run_due();
            }
        }
    }
}
