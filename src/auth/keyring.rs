//! Finds the key a token names. Keys are read from the replica once and
//! kept in memory until the state machine says they changed (its keys
//! generation moves before any caller learns of the commit), so checking a
//! key costs a hash and a map lookup, and a revocation is honoured by the
//! first request after it is applied.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use caxton_cluster::ReadError;

use super::principal::Principal;
use super::token;
use crate::state::{CaxtonState, KeyRecord, Queries};

/// Why a presented token was refused. The display never contains it.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("no API key: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("the Authorization header is not `Bearer <key>`")]
    NotBearer,
    #[error("the API key is not valid")]
    Unknown,
    #[error("the API key `{name}` expired")]
    Expired { name: String },
    #[error("the API key `{name}` was revoked")]
    Revoked { name: String },
}

type ById = Arc<HashMap<String, Arc<KeyRecord>>>;

pub struct KeyRing {
    queries: Queries,
    state: Arc<CaxtonState>,
    /// SHA-256 of the configured admin key.
    bootstrap: Option<[u8; 32]>,
    cache: Mutex<Option<(u64, ById)>>,
}

impl KeyRing {
    pub fn new(queries: Queries, state: Arc<CaxtonState>, bootstrap_key: Option<&str>) -> Self {
        Self { queries, state, bootstrap: bootstrap_key.map(token::digest), cache: Mutex::new(None) }
    }

    pub fn has_bootstrap(&self) -> bool {
        self.bootstrap.is_some()
    }

    async fn keys(&self) -> Result<ById, ReadError> {
        // Read the generation before the keys: a change committed while we
        // read leaves the cache marked stale, so the next call reloads.
        let generation = self.state.keys_generation();
        if let Some((g, keys)) = self.cache.lock().as_ref() {
            if *g == generation {
                return Ok(keys.clone());
            }
        }
        let keys: ById =
            Arc::new(self.queries.keys().await?.into_iter().map(|k| (k.id.clone(), Arc::new(k))).collect());
        *self.cache.lock() = Some((generation, keys.clone()));
        Ok(keys)
    }

    /// The caller a bearer token stands for, checked at `now_ms`.
    pub async fn authenticate(&self, bearer: &str, now_ms: i64) -> Result<Result<Principal, Refusal>, ReadError> {
        if let Some(admin) = &self.bootstrap {
            if token::same_digest(admin, &token::digest(bearer)) {
                return Ok(Ok(Principal::bootstrap()));
            }
        }
        let Some(id) = token::key_id(bearer) else { return Ok(Err(Refusal::Unknown)) };
        let keys = self.keys().await?;
        let Some(key) = keys.get(id) else { return Ok(Err(Refusal::Unknown)) };
        if !token::matches(bearer, &key.hash) {
            return Ok(Err(Refusal::Unknown));
        }
        if key.revoked_at_ms.is_some() {
            return Ok(Err(Refusal::Revoked { name: key.name.clone() }));
        }
        if key.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Ok(Err(Refusal::Expired { name: key.name.clone() }));
        }
        Ok(Ok(Principal::of_key(key)))
    }
}
