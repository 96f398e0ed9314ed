//! Damaged images: each gives a clear error naming the file and the problem, never a
//! panic, and the damaged file is never written.

mod common;
use common::open_retrying;

use std::path::{Path, PathBuf};

use media::{CreateOptions, Disk, Format, OpenOptions, Registry, Uuid};

const MIB: u64 = 1 << 20;

fn make(dir: &Path, name: &str, format: Format, size: u64, parent: Option<PathBuf>) -> PathBuf {
    let p = dir.join(name);
    media::create(
        &p,
        &CreateOptions {
            format,
            size,
            fixed: false,
            parent,
            uuid: None,
        },
    )
    .unwrap();
    p
}

fn fill(p: &Path, offsets: &[u64]) {
    let mut m = open_retrying(p, &OpenOptions::read_write()).unwrap();
    for (i, &o) in offsets.iter().enumerate() {
        m.write_at(&vec![0x40 + i as u8; 8192], o).unwrap();
    }
    m.flush().unwrap();
}

fn patch(p: &Path, off: u64, bytes: &[u8]) {
    let mut d = std::fs::read(p).unwrap();
    d[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    std::fs::write(p, d).unwrap();
}

/// Open read-write must fail with `needle` in the message, naming `file`, and leave
/// every byte of `file` as it was.
fn expect_error(open_path: &Path, file: &Path, needle: &str, opts: OpenOptions) {
    let before = std::fs::read(file).unwrap();
    let err = open_retrying(open_path, &opts)
        .err()
        .unwrap_or_else(|| panic!("{} opened", open_path.display()));
    let msg = err.to_string();
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "error does not name {name}: {msg}");
    assert!(msg.contains(needle), "error lacks {needle:?}: {msg}");
    assert_eq!(
        std::fs::read(file).unwrap(),
        before,
        "damaged file was modified"
    );
}

fn rw() -> OpenOptions {
    OpenOptions::read_write()
}

fn vdi_with_two_blocks(dir: &Path, name: &str) -> PathBuf {
    let p = make(dir, name, Format::Vdi, 8 * MIB, None);
    fill(&p, &[0, 3 * MIB]);
    p
}

const OFF_BLOCKS: u64 = 1 << 20; // novabox creates VirtualBox's layout

#[test]
fn vdi_truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = vdi_with_two_blocks(dir.path(), "t.vdi");
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - MIB / 2).unwrap();
    expect_error(&p, &p, "truncated", rw());
    // Cut into the block map itself.
    f.set_len(OFF_BLOCKS + 8).unwrap();
    expect_error(&p, &p, "truncated", rw());
}

#[test]
fn vdi_map_points_past_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = vdi_with_two_blocks(dir.path(), "m.vdi");
    patch(&p, OFF_BLOCKS, &77u32.to_le_bytes());
    expect_error(&p, &p, "past", rw());
}

#[test]
fn vdi_overlapping_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = vdi_with_two_blocks(dir.path(), "o.vdi");
    patch(&p, OFF_BLOCKS + 4 * 3, &0u32.to_le_bytes());
    expect_error(&p, &p, "overlap", rw());
}

#[test]
fn vdi_map_at_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = vdi_with_two_blocks(dir.path(), "h.vdi");
    patch(&p, 0x154, &0x100u32.to_le_bytes());
    expect_error(&p, &p, "overlaps the header", rw());
}

#[test]
fn vdi_absurd_size() {
    let dir = tempfile::tempdir().unwrap();
    let p = vdi_with_two_blocks(dir.path(), "a.vdi");
    patch(&p, 0x170, &(1u64 << 62).to_le_bytes());
    expect_error(&p, &p, "absurd", rw());
    patch(&p, 0x170, &(8 * MIB).to_le_bytes());
    patch(&p, 0x180, &u32::MAX.to_le_bytes());
    expect_error(&p, &p, "absurd", rw());
}

#[test]
fn vdi_parent_loop() {
    let dir = tempfile::tempdir().unwrap();
    let a = make(dir.path(), "a.vdi", Format::Vdi, 4 * MIB, None);
    let b = make(dir.path(), "b.vdi", Format::Vdi, 4 * MIB, Some(a.clone()));
    let b_uuid = media::open(&b, &OpenOptions::read_only()).unwrap().info()[0].uuid;
    // Make A a child of B: B -> A -> B.
    patch(&a, 0x4C, &4u32.to_le_bytes());
    patch(&a, 0x1A8, &b_uuid.to_guid_bytes());
    expect_error(&b, &b, "loop", rw());
    expect_error(&b, &a, "loop", rw());
}

