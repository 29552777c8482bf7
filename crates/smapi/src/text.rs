//! Text on the SMAPI wire.
//!
//! SMAPI servers listening on TCP expect ASCII-based text and translate it to EBCDIC themselves; clients send
//! ISO-8859-15 (Latin-9). It is Latin-1 except for eight code points (the euro sign and a few letters), so
//! decoding never fails (every byte is a character) while encoding refuses a character Latin-9 cannot carry.

/// The eight bytes where ISO-8859-15 differs from ISO-8859-1, with the character each one means in ISO-8859-15.
const LATIN9_DIFFERENCES: [(u8, char); 8] = [
    (0xA4, '\u{20AC}'),
    (0xA6, '\u{0160}'),
    (0xA8, '\u{0161}'),
    (0xB4, '\u{017D}'),
    (0xB8, '\u{017E}'),
    (0xBC, '\u{0152}'),
    (0xBD, '\u{0153}'),
    (0xBE, '\u{0178}'),
];

/// Decodes ISO-8859-15 bytes. Every byte maps to one character, so this cannot fail.
pub fn decode(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| decode_byte(byte)).collect()
}

fn decode_byte(byte: u8) -> char {
    LATIN9_DIFFERENCES.iter().find(|(code, _)| *code == byte).map(|(_, character)| *character).unwrap_or(byte.into())
}

/// Encodes text as ISO-8859-15 onto `output`; on a character that has no ISO-8859-15 byte, returns that character
/// (and leaves `output` with the bytes before it).
pub fn encode_into(text: &str, output: &mut Vec<u8>) -> Result<(), char> {
    output.reserve(text.len());
    for character in text.chars() {
        output.push(encode_char(character).ok_or(character)?);
    }
    Ok(())
}

/// The number of bytes `text` takes on the wire (one per character), if every character can be encoded.
pub fn encoded_len(text: &str) -> Result<usize, char> {
    let mut count = 0usize;
    for character in text.chars() {
        encode_char(character).ok_or(character)?;
        count += 1;
    }
    Ok(count)
}

fn encode_char(character: char) -> Option<u8> {
    if let Some((code, _)) = LATIN9_DIFFERENCES.iter().find(|(_, replaced)| *replaced == character) {
        return Some(*code);
    }
    let code = u32::from(character);
    // Below 0x100 the character is its own byte, unless ISO-8859-15 gave that byte to another character.
    let byte = u8::try_from(code).ok()?;
    if LATIN9_DIFFERENCES.iter().any(|(replaced_byte, _)| *replaced_byte == byte) {
        return None;
    }
    Some(byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_round_trips() {
        let mut bytes = Vec::new();
        encode_into("gt@ping MAINT $ALLOC$", &mut bytes).unwrap();
        assert_eq!(bytes, b"gt@ping MAINT $ALLOC$");
        assert_eq!(decode(&bytes), "gt@ping MAINT $ALLOC$");
    }

    #[test]
    fn latin9_specials_use_their_own_bytes() {
        let mut bytes = Vec::new();
        encode_into("\u{20AC}\u{0160}\u{e9}", &mut bytes).unwrap();
        assert_eq!(bytes, [0xA4, 0xA6, 0xE9]);
        assert_eq!(decode(&bytes), "\u{20AC}\u{0160}\u{e9}");
    }

    #[test]
    fn characters_outside_latin9_are_refused() {
        let mut bytes = Vec::new();
        assert_eq!(encode_into("a\u{a4}", &mut bytes), Err('\u{a4}'));
        assert_eq!(encode_into("\u{4e2d}", &mut Vec::new()), Err('\u{4e2d}'));
        assert_eq!(encoded_len("ok\u{1F600}"), Err('\u{1F600}'));
        assert_eq!(encoded_len("caf\u{e9}"), Ok(4));
    }

    #[test]
    fn every_byte_decodes_and_encodes_back() {
        let all: Vec<u8> = (0..=255).collect();
        let text = decode(&all);
        let mut bytes = Vec::new();
        encode_into(&text, &mut bytes).unwrap();
        assert_eq!(bytes, all);
    }
}
