//! A cache hint for the VMM's own hot data structures (the interpreter's decoded code):
//! ask the CPU to start loading a line that will be needed soon, without waiting for it.
//! It lives here because pgm is where novabox keeps its memory-level unsafe code.

/// Start loading the cache line holding `*r` into all cache levels. Only a hint: it never
/// faults, changes no data and may be ignored; without x86-64 it does nothing.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing architecturally and cannot fault, whatever the
    // address; this one comes from a live reference besides. SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefetch_changes_nothing() {
        let v = vec![7u64; 1024];
        for x in &v {
            super::prefetch(x);
        }
        assert!(v.iter().all(|&x| x == 7));
    }
}
