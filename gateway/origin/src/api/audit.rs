//! The audit-log endpoints: query and export (JSON, JSON lines, CSV) and chain
//! verification (retention, legal holds and purges: [`crate::api::retention`]).

use anyhow::Result;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{self};
use crate::error::{bad, ApiResult};
use crate::store;

use crate::api::app::App;
use crate::api::extract::{AppState, Authed, QueryParams};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    // Spelled out rather than `#[serde(flatten)]`: flattening makes every query value a
    // string, so `limit=10` failed to parse as a number.
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    format: Option<String>,
}

pub(crate) fn csv_field(s: &str) -> String {
    // Quote always; a leading formula character is defused for spreadsheets.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(crate) async fn query_audit(
    State(app): AppState,
    authed: Authed,
    QueryParams(q): QueryParams<AuditQuery>,
) -> ApiResult<Response> {
    let Authed { t, .. } = authed;
    let sealer = crate::privacy::sealer(&app, &t.id);
    // Records name an address by its pseudonym (`email:<hmac>`); so does the filter.
    let actor = q.actor.as_deref().map(|a| match a.strip_prefix("email:").filter(|e| e.contains('@')) {
        Some(e) => sealer.email_subject(e),
        None => a.to_string(),
    });
    let filter = audit::Filter {
        action: q.action.clone(),
        actor,
        since: q.since,
        until: q.until,
        after: q.after,
        limit: q.limit,
    };
    // Shown opened (personal data restored, `erased subject` where a key is gone); the
    // stored form is what the chain hashes.
    let records = {
        let h = t.db.lock().await;
        crate::privacy::open_in(&h, &sealer, &audit::query(&h, &filter).await?).await?
    };
    let next = records.last().map(|r| r.seq);
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => Json(json!({ "items": records, "next_after": next })).into_response(),
        "jsonl" => {
            let mut out = String::new();
            for r in &records {
                out.push_str(&serde_json::to_string(r)?);
                out.push('\n');
            }
            ([("content-type", "application/x-ndjson")], out).into_response()
        }
        "csv" => {
            let mut out =
                String::from("seq,at,actor,action,target,before,after,ip,user_agent,request_id,prev_hash,hash\n");
            for r in &records {
                let cols = [
                    r.seq.to_string(),
                    r.at.to_string(),
                    r.actor.clone(),
                    r.action.clone(),
                    r.target.clone(),
                    r.before.clone().unwrap_or_default(),
                    r.after.clone().unwrap_or_default(),
                    r.ip.clone().unwrap_or_default(),
                    r.user_agent.clone().unwrap_or_default(),
                    r.request_id.clone().unwrap_or_default(),
                    r.prev_hash.clone(),
                    r.hash.clone(),
                ];
                out.push_str(&cols.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            ([("content-type", "text/csv")], out).into_response()
        }
        _ => return Err(bad("invalid_format", "format: json, jsonl or csv")),
    })
}

/// Verify tenant `id`'s audit chain against the head kept in the directory.
pub async fn verify_tenant_audit(app: &App, tenant_id: &str) -> Result<audit::Verdict> {
    let head = store::audit::head_of(&*app.store.directory.lock().await, tenant_id).await?;
    let db = app.store.tenant(tenant_id, false).await?;
    let h = db.lock().await;
    audit::verify(&h, head).await
}

pub(crate) async fn verify_audit(State(app): AppState, authed: Authed) -> ApiResult<Json<Value>> {
    let Authed { t, .. } = authed;
    Ok(Json(match verify_tenant_audit(&app, &t.id).await? {
        audit::Verdict::Intact(n) => json!({ "intact": true, "records": n }),
        audit::Verdict::Broken { seq, problem } => json!({ "intact": false, "seq": seq, "problem": problem }),
    }))
}
