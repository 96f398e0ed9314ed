//! Conversions between KVM's register structures and the engine-neutral [`VcpuState`].
//!
//! Every function converts only the parts of the state named by a [`StateMask`], so the
//! transfer-mask rule holds: a part the caller did not ask for is never touched. Segment
//! attributes use the VMX access-rights layout on the sup side and KVM's split fields on the
//! other; the mapping is exact in both directions for every defined bit (the reserved attribute
//! bits 8-11 and 17-31 have no KVM field and read back as zero).

use crate::state::{DescTable, Events, FpuState, Segment, StateMask, VcpuState};
use kvm_bindings::{
    kvm_debugregs, kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events,
    KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW, KVM_X86_SHADOW_INT_STI,
};

/// The parts of the state that live in `kvm_regs`.
pub(crate) const REGS_PARTS: StateMask = StateMask::GPRS
    .union(StateMask::RIP)
    .union(StateMask::RFLAGS);
/// The parts of the state that live in `kvm_sregs`.
pub(crate) const SREGS_PARTS: StateMask = StateMask::SEGS
    .union(StateMask::SYS_SEGS)
    .union(StateMask::DTABLES)
    .union(StateMask::CRS)
    .union(StateMask::APIC_BASE);

/// KVM segment -> sup segment (VMX access-rights layout).
pub fn segment_from_kvm(k: &kvm_segment) -> Segment {
    let bit = |v: u8, shift: u32| u32::from(v & 1) << shift;
    Segment {
        selector: k.selector,
        base: k.base,
        limit: k.limit,
        attr: u32::from(k.type_ & 0xf)
            | bit(k.s, 4)
            | (u32::from(k.dpl & 3) << 5)
            | bit(k.present, 7)
            | bit(k.avl, 12)
            | bit(k.l, 13)
            | bit(k.db, 14)
            | bit(k.g, 15)
            | bit(k.unusable, 16),
    }
}

/// sup segment -> KVM segment.
pub fn segment_to_kvm(s: &Segment) -> kvm_segment {
    let bit = |shift: u32| ((s.attr >> shift) & 1) as u8;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (s.attr & 0xf) as u8,
        present: bit(7),
        dpl: ((s.attr >> 5) & 3) as u8,
        db: bit(14),
        s: bit(4),
        l: bit(13),
        g: bit(15),
        avl: bit(12),
        unusable: bit(16),
        padding: 0,
    }
}

fn dtable_from_kvm(k: &kvm_dtable) -> DescTable {
    DescTable {
        base: k.base,
        limit: k.limit,
    }
}

fn dtable_to_kvm(d: &DescTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        padding: [0; 3],
    }
}

/// Copy the `parts` of `kvm_regs` into `s`.
pub fn regs_to_state(k: &kvm_regs, s: &mut VcpuState, parts: StateMask) {
    if parts.contains(StateMask::GPRS) {
        s.gpr = [
            k.rax, k.rcx, k.rdx, k.rbx, k.rsp, k.rbp, k.rsi, k.rdi, k.r8, k.r9, k.r10, k.r11,
            k.r12, k.r13, k.r14, k.r15,
        ];
    }
    if parts.contains(StateMask::RIP) {
        s.rip = k.rip;
    }
    if parts.contains(StateMask::RFLAGS) {
        s.rflags = k.rflags;
    }
}

/// Copy the `parts` of `s` into `kvm_regs`, leaving the other fields as they are.
pub fn state_to_regs(s: &VcpuState, k: &mut kvm_regs, parts: StateMask) {
    if parts.contains(StateMask::GPRS) {
        let g = &s.gpr;
        k.rax = g[0];
        k.rcx = g[1];
        k.rdx = g[2];
        k.rbx = g[3];
        k.rsp = g[4];
        k.rbp = g[5];
        k.rsi = g[6];
        k.rdi = g[7];
        k.r8 = g[8];
        k.r9 = g[9];
        k.r10 = g[10];
        k.r11 = g[11];
        k.r12 = g[12];
        k.r13 = g[13];
        k.r14 = g[14];
        k.r15 = g[15];
    }
    if parts.contains(StateMask::RIP) {
        k.rip = s.rip;
    }
    if parts.contains(StateMask::RFLAGS) {
        k.rflags = s.rflags;
    }
}

/// Copy the `parts` of `kvm_sregs` into `s`.
pub fn sregs_to_state(k: &kvm_sregs, s: &mut VcpuState, parts: StateMask) {
    if parts.contains(StateMask::SEGS) {
        s.cs = segment_from_kvm(&k.cs);
        s.ds = segment_from_kvm(&k.ds);
        s.es = segment_from_kvm(&k.es);
        s.fs = segment_from_kvm(&k.fs);
        s.gs = segment_from_kvm(&k.gs);
        s.ss = segment_from_kvm(&k.ss);
    }
    if parts.contains(StateMask::SYS_SEGS) {
        s.tr = segment_from_kvm(&k.tr);
        s.ldtr = segment_from_kvm(&k.ldt);
    }
    if parts.contains(StateMask::DTABLES) {
        s.gdtr = dtable_from_kvm(&k.gdt);
        s.idtr = dtable_from_kvm(&k.idt);
    }
    if parts.contains(StateMask::CRS) {
        s.cr0 = k.cr0;
        s.cr2 = k.cr2;
        s.cr3 = k.cr3;
        s.cr4 = k.cr4;
        s.cr8 = k.cr8;
        s.efer = k.efer;
    }
    if parts.contains(StateMask::APIC_BASE) {
        s.apic_base = k.apic_base;
    }
}

