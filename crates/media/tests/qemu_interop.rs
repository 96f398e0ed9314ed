//! Cross-checks against QEMU: images qemu-img makes read identically through novabox,
//! and images novabox writes pass `qemu-img check` and `qemu-img compare`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use media::{CreateOptions, Disk, Format, OpenOptions};

const MIB: u64 = 1 << 20;

fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Write the same scattered pattern through qemu-io.
fn scatter_qemu(fmt: &str, img: &Path, size: u64) {
    let spots = [
        0,
        512 * 3,
        MIB - 512,
        MIB + 4096,
        size / 2 + 12345 * 512 % MIB,
        size - 4096,
    ];
    for (i, &o) in spots.iter().enumerate() {
        let o = o / 512 * 512;
        let len = 4096.min(size - o);
        qemu_write(fmt, img, 0x11 + i as u8 * 0x17, o, len);
    }
}

fn check_qemu_made(fmt: &str, opts: &[&str], size: u64, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let img = p(dir.path(), name);
    let mut args = vec!["create", "-q", "-f", fmt];
    for o in opts {
        args.push("-o");
        args.push(o);
    }
    let s = size.to_string();
    args.push(img.to_str().unwrap());
    args.push(&s);
    run("qemu-img", &args);
    scatter_qemu(fmt, &img, size);
    let raw = p(dir.path(), "ref.raw");
    qemu_to_raw(fmt, &img, &raw);
    assert_same_as_raw(&img, &raw);
}

#[test]
fn qemu_made_images_read_identically() {
    if !qemu_available() {
        return;
    }
    check_qemu_made("vdi", &[], 9 * MIB + 512, "d.vdi");
    check_qemu_made("vdi", &["static=on"], 5 * MIB, "f.vdi");
    check_qemu_made("vmdk", &[], 9 * MIB, "s.vmdk");
    check_qemu_made("vmdk", &["subformat=monolithicFlat"], 5 * MIB, "flat.vmdk");
    check_qemu_made(
        "vmdk",
        &["subformat=twoGbMaxExtentSparse"],
        2 * 1024 * MIB + 3 * MIB,
        "two.vmdk",
    );
    check_qemu_made(
        "vmdk",
        &["subformat=twoGbMaxExtentFlat"],
        2 * 1024 * MIB + 3 * MIB,
        "twof.vmdk",
    );
    check_qemu_made("vpc", &[], 10 * 1008 * 512 * 16, "d.vhd");
    check_qemu_made("vpc", &["subformat=fixed"], 8 * 1008 * 512 * 16, "f.vhd");
    check_qemu_made("raw", &[], 3 * MIB + 512, "r.img");
}

#[test]
fn qemu_stream_optimized_reads_identically_and_is_read_only() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = p(dir.path(), "src.raw");
    let size = 7 * MIB;
    let mut data = vec![0u8; size as usize];
    let mut r = Rng(7);
    for _ in 0..40 {
        let o = r.below(size - 9000) as usize;
        for b in &mut data[o..o + 9000] {
            *b = r.next() as u8;
        }
    }
    std::fs::write(&src, &data).unwrap();
    let img = p(dir.path(), "s.vmdk");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    assert_same_as_raw(&img, &src);
    let e = open_retrying(&img, &OpenOptions::read_write()).unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[test]
fn qemu_vmdk_backing_chain_of_three() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = p(dir.path(), "base.vmdk");
    let mid = p(dir.path(), "mid.vmdk");
    let top = p(dir.path(), "top.vmdk");
    let size = 6 * MIB;
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            base.to_str().unwrap(),
            &size.to_string(),
        ],
    );
    qemu_write("vmdk", &base, 0xAA, 0, 3 * MIB);
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            mid.to_str().unwrap(),
        ],
    );
    qemu_write("vmdk", &mid, 0xBB, MIB, 512);
    qemu_write("vmdk", &mid, 0xBC, 4 * MIB, 70000);
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            "mid.vmdk",
            "-F",
            "vmdk",
            top.to_str().unwrap(),
        ],
    );
    qemu_write("vmdk", &top, 0xCC, MIB + 256 * 512, 4096);
    qemu_write("vmdk", &top, 0xCD, 5 * MIB, 4096);
    let raw = p(dir.path(), "ref.raw");
    qemu_to_raw("vmdk", &top, &raw);
    assert_same_as_raw(&top, &raw);
    let m = media::open(&top, &OpenOptions::read_only()).unwrap();
    assert_eq!(m.depth(), 3);
}

