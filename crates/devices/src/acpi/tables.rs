//! ACPI table builder: RSDP 2.0, RSDT, XSDT, FADT (revision 3, 244 bytes, as VirtualBox
//! builds it), FACS, MADT and a DSDT in AML, with correct checksums (ACPI 6.x chapter 5).
//!
//! The tables are built once into a relocatable blob: pointer fields hold offsets into the
//! blob and a list records where they are. The result serves two boot paths:
//! - direct kernel boot: [`AcpiTables::place`] / [`AcpiTables::write_to_guest`] add the
//!   guest address and fill in the checksums;
//! - SeaBIOS: [`AcpiTables::fw_cfg_files`] yields "etc/acpi/rsdp", "etc/acpi/tables" and
//!   "etc/table-loader" for fw_cfg. The loader script uses the BIOS linker/loader format
//!   of SeaBIOS src/fw/romfile_loader.h (QEMU hw/acpi/bios-linker-loader.c): 128-byte
//!   little-endian entries, ALLOCATE (file[56], align u32, zone u8: 1 high, 2 FSEG),
//!   ADD_POINTER (dest[56], src[56], offset u32, size u8), ADD_CHECKSUM (file[56],
//!   offset u32, start u32, length u32).
//!
//! The DSDT describes what Linux must enumerate without probing: PCI0 (PNP0A03) with its
//! bus range, I/O and memory windows and a _PRT routing every slot's INTA-D through the
//! link devices LNKA-LNKD (PNP0C0F, level active-high, the IRQs the PIIX3 routes PIRQA-D
//! to), the ISA devices (RTC PNP0B00, keyboard PNP0303, mouse PNP0F13, serial PNP0501,
//! PIC PNP0000, PIT PNP0100), processor devices (ACPI0007) and \_S5 with the SLP_TYP our
//! PM function decodes as soft-off.

use super::aml::{self, resource};
use super::pm;
use pgm::GuestMemory;

/// Everything the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Number of CPUs (local APIC IDs 0..cpus).
    pub cpus: u8,
    /// I/O APIC ID (VirtualBox uses the CPU count, so it does not collide with a LAPIC).
    pub ioapic_id: u8,
    /// I/O APIC MMIO base.
    pub ioapic_address: u32,
    /// Local APIC MMIO base.
    pub lapic_address: u32,
    /// PM I/O base programmed into the PIIX4 PM function (PMBA).
    pub pm_base: u16,
    /// ISA IRQ of the SCI.
    pub sci_irq: u8,
    /// SMI command port (0: none, ACPI mode is always on).
    pub smi_cmd: u16,
    /// ISA IRQs PIRQA-PIRQD are routed to.
    pub pirq_irqs: [u8; 4],
    /// 32-bit PCI memory window (first, last byte).
    pub pci_mmio32: (u32, u32),
    /// 64-bit PCI memory window (first, last byte), if any.
    pub pci_mmio64: Option<(u64, u64)>,
    /// Serial ports (I/O base, ISA IRQ).
    pub serial_ports: Vec<(u16, u8)>,
    /// OEM ID in every header.
    pub oem_id: [u8; 6],
}

impl Default for AcpiConfig {
    fn default() -> Self {
        AcpiConfig {
            cpus: 1,
            ioapic_id: 1,
            ioapic_address: 0xfec0_0000,
            lapic_address: 0xfee0_0000,
            pm_base: pm::DEFAULT_PM_BASE,
            sci_irq: 9,
            smi_cmd: pm::APM_CNT_PORT,
            pirq_irqs: [10, 10, 11, 11],
            pci_mmio32: (0xe000_0000, 0xfebf_ffff),
            pci_mmio64: None,
            serial_ports: vec![(0x3f8, 4)],
            oem_id: *b"VBOX  ",
        }
    }
}

/// Which of the two blobs a location is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Rsdp,
    Tables,
}

#[derive(Debug, Clone, Copy)]
struct Pointer {
    file: File,
    offset: usize,
    size: u8,
}

