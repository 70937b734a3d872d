//! The HTTP client the origin uses to reach identity providers: hyper with rustls (ring,
//! Mozilla roots), a timeout per call, a bound on response size, a scheme rule
//! (`https://` only, `http://` on loopback when the configuration allows it), and an
//! address rule: tenant admins choose these URLs, so the client only connects to public
//! addresses — names are resolved by a resolver that drops loopback, private, link-local,
//! shared and unique-local addresses (the connection uses the checked address, so a DNS
//! answer cannot change between check and connect), and IP literals are checked too.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

/// Largest identity-provider response read (discovery, keys, token, userinfo).
pub const MAX_RESPONSE: usize = 1024 * 1024;

/// Why a call to an identity provider failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpHttpError {
    /// The URL is not one the origin may call.
    #[error("refused URL {0}: identity providers must be reached over https")]
    Scheme(String),
    /// Connection, TLS or protocol failure.
    #[error("request failed: {0}")]
    Transport(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The answer is larger than [`MAX_RESPONSE`].
    #[error("response larger than {MAX_RESPONSE} bytes")]
    TooLarge,
}

/// An error and its sources, one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Whether the origin may connect to `ip`: a public address, or loopback when local
/// providers are allowed.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    if ip.is_loopback() {
        return allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x64 && seg[1] == 0xff9b))
        }
    }
}

/// Resolves names to their allowed addresses only (none: the connection fails).
#[derive(Clone)]
struct PublicResolver {
    allow_loopback: bool,
}

impl tower_service::Service<Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow_loopback;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.filter(|a| address_allowed(a.ip(), allow)).collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} has no public address", name.as_str()),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// A client for identity providers.
#[derive(Clone)]
pub struct IdpHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<PublicResolver>>, Full<bytes::Bytes>>,
    timeout: Duration,
    allow_http_loopback: bool,
}

/// Whether `url` may be called: https, or http on a loopback host when allowed.
pub fn url_allowed(url: &str, allow_http_loopback: bool) -> bool {
    let Ok(u) = url::Url::parse(url) else { return false };
    if !u.username().is_empty() || u.password().is_some() || u.host_str().is_none() {
        return false;
    }
    match u.scheme() {
        "https" => true,
        "http" => {
            allow_http_loopback
                && match u.host() {
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                }
        }
        _ => false,
    }
}

impl IdpHttp {
    /// A client with `timeout` per call.
    pub fn new(timeout: Duration, allow_http_loopback: bool) -> IdpHttp {
        let mut http = HttpConnector::new_with_resolver(PublicResolver { allow_loopback: allow_http_loopback });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        // ring named here: with another provider linked (aws-lc-rs, through sentry's
        // reqwest) rustls has no process default and would panic.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring supports rustls' default protocol versions")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        IdpHttp { client, timeout, allow_http_loopback }
    }

    /// Whether `url` may be called by this client.
    pub fn allows(&self, url: &str) -> bool {
        url_allowed(url, self.allow_http_loopback)
    }

    /// One request; the whole (bounded) response (a `gatehouse.idp` span when traced: the
    /// method and the provider's host, never the path, query or body).
    #[tracing::instrument(level = "debug", name = "gatehouse.idp", skip_all, fields(
        otel.kind = "client",
        http.request.method = %req.method(),
        server.address = req.uri().host().unwrap_or(""),
    ))]
    pub async fn send(&self, req: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, IdpHttpError> {
        let url = req.uri().to_string();
        if !self.allows(&url) {
            return Err(IdpHttpError::Scheme(url));
        }
        // IP literals skip the resolver: check them here.
        let literal = req
            .uri()
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        if literal.is_some_and(|ip| !address_allowed(ip, self.allow_http_loopback)) {
            return Err(IdpHttpError::Scheme(url));
        }
        let (mut parts, body) = req.into_parts();
        parts.headers.entry("user-agent").or_insert(http::HeaderValue::from_static("gatehouse-origin"));
        let req = http::Request::from_parts(parts, Full::new(bytes::Bytes::from(body)));
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| IdpHttpError::Transport(chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                        IdpHttpError::TooLarge
                    } else {
                        IdpHttpError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, bytes.to_vec()))
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| IdpHttpError::Timeout(self.timeout))?
    }

    /// GET `url` with `Accept: application/json` (and a bearer token when given); the
    /// parsed JSON of a 2xx answer.
    pub async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<serde_json::Value, String> {
        let mut b = http::Request::get(url).header("accept", "application/json");
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b.body(Vec::new()).map_err(|e| e.to_string())?;
        let resp = self.send(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        serde_json::from_slice(resp.body()).map_err(|e| format!("{url}: not JSON: {e}"))
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpHttp {
    type Error = IdpHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, IdpHttpError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_allowed_loopback() {
        assert!(url_allowed("https://login.example.com/x", false));
        assert!(!url_allowed("http://login.example.com/x", true));
        assert!(!url_allowed("http://127.0.0.1:4000/x", false));
        assert!(url_allowed("http://127.0.0.1:4000/x", true));
        assert!(url_allowed("http://[::1]:4000/x", true));
        assert!(url_allowed("http://localhost:4000/x", true));
        assert!(!url_allowed("http://169.254.169.254/latest", true));
        assert!(!url_allowed("https://user:pw@idp.example.com/", false));
        assert!(!url_allowed("file:///etc/passwd", true));
        assert!(!url_allowed("not a url", true));
    }

    #[test]
    fn only_public_addresses() {
        let ok = |s: &str, lo: bool| address_allowed(s.parse().unwrap(), lo);
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "203.0.113.9"] {
            assert!(ok(public, false), "{public}");
        }
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!ok(internal, false), "{internal}");
        }
        assert!(ok("127.0.0.1", true) && ok("::1", true), "loopback only when allowed");
        assert!(!ok("10.0.0.1", true), "private never");
    }

    #[tokio::test]
    async fn the_client_refuses_internal_targets() {
        let c = IdpHttp::new(Duration::from_secs(2), false);
        for url in ["https://127.0.0.1/x", "https://169.254.169.254/latest", "https://[::1]/x", "https://10.0.0.1/x"] {
            let req = http::Request::get(url).body(Vec::new()).unwrap();
            assert!(matches!(c.send(req).await, Err(IdpHttpError::Scheme(_))), "{url}");
        }
        // A name that resolves only to loopback is refused by the resolver.
        let req = http::Request::get("https://localhost:1/x").body(Vec::new()).unwrap();
        match c.send(req).await {
            Err(IdpHttpError::Transport(e)) => assert!(e.contains("no public address"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
