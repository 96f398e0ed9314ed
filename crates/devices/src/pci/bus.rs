//! The host PCI bus: functions by bus/device/function, configuration mechanism #1 at ports
//! 0xCF8-0xCFF, the PIIX3 reset control register at 0xCF9, and the bookkeeping that moves
//! a function's I/O and memory ranges on the iomio buses whenever the guest reprograms a
//! BAR or the command register.
//!
//! Mechanism #1 (PCI Local Bus Spec 3.0, 3.2.2.3.2): a dword write to 0xCF8 latches
//! CONFIG_ADDRESS (bit 31 enable, bits 23:16 bus, 15:11 device, 10:8 function, 7:2
//! register); accesses of 1, 2 or 4 bytes to 0xCFC-0xCFF then reach configuration offset
//! (register | port & 3). With the enable bit clear, or when no function answers, reads
//! return all ones (master abort) and writes are dropped. Only dword accesses reach
//! CONFIG_ADDRESS; a byte access to 0xCF9 is the PIIX3 reset control register (bit 2
//! going to 1 resets the system, bit 1 selects a hard reset), which SeaBIOS and Linux use
//! for reboot and our FADT names as the ACPI reset register.

use super::{PciError, PciSpace};
use iomio::{Bus, BusDevice, SharedDevice};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// CONFIG_ADDRESS; the bus device covers 0xCF8-0xCFF.
pub const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
const RESET_CONTROL_PORT: u64 = 0xcf9;
const CONFIG_DATA_PORT: u64 = 0xcfc;

/// Bus/device/function of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0-31.
    pub device: u8,
    /// Function number, 0-7.
    pub function: u8,
}

impl std::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

impl PciAddress {
    /// Bus 0, `device`, `function`.
    pub const fn new(device: u8, function: u8) -> Self {
        PciAddress {
            bus: 0,
            device,
            function,
        }
    }

    /// The 16-bit BDF (bus << 8 | device << 3 | function) firmware uses.
    pub fn bdf(&self) -> u16 {
        (u16::from(self.bus) << 8)
            | (u16::from(self.device & 31) << 3)
            | u16::from(self.function & 7)
    }

    fn valid(&self) -> bool {
        self.device < 32 && self.function < 8
    }
}

/// An I/O or memory range a function decodes, with the device that serves it.
#[derive(Clone)]
pub struct PciRegion {
    /// Address space.
    pub space: PciSpace,
    /// Base address.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// Name shown in bus listings.
    pub name: String,
    /// What handles accesses (its `offset` argument is relative to `base`).
    pub device: SharedDevice,
}

impl std::fmt::Debug for PciRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {:#x}+{:#x}",
            self.name, self.space, self.base, self.size
        )
    }
}

impl PciRegion {
    fn same_as(&self, other: &PciRegion) -> bool {
        self.space == other.space
            && self.base == other.base
            && self.size == other.size
            && Arc::ptr_eq(&self.device, &other.device)
    }
}

/// What every PCI device model implements.
pub trait PciFunction: Send {
    /// Read `data.len()` (1, 2 or 4) bytes of configuration space at `offset`.
    fn config_read(&mut self, offset: u8, data: &mut [u8]);
    /// Write configuration space at `offset`.
    fn config_write(&mut self, offset: u8, data: &[u8]);
    /// The I/O and memory ranges the function decodes now (usually built from
    /// [`super::PciConfig::decoded_bars`]); the bus re-reads this after every
    /// configuration write and moves the ranges on the iomio buses.
    fn regions(&self) -> Vec<PciRegion>;
    /// Power-on / system reset.
    fn reset(&mut self) {}
}

type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// The PCI host bus with configuration mechanism #1. Register it on the port bus at
/// [`CONFIG_ADDRESS_PORT`] with length 8 (see [`PciBus::attach`]).
pub struct PciBus {
    functions: BTreeMap<PciAddress, SharedFunction>,
    mapped: BTreeMap<PciAddress, Vec<PciRegion>>,
    address: u32,
    rcr: u8,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    reset_requested: Arc<AtomicBool>,
    on_reset: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for PciBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciBus")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("address", &self.address)
            .finish()
    }
}

