//! The rollout controller: on the leader only, it reads each active
//! rollout and the replicated outcomes of its revisions, and proposes the
//! next step, a check, a promotion or a rollback. Every decision is a
//! committed [`UpdateRollout`] naming the step it judged, so a leader that
//! changes mid-rollout leaves nothing half done: the new leader's
//! controller reads the same state and carries on from there.

use std::sync::Arc;
use std::time::Duration;

use crate::config::rollout::{Analysis, Strategy};
use crate::config::AgentName;
use crate::messaging::{MessageService, MessageStatus, SendRequest, Target};
use crate::state::{Check, Figures, Ledger, RolloutAction, RolloutRecord, RolloutState, RolloutUpdate, UpdateRollout};
use crate::time::now_ms;

/// How often the leader looks at active rollouts.
const TICK: Duration = Duration::from_millis(500);
/// Latencies below this are never judged slow: a ratio of two tiny
/// numbers says nothing.
const LATENCY_FLOOR_MS: u64 = 100;

pub struct RolloutController {
    ledger: Ledger,
    messages: Arc<MessageService>,
}

/// Judges a candidate's figures against the stable revision's; the reason
/// when it fails.
pub fn judge(a: &Analysis, stable: &Figures, candidate: &Figures) -> Result<(), String> {
    let pct = |r: f64| r * 100.0;
    if candidate.error_rate() - stable.error_rate() > a.max_error_rate {
        return Err(format!(
            "error rate {:.1} % against {:.1} % for the stable revision (allowed: {:.1} points more)",
            pct(candidate.error_rate()),
            pct(stable.error_rate()),
            pct(a.max_error_rate)
        ));
    }
    if candidate.timeout_rate() - stable.timeout_rate() > a.max_timeout_rate {
        return Err(format!(
            "timeout rate {:.1} % against {:.1} % for the stable revision (allowed: {:.1} points more)",
            pct(candidate.timeout_rate()),
            pct(stable.timeout_rate()),
            pct(a.max_timeout_rate)
        ));
    }
    if let (Some(ratio), Some(c), Some(s)) = (a.max_p95_ratio, candidate.p95_ms, stable.p95_ms) {
        let judged = stable.requests >= u64::from(a.min_requests) && c > LATENCY_FLOOR_MS;
        if judged && c as f64 > ratio * s.max(LATENCY_FLOOR_MS) as f64 {
            return Err(format!("p95 latency {c} ms against {s} ms for the stable revision (allowed: {ratio}x)"));
        }
    }
    Ok(())
}

impl super::LeaderLoop for RolloutController {
    const NAME: &'static str = "rollouts";

    fn period(&self) -> Duration {
        TICK
    }

    /// Each active rollout is driven on its own: one failing step does not
    /// hold the others back.
    async fn round(&self) -> anyhow::Result<()> {
        for r in self.ledger.queries.active_rollouts().await? {
            if let Err(e) = self.drive(&r).await {
                tracing::warn!(agent = %r.agent, error = %e, "rollout step not taken; retrying");
            }
        }
        Ok(())
    }
}

impl RolloutController {
    pub fn new(ledger: Ledger, messages: Arc<MessageService>) -> Self {
        Self { ledger, messages }
    }

    async fn drive(&self, r: &RolloutRecord) -> anyhow::Result<()> {
        if r.state != RolloutState::Progressing {
            return Ok(());
        }
        match r.spec.strategy {
            Strategy::Canary => self.canary(r).await,
            Strategy::BlueGreen => self.blue_green(r).await,
            // A shadow runs until an operator promotes or aborts it; a
            // direct deploy never starts a rollout.
            Strategy::Shadow | Strategy::Direct => Ok(()),
        }
    }

    async fn propose(&self, r: &RolloutRecord, action: RolloutAction) -> anyhow::Result<()> {
        let agent = AgentName::parse(&r.agent).map_err(anyhow::Error::msg)?;
        let command =
            UpdateRollout { agent, candidate: r.candidate, expect_step: Some(r.step), action, at_ms: now_ms() };
        if let RolloutUpdate::Updated(after) = self.ledger.store.propose(command).await? {
            if after.state != r.state || after.step != r.step {
                tracing::info!(
                    agent = %r.agent, candidate = r.candidate, state = ?after.state, step = after.step,
                    weight = after.weight, reason = after.reason.as_deref().unwrap_or(""), "rollout moved"
                );
            }
        }
        Ok(())
    }

