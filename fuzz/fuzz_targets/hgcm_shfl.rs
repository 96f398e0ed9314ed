//! Fuzz the shared-folder service's parameter decoding: a sequence of calls with arbitrary
//! parameters against a share in a temporary directory.
#![no_main]

use hgcm::shfl::{ShareConfig, SharedFolders};
use hgcm::{Call, CancelToken, Reply, Service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let _ = std::fs::write(dir.path().join("f"), b"x");
    let Ok(mut svc) = SharedFolders::new(&[ShareConfig::new("s", dir.path())]) else {
        return;
    };
    svc.connect(1, 0);
    let mut d = data;
    for _ in 0..16 {
        if d.is_empty() {
            break;
        }
        let (f, p, rest) = novabox_fuzz::hgcm_call(d, 32, 9);
        d = rest;
        if f == 22 {
            continue; // parks by design
        }
        let (tx, _rx) = crossbeam_channel::bounded::<Reply>(1);
        svc.call(Call::new(1, f, p, 0, CancelToken::new(), Box::new(tx)));
    }
});
