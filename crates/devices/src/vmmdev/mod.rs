//! The VirtualBox Guest Additions device, VMMDev (PCI 80EE:CAFE, class 08:80:00), as
//! VirtualBox presents it and the mainline Linux `vboxguest` driver expects it:
//!
//! - BAR0, 32 I/O ports: a 32-bit write to offset 0 (or 8) submits the guest-physical
//!   address of a request; the host processes it inside the write and writes the request
//!   back with its status. A 32-bit read of offset 8 acknowledges events (fast IRQ ack).
//! - BAR1, 4 MiB memory: `VMMDevMemory` (size, version, and `fHaveEvents`, which the
//!   guest's interrupt handler reads to see whether the shared INTA# is ours).
//! - INTA#, level-triggered, shared: asserted while wanted host events are pending
//!   (`events`).
//! - Port 0x504: the backdoor log; each line the guest writes goes to the host log.
//!
//! Requests are decoded in `dispatch`, HGCM requests in `hgcm_req`, which hands them to
//! an [`hgcm::HgcmHost`] and completes them asynchronously from the service's thread
//! (result, then the DONE flag, then the HGCM event), exactly as VirtualBox does.
//!
//! Every byte of a request is guest-controlled: sizes are checked per type before any field
//! is used, guest-memory accesses go through pgm's checked accessors, and a malformed
//! request gets the status VirtualBox returns for it.

mod bytes;
pub mod consts;
mod dispatch;
mod events;
pub mod guest_info;
mod hgcm_req;

#[cfg(test)]
mod tests;

pub use events::Events;
pub use guest_info::{AdditionsVersion, GuestInfo, RunLevel};

use crate::pci::{regs, BarKind, PciConfig, PciFunction, PciRegion, PciSpace};
use consts::*;
use hgcm::HgcmHost;
use iomio::{BusDevice, SharedDevice};
use parking_lot::Mutex;
use pdm::IrqLine;
use pgm::GuestMemory;
use std::collections::HashMap;
use std::sync::Arc;

/// VirtualBox's PCI vendor ID.
pub const VMMDEV_VENDOR_ID: u16 = 0x80ee;
/// The VMMDev's device ID.
pub const VMMDEV_DEVICE_ID: u16 = 0xcafe;
/// Class 08 (base system peripheral), subclass 80 (other), prog-if 0.
pub const VMMDEV_CLASS: u32 = 0x08_8000;
/// Size of the request I/O BAR.
pub const IO_BAR_SIZE: u64 = 0x20;
/// Size of the VMMDevMemory BAR.
pub const MMIO_BAR_SIZE: u64 = 0x40_0000;
/// Bytes of VMMDevMemory the host keeps (the rest reads as zero).
const MEMORY_PAGE: usize = 4096;

/// The version novabox reports to the guest (GetHostVersion); the Linux driver logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Build.
    pub build: u32,
    /// Revision.
    pub revision: u32,
}

impl Default for HostVersion {
    fn default() -> Self {
        // The VirtualBox release whose host side we follow (7.1.12).
        HostVersion {
            major: 7,
            minor: 1,
            build: 12,
            revision: 169651,
        }
    }
}

/// What the guest asked for with SetPowerStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    /// Pause the VM.
    Pause,
    /// Power it off.
    PowerOff,
    /// Save state and power off.
    SaveState,
}

/// Host UTC in milliseconds since the Unix epoch (injectable for tests).
pub type HostTimeFn = Arc<dyn Fn() -> u64 + Send + Sync>;
/// Receives guest power requests.
pub type PowerFn = Arc<dyn Fn(PowerRequest) + Send + Sync>;

/// Configuration of a VMMDev.
#[derive(Clone)]
pub struct VmmDevConfig {
    /// Reported host version.
    pub host_version: HostVersion,
    /// GetHostTime answers (VirtualBox: time sync not disabled by GetHostTimeDisabled).
    pub time_sync: bool,
    /// Host clock.
    pub host_time_ms: HostTimeFn,
    /// SetPowerStatus(save state) is allowed (VirtualBox AllowGuestToSaveState).
    pub allow_guest_save_state: bool,
    /// Guest power requests go here (None: refused with VERR_NOT_SUPPORTED).
    pub power: Option<PowerFn>,
    /// How long the vCPU submitting an HGCM call waits for it to finish before the call
    /// goes asynchronous (default [`HGCM_SYNC_WAIT`]; zero: always asynchronous, as
    /// VirtualBox).
    pub hgcm_sync_wait: std::time::Duration,
}

/// The default [`VmmDevConfig::hgcm_sync_wait`].
pub const HGCM_SYNC_WAIT: std::time::Duration = hgcm_req::SYNC_WAIT;

impl std::fmt::Debug for VmmDevConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmmDevConfig")
            .field("host_version", &self.host_version)
            .field("time_sync", &self.time_sync)
            .finish()
    }
}

