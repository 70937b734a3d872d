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
//! - rate limits: at most one Durable Object call per request, to the object of the
//!   request's organisation, and only for requests that passed every other check;
//! - allowed requests go to `UPSTREAM` with `fetch`, bodies streamed both ways.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use gatehouse_core::engine::{Check, Context as CheckContext, Engine, Env as CoreEnv, RateStep};
use gatehouse_core::ratelimit::RateDecision;
use gatehouse_core::request::RequestHead;
use gatehouse_core::request::HOP_BY_HOP;
use gatehouse_core::{Decision, EdgeSecrets, MemoryRateStore, NoCountryLookup, ReasonCode};
use serde::{Deserialize, Serialize};
use worker::*;

thread_local! {
    /// The engine of the bundle in force, keyed by the bundle's text.
    static ENGINE: RefCell<Option<(String, Rc<Engine>)>> = const { RefCell::new(None) };
}

fn now_nanos() -> u64 {
    (Date::now().as_millis()) * 1_000_000
}

/// A deny as every Gatehouse host answers it.
fn deny_response(status: u16, reason: &str, headers: &[(String, String)]) -> Result<Response> {
    let h = Headers::new();
    h.set("content-type", "application/json")?;
    h.set("x-gatehouse-reason", reason)?;
    for (k, v) in headers {
        h.append(k, v)?;
    }
    Ok(Response::from_bytes(format!("{{\"error\":\"{reason}\"}}\n").into_bytes())?.with_status(status).with_headers(h))
}

fn reason_response(reason: ReasonCode) -> Result<Response> {
    deny_response(reason.status(), reason.as_str(), &[])
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
    let unused = MemoryRateStore::new(1, [0; 16]);
    let core_env = CoreEnv { now: now_nanos(), rates: &unused, countries: &NoCountryLookup, signatures: None };
    let mut ctx = CheckContext::default();
    let decided = match engine.check(&Check::ALL[..Check::ALL.len() - 1], &head, &mut ctx, &core_env) {
        Err(d) => d,
        Ok(()) => match rate_limit(&engine, &env, &mut ctx, core_env.now).await {
            Err(d) => d,
            Ok(()) => engine.allow_context(&ctx),
        },
    };
    match decided {
        Decision::Deny(d) => deny_response(d.status, d.reason.as_str(), &d.headers),
        Decision::Redirect(r) => {
            let h = Headers::new();
            h.set("location", &r.location)?;
            Ok(Response::empty()?.with_status(302).with_headers(h))
        }
        Decision::Allow(a) => forward(req, &env, &engine, &a, &peer.to_string()).await,
    }
}

async fn rate_limit(engine: &Engine, env: &Env, ctx: &mut CheckContext, now: u64) -> std::result::Result<(), Decision> {
    let steps = engine.rate_steps(ctx)?;
    if steps.is_empty() {
        return engine.finish_rates(ctx, 0, &[]);
    }
    let org = ctx.org.clone().unwrap_or_default();
    let n = steps.len();
    let answers = match ask_limiter(env, &org, RateRequest { now, steps }).await {
        Ok(a) => a,
        Err(e) => {
            console_error!("rate limiter unavailable: {e}");
            Vec::new() // finish_rates fails closed on missing answers
        }
    };
    engine.finish_rates(ctx, n, &answers)
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

async fn forward(
    req: Request,
    env: &Env,
    engine: &Engine,
    allow: &gatehouse_core::Allow,
    peer: &str,
) -> Result<Response> {
    let upstream = env.var("UPSTREAM")?.to_string();
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{}{}?{q}", upstream.trim_end_matches('/'), url.path()),
        None => format!("{}{}", upstream.trim_end_matches('/'), url.path()),
    };
    let headers = Headers::new();
    for (k, v) in req.headers().entries() {
        let k = k.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&k.as_str()) || engine.is_identity_header(&k) || k == "host" {
            continue;
        }
        headers.append(&k, &v)?;
    }
    if let Some(id) = &allow.identity {
        for (k, v) in id.upstream_headers() {
            headers.set(k, v)?;
        }
    }
    let xff = match req.headers().get("x-forwarded-for")? {
        Some(prev) => format!("{prev}, {peer}"),
        None => peer.to_string(),
    };
    headers.set("x-forwarded-for", &xff)?;
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
    let out = Headers::new();
    for (k, v) in upstream_resp.headers().entries() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            out.append(&k, &v)?;
        }
    }
    for (k, v) in &allow.response_headers {
        out.set(k, v)?;
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
            let tat = storage.get::<String>(&s.key).await?.and_then(|t| t.parse::<u64>().ok());
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
