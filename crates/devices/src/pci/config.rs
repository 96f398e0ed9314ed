//! A 256-byte type-0 configuration space with per-bit write masks (PCI Local Bus Spec 3.0,
//! chapter 6). Each byte has a writable mask (bits the guest may change) and a
//! write-1-to-clear mask (status error bits); everything else is read-only. BARs get their
//! masks from their size, so the standard sizing protocol (write all ones, read back)
//! works without special cases: the address bits below the size and the type bits are
//! read-only.

use super::PciError;

/// Bytes of a conventional configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;

/// Index [`DecodedBar::index`] uses for the expansion ROM.
pub const ROM_BAR_INDEX: usize = 6;

/// Standard header offsets and bits.
pub mod regs {
    /// Vendor ID (16 bits).
    pub const VENDOR_ID: u8 = 0x00;
    /// Device ID (16 bits).
    pub const DEVICE_ID: u8 = 0x02;
    /// Command register (16 bits).
    pub const COMMAND: u8 = 0x04;
    /// Status register (16 bits).
    pub const STATUS: u8 = 0x06;
    /// Revision ID.
    pub const REVISION_ID: u8 = 0x08;
    /// Programming interface, subclass, class (bytes 0x09-0x0B).
    pub const CLASS_PROG: u8 = 0x09;
    /// Cache line size.
    pub const CACHE_LINE_SIZE: u8 = 0x0c;
    /// Latency timer.
    pub const LATENCY_TIMER: u8 = 0x0d;
    /// Header type (bit 7: multi-function).
    pub const HEADER_TYPE: u8 = 0x0e;
    /// First base address register.
    pub const BAR0: u8 = 0x10;
    /// Subsystem vendor ID.
    pub const SUBSYSTEM_VENDOR_ID: u8 = 0x2c;
    /// Subsystem ID.
    pub const SUBSYSTEM_ID: u8 = 0x2e;
    /// Expansion ROM base address.
    pub const ROM_ADDRESS: u8 = 0x30;
    /// Capabilities pointer.
    pub const CAPABILITIES: u8 = 0x34;
    /// Interrupt line (written by firmware, read by drivers).
    pub const INTERRUPT_LINE: u8 = 0x3c;
    /// Interrupt pin (1 = INTA#).
    pub const INTERRUPT_PIN: u8 = 0x3d;

    /// Command: I/O space enable.
    pub const CMD_IO: u16 = 1 << 0;
    /// Command: memory space enable.
    pub const CMD_MEMORY: u16 = 1 << 1;
    /// Command: bus master enable.
    pub const CMD_MASTER: u16 = 1 << 2;
    /// Command: special cycles.
    pub const CMD_SPECIAL: u16 = 1 << 3;
    /// Command: parity error response.
    pub const CMD_PARITY: u16 = 1 << 6;
    /// Command: SERR# enable.
    pub const CMD_SERR: u16 = 1 << 8;
    /// Command: INTx emulation disable.
    pub const CMD_INTX_DISABLE: u16 = 1 << 10;

    /// Status: INTx asserted (read-only).
    pub const STS_INTERRUPT: u16 = 1 << 3;
    /// Status: capability list present.
    pub const STS_CAP_LIST: u16 = 1 << 4;
    /// Status: DEVSEL timing medium.
    pub const STS_DEVSEL_MEDIUM: u16 = 1 << 9;
    /// Status bits that are write-1-to-clear (error reporting).
    pub const STS_W1C: u16 = 0xf900;
}

/// Address space of a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PciSpace {
    /// Port I/O.
    Io,
    /// Memory.
    Memory,
}

/// Kind of a base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space.
    Io,
    /// 32-bit memory.
    Mem32 {
        /// Prefetchable.
        prefetchable: bool,
    },
    /// 64-bit memory (takes two BAR slots).
    Mem64 {
        /// Prefetchable.
        prefetchable: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct BarDef {
    kind: BarKind,
    size: u64,
}

/// A region a function decodes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedBar {
    /// BAR number (0-5), or [`ROM_BAR_INDEX`] for the expansion ROM.
    pub index: usize,
    /// Address space.
    pub space: PciSpace,
    /// Programmed base.
    pub base: u64,
    /// Size.
    pub size: u64,
}