/// Write a random workload through novabox, mirror it in memory, return the model.
fn random_workload(m: &mut media::Medium, seed: u64, ops: usize) -> Vec<u8> {
    let size = m.size();
    let mut model = vec![0u8; size as usize];
    m.read_at(&mut model, 0).unwrap();
    let mut r = Rng(seed);
    for i in 0..ops {
        let len = 1 + r.below(200_000);
        let off = r.below(size - len);
        let mut data = vec![0u8; len as usize];
        let fill = r.next() as u8;
        for (j, b) in data.iter_mut().enumerate() {
            *b = fill.wrapping_add(j as u8);
        }
        if i % 7 == 3 {
            data.fill(0); // zero writes must still land where data was
        }
        m.write_at(&data, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
        if i % 10 == 0 {
            m.flush().unwrap();
        }
    }
    m.flush().unwrap();
    let mut back = vec![0u8; size as usize];
    m.read_at(&mut back, 0).unwrap();
    assert!(back == model, "read-back differs from the model");
    model
}

fn novabox_written_passes_qemu(format: Format, fixed: bool, qfmt: &str, name: &str, size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let img = p(dir.path(), name);
    media::create(
        &img,
        &CreateOptions {
            format,
            size,
            fixed,
            parent: None,
            uuid: None,
        },
    )
    .unwrap();
    let model = {
        let mut m = open_retrying(&img, &OpenOptions::read_write()).unwrap();
        random_workload(&mut m, size ^ 0x5eed, 60)
    };
    let expected = p(dir.path(), "expected.raw");
    std::fs::write(&expected, &model).unwrap();
    if qfmt != "vpc" && qfmt != "raw" {
        // QEMU's vpc driver has no check; vdi and vmdk do.
        let (ok, out) = try_run("qemu-img", &["check", "-f", qfmt, img.to_str().unwrap()]);
        assert!(ok, "qemu-img check {name}: {out}");
    }
    assert_qemu_same(qfmt, &img, &expected, name);
    // And our own reopen agrees.
    assert_same_as_raw(&img, &expected);
}

#[test]
fn novabox_written_images_pass_qemu_check_and_compare() {
    if !qemu_available() {
        return;
    }
    novabox_written_passes_qemu(Format::Vdi, false, "vdi", "n.vdi", 20 * MIB + 4096);
    novabox_written_passes_qemu(Format::Vdi, true, "vdi", "nf.vdi", 6 * MIB);
    novabox_written_passes_qemu(Format::Vmdk, false, "vmdk", "n.vmdk", 9 * MIB);
    novabox_written_passes_qemu(Format::Vmdk, true, "vmdk", "nf.vmdk", 5 * MIB);
    // CHS-exact sizes so QEMU (which sizes "vbox" VHDs by geometry) sees the same size.
    novabox_written_passes_qemu(
        Format::Vhd,
        false,
        "vpc",
        "n.vhd",
        12 * 16 * 63 * 512 * 17 / 17,
    );
    novabox_written_passes_qemu(Format::Vhd, true, "vpc", "nf.vhd", 9 * 16 * 63 * 512);
    novabox_written_passes_qemu(Format::Raw, false, "raw", "n.img", 7 * MIB);
}

#[test]
fn novabox_writes_into_qemu_made_images() {
    if !qemu_available() {
        return;
    }
    for (fmt, name, opts) in [
        ("vdi", "q.vdi", vec![]),
        ("vmdk", "q.vmdk", vec![]),
        (
            "vmdk",
            "q2.vmdk",
            vec!["-o", "subformat=twoGbMaxExtentSparse"],
        ),
        ("vpc", "q.vhd", vec![]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let img = p(dir.path(), name);
        let size = 16 * 63 * 512 * 20;
        let mut args = vec!["create", "-q", "-f", fmt];
        args.extend(opts.iter().copied());
        let s = size.to_string();
        args.push(img.to_str().unwrap());
        args.push(&s);
        run("qemu-img", &args);
        scatter_qemu(fmt, &img, size);
        let model = {
            let mut m = open_retrying(&img, &OpenOptions::read_write()).unwrap();
            random_workload(&mut m, 99, 40)
        };
        let expected = p(dir.path(), "expected.raw");
        std::fs::write(&expected, &model).unwrap();
        if fmt != "vpc" {
            let (ok, out) = try_run("qemu-img", &["check", "-f", fmt, img.to_str().unwrap()]);
            assert!(ok, "qemu-img check {name}: {out}");
        }
        assert_qemu_same(fmt, &img, &expected, name);
    }
}
