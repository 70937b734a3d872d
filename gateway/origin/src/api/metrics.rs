//! `GET /metrics`: the origin's Prometheus metrics ([`crate::metrics`]).
//!
//! - On the API listener: for the operator's token, or the scrape token of
//!   `[metrics] token_file` (compared in constant time).
//! - On the metrics listener (`[metrics] listen`, [`serve_listener`]): `/metrics`,
//!   `/healthz` and `/readyz`; `/metrics` asks for the scrape token when one is
//!   configured, nothing otherwise (the listener is meant for a private network).
//!
//! The gauges of state (open tenant databases, each sink's lag) are read when scraped.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::{ApiError, ApiResult};
use crate::sinks::cursors;

use crate::api::app::App;
use crate::api::extract::{bearer, require_operator, AppState};
use crate::api::health;

/// The text exposition format (operator token or scrape token).
pub(crate) async fn metrics(State(app): AppState, headers: HeaderMap) -> ApiResult<Response> {
    if !bearer(&headers).is_some_and(|t| app.metrics.is_scrape_token(t)) {
        require_operator(&app, &headers)?;
    }
    Ok(exposition(&app).await)
}

/// `/metrics` of the metrics listener: the scrape token when one is configured.
async fn listener_metrics(State(app): AppState, headers: HeaderMap) -> ApiResult<Response> {
    if app.metrics.has_scrape_token() {
        let token = bearer(&headers)
            .ok_or_else(|| ApiError::unauthorized("credential_missing", "the scrape token is required"))?;
        if !app.metrics.is_scrape_token(token) {
            return Err(ApiError::forbidden("scrape_token_invalid", "not the scrape token"));
        }
    }
    Ok(exposition(&app).await)
}

async fn exposition(app: &App) -> Response {
    observe(app).await;
    ([("content-type", "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

/// Set the gauges of state: open tenant databases, and each sink's lag in records (from
/// the cursors and the tenants' audit heads) and in seconds (since its last accepted
/// delivery, or since the origin started, while records wait; 0 once caught up).
pub(crate) async fn observe(app: &App) {
    let m = &app.metrics;
    m.open_tenant_databases.set(app.store.open_tenants() as i64);
    if app.sinks.all().is_empty() {
        return;
    }
    let now = crate::now();
    let d = app.store.directory.lock().await;
    for sink in app.sinks.all() {
        let name = sink.name();
        match cursors::lag(&d, name, &app.cfg.region).await {
            Ok(records) => {
                let since = sink.status().last_success_at.unwrap_or(m.started_at());
                let seconds = if records > 0 { (now - since).max(0) } else { 0 };
                m.sink_lag_records.with_label_values(&[name]).set(records);
                m.sink_lag_seconds.with_label_values(&[name]).set(seconds);
            }
            Err(e) => tracing::warn!(sink = name, error = %e, "sink lag not read"),
        }
    }
}

/// The metrics listener's routes.
pub(crate) fn listener_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(listener_metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async {
            ApiError::NoRoute { status: axum::http::StatusCode::NOT_FOUND, message: "no such route" }
        })
        .with_state(app)
}

/// Serve the metrics listener on `listener` until the task is aborted.
pub(crate) async fn serve_listener(app: Arc<App>, listener: tokio::net::TcpListener) {
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "origin metrics listening");
    let served = axum::serve(listener, listener_router(app).into_make_service_with_connect_info::<SocketAddr>()).await;
    if let Err(e) = served {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::health::tests::test_app;
    use axum::http::HeaderValue;

    fn with_bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        h
    }

    async fn text(r: Response) -> String {
        String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_scrape_token_or_the_operator_reads_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.token"), "scrape-token-0123456789\n").unwrap();
        let app = test_app(dir.path(), "[metrics]\ntoken_file = \"metrics.token\"\n").await;
        let scraped = metrics(State(app.clone()), with_bearer("scrape-token-0123456789")).await.unwrap();
        let body = text(scraped).await;
        assert!(body.contains("gatehouse_origin_build_info{region=\"eu-west\",version="), "{body}");
        assert!(body.contains("gatehouse_origin_open_tenant_databases 0"), "{body}");
        assert!(metrics(State(app.clone()), with_bearer("operator-token-0123456789")).await.is_ok());
        let refused = metrics(State(app.clone()), with_bearer("scrape-token-wrong")).await.unwrap_err();
        assert_eq!(refused.code(), "operator_only");
        assert_eq!(metrics(State(app.clone()), HeaderMap::new()).await.unwrap_err().code(), "credential_missing");
        // The metrics listener asks for the scrape token, and only it.
        assert!(listener_metrics(State(app.clone()), with_bearer("scrape-token-0123456789")).await.is_ok());
        let e = listener_metrics(State(app.clone()), with_bearer("operator-token-0123456789")).await.unwrap_err();
        assert_eq!(e.code(), "scrape_token_invalid");
        assert_eq!(listener_metrics(State(app), HeaderMap::new()).await.unwrap_err().code(), "credential_missing");
    }

    #[tokio::test]
    async fn without_a_scrape_token_the_listener_is_open_and_the_api_is_the_operators() {
        let dir = tempfile::tempdir().unwrap();
        let app = test_app(dir.path(), "").await;
        let body = text(listener_metrics(State(app.clone()), HeaderMap::new()).await.unwrap()).await;
        assert!(body.contains("gatehouse_origin_build_info{region=\"eu-west\""), "{body}");
        assert_eq!(metrics(State(app), with_bearer("anything-at-all-here")).await.unwrap_err().code(), "operator_only");
    }
}
