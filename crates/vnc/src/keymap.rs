//! X keysyms to PC XT (scan code set 1) make codes for a US keyboard layout, for clients
//! that send plain RFB key events (without QEMU's extended key events, which carry the
//! scan code themselves) and for typing strings. Extended keys are 0xE0xx.

/// Left shift's scan code.
pub const LSHIFT: u16 = 0x2a;

/// The scan code of `keysym` and whether the character needs Shift on a US layout.
pub fn keysym_to_xt(keysym: u32) -> Option<(u16, bool)> {
    if let Some(c) = char::from_u32(keysym).filter(|c| c.is_ascii() && !c.is_ascii_control()) {
        return char_to_xt(c);
    }
    let code = match keysym {
        0xff08 => 0x0e,   // BackSpace
        0xff09 => 0x0f,   // Tab
        0xff0d => 0x1c,   // Return
        0xff1b => 0x01,   // Escape
        0xff13 => 0xe045, // Pause (approximation: Break without Ctrl)
        0xff14 => 0x46,   // Scroll_Lock
        0xff50 => 0xe047, // Home
        0xff51 => 0xe04b, // Left
        0xff52 => 0xe048, // Up
        0xff53 => 0xe04d, // Right
        0xff54 => 0xe050, // Down
        0xff55 => 0xe049, // Page_Up
        0xff56 => 0xe051, // Page_Down
        0xff57 => 0xe04f, // End
        0xff61 => 0xe037, // Print
        0xff63 => 0xe052, // Insert
        0xff67 => 0xe05d, // Menu
        0xff7f => 0x45,   // Num_Lock
        0xff8d => 0xe01c, // KP_Enter
        0xffaa => 0x37,   // KP_Multiply
        0xffab => 0x4e,   // KP_Add
        0xffad => 0x4a,   // KP_Subtract
        0xffae => 0x53,   // KP_Decimal
        0xffaf => 0xe035, // KP_Divide
        0xffb0..=0xffb9 => {
            [0x52, 0x4f, 0x50, 0x51, 0x4b, 0x4c, 0x4d, 0x47, 0x48, 0x49][(keysym - 0xffb0) as usize]
        }
        0xffbe..=0xffc7 => 0x3b + (keysym - 0xffbe) as u16, // F1-F10
        0xffc8 => 0x57,                                     // F11
        0xffc9 => 0x58,                                     // F12
        0xffe1 => 0x2a,                                     // Shift_L
        0xffe2 => 0x36,                                     // Shift_R
        0xffe3 => 0x1d,                                     // Control_L
        0xffe4 => 0xe01d,                                   // Control_R
        0xffe5 => 0x3a,                                     // Caps_Lock
        0xffe7 | 0xffe9 => 0x38,                            // Meta_L, Alt_L
        0xffe8 | 0xffea | 0xfe03 => 0xe038,                 // Meta_R, Alt_R, AltGr
        0xffeb => 0xe05b,                                   // Super_L
        0xffec => 0xe05c,                                   // Super_R
        0xffff => 0xe053,                                   // Delete
        _ => return None,
    };
    Some((code, false))
}

