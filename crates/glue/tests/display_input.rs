//! Keys typed by a VNC client and by keyboardputstring reach a guest program, misbehaving
//! clients are dropped while the VM keeps running, and without the Guest Additions the VNC
//! pointer reaches the guest as PS/2 motion.
//!
//! The guest is a tiny long-mode program that polls the i8042 and copies every byte it
//! reads from port 0x60 to COM1 (captured). The keyboard runs in scan code set 2 with the
//! 8042's translation off (nothing programmed it), so the guest sees set-2 bytes. Runs on
//! KVM when usable, else on the interpreter.

mod common;

use common::{long_mode_state, Capture, Guest};
use glue::wiring_display::{Controller, VncConfig};
use glue::{Boot, Console, EngineChoice, Machine, MachineConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const ECHO_KEYS: &str = r"
poll:
    in al, 0x64
    test al, 1
    jz poll
    in al, 0x60
    mov dx, 0x3f8
    out dx, al
    jmp poll
";

/// Handshake (RFB 3.8, no authentication) and return the connected socket.
fn handshake(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    s.write_all(&[1]).unwrap();
    let mut r = [0u8; 4];
    s.read_exact(&mut r).unwrap();
    s.write_all(&[1]).unwrap();
    let mut init = [0u8; 24];
    s.read_exact(&mut init).unwrap();
    let n = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
    let mut name = vec![0u8; n];
    s.read_exact(&mut name).unwrap();
    s
}

fn key(s: &mut TcpStream, keysym: u32, down: bool) {
    let mut m = vec![4, u8::from(down), 0, 0];
    m.extend_from_slice(&keysym.to_be_bytes());
    s.write_all(&m).unwrap();
}

/// Read until the server closes the connection; true if it did within `timeout`.
fn closed_by_server(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    while start.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn wait_bytes(c: &Capture, want: &[u8], timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if c.bytes().windows(want.len()).any(|w| w == want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn display_input_keys_reach_guest_and_bad_clients_are_dropped() {
    let test = "display_input_keys_reach_guest_and_bad_clients_are_dropped";
    let kvm = common::kvm_usable(test);
    let com1 = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Raw {
        image: Guest::new(ECHO_KEYS).image(),
        load_addr: 0,
        state: Box::new(long_mode_state()),
    });
    cfg.memory_mib = 32;
    cfg.engine = if kvm {
        EngineChoice::Kvm
    } else {
        EngineChoice::Interpreter
    };
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.display.controller = Some(Controller::VBoxVga);
    cfg.display.vnc = Some(VncConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: None,
    });
    let slot = cfg.display.handle.clone();
    let mut m = Machine::build(cfg).expect("build");
    let addr = slot.lock().as_ref().unwrap().vnc_addr().unwrap();
    let handle = slot.lock().clone().unwrap();
    let stop = m.stop_handle();
    let c = com1.clone();
    let checks = std::thread::spawn(move || {
        let mut out: Vec<(&str, bool)> = Vec::new();
        // 1. Typing 'a' then 'B' (the server adds Shift for the capital).
        let mut s = handshake(addr);
        key(&mut s, 'a' as u32, true);
        key(&mut s, 'a' as u32, false);
        out.push((
            "'a' press and release arrive as set-2 1C F0 1C",
            wait_bytes(&c, &[0x1c, 0xf0, 0x1c], Duration::from_secs(20)),
        ));
        key(&mut s, 'B' as u32, true);
        key(&mut s, 'B' as u32, false);
        // Shift goes down, B down, Shift up at once (the character is made), B up later.
        out.push((
            "'B' arrives wrapped in Left Shift",
            wait_bytes(
                &c,
                &[0x12, 0x32, 0xf0, 0x12, 0xf0, 0x32],
                Duration::from_secs(20),
            ),
        ));
        // QEMU extended key event: Right Ctrl (E0 1D) after enabling the extension.
        let mut m = vec![2, 0, 0, 1];
        m.extend_from_slice(&(-258i32).to_be_bytes());
        s.write_all(&m).unwrap();
        s.write_all(&[255, 0, 0, 1, 0, 0, 0xff, 0xe4, 0, 0, 0, 0x9d])
            .unwrap();
        out.push((
            "QEMU key event E0 1D arrives as set-2 E0 14",
            wait_bytes(&c, &[0xe0, 0x14], Duration::from_secs(20)),
        ));
        drop(s);

        // 2. Malformed clients are dropped.
        let mut s = handshake(addr);
        s.write_all(&[99, 1, 2, 3]).unwrap();
        out.push((
            "unknown message type: dropped",
            closed_by_server(&mut s, Duration::from_secs(10)),
        ));
        let mut s = handshake(addr);
        s.write_all(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).unwrap();
        out.push((
            "4 GiB cut text: dropped",
            closed_by_server(&mut s, Duration::from_secs(10)),
        ));
        let mut s = handshake(addr);
        s.write_all(&[
            0, 0, 0, 0, 32, 24, 0, 0, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
        ])
        .unwrap();
        out.push((
            "colour-map pixel format: dropped",
            closed_by_server(&mut s, Duration::from_secs(10)),
        ));
        let mut s = handshake(addr);
        s.write_all(&[2, 0, 0xff, 0xff]).unwrap();
        out.push((
            "65535 encodings: dropped",
            closed_by_server(&mut s, Duration::from_secs(10)),
        ));
        let mut s = TcpStream::connect(addr).unwrap();
        let mut v = [0u8; 12];
        s.read_exact(&mut v).unwrap();
        s.write_all(b"HELLO WORLD!").unwrap();
        out.push((
            "not an RFB client: dropped",
            closed_by_server(&mut s, Duration::from_secs(10)),
        ));
        // A huge desktop size request is refused politely (the guest has no driver).
        let mut s = handshake(addr);
        let mut m = vec![251, 0, 0xff, 0xff, 0xff, 0xff, 1, 0];
        m.extend_from_slice(&[0; 16]);
        s.write_all(&m).unwrap();
        key(&mut s, 'z' as u32, true);
        key(&mut s, 'z' as u32, false);
        out.push((
            "after SetDesktopSize 65535x65535 the client still works",
            wait_bytes(&c, &[0x1a, 0xf0, 0x1a], Duration::from_secs(20)),
        ));
        drop(s);

        // 3. A client that asks for updates and never reads is dropped (write timeout).
        // It keeps asking for full updates and reads nothing; the server's writes block
        // once the socket buffers are full, and each write may take WRITE_TIMEOUT. Any
        // read here would let the server make progress again, so the client only writes
        // until the server resets the connection.
        let mut lazy = handshake(addr);
        let start = Instant::now();
        while start.elapsed() < vnc::server::WRITE_TIMEOUT * 6 {
            if lazy
                .write_all(&[3, 0, 0, 0, 0, 0, 0x02, 0x80, 0x01, 0xe0])
                .is_err()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dropped = closed_by_server(&mut lazy, Duration::from_secs(10));
        out.push(("a client that never reads is dropped", dropped));

        // 4. The VM still runs and a new client is served.
        let mut s = handshake(addr);
        key(&mut s, '1' as u32, true);
        key(&mut s, '1' as u32, false);
        out.push((
            "the VM keeps running: '1' arrives afterwards",
            wait_bytes(&c, &[0x16, 0xf0, 0x16], Duration::from_secs(20)),
        ));
        // 5. keyboardputstring (the control request's handle call) types through the same
        // keyboard: "qz" as set-2 15 F0 15 1A F0 1A.
        out.push((
            "keyboardputstring has a key for every character",
            handle.put_string("qz").is_empty(),
        ));
        out.push((
            "keyboardputstring 'qz' arrives",
            wait_bytes(
                &c,
                &[0x15, 0xf0, 0x15, 0x1a, 0xf0, 0x1a],
                Duration::from_secs(20),
            ),
        ));
        stop.power_off();
        out
    });
    let _ = m.run().expect("run");
    if kvm {
        eprintln!("KVM-TEST-RAN {test}");
    }
    let results = checks.join().unwrap();
    for (what, ok) in &results {
        eprintln!("{test}: {what}: {}", if *ok { "ok" } else { "FAILED" });
    }
    assert!(
        results.iter().all(|(_, ok)| *ok),
        "{results:?}\nCOM1: {:02x?}",
        com1.bytes()
    );
}

/// Enable the PS/2 mouse (aux port on, data reporting on) and echo every byte the i8042
/// delivers to COM1.
const ECHO_MOUSE: &str = r"
    mov al, 0xa8
    out 0x64, al
    mov al, 0xd4
    out 0x64, al
    mov al, 0xf4
    out 0x60, al
poll:
    in al, 0x64
    test al, 1
    jz poll
    in al, 0x60
    mov dx, 0x3f8
    out dx, al
    jmp poll
";

fn pointer(s: &mut TcpStream, x: u16, y: u16, buttons: u8) {
    let mut m = vec![5, buttons];
    m.extend_from_slice(&x.to_be_bytes());
    m.extend_from_slice(&y.to_be_bytes());
    s.write_all(&m).unwrap();
}

/// Without the Guest Additions a VNC pointer move arrives as relative PS/2 motion: the
/// guest's mouse acknowledges "enable reporting" (FA), then a move from (100, 100) to
/// (110, 95) is one packet with dx +10 and dy +5 (PS/2 counts up as positive), and a left
/// click is a packet with bit 0 set.
#[test]
fn display_input_pointer_without_additions_is_ps2_motion() {
    let test = "display_input_pointer_without_additions_is_ps2_motion";
    let kvm = common::kvm_usable(test);
    let com1 = Capture::default();
    let mut cfg = MachineConfig::new(Boot::Raw {
        image: Guest::new(ECHO_MOUSE).image(),
        load_addr: 0,
        state: Box::new(long_mode_state()),
    });
    cfg.memory_mib = 32;
    cfg.engine = if kvm {
        EngineChoice::Kvm
    } else {
        EngineChoice::Interpreter
    };
    cfg.console = Console::Writer(Box::new(com1.clone()));
    cfg.display.controller = Some(Controller::VBoxVga);
    cfg.display.vnc = Some(VncConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: None,
    });
    let slot = cfg.display.handle.clone();
    let mut m = Machine::build(cfg).expect("build");
    let addr = slot.lock().as_ref().unwrap().vnc_addr().unwrap();
    let stop = m.stop_handle();
    let c = com1.clone();
    let checks = std::thread::spawn(move || {
        let mut out: Vec<(&str, bool)> = Vec::new();
        out.push((
            "the mouse acknowledges enable-reporting",
            wait_bytes(&c, &[0xfa], Duration::from_secs(20)),
        ));
        let mut s = handshake(addr);
        pointer(&mut s, 100, 100, 0);
        pointer(&mut s, 110, 95, 0);
        out.push((
            "move (+10, -5 on screen) arrives as packet 08 0A 05",
            wait_bytes(&c, &[0x08, 0x0a, 0x05], Duration::from_secs(20)),
        ));
        pointer(&mut s, 110, 95, 1);
        out.push((
            "left button arrives as packet 09 00 00",
            wait_bytes(&c, &[0x09, 0x00, 0x00], Duration::from_secs(20)),
        ));
        stop.power_off();
        out
    });
    let _ = m.run().expect("run");
    if kvm {
        eprintln!("KVM-TEST-RAN {test}");
    }
    let results = checks.join().unwrap();
    for (what, ok) in &results {
        eprintln!("{test}: {what}: {}", if *ok { "ok" } else { "FAILED" });
    }
    assert!(
        results.iter().all(|(_, ok)| *ok),
        "{results:?}\nCOM1: {:02x?}",
        com1.bytes()
    );
}
