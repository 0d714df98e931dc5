//! Who may call the API, and how much.
//!
//! - `token.rs`: key tokens (`cxk_<id>_<secret>`), their hashes, constant-time checks;
//! - `principal.rs`: the caller of a request and what its key admits;
//! - `keyring.rs`: finding a key (cached until the replicated keys change);
//! - `browser.rs`: dev-mode defences against web pages (Host, Origin, simple bodies);
//! - `disk.rs`: the data volume's free space, below which growing writes are refused;
//! - `limits.rs`: per-key request rate and open streams;
//! - `keys.rs`: creating, listing and revoking keys;
//! - `relay.rs`: the credential a node presents to relay one message's stream.
//!
//! The middleware that applies all of this per route is `api::gate`.
//!
//! Keys live in the replicated state (`state/keys.rs`) as hashes, so a key
//! created on one node works on every node once applied there.

pub(crate) mod browser;
mod disk;
mod keyring;
mod keys;
mod limits;
mod principal;
mod relay;
pub mod token;

pub use disk::DiskSpace;
pub use keyring::{KeyRing, Refusal};
pub use keys::{
    create as create_key, get as get_key, list as list_keys, revoke as revoke_key, CreatedKey, KeyError, KeyView,
    NewKey,
};
pub use limits::{default_rate, LiveSettings, RateLimiter, StreamSlot, StreamSlots};
pub use principal::{glob_match, Credential, Principal, BOOTSTRAP_NAME, DEV_NAME};
pub use relay::{RelayKey, RELAY_HEADER};
