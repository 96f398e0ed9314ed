//! The Intel 82441FX PCI and Memory Controller (i440FX host bridge) at 00:00.0, 8086:1237
//! rev 2 (82441FX PMC datasheet, section 3.2).
//!
//! What guests and firmware use:
//! - PAM0-PAM6 (0x59-0x5F) route the BIOS area 0xC0000-0xFFFFF between DRAM and the PCI
//!   side (the firmware ROM alias). PAM0 bits 5:4 cover 0xF0000-0xFFFFF; PAM1-PAM6 each
//!   hold two 16 KiB segments from 0xC0000 (bits 1:0 the lower, bits 5:4 the upper). In
//!   every nibble bit 0 enables reads from DRAM and bit 1 writes to DRAM. SeaBIOS's
//!   shadow.c writes these (as dwords at 0x58 and 0x5C) to copy itself into RAM and then
//!   write-protect it; the changes go to `pgm::GuestMemory::set_pam`.
//! - SMRAM (0x72): stored with the datasheet's D_LCK semantics. SMM itself is not
//!   emulated; the PIIX4 PM function tells SeaBIOS SMM is already set up, so it never
//!   opens SMRAM (see `acpi::pm`).
//! - Subsystem vendor/device 1AF4:1100 (QEMU's values). SeaBIOS's qemu_detect() looks for
//!   exactly these to decide it runs on QEMU and enable fw_cfg, PCI resource assignment
//!   and ACPI table loading. VirtualBox's own BIOS does not look at them and guest
//!   operating systems do not either (the Linux intel-agp / Windows drivers match on
//!   8086:1237 only), so the value is invisible except to SeaBIOS.

use super::bus::{PciFunction, PciRegion};
use super::config::{regs, PciConfig};
use super::INTEL_VENDOR_ID;
use pgm::{GuestMemory, PamMode};
use std::sync::Arc;

/// Device ID of the 82441FX.
pub const I440FX_DEVICE_ID: u16 = 0x1237;
/// Offset of PAM0.
pub const PAM0: u8 = 0x59;
/// Offset of the SMRAM control register.
pub const SMRAM: u8 = 0x72;

const SMRAM_DEFAULT: u8 = 0x02;
const SMRAM_D_OPEN: u8 = 0x40;
const SMRAM_D_CLS: u8 = 0x20;
const SMRAM_D_LCK: u8 = 0x10;
const SMRAM_G_SMRAME: u8 = 0x08;

/// The segments each PAM nibble controls: (register, shift, start, size).
fn pam_segments() -> impl Iterator<Item = (u8, u8, u64, u64)> {
    std::iter::once((PAM0, 4, 0xf_0000, 0x1_0000)).chain((0..6u8).flat_map(|i| {
        let base = 0xc_0000 + u64::from(i) * 0x8000;
        [
            (PAM0 + 1 + i, 0, base, 0x4000),
            (PAM0 + 1 + i, 4, base + 0x4000, 0x4000),
        ]
    }))
}

/// The i440FX host bridge.
pub struct I440fx {
    config: PciConfig,
    memory: Arc<GuestMemory>,
}

impl std::fmt::Debug for I440fx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I440fx")
            .field("config", &self.config)
            .finish()
    }
}

impl I440fx {
    /// A host bridge driving the PAM routing of `memory`.
    pub fn new(memory: Arc<GuestMemory>) -> Self {
        let mut config = PciConfig::new(INTEL_VENDOR_ID, I440FX_DEVICE_ID, 0x06_0000, 0x02);
        config.set_subsystem(0x1af4, 0x1100);
        // The host bridge cannot be disabled and does not master; only the status error
        // bits and the latency timer matter to software.
        config.set_wmask(regs::COMMAND, 2, 0);
        config.set_u16(
            regs::COMMAND,
            regs::CMD_IO | regs::CMD_MEMORY | regs::CMD_MASTER,
        );
        config.set_wmask(regs::INTERRUPT_LINE, 1, 0);
        // PMCCFG, DETURBO, DRAMC, DRAMT and the DRAM row boundaries are plain storage.
        for off in [0x50u8, 0x51, 0x57, 0x58] {
            config.set_wmask(off, 1, 0xff);
        }
        for off in 0x60u8..0x68 {
            config.set_wmask(off, 1, 0xff);
        }
        config.set_wmask(PAM0, 1, 0x30);
        for off in PAM0 + 1..=PAM0 + 6 {
            config.set_wmask(off, 1, 0x33);
        }
        config.set_wmask(
            SMRAM,
            1,
            u32::from(SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME),
        );
        let mut dev = I440fx { config, memory };
        dev.power_on();
        dev
    }

    fn power_on(&mut self) {
        for off in PAM0..=PAM0 + 6 {
            self.config.set_u8(off, 0);
        }
        self.config.set_u8(SMRAM, SMRAM_DEFAULT);
        for (_, _, start, size) in pam_segments() {
            self.apply(start, size, PamMode::Disabled);
        }
    }

    /// The PAM register at `PAM0 + index` (0-6).
    pub fn pam(&self, index: u8) -> u8 {
        self.config.read_u8(PAM0 + index.min(6))
    }

    /// The SMRAM control register.
    pub fn smram(&self) -> u8 {
        self.config.read_u8(SMRAM)
    }

    /// The configuration space (for inspection).
    pub fn config(&self) -> &PciConfig {
        &self.config
    }

    fn apply(&self, start: u64, size: u64, mode: PamMode) {
        if let Err(e) = self.memory.set_pam(start, size, mode) {
            tracing::warn!("i440FX: PAM {start:#x}+{size:#x} -> {mode:?} failed: {e}");
        }
    }
}