/// Configuration space of one type-0 function.
#[derive(Clone)]
pub struct PciConfig {
    data: [u8; CONFIG_SPACE_SIZE],
    wmask: [u8; CONFIG_SPACE_SIZE],
    w1c: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<BarDef>; 6],
    rom_size: u64,
    /// Next free offset for a capability.
    cap_next: usize,
    /// Offset of the last capability in the list.
    cap_last: Option<usize>,
}

impl std::fmt::Debug for PciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PciConfig({:04x}:{:04x})",
            self.read_u16(regs::VENDOR_ID),
            self.read_u16(regs::DEVICE_ID)
        )
    }
}

impl PciConfig {
    /// A function with the given IDs; `class` is class << 16 | subclass << 8 | prog-if.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut c = PciConfig {
            data: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            w1c: [0; CONFIG_SPACE_SIZE],
            bars: [None; 6],
            rom_size: 0,
            cap_next: 0x40,
            cap_last: None,
        };
        c.set_u16(regs::VENDOR_ID, vendor);
        c.set_u16(regs::DEVICE_ID, device);
        c.set_u8(regs::REVISION_ID, revision);
        c.set_u8(regs::CLASS_PROG, class as u8);
        c.set_u8(regs::CLASS_PROG + 1, (class >> 8) as u8);
        c.set_u8(regs::CLASS_PROG + 2, (class >> 16) as u8);
        c.set_u16(regs::STATUS, regs::STS_DEVSEL_MEDIUM);
        c.set_wmask(
            regs::COMMAND,
            2,
            u32::from(
                regs::CMD_IO
                    | regs::CMD_MEMORY
                    | regs::CMD_MASTER
                    | regs::CMD_PARITY
                    | regs::CMD_SERR
                    | regs::CMD_INTX_DISABLE,
            ),
        );
        c.w1c[regs::STATUS as usize + 1] = (regs::STS_W1C >> 8) as u8;
        c.set_wmask(regs::CACHE_LINE_SIZE, 1, 0xff);
        c.set_wmask(regs::LATENCY_TIMER, 1, 0xff);
        c.set_wmask(regs::INTERRUPT_LINE, 1, 0xff);
        c
    }

    /// Set the subsystem vendor and ID (read-only to the guest).
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.set_u16(regs::SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(regs::SUBSYSTEM_ID, id);
    }

    /// Mark the device as multi-function (header type bit 7), so function 1-7 get probed.
    pub fn set_multifunction(&mut self, on: bool) {
        let h = self.data[regs::HEADER_TYPE as usize] & 0x7f;
        self.data[regs::HEADER_TYPE as usize] = h | if on { 0x80 } else { 0 };
    }

    /// Set the interrupt pin (1 = INTA# .. 4 = INTD#, 0 = none).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.set_u8(regs::INTERRUPT_PIN, pin.min(4));
    }

    /// Reflect the INTx state in status bit 3 (the device model calls this as it drives
    /// its line).
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let s = self.read_u16(regs::STATUS);
        let s = if asserted {
            s | regs::STS_INTERRUPT
        } else {
            s & !regs::STS_INTERRUPT
        };
        self.set_u16(regs::STATUS, s);
    }

    /// Device-side write of one byte (ignores the masks).
    pub fn set_u8(&mut self, off: u8, v: u8) {
        self.data[off as usize] = v;
    }

    /// Device-side write of a little-endian u16 (ignores the masks); `off` must leave room.
    pub fn set_u16(&mut self, off: u8, v: u16) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            if let Some(d) = self.data.get_mut(off as usize + i) {
                *d = b;
            }
        }
    }

    /// Device-side write of a little-endian u32 (ignores the masks).
    pub fn set_u32(&mut self, off: u8, v: u32) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            if let Some(d) = self.data.get_mut(off as usize + i) {
                *d = b;
            }
        }
    }

    /// Make bits of `len` bytes at `off` guest-writable (`mask` little-endian).
    pub fn set_wmask(&mut self, off: u8, len: usize, mask: u32) {
        for i in 0..len.min(4) {
            if let Some(m) = self.wmask.get_mut(off as usize + i) {
                *m = (mask >> (8 * i)) as u8;
            }
        }
    }

    /// Make bits of `len` bytes at `off` write-1-to-clear.
    pub fn set_w1c(&mut self, off: u8, len: usize, mask: u32) {
        for i in 0..len.min(4) {
            if let Some(m) = self.w1c.get_mut(off as usize + i) {
                *m = (mask >> (8 * i)) as u8;
            }
        }
    }

    /// Read a byte.
    pub fn read_u8(&self, off: u8) -> u8 {
        self.data[off as usize]
    }

    /// Read a little-endian u16 (bytes past the end read 0).
    pub fn read_u16(&self, off: u8) -> u16 {
        self.read(off, 2) as u16
    }

    /// Read a little-endian u32 (bytes past the end read 0).
    pub fn read_u32(&self, off: u8) -> u32 {
        self.read(off, 4)
    }

    /// Read `len` (1-4) bytes at `off` as a little-endian value.
    pub fn read(&self, off: u8, len: usize) -> u32 {
        let mut v = 0u32;
        for i in 0..len.min(4) {
            let b = self.data.get(off as usize + i).copied().unwrap_or(0);
            v |= u32::from(b) << (8 * i);
        }
        v
    }

    /// Fill `data` from offset `off` (guest read).
    pub fn read_bytes(&self, off: u8, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.data.get(off as usize + i).copied().unwrap_or(0);
        }
    }

    /// A guest write of `data` at `off`, honouring the writable and W1C masks.
    pub fn write_bytes(&mut self, off: u8, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let o = off as usize + i;
            if o >= CONFIG_SPACE_SIZE {
                break;
            }
            let m = self.wmask[o];
            let mut new = (self.data[o] & !m) | (v & m);
            new &= !(v & self.w1c[o]);
            self.data[o] = new;
        }
    }

    /// A guest write of the low `len` bytes of `v` at `off`.
    pub fn write(&mut self, off: u8, len: usize, v: u32) {
        let b = v.to_le_bytes();
        self.write_bytes(off, &b[..len.min(4)]);
    }

    /// Declare BAR `index` of `size` bytes (a power of two; I/O at least 4, memory at least
    /// 16). A 64-bit BAR also takes slot `index + 1`.
    pub fn add_bar(&mut self, index: usize, kind: BarKind, size: u64) -> Result<(), PciError> {
        let wide = matches!(kind, BarKind::Mem64 { .. });
        if index >= 6 || (wide && index >= 5) {
            return Err(PciError::BadBar(index));
        }
        if self.bars[index].is_some() || (wide && self.bars[index + 1].is_some()) {
            return Err(PciError::BadBar(index));
        }
        if index > 0 {
            if let Some(BarDef {
                kind: BarKind::Mem64 { .. },
                ..
            }) = self.bars[index - 1]
            {
                return Err(PciError::BadBar(index));
            }
        }
        let min = if kind == BarKind::Io { 4 } else { 16 };
        let max = match kind {
            BarKind::Io => 0x1_0000,
            BarKind::Mem32 { .. } => 1 << 31,
            BarKind::Mem64 { .. } => 1 << 62,
        };
        if !size.is_power_of_two() || size < min || size > max {
            return Err(PciError::BadSize(size));
        }
        let off = regs::BAR0 + 4 * index as u8;
        let addr_mask = !(size - 1);
        let (low_bits, low_mask) = match kind {
            BarKind::Io => (1u32, (addr_mask as u32) & !3),
            BarKind::Mem32 { prefetchable } => {
                (u32::from(prefetchable) << 3, (addr_mask as u32) & !0xf)
            }
            BarKind::Mem64 { prefetchable } => (
                (u32::from(prefetchable) << 3) | 4,
                (addr_mask as u32) & !0xf,
            ),
        };
        // I/O BARs keep all 32 address bits writable, as QEMU's and VirtualBox's do:
        // SeaBIOS computes the size as ~(readback & ~3) + 1 in 32-bit arithmetic, which
        // needs the upper bits set after sizing. Only bases below 64 KiB get decoded.
        self.set_u32(off, low_bits);
        self.set_wmask(off, 4, low_mask);
        if wide {
            self.set_u32(off + 4, 0);
            self.set_wmask(off + 4, 4, (addr_mask >> 32) as u32);
        }
        self.bars[index] = Some(BarDef { kind, size });
        Ok(())
    }

    /// Declare an expansion ROM of `size` bytes (a power of two, at least 2 KiB).
    pub fn set_rom(&mut self, size: u64) -> Result<(), PciError> {
        if !size.is_power_of_two() || !(0x800..=(1 << 24)).contains(&size) {
            return Err(PciError::BadSize(size));
        }
        self.rom_size = size;
        self.set_u32(regs::ROM_ADDRESS, 0);
        self.set_wmask(regs::ROM_ADDRESS, 4, (!(size as u32 - 1) & 0xffff_f800) | 1);
        Ok(())
    }

    /// Append a capability with `id` and `body` (the bytes after the ID and next-pointer
    /// bytes). Returns its offset; make its registers writable with
    /// [`PciConfig::set_wmask`].
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> Result<u8, PciError> {
        let off = self.cap_next.next_multiple_of(4);
        self.add_capability_at(off as u8, id, body)
    }

    /// Like [`PciConfig::add_capability`], at offset `at` (dword-aligned, past the
    /// header, not overlapping what is there), for devices whose real layout puts
    /// capabilities at fixed places. The list links them in the order they are added.
    pub fn add_capability_at(&mut self, at: u8, id: u8, body: &[u8]) -> Result<u8, PciError> {
        let len = body.len() + 2;
        let off = usize::from(at);
        let taken = self.cap_last.is_some_and(|_| {
            let mut p = usize::from(self.data[regs::CAPABILITIES as usize]);
            let mut overlap = false;
            while p != 0 {
                // Each capability spans at least its header; the next one starts after it.
                overlap |= off < p + 2 && p < off + len;
                p = usize::from(self.data[p + 1]);
            }
            overlap
        });
        if off < 0x40 || off % 4 != 0 || off + len > CONFIG_SPACE_SIZE || taken {
            return Err(PciError::NoCapSpace(len));
        }
        self.data[off] = id;
        self.data[off + 1] = 0;
        self.data[off + 2..off + len].copy_from_slice(body);
        match self.cap_last {
            Some(last) => self.data[last + 1] = off as u8,
            None => self.data[regs::CAPABILITIES as usize] = off as u8,
        }
        self.cap_last = Some(off);
        self.cap_next = self.cap_next.max(off + len);
        let s = self.read_u16(regs::STATUS) | regs::STS_CAP_LIST;
        self.set_u16(regs::STATUS, s);
        Ok(off as u8)
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.read_u16(regs::COMMAND)
    }

    /// I/O decoding enabled.
    pub fn io_enabled(&self) -> bool {
        self.command() & regs::CMD_IO != 0
    }

    /// Memory decoding enabled.
    pub fn mem_enabled(&self) -> bool {
        self.command() & regs::CMD_MEMORY != 0
    }

    /// Bus mastering (DMA) enabled.
    pub fn bus_master_enabled(&self) -> bool {
        self.command() & regs::CMD_MASTER != 0
    }

    /// INTx disabled by the command register.
    pub fn intx_disabled(&self) -> bool {
        self.command() & regs::CMD_INTX_DISABLE != 0
    }

    /// Kind and size of BAR `index`.
    pub fn bar(&self, index: usize) -> Option<(BarKind, u64)> {
        self.bars.get(index)?.map(|b| (b.kind, b.size))
    }

    /// The programmed address of BAR `index` (None for an undeclared BAR).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let def = (*self.bars.get(index)?)?;
        let off = regs::BAR0 + 4 * index as u8;
        let low = u64::from(self.read_u32(off));
        Some(match def.kind {
            BarKind::Io => low & !3,
            BarKind::Mem32 { .. } => low & !0xf,
            BarKind::Mem64 { .. } => (low & !0xf) | (u64::from(self.read_u32(off + 4)) << 32),
        })
    }

    /// The programmed expansion ROM address when its enable bit is set.
    pub fn rom_address(&self) -> Option<u64> {
        let v = self.read_u32(regs::ROM_ADDRESS);
        (self.rom_size > 0 && v & 1 != 0).then_some(u64::from(v & 0xffff_f800))
    }

    /// The BARs (and ROM) the function decodes now: the command register enables the
    /// space and the base is not zero; I/O ranges must fit the 64 KiB port space.
    pub fn decoded_bars(&self) -> Vec<DecodedBar> {
        let mut out = Vec::new();
        for index in 0..6 {
            let (Some(def), Some(base)) = (self.bars[index], self.bar_address(index)) else {
                continue;
            };
            let (space, on) = match def.kind {
                BarKind::Io => (PciSpace::Io, self.io_enabled()),
                _ => (PciSpace::Memory, self.mem_enabled()),
            };
            let fits = match space {
                PciSpace::Io => base.checked_add(def.size).is_some_and(|e| e <= 0x1_0000),
                PciSpace::Memory => base.checked_add(def.size).is_some(),
            };
            if on && base != 0 && fits {
                out.push(DecodedBar {
                    index,
                    space,
                    base,
                    size: def.size,
                });
            }
        }
        if let Some(base) = self.rom_address() {
            if self.mem_enabled() && base != 0 {
                out.push(DecodedBar {
                    index: ROM_BAR_INDEX,
                    space: PciSpace::Memory,
                    base,
                    size: self.rom_size,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PciConfig {
        PciConfig::new(0x8086, 0x100e, 0x020000, 3)
    }

    #[test]
    fn header_is_read_only() {
        let mut c = cfg();
        c.write(0, 4, 0xffff_ffff);
        c.write(0x08, 4, 0);
        assert_eq!(c.read_u32(0), 0x100e_8086);
        assert_eq!(c.read_u32(0x08), 0x0200_0003);
        c.write(regs::INTERRUPT_LINE, 1, 11);
        assert_eq!(c.read_u8(regs::INTERRUPT_LINE), 11);
    }

    #[test]
    fn command_and_status_masks() {
        let mut c = cfg();
        c.write(regs::COMMAND, 2, 0xffff);
        assert_eq!(c.command(), 0x0547);
        assert!(c.io_enabled() && c.mem_enabled() && c.bus_master_enabled());
        c.set_u16(regs::STATUS, 0xf900 | regs::STS_DEVSEL_MEDIUM);
        c.write(regs::STATUS, 2, 0x2000); // clear only RMA
        assert_eq!(c.read_u16(regs::STATUS), 0xd900 | regs::STS_DEVSEL_MEDIUM);
        c.write(regs::STATUS, 2, 0x0000);
        assert_eq!(c.read_u16(regs::STATUS) & 0xf900, 0xd900, "writing 0 keeps");
    }

    #[test]
    fn io_bar_sizing() {
        let mut c = cfg();
        c.add_bar(1, BarKind::Io, 0x40).unwrap();
        c.write(0x14, 4, 0xffff_ffff);
        assert_eq!(c.read_u32(0x14), 0xffff_ffc1);
        c.write(0x14, 4, 0xc001);
        assert_eq!(c.bar_address(1), Some(0xc000));
        assert!(c.decoded_bars().is_empty(), "I/O decode off");
        c.write(regs::COMMAND, 2, u32::from(regs::CMD_IO));
        assert_eq!(
            c.decoded_bars(),
            vec![DecodedBar {
                index: 1,
                space: PciSpace::Io,
                base: 0xc000,
                size: 0x40
            }]
        );
    }

    #[test]
    fn mem32_prefetchable_sizing() {
        let mut c = cfg();
        c.add_bar(0, BarKind::Mem32 { prefetchable: true }, 0x2_0000)
            .unwrap();
        c.write(0x10, 4, 0xffff_ffff);
        assert_eq!(c.read_u32(0x10), 0xfffe_0008);
        c.write(0x10, 4, 0xf000_0000);
        c.write(regs::COMMAND, 2, u32::from(regs::CMD_MEMORY));
        assert_eq!(c.decoded_bars()[0].base, 0xf000_0000);
    }

    #[test]
    fn mem64_sizing_and_address() {
        let mut c = cfg();
        c.add_bar(
            2,
            BarKind::Mem64 {
                prefetchable: false,
            },
            0x1_0000_0000,
        )
        .unwrap();
        assert!(c.add_bar(3, BarKind::Io, 4).is_err(), "upper half is taken");
        c.write(0x18, 4, 0xffff_ffff);
        c.write(0x1c, 4, 0xffff_ffff);
        assert_eq!(c.read_u32(0x18), 0x0000_0004);
        assert_eq!(c.read_u32(0x1c), 0xffff_ffff);
        c.write(0x18, 4, 0);
        c.write(0x1c, 4, 0x8);
        assert_eq!(c.bar_address(2), Some(0x8_0000_0000));
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut c = cfg();
        assert_eq!(c.add_bar(6, BarKind::Io, 4), Err(PciError::BadBar(6)));
        assert_eq!(
            c.add_bar(
                5,
                BarKind::Mem64 {
                    prefetchable: false
                },
                16
            ),
            Err(PciError::BadBar(5))
        );
        assert_eq!(c.add_bar(0, BarKind::Io, 3), Err(PciError::BadSize(3)));
        assert_eq!(
            c.add_bar(
                0,
                BarKind::Mem32 {
                    prefetchable: false
                },
                8
            ),
            Err(PciError::BadSize(8))
        );
    }

    #[test]
    fn rom_bar_enable_bit() {
        let mut c = cfg();
        c.set_rom(0x1_0000).unwrap();
        c.write(0x30, 4, 0xffff_ffff);
        assert_eq!(c.read_u32(0x30), 0xffff_0001);
        c.write(0x30, 4, 0xfeb0_0000);
        assert_eq!(c.rom_address(), None, "not enabled");
        c.write(0x30, 4, 0xfeb0_0001);
        c.write(regs::COMMAND, 2, u32::from(regs::CMD_MEMORY));
        assert_eq!(c.decoded_bars()[0].index, ROM_BAR_INDEX);
    }

    #[test]
    fn capability_chain() {
        let mut c = cfg();
        let a = c.add_capability(0x05, &[0; 12]).unwrap();
        let b = c.add_capability(0x01, &[0x03, 0x00, 0, 0, 0, 0]).unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x50);
        assert_eq!(c.read_u8(regs::CAPABILITIES), 0x40);
        assert_eq!(c.read_u8(0x41), 0x50);
        assert_eq!(c.read_u8(0x51), 0);
        assert_ne!(c.read_u16(regs::STATUS) & regs::STS_CAP_LIST, 0);
        assert!(c.add_capability(0x09, &[0; 200]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_writes_never_panic(ops in proptest::collection::vec((proptest::num::u8::ANY, 1usize..5, proptest::num::u32::ANY), 0..200)) {
            let mut c = cfg();
            c.add_bar(0, BarKind::Mem64 { prefetchable: true }, 1 << 20).unwrap();
            c.add_bar(2, BarKind::Io, 0x100).unwrap();
            c.set_rom(0x8000).unwrap();
            for (off, len, v) in ops {
                c.write(off, len, v);
                let _ = c.read(off, len);
                for d in c.decoded_bars() {
                    proptest::prop_assert!(d.base.checked_add(d.size).is_some());
                }
                proptest::prop_assert_eq!(c.read_u16(0), 0x8086);
            }
        }
    }
}
