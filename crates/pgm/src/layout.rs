//! The guest-physical map as data: which guest-physical ranges read from and write to which
//! part of the backing. Pure logic, no memory.

use crate::{PgmError, Result, Translation, PAGE_SIZE};

/// Start of the legacy VGA window (MMIO, not RAM).
pub const VGA_START: u64 = 0xa_0000;
/// Start of the PAM-controlled BIOS area.
pub const PAM_START: u64 = 0xc_0000;
/// End of the first MiB.
pub const ONE_MIB: u64 = 0x10_0000;
/// RAM above this goes above 4 GiB (the PCI hole, as VirtualBox's default 512 MiB hole).
pub const PCI_HOLE_START: u64 = 0xe000_0000;
/// 4 GiB.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// The legacy BIOS alias: the top 128 KiB of the firmware ROM also appear here.
pub const ISA_BIOS_START: u64 = 0xe_0000;

/// Where reads of a range come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSource {
    /// The backing at this offset (for the range start).
    Backing(u64),
    /// Nothing answers: reads return all ones.
    OpenBus,
}

/// Where writes to a range go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteSink {
    /// The backing at this offset (for the range start).
    Backing(u64),
    /// Dropped (ROM).
    Drop,
}

/// One contiguous range of the guest-physical map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Guest-physical start (page aligned).
    pub gpa: u64,
    /// Length (page multiple).
    pub size: u64,
    /// Reads.
    pub read: ReadSource,
    /// Writes.
    pub write: WriteSink,
}

/// How a PAM segment routes accesses (the i440FX PAM register nibble: bit 0 read-enable,
/// bit 1 write-enable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PamMode {
    /// Reads and writes go to the PCI side (firmware ROM alias or open bus).
    #[default]
    Disabled,
    /// Reads from shadow RAM, writes to the PCI side (dropped).
    ReadOnly,
    /// Reads from the PCI side, writes into shadow RAM.
    WriteOnly,
    /// Shadow RAM for both.
    ReadWrite,
}

impl PamMode {
    /// Decode a PAM register nibble.
    pub fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => PamMode::Disabled,
            1 => PamMode::ReadOnly,
            2 => PamMode::WriteOnly,
            _ => PamMode::ReadWrite,
        }
    }
}

/// A ROM region (firmware) mapped at a fixed guest-physical address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rom {
    /// Guest-physical start.
    pub gpa: u64,
    /// Size (page multiple).
    pub size: u64,
    /// Where it lives in the backing (assigned by the layout).
    pub backing_off: u64,
}

/// The whole guest-physical layout of a PC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLayout {
    ram_below_4g: u64,
    ram_above_4g: u64,
    roms: Vec<Rom>,
    /// PAM segments: index 0 = 0xF0000-0xFFFFF (64 KiB), 1..=12 = 16 KiB segments from 0xC0000.
    pam: [PamMode; 13],
    /// Where MMIO2 regions (device-owned RAM) are mapped now.
    mmio2: Vec<Mapping>,
    mappings: Vec<Mapping>,
}

impl MemoryLayout {
    /// A PC layout with `ram` bytes of RAM (split around the PCI hole).
    pub fn pc(ram: u64) -> Result<Self> {
        if ram < ONE_MIB || !ram.is_multiple_of(PAGE_SIZE) {
            return Err(PgmError::Layout(format!(
                "RAM size {ram:#x} must be a page multiple of at least 1 MiB"
            )));
        }
        let below = ram.min(PCI_HOLE_START);
        let mut l = MemoryLayout {
            ram_below_4g: below,
            ram_above_4g: ram - below,
            roms: Vec::new(),
            pam: [PamMode::Disabled; 13],
            mmio2: Vec::new(),
            mappings: Vec::new(),
        };
        l.rebuild();
        Ok(l)
    }

