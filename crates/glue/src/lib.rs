//! Machine assembly and VM lifecycle (VirtualBox: PDM glue + Console): builds a VM from settings
