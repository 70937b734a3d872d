//! Gatehouse as a Cloudflare Worker: the whole edge gateway in one Worker, with a
//! Durable Object per organisation holding its rate-limit state.
//!
//! Every decision is made by `gatehouse-core`; this crate adapts the Workers runtime:
//! - the policy bundle comes from the KV namespace `GATEHOUSE_BUNDLES` (key `current`,
//!   written by the scheduled handler after checking the signature) or, when that is
//!   empty, from the secret `BUNDLE` (base64); edges pin `ORIGIN_PUBLIC_KEY`;
//! - the client address is `CF-Connecting-IP`, the country `request.cf.country`;
//! - the compiled engine (and its verified-token cache, bounded) lives as long as the
//!   isolate and is rebuilt only when the bundle changes;
//! - rate limits: `Engine::begin` runs every other check; a pending rate limit costs one
//!   Durable Object call, to the object of the request's organisation;
//! - allowed requests go to `UPSTREAM` with `fetch`, bodies streamed both ways, headers
//!   by the edge's contract (`gatehouse_core::wire`); refusals are `wire::Reply`.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use gatehouse_core::engine::{Begun, Engine, Env as CoreEnv, PendingRates, RateStep};
use gatehouse_core::ratelimit::RateDecision;
use gatehouse_core::request::RequestHead;
use gatehouse_core::wire::{self, ConnectionTokens, Reply, UpstreamRequest};
use gatehouse_core::{Decision, EdgeSecrets, NoCountryLookup, ReasonCode};
use serde::{Deserialize, Serialize};
use worker::*;

thread_local! {
    /// The engine of the bundle in force, keyed by the bundle's text.
    static ENGINE: RefCell<Option<(String, Rc<Engine>)>> = const { RefCell::new(None) };
}

fn now_nanos() -> u64 {
    (Date::now().as_millis()) * 1_000_000
}

/// A reply the gateway gives itself (`wire::Reply`: a refusal or a redirect).
fn reply_response(r: Reply) -> Result<Response> {
    let h = Headers::new();
    for (k, v) in &r.headers {
        h.append(k, v)?;
    }
    let resp = if r.body.is_empty() { Response::empty()? } else { Response::from_bytes(r.body)? };
    Ok(resp.with_status(r.status).with_headers(h))
}

fn reason_response(reason: ReasonCode) -> Result<Response> {
    reply_response(Reply::refusal(reason))
}

/// The bundle text (base64) in force: KV first, then the `BUNDLE` secret.
async fn bundle_text(env: &Env) -> Option<String> {
    if let Ok(kv) = env.kv("GATEHOUSE_BUNDLES") {
        if let Ok(Some(t)) = kv.get("current").text().await {
            return Some(t);
        }
    }
    env.secret("BUNDLE").ok().map(|s| s.to_string()).or_else(|| env.var("BUNDLE").ok().map(|v| v.to_string()))
}

fn pinned_key(env: &Env) -> std::result::Result<[u8; 32], ReasonCode> {
    let text = env.var("ORIGIN_PUBLIC_KEY").map_err(|_| ReasonCode::BundleMissing)?.to_string();
    STANDARD.decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(ReasonCode::BundleMissing)
}

fn edge_secrets(env: &Env) -> std::result::Result<EdgeSecrets, ReasonCode> {
    match env.secret("EDGE_SECRETS") {
        Ok(s) if !s.to_string().is_empty() => {
            serde_json::from_str(&s.to_string()).map_err(|_| ReasonCode::BundleMissing)
        }
        _ => Ok(EdgeSecrets::default()),
    }
}

/// The engine for the bundle in force (compiled once per isolate and bundle).
async fn engine(env: &Env) -> std::result::Result<Rc<Engine>, ReasonCode> {
    let text = bundle_text(env).await.ok_or(ReasonCode::BundleMissing)?;
    if let Some(e) = ENGINE.with(|c| c.borrow().as_ref().filter(|(t, _)| *t == text).map(|(_, e)| e.clone())) {
        return Ok(e);
    }
    let bytes = STANDARD.decode(text.trim()).map_err(|_| ReasonCode::BundleMissing)?;
    let key = pinned_key(env)?;
    let engine = Engine::from_bundle(&bytes, &key, now_nanos() / 1_000_000_000, &edge_secrets(env)?).map_err(|e| {
        console_error!("bundle refused: {e}");
        ReasonCode::BundleMissing
    })?;
    let engine = Rc::new(engine);
    ENGINE.with(|c| *c.borrow_mut() = Some((text, engine.clone())));
    Ok(engine)
}

