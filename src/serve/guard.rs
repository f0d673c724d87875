//! What a request must show in its headers before its body is read: a Host this server
//! answers for (against DNS rebinding), no Origin but its own or one allowed (against
//! cross-site requests from pages in the user's browser), the API key when one is set,
//! and `Content-Type: application/json` on JSON endpoints (which a cross-site form cannot
//! send, and which makes a browser ask first with a CORS preflight).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ServeError;
use super::http::{ApiError, Flavor, constant_time_eq};
use super::state::AppState;

/// The API key a request came with, as its sha256 (none on a server without keys); the
/// handlers scope prefix reuse by it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientKey(pub Option<[u8; 32]>);

/// Who may ask what, from the server's options.
#[derive(Debug, Clone)]
pub(crate) struct RequestPolicy {
    key_digests: Vec<[u8; 32]>,
    listen: IpAddr,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
}

impl RequestPolicy {
    /// The policy for a server listening on `listen` with these keys, extra host names and
    /// extra origins; names and origins that cannot be what a browser sends are refused.
    pub fn new(
        listen: SocketAddr,
        keys: &[String],
        allowed_hosts: &[String],
        allowed_origins: &[String],
    ) -> Result<RequestPolicy, ServeError> {
        let allowed_hosts = allowed_hosts
            .iter()
            .map(|h| {
                host_name(h)
                    .filter(|n| !n.contains('/') && !n.contains('@'))
                    .ok_or_else(|| ServeError::BadAllowedHost { host: h.clone() })
            })
            .collect::<Result<_, _>>()?;
        let allowed_origins = allowed_origins
            .iter()
            .map(|o| normalize_origin(o).ok_or_else(|| ServeError::BadAllowedOrigin { origin: o.clone() }))
            .collect::<Result<_, _>>()?;
        Ok(RequestPolicy {
            key_digests: keys.iter().map(|k| Sha256::digest(k.as_bytes()).into()).collect(),
            listen: listen.ip(),
            allowed_hosts,
            allowed_origins,
        })
    }

    /// Whether a request's Host (name or address, port ignored) is one this server
    /// answers for: loopback, the address it listens on (any address when it listens on
    /// all of them: an address cannot be rebound, only a name can), or `--allowed-host`.
    pub(super) fn host_allowed(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else { return false };
        if name == "localhost" || self.allowed_hosts.contains(&name) {
            return true;
        }
        match name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.listen || self.listen.is_unspecified(),
            Err(_) => false,
        }
    }

    pub(super) fn origin_allowed(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|o| self.allowed_origins.contains(&o))
    }

    /// The digest of the key `headers` carry, when it is one of the keys; compared in
    /// constant time against every key.
    fn key_of(&self, headers: &HeaderMap) -> Option<[u8; 32]> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim)?;
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let mut found = false;
        for expected in &self.key_digests {
            found |= constant_time_eq(&digest, expected);
        }
        found.then_some(digest)
    }
}

/// The host part of a Host header or authority (`name`, `name:port`, `[v6]:port`), lower
/// case, without a trailing dot; `None` when it is not one.
fn host_name(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let name = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let rest = &authority[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &authority[..=end]
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => authority,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    valid.then_some(name)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.chars().all(|c| c.is_ascii_digit())
}

/// `scheme://host[:port]` in lower case without a trailing slash, or `null` (what a
/// sandboxed page or a file sends); `None` for anything else.
fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if origin == "null" {
        return Some(origin);
    }
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok =
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (scheme_ok && host_name(authority).is_some() && !authority.contains('/')).then_some(origin)
}

/// Whether `origin` is the server's own page as the browser reached it: the same host and
/// port as the request's Host, over http (or https, through a reverse proxy that passes
/// Host on).
pub(super) fn same_origin(origin: &str, host: &str) -> bool {
    let origin = origin.trim();
    ["http://", "https://"].iter().any(|scheme| {
        origin.len() > scheme.len()
            && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
            && origin[scheme.len()..].eq_ignore_ascii_case(host.trim())
    })
}

fn flavor_of(path: &str) -> Flavor {
    if path.starts_with("/api/") { Flavor::Ollama } else { Flavor::OpenAi }
}

/// Whether a Content-Type is JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The checks, in order: Host (400 without one, 403 for another), Origin (403), the key
/// (401; not for `/`, `/healthz` and CORS preflights), Content-Type on POST (415). None
/// of them reads the body. Allowed cross-origin requests get CORS headers.
pub(crate) async fn guard(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let policy = &state.policy;
    let path = request.uri().path().to_string();
    let flavor = flavor_of(&path);
    let headers = request.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok().map(str::to_string),
        (None, _) => request.uri().authority().map(|a| a.as_str().to_string()),
        (Some(_), Some(_)) => None,
    };
    let Some(host) = host else {
        return ApiError::bad_request(flavor, "the request needs one Host header").into_response();
    };
    if !policy.host_allowed(&host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            flavor,
            "this server does not answer for that Host name (a guard against DNS rebinding; name it with --allowed-host)",
        )
        .into_response();
    }
    let cross_origin = match headers.get(header::ORIGIN) {
        None => None,
        Some(origin) => match origin.to_str() {
            Ok(o) if same_origin(o, &host) => None,
            Ok(o) if policy.origin_allowed(o) => Some(origin.clone()),
            _ => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    flavor,
                    "cross-origin requests are refused (allow an origin with --allowed-origin)",
                )
                .into_response();
            }
        },
    };
    if let Some(origin) = &cross_origin
        && request.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(origin.clone());
    }
    let client = if policy.key_digests.is_empty() || path == "/" || path == "/healthz" {
        ClientKey(None)
    } else {
        match policy.key_of(headers) {
            Some(digest) => ClientKey(Some(digest)),
            None => {
                let refused = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    flavor,
                    "a valid API key is required (Authorization: Bearer KEY)",
                );
                return with_cors(refused.into_response(), cross_origin);
            }
        }
    };
    let routed = request.extensions().get::<MatchedPath>().is_some();
    if routed && request.method() == Method::POST && !is_json(headers) {
        let refused = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            flavor,
            "the request body must be sent with Content-Type: application/json",
        );
        return with_cors(refused.into_response(), cross_origin);
    }
    request.extensions_mut().insert(client);
    with_cors(next.run(request).await, cross_origin)
}

/// The answer to a CORS preflight from an allowed origin.
fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, x-api-key"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    with_cors(response, Some(origin))
}

fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}
