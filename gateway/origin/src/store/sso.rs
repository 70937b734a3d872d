//! Single sign-on storage: connections (`sso_connections`, the config as JSON and the
//! sealed secret), sign-in transactions (`sso_transactions`, single use), the provider
//! subjects linked to users (`sso_identities`) and the SAML replay cache
//! (`saml_assertions`).

use libsql::Connection;

use super::{all_rows, exists, first_row};

/// A stored connection: its config (JSON) and sealed secret.
#[derive(Debug, Clone)]
pub struct StoredConnection {
    /// The connection, JSON.
    pub config: String,
    /// The sealed client secret or SP key.
    pub secret: Option<Vec<u8>>,
}

/// Connection `id`.
pub async fn load(conn: &Connection, id: &str) -> libsql::Result<Option<StoredConnection>> {
    first_row(conn, "SELECT config, secret FROM sso_connections WHERE id = ?1", [id], |r| {
        Ok(StoredConnection { config: r.get(0)?, secret: r.get(1)? })
    })
    .await
}

/// A connection as listed: its config (JSON) and whether it has a secret.
#[derive(Debug, Clone)]
pub struct ListedConnection {
    /// The connection, JSON.
    pub config: String,
    /// Whether a sealed secret is stored.
    pub has_secret: bool,
}

/// One page of connections by id after `after`.
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<ListedConnection>> {
    all_rows(
        conn,
        "SELECT config, secret IS NOT NULL FROM sso_connections WHERE id > ?1 ORDER BY id LIMIT ?2",
        libsql::params![after, limit],
        |r| Ok(ListedConnection { config: r.get(0)?, has_secret: r.get::<i64>(1)? != 0 }),
    )
    .await
}

/// How many connections the organisation has.
pub async fn count(conn: &Connection) -> libsql::Result<i64> {
    Ok(first_row(conn, "SELECT COUNT(*) FROM sso_connections", (), |r| r.get(0)).await?.unwrap_or(0))
}

/// A connection to write.
#[derive(Debug, Clone)]
pub struct ConnectionWrite<'a> {
    /// Id (`c_…`).
    pub id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// `oidc`, `oauth2` or `saml`.
    pub protocol: &'a str,
    /// The connection, JSON.
    pub config: &'a str,
    /// The sealed secret.
    pub secret: Option<&'a [u8]>,
    /// Offered at sign-in.
    pub enabled: bool,
    /// Unix seconds (creation, or this update).
    pub at: i64,
}

/// Insert a connection.
pub async fn insert(conn: &Connection, c: &ConnectionWrite<'_>) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO sso_connections (id, name, protocol, config, secret, enabled, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        libsql::params![c.id, c.name, c.protocol, c.config, c.secret.map(<[u8]>::to_vec), c.enabled as i64, c.at],
    )
    .await?;
    Ok(())
}

/// Replace connection `c.id`.
pub async fn update(conn: &Connection, c: &ConnectionWrite<'_>) -> libsql::Result<()> {
    conn.execute(
        "UPDATE sso_connections SET name = ?2, protocol = ?3, config = ?4, secret = ?5, enabled = ?6, updated_at = ?7
         WHERE id = ?1",
        libsql::params![c.id, c.name, c.protocol, c.config, c.secret.map(<[u8]>::to_vec), c.enabled as i64, c.at],
    )
    .await?;
    Ok(())
}

/// Delete connection `id` with its identity links and sign-ins in progress.
pub async fn delete(conn: &Connection, id: &str) -> libsql::Result<()> {
    conn.execute("DELETE FROM sso_connections WHERE id = ?1", [id]).await?;
    unlink_all(conn, id).await?;
    conn.execute("DELETE FROM sso_transactions WHERE connection_id = ?1", [id]).await?;
    Ok(())
}

