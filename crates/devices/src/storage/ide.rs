//! One IDE channel (ATA-6 register interface, two devices) with its bus-master DMA engine
//! (PIIX datasheet 2.7 "Bus Master IDE"): command block registers (data, error/features,
//! sector count, LBA low/mid/high, device, status/command), the control block (alternate
//! status / device control with nIEN, SRST and HOB), PIO transfers in DRQ blocks, ATAPI
//! packets with the byte-count limit, and DMA through the PRD table.
//!
//! Both devices latch every command-block write (so each keeps its own copy, as on a real
//! cable); reads come from the selected device. With no device on the channel, or with the
//! slave selected and absent, registers read 0 (what QEMU answers and what SeaBIOS's and
//! Linux's probes expect). The interrupt line is the channel's INTRQ: set when a command
//! completes or a DRQ block is ready, cleared by reading the status register, masked by nIEN.
//!
//! I/O model: commands run synchronously in the vCPU thread that writes the command
//! register (or starts the bus master): the disk read or write happens under the
//! controller's lock before the access returns. Only vCPUs touching this channel wait.

use super::ata::{error, status, Action, Drive, Outcome, PendingOut, TaskFile};
use super::dma;
use pdm::IrqLine;
use pgm::GuestMemory;
use std::sync::Arc;

/// Device control: interrupts disabled.
const CTL_NIEN: u8 = 0x02;
/// Device control: software reset.
const CTL_SRST: u8 = 0x04;
/// Device control: read the previous (HOB) register values.
const CTL_HOB: u8 = 0x80;

/// Bus-master command: start.
pub const BM_CMD_START: u8 = 0x01;
/// Bus-master command: direction (1 = device to memory).
pub const BM_CMD_READ: u8 = 0x08;
/// Bus-master status: active.
pub const BM_ST_ACTIVE: u8 = 0x01;
/// Bus-master status: error.
pub const BM_ST_ERROR: u8 = 0x02;
/// Bus-master status: interrupt.
pub const BM_ST_INTR: u8 = 0x04;
/// Bus-master status: drive 0/1 DMA capable (software-owned bits).
const BM_ST_CAPS: u8 = 0x60;

/// Command block registers of one device (index 0 current, 1 previous/HOB).
#[derive(Debug, Clone, Copy, Default)]
struct Regs {
    feature: [u8; 2],
    nsect: [u8; 2],
    lbal: [u8; 2],
    lbam: [u8; 2],
    lbah: [u8; 2],
    device: u8,
    status: u8,
    error: u8,
}

impl Regs {
    fn push(r: &mut [u8; 2], v: u8) {
        r[1] = r[0];
        r[0] = v;
    }

    fn taskfile(&self, command: u8) -> TaskFile {
        TaskFile {
            command,
            features: self.feature,
            count: self.nsect,
            lba: [
                self.lbal[0],
                self.lbam[0],
                self.lbah[0],
                self.lbal[1],
                self.lbam[1],
                self.lbah[1],
            ],
            device: self.device,
        }
    }
}

/// The data phase in progress.
#[derive(Debug, Default)]
enum Xfer {
    #[default]
    Idle,
    PioIn {
        data: Vec<u8>,
        pos: usize,
        end: usize,
        block: usize,
        outcome: Outcome,
        atapi: bool,
    },
    PioOut {
        data: Vec<u8>,
        pos: usize,
        end: usize,
        block: usize,
        pending: PendingOut,
    },
    Packet {
        cdb: [u8; 12],
        pos: usize,
        dma: bool,
    },
    DmaIn {
        data: Vec<u8>,
        outcome: Outcome,
        atapi: bool,
    },
    DmaOut {
        len: usize,
        pending: PendingOut,
    },
}

/// The bus-master registers of one channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusMaster {
    /// Command register.
    pub cmd: u8,
    /// Status register.
    pub status: u8,
    /// PRD table address.
    pub prd: u32,
}

/// One IDE channel.
pub struct IdeChannel {
    drives: [Option<Drive>; 2],
    regs: [Regs; 2],
    ctrl: u8,
    xfer: Xfer,
    /// The device the transfer belongs to.
    xfer_dev: usize,
    irq_pending: bool,
    irq: IrqLine,
    mem: Arc<GuestMemory>,
    bm: BusMaster,
    /// Bus mastering enabled in the PCI command register.
    pub bus_master_enabled: bool,
}

