//! A route's filter chain, step by step. A built-in filter (`gatehouse`, `ip`, `geo`,
//! `token`, `rate`) is a list of the core's checks ([`Check::builtin`]): under
//! `filters.engine = "native"` (the default) it runs on the natively linked
//! `gatehouse-core`, under `"wasm"` as its component. Custom components always run under
//! wasmtime. Between steps the context is the core's [`Context`]; it crosses into a
//! component as the WIT record and comes back the same way. Nothing here decides: the
//! checks are the core's, a component's verdict is the component's.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_core::engine::{Check, Context, Env};
use gatehouse_core::request::RequestHead;
use gatehouse_core::{Decision, ReasonCode};

use crate::rate_store::OnError;

use crate::bundle::LoadedBundle;
use crate::config::FilterEngine;
use crate::filters::{with_context, FilterHost, PolicyInput, Verdict, WitContext, WitIdentity, WitRequest};

/// One step of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A built-in filter's checks, on the native core.
    Native(&'static [Check]),
    /// A filter component under wasmtime, by the name the route gives it.
    Component(String),
}

/// The steps of a chain of filter names under `engine`.
pub fn steps(filters: &[String], engine: FilterEngine) -> Vec<Step> {
    filters
        .iter()
        .map(|f| match (engine, Check::builtin(f)) {
            (FilterEngine::Native, Some(checks)) => Step::Native(checks),
            _ => Step::Component(f.clone()),
        })
        .collect()
}

/// A step's refusal, whichever kind of step it came from.
pub struct Refusal {
    /// Status (clamped by `wire::Reply::deny`).
    pub status: u16,
    /// Reason code (a component's own text is checked by `wire::reason_text`).
    pub reason: Cow<'static, str>,
    /// Response headers (`www-authenticate`, `retry-after`, `ratelimit-*`).
    pub headers: Vec<(String, String)>,
    /// The organisation the request was attributed to, if the checks got that far.
    pub org: Option<String>,
}

/// What one step said.
pub enum StepOutcome {
    /// Go on with the (extended) context.
    Continue,
    /// Stop with this refusal.
    Deny(Refusal),
    /// Send the browser to this sign-in URL.
    Redirect(String),
    /// The step could not run (a component trapped, or handed back a context the gateway
    /// cannot believe): the request fails closed with `filter_failed`.
    Failed(String),
}

/// The request as the steps see it: the core's view for native steps, the WIT record for
/// components (the same fields, borrowed).
pub struct StepRequest<'a> {
    /// For native steps.
    pub head: RequestHead<'a>,
    /// For components.
    pub wit: WitRequest<'a>,
}

/// What a step runs against.
pub struct StepEnv<'a> {
    /// The bundle in force.
    pub bundle: &'a LoadedBundle,
    /// The components of the routes in force, and the services they share.
    pub filters: &'a FilterHost,
    /// The bundle as components receive it.
    pub policy: &'a PolicyInput<'a>,
}

/// Run `step` on `req`, extending `ctx`. `via_component` is set when the identity in `ctx`
/// came back from a component (the WIT record carries no actor: the gateway then asks
/// the engine for it, [`crate::gateway`]).
pub async fn run_step(
    step: &Step,
    req: &StepRequest<'_>,
    ctx: &mut Context,
    via_component: &mut bool,
    env: &StepEnv<'_>,
) -> StepOutcome {
    match step {
        Step::Native(checks) => native(checks, req, ctx, env).await,
        Step::Component(name) => component(name, req, ctx, via_component, env),
    }
}

async fn native(checks: &[Check], req: &StepRequest<'_>, ctx: &mut Context, env: &StepEnv<'_>) -> StepOutcome {
    let shared = env.filters.shared();
    let engine = &env.bundle.engine;
    // With a shared store the rate limit is asked for asynchronously: every other check
    // first, then the rate steps in one round trip.
    let (checks, remote) = match (checks.split_last(), &shared.remote_rates) {
        (Some((Check::RateLimit, before)), Some(remote)) => (before, Some(remote)),
        _ => (checks, None),
    };
    let checked = {
        let core_env = Env {
            now: crate::filters::now_nanos(),
            rates: &shared.rates,
            countries: shared.as_ref(),
            signatures: Some(&crate::signatures::NativeSignatures),
        };
        engine.check(checks, &req.head, ctx, &core_env)
    };
    if let Err(d) = checked {
        return halted(d, ctx);
    }
    let Some(remote) = remote else { return StepOutcome::Continue };
    let steps = match engine.rate_steps(&req.head, ctx) {
        Ok(s) if s.is_empty() => return StepOutcome::Continue,
        Ok(s) => s,
        Err(d) => return halted(d, ctx),
    };
    let org = ctx.org.clone().unwrap_or_default();
    match remote.run(&org, &steps).await {
        Ok(answers) => match engine.finish_rate_steps(ctx, steps.len(), &answers) {
            Ok(()) => StepOutcome::Continue,
            Err(d) => halted(d, ctx),
        },
        Err(_) if remote.on_error == OnError::Allow => StepOutcome::Continue,
        Err(_) => StepOutcome::Deny(Refusal {
            status: ReasonCode::RateStoreUnavailable.status(),
            reason: Cow::Borrowed(ReasonCode::RateStoreUnavailable.as_str()),
            headers: Vec::new(),
            org: ctx.org.clone(),
        }),
    }
}

