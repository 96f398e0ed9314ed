//! Disk images: VDI, VMDK, VHD, raw, ISO, differencing chains (VirtualBox: VD)
