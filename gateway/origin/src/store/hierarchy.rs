//! The organisation hierarchy's tables: a tenant's parent in the directory
//! (`tenants.parent_id`), the policy a tenant inherits from its ancestors
//! (`org.inherited`), and the roles teams grant (`team_roles`) with the roles and teams
//! a member holds through the team tree.

use libsql::Connection;

use super::{all_rows, first_row};

/// How deep the team tree is followed upwards (teams cannot form cycles, since a team's
/// parent is fixed when it is created; this bounds the walk anyway).
const MAX_TEAM_DEPTH: i64 = 32;

/// A tenant's id, slug and parent, as the hierarchy reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Id (`t_…`).
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Home region.
    pub home_region: String,
    /// Parent tenant id.
    pub parent_id: Option<String>,
}

fn node(r: &libsql::Row) -> libsql::Result<Node> {
    Ok(Node { id: r.get(0)?, slug: r.get(1)?, home_region: r.get(2)?, parent_id: r.get(3)? })
}

/// Tenant `slug` with its parent (directory database).
pub async fn node_by_slug(conn: &Connection, slug: &str) -> libsql::Result<Option<Node>> {
    first_row(conn, "SELECT id, slug, home_region, parent_id FROM tenants WHERE slug = ?1", [slug], node).await
}

/// Tenant `id` with its parent (directory database).
pub async fn node_by_id(conn: &Connection, id: &str) -> libsql::Result<Option<Node>> {
    first_row(conn, "SELECT id, slug, home_region, parent_id FROM tenants WHERE id = ?1", [id], node).await
}

/// Set (or clear) tenant `id`'s parent (directory database).
pub async fn set_parent(conn: &Connection, id: &str, parent_id: Option<&str>) -> libsql::Result<()> {
    conn.execute("UPDATE tenants SET parent_id = ?2 WHERE id = ?1", libsql::params![id, parent_id]).await?;
    Ok(())
}

/// The children of tenant `id`, by slug (directory database).
pub async fn children(conn: &Connection, id: &str) -> libsql::Result<Vec<Node>> {
    all_rows(
        conn,
        "SELECT id, slug, home_region, parent_id FROM tenants WHERE parent_id = ?1 ORDER BY slug",
        [id],
        node,
    )
    .await
}

/// The ancestors of tenant `id`, nearest first, at most `limit` of them (directory
/// database). A parent that left the directory (deleted) ends the chain.
pub async fn ancestors(conn: &Connection, id: &str, limit: usize) -> libsql::Result<Vec<Node>> {
    let mut out: Vec<Node> = Vec::new();
    let mut next = node_by_id(conn, id).await?.and_then(|n| n.parent_id);
    while let Some(p) = next {
        if out.len() >= limit || out.iter().any(|n| n.id == p) || p == id {
            break;
        }
        let Some(n) = node_by_id(conn, &p).await? else { break };
        next = n.parent_id.clone();
        out.push(n);
    }
    Ok(out)
}

/// The height of the subtree under tenant `id` (0: no children), explored to `limit`
/// levels (directory database).
pub async fn subtree_height(conn: &Connection, id: &str, limit: usize) -> libsql::Result<usize> {
    let mut level = vec![id.to_string()];
    let mut height = 0;
    while height < limit {
        let mut below = Vec::new();
        for n in &level {
            below.extend(children(conn, n).await?.into_iter().map(|c| c.id));
        }
        if below.is_empty() {
            break;
        }
        height += 1;
        level = below;
    }
    Ok(height)
}

/// The policy tenant database holds as inherited from its ancestors (JSON; `None`: no
/// parent).
pub async fn inherited(conn: &Connection) -> libsql::Result<Option<String>> {
    Ok(first_row(conn, "SELECT inherited FROM org WHERE id = 1", (), |r| r.get::<Option<String>>(0)).await?.flatten())
}

/// Replace the inherited policy (JSON; `None`: no parent).
pub async fn set_inherited(conn: &Connection, json: Option<&str>) -> libsql::Result<()> {
    conn.execute("UPDATE org SET inherited = ?1 WHERE id = 1", [json]).await?;
    Ok(())
}

/// The roles team `team` grants, by name.
pub async fn team_roles(conn: &Connection, team: &str) -> libsql::Result<Vec<String>> {
    all_rows(conn, "SELECT role FROM team_roles WHERE team_id = ?1 ORDER BY role", [team], |r| r.get(0)).await
}

/// Replace the roles team `team` grants.
pub async fn set_team_roles(conn: &Connection, team: &str, roles: &[String]) -> libsql::Result<()> {
    conn.execute("DELETE FROM team_roles WHERE team_id = ?1", [team]).await?;
    for r in roles {
        conn.execute(
            "INSERT OR IGNORE INTO team_roles (team_id, role) VALUES (?1, ?2)",
            libsql::params![team, r.as_str()],
        )
        .await?;
    }
    Ok(())
}

