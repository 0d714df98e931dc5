//! The in-memory routing step: agent name → that agent's bounded mailbox.

use parking_lot::RwLock;
use std::collections::HashMap;

use tokio::sync::mpsc;

/// Why a delivery did not happen; neither loses the message, which stays
/// accepted in the replica until the sweep delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// No such agent runs on this node.
    NotHere,
    /// Its mailbox is full (backpressure).
    Full,
}

/// A message handed to its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    /// Offered again by the sweep (after a crash, a failure or a full
    /// mailbox), not fresh from its commit: counted before it runs.
    pub retry: bool,
}

#[derive(Default)]
pub struct Mailboxes {
    by_key: RwLock<HashMap<String, mpsc::Sender<Delivery>>>,
}

impl Mailboxes {
    pub fn insert(&self, key: String, mailbox: mpsc::Sender<Delivery>) {
        self.by_key.write().insert(key, mailbox);
    }

    pub fn remove(&self, key: &str) {
        self.by_key.write().remove(key);
    }

    /// Hands a message to `receiver`'s mailbox without waiting.
    pub fn deliver(&self, receiver: &str, delivery: Delivery) -> Result<(), Undelivered> {
        let map = self.by_key.read();
        // Names are stored case-folded; most callers already pass that form.
        let mailbox = match map.get(receiver) {
            Some(m) => m,
            None => map.get(&receiver.to_ascii_lowercase()).ok_or(Undelivered::NotHere)?,
        };
        mailbox.try_send(delivery).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Undelivered::Full,
            mpsc::error::TrySendError::Closed(_) => Undelivered::NotHere,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_by_case_folded_name_and_reports_backpressure() {
        let boxes = Mailboxes::default();
        let (tx, mut rx) = mpsc::channel(1);
        boxes.insert("dataanalyzer".into(), tx);
        let fresh = |id: &str| Delivery { id: id.into(), retry: false };
        assert_eq!(boxes.deliver("DataAnalyzer", fresh("m1")), Ok(()));
        assert_eq!(boxes.deliver("dataanalyzer", fresh("m2")), Err(Undelivered::Full));
        assert_eq!(rx.try_recv().unwrap(), fresh("m1"));
        assert_eq!(boxes.deliver("nobody", fresh("m3")), Err(Undelivered::NotHere));
        boxes.remove("dataanalyzer");
        assert_eq!(boxes.deliver("dataanalyzer", fresh("m4")), Err(Undelivered::NotHere));
    }
}
