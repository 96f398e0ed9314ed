//! Fuzz the VMMDev request dispatcher: arbitrary requests (including HGCM calls with page
//! lists and embedded buffers) submitted through the request port of a real guest memory.
#![no_main]

use devices::vmmdev::{VmmDev, VmmDevConfig};
use libfuzzer_sys::fuzz_target;
use pgm::{GuestMemory, MemoryLayout};
use std::sync::Arc;

const REQ: u64 = 0x10_0000;

fn put(mem: &GuestMemory, gpa: u64, words: &[(u64, u32)]) {
    for &(off, v) in words {
        let _ = mem.write(gpa + off, &v.to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = MemoryLayout::pc(16 << 20) else {
        return;
    };
    let Ok(mem) = GuestMemory::new(layout) else {
        return;
    };
    let mem = Arc::new(mem);
    let dev = VmmDev::new(
        VmmDevConfig::default(),
        mem.clone(),
        pdm::IrqLine::disconnected(),
        None,
    );
    if data.first().is_some_and(|b| b & 1 != 0) {
        // Report the guest first, as vboxguest does, so every request type is reachable.
        let _ = mem.write(REQ, &[0; 32]);
        put(
            &mem,
            REQ,
            &[(0, 32), (4, 0x10001), (8, 50), (24, 0x10004), (28, 0x53100)],
        );
        dev.submit_request(REQ as u32);
    }
    let body = data.get(1..).unwrap_or_default();
    let _ = mem.write(REQ, body);
    // Data pages for page lists.
    let _ = mem.write(0x20_0000, body);
    if data.first().is_some_and(|b| b & 2 != 0) && body.len() >= 8 {
        put(&mem, REQ, &[(4, 0x10001)]);
    }
    dev.submit_request(REQ as u32);
    dev.fast_acknowledge();
});
