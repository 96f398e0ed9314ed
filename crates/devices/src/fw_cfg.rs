//! QEMU's firmware configuration interface (fw_cfg), x86 I/O-port flavour, as SeaBIOS
//! (src/fw/paravirt.c) and Linux (drivers/firmware/qemu_fw_cfg.c) use it; the same
//! interface VirtualBox offers with its DevQemuFwCfg device. Modelled on QEMU's
//! hw/nvram/fw_cfg.c and docs/specs/fw_cfg.rst.
//!
//! Ports: 0x510 selector (16-bit write; selecting resets the data offset), 0x511 data
//! (byte reads stream the selected item, zeros past its end; writes are ignored), 0x514
//! and 0x518 the DMA address (big-endian high and low dwords; writing the low dword starts
//! the transfer). Reading the DMA ports returns the signature "QEMU CFG". Item 0x00 holds
//! "QEMU", item 0x01 the feature bits (traditional interface + DMA, so SeaBIOS uses DMA),
//! item 0x19 the file directory (be32 count, then 64-byte entries: be32 size, be16 select,
//! be16 reserved, name[56]); files get selectors from 0x20.
//!
//! A DMA request is a 16-byte FWCfgDmaAccess in guest memory: be32 control, be32 length,
//! be64 address. Control bits: 0x01 error, 0x02 read, 0x04 skip, 0x08 select (item in bits
//! 31:16), 0x10 write. On completion the device stores control = 0 (or the error bit).
//! Everything in the request is guest-controlled: every access goes through pgm's checked
//! accessors, addresses use checked arithmetic, a failed access ends the transfer with
//! the error bit, and writes (no item here is writable) fail the same way.

use crate::acpi::AcpiTables;
use iomio::BusDevice;
use pgm::GuestMemory;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Selector port.
pub const FW_CFG_PORT_SEL: u16 = 0x510;
/// Data port.
pub const FW_CFG_PORT_DATA: u16 = 0x511;
/// DMA address port (high dword; the low dword is at +4).
pub const FW_CFG_PORT_DMA: u16 = 0x514;
/// Ports the device decodes from [`FW_CFG_PORT_SEL`].
pub const FW_CFG_PORTS: u64 = 12;

/// Item: "QEMU".
pub const FW_CFG_SIGNATURE: u16 = 0x00;
/// Item: feature bits.
pub const FW_CFG_ID: u16 = 0x01;
/// Item: machine UUID.
pub const FW_CFG_UUID: u16 = 0x02;
/// Item: RAM size (u64 LE).
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
/// Item: number of boot CPUs (u16 LE).
pub const FW_CFG_NB_CPUS: u16 = 0x05;
/// Item: NUMA data.
pub const FW_CFG_NUMA: u16 = 0x0d;
/// Item: show boot menu (u16 LE).
pub const FW_CFG_BOOT_MENU: u16 = 0x0e;
/// Item: maximum CPUs (u16 LE).
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
/// Item: file directory.
pub const FW_CFG_FILE_DIR: u16 = 0x19;
/// First selector handed to files.
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// Selector bit: write channel (ignored for lookup).
pub const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;
/// Selector bit: architecture-specific item.
pub const FW_CFG_ARCH_LOCAL: u16 = 0x8000;
/// x86 item: IRQ0 override flag for SeaBIOS's MP table.
pub const FW_CFG_IRQ0_OVERRIDE: u16 = 0x8002;
/// x86 item: legacy e820 reservations.
pub const FW_CFG_E820_TABLE: u16 = 0x8003;

/// Feature bit: the traditional port interface.
pub const FEATURE_TRADITIONAL: u32 = 1;
/// Feature bit: the DMA interface.
pub const FEATURE_DMA: u32 = 2;

const DMA_CTL_ERROR: u32 = 0x01;
const DMA_CTL_READ: u32 = 0x02;
const DMA_CTL_SKIP: u32 = 0x04;
const DMA_CTL_SELECT: u32 = 0x08;
const DMA_CTL_WRITE: u32 = 0x10;
const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";
/// File names are at most 55 bytes plus the NUL.
const FILE_NAME_MAX: usize = 55;
const LAST_FILE_KEY: u16 = 0x3fff;

