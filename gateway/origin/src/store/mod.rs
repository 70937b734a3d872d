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
//!
//! The SQL lives here, one module per aggregate, next to the migrations of its tables
//! ([`migrations`]); the rest of the crate calls typed functions and reads row structs.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _, Result};
use libsql::{Connection, Database, Row};

pub use audit_file::AuditFile;

pub mod api_keys;
pub mod audit;
pub mod audit_file;
pub mod directory;
pub mod edge_events;
pub mod factors;
pub mod hierarchy;
pub mod holds;
pub mod impersonations;
pub mod invitations;
pub mod memberships;
pub(crate) mod migrations;
pub mod operator_audit;
pub mod orgs;
pub mod person;
pub mod refresh_tokens;
pub mod reset_tokens;
pub mod retention;
pub mod revoked_tokens;
pub mod role_templates;
pub mod roles;
pub mod server;
pub mod sessions;
pub mod settings;
pub mod signing_keys;
pub mod sso;
pub mod subject_keys;
pub mod teams;
pub mod templates;
pub mod usage;
pub mod users;
pub mod verifications;

/// One open database. Writers take [`Db::lock`] so that a tenant's transactions run one
/// at a time (SQLite allows one writer anyway; this keeps waiting in the async world).
pub struct Db {
    /// Replaced by a fresh connection when a replica's is stuck in a transaction that
    /// its server lost ([`Db::lock`]).
    conn: Mutex<Connection>,
    _db: Database,
    lock: tokio::sync::Mutex<()>,
    /// A replica of a libSQL server (not an embedded file).
    replica: bool,
}

/// A database held for a transaction or a sequence of statements.
pub struct Held<'a> {
    conn: Connection,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl Deref for Held<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
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
    /// read-your-writes for this origin. Each database is one namespace on the server
    /// ([`server::namespace`]).
    Remote {
        /// The server's URL; `{db}`, if present, is replaced by the namespace (a database
        /// per host name, e.g. Turso); without it the namespace is sent in a header (sqld
        /// `--enable-namespaces`).
        url: String,
        /// Auth token.
        token: String,
        /// Background sync period.
        sync: std::time::Duration,
        /// The server's admin API: tenants' namespaces are created and deleted through it.
        /// `None`: the operator provisions the databases, and a tenant cannot be deleted
        /// from here.
        admin: Option<server::Admin>,
    },
}

impl Db {
    /// Open (creating) the database at `path` and migrate it; `audit`: a tenant's audit
    /// file and where its log lives ([`audit_file`]).
    async fn open(
        path: &Path,
        backend: &Backend,
        name: &str,
        migrations: &[&str],
        audit: Option<(&Path, AuditFile)>,
    ) -> Result<Db> {
        let (db, synchronous) = match backend {
            Backend::Local { synchronous } => (
                libsql::Builder::new_local(path)
                    .build()
                    .await
                    .with_context(|| format!("open database {}", path.display()))?,
                Some(synchronous.as_str()),
            ),
            Backend::Remote { url, token, sync, .. } => {
                let ns = server::namespace(name);
                // With `{db}` the host names the database; otherwise the header does.
                let header = (!url.contains("{db}")).then(|| ns.clone());
                (open_replica(path, &url.replace("{db}", &ns), token, *sync, header).await?, None)
            }
        };
        let conn = db.connect()?;
        let Some(synchronous) = synchronous else {
            // A replica's journal is the replication log: no pragmas on it.
            if audit.is_some_and(|(_, mode)| mode == AuditFile::Separate) {
                bail!("a separate audit file needs embedded files (not a libSQL server)");
            }
            let d = Db { conn: Mutex::new(conn), _db: db, lock: tokio::sync::Mutex::new(()), replica: true };
            d.migrate(migrations, audit).await.with_context(|| format!("migrate {name}"))?;
            return Ok(d);
        };
        // WAL: readers do not block the writer; `synchronous` decides what a crash of
        // the machine (not only of the process) may lose. `secure_delete`: deleted
        // content is overwritten with zeros, so an erased person's data leaves the file.
        // The busy timeout first: switching a new file to WAL takes its lock, and another
        // connection to it (a handle the cache let go that is still in use) must be
        // waited for, not answered with `database is locked`.
        conn.execute_batch("PRAGMA busy_timeout=5000;").await?;
        conn.query("PRAGMA journal_mode=WAL", ()).await?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;"
        ))
        .await?;
        let d = Db { conn: Mutex::new(conn), _db: db, lock: tokio::sync::Mutex::new(()), replica: false };
        d.migrate(migrations, audit).await.with_context(|| format!("migrate {}", path.display()))?;
        Ok(d)
    }

    async fn migrate(&self, migrations: &[&str], audit: Option<(&Path, AuditFile)>) -> Result<()> {
        let h = self.lock().await;
        match audit {
            Some((path, mode)) => audit_file::migrate(&h, path, mode, migrations).await,
            None => migrations::run(&h, migrations).await,
        }
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
    ///
    /// On a replica the transaction runs on the server; if the server went away under it
    /// (killed, restarted), the `ROLLBACK` cannot reach it and the connection would stay
    /// in the transaction, sending every later statement, reads included, to the server.
    /// It is replaced by a fresh one instead: the server ends the lost transaction on its
    /// own (a restart has forgotten it; a live server times it out).
    pub async fn lock(&self) -> Held<'_> {
        let guard = self.lock.lock().await;
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !conn.is_autocommit() {
            if let Err(e) = conn.execute("ROLLBACK", ()).await {
                match self.replica.then(|| self._db.connect()) {
                    Some(Ok(fresh)) => {
                        tracing::warn!(error = %e, "rollback of an abandoned transaction did not reach the libSQL server; a fresh connection replaces the replica's");
                        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                        conn = fresh;
                    }
                    Some(Err(e2)) => {
                        tracing::error!(error = %e, reconnect = %e2, "rollback of an abandoned transaction failed")
                    }
                    None => tracing::error!(error = %e, "rollback of an abandoned transaction failed"),
                }
            }
        }
        Held { conn, _guard: guard }
    }
}