impl PciBus {
    /// An empty bus placing BARs on `pio` (I/O) and `mmio` (memory).
    pub fn new(pio: Arc<Bus>, mmio: Arc<Bus>) -> Self {
        PciBus {
            functions: BTreeMap::new(),
            mapped: BTreeMap::new(),
            address: 0,
            rcr: 0,
            pio,
            mmio,
            reset_requested: Arc::new(AtomicBool::new(false)),
            on_reset: None,
        }
    }

    /// Wrap the bus in its lock and register it at 0xCF8-0xCFF on the port bus.
    pub fn attach(self) -> Result<Arc<Mutex<PciBus>>, iomio::BusError> {
        let pio = self.pio.clone();
        let bus = Arc::new(Mutex::new(self));
        pio.insert(u64::from(CONFIG_ADDRESS_PORT), 8, "pci-config", bus.clone())?;
        Ok(bus)
    }

    /// Plug `function` in at `addr` and map whatever it decodes already.
    pub fn add_function(
        &mut self,
        addr: PciAddress,
        function: SharedFunction,
    ) -> Result<(), PciError> {
        if !addr.valid() {
            return Err(PciError::BadAddress(addr));
        }
        if self.functions.contains_key(&addr) {
            return Err(PciError::Occupied(addr));
        }
        self.functions.insert(addr, function);
        self.remap(addr);
        Ok(())
    }

    /// The function at `addr`.
    pub fn function(&self, addr: PciAddress) -> Option<SharedFunction> {
        self.functions.get(&addr).cloned()
    }

    /// Addresses of all functions.
    pub fn addresses(&self) -> Vec<PciAddress> {
        self.functions.keys().copied().collect()
    }

    /// Run `f` when the guest resets the system through 0xCF9.
    pub fn set_reset_callback(&mut self, f: Arc<dyn Fn() + Send + Sync>) {
        self.on_reset = Some(f);
    }

    /// True (once) if the guest requested a reset through 0xCF9 since the last call.
    pub fn take_reset_request(&self) -> bool {
        self.reset_requested.swap(false, Ordering::SeqCst)
    }

    /// Configuration read (all ones when nothing answers).
    pub fn config_read(&mut self, addr: PciAddress, offset: u8, data: &mut [u8]) {
        match self.functions.get(&addr) {
            Some(f) => f.lock().config_read(offset, data),
            None => data.fill(0xff),
        }
    }

    /// Configuration write; the function's ranges follow the new BARs/command register.
    pub fn config_write(&mut self, addr: PciAddress, offset: u8, data: &[u8]) {
        let Some(f) = self.functions.get(&addr).cloned() else {
            return;
        };
        f.lock().config_write(offset, data);
        self.remap(addr);
    }

    /// Re-read the regions of the function at `addr` and move them on the buses.
    pub fn remap(&mut self, addr: PciAddress) {
        let Some(f) = self.functions.get(&addr).cloned() else {
            return;
        };
        let wanted = f.lock().regions();
        let current = self.mapped.get(&addr).cloned().unwrap_or_default();
        let unchanged = wanted.len() == current.len()
            && wanted.iter().all(|w| current.iter().any(|c| c.same_as(w)));
        if unchanged {
            return;
        }
        for r in &current {
            self.bus_for(r.space).remove(r.base);
        }
        let mut placed = Vec::new();
        for r in wanted {
            let name = format!("{addr} {}", r.name);
            match self
                .bus_for(r.space)
                .insert(r.base, r.size, &name, r.device.clone())
            {
                Ok(()) => placed.push(r),
                // The guest may program overlapping BARs; real hardware then has two
                // decoders answering. We keep the first and log the second.
                Err(e) => tracing::warn!("PCI {addr}: cannot map {:?}: {e}", r),
            }
        }
        self.mapped.insert(addr, placed);
    }

