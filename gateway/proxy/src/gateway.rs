//! The gateway's request path, shared by both HTTP front ends: route, bundle, body size
//! and the route's filter chain, and what follows from its verdict ([`Gateway::run_chain`]).
//! The front ends are [`crate::http1`] (almost all traffic) and [`crate::h2`] (h2c
//! clients); the HTTP contract of a verdict is the core's (`gatehouse_core::wire`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use gatehouse_core::wire::{self, Reply};
use gatehouse_core::ReasonCode;

use crate::bundle::{BundleStore, LoadedBundle};
use crate::chain::{self, Step, StepEnv, StepOutcome, StepRequest};
use crate::config::{GatewayConfig, RouteConfig};
use crate::filters::{FilterHost, PolicyInput, WitRequest};
use crate::http1::pool::RawUpstreams;
use crate::metrics::Metrics;
use crate::upstream::Upstreams;
use gatehouse_core::engine::Context;

/// Everything a request needs.
pub struct Gateway {
    /// The configuration the process started with: listeners, limits, the bundle source,
    /// the audit sink, `[authz]`, `[telemetry]` — what a reload cannot change. The routes
    /// and filters in force are [`Gateway::routes`]'s (a reload replaces them).
    pub config: GatewayConfig,
    /// Bundle in force.
    pub bundles: Arc<BundleStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Decision events for the origin, when configured.
    events: Option<Arc<crate::events::EdgeEvents>>,
    /// The routes in force, swapped whole by a reload (requests in flight keep theirs).
    routes: RwLock<Arc<RouteSet>>,
    allow_chain: prometheus::Histogram,
    allow_count: prometheus::IntCounter,
}

/// The routes in force and what serves them: the filter components of their chains, the
/// upstream connections and the filters' histograms. A reload (SIGHUP) builds a new set
/// off the request path and swaps it in as one ([`Gateway::swap_routes`]); a request
/// decided under a set finishes under it ([`Forward::routes`]).
pub struct RouteSet {
    /// 1 for the set the gateway started with, one more for each reload.
    pub generation: u64,
    /// Routes: host/path prefix → upstream, with a filter chain. First match wins.
    pub routes: Vec<RouteConfig>,
    /// Filter components.
    pub filters: Arc<FilterHost>,
    /// Upstream connections of the HTTP/2 front end, by route.
    pub upstreams: Arc<Upstreams>,
    /// Upstream connections of the HTTP/1.1 front end, by route.
    pub raw_upstreams: RawUpstreams,
    /// Each route's chain as it runs (built-ins native or as components), by route.
    steps: Vec<Vec<Step>>,
    filter_hist: HashMap<String, prometheus::Histogram>,
}