impl PciFunction for I440fx {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.config.read_bytes(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        let old_pam: Vec<u8> = (PAM0..=PAM0 + 6).map(|o| self.config.read_u8(o)).collect();
        let old_smram = self.config.read_u8(SMRAM);
        self.config.write_bytes(offset, data);

        // SMRAM: once D_LCK is set, D_OPEN is forced off and only D_CLS stays writable
        // until reset; C_BASE_SEG is hard-wired to 010b (0xA0000).
        let mut sm = self.config.read_u8(SMRAM);
        if old_smram & SMRAM_D_LCK != 0 {
            sm = (old_smram & !SMRAM_D_CLS) | (sm & SMRAM_D_CLS);
        }
        if sm & SMRAM_D_LCK != 0 {
            sm &= !SMRAM_D_OPEN;
        }
        self.config.set_u8(SMRAM, (sm & !7) | SMRAM_DEFAULT);

        for (reg, shift, start, size) in pam_segments() {
            let idx = (reg - PAM0) as usize;
            let new = self.config.read_u8(reg);
            if (old_pam[idx] >> shift) & 3 != (new >> shift) & 3 {
                self.apply(start, size, PamMode::from_bits(new >> shift));
            }
        }
    }

    fn regions(&self) -> Vec<PciRegion> {
        Vec::new()
    }

    fn reset(&mut self) {
        self.power_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgm::MemoryLayout;

    fn mem() -> Arc<GuestMemory> {
        Arc::new(
            GuestMemory::new(
                MemoryLayout::pc(16 << 20)
                    .unwrap()
                    .with_firmware(0x20000)
                    .unwrap(),
            )
            .unwrap(),
        )
    }

    fn read32(d: &mut I440fx, off: u8) -> u32 {
        let mut b = [0u8; 4];
        d.config_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn ids_seabios_looks_for() {
        let m = mem();
        let mut d = I440fx::new(m);
        assert_eq!(read32(&mut d, 0), 0x1237_8086);
        assert_eq!(read32(&mut d, 0x2c), 0x1100_1af4);
        assert_eq!(read32(&mut d, 0x08) >> 8, 0x06_0000, "host bridge class");
    }

    #[test]
    fn seabios_shadow_sequence() {
        let m = mem();
        let mut rom = vec![0x11u8; 0x20000];
        rom[0x1fff0] = 0xea;
        m.load_image(0xfffe_0000, &rom).unwrap();
        let mut d = I440fx::new(m.clone());
        // make_bios_writable: read dwords at 0x58/0x5C, set PAM0=0x30, PAM1-6=0x33.
        let lo = read32(&mut d, 0x58);
        assert_eq!(lo >> 8 & 0x10, 0, "RAM not present yet");
        let lo = (lo & 0xff) | 0x3333_3000;
        d.config_write(0x58, &lo.to_le_bytes());
        d.config_write(0x5c, &0x3333_3333u32.to_le_bytes());
        assert_eq!(d.pam(0), 0x30);
        assert_eq!(d.pam(6), 0x33);
        // Reads of 0xF0000 now come from (zeroed) RAM; copy the BIOS in.
        assert_eq!(m.read_le::<1>(0xffff0).unwrap(), 0);
        m.write(0xffff0, &[0xea]).unwrap();
        // make_bios_readonly: PAM0 = 0x10 (read-only RAM).
        d.config_write(PAM0, &[0x10]);
        m.write(0xffff0, &[0x00]).unwrap();
        assert_eq!(
            m.read_le::<1>(0xffff0).unwrap(),
            0xea,
            "write-protected shadow"
        );
        // Reset puts the ROM alias back.
        d.reset();
        assert_eq!(d.pam(0), 0);
        assert_eq!(m.read_le::<1>(0xffff0).unwrap(), 0xea);
        assert_eq!(m.read_le::<1>(0xf0000).unwrap(), 0x11, "ROM alias again");
    }

    #[test]
    fn pam_reserved_bits_read_only() {
        let mut d = I440fx::new(mem());
        d.config_write(PAM0, &[0xff]);
        assert_eq!(d.pam(0), 0x30);
        d.config_write(PAM0 + 3, &[0xff]);
        assert_eq!(d.pam(3), 0x33);
        assert_eq!(read32(&mut d, 0x04) & 0xffff, 0x0007, "command fixed");
    }

    #[test]
    fn smram_lock() {
        let mut d = I440fx::new(mem());
        assert_eq!(d.smram(), 0x02);
        d.config_write(SMRAM, &[0x4a]);
        assert_eq!(d.smram(), 0x4a);
        d.config_write(SMRAM, &[0x1a]);
        assert_eq!(d.smram(), 0x1a);
        d.config_write(SMRAM, &[0x4a]);
        assert_eq!(d.smram(), 0x1a, "locked: D_OPEN stays clear");
        d.reset();
        assert_eq!(d.smram(), 0x02);
    }

    proptest::proptest! {
        #[test]
        fn random_config_writes_never_panic(ops in proptest::collection::vec((proptest::num::u8::ANY, proptest::collection::vec(proptest::num::u8::ANY, 1..5)), 0..100)) {
            let m = mem();
            let mut d = I440fx::new(m);
            for (off, data) in ops {
                d.config_write(off, &data);
                let mut b = [0u8; 4];
                d.config_read(off, &mut b);
            }
            proptest::prop_assert_eq!(read32(&mut d, 0), 0x1237_8086);
        }
    }
}
