//! The web viewer: `GET /` and `GET /assets/{file}`.
//!
//! The pages are plain HTML, CSS and JavaScript modules in `web/` (beside
//! this crate's `src/`), embedded in the binary with `include_str!`, so
//! building and running podlog needs no Node.js and no files beside the
//! binary. Assets are served with `Cache-Control: no-cache`: a browser
//! revalidates them (by `ETag`, the content hash) and so never runs a
//! viewer older than the server it talks to.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file: its name under `/assets/`, content type and text.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    text: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    text: include_str!("../web/index.html"),
};

/// Every file under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        text: include_str!("../web/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("../web/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("../web/api.js"),
    },
    Asset {
        name: "fold.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("../web/fold.js"),
    },
    Asset {
        name: "render.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("../web/render.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        text: include_str!("../web/favicon.svg"),
    },
];

/// The names of the embedded assets, for tests.
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// `GET /`: the viewer's page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

/// `GET /assets/{file}`.
pub(crate) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found(format!("no asset {name:?}")).into_response(),
    }
}

/// An asset's entity tag: the BLAKE3 hash of its text (the hash payloads
/// are named by), cut to 16 hex digits: enough to tell two builds' files
/// apart.
fn etag(text: &str) -> String {
    let hash = blake3::hash(text.as_bytes()).to_hex();
    format!("\"{}\"", &hash[..16])
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset.text);
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(&tag).expect("a hex entity tag is a header value"),
        ),
    ];
    if crate::cache::none_match(headers, &tag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_tags_differ_by_content() {
        assert_ne!(etag("a"), etag("b"));
        assert_eq!(etag(INDEX.text), etag(INDEX.text));
        assert!(INDEX.text.contains("/assets/app.js"));
    }
}
