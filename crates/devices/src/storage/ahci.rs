//! The Intel ICH8M AHCI SATA controller (8086:2829, revision 2, class 01:06:01) as
//! VirtualBox's DevAHCI presents it: 1-30 ports, 32 command slots, NCQ, 64-bit addressing,
//! AHCI-only (CAP.SAM), interface version 1.1; ABAR in BAR5 (8 KiB), the index/data pair in
//! BAR4 and inert legacy I/O BARs 0-3 (Solaris wants them present); PCI configuration
//! 0x90-0x97 (MAP, PCS) as VirtualBox fills them. Interrupts go out on INTA#.
//!
//! HBA registers (AHCI 1.3 section 3): CAP, GHC (HR, IE, AE), IS (write-1-to-clear), PI, VS;
//! per port CLB/FB, IS/IE, CMD (ST/CR, FRE/FR, CLO, SUD/POD, HPCP from the `.vbox`
//! hot-pluggable flag), TFD, SIG, SSTS/SCTL (COMRESET)/SERR, SACT, CI.
//!
//! Command processing: a write to PxCI (or PxCMD.ST going to 1 with commands pending) runs
//! every issued slot in order, synchronously, in the vCPU thread that made the write (the
//! controller's lock is held; other vCPUs only wait if they touch this HBA): read the
//! command header and the command FIS, run it on the [`Drive`], move the data through the
//! PRDT, write PRDBC, post the D2H register FIS (plus a PIO setup FIS for PIO data-in, which
//! SeaBIOS reads), or for READ/WRITE FPDMA QUEUED a Set Device Bits FIS clearing the tag in
//! PxSACT. An error sets PxIS.TFES and stops the list with the failing slot still in PxCI,
//! so the host's error recovery (clear ST, COMRESET) finds it. Everything read from guest
//! memory is validated; unreadable tables raise Host Bus Fatal Error instead of crashing.

use super::ata::{cmd, Action, Drive, Outcome, TaskFile};
use super::dma;
use crate::pci::{BarKind, Msi, MsiRoute, PciConfig, PciFunction, PciRegion, INTEL_VENDOR_ID};
use iomio::{BusDevice, SharedDevice};
use parking_lot::Mutex;
use pdm::{ApicBus, IrqLine};
use pgm::GuestMemory;
use std::sync::Arc;

/// VirtualBox's device ID (ICH8M).
pub const AHCI_DEVICE_ID: u16 = 0x2829;
/// Most ports VirtualBox offers.
pub const MAX_PORTS: usize = 30;
/// Size of the ABAR (VirtualBox registers 4352 bytes, rounded up to a power of two).
pub const ABAR_SIZE: u64 = 0x2000;

/// HBA capabilities without NP: S64A, SNCQ, SCLO, ISS gen 2, SAM, PSC, SSC, NCS = 32.
const CAP_BASE: u32 =
    (1 << 31) | (1 << 30) | (1 << 24) | (2 << 20) | (1 << 18) | (1 << 14) | (1 << 13) | (31 << 8);
const GHC_HR: u32 = 1 << 0;
const GHC_IE: u32 = 1 << 1;
const GHC_AE: u32 = 1 << 31;
const VERSION: u32 = 0x0001_0100;

/// Port interrupt status bits.
pub mod pis {
    /// Device to host register FIS.
    pub const DHRS: u32 = 1 << 0;
    /// PIO setup FIS.
    pub const PSS: u32 = 1 << 1;
    /// Set device bits FIS.
    pub const SDBS: u32 = 1 << 3;
    /// Host bus fatal error.
    pub const HBFS: u32 = 1 << 29;
    /// Task file error.
    pub const TFES: u32 = 1 << 30;
}

/// Port command bits.
pub mod pcmd {
    /// Start.
    pub const ST: u32 = 1 << 0;
    /// Spin-up device.
    pub const SUD: u32 = 1 << 1;
    /// Power on device.
    pub const POD: u32 = 1 << 2;
    /// Command list override.
    pub const CLO: u32 = 1 << 3;
    /// FIS receive enable.
    pub const FRE: u32 = 1 << 4;
    /// FIS receive running.
    pub const FR: u32 = 1 << 14;
    /// Command list running.
    pub const CR: u32 = 1 << 15;
    /// Hot-plug capable port.
    pub const HPCP: u32 = 1 << 18;
}

/// Offsets in the received-FIS area.
const RFIS_PIO: u64 = 0x20;
const RFIS_D2H: u64 = 0x40;
const RFIS_SDB: u64 = 0x58;

/// One port and its device.
struct Port {
    drive: Option<Drive>,
    hotplug: bool,
    clb: u64,
    fb: u64,
    is: u32,
    ie: u32,
    cmd: u32,
    tfd: u32,
    sig: u32,
    ssts: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    /// Processing stopped after a task-file error until ST is cleared.
    halted: bool,
    /// A control FIS with SRST set was received.
    srst: bool,
}

impl Port {
    fn new(drive: Option<Drive>, hotplug: bool) -> Port {
        let mut p = Port {
            drive,
            hotplug,
            clb: 0,
            fb: 0,
            is: 0,
            ie: 0,
            cmd: 0,
            tfd: 0,
            sig: 0,
            ssts: 0,
            sctl: 0,
            serr: 0,
            sact: 0,
            ci: 0,
            halted: false,
            srst: false,
        };
        p.reset();
        p
    }

    /// Power-on / HBA reset values, with the link (re-)established.
    fn reset(&mut self) {
        self.clb = 0;
        self.fb = 0;
        self.is = 0;
        self.ie = 0;
        self.cmd = pcmd::SUD | pcmd::POD | if self.hotplug { pcmd::HPCP } else { 0 };
        self.sctl = 0;
        self.serr = 0;
        self.sact = 0;
        self.ci = 0;
        self.halted = false;
        self.srst = false;
        self.link_up();
    }

