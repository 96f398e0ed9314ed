//! VMMDev tests against a real pgm::GuestMemory: requests are built in guest memory the
//! way the Linux driver builds them and submitted through the request port.

use super::consts::{event, req};
use super::*;
use crate::pci::regs;
use hgcm::status::*;
use hgcm::{Call, Service};
use pgm::MemoryLayout;
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Rig {
    dev: VmmDev,
    mem: Arc<GuestMemory>,
    line: Arc<AtomicBool>,
}

/// Echo: fn 1 = add 1 to every u32, add 1 to every u64, reverse every buffer.
/// Fn 2 = park the call until the host releases it with `release`.
#[derive(Default)]
struct Echo {
    parked: Vec<Call>,
}

impl Service for Echo {
    fn name(&self) -> &'static str {
        "Echo"
    }
    fn call(&mut self, mut call: Call) {
        match call.function {
            1 => {
                for p in call.params.iter_mut() {
                    match p {
                        Param::U32(v) => *v = v.wrapping_add(1),
                        Param::U64(v) => *v = v.wrapping_add(1),
                        Param::Buffer { data, .. } => data.reverse(),
                    }
                }
                call.complete(VINF_SUCCESS)
            }
            2 => self.parked.push(call),
            _ => call.complete(VERR_NOT_IMPLEMENTED),
        }
    }
    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

use hgcm::Param;

/// A VMMDev with the Echo service, HGCM calls always asynchronous (VirtualBox's way).
fn rig() -> Rig {
    rig_with_sync_wait(Duration::ZERO)
}

fn rig_with_sync_wait(wait: Duration) -> Rig {
    let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(16 << 20).unwrap()).unwrap());
    let line = Arc::new(AtomicBool::new(false));
    let l = line.clone();
    let irq = IrqLine::new(
        Arc::new(move |_gsi: u32, level: bool| l.store(level, Ordering::SeqCst)),
        11,
    );
    let mut host = HgcmHost::new();
    host.register(Box::new(Echo::default())).unwrap();
    let cfg = VmmDevConfig {
        host_time_ms: Arc::new(system_time_ms),
        hgcm_sync_wait: wait,
        ..VmmDevConfig::default()
    };
    let dev = VmmDev::new(cfg, mem.clone(), irq, Some(Arc::new(host)));
    Rig { dev, mem, line }
}

const REQ: u64 = 0x10_0000;

impl Rig {
    /// Build a request of `size` bytes at `gpa`: header + body fields, rc pre-set to -1 as
    /// Linux does.
    fn put_req(&self, gpa: u64, rtype: u32, size: u32, body: &[(u64, &[u8])]) {
        self.mem.write(gpa, &vec![0u8; size as usize]).unwrap();
        self.mem.write_le::<4>(gpa, u64::from(size)).unwrap();
        self.mem.write_le::<4>(gpa + 4, 0x10001).unwrap();
        self.mem.write_le::<4>(gpa + 8, u64::from(rtype)).unwrap();
        self.mem.write(gpa + 12, &(-1i32).to_le_bytes()).unwrap();
        for (off, bytes) in body {
            self.mem.write(gpa + off, bytes).unwrap();
        }
    }

    fn rc(&self, gpa: u64) -> i32 {
        self.mem.read_le::<4>(gpa + 12).unwrap() as u32 as i32
    }

    fn u32(&self, gpa: u64) -> u32 {
        self.mem.read_le::<4>(gpa).unwrap() as u32
    }

    fn submit(&self, gpa: u64) -> i32 {
        self.dev.submit_request(gpa as u32);
        self.rc(gpa)
    }

    fn simple(&self, rtype: u32, size: u32, body: &[(u64, &[u8])]) -> i32 {
        self.put_req(REQ, rtype, size, body);
        self.submit(REQ)
    }