/// The teams `user` is in, directly or through a descendant team (`team = …` checks).
const MEMBER_TEAMS: &str = "WITH RECURSIVE up(id, depth) AS (
        SELECT team_id, 0 FROM team_members WHERE user_id = ?1
        UNION
        SELECT t.parent_id, up.depth + 1 FROM teams t JOIN up ON t.id = up.id
            WHERE t.parent_id IS NOT NULL AND up.depth < ?2
     )";

/// The names of `user`'s teams and of every ancestor team of them, by name.
pub async fn team_names_with_ancestors(conn: &Connection, user: &str) -> libsql::Result<Vec<String>> {
    let sql = format!("{MEMBER_TEAMS} SELECT name FROM teams WHERE id IN (SELECT id FROM up) ORDER BY name");
    all_rows(conn, &sql, libsql::params![user, MAX_TEAM_DEPTH], |r| r.get(0)).await
}

/// `user`'s roles now: the membership's (if it has not expired by `now`) first, then the
/// roles granted by their teams and those teams' ancestors (only while the membership
/// is live: an expired member holds nothing).
pub async fn roles_of(conn: &Connection, user: &str, now: i64) -> libsql::Result<Vec<String>> {
    let Some(own) = super::memberships::live_role(conn, user, now).await? else { return Ok(Vec::new()) };
    let sql = format!(
        "{MEMBER_TEAMS} SELECT DISTINCT role FROM team_roles WHERE team_id IN (SELECT id FROM up) ORDER BY role"
    );
    let granted: Vec<String> = all_rows(conn, &sql, libsql::params![user, MAX_TEAM_DEPTH], |r| r.get(0)).await?;
    let mut roles = granted;
    roles.retain(|r| r != &own);
    roles.insert(0, own);
    Ok(roles)
}

/// Whether any team grants `role`.
pub async fn role_granted_by_a_team(conn: &Connection, role: &str) -> libsql::Result<bool> {
    super::exists(conn, "SELECT 1 FROM team_roles WHERE role = ?1", [role]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{directory, memberships, teams, test_tenant, users};

    #[tokio::test]
    async fn team_roles_and_team_names_follow_the_team_tree_up() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let u = users::NewUser { id: "u_1", email: "a@b.co", name: "", password_hash: None, created_at: 1 };
        users::insert(&h, &u).await.unwrap();
        memberships::insert(&h, "u_1", "viewer", Some(100)).await.unwrap();
        teams::insert(&h, "tm_1", "eng", None).await.unwrap();
        teams::insert(&h, "tm_2", "web", Some("tm_1")).await.unwrap();
        teams::insert(&h, "tm_3", "ops", None).await.unwrap();
        teams::add_member(&h, "tm_2", "u_1").await.unwrap();
        set_team_roles(&h, "tm_1", &["editor".into(), "viewer".into()]).await.unwrap();
        set_team_roles(&h, "tm_3", &["admin".into()]).await.unwrap();
        assert_eq!(team_names_with_ancestors(&h, "u_1").await.unwrap(), ["eng", "web"]);
        assert_eq!(roles_of(&h, "u_1", 10).await.unwrap(), ["viewer", "editor"], "the parent team's roles, once");
        assert!(roles_of(&h, "u_1", 100).await.unwrap().is_empty(), "an expired member holds nothing");
        set_team_roles(&h, "tm_1", &[]).await.unwrap();
        assert_eq!(roles_of(&h, "u_1", 10).await.unwrap(), ["viewer"]);
        assert!(role_granted_by_a_team(&h, "admin").await.unwrap());
    }

    #[tokio::test]
    async fn ancestors_stop_at_a_missing_parent_and_never_loop() {
        let (_dir, s, db) = test_tenant().await;
        let d = s.directory.lock().await;
        for (id, slug) in [("t_01", "a"), ("t_02", "b"), ("t_03", "c")] {
            let e =
                directory::TenantEntry { id: id.into(), slug: slug.into(), home_region: "eu".into(), created_at: 1 };
            directory::insert(&d, &e).await.unwrap();
        }
        set_parent(&d, "t_03", Some("t_02")).await.unwrap();
        set_parent(&d, "t_02", Some("t_01")).await.unwrap();
        let up: Vec<String> = ancestors(&d, "t_03", 8).await.unwrap().into_iter().map(|n| n.slug).collect();
        assert_eq!(up, ["b", "a"]);
        assert_eq!(subtree_height(&d, "t_01", 8).await.unwrap(), 2);
        assert_eq!(children(&d, "t_01").await.unwrap()[0].slug, "b");
        // A loop written behind the API's back still ends.
        set_parent(&d, "t_01", Some("t_03")).await.unwrap();
        assert_eq!(ancestors(&d, "t_03", 8).await.unwrap().len(), 2);
        set_parent(&d, "t_02", Some("t_99")).await.unwrap();
        assert!(ancestors(&d, "t_02", 8).await.unwrap().is_empty(), "a deleted parent ends the chain");
        drop(d);
        let h = db.lock().await;
        assert_eq!(inherited(&h).await.unwrap(), None);
    }
}
