//! CPUID table entries, shared by every engine.

/// One CPUID leaf (and sub-leaf) as the guest sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// Leaf (EAX input).
    pub function: u32,
    /// Sub-leaf (ECX input); meaningful only when `indexed`.
    pub index: u32,
    /// True when the leaf depends on ECX.
    pub indexed: bool,
    /// Output registers.
    pub eax: u32,
    /// Output registers.
    pub ebx: u32,
    /// Output registers.
    pub ecx: u32,
    /// Output registers.
    pub edx: u32,
}

/// Look a leaf up the way the CPU does: an unknown leaf above the basic range returns the
/// highest basic leaf (Intel behaviour); we return zeros for unknown leaves, as KVM does for
/// leaves it does not list.
pub fn lookup(table: &[CpuidEntry], function: u32, index: u32) -> [u32; 4] {
    table
        .iter()
        .find(|e| e.function == function && (!e.indexed || e.index == index))
        .map(|e| [e.eax, e.ebx, e.ecx, e.edx])
        .unwrap_or([0; 4])
}
