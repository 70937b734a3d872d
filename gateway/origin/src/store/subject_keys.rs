//! Per-person keys (`subject_keys`): the key each person's personal data in audit records
//! is sealed under, stored sealed with the region's key ([`crate::privacy::seal`]).
//! Erasure deletes a row, and with it every record part sealed under it becomes
//! unreadable (crypto-shredding).

use libsql::Connection;

use super::first_row;

/// The sealed key of `subject` (`user:<id>`, `email:<pseudonym>`, `ip:<pseudonym>`).
pub async fn get(conn: &Connection, subject: &str) -> libsql::Result<Option<Vec<u8>>> {
    first_row(conn, "SELECT key FROM subject_keys WHERE subject = ?1", [subject], |r| r.get(0)).await
}

/// Store the sealed key of `subject` (inside the caller's transaction).
pub async fn insert(conn: &Connection, subject: &str, sealed_key: &[u8], now: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO subject_keys (subject, key, created_at) VALUES (?1, ?2, ?3)",
        libsql::params![subject, sealed_key.to_vec(), now],
    )
    .await?;
    Ok(())
}

/// Destroy the key of `subject`; whether there was one.
pub async fn destroy(conn: &Connection, subject: &str) -> libsql::Result<bool> {
    Ok(conn.execute("DELETE FROM subject_keys WHERE subject = ?1", [subject]).await? > 0)
}

/// Whether `subject` has a key.
pub async fn exists(conn: &Connection, subject: &str) -> libsql::Result<bool> {
    super::exists(conn, "SELECT 1 FROM subject_keys WHERE subject = ?1", [subject]).await
}
