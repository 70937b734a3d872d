//! Ending a session from the admin API.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiError, ApiResult};
use crate::store::sessions;

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
    app.changed();
    Ok(StatusCode::NO_CONTENT)
}
