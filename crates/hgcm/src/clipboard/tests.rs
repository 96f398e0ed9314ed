use super::*;
use crate::{CancelToken, Direction, Reply};
use crossbeam_channel::{Receiver, TryRecvError};
use proptest::prelude::*;

fn call(
    s: &mut SharedClipboard,
    client: u32,
    function: u32,
    params: Vec<Param>,
) -> Receiver<Reply> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    s.call(Call::new(
        client,
        function,
        params,
        0,
        CancelToken::new(),
        Box::new(tx),
    ));
    rx
}

fn done(rx: &Receiver<Reply>) -> Reply {
    rx.try_recv().expect("call completed")
}

fn out_buf(n: usize) -> Param {
    Param::Buffer {
        dir: Direction::OUT,
        data: vec![0; n],
    }
}

fn in_buf(d: Vec<u8>) -> Param {
    Param::Buffer {
        dir: Direction::IN,
        data: d,
    }
}

fn wait(s: &mut SharedClipboard, client: u32) -> Receiver<Reply> {
    call(
        s,
        client,
        func::MSG_OLD_GET_WAIT,
        vec![Param::U32(0), Param::U32(0)],
    )
}

fn read(s: &mut SharedClipboard, n: usize) -> Reply {
    done(&call(
        s,
        1,
        func::DATA_READ,
        vec![Param::U32(fmt::UNICODETEXT), out_buf(n), Param::U32(0)],
    ))
}

#[test]
fn text_round_trips_through_the_wire_form() {
    let w = wire::to_guest_text("a\nb\r\nü€😀");
    let units: Vec<u16> = w
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(&units[..6], &[97, 13, 10, 98, 13, 10]);
    assert_eq!(units.last(), Some(&0));
    assert_eq!(wire::from_guest_text(&w), "a\nb\nü€😀");
    // Stops at the NUL, ignores an odd byte, replaces a lone surrogate.
    assert_eq!(wire::from_guest_text(&[b'x', 0, 0, 0, b'y', 0]), "x");
    assert_eq!(wire::from_guest_text(&[b'x', 0, 7]), "x");
    assert_eq!(wire::from_guest_text(&[0x00, 0xd8, b'z', 0]), "\u{fffd}z");
}

#[test]
fn host_text_reaches_the_guest_in_allowed_modes() {
    for mode in [Mode::Bidirectional, Mode::HostToGuest] {
        let mut s = SharedClipboard::new(mode);
        s.connect(1, 0);
        let w = wait(&mut s, 1);
        assert_eq!(w.try_recv().unwrap_err(), TryRecvError::Empty, "parked");
        s.host_set_text("hi\nthere");
        let r = done(&w);
        assert_eq!(r.result, VINF_SUCCESS);
        assert_eq!(
            r.params,
            vec![
                Param::U32(msg::FORMATS_REPORT),
                Param::U32(fmt::UNICODETEXT)
            ]
        );
        let r = read(&mut s, 64);
        assert_eq!(r.result, VINF_SUCCESS);
        let want = wire::to_guest_text("hi\nthere");
        assert_eq!(r.params[2], Param::U32(want.len() as u32));
        assert_eq!(&r.params[1].as_buf().unwrap()[..want.len()], &want[..]);
        // Too small a buffer: nothing copied, the size needed, VINF_BUFFER_OVERFLOW.
        let r = read(&mut s, 4);
        assert_eq!(r.result, VINF_BUFFER_OVERFLOW);
        assert_eq!(r.params[1].as_buf().unwrap(), &[0, 0, 0, 0]);
        assert_eq!(r.params[2], Param::U32(want.len() as u32));
    }
}

#[test]
fn host_text_is_refused_in_other_modes() {
    for mode in [Mode::Disabled, Mode::GuestToHost] {
        let mut s = SharedClipboard::new(mode);
        s.connect(1, 0);
        let w = wait(&mut s, 1);
        s.host_set_text("secret");
        assert_eq!(
            w.try_recv().unwrap_err(),
            TryRecvError::Empty,
            "no announcement"
        );
        assert_eq!(read(&mut s, 64).result, VERR_ACCESS_DENIED);
        assert_eq!(
            s.host_text().as_deref(),
            Some("secret"),
            "the host keeps its own text"
        );
    }
}

