//! The one door to the network a tool server gets: `caxton.http_request`,
//! a host function that performs an HTTP request on the module's behalf —
//! only to hosts on the server's allowlist, and never to loopback,
//! link-local, private or otherwise internal addresses unless the manifest
//! explicitly allows them (SSRF). The host resolves the name itself and
//! connects to the address it checked, so DNS cannot swap it afterwards.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a server may reach.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpPolicy {
    /// Host names (`api.example.com`) or wildcards (`*.example.com`).
    pub allow: Vec<String>,
    /// Also allow loopback/private/link-local addresses (tests, on-prem).
    pub allow_private: bool,
}

#[derive(Debug, Deserialize)]
pub struct HttpRequest {
    #[serde(default = "get")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Serialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Internal addresses a tool must not reach by default: anything that is
/// not plainly a public unicast address, including IPv6 forms that carry
/// an IPv4 address a gateway will reach for it.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()
                || a == 0 // "this network"
                || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // 192.0.0.0/24 IETF protocol assignments
                || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15 benchmarking
                || a >= 240 // 240.0.0.0/4 reserved
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| IpAddr::V4(std::net::Ipv4Addr::from(((hi as u32) << 16) | lo as u32));
            v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed internally)
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4))) // ::ffff:a.b.c.d
                || (s[..6] == [0; 6] && is_internal(embedded(s[6], s[7]))) // ::a.b.c.d (IPv4-compatible)
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]) // 64:ff9b::/96 NAT64: any IPv4, the metadata service included
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48 local-use NAT64
                || s[0] == 0x2002 // 6to4: an IPv4 address in bits 16-48
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        }
    }
}

pub(super) fn host_allowed(host: &str, allow: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    allow.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == a,
        }
    })
}

/// Performs the request if policy allows; errors are plain text for the tool.
pub fn perform(
    policy: &HttpPolicy,
    req: HttpRequest,
    timeout: Duration,
    max_body: usize,
) -> Result<HttpResponse, String> {
    let url = reqwest::Url::parse(&req.url).map_err(|e| format!("bad url `{}`: {e}", req.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not allowed (http and https only)", url.scheme()));
    }
    let host = url.host_str().ok_or("the url has no host")?.trim_matches(['[', ']']).to_owned();
    if !host_allowed(&host, &policy.allow) {
        return Err(format!("host `{host}` is not on this tool server's allowlist [{}]", policy.allow.join(", ")));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .collect(),
    };
    let addr = *addrs.first().ok_or_else(|| format!("`{host}` resolves to no address"))?;
    if let Some(bad) = addrs.iter().find(|a| is_internal(a.ip())) {
        if !policy.allow_private {
            return Err(format!(
                "`{host}` resolves to internal address {} (loopback, private and link-local addresses are refused)",
                bad.ip()
            ));
        }
    }
    let handle = tokio::runtime::Handle::current();
    handle.block_on(async move {
        // No proxy from the environment: the checked address is the one dialled.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .build()
            .map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("bad method `{}`", req.method))?;
        let mut builder = client.request(method, url);
        // The Host is the checked URL's: a module-chosen one would send the
        // request to another virtual host than the allowlist names.
        for (k, v) in req.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("host")) {
            builder = builder.header(k, v);
        }
        if let Some(b) = req.body {
            builder = builder.body(b);
        }
        let resp = builder.send().await.map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let headers =
            resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
        let bytes = read_capped(resp, max_body).await?;
        Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() })
    })
}

/// The body, refused as soon as it is known to exceed `max_body`: from its
/// declared length, or while it streams in; never buffered past the limit.
async fn read_capped(mut resp: reqwest::Response, max_body: usize) -> Result<Vec<u8>, String> {
    let too_big = |n: u64| format!("response body is at least {n} bytes; the limit is {max_body}");
    if let Some(declared) = resp.content_length().filter(|n| *n > max_body as u64) {
        return Err(too_big(declared));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading the body failed: {e}"))? {
        if body.len() + chunk.len() > max_body {
            return Err(too_big((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "100.64.0.1",
            "::ffff:127.0.0.1",
            // NAT64 to the metadata service, and the other IPv6 wrappers of IPv4.
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "::127.0.0.1",
            "::169.254.169.254",
            "fec0::1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.254",
            "0.1.2.3",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "192.0.2.1", "198.20.0.1", "2a00:1450::1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allowlist_matching() {
        let allow = vec!["api.example.com".to_owned(), "*.example.org".to_owned()];
        assert!(host_allowed("API.example.com", &allow));
        assert!(host_allowed("a.b.example.org", &allow));
        assert!(!host_allowed("example.org", &allow));
        assert!(!host_allowed("evil.com", &allow));
        assert!(!host_allowed("api.example.com.evil.com", &allow));
    }
}
