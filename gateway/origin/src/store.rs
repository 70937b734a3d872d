//! Storage: libSQL databases under the region's data directory.
//!
//! - `directory.db`: the tenant directory (id, slug, home region; no personal data), the
//!   region's token-signing keys, audit heads and edge batch ids.
//! - `tenants/{id}.db`: one database per tenant homed in this region — its users,
//!   memberships, sessions, API keys and audit log. A tenant homed elsewhere never gets a
//!   file here.
//!
//! Migrations are versioned (`schema_version`) and run when a database is opened. Open
//! tenant databases are kept in a bounded LRU, so 10,000 tenants do not mean 10,000 open
//! files; a database in use stays open until its last user lets go.

use std::num::NonZeroUsize;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _, Result};
use libsql::{Connection, Database};

/// Versioned schema of the directory database.
const DIRECTORY_MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        home_region TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        private_pem TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
     );
     CREATE TABLE audit_heads (
        tenant_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE edge_batches (
        id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL
     );",
    // 2: region settings (the policy template set through the API)
    "CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
     );",
];

/// Versioned schema of a tenant database.
const TENANT_MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE org (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        tenant_id TEXT NOT NULL,
        slug TEXT NOT NULL,
        name TEXT NOT NULL,
        tier TEXT NOT NULL,
        policy TEXT NOT NULL DEFAULT '{}',
        retention_days INTEGER,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        password_hash TEXT,
        failed_count INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE roles (
        name TEXT PRIMARY KEY,
        permissions TEXT NOT NULL
     );
     CREATE TABLE memberships (
        user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        expires_at INTEGER
     );
     CREATE TABLE teams (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        parent_id TEXT REFERENCES teams(id)
     );
     CREATE TABLE team_members (
        team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (team_id, user_id)
     );
     CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        amr TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
     );
     CREATE TABLE refresh_tokens (
        hash TEXT PRIMARY KEY,
        family TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
     );
     CREATE INDEX refresh_family ON refresh_tokens(family);
     CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
     );
     CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        roles TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
     );
     CREATE TABLE reset_tokens (
        hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
     );
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT,
        ip TEXT,
        user_agent TEXT,
        request_id TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE legal_holds (
        id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        from_at INTEGER NOT NULL,
        until_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE edge_events (
        id TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL,
        route TEXT,
        ip TEXT,
        request_id TEXT
     );",
    // 2: single sign-on. Connections (client secrets and SP keys sealed with
    // AES-256-GCM), sign-in transactions (single use, short-lived), the IdP subjects linked
    // to users, the SAML assertion replay cache, and the organisation's enforcement
    // setting.
    "CREATE TABLE sso_connections (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        protocol TEXT NOT NULL,
        config TEXT NOT NULL,
        secret BLOB,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );
     CREATE TABLE sso_transactions (
        id TEXT PRIMARY KEY,
        connection_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        verifier TEXT NOT NULL,
        return_to TEXT NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE TABLE sso_identities (
        connection_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (connection_id, subject)
     );
     CREATE TABLE saml_assertions (
        id TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
     );
     ALTER TABLE org ADD COLUMN enforce_sso INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE org ADD COLUMN break_glass TEXT;
     ALTER TABLE sessions ADD COLUMN idp TEXT;",
];

/// One open database. Writers take [`Db::lock`] so that a tenant's transactions run one
/// at a time (SQLite allows one writer anyway; this keeps waiting in the async world).
pub struct Db {
    conn: Connection,
    _db: Database,
    lock: tokio::sync::Mutex<()>,
}

/// A database held for a transaction or a sequence of statements.
pub struct Held<'a> {
    db: &'a Db,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl Deref for Held<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.db.conn
    }
}

/// Where databases live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Embedded files; `synchronous` is `normal` or `full`.
    Local {
        /// SQLite `synchronous`.
        synchronous: String,
    },
    /// Embedded replicas of databases on a libSQL server (sqld / Turso): reads from the
    /// local replica file, writes forwarded to the primary, synced in the background and
    /// read-your-writes for this origin.
    Remote {
        /// URL with `{db}` for the database name.
        url: String,
        /// Auth token.
        token: String,
        /// Background sync period.
        sync: std::time::Duration,
    },
}

