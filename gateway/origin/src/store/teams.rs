//! Teams (`teams`, a tree by `parent_id`) and their members (`team_members`).

use libsql::Connection;

use super::{all_rows, exists};

/// A team as listed, with its member count.
#[derive(Debug, Clone)]
pub struct TeamRow {
    /// Id (`tm_…`).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Parent team.
    pub parent_id: Option<String>,
    /// How many members.
    pub members: i64,
}

/// One page of teams by name after `after`; with `parent`, only its children.
pub async fn page(conn: &Connection, after: &str, parent: Option<&str>, limit: i64) -> libsql::Result<Vec<TeamRow>> {
    all_rows(
        conn,
        "SELECT id, name, parent_id, (SELECT COUNT(*) FROM team_members m WHERE m.team_id = teams.id) FROM teams
             WHERE name > ?1 AND (?2 IS NULL OR parent_id = ?2) ORDER BY name LIMIT ?3",
        libsql::params![after, parent, limit],
        |r| Ok(TeamRow { id: r.get(0)?, name: r.get(1)?, parent_id: r.get(2)?, members: r.get(3)? }),
    )
    .await
}

/// Whether team `id` exists.
pub async fn exists_id(conn: &Connection, id: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT id FROM teams WHERE id = ?1", [id]).await
}

/// Whether a team is named `name`.
pub async fn name_taken(conn: &Connection, name: &str) -> libsql::Result<bool> {
    exists(conn, "SELECT id FROM teams WHERE name = ?1", [name]).await
}

/// Insert team `id`.
pub async fn insert(conn: &Connection, id: &str, name: &str, parent_id: Option<&str>) -> libsql::Result<()> {
    conn.execute("INSERT INTO teams (id, name, parent_id) VALUES (?1, ?2, ?3)", libsql::params![id, name, parent_id])
        .await?;
    Ok(())
}

/// Add `user` to `team` (no-op if a member already).
pub async fn add_member(conn: &Connection, team: &str, user: &str) -> libsql::Result<()> {
    conn.execute("INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?1, ?2)", libsql::params![team, user])
        .await?;
    Ok(())
}

/// The names of `user`'s teams, by name.
pub async fn names_of_member(conn: &Connection, user: &str) -> libsql::Result<Vec<String>> {
    all_rows(
        conn,
        "SELECT t.name FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.user_id = ?1 ORDER BY t.name",
        [user],
        |r| r.get(0),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_tenant, users};

    #[tokio::test]
    async fn teams_list_by_parent_with_member_counts() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let u = users::NewUser { id: "u_1", email: "a@b.co", name: "", password_hash: None, created_at: 1 };
        users::insert(&h, &u).await.unwrap();
        insert(&h, "tm_1", "eng", None).await.unwrap();
        insert(&h, "tm_2", "web", Some("tm_1")).await.unwrap();
        add_member(&h, "tm_2", "u_1").await.unwrap();
        add_member(&h, "tm_2", "u_1").await.unwrap();
        let all = page(&h, "", None, 10).await.unwrap();
        assert_eq!(all.iter().map(|t| (t.name.as_str(), t.members)).collect::<Vec<_>>(), [("eng", 0), ("web", 1)]);
        let kids = page(&h, "", Some("tm_1"), 10).await.unwrap();
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].parent_id.as_deref(), Some("tm_1"));
        assert_eq!(names_of_member(&h, "u_1").await.unwrap(), ["web"]);
        assert!(name_taken(&h, "eng").await.unwrap() && !name_taken(&h, "ops").await.unwrap());
    }
}
