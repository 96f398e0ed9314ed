//! Fuzz the interpreter with random code pages: byte 0 picks real, 32-bit protected or
//! long mode, then register seeds, a code page and a data page (`iem::fuzzing`). Whatever
//! the bytes, the interpreter must end in an exception, a triple fault or an exit, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = iem::fuzzing::run_random_code(data, 8, 500);
});
