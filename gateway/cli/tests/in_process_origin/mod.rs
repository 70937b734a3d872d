//! A regional origin run inside the test process, for the end-to-end tests that put a
//! real gateway in front of it: its keys and `origin.toml` written to a directory, and the
//! app served on loopback.

use std::path::Path;
use std::sync::Arc;

/// The operator's bearer token.
pub const OPERATOR: &str = "operator-token-0123456789";
/// The token the gateway fetches bundles and sends decision events with.
pub const EDGE: &str = "edge-token-0123456789abcdef";

/// Write the keys (`keys/`, the bundle's public key as `keys/bundle.pub.pem`) and an
/// `origin.toml` for region `eu-west` on `port` into `dir`; with `template`, the region's
/// bundle template as `template.toml`. The loaded configuration.
pub fn origin_config(dir: &Path, port: u16, template: Option<&str>) -> gatehouse_origin::OriginConfig {
    let (pem, public) = gatehouse_bundler::keys::generate_bundle_keys();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/bundle.pem"), pem).unwrap();
    std::fs::write(dir.join("keys/bundle.pub.pem"), public).unwrap();
    std::fs::write(dir.join("keys/edge.tokens"), format!("gw {EDGE}\n")).unwrap();
    std::fs::write(dir.join("keys/operator.token"), OPERATOR).unwrap();
    std::fs::write(dir.join("keys/peer.token"), "peer-token-0123456789abcdef").unwrap();
    std::fs::write(dir.join("keys/apikey.secret"), "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==").unwrap();
    let bundle = match template {
        Some(t) => {
            std::fs::write(dir.join("template.toml"), t).unwrap();
            "[bundle]\ntemplate = \"template.toml\"\n"
        }
        None => "",
    };
    std::fs::write(
        dir.join("origin.toml"),
        format!(
            "region = \"eu-west\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndata_dir = \"data\"\n\
             {bundle}\
             [secrets]\nbundle_signing_key = \"keys/bundle.pem\"\nedge_tokens = \"keys/edge.tokens\"\noperator_token = \"keys/operator.token\"\n\
             peer_token = \"keys/peer.token\"\napi_key_secret = \"keys/apikey.secret\"\n[signin]\nargon2_memory_kib = 64\nargon2_iterations = 1\n"
        ),
    )
    .unwrap();
    gatehouse_origin::OriginConfig::load(&dir.join("origin.toml")).unwrap()
}

/// Start the origin in this process; dropping the sender stops it.
pub async fn start_origin(cfg: gatehouse_origin::OriginConfig) -> tokio::sync::oneshot::Sender<()> {
    let addr = cfg.listen;
    let app = Arc::new(gatehouse_origin::App::open(cfg).await.unwrap());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gatehouse_origin::api::serve(app, listener, async move {
        let _ = rx.await;
    }));
    tx
}
