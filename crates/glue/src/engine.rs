//! Choosing the execution engine (`--engine auto|kvm|interpreter`).

use std::sync::Arc;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// KVM when the host CPU has VT-x/AMD-V and /dev/kvm works, else the interpreter.
    #[default]
    Auto,
    /// KVM, or fail.
    Kvm,
    /// The software interpreter.
    Interpreter,
}

impl std::str::FromStr for EngineChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "interpreter" | "iem" => Ok(Self::Interpreter),
            _ => Err(format!(
                "unknown engine \"{s}\" (expected auto, kvm or interpreter)"
            )),
        }
    }
}

/// Errors choosing an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// KVM asked for but not usable.
    #[error("--engine kvm: {0}")]
    KvmUnavailable(String),
}

/// The chosen engine and why.
pub struct Engine {
    /// The backend.
    pub hypervisor: Arc<dyn sup::Hypervisor>,
    /// One line saying what was chosen and why.
    pub reason: String,
    /// The CPUID leaves the engine can run (the policy starts from these).
    pub base_cpuid: Vec<sup::CpuidEntry>,
    /// Guest TSC frequency in kHz (0 when unknown).
    pub tsc_khz: u32,
}

fn kvm_engine(k: sup::kvm::KvmHypervisor, reason: String) -> Result<Engine, EngineError> {
    let base_cpuid = k
        .supported_cpuid()
        .map_err(|e| EngineError::KvmUnavailable(e.to_string()))?;
    Ok(Engine {
        hypervisor: Arc::new(k),
        reason,
        base_cpuid,
        tsc_khz: 0,
    })
}

fn interpreter_engine(reason: String) -> Engine {
    Engine {
        hypervisor: Arc::new(iem::Interpreter::new()),
        reason,
        base_cpuid: iem::default_cpuid(),
        tsc_khz: (iem::DEFAULT_TSC_HZ / 1000) as u32,
    }
}

/// Pick the engine.
pub fn choose(choice: EngineChoice) -> Result<Engine, EngineError> {
    match choice {
        EngineChoice::Kvm => {
            let kvm = sup::kvm::KvmHypervisor::new()
                .map_err(|e| EngineError::KvmUnavailable(e.to_string()))?;
            kvm_engine(kvm, "kvm (requested)".into())
        }
        EngineChoice::Interpreter => Ok(interpreter_engine("interpreter (requested)".into())),
        EngineChoice::Auto => {
            if !sup::host_has_hw_virt() {
                return Ok(interpreter_engine(
                    "interpreter (the host CPU has no VT-x/AMD-V)".into(),
                ));
            }
            match sup::kvm::KvmHypervisor::new() {
                Ok(k) => kvm_engine(k, "kvm (hardware virtualisation available)".into()),
                Err(e) => Ok(interpreter_engine(format!(
                    "interpreter (KVM unusable: {e})"
                ))),
            }
        }
    }
}