/// What the Durable Object of an organisation is asked.
#[derive(Serialize, Deserialize)]
struct RateRequest {
    now: u64,
    steps: Vec<RateStep>,
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: worker::Context) -> Result<Response> {
    let engine = match engine(&env).await {
        Ok(e) => e,
        Err(reason) => return reason_response(reason),
    };
    let url = req.url()?;
    let method = req.method().to_string();
    let mut pairs: Vec<(String, String)> = req.headers().entries().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The client address as Cloudflare saw it; without it nothing is decided.
    let Some(peer) = req.headers().get("cf-connecting-ip")?.and_then(|v| v.parse::<IpAddr>().ok()) else {
        return reason_response(ReasonCode::RequestMalformed);
    };
    let country = req.cf().and_then(|cf| cf.country());
    let authority = req.headers().get("host")?.unwrap_or_else(|| url.host_str().unwrap_or_default().to_string());
    let scheme = url.scheme().to_string();
    let head = RequestHead {
        method: &method,
        scheme: &scheme,
        host: &authority,
        path: url.path(),
        query: url.query(),
        headers: &borrowed,
        peer,
        platform_country: country.as_deref(),
    };
    // Every check but the rate limit here; the rate limit in the org's Durable Object.
    let now = now_nanos();
    let decided = match engine.begin(&head, &CoreEnv::deferred(now, &NoCountryLookup)) {
        Begun::Done(d) => d,
        Begun::Pending(pending) => rate_limit(&engine, &env, pending, now).await,
    };
    match decided {
        Decision::Allow(a) => forward(req, &env, &engine, &a, &authority, &peer.to_string()).await,
        refused => {
            reply_response(Reply::for_decision(&refused).unwrap_or_else(|| Reply::refusal(ReasonCode::InternalError)))
        }
    }
}

/// The pending rate steps in the organisation's Durable Object, then the decision. An
/// unreachable limiter answers nothing, which `finish` turns into a deny.
async fn rate_limit(engine: &Engine, env: &Env, pending: PendingRates, now: u64) -> Decision {
    let r = RateRequest { now, steps: pending.steps().to_vec() };
    let answers = match ask_limiter(env, pending.org(), r).await {
        Ok(a) => a,
        Err(e) => {
            console_error!("rate limiter unavailable: {e}");
            Vec::new()
        }
    };
    pending.finish(engine, &answers)
}

async fn ask_limiter(env: &Env, org: &str, r: RateRequest) -> Result<Vec<RateDecision>> {
    let stub = env.durable_object("RATE_LIMITER")?.id_from_name(org)?.get_stub()?;
    let init = {
        let mut i = RequestInit::new();
        i.with_method(Method::Post).with_body(Some(serde_json::to_string(&r)?.into()));
        i
    };
    let mut resp = stub.fetch_with_request(Request::new_with_init("https://rate-limiter/steps", &init)?).await?;
    // serde_json on both ends: nanosecond values do not survive JavaScript numbers.
    Ok(serde_json::from_str(&resp.text().await?)?)
}

/// Whether `fetch` refuses a header from a Worker's outbound request: `host` (the target
/// URL names it).
fn is_platform_refused(name: &str) -> bool {
    name.eq_ignore_ascii_case("host")
}