    fn link_up(&mut self) {
        match &mut self.drive {
            Some(d) => {
                d.reset();
                self.ssts = 0x123; // device present, gen 2, active
                self.sig = if d.is_atapi() {
                    0xeb14_0101
                } else {
                    0x0000_0101
                };
                self.tfd = 0x100 | u32::from(d.reset_status());
            }
            None => {
                self.ssts = 0;
                self.sig = 0xffff_ffff;
                self.tfd = 0x7f;
            }
        }
    }
}

/// The HBA state (behind the controller lock).
pub struct Hba {
    ports: Vec<Port>,
    ghc: u32,
    is: u32,
    cap: u32,
    pi: u32,
    mem: Arc<GuestMemory>,
    irq: IrqLine,
    bus_master: bool,
    intx_disabled: bool,
    idp_index: u32,
    /// Where MSI messages go while the guest has MSI enabled (kept current by [`Ahci`]
    /// after every configuration write); None: INTx.
    msi: Option<MsiRoute>,
    /// HBA interrupt-status bits an MSI has already announced: a message goes out only
    /// for bits not in here (edge semantics), and the guest's write that clears a bit
    /// removes it, so a port still pending after that write is announced again.
    msi_sent: u32,
}

/// A device on an AHCI port.
pub struct AhciPortConfig {
    /// Port number (0-29).
    pub port: usize,
    /// The drive.
    pub drive: Drive,
    /// Hot-pluggable (PxCMD.HPCP).
    pub hotplug: bool,
}

impl Hba {
    fn new(
        nports: usize,
        devices: Vec<AhciPortConfig>,
        irq: IrqLine,
        mem: Arc<GuestMemory>,
    ) -> Hba {
        let n = nports.clamp(1, MAX_PORTS);
        let mut slots: Vec<(Option<Drive>, bool)> = (0..n).map(|_| (None, false)).collect();
        for mut d in devices {
            if let Some(s) = slots.get_mut(d.port) {
                d.drive.set_sata(true);
                *s = (Some(d.drive), d.hotplug);
            }
        }
        Hba {
            ports: slots.into_iter().map(|(d, h)| Port::new(d, h)).collect(),
            ghc: GHC_AE,
            is: 0,
            cap: CAP_BASE | (n as u32 - 1),
            pi: if n >= 32 { u32::MAX } else { (1u32 << n) - 1 },
            mem,
            irq,
            bus_master: true,
            intx_disabled: false,
            idp_index: 0,
            msi: None,
            msi_sent: 0,
        }
    }

    fn reset(&mut self) {
        for p in &mut self.ports {
            p.reset();
        }
        self.ghc = GHC_AE;
        self.is = 0;
        self.update_irq();
    }

    /// The drive on `port` (power-off flush, tests).
    pub fn drive_mut(&mut self, port: usize) -> Option<&mut Drive> {
        self.ports.get_mut(port)?.drive.as_mut()
    }

    /// Remove every drive (closing its medium); the ports then look empty.
    pub fn take_drives(&mut self) -> Vec<Drive> {
        self.ports
            .iter_mut()
            .filter_map(|p| p.drive.take())
            .collect()
    }

    fn update_irq(&mut self) {
        for (i, p) in self.ports.iter().enumerate() {
            if p.is & p.ie != 0 {
                self.is |= 1 << i;
            }
        }
        let enabled = self.ghc & GHC_IE != 0 && self.is != 0;
        match &self.msi {
            Some(route) => {
                self.irq.set(false);
                if !enabled {
                    self.msi_sent = 0;
                } else if self.is & !self.msi_sent != 0 {
                    route.signal();
                    self.msi_sent = self.is;
                }
            }
            None => self.irq.set(enabled && !self.intx_disabled),
        }
    }