/// The host's UTC clock in milliseconds.
pub fn system_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Default for VmmDevConfig {
    fn default() -> Self {
        VmmDevConfig {
            host_version: HostVersion::default(),
            time_sync: true,
            host_time_ms: Arc::new(system_time_ms),
            allow_guest_save_state: true,
            power: None,
            hgcm_sync_wait: HGCM_SYNC_WAIT,
        }
    }
}

/// Absolute pointer state (the host's view, reported to the guest on request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MouseState {
    /// `VMMDEV_MOUSE_*` capability word (guest and host bits).
    pub caps: u32,
    /// X, 0..0xFFFF.
    pub x: i32,
    /// Y, 0..0xFFFF.
    pub y: i32,
    /// Wheel.
    pub dz: i32,
    /// Horizontal wheel.
    pub dw: i32,
    /// Buttons.
    pub buttons: u32,
}

/// One display's change request (VMMDevDisplayDef plus bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DisplayDef {
    /// `VMMDEV_DISPLAY_*` flags.
    pub flags: u32,
    /// Display index.
    pub id: u32,
    /// X origin.
    pub x: i32,
    /// Y origin.
    pub y: i32,
    /// Width.
    pub cx: u32,
    /// Height.
    pub cy: u32,
    /// Bits per pixel.
    pub bpp: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct DisplaySlot {
    current: DisplayDef,
    last_read: DisplayDef,
    pending: bool,
}

/// Most displays VirtualBox tracks.
pub const MAX_DISPLAYS: usize = 64;

struct State {
    events: Events,
    mouse: MouseState,
    guest: GuestInfo,
    requestor_info: bool,
    session_id: u64,
    heartbeat: bool,
    heartbeats: u64,
    displays: Vec<DisplaySlot>,
    seamless: bool,
    page: Vec<u8>,
    backdoor_line: Vec<u8>,
}

impl State {
    fn new() -> State {
        let mut s = State {
            events: Events::default(),
            mouse: MouseState {
                caps: mouse::HOST_RECHECKS_NEEDS_HOST_CURSOR
                    | mouse::HOST_SUPPORTS_FULL_STATE_PROTOCOL,
                ..Default::default()
            },
            guest: GuestInfo::default(),
            requestor_info: false,
            session_id: new_session_id(),
            heartbeat: false,
            heartbeats: 0,
            displays: vec![DisplaySlot::default(); MAX_DISPLAYS],
            seamless: false,
            page: vec![0; MEMORY_PAGE],
            backdoor_line: Vec::new(),
        };
        s.reset_page();
        s
    }

    fn reset_page(&mut self) {
        self.page.fill(0);
        bytes::put_u32(&mut self.page, 0, MEMORY_SIZE_FIELD);
        bytes::put_u32(&mut self.page, 4, MEMORY_VERSION);
    }
}

/// A value that changes on every VM start and reset (VirtualBox uses the TSC).
fn new_session_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32) | 1
}

pub(crate) struct Core {
    memory: Arc<GuestMemory>,
    irq: IrqLine,
    hgcm: Arc<HgcmHost>,
    cfg: VmmDevConfig,
    state: Mutex<State>,
    pci: Mutex<PciConfig>,
    /// HGCM requests in flight, by guest-physical address.
    pending: Mutex<HashMap<u64, hgcm_req::Pending>>,
}

impl Core {
    /// Apply the event state to INTA#, fHaveEvents and the PCI status bit. Called with
    /// the state lock held (lock order: state, then pci).
    fn sync_irq(&self, s: &mut State) {
        let level = s.events.irq;
        s.page[8] = u8::from(level);
        let mut pci = self.pci.lock();
        pci.set_interrupt_status(level);
        let out = level && !pci.intx_disabled();
        drop(pci);
        self.irq.set(out);
    }

    fn raise(&self, bits: u32) {
        let mut s = self.state.lock();
        s.events.raise(bits);
        self.sync_irq(&mut s);
    }
}

/// The VMMDev. Cheap to clone; every clone is the same device.
#[derive(Clone)]
pub struct VmmDev {
    core: Arc<Core>,
}

impl std::fmt::Debug for VmmDev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VmmDev")
    }
}

