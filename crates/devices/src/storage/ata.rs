//! The transport-neutral part of an ATA/ATAPI device: a [`Drive`] takes a task file (the
//! registers the host wrote, from the IDE ports or from an AHCI command FIS) and answers
//! with an [`Action`]: finished, data to the host, data wanted from the host, or (ATAPI)
//! a command packet wanted. The IDE channel and the AHCI port move the data (PIO, bus-master
//! DMA, PRDT) and report the [`Outcome`] in their registers.
//!
//! Command set (ATA8-ACS): IDENTIFY (PACKET) DEVICE, READ/WRITE SECTORS (EXT), READ/WRITE
//! MULTIPLE (EXT), READ/WRITE DMA (EXT), WRITE DMA FUA EXT, READ/WRITE FPDMA QUEUED (NCQ,
//! AHCI only), FLUSH CACHE (EXT), SET FEATURES, SET MULTIPLE MODE, READ NATIVE MAX ADDRESS
//! (EXT), READ VERIFY, SEEK, INITIALIZE DEVICE PARAMETERS, power management no-ops, CHECK
//! POWER MODE, EXECUTE DEVICE DIAGNOSTIC, DEVICE RESET and PACKET (ATAPI), DATA SET
//! MANAGEMENT TRIM (when discard is on). Everything else is aborted (status ERR, error ABRT),
//! as a real drive does.
//!
//! Every value comes from the guest: counts and LBAs are range-checked against the medium
//! (ID NOT FOUND), sizes use checked arithmetic, a failed host I/O is reported as an
//! uncorrectable error; nothing here panics on guest input.

use super::atapi::Atapi;
use super::identify::{self, DiskParams, Identity};
use media::Disk;

/// Bytes per ATA sector.
pub const SECTOR: usize = 512;

/// Status register bits.
pub mod status {
    /// Busy.
    pub const BSY: u8 = 0x80;
    /// Device ready.
    pub const DRDY: u8 = 0x40;
    /// Device fault.
    pub const DF: u8 = 0x20;
    /// Seek complete (DSC); VirtualBox keeps it set on disks.
    pub const DSC: u8 = 0x10;
    /// Data request.
    pub const DRQ: u8 = 0x08;
    /// Error.
    pub const ERR: u8 = 0x01;
}

/// Error register bits.
pub mod error {
    /// Uncorrectable data error.
    pub const UNC: u8 = 0x40;
    /// ID not found (address out of range).
    pub const IDNF: u8 = 0x10;
    /// Command aborted.
    pub const ABRT: u8 = 0x04;
}

/// ATA command opcodes the models look at.
pub mod cmd {
    /// PACKET (ATAPI).
    pub const PACKET: u8 = 0xa0;
    /// READ FPDMA QUEUED.
    pub const READ_FPDMA_QUEUED: u8 = 0x60;
    /// WRITE FPDMA QUEUED.
    pub const WRITE_FPDMA_QUEUED: u8 = 0x61;
    /// DEVICE RESET.
    pub const DEVICE_RESET: u8 = 0x08;
    /// EXECUTE DEVICE DIAGNOSTIC.
    pub const EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
}

/// The registers a command was issued with. `lba[0..3]` are LBA low/mid/high, `lba[3..6]`
/// their "previous" (HOB) values; `features` and `count` likewise (index 1 = HOB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskFile {
    /// Command register.
    pub command: u8,
    /// Features (current, previous).
    pub features: [u8; 2],
    /// Sector count (current, previous).
    pub count: [u8; 2],
    /// LBA bytes 0-5.
    pub lba: [u8; 6],
    /// Device register.
    pub device: u8,
}

impl TaskFile {
    /// The 48-bit LBA.
    pub fn lba48(&self) -> u64 {
        self.lba
            .iter()
            .enumerate()
            .fold(0u64, |a, (i, b)| a | u64::from(*b) << (8 * i))
    }

    /// The 28-bit LBA (bits 27:24 from the device register).
    pub fn lba28(&self) -> u64 {
        u64::from(self.lba[0])
            | u64::from(self.lba[1]) << 8
            | u64::from(self.lba[2]) << 16
            | u64::from(self.device & 0x0f) << 24
    }