/// A check's refusal or redirect as a step's outcome.
fn halted(d: Decision, ctx: &Context) -> StepOutcome {
    match d {
        Decision::Deny(d) => StepOutcome::Deny(Refusal {
            status: d.status,
            reason: Cow::Borrowed(d.reason.as_str()),
            headers: d.headers,
            org: ctx.org.clone(),
        }),
        Decision::Redirect(r) => StepOutcome::Redirect(r.location),
        Decision::Allow(_) => StepOutcome::Failed("the engine answered a check with an allow".into()),
    }
}

fn component(
    name: &str,
    req: &StepRequest<'_>,
    ctx: &mut Context,
    via_component: &mut bool,
    env: &StepEnv<'_>,
) -> StepOutcome {
    let prefix = env.bundle.engine.identity_header_prefix();
    let verdict = if *ctx == Context::default() {
        env.filters.check(name, env.policy, &req.wit, &crate::filters::empty_context())
    } else {
        let record = WitContext {
            org: ctx.org.clone(),
            route: ctx.route.clone(),
            client_ip: ctx.client_ip.map(|ip| ip.to_string()),
            identity: ctx.identity.as_deref().map(|i| gatehouse_core::identity_to_record!(WitIdentity, i)),
            response_headers: ctx.response_headers.clone(),
        };
        with_context(&record, |c| env.filters.check(name, env.policy, &req.wit, c))
    };
    let next = match verdict {
        Err(e) => return StepOutcome::Failed(e.to_string()),
        Ok(Verdict::Redirect(location)) => return StepOutcome::Redirect(location),
        Ok(Verdict::Deny(d)) => {
            return StepOutcome::Deny(Refusal {
                status: d.status,
                reason: Cow::Owned(d.reason),
                headers: d.headers,
                org: d.org.or_else(|| ctx.org.clone()),
            })
        }
        Ok(Verdict::Allow(next)) => next,
    };
    // What a component hands back must be what the gateway can believe: an address, and
    // an identity of a known kind in header-safe text.
    let client_ip = match next.client_ip.as_deref().map(str::parse::<IpAddr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return StepOutcome::Failed(format!("filter `{name}` returned a client address that does not parse"))
        }
    };
    let identity = match next.identity {
        None => None,
        Some(record) => {
            // The same identity as before the step: keep ours (it carries what the WIT
            // record cannot: the actor, the authentication time).
            let same = ctx.identity.as_ref().filter(|i| {
                i.subject == record.subject
                    && i.org == record.org
                    && i.kind.as_str() == record.kind
                    && i.credential_id == record.credential_id
                    && i.roles == record.roles
                    && i.scopes == record.scopes
                    && i.teams == record.teams
                    && i.amr == record.amr
                    && i.session_id == record.session_id
                    && i.expires_at == record.expires_at
            });
            match same {
                Some(i) => Some(i.clone()),
                None => match gatehouse_core::identity_from_record!(record, prefix) {
                    Some(i) => {
                        *via_component = true;
                        Some(Arc::new(i))
                    }
                    None => {
                        return StepOutcome::Failed(format!(
                            "filter `{name}` returned an identity the gateway cannot use"
                        ))
                    }
                },
            }
        }
    };
    *ctx = Context { org: next.org, route: next.route, client_ip, identity, response_headers: next.response_headers };
    StepOutcome::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_run_natively_unless_the_engine_is_wasm() {
        let chain: Vec<String> = ["ip", "./custom.wasm", "gatehouse"].map(String::from).to_vec();
        assert_eq!(
            steps(&chain, FilterEngine::Native),
            [Step::Native(Check::IP), Step::Component("./custom.wasm".into()), Step::Native(Check::ALL)]
        );
        assert_eq!(
            steps(&chain, FilterEngine::Wasm),
            [
                Step::Component("ip".into()),
                Step::Component("./custom.wasm".into()),
                Step::Component("gatehouse".into())
            ]
        );
    }
}
