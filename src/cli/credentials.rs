//! Where the CLI finds its API key: `--api-key` / `CAXTON_API_KEY`, else
//! the credentials file (`~/.config/caxton/credentials.toml`):
//!
//! ```toml
//! api_key = "cxk_..."                        # any server
//! [servers]
//! "https://caxton.example.com" = "cxk_..."   # this server
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::client::CliError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    api_key: Option<String>,
    #[serde(default)]
    servers: BTreeMap<String, String>,
}

fn default_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("caxton").join("credentials.toml"))
}

pub fn api_key(flag: Option<&str>, file: Option<&Path>, server: &str) -> Result<Option<String>, CliError> {
    if let Some(key) = flag.filter(|k| !k.is_empty()) {
        return Ok(Some(key.to_owned()));
    }
    let (path, explicit) = match file {
        Some(p) => (p.to_path_buf(), true),
        None => match default_file() {
            Some(p) => (p, false),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => return Err(CliError::Usage(format!("credentials file {}: {e}", path.display()))),
    };
    warn_if_readable_by_others(&path);
    let creds: Credentials =
        toml::from_str(&text).map_err(|e| CliError::Usage(format!("credentials file {}: {e}", path.display())))?;
    let server = server.trim_end_matches('/');
    Ok(creds.servers.iter().find(|(s, _)| s.trim_end_matches('/') == server).map(|(_, k)| k.clone()).or(creds.api_key))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!("warning: {} is readable by other users; `chmod 600` it", path.display());
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_server_entry_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        std::fs::write(&path, "api_key = \"any\"\n[servers]\n\"http://a:1/\" = \"for-a\"\n").unwrap();
        let key = |flag, server| api_key(flag, Some(&path), server).unwrap();
        assert_eq!(key(Some("flag"), "http://a:1").as_deref(), Some("flag"));
        assert_eq!(key(None, "http://a:1").as_deref(), Some("for-a"));
        assert_eq!(key(None, "http://b:2").as_deref(), Some("any"));
        let missing = dir.path().join("none.toml");
        assert!(api_key(None, Some(&missing), "http://a:1").unwrap_err().to_string().contains("none.toml"));
        std::fs::write(&path, "apikey = 1\n").unwrap();
        assert!(api_key(None, Some(&path), "x").unwrap_err().to_string().contains("apikey"));
    }
}
