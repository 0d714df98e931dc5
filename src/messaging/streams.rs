//! Tokens of answers being generated on this node, with a replay buffer so a
//! listener who arrives after generation started still reads every token
//! from the first one.
//!
//! An entry lives while someone holds it: the generating agent (a
//! [`TokenProducer`]) or a listener (a [`TokenSubscription`]). It is dropped
//! with the last holder, so an answer committed with nobody listening leaves
//! nothing behind, and a listener who leaves before generation starts takes
//! its empty entry with it.

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

/// Most text kept for late listeners per answer. Past it the buffer stops
/// growing and listeners who reach its end wait for the committed reply,
/// which carries the whole text anyway.
const MAX_REPLAY_BYTES: usize = 1 << 20;

struct Entry {
    tokens: Vec<String>,
    bytes: usize,
    /// The buffer hit [`MAX_REPLAY_BYTES`]; later tokens were not kept.
    truncated: bool,
    /// Generation ended (the reply is being committed).
    finished: bool,
    producing: bool,
    listeners: usize,
    /// Bumped on every change; listeners wait on it.
    changed: watch::Sender<()>,
}

impl Entry {
    fn new() -> Self {
        Self {
            tokens: Vec::new(),
            bytes: 0,
            truncated: false,
            finished: false,
            producing: false,
            listeners: 0,
            changed: watch::channel(()).0,
        }
    }

    fn held(&self) -> bool {
        self.producing || self.listeners > 0
    }
}

#[derive(Default)]
pub struct TokenHub {
    entries: Mutex<HashMap<String, Entry>>,
}

impl TokenHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock()
    }

    /// Starts (or restarts, for a request processed again) the token stream
    /// of `id`'s answer. Dropping the producer ends it.
    pub fn producer(self: &Arc<Self>, id: &str) -> TokenProducer {
        let mut map = self.lock();
        let entry = map.entry(id.to_owned()).or_insert_with(Entry::new);
        if entry.finished {
            // A second attempt: its listeners start again from its first token.
            *entry = Entry { listeners: entry.listeners, changed: entry.changed.clone(), ..Entry::new() };
        }
        entry.producing = true;
        entry.changed.send_replace(());
        TokenProducer { hub: self.clone(), id: id.to_owned() }
    }

    /// Listens to `id`'s tokens: those generated so far, then the live tail.
    /// The caller checks that the message exists first; this allocates.
    pub fn subscribe(self: &Arc<Self>, id: &str) -> TokenSubscription {
        let mut map = self.lock();
        let entry = map.entry(id.to_owned()).or_insert_with(Entry::new);
        entry.listeners += 1;
        let changed = entry.changed.subscribe();
        TokenSubscription { hub: self.clone(), id: id.to_owned(), next: 0, changed }
    }

    /// Answers with entries in memory (what the tests check is freed).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn release(&self, id: &str, f: impl FnOnce(&mut Entry)) {
        let mut map = self.lock();
        if let Some(entry) = map.get_mut(id) {
            f(entry);
            entry.changed.send_replace(());
            if !entry.held() {
                map.remove(id);
            }
        }
    }
}

/// The generating side of one answer's tokens.
pub struct TokenProducer {
    hub: Arc<TokenHub>,
    id: String,
}

impl TokenProducer {
    pub fn publish(&self, token: String) {
        let mut map = self.hub.lock();
        let Some(entry) = map.get_mut(&self.id) else { return };
        if entry.truncated {
            return;
        }
        if entry.bytes + token.len() > MAX_REPLAY_BYTES {
            entry.truncated = true;
        } else {
            entry.bytes += token.len();
            entry.tokens.push(token);
        }
        entry.changed.send_replace(());
    }
}

impl Drop for TokenProducer {
    fn drop(&mut self) {
        self.hub.release(&self.id, |e| {
            e.producing = false;
            e.finished = true;
        });
    }
}

/// One listener's position in one answer's tokens.
pub struct TokenSubscription {
    hub: Arc<TokenHub>,
    id: String,
    next: usize,
    changed: watch::Receiver<()>,
}

enum Step {
    Token(String),
    End,
    Wait,
}

impl TokenSubscription {
    fn step(&mut self) -> Step {
        let map = self.hub.lock();
        // Marked seen under the hub's lock, so a token published after this
        // check wakes the wait below: no token slips between the two.
        self.changed.borrow_and_update();
        let Some(entry) = map.get(&self.id) else { return Step::End };
        if let Some(token) = entry.tokens.get(self.next) {
            self.next += 1;
            return Step::Token(token.clone());
        }
        if entry.finished || entry.truncated {
            Step::End
        } else {
            Step::Wait
        }
    }

    /// The next token, waiting for it if generation is running (or has not
    /// started yet). `None` once generation ended and every token was read.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            match self.step() {
                Step::Token(t) => return Some(t),
                Step::End => return None,
                Step::Wait => {
                    if self.changed.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// The next token already buffered, without waiting.
    pub fn try_next(&mut self) -> Option<String> {
        match self.step() {
            Step::Token(t) => Some(t),
            Step::End | Step::Wait => None,
        }
    }
}

impl Drop for TokenSubscription {
    fn drop(&mut self) {
        self.hub.release(&self.id, |e| e.listeners -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(sub: &mut TokenSubscription) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(t) = sub.next().await {
            out.push(t);
        }
        out
    }

    #[tokio::test]
    async fn a_late_listener_reads_from_the_first_token() {
        let hub = Arc::new(TokenHub::default());
        let producer = hub.producer("m");
        producer.publish("first".into());
        producer.publish(" line".into());
        let mut late = hub.subscribe("m");
        producer.publish("!".into());
        drop(producer);
        assert_eq!(drain(&mut late).await, ["first", " line", "!"]);
    }

    #[tokio::test]
    async fn an_early_listener_waits_for_generation_to_start() {
        let hub = Arc::new(TokenHub::default());
        let mut early = hub.subscribe("m");
        let reader = tokio::spawn(async move { drain(&mut early).await });
        tokio::task::yield_now().await;
        let producer = hub.producer("m");
        producer.publish("a".into());
        producer.publish("b".into());
        drop(producer);
        assert_eq!(reader.await.unwrap(), ["a", "b"]);
    }

    #[test]
    fn entries_go_with_their_last_holder() {
        let hub = Arc::new(TokenHub::default());
        drop(hub.producer("answered-alone"));
        assert!(hub.is_empty(), "an answer nobody listened to leaves nothing");
        let sub = hub.subscribe("never-started");
        drop(sub);
        assert!(hub.is_empty(), "a listener who leaves takes its empty entry");
        let producer = hub.producer("both");
        let sub = hub.subscribe("both");
        drop(producer);
        assert_eq!(hub.len(), 1, "kept while someone still reads");
        drop(sub);
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn past_the_replay_limit_listeners_stop_and_wait_for_the_reply() {
        let hub = Arc::new(TokenHub::default());
        let producer = hub.producer("big");
        let chunk = "x".repeat(MAX_REPLAY_BYTES / 2);
        producer.publish(chunk.clone());
        producer.publish(chunk.clone());
        producer.publish("tail".into());
        let mut sub = hub.subscribe("big");
        assert_eq!(drain(&mut sub).await, [chunk.clone(), chunk], "what fit is replayed, then the end");
        drop(producer);
    }
}
