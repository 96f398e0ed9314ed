//! A small AML (ACPI Machine Language) bytecode emitter: enough to write a static DSDT
//! (ACPI 6.x specification, chapter 20 "ACPI Machine Language Specification" and section
//! 6.4 "Resource Data Types"). Every function returns the encoded bytes of one term.

/// ZeroOp.
pub const ZERO: u8 = 0x00;
/// OneOp.
pub const ONE: u8 = 0x01;
const ALIAS_ROOT: u8 = b'\\';
const DUAL_NAME: u8 = 0x2e;
const MULTI_NAME: u8 = 0x2f;
const NAME_OP: u8 = 0x08;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const STRING_PREFIX: u8 = 0x0d;
const QWORD_PREFIX: u8 = 0x0e;
const SCOPE_OP: u8 = 0x10;
const BUFFER_OP: u8 = 0x11;
const PACKAGE_OP: u8 = 0x12;
const METHOD_OP: u8 = 0x14;
const RETURN_OP: u8 = 0xa4;
const EXT_OP: u8 = 0x5b;
const DEVICE_OP: u8 = 0x82;
const ONES_OP: u8 = 0xff;

/// Encode a PkgLength for a body of `body_len` bytes (the length counts itself).
pub fn pkg_length(body_len: usize) -> Vec<u8> {
    if body_len + 1 < 0x40 {
        return vec![(body_len + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = body_len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut out = vec![((extra as u8) << 6) | (total as u8 & 0x0f)];
            for i in 0..extra {
                out.push((total >> (4 + 8 * i)) as u8);
            }
            return out;
        }
    }
    // 2^28 bytes is far beyond any table we build.
    vec![0xff, 0xff, 0xff, 0xff]
}

/// A 4-character name segment, padded with '_'.
pub fn name_seg(s: &str) -> [u8; 4] {
    let mut seg = [b'_'; 4];
    for (d, c) in seg.iter_mut().zip(s.bytes()) {
        *d = c.to_ascii_uppercase();
    }
    seg
}

/// A NameString: `\` root prefix and dot-separated segments ("\\_SB.PCI0", "_HID").
pub fn name_string(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let rest = match path.strip_prefix('\\') {
        Some(r) => {
            out.push(ALIAS_ROOT);
            r
        }
        None => path,
    };
    let segs: Vec<&str> = rest.split('.').filter(|s| !s.is_empty()).collect();
    match segs.len() {
        0 => out.push(0x00),
        1 => {}
        2 => out.push(DUAL_NAME),
        n => {
            out.push(MULTI_NAME);
            out.push(n as u8);
        }
    }
    for s in segs {
        out.extend_from_slice(&name_seg(s));
    }
    out
}

/// The shortest integer encoding of `v`.
pub fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![ZERO],
        1 => vec![ONE],
        u64::MAX => vec![ONES_OP],
        v if v <= 0xff => vec![BYTE_PREFIX, v as u8],
        v if v <= 0xffff => {
            let mut o = vec![WORD_PREFIX];
            o.extend_from_slice(&(v as u16).to_le_bytes());
            o
        }
        v if v <= 0xffff_ffff => {
            let mut o = vec![DWORD_PREFIX];
            o.extend_from_slice(&(v as u32).to_le_bytes());
            o
        }
        v => {
            let mut o = vec![QWORD_PREFIX];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }
    }
}

/// A DWord constant (always 4 bytes, as ASL's EisaId produces).
pub fn dword(v: u32) -> Vec<u8> {
    let mut o = vec![DWORD_PREFIX];
    o.extend_from_slice(&v.to_le_bytes());
    o
}

/// A string constant (ASCII, NUL-terminated).
pub fn string(s: &str) -> Vec<u8> {
    let mut o = vec![STRING_PREFIX];
    o.extend(s.bytes().filter(|&b| b != 0 && b < 0x80));
    o.push(0);
    o
}

/// The compressed EISA ID of a PNP ID such as "PNP0A03" (3 letters, 4 hex digits).
pub fn eisa_id_value(id: &str) -> u32 {
    let b = id.as_bytes();
    if b.len() != 7 {
        return 0;
    }
    let c = |i: usize| u32::from(b[i].to_ascii_uppercase().wrapping_sub(0x40) & 0x1f);
    let h = |i: usize| (b[i] as char).to_digit(16).unwrap_or(0);
    let bytes = [
        ((c(0) << 2) | (c(1) >> 3)) as u8,
        (((c(1) & 7) << 5) | c(2)) as u8,
        ((h(3) << 4) | h(4)) as u8,
        ((h(5) << 4) | h(6)) as u8,
    ];
    u32::from_le_bytes(bytes)
}

