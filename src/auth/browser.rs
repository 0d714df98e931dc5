//! What keeps a web page out of a node that has no keys (dev mode): the
//! `Host` a request was sent to and the `Origin` of the page that sent it
//! must both be loopback names, and no state-changing request may carry a
//! body a page can send without a CORS preflight.

use axum::http::{header, HeaderMap, Method};

/// `Host` names a loopback interface: `localhost` (and `*.localhost`,
/// which resolvers keep on loopback), 127.0.0.0/8, or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let name = strip_port(host).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") || name == "[::1]" {
        return true;
    }
    name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080 → [::1]
        return rest.find(']').map(|i| &host[..i + 2]).unwrap_or(host);
    }
    host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
}

/// `Origin` is an http(s) page served from a loopback host.
pub fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    !rest.contains('/') && is_loopback_host(rest)
}

/// `Origin` is the page this node itself served (the console at `/ui`):
/// its authority is the request's `Host`. A rebound name passes this too,
/// which is why it grants nothing by itself: the page still needs a key,
/// and a key kept by the node's own origin is not readable by another.
pub fn is_same_origin(origin: &str, host: &str) -> bool {
    let Some(authority) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// Bodies a browser sends cross-origin without asking first (the CORS
/// "simple" content types), plus a body with no type at all.
pub fn preflight_free_body(method: &Method, headers: &HeaderMap) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    match headers.get(header::CONTENT_TYPE) {
        Some(v) => {
            let essence = v.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            matches!(essence.as_str(), "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
                .then(|| format!("Content-Type `{essence}` is not accepted on {method} requests"))
        }
        None => {
            let chunked = headers.contains_key(header::TRANSFER_ENCODING);
            let sized = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0);
            (chunked || sized).then(|| {
                format!("a {method} body needs a Content-Type (application/json, or application/toml for agents)")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn loopback_hosts_and_origins() {
        for h in ["localhost", "localhost:8080", "127.0.0.1:8080", "127.0.0.3", "[::1]:8080", "api.localhost:1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["evil.example", "evil.example:8080", "10.0.0.1:8080", "localhost.evil.example", "[::2]:80", ""] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert!(is_loopback_origin("http://localhost:3000"));
        assert!(is_loopback_origin("https://127.0.0.1"));
        for o in ["null", "http://evil.example", "file://", "http://localhost:3000/x", "ftp://localhost"] {
            assert!(!is_loopback_origin(o), "{o}");
        }
    }

    #[test]
    fn the_nodes_own_page_is_same_origin() {
        assert!(is_same_origin("https://caxton.example:8080", "caxton.example:8080"));
        assert!(is_same_origin("http://10.0.0.5:8080", "10.0.0.5:8080"));
        for (o, h) in [
            ("https://caxton.example", "caxton.example:8080"),
            ("https://evil.example", "caxton.example"),
            ("null", "caxton.example"),
            ("https://caxton.example", ""),
            ("https://caxton.example/x", "caxton.example"),
        ] {
            assert!(!is_same_origin(o, h), "{o} {h}");
        }
    }

    #[test]
    fn simple_bodies_are_refused_on_writes_only() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=UTF-8"));
        assert!(preflight_free_body(&Method::POST, &h).is_some());
        assert!(preflight_free_body(&Method::GET, &h).is_none());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/toml"));
        assert!(preflight_free_body(&Method::POST, &h).is_none());
        let mut bare = HeaderMap::new();
        assert!(preflight_free_body(&Method::POST, &bare).is_none(), "no body, no type: fine");
        bare.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(preflight_free_body(&Method::PUT, &bare).is_some());
    }
}
