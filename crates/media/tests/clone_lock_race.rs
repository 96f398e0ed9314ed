//! `clone_medium` while other threads spawn processes: every clone succeeds.
//!
//! A spawned process holds copies of the parent's descriptors from its fork until its
//! exec, and with them the locks on their files. A clone that closed the image it created
//! and opened it again with a non-blocking exclusive lock failed as "locked" when a
//! spawn fell into that window; the clone now writes through the image it created.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use media::{clone_medium, create, CreateOptions, Disk, Format, Medium, OpenOptions};

const MIB: u64 = 1 << 20;

#[test]
fn clones_succeed_while_other_threads_spawn_processes() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("src.vdi");
    let layer = create(
        &src_path,
        &CreateOptions {
            format: Format::Vdi,
            size: 4 * MIB,
            fixed: false,
            parent: None,
            uuid: None,
        },
    )
    .unwrap();
    let mut src = Medium::from_layers(vec![layer], true).unwrap();
    src.write_at(&[0x5a; 4096], MIB).unwrap();
    src.flush().unwrap();
    drop(src);

    let stop = Arc::new(AtomicBool::new(false));
    let spawners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::process::Command::new("true").status();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut failures = Vec::new();
    for i in 0..25 {
        for (format, fixed) in [Format::Raw, Format::Vdi, Format::Vhd, Format::Vmdk]
            .into_iter()
            .flat_map(|f| [(f, false), (f, true)])
        {
            let dst = dir.path().join(format!("c{i}-{fixed}.{format:?}"));
            let mut src = media::open(
                &src_path,
                &OpenOptions {
                    writable: false,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
            if let Err(e) = clone_medium(&mut src, &dst, format, fixed, &mut |_, _| {}) {
                failures.push(format!("{}: {e}", dst.display()));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let spawned: u32 = spawners.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(spawned > 0, "no process was spawned during the clones");
    assert!(failures.is_empty(), "clones failed: {failures:#?}");
}
