//! Ending a session from the admin API.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};

use crate::error::{ApiError, ApiResult};
use crate::store::sessions;

use crate::api::extract::{meta, AppState, Authed, Peer};
use crate::api::tenant::end_session;
use crate::api::transaction::{begin, commit, ev};

pub(crate) async fn revoke_session(
    State(app): AppState,
    authed: Authed,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let Authed { t, caller: c } = authed;
    let h = begin(&t).await?;
    if !sessions::exists_id(&h, &id).await? {
        return Err(ApiError::not_found("session_not_found", "no such session"));
    }
    end_session(&h, &id, crate::now()).await?;
    commit(
        &app,
        &t,
        h,
        &meta(&headers, &peer),
        vec![ev(c.actor(), "session.revoke", format!("session:{id}"), None, None)],
    )
    .await?;
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}
