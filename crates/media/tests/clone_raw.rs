//! `clone_medium` to raw, checked byte for byte (and with `qemu-img compare`) on sources
//! that send pieces down both of its write paths.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use media::{Disk, Format, OpenOptions};

const MIB: u64 = 1 << 20;

fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Clones to raw are byte-identical to what they were cloned from, whichever way each
/// piece is written: runs that start on a page boundary go to the device directly; runs
/// at odd sectors and odd-sized tails go through the page cache.
#[test]
fn clones_to_raw_are_byte_identical() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Sources qemu makes, with data at odd sectors and odd-sized ends.
    let mut sources = Vec::new();
    for (fmt, name, size) in [
        ("vdi", "s.vdi", 9 * MIB + 512),
        ("vpc", "s.vhd", 10 * 1008 * 512 * 16),
        ("raw", "s.img", 5 * MIB + 512),
    ] {
        let src = p(d, name);
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                fmt,
                src.to_str().unwrap(),
                &size.to_string(),
            ],
        );
        for (i, (off, len)) in [
            (3 * 512, 3 * 512),
            (MIB + 512, 4096),
            (2 * MIB - 512, 8192 + 512),
            (3 * MIB, MIB + 512),
            (size - 512, 512),
        ]
        .into_iter()
        .enumerate()
        {
            qemu_write(fmt, &src, 0x31 + i as u8, off, len);
        }
        let expected = p(d, &format!("{name}.expected"));
        qemu_to_raw(fmt, &src, &expected);
        sources.push((src, expected));
    }
    // A VMDK whose zero extent ends at an odd sector, so the data after it starts off a
    // page boundary (the case the direct path must leave to the buffered one). QEMU
    // skips ZERO extents, so the expected bytes are built here.
    let mut r = Rng(7);
    let mut noise = |n: usize| (0..n).map(|_| r.next() as u8).collect::<Vec<u8>>();
    let (a, b) = (noise(2049 * 512), noise(4100 * 512 + 512 * 7));
    std::fs::write(p(d, "a.bin"), &a).unwrap();
    std::fs::write(p(d, "b.bin"), &b).unwrap();
    std::fs::write(
        p(d, "z.vmdk"),
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\nRW 2049 FLAT \"a.bin\" 0\nRW 3 ZERO\n\
         RW 4107 FLAT \"b.bin\" 0\n\n#DDB\nddb.virtualHWVersion = \"4\"\n",
    )
    .unwrap();
    let expected = p(d, "z.expected");
    std::fs::write(&expected, [a, vec![0; 3 * 512], b].concat()).unwrap();
    sources.push((p(d, "z.vmdk"), expected));

    for (src, expected) in &sources {
        let mut m = media::open(src, &OpenOptions::read_only()).unwrap();
        let size = m.size();
        for fixed in [false, true] {
            let clone = p(d, "clone.raw");
            let _ = std::fs::remove_file(&clone);
            let mut last = (0, 0);
            media::clone_medium(&mut m, &clone, Format::Raw, fixed, &mut |d, t| {
                last = (d, t)
            })
            .unwrap();
            let name = format!("clone of {} (fixed {fixed})", src.display());
            assert_eq!(last, (size, size), "{name}: progress ends at 100 %");
            assert_qemu_same("raw", &clone, expected, &name);
            assert!(
                std::fs::read(&clone).unwrap() == std::fs::read(expected).unwrap(),
                "{name} differs"
            );
        }
    }
}
