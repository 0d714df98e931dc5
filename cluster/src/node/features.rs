//! What each voter last advertised it can apply, remembered past its
//! silence. Gossip forgets a node about a minute after it goes quiet; a
//! command gated on a feature must not then be refused (a key revocation
//! while a voter is down is exactly when one is needed). A voter that was
//! seen advertising a feature under its current incarnation keeps it until
//! it advertises otherwise; the memory is kept in the data directory so a
//! restarted proposer does not start blind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::types::NodeId;

pub(crate) struct PeerFeatures {
    path: PathBuf,
    /// (node, incarnation) → the features it advertised last.
    seen: Mutex<BTreeMap<(NodeId, String), Vec<String>>>,
}

impl PeerFeatures {
    pub fn open(path: PathBuf) -> Self {
        let seen: Vec<((NodeId, String), Vec<String>)> =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { path, seen: Mutex::new(seen.into_iter().collect()) }
    }

    /// Records what gossip shows now, and answers what each of `voters`
    /// (node, incarnation) advertises: now, or when it was last heard.
    pub fn remember(
        &self,
        advertised: impl IntoIterator<Item = ((NodeId, String), Vec<String>)>,
        voters: &[(NodeId, String)],
    ) -> BTreeMap<NodeId, Option<Vec<String>>> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for (member, features) in advertised {
            if seen.get(&member) != Some(&features) {
                seen.insert(member, features);
                changed = true;
            }
        }
        // Members that left (or came back as another incarnation) are forgotten.
        let before = seen.len();
        seen.retain(|member, _| voters.contains(member));
        changed |= seen.len() != before;
        if changed {
            self.save(&seen);
        }
        voters.iter().map(|(id, inc)| (*id, seen.get(&(*id, inc.clone())).cloned())).collect()
    }

    fn save(&self, seen: &BTreeMap<(NodeId, String), Vec<String>>) {
        let entries: Vec<(&(NodeId, String), &Vec<String>)> = seen.iter().collect();
        let Ok(bytes) = serde_json::to_vec(&entries) else { return };
        let tmp = self.path.with_extension("tmp");
        // Best effort: losing it only means waiting for gossip again.
        if std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &self.path)).is_err() {
            tracing::debug!(path = %self.path.display(), "could not save the voters' features");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_voter_keeps_what_it_last_advertised_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer-features.json");
        let voters = vec![(2, "a".to_owned()), (3, "b".to_owned())];
        let f = PeerFeatures::open(path.clone());
        let now = f.remember([((2, "a".to_owned()), vec!["RevokeKey".to_owned()])], &voters);
        assert_eq!(now[&2], Some(vec!["RevokeKey".to_owned()]));
        assert_eq!(now[&3], None, "never heard of");
        // Node 2 goes quiet; a new process reads what it last said.
        let f = PeerFeatures::open(path);
        assert_eq!(f.remember([], &voters)[&2], Some(vec!["RevokeKey".to_owned()]));
        // Wiped and rejoined under a new incarnation: nothing is assumed.
        assert_eq!(f.remember([], &[(2, "c".to_owned())])[&2], None);
    }
}
