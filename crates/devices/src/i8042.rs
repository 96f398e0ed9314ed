//! Intel 8042 keyboard controller with a PS/2 (MF2) keyboard and a PS/2 mouse (IntelliMouse
//! and IntelliMouse Explorer extensions), as VirtualBox's DevPS2 presents them; plus the
//! chipset's "System Control Port A" (port 0x92, fast A20 and fast reset).
//!
//! Interface (IBM PC/AT Technical Reference, 8042 firmware as documented for the AT/PS2
//! controllers): port 0x60 reads the output buffer and writes data (to the keyboard, or the
//! argument of a controller command); port 0x64 reads the status register and writes
//! controller commands. Controller commands: 0x20/0x60 read/write the command byte (and
//! 0x21-0x3F/0x61-0x7F the rest of the internal RAM), 0xA7/0xA8 disable/enable the aux
//! port, 0xA9 aux interface test, 0xAA self test (answers 0x55, sets the SYS flag), 0xAB
//! keyboard interface test, 0xAD/0xAE disable/enable the keyboard, 0xC0 read input port,
//! 0xD0/0xD1 read/write the output port (bit 0: system reset, active low; bit 1: A20 gate),
//! 0xD2/0xD3 write the keyboard/aux output buffer, 0xD4 write to the aux device,
//! 0xDD/0xDF A20 off/on, 0xE0 read test inputs, 0xF0-0xFF pulse output-port bits (bit 0
//! clear = pulse the reset line: 0xFE is the classic reboot).
//!
//! With the command byte's translate bit set (SeaBIOS sets it) every byte the keyboard
//! sends passes through the 8042's set-2-to-set-1 table, and an 0xF0 break prefix becomes
//! bit 7 of the next byte: the keyboard runs in set 2 and the guest sees set 1, as on real
//! hardware (Linux's atkbd handles either).
//!
//! IRQ 1 is asserted while the output buffer holds keyboard (or controller) data and the
//! command byte enables it; IRQ 12 likewise for aux data. Reading port 0x60 drops the line
//! and, if more data is queued, raises it again, so each byte is a new ISA edge.
//!
//! Host side: [`I8042::key_event`] takes a key's set-2 make code (optionally 0xE0-prefixed)
//! and press/release, [`I8042::key_event_set1`] the same in set 1, and
//! [`I8042::mouse_event`] relative motion and buttons. Reset requests (0xFE, output port
//! bit 0, port 0x92 bit 0) reach the VMM through a callback and a polled flag; the A20
//! gate through [`A20Gate`].

use iomio::BusDevice;
use parking_lot::Mutex;
use pdm::IrqLine;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// Data port.
pub const DATA_PORT: u16 = 0x60;
/// Status/command port.
pub const STATUS_PORT: u16 = 0x64;
/// System control port A (fast A20 / fast reset).
pub const PORT_92: u16 = 0x92;
/// ISA IRQ of the keyboard.
pub const KBD_IRQ: u32 = 1;
/// ISA IRQ of the PS/2 mouse.
pub const AUX_IRQ: u32 = 12;

/// A callback the VMM installs to be told about a reset request.
pub type ResetCallback = Arc<dyn Fn() + Send + Sync>;

// Status register bits.
const STS_OBF: u8 = 0x01;
const STS_SYS: u8 = 0x04;
const STS_CMD: u8 = 0x08;
const STS_UNLOCKED: u8 = 0x10;
const STS_AUXB: u8 = 0x20;

// Command byte bits.
const CCB_KBD_INT: u8 = 0x01;
const CCB_AUX_INT: u8 = 0x02;
const CCB_SYS: u8 = 0x04;
const CCB_KBD_DISABLE: u8 = 0x10;
const CCB_AUX_DISABLE: u8 = 0x20;
const CCB_XLATE: u8 = 0x40;

// Output port bits.
const OUT_RESET: u8 = 0x01;
const OUT_A20: u8 = 0x02;
/// Output port at reset: reset line high, A20 on, keyboard clock/data high (QEMU/Bochs).
const OUT_DEFAULT: u8 = 0xcf;

// Device replies.
const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;

const KBD_QUEUE: usize = 32;
const AUX_QUEUE: usize = 256;

/// The 8042's set-2 to set-1 translation table for bytes 0x00-0x87; bytes above it pass
/// unchanged (this is the table published in the IBM/Intel documentation).
const XLATE: [u8; 0x88] = [
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
    0x80, 0x81, 0x82, 0x41, 0x54, 0x85, 0x86, 0x87,
];

/// Translate one byte from set 2 to set 1 as the 8042 does.
pub fn set2_to_set1(b: u8) -> u8 {
    XLATE.get(b as usize).copied().unwrap_or(b)
}

/// Inverse of [`set2_to_set1`] for set-1 make codes (0x00-0x7F). Where two set-2 codes
/// translate to the same byte the real key wins (0x83 = F7, 0x84 = Alt+SysRq).
pub fn set1_to_set2(b: u8) -> Option<u8> {
    XLATE
        .iter()
        .enumerate()
        .rev()
        .find(|&(i, &v)| v == b && i != 0)
        .map(|(i, _)| i as u8)
}

/// Callback told about A20 gate changes.
pub type A20Callback = Box<dyn FnMut(bool) + Send>;

/// The A20 gate: enabled when either the 8042 output port or port 0x92 enables it.
pub struct A20Gate {
    /// Bit 0: 8042 output port, bit 1: port 0x92.
    sources: AtomicU8,
    on_change: Mutex<Option<A20Callback>>,
}