impl Db {
    async fn open(path: &Path, backend: &Backend, name: &str, migrations: &[&str]) -> Result<Db> {
        let (db, synchronous) = match backend {
            Backend::Local { synchronous } => (
                libsql::Builder::new_local(path)
                    .build()
                    .await
                    .with_context(|| format!("open database {}", path.display()))?,
                Some(synchronous.as_str()),
            ),
            Backend::Remote { url, token, sync } => {
                (open_replica(path, &url.replace("{db}", name), token, *sync).await?, None)
            }
        };
        let conn = db.connect()?;
        let Some(synchronous) = synchronous else {
            // A replica's journal is the replication log: no pragmas on it.
            let d = Db { conn, _db: db, lock: tokio::sync::Mutex::new(()) };
            d.migrate(migrations).await.with_context(|| format!("migrate {name}"))?;
            return Ok(d);
        };
        // WAL: readers do not block the writer; `synchronous` decides what a crash of
        // the machine (not only of the process) may lose.
        conn.query("PRAGMA journal_mode=WAL", ()).await?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;"
        ))
        .await?;
        let d = Db { conn, _db: db, lock: tokio::sync::Mutex::new(()) };
        d.migrate(migrations).await.with_context(|| format!("migrate {}", path.display()))?;
        Ok(d)
    }

    async fn migrate(&self, migrations: &[&str]) -> Result<()> {
        let h = self.lock().await;
        h.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", ()).await?;
        let mut rows = h.query("SELECT COALESCE(MAX(version), 0) FROM schema_version", ()).await?;
        let current: i64 = match rows.next().await? {
            Some(r) => r.get(0)?,
            None => 0,
        };
        drop(rows);
        if current as usize > migrations.len() {
            bail!("schema version {current} is newer than this build knows ({})", migrations.len());
        }
        for (i, m) in migrations.iter().enumerate().skip(current as usize) {
            h.execute("BEGIN IMMEDIATE", ()).await?;
            let step = async {
                h.execute_batch(m).await?;
                h.execute("INSERT INTO schema_version (version) VALUES (?1)", [i as i64 + 1]).await?;
                anyhow::Ok(())
            };
            match step.await {
                Ok(()) => {
                    h.execute("COMMIT", ()).await?;
                }
                Err(e) => {
                    let _ = h.execute("ROLLBACK", ()).await;
                    return Err(e.context(format!("migration {}", i + 1)));
                }
            }
        }
        Ok(())
    }

    /// Pull the primary's changes into the replica now (remote backend; a no-op for
    /// embedded files).
    pub async fn sync(&self) -> Result<()> {
        #[cfg(feature = "remote-replica")]
        if let Ok(r) = self._db.sync().await {
            tracing::debug!(frame = ?r.frame_no(), "replica synced");
        }
        Ok(())
    }

    /// Hold the database (for a transaction: `BEGIN IMMEDIATE` … `COMMIT`). A
    /// transaction that its holder abandoned (an error returned before `COMMIT`) is
    /// rolled back here, before anybody else reads.
    pub async fn lock(&self) -> Held<'_> {
        let held = Held { db: self, _guard: self.lock.lock().await };
        if !held.is_autocommit() {
            if let Err(e) = held.execute("ROLLBACK", ()).await {
                tracing::error!(error = %e, "rollback of an abandoned transaction failed");
            }
        }
        held
    }
}

#[cfg(feature = "remote-replica")]
async fn open_replica(path: &Path, url: &str, token: &str, sync: std::time::Duration) -> Result<Database> {
    libsql::Builder::new_remote_replica(path, url.to_string(), token.to_string())
        .sync_interval(sync)
        .read_your_writes(true)
        .build()
        .await
        .with_context(|| format!("open replica {} of {url}", path.display()))
}

#[cfg(not(feature = "remote-replica"))]
async fn open_replica(_: &Path, _: &str, _: &str, _: std::time::Duration) -> Result<Database> {
    bail!("this build has no libSQL server support (build with --features remote-replica)")
}

/// The region's databases.
pub struct Store {
    root: PathBuf,
    backend: Backend,
    /// The directory database.
    pub directory: Db,
    open: Mutex<lru::LruCache<String, Arc<Db>>>,
}

