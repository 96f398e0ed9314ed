//! `VBoxSharedClipboard`: text between the guest's clipboard and novabox's host clipboard,
//! as VirtualBox's service answers a guest (VBoxClient) over the legacy message protocol.
//!
//! - Host to guest: [`SharedClipboard::host_set_text`] replaces the host clipboard and,
//!   when the mode allows host to guest, queues FORMATS_REPORT(UNICODETEXT) for every
//!   client; the guest then reads the text with DATA_READ.
//! - Guest to host: the guest's REPORT_FORMATS with UNICODETEXT makes the service ask at
//!   once for the text (READ_DATA message); the guest's DATA_WRITE answer becomes the host
//!   clipboard ([`SharedClipboard::host_text`]).
//! - The mode (.vbox `Clipboard@mode`, `controlvm VM clipboard mode`) is enforced here:
//!   calls in a direction the mode does not allow get `VERR_ACCESS_DENIED`, as VirtualBox's.
//! - The newer protocol: REPORT_FEATURES is answered with host features 0 and the
//!   must-be-one bit cleared, which makes a 7.x VBoxClient fall back to this protocol
//!   (VirtualBox's own answer when it lacks the context-id protocol).

pub mod wire;

#[cfg(test)]
mod tests;

use crate::service::{Call, Service};
use crate::status::*;
use crate::Param;
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use wire::{fmt, func, msg};

/// The service name guests connect to.
pub const SERVICE_NAME: &str = "VBoxSharedClipboard";
/// VirtualBox's client limit for this service.
pub const MAX_CLIENTS: usize = 128;
/// Messages kept per client; a guest that never waits cannot make the host grow.
const MAX_QUEUE: usize = 16;
/// Longest text the host keeps (bytes of UTF-8); longer guest text is cut.
pub const MAX_TEXT: usize = 16 << 20;
/// `VERR_INVALID_CONTEXT`: a DATA_WRITE without a matching host read.
pub const VERR_INVALID_CONTEXT: i32 = -32;

/// The clipboard mode (VirtualBox's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No sharing.
    #[default]
    Disabled,
    /// The host's clipboard reaches the guest only.
    HostToGuest,
    /// The guest's clipboard reaches the host only.
    GuestToHost,
    /// Both ways.
    Bidirectional,
}

impl Mode {
    /// Host data may go to the guest.
    pub fn host_to_guest(self) -> bool {
        matches!(self, Mode::HostToGuest | Mode::Bidirectional)
    }
    /// Guest data may come to the host.
    pub fn guest_to_host(self) -> bool {
        matches!(self, Mode::GuestToHost | Mode::Bidirectional)
    }
    /// The name VBoxManage uses (`controlvm VM clipboard mode NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::HostToGuest => "hosttoguest",
            Mode::GuestToHost => "guesttohost",
            Mode::Bidirectional => "bidirectional",
        }
    }
    /// Parse a VBoxManage name (case-insensitive).
    pub fn parse(s: &str) -> Option<Mode> {
        [
            Mode::Disabled,
            Mode::HostToGuest,
            Mode::GuestToHost,
            Mode::Bidirectional,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s))
    }
}

/// One connected guest client.
#[derive(Default)]
struct Client {
    /// Messages (id, value) not yet fetched.
    queue: VecDeque<(u32, u32)>,
    /// The parked MSG_OLD_GET_WAIT.
    parked: Option<Call>,
    /// Formats the host asked this client for and not yet answered.
    pending_reads: VecDeque<u32>,
}

impl Client {
    /// Queue a message; a FORMATS_REPORT replaces an older one, a READ_DATA for a format
    /// already asked for is not repeated.
    fn queue(&mut self, id: u32, value: u32) {
        if id == msg::FORMATS_REPORT {
            self.queue.retain(|&(i, _)| i != msg::FORMATS_REPORT);
        } else if self.queue.contains(&(id, value)) {
            return;
        }
        if self.queue.len() >= MAX_QUEUE {
            self.queue.pop_front();
        }
        self.queue.push_back((id, value));
        self.deliver();
    }

    /// Hand the oldest message to the parked wait, if both exist.
    fn deliver(&mut self) {
        if let Some(c) = self.parked.as_ref() {
            if c.is_cancelled() {
                self.parked = None;
            }
        }
        if self.parked.is_none() || self.queue.is_empty() {
            return;
        }
        let (Some(mut call), Some((id, value))) = (self.parked.take(), self.queue.pop_front())
        else {
            return;
        };
        call.params[0].set_u32(id);
        call.params[1].set_u32(value);
        call.complete(VINF_SUCCESS);
    }
}

/// The service: the host clipboard, the mode and the clients.
#[derive(Default)]
pub struct SharedClipboard {
    mode: Mode,
    clients: BTreeMap<u32, Client>,
    /// novabox's host clipboard (set by the user or by the guest's data).
    text: Option<String>,
}