#[test]
fn a_new_client_hears_of_existing_host_text() {
    let mut s = SharedClipboard::new(Mode::Bidirectional);
    s.host_set_text("x");
    s.connect(7, 0);
    let r = done(&wait(&mut s, 7));
    assert_eq!(r.params[0], Param::U32(msg::FORMATS_REPORT));
}

#[test]
fn guest_text_reaches_the_host_in_allowed_modes() {
    for mode in [Mode::Bidirectional, Mode::GuestToHost] {
        let mut s = SharedClipboard::new(mode);
        s.connect(1, 0);
        let rep = call(
            &mut s,
            1,
            func::REPORT_FORMATS,
            vec![Param::U32(fmt::UNICODETEXT)],
        );
        assert_eq!(done(&rep).result, VINF_SUCCESS);
        // The host asks for the text at once.
        let r = done(&wait(&mut s, 1));
        assert_eq!(
            r.params,
            vec![Param::U32(msg::READ_DATA), Param::U32(fmt::UNICODETEXT)]
        );
        let data = wire::to_guest_text("from\r\nguest");
        let w = call(
            &mut s,
            1,
            func::DATA_WRITE,
            vec![Param::U32(fmt::UNICODETEXT), in_buf(data)],
        );
        assert_eq!(done(&w).result, VINF_SUCCESS);
        assert_eq!(s.host_text().as_deref(), Some("from\nguest"));
        // A second, unrequested write has no context.
        let w = call(
            &mut s,
            1,
            func::DATA_WRITE,
            vec![Param::U32(fmt::UNICODETEXT), in_buf(vec![b'z', 0, 0, 0])],
        );
        assert_eq!(done(&w).result, VERR_INVALID_CONTEXT);
        assert_eq!(s.host_text().as_deref(), Some("from\nguest"));
    }
}

#[test]
fn guest_text_is_refused_in_other_modes() {
    for mode in [Mode::Disabled, Mode::HostToGuest] {
        let mut s = SharedClipboard::new(mode);
        s.connect(1, 0);
        s.host_set_text("host");
        let rep = call(
            &mut s,
            1,
            func::REPORT_FORMATS,
            vec![Param::U32(fmt::UNICODETEXT)],
        );
        assert_eq!(done(&rep).result, VERR_ACCESS_DENIED);
        let w = call(
            &mut s,
            1,
            func::DATA_WRITE,
            vec![Param::U32(fmt::UNICODETEXT), in_buf(vec![b'g', 0, 0, 0])],
        );
        assert_eq!(done(&w).result, VERR_ACCESS_DENIED);
        assert_eq!(s.host_text().as_deref(), Some("host"));
    }
}

#[test]
fn a_mode_switch_applies_to_the_next_call() {
    let mut s = SharedClipboard::new(Mode::Disabled);
    s.connect(1, 0);
    s.host_set_text("later");
    assert_eq!(read(&mut s, 64).result, VERR_ACCESS_DENIED);
    s.set_mode(Mode::HostToGuest);
    assert_eq!(s.mode(), Mode::HostToGuest);
    assert_eq!(read(&mut s, 64).result, VINF_SUCCESS);
    // The switch announced the host's text to the waiting guest.
    assert_eq!(
        done(&wait(&mut s, 1)).params[0],
        Param::U32(msg::FORMATS_REPORT)
    );
}

#[test]
fn features_are_answered_as_an_old_host() {
    let mut s = SharedClipboard::new(Mode::Bidirectional);
    s.connect(1, 0);
    let r = done(&call(
        &mut s,
        1,
        func::REPORT_FEATURES,
        vec![Param::U64(1), Param::U64(1 << 63)],
    ));
    assert_eq!(r.result, VINF_SUCCESS);
    assert_eq!(r.params, vec![Param::U64(0), Param::U64(0)]);
    let r = done(&call(
        &mut s,
        1,
        func::REPORT_FEATURES,
        vec![Param::U64(1), Param::U64(0)],
    ));
    assert_eq!(r.result, VERR_INVALID_PARAMETER);
    // Functions of the context-id protocol are not offered.
    for f in [func::CONNECT, 8, 9, 10, 11, 27, 28, 1000] {
        assert_eq!(
            done(&call(&mut s, 1, f, vec![])).result,
            VERR_NOT_IMPLEMENTED,
            "fn {f}"
        );
    }
}

