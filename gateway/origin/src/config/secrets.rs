//! The secrets the configuration names, read from their files: the bundle-signing key,
//! the edge tokens, the operator and peer tokens, the API-key secret, the SSO sealing key,
//! and the storage backend's auth token (from the environment).

use anyhow::{anyhow, Context as _, Result};
use sha2::{Digest, Sha256};

use super::OriginConfig;
use crate::store::Backend;

/// SHA-256 of a secret, the form bearer tokens are compared in.
pub fn sha(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A secret file's trimmed text; at least 16 characters.
pub(crate) fn read_secret(p: &std::path::Path, what: &str) -> Result<String> {
    let t = std::fs::read_to_string(p).with_context(|| format!("{what}: cannot read {}", p.display()))?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(anyhow!("{what}: {} must hold a secret of at least 16 characters", p.display()));
    }
    Ok(t)
}

/// The loaded secrets of an origin (never logged).
pub struct Secrets {
    /// Ed25519 key that signs bundles.
    pub bundle_key: [u8; 64],
    /// Edge names and the SHA-256 of their tokens.
    pub edge_tokens: Vec<(String, [u8; 32])>,
    /// SHA-256 of the operator's token.
    pub operator_hash: [u8; 32],
    /// SHA-256 of the token peers send.
    pub peer_hash: [u8; 32],
    /// The token this origin sends to its peers.
    pub peer_token: String,
    /// The API-key HMAC secret.
    pub api_key_secret: Vec<u8>,
    /// The AES-256-GCM key that seals SSO client secrets.
    pub sso_key: [u8; 32],
    /// Key of the sign-in form's CSRF tokens (derived from the bundle-signing key, so
    /// forms survive a restart).
    pub csrf_key: [u8; 32],
}

/// Edge credentials: one `name token` pair per line (`#` comments, blank lines).
fn parse_edge_tokens(edge_text: &str) -> Result<Vec<(String, [u8; 32])>> {
    let mut edge_tokens = Vec::new();
    for (i, line) in edge_text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, token) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| anyhow!("secrets.edge_tokens line {}: expected `name token`", i + 1))?;
        if token.trim().len() < 16 {
            return Err(anyhow!("secrets.edge_tokens line {}: token shorter than 16 characters", i + 1));
        }
        edge_tokens.push((name.to_string(), sha(token.trim())));
    }
    Ok(edge_tokens)
}

/// A key derived from the bundle-signing key for one purpose (`label`).
fn derived_key(label: &[u8], bundle_key: &[u8; 64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(bundle_key);
    h.finalize().into()
}

impl Secrets {
    /// Read every secret file `cfg.secrets` names.
    pub fn load(cfg: &OriginConfig) -> Result<Secrets> {
        let bundle_key = gatehouse_bundler::keys::read_signing_key(&cfg.secrets.bundle_signing_key)
            .context("secrets.bundle_signing_key")?;
        let edge_text = std::fs::read_to_string(&cfg.secrets.edge_tokens)
            .with_context(|| format!("secrets.edge_tokens: cannot read {}", cfg.secrets.edge_tokens.display()))?;
        let edge_tokens = parse_edge_tokens(&edge_text)?;
        let operator_hash = sha(&read_secret(&cfg.secrets.operator_token, "secrets.operator_token")?);
        let peer_token = read_secret(&cfg.secrets.peer_token, "secrets.peer_token")?;
        let api_key_secret = gatehouse_core::secrets::decode_secret(&read_secret(
            &cfg.secrets.api_key_secret,
            "secrets.api_key_secret",
        )?)
        .map_err(|_| anyhow!("secrets.api_key_secret: must be base64 of at least 32 bytes"))?;
        let sso_key: [u8; 32] = match &cfg.secrets.sso_key {
            Some(p) => {
                use base64::Engine as _;
                let text = read_secret(p, "secrets.sso_key")?;
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .ok_or_else(|| anyhow!("secrets.sso_key: must be base64 of exactly 32 bytes"))?
            }
            None => derived_key(b"gatehouse sso secret key\0", &bundle_key),
        };
        Ok(Secrets {
            bundle_key,
            edge_tokens,
            operator_hash,
            peer_hash: sha(&peer_token),
            peer_token,
            api_key_secret,
            sso_key,
            csrf_key: derived_key(b"gatehouse sign-in form csrf\0", &bundle_key),
        })
    }
}

/// Where the databases live: embedded files, or replicas of a libSQL server whose auth
/// token is read from the environment variable the configuration names.
pub fn storage_backend(cfg: &OriginConfig) -> Result<Backend> {
    Ok(match &cfg.storage.remote {
        None => Backend::Local { synchronous: cfg.storage.synchronous.clone() },
        Some(r) => Backend::Remote {
            url: r.url.clone(),
            token: match &r.auth_token_env {
                Some(var) => {
                    std::env::var(var).map_err(|_| anyhow!("storage.remote.auth_token_env: `{var}` is not set"))?
                }
                None => String::new(),
            },
            sync: std::time::Duration::from_secs(r.sync_secs),
            admin: match &r.admin_url {
                Some(url) => {
                    let key = match &r.admin_auth_key_env {
                        Some(var) => Some(
                            std::env::var(var)
                                .map_err(|_| anyhow!("storage.remote.admin_auth_key_env: `{var}` is not set"))?,
                        ),
                        None => None,
                    };
                    let timeout = std::time::Duration::from_secs(r.admin_timeout_secs);
                    Some(crate::store::server::Admin::new(url, key, timeout))
                }
                None => None,
            },
        },
    })
}
