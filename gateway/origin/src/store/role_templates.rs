//! Role templates: the region's operator-defined role sets (`role_templates` in the
//! directory database), and the custom roles of an organisation that follow one
//! (`roles.template`, synced) or were forked from one (`roles.forked_from`).

use libsql::Connection;

use super::{all_rows, first_row};

/// A role template of the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Name (the key).
    pub name: String,
    /// Permissions, a JSON array of `resource:action`.
    pub permissions: String,
    /// What it is for.
    pub description: String,
    /// Unix seconds.
    pub updated_at: i64,
}

fn template(r: &libsql::Row) -> libsql::Result<Template> {
    Ok(Template { name: r.get(0)?, permissions: r.get(1)?, description: r.get(2)?, updated_at: r.get(3)? })
}

/// Template `name` (directory database).
pub async fn get(conn: &Connection, name: &str) -> libsql::Result<Option<Template>> {
    first_row(
        conn,
        "SELECT name, permissions, description, updated_at FROM role_templates WHERE name = ?1",
        [name],
        template,
    )
    .await
}

/// Create or replace a template (directory database).
pub async fn upsert(conn: &Connection, t: &Template) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO role_templates (name, permissions, description, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET permissions = ?2, description = ?3, updated_at = ?4",
        libsql::params![t.name.as_str(), t.permissions.as_str(), t.description.as_str(), t.updated_at],
    )
    .await?;
    Ok(())
}

/// One page of templates by name after `after` (directory database).
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<Template>> {
    all_rows(
        conn,
        "SELECT name, permissions, description, updated_at FROM role_templates WHERE name > ?1 ORDER BY name LIMIT ?2",
        libsql::params![after, limit],
        template,
    )
    .await
}

/// How a custom role relates to the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The organisation's own role.
    Own,
    /// Follows template `0`: its permissions change with the template's.
    Synced(String),
    /// Was copied from template `0` and is the organisation's own since.
    Forked(String),
}

/// Where custom role `name` comes from (`None`: no such role; tenant database).
pub async fn origin_of(conn: &Connection, name: &str) -> libsql::Result<Option<Origin>> {
    first_row(conn, "SELECT template, forked_from FROM roles WHERE name = ?1", [name], |r| {
        Ok(match (r.get::<Option<String>>(0)?, r.get::<Option<String>>(1)?) {
            (Some(t), _) => Origin::Synced(t),
            (None, Some(f)) => Origin::Forked(f),
            (None, None) => Origin::Own,
        })
    })
    .await
}

/// Create or replace custom role `name` as synced with `template` (tenant database).
pub async fn put_synced(conn: &Connection, name: &str, template: &str, permissions: &str) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO roles (name, permissions, template, forked_from) VALUES (?1, ?2, ?3, NULL)
             ON CONFLICT(name) DO UPDATE SET permissions = ?2, template = ?3, forked_from = NULL",
        libsql::params![name, permissions, template],
    )
    .await?;
    Ok(())
}

/// Create or replace custom role `name` as forked from `template` (tenant database).
pub async fn put_forked(conn: &Connection, name: &str, template: &str, permissions: &str) -> libsql::Result<()> {
    conn.execute(
        "INSERT INTO roles (name, permissions, template, forked_from) VALUES (?1, ?2, NULL, ?3)
             ON CONFLICT(name) DO UPDATE SET permissions = ?2, template = NULL, forked_from = ?3",
        libsql::params![name, permissions, template],
    )
    .await?;
    Ok(())
}

/// Give every role synced with `template` its new permissions; the names of the roles
/// whose permissions changed (tenant database).
pub async fn sync(conn: &Connection, template: &str, permissions: &str) -> libsql::Result<Vec<String>> {
    let changed: Vec<String> = all_rows(
        conn,
        "SELECT name FROM roles WHERE template = ?1 AND permissions != ?2 ORDER BY name",
        libsql::params![template, permissions],
        |r| r.get(0),
    )
    .await?;
    conn.execute("UPDATE roles SET permissions = ?2 WHERE template = ?1", libsql::params![template, permissions])
        .await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{roles, test_tenant};

    #[tokio::test]
    async fn synced_roles_follow_their_template_and_forked_ones_do_not() {
        let (_dir, s, db) = test_tenant().await;
        let d = s.directory.lock().await;
        let t = Template {
            name: "auditor".into(),
            permissions: r#"["audit:read"]"#.into(),
            description: "".into(),
            updated_at: 1,
        };
        upsert(&d, &t).await.unwrap();
        assert_eq!(get(&d, "auditor").await.unwrap(), Some(t.clone()));
        assert_eq!(page(&d, "", 10).await.unwrap().len(), 1);
        let h = db.lock().await;
        put_synced(&h, "aud", "auditor", &t.permissions).await.unwrap();
        put_forked(&h, "aud2", "auditor", &t.permissions).await.unwrap();
        roles::upsert(&h, "mine", r#"["x:read"]"#).await.unwrap();
        assert_eq!(origin_of(&h, "aud").await.unwrap(), Some(Origin::Synced("auditor".into())));
        assert_eq!(origin_of(&h, "aud2").await.unwrap(), Some(Origin::Forked("auditor".into())));
        assert_eq!(origin_of(&h, "mine").await.unwrap(), Some(Origin::Own));
        assert_eq!(origin_of(&h, "none").await.unwrap(), None);
        let new = r#"["audit:read","reports:read"]"#;
        assert_eq!(sync(&h, "auditor", new).await.unwrap(), ["aud"]);
        assert_eq!(sync(&h, "auditor", new).await.unwrap(), Vec::<String>::new(), "nothing changes twice");
        assert_eq!(roles::permissions(&h, "aud").await.unwrap().as_deref(), Some(new));
        assert_eq!(roles::permissions(&h, "aud2").await.unwrap().as_deref(), Some(r#"["audit:read"]"#));
    }
}