#[derive(Debug, Clone, Copy)]
struct Checksum {
    file: File,
    start: usize,
    len: usize,
    at: usize,
}

/// Name of the RSDP file in fw_cfg.
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
/// Name of the tables file in fw_cfg.
pub const TABLES_FILE: &str = "etc/acpi/tables";
/// Name of the loader script in fw_cfg.
pub const LOADER_FILE: &str = "etc/table-loader";

/// Errors placing tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcpiError {
    /// The tables do not fit below 4 GiB at the requested address.
    #[error("ACPI tables at {0:#x} would not be reachable through 32-bit pointers")]
    Address(u64),
    /// Guest memory refused the write.
    #[error("writing ACPI tables to guest memory: {0}")]
    Memory(#[from] pgm::PgmError),
}

/// The built tables.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    rsdp: Vec<u8>,
    tables: Vec<u8>,
    pointers: Vec<Pointer>,
    checksums: Vec<Checksum>,
    /// (signature, offset, length) of each table in the blob.
    index: Vec<([u8; 4], usize, usize)>,
}

/// The 8-bit value that makes `bytes` sum to zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, &b| a.wrapping_add(b))
        .wrapping_neg()
}

struct Builder {
    tables: Vec<u8>,
    pointers: Vec<Pointer>,
    checksums: Vec<Checksum>,
    index: Vec<([u8; 4], usize, usize)>,
    oem_id: [u8; 6],
}

impl Builder {
    fn align(&mut self, a: usize) {
        while !self.tables.len().is_multiple_of(a) {
            self.tables.push(0);
        }
    }

    /// Append a table with a standard header; `body` follows the 36-byte header.
    fn table(&mut self, sig: &[u8; 4], rev: u8, body: &[u8]) -> usize {
        self.align(8);
        let off = self.tables.len();
        let len = 36 + body.len();
        self.tables.extend_from_slice(sig);
        self.tables.extend_from_slice(&(len as u32).to_le_bytes());
        self.tables.push(rev);
        self.tables.push(0); // checksum
        self.tables.extend_from_slice(&self.oem_id);
        let mut table_id = *b"VBOX    ";
        table_id[4..].copy_from_slice(sig);
        if sig == b"DSDT" {
            table_id = *b"VBOXBIOS";
        }
        self.tables.extend_from_slice(&table_id);
        self.tables.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
        self.tables.extend_from_slice(b"NOVA"); // creator ID
        self.tables.extend_from_slice(&1u32.to_le_bytes()); // creator revision
        self.tables.extend_from_slice(body);
        self.checksums.push(Checksum {
            file: File::Tables,
            start: off,
            len,
            at: off + 9,
        });
        self.index.push((*sig, off, len));
        off
    }

    /// Record a pointer field at `at` (in the tables blob) to `target` (a blob offset).
    fn pointer(&mut self, at: usize, size: u8, target: usize) {
        let v = (target as u64).to_le_bytes();
        self.tables[at..at + size as usize].copy_from_slice(&v[..size as usize]);
        self.pointers.push(Pointer {
            file: File::Tables,
            offset: at,
            size,
        });
    }
}

fn gas_io(bits: u8, port: u16, access: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = bits;
    g[3] = access;
    g[4..6].copy_from_slice(&port.to_le_bytes());
    g
}

fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// FADT body (after the header), 244 - 36 bytes; pointer fields left zero.
fn fadt_body(cfg: &AcpiConfig) -> Vec<u8> {
    // Offsets below are FADT offsets; the body starts at 36.
    let mut f = vec![0u8; 244];
    let pm = cfg.pm_base;
    f[45] = 0; // preferred PM profile: unspecified
    put_u16(&mut f, 46, u16::from(cfg.sci_irq));
    put_u32(&mut f, 48, u32::from(cfg.smi_cmd));
    if cfg.smi_cmd != 0 {
        f[52] = pm::ACPI_ENABLE;
        f[53] = pm::ACPI_DISABLE;
    }
    put_u32(&mut f, 56, u32::from(pm + pm::PM1_EVT_OFFSET));
    put_u32(&mut f, 64, u32::from(pm + pm::PM1_CNT_OFFSET));
    put_u32(&mut f, 76, u32::from(pm + pm::PM_TMR_OFFSET));
    put_u32(&mut f, 80, u32::from(pm + pm::GPE0_OFFSET));
    f[88] = 4; // PM1_EVT_LEN
    f[89] = 2; // PM1_CNT_LEN
    f[91] = 4; // PM_TMR_LEN
    f[92] = pm::GPE0_LEN as u8;
    put_u16(&mut f, 96, 101); // C2 not supported
    put_u16(&mut f, 98, 1001); // C3 not supported
    f[108] = 0x32; // CMOS century register
    put_u16(&mut f, 109, 0x0003); // IAPC_BOOT_ARCH: legacy devices, 8042
    let flags: u32 = (1 << 0)  // WBINVD
        | (1 << 2)             // PROC_C1
        | (1 << 5)             // SLP_BUTTON: no fixed sleep button
        | (1 << 6)             // FIX_RTC: RTC wake status not in fixed registers
        | (1 << 8)             // TMR_VAL_EXT: 32-bit PM timer
        | (1 << 10); // RESET_REG_SUP
    put_u32(&mut f, 112, flags);
    // Reset register: the PIIX3 reset control register at 0xCF9, value 6 (hard reset).
    f[116..128].copy_from_slice(&gas_io(8, 0xcf9, 1));
    f[128] = 0x06;
    f[148..160].copy_from_slice(&gas_io(32, pm + pm::PM1_EVT_OFFSET, 2));
    f[172..184].copy_from_slice(&gas_io(16, pm + pm::PM1_CNT_OFFSET, 2));
    f[208..220].copy_from_slice(&gas_io(32, pm + pm::PM_TMR_OFFSET, 3));
    f[220..232].copy_from_slice(&gas_io((pm::GPE0_LEN * 8) as u8, pm + pm::GPE0_OFFSET, 1));
    f.split_off(36)
}

