//! Screenshots: a [`Frame`] as an RGB PNG.

use crate::screen::Frame;

/// Encode `frame` as an 8-bit RGB PNG.
pub fn encode_png(frame: &Frame) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, frame.width, frame.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        let mut data = Vec::with_capacity(frame.pixels.len() * 3);
        for &p in &frame.pixels {
            data.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
        w.write_image_data(&data)?;
    }
    Ok(out)
}

/// Decode an RGB(A) PNG back into a frame (tests and golden-image comparisons).
pub fn decode_png(bytes: &[u8]) -> Result<Frame, png::DecodingError> {
    let mut dec = png::Decoder::new(bytes);
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = dec.read_info()?;
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf)?;
    let ch = info.color_type.samples();
    let mut pixels = Vec::with_capacity((info.width * info.height) as usize);
    for px in buf[..info.buffer_size()].chunks_exact(ch) {
        let (r, g, b) = if ch >= 3 {
            (px[0], px[1], px[2])
        } else {
            (px[0], px[0], px[0])
        };
        pixels.push(u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b));
    }
    Ok(Frame {
        width: info.width,
        height: info.height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = Frame {
            width: 3,
            height: 2,
            pixels: vec![0x010203, 0xffffff, 0, 0x123456, 0xabcdef, 0x00ff00],
        };
        let png = encode_png(&f).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(decode_png(&png).unwrap(), f);
    }
}
