//! Storage controllers as VirtualBox models them, chosen by the `.vbox` StorageController
//! type: the PIIX3/PIIX4 IDE function ([`PiixIde`]: ATA disks and ATAPI CD/DVD drives, PIO
//! and bus-master DMA) and the ICH8M AHCI HBA ([`Ahci`]: SATA disks and ATAPI, NCQ).
//!
//! Layers: [`ata::Drive`] is the device (ATA/ATAPI command sets over a `media::Disk`),
//! transport-neutral; [`ide::IdeChannel`] and [`ahci`] move its data (PIO ports, PRD table,
//! command lists and FISes) and report its status in their registers.
//!
//! I/O model: synchronous. The vCPU thread whose register write starts a command (IDE
//! command register or bus-master start, AHCI PxCI) performs the disk I/O under the
//! controller's lock before the write returns; other vCPUs are held up only if they touch
//! the same controller. This is the simplest design that is correct with the single-owner,
//! blocking `media::Disk`. An I/O thread per controller would let the issuing vCPU run on
//! during long transfers; the command/outcome split in [`ata`] is where it would go.
//!
//! Everything the guest writes (task files, PRD tables, command headers, FISes, ATAPI
//! packets, LBAs, counts) is checked; errors are reported through the registers as the
//! hardware would (ABRT/IDNF/UNC, sense keys, TFES, HBFS, bus-master error), never by a
//! panic.

pub mod ahci;
pub mod ata;
pub mod atapi;
pub mod dma;
pub mod ide;
pub mod identify;
pub mod piix_ide;

pub use ahci::{Ahci, AhciPortConfig, AHCI_DEVICE_ID};
pub use ata::{Drive, DriveKind, DriveOptions};
pub use piix_ide::{IdeDrives, PiixIde, PiixModel};
