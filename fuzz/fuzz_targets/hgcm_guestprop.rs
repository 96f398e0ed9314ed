//! Fuzz the guest property service's parameter decoding: a sequence of guest calls with
//! arbitrary parameters (names, values, flags, patterns, buffers of any size, notification
//! waits) mixed with host-side sets, waits and disconnects against one store.
#![no_main]

use hgcm::guestprop::GuestProperties;
use hgcm::{Call, CancelToken, Reply, Service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut svc = GuestProperties::new();
    let _ = svc.host_set(
        "/VirtualBox/HostInfo/Fixed",
        Some("x"),
        hgcm::guestprop::flags::RDONLYGUEST,
    );
    svc.connect(1, 0);
    svc.connect(2, 0);
    let mut d = data;
    // Replies are kept so parked waits stay parked (a dropped receiver is fine too).
    let mut keep = Vec::new();
    for _ in 0..32 {
        if d.is_empty() {
            break;
        }
        let (f, p, rest) = novabox_fuzz::hgcm_call(d, 24, 6);
        d = rest;
        let text = String::from_utf8_lossy(&d[..d.len().min(24)]).into_owned();
        match f {
            20 => {
                let _ = svc.host_set(&text, Some("v"), p.len() as u32);
            }
            21 => {
                let _ = svc.host_set(&text, None, 0);
            }
            22 => svc.host_wait(&text, Box::new(|_| {})),
            23 => svc.disconnect(1 + (p.len() as u32 & 1)),
            _ => {
                let (tx, rx) = crossbeam_channel::bounded::<Reply>(1);
                let client = 1 + (p.len() as u32 & 1);
                svc.call(Call::new(client, f, p, 0, CancelToken::new(), Box::new(tx)));
                keep.push(rx);
            }
        }
    }
    let _ = svc.enumerate("*");
    let _ = svc.persistent();
});