#[cfg(feature = "remote-replica")]
async fn open_replica(
    path: &Path,
    url: &str,
    token: &str,
    sync: std::time::Duration,
    namespace: Option<String>,
) -> Result<Database> {
    let mut b = libsql::Builder::new_remote_replica(path, url.to_string(), token.to_string())
        .sync_interval(sync)
        .read_your_writes(true);
    if let Some(ns) = &namespace {
        b = b.namespace(ns.clone());
    }
    let ns = namespace.as_deref().unwrap_or("-");
    b.build().await.with_context(|| format!("open replica {} of {url} (namespace {ns})", path.display()))
}

#[cfg(not(feature = "remote-replica"))]
async fn open_replica(_: &Path, _: &str, _: &str, _: std::time::Duration, _: Option<String>) -> Result<Database> {
    bail!("this build has no libSQL server support (build with --features remote-replica)")
}

/// The region's databases.
pub struct Store {
    root: PathBuf,
    backend: Backend,
    audit_file: AuditFile,
    /// The directory database.
    pub directory: Db,
    open: Mutex<lru::LruCache<String, Arc<Db>>>,
    /// One lock per tenant being opened: two tasks asking for the same closed tenant at
    /// once (a request and the bundle builder) open and migrate its file once, not
    /// twice over each other.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where opening a tenant database is timed (`storage_seconds{op="open"}`).
    times: Option<crate::metrics::StorageTimes>,
}

impl Store {
    /// Open (creating) the region's storage under `root`.
    pub async fn open(root: &Path, backend: Backend, max_open: usize) -> Result<Store> {
        std::fs::create_dir_all(root.join("tenants")).with_context(|| format!("create {}", root.display()))?;
        if let Backend::Remote { admin: Some(admin), .. } = &backend {
            // The region's first start on this server makes the directory's namespace.
            admin.create(&server::namespace("directory")).await?;
        }
        let directory =
            Db::open(&root.join("directory.db"), &backend, "directory", migrations::DIRECTORY, None).await?;
        let cap = NonZeroUsize::new(max_open.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Store {
            root: root.to_path_buf(),
            backend,
            audit_file: AuditFile::Shared,
            directory,
            open: Mutex::new(lru::LruCache::new(cap)),
            opening: Mutex::new(HashMap::new()),
            times: None,
        })
    }

    /// Keep each tenant's audit log where `mode` says (from the next time a tenant
    /// database is opened; see [`audit_file`]).
    pub fn with_audit_file(mut self, mode: AuditFile) -> Store {
        self.audit_file = mode;
        self
    }

    /// Time the opening of tenant databases in `times`.
    pub fn with_times(mut self, times: crate::metrics::StorageTimes) -> Store {
        self.times = Some(times);
        self
    }

