//! Fuzz the shared clipboard service's parameter decoding: a sequence of calls with
//! arbitrary parameters and host-side events (text set, mode switch) against one service.
#![no_main]

use hgcm::clipboard::{Mode, SharedClipboard};
use hgcm::{Call, CancelToken, Reply, Service};
use libfuzzer_sys::fuzz_target;

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
        let (f, p, rest) = novabox_fuzz::hgcm_call(d, 40, 6);
        d = rest;
        match f {
            30 => svc.host_set_text(&String::from_utf8_lossy(&d[..d.len().min(16)])),
            31 => svc.set_mode(
                [
                    Mode::Disabled,
                    Mode::HostToGuest,
                    Mode::GuestToHost,
                    Mode::Bidirectional,
                ][p.len() % 4],
            ),
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
