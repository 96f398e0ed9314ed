//! The CPU the interpreter presents: the feature bits it implements and a default CPUID
//! table built from them (used when the VMM gives none through `Vcpu::set_cpuid`).

use sup::CpuidEntry;

/// Feature bits the interpreter implements, per CPUID register. hm's CPUID policy should
/// AND the host/profile table with these before calling `set_cpuid` on an interpreter vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// CPUID.1:ECX.
    pub leaf1_ecx: u32,
    /// CPUID.1:EDX.
    pub leaf1_edx: u32,
    /// CPUID.7.0:EBX.
    pub leaf7_ebx: u32,
    /// CPUID.7.0:EDX.
    pub leaf7_edx: u32,
    /// CPUID.7.2:EDX.
    pub leaf7_2_edx: u32,
    /// CPUID.80000001h:ECX.
    pub ext1_ecx: u32,
    /// CPUID.80000001h:EDX.
    pub ext1_edx: u32,
}

/// CPUID.1:EDX bits.
pub mod edx1 {
    #![allow(missing_docs)]
    pub const FPU: u32 = 1 << 0;
    pub const PSE: u32 = 1 << 3;
    pub const TSC: u32 = 1 << 4;
    pub const MSR: u32 = 1 << 5;
    pub const PAE: u32 = 1 << 6;
    pub const CX8: u32 = 1 << 8;
    pub const APIC: u32 = 1 << 9;
    pub const SEP: u32 = 1 << 11;
    pub const MTRR: u32 = 1 << 12;
    pub const PGE: u32 = 1 << 13;
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    pub const PSE36: u32 = 1 << 17;
    pub const CLFSH: u32 = 1 << 19;
    pub const MMX: u32 = 1 << 23;
    pub const FXSR: u32 = 1 << 24;
    pub const SSE: u32 = 1 << 25;
    pub const SSE2: u32 = 1 << 26;
}