/// EisaId("...") as a DWord constant.
pub fn eisa_id(id: &str) -> Vec<u8> {
    dword(eisa_id_value(id))
}

fn with_pkg(op: &[u8], body: Vec<u8>) -> Vec<u8> {
    let mut o = op.to_vec();
    o.extend(pkg_length(body.len()));
    o.extend(body);
    o
}

/// Name(path, value).
pub fn name(path: &str, value: Vec<u8>) -> Vec<u8> {
    let mut o = vec![NAME_OP];
    o.extend(name_string(path));
    o.extend(value);
    o
}

/// Scope(path) { terms }.
pub fn scope(path: &str, terms: Vec<Vec<u8>>) -> Vec<u8> {
    let mut body = name_string(path);
    body.extend(terms.into_iter().flatten());
    with_pkg(&[SCOPE_OP], body)
}

/// Device(path) { terms }.
pub fn device(path: &str, terms: Vec<Vec<u8>>) -> Vec<u8> {
    let mut body = name_string(path);
    body.extend(terms.into_iter().flatten());
    with_pkg(&[EXT_OP, DEVICE_OP], body)
}

/// Method(path, args, NotSerialized) { terms }.
pub fn method(path: &str, args: u8, terms: Vec<Vec<u8>>) -> Vec<u8> {
    let mut body = name_string(path);
    body.push(args & 7);
    body.extend(terms.into_iter().flatten());
    with_pkg(&[METHOD_OP], body)
}

/// Return(value).
pub fn ret(value: Vec<u8>) -> Vec<u8> {
    let mut o = vec![RETURN_OP];
    o.extend(value);
    o
}

/// Package(n) { elements } (at most 255 elements).
pub fn package(elements: Vec<Vec<u8>>) -> Vec<u8> {
    let mut body = vec![elements.len().min(255) as u8];
    body.extend(elements.into_iter().take(255).flatten());
    with_pkg(&[PACKAGE_OP], body)
}

/// Buffer() { bytes }.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut body = integer(bytes.len() as u64);
    body.extend_from_slice(bytes);
    with_pkg(&[BUFFER_OP], body)
}

/// Resource descriptors (ACPI 6.x section 6.4) and ResourceTemplate().
pub mod resource {
    /// General flags of an address-space descriptor for a fixed window the bridge
    /// produces (ResourceProducer, MinFixed, MaxFixed, PosDecode).
    const FIXED_PRODUCER: u8 = 0x0c;

    /// IO(Decode16, min, max, align, len).
    pub fn io(min: u16, max: u16, align: u8, len: u8) -> Vec<u8> {
        let mut o = vec![0x47, 0x01];
        o.extend_from_slice(&min.to_le_bytes());
        o.extend_from_slice(&max.to_le_bytes());
        o.push(align);
        o.push(len);
        o
    }

    /// IRQNoFlags() { irq } (edge, active high).
    pub fn irq_no_flags(irq: u8) -> Vec<u8> {
        let mask = 1u16 << (irq & 15);
        let mut o = vec![0x22];
        o.extend_from_slice(&mask.to_le_bytes());
        o
    }

    /// Interrupt(ResourceConsumer, Level, ActiveHigh, Shared) { gsi }.
    pub fn interrupt_level_high_shared(gsi: u32) -> Vec<u8> {
        let mut o = vec![0x89, 6, 0, 0x09, 1];
        o.extend_from_slice(&gsi.to_le_bytes());
        o
    }

    fn word_space(kind: u8, type_flags: u8, min: u16, max: u16) -> Vec<u8> {
        let mut o = vec![0x88, 0x0d, 0x00, kind, FIXED_PRODUCER, type_flags];
        for v in [0u16, min, max, 0, max.wrapping_sub(min).wrapping_add(1)] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, n).
    pub fn word_bus_number(min: u16, max: u16) -> Vec<u8> {
        word_space(2, 0, min, max)
    }

    /// WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, ...).
    pub fn word_io(min: u16, max: u16) -> Vec<u8> {
        word_space(1, 0x03, min, max)
    }