    async fn canary(&self, r: &RolloutRecord) -> anyhow::Result<()> {
        let Some(step) = r.spec.steps.get(r.step as usize) else { return Ok(()) };
        let a = &r.spec.analysis;
        let now = now_ms();
        let (stable, candidate) = self.ledger.queries.step_figures(r).await?;
        let enough = candidate.requests >= u64::from(a.min_requests);
        let verdict = judge(a, &stable, &candidate);
        let last = r.last_check.as_ref().map(|c| c.at_ms).unwrap_or(r.step_started_at_ms).max(r.step_started_at_ms);
        if enough && now - last >= a.interval_ms as i64 {
            let note = match &verdict {
                Ok(()) => "within thresholds".to_owned(),
                Err(why) => why.clone(),
            };
            let check = Check { at_ms: now, passed: verdict.is_ok(), stable, candidate, note };
            self.propose(r, RolloutAction::Check(check)).await?;
            if verdict.is_err() {
                return Ok(());
            }
        }
        match step.pause_ms {
            None => {
                let reason = format!("manual step {} at {} %: resume or promote to go on", r.step + 1, step.weight);
                self.propose(r, RolloutAction::Pause { reason }).await
            }
            Some(pause) if enough && verdict.is_ok() && now - r.step_started_at_ms >= pause as i64 => {
                self.propose(r, RolloutAction::Advance).await
            }
            Some(_) => Ok(()),
        }
    }

    /// Probes the new revision directly (`NAME@N`); when every probe is
    /// answered and the warm-up time is over, all traffic switches in one
    /// committed step. A failed probe rolls back.
    async fn blue_green(&self, r: &RolloutRecord) -> anyhow::Result<()> {
        let mut answered = 0;
        for i in 0..r.spec.warmup_probes {
            // Deterministic ids: a new leader re-sending a probe is a no-op.
            let id = format!("rollout-{}-{}-r{}-probe-{i}", r.agent.to_ascii_lowercase(), r.started_at_ms, r.candidate);
            match self.ledger.queries.message(&id).await? {
                None => {
                    let mut req = SendRequest::request(
                        Target::Agent(format!("{}@{}", r.agent, r.candidate)),
                        r.spec.probe.clone(),
                    );
                    req.id = Some(id);
                    req.sender = "rollout".into();
                    self.messages.send(req, None).await?;
                }
                Some(m) if m.status == MessageStatus::Answered => answered += 1,
                Some(m) if m.status == MessageStatus::Failed => {
                    let reason = format!("warm-up probe {} of {} failed", i + 1, r.spec.warmup_probes);
                    return self.propose(r, RolloutAction::RollBack { reason }).await;
                }
                Some(_) => {}
            }
        }
        let warm = now_ms() - r.started_at_ms >= r.spec.warmup_ms as i64;
        if answered == r.spec.warmup_probes && warm {
            let reason = format!("warm-up passed: {answered} probes answered");
            return self.propose(r, RolloutAction::Promote { reason }).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(requests: u64, errors: u64, timeouts: u64, p95_ms: u64) -> Figures {
        Figures { requests, errors, timeouts, p95_ms: Some(p95_ms) }
    }

    #[test]
    fn a_canary_is_judged_against_the_stable_revision() {
        let a = Analysis::default();
        let stable = figures(100, 2, 0, 400);
        assert!(judge(&a, &stable, &figures(20, 1, 0, 500)).is_ok(), "5 % errors is within 2 % + 5 points");
        let why = judge(&a, &stable, &figures(20, 10, 0, 500)).unwrap_err();
        assert!(why.contains("error rate 50.0 %"), "{why}");
        assert!(judge(&a, &stable, &figures(20, 0, 5, 500)).unwrap_err().contains("timeout rate 25.0 %"));
        assert!(judge(&a, &stable, &figures(20, 0, 0, 900)).unwrap_err().contains("p95 latency 900 ms"));
        // Tiny latencies are not judged, however large their ratio.
        assert!(judge(&a, &figures(100, 0, 0, 1), &figures(20, 0, 0, 60)).is_ok());
    }
}
