//! Lowercase hex, the way status-go prints keys, hashes and topics.
//!
//! Status writes hex in two forms: bare (`PublicKeyToStr`, the query topic's
//! chat name) and `0x`-prefixed (`types.EncodeHex`, gorush's `data`).
//! Both are lowercase; decoding accepts either case and an optional `0x`,
//! since people paste keys from wherever they find them.

/// `bytes` as lowercase hex, no prefix.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// `bytes` as lowercase hex with a `0x` prefix (`types.EncodeHex`).
pub fn encode_prefixed(bytes: &[u8]) -> String {
    format!("0x{}", encode(bytes))
}

/// Hex digits (either case, an optional `0x`) as bytes; `None` for an odd
/// length or a character that is not a hex digit.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
        .as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

fn nibble(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lowercase_with_and_without_prefix() {
        assert_eq!(encode(&[0x00, 0xab, 0x0f, 0xff]), "00ab0fff");
        assert_eq!(encode_prefixed(&[0x04, 0xc1]), "0x04c1");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn decodes_either_case_and_an_optional_prefix() {
        assert_eq!(decode("00AB0fff"), Some(vec![0x00, 0xab, 0x0f, 0xff]));
        assert_eq!(decode("0x04c1"), Some(vec![0x04, 0xc1]));
        assert_eq!(decode("0X04C1"), Some(vec![0x04, 0xc1]));
        assert_eq!(decode(""), Some(vec![]));
    }

    #[test]
    fn refuses_odd_lengths_and_non_digits() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("0x0g"), None);
        assert_eq!(decode("+1"), None);
        assert_eq!(decode("é0"), None);
        assert_eq!(decode("0x"), Some(vec![]));
    }
}
