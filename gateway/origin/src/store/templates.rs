//! The organisation's own mail templates (`mail_templates`, one row per kind).

use libsql::Connection;

use super::first_row;
use crate::mailer::templates::{Kind, Template};

/// The organisation's template of `kind`, if it set one.
pub async fn get(conn: &Connection, kind: Kind) -> libsql::Result<Option<Template>> {
    first_row(conn, "SELECT subject, text, html FROM mail_templates WHERE kind = ?1", [kind.as_str()], |r| {
        Ok(Template { subject: r.get(0)?, text: r.get(1)?, html: r.get(2)? })
    })
    .await
}

/// Set the template of `kind`.
pub async fn put(conn: &Connection, kind: Kind, t: &Template, now: i64) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO mail_templates (kind, subject, text, html, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind) DO UPDATE SET subject = ?2, text = ?3, html = ?4, updated_at = ?5",
        libsql::params![kind.as_str(), t.subject.as_str(), t.text.as_str(), t.html.as_str(), now],
    )
    .await?;
    Ok(())
}

/// Remove the template of `kind` (the built-in one applies again); whether there was one.
pub async fn delete(conn: &Connection, kind: Kind) -> libsql::Result<bool> {
    Ok(conn.execute("DELETE FROM mail_templates WHERE kind = ?1", [kind.as_str()]).await? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    #[tokio::test]
    async fn a_template_is_set_replaced_and_removed() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        assert_eq!(get(&h, Kind::Invitation).await.unwrap(), None);
        let mut t = Kind::Invitation.default_template();
        put(&h, Kind::Invitation, &t, 1).await.unwrap();
        t.subject = "Join {{org}}".into();
        put(&h, Kind::Invitation, &t, 2).await.unwrap();
        assert_eq!(get(&h, Kind::Invitation).await.unwrap(), Some(t));
        assert_eq!(get(&h, Kind::VerifyEmail).await.unwrap(), None, "per kind");
        assert!(delete(&h, Kind::Invitation).await.unwrap());
        assert!(!delete(&h, Kind::Invitation).await.unwrap());
        assert_eq!(get(&h, Kind::Invitation).await.unwrap(), None);
    }
}