impl VmmDev {
    /// A VMMDev on `irq` (the INTA# line of its slot), reading requests from `memory` and
    /// routing HGCM to `hgcm` (None: every HGCM connect fails as with no services).
    pub fn new(
        cfg: VmmDevConfig,
        memory: Arc<GuestMemory>,
        irq: IrqLine,
        hgcm: Option<Arc<HgcmHost>>,
    ) -> VmmDev {
        let mut pci = PciConfig::new(VMMDEV_VENDOR_ID, VMMDEV_DEVICE_ID, VMMDEV_CLASS, 0);
        pci.set_interrupt_pin(1);
        // Sizes are powers of two and fixed, so these cannot fail.
        let _ = pci.add_bar(0, BarKind::Io, IO_BAR_SIZE);
        let _ = pci.add_bar(
            1,
            BarKind::Mem32 {
                prefetchable: false,
            },
            MMIO_BAR_SIZE,
        );
        VmmDev {
            core: Arc::new(Core {
                memory,
                irq,
                hgcm: hgcm.unwrap_or_else(|| Arc::new(HgcmHost::new())),
                cfg,
                state: Mutex::new(State::new()),
                pci: Mutex::new(pci),
                pending: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The PCI function to plug into the bus (VirtualBox puts it at 00:04.0).
    pub fn pci_function(&self) -> Arc<Mutex<dyn PciFunction>> {
        let io: SharedDevice = Arc::new(Mutex::new(IoPorts(self.core.clone())));
        let mmio: SharedDevice = Arc::new(Mutex::new(MemoryBar(self.core.clone())));
        Arc::new(Mutex::new(VmmDevPci {
            core: self.core.clone(),
            io,
            mmio,
        }))
    }

    /// The device for the backdoor log port 0x504.
    pub fn backdoor_log_device(&self) -> SharedDevice {
        Arc::new(Mutex::new(BackdoorLog(self.core.clone())))
    }

    /// Process the request at guest-physical `gpa`, as a write to the request port does.
    pub fn submit_request(&self, gpa: u32) {
        dispatch::process(&self.core, u64::from(gpa));
    }

    /// The fast-ack port read: acknowledge and return the wanted events.
    pub fn fast_acknowledge(&self) -> u32 {
        let mut s = self.core.state.lock();
        if !s.events.additions_ok {
            return u32::MAX;
        }
        let ev = s.events.acknowledge();
        self.core.sync_irq(&mut s);
        ev
    }

    /// Raise host events (`consts::event` bits).
    pub fn raise_events(&self, bits: u32) {
        self.core.raise(bits);
    }

    /// The current event state.
    pub fn events(&self) -> Events {
        self.core.state.lock().events.clone()
    }

    /// INTA# as the device drives it.
    pub fn irq_asserted(&self) -> bool {
        self.core.state.lock().events.irq
    }

    /// A new absolute pointer position (0..0xFFFF each), wheel movement and buttons; the
    /// guest is told with the MOUSE_POSITION_CHANGED event when anything changed.
    pub fn set_absolute_mouse(&self, x: i32, y: i32, dz: i32, dw: i32, buttons: u32) {
        let x = x.clamp(0, mouse::RANGE_MAX);
        let y = y.clamp(0, mouse::RANGE_MAX);
        let mut s = self.core.state.lock();
        let m = &mut s.mouse;
        if m.x != x || m.y != y || dz != 0 || dw != 0 || m.buttons != buttons {
            m.x = x;
            m.y = y;
            m.dz = dz;
            m.dw = dw;
            m.buttons = buttons;
            s.events.raise(event::MOUSE_POSITION_CHANGED);
            self.core.sync_irq(&mut s);
        }
    }

    /// Change host-owned mouse capability bits; the guest is told when they change.
    pub fn update_mouse_capabilities(&self, add: u32, remove: u32) {
        let mut s = self.core.state.lock();
        let old = s.mouse.caps;
        s.mouse.caps &= !(remove & mouse::HOST_MASK);
        s.mouse.caps |= (add & mouse::HOST_MASK)
            | mouse::HOST_RECHECKS_NEEDS_HOST_CURSOR
            | mouse::HOST_SUPPORTS_FULL_STATE_PROTOCOL;
        if s.mouse.caps != old {
            s.events.raise(event::MOUSE_CAPABILITIES_CHANGED);
            self.core.sync_irq(&mut s);
        }
    }

    /// The pointer state and capability word.
    pub fn mouse(&self) -> MouseState {
        self.core.state.lock().mouse
    }

    /// True when the guest consumes absolute positions (GUEST_CAN_ABSOLUTE).
    pub fn guest_wants_absolute(&self) -> bool {
        self.core.state.lock().mouse.caps & mouse::GUEST_CAN_ABSOLUTE != 0
    }

    /// What the Additions reported.
    pub fn guest_info(&self) -> GuestInfo {
        self.core.state.lock().guest.clone()
    }

    /// Heartbeats received since the guest enabled them.
    pub fn heartbeats(&self) -> u64 {
        self.core.state.lock().heartbeats
    }

    /// A video-mode hint for display `def.id` (< 64); raises DISPLAY_CHANGE_REQUEST when
    /// it differs from what the guest last read.
    pub fn request_display_change(&self, def: DisplayDef) {
        let Some(idx) = usize::try_from(def.id).ok().filter(|&i| i < MAX_DISPLAYS) else {
            return;
        };
        let mut s = self.core.state.lock();
        let slot = &mut s.displays[idx];
        slot.current = def;
        slot.pending = slot.current != slot.last_read;
        if slot.pending {
            s.events.raise(event::DISPLAY_CHANGE_REQUEST);
            self.core.sync_irq(&mut s);
        }
    }

    /// Ask the guest to enter or leave seamless mode.
    pub fn request_seamless(&self, enabled: bool) {
        let mut s = self.core.state.lock();
        if s.seamless != enabled {
            s.seamless = enabled;
            s.events.raise(event::SEAMLESS_MODE_CHANGE_REQUEST);
            self.core.sync_irq(&mut s);
        }
    }

    /// HGCM requests in flight.
    pub fn pending_hgcm(&self) -> usize {
        self.core.pending.lock().len()
    }

    /// System reset: event state, guest info and pending HGCM requests are dropped, the
    /// HGCM clients disconnected, VMMDevMemory rewritten.
    pub fn reset(&self) {
        for (_, p) in self.core.pending.lock().drain() {
            p.token.cancel();
        }
        self.core.hgcm.reset();
        let mut s = self.core.state.lock();
        s.events.reset();
        s.guest = GuestInfo::default();
        s.requestor_info = false;
        s.session_id = new_session_id();
        s.heartbeat = false;
        s.mouse.caps &= mouse::HOST_MASK;
        for d in s.displays.iter_mut() {
            d.last_read = DisplayDef {
                flags: 0x2,
                id: d.last_read.id,
                ..Default::default()
            };
        }
        s.reset_page();
        self.core.sync_irq(&mut s);
    }
}

/// The PCI function.
struct VmmDevPci {
    core: Arc<Core>,
    io: SharedDevice,
    mmio: SharedDevice,
}

impl PciFunction for VmmDevPci {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.core.pci.lock().read_bytes(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        let mut s = self.core.state.lock();
        self.core.pci.lock().write_bytes(offset, data);
        // INTx disable may have changed.
        self.core.sync_irq(&mut s);
    }

    fn regions(&self) -> Vec<PciRegion> {
        let bars = self.core.pci.lock().decoded_bars();
        bars.into_iter()
            .filter_map(|b| {
                let (device, name) = match (b.index, b.space) {
                    (0, PciSpace::Io) => (self.io.clone(), "vmmdev-req"),
                    (1, PciSpace::Memory) => (self.mmio.clone(), "vmmdev-ram"),
                    _ => return None,
                };
                Some(PciRegion {
                    space: b.space,
                    base: b.base,
                    size: b.size,
                    name: name.into(),
                    device,
                })
            })
            .collect()
    }

    fn reset(&mut self) {
        let cmd = regs::COMMAND;
        self.core.pci.lock().write(cmd, 2, 0);
        VmmDev {
            core: self.core.clone(),
        }
        .reset();
    }
}

/// BAR0: the request port.
struct IoPorts(Arc<Core>);

impl BusDevice for IoPorts {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        if offset == 8 && data.len() == 4 {
            let v = VmmDev {
                core: self.0.clone(),
            }
            .fast_acknowledge();
            data.copy_from_slice(&v.to_le_bytes());
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        // Only 32-bit writes submit requests; VirtualBox ignores other widths.
        if (offset == 0 || offset == 8) && data.len() == 4 {
            let gpa = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            dispatch::process(&self.0, u64::from(gpa));
        }
    }
}

/// BAR1: VMMDevMemory. The first page is kept (guest writes stick, as in VirtualBox's
/// RAM-backed region); the rest reads as zero.
struct MemoryBar(Arc<Core>);

impl BusDevice for MemoryBar {
    fn read(&mut self, _addr: u64, offset: u64, data: &mut [u8]) {
        let s = self.0.state.lock();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| s.page.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write(&mut self, _addr: u64, offset: u64, data: &[u8]) {
        let mut s = self.0.state.lock();
        for (i, b) in data.iter().enumerate() {
            if let Some(p) = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| s.page.get_mut(o))
            {
                *p = *b;
            }
        }
    }
}

/// Port 0x504: the guest's log lines.
struct BackdoorLog(Arc<Core>);

impl BusDevice for BackdoorLog {
    fn read(&mut self, _addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _addr: u64, _offset: u64, data: &[u8]) {
        let mut s = self.0.state.lock();
        let Some(&c) = data.first() else { return };
        if c == b'\n' || s.backdoor_line.len() >= 1024 {
            let line = String::from_utf8_lossy(&s.backdoor_line).into_owned();
            s.backdoor_line.clear();
            tracing::info!(target: "vmmdev::guest", "Guest Log: {line}");
            if c == b'\n' {
                return;
            }
        }
        if c != b'\r' {
            s.backdoor_line.push(c);
        }
    }
}