impl std::fmt::Debug for A20Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "A20Gate({})", self.enabled())
    }
}

impl A20Gate {
    /// A gate as at power-on: the 8042 output port has A20 enabled.
    pub fn new() -> Arc<Self> {
        Arc::new(A20Gate {
            sources: AtomicU8::new(1),
            on_change: Mutex::new(None),
        })
    }

    /// True when address line 20 is not masked.
    pub fn enabled(&self) -> bool {
        self.sources.load(Ordering::SeqCst) != 0
    }

    /// Run `f(enabled)` whenever the combined state changes.
    pub fn set_callback(&self, f: A20Callback) {
        *self.on_change.lock() = Some(f);
    }

    fn set_source(&self, bit: u8, on: bool) {
        let before = if on {
            self.sources.fetch_or(bit, Ordering::SeqCst)
        } else {
            self.sources.fetch_and(!bit, Ordering::SeqCst)
        };
        let after = if on { before | bit } else { before & !bit };
        if (before != 0) != (after != 0) {
            tracing::debug!(enabled = after != 0, "A20 gate");
            if let Some(cb) = self.on_change.lock().as_mut() {
                cb(after != 0);
            }
        }
    }
}

/// Who put a byte in the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Kbd,
    Aux,
}

/// The PS/2 keyboard behind the controller's first port.
#[derive(Debug)]
struct Keyboard {
    queue: VecDeque<u8>,
    scanning: bool,
    set: u8,
    leds: u8,
    typematic: u8,
    pending: Option<u8>,
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Self {
        Keyboard {
            queue: VecDeque::new(),
            scanning: true,
            set: 2,
            leds: 0,
            typematic: 0x2b,
            pending: None,
            last_sent: 0,
        }
    }

    fn defaults(&mut self) {
        self.set = 2;
        self.leds = 0;
        self.typematic = 0x2b;
    }

    fn push(&mut self, b: u8) -> bool {
        if self.queue.len() >= KBD_QUEUE {
            return false;
        }
        self.queue.push_back(b);
        self.last_sent = b;
        true
    }

    fn command(&mut self, b: u8) {
        if let Some(c) = self.pending.take() {
            // An argument was expected; a byte in the command range starts a new command
            // instead (arguments of 0xED/0xF3/0xF0 are all below 0xED).
            if b < 0xed {
                match c {
                    0xed => {
                        self.leds = b & 7;
                        self.push(ACK);
                    }
                    0xf0 => match b {
                        0 => {
                            self.push(ACK);
                            self.push(self.set);
                        }
                        1..=3 => {
                            self.set = b;
                            self.push(ACK);
                        }
                        _ => {
                            self.push(RESEND);
                        }
                    },
                    _ => {
                        self.typematic = b & 0x7f;
                        self.push(ACK);
                    }
                }
                return;
            }
        }
        // Reset, enable and the default commands discard unsent keystrokes.
        if matches!(b, 0xf4..=0xf6 | 0xff) {
            self.queue.clear();
        }
        match b {
            0xed | 0xf0 | 0xf3 => {
                self.pending = Some(b);
                self.push(ACK);
            }
            0xee => {
                self.push(0xee);
            }
            0xf2 => {
                self.push(ACK);
                self.push(0xab);
                self.push(0x83);
            }
            0xf4 => {
                self.scanning = true;
                self.push(ACK);
            }
            0xf5 => {
                self.defaults();
                self.scanning = false;
                self.push(ACK);
            }
            0xf6 => {
                self.defaults();
                self.scanning = true;
                self.push(ACK);
            }
            // Set-3 key attribute commands: accepted, attributes not modelled.
            0xf7..=0xfd => {
                self.push(ACK);
            }
            0xfe => {
                let last = self.last_sent;
                self.push(last);
            }
            0xff => {
                self.defaults();
                self.scanning = true;
                self.push(ACK);
                self.push(BAT_OK);
            }
            _ => {
                self.push(RESEND);
            }
        }
    }

    /// Queue the bytes for one key transition given its set-2 make code.
    fn key(&mut self, set2_make: &[u8], pressed: bool) -> bool {
        let Some((&code, prefix)) = set2_make.split_last() else {
            return false;
        };
        if !self.scanning {
            return false;
        }
        let mut out: Vec<u8> = prefix.to_vec();
        match self.set {
            1 => {
                let c = set2_to_set1(code);
                out.push(if pressed { c } else { c | 0x80 });
            }
            // Set 3 shares set 2's make codes for the main block; we emit set-2 codes.
            _ => {
                if !pressed {
                    out.push(0xf0);
                }
                out.push(code);
            }
        }
        if self.queue.len() + out.len() > KBD_QUEUE {
            return false;
        }
        for b in out {
            self.push(b);
        }
        true
    }
}

/// The PS/2 mouse behind the controller's aux port.
#[derive(Debug)]
struct Mouse {
    queue: VecDeque<u8>,
    remote: bool,
    enabled: bool,
    scaling21: bool,
    wrap: bool,
    resolution: u8,
    rate: u8,
    id: u8,
    rates: [u8; 3],
    pending: Option<u8>,
    dx: i32,
    dy: i32,
    dz: i32,
    buttons: u8,
    last_sent: u8,
}

impl Mouse {
    fn new() -> Self {
        Mouse {
            queue: VecDeque::new(),
            remote: false,
            enabled: false,
            scaling21: false,
            wrap: false,
            resolution: 2,
            rate: 100,
            id: 0,
            rates: [0; 3],
            pending: None,
            dx: 0,
            dy: 0,
            dz: 0,
            buttons: 0,
            last_sent: 0,
        }
    }

