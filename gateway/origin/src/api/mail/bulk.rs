//! `POST /v1/orgs/{slug}/invitations/bulk`: many invitations at once, from CSV
//! (`text/csv`: `email,role,team`, an optional header line) or JSON lines
//! (`application/x-ndjson` or `application/jsonl`: one `{"email","role","team"}` per line).
//!
//! At most `mail.bulk_max_rows` rows (and the API's body limit). Each row is its own
//! invitation — validated, committed and audited alone — so one bad row does not stop the
//! others; the answer has a result per row (its line number, `invited` with the id and how
//! the mail went, or `failed` with the reason code).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::mailer::MailError;

use crate::api::extract::{AppState, Authed, RawBody};
use crate::api::mail::invitations::{invite_one, CreateInvitation};

/// One parsed row: its line number and the invitation, or why it could not be read.
type Row = (usize, Result<CreateInvitation, ApiError>);

/// A CSV field: trimmed, surrounding double quotes removed.
fn field(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s).trim().to_string()
}

/// Rows of `email,role,team` (team optional); a first line starting with `email` is a
/// header.
fn parse_csv(text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("email")) {
            continue;
        }
        let cols: Vec<String> = line.split(',').map(field).collect();
        let row = match cols.as_slice() {
            [email, role] => Ok(CreateInvitation { email: email.clone(), role: role.clone(), team: None }),
            [email, role, team] => Ok(CreateInvitation {
                email: email.clone(),
                role: role.clone(),
                team: (!team.is_empty()).then(|| team.clone()),
            }),
            _ => Err(bad("invalid_row", "expected email,role[,team]")),
        };
        out.push((i + 1, row));
    }
    out
}

/// Rows of JSON objects, one per line.
fn parse_jsonl(text: &str) -> Vec<Row> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let row = serde_json::from_str::<CreateInvitation>(l)
                .map_err(|e| bad("invalid_row", format!("expected {{\"email\",\"role\",\"team\"}}: {e}")));
            (i + 1, row)
        })
        .collect()
}

/// The rows of `body` by its content type.
fn parse(headers: &HeaderMap, body: &[u8]) -> ApiResult<Vec<Row>> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ct = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let text = std::str::from_utf8(body).map_err(|_| bad("invalid_body", "the body must be UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match ct.as_str() {
        "text/csv" => Ok(parse_csv(text)),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => Ok(parse_jsonl(text)),
        _ => Err(bad(
            "unsupported_media_type",
            "send text/csv (email,role,team) or application/x-ndjson (one JSON object per line)",
        )),
    }
}

/// `POST /v1/orgs/{slug}/invitations/bulk` (`users:invite`).
pub(crate) async fn bulk_invite(
    State(app): AppState,
    authed: Authed,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<Value>> {
    let rows = parse(&headers, &body)?;
    if rows.is_empty() {
        return Err(bad("invalid_body", "no rows"));
    }
    let max = app.cfg.mail.bulk_max_rows;
    if rows.len() > max {
        return Err(bad("too_many_rows", format!("at most {max} rows per request, got {}", rows.len())));
    }
    let (mut invited, mut failed) = (0, 0);
    let mut results = Vec::with_capacity(rows.len());
    // Once the relay timed out, the rest are not tried (the request stays bounded by about
    // one timeout); those invitations stand with `mail: "failed"` and can be resent.
    let mut relay_down = false;
    for (line, row) in rows {
        let outcome = match row {
            Ok(req) => invite_one(&app, &authed, &req).await.map(|r| (req.email, r)),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok((_, (inv, msg))) => {
                invited += 1;
                let mail = match relay_down {
                    true => "failed",
                    false => match app.mailer.send(&msg).await {
                        Ok(()) => "sent",
                        Err(e) => {
                            relay_down = matches!(e, MailError::Timeout(_));
                            "failed"
                        }
                    },
                };
                json!({ "row": line, "email": inv.email, "status": "invited", "id": inv.id, "mail": mail })
            }
            Err(e @ (ApiError::Storage(_) | ApiError::Internal(_))) => return Err(e),
            Err(e) => {
                failed += 1;
                json!({ "row": line, "status": "failed", "error": e.code(), "message": e.to_string() })
            }
        });
    }
    Ok(Json(json!({ "invited": invited, "failed": failed, "results": results })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_lines_are_read_row_by_row() {
        let csv = parse_csv("email,role,team\r\nada@x.test,viewer,eng\n\n\"bob@x.test\", admin ,\nbad-row\n");
        assert_eq!(csv.len(), 3);
        let (line, ada) = &csv[0];
        let ada = ada.as_ref().unwrap();
        assert_eq!(
            (*line, ada.email.as_str(), ada.role.as_str(), ada.team.as_deref()),
            (2, "ada@x.test", "viewer", Some("eng"))
        );
        let bob = csv[1].1.as_ref().unwrap();
        assert_eq!((bob.email.as_str(), bob.role.as_str(), bob.team.as_deref()), ("bob@x.test", "admin", None));
        assert_eq!(csv[2].0, 5);
        assert_eq!(csv[2].1.as_ref().unwrap_err().code(), "invalid_row");
        let no_header = parse_csv("ada@x.test,viewer");
        assert_eq!(no_header.len(), 1);
        let jl = parse_jsonl("{\"email\":\"a@x.test\",\"role\":\"viewer\"}\n\n{\"email\":1}\n");
        assert_eq!(jl.len(), 2);
        assert_eq!(jl[0].1.as_ref().unwrap().email, "a@x.test");
        assert_eq!((jl[1].0, jl[1].1.as_ref().unwrap_err().code()), (3, "invalid_row"));
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/xml".parse().unwrap());
        assert_eq!(parse(&h, b"x").unwrap_err().code(), "unsupported_media_type");
        h.insert("content-type", "text/csv; charset=utf-8".parse().unwrap());
        assert_eq!(parse(&h, "\u{feff}a@x.test,viewer".as_bytes()).unwrap().len(), 1);
    }
}
