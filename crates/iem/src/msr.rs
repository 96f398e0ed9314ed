//! Model-specific registers the OSes we run touch.

use crate::cpu::{gp0, Cpu, R};
use sup::state::efer;

/// MSR numbers.
pub(crate) mod n {
    pub const TSC: u32 = 0x10;
    pub const PLATFORM_ID: u32 = 0x17;
    pub const APIC_BASE: u32 = 0x1b;
    pub const FEATURE_CONTROL: u32 = 0x3a;
    pub const TSC_ADJUST: u32 = 0x3b;
    pub const SPEC_CTRL: u32 = 0x48;
    pub const PRED_CMD: u32 = 0x49;
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    pub const MTRRCAP: u32 = 0xfe;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MCG_CAP: u32 = 0x179;
    pub const MCG_STATUS: u32 = 0x17a;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const DEBUGCTL: u32 = 0x1d9;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const FMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
}

fn is_mtrr(m: u32) -> bool {
    matches!(m, 0x200..=0x20f | 0x250 | 0x258 | 0x259 | 0x268..=0x26f | n::MTRR_DEF_TYPE)
}

/// IA32_SPEC_CTRL bits a guest may set: IBRS, and BHI_DIS_S when CPUID.7.2:EDX says
/// BHI_CTRL (STIBP and SSBD are not advertised).
const SPEC_CTRL_IBRS: u64 = 1;
/// IA32_SPEC_CTRL.BHI_DIS_S: no branch history across privilege levels.
const SPEC_CTRL_BHI_DIS_S: u64 = 1 << 10;
/// IA32_PRED_CMD's only command: IBPB.
const PRED_CMD_IBPB: u64 = 1;

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

impl Cpu {
    /// Whether CPUID.7.0:EDX has `bit`: the MSRs it announces exist only then, as on
    /// hardware.
    fn leaf7_edx_has(&self, bit: u32) -> bool {
        sup::cpuid::lookup(&self.cpuid, 7, 0)[3] & bit != 0
    }

    /// IA32_SPEC_CTRL and IA32_PRED_CMD.
    fn has_spec_ctrl(&self) -> bool {
        self.leaf7_edx_has(crate::cpuid::edx7::SPEC_CTRL)
    }

    /// The IA32_SPEC_CTRL bits CPUID advertises.
    fn spec_ctrl_bits(&self) -> u64 {
        let bhi = sup::cpuid::lookup(&self.cpuid, 7, 2)[3] & crate::cpuid::edx7_2::BHI_CTRL != 0;
        SPEC_CTRL_IBRS | if bhi { SPEC_CTRL_BHI_DIS_S } else { 0 }
    }

    /// IA32_TSC_ADJUST.
    fn has_tsc_adjust(&self) -> bool {
        sup::cpuid::lookup(&self.cpuid, 7, 0)[1] & crate::cpuid::ebx7::TSC_ADJUST != 0
    }

    /// RDMSR.
    pub(crate) fn rdmsr(&mut self, m: u32) -> R<u64> {
        let s = &self.s;
        Ok(match m {
            n::TSC => self.read_tsc(),
            n::TSC_ADJUST if self.has_tsc_adjust() => self.tsc.adjust,
            n::PLATFORM_ID | n::FEATURE_CONTROL | n::MCG_CAP | n::MCG_STATUS | n::DEBUGCTL => 0,
            n::BIOS_SIGN_ID => *self.msrs.get(&m).unwrap_or(&0),
            n::APIC_BASE => s.apic_base,
            n::MTRRCAP => 0x508, // 8 variable ranges, fixed ranges, write-combining
            // Present only when CPUID.7.0:EDX says so, as on hardware.
            n::ARCH_CAPABILITIES if self.leaf7_edx_has(crate::cpuid::edx7::ARCH_CAPABILITIES) => {
                crate::cpuid::ARCH_CAPABILITIES
            }
            // IBRS is kept as written; it asks nothing of an interpreter, which predicts no
            // branch. PRED_CMD is write-only (#GP on read, as on hardware).
            n::SPEC_CTRL if self.has_spec_ctrl() => *self.msrs.get(&m).unwrap_or(&0),
            n::SYSENTER_CS => s.msrs.sysenter_cs,
            n::SYSENTER_ESP => s.msrs.sysenter_esp,
            n::SYSENTER_EIP => s.msrs.sysenter_eip,
            n::MISC_ENABLE => s.msrs.misc_enable,
            n::PAT => s.msrs.pat,
            n::EFER => s.efer,
            n::STAR => s.msrs.star,
            n::LSTAR => s.msrs.lstar,
            n::CSTAR => s.msrs.cstar,
            n::FMASK => s.msrs.fmask,
            n::FS_BASE => s.fs.base,
            n::GS_BASE => s.gs.base,
            n::KERNEL_GS_BASE => s.msrs.kernel_gs_base,
            n::TSC_AUX => s.msrs.tsc_aux,
            m if is_mtrr(m) => *self.msrs.get(&m).unwrap_or(&0),
            _ => return Err(gp0()),
        })
    }

