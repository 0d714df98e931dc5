//! The leader's loops: work only the leader does, each proposing commands
//! that every replica applies. Placement keeps the shard map in line with
//! the nodes that may own shards (`placement.rs`), the rollout controller
//! steps, promotes and rolls back rollouts (`rollouts.rs`), retention prunes
//! the replicated history (`retention.rs`), and the drivers run auctions
//! and negotiations (`auctions.rs`, `negotiations.rs`).
//!
//! They share one driver, [`drive`]: a round each period (or sooner when
//! woken), skipped on a node that does not lead. A leader that changes
//! mid-round leaves nothing half done: every decision is a committed
//! command, and the next leader's loop reads the same state.

mod auctions;
mod negotiations;
mod placement;
mod retention;
mod rollouts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::{Ledger, StateEvent};

pub use auctions::AuctionDriver;
pub use negotiations::NegotiationDriver;
pub use placement::{Placement, PlacementError};
pub use retention::{Retention, RetentionLoop};
pub use rollouts::{judge, RolloutController};

/// One kind of leader-only work.
pub trait LeaderLoop: Send + Sync + 'static {
    /// Names the loop in the log.
    const NAME: &'static str;

    /// Time between rounds.
    fn period(&self) -> Duration;

    /// How long the first round waits (a node that just became leader need
    /// not act at once).
    fn first_round_after(&self) -> Duration {
        Duration::ZERO
    }

    /// What wakes the loop before its period is up, if anything.
    fn woken_by(&self) -> Option<Arc<Notify>> {
        None
    }

    /// One round, run only while this node leads.
    fn round(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A wake-up that fires whenever a committed change `matters` (the loop
/// still runs its rounds on its period, for changes it missed).
pub fn wake_on(ledger: &Ledger, shutdown: &crate::shutdown::Shutdown, matters: fn(&StateEvent) -> bool) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    let (mut events, notify) = (ledger.subscribe(), wake.clone());
    shutdown.spawn_until_stopped(async move {
        loop {
            match events.recv().await {
                Ok(e) if matters(&e) => notify.notify_one(),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    wake
}

/// Whether a committed change concerns a driven protocol: one started or
/// moved on, or an answer to one of its calls (ids `{id}.rR` and
/// `{id}.rR.K`). Ordinary traffic never wakes the drivers.
pub fn protocol_moved(e: &StateEvent) -> bool {
    match e {
        StateEvent::ProtocolChanged { .. } => true,
        StateEvent::ReplyRecorded { request_id, .. } => is_protocol_call(request_id),
        _ => false,
    }
}

/// A protocol's call ids: `{id}.rR` and `{id}.rR.K`.
fn is_protocol_call(request_id: &str) -> bool {
    let round = |s: Option<&str>| s.and_then(|s| s.strip_prefix('r')).is_some_and(is_number);
    let mut parts = request_id.rsplit('.');
    let (last, before) = (parts.next(), parts.next());
    round(last) || (last.is_some_and(is_number) && round(before))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Runs `job`'s rounds on this node while it leads, until `stop`.
pub async fn drive<L: LeaderLoop>(job: L, ledger: Ledger, stop: CancellationToken) {
    let start = tokio::time::Instant::now() + job.first_round_after();
    let mut tick = tokio::time::interval_at(start, job.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wake = job.woken_by().unwrap_or_else(|| Arc::new(Notify::new()));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = wake.notified() => {}
        }
        if !ledger.is_leader() {
            continue;
        }
        if let Err(e) = job.round().await {
            tracing::warn!(job = L::NAME, error = format!("{e:#}"), "leader round failed; the next one retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_protocol_answers_wake_the_drivers() {
        assert!(is_protocol_call("auction-1.r0.3"));
        assert!(is_protocol_call("negotiation-7.r12"));
        assert!(protocol_moved(&StateEvent::ProtocolChanged { id: "eng-1".into() }));
        for plain in ["0190f0c2-8f5e-7c3a-b2a1-1f2e3d4c5b6a", "order.42", "x.rabbit", "a.r", "a.r1x.2"] {
            assert!(!is_protocol_call(plain), "{plain}");
        }
        assert!(!protocol_moved(&StateEvent::ConversationChanged { id: "auction-1".into() }));
    }
}
