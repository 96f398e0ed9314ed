//! The host terminal while a guest console runs on it: keys go to the guest at once and
//! are not echoed twice, but Ctrl-C still reaches novabox (to power the VM off).

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

/// Restores the terminal when dropped.
pub struct RawGuard {
    saved: Option<Termios>,
}

impl RawGuard {
    /// Switch stdin to non-canonical, no-echo mode if it is a terminal.
    pub fn new() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawGuard { saved: None };
        };
        let mut t = saved.clone();
        t.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ECHONL);
        t.local_flags.insert(LocalFlags::ISIG);
        if termios::tcsetattr(&stdin, SetArg::TCSANOW, &t).is_err() {
            return RawGuard { saved: None };
        }
        RawGuard { saved: Some(saved) }
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, t);
        }
    }
}
