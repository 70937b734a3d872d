//! The region's libSQL server (sqld) as the origin manages it: each database (the
//! directory, each tenant) is a *namespace* on the server, created through the server's
//! admin API when a tenant is created and deleted when the tenant is deleted
//! (`storage.remote.admin_url`).
//!
//! Namespace names are derived from the database name, the same on every host and every
//! run: `directory`, and `t-<hex>` for tenant `t_<hex>` (lowercase letters, digits and
//! `-` only, so a name is also a valid DNS label for `<ns>.host` URLs and a valid Turso
//! database name).

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

/// The namespace of database `db` (`directory`, or a tenant id `t_<hex>`).
pub fn namespace(db: &str) -> String {
    db.replace('_', "-").to_ascii_lowercase()
}

/// Whether `ns` is a name [`namespace`] can produce: 1–63 of `a-z`, `0-9`, `-`, starting
/// with a letter.
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns.starts_with(|c: char| c.is_ascii_lowercase())
        && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why a call to the server's admin API failed. Each has a stable reason code
/// ([`AdminError::code`]); none carries the admin key.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Not a namespace name this origin makes (never sent).
    #[error("`{namespace}` is not a valid namespace name")]
    InvalidNamespace {
        /// The refused name.
        namespace: String,
    },
    /// No connection, or the connection broke.
    #[error("{op} namespace `{namespace}`: the libSQL server's admin API at {url} is unreachable: {detail}")]
    Unreachable {
        /// `create`, `delete` or `look up`.
        op: &'static str,
        /// The namespace.
        namespace: String,
        /// The admin URL.
        url: String,
        /// The transport error and its sources.
        detail: String,
    },
    /// No answer within `storage.remote.admin_timeout_secs`.
    #[error("{op} namespace `{namespace}`: no answer from the libSQL server's admin API within {after:?}")]
    Timeout {
        /// `create`, `delete` or `look up`.
        op: &'static str,
        /// The namespace.
        namespace: String,
        /// The timeout.
        after: Duration,
    },
    /// The server refused the admin key (`--admin-auth-key`).
    #[error("{op} namespace `{namespace}`: the libSQL server refused the admin key (HTTP {status})")]
    Unauthorized {
        /// `create`, `delete` or `look up`.
        op: &'static str,
        /// The namespace.
        namespace: String,
        /// 401 or 403.
        status: u16,
    },
    /// Any other refusal, with the server's message.
    #[error("{op} namespace `{namespace}`: the libSQL server answered HTTP {status}: {message}")]
    Refused {
        /// `create`, `delete` or `look up`.
        op: &'static str,
        /// The namespace.
        namespace: String,
        /// The status.
        status: u16,
        /// The server's `error` field (or body), at most 200 bytes.
        message: String,
    },
}

impl AdminError {
    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::InvalidNamespace { .. } => "storage_namespace_invalid",
            AdminError::Unreachable { .. } => "storage_server_unreachable",
            AdminError::Timeout { .. } => "storage_server_timeout",
            AdminError::Unauthorized { .. } => "storage_server_unauthorized",
            AdminError::Refused { .. } => "storage_server_refused",
        }
    }

    /// Whether trying again later may succeed (the server was down or slow).
    pub fn transient(&self) -> bool {
        matches!(self, AdminError::Unreachable { .. } | AdminError::Timeout { .. })
    }
}

/// Whether `e` or one of its sources says that the libSQL server could not be reached: a
/// write forwarded to the primary, a replica's sync, or an admin call that found nobody
/// (not a statement the server refused).
pub fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(l) = x.downcast_ref::<libsql::Error>() {
            if matches!(l, libsql::Error::WriteDelegation(_) | libsql::Error::Replication(_) | libsql::Error::Sync(_)) {
                return true;
            }
        }
        if x.downcast_ref::<AdminError>().is_some_and(AdminError::transient) {
            return true;
        }
        cur = x.source();
    }
    false
}

/// The admin API of one libSQL server (sqld `--admin-listen-addr`).
#[derive(Clone)]
pub struct Admin {
    base: String,
    /// Sent as `Authorization: Basic <key>` (sqld's `--admin-auth-key`).
    key: Option<String>,
    timeout: Duration,
    client: std::sync::Arc<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<bytes::Bytes>>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Admin").field("base", &self.base).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// What one admin call answered: its status and (bounded) body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Admin {
    /// The admin API at `base` (`http(s)://host:port`, no trailing slash), with the admin
    /// key if the server wants one, and `timeout` per call (connecting included).
    pub fn new(base: &str, key: Option<String>, timeout: Duration) -> Admin {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        // ring named here, as for the identity-provider client: with another provider
        // linked rustls has no process default.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring supports rustls' default protocol versions")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Admin { base: base.trim_end_matches('/').to_string(), key, timeout, client: std::sync::Arc::new(client) }
    }

