//! Helpers shared by the fuzz targets.

use hgcm::Param;

/// Decode one HGCM call from fuzz input: a function number below `functions`, up to
/// `max_params - 1` parameters (32-bit, 64-bit or a buffer of up to 255 bytes), and the
/// rest of the input.
pub fn hgcm_call(mut d: &[u8], functions: u8, max_params: u8) -> (u32, Vec<Param>, &[u8]) {
    let Some((&f, rest)) = d.split_first() else {
        return (0, vec![], d);
    };
    d = rest;
    let mut out = Vec::new();
    let n = d.first().map(|b| b % max_params.max(1)).unwrap_or(0);
    d = d.get(1..).unwrap_or_default();
    for _ in 0..n {
        let Some((&kind, rest)) = d.split_first() else {
            break;
        };
        d = rest;
        match kind % 3 {
            0 => {
                let v = d
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                d = d.get(4..).unwrap_or_default();
                out.push(Param::U32(v));
            }
            1 => {
                let v = d
                    .get(..8)
                    .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .unwrap_or(0);
                d = d.get(8..).unwrap_or_default();
                out.push(Param::U64(v));
            }
            _ => {
                let len = usize::from(d.first().copied().unwrap_or(0));
                d = d.get(1..).unwrap_or_default();
                let take = len.min(d.len());
                out.push(Param::buf(d[..take].to_vec()));
                d = &d[take..];
            }
        }
    }
    (u32::from(f % functions.max(1)), out, d)
}
