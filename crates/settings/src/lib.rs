//! The `.vbox` and `VirtualBox.xml` model: load, validate, save.
//!
//! # Layers
//!
//! * [`xml`] — a strict, position-tracking XML 1.0 parser and a *lossless*
//!   tree: every byte (attribute order and quoting, whitespace, comments) is
//!   kept, so an unchanged tree serialises to exactly the input.
//! * [`read`] — the typed [`Machine`] model read out of the tree for every
//!   settings version 1.3 … 1.22 (and "future" ones, read with the newest
//!   rules), with VirtualBox's default applied for everything a file leaves
//!   out (per version: NIC type/cable, VRDE, audio, paravirt, PAE, …; see
//!   `shared/spec/vbox-settings-format.md` §12). Unknown enum values,
//!   out-of-range numbers, duplicate UUIDs/slots/names and missing required
//!   items are [`Error`]s carrying `file:line:column`.
//! * [`write`] — [`write::apply`] writes a changed model back into the tree,
//!   touching only settings whose value differs (everything novabox does not
//!   model stays exactly where it was), raises the settings version only when
//!   a written feature needs it ([`write::required_version`]), then reads
//!   the result back and refuses if it does not equal the requested model.
//! * [`document::MachineFile`] — a `.vbox` on disk: `load`, `save` (VirtualBox's
//!   safe save: `-tmp`, `-prev`, rename; refused while [`lock`] says the
//!   machine runs).
//! * [`registry::GlobalRegistry`] — `VirtualBox.xml` (found by
//!   [`registry::user_home`]: `$VBOX_USER_HOME`, `~/.VirtualBox`,
//!   `$XDG_CONFIG_HOME/VirtualBox`): machines, global media, register and
//!   unregister.
//! * [`resolve`] — media by UUID through the machine's and other registries,
//!   relative locations against the registry's folder, differencing chains.
//! * [`info`] — `showvminfo` in VBoxManage's human and `--machinereadable`
//!   forms and as JSON.
//! * [`create`] — a new machine as `VBoxManage createvm` makes it.
//!
//! # The VMM's view: [`config::MachineConfig`] and the compatibility report
//!
//! ```no_run
//! use settings::{config::{MachineConfig, SupportedFeatures, compatibility_report}, MachineFile};
//! # fn main() -> Result<(), settings::Error> {
//! let file = MachineFile::load(std::path::Path::new("vm.vbox"))?;
//! // Strict: every attached medium must be registered and present on disk.
//! let cfg = MachineConfig::from_file(&file, &[])?;
//! for issue in compatibility_report(&file.machine, &SupportedFeatures::minimal()) {
//!     eprintln!("novabox: warning: {issue}"); // once per unsupported setting
//! }
//! # let _ = cfg; Ok(()) }
//! ```
//!
//! [`config::MachineConfig`] carries, with defaults applied and paths
//! resolved: `memory_mib`, `cpu_count`, `firmware` ([`FirmwareType`]) and
//! `nvram_path`, `chipset`, `acpi`/`ioapic`/`hpet`/`pae`/`long_mode`/`x2apic`,
//! `boot_order` (devices without the `None` positions), `paravirt` and
//! `paravirt_effective` (what VirtualBox exposes for `Default`/`Legacy`),
//! `rtc_utc`, `time_offset_ms`, `uarts` ([`config::UartConfig`]: slot, I/O
//! base, IRQ, UART type and a [`config::UartBackend`]: `Disconnected`,
//! `RawFile(path)`, `UnixSocket { path, server }` for VirtualBox's host pipe,
//! `TcpServer(addr)`, `TcpClient(addr)`, `HostDevice(path)`), `storage`
//! (controllers with attachments whose media are [`resolve::ResolvedMedium`]:
//! leaf path, parent chain, format, type), `shared_folders`, `clipboard`,
//! `dnd`, `graphics`/`vram_mib`/`monitors`, `vrde_ports`/`vrde_address`/`vrde_password`,
//! `nics` (model, parsed MAC, cable, attachment, NAT rules), `pointing`,
//! `keyboard`, `saved_state`, `extra_data`.
//!
//! [`config::compatibility_report`]`(machine, &SupportedFeatures)` lists every
//! setting present in the machine that the VMM does not support, each once,
//! named as the user knows it (the VBoxManage option, e.g. `--firmware`,
//! `--nictype1`, `storagectl "SATA"`), with its value, the effect, and
//! whether the machine needs it (`blocking`, e.g. disks it boots from).
//! [`config::SupportedFeatures::minimal`] describes what `run` supports today;
//! widen its fields as devices land. [`lock::RunLock`] marks a machine as
//! running so settings writers refuse to change it.

pub mod config;
pub mod create;
pub mod document;
pub mod enums;
pub mod error;
pub mod info;
pub mod layout;
pub mod lock;
pub mod model;
pub mod read;
pub mod registry;
pub mod resolve;
pub mod values;
pub mod version;
pub mod write;
pub mod xml;

pub use document::MachineFile;
pub use enums::*;
pub use error::{Error, ErrorKind, Result};
pub use model::*;
pub use values::Uuid;
pub use version::{SettingsVersion, VersionString};