impl std::fmt::Debug for SharedClipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedClipboard")
            .field("mode", &self.mode)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl SharedClipboard {
    /// A service in `mode` with an empty host clipboard.
    pub fn new(mode: Mode) -> Self {
        SharedClipboard {
            mode,
            ..Default::default()
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Change the mode (takes effect for the next call, as in VirtualBox).
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        if mode.host_to_guest() && self.text.is_some() {
            self.announce_host_formats();
        }
    }

    /// The host clipboard's text.
    pub fn host_text(&self) -> Option<String> {
        self.text.clone()
    }

    /// Replace the host clipboard (the user copied `text` on the host); the guests hear of
    /// it when the mode allows host to guest.
    pub fn host_set_text(&mut self, text: &str) {
        let mut t = text.to_string();
        truncate_utf8(&mut t, MAX_TEXT);
        self.text = Some(t);
        if self.mode.host_to_guest() {
            self.announce_host_formats();
        }
    }

    fn announce_host_formats(&mut self) {
        for c in self.clients.values_mut() {
            c.queue(msg::FORMATS_REPORT, fmt::UNICODETEXT);
        }
    }

    fn guest_call(&mut self, call: &mut Call) -> Option<i32> {
        let client = call.client;
        let p = &mut call.params;
        let r: Result<i32, i32> = match call.function {
            func::MSG_OLD_GET_WAIT => {
                let r = (|| {
                    if p.len() != 2 {
                        return Err(VERR_WRONG_PARAMETER_COUNT);
                    }
                    if p.iter().any(|x| x.as_u32().is_none()) {
                        return Err(VERR_WRONG_PARAMETER_TYPE);
                    }
                    let c = self
                        .clients
                        .get_mut(&client)
                        .ok_or(VERR_INVALID_CLIENT_ID)?;
                    if let Some((id, value)) = c.queue.pop_front() {
                        p[0].set_u32(id);
                        p[1].set_u32(value);
                        return Ok(Some(VINF_SUCCESS));
                    }
                    if c.parked.as_ref().is_some_and(|w| !w.is_cancelled()) {
                        return Err(VERR_RESOURCE_BUSY);
                    }
                    Ok(None)
                })();
                match r {
                    Ok(Some(rc)) => Ok(rc),
                    Ok(None) => return None, // park
                    Err(e) => Err(e),
                }
            }
            func::REPORT_FORMATS => (|| {
                if !self.mode.guest_to_host() {
                    return Err(VERR_ACCESS_DENIED);
                }
                if p.len() != 1 {
                    return Err(VERR_WRONG_PARAMETER_COUNT);
                }
                let formats = p[0].as_u32().ok_or(VERR_WRONG_PARAMETER_TYPE)?;
                let c = self
                    .clients
                    .get_mut(&client)
                    .ok_or(VERR_INVALID_CLIENT_ID)?;
                // Fetch the text at once: novabox's host clipboard holds data, not
                // promises, so `clipboard get-text` answers without waiting on the guest.
                if formats & fmt::UNICODETEXT != 0 {
                    if !c.pending_reads.contains(&fmt::UNICODETEXT) {
                        c.pending_reads.push_back(fmt::UNICODETEXT);
                    }
                    c.queue(msg::READ_DATA, fmt::UNICODETEXT);
                }
                Ok(VINF_SUCCESS)
            })(),
            func::DATA_READ => (|| {
                if !self.mode.host_to_guest() {
                    return Err(VERR_ACCESS_DENIED);
                }
                if p.len() != 3 {
                    return Err(VERR_WRONG_PARAMETER_COUNT);
                }
                let format = p[0].as_u32().ok_or(VERR_WRONG_PARAMETER_TYPE)?;
                if p[1].as_buf().is_none() || p[2].as_u32().is_none() {
                    return Err(VERR_WRONG_PARAMETER_TYPE);
                }
                if !single_valid_format(format) {
                    return Err(VERR_INVALID_PARAMETER);
                }
                if format == fmt::URI_LIST {
                    return Err(VERR_ACCESS_DENIED);
                }
                let data = match (&self.text, format) {
                    (Some(t), fmt::UNICODETEXT) => wire::to_guest_text(t),
                    _ => Vec::new(),
                };
                let len = u32::try_from(data.len()).map_err(|_| VERR_TOO_MUCH_DATA)?;
                p[2].set_u32(len);
                let buf = p[1].as_buf_mut().ok_or(VERR_WRONG_PARAMETER_TYPE)?;
                if data.len() > buf.len() {
                    return Ok(VINF_BUFFER_OVERFLOW);
                }
                buf[..data.len()].copy_from_slice(&data);
                Ok(VINF_SUCCESS)
            })(),
            func::DATA_WRITE => (|| {
                if !self.mode.guest_to_host() {
                    return Err(VERR_ACCESS_DENIED);
                }
                if p.len() != 2 {
                    return Err(VERR_WRONG_PARAMETER_COUNT);
                }
                let format = p[0].as_u32().ok_or(VERR_WRONG_PARAMETER_TYPE)?;
                let data = p[1].as_buf().ok_or(VERR_WRONG_PARAMETER_TYPE)?;
                if !single_valid_format(format) {
                    return Err(VERR_INVALID_PARAMETER);
                }
                let c = self
                    .clients
                    .get_mut(&client)
                    .ok_or(VERR_INVALID_CLIENT_ID)?;
                let i = c
                    .pending_reads
                    .iter()
                    .position(|&f| f == format)
                    .ok_or(VERR_INVALID_CONTEXT)?;
                c.pending_reads.remove(i);
                if format == fmt::UNICODETEXT {
                    let mut t = wire::from_guest_text(data);
                    truncate_utf8(&mut t, MAX_TEXT);
                    self.text = Some(t);
                }
                Ok(VINF_SUCCESS)
            })(),
            func::REPORT_FEATURES | func::QUERY_FEATURES => (|| {
                if p.len() != 2 {
                    return Err(VERR_WRONG_PARAMETER_COUNT);
                }
                let w1 = p[1].as_u64().ok_or(VERR_WRONG_PARAMETER_TYPE)?;
                if p[0].as_u64().is_none() {
                    return Err(VERR_WRONG_PARAMETER_TYPE);
                }
                if w1 & wire::FEATURES1_MUST_BE_ONE == 0 {
                    return Err(VERR_INVALID_PARAMETER);
                }
                // No host features: the guest keeps to the legacy protocol.
                p[0].set_u64(0);
                p[1].set_u64(0);
                Ok(VINF_SUCCESS)
            })(),
            func::MSG_CANCEL => (|| {
                if !p.is_empty() {
                    return Err(VERR_WRONG_PARAMETER_COUNT);
                }
                let c = self
                    .clients
                    .get_mut(&client)
                    .ok_or(VERR_INVALID_CLIENT_ID)?;
                match c.parked.take().filter(|w| !w.is_cancelled()) {
                    Some(mut w) => {
                        w.params[0].set_u32(msg::CANCELED);
                        w.params[1].set_u32(0);
                        w.complete(VINF_SUCCESS);
                        Ok(VINF_SUCCESS)
                    }
                    None => Ok(VWRN_NOT_FOUND),
                }
            })(),
            // The obsolete connect, the context-id protocol and transfers: not offered
            // (REPORT_FEATURES said so).
            _ => Err(VERR_NOT_IMPLEMENTED),
        };
        Some(r.unwrap_or_else(|e| e))
    }
}

/// One defined format bit.
fn single_valid_format(f: u32) -> bool {
    f != 0 && f & !fmt::VALID == 0 && f.is_power_of_two()
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Service for SharedClipboard {
    fn name(&self) -> &'static str {
        SERVICE_NAME
    }

    fn max_clients(&self) -> usize {
        MAX_CLIENTS
    }

    fn connect(&mut self, client: u32, _requestor: u32) -> i32 {
        let mut c = Client::default();
        // A new client learns what the host clipboard holds, as VirtualBox's sync does.
        if self.mode.host_to_guest() && self.text.is_some() {
            c.queue(msg::FORMATS_REPORT, fmt::UNICODETEXT);
        }
        self.clients.insert(client, c);
        VINF_SUCCESS
    }

    fn disconnect(&mut self, client: u32) {
        self.clients.remove(&client);
    }

    fn call(&mut self, mut call: Call) {
        match self.guest_call(&mut call) {
            Some(rc) => call.complete(rc),
            None => {
                if let Some(c) = self.clients.get_mut(&call.client) {
                    c.parked = Some(call);
                    c.deliver();
                } else {
                    call.complete(VERR_INVALID_CLIENT_ID);
                }
            }
        }
    }

    fn reset(&mut self) {
        self.clients.clear();
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// Decode a call's parameters the way the service does, without a client (for fuzzing and
/// property tests): runs one call against a fresh service in `mode` with client 1
/// connected and returns the status.
pub fn decode_call(mode: Mode, function: u32, params: Vec<Param>) -> i32 {
    let mut s = SharedClipboard::new(mode);
    s.host_set_text("fuzz");
    s.connect(1, 0);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let call = Call::new(
        1,
        function,
        params,
        0,
        crate::CancelToken::new(),
        Box::new(tx),
    );
    s.call(call);
    rx.try_recv()
        .map(|r| r.result)
        .unwrap_or(VINF_HGCM_ASYNC_EXECUTE)
}