impl RouteSet {
    /// The set for `routes` (validated by [`GatewayConfig::load`]), served by `filters`
    /// (holding every filter the routes name).
    pub fn new(
        generation: u64,
        routes: Vec<RouteConfig>,
        filters: Arc<FilterHost>,
        metrics: &Metrics,
    ) -> anyhow::Result<RouteSet> {
        let filter_hist = routes
            .iter()
            .flat_map(|r| r.filters.iter())
            .map(|f| (f.clone(), metrics.filter_seconds.with_label_values(&[f.as_str()])))
            .collect();
        let authorities = routes
            .iter()
            .map(|r| {
                // A route of an authorization service alone has no upstream (the config
                // requires one for every route when the reverse proxy listens).
                let Some(up) = r.upstream.as_deref() else { return Ok(String::new()) };
                up.trim_start_matches("http://")
                    .parse::<hyper::http::uri::Authority>()
                    .map(|a| match a.port() {
                        Some(_) => a.to_string(),
                        None => format!("{a}:80"),
                    })
                    .map_err(|_| anyhow::anyhow!("upstream `{up}` is not http://host:port"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let steps: Vec<Vec<Step>> = routes.iter().map(|r| chain::steps(&r.filters, filters.engine())).collect();
        let missing = steps.iter().flatten().find_map(|s| match s {
            Step::Component(f) if !filters.has(f) => Some(f),
            _ => None,
        });
        if let Some(missing) = missing {
            anyhow::bail!("filter `{missing}` is not loaded");
        }
        let upstreams = Arc::new(Upstreams::new(authorities.clone()));
        let raw_upstreams = RawUpstreams::new(authorities);
        Ok(RouteSet { generation, routes, filters, upstreams, raw_upstreams, steps, filter_hist })
    }

    fn route(&self, host: &str, path: &str) -> Option<usize> {
        let host = gatehouse_core::request::strip_port(host);
        self.routes.iter().position(|r| {
            let host_ok = match r.host.as_deref() {
                None | Some("*") => true,
                Some(h) => h.eq_ignore_ascii_case(host),
            };
            let p = r.path_prefix.trim_end_matches('/');
            host_ok
                && (p.is_empty()
                    || (path.starts_with(p) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')))
        })
    }
}

/// The request head as the gateway decides on it, from either front end.
pub struct HeadView<'a> {
    /// The scheme the client used: `http` on the gateway's own listener; what the asking
    /// proxy reports for an authorization check.
    pub scheme: &'a str,
    /// Method.
    pub method: &'a str,
    /// The host the client addressed (`Host`, else the target's authority), maybe with a port.
    pub authority: &'a str,
    /// Path, as sent.
    pub path: &'a str,
    /// Query, without `?`.
    pub query: Option<&'a str>,
    /// Header fields (names in any case).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// `Content-Length`, when the client gave one.
    pub content_length: Option<u64>,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's address as text.
    pub peer_text: &'a str,
}

impl HeadView<'_> {
    /// The request id the client sent: in decision events and error reports.
    pub fn request_id(&self) -> Option<&str> {
        request_id(self.headers.iter().copied())
    }
}

/// The request id among `headers`: `x-request-id`, 1–128 bytes of text.
pub fn request_id<'h>(headers: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> Option<&'h str> {
    headers
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// What to do with a request the chain admitted.
pub struct Forward {
    /// The route it matched (an index into [`Forward::routes`]).
    pub route: usize,
    /// The routes it was decided under: the request goes on under them, whatever a
    /// reload swaps in meanwhile.
    pub routes: Arc<RouteSet>,
    /// The bundle it was decided under.
    pub bundle: Arc<LoadedBundle>,
    /// The identity's headers for the upstream (under the bundle's prefix).
    pub identity_headers: Vec<(String, String)>,
    /// Headers for the response to the client (`RateLimit-*`).
    pub response_headers: Vec<(String, String)>,
}

impl Forward {
    /// The route it matched.
    pub fn route_config(&self) -> &RouteConfig {
        &self.routes.routes[self.route]
    }
}

/// The outcome of [`Gateway::run_chain`].
pub enum Outcome {
    /// Forward upstream.
    Forward(Forward),
    /// Answer the client with this, without going upstream.
    Reply(Reply),
}

impl Gateway {
    /// Assemble the gateway: `filters` serves the routes of `config`.
    pub fn new(
        config: GatewayConfig,
        bundles: Arc<BundleStore>,
        filters: Arc<FilterHost>,
        metrics: Arc<Metrics>,
        events: Option<Arc<crate::events::EdgeEvents>>,
    ) -> anyhow::Result<Gateway> {
        let routes = RouteSet::new(1, config.routes.clone(), filters, &metrics)?;
        let allow_chain = metrics.chain_seconds.with_label_values(&["allow"]);
        let allow_count = metrics.requests.with_label_values(&["allow", ""]);
        Ok(Gateway {
            config,
            bundles,
            metrics,
            events,
            routes: RwLock::new(Arc::new(routes)),
            allow_chain,
            allow_count,
        })
    }

    /// The routes in force.
    pub fn routes(&self) -> Arc<RouteSet> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Put `set` in force for every request decided from now on; the set it replaces
    /// lives on with the requests that hold it. Returns the new generation.
    pub fn swap_routes(&self, set: RouteSet) -> u64 {
        let generation = set.generation;
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        generation
    }

    /// Count a request under `decision` and `reason`.
    pub fn count(&self, decision: &str, reason: &str) {
        crate::trace::decided(decision, reason);
        self.metrics.requests.with_label_values(&[decision, reason]).inc();
    }

    /// A reply for `reason`, counted.
    pub fn refuse(&self, decision: &str, reason: ReasonCode) -> Reply {
        self.count(decision, reason.as_str());
        Reply::refusal(reason)
    }

    /// Queue a decision event for the origin (only decisions attributed to an org):
    /// the second argument is the decision and its reason; `actor` who really acted under an
    /// impersonation.
    fn record(
        &self,
        org: Option<&str>,
        (decision, reason): (&'static str, &str),
        route: Option<&str>,
        ip: std::net::IpAddr,
        view: &HeadView<'_>,
        actor: Option<String>,
    ) {
        crate::trace::attributed(org, route);
        let (Some(events), Some(org)) = (&self.events, org) else { return };
        let ip = Some(if ip == view.peer.ip() { view.peer_text.to_string() } else { ip.to_string() });
        let request_id = view.request_id().map(str::to_string);
        events.push(crate::events::Event {
            org: org.to_string(),
            at: (crate::filters::now_nanos() / 1_000_000_000) as i64,
            decision,
            reason: reason.to_string(),
            route: route.map(str::to_string),
            ip,
            request_id,
            actor,
        });
    }

    /// Route, bundle, body size and the route's filter chain: whether `view` goes
    /// upstream, and with which headers, or what to answer instead. Every decision is
    /// the filters' (thin shells over `gatehouse-core`); this only moves their inputs and
    /// verdicts.
    pub async fn run_chain(&self, view: &HeadView<'_>) -> Outcome {
        let _chain = crate::trace::chain_span();
        let set = self.routes();
        let Some(route_index) = set.route(view.authority, view.path) else {
            return Outcome::Reply(self.refuse("deny", ReasonCode::NoRoute));
        };
        let route: &RouteConfig = &set.routes[route_index];
        let Some(bundle) = self.bundles.current() else {
            return Outcome::Reply(self.refuse("deny", ReasonCode::BundleMissing));
        };
        if view.content_length.is_some_and(|len| len > self.config.limits.max_body_bytes) {
            return Outcome::Reply(self.refuse("deny", ReasonCode::BodyTooLarge));
        }
        // The request head as the steps see it: only the headers they read (all, until
        // every component of the chain has said). Header values must be text.
        let steps = &set.steps[route_index];
        let mut wanted: [Option<Arc<Vec<String>>>; 4] = Default::default();
        let mut all = steps.len() > wanted.len();
        for (slot, step) in wanted.iter_mut().zip(steps) {
            *slot = match step {
                Step::Native(_) => Some(bundle.headers_read.clone()),
                Step::Component(f) => set.filters.interest(f, bundle.generation),
            };
            all |= slot.is_none();
        }
        let mut names: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(if all { view.headers.len() } else { 4 });
        for &(k, v) in view.headers {
            let read = all || wanted.iter().flatten().any(|names| names.iter().any(|n| n.eq_ignore_ascii_case(k)));
            if !read {
                continue;
            }
            let name = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(k.to_ascii_lowercase())
            } else {
                Cow::Borrowed(k)
            };
            match wire::header_text(v) {
                Some(v) => names.push((name, v)),
                None => return Outcome::Reply(self.refuse("deny", ReasonCode::RequestMalformed)),
            }
        }
        let headers: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        let req = StepRequest {
            head: gatehouse_core::request::RequestHead {
                method: view.method,
                scheme: view.scheme,
                host: view.authority,
                path: view.path,
                query: view.query,
                headers: &headers,
                peer: view.peer.ip(),
                platform_country: None,
            },
            wit: WitRequest {
                method: view.method,
                scheme: view.scheme,
                authority: view.authority,
                path: view.path,
                query: view.query,
                headers: &headers,
                peer: view.peer_text,
                platform_country: None,
            },
        };
        let policy = PolicyInput {
            revision: bundle.generation,
            bundle: &bundle.bytes,
            public_key: &self.bundles.public_key,
            secrets_json: &self.bundles.secrets_json,
        };
        let env = StepEnv { bundle: &bundle, filters: &set.filters, policy: &policy };
        // The chain: each step sees the context the previous ones established.
        let started = Instant::now();
        let mut ctx = Context::default();
        let mut via_component = false;
        for (step, name) in steps.iter().zip(&route.filters) {
            let t = Instant::now();
            let outcome = chain::run_step(step, &req, &mut ctx, &mut via_component, &env).await;
            if let Some(h) = set.filter_hist.get(name) {
                h.observe(t.elapsed().as_secs_f64());
            }
            match outcome {
                StepOutcome::Continue => {}
                StepOutcome::Deny(d) => {
                    self.metrics.chain_seconds.with_label_values(&["deny"]).observe(started.elapsed().as_secs_f64());
                    // A filter's own code and status are passed on (`wire::Reply::deny`
                    // clamps the status; its reason must be a code, else `filter_denied`).
                    let reason = wire::reason_text(&d.reason);
                    self.count("deny", reason);
                    let org = d.org.as_deref().or(ctx.org.as_deref());
                    let ip = ctx.client_ip.unwrap_or(view.peer.ip());
                    self.record(org, ("deny", reason), ctx.route.as_deref(), ip, view, None);
                    return Outcome::Reply(Reply::deny(d.status, reason, &d.headers));
                }
                StepOutcome::Redirect(location) => {
                    self.metrics
                        .chain_seconds
                        .with_label_values(&["redirect"])
                        .observe(started.elapsed().as_secs_f64());
                    self.count("redirect", ReasonCode::CredentialMissing.as_str());
                    return Outcome::Reply(Reply::redirect(&location));
                }
                StepOutcome::Failed(e) => {
                    tracing::error!(error = %e, request_id = view.request_id(), "filter failed; request denied");
                    return Outcome::Reply(self.refuse("deny", ReasonCode::FilterFailed));
                }
            }
        }
        // The identity's headers. One that came back from a component lost its actor (the
        // WIT record has none): the engine reads it from the request's own credential.
        let (identity_headers, actor) = match ctx.identity.take() {
            None => (Vec::new(), None),
            Some(id) if !via_component => (id.upstream_headers().to_vec(), id.actor.clone()),
            Some(id) => {
                let actor = actor_of(&bundle, view, &id);
                let id = Arc::unwrap_or_clone(id).with_actor(actor);
                (id.upstream_headers().to_vec(), id.actor)
            }
        };
        self.allow_chain.observe(started.elapsed().as_secs_f64());
        self.allow_count.inc();
        crate::trace::decided("allow", "allow");
        let ip = ctx.client_ip.unwrap_or(view.peer.ip());
        self.record(ctx.org.as_deref(), ("allow", "allow"), ctx.route.as_deref(), ip, view, actor);
        Outcome::Forward(Forward {
            route: route_index,
            routes: set,
            bundle,
            identity_headers,
            response_headers: std::mem::take(&mut ctx.response_headers),
        })
    }
}

/// Who really acts for `identity` under an impersonation: the WIT identity record has no
/// actor, so the engine reads it from the request's own credential (its verified-token
/// cache makes this a lookup), matched to the identity the chain established. Only the
/// credential headers are handed over.
fn actor_of(
    bundle: &LoadedBundle,
    view: &HeadView<'_>,
    identity: &gatehouse_core::identity::Identity,
) -> Option<String> {
    use gatehouse_core::identity::CredentialKind;
    if !matches!(identity.kind, CredentialKind::Jwt | CredentialKind::Session) {
        return None;
    }
    let headers: Vec<(&str, &str)> = view
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("cookie"))
        .filter_map(|(k, v)| Some((*k, wire::header_text(v)?)))
        .collect();
    let head = gatehouse_core::request::RequestHead {
        method: view.method,
        scheme: view.scheme,
        host: view.authority,
        path: view.path,
        query: view.query,
        headers: &headers,
        peer: view.peer.ip(),
        platform_country: None,
    };
    let now = crate::filters::now_nanos() / 1_000_000_000;
    bundle.engine.actor_of(&head, identity, now, None)
}