/// The scan code of a printable ASCII character (or '\n', '\t') and whether it needs Shift.
pub fn char_to_xt(c: char) -> Option<(u16, bool)> {
    const LETTERS: [u8; 26] = [
        0x1e, 0x30, 0x2e, 0x20, 0x12, 0x21, 0x22, 0x23, 0x17, 0x24, 0x25, 0x26, 0x32, 0x31, 0x18,
        0x19, 0x10, 0x13, 0x1f, 0x14, 0x16, 0x2f, 0x11, 0x2d, 0x15, 0x2c,
    ];
    const SHIFTED_DIGITS: &str = ")!@#$%^&*(";
    let plain = |code: u8| Some((u16::from(code), false));
    let shifted = |code: u8| Some((u16::from(code), true));
    match c {
        'a'..='z' => plain(LETTERS[(c as u8 - b'a') as usize]),
        'A'..='Z' => shifted(LETTERS[(c as u8 - b'A') as usize]),
        '1'..='9' => plain(c as u8 - b'1' + 2),
        '0' => plain(0x0b),
        '\n' => plain(0x1c),
        '\t' => plain(0x0f),
        ' ' => plain(0x39),
        '-' => plain(0x0c),
        '_' => shifted(0x0c),
        '=' => plain(0x0d),
        '+' => shifted(0x0d),
        '[' => plain(0x1a),
        '{' => shifted(0x1a),
        ']' => plain(0x1b),
        '}' => shifted(0x1b),
        ';' => plain(0x27),
        ':' => shifted(0x27),
        '\'' => plain(0x28),
        '"' => shifted(0x28),
        '`' => plain(0x29),
        '~' => shifted(0x29),
        '\\' => plain(0x2b),
        '|' => shifted(0x2b),
        ',' => plain(0x33),
        '<' => shifted(0x33),
        '.' => plain(0x34),
        '>' => shifted(0x34),
        '/' => plain(0x35),
        '?' => shifted(0x35),
        _ => {
            let i = SHIFTED_DIGITS.find(c)?;
            shifted(if i == 0 { 0x0b } else { i as u8 + 1 })
        }
    }
}

/// The key presses and releases that type `text` on a US layout: (scan code, pressed).
/// Characters without a key are skipped and returned in the second value.
pub fn type_string(text: &str) -> (Vec<(u16, bool)>, Vec<char>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for c in text.chars() {
        match char_to_xt(c) {
            Some((code, shift)) => {
                if shift {
                    out.push((LSHIFT, true));
                }
                out.push((code, true));
                out.push((code, false));
                if shift {
                    out.push((LSHIFT, false));
                }
            }
            None => skipped.push(c),
        }
    }
    (out, skipped)
}

/// The XT code of a QEMU extended key event's keycode: the 0xE0 prefix travels as bit 7.
pub fn qemu_keycode_to_xt(keycode: u32) -> Option<u16> {
    match keycode {
        0 => None,
        1..=0x7f => Some(keycode as u16),
        0x80..=0xff => Some(0xe000 | (keycode as u16 & 0x7f)),
        // Some clients send the prefixed form itself.
        0xe000..=0xe07f => Some(keycode as u16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_symbols() {
        assert_eq!(keysym_to_xt('a' as u32), Some((0x1e, false)));
        assert_eq!(keysym_to_xt('Q' as u32), Some((0x10, true)));
        assert_eq!(keysym_to_xt('0' as u32), Some((0x0b, false)));
        assert_eq!(keysym_to_xt('!' as u32), Some((0x02, true)));
        assert_eq!(keysym_to_xt(')' as u32), Some((0x0b, true)));
        assert_eq!(keysym_to_xt('(' as u32), Some((0x0a, true)));
        assert_eq!(keysym_to_xt(0xff0d), Some((0x1c, false)));
        assert_eq!(keysym_to_xt(0xff52), Some((0xe048, false)));
        assert_eq!(keysym_to_xt(0xffc9), Some((0x58, false)));
        assert_eq!(keysym_to_xt(0x12345), None);
    }

    #[test]
    fn typing_wraps_shift() {
        let (keys, skipped) = type_string("aB\u{e9}");
        assert_eq!(
            keys,
            vec![
                (0x1e, true),
                (0x1e, false),
                (LSHIFT, true),
                (0x30, true),
                (0x30, false),
                (LSHIFT, false)
            ]
        );
        assert_eq!(skipped, vec!['\u{e9}']);
    }

    #[test]
    fn qemu_codes() {
        assert_eq!(qemu_keycode_to_xt(0x1e), Some(0x1e));
        assert_eq!(qemu_keycode_to_xt(0x9d), Some(0xe01d));
        assert_eq!(qemu_keycode_to_xt(0xe048), Some(0xe048));
        assert_eq!(qemu_keycode_to_xt(0x1_0000), None);
    }
}
