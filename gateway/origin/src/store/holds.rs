//! Legal holds (`legal_holds`): a time range of the audit log, optionally narrowed to
//! some users and some actions, that retention never purges and erasure never touches
//! while the hold is live (not released). Holds are released, never deleted, so the list
//! shows what was held and when it ended.
//!
//! A hold covers an audit record when the record's time is in `[from_at, until_at)`, its
//! actor, target or real actor (`act`) is `user:<id>` of a listed user (or no users are
//! listed), and its action equals a listed action or starts with a listed prefix ending
//! in `.` (or no actions are listed). A hold that names no actions also keeps the
//! sessions (created in its range, of its users) and, when it names no users either, the
//! edge decision events of its range (see [`crate::store::retention`]).

use libsql::{Connection, Row};
use serde::Serialize;

use super::{all_rows, first_row, one};

/// A hold's id (`h_…`).
pub type HoldId = String;

/// Most live holds one organisation may have (each purge reads them all).
pub const MAX_LIVE: i64 = 100;

/// A legal hold to insert.
#[derive(Debug, Clone)]
pub struct NewHold<'a> {
    /// Id (`h_…`).
    pub id: &'a str,
    /// Why.
    pub reason: &'a str,
    /// From (Unix seconds, inclusive).
    pub from_at: i64,
    /// Until (Unix seconds, exclusive).
    pub until_at: i64,
    /// User ids the hold is about (empty: everybody).
    pub users: &'a [String],
    /// Actions, exact or a prefix ending in `.` (empty: every action).
    pub actions: &'a [String],
    /// Who placed it (`user:<id>`, `operator`).
    pub created_by: &'a str,
    /// Unix seconds.
    pub created_at: i64,
}

/// A stored hold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hold {
    /// Id.
    pub id: HoldId,
    /// Why.
    pub reason: String,
    /// From (Unix seconds, inclusive).
    pub from: i64,
    /// Until (Unix seconds, exclusive).
    pub until: i64,
    /// User ids (empty: everybody).
    pub users: Vec<String>,
    /// Actions or prefixes (empty: every action).
    pub actions: Vec<String>,
    /// Who placed it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was released (`None`: live).
    pub released_at: Option<i64>,
    /// Who released it.
    pub released_by: Option<String>,
}

impl Hold {
    /// Whether this hold covers an audit record of time `at`, with `actor`, `target`,
    /// real actor `act` and `action`.
    pub fn covers(&self, at: i64, actor: &str, target: &str, act: Option<&str>, action: &str) -> bool {
        if self.released_at.is_some() || at < self.from || at >= self.until {
            return false;
        }
        let about = |u: &String| {
            let subject = format!("user:{u}");
            actor == subject || target == subject || act == Some(subject.as_str())
        };
        let users_ok = self.users.is_empty() || self.users.iter().any(about);
        let actions_ok = self.actions.is_empty()
            || self.actions.iter().any(|a| if a.ends_with('.') { action.starts_with(a.as_str()) } else { action == a });
        users_ok && actions_ok
    }
}

const COLUMNS: &str = "id, reason, from_at, until_at, users, actions, created_by, created_at, released_at, released_by";