impl std::fmt::Debug for IdeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdeChannel")
            .field("drives", &self.drives)
            .field("xfer", &self.xfer)
            .field("bm", &self.bm)
            .finish()
    }
}

impl IdeChannel {
    /// A channel with `master` and `slave`, interrupting on `irq`, DMA into `mem`.
    pub fn new(
        master: Option<Drive>,
        slave: Option<Drive>,
        irq: IrqLine,
        mem: Arc<GuestMemory>,
    ) -> Self {
        let mut c = IdeChannel {
            drives: [master, slave],
            regs: [Regs::default(); 2],
            ctrl: 0,
            xfer: Xfer::Idle,
            xfer_dev: 0,
            irq_pending: false,
            irq,
            mem,
            bm: BusMaster::default(),
            bus_master_enabled: true,
        };
        c.reset();
        c
    }

    /// Hardware reset: devices show their signatures, no transfer, no interrupt.
    pub fn reset(&mut self) {
        self.ctrl = 0;
        self.bm = BusMaster::default();
        self.reset_devices();
        self.irq_pending = false;
        self.update_irq();
    }

    fn reset_devices(&mut self) {
        self.xfer = Xfer::Idle;
        for i in 0..2 {
            let r = &mut self.regs[i];
            *r = Regs::default();
            if let Some(d) = &mut self.drives[i] {
                d.reset();
                let sig = d.signature();
                r.nsect = [sig.count[0], 0];
                r.lbal = [sig.lba[0], 0];
                r.lbam = [sig.lba[1], 0];
                r.lbah = [sig.lba[2], 0];
                r.status = d.reset_status();
                r.error = 0x01;
            }
        }
    }

    /// Give access to a drive (flush on power-off, tests).
    pub fn drive_mut(&mut self, i: usize) -> Option<&mut Drive> {
        self.drives.get_mut(i)?.as_mut()
    }

    /// Remove both drives (closing their media at power-off); the channel then reads empty.
    pub fn take_drives(&mut self) -> Vec<Drive> {
        self.xfer = Xfer::Idle;
        self.drives.iter_mut().filter_map(Option::take).collect()
    }

    fn selected(&self) -> usize {
        usize::from(self.regs[0].device >> 4 & 1)
    }

    fn present(&self, i: usize) -> bool {
        self.drives[i].is_some()
    }

    /// Reads of the selected device's registers give 0 when it is absent and it is the slave
    /// or the channel is empty.
    fn floating(&self) -> bool {
        let s = self.selected();
        (!self.present(0) && !self.present(1)) || (s == 1 && !self.present(1))
    }

    fn update_irq(&self) {
        self.irq.set(self.irq_pending && self.ctrl & CTL_NIEN == 0);
    }

    fn raise(&mut self) {
        self.irq_pending = true;
        self.bm.status |= BM_ST_INTR;
        self.update_irq();
    }

    /// Read a command-block register (`reg` 1-7; 0 is the data port).
    pub fn read_reg(&mut self, reg: u8) -> u8 {
        if reg == 0 {
            return self.read_data(1) as u8;
        }
        if self.floating() {
            if reg == 7 {
                self.irq_pending = false;
                self.update_irq();
            }
            return 0;
        }
        let hob = usize::from(self.ctrl & CTL_HOB != 0);
        let r = &self.regs[self.selected()];
        match reg {
            1 => {
                if hob == 1 {
                    r.feature[1]
                } else {
                    r.error
                }
            }
            2 => r.nsect[hob],
            3 => r.lbal[hob],
            4 => r.lbam[hob],
            5 => r.lbah[hob],
            6 => r.device,
            _ => {
                let s = r.status;
                self.irq_pending = false;
                self.update_irq();
                s
            }
        }
    }

    /// Alternate status (control block read): status without acknowledging the interrupt.
    pub fn read_alt_status(&self) -> u8 {
        if self.floating() {
            return 0;
        }
        self.regs[self.selected()].status
    }

    /// Write a command-block register (`reg` 1-7).
    pub fn write_reg(&mut self, reg: u8, v: u8) {
        if reg == 0 {
            self.write_data(&[v]);
            return;
        }
        // Any command-block write clears HOB.
        self.ctrl &= !CTL_HOB;
        if reg == 7 {
            self.command(v);
            return;
        }
        for r in &mut self.regs {
            match reg {
                1 => Regs::push(&mut r.feature, v),
                2 => Regs::push(&mut r.nsect, v),
                3 => Regs::push(&mut r.lbal, v),
                4 => Regs::push(&mut r.lbam, v),
                5 => Regs::push(&mut r.lbah, v),
                _ => r.device = v,
            }
        }
    }

