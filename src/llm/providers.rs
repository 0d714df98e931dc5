//! The providers declared in `caxton.toml` (`[llm.providers.NAME]`), built
//! once at start and chosen per agent by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::echo::EchoProvider;
use super::local::{LocalModel, LocalSettings};
use super::openai::{OpenAiProvider, OpenAiSettings};
use super::types::{LlmError, LlmProvider};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Local,
    Echo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// openai: the endpoint, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// openai: name of the environment variable holding the API key.
    pub api_key_env: String,
    /// openai: the model name; local: informational.
    pub model: String,
    /// local: GGUF file; relative paths resolve against `models.dir`.
    pub model_path: String,
    /// Per-attempt deadline.
    pub timeout_ms: u64,
    /// openai: retries on 429/5xx/connection errors.
    pub max_retries: u32,
    /// openai: first backoff step (doubles per attempt).
    pub retry_backoff_ms: u64,
    pub temperature: f32,
    pub max_tokens: u32,
    /// local: generations running at once (each on its own thread).
    pub concurrency: u32,
    /// local: prompt budget in tokens; older history is dropped beyond it.
    pub context_tokens: u32,
    /// USD per million prompt tokens, for spend limits (0: unpriced).
    pub input_price_per_mtok: f64,
    /// USD per million completion tokens, for spend limits (0: unpriced).
    pub output_price_per_mtok: f64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            kind: ProviderKind::Local,
            base_url: String::new(),
            api_key_env: String::new(),
            model: String::new(),
            model_path: String::new(),
            timeout_ms: 120_000,
            max_retries: 3,
            retry_backoff_ms: 500,
            temperature: 0.2,
            max_tokens: 256,
            concurrency: 1,
            context_tokens: 2048,
            input_price_per_mtok: 0.0,
            output_price_per_mtok: 0.0,
        }
    }
}

impl ProviderConfig {
    pub fn local_default() -> Self {
        Self {
            model: "SmolLM2-135M-Instruct".into(),
            model_path: "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            ..Self::default()
        }
    }

    pub fn echo() -> Self {
        Self { kind: ProviderKind::Echo, model: "echo".into(), ..Self::default() }
    }

    /// Checks one provider; errors name the key.
    pub fn validate(&self, name: &str) -> Result<(), (String, String, String)> {
        let key = |k: &str| format!("llm.providers.{name}.{k}");
        if self.kind == ProviderKind::Openai {
            if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
                return Err((
                    key("base_url"),
                    self.base_url.clone(),
                    "an openai provider needs an http(s) base_url".into(),
                ));
            }
            if self.model.is_empty() {
                return Err((key("model"), String::new(), "an openai provider needs a model name".into()));
            }
        }
        if self.kind == ProviderKind::Local && self.model_path.is_empty() {
            return Err((key("model_path"), String::new(), "a local provider needs a GGUF model_path".into()));
        }
        if self.timeout_ms < 10 {
            return Err((key("timeout_ms"), self.timeout_ms.to_string(), "must be at least 10".into()));
        }
        for (k, price) in
            [("input_price_per_mtok", self.input_price_per_mtok), ("output_price_per_mtok", self.output_price_per_mtok)]
        {
            if !(price.is_finite() && price >= 0.0) {
                return Err((
                    key(k),
                    price.to_string(),
                    "must be a price of 0 or more (USD per million tokens)".into(),
                ));
            }
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err((key("temperature"), self.temperature.to_string(), "must be within 0..2".into()));
        }
        Ok(())
    }
}

/// Every configured provider, by name. Clones share one set, which a
/// config reload replaces for all of them at once (`reload`).
#[derive(Clone)]
pub struct Providers {
    current: Arc<parking_lot::RwLock<Arc<ProviderSet>>>,
}

struct ProviderSet {
    by_name: BTreeMap<String, (ProviderConfig, Arc<dyn LlmProvider>)>,
    default: String,
}

fn provider(name: &str, c: &ProviderConfig, models_dir: &Path) -> Arc<dyn LlmProvider> {
    match c.kind {
        ProviderKind::Echo => Arc::new(EchoProvider::new(name)),
        ProviderKind::Openai => Arc::new(OpenAiProvider::new(
            name,
            OpenAiSettings {
                base_url: c.base_url.clone(),
                api_key: (!c.api_key_env.is_empty()).then(|| std::env::var(&c.api_key_env).ok()).flatten(),
                model: c.model.clone(),
                timeout: Duration::from_millis(c.timeout_ms),
                max_retries: c.max_retries,
                backoff: Duration::from_millis(c.retry_backoff_ms),
            },
        )),
        ProviderKind::Local => Arc::new(LocalModel::new(
            name,
            LocalSettings {
                model_path: models_dir.join(&c.model_path),
                temperature: c.temperature,
                max_tokens: c.max_tokens,
                concurrency: c.concurrency as usize,
                context_tokens: c.context_tokens as usize,
                seed: 299792458,
            },
        )),
    }
}

impl Providers {
    pub fn build(configs: &BTreeMap<String, ProviderConfig>, default: &str, models_dir: &Path) -> Self {
        let set = ProviderSet::build(configs, default, models_dir, None);
        Self { current: Arc::new(parking_lot::RwLock::new(Arc::new(set))) }
    }

    /// Replaces the set every clone sees. A provider whose settings did not
    /// change is kept as it is (a loaded local model stays loaded); calls
    /// already running finish on the provider they started with.
    pub fn reload(&self, configs: &BTreeMap<String, ProviderConfig>, default: &str, models_dir: &Path) {
        let set = ProviderSet::build(configs, default, models_dir, Some(&self.set()));
        *self.current.write() = Arc::new(set);
    }

    fn set(&self) -> Arc<ProviderSet> {
        self.current.read().clone()
    }

    /// The provider an agent asked for, or the server default.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<dyn LlmProvider>, LlmError> {
        let set = self.set();
        let name = name.unwrap_or(&set.default);
        set.by_name.get(name).map(|(_, p)| p.clone()).ok_or_else(|| LlmError::UnknownProvider(name.to_owned()))
    }

    /// USD per million (prompt, completion) tokens of provider `name` (or
    /// the default); unpriced or unknown: zero.
    pub fn prices(&self, name: Option<&str>) -> (f64, f64) {
        let set = self.set();
        let name = name.unwrap_or(&set.default);
        set.by_name.get(name).map_or((0.0, 0.0), |(c, _)| (c.input_price_per_mtok, c.output_price_per_mtok))
    }

    pub fn names(&self) -> Vec<String> {
        self.set().by_name.keys().cloned().collect()
    }

    pub fn default_name(&self) -> String {
        self.set().default.clone()
    }
}

impl ProviderSet {
    fn build(
        configs: &BTreeMap<String, ProviderConfig>,
        default: &str,
        models_dir: &Path,
        previous: Option<&ProviderSet>,
    ) -> Self {
        let by_name = configs
            .iter()
            .map(|(name, c)| {
                let kept =
                    previous.and_then(|p| p.by_name.get(name)).filter(|(was, _)| was == c).map(|(_, p)| p.clone());
                (name.clone(), (c.clone(), kept.unwrap_or_else(|| provider(name, c, models_dir))))
            })
            .collect();
        Self { by_name, default: default.to_owned() }
    }
}
