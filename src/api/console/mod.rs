//! The web console at `/ui`: static files compiled into the binary and
//! served by every node, so an operator needs no second server, no CDN and
//! nothing fetched at run time. The page talks to the same REST API as any
//! other client, with the key the person signs in with.

mod assets;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Problem, ProblemType};
use assets::Asset;

/// Scripts, styles, images and connections only from this node; nothing
/// inline, nothing evaluated, no frames, no forms posted elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// `GET /ui`: the console's page.
pub async fn index(headers: HeaderMap) -> Response {
    serve(assets::INDEX, &headers)
}

/// `GET /ui/{file}`: one of its scripts or styles.
pub async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match assets::find(&file) {
        Some(asset) => serve(asset, &headers),
        None => Problem::of(ProblemType::RouteNotFound, format!("the console has no file `{file}`")).into_response(),
    }
}

/// One asset, revalidated by its content hash: a node upgraded to a new
/// console serves new files at once, an unchanged one answers `304`.
fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_embedded_and_typed() {
        let index = std::str::from_utf8(assets::INDEX.body).unwrap();
        for asset in assets::ALL {
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
            assert!(asset.content_type.contains('/'), "{}", asset.name);
        }
        // Every module a script imports is one we serve.
        for asset in assets::ALL.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target =
                    line.rsplit("from").next().unwrap().trim().trim_matches(|c| c == '\'' || c == '"' || c == ';');
                let target = target.trim_matches(|c| c == '\'' || c == '"');
                let name = target.trim_start_matches("./");
                assert!(assets::find(name).is_some(), "{} imports {target}, which is not embedded", asset.name);
            }
        }
        assert!(index.contains("/ui/app.js") && index.contains("/ui/style.css"));
        // Nothing inline the policy would refuse.
        assert!(!index.contains("<script>") && !index.contains(" style=") && !index.contains("onclick"));
    }

    #[test]
    fn the_console_fits_its_transfer_budget() {
        let total: usize = assets::ALL.iter().map(|a| a.body.len()).sum::<usize>() + assets::INDEX.body.len();
        assert!(total < 300 * 1024, "the console is {total} bytes, over its 300 KB budget");
    }

    #[test]
    fn etags_change_with_the_content() {
        let tags: std::collections::HashSet<String> = assets::ALL.iter().map(|a| a.etag()).collect();
        assert_eq!(tags.len(), assets::ALL.len());
    }
}