    /// Write the device control register.
    pub fn write_control(&mut self, v: u8) {
        let old = self.ctrl;
        self.ctrl = v;
        if v & CTL_SRST != 0 && old & CTL_SRST == 0 {
            self.xfer = Xfer::Idle;
            for (i, r) in self.regs.iter_mut().enumerate() {
                if self.drives[i].is_some() {
                    r.status = status::BSY;
                }
            }
            self.irq_pending = false;
        } else if v & CTL_SRST == 0 && old & CTL_SRST != 0 {
            let device = self.regs[0].device;
            self.reset_devices();
            for r in &mut self.regs {
                r.device = device & !0x10;
            }
        }
        self.update_irq();
    }

    fn command(&mut self, c: u8) {
        let d = self.selected();
        if self.drives[d].is_none() {
            return;
        }
        self.xfer = Xfer::Idle;
        if c == super::ata::cmd::EXECUTE_DEVICE_DIAGNOSTIC {
            let device = self.regs[0].device;
            self.reset_devices();
            for r in &mut self.regs {
                r.device = device & !0x10;
            }
            self.raise();
            return;
        }
        let tf = self.regs[d].taskfile(c);
        let Some(drive) = self.drives[d].as_mut() else {
            return;
        };
        let action = drive.command(&tf);
        self.start(d, action, false);
    }

    fn start(&mut self, d: usize, action: Action, atapi: bool) {
        self.xfer_dev = d;
        let busy = status::DRDY | status::DSC | status::DRQ;
        match action {
            Action::Complete(o) => self.finish(d, o, atapi),
            Action::DataIn {
                data,
                dma: false,
                block,
                outcome,
            } => {
                self.regs[d].status = busy;
                self.xfer = Xfer::PioIn {
                    data,
                    pos: 0,
                    end: 0,
                    block,
                    outcome,
                    atapi,
                };
                self.next_in_block();
            }
            Action::DataIn {
                data,
                dma: true,
                outcome,
                ..
            } => {
                self.regs[d].status = busy;
                self.xfer = Xfer::DmaIn {
                    data,
                    outcome,
                    atapi,
                };
                self.run_dma();
            }
            Action::DataOut {
                len,
                dma: false,
                block,
                pending,
            } => {
                self.regs[d].status = busy;
                self.xfer = Xfer::PioOut {
                    data: Vec::with_capacity(len),
                    pos: 0,
                    end: block.min(len),
                    block,
                    pending,
                };
                // Make `data` exactly `len` long so the position checks are simple.
                if let Xfer::PioOut { data, .. } = &mut self.xfer {
                    data.resize(len, 0);
                }
            }
            Action::DataOut {
                len,
                dma: true,
                pending,
                ..
            } => {
                self.regs[d].status = busy;
                self.xfer = Xfer::DmaOut { len, pending };
                self.run_dma();
            }
            Action::Packet { dma } => {
                let r = &mut self.regs[d];
                r.status = status::DRDY | status::DRQ;
                r.nsect[0] = 0x01; // CoD: the device wants the command packet
                self.xfer = Xfer::Packet {
                    cdb: [0; 12],
                    pos: 0,
                    dma,
                };
            }
        }
    }

    /// End the command on device `d` with `o` and interrupt.
    fn finish(&mut self, d: usize, o: Outcome, atapi: bool) {
        self.xfer = Xfer::Idle;
        let r = &mut self.regs[d];
        r.status = o.status;
        r.error = o.error;
        if let Some(out) = o.regs {
            r.nsect = [out.count[0], out.count[1]];
            r.lbal = [out.lba[0], out.lba[3]];
            r.lbam = [out.lba[1], out.lba[4]];
            r.lbah = [out.lba[2], out.lba[5]];
            r.device = (r.device & 0xf0) | (out.device & 0x0f);
        }
        if atapi {
            r.nsect[0] = 0x03; // IO | CoD: command complete
        }
        self.raise();
    }