    /// 16-bit sector count of 48-bit commands (0 means 65536).
    pub fn count48(&self) -> u32 {
        match u32::from(self.count[0]) | u32::from(self.count[1]) << 8 {
            0 => 65536,
            n => n,
        }
    }

    /// 8-bit sector count of 28-bit commands (0 means 256).
    pub fn count28(&self) -> u32 {
        match self.count[0] {
            0 => 256,
            n => u32::from(n),
        }
    }

    /// 16-bit features (NCQ sector count).
    pub fn features16(&self) -> u16 {
        u16::from(self.features[0]) | u16::from(self.features[1]) << 8
    }
}

/// Register values a command leaves behind besides status and error (signatures, READ
/// NATIVE MAX ADDRESS, CHECK POWER MODE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutRegs {
    /// Sector count (current, previous).
    pub count: [u8; 2],
    /// LBA bytes 0-5.
    pub lba: [u8; 6],
    /// Device register.
    pub device: u8,
}

impl OutRegs {
    /// The reset/diagnostic signature of a disk (count 1, LBA 1, 00/00) or an ATAPI device
    /// (count 1, LBA 1, 14/EB).
    pub fn signature(atapi: bool) -> OutRegs {
        let (mid, high) = if atapi { (0x14, 0xeb) } else { (0, 0) };
        OutRegs {
            count: [1, 0],
            lba: [1, mid, high, 0, 0, 0],
            device: 0,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Status register.
    pub status: u8,
    /// Error register.
    pub error: u8,
    /// Other registers the command sets.
    pub regs: Option<OutRegs>,
}

impl Outcome {
    /// Success: DRDY | DSC.
    pub fn ok() -> Outcome {
        Outcome {
            status: status::DRDY | status::DSC,
            error: 0,
            regs: None,
        }
    }

    /// Failure with error register `error`.
    pub fn fail(error: u8) -> Outcome {
        Outcome {
            status: status::DRDY | status::ERR,
            error,
            regs: None,
        }
    }

    /// The command was aborted.
    pub fn abort() -> Outcome {
        Outcome::fail(error::ABRT)
    }

    /// Whether the ERR bit is set.
    pub fn is_error(&self) -> bool {
        self.status & status::ERR != 0
    }
}

/// What a write-direction command does with its data once it has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingOut {
    /// Write sectors at this LBA.
    Write {
        /// First sector.
        lba: u64,
    },
    /// DATA SET MANAGEMENT TRIM ranges.
    Trim,
}

/// The next step of a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Finished without a data phase.
    Complete(Outcome),
    /// Data for the host, then `outcome`.
    DataIn {
        /// The bytes.
        data: Vec<u8>,
        /// A DMA command (else PIO).
        dma: bool,
        /// PIO bytes per DRQ block (one interrupt each).
        block: usize,
        /// Status after the transfer.
        outcome: Outcome,
    },
    /// The host sends `len` bytes; give them to [`Drive::write_data`].
    DataOut {
        /// Bytes expected.
        len: usize,
        /// A DMA command.
        dma: bool,
        /// PIO bytes per DRQ block.
        block: usize,
        /// What to do with them.
        pending: PendingOut,
    },
    /// PACKET: the host sends a 12-byte command; give it to [`Drive::packet`].
    Packet {
        /// Data phase by DMA (features bit 0).
        dma: bool,
    },
}

/// Largest data phase of one command (bounds the buffer a hostile guest can make us
/// allocate; an ATA command cannot ask for more than 65536 sectors = 32 MiB anyway).
pub const MAX_TRANSFER: usize = 32 << 20;

/// What kind of device a drive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveKind {
    /// ATA hard disk.
    HardDisk,
    /// ATAPI CD/DVD drive.
    Cdrom,
}

/// Drive options from the machine configuration.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// Identity strings (VirtualBox's defaults from [`DriveOptions::vbox`]).
    pub identity: Identity,
    /// Report a solid-state disk.
    pub non_rotational: bool,
    /// Accept TRIM (the `.vbox` discard flag).
    pub discard: bool,
}

