//! PLACEHOLDER (groundwork): the http protocol of the authorization service; its helper replaces this file.

use std::sync::Arc;
use std::time::Duration;

use crate::gateway::Gateway;

/// Serve checks on `listener` until `shutdown` turns true, then drain for at most `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let _ = (listener, gateway, shutdown, drain);
    tracing::error!("the http authorization listener is not built yet");
}
