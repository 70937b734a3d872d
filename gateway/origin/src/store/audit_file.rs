//! The audit log in its own file per tenant (`[storage] audit_file = "separate"`), as
//! auditors ask: the tables of the log (`audit`, `audit_anchor`, `legal_holds`) live in
//! `tenants/{id}.audit.db`, attached to the tenant's connection as schema `auditlog`.
//!
//! - The main file keeps none of those tables, so unqualified names (every statement of
//!   the crate) resolve to the attached ones: the same chain, the same SQL, the same
//!   verification, and a change and its audit record still commit in one transaction.
//! - Both files are in WAL mode with the main file's per-file pragmas (synchronous,
//!   secure_delete, …). SQLite commits a transaction spanning two WAL files file by file
//!   (main first): each file's part is atomic, but a crash between the two commits keeps
//!   the change without its record (SQLite's super-journal, which would make the pair
//!   atomic, exists only outside WAL mode). A window of one write, as for the head the
//!   directory keeps after each commit; `shared` has no such window.
//! - Switching an existing tenant moves its tables and rows over when it is opened
//!   (both directions: `shared` moves them back and removes the file). Before pending
//!   migrations run, the log moves into the main file and back afterwards, so migrations
//!   written for one file (an index on `audit`) work unchanged.
//! - Only for embedded files: a replica of a libSQL server cannot attach another file
//!   (refused at load: `storage.audit_file`).

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use libsql::Connection;

use super::{all_rows, exists, migrations, one};

/// The schema name of the attached audit file.
const SCHEMA: &str = "auditlog";

/// The tables that make up the audit log.
const TABLES: [&str; 3] = ["audit", "audit_anchor", "legal_holds"];

/// Per-file pragmas the audit file takes over from the main file.
const MIRRORED: [&str; 3] = ["synchronous", "secure_delete", "journal_size_limit"];

/// Where a tenant's audit log lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditFile {
    /// In the tenant's database.
    #[default]
    Shared,
    /// In `tenants/{id}.audit.db`.
    Separate,
}

impl AuditFile {
    /// From `[storage] audit_file` (validated at load: `shared` or `separate`).
    pub fn from_setting(s: &str) -> AuditFile {
        if s == "separate" {
            AuditFile::Separate
        } else {
            AuditFile::Shared
        }
    }
}

/// Migrate a tenant database held as `h` whose audit file is `path` in mode `mode`:
/// attach, move the log where `mode` says, run `migrations` (on one file), detach or keep.
pub(super) async fn migrate(h: &Connection, path: &Path, mode: AuditFile, steps: &[&str]) -> Result<()> {
    if mode == AuditFile::Shared && !path.exists() {
        return migrations::run(h, steps).await;
    }
    let p = path.to_str().context("the audit file's path is not UTF-8")?;
    h.execute(&format!("ATTACH DATABASE ?1 AS {SCHEMA}"), [p]).await.with_context(|| format!("attach {p}"))?;
    h.query(&format!("PRAGMA {SCHEMA}.journal_mode=WAL"), ()).await?;
    for pragma in MIRRORED {
        if let Some(v) = one::<i64>(h, &format!("PRAGMA main.{pragma}"), ()).await? {
            h.execute_batch(&format!("PRAGMA {SCHEMA}.{pragma}={v}")).await?;
        }
    }
    if mode == AuditFile::Shared || pending(h, steps.len()).await? {
        relocate(h, SCHEMA, "main").await?;
    }
    if mode == AuditFile::Shared {
        h.execute(&format!("DETACH DATABASE {SCHEMA}"), ()).await?;
        for suffix in ["", "-wal", "-shm"] {
            let mut f = path.as_os_str().to_owned();
            f.push(suffix);
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow::Error::from(e).context(format!("remove {}", f.to_string_lossy()))),
            }
        }
        return migrations::run(h, steps).await;
    }
    migrations::run(h, steps).await?;
    relocate(h, "main", SCHEMA).await
}

/// Whether some of `count` migrations have not run yet.
async fn pending(h: &Connection, count: usize) -> Result<bool> {
    if !exists(h, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'schema_version'", ()).await? {
        return Ok(true);
    }
    let v: i64 = one(h, "SELECT COALESCE(MAX(version), 0) FROM schema_version", ()).await?.unwrap_or(0);
    Ok((v as usize) < count)
}

