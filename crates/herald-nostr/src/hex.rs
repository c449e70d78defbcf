//! Fixed-size hex: the form of every id, key, signature and hash in Nostr.
//!
//! NIP-01 allows only lowercase on the wire, and the rule matters: an event's
//! id is the hash of a serialisation that contains the pubkey's text, so an
//! uppercase pubkey would change the id. People typing keys are another
//! matter, so decoding says which digits it takes.

/// Which hex digits a decoder takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digits {
    /// `0-9a-f` only: NIP-01's wire form.
    Lowercase,
    /// `0-9a-fA-F`: what a person may paste.
    AnyCase,
}

const LOWERCASE_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Exactly `N` bytes from exactly `2 * N` hex digits, or `None`.
pub(crate) fn decode<const N: usize>(text: &str, digits: Digits) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0], digits)? << 4) | digit(pair[1], digits)?;
    }
    Some(out)
}

fn digit(c: u8, digits: Digits) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' if digits == Digits::AnyCase => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(LOWERCASE_DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(LOWERCASE_DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte_value() {
        let bytes: [u8; 256] = std::array::from_fn(|i| i as u8);
        let text = encode(&bytes);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(decode::<256>(&text, Digits::Lowercase), Some(bytes));
    }

    #[test]
    fn lowercase_refuses_uppercase_digits_that_any_case_takes() {
        assert_eq!(decode::<2>("abCD", Digits::Lowercase), None);
        assert_eq!(decode::<2>("abCD", Digits::AnyCase), Some([0xab, 0xcd]));
    }

    #[test]
    fn refuses_wrong_lengths_and_non_hex_characters() {
        assert_eq!(decode::<2>("abc", Digits::AnyCase), None);
        assert_eq!(decode::<2>("abcde", Digits::AnyCase), None);
        assert_eq!(decode::<2>("abcg", Digits::AnyCase), None);
        assert_eq!(decode::<2>("+bcd", Digits::AnyCase), None);
        // Four bytes of text, but not four ASCII characters.
        assert_eq!(decode::<2>("ab\u{e9}", Digits::AnyCase), None);
    }
}