    /// System reset: reset every function and remap.
    pub fn reset(&mut self) {
        self.address = 0;
        self.rcr = 0;
        let addrs: Vec<_> = self.functions.keys().copied().collect();
        for a in addrs {
            if let Some(f) = self.functions.get(&a) {
                f.lock().reset();
            }
            self.remap(a);
        }
    }

    fn bus_for(&self, space: PciSpace) -> &Arc<Bus> {
        match space {
            PciSpace::Io => &self.pio,
            PciSpace::Memory => &self.mmio,
        }
    }

    /// The latched CONFIG_ADDRESS.
    pub fn config_address(&self) -> u32 {
        self.address
    }

    fn target(&self) -> Option<(PciAddress, u8)> {
        if self.address & 0x8000_0000 == 0 {
            return None;
        }
        let a = PciAddress {
            bus: (self.address >> 16) as u8,
            device: ((self.address >> 11) & 31) as u8,
            function: ((self.address >> 8) & 7) as u8,
        };
        Some((a, (self.address & 0xfc) as u8))
    }

    fn write_rcr(&mut self, v: u8) {
        if v & 4 != 0 && self.rcr & 4 == 0 {
            tracing::info!(
                "PCI: reset through 0xCF9 ({})",
                if v & 2 != 0 { "hard" } else { "soft" }
            );
            self.reset_requested.store(true, Ordering::SeqCst);
            if let Some(cb) = &self.on_reset {
                cb();
            }
        }
        // The reset bit does not stick (QEMU and the PIIX3 read it back as 0).
        self.rcr = v & 2;
    }
}

impl BusDevice for PciBus {
    fn read(&mut self, addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if addr == u64::from(CONFIG_ADDRESS_PORT) && data.len() == 4 {
            data.copy_from_slice(&self.address.to_le_bytes());
        } else if addr == RESET_CONTROL_PORT && data.len() == 1 {
            data[0] = self.rcr;
        } else if (CONFIG_DATA_PORT..CONFIG_DATA_PORT + 4).contains(&addr) {
            let k = (addr - CONFIG_DATA_PORT) as usize;
            let n = data.len().min(4 - k);
            if let Some((target, reg)) = self.target() {
                self.config_read(target, reg + k as u8, &mut data[..n]);
            }
        }
    }

