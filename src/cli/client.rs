use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server's own words: problem title, detail and field errors.
    #[error("{0}")]
    Server(String),
    #[error("{0}")]
    Usage(String),
}

pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

/// The `Authorization` header every request carries, marked sensitive so
/// it is never printed by reqwest's debug output.
fn auth_headers(key: Option<String>) -> Result<reqwest::header::HeaderMap, CliError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| CliError::Usage("the API key contains characters a header cannot carry".into()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// Renders a problem+json body the way a person wants to read it.
fn describe_problem(status: StatusCode, body: &str) -> String {
    let Ok(p) = serde_json::from_str::<Value>(body) else {
        return format!("server answered {status}: {body}");
    };
    let mut out = format!(
        "{} ({}): {}",
        p["title"].as_str().unwrap_or("error"),
        status.as_u16(),
        p["detail"].as_str().unwrap_or("")
    );
    if let Some(errors) = p["errors"].as_array() {
        for e in errors {
            let pos = match (e["line"].as_u64(), e["column"].as_u64()) {
                (Some(l), Some(c)) => format!(":{l}:{c}"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "\n  {}{pos}: {}: {}",
                e["file"].as_str().unwrap_or(""),
                e["field"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

impl ApiClient {
    pub fn new(base: &str, api_key: Option<String>, ca_cert: Option<&std::path::Path>) -> Result<Self, CliError> {
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_secs(330)).default_headers(auth_headers(api_key)?);
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|e| CliError::Usage(format!("--ca-cert {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::Usage(format!("--ca-cert {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), http })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(StatusCode, Value), CliError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some((ctype, bytes)) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, ctype).body(bytes);
        }
        let resp =
            req.send().await.map_err(|e| CliError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        let status = resp.status();
        let text =
            resp.text().await.map_err(|e| CliError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        if !status.is_success() {
            return Err(CliError::Server(describe_problem(status, &text)));
        }
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok((status, value))
    }

    /// A request whose body the caller reads (streams); errors as usual.
    pub async fn raw(&self, method: Method, path: &str) -> Result<reqwest::Response, CliError> {
        let resp = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .send()
            .await
            .map_err(|e| CliError::Unreachable { url: self.base.clone(), reason: e.to_string() })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(CliError::Server(describe_problem(status, &text)));
        }
        Ok(resp)
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.request(Method::GET, path, None).await?.1)
    }
}
