//! HGCM requests (connect, disconnect, 32/64-bit call, cancel): decoding the guest's
//! parameter array into host copies, asynchronous completion, and cancellation.
//!
//! Like VirtualBox, the port write only stores `rc = VINF_HGCM_ASYNC_EXECUTE` into the
//! request and submits it; the service completes it later on its own thread, when this
//! module writes the output values and "from host" buffers back, then `result`, then the
//! DONE flag (a separate, later write, so the guest never sees DONE before the data), and
//! raises the HGCM event. A request is either completed or cancelled, never both: both
//! paths take it out of the pending table under one lock, and only the one that finds it
//! there acts.
//!
//! Unlike VirtualBox, the vCPU that wrote the port then waits a short, bounded time
//! (`VmmDevConfig::hgcm_sync_wait`, default [`SYNC_WAIT`]) for the service: a call that
//! finishes within it (most shared-folder reads and writes) is returned completed
//! (`rc = VINF_SUCCESS`, DONE set) from the port write itself and raises no event, which
//! spares the guest the interrupt, the wake-up of the waiting thread and its scheduling:
//! the guest drivers treat any rc other than VINF_HGCM_ASYNC_EXECUTE as "already done". A
//! slower call (a notification wait) falls back to the asynchronous path unchanged.

use super::bytes::*;
use super::consts::{event, req, *};
use super::Core;
use hgcm::status::*;
use hgcm::{CancelToken, Completion, Direction, Param, Reply};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PAGE: u64 = 4096;
/// How long the submitting vCPU waits for an HGCM call before leaving it asynchronous (the
/// default of `VmmDevConfig::hgcm_sync_wait`): long enough for a service thread to wake
/// and do a page of file I/O on a busy host, short enough that a long-polling call costs
/// the vCPU next to nothing.
pub(super) const SYNC_WAIT: Duration = Duration::from_micros(500);

/// How long the waiting vCPU spins before it sleeps: a shared-folder page read or write
/// is done on the service thread in about 5-15 us, and spinning that long spares both
/// threads a futex sleep and wake-up (a context switch each) per call. Only where another
/// host CPU can run the service meanwhile.
const SPIN: Duration = Duration::from_micros(40);

/// The submitting vCPU's wait for its call, while its port write is still in progress.
struct SyncWait {
    state: Mutex<WaitState>,
    cv: Condvar,
    /// Set (after `state`) when the call completed: what the spinning vCPU watches.
    done: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitState {
    /// The vCPU is waiting: a completion now is synchronous (no event).
    Waiting,
    /// Completed while the vCPU waited.
    Completed,
    /// The vCPU returned VINF_HGCM_ASYNC_EXECUTE: a completion raises the event.
    GaveUp,
}

impl SyncWait {
    fn new() -> Arc<SyncWait> {
        Arc::new(SyncWait {
            state: Mutex::new(WaitState::Waiting),
            cv: Condvar::new(),
            done: AtomicBool::new(false),
        })
    }

