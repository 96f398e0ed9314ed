//! Fuzz the direct-boot kernel loader's file parsing: the bzImage payload unpacker (xz,
//! gzip) and the vmlinux ELF parser, on arbitrary bytes. A parsed ELF's segments must lie
//! inside the file and must not wrap.
#![no_main]

use glue::boot::vmlinux::{unpack, Elf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Elf::parse(data) {
        for s in &e.segments {
            assert!(s.offset + s.file <= data.len() as u64);
            assert!(s.file <= s.mem);
            assert!(s.paddr.checked_add(s.mem).is_some());
        }
        let _ = e.span();
    }
    if let Ok(v) = unpack(data) {
        assert!(v.len() as u64 <= glue::boot::vmlinux::MAX_VMLINUX);
        let _ = Elf::parse(&v);
    }
});
