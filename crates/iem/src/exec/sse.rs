//! SSE/SSE2 (and MMX) instructions operating on the XMM/MM registers in the FXSAVE image.

use crate::cpu::{Cpu, R};
use iced_x86::Instruction;

/// Execute an SSE/SSE2/MMX instruction; None when `ins` is not one.
pub(crate) fn exec(_c: &mut Cpu, _ins: &Instruction) -> Option<R<()>> {
    None
}
