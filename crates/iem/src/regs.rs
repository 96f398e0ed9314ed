//! Mapping iced-x86 registers onto the engine-neutral register file.

use iced_x86::Register;

/// How a general register name maps onto the 16 64-bit GPRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gpr {
    /// Low byte of GPR n.
    Low8(usize),
    /// Bits 8-15 of GPR n (AH, CH, DH, BH).
    High8(usize),
    /// Low 16 bits.
    W16(usize),
    /// Low 32 bits (writes zero-extend).
    D32(usize),
    /// All 64 bits.
    Q64(usize),
}

/// Decode a general-purpose register name; None for everything else.
#[inline]
pub(crate) fn gpr(r: Register) -> Option<Gpr> {
    let n = r as usize;
    let al = Register::AL as usize;
    if !(al..=Register::R15 as usize).contains(&n) {
        return None;
    }
    let i = n - al;
    Some(match i {
        0..=3 => Gpr::Low8(i),
        4..=7 => Gpr::High8(i - 4),
        8..=19 => Gpr::Low8(i - 4),
        20..=35 => Gpr::W16(i - 20),
        36..=51 => Gpr::D32(i - 36),
        _ => Gpr::Q64(i - 52),
    })
}

/// Segment register index (ES=0, CS, SS, DS, FS, GS) for a segment register name.
#[inline]
pub(crate) fn sreg(r: Register) -> Option<usize> {
    let n = r as usize;
    let es = Register::ES as usize;
    (es..es + 6).contains(&n).then(|| n - es)
}

/// Index of an XMM register (0-15).
#[inline]
pub(crate) fn xmm(r: Register) -> Option<usize> {
    let n = r as usize;
    let b = Register::XMM0 as usize;
    (b..b + 16).contains(&n).then(|| n - b)
}

/// Index of an MMX register (0-7).
#[inline]
pub(crate) fn mmx(r: Register) -> Option<usize> {
    let n = r as usize;
    let b = Register::MM0 as usize;
    (b..b + 8).contains(&n).then(|| n - b)
}

/// Index of an x87 stack register ST(i).
#[inline]
pub(crate) fn st(r: Register) -> Option<usize> {
    let n = r as usize;
    let b = Register::ST0 as usize;
    (b..b + 8).contains(&n).then(|| n - b)
}

/// Index of a control register.
#[inline]
pub(crate) fn creg(r: Register) -> Option<usize> {
    let n = r as usize;
    let b = Register::CR0 as usize;
    (b..b + 16).contains(&n).then(|| n - b)
}

/// Index of a debug register.
#[inline]
pub(crate) fn dreg(r: Register) -> Option<usize> {
    let n = r as usize;
    let b = Register::DR0 as usize;
    (b..b + 16).contains(&n).then(|| n - b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_mapping() {
        assert_eq!(gpr(Register::AL), Some(Gpr::Low8(0)));
        assert_eq!(gpr(Register::BH), Some(Gpr::High8(3)));
        assert_eq!(gpr(Register::SPL), Some(Gpr::Low8(4)));
        assert_eq!(gpr(Register::R15L), Some(Gpr::Low8(15)));
        assert_eq!(gpr(Register::AX), Some(Gpr::W16(0)));
        assert_eq!(gpr(Register::R9W), Some(Gpr::W16(9)));
        assert_eq!(gpr(Register::ESP), Some(Gpr::D32(4)));
        assert_eq!(gpr(Register::R15D), Some(Gpr::D32(15)));
        assert_eq!(gpr(Register::RAX), Some(Gpr::Q64(0)));
        assert_eq!(gpr(Register::R15), Some(Gpr::Q64(15)));
        assert_eq!(gpr(Register::ES), None);
        assert_eq!(sreg(Register::GS), Some(5));
        assert_eq!(sreg(Register::SS), Some(2));
        assert_eq!(xmm(Register::XMM15), Some(15));
        assert_eq!(creg(Register::CR4), Some(4));
        assert_eq!(dreg(Register::DR7), Some(7));
        assert_eq!(st(Register::ST3), Some(3));
        assert_eq!(mmx(Register::MM7), Some(7));
    }
}