    /// WRMSR.
    pub(crate) fn wrmsr(&mut self, m: u32, v: u64) -> R<()> {
        match m {
            n::TSC => self.write_tsc_msr(v),
            n::TSC_ADJUST if self.has_tsc_adjust() => self.set_tsc_adjust(v),
            n::BIOS_SIGN_ID => {
                self.msrs.insert(m, v);
            }
            n::DEBUGCTL | n::MCG_STATUS => {}
            n::SPEC_CTRL if self.has_spec_ctrl() && v & !self.spec_ctrl_bits() == 0 => {
                self.msrs.insert(m, v);
            }
            // An indirect-branch prediction barrier: nothing to flush here.
            n::PRED_CMD if self.has_spec_ctrl() && v & !PRED_CMD_IBPB == 0 => {}
            n::APIC_BASE => {
                if v & 0xffff_fff0_0000_02ff != 0 {
                    return Err(gp0());
                }
                // The BSP flag is read-only.
                self.s.apic_base = (v & !0x100) | (self.s.apic_base & 0x100);
            }
            n::SYSENTER_CS => self.s.msrs.sysenter_cs = v & 0xffff,
            n::SYSENTER_ESP | n::SYSENTER_EIP if !canonical(v) => return Err(gp0()),
            n::SYSENTER_ESP => self.s.msrs.sysenter_esp = v,
            n::SYSENTER_EIP => self.s.msrs.sysenter_eip = v,
            n::MISC_ENABLE => self.s.msrs.misc_enable = v,
            n::PAT => {
                for i in 0..8 {
                    let t = (v >> (i * 8)) & 0xff;
                    if !matches!(t, 0 | 1 | 4 | 5 | 6 | 7) {
                        return Err(gp0());
                    }
                }
                self.s.msrs.pat = v;
            }
            n::EFER => {
                let allowed = efer::SCE | efer::LME | efer::NXE | efer::LMA;
                if v & !allowed != 0 {
                    return Err(gp0());
                }
                let paging = self.s.cr0 & sup::state::cr0::PG != 0;
                if paging && (v ^ self.s.efer) & efer::LME != 0 {
                    return Err(gp0());
                }
                let new = (v & !efer::LMA) | (self.s.efer & efer::LMA);
                if (new ^ self.s.efer) & efer::NXE != 0 {
                    self.tlb.flush_all();
                }
                self.s.efer = new;
                self.update_mode();
                self.end_block = true;
            }
            n::STAR => self.s.msrs.star = v,
            n::LSTAR | n::CSTAR | n::FS_BASE | n::GS_BASE | n::KERNEL_GS_BASE if !canonical(v) => {
                return Err(gp0())
            }
            n::LSTAR => self.s.msrs.lstar = v,
            n::CSTAR => self.s.msrs.cstar = v,
            n::FMASK => self.s.msrs.fmask = v & 0xffff_ffff,
            n::FS_BASE => self.s.fs.base = v,
            n::GS_BASE => self.s.gs.base = v,
            n::KERNEL_GS_BASE => self.s.msrs.kernel_gs_base = v,
            n::TSC_AUX => self.s.msrs.tsc_aux = v & 0xffff_ffff,
            m if is_mtrr(m) => {
                self.msrs.insert(m, v);
            }
            _ => return Err(gp0()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cpu() -> Cpu {
        let mem = Arc::new(pgm::GuestMemory::new(pgm::MemoryLayout::pc(1 << 20).unwrap()).unwrap());
        Cpu::new(0, mem, sup::state::VcpuState::default())
    }

    #[test]
    fn arch_capabilities_follows_cpuid() {
        let mut c = cpu();
        let v = c.rdmsr(n::ARCH_CAPABILITIES).ok().unwrap();
        assert_eq!(v, crate::cpuid::ARCH_CAPABILITIES);
        assert_ne!(v & 1, 0, "RDCL_NO: a guest needs no page-table isolation");
        assert!(c.wrmsr(n::ARCH_CAPABILITIES, 0).is_err(), "read-only");
        for e in c.cpuid.iter_mut().filter(|e| e.function == 7) {
            e.edx &= !crate::cpuid::edx7::ARCH_CAPABILITIES;
        }
        assert!(
            c.rdmsr(n::ARCH_CAPABILITIES).is_err(),
            "#GP when CPUID hides it"
        );
    }

    #[test]
    fn spec_ctrl_keeps_ibrs_and_refuses_the_rest() {
        let mut c = cpu();
        assert_ne!(crate::cpuid::ARCH_CAPABILITIES & 2, 0, "IBRS_ALL claimed");
        assert_eq!(c.rdmsr(n::SPEC_CTRL).ok(), Some(0));
        assert!(c.wrmsr(n::SPEC_CTRL, 1).is_ok());
        assert_eq!(c.rdmsr(n::SPEC_CTRL).ok(), Some(1));
        assert!(c.wrmsr(n::SPEC_CTRL, 2).is_err(), "STIBP is not advertised");
        assert!(c.wrmsr(n::SPEC_CTRL, 4).is_err(), "SSBD is not advertised");
        assert_eq!(c.rdmsr(n::SPEC_CTRL).ok(), Some(1));
        assert!(c.wrmsr(n::PRED_CMD, 1).is_ok(), "IBPB");
        assert!(c.wrmsr(n::PRED_CMD, 2).is_err());
        assert!(c.rdmsr(n::PRED_CMD).is_err(), "write-only");
        for e in c.cpuid.iter_mut().filter(|e| e.function == 7) {
            e.edx &= !crate::cpuid::edx7::SPEC_CTRL;
        }
        assert!(c.rdmsr(n::SPEC_CTRL).is_err(), "#GP when CPUID hides it");
        assert!(c.wrmsr(n::PRED_CMD, 1).is_err());
    }

    #[test]
    fn tsc_adjust_and_tsc_writes_move_each_other() {
        let mut c = cpu();
        assert_eq!(c.rdmsr(n::TSC_ADJUST).ok(), Some(0));
        let t0 = c.read_tsc();
        // Writing the adjustment moves the TSC by the difference.
        assert!(c.wrmsr(n::TSC_ADJUST, 1 << 40).is_ok());
        let t1 = c.read_tsc();
        assert!(t1.wrapping_sub(t0) >= 1 << 40 && t1.wrapping_sub(t0) < (1 << 40) + (1 << 34));
        assert_eq!(c.rdmsr(n::TSC_ADJUST).ok(), Some(1 << 40));
        // Writing the TSC moves the adjustment by as much as the TSC moved.
        let before = c.read_tsc();
        assert!(c.wrmsr(n::TSC, 1000).is_ok());
        let adj = c.rdmsr(n::TSC_ADJUST).ok().unwrap();
        let moved = adj.wrapping_sub(1 << 40);
        assert!(1000u64.wrapping_sub(before).wrapping_sub(moved) < 1 << 34);
        // Linux resets a non-zero adjustment at boot: the TSC goes back by as much.
        assert!(c.wrmsr(n::TSC_ADJUST, 0).is_ok());
        assert!(c.read_tsc() < 1 << 40, "back near the unadjusted clock");
        for e in c.cpuid.iter_mut().filter(|e| e.function == 7) {
            e.ebx &= !crate::cpuid::ebx7::TSC_ADJUST;
        }
        assert!(c.rdmsr(n::TSC_ADJUST).is_err(), "#GP when CPUID hides it");
        assert!(c.wrmsr(n::TSC_ADJUST, 0).is_err());
    }

    #[test]
    fn bhi_dis_s_follows_cpuid_7_2() {
        let mut c = cpu();
        assert!(c.wrmsr(n::SPEC_CTRL, SPEC_CTRL_BHI_DIS_S | 1).is_ok());
        assert_eq!(c.rdmsr(n::SPEC_CTRL).ok(), Some(SPEC_CTRL_BHI_DIS_S | 1));
        c.cpuid.retain(|e| !(e.function == 7 && e.index == 2));
        assert!(c.wrmsr(n::SPEC_CTRL, SPEC_CTRL_BHI_DIS_S).is_err());
    }
}
