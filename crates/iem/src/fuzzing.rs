//! Random code on the interpreter: the harness behind the `iem_code` fuzz target and the
//! random-code test. A guest is hostile, so whatever bytes it executes, in whatever mode,
//! the interpreter must end in an architectural outcome (an exception delivered through
//! the IDT, a triple fault, an exit) and never panic the host.

use crate::IemVcpu;
use pgm::{GuestMemory, MemoryLayout};
use std::sync::Arc;
use sup::{IoDirection, Segment, Vcpu, VcpuState, VmExit};

/// Where the random code is loaded (and where the vCPU starts).
pub const CODE: u64 = 0x10_0000;
/// Bytes of code taken from the input (the rest of the input fills a data page).
pub const CODE_BYTES: usize = 4096;
/// Where the random data page is loaded (also what RBX/RSI/RDI point at).
pub const DATA: u64 = 0x20_0000;
/// Exception and interrupt handlers all go here: `hlt` then an interrupt return.
const HANDLER: u64 = 0x5000;
const GDT: u64 = 0x1000;
const IDT: u64 = 0x2000;
const PML4: u64 = 0x10000;
const STACK: u64 = 0x8_0000;

/// How a random-code run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The instruction budget ran out (the code loops or keeps faulting).
    Budget,
    /// Triple fault or shutdown.
    Shutdown,
    /// The engine refused to go on, with its reason.
    Unhandled(String),
    /// `run` returned an error.
    Error(String),
}

/// The CPU mode the random code starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real mode, IVT at 0.
    Real,
    /// 32-bit protected mode, flat segments, no paging.
    Protected32,
    /// 64-bit long mode, identity-mapped with 2 MiB pages.
    Long,
}

/// Run `data` as code: byte 0 picks the mode, bytes 1..65 seed the registers, the next
/// [`CODE_BYTES`] are the code, what is left fills the data page. At most `runs` calls of
/// `run`, each limited to `slice` instructions.
pub fn run_random_code(data: &[u8], runs: u32, slice: u64) -> Outcome {
    let mode = match data.first().copied().unwrap_or(0) % 3 {
        0 => Mode::Real,
        1 => Mode::Protected32,
        _ => Mode::Long,
    };
    let seed = data.get(1..65).unwrap_or_default();
    let code = data.get(65..).unwrap_or_default();
    let (code, rest) = code.split_at(code.len().min(CODE_BYTES));
    run_in_mode(mode, seed, code, rest, runs, slice)
}