    fn defaults(&mut self) {
        self.remote = false;
        self.enabled = false;
        self.scaling21 = false;
        self.resolution = 2;
        self.rate = 100;
        self.dx = 0;
        self.dy = 0;
        self.dz = 0;
    }

    fn push(&mut self, b: u8) {
        if self.queue.len() < AUX_QUEUE {
            self.queue.push_back(b);
            self.last_sent = b;
        }
    }

    fn packet_len(&self) -> usize {
        if self.id == 0 {
            3
        } else {
            4
        }
    }

    fn status_byte(&self) -> u8 {
        // Status order: bit 2 left, bit 1 middle, bit 0 right.
        let b = self.buttons;
        (u8::from(self.remote) << 6)
            | (u8::from(self.enabled) << 5)
            | (u8::from(self.scaling21) << 4)
            | ((b & 1) << 2)
            | (((b >> 2) & 1) << 1)
            | ((b >> 1) & 1)
    }

    fn send_packet(&mut self) {
        let dx = self.dx.clamp(-256, 255);
        let dy = self.dy.clamp(-256, 255);
        let mut b0 = 0x08 | (self.buttons & 0x07);
        if dx < 0 {
            b0 |= 0x10;
        }
        if dy < 0 {
            b0 |= 0x20;
        }
        self.push(b0);
        self.push(dx as u8);
        self.push(dy as u8);
        self.dx -= dx;
        self.dy -= dy;
        match self.id {
            3 => {
                let dz = self.dz.clamp(-127, 127);
                self.push(dz as u8);
                self.dz -= dz;
            }
            4 => {
                let dz = self.dz.clamp(-8, 7);
                self.push((dz as u8 & 0x0f) | ((self.buttons & 0x18) << 1));
                self.dz -= dz;
            }
            _ => self.dz = 0,
        }
    }

    fn set_rate(&mut self, r: u8) {
        self.rate = r;
        self.rates = [self.rates[1], self.rates[2], r];
        // The IntelliMouse "knock" sequences.
        if self.rates == [200, 100, 80] && self.id == 0 {
            self.id = 3;
        } else if self.rates == [200, 200, 80] && self.id == 3 {
            self.id = 4;
        }
    }

    fn command(&mut self, b: u8) {
        if let Some(c) = self.pending.take() {
            match c {
                0xe8 => self.resolution = b & 3,
                _ => self.set_rate(b),
            }
            self.push(ACK);
            return;
        }
        if self.wrap && b != 0xec && b != 0xff {
            self.push(b);
            return;
        }
        // Reset and disable discard unsent packets.
        if matches!(b, 0xf5 | 0xff) {
            self.queue.clear();
        }
        match b {
            0xe6 => {
                self.scaling21 = false;
                self.push(ACK);
            }
            0xe7 => {
                self.scaling21 = true;
                self.push(ACK);
            }
            0xe8 | 0xf3 => {
                self.pending = Some(b);
                self.push(ACK);
            }
            0xe9 => {
                self.push(ACK);
                let s = self.status_byte();
                self.push(s);
                self.push(self.resolution);
                self.push(self.rate);
            }
            0xea => {
                self.remote = false;
                self.push(ACK);
            }
            0xeb => {
                self.push(ACK);
                self.send_packet();
            }
            0xec => {
                self.wrap = false;
                self.push(ACK);
            }
            0xee => {
                self.wrap = true;
                self.push(ACK);
            }
            0xf0 => {
                self.remote = true;
                self.push(ACK);
            }
            0xf2 => {
                self.push(ACK);
                self.push(self.id);
            }
            0xf4 => {
                self.enabled = true;
                self.push(ACK);
            }
            0xf5 => {
                self.enabled = false;
                self.push(ACK);
            }
            0xf6 => {
                self.defaults();
                self.push(ACK);
            }
            0xfe => {
                let last = self.last_sent;
                self.push(last);
            }
            0xff => {
                self.defaults();
                self.wrap = false;
                self.id = 0;
                self.rates = [0; 3];
                self.push(ACK);
                self.push(BAT_OK);
                self.push(0x00);
            }
            _ => self.push(RESEND),
        }
    }

    fn motion(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) -> bool {
        if !self.enabled {
            return false;
        }
        self.dx = self.dx.saturating_add(dx).clamp(-65536, 65535);
        // Hosts report y growing downwards; PS/2 reports it growing upwards.
        self.dy = self.dy.saturating_sub(dy).clamp(-65536, 65535);
        self.dz = self.dz.saturating_add(dz).clamp(-1024, 1024);
        self.buttons = buttons & 0x1f;
        if self.remote {
            return true;
        }
        let len = self.packet_len();
        let mut sent = false;
        while self.queue.len() + len <= AUX_QUEUE {
            self.send_packet();
            sent = true;
            if self.dx == 0 && self.dy == 0 && self.dz == 0 {
                break;
            }
        }
        sent
    }
}

/// The 8042 controller with its keyboard and mouse. Register the same instance at
/// [`DATA_PORT`] and [`STATUS_PORT`] (one port each); it tells them apart by address.
pub struct I8042 {
    kbd_irq: IrqLine,
    aux_irq: IrqLine,
    ram: [u8; 32],
    sys: bool,
    last_was_cmd: bool,
    outport: u8,
    obuf: Option<(u8, Source)>,
    last_read: u8,
    ctrl_queue: VecDeque<(u8, Source)>,
    pending_cmd: Option<u8>,
    kbd: Keyboard,
    mouse: Mouse,
    xlate_break: bool,
    kbd_level: bool,
    aux_level: bool,
    a20: Arc<A20Gate>,
    reset_requested: Arc<AtomicBool>,
    on_reset: Option<ResetCallback>,
}

