//! The account and tenant lifecycle where sessions are opened and refreshed: a
//! suspended organisation signs nobody in (`403 tenant_suspended`), a disabled user with
//! the right password is told so (`403 user_disabled`; a wrong password stays the generic
//! `invalid_credentials`), a new session lives at most the organisation's
//! `session_max_lifetime_secs`, and a refresh ends a session that was idle longer than
//! `session_idle_timeout_secs` (or outlived its lifetime) with the generic `invalid_grant`
//! of RFC 6749, audited as `session.idle_timeout` / `session.lifetime_ended`.
//!
//! Every function here is one call from the sign-in paths ([`crate::api::tenant`]).

use serde_json::json;

use crate::audit::RequestMeta;
use crate::error::{ApiError, ApiResult};
use crate::identity::SigninOutcome;
use crate::store::{orgs, sessions, Held};

use crate::api::admin::auth_policy;
use crate::api::app::App;
use crate::api::extract::Tenant;
use crate::api::transaction::{commit, ev};

// The suspension check lives with the request extractors (the admin API refuses a
// suspended organisation's members there too); re-exported for the sign-in paths.
pub(crate) use crate::api::extract::{refuse_if_suspended, suspended};

/// The answer to a failed password check: `user_disabled` for a disabled account whose
/// password was right, the generic `invalid_credentials` for everything else.
pub(crate) fn signin_refused(outcome: &SigninOutcome) -> ApiError {
    match outcome {
        SigninOutcome::Disabled(_) => ApiError::forbidden("user_disabled", "this account is deactivated"),
        _ => ApiError::InvalidCredentials,
    }
}

/// When a session opened at `now` ends: the region's `tokens.session_ttl_secs`, or the
/// organisation's `session_max_lifetime_secs` when that is shorter.
pub(crate) async fn session_expiry(app: &App, h: &libsql::Connection, now: i64) -> ApiResult<i64> {
    let region = app.cfg.tokens.session_ttl_secs;
    let org = auth_policy::load(h).await?.session_max_lifetime_secs.unwrap_or(region);
    Ok(now + region.min(org) as i64)
}

/// Note that tokens were issued for session `sid` now (its last use; the client's
/// address and user agent the first time).
pub(crate) async fn touch(h: &libsql::Connection, sid: &str, m: &RequestMeta, now: i64) -> ApiResult<()> {
    sessions::touch(h, sid, m.ip.as_deref(), m.user_agent.as_deref(), now).await?;
    Ok(())
}

/// Why a session may not be refreshed any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Unused longer than the idle timeout.
    Idle,
    /// Older than the organisation's maximum lifetime.
    Lifetime,
}

/// Whether a session that began at `created` and was last used at `last_seen` may still
/// be refreshed at `now` under `idle` / `lifetime` (seconds).
pub(crate) fn ended(created: i64, last_seen: i64, now: i64, idle: Option<u64>, lifetime: Option<u64>) -> Option<Ended> {
    if lifetime.is_some_and(|l| now - created >= l as i64) {
        return Some(Ended::Lifetime);
    }
    if idle.is_some_and(|i| now - last_seen > i as i64) {
        return Some(Ended::Idle);
    }
    None
}

/// Gate a refresh of session `sid` (its refresh token already taken in `h`): refused
/// while the organisation is suspended (nothing changes; the token stays usable after a
/// resume); a session past the organisation's idle timeout or lifetime is ended,
/// audited and refused with `invalid_grant`. Otherwise the transaction comes back.
pub(crate) async fn refresh_allowed<'t>(
    app: &App,
    t: &'t Tenant,
    h: Held<'t>,
    m: &RequestMeta,
    sid: &str,
    now: i64,
) -> ApiResult<Held<'t>> {
    if orgs::suspended_at(&h).await?.is_some() {
        // Dropped uncommitted: the refresh token is not spent.
        return Err(suspended());
    }
    let policy = auth_policy::load(&h).await?;
    let Some((created, last_seen)) = sessions::activity(&h, sid).await? else { return Err(ApiError::InvalidGrant) };
    let Some(why) = ended(created, last_seen, now, policy.session_idle_timeout_secs, policy.session_max_lifetime_secs)
    else {
        return Ok(h);
    };
    sessions::end(&h, sid, now).await?;
    let (action, detail) = match why {
        Ended::Idle => ("session.idle_timeout", json!({ "idle_secs": now - last_seen })),
        Ended::Lifetime => ("session.lifetime_ended", json!({ "age_secs": now - created })),
    };
    commit(app, t, h, m, vec![ev("system", action, format!("session:{sid}"), None, Some(detail))]).await?;
    app.changed(&t.id).await?;
    Err(ApiError::InvalidGrant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_too_long_or_too_old() {
        // Neither limit: never.
        assert_eq!(ended(0, 0, 1_000_000, None, None), None);
        // Idle 60 s: used 60 s ago is fine, 61 s is not.
        assert_eq!(ended(0, 100, 160, Some(60), None), None);
        assert_eq!(ended(0, 100, 161, Some(60), None), Some(Ended::Idle));
        // Lifetime 3600 s: from its beginning, however recently used.
        assert_eq!(ended(0, 3599, 3599, Some(60), Some(3600)), None);
        assert_eq!(ended(0, 3599, 3600, Some(60), Some(3600)), Some(Ended::Lifetime));
    }

    #[test]
    fn only_a_disabled_account_with_the_right_password_hears_so() {
        assert_eq!(signin_refused(&SigninOutcome::Disabled("u_1".into())).code(), "user_disabled");
        assert_eq!(signin_refused(&SigninOutcome::Disabled("u_1".into())).status().as_u16(), 403);
        for o in [
            SigninOutcome::UnknownUser,
            SigninOutcome::Locked("u_1".into()),
            SigninOutcome::WrongPassword { user: "u_1".into(), locked: false },
        ] {
            assert_eq!(signin_refused(&o).code(), "invalid_credentials", "{o:?}");
        }
        assert_eq!(suspended().code(), "tenant_suspended");
    }
}
