//! The operator's audit log (region level, in the directory database): what the
//! platform operator did to whole tenants — suspensions, tier changes, deletions. A
//! deleted tenant's own log goes with its files; this one stays. Hash-chained like a
//! tenant's log (the same record hash), verified on every read.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use libsql::Connection;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{record_hash, RequestMeta, Verdict, GENESIS};
use crate::error::ApiResult;
use crate::store::audit::Record;
use crate::store::{self, operator_audit};

use crate::api::app::App;
use crate::api::extract::{require_operator, AppState, QueryParams};

/// Append a record to the operator's log in the directory transaction `d` holds.
pub(crate) async fn append_in(
    d: &Connection,
    m: &RequestMeta,
    action: &str,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
) -> ApiResult<()> {
    let (seq, prev_hash) = operator_audit::last(d).await?.unwrap_or_else(|| (0, GENESIS.to_string()));
    let mut r = Record {
        seq: seq + 1,
        at: crate::now(),
        actor: "operator".into(),
        action: action.into(),
        target,
        before: before.map(|v| v.to_string()),
        after: after.map(|v| v.to_string()),
        ip: m.ip.clone(),
        user_agent: m.user_agent.clone(),
        request_id: Some(m.request_id.clone()),
        act: None,
        sealed: None,
        prev_hash,
        hash: String::new(),
    };
    r.hash = record_hash(&r);
    operator_audit::insert(d, &r).await?;
    Ok(())
}

/// Append a record to the operator's log (its own transaction).
pub(crate) async fn append(
    app: &App,
    m: &RequestMeta,
    action: &str,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
) -> ApiResult<()> {
    let d = app.store.directory.lock().await;
    store::begin_immediate(&d).await?;
    append_in(&d, m, action, target, before, after).await?;
    store::commit(&d).await?;
    Ok(())
}

/// Check the whole chain: every record links to the one before and hashes to itself.
pub(crate) async fn verify(d: &Connection) -> ApiResult<Verdict> {
    let (mut seq, mut prev) = (0, GENESIS.to_string());
    let mut n = 0u64;
    loop {
        let page = operator_audit::page(d, seq, 1000).await?;
        if page.is_empty() {
            return Ok(Verdict::Intact(n));
        }
        for r in page {
            if r.seq != seq + 1 {
                return Ok(Verdict::Broken {
                    seq: seq + 1,
                    problem: format!("missing records {}..{}", seq + 1, r.seq - 1),
                });
            }
            if r.prev_hash != prev {
                return Ok(Verdict::Broken {
                    seq: r.seq,
                    problem: "link to the previous record does not match".into(),
                });
            }
            if record_hash(&r) != r.hash {
                return Ok(Verdict::Broken { seq: r.seq, problem: "record was modified".into() });
            }
            seq = r.seq;
            prev = r.hash;
            n += 1;
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogPage {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /v1/operator/audit`: one page of the operator's log, and whether the chain is
/// intact.
pub(crate) async fn list(
    State(app): AppState,
    headers: HeaderMap,
    QueryParams(p): QueryParams<LogPage>,
) -> ApiResult<Json<Value>> {
    require_operator(&app, &headers)?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000) as i64;
    let d = app.store.directory.lock().await;
    let records = operator_audit::page(&d, p.after.unwrap_or(0), limit).await?;
    let verdict = match verify(&d).await? {
        Verdict::Intact(n) => json!({ "intact": true, "records": n }),
        Verdict::Broken { seq, problem } => json!({ "intact": false, "seq": seq, "problem": problem }),
    };
    let parse = |s: &Option<String>| s.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({ "seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target,
                "before": parse(&r.before), "after": parse(&r.after), "ip": r.ip, "user_agent": r.user_agent,
                "request_id": r.request_id, "hash": r.hash })
        })
        .collect();
    let next_after = if items.len() as i64 == limit { records.last().map(|r| r.seq) } else { None };
    Ok(Json(json!({ "items": items, "next_after": next_after, "verify": verdict })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_operator_log_chains_and_tampering_is_found() {
        let (_dir, s, _db) = crate::store::test_tenant().await;
        let d = s.directory.lock().await;
        let m = RequestMeta { request_id: "r".into(), ..Default::default() };
        for a in ["org.suspend", "org.resume", "org.delete"] {
            append_in(&d, &m, a, "org:acme".into(), None, Some(json!({ "x": 1 }))).await.unwrap();
        }
        assert_eq!(verify(&d).await.unwrap(), Verdict::Intact(3));
        d.execute("UPDATE operator_audit SET target = 'org:other' WHERE seq = 2", ()).await.unwrap();
        assert_eq!(verify(&d).await.unwrap(), Verdict::Broken { seq: 2, problem: "record was modified".into() });
        d.execute("DELETE FROM operator_audit WHERE seq = 2", ()).await.unwrap();
        assert!(matches!(verify(&d).await.unwrap(), Verdict::Broken { seq: 2, .. }));
    }
}
