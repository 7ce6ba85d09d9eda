//! API keys: high-entropy random tokens, stored only as a SHA-256 hash.
//!
//! A fast hash is right here (as for GitHub and Stripe tokens): the key has 256 bits of
//! entropy, so there is nothing to brute-force, and the hot path can hash every request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every key starts with this, so leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "hs_";
/// Characters of a key kept in listings to tell keys apart.
pub const DISPLAY_PREFIX_LEN: usize = 11;

/// A freshly generated key: shown once, then only its hash is kept.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The whole key, to hand to the user.
    pub key: String,
    /// Its SHA-256.
    pub hash: [u8; 32],
    /// The first characters, for listings.
    pub display_prefix: String,
}

/// Generates a key of 32 random bytes.
pub fn generate() -> NewApiKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let display_prefix = key.chars().take(DISPLAY_PREFIX_LEN).collect();
    NewApiKey { hash: hash(&key), key, display_prefix }
}

/// The stored form of a key.
pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether a presented token has the shape of a key (checked before any lookup).
pub fn looks_valid(token: &str) -> bool {
    token.len() == KEY_PREFIX.len() + 43
        && token.starts_with(KEY_PREFIX)
        && token[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_well_formed_and_hash_stably() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert!(looks_valid(&a.key), "{}", a.key);
        assert_eq!(hash(&a.key), a.hash);
        assert!(a.key.starts_with(&a.display_prefix));
    }

    #[test]
    fn malformed_tokens_are_rejected_before_lookup() {
        assert!(!looks_valid(""));
        assert!(!looks_valid("hs_short"));
        assert!(!looks_valid(&format!("xx_{}", "a".repeat(43))));
        assert!(!looks_valid(&format!("hs_{}", "é".repeat(43))));
    }
}