impl Store {
    /// Open (creating) the region's storage under `root`.
    pub async fn open(root: &Path, backend: Backend, max_open: usize) -> Result<Store> {
        std::fs::create_dir_all(root.join("tenants")).with_context(|| format!("create {}", root.display()))?;
        let directory = Db::open(&root.join("directory.db"), &backend, "directory", DIRECTORY_MIGRATIONS).await?;
        let cap = NonZeroUsize::new(max_open.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Store { root: root.to_path_buf(), backend, directory, open: Mutex::new(lru::LruCache::new(cap)) })
    }

    /// The file of tenant `id`'s database.
    pub fn tenant_path(&self, id: &str) -> PathBuf {
        self.root.join("tenants").join(format!("{id}.db"))
    }

    /// The database of tenant `id`. `create`: make it if missing (only when the tenant
    /// is created in its home region).
    pub async fn tenant(&self, id: &str, create: bool) -> Result<Arc<Db>> {
        if !valid_id(id) {
            bail!("invalid tenant id");
        }
        if let Some(db) = self.open.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(db.clone());
        }
        let path = self.tenant_path(id);
        // With a server behind the replicas a tenant's replica file may not exist yet on
        // this host; the directory (checked by the caller) says the tenant is ours.
        if !create && !path.exists() && matches!(self.backend, Backend::Local { .. }) {
            bail!("tenant {id} has no database in this region");
        }
        let db = Arc::new(Db::open(&path, &self.backend, id, TENANT_MIGRATIONS).await?);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // Another task may have opened it meanwhile: keep one handle.
        if let Some(existing) = open.get(id) {
            return Ok(existing.clone());
        }
        open.put(id.to_string(), db.clone());
        Ok(db)
    }

    /// Tenant databases open right now.
    pub fn open_tenants(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Tenant ids are generated (`t_` + hex); anything else never reaches the file system.
pub fn valid_id(id: &str) -> bool {
    id.len() <= 40 && id.starts_with("t_") && id[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A column type [`one`] can read.
pub trait Column: Sized {
    /// Convert a value.
    fn from_value(v: libsql::Value) -> Result<Self>;
}

impl Column for i64 {
    fn from_value(v: libsql::Value) -> Result<Self> {
        match v {
            libsql::Value::Integer(i) => Ok(i),
            other => bail!("expected an integer, found {other:?}"),
        }
    }
}

impl Column for String {
    fn from_value(v: libsql::Value) -> Result<Self> {
        match v {
            libsql::Value::Text(s) => Ok(s),
            _ => bail!("expected text"),
        }
    }
}

/// Read the first column of the first row, if there is a row (and the value is not NULL).
pub async fn one<T: Column>(
    conn: &Connection,
    sql: &str,
    params: impl libsql::params::IntoParams,
) -> Result<Option<T>> {
    let mut rows = conn.query(sql, params).await?;
    match rows.next().await? {
        Some(r) => match r.get_value(0)? {
            libsql::Value::Null => Ok(None),
            v => Ok(Some(T::from_value(v)?)),
        },
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_run_once_and_the_lru_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 2).await.unwrap();
        for i in 0..5 {
            let db = s.tenant(&format!("t_{i:02x}"), true).await.unwrap();
            let h = db.lock().await;
            let v: i64 = one(&h, "SELECT MAX(version) FROM schema_version", ()).await.unwrap().unwrap();
            assert_eq!(v as usize, TENANT_MIGRATIONS.len());
        }
        assert_eq!(s.open_tenants(), 2);
        // Reopening runs no migration twice.
        drop(s);
        let s = Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 2).await.unwrap();
        let db = s.tenant("t_00", false).await.unwrap();
        let n: i64 = one(&*db.lock().await, "SELECT COUNT(*) FROM schema_version", ()).await.unwrap().unwrap();
        assert_eq!(n as usize, TENANT_MIGRATIONS.len());
        assert!(s.tenant("t_99", false).await.is_err(), "no file is created without `create`");
        assert!(!s.tenant_path("t_99").exists());
        assert!(s.tenant("../etc", true).await.is_err());
    }
}
