//! Lazy evaluation of the arithmetic flags (CF, PF, AF, ZF, SF, OF).
//!
//! Most instructions that set flags are followed by one that overwrites them before any
//! reads them, so ALU instructions only record their operands and result; a flag is computed
//! when a Jcc/SETcc/PUSHF/etc. asks for it.

/// RFLAGS bits.
pub(crate) mod fl {
    pub const CF: u64 = 1 << 0;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic flags.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Which operation produced the current flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Flags are stored explicitly in `res`.
    Explicit,
    /// res = a + b.
    Add,
    /// res = a + b + cin.
    Adc,
    /// res = a - b.
    Sub,
    /// res = a - b - cin.
    Sbb,
    /// AND/OR/XOR/TEST: CF=OF=0, AF=0.
    Logic,
    /// res = a + 1, CF preserved (in `cin`).
    Inc,
    /// res = a - 1, CF preserved (in `cin`).
    Dec,
}

/// Recorded flag state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lazy {
    pub op: Op,
    /// Operand size in bits (8, 16, 32, 64).
    pub bits: u32,
    pub a: u64,
    pub b: u64,
    pub res: u64,
    /// Carry-in (ADC/SBB) or the preserved CF (INC/DEC).
    pub cin: bool,
}

impl Default for Lazy {
    fn default() -> Self {
        Lazy {
            op: Op::Explicit,
            bits: 64,
            a: 0,
            b: 0,
            res: 0,
            cin: false,
        }
    }
}

#[inline(always)]
fn mask(bits: u32) -> u64 {
    // Branch-free: bits is 8, 16, 32 or 64 (clamped so a bad value cannot overflow).
    u64::MAX >> (64 - bits.clamp(1, 64))
}

#[inline]
fn sign(bits: u32) -> u64 {
    1u64 << (bits - 1)
}

impl Lazy {
    /// Record an operation.
    #[inline]
    pub fn set(&mut self, op: Op, bits: u32, a: u64, b: u64, res: u64) {
        self.op = op;
        self.bits = bits;
        self.a = a;
        self.b = b;
        self.res = res;
    }

    /// Store explicit arithmetic flag values.
    #[inline]
    pub fn set_explicit(&mut self, flags: u64) {
        self.op = Op::Explicit;
        self.res = flags & fl::ARITH;
    }

    /// Carry flag.
    #[inline]
    pub fn cf(&self) -> bool {
        match self.op {
            Op::Explicit => self.res & fl::CF != 0,
            Op::Logic => false,
            Op::Inc | Op::Dec => self.cin,
            op => {
                let m = mask(self.bits);
                let (a, b, r) = (self.a & m, self.b & m, self.res & m);
                match op {
                    Op::Add => r < a,
                    Op::Adc => r < a || (self.cin && r == a),
                    Op::Sub => a < b,
                    _ => a < b || (self.cin && b == m) || (self.cin && a == b),
                }
            }
        }
    }

    /// Zero flag.
    #[inline]
    pub fn zf(&self) -> bool {
        match self.op {
            Op::Explicit => self.res & fl::ZF != 0,
            _ => self.res & mask(self.bits) == 0,
        }
    }

    /// Sign flag.
    #[inline]
    pub fn sf(&self) -> bool {
        match self.op {
            Op::Explicit => self.res & fl::SF != 0,
            _ => self.res & sign(self.bits) != 0,
        }
    }

    /// Overflow flag.
    #[inline]
    pub fn of(&self) -> bool {
        let s = sign(self.bits);
        let (a, b, r) = (self.a, self.b, self.res);
        match self.op {
            Op::Explicit => self.res & fl::OF != 0,
            Op::Add | Op::Adc => (a ^ r) & (b ^ r) & s != 0,
            Op::Sub | Op::Sbb => (a ^ b) & (a ^ r) & s != 0,
            Op::Logic => false,
            Op::Inc => r & mask(self.bits) == s,
            Op::Dec => r & mask(self.bits) == s - 1,
        }
    }

    /// Auxiliary carry flag.
    #[inline]
    pub fn af(&self) -> bool {
        match self.op {
            Op::Explicit => self.res & fl::AF != 0,
            Op::Logic => false,
            _ => (self.a ^ self.b ^ self.res) & 0x10 != 0,
        }
    }

    /// Parity flag (even parity of the low byte).
    #[inline]
    pub fn pf(&self) -> bool {
        match self.op {
            Op::Explicit => self.res & fl::PF != 0,
            _ => (self.res as u8).count_ones().is_multiple_of(2),
        }
    }

    /// All six arithmetic flags as RFLAGS bits.
    pub fn get(&self) -> u64 {
        if self.op == Op::Explicit {
            return self.res & fl::ARITH;
        }
        let mut f = 0;
        if self.cf() {
            f |= fl::CF;
        }
        if self.pf() {
            f |= fl::PF;
        }
        if self.af() {
            f |= fl::AF;
        }
        if self.zf() {
            f |= fl::ZF;
        }
        if self.sf() {
            f |= fl::SF;
        }
        if self.of() {
            f |= fl::OF;
        }
        f
    }

    /// Evaluate a condition code (the low nibble of Jcc/SETcc/CMOVcc opcodes).
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        let r = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        r ^ (cc & 1 != 0)
    }
}

/// Parity of a byte, as PF reports it.
pub(crate) fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

/// Flags of a result for which only ZF, SF and PF are meaningful (others given).
pub(crate) fn szp(bits: u32, res: u64) -> u64 {
    let mut f = 0;
    if res & mask(bits) == 0 {
        f |= fl::ZF;
    }
    if res & sign(bits) != 0 {
        f |= fl::SF;
    }
    if parity(res) {
        f |= fl::PF;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_flags() {
        let mut l = Lazy::default();
        l.set(Op::Sub, 8, 0x10, 0x20, 0xf0);
        assert!(l.cf());
        assert!(!l.zf());
        assert!(l.sf());
        assert!(!l.of());
        l.set(Op::Sub, 8, 0x80, 0x01, 0x7f);
        assert!(l.of());
        assert!(!l.cf());
        assert!(l.af());
    }

    #[test]
    fn sbb_with_borrow_all_ones() {
        // 5 - 0xff - 1 (8-bit) = 5 with borrow.
        let mut l = Lazy {
            cin: true,
            ..Lazy::default()
        };
        l.set(Op::Sbb, 8, 5, 0xff, 5u64.wrapping_sub(0x100));
        assert!(l.cf());
    }

    #[test]
    fn conditions() {
        let mut l = Lazy::default();
        l.set(Op::Sub, 32, 3, 5, 3u64.wrapping_sub(5));
        assert!(l.cond(0x2)); // b
        assert!(l.cond(0xc)); // l
        assert!(!l.cond(0x4)); // e
        assert!(l.cond(0x5)); // ne
        assert!(!l.cond(0xf)); // g
    }
}