    /// Add a ROM of `size` bytes whose last byte is at 4 GiB - 1 (system firmware).
    pub fn with_firmware(self, size: u64) -> Result<Self> {
        self.with_rom(FOUR_GIB - size.next_multiple_of(PAGE_SIZE), size)
    }

    /// Add a ROM at `gpa`.
    pub fn with_rom(mut self, gpa: u64, size: u64) -> Result<Self> {
        let size = size.next_multiple_of(PAGE_SIZE);
        if size == 0 || !gpa.is_multiple_of(PAGE_SIZE) {
            return Err(PgmError::Layout(format!(
                "ROM at {gpa:#x} is empty or unaligned"
            )));
        }
        let backing_off = self.backing_size();
        self.roms.push(Rom {
            gpa,
            size,
            backing_off,
        });
        self.rebuild();
        self.validate()?;
        Ok(self)
    }

    /// Bytes of RAM.
    pub fn ram_size(&self) -> u64 {
        self.ram_below_4g + self.ram_above_4g
    }

    /// RAM below the PCI hole.
    pub fn ram_below_4g(&self) -> u64 {
        self.ram_below_4g
    }

    /// RAM above 4 GiB.
    pub fn ram_above_4g(&self) -> u64 {
        self.ram_above_4g
    }

    /// The ROMs.
    pub fn roms(&self) -> &[Rom] {
        &self.roms
    }

    /// Bytes of backing needed: RAM followed by the ROMs.
    pub fn backing_size(&self) -> u64 {
        self.ram_size() + self.roms.iter().map(|r| r.size).sum::<u64>()
    }

    /// The current map, sorted by address.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// Check that nothing overlaps.
    pub fn validate(&self) -> Result<()> {
        for w in self.mappings.windows(2) {
            if w[0].gpa + w[0].size > w[1].gpa {
                return Err(PgmError::Layout(format!(
                    "ranges at {:#x} and {:#x} overlap",
                    w[0].gpa, w[1].gpa
                )));
            }
        }
        Ok(())
    }

    /// Find the mapping holding `gpa` and the offset inside it.
    pub fn find(&self, gpa: u64) -> Option<(&Mapping, u64)> {
        let i = self.mappings.partition_point(|m| m.gpa <= gpa);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (gpa - m.gpa < m.size).then_some((m, gpa - m.gpa))
    }

    /// Translate the page of `gpa`.
    pub fn translate(&self, gpa: u64) -> Option<Translation> {
        let page = gpa & !(PAGE_SIZE - 1);
        let (m, off) = self.find(page)?;
        Some(Translation {
            read: match m.read {
                ReadSource::Backing(o) => Some(o + off),
                ReadSource::OpenBus => None,
            },
            write: match m.write {
                WriteSink::Backing(o) => Some(o + off),
                WriteSink::Drop => None,
            },
        })
    }

    /// Route the PAM segments covering `[start, start+size)`; returns true when the map
    /// changed.
    pub fn set_pam(&mut self, start: u64, size: u64, mode: PamMode) -> Result<bool> {
        let mut changed = false;
        for (i, (s, len)) in Self::pam_segments().into_iter().enumerate() {
            if s >= start && s + len <= start + size {
                if self.pam[i] != mode {
                    self.pam[i] = mode;
                    changed = true;
                }
            } else if s < start + size && start < s + len {
                return Err(PgmError::Layout(format!(
                    "PAM range {start:#x}+{size:#x} splits the segment at {s:#x}"
                )));
            }
        }
        if changed {
            self.rebuild();
        }
        Ok(changed)
    }