    /// The probe sequence of Linux vbg_core_init.
    fn linux_init(&self) {
        assert_eq!(self.simple(req::GET_HOST_VERSION, 40, &[]), 0);
        assert_eq!(self.u32(REQ + 36) & 1, 1, "page lists advertised");
        let mut name = [0u8; 128];
        name[..5].copy_from_slice(b"6.0.0");
        let info2: &[(u64, &[u8])] = &[
            (24, &6u16.to_le_bytes()),
            (26, &0u16.to_le_bytes()),
            (28, &0u32.to_le_bytes()),
            (32, &127566u32.to_le_bytes()),
            (36, &1u32.to_le_bytes()),
            (40, &name),
        ];
        assert_eq!(self.simple(req::REPORT_GUEST_INFO2, 168, info2), 0);
        let info: &[(u64, &[u8])] = &[
            (24, &0x10004u32.to_le_bytes()),
            (28, &0x53100u32.to_le_bytes()),
        ];
        assert_eq!(self.simple(req::REPORT_GUEST_INFO, 32, info), 0);
        let filt: &[(u64, &[u8])] = &[
            (24, &0x202u32.to_le_bytes()),
            (28, &(!0x202u32).to_le_bytes()),
        ];
        assert_eq!(self.simple(req::CTL_GUEST_FILTER_MASK, 32, filt), 0);
        let caps: &[(u64, &[u8])] = &[(24, &0u32.to_le_bytes()), (28, &u32::MAX.to_le_bytes())];
        assert_eq!(self.simple(req::SET_GUEST_CAPABILITIES, 32, caps), 0);
        assert_eq!(self.simple(req::SET_MOUSE_STATUS, 36, &[]), 0);
        assert_eq!(self.simple(req::GET_HYPERVISOR_INFO, 32, &[]), 0);
        assert_eq!(self.simple(req::HEARTBEAT_CONFIGURE, 36, &[(32, &[0])]), 0);
        assert_eq!(self.simple(req::HEARTBEAT_CONFIGURE, 36, &[(32, &[1])]), 0);
        assert_eq!(
            self.mem.read_le::<8>(REQ + 24).unwrap(),
            consts::HEARTBEAT_INTERVAL_NS
        );
        let st: &[(u64, &[u8])] = &[(24, &20u32.to_le_bytes()), (28, &50u32.to_le_bytes())];
        assert_eq!(self.simple(req::REPORT_GUEST_STATUS, 36, st), 0);
    }

    fn ack(&self) -> u32 {
        assert_eq!(self.simple(req::ACKNOWLEDGE_EVENTS, 28, &[]), 0);
        self.u32(REQ + 24)
    }

    fn wait_done(&self, gpa: u64) {
        let t = Instant::now();
        while self.u32(gpa + 24) & HGCM_REQ_DONE == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "HGCM request never completed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn connect(&self, gpa: u64, name: &str) -> (i32, u32) {
        self.put_req(
            gpa,
            req::HGCM_CONNECT,
            168,
            &[(32, &2u32.to_le_bytes()), (36, name.as_bytes())],
        );
        assert_eq!(self.submit(gpa), VINF_HGCM_ASYNC_EXECUTE);
        self.wait_done(gpa);
        (self.u32(gpa + 28) as i32, self.u32(gpa + 164))
    }
}

