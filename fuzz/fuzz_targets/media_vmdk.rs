//! Fuzz the VMDK sparse extent header, embedded descriptor, grain directory and tables
//! (monolithic files only, so no other file is opened), and the descriptor parser alone.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = media::vmdk::descriptor::Descriptor::parse(&String::from_utf8_lossy(data));
    if data.len() < 4 {
        return;
    }
    let mut bytes = data.to_vec();
    bytes[0..4].copy_from_slice(b"KDMV");
    let mut st = media::MemStorage::new("fuzz.vmdk", bytes);
    st.max_len = data.len() as u64 + (64 << 20);
    if let Ok(layer) = media::open::open_storage(Box::new(st), media::Format::Vmdk, true, false) {
        if let Ok(mut m) = media::Medium::from_layers(vec![layer], true) {
            use media::Disk;
            let size = m.size();
            let mut buf = vec![0u8; 70_000];
            for off in [0, size / 3, size.saturating_sub(70_000)] {
                let n = (size - off.min(size)).min(buf.len() as u64) as usize;
                let _ = m.read_at(&mut buf[..n], off);
                if size < (256 << 20) {
                    let _ = m.write_at(&buf[..n.min(5000)], off);
                }
            }
            let _ = m.flush();
        }
    }
});