    /// Read the 32-bit register at `off`.
    pub fn read32(&mut self, off: u64) -> u32 {
        match off {
            0x00 => self.cap,
            0x04 => self.ghc,
            0x08 => self.is,
            0x0c => self.pi,
            0x10 => VERSION,
            0x100.. => {
                let (p, r) = ((off - 0x100) / 0x80, (off - 0x100) % 0x80);
                let Some(port) = self.ports.get(p as usize) else {
                    return 0;
                };
                match r {
                    0x00 => port.clb as u32,
                    0x04 => (port.clb >> 32) as u32,
                    0x08 => port.fb as u32,
                    0x0c => (port.fb >> 32) as u32,
                    0x10 => port.is,
                    0x14 => port.ie,
                    0x18 => port.cmd,
                    0x20 => port.tfd,
                    0x24 => port.sig,
                    0x28 => port.ssts,
                    0x2c => port.sctl,
                    0x30 => port.serr,
                    0x34 => port.sact,
                    0x38 => port.ci,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// Write the 32-bit register at `off` (`mask`: the bytes written).
    pub fn write32(&mut self, off: u64, val: u32, mask: u32) {
        match off {
            0x04 => {
                let v = (self.ghc & !mask) | (val & mask);
                if v & GHC_HR != 0 {
                    self.reset();
                    return;
                }
                self.ghc = GHC_AE | (v & GHC_IE);
                self.update_irq();
            }
            0x08 => {
                self.is &= !(val & mask);
                self.msi_sent &= !(val & mask);
                self.update_irq();
            }
            0x100.. => {
                let (p, r) = (((off - 0x100) / 0x80) as usize, (off - 0x100) % 0x80);
                if p >= self.ports.len() {
                    return;
                }
                self.port_write(p, r, val, mask);
            }
            _ => {}
        }
    }

    fn port_write(&mut self, p: usize, r: u64, val: u32, mask: u32) {
        let merge = |old: u32| (old & !mask) | (val & mask);
        let port = &mut self.ports[p];
        match r {
            0x00 => {
                port.clb = (port.clb & !0xffff_ffff) | u64::from(merge(port.clb as u32) & !0x3ff)
            }
            0x04 => {
                port.clb =
                    (port.clb & 0xffff_ffff) | u64::from(merge((port.clb >> 32) as u32)) << 32
            }
            0x08 => port.fb = (port.fb & !0xffff_ffff) | u64::from(merge(port.fb as u32) & !0xff),
            0x0c => {
                port.fb = (port.fb & 0xffff_ffff) | u64::from(merge((port.fb >> 32) as u32)) << 32
            }
            0x10 => {
                port.is &= !(val & mask);
                self.update_irq();
            }
            0x14 => {
                port.ie = merge(port.ie) & 0xfdc0_00ff;
                self.update_irq();
            }
            0x18 => {
                let v = merge(port.cmd);
                self.write_cmd(p, v);
            }
            0x2c => {
                let old = port.sctl;
                port.sctl = merge(old) & 0xfff;
                let (was, now) = (old & 0xf, port.sctl & 0xf);
                if now == 1 && was != 1 {
                    // COMRESET asserted: the link drops, the device is busy.
                    port.ssts = 0;
                    port.tfd = 0x80;
                    port.ci = 0;
                    port.sact = 0;
                } else if now == 0 && was == 1 {
                    port.link_up();
                    self.post_signature(p);
                }
            }
            0x30 => port.serr &= !(val & mask),
            // SACT and CI only take bits while the port runs (PxCMD.ST).
            0x34 if port.cmd & pcmd::ST != 0 => port.sact |= val & mask,
            0x38 if port.cmd & pcmd::ST != 0 => {
                port.ci |= val & mask;
                self.process(p);
            }
            _ => {}
        }
    }

    fn write_cmd(&mut self, p: usize, v: u32) {
        let port = &mut self.ports[p];
        let keep = port.cmd & (pcmd::HPCP | pcmd::SUD | pcmd::POD);
        // Software-writable bits: ST, CLO, FRE, ATAPI, DLAE, ALPE, ASP, ICC (self-clearing).
        let mut cmd = keep | (v & (pcmd::ST | pcmd::FRE | (0x7 << 24)));
        if v & pcmd::CLO != 0 {
            port.tfd &= !0x88; // clear BSY and DRQ
        }
        if cmd & pcmd::FRE != 0 {
            cmd |= pcmd::FR;
        }
        let start = cmd & pcmd::ST != 0 && port.cmd & pcmd::ST == 0;
        if cmd & pcmd::ST != 0 {
            cmd |= pcmd::CR;
        } else {
            // Stopping the list engine clears the issued and active commands.
            port.ci = 0;
            port.sact = 0;
            port.halted = false;
        }
        let fre_on = cmd & pcmd::FRE != 0 && port.cmd & pcmd::FRE == 0;
        port.cmd = cmd;
        if fre_on && port.drive.is_some() {
            self.post_signature(p);
        }
        if start {
            self.process(p);
        }
    }

    fn fis_enabled(&self, p: usize) -> bool {
        self.ports[p].cmd & pcmd::FRE != 0
    }

    /// Post the device's signature in a D2H register FIS (after a reset).
    fn post_signature(&mut self, p: usize) {
        let Some(d) = &self.ports[p].drive else {
            return;
        };
        let o = Outcome {
            status: d.reset_status(),
            error: 1,
            regs: Some(d.signature()),
        };
        self.post_d2h(p, &o);
    }

    fn write_fis(&mut self, p: usize, off: u64, fis: &[u8]) -> bool {
        if !self.fis_enabled(p) {
            return true;
        }
        let fb = self.ports[p].fb;
        match fb.checked_add(off) {
            Some(a) if self.mem.write(a, fis).is_ok() => true,
            _ => {
                self.ports[p].is |= pis::HBFS;
                false
            }
        }
    }

    fn post_d2h(&mut self, p: usize, o: &Outcome) {
        let mut f = [0u8; 20];
        f[0] = 0x34;
        f[1] = 0x40; // interrupt
        f[2] = o.status;
        f[3] = o.error;
        if let Some(r) = o.regs {
            f[4..7].copy_from_slice(&r.lba[0..3]);
            f[7] = r.device;
            f[8..11].copy_from_slice(&r.lba[3..6]);
            f[12] = r.count[0];
            f[13] = r.count[1];
        }
        self.ports[p].tfd = u32::from(o.error) << 8 | u32::from(o.status);
        self.write_fis(p, RFIS_D2H, &f);
        self.ports[p].is |= pis::DHRS;
        self.update_irq();
    }

    fn post_pio_setup(&mut self, p: usize, o: &Outcome, len: usize) {
        let mut f = [0u8; 20];
        f[0] = 0x5f;
        f[1] = 0x20 | 0x40; // device to host, interrupt
        f[2] = o.status;
        f[3] = o.error;
        f[15] = o.status;
        f[16..18].copy_from_slice(&(len.min(0xffff) as u16).to_le_bytes());
        self.write_fis(p, RFIS_PIO, &f);
        self.ports[p].is |= pis::PSS;
    }

    fn post_sdb(&mut self, p: usize, o: &Outcome, tags: u32) {
        let mut f = [0u8; 8];
        f[0] = 0xa1;
        f[1] = 0x40;
        f[2] = o.status & 0x77;
        f[3] = o.error;
        f[4..8].copy_from_slice(&tags.to_le_bytes());
        self.ports[p].tfd =
            (self.ports[p].tfd & 0xff00) | u32::from(o.status & 0x77) | (self.ports[p].tfd & 0x88);
        self.ports[p].sact &= !tags;
        self.write_fis(p, RFIS_SDB, &f);
        self.ports[p].is |= pis::SDBS;
        self.update_irq();
    }

    /// Run the issued commands of port `p`.
    fn process(&mut self, p: usize) {
        if !self.bus_master {
            return; // commands stay issued until bus mastering is enabled
        }
        for slot in 0..32u32 {
            let port = &self.ports[p];
            if port.halted || port.cmd & pcmd::ST == 0 {
                return;
            }
            if port.ci & (1 << slot) == 0 {
                continue;
            }
            if !self.run_slot(p, slot) {
                return;
            }
        }
    }

    fn fatal(&mut self, p: usize, what: &str) -> bool {
        tracing::debug!("AHCI port {p}: host bus fatal error: {what}");
        let port = &mut self.ports[p];
        port.is |= pis::HBFS;
        port.halted = true;
        self.update_irq();
        false
    }

    /// Execute one command slot; false stops the list.
    fn run_slot(&mut self, p: usize, slot: u32) -> bool {
        let hdr_addr = self.ports[p].clb + u64::from(slot) * 32;
        let mut hdr = [0u8; 16];
        if self.mem.read(hdr_addr, &mut hdr).is_err() {
            return self.fatal(p, "command header unreadable");
        }
        let dw0 = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let prdtl = (dw0 >> 16) as u16;
        let atapi_flag = dw0 & (1 << 5) != 0;
        let ctba = (u64::from(u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]))
            | u64::from(u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]])) << 32)
            & !0x7f;
        let mut cfis = [0u8; 20];
        if self.mem.read(ctba, &mut cfis).is_err() {
            return self.fatal(p, "command table unreadable");
        }
        let bit = 1u32 << slot;
        if cfis[0] != 0x27 {
            // Not a register H2D FIS: the device rejects it.
            return self.fail(p, Outcome::abort());
        }
        if cfis[1] & 0x80 == 0 {
            // Device control update (software reset sequence).
            let srst = cfis[15] & 0x04 != 0;
            let was = self.ports[p].srst;
            self.ports[p].srst = srst;
            self.ports[p].ci &= !bit;
            if srst {
                self.ports[p].tfd = 0x80;
            } else if was {
                self.ports[p].link_up();
                self.post_signature(p);
            }
            return true;
        }
        let tf = TaskFile {
            command: cfis[2],
            features: [cfis[3], cfis[11]],
            count: [cfis[12], cfis[13]],
            lba: [cfis[4], cfis[5], cfis[6], cfis[8], cfis[9], cfis[10]],
            device: cfis[7],
        };
        let ncq = matches!(tf.command, cmd::READ_FPDMA_QUEUED | cmd::WRITE_FPDMA_QUEUED);
        let Some(drive) = self.ports[p].drive.as_mut() else {
            return self.fail(p, Outcome::abort());
        };
        let mut action = drive.command(&tf);
        if let Action::Packet { dma } = action {
            let mut cdb = [0u8; 12];
            if !atapi_flag || self.mem.read(ctba.wrapping_add(0x40), &mut cdb).is_err() {
                return self.fail(p, Outcome::abort());
            }
            action = match self.ports[p].drive.as_mut() {
                Some(d) => d.packet(&cdb, dma),
                None => Action::Complete(Outcome::abort()),
            };
        }
        // Wrapping: an address past the end of guest memory fails the reads that follow.
        let prdt = ctba.wrapping_add(0x80);
        let (outcome, moved, pio_in) = match action {
            Action::Complete(o) => (o, 0, false),
            Action::DataIn {
                data, dma, outcome, ..
            } => match dma::ahci_prdt(&self.mem, prdt, prdtl, data.len())
                .and_then(|s| dma::scatter(&self.mem, &s, &data))
            {
                Ok(n) => (outcome, n, !dma),
                Err(e) => return self.fatal(p, &e.to_string()),
            },
            Action::DataOut { len, pending, .. } => {
                match dma::ahci_prdt(&self.mem, prdt, prdtl, len)
                    .and_then(|s| dma::gather(&self.mem, &s, len))
                {
                    Ok(data) if data.len() == len => {
                        let o = match self.ports[p].drive.as_mut() {
                            Some(d) => d.write_data(pending, &data),
                            None => Outcome::abort(),
                        };
                        (o, len, false)
                    }
                    // The PRDT holds less than the command transfers.
                    Ok(_) => (Outcome::abort(), 0, false),
                    Err(e) => return self.fatal(p, &e.to_string()),
                }
            }
            Action::Packet { .. } => (Outcome::abort(), 0, false),
        };
        // PRDBC: bytes transferred.
        let _ = self.mem.write(hdr_addr + 4, &(moved as u32).to_le_bytes());
        if outcome.is_error() {
            return self.fail(p, outcome);
        }
        if ncq {
            let tag = u32::from(tf.count[0] >> 3);
            self.ports[p].ci &= !bit;
            self.post_sdb(p, &outcome, 1 << tag);
        } else {
            self.ports[p].ci &= !bit;
            if pio_in {
                self.post_pio_setup(p, &outcome, moved);
            }
            self.post_d2h(p, &outcome);
        }
        true
    }

    /// A command failed: report it in PxTFD and a D2H FIS, raise TFES and stop with the
    /// slot still issued.
    fn fail(&mut self, p: usize, o: Outcome) -> bool {
        self.post_d2h(p, &o);
        let port = &mut self.ports[p];
        port.is |= pis::TFES;
        port.halted = true;
        self.update_irq();
        false
    }
}