#[test]
fn pci_identity_and_bars() {
    let r = rig();
    let f = r.dev.pci_function();
    let mut f = f.lock();
    let mut d = [0u8; 4];
    f.config_read(0, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0xcafe_80ee);
    f.config_read(8, &mut d);
    assert_eq!(u32::from_le_bytes(d) >> 8, 0x08_8000);
    f.config_read(0x3c, &mut d);
    assert_eq!(d[1], 1, "INTA#");
    // BAR sizing: I/O 32 ports, memory 4 MiB.
    f.config_write(0x10, &u32::MAX.to_le_bytes());
    f.config_read(0x10, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0xffff_ffe1);
    f.config_write(0x14, &u32::MAX.to_le_bytes());
    f.config_read(0x14, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0xffc0_0000);
    f.config_write(0x10, &0xd020u32.to_le_bytes());
    f.config_write(0x14, &0xf040_0000u32.to_le_bytes());
    assert!(
        f.regions().is_empty(),
        "nothing decoded before the command register"
    );
    f.config_write(regs::COMMAND, &3u16.to_le_bytes());
    let regions = f.regions();
    assert_eq!(regions.len(), 2);
    let ram = regions
        .iter()
        .find(|r| r.space == PciSpace::Memory)
        .unwrap();
    assert_eq!((ram.base, ram.size), (0xf040_0000, 0x40_0000));
    // VMMDevMemory: size and version as the Linux probe checks them.
    let mut v = [0u8; 4];
    ram.device.lock().read(ram.base, 0, &mut v);
    assert_eq!(u32::from_le_bytes(v), consts::MEMORY_SIZE_FIELD);
    ram.device.lock().read(ram.base + 4, 4, &mut v);
    assert_eq!(u32::from_le_bytes(v), 1);
    // Requests through the I/O BAR.
    let io = regions.iter().find(|r| r.space == PciSpace::Io).unwrap();
    r.put_req(REQ, req::GET_HOST_VERSION, 40, &[]);
    io.device
        .lock()
        .write(0xd020, 0, &(REQ as u32).to_le_bytes());
    assert_eq!(r.rc(REQ), 0);
    assert_eq!(r.mem.read_le::<2>(REQ + 24).unwrap(), 7);
}

#[test]
fn linux_probe_sequence_succeeds_and_is_recorded() {
    let r = rig();
    r.linux_init();
    let g = r.dev.guest_info();
    assert_eq!(g.interface_version, 0x10004);
    assert_eq!(g.os_type, 0x53100);
    assert_eq!(g.additions.as_ref().unwrap().name, "6.0.0");
    assert_eq!(g.additions.as_ref().unwrap().revision, 127566);
    assert_eq!(g.run_level(), RunLevel::System);
    assert_eq!(r.dev.events().filter, 0x202);
}

#[test]
fn requests_before_report_are_refused() {
    let r = rig();
    assert_eq!(r.simple(req::GET_MOUSE_STATUS, 36, &[]), VERR_NOT_SUPPORTED);
    assert_eq!(r.simple(req::GET_HOST_VERSION, 40, &[]), 0);
}

#[test]
fn malformed_headers_get_virtualbox_answers() {
    let r = rig();
    r.linux_init();
    // Wrong version: ignored, rc untouched.
    r.put_req(REQ, req::GET_HOST_TIME, 32, &[]);
    r.mem.write_le::<4>(REQ + 4, 0x10002).unwrap();
    assert_eq!(r.submit(REQ), -1);
    // Too small: ignored.
    r.put_req(REQ, req::GET_HOST_TIME, 32, &[]);
    r.mem.write_le::<4>(REQ, 23).unwrap();
    assert_eq!(r.submit(REQ), -1);
    // Too big.
    r.put_req(REQ, req::GET_HOST_TIME, 32, &[]);
    r.mem.write_le::<4>(REQ, (1 << 20) + 1).unwrap();
    assert_eq!(r.submit(REQ), VERR_NOT_SUPPORTED);
    // Unknown type, wrong exact size.
    assert_eq!(r.simple(9999, 24, &[]), VERR_NOT_IMPLEMENTED);
    assert_eq!(
        r.simple(req::GET_HOST_TIME, 36, &[]),
        VERR_INVALID_PARAMETER
    );
    // Request address outside RAM: nothing happens, no panic.
    r.dev.submit_request(0xfff0_0000);
    r.dev.submit_request(u32::MAX);
}

