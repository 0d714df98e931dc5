//! The `[rollout]` table of an agent file: how a new revision replaces the
//! one serving traffic. Validated here like the rest of the file, so a
//! rollout that starts is one that can finish.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::span::Errors;

/// How a new revision takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Replace at once (the default).
    Direct,
    /// Warm the new revision up with probes, then switch all traffic in one
    /// committed step.
    BlueGreen,
    /// Shift traffic in weighted steps, judging each against the stable
    /// revision; roll back on failed analysis.
    Canary,
    /// Send a copy of some requests to the new revision, side effects
    /// suppressed, and compare; clients only ever get the stable replies.
    Shadow,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(Self::Direct),
            "blue-green" | "bluegreen" => Ok(Self::BlueGreen),
            "canary" => Ok(Self::Canary),
            "shadow" => Ok(Self::Shadow),
            other => Err(format!("`{other}` is not a strategy; use direct, blue-green, canary or shadow")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::BlueGreen => "blue-green",
            Self::Canary => "canary",
            Self::Shadow => "shadow",
        }
    }
}

/// One canary step: this share of new conversations goes to the new
/// revision for at least `pause_ms` (absent: until someone resumes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    pub weight: u8,
    pub pause_ms: Option<u64>,
}

/// What a canary's figures must satisfy, compared with the stable
/// revision's over the same step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Analysis {
    /// Replies from the new revision in a step before it is judged.
    pub min_requests: u32,
    /// Largest error rate above the stable revision's (0.05 = 5 points).
    pub max_error_rate: f64,
    /// Largest timeout rate above the stable revision's.
    pub max_timeout_rate: f64,
    /// Largest p95 latency as a multiple of the stable revision's; judged
    /// only when the stable revision has `min_requests` replies too.
    pub max_p95_ratio: Option<f64>,
    /// Failed checks that roll the rollout back.
    pub failure_limit: u32,
    /// Time between checks.
    pub interval_ms: u64,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            min_requests: 20,
            max_error_rate: 0.05,
            max_timeout_rate: 0.05,
            max_p95_ratio: Some(2.0),
            failure_limit: 2,
            interval_ms: 2_000,
        }
    }
}

/// A validated `[rollout]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutSpec {
    pub strategy: Strategy,
    /// Canary steps, in order; the last is followed by promotion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    pub analysis: Analysis,
    /// Blue-green: probe requests the new revision must answer before the switch.
    pub warmup_probes: u32,
    /// Blue-green: least time between the start and the switch.
    pub warmup_ms: u64,
    /// Blue-green: the probe requests' content.
    pub probe: String,
    /// Shadow: share (1-100) of requests also sent to the new revision.
    #[serde(default)]
    pub shadow_percent: u8,
    /// Shadow: tools the new revision may really call (free of side
    /// effects) beyond `memory_search` and MCP tools annotated
    /// `readOnlyHint`; every other call is answered without running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side_effect_free: Vec<String>,
}

impl RolloutSpec {
    /// The defaults for `strategy` when a deploy names only the strategy.
    pub fn of(strategy: Strategy) -> Self {
        let steps = match strategy {
            Strategy::Canary => {
                vec![Step { weight: 10, pause_ms: Some(30_000) }, Step { weight: 50, pause_ms: Some(30_000) }]
            }
            _ => Vec::new(),
        };
        Self {
            strategy,
            steps,
            analysis: Analysis::default(),
            warmup_probes: 3,
            warmup_ms: 0,
            probe: "ping".into(),
            shadow_percent: if strategy == Strategy::Shadow { 20 } else { 0 },
            side_effect_free: Vec::new(),
        }
    }

