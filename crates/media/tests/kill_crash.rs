//! Kill -9 during a heavy random-write load on a dynamic VDI, 20 times: the image must
//! pass `qemu-img check` every time and hold every write acknowledged by a flush.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const CHUNK: usize = 4096;

fn helper() -> PathBuf {
    // Examples are built next to the test binaries' deps/ directory.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("examples").join("write_load");
    if !p.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "media", "--example", "write_load"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    assert!(p.exists(), "helper {} missing", p.display());
    p
}

fn chunk_data(seq: u64, chunk: u64, out: &mut [u8]) {
    out[0..8].copy_from_slice(&seq.to_le_bytes());
    out[8..16].copy_from_slice(&chunk.to_le_bytes());
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ chunk.wrapping_add(1);
    for w in out[16..].chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
}

/// Per chunk: the oldest write its content may be (0 = never written).
type Floor = Vec<u64>;

fn verify(
    img: &Path,
    raw: &Path,
    floor: &mut Floor,
    writes: &HashMap<u64, (u64, u64)>,
    run: usize,
) -> (usize, usize) {
    qemu_to_raw("vdi", img, raw);
    let data = std::fs::read(raw).unwrap();
    let mut expect = vec![0u8; CHUNK];
    let mut checked_acked = 0;
    let mut unacked_seen = 0;
    for (c, f) in floor.iter_mut().enumerate() {
        let got = &data[c * CHUNK..(c + 1) * CHUNK];
        let seq = u64::from_le_bytes(got[0..8].try_into().unwrap());
        if got.iter().all(|&b| b == 0) {
            assert_eq!(*f, 0, "run {run}: chunk {c} lost acknowledged write {}", *f);
            continue;
        }
        chunk_data(seq, c as u64, &mut expect);
        assert!(
            got == &expect[..],
            "run {run}: chunk {c} holds torn or foreign data (seq {seq})"
        );
        if seq != *f {
            // Must be a write issued after the floor that covers this chunk.
            let (first, count) = writes.get(&seq).unwrap_or_else(|| {
                panic!("run {run}: chunk {c} holds seq {seq} that was never issued")
            });
            assert!(
                seq > *f,
                "run {run}: chunk {c} went back from seq {} to {seq}",
                *f
            );
            assert!((*first..first + count).contains(&(c as u64)));
            unacked_seen += 1;
        } else if *f != 0 {
            checked_acked += 1;
        }
        *f = seq;
    }
    (checked_acked, unacked_seen)
}

#[test]
fn kill_minus_9_twenty_times_keeps_image_valid_and_acked_writes() {
    if !qemu_available() {
        return;
    }
    let helper = helper();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("load.vdi");
    let raw = dir.path().join("view.raw");
    let size = 96u64 << 20;
    let mut floor: Floor = Vec::new();
    let mut next_seq = 1u64;
    let mut total_acked = 0;
    for run in 0..20 {
        if run % 2 == 0 {
            // A fresh image every other run (allocation-heavy); odd runs reopen the
            // image the previous kill left behind.
            let _ = std::fs::remove_file(&img);
            media::create(
                &img,
                &media::CreateOptions {
                    format: media::Format::Vdi,
                    size,
                    fixed: false,
                    parent: None,
                    uuid: None,
                },
            )
            .unwrap();
            floor = vec![0; size as usize / CHUNK];
        }
        let mut child = Command::new(&helper)
            .args([
                img.to_str().unwrap(),
                &(run as u64 * 7919 + 1).to_string(),
                &next_seq.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                match l {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        // Wait for the first acknowledged flush (the host may be busy), then let the
        // load run a varying while longer before the kill.
        let mut lines = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !lines.iter().any(|l: &String| l.starts_with('F')) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("run {run}: the load acknowledged no flush within 60 s"),
            }
        }
        std::thread::sleep(Duration::from_millis(50 + (run as u64 * 137) % 600));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the load should have been killed");
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let mut writes = HashMap::new();
        let mut acked_upto = 0u64;
        for l in &lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["W", s, first, count] => {
                    writes.insert(
                        s.parse::<u64>().unwrap(),
                        (first.parse().unwrap(), count.parse().unwrap()),
                    );
                }
                ["F", s] => acked_upto = s.parse().unwrap(),
                _ => {}
            }
        }
        assert!(
            acked_upto > 0,
            "run {run}: no flush was acknowledged before the kill ({} lines)",
            lines.len()
        );
        // Raise floors: the last acknowledged write covering each chunk.
        let mut seqs: Vec<_> = writes.iter().filter(|(s, _)| **s <= acked_upto).collect();
        seqs.sort();
        for (s, (first, count)) in seqs {
            for c in *first..first + count {
                floor[c as usize] = floor[c as usize].max(*s);
            }
        }
        let (ok, out) = try_run("qemu-img", &["check", "-f", "vdi", img.to_str().unwrap()]);
        assert!(ok, "run {run}: qemu-img check failed after kill -9:\n{out}");
        let (acked_chunks, _) = verify(&img, &raw, &mut floor, &writes, run);
        total_acked += acked_chunks;
        next_seq = writes.keys().max().copied().unwrap_or(next_seq) + 1;
        eprintln!(
            "run {run}: {} writes issued, acked up to seq {acked_upto}, {acked_chunks} acked chunks verified",
            writes.len()
        );
    }
    assert!(total_acked > 0);
}