    fn write(&mut self, addr: u64, _offset: u64, data: &[u8]) {
        if addr == u64::from(CONFIG_ADDRESS_PORT) && data.len() == 4 {
            let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            // Reserved bits 30:24 and 1:0 read as zero.
            self.address = v & 0x80ff_fffc;
        } else if addr == RESET_CONTROL_PORT && data.len() == 1 {
            self.write_rcr(data[0]);
        } else if (CONFIG_DATA_PORT..CONFIG_DATA_PORT + 4).contains(&addr) {
            let k = (addr - CONFIG_DATA_PORT) as usize;
            let n = data.len().min(4 - k);
            if let Some((target, reg)) = self.target() {
                self.config_write(target, reg + k as u8, &data[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{regs, BarKind, PciConfig};

    struct Reg(u8);
    impl BusDevice for Reg {
        fn read(&mut self, _a: u64, _o: u64, d: &mut [u8]) {
            d.fill(self.0);
        }
        fn write(&mut self, _a: u64, _o: u64, d: &[u8]) {
            self.0 = d[0];
        }
    }

    struct Nic {
        cfg: PciConfig,
        io: SharedDevice,
        mem: SharedDevice,
    }

    impl Nic {
        fn new() -> Self {
            let mut cfg = PciConfig::new(0x8086, 0x100e, 0x020000, 2);
            cfg.add_bar(
                0,
                BarKind::Mem32 {
                    prefetchable: false,
                },
                0x2_0000,
            )
            .unwrap();
            cfg.add_bar(1, BarKind::Io, 0x40).unwrap();
            cfg.set_interrupt_pin(1);
            Nic {
                cfg,
                io: Arc::new(Mutex::new(Reg(0x11))),
                mem: Arc::new(Mutex::new(Reg(0x22))),
            }
        }
    }

    impl PciFunction for Nic {
        fn config_read(&mut self, offset: u8, data: &mut [u8]) {
            self.cfg.read_bytes(offset, data);
        }
        fn config_write(&mut self, offset: u8, data: &[u8]) {
            self.cfg.write_bytes(offset, data);
        }
        fn regions(&self) -> Vec<PciRegion> {
            self.cfg
                .decoded_bars()
                .into_iter()
                .map(|b| PciRegion {
                    space: b.space,
                    base: b.base,
                    size: b.size,
                    name: format!("bar{}", b.index),
                    device: if b.index == 0 {
                        self.mem.clone()
                    } else {
                        self.io.clone()
                    },
                })
                .collect()
        }
    }

    fn setup() -> (Arc<Bus>, Arc<Bus>, Arc<Mutex<PciBus>>) {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let mut bus = PciBus::new(pio.clone(), mmio.clone());
        bus.add_function(PciAddress::new(3, 0), Arc::new(Mutex::new(Nic::new())))
            .unwrap();
        (pio, mmio, bus.attach().unwrap())
    }

    fn cfg_addr(dev: u8, func: u8, reg: u8) -> u32 {
        0x8000_0000 | (u32::from(dev) << 11) | (u32::from(func) << 8) | u32::from(reg)
    }

    fn outl(pio: &Bus, port: u64, v: u32) {
        pio.write(port, &v.to_le_bytes());
    }
    fn inl(pio: &Bus, port: u64) -> u32 {
        let mut d = [0u8; 4];
        pio.read(port, &mut d);
        u32::from_le_bytes(d)
    }
    fn inw(pio: &Bus, port: u64) -> u16 {
        let mut d = [0u8; 2];
        pio.read(port, &mut d);
        u16::from_le_bytes(d)
    }

    #[test]
    fn mechanism1_reads_ids_and_master_aborts() {
        let (pio, _mmio, _bus) = setup();
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0));
        assert_eq!(inl(&pio, 0xcf8), cfg_addr(3, 0, 0));
        assert_eq!(inl(&pio, 0xcfc), 0x100e_8086);
        assert_eq!(inw(&pio, 0xcfe), 0x100e, "word at offset 2");
        outl(&pio, 0xcf8, cfg_addr(4, 0, 0));
        assert_eq!(inl(&pio, 0xcfc), 0xffff_ffff, "empty slot");
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0) & 0x7fff_ffff);
        assert_eq!(inl(&pio, 0xcfc), 0xffff_ffff, "enable bit clear");
        outl(&pio, 0xcf8, cfg_addr(3, 0, regs::INTERRUPT_LINE));
        let mut b = [0u8; 1];
        pio.read(0xcfd, &mut b);
        assert_eq!(b[0], 1, "interrupt pin via byte access at 0xCFD");
    }

    #[test]
    fn bars_move_with_programming() {
        let (pio, mmio, _bus) = setup();
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0x10));
        outl(&pio, 0xcfc, 0xfebc_0000);
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0x14));
        outl(&pio, 0xcfc, 0xc001);
        assert!(!mmio.is_claimed(0xfebc_0000), "decode still off");
        outl(&pio, 0xcf8, cfg_addr(3, 0, regs::COMMAND));
        outl(&pio, 0xcfc, u32::from(regs::CMD_IO | regs::CMD_MEMORY));
        let mut d = [0u8; 1];
        assert!(mmio.read(0xfebc_1234, &mut d));
        assert_eq!(d[0], 0x22);
        assert!(pio.read(0xc03f, &mut d));
        assert_eq!(d[0], 0x11);
        // Move the I/O BAR.
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0x14));
        outl(&pio, 0xcfc, 0xd001);
        assert!(!pio.is_claimed(0xc000));
        assert!(pio.is_claimed(0xd000));
        // Memory decode off.
        outl(&pio, 0xcf8, cfg_addr(3, 0, regs::COMMAND));
        outl(&pio, 0xcfc, u32::from(regs::CMD_IO));
        assert!(!mmio.is_claimed(0xfebc_0000));
        assert!(pio.is_claimed(0xd000));
    }

    #[test]
    fn overlapping_bar_is_skipped_not_fatal() {
        let (pio, _mmio, bus) = setup();
        pio.insert(0xc000, 0x10, "other", Arc::new(Mutex::new(Reg(0))))
            .unwrap();
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0x14));
        outl(&pio, 0xcfc, 0xc001);
        outl(&pio, 0xcf8, cfg_addr(3, 0, regs::COMMAND));
        outl(&pio, 0xcfc, u32::from(regs::CMD_IO));
        assert_eq!(pio.name_at(0xc000).as_deref(), Some("other"));
        // Moving it away later must not remove the other device's range.
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0x14));
        outl(&pio, 0xcfc, 0xe001);
        assert_eq!(pio.name_at(0xc000).as_deref(), Some("other"));
        assert!(pio.is_claimed(0xe000));
        assert_eq!(bus.lock().addresses(), vec![PciAddress::new(3, 0)]);
    }

    #[test]
    fn reset_control_register() {
        let (pio, _mmio, bus) = setup();
        let hit = Arc::new(AtomicBool::new(false));
        let h = hit.clone();
        bus.lock()
            .set_reset_callback(Arc::new(move || h.store(true, Ordering::SeqCst)));
        pio.write(0xcf9, &[0x02]);
        assert!(!bus.lock().take_reset_request());
        pio.write(0xcf9, &[0x06]);
        assert!(bus.lock().take_reset_request());
        assert!(hit.load(Ordering::SeqCst));
        let mut d = [0u8];
        pio.read(0xcf9, &mut d);
        assert_eq!(d[0], 0x02);
        // A byte write at 0xCF8 does not touch CONFIG_ADDRESS.
        outl(&pio, 0xcf8, cfg_addr(3, 0, 0));
        pio.write(0xcf8, &[0]);
        assert_eq!(inl(&pio, 0xcf8), cfg_addr(3, 0, 0));
    }

    #[test]
    fn duplicate_and_invalid_addresses() {
        let pio = Arc::new(Bus::new());
        let mut bus = PciBus::new(pio.clone(), pio);
        bus.add_function(PciAddress::new(1, 0), Arc::new(Mutex::new(Nic::new())))
            .unwrap();
        assert!(matches!(
            bus.add_function(PciAddress::new(1, 0), Arc::new(Mutex::new(Nic::new()))),
            Err(PciError::Occupied(_))
        ));
        assert!(matches!(
            bus.add_function(PciAddress::new(32, 0), Arc::new(Mutex::new(Nic::new()))),
            Err(PciError::BadAddress(_))
        ));
        assert_eq!(PciAddress::new(7, 0).bdf(), 0x38);
    }

    proptest::proptest! {
        #[test]
        fn random_port_accesses_never_panic(ops in proptest::collection::vec((0u64..8, 0u8..4, proptest::bool::ANY, proptest::num::u32::ANY), 0..300)) {
            let (pio, _mmio, _bus) = setup();
            for (port, sz, w, v) in ops {
                let len = [1usize, 2, 4, 3][sz as usize];
                let p = 0xcf8 + port;
                if w {
                    pio.write(p, &v.to_le_bytes()[..len]);
                } else {
                    let mut d = vec![0u8; len];
                    pio.read(p, &mut d);
                }
            }
        }
    }
}
