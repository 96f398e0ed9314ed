//! The CPUID policy: what CPU a guest sees. Starts from what the engine can run (KVM's
//! supported table, or the interpreter's profile), removes what the VMM does not emulate
//! (x2APIC, TSC-deadline unless the local APIC offers it, VMX/SVM, MONITOR/MWAIT, PMU,
//! XSAVE/AVX on the interpreter), and fills in the per-vCPU topology and the hypervisor
//! leaves of the paravirtualisation provider the machine asks for, as VirtualBox does.

use sup::CpuidEntry;

/// The paravirtualisation interface presented (VirtualBox's `paravirtProvider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParavirtProvider {
    /// No hypervisor leaves at all (VirtualBox "None"; the hypervisor bit stays set).
    None,
    /// VirtualBox "Minimal": "VBoxVBoxVBox" at 0x40000000 and the timing leaf 0x40000010
    /// (TSC and APIC bus frequency in kHz).
    #[default]
    Minimal,
}

/// Inputs of the policy.
#[derive(Debug, Clone)]
pub struct CpuidPolicy {
    /// Number of vCPUs in the VM.
    pub cpu_count: u32,
    /// Provider.
    pub provider: ParavirtProvider,
    /// Guest TSC frequency in kHz (for the timing leaf).
    pub tsc_khz: u32,
    /// APIC bus (timer input) frequency in kHz.
    pub apic_khz: u32,
}

// CPUID.1 ECX / EDX bits we touch.
const ECX_MONITOR: u32 = 1 << 3;
const ECX_VMX: u32 = 1 << 5;
const ECX_SMX: u32 = 1 << 6;
const ECX_EST: u32 = 1 << 7;
const ECX_TM2: u32 = 1 << 8;
const ECX_PDCM: u32 = 1 << 15;
const ECX_X2APIC: u32 = 1 << 21;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_APIC: u32 = 1 << 9;
const EDX_ACPI_TM: u32 = (1 << 22) | (1 << 29);
const EDX_HTT: u32 = 1 << 28;
// CPUID.0x80000001 ECX: SVM.
const EXT_ECX_SVM: u32 = 1 << 2;

fn put(table: &mut Vec<CpuidEntry>, e: CpuidEntry) {
    table.retain(|x| !(x.function == e.function && x.index == e.index));
    table.push(e);
}

fn regs(s: &[u8; 12]) -> (u32, u32, u32) {
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    (w(0), w(4), w(8))
}

