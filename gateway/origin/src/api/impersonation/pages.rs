//! The user-facing side of impersonation: the single-use hosted hand-off that puts an
//! impersonation's session into a browser (`GET /t/{slug}/impersonate?token=…`), and the
//! self-service audit view in which a user sees what was done as them and to them
//! (`GET /t/{slug}/me/audit`).

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::identity::new_id;
use crate::store::impersonations;
use crate::tokens;

use crate::api::account::me_from_bearer;
use crate::api::extract::{meta, residency, tenant, AppState, Peer, QueryParams};
use crate::api::pages::{esc, html, session_cookie};
use crate::api::session::{issue, Session};
use crate::api::transaction::{begin, ev};

use super::sweep;

/// The longest hand-off token accepted (they are `ghi_` and 43 characters).
const MAX_TOKEN: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HandoffQuery {
    token: String,
}

fn refused_page(slug: &str, status: StatusCode, text: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Impersonation · {slug}</title></head><body>\n<h1>Impersonation</h1>\n<p role=\"alert\">{text}</p>\n</body></html>\n",
        slug = esc(slug),
        text = esc(text)
    );
    html(status, page, &[])
}

/// `GET /t/{slug}/impersonate?token=…`: spend the hand-off of a running impersonation,
/// set the session cookie of its session, and go to the account page. A spent, expired,
/// ended or unknown hand-off is a 401 page (`handoff_invalid`).
pub(crate) async fn handoff(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    q: Result<QueryParams<HandoffQuery>, ApiError>,
) -> Response {
    let t = match tenant(&app, &slug, &format!("/t/{slug}/impersonate")).await {
        Ok(t) => t,
        Err(e) => return residency(e, &headers),
    };
    let invalid = || refused_page(&t.slug, StatusCode::UNAUTHORIZED, "This link is not valid (any more).");
    let Ok(QueryParams(q)) = q else { return invalid() };
    if q.token.len() > MAX_TOKEN {
        return invalid();
    }
    let m = meta(&headers, &peer);
    let run = async {
        let now = crate::now();
        let h = begin(&t).await?;
        let Some(i) = impersonations::take_handoff(&h, &tokens::secret_hash(&q.token), now).await? else {
            return Err(ApiError::unauthorized("handoff_invalid", "the hand-off is spent, expired or unknown"));
        };
        let after = Some(json!({ "id": i.id }));
        let events =
            vec![ev(i.actor.clone(), "impersonation.handoff", format!("session:{}", i.session_id), None, after)];
        let s = Session { held: h, user: i.user_id, sid: i.session_id, family: new_id("f_"), amr: Vec::new(), events };
        issue(&app, &t, &m, s, None).await
    };
    match run.await {
        Ok(tokens) => {
            let cookie = session_cookie(&app, tokens["access_token"].as_str().unwrap_or_default());
            let mut r = StatusCode::SEE_OTHER.into_response();
            let to = format!("/t/{}/account", t.slug);
            for (k, v) in [("location", to), ("set-cookie", cookie)] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    r.headers_mut().append(k, v);
                }
            }
            r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
            // The spent link stays in the history; it is not sent on as a referrer either.
            r.headers_mut().insert("referrer-policy", HeaderValue::from_static("no-referrer"));
            r
        }
        Err(ApiError::Unauthorized { .. } | ApiError::InvalidGrant) => invalid(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditPage {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /t/{slug}/me/audit?after=&limit=` (bearer access token): the audit records about
/// the signed-in user — what they did, what was done to them, and what an impersonator
/// did as them (`act`) — by sequence number, paginated (default 50, at most 500), their
/// sealed personal fields opened. The client address and user agent of the records are
/// not shown (they may be somebody else's: an admin's, the impersonator's).
pub(crate) async fn my_audit(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    QueryParams(p): QueryParams<AuditPage>,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/me/audit")).await?;
        let me = me_from_bearer(&app, &t, &headers).await?;
        sweep(&app, &t, &meta(&headers, &peer)).await?;
        let limit = p.limit.unwrap_or(50).clamp(1, 500) as i64;
        let rows = {
            let h = t.db.lock().await;
            let stored = impersonations::audit_about(&h, &me.user, p.after.unwrap_or(0), limit).await?;
            // The records' own words (names, addresses in `before`/`after`), opened.
            crate::privacy::open_in(&h, &crate::privacy::sealer(&app, &t.id), &stored).await?
        };
        let parse = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
        let items: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({ "seq": r.seq, "at": r.at, "actor": r.actor, "act": r.act, "action": r.action,
                    "target": r.target, "before": parse(&r.before), "after": parse(&r.after) })
            })
            .collect();
        let next = (items.len() as i64 == limit).then(|| rows.last().map(|r| r.seq)).flatten();
        let mut r = Json(json!({ "items": items, "next": next })).into_response();
        r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
        ApiResult::Ok(r)
    };
    run.await.unwrap_or_else(|e| residency(e, &headers))
}
