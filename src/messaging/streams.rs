//! Live token streams of answers being generated on this node.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Token(String),
    /// Generation finished (the reply is being committed).
    Done,
}

#[derive(Default)]
pub struct TokenHub {
    streams: Mutex<HashMap<String, broadcast::Sender<StreamEvent>>>,
}

impl TokenHub {
    fn sender(&self, id: &str) -> broadcast::Sender<StreamEvent> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_insert_with(|| broadcast::channel(4096).0)
            .clone()
    }

    /// Listen to a message's tokens (works before generation starts).
    pub fn subscribe(&self, id: &str) -> broadcast::Receiver<StreamEvent> {
        self.sender(id).subscribe()
    }

    pub fn publish(&self, id: &str, token: String) {
        let _ = self.sender(id).send(StreamEvent::Token(token));
    }

    pub fn finish(&self, id: &str) {
        if let Some(tx) = self.streams.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            let _ = tx.send(StreamEvent::Done);
        }
    }
}
