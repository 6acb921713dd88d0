//! Identifiers in upstream's formats, drawn from a seeded generator.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `0x` + `digits` lower-case hex characters.
pub(crate) fn random_hex(rng: &mut ChaCha8Rng, digits: usize) -> String {
    let mut out = String::with_capacity(digits + 2);
    out.push_str("0x");
    for _ in 0..digits {
        out.push(char::from(HEX[rng.random_range(0..16usize)]));
    }
    out
}

/// 32 random bytes (a transaction hash).
pub(crate) fn random_bytes32(rng: &mut ChaCha8Rng) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    bytes
}

/// A CLOB token id: a 76–77 digit decimal string, as upstream's uint256 ids print.
pub(crate) fn random_token_id(rng: &mut ChaCha8Rng) -> String {
    let digits = if rng.random_bool(0.8) { 77 } else { 76 };
    let mut out = String::with_capacity(digits);
    out.push(char::from(b'1' + rng.random_range(0..9u8)));
    for _ in 1..digits {
        out.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    out
}

/// A kebab-case slug from words.
pub(crate) fn slugify(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    let mut last_dash = true;
    for character in text.chars() {
        if character.is_ascii_alphanumeric() {
            slug.push(character.to_ascii_lowercase());
            last_dash = false;
        } else if !last_dash {
            slug.push('-');
            last_dash = true;
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}