    /// DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite).
    pub fn dword_memory(min: u32, max: u32) -> Vec<u8> {
        let mut o = vec![0x87, 0x17, 0x00, 0, FIXED_PRODUCER, 0x03];
        for v in [0u32, min, max, 0, max.wrapping_sub(min).wrapping_add(1)] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite).
    pub fn qword_memory(min: u64, max: u64) -> Vec<u8> {
        let mut o = vec![0x8a, 0x2b, 0x00, 0, FIXED_PRODUCER, 0x03];
        for v in [0u64, min, max, 0, max.wrapping_sub(min).wrapping_add(1)] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// ResourceTemplate() { items } as a Buffer, with the end tag.
    pub fn template(items: Vec<Vec<u8>>) -> Vec<u8> {
        let mut bytes: Vec<u8> = items.into_iter().flatten().collect();
        // End tag; a checksum of 0 means "not checksummed".
        bytes.extend_from_slice(&[0x79, 0x00]);
        super::buffer(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_length_encodings() {
        assert_eq!(pkg_length(0), vec![1]);
        assert_eq!(pkg_length(0x3e), vec![0x3f]);
        // 0x3f body + 2 length bytes = 0x41.
        assert_eq!(pkg_length(0x3f), vec![0x41, 0x04]);
        assert_eq!(pkg_length(0xffd), vec![0x4f, 0xff]);
        assert_eq!(pkg_length(0xffe), vec![0x81, 0x00, 0x01]);
    }

    #[test]
    fn names() {
        assert_eq!(name_string("_HID"), b"_HID".to_vec());
        assert_eq!(name_string("\\_SB"), b"\\_SB_".to_vec());
        assert_eq!(name_string("\\_SB.PCI0"), b"\\\x2e_SB_PCI0".to_vec());
        assert_eq!(
            name_string("\\_SB.PCI0.ISA"),
            b"\\\x2f\x03_SB_PCI0ISA_".to_vec()
        );
        assert_eq!(name_string("\\"), vec![b'\\', 0]);
    }

    #[test]
    fn integers_and_ids() {
        assert_eq!(integer(0), vec![0]);
        assert_eq!(integer(1), vec![1]);
        assert_eq!(integer(5), vec![0x0a, 5]);
        assert_eq!(integer(0x1234), vec![0x0b, 0x34, 0x12]);
        assert_eq!(integer(0x1_0000), vec![0x0c, 0, 0, 1, 0]);
        assert_eq!(integer(1 << 32)[0], 0x0e);
        // iasl encodes EisaId("PNP0A03") as 0x030AD041.
        assert_eq!(eisa_id_value("PNP0A03"), 0x030a_d041);
        assert_eq!(eisa_id_value("PNP0501"), 0x0105_d041);
        assert_eq!(string("AB"), vec![0x0d, b'A', b'B', 0]);
    }

    #[test]
    fn device_with_hid() {
        // Device(COM1) { Name(_HID, EisaId("PNP0501")) } as iasl emits it.
        let d = device("COM1", vec![name("_HID", eisa_id("PNP0501"))]);
        assert_eq!(
            d,
            vec![
                0x5b, 0x82, 0x0f, b'C', b'O', b'M', b'1', 0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41,
                0xd0, 0x05, 0x01
            ]
        );
    }

    #[test]
    fn resource_template_io_irq() {
        // ResourceTemplate() { IO(Decode16, 0x3F8, 0x3F8, 0x00, 0x08) IRQNoFlags() {4} }
        let t = resource::template(vec![
            resource::io(0x3f8, 0x3f8, 0, 8),
            resource::irq_no_flags(4),
        ]);
        assert_eq!(
            t,
            vec![
                0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, 0x22, 0x10,
                0x00, 0x79, 0x00
            ]
        );
    }

    #[test]
    fn address_descriptors_have_declared_lengths() {
        assert_eq!(resource::word_bus_number(0, 255).len(), 3 + 0x0d);
        assert_eq!(resource::dword_memory(0xa0000, 0xbffff).len(), 3 + 0x17);
        assert_eq!(
            resource::qword_memory(1 << 32, (1 << 36) - 1).len(),
            3 + 0x2b
        );
        assert_eq!(resource::interrupt_level_high_shared(10).len(), 3 + 6);
    }

    #[test]
    fn package_and_method() {
        assert_eq!(
            package(vec![integer(0), integer(0)]),
            vec![0x12, 0x04, 0x02, 0x00, 0x00]
        );
        assert_eq!(
            method("_SRS", 1, vec![]),
            vec![0x14, 0x06, b'_', b'S', b'R', b'S', 0x01]
        );
        assert_eq!(ret(integer(0x0f)), vec![0xa4, 0x0a, 0x0f]);
    }
}
