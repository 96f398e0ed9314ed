//! VirtualBox-compatible device models: the PC platform, storage, display, input, VMMDev
