//! Key tokens: `cxk_<id>_<secret>`. The id (12 hex digits) is public and
//! finds the key; the secret (32 random bytes, base64url) proves it. Only
//! the SHA-256 of the whole token is stored: a token is high-entropy, so a
//! fast hash is enough, and the hash compares in constant time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "cxk_";
const ID_HEX: usize = 12;

/// A freshly minted token, shown once to its creator.
pub struct NewToken {
    pub id: String,
    pub token: String,
    pub hash: String,
}

pub fn mint() -> NewToken {
    let mut rng = rand::rngs::OsRng;
    let mut id = [0u8; ID_HEX / 2];
    rng.fill_bytes(&mut id);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let token = format!("{PREFIX}{id}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let hash = hash_hex(&token);
    NewToken { id, token, hash }
}

/// The public id a well-formed token carries.
pub fn key_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == ID_HEX && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some(id)
}

/// Meant as a Caxton key (it has the `cxk_` prefix), valid or not.
pub fn is_caxton_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn hash_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// Whether `token` hashes to `stored_hex`, without an early exit on the
/// first differing byte.
pub fn matches(token: &str, stored_hex: &str) -> bool {
    let Ok(stored) = hex::decode(stored_hex) else { return false };
    stored.len() == 32 && bool::from(digest(token).ct_eq(stored.as_slice()))
}

/// A configured (bootstrap) secret compared with a presented one.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_carries_its_id_and_matches_its_hash_only() {
        let t = mint();
        assert_eq!(key_id(&t.token), Some(t.id.as_str()));
        assert!(t.token.len() > 50, "{}", t.token);
        assert!(matches(&t.token, &t.hash));
        let mut wrong = t.token.clone();
        wrong.pop();
        wrong.push('x');
        assert!(!matches(&wrong, &t.hash));
        assert!(!matches(&t.token, "not hex"));
        assert_ne!(mint().token, t.token);
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        for bad in ["", "cxk_", "cxk_0123_secret", "cxk_0123456789ab_", "abc_0123456789ab_s", "cxk_0123456789zz_s"] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
    }
}