/// CPUID.1:ECX bits.
pub mod ecx1 {
    #![allow(missing_docs)]
    pub const CX16: u32 = 1 << 13;
    pub const POPCNT: u32 = 1 << 23;
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// CPUID.7.0:EBX bits.
pub mod ebx7 {
    #![allow(missing_docs)]
    /// The IA32_TSC_ADJUST MSR.
    pub const TSC_ADJUST: u32 = 1 << 1;
}

/// CPUID.7.2:EDX bits.
pub mod edx7_2 {
    #![allow(missing_docs)]
    /// IA32_SPEC_CTRL.BHI_DIS_S.
    pub const BHI_CTRL: u32 = 1 << 4;
}

/// CPUID.7.0:EDX bits.
pub mod edx7 {
    #![allow(missing_docs)]
    /// IBRS and IBPB: the IA32_SPEC_CTRL and IA32_PRED_CMD MSRs.
    pub const SPEC_CTRL: u32 = 1 << 26;
    pub const ARCH_CAPABILITIES: u32 = 1 << 29;
}

/// IA32_ARCH_CAPABILITIES (MSR 10Ah) as the interpreter reports it: every "not affected"
/// bit for the speculative-execution flaws, which is simply true of an interpreter (it
/// never executes guest code speculatively). It matters for speed as much as for honesty:
/// without RDCL_NO an Intel-signature guest kernel turns on page-table isolation (two CR3
/// loads and a TLB refill per system call and interrupt) and without MDS_NO a buffer-
/// clearing VERW on every return to user mode, which QEMU's default AMD-signature CPU
/// never pays. Enhanced IBRS (IBRS_ALL, with IA32_SPEC_CTRL from CPUID.7.0:EDX[26]) is
/// claimed because an interpreter keeps its promise trivially (no indirect branch is ever
/// predicted from another mode's history), and without it Linux compiles every indirect
/// call into a retpoline: three blocks and an unpredictable return instead of one jump.
/// No other control bit (FB_CLEAR_CTRL, RRSBA_CTRL) is claimed: their MSRs do not exist.
pub const ARCH_CAPABILITIES: u64 = (1 << 0) // RDCL_NO: no Meltdown, no L1TF
    | (1 << 1) // IBRS_ALL: enhanced IBRS
    | (1 << 4) // SSB_NO
    | (1 << 5) // MDS_NO
    | (1 << 6) // PSCHANGE_MC_NO: no iTLB multihit
    | (1 << 8) // TAA_NO
    | (1 << 13) // SBDR_SSDP_NO
    | (1 << 14) // FBSDP_NO
    | (1 << 15) // PSDP_NO: with the two above, no MMIO stale data
    | (1 << 20) // BHI_NO
    | (1 << 24) // PBRSB_NO
    | (1 << 26) // GDS_NO
    | (1 << 27) // RFDS_NO
    | (1 << 62); // ITS_NO

/// CPUID.80000001h bits.
pub mod ext1 {
    #![allow(missing_docs)]
    pub const LAHF_LM: u32 = 1 << 0;
    pub const SYSCALL: u32 = 1 << 11;
    pub const NX: u32 = 1 << 20;
    pub const RDTSCP: u32 = 1 << 27;
    pub const LM: u32 = 1 << 29;
}

/// What the interpreter implements.
pub fn supported_features() -> Features {
    use edx1::*;
    Features {
        // CX16 is executed but not advertised: pgm offers 8-byte atomics only, so
        // CMPXCHG16B is atomic only against other CMPXCHG16Bs.
        leaf1_ecx: ecx1::POPCNT | ecx1::HYPERVISOR,
        leaf1_edx: FPU
            | PSE
            | TSC
            | MSR
            | PAE
            | CX8
            | APIC
            | SEP
            | MTRR
            | PGE
            | CMOV
            | PAT
            | PSE36
            | CLFSH
            | MMX
            | FXSR
            | SSE
            | SSE2,
        // TSC_ADJUST: with an invariant TSC it tells Linux the TSC is trustworthy, so it
        // keeps the TSC as its clocksource without a watchdog. Otherwise the watchdog
        // compares it against the timer tick (jiffies) early in boot. Ticks that come late
        // while the host is busy are coalesced, so jiffies fall behind. Linux then marks
        // the TSC (host time, the best clock there is here) unstable and reads the ACPI PM
        // timer, a port exit per clock read, for the rest of its life.
        leaf7_ebx: ebx7::TSC_ADJUST,
        leaf7_edx: edx7::SPEC_CTRL | edx7::ARCH_CAPABILITIES,
        // BHI_CTRL: Linux assumes branch history injection on every eIBRS or virtualised
        // CPU (BHI_NO notwithstanding, since 2025) and clears the history with a loop of
        // about 100 instructions on every system call, unless it can set BHI_DIS_S, which
        // an interpreter honours trivially (it predicts no branch).
        leaf7_2_edx: edx7_2::BHI_CTRL,
        ext1_ecx: ext1::LAHF_LM,
        ext1_edx: ext1::SYSCALL | ext1::NX | ext1::RDTSCP | ext1::LM,
    }
}

fn e(function: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidEntry {
    CpuidEntry {
        function,
        index: 0,
        indexed: false,
        eax,
        ebx,
        ecx,
        edx,
    }
}

fn brand_words(s: &str) -> [u32; 12] {
    let mut b = [0u8; 48];
    for (d, c) in b.iter_mut().zip(s.bytes()) {
        *d = c;
    }
    let mut w = [0u32; 12];
    for (i, v) in w.iter_mut().enumerate() {
        *v = u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    }
    w
}

/// Processor signature of the default profile (family 6, model 15, stepping 11).
pub const SIGNATURE: u32 = 0x0000_06fb;

/// The default CPUID table (APIC ID 0; [`crate::IemVcpu`] patches the APIC ID per vCPU).
pub fn default_table() -> Vec<CpuidEntry> {
    let f = supported_features();
    let b = brand_words("novabox interpreter x86-64 CPU");
    vec![
        // "GenuineIntel"
        e(0, 7, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
        e(1, SIGNATURE, 0x0001_0800, f.leaf1_ecx, f.leaf1_edx),
        CpuidEntry {
            function: 7,
            index: 0,
            indexed: true,
            // Highest subleaf.
            eax: 2,
            ebx: f.leaf7_ebx,
            edx: f.leaf7_edx,
            ..CpuidEntry::default()
        },
        CpuidEntry {
            function: 7,
            index: 2,
            indexed: true,
            edx: f.leaf7_2_edx,
            ..CpuidEntry::default()
        },
        e(0x8000_0000, 0x8000_0008, 0, 0, 0),
        e(0x8000_0001, 0, 0, f.ext1_ecx, f.ext1_edx),
        e(0x8000_0002, b[0], b[1], b[2], b[3]),
        e(0x8000_0003, b[4], b[5], b[6], b[7]),
        e(0x8000_0004, b[8], b[9], b[10], b[11]),
        // Invariant TSC.
        e(0x8000_0007, 0, 0, 0, 1 << 8),
        // 40 physical, 48 linear address bits.
        e(0x8000_0008, 0x3028, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_is_consistent() {
        let t = default_table();
        let l0 = sup::cpuid::lookup(&t, 0, 0);
        assert_eq!(l0[0], 7);
        let l1 = sup::cpuid::lookup(&t, 1, 0);
        assert_eq!(l1[3] & edx1::SSE2, edx1::SSE2);
        assert_eq!(l1[2] & (1 << 0), 0, "no SSE3 advertised");
        let e1 = sup::cpuid::lookup(&t, 0x8000_0001, 0);
        assert_ne!(e1[3] & ext1::LM, 0);
        let ext = sup::cpuid::lookup(&t, 0x8000_0000, 0);
        assert!(ext[0] >= 0x8000_0008);
    }
}
