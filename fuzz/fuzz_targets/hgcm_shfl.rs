//! Fuzz the shared-folder service's parameter decoding: a sequence of calls with arbitrary
//! parameters against a share in a temporary directory.
#![no_main]

use hgcm::shfl::{ShareConfig, SharedFolders};
use hgcm::{Call, CancelToken, Param, Reply, Service};
use libfuzzer_sys::fuzz_target;

fn params(mut d: &[u8]) -> (u32, Vec<Param>, &[u8]) {
    let Some((&f, rest)) = d.split_first() else { return (0, vec![], d) };
    d = rest;
    let mut out = Vec::new();
    let n = d.first().map(|b| b % 9).unwrap_or(0);
    d = d.get(1..).unwrap_or_default();
    for _ in 0..n {
        let Some((&kind, rest)) = d.split_first() else { break };
        d = rest;
        match kind % 3 {
            0 => {
                let v = d.get(..4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).unwrap_or(0);
                d = d.get(4..).unwrap_or_default();
                out.push(Param::U32(v));
            }
            1 => {
                let v = d.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).unwrap_or(0);
                d = d.get(8..).unwrap_or_default();
                out.push(Param::U64(v));
            }
            _ => {
                let len = usize::from(d.first().copied().unwrap_or(0));
                d = d.get(1..).unwrap_or_default();
                let take = len.min(d.len());
                out.push(Param::buf(d[..take].to_vec()));
                d = &d[take..];
            }
        }
    }
    (u32::from(f % 32), out, d)
}

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let _ = std::fs::write(dir.path().join("f"), b"x");
    let Ok(mut svc) = SharedFolders::new(&[ShareConfig::new("s", dir.path())]) else { return };
    svc.connect(1, 0);
    let mut d = data;
    for _ in 0..16 {
        if d.is_empty() {
            break;
        }
        let (f, p, rest) = params(d);
        d = rest;
        if f == 22 {
            continue; // parks by design
        }
        let (tx, _rx) = crossbeam_channel::bounded::<Reply>(1);
        svc.call(Call::new(1, f, p, 0, CancelToken::new(), Box::new(tx)));
    }
});
