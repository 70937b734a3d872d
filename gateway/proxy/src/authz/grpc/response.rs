//! A decision ([`CheckAnswer`]) as Envoy's `CheckResponse`.
//!
//! - **Allow**: status `OK` and an `OkHttpResponse`: the identity headers set on the
//!   upstream request (`OVERWRITE_IF_EXISTS_OR_ADD`, empty values kept: a client's value
//!   under the same name never survives), the client's other headers under the identity
//!   prefix in `headers_to_remove` (`X_Gatehouse_Subject` and the like), and the
//!   decision's `RateLimit-*` in `response_headers_to_add` (replacing the upstream's).
//! - **Refusal or sign-in redirect**: status `UNAUTHENTICATED` (401) or
//!   `PERMISSION_DENIED` (everything else) and a `DeniedHttpResponse` carrying the reply
//!   the reverse proxy would send: its status (302 with `Location` for a redirect), its
//!   headers (`WWW-Authenticate`, `Retry-After`, `RateLimit-*`, `x-gatehouse-reason`,
//!   `content-type`) and its body.
//!
//! Both carry `dynamic_metadata` (Envoy files it under the filter's namespace,
//! `envoy.filters.http.ext_authz`, for access logs, RBAC and later filters); the keys are
//! in [`METADATA_KEYS`]. Never a credential, a token or an e-mail address.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc;
use gatehouse_core::wire::{Reply, REASON_HEADER};

use crate::authz::CheckAnswer;

/// The keys of the `dynamic_metadata` a check answers with:
/// - `decision`: `allow`, `deny` or `redirect` (always);
/// - `reason`: the refusal's reason code (`deny`);
/// - `status`: the HTTP status the client gets (`deny`, `redirect`), a number;
/// - `org`, `auth` (`jwt`, `api_key`, `session`, …): the verified identity's organisation and
///   credential kind (`allow`, when the route establishes an identity);
/// - `subject`: the identity's subject id (`allow`), left out when it looks like an e-mail
///   address (personal data stays in the identity headers for the application).
pub const METADATA_KEYS: &[&str] = &["decision", "reason", "status", "org", "auth", "subject"];

/// The `CheckResponse` for `answer`; `identity_prefix` is the bundle's identity-header
/// prefix (for the metadata's `org`, `auth` and `subject`).
pub fn check_response(answer: CheckAnswer, identity_prefix: Option<&str>) -> CheckResponse {
    match answer {
        CheckAnswer::Allow { upstream_headers, remove_headers, response_headers } => {
            let mut meta = Struct::default();
            put(&mut meta, "decision", text("allow"));
            if let Some(prefix) = identity_prefix {
                let identity = |field: &str| {
                    upstream_headers
                        .iter()
                        .find(|(k, _)| {
                            k.len() == prefix.len() + field.len() && k.starts_with(prefix) && k.ends_with(field)
                        })
                        .map(|(_, v)| v.as_str())
                };
                for key in ["org", "auth"] {
                    if let Some(v) = identity(key) {
                        put(&mut meta, key, text(v));
                    }
                }
                if let Some(s) = identity("subject").filter(|s| !s.contains('@')) {
                    put(&mut meta, "subject", text(s));
                }
            }
            // A spoofed header the identity sets anyway is overwritten, not removed (Envoy
            // may apply removals after the headers it sets).
            let headers_to_remove = remove_headers
                .into_iter()
                .filter(|r| !upstream_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(r)))
                .collect();
            #[allow(deprecated)]
            let ok = OkHttpResponse {
                headers: upstream_headers.iter().map(|(k, v)| overwrite(k, v)).collect(),
                headers_to_remove,
                response_headers_to_add: response_headers.iter().map(|(k, v)| overwrite(k, v)).collect(),
                ..Default::default()
            };
            CheckResponse {
                status: Some(rpc::Status { code: tonic::Code::Ok as i32, message: String::new(), details: Vec::new() }),
                dynamic_metadata: Some(meta),
                http_response: Some(HttpResponse::OkResponse(ok)),
            }
        }
        CheckAnswer::Refuse(reply) => denied(reply),
    }
}

/// A refusal or redirect: the reply as Envoy's local reply.
fn denied(reply: Reply) -> CheckResponse {
    let reason = reply.headers.iter().find(|(k, _)| k == REASON_HEADER).map(|(_, v)| v.clone());
    let redirect = (300..400).contains(&reply.status);
    let mut meta = Struct::default();
    put(&mut meta, "decision", text(if redirect { "redirect" } else { "deny" }));
    put(&mut meta, "status", Value { kind: Some(Kind::NumberValue(f64::from(reply.status))) });
    if let Some(r) = &reason {
        put(&mut meta, "reason", text(r));
    }
    let code = if reply.status == 401 { tonic::Code::Unauthenticated } else { tonic::Code::PermissionDenied };
    // Envoy accepts only the status codes its enum defines (`defined_only`): every status
    // a reply has is one; anything else would be a refusal all the same.
    let status = HttpStatusCode::try_from(i32::from(reply.status)).unwrap_or(HttpStatusCode::Forbidden);
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus { code: status as i32 }),
        headers: reply.headers.iter().map(|(k, v)| overwrite(k, v)).collect(),
        body: String::from_utf8_lossy(&reply.body).into_owned(),
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            message: reason.unwrap_or_else(|| "redirect".to_string()),
            details: Vec::new(),
        }),
        dynamic_metadata: Some(meta),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
    }
}

