//! Differencing chains written by novabox (VDI, VHD, VMDK), discard, compact, resize.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use media::{CreateOptions, Disk, Format, OpenOptions};

const MIB: u64 = 1 << 20;

fn create(p: &Path, format: Format, size: u64, parent: Option<&Path>) {
    media::create(
        p,
        &CreateOptions {
            format,
            size,
            fixed: false,
            parent: parent.map(Path::to_path_buf),
            uuid: None,
        },
    )
    .unwrap();
}

/// Random writes through `img` (opened read-write), mirrored into `model`.
fn scribble(img: &Path, model: &mut [u8], seed: u64, ops: usize) {
    let mut m = open_retrying(img, &OpenOptions::read_write()).unwrap();
    let mut r = Rng(seed);
    for _ in 0..ops {
        let len = 1 + r.below(300_000) as usize;
        let off = r.below((model.len() - len) as u64) as usize;
        let v = r.next() as u8 | 1;
        let data: Vec<u8> = (0..len).map(|i| v.wrapping_add(i as u8)).collect();
        m.write_at(&data, off as u64).unwrap();
        model[off..off + len].copy_from_slice(&data);
    }
    m.flush().unwrap();
}

fn assert_reads(img: &Path, model: &[u8]) {
    let mut m = media::open(img, &OpenOptions::read_only()).unwrap();
    let mut b = vec![0u8; model.len()];
    m.read_at(&mut b, 0).unwrap();
    assert!(b == model, "{} differs from the model", img.display());
}

fn three_level_chain(format: Format, ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let size = 12 * MIB + 4096;
    let names: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("l{i}.{ext}")))
        .collect();
    let mut model = vec![0u8; size as usize];
    let mut snapshots = Vec::new();
    for (i, n) in names.iter().enumerate() {
        create(
            n,
            format,
            size,
            if i == 0 { None } else { Some(&names[i - 1]) },
        );
        scribble(n, &mut model, 10 + i as u64, 25);
        snapshots.push(model.clone());
    }
    // Each level shows its own state; the lower ones were not written by later levels.
    for (n, snap) in names.iter().zip(&snapshots) {
        assert_reads(n, snap);
    }
    let m = media::open(&names[2], &OpenOptions::read_only()).unwrap();
    assert_eq!(m.depth(), 3);
    // Flattening clone equals the model.
    let mut src = media::open(&names[2], &OpenOptions::read_only()).unwrap();
    let out = dir.path().join("flat.raw");
    media::clone_medium(&mut src, &out, Format::Raw, false, &mut |_, _| {}).unwrap();
    assert!(std::fs::read(&out).unwrap() == model);
}

#[test]
fn vdi_chain_of_three() {
    three_level_chain(Format::Vdi, "vdi");
}

#[test]
fn vhd_chain_of_three() {
    three_level_chain(Format::Vhd, "vhd");
}

#[test]
fn vmdk_chain_of_three_readable_by_qemu() {
    three_level_chain(Format::Vmdk, "vmdk");
    if !qemu_available() {
        return;
    }
    // QEMU follows our parentFileNameHint/parentCID links too.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.vmdk"), dir.path().join("b.vmdk"));
    create(&a, Format::Vmdk, 4 * MIB, None);
    let mut model = vec![0u8; 4 * MIB as usize];
    scribble(&a, &mut model, 1, 10);
    create(&b, Format::Vmdk, 0, Some(&a));
    scribble(&b, &mut model, 2, 10);
    let raw = dir.path().join("q.raw");
    qemu_to_raw("vmdk", &b, &raw);
    assert!(
        std::fs::read(&raw).unwrap() == model,
        "qemu's view of our VMDK chain differs"
    );
    let (ok, out) = try_run("qemu-img", &["check", b.to_str().unwrap()]);
    assert!(ok, "{out}");
}

#[test]
fn discard_reads_zero_and_hides_parent() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.vdi"), dir.path().join("b.vdi"));
    create(&a, Format::Vdi, 8 * MIB, None);
    let mut model = vec![0u8; 8 * MIB as usize];
    scribble(&a, &mut model, 5, 30);
    create(&b, Format::Vdi, 0, Some(&a));
    {
        let mut m = open_retrying(&b, &OpenOptions::read_write()).unwrap();
        m.write_at(&[7u8; 4096], 2 * MIB).unwrap();
        // Whole blocks 1..=3: block 2 is stored in the child (punched), 1 and 3 come from
        // the parent (marked zero).
        m.discard(MIB, 3 * MIB).unwrap();
        m.flush().unwrap();
    }
    model[MIB as usize..4 * MIB as usize].fill(0);
    assert_reads(&b, &model);
}

#[test]
fn compact_and_resize_vdi_keep_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.vdi");
    create(&p, Format::Vdi, 10 * MIB, None);
    let mut model = vec![0u8; 10 * MIB as usize];
    scribble(&p, &mut model, 9, 20);
    {
        // Zero two whole blocks so compaction has something to reclaim.
        let mut m = open_retrying(&p, &OpenOptions::read_write()).unwrap();
        m.write_at(&vec![0u8; 2 * MIB as usize], 4 * MIB).unwrap();
        m.flush().unwrap();
        model[4 * MIB as usize..6 * MIB as usize].fill(0);
    }
    let before = std::fs::metadata(&p).unwrap().len();
    media::compact(&p, &mut |_, _| {}).unwrap();
    let after = std::fs::metadata(&p).unwrap().len();
    assert!(
        after <= before - 2 * MIB,
        "compact reclaimed nothing: {before} -> {after}"
    );
    assert_reads(&p, &model);
    media::resize(&p, 30 * MIB, &mut |_, _| {}).unwrap();
    model.resize(30 * MIB as usize, 0);
    assert_reads(&p, &model);
    scribble(&p, &mut model, 11, 10);
    assert_reads(&p, &model);
    assert!(
        media::resize(&p, MIB, &mut |_, _| {}).is_err(),
        "shrinking must be refused"
    );
    if qemu_available() {
        let (ok, out) = try_run("qemu-img", &["check", "-f", "vdi", p.to_str().unwrap()]);
        assert!(ok, "{out}");
    }
}

#[test]
fn resize_vhd_fixed_and_dynamic() {
    for fixed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.vhd");
        media::create(
            &p,
            &CreateOptions {
                format: Format::Vhd,
                size: 6 * MIB,
                fixed,
                parent: None,
                uuid: None,
            },
        )
        .unwrap();
        let mut model = vec![0u8; 6 * MIB as usize];
        scribble(&p, &mut model, 4, 10);
        // Dynamic VHDs made by novabox have a one-sector BAT: 128 entries of 2 MiB.
        media::resize(&p, 200 * MIB, &mut |_, _| {}).unwrap();
        model.resize(200 * MIB as usize, 0);
        assert_reads(&p, &model);
        scribble(&p, &mut model, 5, 10);
        assert_reads(&p, &model);
    }
}
