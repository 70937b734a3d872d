//! A signed-in session: the token request, opening a session, issuing its tokens and
//! ending it. Every sign-in path (password, MFA, passkeys, SSO, invitations) ends here.

use anyhow::Result;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{Event, RequestMeta};
use crate::error::{ApiError, ApiResult};
use crate::identity::new_id;
use crate::store::{hierarchy, impersonations, sessions, users, Held};
use crate::tokens::{self, AccessGrant};

use crate::api::app::App;
use crate::api::extract::Tenant;
use crate::api::lifecycle;
use crate::api::transaction::{commit, ev};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    pub(crate) grant_type: String,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
    /// `grant_type=mfa`: the token of the second step; and one of `otp`,
    /// `recovery_code` or `credential` (a WebAuthn assertion).
    #[serde(default)]
    pub(crate) mfa_token: Option<String>,
    #[serde(default)]
    pub(crate) otp: Option<String>,
    #[serde(default)]
    pub(crate) recovery_code: Option<String>,
    #[serde(default)]
    pub(crate) credential: Option<Value>,
    /// `grant_type=passkey`: the passwordless challenge's id.
    #[serde(default)]
    pub(crate) challenge_id: Option<String>,
}

/// Roles and teams of `user` now (membership expiry honoured): the membership's role and
/// those their teams and the teams' ancestors grant; their teams and every ancestor team.
pub(crate) async fn grants_of(h: &libsql::Connection, user: &str, now: i64) -> Result<(Vec<String>, Vec<String>)> {
    let roles = hierarchy::roles_of(h, user, now).await?;
    let teams = hierarchy::team_names_with_ancestors(h, user).await?;
    Ok((roles, teams))
}

/// A signed-in session, its transaction still open.
pub(crate) struct Session<'t> {
    pub(crate) held: Held<'t>,
    pub(crate) user: String,
    pub(crate) sid: String,
    pub(crate) family: String,
    pub(crate) amr: Vec<String>,
    pub(crate) events: Vec<Event>,
}

/// Insert a session for `user` (with its authentication methods and identity provider)
/// and note it in `events`; its id and a new refresh-token family.
pub(crate) async fn open_session(
    app: &App,
    h: &libsql::Connection,
    user: &str,
    amr: &[String],
    idp: Option<&str>,
    now: i64,
    events: &mut Vec<Event>,
) -> ApiResult<(String, String)> {
    lifecycle::refuse_if_suspended(h).await?;
    let sid = new_id("s_");
    let amr = serde_json::to_string(amr)?;
    let row = sessions::NewSession {
        id: &sid,
        user_id: user,
        amr: &amr,
        idp,
        created_at: now,
        expires_at: lifecycle::session_expiry(app, h, now).await?,
    };
    sessions::insert(h, &row).await?;
    events.push(ev(
        format!("user:{user}"),
        "session.create",
        format!("session:{sid}"),
        None,
        idp.map(|i| json!({ "idp": i })),
    ));
    Ok((sid, new_id("f_")))
}

/// Issue an access token and a refresh token for a session, append `events` and commit.
pub(crate) async fn issue(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    s: Session<'_>,
    scopes: Option<Vec<String>>,
) -> ApiResult<Value> {
    let now = crate::now();
    let Session { held: h, user, sid: session, family, amr, mut events } = s;
    if users::disabled(&h, &user).await? != Some(false) {
        return Err(ApiError::InvalidGrant);
    }
    let (roles, teams) = grants_of(&h, &user, now).await?;
    // An impersonation's tokens say who really acts, and never outlive it.
    let mut ttl_secs = app.cfg.tokens.access_ttl_secs;
    let act = match impersonations::of_session(&h, &session).await? {
        Some(i) if !i.active(now) => return Err(ApiError::InvalidGrant),
        Some(i) => {
            ttl_secs = ttl_secs.min((i.ends_at - now) as u64);
            let user_actor = format!("user:{user}");
            for e in events.iter_mut().filter(|e| e.actor == user_actor && e.act.is_none()) {
                e.act = Some(i.actor.clone());
            }
            Some(i.actor)
        }
        None => None,
    };
    lifecycle::touch(&h, &session, m, now).await?;
    // The session's own record of how and when it authenticated (step-up renews it).
    let auth_time = sessions::authentication(&h, &session).await?.map(|(_, at)| at).unwrap_or(now);
    let email_verified = users::email_verified(&h, &user).await?;
    let refresh =
        tokens::new_refresh(&h, &family, &session, &user, now, app.cfg.tokens.refresh_ttl_secs as i64).await?;
    let issuer = app.cfg.issuer(&t.slug);
    let keys = app.keys();
    let (access, jti, exp) = tokens::access_token(
        &keys,
        &AccessGrant {
            issuer: &issuer,
            audience: &app.cfg.tokens.audience,
            subject: &user,
            org: &t.slug,
            roles: roles.clone(),
            scopes: scopes.clone(),
            teams,
            sid: &session,
            amr,
            auth_time,
            email_verified,
            ttl_secs,
            act: act.clone(),
        },
    )?;
    let mut issued = ev(
        format!("user:{user}"),
        "token.issue",
        format!("jti:{jti}"),
        None,
        Some(json!({ "roles": roles, "expires_at": exp })),
    );
    issued.act = act;
    events.push(issued);
    commit(app, t, h, m, events).await?;
    app.metrics.issued();
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl_secs,
        "refresh_token": refresh,
        "scope": scopes.map(|s| s.join(" ")),
    }))
}

/// End a session: revoked now, its refresh tokens spent.
pub(crate) async fn end_session(h: &libsql::Connection, sid: &str, now: i64) -> ApiResult<()> {
    sessions::end(h, sid, now).await?;
    Ok(())
}
