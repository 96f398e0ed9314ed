//! Fuzz the RFB client-message parser the way the server drives it: parse messages from
//! the front of a buffer until it needs more bytes or reports a protocol error. Also the
//! WebSocket frame reader and the HTTP request parser of the browser console.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some((_msg, used))) = vnc::proto::parse_client_message(buf) {
        assert!(used > 0 && used <= buf.len());
        buf = &buf[used..];
    }
    let mut r = data;
    while vnc::ws::read_frame(&mut r).is_ok() {}
    let _ = vnc::ws::parse_request(data);
});
