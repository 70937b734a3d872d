//! Directory replication between regions: this region's tenants pushed to its peers
//! and theirs pulled, over a small HTTP/1 client.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::OriginConfig;
use crate::identity::valid_slug;
use crate::store::{directory as tenants, Db};

/// One tenant of the directory, as regions exchange it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    id: String,
    slug: String,
    home_region: String,
    created_at: i64,
    /// Set for a deleted tenant: its tombstone (the receiver drops the entry for good).
    #[serde(default)]
    deleted_at: Option<i64>,
}

/// This region and the other regions' origins, with the token they share.
pub struct Peers {
    region: String,
    regions: BTreeMap<String, String>,
    token: String,
}

impl Peers {
    /// The peers `cfg` names.
    pub fn new(cfg: &OriginConfig, token: String) -> Peers {
        Peers { region: cfg.region.clone(), regions: cfg.regions.clone(), token }
    }

    /// The other regions and their origin URLs.
    fn others(&self) -> impl Iterator<Item = (&String, &String)> {
        self.regions.iter().filter(move |(r, _)| **r != self.region)
    }

    /// Tell the other regions about new tenants of this one (best effort; they also pull).
    pub async fn push(&self, entries: &[(String, String, String, i64)]) {
        let tenants: Vec<Value> = entries
            .iter()
            .map(|(id, slug, home, at)| json!({ "id": id, "slug": slug, "home_region": home, "created_at": at }))
            .collect();
        for (region, url) in self.others() {
            let body = json!({ "region": self.region, "tenants": tenants });
            if let Err(e) = http_json("POST", &format!("{url}/v1/directory"), &self.token, Some(body)).await {
                tracing::warn!(region = %region, error = %e, "directory push failed; the peer will pull it");
            }
        }
    }

    /// Tell the other regions that a tenant of this one was deleted (best effort; they
    /// also pull the tombstones).
    pub async fn push_tombstone(&self, e: &tenants::TenantEntry, deleted_at: i64) {
        let t = json!({ "id": e.id, "slug": e.slug, "home_region": e.home_region, "created_at": e.created_at,
            "deleted_at": deleted_at });
        for (region, url) in self.others() {
            let body = json!({ "region": self.region, "tenants": [t.clone()] });
            if let Err(e) = http_json("POST", &format!("{url}/v1/directory"), &self.token, Some(body)).await {
                tracing::warn!(region = %region, error = %e, "tombstone push failed; the peer will pull it");
            }
        }
    }

    /// Pull the other regions' directory entries into `directory` now and every 30
    /// seconds.
    pub async fn pull_loop(&self, directory: &Db) {
        loop {
            for (region, url) in self.others() {
                match http_json("GET", &format!("{url}/v1/directory"), &self.token, None).await {
                    Ok(v) => {
                        let entries: Vec<DirectoryEntry> =
                            serde_json::from_value(v["tenants"].clone()).unwrap_or_default();
                        if let Err(e) = self.upsert(directory, region, &entries).await {
                            tracing::warn!(region = %region, error = %e, "directory pull: store failed");
                        }
                    }
                    Err(e) => tracing::debug!(region = %region, error = %e, "directory pull failed"),
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
    }

    /// Store the entries region `from` sent; a region speaks only for its own tenants and
    /// nobody overrides this region's. How many rows changed.
    pub async fn upsert(&self, directory: &Db, from: &str, entries: &[DirectoryEntry]) -> Result<usize> {
        let d = directory.lock().await;
        let mut n = 0;
        for e in entries {
            if e.home_region != from || from == self.region || !crate::store::valid_id(&e.id) || !valid_slug(&e.slug) {
                continue;
            }
            let entry = tenants::TenantEntry {
                id: e.id.clone(),
                slug: e.slug.clone(),
                home_region: e.home_region.clone(),
                created_at: e.created_at,
            };
            n += match e.deleted_at {
                Some(at) => tenants::tombstone_from_peer(&d, &entry, at).await?,
                None => tenants::upsert_from_peer(&d, &entry).await?,
            };
        }
        Ok(n as usize)
    }

    /// The directory entries homed in this region, and the tombstones of its deleted
    /// tenants.
    pub async fn local(&self, directory: &Db) -> Result<Vec<Value>> {
        let d = directory.lock().await;
        let mut out: Vec<Value> = tenants::homed_in(&d, &self.region)
            .await?
            .into_iter()
            .map(|e| json!({ "id": e.id, "slug": e.slug, "home_region": e.home_region, "created_at": e.created_at }))
            .collect();
        for (e, at) in tenants::tombstones_homed_in(&d, &self.region).await? {
            out.push(json!({ "id": e.id, "slug": e.slug, "home_region": e.home_region, "created_at": e.created_at,
                "deleted_at": at }));
        }
        Ok(out)
    }
}

/// One JSON request to a peer origin (plain HTTP/1, bounded in time and size).
async fn http_json(method: &str, url: &str, token: &str, body: Option<Value>) -> Result<Value> {
    use http_body_util::BodyExt;
    let uri: axum::http::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow!("no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream =
        tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect((host.as_str(), port)))
            .await??;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", format!("{host}:{port}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(axum::body::Bytes::from(body)))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), send.send_request(req)).await??;
    let status = resp.status();
    let bytes = http_body_util::Limited::new(resp.into_body(), 16 << 20)
        .collect()
        .await
        .map_err(|e| anyhow::Error::from_boxed(e).context(format!("{url}: read the body")))?
        .to_bytes();
    if !status.is_success() {
        return Err(anyhow!("{url}: HTTP {status}"));
    }
    Ok(serde_json::from_slice(&bytes)?)
}