#[test]
fn waits_park_once_and_cancel() {
    let mut s = SharedClipboard::new(Mode::Bidirectional);
    s.connect(1, 0);
    let w = wait(&mut s, 1);
    assert_eq!(done(&wait(&mut s, 1)).result, VERR_RESOURCE_BUSY);
    assert_eq!(
        done(&call(&mut s, 1, func::MSG_CANCEL, vec![])).result,
        VINF_SUCCESS
    );
    let r = done(&w);
    assert_eq!(r.params[0], Param::U32(msg::CANCELED));
    assert_eq!(
        done(&call(&mut s, 1, func::MSG_CANCEL, vec![])).result,
        VWRN_NOT_FOUND
    );
    // A disconnect drops the parked call without completing it.
    let w = wait(&mut s, 1);
    s.disconnect(1);
    assert_eq!(w.try_recv().unwrap_err(), TryRecvError::Disconnected);
}

#[test]
fn the_queue_stays_bounded() {
    let mut s = SharedClipboard::new(Mode::Bidirectional);
    s.connect(1, 0);
    for i in 0..1000 {
        s.host_set_text(&format!("t{i}"));
        call(
            &mut s,
            1,
            func::REPORT_FORMATS,
            vec![Param::U32(fmt::UNICODETEXT)],
        );
    }
    let c = &s.clients[&1];
    assert!(c.queue.len() <= 2, "{:?}", c.queue);
    assert!(c.pending_reads.len() <= 1);
}

#[test]
fn malformed_calls_get_vbox_errors() {
    let m = Mode::Bidirectional;
    assert_eq!(
        decode_call(m, func::MSG_OLD_GET_WAIT, vec![Param::U32(0)]),
        VERR_WRONG_PARAMETER_COUNT
    );
    assert_eq!(
        decode_call(
            m,
            func::MSG_OLD_GET_WAIT,
            vec![Param::U64(0), Param::U32(0)]
        ),
        VERR_WRONG_PARAMETER_TYPE
    );
    assert_eq!(
        decode_call(m, func::REPORT_FORMATS, vec![Param::buf(vec![1])]),
        VERR_WRONG_PARAMETER_TYPE
    );
    assert_eq!(
        decode_call(
            m,
            func::DATA_READ,
            vec![Param::U32(3), out_buf(8), Param::U32(0)]
        ),
        VERR_INVALID_PARAMETER
    );
    assert_eq!(
        decode_call(
            m,
            func::DATA_READ,
            vec![Param::U32(1), Param::U32(0), Param::U32(0)]
        ),
        VERR_WRONG_PARAMETER_TYPE
    );
    assert_eq!(
        decode_call(m, func::DATA_WRITE, vec![Param::U32(0x100), in_buf(vec![])]),
        VERR_INVALID_PARAMETER
    );
    // A queued FORMATS_REPORT (the host has text) answers the first wait at once.
    assert_eq!(
        decode_call(
            m,
            func::MSG_OLD_GET_WAIT,
            vec![Param::U32(0), Param::U32(0)]
        ),
        VINF_SUCCESS
    );
}

fn arb_param() -> impl Strategy<Value = Param> {
    prop_oneof![
        any::<u32>().prop_map(Param::U32),
        any::<u64>().prop_map(Param::U64),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Param::buf),
    ]
}

proptest! {
    /// Any call shape completes (or parks) without a panic, and a parked call only ever
    /// is the message wait.
    #[test]
    fn any_call_is_answered(
        mode in 0u8..4,
        function in 0u32..32,
        params in proptest::collection::vec(arb_param(), 0..6),
    ) {
        let mode = [Mode::Disabled, Mode::HostToGuest, Mode::GuestToHost, Mode::Bidirectional][mode as usize];
        let rc = decode_call(mode, function, params);
        if rc == VINF_HGCM_ASYNC_EXECUTE {
            prop_assert_eq!(function, func::MSG_OLD_GET_WAIT);
        }
    }

    /// Guest text of any bytes becomes host text without a panic and within the limit.
    #[test]
    fn any_guest_text_decodes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let t = wire::from_guest_text(&data);
        prop_assert!(t.len() <= data.len() * 3 / 2 + 3);
    }

    /// Host text survives the trip to the guest and back (LF normalised).
    #[test]
    fn host_text_round_trips(t in "[a-z\n\u{e9}\u{1f600}]{0,40}") {
        prop_assert_eq!(wire::from_guest_text(&wire::to_guest_text(&t)), t);
    }
}
