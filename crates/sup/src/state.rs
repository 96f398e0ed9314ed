//! Engine-neutral vCPU state and the transfer mask.
//!
//! The layout follows what both engines need: KVM's `kvm_regs`/`kvm_sregs`/`kvm_fpu` map
//! onto it field by field, and the interpreter works on it directly. Segment attributes use
//! the VMX "access rights" encoding (type, S, DPL, P, AVL, L, D/B, G, unusable), which is
//! also what KVM exposes split into fields.

bitflags::bitflags! {
    /// Which parts of [`VcpuState`] are valid / were changed (NOVA: the MTD).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct StateMask: u32 {
        /// RAX..R15.
        const GPRS = 1 << 0;
        /// RIP.
        const RIP = 1 << 1;
        /// RFLAGS.
        const RFLAGS = 1 << 2;
        /// CS, DS, ES, FS, GS, SS (selector, base, limit, attributes).
        const SEGS = 1 << 3;
        /// TR and LDTR.
        const SYS_SEGS = 1 << 4;
        /// GDTR and IDTR.
        const DTABLES = 1 << 5;
        /// CR0, CR2, CR3, CR4, CR8 and EFER.
        const CRS = 1 << 6;
        /// APIC base MSR.
        const APIC_BASE = 1 << 7;
        /// The MSRs in [`Msrs`].
        const MSRS = 1 << 8;
        /// x87/MMX/SSE state (the FXSAVE image).
        const FPU = 1 << 9;
        /// Debug registers.
        const DEBUG = 1 << 10;
        /// Interrupt shadow, pending events.
        const EVENTS = 1 << 11;
        /// Time-stamp counter.
        const TSC = 1 << 12;
        /// Everything.
        const ALL = (1 << 13) - 1;
    }
}

/// A segment register (or TR/LDTR) in its cached, descriptor-loaded form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// The visible selector.
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Limit, already scaled by G (byte granular, 0..=0xffff_ffff).
    pub limit: u32,
    /// Access rights: bits 0-3 type, 4 S, 5-6 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G, 16 unusable.
    pub attr: u32,
}

impl Segment {
    /// Attribute bit: present.
    pub const P: u32 = 1 << 7;
    /// Attribute bit: code/data (not system).
    pub const S: u32 = 1 << 4;
    /// Attribute bit: 64-bit code.
    pub const L: u32 = 1 << 13;
    /// Attribute bit: default operation size 32.
    pub const DB: u32 = 1 << 14;
    /// Attribute bit: granularity.
    pub const G: u32 = 1 << 15;
    /// Attribute bit: unusable (null selector loaded).
    pub const UNUSABLE: u32 = 1 << 16;

    /// A real-mode segment for `selector` (base = selector * 16, 64 KiB limit).
    pub fn real_mode(selector: u16, type_: u32) -> Self {
        Segment {
            selector,
            base: u64::from(selector) << 4,
            limit: 0xffff,
            attr: type_ | Self::S | Self::P,
        }
    }

    /// Descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }

    /// Segment type field (4 bits).
    pub fn type_(&self) -> u32 {
        self.attr & 0xf
    }

    /// Build the attribute word from the two descriptor dwords' flag bits (bits 8-23 of the
    /// high dword).
    pub fn attr_from_descriptor(high: u32) -> u32 {
        (high >> 8) & 0xf0ff
    }
}

/// GDTR / IDTR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescTable {
    /// Linear base.
    pub base: u64,
    /// Limit (bytes - 1).
    pub limit: u16,
}

/// The MSRs every engine saves and restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Msrs {
    /// IA32_SYSENTER_CS.
    pub sysenter_cs: u64,
    /// IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// SFMASK.
    pub fmask: u64,
    /// KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// TSC_AUX (RDTSCP / RDPID).
    pub tsc_aux: u64,
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
}

/// The FXSAVE image: x87, MMX and SSE state (512 bytes, the architectural layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuState {
    /// The raw FXSAVE area.
    pub fxsave: [u8; 512],
}

impl Default for FpuState {
    fn default() -> Self {
        let mut fxsave = [0u8; 512];
        // FCW = 0x037f after FNINIT / reset.
        fxsave[0] = 0x7f;
        fxsave[1] = 0x03;
        // MXCSR = 0x1f80 at reset.
        fxsave[24] = 0x80;
        fxsave[25] = 0x1f;
        // MXCSR_MASK: the bits our engines implement.
        fxsave[28] = 0xff;
        fxsave[29] = 0xff;
        FpuState { fxsave }
    }
}

