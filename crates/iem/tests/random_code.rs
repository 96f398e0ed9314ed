//! Random code pages in real, protected and long mode (the `iem_code` fuzz target's
//! harness, run here over a fixed pseudo-random corpus so every test run checks it): the
//! interpreter must never panic, and most pages end in the budget or a triple fault, the
//! architectural outcomes; an `Unhandled` exit must say what it was.

use iem::fuzzing::{run_random_code, Outcome};

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn random_code_pages_never_panic() {
    let cases: usize = std::env::var("IEM_RANDOM_CODE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let (mut budget, mut shutdown, mut unhandled, mut errors) = (0, 0, 0, 0);
    for case in 0..cases {
        let len = 65 + 4096 + 512;
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            data.extend_from_slice(&xorshift(&mut x).to_le_bytes());
        }
        data[0] = (case % 3) as u8;
        // Bias half the pages towards short instructions and common prefixes so decoding
        // goes past the first few bytes more often.
        if case % 2 == 1 {
            for b in data[65..65 + 4096].iter_mut() {
                if *b & 0xc0 == 0xc0 {
                    *b &= 0x3f;
                }
            }
        }
        match run_random_code(&data, 64, 2000) {
            Outcome::Budget => budget += 1,
            Outcome::Shutdown => shutdown += 1,
            Outcome::Unhandled(why) => {
                assert!(
                    !why.is_empty(),
                    "case {case}: an Unhandled exit without a reason"
                );
                unhandled += 1;
                if std::env::var_os("IEM_RANDOM_CODE_VERBOSE").is_some() {
                    eprintln!("case {case}: unhandled: {why}");
                }
            }
            Outcome::Error(_) => errors += 1,
        }
    }
    eprintln!(
        "random code: {cases} pages: {budget} ran out of budget, {shutdown} triple-faulted, \
         {unhandled} unhandled, {errors} errors"
    );
    assert_eq!(budget + shutdown + unhandled + errors, cases);
    assert!(
        budget + shutdown >= cases / 2,
        "most random pages must end architecturally"
    );
}