impl DriveOptions {
    /// VirtualBox's strings: "VBOX HARDDISK"/"VBOX CD-ROM", firmware "1.0", and the serial
    /// `serial` (VirtualBox derives it from the image UUID).
    pub fn vbox(kind: DriveKind, serial: &str) -> DriveOptions {
        DriveOptions {
            identity: Identity {
                model: match kind {
                    DriveKind::HardDisk => "VBOX HARDDISK",
                    DriveKind::Cdrom => "VBOX CD-ROM",
                }
                .into(),
                serial: serial.chars().take(20).collect(),
                firmware: "1.0".into(),
            },
            non_rotational: false,
            discard: false,
        }
    }
}

/// An ATA disk or ATAPI CD/DVD drive with its medium.
pub struct Drive {
    kind: DriveKind,
    medium: Option<Box<dyn Disk>>,
    opts: DriveOptions,
    /// Behind an AHCI port (NCQ, SATA identify words).
    sata: bool,
    multiple: u8,
    write_cache: bool,
    udma: Option<u8>,
    mdma: Option<u8>,
    atapi: Atapi,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive")
            .field("kind", &self.kind)
            .field("size", &self.medium.as_ref().map(|m| m.size()))
            .field("model", &self.opts.identity.model)
            .finish()
    }
}

impl Drive {
    /// A drive of `kind` with `medium` (a CD drive may be empty).
    pub fn new(kind: DriveKind, medium: Option<Box<dyn Disk>>, opts: DriveOptions) -> Drive {
        let present = medium.is_some();
        Drive {
            kind,
            medium,
            opts,
            sata: false,
            multiple: 0,
            write_cache: true,
            udma: Some(2),
            mdma: None,
            atapi: Atapi::new(present),
        }
    }

    /// Mark the drive as attached to a SATA (AHCI) port: IDENTIFY reports NCQ.
    pub fn set_sata(&mut self, on: bool) {
        self.sata = on;
    }

    /// The kind.
    pub fn kind(&self) -> DriveKind {
        self.kind
    }

    /// Whether this is an ATAPI device.
    pub fn is_atapi(&self) -> bool {
        self.kind == DriveKind::Cdrom
    }

    /// The medium's size in bytes (0 when empty).
    pub fn size(&self) -> u64 {
        self.medium.as_ref().map_or(0, |m| m.size())
    }

    fn sectors(&self) -> u64 {
        self.size() / SECTOR as u64
    }

    /// Power-on / hardware reset state.
    pub fn reset(&mut self) {
        self.multiple = 0;
        self.write_cache = true;
        self.atapi.reset();
    }

    /// The signature registers after a reset or diagnostic.
    pub fn signature(&self) -> OutRegs {
        OutRegs::signature(self.is_atapi())
    }

    /// Status after a reset: DRDY|DSC for a disk, 0 for an ATAPI device (which sets DRDY
    /// only once it has a command).
    pub fn reset_status(&self) -> u8 {
        if self.is_atapi() {
            0
        } else {
            status::DRDY | status::DSC
        }
    }

    /// Flush the medium (on VM power-off).
    pub fn flush(&mut self) -> Result<(), media::MediaError> {
        match &mut self.medium {
            Some(m) => m.flush(),
            None => Ok(()),
        }
    }

