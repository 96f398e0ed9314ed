//! POST code register (port 0x80) and the firmware debug console (port 0x402).
//!
//! Port 0x80 is the ISA "manufacturing test" port every PC BIOS writes progress codes to.
//! The chipset latches the last byte; we keep it (readable by the VMM and, as on most
//! chipsets, by the guest) and log each code with `tracing` at debug level.
//!
//! Port 0x402 is the Bochs/QEMU "debugcon" (VirtualBox has the same port as its BIOS debug
//! output when logging is enabled). SeaBIOS built with QEMU support writes its log there
//! (CONFIG_DEBUG_IO) after checking that a read of the port returns 0xE9; QEMU answers
//! every read with 0xE9, and so do we. Bytes go to an injectable sink.

use iomio::BusDevice;
use std::io::Write;

/// The POST code port.
pub const POST_PORT: u16 = 0x80;
/// The debug console port SeaBIOS uses with QEMU.
pub const DEBUGCON_PORT: u16 = 0x402;
/// What a read of the debug console port returns (the Bochs "port E9 hack" signature).
pub const DEBUGCON_READBACK: u8 = 0xe9;

/// The port-0x80 POST code latch. Register with `pio.insert(POST_PORT as u64, 1, ..)`.
#[derive(Debug, Default)]
pub struct PostCode {
    last: u8,
    writes: u64,
}

impl PostCode {
    /// A latch holding 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last code written.
    pub fn last(&self) -> u8 {
        self.last
    }

    /// How many codes were written since power-on.
    pub fn count(&self) -> u64 {
        self.writes
    }
}

impl BusDevice for PostCode {
    fn read(&mut self, _addr: u64, _offset: u64, data: &mut [u8]) {
        // A wider read sees the latch in its first byte; the bytes above it hit ports
        // 0x81.. which nothing decodes here.
        data.fill(0xff);
        if let Some(b) = data.first_mut() {
            *b = self.last;
        }
    }

    fn write(&mut self, _addr: u64, _offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            self.last = b;
            self.writes = self.writes.wrapping_add(1);
            tracing::debug!(code = format_args!("{b:#04x}"), "POST code");
        }
    }
}

/// The debug console: bytes written go to a sink; reads return 0xE9.
pub struct DebugCon {
    sink: Box<dyn Write + Send>,
}

impl std::fmt::Debug for DebugCon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DebugCon")
    }
}

impl DebugCon {
    /// A console writing to `sink` (e.g. a log file, stderr, or a buffer in tests).
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        DebugCon { sink }
    }

    /// A console that discards its output (still answers 0xE9 so firmware behaves the same).
    pub fn discard() -> Self {
        Self::new(Box::new(std::io::sink()))
    }
}

impl BusDevice for DebugCon {
    fn read(&mut self, _addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(DEBUGCON_READBACK);
    }

    fn write(&mut self, _addr: u64, _offset: u64, data: &[u8]) {
        // An `out dx, ax` writes two ISA byte cycles; only the first lands on this port.
        if let Some(&b) = data.first() {
            if let Err(e) = self.sink.write_all(&[b]) {
                tracing::warn!("debug console sink failed: {e}");
            }
            if b == b'\n' {
                let _ = self.sink.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn post_code_latches_last_value() {
        let mut p = PostCode::new();
        p.write(0x80, 0, &[0x12]);
        p.write(0x80, 0, &[0x34]);
        let mut d = [0u8; 1];
        p.read(0x80, 0, &mut d);
        assert_eq!(d[0], 0x34);
        assert_eq!(p.last(), 0x34);
        assert_eq!(p.count(), 2);
    }

    #[test]
    fn debugcon_answers_e9_and_forwards_bytes() {
        let buf = Buf::default();
        let mut c = DebugCon::new(Box::new(buf.clone()));
        let mut d = [0u8; 1];
        c.read(0x402, 0, &mut d);
        assert_eq!(
            d[0], 0xe9,
            "SeaBIOS disables debug output unless it reads 0xE9"
        );
        for b in b"SeaBIOS\n" {
            c.write(0x402, 0, &[*b]);
        }
        assert_eq!(&*buf.0.lock(), b"SeaBIOS\n");
    }

    #[test]
    fn debugcon_on_the_bus() {
        let bus = iomio::Bus::new();
        let buf = Buf::default();
        let dev = Arc::new(Mutex::new(DebugCon::new(Box::new(buf.clone()))));
        bus.insert(DEBUGCON_PORT as u64, 1, "debugcon", dev)
            .unwrap();
        bus.write(0x402, b"x");
        let mut d = [0u8; 1];
        bus.read(0x402, &mut d);
        assert_eq!(d[0], 0xe9);
        assert_eq!(&*buf.0.lock(), b"x");
    }

    proptest::proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((proptest::bool::ANY, 0usize..9, proptest::num::u8::ANY), 0..64)) {
            let mut p = PostCode::new();
            let mut c = DebugCon::discard();
            for (w, len, v) in ops {
                let mut d = vec![v; len];
                if w { p.write(0x80, 0, &d); c.write(0x402, 0, &d); }
                else { p.read(0x80, 0, &mut d); c.read(0x402, 0, &mut d); }
            }
        }
    }
}
