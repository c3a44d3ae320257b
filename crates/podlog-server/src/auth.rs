//! Bearer tokens: who may talk to a TCP listener.
//!
//! # Contract
//!
//! * A TCP listener on a loopback address (`127.0.0.0/8`, `::1`) needs no
//!   token unless one is configured. Any other address always needs one: the
//!   server refuses to start one without.
//! * When a token is needed and none is given, [`TokenSource::File`] reads it
//!   from its file, or, if the file does not exist, generates 32 random bytes
//!   (hex-encoded) from the system's random source into a new file created
//!   0600. An existing token file that others can read or write is refused.
//!   The server logs the file's path, never the token.
//! * A request presents `Authorization: Bearer <token>`. The comparison takes
//!   the same time wherever the first difference is, so timing does not leak
//!   the token. A missing or wrong token gets `401` with a JSON error.
//! * Unix sockets need no token: the socket file is 0600, so only its owner
//!   can connect.
//! * A share token (see [`crate::share`]) reads one session on any
//!   listener, loopback or not: [`authorize`] checks it against the store
//!   and lets it reach only that session's routes.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use podlog_store::{ShareCheck, Store};

use crate::error::{ApiError, ServerError};
use crate::share;

/// A bearer token. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps `text` (trimmed). Fails on an empty token or one with characters
    /// that cannot travel in an HTTP header.
    pub fn new(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the token is empty".to_owned());
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII with no spaces".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    /// A fresh token: 32 bytes from the system's random source, hex-encoded.
    pub fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The token's text, for a client to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on
    /// where the two differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), presented)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Fold over the longer length so a short guess costs as much as a long
    // one; the length difference is folded in as well.
    let len = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Where the token of a TCP listener comes from.
#[derive(Clone, Debug, Default)]
pub enum TokenSource {
    /// No token: only allowed on loopback addresses.
    #[default]
    None,
    /// This token.
    Given(Token),
    /// The token in this file, generated into it (0600) if the file does not
    /// exist.
    File(PathBuf),
}

/// Whether `addr` is a loopback address.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The default token file of the database at `db`: `<db file name>.token`
/// beside it.
pub fn default_token_file(db: &Path) -> PathBuf {
    let mut name = db
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_else(|| "podlog.db".into());
    name.push(".token");
    db.with_file_name(name)
}

/// What [`resolve_token`] did, for the caller to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOrigin {
    /// No token is in force.
    None,
    /// The token was given directly.
    Given,
    /// Read from this existing file.
    Read(PathBuf),
    /// Generated into this new file.
    Generated(PathBuf),
}

/// The token a TCP listener on `addr` requires (`None`: no token), or an
/// error when `addr` is not loopback and `source` is [`TokenSource::None`].
pub fn resolve_token(
    addr: &SocketAddr,
    source: &TokenSource,
) -> Result<(Option<Token>, TokenOrigin), ServerError> {
    match source {
        TokenSource::None if is_loopback(addr) => Ok((None, TokenOrigin::None)),
        TokenSource::None => Err(ServerError::TokenRequired(*addr)),
        TokenSource::Given(token) => Ok((Some(token.clone()), TokenOrigin::Given)),
        TokenSource::File(path) => read_or_generate(path),
    }
}