#[test]
fn report_guest_info_rejects_other_interfaces() {
    let r = rig();
    let info: &[(u64, &[u8])] = &[(24, &0x10005u32.to_le_bytes())];
    assert_eq!(
        r.simple(req::REPORT_GUEST_INFO, 32, info),
        VERR_VERSION_MISMATCH
    );
    assert!(!r.dev.events().additions_ok);
    let mut name = [0u8; 128];
    name[..9].copy_from_slice(b"6.0.0xyz!");
    let bad: &[(u64, &[u8])] = &[(24, &6u16.to_le_bytes()), (40, &name)];
    assert_eq!(
        r.simple(req::REPORT_GUEST_INFO2, 168, bad),
        VERR_INVALID_PARAMETER
    );
    let unterminated = [b'6'; 128];
    let bad: &[(u64, &[u8])] = &[(24, &6u16.to_le_bytes()), (40, &unterminated)];
    assert_eq!(
        r.simple(req::REPORT_GUEST_INFO2, 168, bad),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn host_time_matches_host_clock() {
    let r = rig();
    r.linux_init();
    assert_eq!(r.simple(req::GET_HOST_TIME, 32, &[]), 0);
    let guest = r.mem.read_le::<8>(REQ + 24).unwrap();
    let host = system_time_ms();
    assert!(host.abs_diff(guest) < 1000, "host {host} guest {guest}");
}

#[test]
fn mouse_position_reaches_the_guest_through_event_and_irq() {
    let r = rig();
    r.linux_init();
    assert!(!r.line.load(Ordering::SeqCst));
    // The guest opens its input device: GUEST_CAN_ABSOLUTE | NEW_PROTOCOL.
    assert_eq!(
        r.simple(req::SET_MOUSE_STATUS, 36, &[(24, &0x11u32.to_le_bytes())]),
        0
    );
    assert!(r.dev.guest_wants_absolute());
    r.dev.set_absolute_mouse(0x1234, 0x8000, 0, 0, 0);
    assert!(r.line.load(Ordering::SeqCst), "INTA# asserted");
    assert_eq!(r.ack(), event::MOUSE_POSITION_CHANGED);
    assert!(
        !r.line.load(Ordering::SeqCst),
        "INTA# lowered by the acknowledge"
    );
    assert_eq!(r.simple(req::GET_MOUSE_STATUS, 36, &[]), 0);
    assert_eq!(r.u32(REQ + 28), 0x1234);
    assert_eq!(r.u32(REQ + 32), 0x8000);
    assert_eq!(r.u32(REQ + 24) & 0x11, 0x11);
    // The same position again raises nothing.
    r.dev.set_absolute_mouse(0x1234, 0x8000, 0, 0, 0);
    assert!(!r.line.load(Ordering::SeqCst));
    // Out of range is clamped.
    r.dev.set_absolute_mouse(-5, 0x20000, 0, 0, 0);
    assert_eq!((r.dev.mouse().x, r.dev.mouse().y), (0, 0xffff));
}

#[test]
fn fast_ack_port() {
    let r = rig();
    assert_eq!(r.dev.fast_acknowledge(), u32::MAX);
    r.linux_init();
    r.dev.set_absolute_mouse(1, 2, 0, 0, 0);
    assert_eq!(r.dev.fast_acknowledge(), event::MOUSE_POSITION_CHANGED);
    assert!(!r.dev.irq_asserted());
}

#[test]
fn intx_disable_masks_the_line() {
    let r = rig();
    r.linux_init();
    let f = r.dev.pci_function();
    f.lock()
        .config_write(regs::COMMAND, &regs::CMD_INTX_DISABLE.to_le_bytes());
    r.dev.set_absolute_mouse(9, 9, 0, 0, 0);
    assert!(r.dev.irq_asserted());
    assert!(!r.line.load(Ordering::SeqCst));
    f.lock().config_write(regs::COMMAND, &0u16.to_le_bytes());
    assert!(r.line.load(Ordering::SeqCst));
}

#[test]
fn power_off_request_reaches_the_callback() {
    let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(16 << 20).unwrap()).unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let cfg = VmmDevConfig {
        power: Some(Arc::new(move |p| g.lock().push(p))),
        allow_guest_save_state: false,
        ..VmmDevConfig::default()
    };
    let r = Rig {
        dev: VmmDev::new(cfg, mem.clone(), IrqLine::disconnected(), None),
        mem,
        line: Arc::new(AtomicBool::new(false)),
    };
    r.linux_init();
    assert_eq!(
        r.simple(req::SET_POWER_STATUS, 28, &[(24, &2u32.to_le_bytes())]),
        0
    );
    assert_eq!(
        r.simple(req::SET_POWER_STATUS, 28, &[(24, &3u32.to_le_bytes())]),
        VERR_ACCESS_DENIED
    );
    assert_eq!(
        r.simple(req::SET_POWER_STATUS, 28, &[(24, &9u32.to_le_bytes())]),
        VERR_INVALID_PARAMETER
    );
    assert_eq!(*got.lock(), vec![PowerRequest::PowerOff]);
}

#[test]
fn display_change_request_is_reported_once() {
    let r = rig();
    r.linux_init();
    r.simple(req::CTL_GUEST_FILTER_MASK, 32, &[(24, &4u32.to_le_bytes())]);
    r.dev.request_display_change(DisplayDef {
        flags: 0x39,
        id: 0,
        cx: 1280,
        cy: 1024,
        bpp: 32,
        ..Default::default()
    });
    assert_eq!(r.ack(), event::DISPLAY_CHANGE_REQUEST);
    assert_eq!(
        r.simple(
            req::GET_DISPLAY_CHANGE_REQUEST2,
            44,
            &[(36, &4u32.to_le_bytes())]
        ),
        0
    );
    assert_eq!(
        (r.u32(REQ + 24), r.u32(REQ + 28), r.u32(REQ + 32)),
        (1280, 1024, 32)
    );
    // Multi form: nothing pending any more.
    let cap: &[(u64, &[u8])] = &[(24, &4u32.to_le_bytes()), (28, &4u32.to_le_bytes())];
    assert_eq!(
        r.simple(req::GET_DISPLAY_CHANGE_REQUEST_MULTI, 32 + 28 * 4, cap),
        0
    );
    assert_eq!(r.u32(REQ + 28), 0);
    // Capacity larger than the request: refused.
    let cap: &[(u64, &[u8])] = &[(28, &4u32.to_le_bytes())];
    assert_eq!(
        r.simple(req::GET_DISPLAY_CHANGE_REQUEST_MULTI, 60, cap),
        VERR_INVALID_PARAMETER
    );
}

#[test]
fn reset_clears_guest_state() {
    let r = rig();
    r.linux_init();
    r.dev.set_absolute_mouse(5, 5, 0, 0, 0);
    r.dev.reset();
    assert!(!r.line.load(Ordering::SeqCst));
    assert_eq!(r.dev.guest_info(), GuestInfo::default());
    assert_eq!(r.simple(req::GET_MOUSE_STATUS, 36, &[]), VERR_NOT_SUPPORTED);
}

#[test]
fn hgcm_connect_unknown_service() {
    let r = rig();
    r.linux_init();
    let (result, id) = r.connect(0x20_0000, "VBoxNoSuchService");
    assert_eq!(result, VERR_HGCM_SERVICE_NOT_FOUND);
    assert_eq!(id, 0);
    assert_eq!(r.ack(), event::HGCM);
}

/// Build a 64-bit (or 32-bit) call at `gpa`: a u32, a u64 and a page-list buffer of
/// `data` spanning the page boundary at `buf_gpa`.
fn build_call(
    r: &Rig,
    gpa: u64,
    is64: bool,
    client: u32,
    function: u32,
    buf_gpa: u64,
    data: &[u8],
) {
    let entry = if is64 { 16 } else { 12 };
    let params_end = 44 + 3 * entry;
    let first = buf_gpa & 0xfff;
    let pages = (first + data.len() as u64).div_ceil(4096);
    let size = params_end + 8 + 8 * pages;
    let t = if is64 {
        req::HGCM_CALL64
    } else {
        req::HGCM_CALL32
    };
    r.put_req(gpa, t, size as u32, &[]);
    r.mem.write_le::<4>(gpa + 32, u64::from(client)).unwrap();
    r.mem.write_le::<4>(gpa + 36, u64::from(function)).unwrap();
    r.mem.write_le::<4>(gpa + 40, 3).unwrap();
    let e0 = gpa + 44;
    r.mem.write_le::<4>(e0, 1).unwrap();
    r.mem.write_le::<4>(e0 + 4, 41).unwrap();
    let e1 = e0 + entry;
    r.mem.write_le::<4>(e1, 2).unwrap();
    r.mem.write_le::<8>(e1 + 4, 0x1_0000_0000).unwrap();
    let e2 = e1 + entry;
    r.mem.write_le::<4>(e2, 10).unwrap();
    r.mem.write_le::<4>(e2 + 4, data.len() as u64).unwrap();
    r.mem.write_le::<4>(e2 + 8, params_end).unwrap();
    let d = gpa + params_end;
    r.mem.write_le::<4>(d, 3).unwrap();
    r.mem.write_le::<2>(d + 4, first).unwrap();
    r.mem.write_le::<2>(d + 6, pages).unwrap();
    for i in 0..pages {
        // Pages deliberately not contiguous in guest-physical memory: page i of the
        // buffer lives at buf_page + 2*i pages.
        r.mem
            .write_le::<8>(d + 8 + 8 * i, (buf_gpa & !0xfff) + 0x2000 * i)
            .unwrap();
    }
    let mut at = 0usize;
    for i in 0..pages {
        let start = if i == 0 { first } else { 0 };
        let len = ((4096 - start) as usize).min(data.len() - at);
        r.mem
            .write((buf_gpa & !0xfff) + 0x2000 * i + start, &data[at..at + len])
            .unwrap();
        at += len;
    }
}

fn read_scattered(r: &Rig, buf_gpa: u64, len: usize) -> Vec<u8> {
    let first = buf_gpa & 0xfff;
    let mut out = vec![0u8; len];
    let mut at = 0usize;
    let mut i = 0;
    while at < len {
        let start = if i == 0 { first } else { 0 };
        let l = ((4096 - start) as usize).min(len - at);
        r.mem
            .read(
                (buf_gpa & !0xfff) + 0x2000 * i + start,
                &mut out[at..at + l],
            )
            .unwrap();
        at += l;
        i += 1;
    }
    out
}

#[test]
fn hgcm_call_page_list_round_trip_64_and_32() {
    let r = rig();
    r.linux_init();
    let (result, client) = r.connect(0x20_0000, "Echo");
    assert_eq!(result, 0);
    assert_ne!(client, 0);
    for is64 in [true, false] {
        let data: Vec<u8> = (0..6000u32).map(|i| (i * 7) as u8).collect();
        let buf = 0x30_0f00;
        build_call(&r, 0x20_1000, is64, client, 1, buf, &data);
        assert_eq!(r.submit(0x20_1000), VINF_HGCM_ASYNC_EXECUTE);
        r.wait_done(0x20_1000);
        assert_eq!(r.u32(0x20_1000 + 28), 0, "result");
        let entry = if is64 { 16 } else { 12 };
        assert_eq!(r.u32(0x20_1000 + 44 + 4), 42);
        assert_eq!(
            r.mem.read_le::<8>(0x20_1000 + 44 + entry + 4).unwrap(),
            0x1_0000_0001
        );
        let mut rev = data.clone();
        rev.reverse();
        assert_eq!(read_scattered(&r, buf, data.len()), rev);
        assert_eq!(r.rc(0x20_1000), VINF_HGCM_ASYNC_EXECUTE, "rc stays 2903");
    }
}

/// With a sync wait, a call the service finishes in time comes back completed from the
/// port write (rc 0, DONE, results written) and raises no HGCM event; a call the service
/// parks goes asynchronous after the wait and raises the event when it completes.
#[test]
fn hgcm_call_completes_synchronously_within_the_wait() {
    // Generous: the check is the protocol, not the host's thread wake-up time.
    let r = rig_with_sync_wait(Duration::from_secs(5));
    r.linux_init();
    let (_, client) = r.connect(0x20_0000, "Echo");
    r.ack();
    let data: Vec<u8> = (0..100u8).collect();
    let g = 0x20_1000;
    build_call(&r, g, true, client, 1, 0x30_0f00, &data);
    assert_eq!(r.submit(g), VINF_SUCCESS);
    assert_ne!(
        r.u32(g + 24) & HGCM_REQ_DONE,
        0,
        "DONE before the port write returns"
    );
    assert_eq!(r.u32(g + 28), 0, "result");
    let mut rev = data.clone();
    rev.reverse();
    assert_eq!(read_scattered(&r, 0x30_0f00, data.len()), rev);
    assert_eq!(
        r.ack() & event::HGCM,
        0,
        "no event for a synchronous completion"
    );
    assert!(!r.line.load(Ordering::SeqCst), "no interrupt");
    assert_eq!(r.dev.pending_hgcm(), 0);

    let r = rig_with_sync_wait(Duration::from_millis(20));
    r.linux_init();
    let (_, client) = r.connect(0x20_0000, "Echo");
    r.ack();
    build_call(&r, g, true, client, 2, 0x30_0f00, &data);
    let t = Instant::now();
    assert_eq!(r.submit(g), VINF_HGCM_ASYNC_EXECUTE, "parked: asynchronous");
    assert!(
        t.elapsed() >= Duration::from_millis(20),
        "waited the configured time"
    );
    assert_eq!(r.u32(g + 24) & HGCM_REQ_DONE, 0);
    let host = r.dev.core.hgcm.clone();
    host.with_service::<Echo, _>("Echo", |e| {
        for c in e.parked.drain(..) {
            c.complete(0);
        }
    })
    .unwrap();
    r.wait_done(g);
    assert_ne!(
        r.ack() & event::HGCM,
        0,
        "the late completion raises the event"
    );
}

#[test]
fn hgcm_embedded_buffer() {
    let r = rig();
    r.linux_init();
    let (_, client) = r.connect(0x20_0000, "Echo");
    let g = 0x21_0000;
    r.put_req(g, req::HGCM_CALL64, 44 + 16 + 8, &[]);
    r.mem.write_le::<4>(g + 32, u64::from(client)).unwrap();
    r.mem.write_le::<4>(g + 36, 1).unwrap();
    r.mem.write_le::<4>(g + 40, 1).unwrap();
    r.mem.write_le::<4>(g + 44, 11).unwrap();
    r.mem.write_le::<4>(g + 48, (60 << 8) | 3).unwrap();
    r.mem.write_le::<4>(g + 52, 8).unwrap();
    r.mem.write(g + 60, b"abcdefgh").unwrap();
    assert_eq!(r.submit(g), VINF_HGCM_ASYNC_EXECUTE);
    r.wait_done(g);
    let mut out = [0u8; 8];
    r.mem.read(g + 60, &mut out).unwrap();
    assert_eq!(&out, b"hgfedcba");
    // Embedded data reaching past the request: refused before the service sees it.
    r.mem.write_le::<4>(g + 52, 9).unwrap();
    r.mem.write_le::<4>(g + 24, 0).unwrap();
    assert_eq!(r.submit(g), VERR_INVALID_PARAMETER);
}

#[test]
fn hgcm_bad_page_lists_are_refused() {
    let r = rig();
    r.linux_init();
    let (_, client) = r.connect(0x20_0000, "Echo");
    let data = vec![1u8; 100];
    let g = 0x22_0000;
    let params_end = 44 + 48;
    type Mutation = Box<dyn Fn(&Rig)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "descriptor inside the parameter array",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<4>(g + 44 + 32 + 8, 44).unwrap();
            }),
        ),
        (
            "zero pages",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<2>(g + params_end + 6, 0).unwrap();
            }),
        ),
        (
            "bad direction",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<4>(g + params_end, 4).unwrap();
            }),
        ),
        (
            "first-page offset too big",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<2>(g + params_end + 4, 4096).unwrap();
            }),
        ),
        (
            "unaligned page",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<8>(g + params_end + 8, 0x30_0001).unwrap();
            }),
        ),
        (
            "page outside RAM",
            Box::new(move |r: &Rig| {
                r.mem
                    .write_le::<8>(g + params_end + 8, 0xffff_f000)
                    .unwrap();
            }),
        ),
        (
            "huge size",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<4>(g + 44 + 32 + 4, 0xffff_ffff).unwrap();
            }),
        ),
        (
            "too many parameters",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<4>(g + 40, 33).unwrap();
            }),
        ),
        (
            "parameter array past the end",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<4>(g + 40, 20).unwrap();
            }),
        ),
        (
            "invalid parameter type",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<4>(g + 44, 3).unwrap();
            }),
        ),
        (
            "non-empty linear address",
            Box::new(move |r: &Rig| {
                r.mem.write_le::<4>(g + 44 + 16, 5).unwrap();
                r.mem.write_le::<4>(g + 44 + 16 + 4, 16).unwrap();
            }),
        ),
    ];
    for (what, mutate) in cases {
        build_call(&r, g, true, client, 1, 0x30_0000, &data);
        mutate(&r);
        assert_eq!(r.submit(g), VERR_INVALID_PARAMETER, "{what}");
        assert_eq!(r.u32(g + 24), 0, "{what}: never completed");
    }
    assert_eq!(r.dev.pending_hgcm(), 0);
    // Unknown client: refused synchronously.
    build_call(&r, g, true, client + 100, 1, 0x30_0000, &data);
    assert_eq!(r.submit(g), VERR_HGCM_INVALID_CLIENT_ID);
}