/// An e820 memory map entry as "etc/e820" carries it (20 bytes, little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Type: 1 RAM, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS.
    pub kind: u32,
}

impl E820Entry {
    /// Usable RAM.
    pub const RAM: u32 = 1;
    /// Reserved.
    pub const RESERVED: u32 = 2;
    /// ACPI tables (reclaimable).
    pub const ACPI: u32 = 3;
    /// ACPI non-volatile storage.
    pub const NVS: u32 = 4;
}

/// Errors building the fw_cfg contents (VMM-side mistakes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    /// The name does not fit the 56-byte directory field.
    #[error("fw_cfg file name {0:?} is longer than 55 bytes")]
    NameTooLong(String),
    /// A file with this name exists.
    #[error("fw_cfg file {0:?} already exists")]
    Duplicate(String),
    /// The selector space for files is exhausted.
    #[error("too many fw_cfg files")]
    TooManyFiles,
    /// An item larger than the 32-bit size field.
    #[error("fw_cfg item of {0} bytes is too large")]
    TooLarge(usize),
}

/// The fw_cfg device. Register one instance at [`FW_CFG_PORT_SEL`] with length
/// [`FW_CFG_PORTS`] (0x510-0x51B).
pub struct FwCfg {
    memory: Arc<GuestMemory>,
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selector: u16,
    offset: usize,
    dma_high: u32,
}

impl std::fmt::Debug for FwCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FwCfg")
            .field("files", &self.files)
            .field("selector", &self.selector)
            .finish()
    }
}

impl FwCfg {
    /// A device with the signature, the feature bits (traditional + DMA), an empty file
    /// directory and the IRQ0 override flag; DMA goes to `memory`.
    pub fn new(memory: Arc<GuestMemory>) -> Self {
        let mut d = FwCfg {
            memory,
            items: BTreeMap::new(),
            files: Vec::new(),
            selector: 0,
            offset: 0,
            dma_high: 0,
        };
        d.items.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        d.items.insert(
            FW_CFG_ID,
            (FEATURE_TRADITIONAL | FEATURE_DMA).to_le_bytes().to_vec(),
        );
        d.items
            .insert(FW_CFG_IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec());
        d.rebuild_dir();
        d
    }

    /// Set a numbered item (replaces an earlier value).
    pub fn add_item(&mut self, key: u16, bytes: Vec<u8>) -> Result<(), FwCfgError> {
        if u32::try_from(bytes.len()).is_err() {
            return Err(FwCfgError::TooLarge(bytes.len()));
        }
        self.items.insert(key & !FW_CFG_WRITE_CHANNEL, bytes);
        Ok(())
    }

    /// Add a named file; returns its selector.
    pub fn add_file(&mut self, name: &str, bytes: Vec<u8>) -> Result<u16, FwCfgError> {
        if name.len() > FILE_NAME_MAX || name.is_empty() || name.contains('\0') {
            return Err(FwCfgError::NameTooLong(name.to_string()));
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(FwCfgError::Duplicate(name.to_string()));
        }
        if u32::try_from(bytes.len()).is_err() {
            return Err(FwCfgError::TooLarge(bytes.len()));
        }
        let key = FW_CFG_FILE_FIRST
            .checked_add(self.files.len() as u16)
            .filter(|&k| k <= LAST_FILE_KEY)
            .ok_or(FwCfgError::TooManyFiles)?;
        self.items.insert(key, bytes);
        self.files.push((name.to_string(), key));
        self.rebuild_dir();
        Ok(key)
    }

