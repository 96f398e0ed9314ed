//! Fuzz the VHD footer, dynamic header and BAT parser, then reads and writes through the result.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media_fuzz_common(data, media::Format::Vhd);
});

fn media_fuzz_common(data: &[u8], format: media::Format) {
    let mut st = media::MemStorage::new("fuzz.vhd", data.to_vec());
    st.max_len = data.len() as u64 + (64 << 20);
    if let Ok(layer) = media::open::open_storage(Box::new(st), format, true, false) {
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
}
