//! Fuzz the shared clipboard service's parameter decoding: a sequence of calls with
//! arbitrary parameters and host-side events (text set, mode switch) against one service.
#![no_main]

use hgcm::clipboard::{Mode, SharedClipboard};
use hgcm::{Call, CancelToken, Param, Reply, Service};
use libfuzzer_sys::fuzz_target;

fn params(mut d: &[u8]) -> (u32, Vec<Param>, &[u8]) {
    let Some((&f, rest)) = d.split_first() else { return (0, vec![], d) };
    d = rest;
    let mut out = Vec::new();
    let n = d.first().map(|b| b % 6).unwrap_or(0);
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
    (u32::from(f % 40), out, d)
}

fuzz_target!(|data: &[u8]| {
    let mut svc = SharedClipboard::new(Mode::Bidirectional);
    svc.connect(1, 0);
    svc.connect(2, 0);
    let mut d = data;
    // Replies are kept so parked calls stay parked (a dropped receiver is fine too).
    let mut keep = Vec::new();
    for _ in 0..32 {
        if d.is_empty() {
            break;
        }
        let (f, p, rest) = params(d);
        d = rest;
        match f {
            30 => svc.host_set_text(&String::from_utf8_lossy(&d[..d.len().min(16)])),
            31 => svc.set_mode([Mode::Disabled, Mode::HostToGuest, Mode::GuestToHost, Mode::Bidirectional][p.len() % 4]),
            32 => svc.disconnect(1 + (p.len() as u32 & 1)),
            _ => {
                let (tx, rx) = crossbeam_channel::bounded::<Reply>(1);
                let client = 1 + (p.len() as u32 & 1);
                svc.call(Call::new(client, f, p, 0, CancelToken::new(), Box::new(tx)));
                keep.push(rx);
            }
        }
    }
    let _ = svc.host_text();
});
