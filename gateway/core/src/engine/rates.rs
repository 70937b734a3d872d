//! Rate limits in the engine: the keys a request is counted under, folding the store's
//! answers, and the decision session of hosts whose rate store is asynchronous (a Durable
//! Object, a key-value store): [`Engine::begin`] runs every other check and hands back
//! the rate steps; the host runs them against its store and [`PendingRates::finish`]
//! completes the decision. No host names, orders or slices a check.

use super::{CompiledOrg, Context, Engine, Env, RateStep, State};
use crate::access::CompiledRoute;
use crate::decision::{Decision, Deny};
use crate::geo::CountryLookup;
use crate::identity::{CredentialKind, Identity};
use crate::ratelimit::{Gcra, RateDecision, RateKey, RateScope, RateStore};
use crate::reason::ReasonCode;
use crate::request::RequestHead;
use crate::time::{UnixNanos, NANOS};

/// How far [`Engine::begin`] got.
#[derive(Debug)]
pub enum Begun {
    /// Decided without the rate store: a refusal or redirect, or an allow when no rate
    /// limit applies.
    Done(Decision),
    /// Every check passed but the rate limit: run [`PendingRates::steps`] against the
    /// store, then [`PendingRates::finish`].
    Pending(PendingRates),
}

/// A request that passed every check but the rate limit.
#[derive(Debug)]
pub struct PendingRates {
    ctx: Context,
    steps: Vec<RateStep>,
}

impl PendingRates {
    /// The organisation whose limits these are (hosts keep one store per organisation,
    /// such as a Durable Object).
    pub fn org(&self) -> &str {
        self.ctx.org.as_deref().unwrap_or_default()
    }

    /// The steps, in order: the host runs them atomically against its store, stopping at
    /// the first refusal (`Gcra::apply` on the stored TAT of each key).
    pub fn steps(&self) -> &[RateStep] {
        &self.steps
    }

    /// The decision, from the store's answers to [`PendingRates::steps`] in step order
    /// (fewer when it stopped at a refusal). Missing answers — a store that failed — deny.
    pub fn finish(mut self, engine: &Engine, answers: &[RateDecision]) -> Decision {
        match engine.finish_rates(&mut self.ctx, self.steps.len(), answers) {
            Ok(()) => engine.allow_context(&self.ctx),
            Err(d) => d,
        }
    }
}

/// The rate store of [`Env::deferred`]: never asked by [`Engine::begin`]; were it asked,
/// it would refuse (fail closed).
struct Deferred;

impl RateStore for Deferred {
    fn check(&self, _: &RateKey<'_>, gcra: &Gcra, _: u64) -> RateDecision {
        RateDecision { allowed: false, limit: gcra.burst, remaining: 0, reset_after: 0, retry_after: 0 }
    }
}

impl<'a> Env<'a> {
    /// The environment of a host whose rate store is asynchronous, for [`Engine::begin`]:
    /// the time and the country lookup; the engine verifies signatures itself.
    pub fn deferred(now: UnixNanos, countries: &'a dyn CountryLookup) -> Env<'a> {
        Env { now, rates: &Deferred, countries, signatures: None }
    }
}

impl Engine {
    /// Begin deciding on `req`: every check but the rate limit, in order. Synchronous
    /// hosts use [`Engine::decide`] instead; this is for hosts that must await their rate
    /// store. `env.rates` is never asked.
    pub fn begin(&self, req: &RequestHead<'_>, env: &Env<'_>) -> Begun {
        let mut st = State::default();
        if let Err(d) = self.run(super::BEFORE_RATES, req, &mut st, env) {
            return Begun::Done(d);
        }
        // The steps from the organisation and route the checks resolved (by index: a
        // request on the fallback route must not meet a policy route of the same name).
        let org = match self.org_of(req, &mut st) {
            Ok(o) => o,
            Err(d) => return Begun::Done(d.into()),
        };
        let route = self.route(self.route_of(req, &mut st));
        let steps: Vec<RateStep> = self
            .rate_keys(&self.orgs[org], route, st.identity.as_deref())
            .map(|(k, g)| RateStep { key: k.render(), gcra: *g })
            .collect();
        let ctx = Context {
            org: Some(self.orgs[org].id.clone()),
            route: Some(route.name.clone()),
            client_ip: st.client_ip,
            identity: st.identity.clone(),
            response_headers: Vec::new(),
        };
        if steps.is_empty() {
            return Begun::Done(self.allow_context(&ctx));
        }
        Begun::Pending(PendingRates { ctx, steps })
    }

