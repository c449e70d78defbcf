//! Bech32 (BIP-173), the encoding of NIP-19's `npub`.
//!
//! Written here rather than taken from a crate because herald needs one
//! variant (NIP-19 uses bech32, not bech32m) for one thing: reading the
//! npubs apps send, and writing herald's own for the operator. Decoding
//! follows BIP-173's "Decoding" section: character set and case,
//! separator, checksum, then the 5-bit groups regrouped into bytes;
//! encoding is the same steps backwards.

/// BIP-173's longest string. NIP-19 lifts it only for its TLV entities
/// (`nprofile`, …); an npub is 63 characters.
const MAX_CHARS: usize = 90;
/// BIP-173's checksum: six 5-bit characters at the end.
const CHECKSUM_CHARS: usize = 6;
/// BIP-173's alphabet; a character's position is its 5-bit value.
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
/// BIP-173's generator for the BCH checksum.
const GENERATOR: [u32; 5] = [
    0x3b6a_57b2,
    0x2650_8e6d,
    0x1ea1_19fa,
    0x3d42_33dd,
    0x2a14_62b3,
];
/// What a valid bech32 string's checksum leaves (bech32m's would be
/// `0x2bc830a3`, which NIP-19 does not use).
const BECH32_RESIDUE: u32 = 1;

/// A checked bech32 string: its human-readable part, lowercased, and its
/// data as 5-bit values, checksum removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bech32 {
    pub hrp: String,
    pub values: Vec<u8>,
}

/// Checks `text` as bech32 and splits it; the error says which rule failed.
pub(crate) fn decode(text: &str) -> Result<Bech32, &'static str> {
    if text.len() > MAX_CHARS {
        return Err("longer than 90 characters");
    }
    if !text.bytes().all(|b| (33..=126).contains(&b)) {
        return Err("a character outside printable ASCII");
    }
    let has_lower = text.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = text.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err("mixed upper and lower case");
    }
    let text = text.to_ascii_lowercase();
    let Some(separator) = text.rfind('1') else {
        return Err("no `1` separator");
    };
    let (hrp, data) = (&text[..separator], &text.as_bytes()[separator + 1..]);
    if hrp.is_empty() {
        return Err("an empty prefix");
    }
    if data.len() < CHECKSUM_CHARS {
        return Err("a checksum shorter than 6 characters");
    }
    let values = data
        .iter()
        .map(|c| CHARSET.iter().position(|x| x == c).map(|v| v as u8))
        .collect::<Option<Vec<u8>>>()
        .ok_or("a character outside the bech32 alphabet")?;
    if polymod(&hrp_expanded(hrp), &values) != BECH32_RESIDUE {
        return Err("a wrong checksum");
    }
    let mut values = values;
    values.truncate(values.len() - CHECKSUM_CHARS);
    Ok(Bech32 {
        hrp: hrp.to_owned(),
        values,
    })
}

/// The 5-bit values regrouped into bytes, most significant bit first. The
/// leftover must be under 5 bits and zero (BIP-173), so each byte string
/// has exactly one encoding.
pub(crate) fn to_bytes(values: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(values.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &v in values {
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 5 && acc == 0).then_some(bytes)
}

/// `bytes` as lowercase bech32 with the prefix `hrp` (lowercase ASCII).
pub(crate) fn encode(hrp: &str, bytes: &[u8]) -> String {
    let mut values = Vec::with_capacity(bytes.len() * 8 / 5 + 1 + CHECKSUM_CHARS);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            values.push(((acc >> bits) & 0x1f) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        values.push(((acc << (5 - bits)) & 0x1f) as u8);
    }
    let residue = polymod(
        &hrp_expanded(hrp),
        &[&values[..], &[0; CHECKSUM_CHARS]].concat(),
    ) ^ BECH32_RESIDUE;
    values.extend((0..CHECKSUM_CHARS).map(|i| ((residue >> (5 * (5 - i))) & 0x1f) as u8));
    let mut text = String::with_capacity(hrp.len() + 1 + values.len());
    text.push_str(hrp);
    text.push('1');
    text.extend(values.iter().map(|&v| char::from(CHARSET[usize::from(v)])));
    text
}

/// The prefix as the checksum sees it: high bits of each character, a zero,
/// then the low bits.
fn hrp_expanded(hrp: &str) -> Vec<u8> {
    let high = hrp.bytes().map(|b| b >> 5);
    let low = hrp.bytes().map(|b| b & 0x1f);
    high.chain([0]).chain(low).collect()
}

fn polymod(prefix: &[u8], values: &[u8]) -> u32 {
    let mut checksum = 1u32;
    for &v in prefix.iter().chain(values) {
        let top = checksum >> 25;
        checksum = ((checksum & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GENERATOR.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                checksum ^= g;
            }
        }
    }
    checksum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_decodes_back_to_the_same_bytes() {
        for len in [0, 1, 20, 32, 33] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode("npub", &bytes);
            let decoded = decode(&text).unwrap();
            assert_eq!(decoded.hrp, "npub");
            assert_eq!(to_bytes(&decoded.values).unwrap(), bytes, "{text}");
        }
    }

    #[test]
    fn accepts_bip173_valid_vectors() {
        for text in [
            "A12UEL5L",
            "a12uel5l",
            "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
            "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
            "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
            "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
            "?1ezyfcl",
        ] {
            assert!(decode(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_bip173_invalid_vectors_with_their_reasons() {
        let cases = [
            ("\u{20}1nwldj5", "a character outside printable ASCII"),
            ("\u{7f}1axkwrx", "a character outside printable ASCII"),
            ("\u{80}1eym55h", "a character outside printable ASCII"),
            (
                "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
                "longer than 90 characters",
            ),
            ("pzry9x0s0muk", "no `1` separator"),
            ("1pzry9x0s0muk", "an empty prefix"),
            ("x1b4n0q5v", "a character outside the bech32 alphabet"),
            ("li1dgmt3", "a checksum shorter than 6 characters"),
            ("de1lg7wt\u{ff}", "a character outside printable ASCII"),
            ("A1G7SGD8", "a wrong checksum"),
            ("10a06t8", "an empty prefix"),
            ("1qzzfhee", "an empty prefix"),
            (
                "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7",
                "mixed upper and lower case",
            ),
        ];
        for (text, why) in cases {
            assert_eq!(decode(text), Err(why), "{text:?}");
        }
    }

    #[test]
    fn splits_prefix_and_data_and_lowercases_an_uppercase_string() {
        let decoded = decode("ABCDEF1QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7LMQQQXW").unwrap();
        assert_eq!(decoded.hrp, "abcdef");
        assert_eq!(decoded.values, (0..32).collect::<Vec<u8>>());
    }

    #[test]
    fn regroups_values_into_bytes_and_refuses_non_canonical_padding() {
        // "qpzry9x8" is 0..8: 40 bits, five bytes.
        assert_eq!(
            to_bytes(&[0, 1, 2, 3, 4, 5, 6, 7]),
            Some(vec![0x00, 0x44, 0x32, 0x14, 0xc7])
        );
        // 10 bits: one byte and 2 bits of zero padding.
        assert_eq!(to_bytes(&[0b11111, 0b11100]), Some(vec![0xff]));
        // Non-zero padding bits.
        assert_eq!(to_bytes(&[0b11111, 0b11101]), None);
        // 5 leftover bits: a whole extra value of padding.
        assert_eq!(to_bytes(&[0b11111, 0b11100, 0]), None);
    }
}