    /// Create namespace `ns`; one that exists already is fine (a retried creation).
    pub async fn create(&self, ns: &str) -> Result<(), AdminError> {
        let a = self.call("create", ns, http::Method::POST, "/create", b"{}".to_vec()).await?;
        match a.status {
            200..=299 => Ok(()),
            // sqld: 400 `Namespace `x` already exists`.
            400 if message(&a.body).contains("already exists") => Ok(()),
            _ => Err(refusal("create", ns, a)),
        }
    }

    /// Delete namespace `ns` and its data on the server; whether it was there (one that
    /// does not exist is fine: a retried deletion).
    pub async fn delete(&self, ns: &str) -> Result<bool, AdminError> {
        let a = self.call("delete", ns, http::Method::DELETE, "", Vec::new()).await?;
        match a.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(refusal("delete", ns, a)),
        }
    }

    /// Whether namespace `ns` exists on the server (its configuration is readable).
    pub async fn exists(&self, ns: &str) -> Result<bool, AdminError> {
        let a = self.call("look up", ns, http::Method::GET, "/config", Vec::new()).await?;
        match a.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(refusal("look up", ns, a)),
        }
    }

    async fn call(
        &self,
        op: &'static str,
        ns: &str,
        method: http::Method,
        suffix: &str,
        body: Vec<u8>,
    ) -> Result<Answer, AdminError> {
        if !valid_namespace(ns) {
            return Err(AdminError::InvalidNamespace { namespace: ns.to_string() });
        }
        let url = format!("{}/v1/namespaces/{ns}{suffix}", self.base);
        let mut b = http::Request::builder().method(method).uri(&url).header("content-type", "application/json");
        if let Some(k) = &self.key {
            b = b.header("authorization", format!("Basic {k}"));
        }
        let req = b.body(Full::new(bytes::Bytes::from(body))).map_err(|e| AdminError::Unreachable {
            op,
            namespace: ns.to_string(),
            url: self.base.clone(),
            detail: e.to_string(),
        })?;
        let unreachable =
            |detail: String| AdminError::Unreachable { op, namespace: ns.to_string(), url: self.base.clone(), detail };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| unreachable(crate::sso::http::chain(&e)))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes()
                .to_vec();
            Ok(Answer { status, body })
        };
        let span = tracing::debug_span!("gatehouse.storage.admin", db.namespace = %ns, db.operation.name = op);
        let timed = tokio::time::timeout(self.timeout, tracing::Instrument::instrument(exchange, span));
        timed.await.map_err(|_| AdminError::Timeout { op, namespace: ns.to_string(), after: self.timeout })?
    }
}

/// The server's message in an error answer (`{"error": "..."}` or the body), bounded.
fn message(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.chars().take(200).collect()
}

fn refusal(op: &'static str, ns: &str, a: Answer) -> AdminError {
    match a.status {
        401 | 403 => AdminError::Unauthorized { op, namespace: ns.to_string(), status: a.status },
        status => AdminError::Refused { op, namespace: ns.to_string(), status, message: message(&a.body) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_derived_from_the_database_name() {
        assert_eq!(namespace("directory"), "directory");
        assert_eq!(namespace("t_0123456789abcdef01234567"), "t-0123456789abcdef01234567");
        // Deterministic, and valid for sqld, DNS labels and Turso database names.
        for db in ["directory", "t_00", "t_0123456789abcdef01234567"] {
            assert_eq!(namespace(db), namespace(db));
            assert!(valid_namespace(&namespace(db)), "{db}");
        }
        for bad in ["", "T-1", "t_1", "1t", "-t", "a.b", "a/b", &"a".repeat(64)] {
            assert!(!valid_namespace(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_typed_transient_error() {
        // A port nobody listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let admin = Admin::new(&format!("http://127.0.0.1:{port}"), Some("k3y".into()), Duration::from_secs(2));
        let e = admin.create("t-00").await.unwrap_err();
        assert_eq!(e.code(), "storage_server_unreachable", "{e}");
        assert!(e.transient());
        assert!(!format!("{e} {admin:?}").contains("k3y"), "the admin key is never shown");
        let wrapped = anyhow::Error::from(e).context("create tenant t_00");
        assert!(unreachable(wrapped.as_ref()), "found through the context");
        let e = admin.delete("../etc").await.unwrap_err();
        assert_eq!(e.code(), "storage_namespace_invalid");
        assert!(!unreachable(&e));
        assert!(unreachable(&libsql::Error::WriteDelegation("connection refused".into())));
        assert!(!unreachable(&libsql::Error::RemoteSqliteFailure(19, 2067, "UNIQUE constraint failed".into())));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Accepts connections, never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let admin = Admin::new(&format!("http://127.0.0.1:{port}"), None, Duration::from_millis(300));
        let e = admin.exists("t-00").await.unwrap_err();
        assert_eq!(e.code(), "storage_server_timeout", "{e}");
        hold.abort();
    }
}