#[test]
fn hgcm_cancel2_never_completes_the_cancelled_call() {
    let r = rig();
    r.linux_init();
    let (_, client) = r.connect(0x20_0000, "Echo");
    let data = vec![7u8; 16];
    let g = 0x23_0000;
    build_call(&r, g, true, client, 2, 0x30_0000, &data);
    assert_eq!(r.submit(g), VINF_HGCM_ASYNC_EXECUTE);
    assert_eq!(r.dev.pending_hgcm(), 1);
    let c = 0x24_0000;
    r.put_req(c, req::HGCM_CANCEL2, 28, &[(24, &(g as u32).to_le_bytes())]);
    assert_eq!(r.submit(c), 0);
    assert_eq!(r.dev.pending_hgcm(), 0);
    // Cancelling again: not found. Address 0: invalid.
    assert_eq!(r.submit(c), VERR_NOT_FOUND);
    r.put_req(c, req::HGCM_CANCEL2, 28, &[]);
    assert_eq!(r.submit(c), VERR_INVALID_PARAMETER);
    // The service completes the parked call later: the guest buffer stays untouched.
    let host = r.dev.core.hgcm.clone();
    host.with_service::<Echo, _>("Echo", |e| {
        for c in e.parked.drain(..) {
            c.complete(0);
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(r.u32(g + 24), 0, "no DONE after a successful cancel");
}

#[test]
fn hgcm_disconnect_then_call_fails() {
    let r = rig();
    r.linux_init();
    let (_, client) = r.connect(0x20_0000, "Echo");
    let d = 0x25_0000;
    r.put_req(d, req::HGCM_DISCONNECT, 36, &[(32, &client.to_le_bytes())]);
    assert_eq!(r.submit(d), VINF_HGCM_ASYNC_EXECUTE);
    r.wait_done(d);
    assert_eq!(r.submit(d), VERR_HGCM_INVALID_CLIENT_ID);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random requests never panic the dispatcher, and a request whose header is invalid
    /// is never written back.
    #[test]
    fn random_requests_never_panic(
        rtype in prop_oneof![0u32..230, Just(62u32), Just(63u32), Just(60u32)],
        size in 0u32..600,
        body in proptest::collection::vec(any::<u8>(), 0..600),
        reported in any::<bool>(),
    ) {
        let r = rig();
        if reported {
            r.linux_init();
        }
        r.mem.write(REQ, &body).unwrap();
        r.mem.write_le::<4>(REQ, u64::from(size)).unwrap();
        r.mem.write_le::<4>(REQ + 4, 0x10001).unwrap();
        r.mem.write_le::<4>(REQ + 8, u64::from(rtype)).unwrap();
        r.mem.write(REQ + 12, &(-1i32).to_le_bytes()).unwrap();
        r.dev.submit_request(REQ as u32);
        if size < 24 {
            prop_assert_eq!(r.rc(REQ), -1);
        }
    }
}