fn read_or_generate(path: &Path) -> Result<(Option<Token>, TokenOrigin), ServerError> {
    let fail = |reason: String| ServerError::TokenFile {
        path: path.to_owned(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(fail(format!(
                    "mode {:o} lets other users read it; run `chmod 600 {}`",
                    meta.permissions().mode() & 0o777,
                    path.display()
                )));
            }
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let token = Token::new(&text).map_err(fail)?;
            Ok((Some(token), TokenOrigin::Read(path.to_owned())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = Token::generate().map_err(|e| fail(format!("no random source: {e}")))?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail(e.to_string()))?;
            file.write_all(token.expose().as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            Ok((Some(token), TokenOrigin::Generated(path.to_owned())))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Middleware: decides who a request comes from and what it may do.
///
/// * The server's token, when one is in force and presented as the
///   bearer token, grants everything; so does no credential at all on a
///   listener that needs no token.
/// * A share token (`?share=TOKEN`, else the bearer token) grants what
///   [`share::route`] allows for its session: other routes are `403`; an
///   expired or revoked one is `401`, as is an unknown `?share=`. An
///   unknown bearer token is `401` where a token is required, and ignored
///   (as it always was) where none is.
/// * The `share` parameter is removed from the query before the route
///   sees it.
///
/// A share's answers are never `Cache-Control: public`: they were given
/// for a credential.
pub(crate) async fn authorize(
    State(gate): State<Gate>,
    mut request: Request,
    next: Next,
) -> Response {
    let shared = take_share_param(&mut request);
    // The viewer's files are code, not data: anyone may load them, so that
    // a page opened from a share link (which carries its token only in the
    // requests the page makes) loads on a listener that requires a token.
    if matches!(*request.method(), Method::GET | Method::HEAD)
        && share::is_viewer_file(request.uri().path())
    {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .map(<[u8]>::to_vec);
    if let (Some(token), Some(presented)) = (&gate.token, &bearer) {
        if token.matches(presented) {
            return next.run(request).await;
        }
    }
    let from_query = shared.is_some();
    let candidate = shared.or_else(|| bearer.and_then(|b| String::from_utf8(b).ok()));
    let Some(candidate) = candidate else {
        return match gate.token {
            Some(_) => gate.refuse(request, ApiError::unauthorized()).await,
            None => next.run(request).await,
        };
    };
    let store = gate.store.clone();
    let checked = tokio::task::spawn_blocking(move || store.check_share(&candidate)).await;
    let info = match checked {
        Err(e) => {
            let error = ApiError::internal(format!("a request task failed: {e}"));
            return gate.refuse(request, error).await;
        }
        Ok(Err(e)) => return gate.refuse(request, ApiError::from(e)).await,
        Ok(Ok(ShareCheck::Unknown)) if !from_query && gate.token.is_none() => {
            return next.run(request).await;
        }
        Ok(Ok(ShareCheck::Unknown)) => {
            let error = if from_query {
                ApiError::new(StatusCode::UNAUTHORIZED, "unknown share link token")
            } else {
                ApiError::unauthorized()
            };
            return gate.refuse(request, error).await;
        }
        Ok(Ok(ShareCheck::Inactive(info, state))) => {
            let error = ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("share link {} is {}", info.id, state.as_str()),
            );
            return gate.refuse(request, error).await;
        }
        Ok(Ok(ShareCheck::Active(info))) => info,
    };
    match share::route(request.method(), request.uri().path(), &info.session_id) {
        share::Route::Allow => {}
        share::Route::Blob(hash) => {
            let store = gate.store.clone();
            let session = info.session_id.clone();
            let found = tokio::task::spawn_blocking(move || {
                store.session_references_payload(&session, &hash)
            })
            .await;
            match found {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    let error = ApiError::new(
                        StatusCode::FORBIDDEN,
                        "a share link reads only the payloads its session's entries reference",
                    );
                    return gate.refuse(request, error).await;
                }
                Ok(Err(e)) => return gate.refuse(request, ApiError::from(e)).await,
                Err(e) => {
                    let error = ApiError::internal(format!("a request task failed: {e}"));
                    return gate.refuse(request, error).await;
                }
            }
        }
        share::Route::Deny(reason) => {
            return gate
                .refuse(request, ApiError::new(StatusCode::FORBIDDEN, reason))
                .await;
        }
    }
    request.extensions_mut().insert(share::ShareGrant(info));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(private) = headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("public"))
        .and_then(|rest| HeaderValue::from_str(&format!("private{rest}")).ok())
    {
        headers.insert(CACHE_CONTROL, private);
    }
    response
}

/// Takes the first `share=` parameter out of the request's query and
/// returns its value.
fn take_share_param(request: &mut Request) -> Option<String> {
    let query = request.uri().query()?;
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("share=") {
            Some(value) => {
                if found.is_none() {
                    found = Some(value.to_owned());
                }
            }
            None => kept.push(pair),
        }
    }
    let found = found?;
    let mut rest = request.uri().path().to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(rest).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    Some(found)
}

/// What [`authorize`] needs: the listener's token, the store that holds
/// the shares, and the body limit that bounds how much of a refused
/// request's body it reads before answering.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) token: Option<Token>,
    pub(crate) store: Arc<Store>,
    pub(crate) body_limit: usize,
}

impl Gate {
    async fn refuse(&self, request: Request, error: ApiError) -> Response {
        crate::body::refuse(request.into_body(), self.body_limit, 0, error).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_and_unequal_byte_strings() {
        let cases: [(&[u8], &[u8], bool); 6] = [
            (b"abc", b"abc", true),
            (b"abc", b"abd", false),
            (b"abc", b"ab", false),
            (b"ab", b"abc", false),
            (b"", b"", true),
            (b"", b"a", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(constant_time_eq(a, b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn loopback_addresses() {
        for (addr, want) in [
            ("127.0.0.1:1", true),
            ("127.9.9.9:1", true),
            ("[::1]:1", true),
            ("[::ffff:127.0.0.1]:1", true),
            ("0.0.0.0:1", false),
            ("[::]:1", false),
            ("192.0.2.7:1", false),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(is_loopback(&addr), want, "{addr}");
        }
    }

    #[test]
    fn a_generated_token_file_is_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.token");
        let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let (first, origin) = resolve_token(&addr, &TokenSource::File(path.clone())).unwrap();
        assert_eq!(origin, TokenOrigin::Generated(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = first.unwrap();
        assert_eq!(first.expose().len(), 64);
        let (again, origin) = resolve_token(&addr, &TokenSource::File(path.clone())).unwrap();
        assert_eq!(origin, TokenOrigin::Read(path.clone()));
        assert_eq!(again.unwrap(), first);
        assert!(!format!("{first:?}").contains(first.expose()));
    }

    #[test]
    fn an_open_token_file_and_a_public_address_without_token_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.token");
        std::fs::write(&path, "secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let err = resolve_token(&addr, &TokenSource::File(path)).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let err = resolve_token(&addr, &TokenSource::None).unwrap_err();
        assert!(err.to_string().contains("not a loopback"), "{err}");
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(
            resolve_token(&local, &TokenSource::None).unwrap().0,
            None::<Token>
        );
    }
}