    /// The rate steps of a request in a filter chain whose earlier checks established
    /// `ctx` (with the tenant at least): for a chain host whose rate store is
    /// asynchronous. It runs `checks` but the rate limit ([`Engine::check`]), then hands
    /// back the steps for the store; [`Engine::finish_rate_steps`] completes the step.
    /// Steps come in the order [`PendingRates::steps`] gives them, with the same keys.
    pub fn rate_steps(&self, req: &RequestHead<'_>, ctx: &mut Context) -> Result<Vec<RateStep>, Decision> {
        let mut st = self.state_of(ctx)?;
        let org = self.org_of(req, &mut st)?;
        let route = self.route_of(req, &mut st);
        ctx.org = Some(self.orgs[org].id.clone());
        ctx.route = Some(self.route(route).name.clone());
        Ok(self
            .rate_keys(&self.orgs[org], self.route(route), st.identity.as_deref())
            .map(|(k, g)| RateStep { key: k.render(), gcra: *g })
            .collect())
    }

    /// Complete a chain's rate step with the store's answers to [`Engine::rate_steps`]
    /// (in step order; fewer when the store stopped at a refusal, and a missing answer
    /// denies): the refusal, or `ctx` with the `RateLimit-*` headers of the tightest limit.
    pub fn finish_rate_steps(&self, ctx: &mut Context, steps: usize, answers: &[RateDecision]) -> Result<(), Decision> {
        self.finish_rates(ctx, steps, answers)
    }

    /// The rate limits a request is subject to, in order: the org's, the route's, then
    /// the user's or the API key's.
    fn rate_keys<'a>(
        &'a self,
        org: &'a CompiledOrg,
        route: &'a CompiledRoute,
        identity: Option<&'a Identity>,
    ) -> impl Iterator<Item = (RateKey<'a>, &'a Gcra)> + 'a {
        let per_identity = identity.map(|id| match id.kind {
            CredentialKind::ApiKey => (
                RateKey { scope: RateScope::ApiKey, org: &org.id, id: id.credential_id.as_deref().unwrap_or("") },
                org.limits.api_key.as_ref(),
            ),
            _ => (RateKey { scope: RateScope::User, org: &org.id, id: &id.subject }, org.limits.user.as_ref()),
        });
        [
            Some((RateKey { scope: RateScope::Org, org: &org.id, id: "" }, org.limits.org.as_ref())),
            Some((RateKey { scope: RateScope::Route, org: &org.id, id: &route.name }, route.gcra.as_ref())),
            per_identity,
        ]
        .into_iter()
        .flatten()
        .filter_map(|(k, g)| g.map(|g| (k, g)))
    }

    /// Fold one store answer: a refusal denies; otherwise keep the tightest for headers.
    fn fold_rate(&self, tightest: &mut Option<RateDecision>, d: RateDecision) -> Result<(), Deny> {
        if !d.allowed {
            return Err(self.rate_limited(&d));
        }
        if tightest.is_none_or(|t| d.remaining < t.remaining) {
            *tightest = Some(d);
        }
        Ok(())
    }

    pub(super) fn check_rates<'r>(
        &self,
        req: &RequestHead<'r>,
        st: &mut State<'r>,
        env: &Env<'_>,
    ) -> Result<(), Decision> {
        let org = &self.orgs[self.org_of(req, st)?];
        let route = self.route(self.route_of(req, st));
        let mut tightest = None;
        for (key, g) in self.rate_keys(org, route, st.identity.as_deref()) {
            self.fold_rate(&mut tightest, env.rates.check(&key, g, env.now))?;
        }
        st.rate = tightest;
        Ok(())
    }

    /// Finish the rate check with the store's answers to the steps (in step order; fewer
    /// when the store stopped at a refusal). A missing answer denies.
    fn finish_rates(&self, ctx: &mut Context, steps: usize, answers: &[RateDecision]) -> Result<(), Decision> {
        let mut tightest = None;
        for d in answers {
            self.fold_rate(&mut tightest, *d)?;
        }
        if answers.len() < steps {
            return Err(self.deny(ReasonCode::InternalError).into());
        }
        if let Some(d) = tightest {
            ctx.response_headers = rate_headers(&d);
        }
        Ok(())
    }

    pub(super) fn rate_limited(&self, d: &RateDecision) -> Deny {
        let mut deny = self.deny(ReasonCode::RateLimited);
        deny.headers.push(("retry-after".into(), d.retry_after.div_ceil(NANOS).max(1).to_string()));
        deny.headers.extend(rate_headers(d));
        deny
    }
}

pub(super) fn rate_headers(d: &RateDecision) -> Vec<(String, String)> {
    let text = |n: u64| itoa::Buffer::new().format(n).to_string();
    vec![
        ("ratelimit-limit".into(), text(d.limit)),
        ("ratelimit-remaining".into(), text(d.remaining)),
        ("ratelimit-reset".into(), text(d.reset_after.div_ceil(NANOS))),
    ]
}