/// Copy the `parts` of `s` into `kvm_sregs`, leaving the other fields (and the pending
/// interrupt bitmap, which only KVM knows) as they are.
pub fn state_to_sregs(s: &VcpuState, k: &mut kvm_sregs, parts: StateMask) {
    if parts.contains(StateMask::SEGS) {
        k.cs = segment_to_kvm(&s.cs);
        k.ds = segment_to_kvm(&s.ds);
        k.es = segment_to_kvm(&s.es);
        k.fs = segment_to_kvm(&s.fs);
        k.gs = segment_to_kvm(&s.gs);
        k.ss = segment_to_kvm(&s.ss);
    }
    if parts.contains(StateMask::SYS_SEGS) {
        k.tr = segment_to_kvm(&s.tr);
        k.ldt = segment_to_kvm(&s.ldtr);
    }
    if parts.contains(StateMask::DTABLES) {
        k.gdt = dtable_to_kvm(&s.gdtr);
        k.idt = dtable_to_kvm(&s.idtr);
    }
    if parts.contains(StateMask::CRS) {
        k.cr0 = s.cr0;
        k.cr2 = s.cr2;
        k.cr3 = s.cr3;
        k.cr4 = s.cr4;
        k.cr8 = s.cr8;
        k.efer = s.efer;
    }
    if parts.contains(StateMask::APIC_BASE) {
        k.apic_base = s.apic_base;
    }
}

/// KVM events -> sup events.
pub fn events_from_kvm(k: &kvm_vcpu_events) -> Events {
    Events {
        interrupt_shadow: k.interrupt.shadow != 0,
        nmi_masked: k.nmi.masked != 0,
        nmi_pending: k.nmi.pending != 0,
    }
}

/// sup events -> KVM events, in place: fields sup does not model (pending exceptions, an
/// injected interrupt, SMM) keep the values KVM reported. The shadow keeps its kind (STI or
/// MOV SS) when it stays set; a newly set shadow is an STI shadow.
pub fn events_to_kvm(e: &Events, k: &mut kvm_vcpu_events) {
    if e.interrupt_shadow != (k.interrupt.shadow != 0) {
        k.interrupt.shadow = if e.interrupt_shadow {
            KVM_X86_SHADOW_INT_STI as u8
        } else {
            0
        };
    }
    k.nmi.masked = u8::from(e.nmi_masked);
    k.nmi.pending = u8::from(e.nmi_pending);
    // Without these flags KVM ignores the shadow and the pending NMI.
    k.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
}

/// KVM FPU -> the FXSAVE image. MXCSR_MASK (bytes 28-31) is not part of `kvm_fpu`; it keeps
/// the value already in `fx`.
pub fn fpu_from_kvm(k: &kvm_fpu, fx: &mut FpuState) {
    let b = &mut fx.fxsave;
    b[0..2].copy_from_slice(&k.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&k.fsw.to_le_bytes());
    b[4] = k.ftwx;
    b[5] = 0;
    b[6..8].copy_from_slice(&k.last_opcode.to_le_bytes());
    b[8..16].copy_from_slice(&k.last_ip.to_le_bytes());
    b[16..24].copy_from_slice(&k.last_dp.to_le_bytes());
    b[24..28].copy_from_slice(&k.mxcsr.to_le_bytes());
    for (i, st) in k.fpr.iter().enumerate() {
        b[32 + i * 16..48 + i * 16].copy_from_slice(st);
    }
    for (i, x) in k.xmm.iter().enumerate() {
        b[160 + i * 16..176 + i * 16].copy_from_slice(x);
    }
}

/// The FXSAVE image -> KVM FPU.
pub fn fpu_to_kvm(fx: &FpuState) -> kvm_fpu {
    let b = &fx.fxsave;
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
    let mut k = kvm_fpu {
        fcw: u16_at(0),
        fsw: u16_at(2),
        ftwx: b[4],
        last_opcode: u16_at(6),
        last_ip: u64_at(8),
        last_dp: u64_at(16),
        mxcsr: u32_at(24),
        ..Default::default()
    };
    for (i, st) in k.fpr.iter_mut().enumerate() {
        st.copy_from_slice(&b[32 + i * 16..48 + i * 16]);
    }
    for (i, x) in k.xmm.iter_mut().enumerate() {
        x.copy_from_slice(&b[160 + i * 16..176 + i * 16]);
    }
    k
}

/// KVM debug registers -> `dr[0..8]` (4 and 5 stay zero).
pub fn debug_from_kvm(k: &kvm_debugregs) -> [u64; 8] {
    [k.db[0], k.db[1], k.db[2], k.db[3], 0, 0, k.dr6, k.dr7]
}