fn row_hold(r: &Row) -> libsql::Result<Hold> {
    let list = |i: i32| -> libsql::Result<Vec<String>> {
        let text: String = r.get(i)?;
        // Written by `insert` from a list of strings; anything else is a corrupt row.
        serde_json::from_str(&text).map_err(|e| libsql::Error::ToSqlConversionFailure(Box::new(e)))
    };
    Ok(Hold {
        id: r.get(0)?,
        reason: r.get(1)?,
        from: r.get(2)?,
        until: r.get(3)?,
        users: list(4)?,
        actions: list(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        released_at: r.get(8)?,
        released_by: r.get(9)?,
    })
}

/// Insert a legal hold.
pub async fn insert(conn: &Connection, h: &NewHold<'_>) -> libsql::Result<()> {
    let json = |v: &[String]| serde_json::Value::from(v.to_vec()).to_string();
    conn.execute(
        &format!("INSERT INTO legal_holds ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL)"),
        libsql::params![
            h.id,
            h.reason,
            h.from_at,
            h.until_at,
            json(h.users),
            json(h.actions),
            h.created_by,
            h.created_at
        ],
    )
    .await?;
    Ok(())
}

/// Hold `id`.
pub async fn get(conn: &Connection, id: &str) -> libsql::Result<Option<Hold>> {
    first_row(conn, &format!("SELECT {COLUMNS} FROM legal_holds WHERE id = ?1"), [id], row_hold).await
}

/// One page of holds (live and released) by id after `after`.
pub async fn page(conn: &Connection, after: &str, limit: i64) -> libsql::Result<Vec<Hold>> {
    all_rows(
        conn,
        &format!("SELECT {COLUMNS} FROM legal_holds WHERE id > ?1 ORDER BY id LIMIT ?2"),
        libsql::params![after, limit],
        row_hold,
    )
    .await
}

/// Every live hold (at most [`MAX_LIVE`]).
pub async fn live(conn: &Connection) -> libsql::Result<Vec<Hold>> {
    all_rows(
        conn,
        &format!("SELECT {COLUMNS} FROM legal_holds WHERE released_at IS NULL ORDER BY id LIMIT ?1"),
        [MAX_LIVE],
        row_hold,
    )
    .await
}

/// How many holds are live.
pub async fn count_live(conn: &Connection) -> anyhow::Result<i64> {
    Ok(one(conn, "SELECT COUNT(*) FROM legal_holds WHERE released_at IS NULL", ()).await?.unwrap_or(0))
}

/// Release hold `id` at `now` by `by`; false if it is unknown or released already.
pub async fn release(conn: &Connection, id: &str, by: &str, now: i64) -> libsql::Result<bool> {
    let n = conn
        .execute(
            "UPDATE legal_holds SET released_at = ?2, released_by = ?3 WHERE id = ?1 AND released_at IS NULL",
            libsql::params![id, now, by],
        )
        .await?;
    Ok(n == 1)
}

/// A live hold that covers user `user_id` (its users list is empty or names the user), if
/// any: the records about that person must stay as they are, so erasure is refused
/// (`legal_hold`).
pub async fn covers_user(conn: &Connection, user_id: &str) -> libsql::Result<Option<HoldId>> {
    first_row(
        conn,
        "SELECT id FROM legal_holds WHERE released_at IS NULL
           AND (json_array_length(users) = 0 OR EXISTS (SELECT 1 FROM json_each(users) WHERE value = ?1))
         ORDER BY id LIMIT 1",
        [user_id],
        |r| r.get(0),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_tenant;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn scope_covers_users_actions_and_time_and_release_ends_it() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let (users, actions) = (strings(&["u_1"]), strings(&["signin.", "user.delete"]));
        let new = NewHold {
            id: "h_1",
            reason: "case 7",
            from_at: 100,
            until_at: 200,
            users: &users,
            actions: &actions,
            created_by: "operator",
            created_at: 5,
        };
        insert(&h, &new).await.unwrap();
        let hold = get(&h, "h_1").await.unwrap().unwrap();
        assert_eq!((hold.users.clone(), hold.actions.clone()), (users.clone(), actions.clone()));
        assert!(hold.covers(150, "user:u_1", "session:s", None, "signin.success"));
        assert!(hold.covers(100, "operator", "user:u_1", None, "user.delete"));
        assert!(hold.covers(150, "user:u_9", "user:u_9", Some("user:u_1"), "signin.failure"), "the real actor");
        assert!(!hold.covers(200, "user:u_1", "x", None, "signin.success"), "until is exclusive");
        assert!(!hold.covers(99, "user:u_1", "x", None, "signin.success"));
        assert!(!hold.covers(150, "user:u_2", "user:u_2", None, "signin.success"), "another user");
        assert!(!hold.covers(150, "user:u_1", "x", None, "user.deleted"), "exact action only");
        assert!(!hold.covers(150, "user:u_10", "x", None, "signin.success"), "ids are compared whole");
        assert_eq!(covers_user(&h, "u_1").await.unwrap().as_deref(), Some("h_1"));
        assert_eq!(covers_user(&h, "u_2").await.unwrap(), None);
        // A hold on everybody covers every user.
        let all = NewHold { id: "h_2", users: &[], actions: &[], ..new };
        insert(&h, &all).await.unwrap();
        assert_eq!(covers_user(&h, "u_2").await.unwrap().as_deref(), Some("h_2"));
        assert_eq!(count_live(&h).await.unwrap(), 2);
        assert!(release(&h, "h_2", "user:u_0", 300).await.unwrap());
        assert!(!release(&h, "h_2", "user:u_0", 301).await.unwrap(), "released once");
        assert!(!release(&h, "h_9", "user:u_0", 301).await.unwrap());
        assert_eq!(covers_user(&h, "u_2").await.unwrap(), None);
        assert_eq!(live(&h).await.unwrap().len(), 1);
        let listed = page(&h, "", 10).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].released_at, Some(300));
        assert!(!listed[1].covers(150, "user:u_1", "x", None, "signin.success"), "a released hold covers nothing");
    }
}