    /// Start a command.
    pub fn command(&mut self, tf: &TaskFile) -> Action {
        if self.is_atapi() {
            return self.atapi_command(tf);
        }
        let c = tf.command;
        match c {
            0xec => self.identify(),
            // Sector reads and writes: (28/48-bit, multiple, dma, write).
            0x20 | 0x21 => self.rw(tf, false, false, false, false),
            0x24 => self.rw(tf, true, false, false, false),
            0xc4 => self.rw(tf, false, true, false, false),
            0x29 => self.rw(tf, true, true, false, false),
            0xc8 | 0xc9 => self.rw(tf, false, false, true, false),
            0x25 => self.rw(tf, true, false, true, false),
            0x30 | 0x31 => self.rw(tf, false, false, false, true),
            0x34 => self.rw(tf, true, false, false, true),
            0xc5 => self.rw(tf, false, true, false, true),
            0x39 | 0xce => self.rw(tf, true, true, false, true),
            0xca | 0xcb => self.rw(tf, false, false, true, true),
            0x35 | 0x3d => self.rw(tf, true, false, true, true),
            cmd::READ_FPDMA_QUEUED | cmd::WRITE_FPDMA_QUEUED if self.sata => {
                self.ncq(tf, c == cmd::WRITE_FPDMA_QUEUED)
            }
            0xe7 | 0xea => Action::Complete(self.flush_outcome()),
            0xef => Action::Complete(self.set_features(tf)),
            0xc6 => Action::Complete(self.set_multiple(tf)),
            0xf8 => Action::Complete(self.native_max(false)),
            0x27 => Action::Complete(self.native_max(true)),
            // READ VERIFY SECTORS (EXT): check the range, transfer nothing.
            0x40 | 0x41 => Action::Complete(self.verify(tf.lba28(), tf.count28())),
            0x42 => Action::Complete(self.verify(tf.lba48(), tf.count48())),
            // SEEK, RECALIBRATE, INITIALIZE DEVICE PARAMETERS, power management, NOP-ish.
            0x10..=0x1f | 0x70 | 0x91 | 0xe0 | 0xe1 | 0xe2 | 0xe3 | 0xe6 => {
                Action::Complete(Outcome::ok())
            }
            0xe5 | 0x98 => Action::Complete(Outcome {
                regs: Some(OutRegs {
                    count: [0xff, 0],
                    ..OutRegs::default()
                }),
                ..Outcome::ok()
            }),
            cmd::EXECUTE_DEVICE_DIAGNOSTIC => Action::Complete(self.diagnostic()),
            0x06 if self.opts.discard && tf.features[0] & 1 != 0 => {
                let blocks = match u32::from(tf.count[0]) | u32::from(tf.count[1]) << 8 {
                    0 => 65536usize,
                    n => n as usize,
                };
                Action::DataOut {
                    len: blocks * SECTOR,
                    dma: true,
                    block: SECTOR,
                    pending: PendingOut::Trim,
                }
            }
            _ => Action::Complete(Outcome::abort()),
        }
    }

    fn identify(&self) -> Action {
        let words = identify::identify_disk(
            &self.opts.identity,
            &DiskParams {
                sectors: self.sectors(),
                multiple: self.multiple,
                write_cache: self.write_cache,
                sata: self.sata,
                trim: self.opts.discard,
                non_rotational: self.opts.non_rotational,
                udma_selected: self.udma,
                mdma_selected: self.mdma,
            },
        );
        Action::DataIn {
            data: identify::to_bytes(&words),
            dma: false,
            block: SECTOR,
            outcome: Outcome::ok(),
        }
    }

    fn diagnostic(&self) -> Outcome {
        Outcome {
            status: self.reset_status(),
            error: 0x01, // device 0 passed
            regs: Some(self.signature()),
        }
    }

    /// Check `[lba, lba + count)` against the medium.
    fn check_range(&self, lba: u64, count: u32) -> Option<(u64, usize)> {
        let end = lba.checked_add(u64::from(count))?;
        if end > self.sectors() {
            return None;
        }
        let off = lba.checked_mul(SECTOR as u64)?;
        let len = (count as usize).checked_mul(SECTOR)?;
        (len <= MAX_TRANSFER).then_some((off, len))
    }

    fn rw(&mut self, tf: &TaskFile, ext: bool, multiple: bool, dma: bool, write: bool) -> Action {
        let (lba, count) = if ext {
            (tf.lba48(), tf.count48())
        } else {
            (tf.lba28(), tf.count28())
        };
        let lba = if !ext && tf.device & 0x40 == 0 {
            match self.chs_to_lba(tf) {
                Some(l) => l,
                None => return Action::Complete(Outcome::fail(error::IDNF | error::ABRT)),
            }
        } else {
            lba
        };
        if multiple && self.multiple == 0 {
            return Action::Complete(Outcome::abort());
        }
        let block = if multiple {
            usize::from(self.multiple) * SECTOR
        } else {
            SECTOR
        };
        self.transfer(lba, count, dma, write, block)
    }

    fn transfer(&mut self, lba: u64, count: u32, dma: bool, write: bool, block: usize) -> Action {
        let Some((off, len)) = self.check_range(lba, count) else {
            return Action::Complete(Outcome::fail(error::IDNF | error::ABRT));
        };
        if write {
            if self.medium.as_ref().is_none_or(|m| m.read_only()) {
                return Action::Complete(Outcome::abort());
            }
            return Action::DataOut {
                len,
                dma,
                block,
                pending: PendingOut::Write { lba },
            };
        }
        let Some(m) = self.medium.as_mut() else {
            return Action::Complete(Outcome::abort());
        };
        let mut data = vec![0u8; len];
        match m.read_at(&mut data, off) {
            Ok(()) => Action::DataIn {
                data,
                dma,
                block,
                outcome: Outcome::ok(),
            },
            Err(e) => {
                tracing::warn!("disk read at {off:#x}+{len:#x} failed: {e}");
                Action::Complete(Outcome::fail(error::UNC))
            }
        }
    }