#[test]
fn vdi_parent_uuid_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let a = make(dir.path(), "a.vdi", Format::Vdi, 4 * MIB, None);
    let b = make(dir.path(), "b.vdi", Format::Vdi, 4 * MIB, Some(a.clone()));
    let other = make(dir.path(), "other.vdi", Format::Vdi, 4 * MIB, None);
    let want = media::open(&b, &OpenOptions::read_only()).unwrap().info()[0]
        .parent
        .clone()
        .unwrap()
        .uuid
        .unwrap();
    // The registry says the parent is `other`; its UUID does not match.
    let mut reg = Registry::default();
    reg.by_uuid.insert(want, other.clone());
    std::fs::remove_file(&a).unwrap();
    let opts = OpenOptions {
        writable: true,
        resolver: Some(Box::new(reg)),
        ..OpenOptions::default()
    };
    expect_error(&b, &b, "expects", opts);
    // Without any candidate: a clear "not found".
    expect_error(&b, &b, "not found", rw());
}

#[test]
fn vhd_overlapping_and_past_end_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = make(dir.path(), "o.vhd", Format::Vhd, 16 * MIB, None);
    fill(&p, &[0, 5 * MIB]);
    let d = std::fs::read(&p).unwrap();
    let bat0 = &d[1536..1540].to_vec();
    patch(&p, 1536 + 4 * 2, bat0);
    expect_error(&p, &p, "overlaps", rw());
    patch(&p, 1536 + 4 * 2, &0x00FF_FFFFu32.to_be_bytes());
    expect_error(&p, &p, "past the end", rw());
    // Footer checksum damage (both copies): named as such.
    patch(&p, 1536 + 4 * 2, bat0);
    let len = std::fs::metadata(&p).unwrap().len();
    patch(&p, len - 512 + 48, &[0xEE]);
    patch(&p, 48, &[0xEE]);
    expect_error(&p, &p, "checksum", rw());
}

#[test]
fn vmdk_tables_past_end_and_grain_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = make(dir.path(), "g.vmdk", Format::Vmdk, 8 * MIB, None);
    fill(&p, &[0]);
    let d = std::fs::read(&p).unwrap();
    let gd = u64::from_le_bytes(d[0x38..0x40].try_into().unwrap()) * 512;
    let gt = u32::from_le_bytes(d[gd as usize..gd as usize + 4].try_into().unwrap()) as u64 * 512;
    let saved_gt0 = d[gt as usize..gt as usize + 4].to_vec();
    patch(&p, gt, &1u32.to_le_bytes()); // grain 0 at sector 1: the descriptor
    expect_error(&p, &p, "inside the header", rw());
    patch(&p, gt, &saved_gt0);
    patch(&p, gd, &0x7FFF_0000u32.to_le_bytes());
    expect_error(&p, &p, "past the end", rw());
}

#[test]
fn garbage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = common::Rng(3);
    for (i, magic) in [
        &b"KDMV"[..],
        b"conectix",
        b"# Disk DescriptorFile\ncreateType=\"x\"\n",
    ]
    .iter()
    .enumerate()
    {
        for _ in 0..20 {
            let p = dir.path().join(format!("g{i}.img"));
            let mut d: Vec<u8> = (0..r.below(4096) + 8).map(|_| r.next() as u8).collect();
            let n = magic.len().min(d.len());
            d[..n].copy_from_slice(&magic[..n]);
            if r.below(2) == 0 && d.len() >= 0x48 {
                d[0x40..0x44].copy_from_slice(&0xBEDA_107Fu32.to_le_bytes());
                d[0x44..0x48].copy_from_slice(&0x0001_0001u32.to_le_bytes());
            }
            std::fs::write(&p, &d).unwrap();
            if let Ok(mut m) = media::open(&p, &OpenOptions::read_only()) {
                let mut b = vec![0u8; 4096.min(m.size() as usize)];
                let _ = m.read_at(&mut b, 0);
            }
        }
    }
}

#[test]
fn two_writers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = make(dir.path(), "l.vdi", Format::Vdi, 4 * MIB, None);
    let _first = open_retrying(&p, &rw()).unwrap();
    let e = media::open(&p, &rw()).unwrap_err();
    assert!(matches!(e, media::MediaError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("l.vdi"));
}

#[test]
fn base_of_open_child_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = make(dir.path(), "a.vdi", Format::Vdi, 4 * MIB, None);
    let b = make(dir.path(), "b.vdi", Format::Vdi, 4 * MIB, Some(a.clone()));
    let _vm = open_retrying(&b, &rw()).unwrap();
    assert!(matches!(
        media::open(&a, &rw()).unwrap_err(),
        media::MediaError::Locked { .. }
    ));
    // A second reader of the shared base is fine.
    let _ro = media::open(&a, &OpenOptions::read_only()).unwrap();
    let _ = Uuid::NIL;
}