/// Build the table vCPU `apic_id` sees.
pub fn guest_table(base: &[CpuidEntry], apic_id: u32, policy: &CpuidPolicy) -> Vec<CpuidEntry> {
    let mut t: Vec<CpuidEntry> = base
        .iter()
        .copied()
        // Drop the host's hypervisor leaves (kvm-pvm exposes its own): we present ours.
        .filter(|e| !(0x4000_0000..0x4001_0000).contains(&e.function))
        .collect();
    let count = policy.cpu_count.max(1);
    for e in t.iter_mut() {
        match e.function {
            1 => {
                e.ecx &= !(ECX_MONITOR
                    | ECX_VMX
                    | ECX_SMX
                    | ECX_EST
                    | ECX_TM2
                    | ECX_PDCM
                    | ECX_X2APIC
                    | ECX_TSC_DEADLINE);
                e.ecx |= ECX_HYPERVISOR;
                e.edx &= !EDX_ACPI_TM;
                e.edx |= EDX_APIC;
                // EBX: APIC ID in 31:24, logical processors per package in 23:16.
                e.ebx = (e.ebx & 0xffff) | ((apic_id & 0xff) << 24);
                if count > 1 {
                    e.ebx |= (count.next_power_of_two().min(255)) << 16;
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            4 => {
                // Cores per package - 1 in 31:26; threads sharing the cache in 25:14.
                let cores = count.next_power_of_two().min(64) - 1;
                e.eax = (e.eax & 0x3fff) | (cores << 26);
            }
            5 | 6 => {
                // MONITOR/MWAIT and thermal/power leaves: nothing emulated.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xa => {
                // Architectural PMU: none.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb | 0x1f => {
                // x2APIC topology: x2APIC is not offered, but keep the IDs consistent.
                e.edx = apic_id;
            }
            0x8000_0001 => e.ecx &= !EXT_ECX_SVM,
            _ => {}
        }
    }
    put_frequency_leaves(&mut t, policy);
    match policy.provider {
        ParavirtProvider::None => {}
        ParavirtProvider::Minimal => {
            let (b, c, d) = regs(b"VBoxVBoxVBox");
            put(
                &mut t,
                CpuidEntry {
                    function: 0x4000_0000,
                    eax: 0x4000_0010,
                    ebx: b,
                    ecx: c,
                    edx: d,
                    ..Default::default()
                },
            );
            put(
                &mut t,
                CpuidEntry {
                    function: 0x4000_0010,
                    eax: policy.tsc_khz,
                    ebx: policy.apic_khz,
                    ..Default::default()
                },
            );
        }
    }
    t
}

/// Leaf 15h, the TSC's ratio to the core crystal clock (which on Intel CPUs also drives
/// the local APIC timer) and the crystal's frequency, and leaf 16h, the core's base and
/// maximum frequency (the TSC's) and the bus frequency, when the engine knows the TSC and
/// APIC timer frequencies and the base table has no leaf 15h of its own (KVM passes the
/// host's). Linux then takes the frequencies as given. Otherwise it calibrates them against
/// the PIT and the ACPI timer, which goes wrong on an interpreter: each port read is an exit.
fn put_frequency_leaves(t: &mut Vec<CpuidEntry>, policy: &CpuidPolicy) {
    let (tsc, apic) = (policy.tsc_khz, policy.apic_khz);
    if tsc == 0 || apic == 0 || t.iter().any(|e| e.function == 0x15) {
        return;
    }
    let Some(crystal_hz) = apic.checked_mul(1000) else {
        return;
    };
    // Linux multiplies the crystal's kHz by the numerator in 32 bits: keep the ratio small.
    let g = gcd(tsc, apic);
    let (num, den) = (tsc / g, apic / g);
    if u64::from(apic) * u64::from(num) > u64::from(u32::MAX) {
        return;
    }
    put(
        t,
        CpuidEntry {
            function: 0x15,
            eax: den,
            ebx: num,
            ecx: crystal_hz,
            ..Default::default()
        },
    );
    put(
        t,
        CpuidEntry {
            function: 0x16,
            eax: tsc / 1000,
            ebx: tsc / 1000,
            ecx: apic / 1000,
            ..Default::default()
        },
    );
    if let Some(l0) = t.iter_mut().find(|e| e.function == 0) {
        l0.eax = l0.eax.max(0x16);
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<CpuidEntry> {
        vec![
            CpuidEntry {
                function: 1,
                eax: 0x906ea,
                ebx: 0x0010_0800,
                ecx: ECX_X2APIC | ECX_VMX | 1,
                edx: EDX_HTT | 1,
                ..Default::default()
            },
            CpuidEntry {
                function: 0x4000_0000,
                ebx: 0x4b4d564b,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn leaf1_topology_and_features() {
        let p = CpuidPolicy {
            cpu_count: 2,
            provider: ParavirtProvider::Minimal,
            tsc_khz: 2_000_000,
            apic_khz: 1_000_000,
        };
        let t = guest_table(&base(), 1, &p);
        let l1 = sup::cpuid::lookup(&t, 1, 0);
        assert_eq!(l1[1] >> 24, 1, "APIC ID");
        assert_eq!((l1[1] >> 16) & 0xff, 2);
        assert_eq!(l1[2] & (ECX_X2APIC | ECX_VMX), 0);
        assert!(l1[2] & ECX_HYPERVISOR != 0 && l1[2] & 1 != 0);
        assert!(l1[3] & EDX_HTT != 0);
        let hv = sup::cpuid::lookup(&t, 0x4000_0000, 0);
        let mut sig = Vec::new();
        for r in &hv[1..] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"VBoxVBoxVBox");
        assert_eq!(sup::cpuid::lookup(&t, 0x4000_0010, 0)[0], 2_000_000);
    }

    #[test]
    fn tsc_leaf_gives_the_engine_frequencies_in_linux_terms() {
        let mut b = base();
        b.push(CpuidEntry {
            function: 0,
            eax: 7,
            ..Default::default()
        });
        let p = |tsc_khz| CpuidPolicy {
            cpu_count: 1,
            provider: ParavirtProvider::Minimal,
            tsc_khz,
            apic_khz: 1_000_000,
        };
        let t = guest_table(&b, 0, &p(2_500_000));
        assert_eq!(
            sup::cpuid::lookup(&t, 0, 0)[0],
            0x16,
            "leaves 15h and 16h reachable"
        );
        assert_eq!(sup::cpuid::lookup(&t, 0x16, 0)[..3], [2500, 2500, 1000]);
        let [den, num, hz, _] = sup::cpuid::lookup(&t, 0x15, 0);
        assert_eq!((den, num, hz), (2, 5, 1_000_000_000));
        // What Linux's native_calibrate_tsc computes, in its 32-bit arithmetic.
        let khz = (hz / 1000).checked_mul(num).unwrap() / den;
        assert_eq!(khz, 2_500_000);
        // Unknown TSC frequency (KVM): no leaf, and a host leaf 15h is kept.
        let t = guest_table(&b, 0, &p(0));
        assert_eq!(sup::cpuid::lookup(&t, 0x15, 0), [0; 4]);
        assert_eq!(sup::cpuid::lookup(&t, 0x16, 0), [0; 4]);
        assert_eq!(sup::cpuid::lookup(&t, 0, 0)[0], 7);
        b.push(CpuidEntry {
            function: 0x15,
            eax: 2,
            ebx: 176,
            ecx: 24_000_000,
            ..Default::default()
        });
        let t = guest_table(&b, 0, &p(1_000_000));
        assert_eq!(sup::cpuid::lookup(&t, 0x15, 0), [2, 176, 24_000_000, 0]);
    }

    #[test]
    fn single_cpu_has_no_htt_and_no_provider_leaves_with_none() {
        let p = CpuidPolicy {
            cpu_count: 1,
            provider: ParavirtProvider::None,
            tsc_khz: 1,
            apic_khz: 1,
        };
        let t = guest_table(&base(), 0, &p);
        assert_eq!(sup::cpuid::lookup(&t, 1, 0)[3] & EDX_HTT, 0);
        assert_eq!(sup::cpuid::lookup(&t, 0x4000_0000, 0), [0; 4]);
    }
}