impl std::fmt::Debug for I8042 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I8042")
            .field("ccb", &self.ram[0])
            .field("outport", &self.outport)
            .field("obuf", &self.obuf)
            .finish()
    }
}

impl I8042 {
    /// A controller raising `kbd_irq` (ISA IRQ 1) and `aux_irq` (ISA IRQ 12).
    pub fn new(kbd_irq: IrqLine, aux_irq: IrqLine) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CCB_KBD_INT | CCB_AUX_INT;
        I8042 {
            kbd_irq,
            aux_irq,
            ram,
            sys: false,
            last_was_cmd: true,
            outport: OUT_DEFAULT,
            obuf: None,
            last_read: 0,
            ctrl_queue: VecDeque::new(),
            pending_cmd: None,
            kbd: Keyboard::new(),
            mouse: Mouse::new(),
            xlate_break: false,
            kbd_level: false,
            aux_level: false,
            a20: A20Gate::new(),
            reset_requested: Arc::new(AtomicBool::new(false)),
            on_reset: None,
        }
    }

    /// The A20 gate this controller drives (share it with [`Port92`]).
    pub fn a20_gate(&self) -> Arc<A20Gate> {
        self.a20.clone()
    }

    /// True when A20 is enabled (by the 8042 or port 0x92).
    pub fn a20_enabled(&self) -> bool {
        self.a20.enabled()
    }

    /// Run `f` when the guest asks for a system reset through the controller.
    pub fn set_reset_callback(&mut self, f: ResetCallback) {
        self.on_reset = Some(f);
    }

    /// True (once) if the guest requested a reset since the last call.
    pub fn take_reset_request(&self) -> bool {
        self.reset_requested.swap(false, Ordering::SeqCst)
    }

    /// The keyboard LED state (bit 0 Scroll Lock, bit 1 Num Lock, bit 2 Caps Lock).
    pub fn leds(&self) -> u8 {
        self.kbd.leds
    }

    /// The keyboard's scan code set (1-3).
    pub fn scancode_set(&self) -> u8 {
        self.kbd.set
    }

    /// True when the guest enabled mouse data reporting.
    pub fn mouse_enabled(&self) -> bool {
        self.mouse.enabled
    }

    /// The mouse's device ID (0 PS/2, 3 IntelliMouse, 4 IntelliMouse Explorer).
    pub fn mouse_id(&self) -> u8 {
        self.mouse.id
    }

    /// A key went down or up. `set2_make` is the key's make code in scan code set 2, with
    /// its 0xE0 prefix if it has one (e.g. `[0x1c]` for A, `[0xe0, 0x75]` for Up). Returns
    /// false when the keyboard dropped it (scanning disabled or buffer full).
    pub fn key_event(&mut self, set2_make: &[u8], pressed: bool) -> bool {
        let ok = self.kbd.key(set2_make, pressed);
        self.fill();
        ok
    }

    /// Like [`I8042::key_event`] with a set-1 make code (e.g. `[0x1e]` for A).
    pub fn key_event_set1(&mut self, set1_make: &[u8], pressed: bool) -> bool {
        let Some((&code, prefix)) = set1_make.split_last() else {
            return false;
        };
        let Some(c2) = set1_to_set2(code & 0x7f) else {
            return false;
        };
        let mut seq = prefix.to_vec();
        seq.push(c2);
        self.key_event(&seq, pressed)
    }

    /// Queue raw bytes from the keyboard as-is (for sequences such as Pause).
    pub fn push_keyboard_bytes(&mut self, bytes: &[u8]) -> bool {
        if self.kbd.queue.len() + bytes.len() > KBD_QUEUE {
            return false;
        }
        for &b in bytes {
            self.kbd.push(b);
        }
        self.fill();
        true
    }

    /// Relative mouse motion: `dx` right, `dy` down (host convention), `dz` wheel (positive
    /// = towards the user), `buttons` bit 0 left, 1 right, 2 middle, 3 back, 4 forward.
    /// Returns false when the guest has not enabled the mouse.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) -> bool {
        let ok = self.mouse.motion(dx, dy, dz, buttons);
        self.fill();
        ok
    }

    /// Alias of [`I8042::mouse_event`].
    pub fn mouse_move(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) -> bool {
        self.mouse_event(dx, dy, dz, buttons)
    }

    fn ccb(&self) -> u8 {
        self.ram[0]
    }

    fn status(&self) -> u8 {
        let mut s = STS_UNLOCKED;
        match self.obuf {
            Some((_, Source::Kbd)) => s |= STS_OBF,
            Some((_, Source::Aux)) => s |= STS_OBF | STS_AUXB,
            None => {}
        }
        if self.sys {
            s |= STS_SYS;
        }
        if self.last_was_cmd {
            s |= STS_CMD;
        }
        s
    }

    fn update_irqs(&mut self) {
        let kbd = matches!(self.obuf, Some((_, Source::Kbd))) && self.ccb() & CCB_KBD_INT != 0;
        let aux = matches!(self.obuf, Some((_, Source::Aux))) && self.ccb() & CCB_AUX_INT != 0;
        if kbd != self.kbd_level {
            self.kbd_level = kbd;
            self.kbd_irq.set(kbd);
        }
        if aux != self.aux_level {
            self.aux_level = aux;
            self.aux_irq.set(aux);
        }
    }

    /// Move the next byte into the output buffer if it is empty.
    fn fill(&mut self) {
        if self.obuf.is_none() {
            if let Some(e) = self.ctrl_queue.pop_front() {
                self.obuf = Some(e);
            } else if self.ccb() & CCB_KBD_DISABLE == 0 && !self.kbd.queue.is_empty() {
                while let Some(b) = self.kbd.queue.pop_front() {
                    if self.ccb() & CCB_XLATE == 0 {
                        self.obuf = Some((b, Source::Kbd));
                        break;
                    }
                    if b == 0xf0 {
                        // The break prefix is folded into the next byte.
                        self.xlate_break = true;
                        continue;
                    }
                    let mut t = set2_to_set1(b);
                    if std::mem::take(&mut self.xlate_break) {
                        t |= 0x80;
                    }
                    self.obuf = Some((t, Source::Kbd));
                    break;
                }
            } else if self.ccb() & CCB_AUX_DISABLE == 0 {
                if let Some(b) = self.mouse.queue.pop_front() {
                    self.obuf = Some((b, Source::Aux));
                }
            }
        }
        self.update_irqs();
    }

    fn respond(&mut self, b: u8) {
        self.ctrl_queue.push_back((b, Source::Kbd));
        self.fill();
    }

    fn request_reset(&mut self) {
        tracing::info!("i8042: guest requested system reset");
        self.reset_requested.store(true, Ordering::SeqCst);
        if let Some(cb) = &self.on_reset {
            cb();
        }
    }

    fn write_outport(&mut self, v: u8) {
        self.outport = v;
        self.a20.set_source(1, v & OUT_A20 != 0);
        if v & OUT_RESET == 0 {
            self.request_reset();
        }
    }

    fn command(&mut self, c: u8) {
        self.pending_cmd = None;
        match c {
            0x20..=0x3f => {
                let v = self.ram[(c & 0x1f) as usize];
                self.respond(v);
            }
            0x60..=0x7f | 0xd1..=0xd4 => self.pending_cmd = Some(c),
            0xa7 => {
                self.ram[0] |= CCB_AUX_DISABLE;
                self.fill();
            }
            0xa8 => {
                self.ram[0] &= !CCB_AUX_DISABLE;
                self.fill();
            }
            0xa9 | 0xab => self.respond(0x00),
            0xaa => {
                self.sys = true;
                self.respond(0x55);
            }
            0xad => {
                self.ram[0] |= CCB_KBD_DISABLE;
                self.fill();
            }
            0xae => {
                self.ram[0] &= !CCB_KBD_DISABLE;
                self.fill();
            }
            0xc0 => self.respond(0x80),
            0xd0 => {
                let mut v = self.outport & !0x30;
                if matches!(self.obuf, Some((_, Source::Kbd))) {
                    v |= 0x10;
                }
                if matches!(self.obuf, Some((_, Source::Aux))) {
                    v |= 0x20;
                }
                self.respond(v);
            }
            0xdd => self.write_outport(self.outport & !OUT_A20),
            0xdf => self.write_outport(self.outport | OUT_A20),
            0xe0 => self.respond(0x00),
            0xf0..=0xff => {
                if c & 1 == 0 {
                    self.request_reset();
                }
            }
            _ => tracing::debug!("i8042: ignoring controller command {c:#04x}"),
        }
    }

    fn data(&mut self, v: u8) {
        match self.pending_cmd.take() {
            Some(c @ 0x60..=0x7f) => {
                self.ram[(c & 0x1f) as usize] = v;
                if c == 0x60 {
                    self.sys = v & CCB_SYS != 0;
                }
                self.fill();
            }
            Some(0xd1) => self.write_outport(v),
            Some(0xd2) => {
                self.ctrl_queue.push_back((v, Source::Kbd));
                self.fill();
            }
            Some(0xd3) => {
                self.ctrl_queue.push_back((v, Source::Aux));
                self.fill();
            }
            Some(0xd4) => {
                self.mouse.command(v);
                self.fill();
            }
            _ => {
                // Data for the keyboard; sending it re-enables the keyboard interface.
                self.ram[0] &= !CCB_KBD_DISABLE;
                self.kbd.command(v);
                self.fill();
            }
        }
    }

    /// Read port 0x60 (`is_status` false) or 0x64.
    pub fn read_port(&mut self, is_status: bool) -> u8 {
        if is_status {
            return self.status();
        }
        if let Some((b, _)) = self.obuf.take() {
            self.last_read = b;
            // Drop the line so the next byte is a fresh edge.
            self.update_irqs();
            self.fill();
        }
        self.last_read
    }

    /// Write port 0x60 (`is_command` false) or 0x64.
    pub fn write_port(&mut self, is_command: bool, v: u8) {
        self.last_was_cmd = is_command;
        if is_command {
            self.command(v);
        } else {
            self.data(v);
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let Some(b) = data.first_mut() {
            *b = self.read_port(addr == u64::from(STATUS_PORT));
        }
    }

    fn write(&mut self, addr: u64, _offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            self.write_port(addr == u64::from(STATUS_PORT), b);
        }
    }
}