    fn ncq(&mut self, tf: &TaskFile, write: bool) -> Action {
        let count = match tf.features16() {
            0 => 65536,
            n => u32::from(n),
        };
        self.transfer(tf.lba48(), count, true, write, SECTOR)
    }

    fn chs_to_lba(&self, tf: &TaskFile) -> Option<u64> {
        let (_, heads, spt) = identify::geometry(self.sectors());
        let cyl = u64::from(tf.lba[1]) | u64::from(tf.lba[2]) << 8;
        let head = u64::from(tf.device & 0x0f);
        let sector = u64::from(tf.lba[0]);
        if sector == 0 || sector > u64::from(spt) || head >= u64::from(heads) {
            return None;
        }
        Some((cyl * u64::from(heads) + head) * u64::from(spt) + sector - 1)
    }

    /// The data of a write-direction command has arrived.
    pub fn write_data(&mut self, pending: PendingOut, data: &[u8]) -> Outcome {
        let Some(m) = self.medium.as_mut() else {
            return Outcome::abort();
        };
        match pending {
            PendingOut::Write { lba } => {
                let Some(off) = lba.checked_mul(SECTOR as u64) else {
                    return Outcome::fail(error::IDNF | error::ABRT);
                };
                match m.write_at(data, off) {
                    Ok(()) => Outcome::ok(),
                    Err(e) => {
                        tracing::warn!("disk write at {off:#x}+{:#x} failed: {e}", data.len());
                        Outcome::fail(error::ABRT)
                    }
                }
            }
            PendingOut::Trim => {
                let size = m.size();
                // Each 8-byte entry: LBA in bits 47:0, sector count in 63:48 (0 = unused).
                for e in data.chunks_exact(8) {
                    let v = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                    let (lba, n) = (v & 0xffff_ffff_ffff, v >> 48);
                    if n == 0 {
                        continue;
                    }
                    let (Some(off), Some(len)) =
                        (lba.checked_mul(SECTOR as u64), n.checked_mul(SECTOR as u64))
                    else {
                        return Outcome::fail(error::IDNF | error::ABRT);
                    };
                    if off.checked_add(len).is_none_or(|end| end > size) {
                        return Outcome::fail(error::IDNF | error::ABRT);
                    }
                    if let Err(e) = m.discard(off, len) {
                        tracing::warn!("discard {off:#x}+{len:#x} failed: {e}");
                        return Outcome::abort();
                    }
                }
                Outcome::ok()
            }
        }
    }

    fn flush_outcome(&mut self) -> Outcome {
        match self.flush() {
            Ok(()) => Outcome::ok(),
            Err(e) => {
                tracing::warn!("disk flush failed: {e}");
                Outcome::fail(error::ABRT)
            }
        }
    }

    fn set_features(&mut self, tf: &TaskFile) -> Outcome {
        match tf.features[0] {
            0x02 => self.write_cache = true,
            0x82 => self.write_cache = false,
            // Transfer mode: count register = mode class << 3 | mode.
            0x03 => {
                let mode = tf.count[0];
                match mode >> 3 {
                    0 | 1 => {}
                    4 => {
                        self.mdma = Some(mode & 7);
                        self.udma = None;
                    }
                    8 => {
                        self.udma = Some(mode & 7);
                        self.mdma = None;
                    }
                    _ => return Outcome::abort(),
                }
            }
            // Look-ahead, reverting to defaults, SATA features: accepted.
            0x10 | 0x90 | 0x55 | 0xaa | 0x66 | 0xcc => {}
            _ => return Outcome::abort(),
        }
        Outcome::ok()
    }

    fn set_multiple(&mut self, tf: &TaskFile) -> Outcome {
        let n = tf.count[0];
        if n == 0 || (n.is_power_of_two() && n <= identify::MAX_MULTIPLE) {
            self.multiple = n;
            Outcome::ok()
        } else {
            Outcome::abort()
        }
    }