/// Pending events and the interrupt shadow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    /// Interrupts are blocked for one instruction (after STI or MOV SS / POP SS).
    pub interrupt_shadow: bool,
    /// NMIs are blocked (inside an NMI handler until IRET).
    pub nmi_masked: bool,
    /// An NMI is pending delivery.
    pub nmi_pending: bool,
}

/// The architectural state of one vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuState {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15 (encoding order).
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// Flags.
    pub rflags: u64,
    /// ES.
    pub es: Segment,
    /// CS.
    pub cs: Segment,
    /// SS.
    pub ss: Segment,
    /// DS.
    pub ds: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// Task register.
    pub tr: Segment,
    /// LDT register.
    pub ldtr: Segment,
    /// GDTR.
    pub gdtr: DescTable,
    /// IDTR.
    pub idtr: DescTable,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (task priority, bits 3:0 = TPR[7:4]).
    pub cr8: u64,
    /// EFER.
    pub efer: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// Other MSRs.
    pub msrs: Msrs,
    /// x87/SSE.
    pub fpu: FpuState,
    /// DR0-DR3, DR6, DR7 (indexes 0-3, 6, 7; 4 and 5 unused).
    pub dr: [u64; 8],
    /// Events.
    pub events: Events,
    /// Time-stamp counter.
    pub tsc: u64,
}

/// Register indexes into [`VcpuState::gpr`].
pub mod reg {
    #![allow(missing_docs)]
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// CR0 bits.
pub mod cr0 {
    #![allow(missing_docs)]
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

/// EFER bits.
pub mod efer {
    #![allow(missing_docs)]
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
}

impl Default for VcpuState {
    fn default() -> Self {
        Self::reset()
    }
}

impl VcpuState {
    /// The x86 power-on / RESET state: real mode, CS:IP = F000:FFF0 with CS base
    /// 0xFFFF0000 so the first fetch comes from the top of the 4 GiB space.
    pub fn reset() -> Self {
        let data = Segment::real_mode(0, 3);
        let mut cs = Segment::real_mode(0xf000, 0xb);
        cs.base = 0xffff_0000;
        let mut gpr = [0u64; 16];
        // EDX holds the processor signature after reset (family 6 here).
        gpr[reg::RDX] = 0x0000_0600;
        VcpuState {
            gpr,
            rip: 0xfff0,
            rflags: 0x2,
            es: data,
            cs,
            ss: data,
            ds: data,
            fs: data,
            gs: data,
            tr: Segment {
                selector: 0,
                base: 0,
                limit: 0xffff,
                attr: 0xb | Segment::P,
            },
            ldtr: Segment {
                selector: 0,
                base: 0,
                limit: 0xffff,
                attr: 0x2 | Segment::P,
            },
            gdtr: DescTable {
                base: 0,
                limit: 0xffff,
            },
            idtr: DescTable {
                base: 0,
                limit: 0xffff,
            },
            cr0: cr0::ET | cr0::CD | cr0::NW,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            apic_base: 0xfee0_0000 | (1 << 11) | (1 << 8),
            msrs: Msrs {
                pat: 0x0007_0406_0007_0406,
                misc_enable: 1,
                ..Msrs::default()
            },
            fpu: FpuState::default(),
            dr: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            events: Events::default(),
            tsc: 0,
        }
    }

    /// The state after INIT followed by a Startup IPI with `vector`: real mode at
    /// `vector * 0x1000`. APIC base keeps the BSP bit clear.
    pub fn after_sipi(vector: u8) -> Self {
        let mut s = Self::reset();
        s.cs = Segment::real_mode(u16::from(vector) << 8, 0xb);
        s.rip = 0;
        s.apic_base &= !(1 << 8);
        s
    }

    /// True in long mode (EFER.LMA).
    pub fn long_mode(&self) -> bool {
        self.efer & efer::LMA != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_fetches_from_top_of_4g() {
        let s = VcpuState::reset();
        assert_eq!(s.cs.base + s.rip, 0xffff_fff0);
        assert_eq!(s.rflags, 2);
    }

    #[test]
    fn sipi_starts_at_vector_page() {
        let s = VcpuState::after_sipi(0x9a);
        assert_eq!(s.cs.base + s.rip, 0x9a000);
        assert_eq!(s.cs.selector, 0x9a00);
    }

    #[test]
    fn descriptor_attributes() {
        // A flat 64-bit code descriptor high dword: 0x00af9b00.
        let a = Segment::attr_from_descriptor(0x00af_9b00);
        assert_eq!(a & 0xf, 0xb);
        assert!(a & Segment::L != 0 && a & Segment::G != 0 && a & Segment::P != 0);
        assert_eq!(a & Segment::DB, 0);
    }
}