/// System control port A at 0x92: bit 1 gates A20, writing bit 0 as 1 resets the CPU.
pub struct Port92 {
    value: u8,
    a20: Arc<A20Gate>,
    reset_requested: Arc<AtomicBool>,
    on_reset: Option<ResetCallback>,
}

impl std::fmt::Debug for Port92 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Port92({:#04x})", self.value)
    }
}

impl Port92 {
    /// Port 0x92 sharing `a20` with the 8042.
    pub fn new(a20: Arc<A20Gate>) -> Self {
        Port92 {
            value: 0,
            a20,
            reset_requested: Arc::new(AtomicBool::new(false)),
            on_reset: None,
        }
    }

    /// Run `f` on a fast-reset request.
    pub fn set_reset_callback(&mut self, f: ResetCallback) {
        self.on_reset = Some(f);
    }

    /// True (once) if the guest requested a fast reset since the last call.
    pub fn take_reset_request(&self) -> bool {
        self.reset_requested.swap(false, Ordering::SeqCst)
    }
}

impl BusDevice for Port92 {
    fn read(&mut self, _addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let Some(b) = data.first_mut() {
            *b = (self.value & !1) | if self.a20.enabled() { 2 } else { 0 };
        }
    }

    fn write(&mut self, _addr: u64, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        let old = self.value;
        self.value = v & !1;
        self.a20.set_source(2, v & 2 != 0);
        if v & 1 != 0 && old & 1 == 0 {
            tracing::info!("port 0x92: guest requested fast reset");
            self.reset_requested.store(true, Ordering::SeqCst);
            if let Some(cb) = &self.on_reset {
                cb();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    struct Rig {
        c: I8042,
        irq1: Arc<AtomicBool>,
        irq12: Arc<AtomicBool>,
        edges1: Arc<AtomicU32>,
    }

    fn line(level: Arc<AtomicBool>, edges: Arc<AtomicU32>, gsi: u32) -> IrqLine {
        let sink: Arc<dyn pdm::IrqSink> = Arc::new(move |_g: u32, lv: bool| {
            if lv && !level.swap(true, Ordering::SeqCst) {
                edges.fetch_add(1, Ordering::SeqCst);
            }
            level.store(lv, Ordering::SeqCst);
        });
        IrqLine::new(sink, gsi)
    }

    fn rig() -> Rig {
        let irq1 = Arc::new(AtomicBool::new(false));
        let irq12 = Arc::new(AtomicBool::new(false));
        let edges1 = Arc::new(AtomicU32::new(0));
        let c = I8042::new(
            line(irq1.clone(), edges1.clone(), 1),
            line(irq12.clone(), Arc::new(AtomicU32::new(0)), 12),
        );
        Rig {
            c,
            irq1,
            irq12,
            edges1,
        }
    }

    impl Rig {
        fn cmd(&mut self, v: u8) {
            self.c.write_port(true, v);
        }
        fn data(&mut self, v: u8) {
            self.c.write_port(false, v);
        }
        fn status(&mut self) -> u8 {
            self.c.read_port(true)
        }
        fn drain(&mut self) -> Vec<u8> {
            let mut v = Vec::new();
            while self.status() & STS_OBF != 0 {
                v.push(self.c.read_port(false));
            }
            v
        }
        fn aux(&mut self, v: u8) {
            self.cmd(0xd4);
            self.data(v);
        }
    }

    #[test]
    fn self_test_and_interface_tests() {
        let mut r = rig();
        assert_eq!(r.status() & STS_SYS, 0);
        r.cmd(0xaa);
        assert_eq!(r.status() & (STS_OBF | STS_SYS), STS_OBF | STS_SYS);
        assert_eq!(r.drain(), vec![0x55]);
        r.cmd(0xab);
        assert_eq!(r.drain(), vec![0x00]);
        r.cmd(0xa9);
        assert_eq!(r.drain(), vec![0x00]);
    }

    #[test]
    fn command_byte_read_write() {
        let mut r = rig();
        r.cmd(0x60);
        r.data(0x65);
        r.cmd(0x20);
        assert_eq!(r.drain(), vec![0x65]);
        r.cmd(0xa7);
        r.cmd(0xad);
        r.cmd(0x20);
        assert_eq!(r.drain(), vec![0x75]);
        r.cmd(0xa8);
        r.cmd(0xae);
        r.cmd(0x20);
        assert_eq!(r.drain(), vec![0x45]);
        assert_eq!(r.status() & STS_CMD, STS_CMD, "last write went to 0x64");
    }

    #[test]
    fn keyboard_reset_and_identify() {
        let mut r = rig();
        r.data(0xff);
        assert_eq!(r.drain(), vec![ACK, BAT_OK]);
        r.data(0xf2);
        assert_eq!(r.drain(), vec![ACK, 0xab, 0x83]);
        r.data(0xee);
        assert_eq!(r.drain(), vec![0xee]);
        r.data(0x42);
        assert_eq!(r.drain(), vec![RESEND], "unknown command");
    }

    #[test]
    fn identify_is_translated_when_xlate_set() {
        let mut r = rig();
        r.cmd(0x60);
        r.data(CCB_XLATE | CCB_KBD_INT);
        r.data(0xf2);
        assert_eq!(r.drain(), vec![ACK, 0xab, 0x41]);
        r.data(0xf0);
        r.data(0x00);
        assert_eq!(r.drain(), vec![ACK, ACK, 0x41], "set 2 reads back as 0x41");
    }

    #[test]
    fn leds_typematic_and_scancode_set() {
        let mut r = rig();
        r.data(0xed);
        r.data(0x07);
        assert_eq!(r.drain(), vec![ACK, ACK]);
        assert_eq!(r.c.leds(), 7);
        r.data(0xf3);
        r.data(0x20);
        assert_eq!(r.drain(), vec![ACK, ACK]);
        r.data(0xf0);
        r.data(0x01);
        assert_eq!(r.drain(), vec![ACK, ACK]);
        r.data(0xf0);
        r.data(0x00);
        assert_eq!(r.drain(), vec![ACK, ACK, 0x01]);
        assert_eq!(r.c.scancode_set(), 1);
        r.data(0xf0);
        r.data(0x07);
        assert_eq!(r.drain(), vec![ACK, RESEND]);
        // An 0xED whose argument never comes: the next command byte wins.
        r.data(0xed);
        r.data(0xf2);
        assert_eq!(r.drain(), vec![ACK, ACK, 0xab, 0x83]);
    }

    #[test]
    fn scancodes_raw_set2() {
        let mut r = rig();
        assert!(r.c.key_event(&[0x1c], true));
        assert!(r.c.key_event(&[0x1c], false));
        assert!(r.c.key_event(&[0xe0, 0x75], false));
        assert_eq!(r.drain(), vec![0x1c, 0xf0, 0x1c, 0xe0, 0xf0, 0x75]);
    }

    #[test]
    fn scancodes_translated_to_set1() {
        let mut r = rig();
        r.cmd(0x60);
        r.data(CCB_XLATE | CCB_KBD_INT | CCB_SYS);
        r.c.key_event(&[0x1c], true); // A
        r.c.key_event(&[0x1c], false);
        r.c.key_event(&[0xe0, 0x75], true); // Up
        r.c.key_event(&[0xe0, 0x75], false);
        assert_eq!(r.drain(), vec![0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]);
    }

    #[test]
    fn keyboard_set1_mode_and_set1_input() {
        let mut r = rig();
        r.data(0xf0);
        r.data(0x01);
        r.drain();
        r.c.key_event_set1(&[0x1e], true);
        r.c.key_event_set1(&[0x1e], false);
        r.c.key_event_set1(&[0x41], true); // F7 (set 2 0x83)
        assert_eq!(r.drain(), vec![0x1e, 0x9e, 0x41]);
        assert_eq!(set1_to_set2(0x41), Some(0x83));
        assert_eq!(set1_to_set2(0x1e), Some(0x1c));
    }

    #[test]
    fn scanning_disable_drops_keys() {
        let mut r = rig();
        r.data(0xf5);
        r.drain();
        assert!(!r.c.key_event(&[0x1c], true));
        r.data(0xf4);
        r.drain();
        assert!(r.c.key_event(&[0x1c], true));
    }

    #[test]
    fn irq1_edges_per_byte_and_masking() {
        let mut r = rig();
        r.c.key_event(&[0x1c], true);
        r.c.key_event(&[0x1c], false);
        assert!(r.irq1.load(Ordering::SeqCst));
        r.c.read_port(false);
        assert!(
            r.irq1.load(Ordering::SeqCst),
            "next byte raised the line again"
        );
        assert_eq!(r.edges1.load(Ordering::SeqCst), 2);
        r.drain();
        assert!(!r.irq1.load(Ordering::SeqCst));
        r.cmd(0x60);
        r.data(0x00); // interrupts off
        r.c.key_event(&[0x1c], true);
        assert!(!r.irq1.load(Ordering::SeqCst));
        assert_eq!(r.status() & STS_OBF, STS_OBF, "polling still works");
    }

    #[test]
    fn disabled_keyboard_holds_data() {
        let mut r = rig();
        r.cmd(0xad);
        r.c.key_event(&[0x1c], true);
        assert_eq!(r.status() & STS_OBF, 0);
        r.cmd(0xae);
        assert_eq!(r.drain(), vec![0x1c]);
    }

    #[test]
    fn output_port_a20_and_reset() {
        let mut r = rig();
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        r.c.set_reset_callback(Arc::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        }));
        assert!(r.c.a20_enabled());
        r.cmd(0xd0);
        assert_eq!(r.drain()[0] & 3, 3);
        r.cmd(0xd1);
        r.data(0xdd); // A20 off, reset line high
        assert!(!r.c.a20_enabled());
        assert!(!r.c.take_reset_request());
        r.cmd(0xdf);
        assert!(r.c.a20_enabled());
        r.cmd(0xfe);
        assert!(r.c.take_reset_request());
        assert!(!r.c.take_reset_request(), "flag is one-shot");
        r.cmd(0xd1);
        r.data(0x02); // bit 0 low: reset
        assert!(r.c.take_reset_request());
        r.cmd(0xff); // pulse nothing
        assert!(!r.c.take_reset_request());
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn port92_fast_a20_and_reset() {
        let r = rig();
        let gate = r.c.a20_gate();
        let mut p = Port92::new(gate.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        gate.set_callback(Box::new(move |on| s.lock().push(on)));
        let mut r = r;
        r.cmd(0xdd);
        assert!(!gate.enabled());
        p.write(0x92, 0, &[0x02]);
        assert!(gate.enabled());
        let mut d = [0u8];
        p.read(0x92, 0, &mut d);
        assert_eq!(d[0], 0x02);
        p.write(0x92, 0, &[0x00]);
        assert!(!gate.enabled());
        p.write(0x92, 0, &[0x01]);
        assert!(p.take_reset_request());
        assert_eq!(*seen.lock(), vec![false, true, false]);
    }

    #[test]
    fn aux_commands_and_identify() {
        let mut r = rig();
        r.aux(0xff);
        assert_eq!(r.drain(), vec![ACK, BAT_OK, 0x00]);
        assert!(r.irq12.load(Ordering::SeqCst) || r.status() & STS_AUXB == 0);
        r.aux(0xf2);
        assert_eq!(r.drain(), vec![ACK, 0x00]);
        // IntelliMouse knock.
        for rate in [200u8, 100, 80] {
            r.aux(0xf3);
            r.aux(rate);
        }
        r.drain();
        r.aux(0xf2);
        assert_eq!(r.drain(), vec![ACK, 0x03]);
        // Explorer knock.
        for rate in [200u8, 200, 80] {
            r.aux(0xf3);
            r.aux(rate);
        }
        r.drain();
        r.aux(0xf2);
        assert_eq!(r.drain(), vec![ACK, 0x04]);
        r.aux(0xe8);
        r.aux(0x03);
        r.aux(0xe7);
        r.aux(0xe9);
        assert_eq!(r.drain(), vec![ACK, ACK, ACK, ACK, 0x10, 0x03, 80]);
    }

    #[test]
    fn aux_data_sets_auxb_and_irq12() {
        let mut r = rig();
        r.aux(0xf4);
        assert_eq!(r.status() & (STS_OBF | STS_AUXB), STS_OBF | STS_AUXB);
        assert!(r.irq12.load(Ordering::SeqCst));
        assert!(!r.irq1.load(Ordering::SeqCst));
        assert_eq!(r.drain(), vec![ACK]);
        assert!(!r.irq12.load(Ordering::SeqCst));
    }

    #[test]
    fn mouse_stream_packets() {
        let mut r = rig();
        assert!(!r.c.mouse_event(5, 5, 0, 0), "reporting disabled");
        r.aux(0xf4);
        r.drain();
        assert!(r.c.mouse_event(10, 3, 0, 0b001));
        // y down 3 -> PS/2 -3.
        assert_eq!(r.drain(), vec![0x08 | 0x20 | 0x01, 10, 0xfd]);
        r.c.mouse_event(-300, 0, 0, 0);
        assert_eq!(
            r.drain(),
            vec![0x18, 0x00, 0x00, 0x18, (-44i8) as u8, 0],
            "large motion split into 9-bit packets"
        );
    }

    #[test]
    fn wheel_packets_after_knock() {
        let mut r = rig();
        for rate in [200u8, 100, 80] {
            r.aux(0xf3);
            r.aux(rate);
        }
        r.aux(0xf4);
        r.drain();
        r.c.mouse_event(0, 0, -2, 0b100);
        assert_eq!(r.drain(), vec![0x0c, 0, 0, 0xfe]);
        for rate in [200u8, 200, 80] {
            r.aux(0xf3);
            r.aux(rate);
        }
        r.drain();
        r.c.mouse_event(0, 0, 1, 0b1_0000);
        assert_eq!(r.drain(), vec![0x08, 0, 0, 0x21]);
    }

    #[test]
    fn remote_mode_reads_on_request_and_wrap_echoes() {
        let mut r = rig();
        r.aux(0xf4);
        r.aux(0xf0);
        r.drain();
        r.c.mouse_event(4, 0, 0, 0);
        assert_eq!(r.status() & STS_OBF, 0, "remote mode: no stream");
        r.aux(0xeb);
        assert_eq!(r.drain(), vec![ACK, 0x08, 4, 0]);
        r.aux(0xee);
        r.aux(0x12);
        r.aux(0xec);
        assert_eq!(r.drain(), vec![ACK, 0x12, ACK]);
    }

    #[test]
    fn write_output_buffers() {
        let mut r = rig();
        r.cmd(0xd2);
        r.data(0x99);
        r.cmd(0xd3);
        r.data(0x77);
        assert_eq!(r.status() & STS_AUXB, 0);
        assert_eq!(r.c.read_port(false), 0x99);
        assert_eq!(r.status() & STS_AUXB, STS_AUXB);
        assert_eq!(r.c.read_port(false), 0x77);
        assert_eq!(
            r.c.read_port(false),
            0x77,
            "empty buffer reads the last byte"
        );
    }

    #[test]
    fn on_the_bus() {
        let r = rig();
        let dev = Arc::new(Mutex::new(r.c));
        let bus = iomio::Bus::new();
        bus.insert(0x60, 1, "kbd-data", dev.clone()).unwrap();
        bus.insert(0x64, 1, "kbd-status", dev.clone()).unwrap();
        bus.write(0x64, &[0xaa]);
        let mut d = [0u8];
        bus.read(0x64, &mut d);
        assert_eq!(d[0] & STS_OBF, STS_OBF);
        bus.read(0x60, &mut d);
        assert_eq!(d[0], 0x55);
    }

    proptest::proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((0u8..6, proptest::num::u8::ANY, proptest::num::i32::ANY), 0..300)) {
            let mut r = rig();
            for (kind, v, n) in ops {
                match kind {
                    0 => { r.c.read_port(v & 1 != 0); }
                    1 => r.c.write_port(true, v),
                    2 => r.c.write_port(false, v),
                    3 => { r.c.key_event(&[v], n & 1 != 0); }
                    4 => { r.c.mouse_event(n, n.rotate_left(7), n >> 20, v); }
                    _ => { r.c.key_event_set1(&[0xe0, v], n & 1 != 0); }
                }
                proptest::prop_assert!(r.c.kbd.queue.len() <= KBD_QUEUE);
                proptest::prop_assert!(r.c.mouse.queue.len() <= AUX_QUEUE);
            }
        }
    }
}