    /// The file of tenant `id`'s audit log when it is kept separately.
    pub fn audit_path(&self, id: &str) -> PathBuf {
        self.root.join("tenants").join(format!("{id}.audit.db"))
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
        if let Some(db) = self.cached(id) {
            return Ok(db);
        }
        let gate = self.opening.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_string()).or_default().clone();
        let _opening = gate.lock().await;
        // Whoever held the gate before us has opened it.
        if let Some(db) = self.cached(id) {
            return Ok(db);
        }
        let opened = self.open_tenant(id, create).await;
        // The gate goes only when nobody else holds it (a clone is taken under this map's
        // lock): a task still waiting on it must not find a new gate beside the old one.
        let mut gates = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&gate) == 2 {
            gates.remove(id);
        }
        opened
    }

    fn cached(&self, id: &str) -> Option<Arc<Db>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Open tenant `id`'s database (the caller holds its opening gate) and cache it.
    async fn open_tenant(&self, id: &str, create: bool) -> Result<Arc<Db>> {
        let path = self.tenant_path(id);
        // With a server behind the replicas a tenant's replica file may not exist yet on
        // this host; the directory (checked by the caller) says the tenant is ours.
        if !create && !path.exists() && matches!(self.backend, Backend::Local { .. }) {
            bail!("tenant {id} has no database in this region");
        }
        if create {
            if let Some(admin) = self.admin() {
                // The tenant's namespace on the server first: its replica syncs from it.
                admin.create(&server::namespace(id)).await?;
            }
        }
        let audit = self.audit_path(id);
        let _timer = self.times.as_ref().map(|t| t.start("open"));
        let opening = Db::open(&path, &self.backend, id, migrations::TENANT, Some((&audit, self.audit_file)));
        let span = tracing::debug_span!("gatehouse.storage", db.system.name = "sqlite", db.operation.name = "open");
        let db = Arc::new(tracing::Instrument::instrument(opening, span).await?);
        self.open.lock().unwrap_or_else(|p| p.into_inner()).put(id.to_string(), db.clone());
        Ok(db)
    }

    /// Close tenant `id`'s database: it leaves the cache and, once every transaction in
    /// flight has finished (its lock is taken and let go here), this handle is dropped.
    /// Handles still held elsewhere close when their holders let go.
    pub async fn close_tenant(&self, id: &str) {
        let db = self.open.lock().unwrap_or_else(|p| p.into_inner()).pop(id);
        if let Some(db) = db {
            drop(db.lock().await);
        }
    }

    /// Whether databases are embedded files here (not replicas of a libSQL server).
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local { .. })
    }

    /// The admin API of the libSQL server behind the replicas, if the origin manages its
    /// namespaces.
    pub fn admin(&self) -> Option<&server::Admin> {
        match &self.backend {
            Backend::Remote { admin, .. } => admin.as_ref(),
            Backend::Local { .. } => None,
        }
    }

    /// Whether [`Store::delete_tenant`] can delete a tenant's data: embedded files, or a
    /// server whose admin API the origin knows (a replica alone is not the data).
    pub fn can_delete_tenants(&self) -> bool {
        self.is_local() || self.admin().is_some()
    }

    /// Delete tenant `id`'s data in this region: its database leaves the cache (handles
    /// in flight finish first), its files here are removed (the database, or the replica
    /// and its replication metadata) and, on a libSQL server, its namespace is deleted.
    pub async fn delete_tenant(&self, id: &str) -> Result<TenantDeleted> {
        if !valid_id(id) {
            bail!("invalid tenant id");
        }
        if !self.can_delete_tenants() {
            bail!("tenants on a libSQL server without storage.remote.admin_url are deleted on the server");
        }
        self.close_tenant(id).await;
        let files = remove_files(&self.tenant_path(id)).await? + remove_files(&self.audit_path(id)).await?;
        let namespace = match self.admin() {
            Some(admin) => {
                let ns = server::namespace(id);
                admin.delete(&ns).await?.then_some(ns)
            }
            None => None,
        };
        Ok(TenantDeleted { files, namespace })
    }

    /// Tenant databases open right now.
    pub fn open_tenants(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Ask the directory database a real question (readiness): an error if it cannot
    /// answer. Waits for the directory's lock like every other statement.
    pub async fn ping(&self) -> Result<()> {
        let d = self.directory.lock().await;
        one::<i64>(&d, "SELECT COUNT(*) FROM (SELECT 1 FROM tenants LIMIT 1)", ()).await?;
        Ok(())
    }
}