    /// Map the MMIO2 region whose backing starts at `backing_off` (`size` bytes) at `gpa`,
    /// or unmap it with None. A placement that is unaligned, reaches
    /// [`MMIO2_MAP_LIMIT`](crate::MMIO2_MAP_LIMIT) or overlaps other memory is refused with
    /// the region left unmapped.
    pub fn set_mmio2(&mut self, backing_off: u64, size: u64, gpa: Option<u64>) -> Result<()> {
        self.mmio2
            .retain(|m| m.read != ReadSource::Backing(backing_off));
        let Some(gpa) = gpa else {
            self.rebuild();
            return Ok(());
        };
        let end = gpa.checked_add(size);
        if !gpa.is_multiple_of(PAGE_SIZE)
            || size == 0
            || end.is_none_or(|e| e > crate::MMIO2_MAP_LIMIT)
        {
            self.rebuild();
            return Err(PgmError::Layout(format!(
                "MMIO2 at {gpa:#x}+{size:#x} is unaligned or above the platform area"
            )));
        }
        self.mmio2.push(Mapping {
            gpa,
            size,
            read: ReadSource::Backing(backing_off),
            write: WriteSink::Backing(backing_off),
        });
        self.rebuild();
        if let Err(e) = self.validate() {
            self.mmio2.pop();
            self.rebuild();
            return Err(e);
        }
        Ok(())
    }

    /// Where the MMIO2 region whose backing starts at `backing_off` is mapped.
    pub fn mmio2_gpa(&self, backing_off: u64) -> Option<u64> {
        self.mmio2
            .iter()
            .find(|m| m.read == ReadSource::Backing(backing_off))
            .map(|m| m.gpa)
    }

    fn pam_segments() -> [(u64, u64); 13] {
        let mut segs = [(0xf_0000, 0x1_0000); 13];
        for (i, seg) in segs.iter_mut().enumerate().skip(1) {
            *seg = (PAM_START + (i as u64 - 1) * 0x4000, 0x4000);
        }
        segs
    }

    /// Where the legacy alias of the firmware finds `gpa` (0xE0000-0xFFFFF), if firmware is
    /// present: the top 128 KiB of the ROM that ends at 4 GiB.
    fn isa_bios_alias(&self, gpa: u64) -> Option<u64> {
        let fw = self.roms.iter().find(|r| r.gpa + r.size == FOUR_GIB)?;
        if !(ISA_BIOS_START..ONE_MIB).contains(&gpa) {
            return None;
        }
        let from_top = ONE_MIB - gpa;
        (from_top <= fw.size).then(|| fw.backing_off + fw.size - from_top)
    }

    fn rebuild(&mut self) {
        let mut maps = Vec::new();
        let ram = |gpa: u64, size: u64, off: u64| Mapping {
            gpa,
            size,
            read: ReadSource::Backing(off),
            write: WriteSink::Backing(off),
        };
        let low = self.ram_below_4g;
        maps.push(ram(0, low.min(VGA_START), 0));
        for (i, (s, len)) in Self::pam_segments().into_iter().enumerate() {
            if s >= low {
                continue;
            }
            let pci_read = match self.isa_bios_alias(s) {
                Some(o) => ReadSource::Backing(o),
                None => ReadSource::OpenBus,
            };
            let (read, write) = match self.pam[i] {
                PamMode::Disabled => (pci_read, WriteSink::Drop),
                PamMode::ReadOnly => (ReadSource::Backing(s), WriteSink::Drop),
                PamMode::WriteOnly => (pci_read, WriteSink::Backing(s)),
                PamMode::ReadWrite => (ReadSource::Backing(s), WriteSink::Backing(s)),
            };
            maps.push(Mapping {
                gpa: s,
                size: len,
                read,
                write,
            });
        }
        if low > ONE_MIB {
            maps.push(ram(ONE_MIB, low - ONE_MIB, ONE_MIB));
        }
        if self.ram_above_4g > 0 {
            maps.push(ram(FOUR_GIB, self.ram_above_4g, low));
        }
        for r in &self.roms {
            maps.push(Mapping {
                gpa: r.gpa,
                size: r.size,
                read: ReadSource::Backing(r.backing_off),
                write: WriteSink::Drop,
            });
        }
        maps.extend(self.mmio2.iter().copied());
        maps.sort_by_key(|m| m.gpa);
        self.mappings = maps;
    }
}
