//! Which node owns which key.
//!
//! Keys hash into a fixed number of virtual shards (fixed at cluster
//! creation). Each shard's owner is chosen by rendezvous (highest random
//! weight) hashing over the eligible nodes, so when a node joins or leaves
//! only the shards it wins or held move. The leader computes assignments;
//! the application stores them in Raft, where every node reads them.

use crate::types::NodeId;

pub const DEFAULT_SHARDS: u32 = 256;

/// FNV-1a: stable across versions and platforms (it is part of the data).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The shard a key belongs to. Keys are compared case-insensitively.
pub fn shard_of(key: &str, shards: u32) -> u32 {
    (fnv1a(key.to_ascii_lowercase().as_bytes()) % shards as u64) as u32
}

fn score(shard: u32, node: NodeId) -> u64 {
    let mut buf = [0u8; 12];
    buf[..4].copy_from_slice(&shard.to_le_bytes());
    buf[4..].copy_from_slice(&node.to_le_bytes());
    // Mix once more: FNV alone correlates on nearby inputs.
    let h = fnv1a(&buf);
    h ^ (h >> 33).wrapping_mul(0xff51afd7ed558ccd)
}

/// The owner of `shard` among `nodes` (None when there are no nodes).
pub fn owner(shard: u32, nodes: &[NodeId]) -> Option<NodeId> {
    nodes.iter().copied().max_by_key(|n| (score(shard, *n), *n))
}

/// The shards whose owner must change for `nodes`, given `current` owners
/// (index = shard; `None` = unassigned), as `(shard, new_owner)`.
pub fn moves(current: &[Option<NodeId>], nodes: &[NodeId]) -> Vec<(u32, NodeId)> {
    current
        .iter()
        .enumerate()
        .filter_map(|(s, cur)| {
            let want = owner(s as u32, nodes)?;
            (*cur != Some(want)).then_some((s as u32, want))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn shards_are_stable_and_case_insensitive() {
        assert_eq!(shard_of("DataAnalyzer", 256), shard_of("dataanalyzer", 256));
        // Pinned: changing the hash would move every agent of every cluster.
        assert_eq!(shard_of("assistant", 256), (fnv1a(b"assistant") % 256) as u32);
    }

    #[test]
    fn spreads_evenly() {
        let nodes = [1, 2, 3];
        let mut counts = [0; 4];
        for s in 0..256 {
            counts[owner(s, &nodes).unwrap() as usize] += 1;
        }
        assert!(counts[1..].iter().all(|c| (50..=120).contains(c)), "{counts:?}");
    }

    proptest! {
        #[test]
        fn a_join_moves_only_shards_to_the_newcomer(n in 1usize..7, newcomer in 100u64..200) {
            let before: Vec<NodeId> = (1..=n as u64).collect();
            let mut after = before.clone();
            after.push(newcomer);
            let current: Vec<Option<NodeId>> = (0..256).map(|s| owner(s, &before)).collect();
            for (_, to) in moves(&current, &after) {
                prop_assert_eq!(to, newcomer);
            }
        }

        #[test]
        fn a_departure_moves_only_the_departed_nodes_shards(n in 2usize..7, gone_idx in 0usize..6) {
            let before: Vec<NodeId> = (1..=n as u64).collect();
            let gone = before[gone_idx % n];
            let after: Vec<NodeId> = before.iter().copied().filter(|x| *x != gone).collect();
            let current: Vec<Option<NodeId>> = (0..256).map(|s| owner(s, &before)).collect();
            for (shard, _) in moves(&current, &after) {
                prop_assert_eq!(current[shard as usize], Some(gone));
            }
        }
    }
}