impl Store {
    /// Delete, on the libSQL server, the namespaces of this region's deleted tenants that
    /// are still there (a deletion whose admin call failed after the tombstone was
    /// written); at the origin's start. How many were deleted.
    pub async fn sweep_deleted_namespaces(&self, region: &str) -> Result<usize> {
        let Some(admin) = self.admin() else { return Ok(0) };
        let tombstones = directory::tombstones_homed_in(&*self.directory.lock().await, region).await?;
        let mut deleted = 0;
        for (e, _) in tombstones {
            if admin.delete(&server::namespace(&e.id)).await? {
                tracing::info!(tenant = %e.id, slug = %e.slug, "namespace of a deleted tenant removed from the libSQL server");
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// What [`Store::delete_tenant`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDeleted {
    /// Files removed on this host.
    pub files: usize,
    /// The namespace deleted on the libSQL server (`None`: embedded files, or it was
    /// gone already).
    pub namespace: Option<String>,
}

/// Remove the database at `path` and the files beside it (WAL, shared memory, a replica's
/// replication metadata); how many were there.
async fn remove_files(path: &Path) -> Result<usize> {
    let mut removed = 0;
    for suffix in ["", "-wal", "-shm", "-info", "-client_wal_index"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match tokio::fs::remove_file(&p).await {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::Error::from(e).context(format!("remove {}", p.to_string_lossy()))),
        }
    }
    Ok(removed)
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

/// Start a write transaction (`BEGIN IMMEDIATE`: the write lock is taken now).
pub async fn begin_immediate(conn: &Connection) -> libsql::Result<()> {
    conn.execute("BEGIN IMMEDIATE", ()).await?;
    Ok(())
}

/// Commit the transaction in progress.
pub async fn commit(conn: &Connection) -> libsql::Result<()> {
    conn.execute("COMMIT", ()).await?;
    Ok(())
}

/// The first row of `sql`, read by `read`.
async fn first_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl libsql::params::IntoParams,
    read: impl FnOnce(&Row) -> libsql::Result<T>,
) -> libsql::Result<Option<T>> {
    let mut rows = conn.query(sql, params).await?;
    match rows.next().await? {
        Some(r) => read(&r).map(Some),
        None => Ok(None),
    }
}

/// Every row of `sql`, each read by `read`.
async fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl libsql::params::IntoParams,
    mut read: impl FnMut(&Row) -> libsql::Result<T>,
) -> libsql::Result<Vec<T>> {
    let mut rows = conn.query(sql, params).await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(read(&r)?);
    }
    Ok(out)
}

/// Whether `sql` returns a row.
async fn exists(conn: &Connection, sql: &str, params: impl libsql::params::IntoParams) -> libsql::Result<bool> {
    Ok(conn.query(sql, params).await?.next().await?.is_some())
}

/// A fresh tenant database in a temporary directory, for the store's unit tests.
#[cfg(test)]
pub(crate) async fn test_tenant() -> (tempfile::TempDir, Store, Arc<Db>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 4).await.unwrap();
    let db = s.tenant("t_01", true).await.unwrap();
    (dir, s, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_of_a_new_tenant_open_it_once() {
        // A request creating a tenant and the bundle builder reading it at once used to
        // migrate the new file twice over each other (`database is locked`).
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 8).await.unwrap());
        for round in 0..8 {
            let id = format!("t_{round:02x}");
            let tasks: Vec<_> = (0..6)
                .map(|i| {
                    let (s, id) = (s.clone(), id.clone());
                    tokio::spawn(async move { s.tenant(&id, i == 0).await })
                })
                .collect();
            let mut opened = Vec::new();
            for t in tasks {
                // A reader may ask before the creator has made the file: refused, not broken.
                if let Ok(db) = t.await.unwrap() {
                    opened.push(db);
                }
            }
            assert!(!opened.is_empty());
            assert!(opened.iter().all(|db| Arc::ptr_eq(db, &opened[0])), "one handle per tenant");
            let n: i64 =
                one(&*opened[0].lock().await, "SELECT COUNT(*) FROM schema_version", ()).await.unwrap().unwrap();
            assert_eq!(n as usize, migrations::TENANT.len());
        }
    }

    #[tokio::test]
    async fn migrations_run_once_and_the_lru_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 2).await.unwrap();
        for i in 0..5 {
            let db = s.tenant(&format!("t_{i:02x}"), true).await.unwrap();
            let h = db.lock().await;
            let v: i64 = one(&h, "SELECT MAX(version) FROM schema_version", ()).await.unwrap().unwrap();
            assert_eq!(v as usize, migrations::TENANT.len());
        }
        assert_eq!(s.open_tenants(), 2);
        // Reopening runs no migration twice.
        drop(s);
        let s = Store::open(dir.path(), Backend::Local { synchronous: "normal".into() }, 2).await.unwrap();
        let db = s.tenant("t_00", false).await.unwrap();
        let n: i64 = one(&*db.lock().await, "SELECT COUNT(*) FROM schema_version", ()).await.unwrap().unwrap();
        assert_eq!(n as usize, migrations::TENANT.len());
        assert!(s.tenant("t_99", false).await.is_err(), "no file is created without `create`");
        assert!(!s.tenant_path("t_99").exists());
        assert!(s.tenant("../etc", true).await.is_err());
    }
}
