use super::*;
use proptest::prelude::*;

fn mem(ram: u64) -> GuestMemory {
    GuestMemory::new(
        MemoryLayout::pc(ram)
            .unwrap()
            .with_firmware(0x20000)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn ram_reads_back() {
    let m = mem(16 << 20);
    m.write(0x1234, b"hello").unwrap();
    let mut b = [0u8; 5];
    m.read(0x1234, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    assert_eq!(
        m.read_le::<2>(0x1234).unwrap(),
        u64::from(u16::from_le_bytes(*b"he"))
    );
}

#[test]
fn vga_hole_and_beyond_ram_are_unmapped() {
    let m = mem(16 << 20);
    assert_eq!(m.read_le::<1>(0xa0000), Err(PgmError::Unmapped(0xa0000)));
    assert_eq!(m.read_le::<1>(16 << 20), Err(PgmError::Unmapped(16 << 20)));
    assert!(
        m.write(0xfffff, &[1, 2]).is_ok(),
        "crossing into RAM at 1 MiB is fine"
    );
}

#[test]
fn rom_is_read_only_and_aliased_below_1mib() {
    let m = mem(16 << 20);
    let mut img = vec![0u8; 0x20000];
    img[0x1fff0] = 0xea; // reset vector
    m.load_image(0xfffe_0000, &img).unwrap();
    assert_eq!(m.read_le::<1>(0xffff_fff0).unwrap(), 0xea);
    m.write(0xffff_fff0, &[0]).unwrap();
    assert_eq!(
        m.read_le::<1>(0xffff_fff0).unwrap(),
        0xea,
        "ROM writes are dropped"
    );
    // PAM disabled at reset: 0xFFFF0 reads the ROM alias.
    assert_eq!(m.read_le::<1>(0xffff0).unwrap(), 0xea);
}

#[test]
fn pam_shadowing_follows_seabios_sequence() {
    let m = mem(16 << 20);
    let mut img = vec![0x11u8; 0x20000];
    img[0x1fff0] = 0xea;
    m.load_image(0xfffe_0000, &img).unwrap();
    let gen0 = m.map_generation();
    // Write-enable the F segment while reads still come from ROM, copy, then read RAM.
    m.set_pam(0xf0000, 0x10000, PamMode::WriteOnly).unwrap();
    assert_ne!(m.map_generation(), gen0);
    let mut seg = vec![0u8; 0x10000];
    m.read(0xf0000, &mut seg).unwrap();
    m.write(0xf0000, &seg).unwrap();
    m.set_pam(0xf0000, 0x10000, PamMode::ReadWrite).unwrap();
    assert_eq!(m.read_le::<1>(0xffff0).unwrap(), 0xea);
    m.write(0xffff0, &[0x90]).unwrap();
    assert_eq!(
        m.read_le::<1>(0xffff0).unwrap(),
        0x90,
        "shadow RAM is writable"
    );
    m.set_pam(0xf0000, 0x10000, PamMode::ReadOnly).unwrap();
    m.write(0xffff0, &[0x00]).unwrap();
    assert_eq!(
        m.read_le::<1>(0xffff0).unwrap(),
        0x90,
        "read-only shadow drops writes"
    );
    assert!(m.set_pam(0xc0000, 0x2000, PamMode::ReadWrite).is_err());
}

#[test]
fn mappings_for_kvm_mark_rom_readonly() {
    let m = mem(16 << 20);
    let maps = m.mappings();
    let rom = maps.iter().find(|h| h.gpa == 0xfffe_0000).unwrap();
    assert!(rom.readonly);
    let low = maps.iter().find(|h| h.gpa == 0).unwrap();
    assert!(!low.readonly && low.size == 0xa0000);
}

#[test]
fn large_ram_splits_around_pci_hole() {
    let l = MemoryLayout::pc(4 << 30).unwrap();
    assert_eq!(l.ram_below_4g(), 0xe000_0000);
    assert_eq!(l.ram_above_4g(), (4 << 30) - 0xe000_0000);
    assert!(l.find(0x1_0000_0000).is_some());
    assert!(l.find(0xe000_0000).is_none());
}

#[test]
fn code_page_generation_changes_on_write() {
    let m = mem(2 << 20);
    let g = m.watch_code_page(0x5000);
    assert_eq!(m.code_page_generation(0x5000), g);
    m.write(0x5ffe, &[1, 2, 3, 4]).unwrap();
    assert_ne!(m.code_page_generation(0x5000), g);
    let g2 = m.code_page_generation(0x5000);
    m.write(0x5000, &[9]).unwrap();
    assert_eq!(
        m.code_page_generation(0x5000),
        g2,
        "unwatched pages keep their generation"
    );
}

#[test]
fn cmpxchg_aligned_and_split() {
    let m = mem(2 << 20);
    m.write_le::<8>(0x100, 5).unwrap();
    assert_eq!(m.backing_cmpxchg(0x100, 8, 5, 7).unwrap(), 5);
    assert_eq!(m.read_le::<8>(0x100).unwrap(), 7);
    assert_eq!(m.backing_cmpxchg(0x100, 8, 5, 9).unwrap(), 7);
    m.write_le::<4>(0xffe, 0xaabbccdd).unwrap();
    assert_eq!(
        m.backing_cmpxchg(0xffe, 4, 0xaabbccdd, 1).unwrap(),
        0xaabbccdd
    );
    assert_eq!(m.read_le::<4>(0xffe).unwrap(), 1);
}

#[test]
fn bad_layouts_are_errors() {
    assert!(MemoryLayout::pc(0).is_err());
    assert!(MemoryLayout::pc(4097).is_err());
    assert!(MemoryLayout::pc(16 << 20)
        .unwrap()
        .with_rom(0x123, 0x1000)
        .is_err());
}

proptest! {
    #[test]
    fn read_write_never_panic(gpa in any::<u64>(), len in 0usize..9000) {
        let m = mem(2 << 20);
        let mut buf = vec![0u8; len];
        let _ = m.read(gpa, &mut buf);
        let _ = m.write(gpa, &buf);
        let _ = m.translate(gpa);
    }

    #[test]
    fn write_then_read_roundtrip(gpa in 0u64..(2 << 20) - 64, data in proptest::collection::vec(any::<u8>(), 1..64)) {
        let m = mem(2 << 20);
        prop_assume!(!(0xa0000..0x100000).contains(&gpa) && !(0xa0000..0x100000).contains(&(gpa + data.len() as u64)));
        m.write(gpa, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        m.read(gpa, &mut back).unwrap();
        prop_assert_eq!(back, data);
    }
}