/// MMIO (ABAR) and the index/data pair in front of the HBA.
struct Regs {
    hba: Arc<Mutex<Hba>>,
    idp: bool,
}

/// The pieces of an access of `len` bytes at `offset` (1-16 bytes at any offset, as the
/// MMIO bus delivers them: SSE moves, unaligned and dword-crossing accesses), each inside
/// one dword: (dword offset, first byte lane, bytes, position in the access).
fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= len {
            return None;
        }
        let off = offset.checked_add(pos as u64)?;
        let lane = (off & 3) as usize;
        let take = (4 - lane).min(len - pos);
        let piece = (off & !3, lane, take, pos);
        pos += take;
        Some(piece)
    })
}

impl Hba {
    /// The dword at `aligned` in the ABAR, or (`idp`) in the index/data pair.
    fn regs_read(&mut self, idp: bool, aligned: u64) -> u32 {
        if !idp {
            return self.read32(aligned);
        }
        match aligned {
            0 => self.idp_index,
            4 => self.read32(u64::from(self.idp_index & !3)),
            _ => 0,
        }
    }

    /// Write the bytes of `v` selected by `mask` to the dword at `aligned` in the ABAR, or
    /// (`idp`) in the index/data pair.
    fn regs_write(&mut self, idp: bool, aligned: u64, v: u32, mask: u32) {
        if !idp {
            self.write32(aligned, v, mask);
            return;
        }
        match aligned {
            0 => self.idp_index = (self.idp_index & !mask) | (v & mask),
            4 => {
                let i = u64::from(self.idp_index & !3);
                self.write32(i, v, mask);
            }
            _ => {}
        }
    }
}

