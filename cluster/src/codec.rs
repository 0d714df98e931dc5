//! The one binary encoding used for log entries, snapshots metadata and RPC
//! bodies. Versioned by a leading byte so a rolling upgrade can tell formats
//! apart instead of mis-decoding them.

use serde::de::DeserializeOwned;
use serde::Serialize;

const FORMAT_V1: u8 = 1;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    #[error("empty message")]
    Empty,
    #[error("unsupported wire format version {0} (this node speaks {FORMAT_V1})")]
    Version(u8),
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("malformed application message: {0}")]
    Json(String),
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serializing our own plain data types into a Vec cannot fail.
    postcard::to_io(value, &mut out).expect("postcard serialization into a Vec");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_V1, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(CodecError::Version(v)),
    }
}

/// Application commands and responses are encoded as JSON: they may hold
/// free-form values (agent parameters) that only a self-describing format
/// can carry, and JSON lets an operator read the log when something is odd.
pub fn encode_app<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("application types serialize to JSON")
}

pub fn decode_app<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|e| CodecError::Json(e.to_string()))
}

/// Lower-case hex of `bytes` (digests and checksums).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{EntryPayload, LogId, Membership};

    use super::*;
    use crate::types::{Entry, NodeAddr, Payload, TypeConfig};

    #[test]
    fn raft_entries_round_trip() {
        let mut nodes = BTreeMap::new();
        nodes.insert(1u64, NodeAddr { rpc: "a:1".into(), api: "a:2".into(), incarnation: "i".into() });
        let membership = Membership::<u64, NodeAddr>::new(vec![BTreeSet::from([1u64])], nodes);
        let entries: Vec<Entry> = vec![
            Entry { log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 7), payload: EntryPayload::Blank },
            Entry {
                log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 8),
                payload: EntryPayload::Normal(Payload(b"hello".to_vec())),
            },
            Entry {
                log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 9),
                payload: EntryPayload::Membership(membership),
            },
        ];
        for e in entries {
            let bytes = encode(&e);
            let back: openraft::Entry<TypeConfig> = decode(&bytes).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn rejects_unknown_version() {
        let mut bytes = encode(&5u32);
        bytes[0] = 9;
        assert!(matches!(decode::<u32>(&bytes), Err(CodecError::Version(9))));
        assert!(matches!(decode::<u32>(&[]), Err(CodecError::Empty)));
    }
}
