//! Random-write load through the media crate, for the kill -9 crash test.
//!
//! Usage: `write_load IMAGE SEED FIRST_SEQ`. Writes runs of 4 KiB chunks at random
//! places; each chunk starts with its write's sequence number and chunk index, the rest
//! is a pattern derived from both, so a reader can tell exactly which write it holds.
//! Prints `W seq first_chunk count` before each write and `F seq` after each flush has
//! returned (every write up to `seq` is then acknowledged as durable). Runs until killed.

use std::io::Write;

use media::{Disk, OpenOptions};

const CHUNK: usize = 4096;

/// The bytes chunk `chunk` holds after write `seq`.
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: write_load IMAGE SEED FIRST_SEQ");
        std::process::exit(2);
    }
    let mut rng: u64 = args[2].parse::<u64>().unwrap_or(1) | 1;
    let mut seq: u64 = args[3].parse().unwrap_or(1);
    let mut disk = match media::open(std::path::Path::new(&args[1]), &OpenOptions::read_write()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("write_load: {e}");
            std::process::exit(1);
        }
    };
    let chunks = disk.size() / CHUNK as u64;
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut buf = vec![0u8; CHUNK * 16];
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut n = 0u64;
    loop {
        let count = 1 + next() % 16;
        let first = next() % (chunks - count);
        for i in 0..count {
            let c = first + i;
            chunk_data(
                seq,
                c,
                &mut buf[i as usize * CHUNK..(i as usize + 1) * CHUNK],
            );
        }
        // Announce before writing: the write may land even if it is never acknowledged.
        let _ = writeln!(out, "W {seq} {first} {count}");
        let _ = out.flush();
        if let Err(e) = disk.write_at(&buf[..count as usize * CHUNK], first * CHUNK as u64) {
            eprintln!("write_load: {e}");
            std::process::exit(1);
        }
        n += 1;
        if n & 7 == 0 {
            if let Err(e) = disk.flush() {
                eprintln!("write_load: {e}");
                std::process::exit(1);
            }
            let _ = writeln!(out, "F {seq}");
            let _ = out.flush();
        }
        seq += 1;
    }
}
