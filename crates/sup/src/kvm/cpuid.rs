//! CPUID tables between sup's [`CpuidEntry`] and KVM's `kvm_cpuid_entry2`.

use crate::CpuidEntry;
use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// The most entries kvm-bindings' CPUID wrapper holds (KVM itself allows more).
pub(crate) const MAX_CPUID_ENTRIES: usize = kvm_bindings::KVM_MAX_CPUID_ENTRIES;

/// KVM entries -> sup entries.
pub(crate) fn entries_from_kvm(k: &[kvm_cpuid_entry2]) -> Vec<CpuidEntry> {
    k.iter()
        .map(|e| CpuidEntry {
            function: e.function,
            index: e.index,
            indexed: e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        })
        .collect()
}

/// sup entries -> KVM entries. A leaf that does not depend on ECX is given index 0, as KVM
/// expects.
pub(crate) fn entries_to_kvm(entries: &[CpuidEntry]) -> Vec<kvm_cpuid_entry2> {
    entries
        .iter()
        .map(|e| kvm_cpuid_entry2 {
            function: e.function,
            index: if e.indexed { e.index } else { 0 },
            flags: if e.indexed {
                KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = vec![
            CpuidEntry {
                function: 7,
                index: 1,
                indexed: true,
                eax: 1,
                ebx: 2,
                ecx: 3,
                edx: 4,
            },
            CpuidEntry {
                function: 0x8000_0001,
                index: 0,
                indexed: false,
                eax: 5,
                ebx: 6,
                ecx: 7,
                edx: 8,
            },
        ];
        assert_eq!(entries_from_kvm(&entries_to_kvm(&t)), t);
    }
}
