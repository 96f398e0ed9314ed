//! vncdotool's `vncdo` command: the script on PATH, or the same entry point through
//! `python3` when pip put the script where PATH does not look (`pip install --user`).

use std::process::Command;

/// A `vncdo` command ready for arguments, or None when vncdotool is not installed.
pub fn vncdo() -> Option<Command> {
    let works = |mut c: Command| {
        c.arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(Command::new("vncdo")) {
        return Some(Command::new("vncdo"));
    }
    let python = || {
        let mut c = Command::new("python3");
        c.args([
            "-c",
            "import sys; from vncdotool.command import vncdo; sys.argv[0] = 'vncdo'; vncdo()",
        ]);
        c
    };
    works(python()).then(python)
}
