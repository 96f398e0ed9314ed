//! Ways to start a guest: the x86-64 Linux boot protocol (direct kernel boot) and firmware.

pub mod e820;
pub mod linux;
pub mod unpack_cache;
pub mod vmlinux;