    /// Wait up to `limit` for the completion: true when it came (the call is done and no
    /// event was raised), false when the call was left to complete asynchronously.
    fn finish(&self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        let deadline = start + limit;
        let spin = SPIN.min(limit);
        if !spin.is_zero() && spare_cpu() {
            while !self.done.load(Ordering::Acquire) && start.elapsed() < spin {
                std::hint::spin_loop();
            }
        }
        let mut s = self.state.lock();
        while *s == WaitState::Waiting {
            if self.cv.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
        if *s == WaitState::Completed {
            return true;
        }
        *s = WaitState::GaveUp;
        false
    }

    /// Called by the completion: true when the waiting vCPU takes it (no event needed).
    fn completed(&self) -> bool {
        let mut s = self.state.lock();
        if *s == WaitState::Waiting {
            *s = WaitState::Completed;
            self.done.store(true, Ordering::Release);
            self.cv.notify_one();
            return true;
        }
        false
    }
}

/// Whether the host has more than one CPU (spinning on a single CPU only delays the
/// service it waits for).
fn spare_cpu() -> bool {
    static SPARE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SPARE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// Bytes of HGCM buffers the guest may have in flight at once (all calls together), so
/// a hostile guest cannot make the host allocate without bound.
pub(super) const MAX_IN_FLIGHT: u64 = 512 << 20;

/// A pending request.
pub(super) struct Pending {
    pub token: CancelToken,
    pub bytes: u64,
}

/// Where a parameter came from, for the write-back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// A value at this offset of the request (the parameter entry + 4).
    Value(u64),
    /// Buffer bytes, in order, at these guest-physical ranges.
    Chunks(Vec<(u64, u32)>),
}

/// A decoded call.
#[derive(Debug)]
pub(super) struct ParsedCall {
    pub client: u32,
    pub function: u32,
    pub params: Vec<Param>,
    origins: Vec<Origin>,
    pub bytes: u64,
}

fn dir_from_flags(f: u32) -> Option<Direction> {
    match f {
        1 => Some(Direction::IN),
        2 => Some(Direction::OUT),
        3 => Some(Direction::BOTH),
        _ => None,
    }
}

/// Decode an HGCMCall32/64 request (`b` is the whole request copied from `gpa`), reading
/// "to host" buffers from guest memory. Errors are header statuses.
pub(super) fn parse_call(
    mem: &pgm::GuestMemory,
    gpa: u64,
    b: &[u8],
    is64: bool,
) -> Result<ParsedCall, i32> {
    let size = b.len() as u64;
    if size < 44 {
        return Err(VERR_INVALID_PARAMETER);
    }
    let client = u32_at(b, 32);
    let function = u32_at(b, 36);
    let count = u32_at(b, 40);
    if count > HGCM_MAX_PARMS {
        return Err(VERR_INVALID_PARAMETER);
    }
    let entry = if is64 { 16u64 } else { 12u64 };
    let params_end = 44 + entry * u64::from(count);
    if params_end > size {
        return Err(VERR_INVALID_PARAMETER);
    }
    let mut params = Vec::with_capacity(count as usize);
    let mut origins = Vec::with_capacity(count as usize);
    let mut total: u64 = 0;
    for i in 0..u64::from(count) {
        let e = (44 + entry * i) as usize;
        let ptype = u32_at(b, e);
        let (param, origin) = match ptype {
            1 => (Param::U32(u32_at(b, e + 4)), Origin::Value(e as u64 + 4)),
            2 => (Param::U64(u64_at(b, e + 4)), Origin::Value(e as u64 + 4)),
            // Linear addresses: only the empty buffer, which Linux sends with its original
            // type (resolving guest-virtual addresses would need the caller's page tables).
            4..=9 => {
                let cb = u32_at(b, e + 4);
                let addr = if is64 {
                    u64_at(b, e + 8)
                } else {
                    u64::from(u32_at(b, e + 8))
                };
                if cb != 0 {
                    tracing::debug!(
                        "HGCM: linear-address parameter {cb} bytes at {addr:#x} refused"
                    );
                    return Err(VERR_INVALID_PARAMETER);
                }
                let dir = match ptype {
                    5 | 8 => Direction::IN,
                    6 | 9 => Direction::OUT,
                    _ => Direction::BOTH,
                };
                (
                    Param::Buffer {
                        dir,
                        data: Vec::new(),
                    },
                    Origin::Chunks(Vec::new()),
                )
            }
            10 | 12 | 13 => {
                let cb = u32_at(b, e + 4);
                let off = u64::from(u32_at(b, e + 8));
                page_list(mem, b, ptype, cb, off, params_end, &mut total)?
            }
            11 => {
                let w = u32_at(b, e + 4);
                let dir = dir_from_flags(w & 0xff).ok_or(VERR_INVALID_PARAMETER)?;
                let off = u64::from(w >> 8);
                let cb = u32_at(b, e + 8);
                let end = off
                    .checked_add(u64::from(cb))
                    .ok_or(VERR_INVALID_PARAMETER)?;
                if cb != 0 && (off < params_end || end > size) {
                    return Err(VERR_INVALID_PARAMETER);
                }
                total += u64::from(cb);
                let data = if dir.to_host && cb != 0 {
                    b[off as usize..end as usize].to_vec()
                } else {
                    vec![0; cb as usize]
                };
                let chunks = if cb == 0 {
                    Vec::new()
                } else {
                    vec![(gpa.checked_add(off).ok_or(VERR_INVALID_PARAMETER)?, cb)]
                };
                (Param::Buffer { dir, data }, Origin::Chunks(chunks))
            }
            _ => return Err(VERR_INVALID_PARAMETER),
        };
        if total > HGCM_MAX_DATA {
            return Err(VERR_INVALID_PARAMETER);
        }
        params.push(param);
        origins.push(origin);
    }
    Ok(ParsedCall {
        client,
        function,
        params,
        origins,
        bytes: total,
    })
}

/// Decode a page-list parameter (types 10, 12, 13) into a host buffer and its chunks.
fn page_list(
    mem: &pgm::GuestMemory,
    b: &[u8],
    ptype: u32,
    cb: u32,
    off: u64,
    params_end: u64,
    total: &mut u64,
) -> Result<(Param, Origin), i32> {
    let size = b.len() as u64;
    if cb == 0 {
        // "valid if size != 0": an empty buffer needs no descriptor.
        return Ok((Param::buf(Vec::new()), Origin::Chunks(Vec::new())));
    }
    *total = total.saturating_add(u64::from(cb));
    if *total > HGCM_MAX_DATA {
        return Err(VERR_INVALID_PARAMETER);
    }
    if off < params_end || off.checked_add(8).is_none_or(|e| e > size) {
        return Err(VERR_INVALID_PARAMETER);
    }
    let o = off as usize;
    let flags = u32_at(b, o);
    let dir = dir_from_flags(flags).ok_or(VERR_INVALID_PARAMETER)?;
    let first = u64::from(u16_at(b, o + 4));
    let pages = u64::from(u16_at(b, o + 6));
    if first >= PAGE || pages == 0 || off + 8 + 8 * pages > size {
        return Err(VERR_INVALID_PARAMETER);
    }
    let needed = (first + u64::from(cb)).div_ceil(PAGE);
    let count_ok = match ptype {
        12 => pages == 1,
        13 => pages == needed,
        _ => pages >= needed,
    };
    if !count_ok {
        return Err(VERR_INVALID_PARAMETER);
    }
    let mut chunks = Vec::new();
    if ptype == 12 {
        let base = u64_at(b, o + 8);
        if base & (PAGE - 1) != 0 {
            return Err(VERR_INVALID_PARAMETER);
        }
        let start = base.checked_add(first).ok_or(VERR_INVALID_PARAMETER)?;
        start
            .checked_add(u64::from(cb))
            .ok_or(VERR_INVALID_PARAMETER)?;
        chunks.push((start, cb));
    } else {
        let mut left = u64::from(cb);
        for i in 0..needed {
            let page = u64_at(b, o + 8 + 8 * i as usize);
            if page & (PAGE - 1) != 0 {
                return Err(VERR_INVALID_PARAMETER);
            }
            let start = if i == 0 { first } else { 0 };
            let len = (PAGE - start).min(left);
            chunks.push((page + start, len as u32));
            left -= len;
        }
    }
    let mut data = vec![0u8; cb as usize];
    if dir.to_host {
        let mut at = 0usize;
        for &(g, l) in &chunks {
            let l = l as usize;
            mem.read(g, &mut data[at..at + l])
                .map_err(|_| VERR_INVALID_PARAMETER)?;
            at += l;
        }
    }
    Ok((Param::Buffer { dir, data }, Origin::Chunks(chunks)))
}

/// Write a finished call's outputs into guest memory.
fn write_back(mem: &pgm::GuestMemory, gpa: u64, params: &[Param], origins: &[Origin]) {
    for (p, o) in params.iter().zip(origins) {
        match (p, o) {
            (Param::U32(v), Origin::Value(off)) => {
                let _ = mem.write(gpa + off, &v.to_le_bytes());
            }
            (Param::U64(v), Origin::Value(off)) => {
                let _ = mem.write(gpa + off, &v.to_le_bytes());
            }
            (Param::Buffer { dir, data }, Origin::Chunks(chunks)) if dir.from_host => {
                let mut at = 0usize;
                for &(g, l) in chunks {
                    let l = l as usize;
                    let Some(src) = data.get(at..at + l) else {
                        break;
                    };
                    let _ = mem.write(g, src);
                    at += l;
                }
            }
            _ => {}
        }
    }
}

enum Kind {
    Connect,
    Disconnect,
    Call(Vec<Origin>),
}

/// Completes one request from the service's thread.
struct Done {
    core: Arc<Core>,
    gpa: u64,
    token: CancelToken,
    kind: Kind,
    /// Set for calls whose submitting vCPU waits a little (see [`SYNC_WAIT`]).
    sync: Option<Arc<SyncWait>>,
}

impl Completion for Done {
    fn complete(self: Box<Self>, reply: Reply) {
        {
            let mut pending = self.core.pending.lock();
            match pending.get(&self.gpa) {
                Some(p) if p.token.same(&self.token) && !self.token.is_cancelled() => {
                    pending.remove(&self.gpa);
                }
                // Cancelled (or the VM was reset): never touch the guest buffer again.
                _ => return,
            }
        }
        let mem = &self.core.memory;
        match &self.kind {
            Kind::Connect => {
                let _ = mem.write(self.gpa + 164, &reply.client_id.to_le_bytes());
            }
            Kind::Disconnect => {}
            Kind::Call(origins) => write_back(mem, self.gpa, &reply.params, origins),
        }
        let _ = mem.write(self.gpa + 28, &reply.result.to_le_bytes());
        let flags = mem.read_le::<4>(self.gpa + 24).unwrap_or(0) as u32;
        let _ = mem.write(self.gpa + 24, &(flags | HGCM_REQ_DONE).to_le_bytes());
        if self.sync.as_ref().is_some_and(|w| w.completed()) {
            return;
        }
        self.core.raise(event::HGCM);
    }
}

fn write_rc(core: &Core, gpa: u64, rc: i32) {
    let _ = core.memory.write(gpa + 12, &rc.to_le_bytes());
}

/// Register a request as pending; refuses when the guest has too much in flight.
fn begin(core: &Core, gpa: u64, bytes: u64) -> Result<CancelToken, i32> {
    let mut pending = core.pending.lock();
    let in_flight: u64 = pending
        .iter()
        .filter(|(&g, _)| g != gpa)
        .map(|(_, p)| p.bytes)
        .sum();
    if in_flight.saturating_add(bytes) > MAX_IN_FLIGHT {
        return Err(VERR_NO_MEMORY);
    }
    let token = CancelToken::new();
    // A guest reusing the address of a request still in flight: the old one is dropped.
    if let Some(old) = pending.insert(
        gpa,
        Pending {
            token: token.clone(),
            bytes,
        },
    ) {
        old.token.cancel();
    }
    Ok(token)
}

fn abandon(core: &Core, gpa: u64, token: &CancelToken) {
    let mut pending = core.pending.lock();
    if pending.get(&gpa).is_some_and(|p| p.token.same(token)) {
        pending.remove(&gpa);
    }
}

/// Cancel the pending request at `target`: true when it was pending.
fn cancel(core: &Core, target: u64) -> bool {
    match core.pending.lock().remove(&target) {
        Some(p) => {
            p.token.cancel();
            true
        }
        None => false,
    }
}

/// Handle an HGCM request (types 60-65) copied from `gpa`.
pub(super) fn handle(core: &Arc<Core>, gpa: u64, b: &[u8], requestor: u32) {
    {
        let mut s = core.state.lock();
        s.events.force_hgcm();
        core.sync_irq(&mut s);
    }
    let rtype = u32_at(b, 8);
    let size = b.len();
    let done = |token: CancelToken, kind: Kind, sync: Option<Arc<SyncWait>>| {
        Box::new(Done {
            core: core.clone(),
            gpa,
            token,
            kind,
            sync,
        })
    };
    match rtype {
        req::HGCM_CONNECT => {
            if size < 168 || !matches!(u32_at(b, 32), 1 | 2) {
                return write_rc(core, gpa, VERR_INVALID_PARAMETER);
            }
            let Some(name) = cstr_at(b, 36, 128) else {
                return write_rc(core, gpa, VERR_INVALID_PARAMETER);
            };
            let token = match begin(core, gpa, 0) {
                Ok(t) => t,
                Err(rc) => return write_rc(core, gpa, rc),
            };
            write_rc(core, gpa, VINF_HGCM_ASYNC_EXECUTE);
            core.hgcm
                .connect(name, requestor, done(token, Kind::Connect, None));
        }
        req::HGCM_DISCONNECT => {
            if size < 36 {
                return write_rc(core, gpa, VERR_INVALID_PARAMETER);
            }
            let token = match begin(core, gpa, 0) {
                Ok(t) => t,
                Err(rc) => return write_rc(core, gpa, rc),
            };
            write_rc(core, gpa, VINF_HGCM_ASYNC_EXECUTE);
            let client = u32_at(b, 32);
            if let Err(rc) = core
                .hgcm
                .disconnect(client, Some(done(token.clone(), Kind::Disconnect, None)))
            {
                abandon(core, gpa, &token);
                write_rc(core, gpa, rc);
            }
        }
        req::HGCM_CALL32 | req::HGCM_CALL64 => {
            let call = match parse_call(&core.memory, gpa, b, rtype == req::HGCM_CALL64) {
                Ok(c) => c,
                Err(rc) => return write_rc(core, gpa, rc),
            };
            let token = match begin(core, gpa, call.bytes) {
                Ok(t) => t,
                Err(rc) => return write_rc(core, gpa, rc),
            };
            write_rc(core, gpa, VINF_HGCM_ASYNC_EXECUTE);
            let ParsedCall {
                client,
                function,
                params,
                origins,
                ..
            } = call;
            let wait = SyncWait::new();
            let completion = done(token.clone(), Kind::Call(origins), Some(wait.clone()));
            match core.hgcm.call(
                client,
                function,
                params,
                requestor,
                token.clone(),
                completion,
            ) {
                Ok(()) => {
                    if wait.finish(core.cfg.hgcm_sync_wait) {
                        write_rc(core, gpa, VINF_SUCCESS);
                    }
                }
                Err(rc) => {
                    wait.finish(Duration::ZERO);
                    abandon(core, gpa, &token);
                    write_rc(core, gpa, rc);
                }
            }
        }
        req::HGCM_CANCEL => {
            // The original call buffer resubmitted with type 64.
            let rc = if size >= 32 && cancel(core, gpa) {
                VINF_SUCCESS
            } else {
                VERR_INVALID_PARAMETER
            };
            write_rc(core, gpa, rc);
        }
        req::HGCM_CANCEL2 => {
            let target = match size {
                28 => u64::from(u32_at(b, 24)),
                n if n >= 32 => u64_at(b, 24),
                _ => return write_rc(core, gpa, VERR_INVALID_PARAMETER),
            };
            let rc = if target == 0 || target == u64::from(u32::MAX) || target == u64::MAX {
                VERR_INVALID_PARAMETER
            } else if cancel(core, target) {
                VINF_SUCCESS
            } else {
                VERR_NOT_FOUND
            };
            write_rc(core, gpa, rc);
        }
        _ => write_rc(core, gpa, VERR_NOT_IMPLEMENTED),
    }
}
