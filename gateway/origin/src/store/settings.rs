//! Region settings (`settings` in the directory database): the policy template set
//! through the API.

use libsql::Connection;

use super::first_row;

/// The policy template set through the API (JSON), if any.
pub async fn template(conn: &Connection) -> libsql::Result<Option<String>> {
    first_row(conn, "SELECT value FROM settings WHERE key = 'template'", (), |r| r.get(0)).await
}

/// Store the policy template (JSON).
pub async fn set_template(conn: &Connection, json: &str) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES ('template', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
        [json],
    )
    .await?;
    Ok(())
}
