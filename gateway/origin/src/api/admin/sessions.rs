//! Sessions from the admin API: a user's live sessions (device, address, user agent,
//! last use, how they signed in) and ending one. The session view is shared with the
//! self-service API ([`crate::api::account`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::store::sessions::{self, SessionView};
use crate::store::users;

use crate::api::admin::roles::may_grant;
use crate::api::extract::{AppState, Authed};
use crate::api::tenant::end_session;
use crate::api::transaction::begin;

pub(crate) async fn revoke_session(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = &authed.t;
    let h = begin(t).await?;
    if !sessions::exists_id(&h, &id).await? {
        return Err(ApiError::not_found("session_not_found", "no such session"));
    }
    end_session(&h, &id, crate::now()).await?;
    authed.commit(&app, h, "session.revoke", format!("session:{id}"), None, None).await?;
    app.changed(&t.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/orgs/{slug}/users/{id}/sessions`: the user's live sessions, newest first.
pub(crate) async fn list_user_sessions(
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let h = authed.t.db.lock().await;
    if !users::exists_id(&h, &id).await? {
        return Err(ApiError::not_found("user_not_found", "no such user"));
    }
    let items: Vec<Value> =
        sessions::live_of_user(&h, &id, crate::now()).await?.iter().map(|s| session_json(s, None)).collect();
    Ok(Json(json!({ "items": items })))
}

/// `DELETE /v1/orgs/{slug}/users/{id}/sessions`: sign the user out everywhere (every
/// session and its refresh tokens end; edges refuse the sessions with the next bundle).
/// Nobody signs out a user above their own role.
pub(crate) async fn end_user_sessions(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (t, c) = (&authed.t, &authed.caller);
    let now = crate::now();
    let h = begin(t).await?;
    let user =
        users::by_id(&h, &id, now).await?.ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if user.role.as_deref().is_some_and(|r| !may_grant(c, r)) {
        return Err(ApiError::forbidden("role_too_high", "you cannot sign out a user above your own role"));
    }
    let after = json!({ "sessions_ended": end_all_of_user(&h, &id, now).await? });
    authed.commit(&app, h, "user.sessions_end", format!("user:{id}"), None, Some(after.clone())).await?;
    app.changed(&t.id).await?;
    Ok(Json(after))
}

/// End every open session of user `id` (and their refresh tokens) in the caller's
/// transaction; how many ended.
pub(crate) async fn end_all_of_user(h: &libsql::Connection, id: &str, now: i64) -> ApiResult<usize> {
    let open = sessions::open_of_user(h, id).await?;
    for s in &open {
        end_session(h, s, now).await?;
    }
    Ok(open.len())
}

/// A session as the APIs show it; `current`: the caller's own session id.
pub(crate) fn session_json(s: &SessionView, current: Option<&str>) -> Value {
    let amr: Vec<String> = serde_json::from_str(&s.amr).unwrap_or_default();
    let mut v = json!(s);
    v["amr"] = json!(amr);
    v["device"] = json!(device(s.user_agent.as_deref().unwrap_or_default()));
    if let Some(c) = current {
        v["current"] = json!(s.id == c);
    }
    v
}

/// A short description of the device a `User-Agent` names ("Firefox on Linux"); "Unknown
/// device" when it names none this recognises. Order matters: Edge and Opera also say
/// Chrome, Chrome also says Safari, Android also says Linux, iOS also says Mac OS.
pub(crate) fn device(ua: &str) -> String {
    let has = |needle: &str| ua.contains(needle);
    let browser = if has("Edg/") || has("Edge/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        Some("Chrome")
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else if ua.starts_with("curl/") {
        Some("curl")
    } else {
        None
    };
    let os = if has("iPhone") || has("iPad") || has("iPod") {
        Some("iOS")
    } else if has("Android") {
        Some("Android")
    } else if has("Windows") {
        Some("Windows")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Linux") || has("X11") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("Browser on {o}"),
        (None, None) => "Unknown device".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_from_real_user_agents() {
        for (ua, want) in [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown device"),
            ("<script>", "Unknown device"),
        ] {
            assert_eq!(device(ua), want, "{ua}");
        }
    }
}
