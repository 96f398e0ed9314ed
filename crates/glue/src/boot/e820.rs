//! The BIOS E820 memory map the guest gets (direct boot writes it into boot_params; SeaBIOS
//! gets it through fw_cfg "etc/e820").

use pgm::MemoryLayout;

/// Usable RAM.
pub const E820_RAM: u32 = 1;
/// Reserved.
pub const E820_RESERVED: u32 = 2;
/// ACPI tables (reclaimable).
pub const E820_ACPI: u32 = 3;

/// One E820 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start.
    pub addr: u64,
    /// Length.
    pub size: u64,
    /// Type (E820_RAM, ...).
    pub kind: u32,
}

impl E820Entry {
    /// The 20-byte packed form (boot_params e820_table, fw_cfg etc/e820).
    pub fn to_bytes(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.to_le_bytes());
        b
    }
}

/// The map of a PC with `layout`: conventional memory below the EBDA, the BIOS area
/// reserved, RAM from 1 MiB to the PCI hole, the firmware ROM reserved, RAM above 4 GiB.
/// `acpi` is an extra range holding ACPI tables, reported as ACPI data.
pub fn pc_map(layout: &MemoryLayout, acpi: Option<(u64, u64)>) -> Vec<E820Entry> {
    let mut v = vec![
        E820Entry {
            addr: 0,
            size: 0x9_fc00,
            kind: E820_RAM,
        },
        E820Entry {
            addr: 0x9_fc00,
            size: 0x400,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: 0xe_0000,
            size: 0x2_0000,
            kind: E820_RESERVED,
        },
    ];
    let below = layout.ram_below_4g();
    let (acpi_start, acpi_size) = acpi.unwrap_or((below, 0));
    if below > 0x10_0000 {
        let top = if acpi_size > 0 { acpi_start } else { below };
        v.push(E820Entry {
            addr: 0x10_0000,
            size: top - 0x10_0000,
            kind: E820_RAM,
        });
        if acpi_size > 0 {
            v.push(E820Entry {
                addr: acpi_start,
                size: acpi_size,
                kind: E820_ACPI,
            });
            if acpi_start + acpi_size < below {
                v.push(E820Entry {
                    addr: acpi_start + acpi_size,
                    size: below - acpi_start - acpi_size,
                    kind: E820_RAM,
                });
            }
        }
    }
    for r in layout.roms() {
        v.push(E820Entry {
            addr: r.gpa,
            size: r.size,
            kind: E820_RESERVED,
        });
    }
    if layout.ram_above_4g() > 0 {
        v.push(E820Entry {
            addr: 1 << 32,
            size: layout.ram_above_4g(),
            kind: E820_RAM,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_covers_ram_without_overlap() {
        let l = MemoryLayout::pc(256 << 20)
            .unwrap()
            .with_firmware(0x20000)
            .unwrap();
        let m = pc_map(&l, Some(((256 << 20) - 0x10000, 0x10000)));
        let mut sorted = m.clone();
        sorted.sort_by_key(|e| e.addr);
        for w in sorted.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "{w:?}");
        }
        let ram: u64 = m
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, 0x9_fc00 + (256 << 20) - 0x10_0000 - 0x10000);
    }
}
