//! The region's token-signing keys (`signing_keys` in the directory database).

use libsql::Connection;

use super::{all_rows, exists};

/// A stored key.
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// Key id.
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// Private key, PEM.
    pub private_pem: String,
    /// Public key, JWK JSON.
    pub public_jwk: String,
    /// When it stops being published (`None`: it signs).
    pub retired_at: Option<i64>,
}

/// Whether a key is not retired.
pub async fn any_active(conn: &Connection) -> libsql::Result<bool> {
    exists(conn, "SELECT kid FROM signing_keys WHERE retired_at IS NULL LIMIT 1", ()).await
}

/// The keys still published at `now`, newest first.
pub async fn published(conn: &Connection, now: i64) -> libsql::Result<Vec<KeyRow>> {
    all_rows(
        conn,
        "SELECT kid, alg, private_pem, public_jwk, retired_at FROM signing_keys
                 WHERE retired_at IS NULL OR retired_at > ?1 ORDER BY created_at DESC, kid",
        [now],
        |r| {
            Ok(KeyRow {
                kid: r.get(0)?,
                alg: r.get(1)?,
                private_pem: r.get(2)?,
                public_jwk: r.get(3)?,
                retired_at: r.get(4)?,
            })
        },
    )
    .await
}

/// Insert a new (signing) key.
pub async fn insert(conn: &Connection, kid: &str, alg: &str, pem: &str, jwk: &str, now: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO signing_keys (kid, alg, private_pem, public_jwk, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        libsql::params![kid, alg, pem, jwk, now],
    )
    .await?;
    Ok(())
}

/// Retire every active key as of `at` (published until then).
pub async fn retire_active(conn: &Connection, at: i64) -> libsql::Result<()> {
    conn.execute("UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL", [at]).await?;
    Ok(())
}