fn overwrite(key: &str, value: &str) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_string(), value: value.to_string(), raw_value: Vec::new() }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: true,
    }
}

fn text(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.to_string())) }
}

fn put(meta: &mut Struct, key: &str, value: Value) {
    meta.fields.insert(key.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::ReasonCode;

    fn meta_text(r: &CheckResponse, key: &str) -> Option<String> {
        match r.dynamic_metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
            Kind::StringValue(s) => Some(s.clone()),
            Kind::NumberValue(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn pairs(h: &[HeaderValueOption]) -> Vec<(String, String)> {
        h.iter().map(|o| o.header.as_ref().map(|h| (h.key.clone(), h.value.clone())).unwrap()).collect()
    }

    #[test]
    fn allow_sets_identity_removes_spoofs_and_adds_ratelimit() {
        let answer = CheckAnswer::Allow {
            upstream_headers: vec![
                ("x-gatehouse-subject".into(), "alice".into()),
                ("x-gatehouse-org".into(), "acme".into()),
                ("x-gatehouse-auth".into(), "jwt".into()),
            ],
            remove_headers: vec!["x-gatehouse-subject".into(), "x_gatehouse_roles".into()],
            response_headers: vec![("ratelimit-remaining".into(), "9".into())],
        };
        let r = check_response(answer, Some("x-gatehouse-"));
        assert_eq!(r.status.as_ref().unwrap().code, 0);
        let Some(HttpResponse::OkResponse(ok)) = &r.http_response else { panic!("not ok: {r:?}") };
        assert_eq!(pairs(&ok.headers)[0], ("x-gatehouse-subject".to_string(), "alice".to_string()));
        assert!(ok.headers.iter().all(|h| h.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32));
        assert_eq!(ok.headers_to_remove, vec!["x_gatehouse_roles".to_string()]);
        assert_eq!(pairs(&ok.response_headers_to_add), vec![("ratelimit-remaining".into(), "9".into())]);
        assert_eq!(meta_text(&r, "decision").as_deref(), Some("allow"));
        assert_eq!(meta_text(&r, "org").as_deref(), Some("acme"));
        assert_eq!(meta_text(&r, "auth").as_deref(), Some("jwt"));
        assert_eq!(meta_text(&r, "subject").as_deref(), Some("alice"));
        let keys: Vec<&String> = r.dynamic_metadata.as_ref().unwrap().fields.keys().collect();
        assert!(keys.iter().all(|k| METADATA_KEYS.contains(&k.as_str())), "{keys:?}");
    }

    #[test]
    fn an_email_subject_stays_out_of_the_metadata() {
        let answer = CheckAnswer::Allow {
            upstream_headers: vec![("x-gatehouse-subject".into(), "alice@example.com".into())],
            remove_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        let r = check_response(answer, Some("x-gatehouse-"));
        assert_eq!(meta_text(&r, "subject"), None);
    }

    #[test]
    fn refusals_carry_the_reply() {
        let reply = Reply::deny(429, "rate_limited", &[("retry-after".into(), "7".into())]);
        let r = check_response(CheckAnswer::Refuse(reply.clone()), None);
        assert_eq!(r.status.as_ref().unwrap().code, tonic::Code::PermissionDenied as i32);
        assert_eq!(r.status.as_ref().unwrap().message, "rate_limited");
        let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else { panic!("not denied") };
        assert_eq!(d.status.as_ref().unwrap().code, 429);
        assert_eq!(pairs(&d.headers), reply.headers);
        assert_eq!(d.body.as_bytes(), reply.body.as_slice());
        assert_eq!(meta_text(&r, "reason").as_deref(), Some("rate_limited"));
        assert_eq!(meta_text(&r, "status").as_deref(), Some("429"));

        let r = check_response(CheckAnswer::Refuse(Reply::refusal(ReasonCode::CredentialMissing)), None);
        assert_eq!(r.status.as_ref().unwrap().code, tonic::Code::Unauthenticated as i32);

        let r = check_response(CheckAnswer::Refuse(Reply::redirect("https://login.test/?r=1")), None);
        let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else { panic!("not denied") };
        assert_eq!(d.status.as_ref().unwrap().code, 302);
        assert_eq!(pairs(&d.headers), vec![("location".to_string(), "https://login.test/?r=1".to_string())]);
        assert_eq!(meta_text(&r, "decision").as_deref(), Some("redirect"));
    }
}