    fn native_max(&self, ext: bool) -> Outcome {
        let max = self.sectors().saturating_sub(1);
        let max = if ext { max } else { max.min(0x0fff_ffff) };
        let b = max.to_le_bytes();
        Outcome {
            regs: Some(OutRegs {
                count: [0, 0],
                lba: if ext {
                    [b[0], b[1], b[2], b[3], b[4], b[5]]
                } else {
                    [b[0], b[1], b[2], 0, 0, 0]
                },
                device: if ext { 0x40 } else { 0x40 | (b[3] & 0x0f) },
            }),
            ..Outcome::ok()
        }
    }

    fn verify(&self, lba: u64, count: u32) -> Outcome {
        match self.check_range(lba, count) {
            Some(_) => Outcome::ok(),
            None => Outcome::fail(error::IDNF | error::ABRT),
        }
    }

    fn atapi_command(&mut self, tf: &TaskFile) -> Action {
        match tf.command {
            cmd::PACKET => Action::Packet {
                dma: tf.features[0] & 1 != 0,
            },
            0xa1 => {
                let w = identify::identify_cdrom(&self.opts.identity, self.udma, self.sata);
                Action::DataIn {
                    data: identify::to_bytes(&w),
                    dma: false,
                    block: SECTOR,
                    outcome: Outcome::ok(),
                }
            }
            cmd::DEVICE_RESET => {
                self.atapi.reset();
                Action::Complete(Outcome {
                    status: 0,
                    error: 0x01,
                    regs: Some(self.signature()),
                })
            }
            cmd::EXECUTE_DEVICE_DIAGNOSTIC => Action::Complete(self.diagnostic()),
            0xef => Action::Complete(self.set_features(tf)),
            0xe0..=0xe3 | 0xe6 | 0x00 => Action::Complete(Outcome::ok()),
            // IDENTIFY DEVICE on an ATAPI device aborts with the signature in the registers:
            // that is how hosts tell the two apart.
            0xec => Action::Complete(Outcome {
                status: status::DRDY | status::ERR,
                error: error::ABRT,
                regs: Some(self.signature()),
            }),
            _ => Action::Complete(Outcome::abort()),
        }
    }

