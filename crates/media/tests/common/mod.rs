//! Shared helpers for tests that use qemu-img / qemu-io as the independent reference.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Whether qemu-img and qemu-io are installed; says so loudly when they are not.
pub fn qemu_available() -> bool {
    let ok = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let have = ok("qemu-img") && ok("qemu-io");
    if !have {
        eprintln!("\n!!!!!!!! qemu-img/qemu-io NOT FOUND: the QEMU cross-check is SKIPPED (apt-get install qemu-utils) !!!!!!!!\n");
    }
    have
}

/// Run a command, panic with its output on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and return (success, stdout+stderr).
pub fn try_run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `qemu-io -f fmt -c "write -P pat off len" img`.
pub fn qemu_write(fmt: &str, img: &Path, pat: u8, off: u64, len: u64) {
    run(
        "qemu-io",
        &[
            "-f",
            fmt,
            "-c",
            &format!("write -P {pat} {off} {len}"),
            img.to_str().unwrap(),
        ],
    );
}

/// qemu's view of an image as a raw file.
pub fn qemu_to_raw(fmt: &str, img: &Path, out: &Path) {
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            fmt,
            "-O",
            "raw",
            img.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
}

/// Compare our read of `img` against a raw file, chunk by chunk.
pub fn assert_same_as_raw(img: &Path, raw: &Path) {
    use media::Disk;
    let mut m = media::open(img, &media::OpenOptions::read_only())
        .unwrap_or_else(|e| panic!("open {}: {e}", img.display()));
    let expect = std::fs::read(raw).unwrap();
    assert_eq!(m.size(), expect.len() as u64, "size of {}", img.display());
    let chunk = 3 << 20; // not a multiple of any block size on purpose
    let mut buf = vec![0u8; chunk];
    let mut off = 0usize;
    while off < expect.len() {
        let n = chunk.min(expect.len() - off);
        m.read_at(&mut buf[..n], off as u64).unwrap();
        if buf[..n] != expect[off..off + n] {
            let i = (0..n).find(|&i| buf[i] != expect[off + i]).unwrap();
            panic!(
                "{}: byte {} differs: ours {:#x} qemu {:#x}",
                img.display(),
                off + i,
                buf[i],
                expect[off + i]
            );
        }
        off += n;
    }
}

/// Deterministic pseudo-random generator (xorshift) for test data.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `media::open`, retried for a while as long as the image is reported locked. The tests
/// of a binary run in parallel threads and spawn qemu-img and qemu-io: a spawned process
/// holds copies of this process's descriptors from its fork until its exec, and with them
/// the lock of an image another test closed just before, so a test's exclusive open can
/// briefly find its own earlier (already closed) lock still held.
pub fn open_retrying(path: &Path, opts: &media::OpenOptions) -> media::Result<media::Medium> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match media::open(path, opts) {
            Err(media::MediaError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// `qemu-img compare` says image `img` (format `fmt`, as qemu names it) holds the bytes of
/// the raw file `raw`; `name` says which image in the failure message.
pub fn assert_qemu_same(fmt: &str, img: &Path, raw: &Path, name: &str) {
    let (ok, out) = try_run(
        "qemu-img",
        &[
            "compare",
            "-f",
            fmt,
            "-F",
            "raw",
            img.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert!(ok, "qemu-img compare {name}: {out}");
}