impl BusDevice for Regs {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        let mut h = self.hba.lock();
        for (aligned, lane, take, pos) in pieces(offset, data.len()) {
            let v = h.regs_read(self.idp, aligned);
            for (i, b) in data[pos..pos + take].iter_mut().enumerate() {
                *b = (v >> (8 * (lane + i))) as u8;
            }
        }
    }

    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        let mut h = self.hba.lock();
        for (aligned, lane, take, pos) in pieces(offset, data.len()) {
            let (mut v, mut mask) = (0u32, 0u32);
            for (i, b) in data[pos..pos + take].iter().enumerate() {
                v |= u32::from(*b) << (8 * (lane + i));
                mask |= 0xff << (8 * (lane + i));
            }
            h.regs_write(self.idp, aligned, v, mask);
        }
    }
}

/// The legacy I/O BARs 0-3: present, inert.
struct Inert;

impl BusDevice for Inert {
    fn read(&mut self, _addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, _addr: u64, _offset: u64, _data: &[u8]) {}
}

/// The AHCI PCI function.
pub struct Ahci {
    config: PciConfig,
    msi: Option<Msi>,
    hba: Arc<Mutex<Hba>>,
    abar: SharedDevice,
    idp: SharedDevice,
    inert: SharedDevice,
}

impl std::fmt::Debug for Ahci {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ahci({:?}, {} ports)",
            self.config,
            self.hba.lock().ports.len()
        )
    }
}

impl Ahci {
    /// An HBA with `ports` ports (1-30) and `devices` on them; `irq` is its INTA# line;
    /// with `msi` (the APIC bus) it also offers MSI, as VirtualBox's does.
    pub fn new(
        ports: usize,
        devices: Vec<AhciPortConfig>,
        irq: IrqLine,
        msi: Option<Arc<dyn ApicBus>>,
        mem: Arc<GuestMemory>,
    ) -> Ahci {
        let mut config = PciConfig::new(INTEL_VENDOR_ID, AHCI_DEVICE_ID, 0x010601, 0x02);
        let bars = [(0, 8), (1, 4), (2, 8), (3, 4), (4, 16)];
        for (i, size) in bars {
            config
                .add_bar(i, BarKind::Io, size)
                .unwrap_or_else(|e| unreachable!("static BAR layout: {e}"));
        }
        config
            .add_bar(
                5,
                BarKind::Mem32 {
                    prefetchable: false,
                },
                ABAR_SIZE,
            )
            .unwrap_or_else(|e| unreachable!("static BAR layout: {e}"));
        config.set_interrupt_pin(1);
        // VirtualBox's capability list: MSI (one vector) at 0x80, then PCI power
        // management (D0 only) at 0x70, then the SATA capability at 0xa8; without MSI
        // the list starts at 0x70.
        let msi = msi.map(|bus| {
            Msi::add(&mut config, 0x80, bus)
                .unwrap_or_else(|e| unreachable!("static capability layout: {e}"))
        });
        for (at, id, body) in [
            (0x70, 0x01, [0x03, 0x00, 0, 0, 0, 0]),
            (0xa8, 0x12, [0x10, 0x00, 0x28, 0, 0, 0]),
        ] {
            config
                .add_capability_at(at, id, &body)
                .unwrap_or_else(|e| unreachable!("static capability layout: {e}"));
        }
        config.set_u8(0x90, 0x40); // MAP: AHCI mode
        config.set_u8(0x92, 0x3f); // PCS: ports enabled
        let mut present = 0u8;
        for d in &devices {
            if d.port < 6 {
                present |= 1 << d.port;
            }
        }
        config.set_u8(0x93, present);
        config.set_u8(0x94, 0x80);
        config.set_u8(0x95, 0x01);
        config.set_u8(0x97, 0x78);
        let hba = Arc::new(Mutex::new(Hba::new(ports, devices, irq, mem)));
        let abar: SharedDevice = Arc::new(Mutex::new(Regs {
            hba: hba.clone(),
            idp: false,
        }));
        let idp: SharedDevice = Arc::new(Mutex::new(Regs {
            hba: hba.clone(),
            idp: true,
        }));
        let inert: SharedDevice = Arc::new(Mutex::new(Inert));
        let mut a = Ahci {
            config,
            msi,
            hba,
            abar,
            idp,
            inert,
        };
        a.sync_command();
        a
    }

    /// The HBA (power-off flush, tests).
    pub fn hba(&self) -> Arc<Mutex<Hba>> {
        self.hba.clone()
    }

    fn sync_command(&mut self) {
        let bm = self.config.bus_master_enabled();
        let intx_off = self.config.intx_disabled();
        let mut h = self.hba.lock();
        let enabling = bm && !h.bus_master;
        h.bus_master = bm;
        h.intx_disabled = intx_off;
        h.msi = self.msi.as_ref().and_then(|m| m.route(&self.config));
        if enabling {
            for p in 0..h.ports.len() {
                h.process(p);
            }
        }
        h.update_irq();
    }
}

impl PciFunction for Ahci {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.config.read_bytes(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        self.config.write_bytes(offset, data);
        self.sync_command();
    }

