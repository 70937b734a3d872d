//! WIT ↔ host conversions: the request, context and verdict types of the WIT package
//! under the names the host uses, and the context lent from one filter to the next.

pub use super::bindings::gatehouse::policy::types::{
    ContextParam as WitContextParam, ContextResult as WitContext, Deny as WitDeny, IdentityParam as WitIdentityParam,
    IdentityResult as WitIdentity, RequestHead as WitRequest, Verdict,
};

/// The context before the first filter: nothing established yet.
pub fn empty_context() -> WitContextParam<'static> {
    WitContextParam { org: None, route: None, client_ip: None, identity: None, response_headers: &[] }
}

/// Lend the context a filter returned to the next filter of the chain.
pub fn with_context<R>(ctx: &WitContext, f: impl FnOnce(&WitContextParam<'_>) -> R) -> R {
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let headers: Vec<(&str, &str)> = ctx.response_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lists =
        ctx.identity.as_ref().map(|i| (strs(&i.roles), i.scopes.as_deref().map(strs), strs(&i.teams), strs(&i.amr)));
    let identity = match (&ctx.identity, &lists) {
        (Some(i), Some((roles, scopes, teams, amr))) => Some(WitIdentityParam {
            kind: &i.kind,
            subject: &i.subject,
            org: &i.org,
            roles,
            scopes: scopes.as_deref(),
            teams,
            amr,
            session_id: i.session_id.as_deref(),
            credential_id: i.credential_id.as_deref(),
            expires_at: i.expires_at,
        }),
        _ => None,
    };
    f(&WitContextParam {
        org: ctx.org.as_deref(),
        route: ctx.route.as_deref(),
        client_ip: ctx.client_ip.as_deref(),
        identity,
        response_headers: &headers,
    })
}