    /// Set up the next PIO data-in block (or end the transfer).
    fn next_in_block(&mut self) {
        let d = self.xfer_dev;
        let Xfer::PioIn {
            data,
            pos,
            end,
            block,
            outcome,
            atapi,
        } = &mut self.xfer
        else {
            return;
        };
        if *pos >= data.len() {
            let (o, a) = (*outcome, *atapi);
            if a {
                self.finish(d, o, true);
            } else {
                // ATA: no interrupt after the last block.
                self.xfer = Xfer::Idle;
                self.regs[d].status = o.status;
                self.regs[d].error = o.error;
            }
            return;
        }
        let remaining = data.len() - *pos;
        let chunk = if *atapi {
            let r = &mut self.regs[d];
            let limit = match u16::from(r.lbam[0]) | u16::from(r.lbah[0]) << 8 {
                0 | 0xffff => 0xfffe,
                n => n & !1,
            }
            .max(2);
            let chunk = remaining.min(usize::from(limit));
            r.lbam[0] = chunk as u8;
            r.lbah[0] = (chunk >> 8) as u8;
            r.nsect[0] = 0x02; // IO: data to the host
            chunk
        } else {
            remaining.min((*block).max(2))
        };
        *end = *pos + chunk;
        self.raise();
    }

    /// Read 1, 2 or 4 bytes from the data port.
    pub fn read_data(&mut self, width: usize) -> u32 {
        let d = self.xfer_dev;
        let mut v = 0u32;
        let mut block_done = false;
        let sel = self.selected();
        if let Xfer::PioIn { data, pos, end, .. } = &mut self.xfer {
            if d == sel {
                for i in 0..width.min(4) {
                    if *pos < *end {
                        v |= u32::from(data[*pos]) << (8 * i);
                        *pos += 1;
                    }
                }
                block_done = *pos >= *end;
            }
        }
        if block_done {
            self.next_in_block();
        }
        v
    }

    /// Write bytes to the data port.
    pub fn write_data(&mut self, bytes: &[u8]) {
        let d = self.xfer_dev;
        if d != self.selected() {
            return;
        }
        match &mut self.xfer {
            Xfer::PioOut {
                data,
                pos,
                end,
                block,
                pending,
            } => {
                for &b in bytes {
                    if *pos < *end {
                        data[*pos] = b;
                        *pos += 1;
                    }
                }
                if *pos < *end {
                    return;
                }
                if *pos < data.len() {
                    *end = (*pos + (*block).max(2)).min(data.len());
                    self.raise();
                    return;
                }
                let (data, pending) = (std::mem::take(data), *pending);
                self.xfer = Xfer::Idle;
                let o = match self.drives[d].as_mut() {
                    Some(drive) => drive.write_data(pending, &data),
                    None => Outcome::abort(),
                };
                self.finish(d, o, false);
            }
            Xfer::Packet { cdb, pos, dma } => {
                for &b in bytes {
                    if *pos < 12 {
                        cdb[*pos] = b;
                        *pos += 1;
                    }
                }
                if *pos < 12 {
                    return;
                }
                let (cdb, dma) = (*cdb, *dma);
                self.xfer = Xfer::Idle;
                let Some(drive) = self.drives[d].as_mut() else {
                    return;
                };
                let action = drive.packet(&cdb, dma);
                self.start(d, action, true);
            }
            _ => {}
        }
    }

    /// Read a bus-master register byte (`off` 0-7).
    pub fn bm_read(&self, off: u64) -> u8 {
        match off {
            0 => self.bm.cmd,
            2 => self.bm.status,
            4..=7 => (self.bm.prd >> (8 * (off - 4))) as u8,
            _ => 0,
        }
    }

    /// Write a bus-master register byte.
    pub fn bm_write(&mut self, off: u64, v: u8) {
        match off {
            0 => {
                let was = self.bm.cmd & BM_CMD_START != 0;
                self.bm.cmd = v & (BM_CMD_START | BM_CMD_READ);
                let now = v & BM_CMD_START != 0;
                if now && !was {
                    self.bm.status |= BM_ST_ACTIVE;
                    self.run_dma();
                } else if !now {
                    self.bm.status &= !BM_ST_ACTIVE;
                }
            }
            2 => {
                self.bm.status = (self.bm.status & !BM_ST_CAPS) | (v & BM_ST_CAPS);
                self.bm.status &= !(v & (BM_ST_ERROR | BM_ST_INTR));
            }
            4..=7 => {
                let sh = 8 * (off - 4) as u32;
                self.bm.prd = (self.bm.prd & !(0xff << sh)) | (u32::from(v) << sh);
                self.bm.prd &= !3;
            }
            _ => {}
        }
    }