    fn regions(&self) -> Vec<PciRegion> {
        self.config
            .decoded_bars()
            .into_iter()
            .map(|b| {
                let (name, device) = match b.index {
                    5 => ("ahci-abar", self.abar.clone()),
                    4 => ("ahci-idp", self.idp.clone()),
                    _ => ("ahci-legacy", self.inert.clone()),
                };
                PciRegion {
                    space: b.space,
                    base: b.base,
                    size: b.size,
                    name: name.into(),
                    device,
                }
            })
            .collect()
    }

    fn reset(&mut self) {
        self.hba.lock().reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioapic::tests::Recorder;
    use crate::storage::ata::tests::{disk, MemDisk};
    use crate::storage::ata::{DriveKind, DriveOptions};
    use pgm::MemoryLayout;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Rig {
        ahci: Ahci,
        hba: Arc<Mutex<Hba>>,
        mem: Arc<GuestMemory>,
        irq: Arc<AtomicBool>,
        msis: Arc<Recorder>,
        disk: MemDisk,
    }

    const CLB: u64 = 0x10000;
    const FB: u64 = 0x11000;
    const CT: u64 = 0x12000;
    const BUF: u64 = 0x20000;

    fn rig() -> Rig {
        let (d, m) = disk(256);
        let cd = Drive::new(
            DriveKind::Cdrom,
            Some(Box::new(MemDisk::new(16 * 2048))),
            DriveOptions::vbox(DriveKind::Cdrom, "cd"),
        );
        let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(16 << 20).unwrap()).unwrap());
        let level = Arc::new(AtomicBool::new(false));
        let l = level.clone();
        let sink: Arc<dyn pdm::IrqSink> = Arc::new(move |_, v| l.store(v, Ordering::SeqCst));
        let msis = Arc::new(Recorder::default());
        let a = Ahci::new(
            4,
            vec![
                AhciPortConfig {
                    port: 0,
                    drive: d,
                    hotplug: false,
                },
                AhciPortConfig {
                    port: 2,
                    drive: cd,
                    hotplug: true,
                },
            ],
            IrqLine::new(sink, 11),
            Some(msis.clone()),
            mem.clone(),
        );
        a.hba().lock().bus_master = true;
        Rig {
            hba: a.hba(),
            ahci: a,
            mem,
            irq: level,
            msis,
            disk: m,
        }
    }

    impl Rig {
        fn w(&self, off: u64, v: u32) {
            self.hba.lock().write32(off, v, u32::MAX);
        }
        fn r(&self, off: u64) -> u32 {
            self.hba.lock().read32(off)
        }
        fn port_on(&self, p: u64) {
            self.w(0x100 + p * 0x80, CLB as u32);
            self.w(0x108 + p * 0x80, FB as u32);
            self.w(0x118 + p * 0x80, pcmd::FRE | pcmd::ST);
        }
        /// Command in slot `slot` with FIS `cfis`, one PRD of `len` bytes at BUF.
        fn cmd(&self, slot: u64, cfis: [u8; 20], len: u32, write: bool, atapi: Option<[u8; 12]>) {
            let ct = CT + slot * 0x100;
            let dw0: u32 = 5
                | (1 << 16)
                | if write { 1 << 6 } else { 0 }
                | if atapi.is_some() { 1 << 5 } else { 0 };
            let mut h = [0u8; 32];
            h[0..4].copy_from_slice(&dw0.to_le_bytes());
            h[8..16].copy_from_slice(&ct.to_le_bytes());
            self.mem.write(CLB + slot * 32, &h).unwrap();
            self.mem.write(ct, &cfis).unwrap();
            if let Some(c) = atapi {
                self.mem.write(ct + 0x40, &c).unwrap();
            }
            let mut prd = [0u8; 16];
            prd[0..8].copy_from_slice(&BUF.to_le_bytes());
            prd[12..16].copy_from_slice(&(len - 1).to_le_bytes());
            self.mem.write(ct + 0x80, &prd).unwrap();
        }
    }

    fn h2d(command: u8, lba: u64, count: u16, features: u16) -> [u8; 20] {
        let b = lba.to_le_bytes();
        let mut f = [0u8; 20];
        f[0] = 0x27;
        f[1] = 0x80;
        f[2] = command;
        f[3] = features as u8;
        f[4..7].copy_from_slice(&b[0..3]);
        f[7] = 0x40;
        f[8..11].copy_from_slice(&b[3..6]);
        f[11] = (features >> 8) as u8;
        f[12] = count as u8;
        f[13] = (count >> 8) as u8;
        f
    }

    #[test]
    fn hba_registers_like_virtualbox() {
        let r = rig();
        let cap = r.r(0);
        assert_eq!(cap & 0x1f, 3, "4 ports");
        assert_eq!((cap >> 8) & 0x1f, 31, "32 slots");
        assert_ne!(cap & (1 << 30), 0, "NCQ");
        assert_eq!(r.r(0x0c), 0xf);
        assert_eq!(r.r(0x10), 0x0001_0100);
        assert_eq!(r.r(0x04) & GHC_AE, GHC_AE);
        assert_eq!(r.r(0x124), 0x101, "disk signature");
        assert_eq!(r.r(0x128), 0x123);
        assert_eq!(r.r(0x224), 0xeb14_0101, "ATAPI signature");
        assert_ne!(r.r(0x218) & pcmd::HPCP, 0, "hot-pluggable port 2");
        assert_eq!(r.r(0x118) & pcmd::HPCP, 0);
        assert_eq!(r.r(0x2a8), 0, "port 3 empty");
        assert_eq!(r.r(0x100 + 10 * 0x80), 0, "beyond NP");
    }

    #[test]
    fn identify_and_dma_read_post_fises_and_interrupt() {
        let r = rig();
        r.port_on(0);
        assert_eq!(r.r(0x118) & (pcmd::CR | pcmd::FR), pcmd::CR | pcmd::FR);
        r.w(0x114, 0xffff_ffff);
        r.w(0x04, GHC_IE);
        r.w(0x110, 0xffff_ffff);
        r.w(0x08, 0xffff_ffff);
        assert!(!r.irq.load(Ordering::SeqCst));
        r.cmd(0, h2d(0xec, 0, 0, 0), 512, false, None);
        r.w(0x138, 1);
        assert_eq!(r.r(0x138), 0);
        assert_eq!(r.r(0x110) & (pis::DHRS | pis::PSS), pis::DHRS | pis::PSS);
        assert!(r.irq.load(Ordering::SeqCst));
        assert_eq!(r.r(0x08), 1);
        let mut model = [0u8; 8];
        r.mem.read(BUF + 54, &mut model).unwrap();
        assert_eq!(&model, b"BVXOH RA", "byte-swapped \"VBOX HAR\"");
        let mut prdbc = [0u8; 4];
        r.mem.read(CLB + 4, &mut prdbc).unwrap();
        assert_eq!(u32::from_le_bytes(prdbc), 512);
        assert_eq!(r.mem.read_le::<1>(FB + 0x40).unwrap(), 0x34);
        r.w(0x110, 0xffff_ffff);
        r.w(0x08, 1);
        assert!(!r.irq.load(Ordering::SeqCst));

        r.cmd(3, h2d(0x25, 10, 4, 0), 2048, false, None);
        r.w(0x138, 1 << 3);
        let mut got = vec![0u8; 2048];
        r.mem.read(BUF, &mut got).unwrap();
        assert_eq!(
            got,
            r.disk.data.lock().unwrap()[10 * 512..14 * 512].to_vec()
        );
        assert_eq!(r.r(0x120) & 0xff, 0x50);
    }

    #[test]
    fn msi_like_virtualbox_announces_each_new_interrupt_once() {
        let mut r = rig();
        // VirtualBox's capability chain: MSI 0x80 -> PM 0x70 -> SATA 0xa8.
        let mut b = [0u8; 1];
        let mut chain = Vec::new();
        r.ahci.config_read(0x34, &mut b);
        while b[0] != 0 {
            let at = b[0];
            let mut id = [0u8; 1];
            r.ahci.config_read(at, &mut id);
            chain.push((at, id[0]));
            r.ahci.config_read(at + 1, &mut b);
        }
        assert_eq!(chain, [(0x80, 0x05), (0x70, 0x01), (0xa8, 0x12)]);
        // The guest programs vector 0x41 for APIC 0 and enables MSI.
        r.ahci.config_write(0x84, &0xfee0_0000u32.to_le_bytes());
        r.ahci.config_write(0x88, &0x41u16.to_le_bytes());
        r.ahci.config_write(0x82, &1u16.to_le_bytes());
        r.ahci.config_write(0x04, &0x0006u16.to_le_bytes()); // memory, bus master
        r.port_on(0);
        r.w(0x114, 0xffff_ffff);
        r.w(0x04, GHC_IE);
        r.w(0x110, 0xffff_ffff);
        r.w(0x08, 0xffff_ffff);
        // Enabling interrupts announced the port's start-up status; counted from here.
        let base = r.msis.0.lock().len();
        let sent = |r: &Rig| r.msis.0.lock().len() - base;
        r.cmd(0, h2d(0xec, 0, 0, 0), 512, false, None);
        r.w(0x138, 1);
        assert_eq!(sent(&r), 1, "the completion is announced");
        assert_eq!(r.msis.0.lock()[base].vector, 0x41);
        assert!(
            !r.irq.load(Ordering::SeqCst),
            "INTx stays quiet with MSI on"
        );
        // A second completion before the guest acknowledged: the port's bit is already
        // announced, so no second message (the handler will see both).
        r.cmd(1, h2d(0xec, 0, 0, 0), 512, false, None);
        r.w(0x138, 2);
        assert_eq!(sent(&r), 1);
        // The guest clears the HBA bit but not the port's: still pending, announced again.
        r.w(0x08, 1);
        assert_eq!(sent(&r), 2);
        // Port, then HBA acknowledged: nothing pending, nothing sent.
        r.w(0x110, 0xffff_ffff);
        r.w(0x08, 1);
        assert_eq!(sent(&r), 2);
        r.cmd(2, h2d(0xec, 0, 0, 0), 512, false, None);
        r.w(0x138, 4);
        assert_eq!(sent(&r), 3, "the next completion is announced");
        // MSI off again: back to INTx, which is asserted for the pending completion.
        r.ahci.config_write(0x82, &0u16.to_le_bytes());
        assert!(r.irq.load(Ordering::SeqCst));
        assert_eq!(sent(&r), 3);
    }

    #[test]
    fn ncq_write_completes_with_sdb() {
        let r = rig();
        r.port_on(0);
        r.mem.write(BUF, &[0xcd; 1024]).unwrap();
        let mut f = h2d(0x61, 100, 5 << 3, 2);
        f[7] = 0x40;
        r.cmd(5, f, 1024, true, None);
        r.w(0x134, 1 << 5);
        r.w(0x138, 1 << 5);
        assert_eq!(r.r(0x134), 0, "SACT cleared");
        assert_eq!(r.r(0x138), 0);
        assert_ne!(r.r(0x110) & pis::SDBS, 0);
        assert_eq!(r.mem.read_le::<4>(FB + RFIS_SDB + 4).unwrap(), 1 << 5);
        assert!(r.disk.data.lock().unwrap()[100 * 512..102 * 512]
            .iter()
            .all(|&b| b == 0xcd));
    }

    #[test]
    fn error_halts_until_st_cleared() {
        let r = rig();
        r.port_on(0);
        r.cmd(0, h2d(0xa1, 0, 0, 0), 512, false, None); // IDENTIFY PACKET on a disk
        r.cmd(1, h2d(0xec, 0, 0, 0), 512, false, None);
        r.w(0x138, 3);
        assert_ne!(r.r(0x110) & pis::TFES, 0);
        assert_eq!(r.r(0x138), 3, "failed slot and the rest stay issued");
        assert_eq!(r.r(0x120), 0x0441, "ABRT, ERR|DRDY");
        r.w(0x118, pcmd::FRE);
        assert_eq!(r.r(0x138), 0);
        assert_eq!(r.r(0x118) & pcmd::CR, 0);
        r.w(0x118, pcmd::FRE | pcmd::ST);
        r.w(0x138, 2);
        assert_eq!(r.r(0x138), 0);
        assert_eq!(r.r(0x120) & 0xff, 0x50);
    }

    #[test]
    fn atapi_inquiry_through_acmd() {
        let r = rig();
        r.port_on(2);
        let mut cdb = [0u8; 12];
        cdb[0] = 0x12;
        cdb[4] = 36;
        r.cmd(0, h2d(0xa0, 0, 0, 1), 36, false, Some(cdb));
        r.w(0x100 + 2 * 0x80 + 0x38, 1);
        let mut d = [0u8; 36];
        r.mem.read(BUF, &mut d).unwrap();
        assert_eq!(&d[8..12], b"VBOX");
        assert_eq!(r.r(0x220) & 0xff, 0x50);
    }

    #[test]
    fn comreset_and_hba_reset() {
        let r = rig();
        r.port_on(0);
        r.w(0x12c, 1);
        assert_eq!(r.r(0x128), 0);
        assert_eq!(r.r(0x120) & 0x80, 0x80);
        r.w(0x12c, 0);
        assert_eq!(r.r(0x128), 0x123);
        assert_ne!(r.r(0x110) & pis::DHRS, 0, "signature FIS posted");
        assert_eq!(r.mem.read_le::<1>(FB + 0x40 + 12).unwrap(), 1);
        r.w(0x04, GHC_HR);
        assert_eq!(r.r(0x04), GHC_AE);
        assert_eq!(r.r(0x118) & (pcmd::ST | pcmd::FRE), 0);
        assert_eq!(r.r(0x100), 0);
    }

    #[test]
    fn bad_tables_raise_host_bus_fatal_error() {
        let r = rig();
        r.w(0x100, 0xfff0_0000);
        r.w(0x104, 0x7fff);
        r.w(0x118, pcmd::ST);
        r.w(0x138, 1);
        assert_ne!(r.r(0x110) & pis::HBFS, 0);
    }

    #[test]
    fn idp_reaches_the_registers() {
        let r = rig();
        let mut idp = Regs {
            hba: r.hba.clone(),
            idp: true,
        };
        idp.write(0, 0, &0x10u32.to_le_bytes());
        let mut v = [0u8; 4];
        idp.read(0, 4, &mut v);
        assert_eq!(u32::from_le_bytes(v), VERSION);
    }

    #[test]
    fn abar_accesses_of_any_width_and_offset() {
        let r = rig();
        let mut abar = Regs {
            hba: r.hba.clone(),
            idp: false,
        };
        // An SSE load of CAP, GHC, IS and PI (found by fuzzing: it shifted a u32 by up to
        // 120 bits, a panic with overflow checks).
        let want: Vec<u8> = [0x00, 0x04, 0x08, 0x0c]
            .iter()
            .flat_map(|&o| r.r(o).to_le_bytes())
            .collect();
        let mut v = [0u8; 16];
        abar.read(0, 0, &mut v);
        assert_eq!(v.to_vec(), want);
        // Unaligned, crossing a dword: CAP's top byte and GHC's low two.
        let mut v = [0u8; 3];
        abar.read(3, 3, &mut v);
        assert_eq!(v.to_vec(), want[3..6].to_vec());
        // An unaligned 8-byte write lands in the three dwords it covers.
        abar.write(
            0x102,
            0x102,
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
        );
        assert_eq!(r.r(0x100), 0x2211_0000);
        assert_eq!(r.r(0x104), 0x6655_4433);
        assert_eq!(r.r(0x108), 0x8800, "FB keeps its alignment");
        // The end of the BAR and beyond: zeros, no wrap.
        let mut v = [0xffu8; 16];
        abar.read(u64::MAX - 7, u64::MAX - 7, &mut v);
        assert_eq!(v[..8], [0; 8]);
    }

    proptest::proptest! {
        #[test]
        fn wide_reads_are_their_bytes_and_writes_never_panic(
            off in 0u64..0x2010, len in 1usize..=16, v in proptest::array::uniform16(proptest::num::u8::ANY)) {
            let r = rig();
            let mut abar = Regs { hba: r.hba.clone(), idp: false };
            let mut wide = [0u8; 16];
            abar.read(off, off, &mut wide[..len]);
            let bytes: Vec<u8> = (0..len as u64)
                .map(|i| {
                    let mut b = [0u8; 1];
                    abar.read(off + i, off + i, &mut b);
                    b[0]
                })
                .collect();
            proptest::prop_assert_eq!(wide[..len].to_vec(), bytes);
            abar.write(off, off, &v[..len]);
            let mut idp = Regs { hba: r.hba.clone(), idp: true };
            idp.write(off & 0xf, off & 0xf, &v[..len]);
            idp.read(off & 0xf, off & 0xf, &mut wide[..len]);
        }

        #[test]
        fn random_register_and_memory_traffic_never_panics(
            ops in proptest::collection::vec((0u64..0x300, proptest::num::u32::ANY), 0..200),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            let r = rig();
            r.mem.write(CLB, &junk).unwrap();
            r.mem.write(CT, &junk).unwrap();
            for (off, v) in ops {
                let off = off & !3;
                // Keep the tables in RAM most of the time, but let the guest point anywhere.
                let v = match off { 0x100 | 0x180 | 0x200 if v & 1 == 0 => CLB as u32, _ => v };
                r.w(off, v);
                let _ = r.r(off);
            }
        }
    }
}
