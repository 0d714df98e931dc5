//! Dispatches committed commands to their `apply` and publishes what they
//! changed once the batch is durable.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use caxton_cluster::Application;
use rusqlite::Transaction;
use tokio::sync::broadcast;

use super::command::Command;
use super::envelope::{ApplyCtx, Response};
use super::events::StateEvent;

/// Caxton's replicated state machine. Effects of `apply` are staged and
/// published only once the batch is durable, so a listener never sees a
/// change that a crash could take back.
pub struct CaxtonState {
    staged: Mutex<Vec<StateEvent>>,
    events: broadcast::Sender<StateEvent>,
    /// Bumped, before anyone is told of the commit, whenever the keys
    /// change: authentication caches compare it on every request, so a
    /// revoked key stops working the moment the revocation is applied.
    keys_generation: AtomicU64,
    /// The same for the deployed tool servers (the tool catalog's cache).
    tool_servers_generation: AtomicU64,
}

impl Default for CaxtonState {
    fn default() -> Self {
        Self::new()
    }
}

impl CaxtonState {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(65_536);
        Self {
            staged: Mutex::new(Vec::new()),
            events,
            keys_generation: AtomicU64::new(0),
            tool_servers_generation: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.events.subscribe()
    }

    /// Changes whenever the stored keys may have changed.
    pub fn keys_generation(&self) -> u64 {
        self.keys_generation.load(Ordering::Acquire)
    }

    /// Changes whenever the deployed tool servers may have changed.
    pub fn tool_servers_generation(&self) -> u64 {
        self.tool_servers_generation.load(Ordering::Acquire)
    }

    fn generations(&self) -> [(StateEvent, &AtomicU64); 2] {
        [
            (StateEvent::KeysChanged, &self.keys_generation),
            (StateEvent::ToolServersChanged, &self.tool_servers_generation),
        ]
    }
}

impl Application for CaxtonState {
    type Command = Command;
    type Response = Response;

    fn migrate(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        super::schema::migrate(conn)
    }

    fn apply(&self, tx: &Transaction<'_>, index: u64, command: Command) -> rusqlite::Result<Response> {
        // Effects are staged only for a command that applied: one whose apply
        // failed is rolled back by the state machine, and announces nothing.
        let mut own = Vec::new();
        let response = command.apply(&mut ApplyCtx { tx, index, stage: &mut own })?;
        self.staged.lock().extend(own);
        Ok(response)
    }

    fn committed(&self) {
        let events = std::mem::take(&mut *self.staged.lock());
        for (event, generation) in self.generations() {
            if events.contains(&event) {
                generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        for e in events {
            // No subscriber is fine: nothing is running yet.
            let _ = self.events.send(e);
        }
    }

    fn rolled_back(&self) {
        self.staged.lock().clear();
    }

    fn restored(&self) {
        for (_, generation) in self.generations() {
            generation.fetch_add(1, Ordering::AcqRel);
        }
        let _ = self.events.send(StateEvent::Restored);
    }
}