    /// The content of the file `name`.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let (_, key) = self.files.iter().find(|(n, _)| n == name)?;
        self.items.get(key).map(|v| v.as_slice())
    }

    /// CPU counts: FW_CFG_NB_CPUS, FW_CFG_MAX_CPUS and "etc/boot-cpus".
    pub fn add_cpus(&mut self, boot: u16, max: u16) -> Result<(), FwCfgError> {
        self.add_item(FW_CFG_NB_CPUS, boot.to_le_bytes().to_vec())?;
        self.add_item(FW_CFG_MAX_CPUS, max.to_le_bytes().to_vec())?;
        self.add_file("etc/boot-cpus", boot.to_le_bytes().to_vec())?;
        Ok(())
    }

    /// RAM size item (u64).
    pub fn add_ram_size(&mut self, bytes: u64) -> Result<(), FwCfgError> {
        self.add_item(FW_CFG_RAM_SIZE, bytes.to_le_bytes().to_vec())
    }

    /// The memory map as "etc/e820".
    pub fn add_e820(&mut self, entries: &[E820Entry]) -> Result<(), FwCfgError> {
        let mut b = Vec::with_capacity(entries.len() * 20);
        for e in entries {
            b.extend_from_slice(&e.addr.to_le_bytes());
            b.extend_from_slice(&e.len.to_le_bytes());
            b.extend_from_slice(&e.kind.to_le_bytes());
        }
        self.add_file("etc/e820", b).map(|_| ())
    }

    /// ACPI tables for SeaBIOS: "etc/acpi/rsdp", "etc/acpi/tables", "etc/table-loader".
    pub fn add_acpi_tables(&mut self, tables: &AcpiTables) -> Result<(), FwCfgError> {
        for (name, bytes) in tables.fw_cfg_files() {
            self.add_file(&name, bytes)?;
        }
        Ok(())
    }

    /// "bootorder": one OpenFirmware device path per line.
    pub fn add_bootorder(&mut self, paths: &[&str]) -> Result<(), FwCfgError> {
        let mut s = paths.join("\n");
        s.push('\n');
        self.add_file("bootorder", s.into_bytes()).map(|_| ())
    }

    /// "etc/boot-fail-wait": seconds SeaBIOS waits before rebooting when nothing boots.
    pub fn add_boot_fail_wait(&mut self, seconds: u32) -> Result<(), FwCfgError> {
        self.add_file("etc/boot-fail-wait", seconds.to_le_bytes().to_vec())
            .map(|_| ())
    }

    /// An option ROM SeaBIOS runs at POST ("genroms/<name>").
    pub fn add_option_rom(&mut self, name: &str, rom: Vec<u8>) -> Result<(), FwCfgError> {
        self.add_file(&format!("genroms/{name}"), rom).map(|_| ())
    }

    fn rebuild_dir(&mut self) {
        let mut d = Vec::with_capacity(4 + 64 * self.files.len());
        d.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (name, key) in &self.files {
            let size = self.items.get(key).map_or(0, |v| v.len()) as u32;
            d.extend_from_slice(&size.to_be_bytes());
            d.extend_from_slice(&key.to_be_bytes());
            d.extend_from_slice(&0u16.to_be_bytes());
            let mut n = [0u8; 56];
            n[..name.len()].copy_from_slice(name.as_bytes());
            d.extend_from_slice(&n);
        }
        self.items.insert(FW_CFG_FILE_DIR, d);
    }

    fn select(&mut self, key: u16) {
        self.selector = key & !FW_CFG_WRITE_CHANNEL;
        self.offset = 0;
    }

    fn current(&self) -> &[u8] {
        self.items
            .get(&self.selector)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    fn read_data_byte(&mut self) -> u8 {
        let b = self.current().get(self.offset).copied().unwrap_or(0);
        if self.offset < self.current().len() {
            self.offset += 1;
        }
        b
    }

    /// Run the DMA request whose descriptor is at guest-physical `addr`.
    pub fn dma(&mut self, addr: u64) {
        let mut desc = [0u8; 16];
        if self.memory.read(addr, &mut desc).is_err() {
            tracing::debug!("fw_cfg: DMA descriptor at {addr:#x} is not in memory");
            return;
        }
        let control = u32::from_be_bytes([desc[0], desc[1], desc[2], desc[3]]);
        let mut length = u64::from(u32::from_be_bytes([desc[4], desc[5], desc[6], desc[7]]));
        let mut dst = u64::from_be_bytes([
            desc[8], desc[9], desc[10], desc[11], desc[12], desc[13], desc[14], desc[15],
        ]);
        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let (read, write) = if control & DMA_CTL_READ != 0 {
            (true, false)
        } else if control & DMA_CTL_WRITE != 0 {
            (false, true)
        } else if control & DMA_CTL_SKIP != 0 {
            (false, false)
        } else {
            length = 0;
            (false, false)
        };
        let mut status = 0u32;
        let zeros = [0u8; 4096];
        while length > 0 && status & DMA_CTL_ERROR == 0 {
            let avail = self.current().len().saturating_sub(self.offset) as u64;
            let n = if avail == 0 {
                // Past the end (or no item): reads produce zeros, writes fail.
                if read {
                    let n = length.min(zeros.len() as u64);
                    if self.memory.write(dst, &zeros[..n as usize]).is_err() {
                        status |= DMA_CTL_ERROR;
                    }
                    n
                } else {
                    length
                }
            } else {
                let n = length.min(avail);
                if read {
                    let start = self.offset;
                    let end = start + n as usize;
                    let res = self
                        .items
                        .get(&self.selector)
                        .map(|v| self.memory.write(dst, &v[start..end]));
                    if !matches!(res, Some(Ok(()))) {
                        status |= DMA_CTL_ERROR;
                    }
                }
                self.offset += n as usize;
                n
            };
            if write {
                // No item is writable.
                status |= DMA_CTL_ERROR;
            }
            length -= n;
            match dst.checked_add(n) {
                Some(d) => dst = d,
                None => {
                    if length > 0 {
                        status |= DMA_CTL_ERROR;
                    }
                }
            }
        }
        let _ = self
            .memory
            .write(addr, &status.to_be_bytes())
            .map_err(|e| tracing::debug!("fw_cfg: DMA status write failed: {e}"));
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        let port = addr;
        if port == u64::from(FW_CFG_PORT_DATA) {
            if let Some(b) = data.first_mut() {
                *b = self.read_data_byte();
            }
        } else if port >= u64::from(FW_CFG_PORT_DMA) {
            let base = (port - u64::from(FW_CFG_PORT_DMA)) as usize;
            for (i, d) in data.iter_mut().enumerate() {
                *d = DMA_SIGNATURE.get(base + i).copied().unwrap_or(0);
            }
        }
    }

    fn write(&mut self, addr: u64, _offset: u64, data: &[u8]) {
        let port = addr;
        if port == u64::from(FW_CFG_PORT_SEL) {
            let key = match data {
                [lo] => u16::from(*lo),
                [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
                [] => return,
            };
            self.select(key);
        } else if port == u64::from(FW_CFG_PORT_DMA) && data.len() == 4 {
            self.dma_high = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        } else if port == u64::from(FW_CFG_PORT_DMA) + 4 && data.len() == 4 {
            let low = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let addr = (u64::from(self.dma_high) << 32) | u64::from(low);
            // Consume the high half so a stale value cannot redirect a later request
            // from firmware that only writes the low half (SeaBIOS does).
            self.dma_high = 0;
            self.dma(addr);
        }
        // Data-port writes are ignored, as in QEMU since 2.4.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgm::MemoryLayout;

    fn mem() -> Arc<GuestMemory> {
        Arc::new(GuestMemory::new(MemoryLayout::pc(16 << 20).unwrap()).unwrap())
    }

    fn select(d: &mut FwCfg, key: u16) {
        d.write(0x510, 0, &key.to_le_bytes());
    }

    fn read_bytes(d: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                let mut b = [0u8];
                d.read(0x511, 1, &mut b);
                b[0]
            })
            .collect()
    }

    fn dma_request(m: &GuestMemory, at: u64, control: u32, len: u32, dst: u64) {
        let mut desc = Vec::new();
        desc.extend_from_slice(&control.to_be_bytes());
        desc.extend_from_slice(&len.to_be_bytes());
        desc.extend_from_slice(&dst.to_be_bytes());
        m.write(at, &desc).unwrap();
    }

    fn kick(d: &mut FwCfg, at: u64) {
        d.write(0x514, 4, &((at >> 32) as u32).to_be_bytes());
        d.write(0x518, 8, &(at as u32).to_be_bytes());
    }

    fn status(m: &GuestMemory, at: u64) -> u32 {
        let mut b = [0u8; 4];
        m.read(at, &mut b).unwrap();
        u32::from_be_bytes(b)
    }

    #[test]
    fn signature_and_features_over_ports() {
        let mut d = FwCfg::new(mem());
        select(&mut d, FW_CFG_SIGNATURE);
        assert_eq!(read_bytes(&mut d, 4), b"QEMU");
        select(&mut d, FW_CFG_ID);
        let id = read_bytes(&mut d, 4);
        assert_eq!(
            u32::from_le_bytes(id.try_into().unwrap()) & FEATURE_DMA,
            FEATURE_DMA
        );
        let mut sig = [0u8; 4];
        d.read(0x514, 4, &mut sig);
        assert_eq!(&sig, b"QEMU");
        d.read(0x518, 8, &mut sig);
        assert_eq!(&sig, b" CFG");
        select(&mut d, 0x1234);
        assert_eq!(
            read_bytes(&mut d, 3),
            vec![0, 0, 0],
            "unknown item reads zero"
        );
    }

    #[test]
    fn file_directory_format() {
        let mut d = FwCfg::new(mem());
        let k = d.add_file("etc/boot-fail-wait", vec![5, 0, 0, 0]).unwrap();
        assert_eq!(k, 0x20);
        d.add_bootorder(&["/pci@i0cf8/ide@1,1/drive@0/disk@0"])
            .unwrap();
        select(&mut d, FW_CFG_FILE_DIR);
        let count = u32::from_be_bytes(read_bytes(&mut d, 4).try_into().unwrap());
        assert_eq!(count, 2);
        let e = read_bytes(&mut d, 64);
        assert_eq!(u32::from_be_bytes(e[0..4].try_into().unwrap()), 4);
        assert_eq!(u16::from_be_bytes([e[4], e[5]]), 0x20);
        assert_eq!(&e[8..8 + 18], b"etc/boot-fail-wait");
        assert_eq!(e[8 + 18], 0);
        let e2 = read_bytes(&mut d, 64);
        assert_eq!(&e2[8..17], b"bootorder");
        select(&mut d, 0x20);
        assert_eq!(read_bytes(&mut d, 5), vec![5, 0, 0, 0, 0]);
        assert_eq!(
            d.add_file("etc/boot-fail-wait", vec![]),
            Err(FwCfgError::Duplicate("etc/boot-fail-wait".into()))
        );
        assert!(d.add_file(&"x".repeat(56), vec![]).is_err());
    }

    #[test]
    fn dma_read_with_select_like_seabios() {
        let m = mem();
        let mut d = FwCfg::new(m.clone());
        d.add_file("etc/e820", vec![0xab; 40]).unwrap();
        // SeaBIOS: control = key << 16 | SELECT | READ; only the low address dword.
        dma_request(
            &m,
            0x7000,
            (0x20 << 16) | DMA_CTL_SELECT | DMA_CTL_READ,
            40,
            0x8000,
        );
        d.write(0x518, 8, &0x7000u32.to_be_bytes());
        assert_eq!(status(&m, 0x7000), 0);
        let mut got = [0u8; 41];
        m.read(0x8000, &mut got).unwrap();
        assert_eq!(&got[..40], &[0xab; 40]);
        assert_eq!(got[40], 0);
    }

    #[test]
    fn dma_skip_then_read_and_zero_fill() {
        let m = mem();
        let mut d = FwCfg::new(m.clone());
        d.add_file("f", (0u8..10).collect()).unwrap();
        select(&mut d, 0x20);
        dma_request(&m, 0x7000, DMA_CTL_SKIP, 4, 0);
        kick(&mut d, 0x7000);
        assert_eq!(status(&m, 0x7000), 0);
        m.write(0x9000, &[0xee; 10]).unwrap();
        dma_request(&m, 0x7000, DMA_CTL_READ, 10, 0x9000);
        kick(&mut d, 0x7000);
        let mut got = [0u8; 10];
        m.read(0x9000, &mut got).unwrap();
        assert_eq!(
            got,
            [4, 5, 6, 7, 8, 9, 0, 0, 0, 0],
            "past the end reads zeros"
        );
    }

    #[test]
    fn dma_errors_on_hostile_requests() {
        let m = mem();
        let mut d = FwCfg::new(m.clone());
        d.add_file("f", vec![1; 64]).unwrap();
        // Destination outside RAM.
        dma_request(
            &m,
            0x7000,
            (0x20 << 16) | DMA_CTL_SELECT | DMA_CTL_READ,
            64,
            0xf000_0000,
        );
        kick(&mut d, 0x7000);
        assert_eq!(status(&m, 0x7000), DMA_CTL_ERROR);
        // Address wrap-around.
        dma_request(
            &m,
            0x7000,
            (0x20 << 16) | DMA_CTL_SELECT | DMA_CTL_READ,
            64,
            u64::MAX - 8,
        );
        kick(&mut d, 0x7000);
        assert_eq!(status(&m, 0x7000), DMA_CTL_ERROR);
        // Writes are refused.
        dma_request(
            &m,
            0x7000,
            (0x20 << 16) | DMA_CTL_SELECT | DMA_CTL_WRITE,
            4,
            0x8000,
        );
        kick(&mut d, 0x7000);
        assert_eq!(status(&m, 0x7000), DMA_CTL_ERROR);
        // A descriptor outside RAM is ignored without a panic.
        kick(&mut d, 0xffff_ffff_ffff_fff8);
        // A huge zero-fill stops at the end of RAM.
        dma_request(&m, 0x7000, DMA_CTL_READ, u32::MAX, (16 << 20) - 0x1000);
        select(&mut d, 0x7777);
        kick(&mut d, 0x7000);
        assert_eq!(status(&m, 0x7000), DMA_CTL_ERROR);
    }

    #[test]
    fn stale_high_dword_is_consumed() {
        let m = mem();
        let mut d = FwCfg::new(m.clone());
        d.write(0x514, 4, &1u32.to_be_bytes());
        dma_request(
            &m,
            0x7000,
            (FW_CFG_SIGNATURE as u32) << 16 | DMA_CTL_SELECT | DMA_CTL_READ,
            4,
            0x8000,
        );
        // Low-dword write with a stale high half targets 0x1_0000_7000 (not RAM): ignored.
        d.write(0x518, 8, &0x7000u32.to_be_bytes());
        // Next low-only request works.
        d.write(0x518, 8, &0x7000u32.to_be_bytes());
        let mut got = [0u8; 4];
        m.read(0x8000, &mut got).unwrap();
        assert_eq!(&got, b"QEMU");
    }

    #[test]
    fn acpi_and_e820_helpers() {
        let m = mem();
        let mut d = FwCfg::new(m);
        d.add_e820(&[E820Entry {
            addr: 0,
            len: 0x9fc00,
            kind: E820Entry::RAM,
        }])
        .unwrap();
        assert_eq!(d.file("etc/e820").unwrap().len(), 20);
        let t = crate::acpi::build_tables(&crate::acpi::AcpiConfig::default());
        d.add_acpi_tables(&t).unwrap();
        assert!(d
            .file("etc/table-loader")
            .unwrap()
            .len()
            .is_multiple_of(128));
        assert!(d.file("etc/acpi/rsdp").is_some());
        d.add_cpus(2, 2).unwrap();
        assert_eq!(d.file("etc/boot-cpus"), Some(&[2u8, 0][..]));
    }

    proptest::proptest! {
        #[test]
        fn random_port_and_dma_never_panic(ops in proptest::collection::vec((0u64..12, 1usize..5, proptest::bool::ANY, proptest::num::u32::ANY, proptest::num::u64::ANY), 0..100)) {
            let m = mem();
            let mut d = FwCfg::new(m.clone());
            d.add_file("etc/x", vec![7; 100]).unwrap();
            for (port, len, w, v, desc_addr) in ops {
                let p = 0x510 + port;
                if w {
                    // Plant a random descriptor sometimes so the DMA engine sees junk.
                    let at = desc_addr % (16 << 20);
                    let _ = m.write(at, &desc_addr.to_be_bytes());
                    d.write(p, port, &v.to_be_bytes()[..len.min(4)]);
                } else {
                    let mut b = vec![0u8; len];
                    d.read(p, port, &mut b);
                }
            }
        }
    }
}