    /// The bus-master registers (tests, saved state).
    pub fn bus_master(&self) -> BusMaster {
        self.bm
    }

    /// Move a pending DMA transfer when the command and the engine are both ready.
    fn run_dma(&mut self) {
        if self.bm.cmd & BM_CMD_START == 0 || !self.bus_master_enabled {
            return;
        }
        let d = self.xfer_dev;
        let prd = u64::from(self.bm.prd);
        match std::mem::take(&mut self.xfer) {
            Xfer::DmaIn {
                data,
                outcome,
                atapi,
            } => {
                let r = dma::ide_prd(&self.mem, prd, data.len())
                    .and_then(|(segs, total)| Ok((dma::scatter(&self.mem, &segs, &data)?, total)));
                self.dma_done(d, r, data.len(), outcome, atapi);
            }
            Xfer::DmaOut { len, pending } => {
                let r = dma::ide_prd(&self.mem, prd, len)
                    .and_then(|(segs, total)| Ok((dma::gather(&self.mem, &segs, len)?, total)));
                match r {
                    Ok((data, total)) if data.len() == len => {
                        let o = match self.drives[d].as_mut() {
                            Some(drive) => drive.write_data(pending, &data),
                            None => Outcome::abort(),
                        };
                        self.dma_done(d, Ok((len, total)), len, o, false);
                    }
                    Ok((data, total)) => {
                        self.dma_done(d, Ok((data.len(), total)), len, Outcome::abort(), false)
                    }
                    Err(e) => self.dma_done(d, Err(e), len, Outcome::abort(), false),
                }
            }
            other => self.xfer = other,
        }
    }