    pub fn is_direct(&self) -> bool {
        self.strategy == Strategy::Direct
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    strategy: Option<Spanned<String>>,
    steps: Option<Spanned<Vec<RawStep>>>,
    analysis: Option<RawAnalysis>,
    warmup_probes: Option<Spanned<i64>>,
    warmup: Option<Spanned<String>>,
    probe: Option<Spanned<String>>,
    percent: Option<Spanned<i64>>,
    side_effect_free: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    weight: Spanned<i64>,
    pause: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    min_requests: Option<Spanned<i64>>,
    max_error_rate: Option<Spanned<f64>>,
    max_timeout_rate: Option<Spanned<f64>>,
    max_p95_ratio: Option<Spanned<f64>>,
    failure_limit: Option<Spanned<i64>>,
    interval: Option<Spanned<String>>,
}

fn duration_ms(v: &Spanned<String>, field: &str, errs: &mut Errors<'_>) -> Option<u64> {
    match super::duration::parse(v.get_ref()) {
        Ok(d) if d <= Duration::from_secs(7 * 86_400) => Some(d.as_millis() as u64),
        Ok(_) => {
            errs.at(v.span(), field, "must be at most 7d");
            None
        }
        Err(why) => {
            errs.at(v.span(), field, why);
            None
        }
    }
}

fn in_range(v: &Spanned<i64>, field: &str, range: std::ops::RangeInclusive<i64>, errs: &mut Errors<'_>) -> Option<i64> {
    let n = *v.get_ref();
    if range.contains(&n) {
        Some(n)
    } else {
        errs.at(v.span(), field, format!("{n} is outside {}..={}", range.start(), range.end()));
        None
    }
}

fn rate(v: &Spanned<f64>, field: &str, errs: &mut Errors<'_>) -> Option<f64> {
    let n = *v.get_ref();
    if (0.0..=1.0).contains(&n) {
        Some(n)
    } else {
        errs.at(v.span(), field, format!("{n} is not a fraction between 0 and 1"));
        None
    }
}

pub(super) fn validate(raw: RawRollout, errs: &mut Errors<'_>) -> Option<RolloutSpec> {
    let before = errs.list.len();
    let strategy = match &raw.strategy {
        None => Strategy::Canary,
        Some(s) => Strategy::parse(s.get_ref()).unwrap_or_else(|why| {
            errs.at(s.span(), "rollout.strategy", why);
            Strategy::Direct
        }),
    };
    let mut spec = RolloutSpec::of(strategy);
    if let Some(steps) = raw.steps {
        let span = steps.span();
        spec.steps.clear();
        let mut last = 0;
        for (i, s) in steps.into_inner().into_iter().enumerate() {
            let field = format!("rollout.steps[{i}].weight");
            let weight = in_range(&s.weight, &field, 1..=99, errs).unwrap_or(0) as u8;
            if weight != 0 && weight <= last {
                errs.at(s.weight.span(), &field, format!("{weight} must be above the previous step's {last}"));
            }
            last = last.max(weight);
            let pause_ms = match &s.pause {
                None => None,
                Some(p) if p.get_ref() == "manual" => None,
                Some(p) => duration_ms(p, &format!("rollout.steps[{i}].pause"), errs),
            };
            spec.steps.push(Step { weight, pause_ms });
        }
        if spec.steps.is_empty() && strategy == Strategy::Canary {
            errs.at(span, "rollout.steps", "a canary needs at least one step");
        }
    }
    if let Some(a) = raw.analysis {
        let d = &mut spec.analysis;
        if let Some(v) = &a.min_requests {
            d.min_requests = in_range(v, "rollout.analysis.min_requests", 1..=100_000, errs).unwrap_or(1) as u32;
        }
        if let Some(v) = &a.max_error_rate {
            d.max_error_rate = rate(v, "rollout.analysis.max_error_rate", errs).unwrap_or(0.0);
        }
        if let Some(v) = &a.max_timeout_rate {
            d.max_timeout_rate = rate(v, "rollout.analysis.max_timeout_rate", errs).unwrap_or(0.0);
        }
        if let Some(v) = &a.max_p95_ratio {
            if *v.get_ref() < 1.0 {
                errs.at(v.span(), "rollout.analysis.max_p95_ratio", "must be at least 1.0");
            }
            d.max_p95_ratio = Some(*v.get_ref());
        }
        if let Some(v) = &a.failure_limit {
            d.failure_limit = in_range(v, "rollout.analysis.failure_limit", 1..=1000, errs).unwrap_or(1) as u32;
        }
        if let Some(v) = &a.interval {
            d.interval_ms = duration_ms(v, "rollout.analysis.interval", errs).unwrap_or(1000).max(100);
        }
    }
    if let Some(v) = &raw.warmup_probes {
        spec.warmup_probes = in_range(v, "rollout.warmup_probes", 0..=1000, errs).unwrap_or(0) as u32;
    }
    if let Some(v) = &raw.warmup {
        spec.warmup_ms = duration_ms(v, "rollout.warmup", errs).unwrap_or(0);
    }
    if let Some(v) = raw.probe {
        if v.get_ref().trim().is_empty() {
            errs.at(v.span(), "rollout.probe", "must not be empty");
        }
        spec.probe = v.into_inner();
    }
    if let Some(v) = &raw.percent {
        spec.shadow_percent = in_range(v, "rollout.percent", 1..=100, errs).unwrap_or(0) as u8;
    }
    spec.side_effect_free = raw.side_effect_free.unwrap_or_default();
    (errs.list.len() == before).then_some(spec)
}