    /// Run an ATAPI command packet. The answer is [`Action::Complete`] or
    /// [`Action::DataIn`] (data already cut to the command's allocation length).
    pub fn packet(&mut self, cdb: &[u8; 12], dma: bool) -> Action {
        if !self.is_atapi() {
            return Action::Complete(Outcome::abort());
        }
        let medium = self.medium.as_deref_mut();
        let r = self.atapi.execute(cdb, medium);
        match r {
            Ok(data) if data.is_empty() => Action::Complete(Outcome::ok()),
            Ok(data) => Action::DataIn {
                data,
                dma,
                block: 0,
                outcome: Outcome::ok(),
            },
            Err(key) => Action::Complete(Outcome {
                status: status::DRDY | status::ERR,
                error: key << 4,
                regs: None,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use media::{MediaError, Result as MResult};
    use std::sync::{Arc, Mutex};

    /// An in-memory disk whose contents the test can inspect afterwards.
    #[derive(Clone)]
    pub struct MemDisk {
        pub data: Arc<Mutex<Vec<u8>>>,
        pub ro: bool,
        pub flushes: Arc<Mutex<u32>>,
        pub discards: Arc<Mutex<Vec<(u64, u64)>>>,
    }

    impl MemDisk {
        pub fn new(size: usize) -> MemDisk {
            let data: Vec<u8> = (0..size).map(|i| (i / SECTOR) as u8 ^ (i as u8)).collect();
            MemDisk {
                data: Arc::new(Mutex::new(data)),
                ro: false,
                flushes: Arc::new(Mutex::new(0)),
                discards: Arc::new(Mutex::new(Vec::new())),
            }
        }
    }

    impl Disk for MemDisk {
        fn size(&self) -> u64 {
            self.data.lock().unwrap().len() as u64
        }
        fn read_only(&self) -> bool {
            self.ro
        }
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> MResult<()> {
            let d = self.data.lock().unwrap();
            let s = offset as usize;
            let e = s + buf.len();
            if e > d.len() {
                return Err(MediaError::OutOfRange {
                    offset,
                    len: buf.len() as u64,
                    size: d.len() as u64,
                });
            }
            buf.copy_from_slice(&d[s..e]);
            Ok(())
        }
        fn write_at(&mut self, buf: &[u8], offset: u64) -> MResult<()> {
            let mut d = self.data.lock().unwrap();
            let s = offset as usize;
            let e = s + buf.len();
            if e > d.len() {
                return Err(MediaError::OutOfRange {
                    offset,
                    len: buf.len() as u64,
                    size: d.len() as u64,
                });
            }
            d[s..e].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> MResult<()> {
            *self.flushes.lock().unwrap() += 1;
            Ok(())
        }
        fn discard(&mut self, offset: u64, len: u64) -> MResult<()> {
            self.discards.lock().unwrap().push((offset, len));
            Ok(())
        }
    }

    pub fn disk(sectors: usize) -> (Drive, MemDisk) {
        let m = MemDisk::new(sectors * SECTOR);
        let d = Drive::new(
            DriveKind::HardDisk,
            Some(Box::new(m.clone())),
            DriveOptions::vbox(DriveKind::HardDisk, "VB-test"),
        );
        (d, m)
    }

    fn tf(command: u8, lba: u64, count: u16) -> TaskFile {
        let b = lba.to_le_bytes();
        TaskFile {
            command,
            features: [0, 0],
            count: [count as u8, (count >> 8) as u8],
            lba: [b[0], b[1], b[2], b[3], b[4], b[5]],
            device: 0x40 | (b[3] & 0x0f),
        }
    }

    #[test]
    fn read_sectors_returns_medium_bytes() {
        let (mut d, m) = disk(64);
        let Action::DataIn { data, dma, .. } = d.command(&tf(0x20, 3, 2)) else {
            panic!("no data");
        };
        assert!(!dma);
        assert_eq!(data, m.data.lock().unwrap()[3 * 512..5 * 512].to_vec());
        let Action::DataIn { data, dma, .. } = d.command(&tf(0x25, 60, 4)) else {
            panic!("no data");
        };
        assert!(dma);
        assert_eq!(data.len(), 4 * 512);
    }

    #[test]
    fn out_of_range_is_idnf() {
        let (mut d, _) = disk(64);
        assert_eq!(
            d.command(&tf(0x24, 63, 2)),
            Action::Complete(Outcome::fail(error::IDNF | error::ABRT))
        );
        assert_eq!(
            d.command(&tf(0x35, u64::MAX >> 16, 0)),
            Action::Complete(Outcome::fail(error::IDNF | error::ABRT))
        );
        // Count 0 in a 28-bit command means 256 sectors.
        assert!(matches!(
            d.command(&tf(0x20, 0, 0)),
            Action::Complete(o) if o.error & error::IDNF != 0
        ));
    }

    #[test]
    fn write_then_read_back() {
        let (mut d, m) = disk(64);
        let Action::DataOut { len, pending, .. } = d.command(&tf(0x30, 5, 1)) else {
            panic!("no data out");
        };
        assert_eq!(len, 512);
        assert_eq!(d.write_data(pending, &[0xab; 512]), Outcome::ok());
        assert!(m.data.lock().unwrap()[5 * 512..6 * 512]
            .iter()
            .all(|&b| b == 0xab));
        assert_eq!(d.command(&tf(0xea, 0, 0)), Action::Complete(Outcome::ok()));
        assert_eq!(*m.flushes.lock().unwrap(), 1);
    }

    #[test]
    fn read_only_medium_aborts_writes() {
        let mut m = MemDisk::new(16 * 512);
        m.ro = true;
        let mut d = Drive::new(
            DriveKind::HardDisk,
            Some(Box::new(m)),
            DriveOptions::vbox(DriveKind::HardDisk, "x"),
        );
        assert_eq!(
            d.command(&tf(0xca, 0, 1)),
            Action::Complete(Outcome::abort())
        );
    }

    #[test]
    fn multiple_needs_set_multiple_mode() {
        let (mut d, _) = disk(64);
        assert_eq!(
            d.command(&tf(0xc4, 0, 8)),
            Action::Complete(Outcome::abort())
        );
        assert_eq!(
            d.command(&tf(0xc6, 0, 3)),
            Action::Complete(Outcome::abort())
        );
        assert_eq!(d.command(&tf(0xc6, 0, 4)), Action::Complete(Outcome::ok()));
        let Action::DataIn { block, .. } = d.command(&tf(0xc4, 0, 8)) else {
            panic!()
        };
        assert_eq!(block, 2048);
    }

    #[test]
    fn chs_addressing() {
        let (mut d, m) = disk(16 * 63 * 4);
        // Cylinder 1, head 2, sector 3 -> (1*16+2)*63+2.
        let t = TaskFile {
            command: 0x20,
            count: [1, 0],
            lba: [3, 1, 0, 0, 0, 0],
            device: 0xa2,
            ..TaskFile::default()
        };
        let Action::DataIn { data, .. } = d.command(&t) else {
            panic!()
        };
        let l = (16 + 2) * 63 + 2;
        assert_eq!(
            data,
            m.data.lock().unwrap()[l * 512..(l + 1) * 512].to_vec()
        );
        let bad = TaskFile {
            lba: [0, 0, 0, 0, 0, 0],
            ..t
        };
        assert!(matches!(d.command(&bad), Action::Complete(o) if o.is_error()));
    }

    #[test]
    fn native_max_and_identify() {
        let (mut d, _) = disk(1000);
        let Action::Complete(o) = d.command(&tf(0x27, 0, 0)) else {
            panic!()
        };
        assert_eq!(o.regs.unwrap().lba[..2], [0xe7, 0x03]);
        let Action::DataIn { data, .. } = d.command(&tf(0xec, 0, 0)) else {
            panic!()
        };
        assert_eq!(data.len(), 512);
        assert_eq!(u16::from_le_bytes([data[120], data[121]]), 1000);
        assert_eq!(
            d.command(&tf(0xa1, 0, 0)),
            Action::Complete(Outcome::abort())
        );
    }

    #[test]
    fn trim_only_when_enabled_and_in_range() {
        let m = MemDisk::new(64 * 512);
        let mut opts = DriveOptions::vbox(DriveKind::HardDisk, "x");
        opts.discard = true;
        let mut d = Drive::new(DriveKind::HardDisk, Some(Box::new(m.clone())), opts);
        let mut t = tf(0x06, 0, 1);
        t.features[0] = 1;
        let Action::DataOut { len, pending, .. } = d.command(&t) else {
            panic!()
        };
        let mut range = vec![0u8; len];
        range[..8].copy_from_slice(&(8u64 | 4 << 48).to_le_bytes());
        assert_eq!(d.write_data(pending, &range), Outcome::ok());
        assert_eq!(*m.discards.lock().unwrap(), vec![(8 * 512, 4 * 512)]);
        range[..8].copy_from_slice(&(62u64 | 4 << 48).to_le_bytes());
        assert!(d.write_data(pending, &range).is_error());
    }

    #[test]
    fn ncq_only_on_sata() {
        let (mut d, _) = disk(64);
        let mut t = tf(0x60, 2, 0);
        t.features = [2, 0];
        assert_eq!(d.command(&t), Action::Complete(Outcome::abort()));
        d.set_sata(true);
        let Action::DataIn { data, dma, .. } = d.command(&t) else {
            panic!()
        };
        assert!(dma);
        assert_eq!(data.len(), 1024);
    }

    proptest::proptest! {
        #[test]
        fn random_task_files_never_panic(cmd in proptest::num::u8::ANY, f in proptest::array::uniform2(proptest::num::u8::ANY),
                c in proptest::array::uniform2(proptest::num::u8::ANY), l in proptest::array::uniform6(proptest::num::u8::ANY),
                dev in proptest::num::u8::ANY, sata in proptest::bool::ANY) {
            let (mut d, _) = disk(128);
            d.set_sata(sata);
            let t = TaskFile { command: cmd, features: f, count: c, lba: l, device: dev };
            match d.command(&t) {
                Action::DataOut { len, pending, .. } => {
                    proptest::prop_assert!(len <= MAX_TRANSFER);
                    let _ = d.write_data(pending, &vec![0x5a; len]);
                }
                Action::DataIn { data, .. } => proptest::prop_assert!(data.len() <= MAX_TRANSFER),
                _ => {}
            }
        }
    }
}
