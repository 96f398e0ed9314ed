//! VirtualBox-compatible device models. Each model is a state machine behind the pdm device
//! API: register reads and writes in, IRQ line changes and timer arms out. Models depend on
//! pdm (and pgm for DMA) only, never on a hypervisor, so every one is unit-tested with an
//! injected clock.

// Interrupt controllers and timers.
pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod rtc;

// Platform: chipset, firmware interfaces, legacy I/O.
pub mod acpi;
pub mod fw_cfg;
pub mod i8042;
pub mod pci;
pub mod post;
pub mod uart;

// Display.
pub mod vga;

// Storage controllers.
pub mod storage;

// Guest Additions.
pub mod vmmdev;
