//! ACPI: the table builder ([`build_tables`]) with its AML emitter ([`aml`]), and the
//! power-management function ([`Piix4Pm`]) whose registers the tables describe.
//!
//! The two agree on one layout: PM block at [`AcpiConfig::pm_base`] (default 0x600, where
//! SeaBIOS puts it when it loads tables from fw_cfg), SCI on ISA IRQ 9, SMI_CMD 0xB2 with
//! ACPI_ENABLE 0xF1, \_S5 = SLP_TYP 0, reset register 0xCF9 value 6, PCI INTx through
//! LNKA-LNKD to the IRQs in [`AcpiConfig::pirq_irqs`] (program the PIIX3 the same way).

pub mod aml;
mod pm;
mod tables;

pub use pm::{
    Piix4Pm, PmRegisters, PowerOffCallback, ACPI_DISABLE, ACPI_ENABLE, APM_CNT_PORT,
    DEFAULT_PM_BASE, GPE0_LEN, GPE0_OFFSET, PIIX4_PM_DEVICE_ID, PM1_CNT_OFFSET, PM1_EVT_OFFSET,
    PM_IO_SIZE, PM_TIMER_HZ, PM_TMR_OFFSET, SLP_TYP_S5,
};
pub use tables::{
    build_tables, checksum, dsdt_aml, AcpiConfig, AcpiError, AcpiTables, LOADER_FILE, RSDP_FILE,
    TABLES_FILE,
};
