//! The access review: every user with their role, the roles their teams grant (through
//! the team tree), the effective permissions of all of them, their teams, when the role
//! was granted and by whom, their last sign-in, second factors, state and
//! whether they are dormant; every custom role; every API key with its roles and scopes.

use std::collections::HashMap;

use libsql::Connection;
use serde::Serialize;
use serde_json::json;

use crate::audit::Record;
use crate::error::ApiResult;
use crate::store::{api_keys, hierarchy, teams};

use super::source::{self, after, user_id, who};
use super::{figure, iso_opt, Body, Options, Table};

/// The actions that set a user's role; the last one (by sequence) is the grant in force.
const GRANTS: &[&str] = &["user.create", "invitation.accept", "user.provision", "membership.set"];
/// The actions of a completed sign-in.
const SIGNINS: &[&str] = &["signin.success", "sso.success"];

/// Who granted a role, and how.
#[derive(Debug, Clone, Serialize)]
struct Grant {
    seq: i64,
    at: i64,
    by: String,
    via: String,
}

#[derive(Debug, Serialize)]
struct UserAccess {
    id: String,
    email: String,
    name: String,
    role: Option<String>,
    role_expires_at: Option<i64>,
    team_roles: Vec<String>,
    permissions: Vec<String>,
    teams: Vec<String>,
    granted: Option<Grant>,
    last_signin_at: Option<i64>,
    signins_in_period: u64,
    mfa_factors: Vec<String>,
    disabled: bool,
    locked: bool,
    dormant: bool,
    created_at: i64,
}