/// `dr[0..8]` -> KVM debug registers.
pub fn debug_to_kvm(dr: &[u64; 8]) -> kvm_debugregs {
    kvm_debugregs {
        db: [dr[0], dr[1], dr[2], dr[3]],
        dr6: dr[6],
        dr7: dr[7],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Attribute bits that have a KVM field.
    const DEFINED_ATTR: u32 = 0xf | (1 << 4) | (3 << 5) | (1 << 7) | (0xf << 12) | (1 << 16);

    fn kvm_seg() -> impl Strategy<Value = kvm_segment> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<u16>(),
            0u8..16,
            (
                0u8..2,
                0u8..4,
                0u8..2,
                0u8..2,
                0u8..2,
                0u8..2,
                0u8..2,
                0u8..2,
            ),
        )
            .prop_map(
                |(base, limit, selector, type_, (present, dpl, db, s, l, g, avl, unusable))| {
                    kvm_segment {
                        base,
                        limit,
                        selector,
                        type_,
                        present,
                        dpl,
                        db,
                        s,
                        l,
                        g,
                        avl,
                        unusable,
                        padding: 0,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn kvm_segment_round_trips(k in kvm_seg()) {
            prop_assert_eq!(segment_to_kvm(&segment_from_kvm(&k)), k);
        }

        #[test]
        fn sup_segment_round_trips(selector: u16, base: u64, limit: u32, attr: u32) {
            let s = Segment { selector, base, limit, attr: attr & DEFINED_ATTR };
            prop_assert_eq!(segment_from_kvm(&segment_to_kvm(&s)), s);
        }

        #[test]
        fn fpu_round_trips(bytes in proptest::collection::vec(any::<u8>(), 512)) {
            let mut fx = FpuState::default();
            fx.fxsave.copy_from_slice(&bytes);
            // Byte 5 is reserved and bytes 28-31 (MXCSR_MASK) and 416-511 are not in kvm_fpu.
            let mut back = FpuState { fxsave: [0; 512] };
            back.fxsave[28..32].copy_from_slice(&bytes[28..32]);
            fpu_from_kvm(&fpu_to_kvm(&fx), &mut back);
            let mut expect = fx;
            expect.fxsave[5] = 0;
            expect.fxsave[416..].fill(0);
            prop_assert_eq!(&back.fxsave[..], &expect.fxsave[..]);
        }

        #[test]
        fn regs_round_trip(gpr: [u64; 16], rip: u64, rflags: u64) {
            let mut s = VcpuState::reset();
            s.gpr = gpr;
            s.rip = rip;
            s.rflags = rflags;
            let mut k = kvm_regs::default();
            state_to_regs(&s, &mut k, REGS_PARTS);
            let mut back = VcpuState::reset();
            regs_to_state(&k, &mut back, REGS_PARTS);
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn segment_attr_layout_matches_vmx() {
        // A flat 64-bit ring-0 code segment: type 0xb, S, P, L, G -> VMX AR 0xa09b.
        let k = kvm_segment {
            type_: 0xb,
            s: 1,
            present: 1,
            l: 1,
            g: 1,
            limit: 0xffff_ffff,
            selector: 8,
            ..Default::default()
        };
        assert_eq!(segment_from_kvm(&k).attr, 0xa09b);
        let unusable = kvm_segment {
            unusable: 1,
            ..Default::default()
        };
        assert_eq!(segment_from_kvm(&unusable).attr, Segment::UNUSABLE);
        assert_eq!(segment_to_kvm(&segment_from_kvm(&unusable)).unusable, 1);
    }

    #[test]
    fn masked_conversion_leaves_other_parts() {
        let mut k = kvm_sregs {
            cr0: 0x8000_0011,
            ..Default::default()
        };
        k.cs.selector = 0x10;
        k.interrupt_bitmap[1] = 4;
        let mut s = VcpuState::reset();
        let before = s;
        sregs_to_state(&k, &mut s, StateMask::CRS);
        assert_eq!(s.cr0, 0x8000_0011);
        assert_eq!(s.cs, before.cs, "SEGS not asked for");
        s.cs.selector = 0x28;
        state_to_sregs(&s, &mut k, StateMask::SEGS);
        assert_eq!(k.cs.selector, 0x28);
        assert_eq!(k.interrupt_bitmap[1], 4, "pending interrupt bitmap kept");
    }

    #[test]
    fn events_keep_shadow_kind_and_set_flags() {
        let mut k = kvm_vcpu_events::default();
        k.interrupt.shadow = 1; // MOV SS
        let e = events_from_kvm(&k);
        assert!(e.interrupt_shadow);
        events_to_kvm(&e, &mut k);
        assert_eq!(k.interrupt.shadow, 1);
        events_to_kvm(
            &Events {
                nmi_pending: true,
                ..Events::default()
            },
            &mut k,
        );
        assert_eq!(k.interrupt.shadow, 0);
        assert_eq!(k.nmi.pending, 1);
        assert_ne!(k.flags & KVM_VCPUEVENT_VALID_SHADOW, 0);
    }
}