async fn forward(
    req: Request,
    env: &Env,
    engine: &Engine,
    allow: &gatehouse_core::Allow,
    host: &str,
    peer: &str,
) -> Result<Response> {
    let upstream = env.var("UPSTREAM")?.to_string();
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{}{}?{q}", upstream.trim_end_matches('/'), url.path()),
        None => format!("{}{}", upstream.trim_end_matches('/'), url.path()),
    };
    let client: Vec<(String, String)> = req.headers().entries().collect();
    let fields = || client.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let connection = ConnectionTokens::of(fields());
    let rules = UpstreamRequest {
        identity_prefix: engine.identity_header_prefix(),
        connection: &connection,
        relay_upgrade: false,
        host,
        peer,
        identity: allow.upstream_headers(),
    };
    let headers = Headers::new();
    let mut failed = None;
    rules.headers(fields(), |name, value| {
        if !is_platform_refused(name) {
            if let Err(e) = headers.append(name, &String::from_utf8_lossy(value)) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if let Some(body) = req.inner().body() {
        init.with_body(Some(body.into()));
    }
    let upstream_resp = match Fetch::Request(Request::new_with_init(&target, &init)?).send().await {
        Ok(r) => r,
        Err(e) => {
            console_error!("upstream error: {e}");
            return reason_response(ReasonCode::UpstreamUnavailable);
        }
    };
    let status = upstream_resp.status_code();
    let upstream_headers: Vec<(String, String)> = upstream_resp.headers().entries().collect();
    let out = Headers::new();
    let mut failed = None;
    let fields = upstream_headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    wire::response_headers(fields, &allow.response_headers, |name, value| {
        if let Err(e) = out.append(name, &String::from_utf8_lossy(value)) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let (_, body) = upstream_resp.into_parts();
    Ok(Response::builder().with_status(status).with_headers(out).body(body))
}

/// Refresh the bundle from the origin (`ORIGIN_BUNDLE_URL`, authenticated with the secret
/// `EDGE_TOKEN`, conditional on the last ETag) into KV — only after its signature, time
/// and format check out against the pinned key. A bad bundle is refused; the old one
/// stays.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if let Err(e) = refresh_bundle(&env).await {
        console_error!("bundle refresh failed: {e}");
    }
}

async fn refresh_bundle(env: &Env) -> Result<()> {
    let url = env.var("ORIGIN_BUNDLE_URL")?.to_string();
    let token = env.secret("EDGE_TOKEN")?.to_string();
    let kv = env.kv("GATEHOUSE_BUNDLES")?;
    let headers = Headers::new();
    headers.set("authorization", &format!("Bearer {token}"))?;
    if let Some(etag) = kv.get("etag").text().await? {
        headers.set("if-none-match", &etag)?;
    }
    let mut init = RequestInit::new();
    init.with_headers(headers);
    let mut resp = Fetch::Request(Request::new_with_init(&url, &init)?).send().await?;
    match resp.status_code() {
        304 => return Ok(()),
        200 => {}
        s => return Err(Error::RustError(format!("origin answered {s}"))),
    }
    let bytes = resp.bytes().await?;
    let key = pinned_key(env).map_err(|r| Error::RustError(r.as_str().into()))?;
    gatehouse_core::bundle::open(&bytes, &key, now_nanos() / 1_000_000_000)
        .map_err(|e| Error::RustError(format!("bundle refused: {e}")))?;
    kv.put("current", STANDARD.encode(&bytes))?.execute().await?;
    if let Some(etag) = resp.headers().get("etag")? {
        kv.put("etag", etag)?.execute().await?;
    }
    Ok(())
}

/// The rate-limit state of one organisation: GCRA "theoretical arrival times" per key,
/// in the object's storage. A Durable Object handles one request at a time, so each
/// request's steps are atomic; the steps run in order and stop at the first refusal.
#[durable_object]
pub struct RateLimiter {
    state: State,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let r: RateRequest = serde_json::from_str(&req.text().await?)?;
        let storage = self.state.storage();
        let mut answers = Vec::with_capacity(r.steps.len());
        for s in &r.steps {
            // Stored as text: JavaScript numbers cannot hold nanosecond timestamps exactly.
            // A value that is not one ends the answers (the request is denied), as on
            // Spin: a corrupt bucket must not become an empty one.
            let tat = match storage.get::<String>(&s.key).await? {
                None => None,
                Some(t) => match t.parse::<u64>() {
                    Ok(t) => Some(t),
                    Err(_) => break,
                },
            };
            let (d, next) = s.gcra.apply(tat, r.now);
            if let Some(t) = next {
                storage.put(&s.key, t.to_string()).await?;
            }
            answers.push(d);
            if !d.allowed {
                break;
            }
        }
        Response::ok(serde_json::to_string(&answers)?)
    }
}
