//! glue: builds a VM from a description (command-line options or a `.vbox`), wires the
//! PC platform's device models to the buses and interrupt controllers, loads firmware or a
//! kernel, and runs the machine's lifecycle (VirtualBox: the PDM glue and the Console).

pub mod boot;
pub mod control;
pub mod engine;
pub mod firmware;
mod machine;
pub mod serial;
pub mod wiring_display;
pub mod wiring_guest_additions;
pub mod wiring_storage;

pub use engine::EngineChoice;
pub use machine::{
    run_machine, Boot, Machine, MachineConfig, MachineError, StopHandle, WiringContext,
};
pub use serial::Console;

/// The most vCPUs a machine may have (xAPIC IDs are 8 bits; the MADT lists each).
pub const MAX_CPUS: u32 = 32;
