//! The HGCM host: the registry of services (each on its own thread, fed by a channel) and
//! the table of connected clients. The VMMDev submits connect / disconnect / call here
//! from a vCPU thread and returns at once; the service completes the request later on its
//! thread through the request's [`Completion`].

use crate::param::Param;
use crate::service::{Call, CancelToken, Completion, Reply, Service};
use crate::status::*;
use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

type HostFn = Box<dyn FnOnce(&mut dyn Service) + Send>;

enum Msg {
    Connect {
        client: u32,
        requestor: u32,
        done: Box<dyn Completion>,
    },
    Disconnect {
        client: u32,
        done: Option<Box<dyn Completion>>,
    },
    Call(Call),
    Host(HostFn),
    Reset,
}

struct ServiceSlot {
    name: &'static str,
    max_clients: usize,
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Clients {
    next_id: u32,
    /// Client id -> index into `services`.
    by_id: HashMap<u32, usize>,
}

impl Clients {
    fn allocate(&mut self) -> u32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            // 0 and all-ones are invalid ids for the Linux driver.
            if self.next_id != 0
                && self.next_id != u32::MAX
                && !self.by_id.contains_key(&self.next_id)
            {
                return self.next_id;
            }
        }
    }
}

/// The services of one VM and their clients.
pub struct HgcmHost {
    services: Vec<ServiceSlot>,
    clients: Arc<Mutex<Clients>>,
}

impl std::fmt::Debug for HgcmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HgcmHost")
            .field(
                "services",
                &self.services.iter().map(|s| s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for HgcmHost {
    fn default() -> Self {
        Self::new()
    }
}

fn run_service(
    mut svc: Box<dyn Service>,
    rx: crossbeam_channel::Receiver<Msg>,
    clients: Arc<Mutex<Clients>>,
) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Connect {
                client,
                requestor,
                done,
            } => {
                let result = svc.connect(client, requestor);
                if result < 0 {
                    // A refused client never existed: free its id.
                    clients.lock().by_id.remove(&client);
                }
                done.complete(Reply {
                    result,
                    client_id: if result >= 0 { client } else { 0 },
                    params: Vec::new(),
                });
            }
            Msg::Disconnect { client, done } => {
                svc.disconnect(client);
                if let Some(done) = done {
                    done.complete(Reply {
                        result: VINF_SUCCESS,
                        client_id: client,
                        params: Vec::new(),
                    });
                }
            }
            Msg::Call(call) => {
                if !call.is_cancelled() {
                    svc.call(call);
                }
            }
            Msg::Host(f) => f(svc.as_mut()),
            Msg::Reset => svc.reset(),
        }
    }
}

impl HgcmHost {
    /// A host without services (every connect answers `VERR_HGCM_SERVICE_NOT_FOUND`).
    pub fn new() -> Self {
        HgcmHost {
            services: Vec::new(),
            clients: Arc::new(Mutex::new(Clients::default())),
        }
    }

    /// Add a service and start its thread.
    pub fn register(&mut self, svc: Box<dyn Service>) -> std::io::Result<()> {
        let name = svc.name();
        let max_clients = svc.max_clients();
        let (tx, rx) = unbounded();
        let clients = self.clients.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hgcm-{name}"))
            .spawn(move || run_service(svc, rx, clients))?;
        self.services.push(ServiceSlot {
            name,
            max_clients,
            tx,
            thread: Some(thread),
        });
        Ok(())
    }

    /// Names of the registered services.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.name).collect()
    }

    /// Connect a new client to service `name` (exact, case-sensitive, as VirtualBox
    /// compares). An unknown service or a full client table completes at once with an
    /// error result.
    pub fn connect(&self, name: &str, requestor: u32, done: Box<dyn Completion>) {
        let Some(idx) = self.services.iter().position(|s| s.name == name) else {
            done.complete(Reply {
                result: VERR_HGCM_SERVICE_NOT_FOUND,
                client_id: 0,
                params: Vec::new(),
            });
            return;
        };
        let mut clients = self.clients.lock();
        let count = clients.by_id.values().filter(|&&i| i == idx).count();
        if count >= self.services[idx].max_clients {
            drop(clients);
            done.complete(Reply {
                result: VERR_OUT_OF_RESOURCES,
                client_id: 0,
                params: Vec::new(),
            });
            return;
        }
        let client = clients.allocate();
        clients.by_id.insert(client, idx);
        drop(clients);
        let msg = Msg::Connect {
            client,
            requestor,
            done,
        };
        if self.services[idx].tx.send(msg).is_err() {
            self.clients.lock().by_id.remove(&client);
        }
    }

    /// Disconnect `client`. Fails with `VERR_HGCM_INVALID_CLIENT_ID` (synchronously) for
    /// an unknown client.
    pub fn disconnect(&self, client: u32, done: Option<Box<dyn Completion>>) -> Result<(), i32> {
        let idx = self
            .clients
            .lock()
            .by_id
            .remove(&client)
            .ok_or(VERR_HGCM_INVALID_CLIENT_ID)?;
        let _ = self.services[idx].tx.send(Msg::Disconnect { client, done });
        Ok(())
    }

    /// Submit a call. Fails synchronously (without using `done`) for an unknown client.
    pub fn call(
        &self,
        client: u32,
        function: u32,
        params: Vec<Param>,
        requestor: u32,
        cancel: CancelToken,
        done: Box<dyn Completion>,
    ) -> Result<(), i32> {
        let idx = *self
            .clients
            .lock()
            .by_id
            .get(&client)
            .ok_or(VERR_HGCM_INVALID_CLIENT_ID)?;
        let call = Call::new(client, function, params, requestor, cancel, done);
        self.services[idx]
            .tx
            .send(Msg::Call(call))
            .map_err(|_| VERR_INVALID_STATE)
    }

    /// Run `f` on service `name`'s thread with the service downcast to `T`, and wait for
    /// its result. None when no such service exists or it is not a `T`.
    pub fn with_service<T: Service, R: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> Option<R> {
        let slot = self.services.iter().find(|s| s.name == name)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job: HostFn = Box::new(move |svc: &mut dyn Service| {
            let r = svc.as_any().downcast_mut::<T>().map(f);
            let _ = tx.send(r);
        });
        slot.tx.send(Msg::Host(job)).ok()?;
        rx.recv().ok().flatten()
    }

    /// VM reset: every client is disconnected and each service resets.
    pub fn reset(&self) {
        let dropped: Vec<(u32, usize)> = self.clients.lock().by_id.drain().collect();
        for (client, idx) in dropped {
            let _ = self.services[idx]
                .tx
                .send(Msg::Disconnect { client, done: None });
        }
        for s in &self.services {
            let _ = s.tx.send(Msg::Reset);
        }
    }

    /// Number of connected clients (diagnostics and tests).
    pub fn client_count(&self) -> usize {
        self.clients.lock().by_id.len()
    }
}

impl Drop for HgcmHost {
    fn drop(&mut self) {
        for s in &mut self.services {
            // Closing the channel ends the thread's loop.
            let (dead, _) = unbounded();
            s.tx = dead;
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}
