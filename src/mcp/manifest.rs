//! A tool server's `manifest.toml`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sandbox::Limits;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The server keeps nothing between calls that a caller could see, so
    /// one initialised session may serve many calls (warm sessions).
    #[serde(default)]
    pub stateless: bool,
    #[serde(default)]
    pub limits: ManifestLimits,
    #[serde(default)]
    pub sandbox: ManifestSandbox,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestLimits {
    pub timeout_ms: u64,
    pub max_memory_mb: u64,
    pub fuel: u64,
    pub max_input_kb: u64,
    pub max_output_kb: u64,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        let d = Limits::default();
        Self {
            timeout_ms: d.timeout.as_millis() as u64,
            max_memory_mb: (d.max_memory_bytes >> 20) as u64,
            fuel: d.fuel,
            max_input_kb: (d.max_input_bytes >> 10) as u64,
            max_output_kb: (d.max_output_bytes >> 10) as u64,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestSandbox {
    /// Give the server a private directory, preopened as `/data`.
    pub data_dir: bool,
    /// Environment variables the server may read (values from the node's env).
    pub env: Vec<String>,
    /// Hosts `caxton.http_request` may reach (`api.example.com`, `*.example.org`).
    pub http_allow: Vec<String>,
    /// Also allow loopback/private/link-local addresses (off: SSRF guard).
    pub http_allow_private: bool,
}

impl Manifest {
    /// Parses and checks a manifest; errors name the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let m: Manifest = toml::from_str(text)
            .map_err(|e| format!("manifest.toml: {}", e.message().lines().next().unwrap_or("invalid")))?;
        let name_ok = (1..=63).contains(&m.name.len())
            && m.name.starts_with(|c: char| c.is_ascii_alphabetic())
            && m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(format!(
                "manifest.toml: name: `{}` must be 1-63 letters, digits, '_' or '-', starting with a letter",
                m.name
            ));
        }
        let l = &m.limits;
        let check = |ok: bool, field: &str, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("manifest.toml: limits.{field}: {why}"))
            }
        };
        check((10..=600_000).contains(&l.timeout_ms), "timeout_ms", "must be 10..=600000")?;
        check((1..=4096).contains(&l.max_memory_mb), "max_memory_mb", "must be 1..=4096")?;
        check(l.fuel >= 1000, "fuel", "must be at least 1000")?;
        check((1..=65536).contains(&l.max_input_kb), "max_input_kb", "must be 1..=65536")?;
        check((1..=65536).contains(&l.max_output_kb), "max_output_kb", "must be 1..=65536")?;
        Ok(m)
    }

    pub fn limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            max_memory_bytes: (l.max_memory_mb as usize) << 20,
            fuel: l.fuel,
            timeout: Duration::from_millis(l.timeout_ms),
            max_input_bytes: (l.max_input_kb as usize) << 10,
            max_output_bytes: (l.max_output_kb as usize) << 10,
        }
    }
}