fn le64(b: &[u8], i: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(i * 8..i * 8 + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// Run `code` in `mode` (see [`run_random_code`]).
pub fn run_in_mode(
    mode: Mode,
    seed: &[u8],
    code: &[u8],
    data: &[u8],
    runs: u32,
    slice: u64,
) -> Outcome {
    let mem = match MemoryLayout::pc(4 << 20).and_then(GuestMemory::new) {
        Ok(m) => Arc::new(m),
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let setup = (|| -> pgm::Result<VcpuState> {
        mem.write(CODE, code)?;
        mem.write(DATA, &data[..data.len().min(4096)])?;
        let mut s = VcpuState::reset();
        for (i, r) in s.gpr.iter_mut().enumerate() {
            *r = le64(seed, i);
        }
        match mode {
            Mode::Real => {
                // hlt; iret
                mem.write(HANDLER, &[0xf4, 0xcf])?;
                for v in 0..256u64 {
                    mem.write_le::<4>(v * 4, HANDLER)?;
                }
                // The code runs at CS=0x1000 (linear 0x10000 + IP); put it where IP 0 is.
                mem.write(0x1_0000, code)?;
                s.cs = Segment::real_mode(0x1000, 0xb);
                s.rip = 0;
                s.gpr[4] = 0x7000;
            }
            Mode::Protected32 => {
                mem.write(HANDLER, &[0xf4, 0xcf])?;
                write_gdt(&mem)?;
                for v in 0..256u64 {
                    // 32-bit interrupt gate to 0x18:HANDLER.
                    let lo = (HANDLER & 0xffff) | (0x18 << 16);
                    let hi = (HANDLER & 0xffff_0000) | 0x8e00;
                    mem.write_le::<8>(IDT + v * 8, lo | (hi << 32))?;
                }
                let code_seg = Segment {
                    selector: 0x18,
                    base: 0,
                    limit: 0xffff_ffff,
                    attr: 0xb | Segment::S | Segment::P | Segment::DB | Segment::G,
                };
                set_flat(&mut s, code_seg);
                s.idtr.limit = 256 * 8 - 1;
                s.cr0 = 0x11;
                s.rip = CODE;
                s.gpr[4] = STACK;
            }
            Mode::Long => {
                // hlt; iretq
                mem.write(HANDLER, &[0xf4, 0x48, 0xcf])?;
                write_gdt(&mem)?;
                for v in 0..256u64 {
                    let lo = (HANDLER & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32);
                    mem.write_le::<8>(IDT + v * 16, lo | ((HANDLER >> 16) << 48))?;
                    mem.write_le::<8>(IDT + v * 16 + 8, HANDLER >> 32)?;
                }
                // Identity map of the first GiB with 2 MiB pages.
                mem.write_le::<8>(PML4, (PML4 + 0x1000) | 7)?;
                mem.write_le::<8>(PML4 + 0x1000, (PML4 + 0x2000) | 7)?;
                for i in 0..512u64 {
                    mem.write_le::<8>(PML4 + 0x2000 + i * 8, (i << 21) | 0x87)?;
                }
                let code_seg = Segment {
                    selector: 8,
                    base: 0,
                    limit: 0xffff_ffff,
                    attr: 0xb | Segment::S | Segment::P | Segment::L | Segment::G,
                };
                set_flat(&mut s, code_seg);
                s.idtr.limit = 256 * 16 - 1;
                s.cr0 = 0x8000_0011;
                s.cr3 = PML4;
                s.cr4 = 0x20 | (1 << 9);
                s.efer = 0x500 | 1 | (1 << 11);
                s.rip = CODE;
                s.gpr[4] = STACK;
            }
        }
        // Point the usual pointer registers at the data page so memory operands hit RAM
        // as often as they miss it.
        for r in [3usize, 6, 7] {
            if s.gpr[r] & 1 == 0 {
                s.gpr[r] = DATA + (s.gpr[r] & 0xff8);
            }
        }
        Ok(s)
    })();
    let state = match setup {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let mut vcpu = IemVcpu::from_state(0, mem, state);
    vcpu.set_slice(slice);
    for _ in 0..runs {
        match vcpu.run() {
            Ok(VmExit::Io { dir, .. }) => {
                if dir == IoDirection::In {
                    vcpu.io_data().fill(0xff);
                }
            }
            Ok(VmExit::Mmio { write, .. }) => {
                if !write {
                    vcpu.mmio_data().fill(0xff);
                }
            }
            Ok(VmExit::Shutdown) | Ok(VmExit::Reset) => return Outcome::Shutdown,
            Ok(VmExit::Unhandled(why)) => return Outcome::Unhandled(why),
            Ok(_) => {}
            Err(e) => return Outcome::Error(e.to_string()),
        }
    }
    // Whatever the code did, the state must still be readable and consistent enough to
    // move to another engine.
    let _ = vcpu.to_state();
    Outcome::Budget
}

/// GDT: null, 64-bit code (0x08), data (0x10), 32-bit code (0x18), 16-bit code (0x20).
fn write_gdt(mem: &GuestMemory) -> pgm::Result<()> {
    let gdt: [u64; 5] = [
        0,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00cf_9b00_0000_ffff,
        0x0000_9b00_0000_ffff,
    ];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_le::<8>(GDT + i as u64 * 8, *d)?;
    }
    Ok(())
}

fn set_flat(s: &mut VcpuState, code: Segment) {
    let data = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0x3 | Segment::S | Segment::P | Segment::DB | Segment::G,
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.fs = data;
    s.gs = data;
    s.gdtr.base = GDT;
    s.gdtr.limit = 5 * 8 - 1;
    s.idtr.base = IDT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlt_loop_runs_out_of_budget_in_every_mode() {
        // `hlt; jmp -3`: each run stops at the HLT exit, so all runs are used.
        for mode in [Mode::Real, Mode::Protected32, Mode::Long] {
            let code = [0xf4, 0xeb, 0xfd];
            assert_eq!(
                run_in_mode(mode, &[], &code, &[], 5, 1000),
                Outcome::Budget,
                "{mode:?}"
            );
        }
    }

    #[test]
    fn ud2_reaches_the_handler_not_a_shutdown() {
        // UD2 raises #UD; the handler halts and returns to UD2 again: never a shutdown.
        for mode in [Mode::Real, Mode::Protected32, Mode::Long] {
            assert_eq!(
                run_in_mode(mode, &[], &[0x0f, 0x0b], &[], 20, 1000),
                Outcome::Budget,
                "{mode:?}"
            );
        }
    }

    #[test]
    fn a_broken_idt_ends_in_a_triple_fault() {
        // LIDT from a zeroed descriptor (limit 0), then INT3: #GP, #DF, triple fault.
        // lidt [DATA]: 0f 01 1c 25 <disp32> in long/protected mode.
        let d = (DATA as u32).to_le_bytes();
        for mode in [Mode::Protected32, Mode::Long] {
            let code = [0x0f, 0x01, 0x1c, 0x25, d[0], d[1], d[2], d[3], 0xcc];
            assert_eq!(
                run_in_mode(mode, &[], &code, &[0u8; 16], 20, 1000),
                Outcome::Shutdown,
                "{mode:?}"
            );
        }
    }
}
