//! glue: builds a VM from a description (command-line options or a `.vbox`), wires the
//! PC platform's device models to the buses and interrupt controllers, loads firmware or a
//! kernel, and runs the machine's lifecycle (VirtualBox: the PDM glue and the Console).

pub mod boot;
