//! Machine assembly: the PC platform as VirtualBox presents it with the PIIX3 chipset.

use crate::engine::EngineChoice;

/// How the machine starts.
pub enum Boot {
    /// Direct kernel boot.
    Kernel {
        /// bzImage.
        kernel: Vec<u8>,
        /// initrd.
        initrd: Option<Vec<u8>>,
        /// Command line.
        cmdline: String,
    },
    /// Firmware (SeaBIOS) at the top of the 4 GiB space.
    Firmware {
        /// The ROM image.
        image: Vec<u8>,
    },
}

/// Everything needed to build a VM.
pub struct MachineConfig {
    /// RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u32,
    /// Engine.
    pub engine: EngineChoice,
    /// Boot method.
    pub boot: Boot,
    /// Copy port 0x402 output to stderr.
    pub debugcon: bool,
    /// RTC in UTC.
    pub rtc_utc: bool,
    /// COM1 on stdin/stdout.
    pub serial_stdio: bool,
}

/// Errors building or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Not wired yet.
    #[error("{0}")]
    Other(String),
}

/// A built machine.
pub struct Machine;

/// Build and run a machine until it stops.
pub fn run_machine(_cfg: MachineConfig) -> Result<hm::StopReason, MachineError> {
    Err(MachineError::Other("machine assembly is being written".into()))
}
