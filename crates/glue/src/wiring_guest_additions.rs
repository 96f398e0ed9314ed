//! Wiring of the guest additions devices into the machine (being written).

use crate::machine::{MachineError, WiringContext};

/// What the machine has of this kind.
#[derive(Debug, Default)]
pub struct Config {}

/// Plug the devices into the machine.
pub fn attach(_cfg: &Config, _ctx: &mut WiringContext<'_>) -> Result<(), MachineError> {
    Ok(())
}