#[derive(Debug, Serialize)]
struct KeyAccess {
    id: String,
    name: String,
    prefix: String,
    roles: Vec<String>,
    scopes: Vec<String>,
    status: &'static str,
    created_at: i64,
    created_by: Option<String>,
    last_rotated_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// The user a grant record is about: its target, or for an accepted invitation the user
/// it created.
fn granted_user(r: &Record) -> Option<String> {
    match user_id(&r.target) {
        Some(id) => Some(id.to_string()),
        None => after(r)["user"].as_str().map(String::from),
    }
}

/// The last grant of each user, from the whole log.
async fn grants(conn: &Connection) -> ApiResult<HashMap<String, Grant>> {
    let mut out: HashMap<String, Grant> = HashMap::new();
    for action in GRANTS {
        source::of_action(conn, action, None, |r| {
            let Some(user) = granted_user(r) else { return };
            if out.get(&user).is_none_or(|g| g.seq < r.seq) {
                out.insert(user, Grant { seq: r.seq, at: r.at, by: who(r), via: r.action.clone() });
            }
        })
        .await?;
    }
    Ok(out)
}

/// Each user's last sign-in since `since` and sign-ins in the period.
async fn signins(conn: &Connection, o: &Options, since: i64) -> ApiResult<HashMap<String, (i64, u64)>> {
    let mut out: HashMap<String, (i64, u64)> = HashMap::new();
    for action in SIGNINS {
        source::of_action(conn, action, Some(since), |r| {
            let Some(user) = user_id(&r.actor) else { return };
            let e = out.entry(user.to_string()).or_insert((r.at, 0));
            e.0 = e.0.max(r.at);
            if (o.period.from..o.period.until).contains(&r.at) {
                e.1 += 1;
            }
        })
        .await?;
    }
    Ok(out)
}

/// Each API key's creator and last rotation.
async fn key_history(conn: &Connection) -> ApiResult<(HashMap<String, String>, HashMap<String, i64>)> {
    let (mut created, mut rotated) = (HashMap::new(), HashMap::new());
    source::of_action(conn, "api_key.create", None, |r| {
        if let Some(id) = r.target.strip_prefix("api_key:") {
            created.insert(id.to_string(), who(r));
        }
    })
    .await?;
    source::of_action(conn, "api_key.rotate", None, |r| {
        if let Some(id) = r.target.strip_prefix("api_key:") {
            rotated.insert(id.to_string(), r.at);
        }
    })
    .await?;
    Ok((created, rotated))
}

async fn api_keys_of(conn: &Connection, now: i64) -> ApiResult<Vec<KeyAccess>> {
    let (created, rotated) = key_history(conn).await?;
    let mut out: Vec<KeyAccess> = Vec::new();
    loop {
        let after = out.last().map(|k| k.id.clone()).unwrap_or_default();
        let page = api_keys::page(conn, &after, 500).await?;
        let full = page.len() == 500;
        for k in page {
            let status = match (k.revoked_at, k.expires_at) {
                (Some(_), _) => "revoked",
                (None, Some(e)) if e <= now => "expired",
                _ => "active",
            };
            out.push(KeyAccess {
                roles: serde_json::from_str(&k.roles).unwrap_or_default(),
                scopes: serde_json::from_str(&k.scopes).unwrap_or_default(),
                status,
                created_by: created.get(&k.id).cloned(),
                last_rotated_at: rotated.get(&k.id).copied(),
                id: k.id,
                name: k.name,
                prefix: k.prefix,
                created_at: k.created_at,
                expires_at: k.expires_at,
                revoked_at: k.revoked_at,
            });
        }
        if !full {
            return Ok(out);
        }
    }
}

/// Build the access review as of `now`.
pub(super) async fn build(conn: &Connection, o: &Options, now: i64) -> ApiResult<Body> {
    let custom = source::custom_roles(conn).await?;
    let grants = grants(conn).await?;
    let dormant_before = now - o.dormant_days * 86_400;
    // Sign-ins are most of a log: read those that can matter, from the earlier of the
    // period's start and the dormancy threshold.
    let signins = signins(conn, o, o.period.from.min(dormant_before)).await?;
    let mut users = Vec::new();
    for u in source::all_users(conn, now).await? {
        let last = signins.get(&u.id).map(|s| s.0);
        // The membership's role first, then the roles its teams grant (none once the
        // membership has expired).
        let roles = hierarchy::roles_of(conn, &u.id, now).await?;
        let mut permissions: Vec<String> = Vec::new();
        for p in roles.iter().flat_map(|r| source::permissions_of(r, &custom)) {
            if !permissions.contains(&p) {
                permissions.push(p);
            }
        }
        users.push(UserAccess {
            team_roles: roles.into_iter().skip(1).collect(),
            permissions,
            teams: teams::names_of_member(conn, &u.id).await?,
            granted: grants.get(&u.id).cloned(),
            last_signin_at: last,
            signins_in_period: signins.get(&u.id).map(|s| s.1).unwrap_or(0),
            mfa_factors: source::confirmed_factors(conn, &u.id).await?,
            locked: u.locked_until > now,
            // Dormant: enabled, and neither a sign-in nor the account's creation within
            // the last `dormant_days` (a new account is not dormant yet).
            dormant: !u.disabled && last.unwrap_or(u.created_at) < dormant_before,
            disabled: u.disabled,
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            role_expires_at: u.role_expires_at,
            created_at: u.created_at,
        });
    }
    let keys = api_keys_of(conn, now).await?;
    let count = |f: &dyn Fn(&UserAccess) -> bool| users.iter().filter(|u| f(u)).count() as u64;
    let enabled = count(&|u| !u.disabled);
    let with_mfa = count(&|u| !u.disabled && !u.mfa_factors.is_empty());
    let summary = vec![
        figure("users", "Users", users.len() as u64),
        figure("users_enabled", "Enabled users", enabled),
        figure("users_deactivated", "Deactivated users", count(&|u| u.disabled)),
        figure("users_locked", "Users locked out now", count(&|u| u.locked)),
        figure("users_without_role", "Users without a live role", count(&|u| u.role.is_none())),
        figure("users_with_mfa", "Enabled users with a confirmed second factor", with_mfa),
        figure("mfa_adoption", "Share of enabled users with a second factor", source::ratio(with_mfa, enabled)),
        figure("dormant_users", "Dormant accounts (no sign-in within dormant_days)", count(&|u| u.dormant)),
        figure("dormant_days", "Days without a sign-in that make an account dormant", o.dormant_days),
        figure("custom_roles", "Custom roles", custom.len() as u64),
        figure("api_keys", "API keys", keys.len() as u64),
        figure("api_keys_active", "Active API keys", keys.iter().filter(|k| k.status == "active").count() as u64),
    ];
    let tables = vec![users_table(&users), roles_table(&custom, &users), keys_table(&keys)];
    let roles: Vec<_> = custom.iter().map(|(n, p)| json!({ "name": n, "permissions": p })).collect();
    Ok(Body {
        summary,
        details: json!({ "users": users, "custom_roles": roles, "api_keys": keys }),
        tables,
        notes: vec![
            "Permissions include the roles a user's teams (and their ancestor teams) grant; the owners and admins \
             of a parent organisation, who administer this one, are in the parent's access review."
                .into(),
            "Last sign-in is the latest signin.success or sso.success record since the earlier of the period's \
             start and dormant_days before the report (older sign-ins do not change who is dormant)."
                .into(),
        ],
    })
}

fn users_table(users: &[UserAccess]) -> Table {
    let rows = users
        .iter()
        .map(|u| {
            let g = u.granted.as_ref();
            vec![
                u.id.clone(),
                u.email.clone(),
                u.role.clone().unwrap_or_default(),
                u.team_roles.join(" "),
                u.permissions.join(" "),
                u.teams.join("; "),
                iso_opt(g.map(|g| g.at)),
                g.map(|g| g.by.clone()).unwrap_or_default(),
                g.map(|g| g.via.clone()).unwrap_or_default(),
                iso_opt(u.last_signin_at),
                u.signins_in_period.to_string(),
                u.mfa_factors.join(" "),
                u.disabled.to_string(),
                u.locked.to_string(),
                u.dormant.to_string(),
            ]
        })
        .collect();
    Table {
        name: "users",
        title: "Users, roles and permissions",
        columns: vec![
            "id",
            "email",
            "role",
            "team_roles",
            "permissions",
            "teams",
            "granted_at",
            "granted_by",
            "granted_via",
            "last_signin_at",
            "signins_in_period",
            "mfa_factors",
            "deactivated",
            "locked",
            "dormant",
        ],
        rows,
    }
}

fn roles_table(custom: &[(String, Vec<String>)], users: &[UserAccess]) -> Table {
    let holds = |u: &UserAccess, name: &str| u.role.as_deref() == Some(name) || u.team_roles.iter().any(|r| r == name);
    let holders = |name: &str| users.iter().filter(|u| holds(u, name)).count().to_string();
    let builtin = gatehouse_core::policy::BUILTIN_ROLES.iter().map(|(n, p)| (n.to_string(), p.join(" "), "built-in"));
    let rows = builtin
        .chain(custom.iter().map(|(n, p)| (n.clone(), p.join(" "), "custom")))
        .map(|(n, p, kind)| {
            let held_by = holders(&n);
            vec![n, kind.to_string(), p, held_by]
        })
        .collect();
    Table { name: "roles", title: "Roles", columns: vec!["role", "kind", "permissions", "holders"], rows }
}

fn keys_table(keys: &[KeyAccess]) -> Table {
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                k.name.clone(),
                k.prefix.clone(),
                k.roles.join(" "),
                k.scopes.join(" "),
                k.status.to_string(),
                iso_opt(Some(k.created_at)),
                k.created_by.clone().unwrap_or_default(),
                iso_opt(k.last_rotated_at),
                iso_opt(k.expires_at),
            ]
        })
        .collect();
    Table {
        name: "api_keys",
        title: "API keys",
        columns: vec![
            "id",
            "name",
            "prefix",
            "roles",
            "scopes",
            "status",
            "created_at",
            "created_by",
            "last_rotated_at",
            "expires_at",
        ],
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::source::testing::put;
    use crate::store::{memberships, roles, test_tenant, users};

    const DAY: i64 = 86_400;

    #[tokio::test]
    async fn grants_last_sign_ins_and_dormant_accounts_from_the_log_and_the_users() {
        let (_dir, _s, db) = test_tenant().await;
        let h = db.lock().await;
        let now = 100 * DAY;
        roles::upsert(&h, "support", r#"["members:read","audit:read"]"#).await.unwrap();
        for (id, created, role) in
            [("u_old", 0, "viewer"), ("u_recent", 0, "support"), ("u_new", now - 10, "viewer"), ("u_off", 0, "admin")]
        {
            let email = format!("{id}@x.test");
            let row = users::NewUser { id, email: &email, name: "", password_hash: None, created_at: created };
            users::insert(&h, &row).await.unwrap();
            memberships::insert(&h, id, role, None).await.unwrap();
        }
        users::set_disabled(&h, "u_off", true).await.unwrap();
        put(&h, ("operator", "user.create", "user:u_old"), None, 10, "r1", None).await;
        put(&h, ("user:u_admin", "membership.set", "user:u_old"), None, 20, "r2", Some("operator")).await;
        put(
            &h,
            ("user:u_recent", "invitation.accept", "invitation:i_1"),
            Some(json!({ "user": "u_recent" })),
            30,
            "r3",
            None,
        )
        .await;
        put(&h, ("user:u_old", "signin.success", "user:u_old"), None, 40, "r4", None).await;
        put(&h, ("user:u_recent", "sso.success", "sso:c_1"), None, now - 2 * DAY, "r5", None).await;
        put(&h, ("user:u_recent", "signin.success", "user:u_recent"), None, now - DAY, "r6", None).await;
        let o = Options::new(Some(now - 3 * DAY), Some(now), Some(30), now).unwrap();
        let b = build(&h, &o, now).await.unwrap();
        let users = b.details["users"].as_array().unwrap();
        let of = |id: &str| users.iter().find(|u| u["id"] == id).unwrap().clone();
        let old = of("u_old");
        assert_eq!(old["granted"]["via"], "membership.set", "the last grant wins");
        assert_eq!(old["granted"]["by"], "user:u_admin (acting: operator)");
        // Its sign-in at 40 is before the window read (30 days): dormant, no last sign-in shown.
        assert_eq!((old["last_signin_at"].as_i64(), old["dormant"].as_bool()), (None, Some(true)));
        let recent = of("u_recent");
        assert_eq!(recent["granted"]["via"], "invitation.accept");
        assert_eq!(recent["permissions"], json!(["members:read", "audit:read"]));
        assert_eq!(
            (recent["last_signin_at"].as_i64(), recent["signins_in_period"].as_u64()),
            (Some(now - DAY), Some(2))
        );
        assert_eq!(recent["dormant"], false);
        assert_eq!(of("u_new")["dormant"], false, "a new account is not dormant yet");
        assert_eq!((of("u_off")["dormant"].as_bool(), of("u_off")["disabled"].as_bool()), (Some(false), Some(true)));
        assert_eq!(of("u_off")["permissions"][0], "*:read");
        let fig = |k: &str| b.summary.iter().find(|f| f.key == k).unwrap().value.clone();
        assert_eq!((fig("users"), fig("dormant_users"), fig("users_deactivated")), (json!(4), json!(1), json!(1)));
        assert_eq!((fig("users_with_mfa"), fig("mfa_adoption")), (json!(0), json!(0.0)));
        let roles = &b.tables[1];
        let support = roles.rows.iter().find(|r| r[0] == "support").unwrap();
        assert_eq!(support, &["support", "custom", "members:read audit:read", "1"]);
        assert_eq!(roles.rows.iter().find(|r| r[0] == "viewer").unwrap()[3], "2");
    }
}