fn madt_body(cfg: &AcpiConfig) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&cfg.lapic_address.to_le_bytes());
    m.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: 8259s present
    for cpu in 0..cfg.cpus {
        m.extend_from_slice(&[0, 8, cpu, cpu]);
        m.extend_from_slice(&1u32.to_le_bytes()); // enabled
    }
    m.extend_from_slice(&[1, 12, cfg.ioapic_id, 0]);
    m.extend_from_slice(&cfg.ioapic_address.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    let iso = |m: &mut Vec<u8>, irq: u8, gsi: u32, flags: u16| {
        m.extend_from_slice(&[2, 10, 0, irq]);
        m.extend_from_slice(&gsi.to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
    };
    // The PIT's IRQ 0 is wired to IOAPIC pin 2.
    iso(&mut m, 0, 2, 0);
    // SCI and the PCI link IRQs: level, active high (how our lines drive them).
    let mut level_irqs: Vec<u8> = vec![cfg.sci_irq];
    for irq in cfg.pirq_irqs {
        if !level_irqs.contains(&irq) {
            level_irqs.push(irq);
        }
    }
    for irq in level_irqs {
        iso(&mut m, irq, u32::from(irq), 0x000d);
    }
    // LINT1 of every processor is NMI (edge, active high).
    m.extend_from_slice(&[4, 6, 0xff, 0x05, 0x00, 1]);
    m
}

fn crs_pci(cfg: &AcpiConfig) -> Vec<u8> {
    let mut items = vec![
        resource::word_bus_number(0, 0xff),
        resource::io(0xcf8, 0xcf8, 1, 8),
        resource::word_io(0x0000, 0x0cf7),
        resource::word_io(0x0d00, 0xffff),
        resource::dword_memory(0x000a_0000, 0x000b_ffff),
        resource::dword_memory(cfg.pci_mmio32.0, cfg.pci_mmio32.1),
    ];
    if let Some((lo, hi)) = cfg.pci_mmio64 {
        items.push(resource::qword_memory(lo, hi));
    }
    resource::template(items)
}

fn prt(_cfg: &AcpiConfig) -> Vec<u8> {
    let mut entries = Vec::new();
    for slot in 1u64..32 {
        for pin in 0u8..4 {
            let pirq = super::super::pci::pirq_index(slot as u8, pin + 1);
            entries.push(aml::package(vec![
                aml::integer((slot << 16) | 0xffff),
                aml::integer(u64::from(pin)),
                aml::name_string(&format!("LNK{}", (b'A' + pirq as u8) as char)),
                aml::integer(0),
            ]));
        }
    }
    // A Package holds at most 255 elements; 124 entries fit.
    aml::package(entries)
}

fn link_device(index: usize, irq: u8) -> Vec<u8> {
    let name = format!("LNK{}", (b'A' + index as u8) as char);
    let res = resource::template(vec![resource::interrupt_level_high_shared(u32::from(irq))]);
    aml::device(
        &name,
        vec![
            aml::name("_HID", aml::eisa_id("PNP0C0F")),
            aml::name("_UID", aml::integer(index as u64 + 1)),
            aml::name("_PRS", res.clone()),
            aml::name("_CRS", res),
            // The route is fixed by the PIIX3 programming; accept any _SRS.
            aml::method("_SRS", 1, vec![]),
        ],
    )
}

fn isa_devices(cfg: &AcpiConfig) -> Vec<Vec<u8>> {
    let dev = |name: &str, hid: &str, crs: Vec<Vec<u8>>| {
        aml::device(
            name,
            vec![
                aml::name("_HID", aml::eisa_id(hid)),
                aml::name("_CRS", resource::template(crs)),
            ],
        )
    };
    let mut out = vec![
        aml::name("_ADR", aml::integer(0x0001_0000)),
        dev(
            "RTC",
            "PNP0B00",
            vec![resource::io(0x70, 0x70, 1, 2), resource::irq_no_flags(8)],
        ),
        dev(
            "KBD",
            "PNP0303",
            vec![
                resource::io(0x60, 0x60, 1, 1),
                resource::io(0x64, 0x64, 1, 1),
                resource::irq_no_flags(1),
            ],
        ),
        dev("MOU", "PNP0F13", vec![resource::irq_no_flags(12)]),
        dev(
            "PIC",
            "PNP0000",
            vec![
                resource::io(0x20, 0x20, 1, 2),
                resource::io(0xa0, 0xa0, 1, 2),
                resource::irq_no_flags(2),
            ],
        ),
        dev(
            "TMR",
            "PNP0100",
            vec![resource::io(0x40, 0x40, 1, 4), resource::irq_no_flags(0)],
        ),
    ];
    for (i, &(port, irq)) in cfg.serial_ports.iter().enumerate().take(4) {
        out.push(aml::device(
            &format!("COM{}", i + 1),
            vec![
                aml::name("_HID", aml::eisa_id("PNP0501")),
                aml::name("_UID", aml::integer(i as u64 + 1)),
                aml::name(
                    "_CRS",
                    resource::template(vec![
                        resource::io(port, port, 1, 8),
                        resource::irq_no_flags(irq),
                    ]),
                ),
            ],
        ));
    }
    out
}

/// The DSDT's AML body (after the table header).
pub fn dsdt_aml(cfg: &AcpiConfig) -> Vec<u8> {
    let mut sb = Vec::new();
    let mut pci = vec![
        aml::name("_HID", aml::eisa_id("PNP0A03")),
        aml::name("_ADR", aml::integer(0)),
        aml::name("_UID", aml::integer(0)),
        aml::name("_BBN", aml::integer(0)),
        aml::name("_CRS", crs_pci(cfg)),
        aml::name("_PRT", prt(cfg)),
    ];
    pci.push(aml::device("ISA", isa_devices(cfg)));
    sb.push(aml::device("PCI0", pci));
    for (i, &irq) in cfg.pirq_irqs.iter().enumerate() {
        sb.push(link_device(i, irq));
    }
    for cpu in 0..cfg.cpus {
        sb.push(aml::device(
            &format!("C{cpu:03X}"),
            vec![
                aml::name("_HID", aml::string("ACPI0007")),
                aml::name("_UID", aml::integer(u64::from(cpu))),
            ],
        ));
    }
    let s5 = u64::from(pm::SLP_TYP_S5);
    let mut out = aml::name(
        "\\_S5",
        aml::package(vec![
            aml::integer(s5),
            aml::integer(s5),
            aml::integer(0),
            aml::integer(0),
        ]),
    );
    out.extend(aml::scope("\\_SB", sb));
    out
}

/// Build the tables for `cfg`.
pub fn build_tables(cfg: &AcpiConfig) -> AcpiTables {
    let mut b = Builder {
        tables: Vec::new(),
        pointers: Vec::new(),
        checksums: Vec::new(),
        index: Vec::new(),
        oem_id: cfg.oem_id,
    };
    // FACS first: it needs 64-byte alignment and the blob is allocated 64-aligned.
    let facs = 0;
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"FACS");
    put_u32(&mut f, 4, 64);
    f[32] = 1; // version
    b.tables.extend_from_slice(&f);
    b.index.push((*b"FACS", facs, 64));

    let dsdt = b.table(b"DSDT", 2, &dsdt_aml(cfg));
    let fadt = b.table(b"FACP", 3, &fadt_body(cfg));
    b.pointer(fadt + 36, 4, facs);
    b.pointer(fadt + 40, 4, dsdt);
    b.pointer(fadt + 132, 8, facs);
    b.pointer(fadt + 140, 8, dsdt);
    let madt = b.table(b"APIC", 3, &madt_body(cfg));
    let entries = [fadt, madt];
    let rsdt = b.table(b"RSDT", 1, &vec![0u8; 4 * entries.len()]);
    for (i, &t) in entries.iter().enumerate() {
        b.pointer(rsdt + 36 + 4 * i, 4, t);
    }
    let xsdt = b.table(b"XSDT", 1, &vec![0u8; 8 * entries.len()]);
    for (i, &t) in entries.iter().enumerate() {
        b.pointer(xsdt + 36 + 8 * i, 8, t);
    }

    let mut rsdp = vec![0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(&cfg.oem_id);
    rsdp[15] = 2;
    put_u32(&mut rsdp, 16, rsdt as u32);
    put_u32(&mut rsdp, 20, 36);
    rsdp[24..32].copy_from_slice(&(xsdt as u64).to_le_bytes());
    b.pointers.push(Pointer {
        file: File::Rsdp,
        offset: 16,
        size: 4,
    });
    b.pointers.push(Pointer {
        file: File::Rsdp,
        offset: 24,
        size: 8,
    });
    b.checksums.push(Checksum {
        file: File::Rsdp,
        start: 0,
        len: 20,
        at: 8,
    });
    b.checksums.push(Checksum {
        file: File::Rsdp,
        start: 0,
        len: 36,
        at: 32,
    });
    AcpiTables {
        rsdp,
        tables: b.tables,
        pointers: b.pointers,
        checksums: b.checksums,
        index: b.index,
    }
}

fn loader_entry(cmd: u32) -> Vec<u8> {
    let mut e = vec![0u8; 128];
    e[..4].copy_from_slice(&cmd.to_le_bytes());
    e
}

fn put_name(e: &mut [u8], off: usize, name: &str) {
    let n = name.len().min(55);
    e[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
}

impl AcpiTables {
    /// Size of the tables blob.
    pub fn tables_len(&self) -> usize {
        self.tables.len()
    }

    /// (signature, offset, length) of each table in the tables blob.
    pub fn index(&self) -> &[([u8; 4], usize, usize)] {
        &self.index
    }

    fn file_mut<'a>(rsdp: &'a mut [u8], tables: &'a mut [u8], f: File) -> &'a mut [u8] {
        match f {
            File::Rsdp => rsdp,
            File::Tables => tables,
        }
    }

    /// The RSDP and tables with every pointer relocated to `tables_addr` and checksums
    /// filled in.
    pub fn place(&self, tables_addr: u64) -> Result<(Vec<u8>, Vec<u8>), AcpiError> {
        let end = tables_addr
            .checked_add(self.tables.len() as u64)
            .filter(|&e| e <= 1 << 32)
            .ok_or(AcpiError::Address(tables_addr))?;
        let _ = end;
        let mut rsdp = self.rsdp.clone();
        let mut tables = self.tables.clone();
        for p in &self.pointers {
            let buf = Self::file_mut(&mut rsdp, &mut tables, p.file);
            let n = p.size as usize;
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&buf[p.offset..p.offset + n]);
            let moved = u64::from_le_bytes(v).wrapping_add(tables_addr);
            buf[p.offset..p.offset + n].copy_from_slice(&moved.to_le_bytes()[..n]);
        }
        for c in &self.checksums {
            let buf = Self::file_mut(&mut rsdp, &mut tables, c.file);
            buf[c.at] = 0;
            buf[c.at] = checksum(&buf[c.start..c.start + c.len]);
        }
        Ok((rsdp, tables))
    }

    /// Write the tables at `tables_addr` and the RSDP at `rsdp_addr` (16-byte aligned, in
    /// 0xE0000-0xFFFFF for OSes that scan for it) for a boot without firmware. Uses
    /// `load_image`, so it also works where the BIOS area is currently read-only.
    pub fn write_to_guest(
        &self,
        mem: &GuestMemory,
        rsdp_addr: u64,
        tables_addr: u64,
    ) -> Result<(), AcpiError> {
        let (rsdp, tables) = self.place(tables_addr)?;
        mem.load_image(tables_addr, &tables)?;
        mem.load_image(rsdp_addr, &rsdp)?;
        Ok(())
    }

    /// The BIOS linker/loader script for the fw_cfg files.
    pub fn loader_script(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let name = |f: File| match f {
            File::Rsdp => RSDP_FILE,
            File::Tables => TABLES_FILE,
        };
        // ALLOCATE: tables anywhere in 32-bit RAM, RSDP in the F segment.
        for (file, align, zone) in [(File::Tables, 64u32, 1u8), (File::Rsdp, 16, 2)] {
            let mut e = loader_entry(1);
            put_name(&mut e, 4, name(file));
            e[60..64].copy_from_slice(&align.to_le_bytes());
            e[64] = zone;
            out.extend(e);
        }
        for p in &self.pointers {
            let mut e = loader_entry(2);
            put_name(&mut e, 4, name(p.file));
            put_name(&mut e, 60, TABLES_FILE);
            e[116..120].copy_from_slice(&(p.offset as u32).to_le_bytes());
            e[120] = p.size;
            out.extend(e);
        }
        for c in &self.checksums {
            let mut e = loader_entry(3);
            put_name(&mut e, 4, name(c.file));
            e[60..64].copy_from_slice(&(c.at as u32).to_le_bytes());
            e[64..68].copy_from_slice(&(c.start as u32).to_le_bytes());
            e[68..72].copy_from_slice(&(c.len as u32).to_le_bytes());
            out.extend(e);
        }
        out
    }

    /// The three fw_cfg files SeaBIOS loads: RSDP, tables (pointers as offsets, checksums
    /// zero) and the loader script.
    pub fn fw_cfg_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut rsdp = self.rsdp.clone();
        let mut tables = self.tables.clone();
        for c in &self.checksums {
            Self::file_mut(&mut rsdp, &mut tables, c.file)[c.at] = 0;
        }
        vec![
            (RSDP_FILE.to_string(), rsdp),
            (TABLES_FILE.to_string(), tables),
            (LOADER_FILE.to_string(), self.loader_script()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn find<'a>(tables: &'a [u8], t: &AcpiTables, sig: &[u8; 4]) -> &'a [u8] {
        let &(_, off, len) = t.index().iter().find(|(s, _, _)| s == sig).unwrap();
        &tables[off..off + len]
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn placed_tables_checksum_and_link() {
        let cfg = AcpiConfig {
            cpus: 4,
            ioapic_id: 4,
            ..Default::default()
        };
        let t = build_tables(&cfg);
        let base = 0x7ff_0000u64;
        let (rsdp, tables) = t.place(base).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(&rsdp), 0);
        let rsdt_addr = u64::from(u32_at(&rsdp, 16));
        let xsdt_addr = u64_at(&rsdp, 24);
        let at = |a: u64| &tables[(a - base) as usize..];
        assert_eq!(&at(rsdt_addr)[..4], b"RSDT");
        assert_eq!(&at(xsdt_addr)[..4], b"XSDT");
        for sig in [b"DSDT", b"FACP", b"APIC", b"RSDT", b"XSDT"] {
            let tb = find(&tables, &t, sig);
            assert_eq!(sum(tb), 0, "{} checksum", String::from_utf8_lossy(sig));
            assert_eq!(u32_at(tb, 4) as usize, tb.len());
        }
        let xsdt = find(&tables, &t, b"XSDT");
        let fadt_addr = u64_at(xsdt, 36);
        assert_eq!(&at(fadt_addr)[..4], b"FACP");
        assert_eq!(&at(u64_at(xsdt, 44))[..4], b"APIC");
        let fadt = find(&tables, &t, b"FACP");
        assert_eq!(fadt.len(), 244);
        let facs = u64::from(u32_at(fadt, 36));
        assert_eq!(facs % 64, 0);
        assert_eq!(&at(facs)[..4], b"FACS");
        assert_eq!(u64_at(fadt, 132), facs);
        assert_eq!(&at(u64_at(fadt, 140))[..4], b"DSDT");
        assert_eq!(u32_at(fadt, 56), 0x600, "PM1a_EVT_BLK");
        assert_eq!(u32_at(fadt, 64), 0x604, "PM1a_CNT_BLK");
        assert_eq!(u32_at(fadt, 76), 0x608, "PM_TMR_BLK");
        assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9, "SCI_INT");
        assert_eq!(fadt[128], 6, "reset value");
        assert_eq!(u64_at(fadt, 120), 0xcf9, "reset register address");
    }

    #[test]
    fn madt_entries() {
        let cfg = AcpiConfig {
            cpus: 2,
            ioapic_id: 2,
            ..Default::default()
        };
        let t = build_tables(&cfg);
        let (_, tables) = t.place(0x10_0000).unwrap();
        let madt = find(&tables, &t, b"APIC");
        assert_eq!(u32_at(madt, 36), 0xfee0_0000);
        let mut types: HashMap<u8, Vec<Vec<u8>>> = HashMap::new();
        let mut o = 44;
        while o < madt.len() {
            let len = madt[o + 1] as usize;
            assert!(len >= 2);
            types
                .entry(madt[o])
                .or_default()
                .push(madt[o..o + len].to_vec());
            o += len;
        }
        assert_eq!(o, madt.len());
        assert_eq!(types[&0].len(), 2);
        assert_eq!(types[&0][1][3], 1, "APIC ID 1");
        assert_eq!(types[&1][0][2], 2, "IOAPIC ID");
        assert_eq!(u32_at(&types[&1][0], 4), 0xfec0_0000);
        let isos = &types[&2];
        assert!(isos
            .iter()
            .any(|e| e[3] == 0 && u32_at(e, 4) == 2 && e[8] == 0));
        assert!(isos
            .iter()
            .any(|e| e[3] == 9 && u32_at(e, 4) == 9 && e[8] == 0x0d));
        assert_eq!(types[&4].len(), 1, "LINT1 NMI");
    }

    #[test]
    fn dsdt_contains_devices() {
        let cfg = AcpiConfig::default();
        let aml = dsdt_aml(&cfg);
        let has = |needle: &[u8]| aml.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"_S5_"));
        assert!(has(b"PCI0"));
        assert!(has(b"_PRT"));
        assert!(has(b"LNKA") && has(b"LNKD"));
        for id in [
            "PNP0A03", "PNP0501", "PNP0303", "PNP0F13", "PNP0B00", "PNP0C0F",
        ] {
            assert!(has(&aml::eisa_id(id)), "{id}");
        }
        assert!(has(b"ACPI0007"));
        // \_S5 package starts the DSDT: Name(\_S5_, Package(4){0,0,0,0}).
        assert_eq!(
            &aml[..12],
            &[0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0]
        );
    }

    #[test]
    fn fw_cfg_files_and_loader_script() {
        let t = build_tables(&AcpiConfig::default());
        let files = t.fw_cfg_files();
        assert_eq!(files.len(), 3);
        let loader = &files[2].1;
        assert_eq!(loader.len() % 128, 0);
        let entries: Vec<&[u8]> = loader.chunks(128).collect();
        assert_eq!(u32_at(entries[0], 0), 1);
        assert_eq!(
            &entries[0][4..4 + TABLES_FILE.len()],
            TABLES_FILE.as_bytes()
        );
        assert_eq!(u32_at(entries[0], 60), 64);
        assert_eq!(entries[1][64], 2, "RSDP in FSEG");
        // Emulate SeaBIOS's romfile_loader on the files with made-up allocations.
        let mut rsdp = files[0].1.clone();
        let mut tables = files[1].1.clone();
        let (rsdp_at, tables_at) = (0xf5a00u64, 0x7fe_0000u64);
        for e in &entries[2..] {
            let dest_is_rsdp = e[4..].starts_with(RSDP_FILE.as_bytes());
            match u32_at(e, 0) {
                2 => {
                    let off = u32_at(e, 116) as usize;
                    let size = e[120] as usize;
                    let buf = if dest_is_rsdp { &mut rsdp } else { &mut tables };
                    let mut v = [0u8; 8];
                    v[..size].copy_from_slice(&buf[off..off + size]);
                    let nv = u64::from_le_bytes(v) + tables_at;
                    buf[off..off + size].copy_from_slice(&nv.to_le_bytes()[..size]);
                }
                3 => {
                    let (at, start, len) = (
                        u32_at(e, 60) as usize,
                        u32_at(e, 64) as usize,
                        u32_at(e, 68) as usize,
                    );
                    let buf = if dest_is_rsdp { &mut rsdp } else { &mut tables };
                    let c = checksum(&buf[start..start + len]);
                    buf[at] = buf[at].wrapping_add(c);
                }
                other => panic!("unexpected command {other}"),
            }
        }
        let _ = rsdp_at;
        let (want_rsdp, want_tables) = t.place(tables_at).unwrap();
        assert_eq!(rsdp, want_rsdp);
        assert_eq!(tables, want_tables);
    }

    #[test]
    fn write_to_guest_memory() {
        let mem = GuestMemory::new(pgm::MemoryLayout::pc(16 << 20).unwrap()).unwrap();
        mem.set_pam(0xe0000, 0x4000, pgm::PamMode::ReadWrite)
            .unwrap();
        let t = build_tables(&AcpiConfig::default());
        t.write_to_guest(&mem, 0xe0000, 0xf0_0000).unwrap();
        let mut sig = [0u8; 8];
        mem.read(0xe0000, &mut sig).unwrap();
        assert_eq!(&sig, b"RSD PTR ");
        assert!(t.place(0xffff_ff00).is_err());
    }
}