/// `(id, name)` of the enabled connections, by name.
pub async fn enabled(conn: &Connection) -> libsql::Result<Vec<(String, String)>> {
    all_rows(conn, "SELECT id, name FROM sso_connections WHERE enabled = 1 ORDER BY name, id", (), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .await
}

/// The configs (JSON) of the enabled connections, by id.
pub async fn enabled_configs(conn: &Connection) -> libsql::Result<Vec<String>> {
    all_rows(conn, "SELECT config FROM sso_connections WHERE enabled = 1 ORDER BY id", (), |r| r.get(0)).await
}

/// The user linked to `subject` at `connection`.
pub async fn linked_user(conn: &Connection, connection: &str, subject: &str) -> libsql::Result<Option<String>> {
    first_row(
        conn,
        "SELECT user_id FROM sso_identities WHERE connection_id = ?1 AND subject = ?2",
        [connection, subject],
        |r| r.get(0),
    )
    .await
}

/// Link `subject` at `connection` to `user`.
pub async fn link(conn: &Connection, connection: &str, subject: &str, user: &str, now: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO sso_identities (connection_id, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        libsql::params![connection, subject, user, now],
    )
    .await?;
    Ok(())
}

/// Drop every subject linked through `connection`.
pub async fn unlink_all(conn: &Connection, connection: &str) -> libsql::Result<()> {
    conn.execute("DELETE FROM sso_identities WHERE connection_id = ?1", [connection]).await?;
    Ok(())
}

/// A sign-in transaction to store.
#[derive(Debug, Clone)]
pub struct NewTransaction<'a> {
    /// SHA-256 of the `state` (hex).
    pub id: &'a str,
    /// Connection.
    pub connection_id: &'a str,
    /// OIDC nonce, or the SAML request id.
    pub nonce: &'a str,
    /// PKCE verifier (empty for SAML).
    pub verifier: &'a str,
    /// Where the browser goes afterwards.
    pub return_to: &'a str,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Store a sign-in transaction, first dropping those expired at `now`.
pub async fn begin_transaction(conn: &Connection, t: &NewTransaction<'_>, now: i64) -> libsql::Result<()> {
    conn.execute("DELETE FROM sso_transactions WHERE expires_at <= ?1", [now]).await?;
    conn.execute(
        "INSERT INTO sso_transactions (id, connection_id, nonce, verifier, return_to, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        libsql::params![t.id, t.connection_id, t.nonce, t.verifier, t.return_to, t.expires_at],
    )
    .await?;
    Ok(())
}

/// A stored sign-in transaction.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Connection.
    pub connection_id: String,
    /// OIDC nonce, or the SAML request id.
    pub nonce: String,
    /// PKCE verifier (`None` where not read: SAML).
    pub verifier: Option<String>,
    /// Where the browser goes afterwards.
    pub return_to: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Take (read and delete) transaction `id`: single use.
pub async fn take_transaction(conn: &Connection, id: &str) -> libsql::Result<Option<Transaction>> {
    first_row(
        conn,
        "DELETE FROM sso_transactions WHERE id = ?1
                 RETURNING connection_id, nonce, verifier, return_to, expires_at",
        [id],
        |r| {
            Ok(Transaction {
                connection_id: r.get(0)?,
                nonce: r.get(1)?,
                verifier: Some(r.get(2)?),
                return_to: r.get(3)?,
                expires_at: r.get(4)?,
            })
        },
    )
    .await
}

/// Read transaction `id` without taking it (SAML: taken after the response verifies).
pub async fn peek_transaction(conn: &Connection, id: &str) -> libsql::Result<Option<Transaction>> {
    first_row(
        conn,
        "SELECT connection_id, nonce, return_to, expires_at FROM sso_transactions WHERE id = ?1",
        [id],
        |r| {
            Ok(Transaction {
                connection_id: r.get(0)?,
                nonce: r.get(1)?,
                verifier: None,
                return_to: r.get(2)?,
                expires_at: r.get(3)?,
            })
        },
    )
    .await
}

/// Delete transaction `id`; how many went (0: already used).
pub async fn end_transaction(conn: &Connection, id: &str) -> libsql::Result<u64> {
    conn.execute("DELETE FROM sso_transactions WHERE id = ?1", [id]).await
}

/// Whether SAML assertion `id` was used already.
pub async fn assertion_seen(conn: &Connection, id: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT 1 FROM saml_assertions WHERE id = ?1", [id]).await
}

/// Note SAML assertion `id` as used (first dropping those expired at `now`); false if it
/// was used already.
pub async fn use_assertion(conn: &Connection, id: &str, now: i64, expires_at: i64) -> libsql::Result<bool> {
    conn.execute("DELETE FROM saml_assertions WHERE expires_at <= ?1", [now]).await?;
    let fresh = conn
        .execute(
            "INSERT INTO saml_assertions (id, expires_at) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
            libsql::params![id, expires_at],
        )
        .await?;
    Ok(fresh != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn transactions_are_single_use_and_assertions_replay_once() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let t = |id, expires_at| NewTransaction {
            id,
            connection_id: "c_1",
            nonce: "n",
            verifier: "v",
            return_to: "",
            expires_at,
        };
        begin_transaction(&h, &t("old", 10), 5).await.unwrap();
        begin_transaction(&h, &t("new", 100), 20).await.unwrap();
        assert!(peek_transaction(&h, "old").await.unwrap().is_none(), "expired ones are dropped");
        let peeked = peek_transaction(&h, "new").await.unwrap().unwrap();
        assert_eq!((peeked.nonce.as_str(), peeked.verifier), ("n", None));
        let taken = take_transaction(&h, "new").await.unwrap().unwrap();
        assert_eq!(taken.verifier.as_deref(), Some("v"));
        assert!(take_transaction(&h, "new").await.unwrap().is_none(), "single use");
        assert_eq!(end_transaction(&h, "new").await.unwrap(), 0);
        assert!(use_assertion(&h, "a1", 0, 50).await.unwrap());
        assert!(!use_assertion(&h, "a1", 10, 60).await.unwrap(), "replayed");
        assert!(assertion_seen(&h, "a1").await.unwrap());
        assert!(use_assertion(&h, "a1", 50, 90).await.unwrap(), "expired entries are dropped first");
        let w = ConnectionWrite {
            id: "c_1",
            name: "Okta",
            protocol: "oidc",
            config: "{}",
            secret: Some(b"s"),
            enabled: true,
            at: 1,
        };
        insert(&h, &w).await.unwrap();
        assert_eq!(count(&h).await.unwrap(), 1);
        assert_eq!(enabled(&h).await.unwrap(), [("c_1".to_string(), "Okta".to_string())]);
        assert!(page(&h, "", 10).await.unwrap()[0].has_secret);
        update(&h, &ConnectionWrite { enabled: false, secret: None, ..w }).await.unwrap();
        assert!(enabled(&h).await.unwrap().is_empty());
        assert_eq!(load(&h, "c_1").await.unwrap().unwrap().secret, None);
        delete(&h, "c_1").await.unwrap();
        assert!(load(&h, "c_1").await.unwrap().is_none());
    }
}