/// Move the log's tables that schema `from` has (definitions, indexes, rows) into `to`,
/// in one transaction (read inside it: another connection opening the same tenant at the
/// same time finds nothing left to move). Rows `to` has already (an interrupted move)
/// are kept once.
async fn relocate(h: &Connection, from: &str, to: &str) -> Result<()> {
    super::begin_immediate(h).await?;
    let step = async {
        let tables: Vec<(String, String)> = all_rows(
            h,
            &format!(
                "SELECT name, sql FROM {from}.sqlite_master WHERE type = 'table' AND name IN ({})",
                TABLES.map(|t| format!("'{t}'")).join(", ")
            ),
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await?;
        for (name, sql) in &tables {
            h.execute(&qualify(sql, &["CREATE TABLE "], name, to)?, ()).await?;
            let indexes: Vec<(String, String)> = all_rows(
                h,
                &format!(
                    "SELECT name, sql FROM {from}.sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL"
                ),
                [name.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .await?;
            for (index, sql) in &indexes {
                h.execute(&qualify(sql, &["CREATE INDEX ", "CREATE UNIQUE INDEX "], index, to)?, ()).await?;
            }
            h.execute(&format!("INSERT OR IGNORE INTO {to}.{name} SELECT * FROM {from}.{name}"), ()).await?;
            h.execute(&format!("DROP TABLE {from}.{name}"), ()).await?;
        }
        anyhow::Ok(())
    };
    match step.await {
        Ok(()) => Ok(super::commit(h).await?),
        Err(e) => {
            let _ = h.execute("ROLLBACK", ()).await;
            Err(e.context(format!("move the audit log from {from} to {to}")))
        }
    }
}

/// `CREATE TABLE name …` (or an index) as `CREATE TABLE IF NOT EXISTS to.name …`;
/// anything not of that shape is refused rather than guessed at.
fn qualify(sql: &str, heads: &[&str], name: &str, to: &str) -> Result<String> {
    for head in heads {
        let Some(rest) = sql.strip_prefix(head) else { continue };
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix(name)
            .or_else(|| rest.strip_prefix(&format!("\"{name}\"")))
            .filter(|r| r.starts_with([' ', '(', '\n', '\t']));
        if let Some(rest) = rest {
            return Ok(format!("{head}IF NOT EXISTS {to}.{name}{rest}"));
        }
    }
    bail!("unexpected definition of {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connect(path: &Path) -> (libsql::Database, Connection) {
        let db = libsql::Builder::new_local(path).build().await.unwrap();
        let c = db.connect().unwrap();
        (db, c)
    }

    async fn tables(c: &Connection, schema: &str) -> Vec<String> {
        let sql = format!("SELECT name FROM {schema}.sqlite_master WHERE type IN ('table', 'index') ORDER BY name");
        all_rows(c, &sql, (), |r| r.get(0)).await.unwrap()
    }

    #[tokio::test]
    async fn a_migration_written_for_one_file_runs_on_a_separate_log_and_switching_back_moves_it() {
        let dir = tempfile::tempdir().unwrap();
        let (main, file) = (dir.path().join("t.db"), dir.path().join("t.audit.db"));
        let mut steps = vec![
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL);
             CREATE TABLE audit_anchor (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
             CREATE TABLE legal_holds (id TEXT PRIMARY KEY);
             CREATE TABLE users (id TEXT PRIMARY KEY);",
        ];
        {
            let (_db, c) = connect(&main).await;
            migrate(&c, &file, AuditFile::Separate, &steps).await.unwrap();
            c.execute_batch(
                "INSERT INTO audit (seq, at) VALUES (1, 10), (2, 20); INSERT INTO legal_holds VALUES ('h');",
            )
            .await
            .unwrap();
            assert_eq!(tables(&c, "main").await, ["schema_version", "sqlite_autoindex_users_1", "users"]);
        }
        // A later migration names `audit` the way migrations do (an index in the main
        // schema would need `main.audit`): it runs with the log moved in, then out again.
        steps.push("CREATE INDEX audit_at ON audit(at); ALTER TABLE legal_holds ADD COLUMN reason TEXT;");
        {
            let (_db, c) = connect(&main).await;
            migrate(&c, &file, AuditFile::Separate, &steps).await.unwrap();
            let log = tables(&c, SCHEMA).await;
            assert!(log.contains(&"audit_at".to_string()) && log.contains(&"audit".to_string()), "{log:?}");
            assert!(!tables(&c, "main").await.contains(&"audit".to_string()));
            assert_eq!(one::<i64>(&c, "SELECT COUNT(*) FROM audit", ()).await.unwrap(), Some(2));
            assert_eq!(one::<i64>(&c, "SELECT COUNT(reason IS NULL) FROM legal_holds", ()).await.unwrap(), Some(1));
        }
        // Back to one file: rows and indexes move in, the audit file goes.
        let (_db, c) = connect(&main).await;
        migrate(&c, &file, AuditFile::Shared, &steps).await.unwrap();
        assert!(!file.exists());
        assert!(tables(&c, "main").await.contains(&"audit_at".to_string()));
        assert_eq!(one::<i64>(&c, "SELECT COUNT(*) FROM main.audit", ()).await.unwrap(), Some(2));
    }

    #[test]
    fn definitions_are_qualified_or_refused() {
        let t = qualify("CREATE TABLE audit (\n seq INTEGER)", &["CREATE TABLE "], "audit", "auditlog").unwrap();
        assert_eq!(t, "CREATE TABLE IF NOT EXISTS auditlog.audit (\n seq INTEGER)");
        let i = qualify("CREATE INDEX audit_at ON audit(at)", &["CREATE INDEX "], "audit_at", "main").unwrap();
        assert_eq!(i, "CREATE INDEX IF NOT EXISTS main.audit_at ON audit(at)");
        assert!(qualify("CREATE TABLE audit_anchor (id)", &["CREATE TABLE "], "audit", "x").is_err());
        assert!(qualify("CREATE VIEW audit AS SELECT 1", &["CREATE TABLE "], "audit", "x").is_err());
    }
}
