//! How one node asks another for the live answer stream of a message whose
//! agent runs there, without the caller's key. The relaying node has
//! already checked that its caller may see the message; it presents a
//! credential that names that message alone and expires within a minute,
//! keyed with the admin key every node of a keyed cluster shares (no secret
//! travels: an eavesdropper learns one message's stream, briefly). A node
//! without an admin key (dev mode, loopback only) needs none.

use std::time::Duration;

use ring::hmac;

/// The header a relaying node sends to the owner.
pub const RELAY_HEADER: &str = "x-caxton-relay";

/// How long a relay credential is accepted after it is minted.
const VALID_FOR: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct RelayKey(hmac::Key);

impl std::fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayKey(..)")
    }
}

impl RelayKey {
    /// The relay key of a node whose admin key is `admin_key`: derived, so
    /// the admin key itself is never used as a MAC key elsewhere.
    pub fn from_admin_key(admin_key: &str) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, b"caxton relay credential v1");
        let derived = hmac::sign(&derive, admin_key.as_bytes());
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn tag(&self, message_id: &str, expires_ms: i64) -> hmac::Tag {
        hmac::sign(&self.0, format!("{message_id}\n{expires_ms}").as_bytes())
    }

    /// A credential for the stream of `message_id`, minted at `now_ms`.
    pub fn mint(&self, message_id: &str, now_ms: i64) -> String {
        let expires = now_ms + VALID_FOR.as_millis() as i64;
        format!("{expires}.{}", hex::encode(self.tag(message_id, expires)))
    }

    /// Whether `credential` was minted by a node sharing this key, for
    /// `message_id`, and has not expired at `now_ms`.
    pub fn verify(&self, credential: &str, message_id: &str, now_ms: i64) -> bool {
        let Some((expires, tag)) = credential.split_once('.') else { return false };
        let (Ok(expires), Ok(tag)) = (expires.parse::<i64>(), hex::decode(tag)) else { return false };
        if expires < now_ms || expires > now_ms + 2 * VALID_FOR.as_millis() as i64 {
            return false;
        }
        hmac::verify(&self.0, format!("{message_id}\n{expires}").as_bytes(), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_opens_one_message_for_a_minute_on_nodes_with_the_same_key() {
        let key = RelayKey::from_admin_key("the-admin-key-of-this-cluster");
        let c = key.mint("m-1", 1_000);
        assert!(key.verify(&c, "m-1", 1_000));
        assert!(key.verify(&c, "m-1", 60_000));
        assert!(!key.verify(&c, "m-1", 62_000), "expired");
        assert!(!key.verify(&c, "m-2", 1_000), "another message");
        assert!(!RelayKey::from_admin_key("another-cluster-admin-key").verify(&c, "m-1", 1_000));
        assert!(!c.contains("the-admin-key"), "no secret in it");
        for forged in ["", "1.", "x.00", "99999999999999.00"] {
            assert!(!key.verify(forged, "m-1", 1_000), "{forged}");
        }
    }
}