    fn dma_done(
        &mut self,
        d: usize,
        r: Result<(usize, usize), dma::DmaFault>,
        len: usize,
        outcome: Outcome,
        atapi: bool,
    ) {
        match r {
            Ok((done, total)) if done == len => {
                // The engine stays active when the table described more than was moved.
                if total <= len {
                    self.bm.status &= !BM_ST_ACTIVE;
                }
                self.finish(d, outcome, atapi);
            }
            Ok(_) => {
                // The PRD table ended before the device's data: the transfer cannot finish.
                self.bm.status &= !BM_ST_ACTIVE;
                self.bm.status |= BM_ST_ERROR;
                self.finish(d, Outcome::fail(error::ABRT), atapi);
            }
            Err(e) => {
                tracing::debug!("IDE DMA: {e}");
                self.bm.status &= !BM_ST_ACTIVE;
                self.bm.status |= BM_ST_ERROR;
                self.finish(d, Outcome::fail(error::ABRT), atapi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ata::tests::{disk, MemDisk};
    use crate::storage::ata::{DriveKind, DriveOptions};
    use pgm::MemoryLayout;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn channel(
        master: Option<Drive>,
        slave: Option<Drive>,
    ) -> (IdeChannel, Arc<AtomicBool>, Arc<GuestMemory>) {
        let level = Arc::new(AtomicBool::new(false));
        let l = level.clone();
        let sink: Arc<dyn pdm::IrqSink> = Arc::new(move |_, v| l.store(v, Ordering::SeqCst));
        let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(16 << 20).unwrap()).unwrap());
        (
            IdeChannel::new(master, slave, IrqLine::new(sink, 14), mem.clone()),
            level,
            mem,
        )
    }

    fn lba28(c: &mut IdeChannel, lba: u32, count: u8) {
        c.write_reg(2, count);
        c.write_reg(3, lba as u8);
        c.write_reg(4, (lba >> 8) as u8);
        c.write_reg(5, (lba >> 16) as u8);
        c.write_reg(6, 0xe0 | ((lba >> 24) as u8 & 0xf));
    }

    #[test]
    fn empty_channel_and_absent_slave_read_zero() {
        let (mut c, _, _) = channel(None, None);
        assert_eq!(c.read_reg(7), 0);
        let (d, _) = disk(8);
        let (mut c, _, _) = channel(Some(d), None);
        assert_eq!(c.read_reg(7), status::DRDY | status::DSC);
        c.write_reg(6, 0xb0);
        assert_eq!(c.read_reg(7), 0);
        assert_eq!(c.read_reg(2), 0);
        c.write_reg(7, 0xec); // ignored: no slave
        c.write_reg(6, 0xa0);
        assert_eq!((c.read_reg(2), c.read_reg(3)), (1, 1), "disk signature");
    }

    #[test]
    fn pio_read_two_sectors_with_irq_per_block() {
        let (d, m) = disk(64);
        let (mut c, irq, _) = channel(Some(d), None);
        lba28(&mut c, 7, 2);
        c.write_reg(7, 0x20);
        assert!(irq.load(Ordering::SeqCst));
        assert_eq!(c.read_reg(7) & status::DRQ, status::DRQ);
        assert!(!irq.load(Ordering::SeqCst), "status read acknowledges");
        let mut got = Vec::new();
        for _ in 0..256 {
            got.extend_from_slice(&(c.read_data(2) as u16).to_le_bytes());
        }
        assert!(irq.load(Ordering::SeqCst), "second block interrupt");
        c.read_reg(7);
        for _ in 0..128 {
            got.extend_from_slice(&c.read_data(4).to_le_bytes());
        }
        assert!(
            !irq.load(Ordering::SeqCst),
            "no interrupt after the last block"
        );
        assert_eq!(c.read_alt_status(), status::DRDY | status::DSC);
        assert_eq!(got, m.data.lock().unwrap()[7 * 512..9 * 512].to_vec());
    }

    #[test]
    fn pio_write_lba48() {
        let (d, m) = disk(64);
        let (mut c, irq, _) = channel(Some(d), None);
        // HOB values first, then current.
        for (reg, hob, cur) in [(2u8, 0u8, 1u8), (3, 0, 40), (4, 0, 0), (5, 0, 0)] {
            c.write_reg(reg, hob);
            c.write_reg(reg, cur);
        }
        c.write_reg(6, 0x40);
        c.write_reg(7, 0x34);
        assert!(
            !irq.load(Ordering::SeqCst),
            "no interrupt before the first block"
        );
        assert_ne!(c.read_alt_status() & status::DRQ, 0);
        for _ in 0..256 {
            c.write_data(&[0x11, 0x22]);
        }
        assert!(irq.load(Ordering::SeqCst));
        assert_eq!(c.read_reg(7), status::DRDY | status::DSC);
        assert!(m.data.lock().unwrap()[40 * 512..41 * 512]
            .chunks(2)
            .all(|w| w == [0x11, 0x22]));
    }

    #[test]
    fn hob_readback() {
        let (d, _) = disk(8);
        let (mut c, _, _) = channel(Some(d), None);
        c.write_reg(3, 0xaa);
        c.write_reg(3, 0x55);
        assert_eq!(c.read_reg(3), 0x55);
        c.write_control(CTL_HOB);
        assert_eq!(c.read_reg(3), 0xaa);
    }

    fn put_prd(mem: &GuestMemory, at: u64, base: u32, count: u16) {
        let mut e = [0u8; 8];
        e[0..4].copy_from_slice(&base.to_le_bytes());
        e[4..6].copy_from_slice(&count.to_le_bytes());
        e[7] = 0x80;
        mem.write(at, &e).unwrap();
    }

    #[test]
    fn dma_read_either_order() {
        let (d, m) = disk(64);
        let (mut c, irq, mem) = channel(Some(d), None);
        put_prd(&mem, 0x1000, 0x10000, 1024);
        for off in 4..8 {
            c.bm_write(off, (0x1000u32 >> (8 * (off - 4))) as u8);
        }
        lba28(&mut c, 2, 2);
        c.write_reg(7, 0xc8);
        assert!(!irq.load(Ordering::SeqCst), "waits for the engine");
        c.bm_write(0, BM_CMD_START | BM_CMD_READ);
        assert!(irq.load(Ordering::SeqCst));
        assert_eq!(c.bm_read(2) & (BM_ST_INTR | BM_ST_ACTIVE), BM_ST_INTR);
        let mut got = vec![0u8; 1024];
        mem.read(0x10000, &mut got).unwrap();
        assert_eq!(got, m.data.lock().unwrap()[1024..2048].to_vec());
        c.bm_write(2, BM_ST_INTR);
        assert_eq!(c.bm_read(2) & BM_ST_INTR, 0);
        c.bm_write(0, 0);
        // Engine first, then the command.
        c.bm_write(0, BM_CMD_START | BM_CMD_READ);
        lba28(&mut c, 4, 2);
        c.write_reg(7, 0xc8);
        assert_ne!(c.bm_read(2) & BM_ST_INTR, 0);
        mem.read(0x10000, &mut got).unwrap();
        assert_eq!(got, m.data.lock().unwrap()[2048..3072].to_vec());
    }

    #[test]
    fn dma_short_prd_and_bad_address_fail_cleanly() {
        let (d, _) = disk(64);
        let (mut c, _, mem) = channel(Some(d), None);
        put_prd(&mem, 0x1000, 0x10000, 512);
        c.bm_write(5, 0x10);
        lba28(&mut c, 0, 2);
        c.write_reg(7, 0xca);
        c.bm_write(0, BM_CMD_START);
        assert_ne!(c.bm_read(2) & BM_ST_ERROR, 0);
        assert_ne!(c.read_reg(7) & status::ERR, 0);
        put_prd(&mem, 0x1000, 0xffff_f000, 1024);
        c.bm_write(0, 0);
        c.bm_write(2, BM_ST_ERROR | BM_ST_INTR);
        lba28(&mut c, 0, 2);
        c.write_reg(7, 0xc8);
        c.bm_write(0, BM_CMD_START | BM_CMD_READ);
        assert_ne!(c.bm_read(2) & BM_ST_ERROR, 0);
    }

    #[test]
    fn atapi_packet_pio_in_chunks() {
        let m = MemDisk::new(32 * 2048);
        let cd = Drive::new(
            DriveKind::Cdrom,
            Some(Box::new(m.clone())),
            DriveOptions::vbox(DriveKind::Cdrom, "cd"),
        );
        let (mut c, irq, _) = channel(None, Some(cd));
        c.write_reg(6, 0xb0);
        assert_eq!((c.read_reg(4), c.read_reg(5)), (0x14, 0xeb));
        c.write_reg(1, 0);
        c.write_reg(4, 0x00);
        c.write_reg(5, 0x08); // byte count limit 2048
        c.write_reg(7, 0xa0);
        assert_eq!(c.read_reg(2) & 3, 1, "CoD");
        let cdb = [0x28u8, 0, 0, 0, 0, 3, 0, 0, 2, 0, 0, 0];
        for w in cdb.chunks(2) {
            c.write_data(w);
        }
        assert!(irq.load(Ordering::SeqCst));
        c.read_reg(7);
        let mut got = Vec::new();
        for _ in 0..2 {
            assert_eq!(c.read_reg(2) & 3, 2, "IO");
            assert_eq!(
                u16::from(c.read_reg(4)) | u16::from(c.read_reg(5)) << 8,
                2048
            );
            for _ in 0..1024 {
                got.extend_from_slice(&(c.read_data(2) as u16).to_le_bytes());
            }
        }
        assert_eq!(c.read_reg(2) & 3, 3, "complete");
        assert_eq!(c.read_reg(7) & (status::DRQ | status::ERR), 0);
        assert_eq!(got, m.data.lock().unwrap()[3 * 2048..5 * 2048].to_vec());
    }

    #[test]
    fn srst_restores_signatures() {
        let (d, _) = disk(8);
        let (mut c, _, _) = channel(Some(d), None);
        lba28(&mut c, 0, 5);
        c.write_control(CTL_SRST);
        assert_eq!(c.read_alt_status(), status::BSY);
        c.write_control(0);
        assert_eq!((c.read_reg(2), c.read_reg(3), c.read_reg(1)), (1, 1, 1));
    }

    proptest::proptest! {
        #[test]
        fn random_register_traffic_never_panics(ops in proptest::collection::vec((0u8..12, proptest::num::u8::ANY), 0..400)) {
            let (d, _) = disk(32);
            let cd = Drive::new(DriveKind::Cdrom, Some(Box::new(MemDisk::new(8 * 2048))), DriveOptions::vbox(DriveKind::Cdrom, "cd"));
            let (mut c, _, mem) = channel(Some(d), Some(cd));
            put_prd(&mem, 0x1000, 0x10000, 0);
            for (op, v) in ops {
                match op {
                    0 => { c.read_data(2); }
                    1..=7 => c.write_reg(op, v),
                    8 => c.write_control(v & 0x86),
                    9 => c.bm_write(u64::from(v & 7), v),
                    10 => c.write_data(&[v, v]),
                    _ => { c.read_reg(v & 7); }
                }
            }
        }
    }
}
