//! The HTTP client the origin uses to reach identity providers: hyper with rustls (ring,
//! Mozilla roots), a timeout per call, a bound on response size, and a scheme rule
//! (`https://` only, `http://` on loopback when the configuration allows it).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
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

/// A client for identity providers.
#[derive(Clone)]
pub struct IdpHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<bytes::Bytes>>,
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
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
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

    /// One request; the whole (bounded) response.
    pub async fn send(&self, req: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, IdpHttpError> {
        let url = req.uri().to_string();
        if !self.allows(&url) {
            return Err(IdpHttpError::Scheme(url));
        }
        let (mut parts, body) = req.into_parts();
        parts.headers.entry("user-agent").or_insert(http::HeaderValue::from_static("gatehouse-origin"));
        let req = http::Request::from_parts(parts, Full::new(bytes::Bytes::from(body)));
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| IdpHttpError::Transport(e.to_string()))?;
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
}
