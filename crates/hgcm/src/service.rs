//! The contract between the HGCM host and one service, and the call object a service
//! completes (at once, or later for calls that wait for an event).

use crate::param::Param;
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The outcome of a connect, disconnect or call, handed back to whoever submitted it
/// (the VMMDev, which writes it into the guest's request and raises the HGCM event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The service's status (the request's `result` field).
    pub result: i32,
    /// For a connect: the new client id (0 when the connect failed).
    pub client_id: u32,
    /// For a call: the parameters as the service left them (written back to the guest).
    pub params: Vec<Param>,
}

/// Receives the outcome of a request. Called exactly once, on the service's thread, or
/// dropped without a call when the request was cancelled or the host shut down.
pub trait Completion: Send {
    /// Deliver the outcome.
    fn complete(self: Box<Self>, reply: Reply);
}

/// A completion that sends the reply over a channel (host-side callers and tests).
impl Completion for crossbeam_channel::Sender<Reply> {
    fn complete(self: Box<Self>, reply: Reply) {
        let _ = self.send(reply);
    }
}

/// Set by the VMMDev when the guest cancels a pending call; a service drops parked calls
/// whose token is set instead of completing them.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, unset token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Mark the call cancelled.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    /// True when both are the same token (clones of one request's token).
    pub fn same(&self, other: &CancelToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One guest call, owned by the service until it completes it.
pub struct Call {
    /// The calling client.
    pub client: u32,
    /// The service function number.
    pub function: u32,
    /// The parameters (values and host copies of the buffers).
    pub params: Vec<Param>,
    /// The `VMMDEV_REQUESTOR_*` bits of the request (0 when the guest did not report them).
    pub requestor: u32,
    cancel: CancelToken,
    done: Box<dyn Completion>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("client", &self.client)
            .field("function", &self.function)
            .field("params", &self.params.len())
            .finish()
    }
}

impl Call {
    /// A call as the host submits it.
    pub fn new(
        client: u32,
        function: u32,
        params: Vec<Param>,
        requestor: u32,
        cancel: CancelToken,
        done: Box<dyn Completion>,
    ) -> Call {
        Call {
            client,
            function,
            params,
            requestor,
            cancel,
            done,
        }
    }

    /// True when the guest cancelled the call: the service must drop it silently.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Finish the call with `result` and the (possibly updated) parameters.
    pub fn complete(self, result: i32) {
        if self.cancel.is_cancelled() {
            return;
        }
        self.done.complete(Reply {
            result,
            client_id: self.client,
            params: self.params,
        });
    }
}

/// An HGCM service. Every method runs on the service's own thread, so a service may
/// block on host I/O without stalling a vCPU.
pub trait Service: Send + 'static {
    /// The name guests connect to (e.g. `VBoxSharedFolders`).
    fn name(&self) -> &'static str;
    /// The most clients this service accepts at once.
    fn max_clients(&self) -> usize {
        1024
    }
    /// A new client; a non-success status refuses it.
    fn connect(&mut self, _client: u32, _requestor: u32) -> i32 {
        crate::status::VINF_SUCCESS
    }
    /// A client went away: drop its handles and parked calls.
    fn disconnect(&mut self, _client: u32) {}
    /// A guest call; complete it now or keep it to complete later.
    fn call(&mut self, call: Call);
    /// The VM was reset: every client is gone.
    fn reset(&mut self) {}
    /// For host-side requests (`HgcmHost::with_service`), which downcast to the concrete type.
    fn as_any(&mut self) -> &mut dyn Any;
}
