//! `GET /healthz` (the process is up) and `GET /readyz` (it can serve: the directory
//! database answers a real query and the signing key signs a token its own keys verify),
//! on the API listener and on the metrics listener (`[metrics] listen`).
//!
//! Not ready: 503 with `{"status": "not_ready", "reason": <code>}`, the reason one of
//! [`NotReady`]'s codes. Nothing else is said (no paths, no error text: the probe is public).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jwt_simple::prelude::{Claims, VerificationOptions};
use serde_json::{json, Value};

use crate::api::app::App;
use crate::api::extract::AppState;

/// How long the readiness query may take before storage counts as not answering.
pub(crate) const STORAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the origin is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The directory database answered the query with an error.
    #[error("storage_unavailable")]
    StorageUnavailable,
    /// The directory database did not answer within [`STORAGE_TIMEOUT`].
    #[error("storage_timeout")]
    StorageTimeout,
    /// The current signing key could not sign a token that the published keys verify.
    #[error("signing_key_unusable")]
    SigningKeyUnusable,
}

impl NotReady {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            NotReady::StorageUnavailable => "storage_unavailable",
            NotReady::StorageTimeout => "storage_timeout",
            NotReady::SigningKeyUnusable => "signing_key_unusable",
        }
    }
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Check storage (timed as `storage_seconds{op="ready"}`) and the signing keys.
pub(crate) async fn readiness(app: &App) -> Result<(), NotReady> {
    let timer = app.metrics.storage.start("ready");
    match tokio::time::timeout(STORAGE_TIMEOUT, app.store.ping()).await {
        Err(_) => return Err(NotReady::StorageTimeout),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the directory database did not answer");
            return Err(NotReady::StorageUnavailable);
        }
        Ok(Ok(())) => drop(timer),
    }
    let keys = app.keys();
    let probe = Claims::with_custom_claims(json!({ "probe": "readyz" }), jwt_simple::prelude::Duration::from_secs(60));
    let signed = keys.sign(probe).map_err(|_| NotReady::SigningKeyUnusable)?;
    keys.verify::<Value>(&signed, VerificationOptions::default()).map_err(|_| NotReady::SigningKeyUnusable)?;
    Ok(())
}

/// `GET /readyz`: 200 `{"status": "ready"}` or 503 with the reason.
pub(crate) async fn readyz(State(app): AppState) -> Response {
    let (status, body) = match readiness(&app).await {
        Ok(()) => (StatusCode::OK, json!({ "status": "ready" })),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "not_ready", "reason": e.code() })),
    };
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::OriginConfig;

    /// An origin's app on fresh secrets in `dir` (not served), with `extra` appended to its
    /// configuration.
    pub(crate) async fn test_app(dir: &std::path::Path, extra: &str) -> Arc<App> {
        let (pem, _) = gatehouse_bundler::keys::generate_bundle_keys();
        std::fs::write(dir.join("bundle.pem"), pem).unwrap();
        std::fs::write(dir.join("edge.tokens"), "edge-1 edge-token-0123456789abcdef\n").unwrap();
        std::fs::write(dir.join("operator.token"), "operator-token-0123456789").unwrap();
        std::fs::write(dir.join("peer.token"), "peer-token-0123456789abcdef").unwrap();
        std::fs::write(dir.join("apikey.secret"), "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==").unwrap();
        let toml = format!(
            "region = \"eu-west\"\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:7400\"\ndata_dir = \"data\"\n\
             [secrets]\nbundle_signing_key = \"bundle.pem\"\nedge_tokens = \"edge.tokens\"\noperator_token = \"operator.token\"\n\
             peer_token = \"peer.token\"\napi_key_secret = \"apikey.secret\"\n[signin]\nargon2_memory_kib = 64\nargon2_iterations = 1\n{extra}"
        );
        std::fs::write(dir.join("origin.toml"), toml).unwrap();
        let cfg = OriginConfig::load(&dir.join("origin.toml")).unwrap();
        Arc::new(App::open(cfg).await.unwrap())
    }

    async fn answer(app: &Arc<App>) -> (u16, Value) {
        let r = readyz(State(app.clone())).await;
        let status = r.status().as_u16();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn ready_when_storage_answers_and_the_key_signs() {
        let dir = tempfile::tempdir().unwrap();
        let app = test_app(dir.path(), "").await;
        assert_eq!(answer(&app).await, (200, json!({ "status": "ready" })));
        assert_eq!(healthz().await, "ok\n");
        let ready = app.metrics.storage.histogram().with_label_values(&["ready"]).get_sample_count();
        assert_eq!(ready, 1, "the readiness query is timed");
    }

    #[tokio::test]
    async fn storage_that_cannot_answer_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let app = test_app(dir.path(), "").await;
        // The directory's table gone from under the origin: the query fails.
        app.store.directory.lock().await.execute("ALTER TABLE tenants RENAME TO gone", ()).await.unwrap();
        assert_eq!(answer(&app).await, (503, json!({ "status": "not_ready", "reason": "storage_unavailable" })));
        app.store.directory.lock().await.execute("ALTER TABLE gone RENAME TO tenants", ()).await.unwrap();
        assert_eq!(answer(&app).await.0, 200, "ready again once storage answers");
    }

    #[tokio::test]
    async fn storage_that_does_not_answer_in_time_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let app = test_app(dir.path(), "").await;
        // Something holds the directory database and never lets go (a wedged write).
        let held = app.store.directory.lock().await;
        let started = tokio::time::Instant::now();
        assert_eq!(answer(&app).await, (503, json!({ "status": "not_ready", "reason": "storage_timeout" })));
        assert!(started.elapsed() >= STORAGE_TIMEOUT);
        drop(held);
        assert_eq!(answer(&app).await.0, 200);
    }
}
