//! # gatehouse-spin
//!
//! The Gatehouse edge gateway as a Fermyon Spin HTTP component (WASI 0.3, spin-sdk 7).
//! Every decision is made by `gatehouse-core`; this crate only adapts Spin's I/O:
//!
//! - **Policy**: the signed bundle comes from the Spin variable `bundle` (base64), pinned
//!   to `origin_public_key` (base64 of the 32 raw Ed25519 bytes), with `edge_secrets`
//!   (JSON of `EdgeSecrets`, may be empty). The compiled engine is kept in the instance
//!   (Spin reuses WASI 0.3 instances) and rebuilt only when one of the three changes. A
//!   missing or refused bundle denies every request (503 `bundle_missing`, or
//!   `bundle_expired`). With `cache_key` (base64, at least 32 bytes) a sealed cache in
//!   the key-value store carries what one instance verified to the next: that the
//!   bundle's signature checked out, and the identities tokens proved (`shared`,
//!   `gatehouse_core::sealed`).
//! - **Request head**: method, scheme, `Host` (else the request authority), path, query,
//!   every header, and the peer from Spin's `spin-client-addr` header. Without exactly
//!   one such value nothing is decided (400 `request_malformed`).
//! - **Checks**: `Engine::begin` runs every check but the rate limit; a pending rate
//!   limit runs its steps against the GCRA state (TATs) in the Spin key-value store
//!   `default`, and `PendingRates::finish` completes the decision.
//! - **Forwarding**: allowed requests go to the `upstream` variable's origin with the same
//!   method, path and query; bodies are streamed by the host in both directions (never
//!   copied through the guest). Headers follow the edge's contract (`gatehouse_core::wire`):
//!   hop-by-hop, `Connection`-named, `Expect` and client-sent identity headers dropped; the
//!   identity's headers, `x-forwarded-for` and `x-forwarded-host` added; the upstream's
//!   response gets the allow's `RateLimit-*` headers. Refusals are `wire::Reply`. With the `middleware`
//!   feature the request goes to the next handler of a Spin middleware chain instead.

// The passthrough floor (feature `passthrough`) compiles the gateway without calling it.
#![cfg_attr(feature = "passthrough", allow(dead_code, unused_imports))]

use std::cell::RefCell;
use std::rc::Rc;

use gatehouse_core::bundle::BundleError;
use gatehouse_core::engine::{Begun, Engine, EngineError, Env, RateStep};
use gatehouse_core::geo::NoCountryLookup;
use gatehouse_core::ratelimit::RateDecision;
use gatehouse_core::request::RequestHead;
use gatehouse_core::wire::{self, Reply};
use gatehouse_core::{Decision, EdgeSecrets, ReasonCode};
use spin_sdk::wasip3::http::types::{self, ErrorCode, Fields, Method, Scheme};
use spin_sdk::wasip3::wit_bindgen;
use spin_sdk::wasip3::{wit_future, wit_stream};

mod forward;
mod shared;

use forward::Field;

const NANOS: u64 = 1_000_000_000;

thread_local! {
    /// The engine of the configuration in force, with the variable values it came from.
    static ENGINE: RefCell<Option<Loaded>> = const { RefCell::new(None) };
    /// The last configuration problem logged (each is logged once, not per request).
    static LAST_PROBLEM: RefCell<String> = const { RefCell::new(String::new()) };
}

struct Loaded {
    bundle: String,
    public_key: String,
    secrets: String,
    engine: Rc<Engine>,
    /// The bundle's tag in the sealed cache, when the cache is on.
    tag: Option<[u8; 32]>,
}

/// The engine in force and the tag of its bundle in the sealed cache.
struct Compiled {
    engine: Rc<Engine>,
    tag: Option<[u8; 32]>,
}

fn now_nanos() -> u64 {
    let t = spin_sdk::wasip3::clocks::system_clock::now();
    u64::try_from(t.seconds).unwrap_or(0).saturating_mul(NANOS).saturating_add(u64::from(t.nanoseconds))
}

/// Log a configuration problem once (Spin keeps the component's stderr). Never pass a
/// secret or anything derived from one.
fn log_problem(msg: String) {
    LAST_PROBLEM.with(|last| {
        let mut last = last.borrow_mut();
        if *last != msg {
            eprintln!("gatehouse: {msg}");
            *last = msg;
        }
    });
}

async fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name).await.ok()
}

/// The engine for the configured bundle: from the instance's cache, or compiled now
/// (without the signature check when the sealed cache says these bytes passed it).
async fn engine(now: u64, shared: Option<&shared::Shared>) -> Result<Compiled, ReasonCode> {
    let (Some(bundle), Some(public_key)) = (variable("bundle").await, variable("origin_public_key").await) else {
        log_problem("variable `bundle` or `origin_public_key` is not defined for this component".into());
        return Err(ReasonCode::BundleMissing);
    };
    let secrets = variable("edge_secrets").await.unwrap_or_default();
    let cached = ENGINE.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|l| {
                l.bundle == bundle
                    && l.public_key == public_key
                    && l.secrets == secrets
                    && l.tag.is_some() == shared.is_some()
            })
            .map(|l| Compiled { engine: l.engine.clone(), tag: l.tag })
    });
    if let Some(c) = cached {
        return Ok(c);
    }
    let known = match shared {
        Some(s) => s.bundle_entry().await,
        None => None,
    };
    let (engine, tag, store) = compile(&bundle, &public_key, &secrets, now / NANOS, shared, known.as_deref())?;
    if let (Some(s), Some(entry)) = (shared, store) {
        s.store_bundle_entry(&entry).await;
    }
    let engine = Rc::new(engine);
    ENGINE.with(|c| *c.borrow_mut() = Some(Loaded { bundle, public_key, secrets, engine: engine.clone(), tag }));
    LAST_PROBLEM.with(|l| l.borrow_mut().clear());
    Ok(Compiled { engine, tag })
}

/// The engine, the bundle's tag and the bundle entry to store (when the signature was
/// checked now) for the variables' values.
type Built = (Engine, Option<[u8; 32]>, Option<Vec<u8>>);

fn compile(
    bundle: &str,
    public_key: &str,
    secrets: &str,
    now_secs: u64,
    shared: Option<&shared::Shared>,
    known: Option<&[u8]>,
) -> Result<Built, ReasonCode> {
    let Some(bytes) = forward::decode_b64(bundle) else {
        log_problem("variable `bundle` is empty or not base64".into());
        return Err(ReasonCode::BundleMissing);
    };
    let Some(key) = forward::decode_b64(public_key).and_then(|k| <[u8; 32]>::try_from(k).ok()) else {
        log_problem("variable `origin_public_key` is not base64 of 32 bytes".into());
        return Err(ReasonCode::BundleMissing);
    };
    let secrets: EdgeSecrets = if secrets.trim().is_empty() {
        EdgeSecrets::default()
    } else {
        // The parser's message may quote the secret text: report only where it failed.
        serde_json::from_str(secrets).map_err(|e| {
            log_problem(format!(
                "variable `edge_secrets` is not valid EdgeSecrets JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ));
            ReasonCode::BundleMissing
        })?
    };
    let refused = |e: EngineError| {
        log_problem(format!("bundle refused: {e}"));
        match e {
            EngineError::Bundle(BundleError::Expired { .. }) => ReasonCode::BundleExpired,
            _ => ReasonCode::BundleMissing,
        }
    };
    match shared {
        None => Ok((Engine::from_bundle(&bytes, &key, now_secs, &secrets).map_err(refused)?, None, None)),
        Some(s) => {
            let opened = s.sealer.open_bundle(&bytes, &key, now_secs, known).map_err(|e| refused(e.into()))?;
            let engine = Engine::from_body(opened.body, &secrets).map_err(refused)?;
            Ok((engine, Some(opened.tag), opened.store))
        }
    }
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(s) => s,
    }
}

/// A response with a small body written from the guest.
fn small_response(status: u16, headers: &[Field], body: Vec<u8>) -> types::Response {
    let fields = fields_from(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = types::Response::new(fields, Some(body_rx), trailers_rx);
    drop(trailers_tx);
    let _ = response.set_status_code(status);
    wit_bindgen::spawn(async move {
        let _ = body_tx.write_all(body).await;
    });
    response
}

/// Header fields for an outgoing message. Fields the host refuses are left out one by one
/// rather than failing the whole message.
fn fields_from<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Fields {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, value);
    }
    fields
}

/// A reply the gateway gives itself (`wire::Reply`: a refusal or a redirect).
fn reply_response(r: Reply) -> types::Response {
    let headers: Vec<Field> = r.headers.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    small_response(r.status, &headers, r.body)
}

fn reason_response(reason: ReasonCode) -> types::Response {
    reply_response(Reply::refusal(reason))
}

/// The rate steps against the key-value store, in order, stopping at the first refusal.
/// A store error ends the answers early, which `PendingRates::finish` turns into a deny.
/// `store` is the one the sealed cache opened, if it did.
async fn run_rate_steps(steps: &[RateStep], now: u64, store: Option<&spin_sdk::key_value::Store>) -> Vec<RateDecision> {
    let mut answers = Vec::with_capacity(steps.len());
    if steps.is_empty() {
        return answers;
    }
    let opened;
    let store = match store {
        Some(s) => s,
        None => match spin_sdk::key_value::Store::open_default().await {
            Ok(s) => {
                opened = s;
                &opened
            }
            Err(_) => {
                log_problem(
                    "the key-value store `default` cannot be opened (key_value_stores = [\"default\"]?)".into(),
                );
                return answers;
            }
        },
    };
    for step in steps {
        let key = forward::kv_key(&step.key);
        let tat = match store.get(&*key).await {
            Ok(None) => None,
            Ok(Some(v)) => match forward::parse_tat(&v) {
                Some(t) => Some(t),
                None => break,
            },
            Err(_) => break,
        };
        let (decision, new_tat) = step.gcra.apply(tat, now);
        if let Some(t) = new_tat {
            if store.set(&*key, forward::format_tat(t)).await.is_err() {
                break;
            }
        }
        answers.push(decision);
        if !decision.allowed {
            break;
        }
    }
    answers
}

/// The exported `wasi:http/handler@0.3.0`. The request stays a WASI resource (no
/// conversion to `http` types): its body stream is handed to the upstream request as is.
struct Gateway;

spin_sdk::wasip3::http::service::export!(Gateway);

impl spin_sdk::wasip3::exports::http::handler::Guest for Gateway {
    async fn handle(request: types::Request) -> Result<types::Response, ErrorCode> {
        #[cfg(feature = "passthrough")]
        return Ok(passthrough(request).await);
        #[cfg(not(feature = "passthrough"))]
        Ok(gateway(request).await)
    }
}

/// The platform's floor for `bench/load/edge.sh` (feature `passthrough`, never a
/// gateway): forward every request to `upstream` as the gateway forwards an allowed one
/// (same method, path, query and body stream; the client's headers minus what the host
/// refuses), deciding nothing.
#[cfg(feature = "passthrough")]
async fn passthrough(req: types::Request) -> types::Response {
    let method = req.get_method();
    let path_with_query = req.get_path_with_query().unwrap_or_else(|| "/".to_string());
    let headers: Vec<Field> = forward::lowercase_names(req.get_headers().copy_all())
        .into_iter()
        .filter(|(n, _)| !forward::is_platform_refused(n) && !forward::is_spin_header(n))
        .collect();
    let target = match target("", false).await {
        Ok(t) => t,
        Err(reason) => return reason_response(reason),
    };
    let Ok(outgoing) = outgoing_request(req, &method, &target, &path_with_query, &headers) else {
        return reason_response(ReasonCode::UpstreamUnavailable);
    };
    match dispatch(outgoing).await {
        Ok(resp) => relay_response(resp, &[], matches!(method, Method::Head)),
        Err(_) => reason_response(ReasonCode::UpstreamUnavailable),
    }
}

async fn gateway(req: types::Request) -> types::Response {
    let now = now_nanos();
    let shared = shared::open(variable("cache_key").await.as_deref()).await;
    let Compiled { engine, tag } = match engine(now, shared.as_ref()).await {
        Ok(c) => c,
        Err(reason) => return reason_response(reason),
    };

    // The head as the engine sees it. Header values must be text.
    let method = req.get_method();
    let scheme = match req.get_scheme() {
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(s)) => s,
        Some(Scheme::Http) | None => "http".to_string(),
    };
    let authority = req.get_authority();
    let path_with_query = req.get_path_with_query().unwrap_or_else(|| "/".to_string());
    let (path, query) = match path_with_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_with_query.as_str(), None),
    };
    let fields = forward::lowercase_names(req.get_headers().copy_all());
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(fields.len());
    for (name, value) in &fields {
        match wire::header_text(value) {
            Some(v) => pairs.push((name.as_str(), v)),
            None => return reason_response(ReasonCode::RequestMalformed),
        }
    }
    let Some(peer) = forward::peer_from_client_addr(
        fields.iter().filter(|(n, _)| n == forward::CLIENT_ADDR_HEADER).map(|(_, v)| v.as_slice()),
    ) else {
        return reason_response(ReasonCode::RequestMalformed);
    };
    let host = pairs.iter().find(|(n, _)| *n == "host").map(|(_, v)| *v).or(authority.as_deref()).unwrap_or("");
    let head = RequestHead {
        method: method_name(&method),
        scheme: &scheme,
        host,
        path,
        query,
        headers: &pairs,
        peer,
        platform_country: None,
    };

    // The token's sealed entry, if the cache is on; every check but the rate limit; the
    // rate limit against the key-value store; then the entry of a token verified now.
    let slot = match (&shared, &tag, engine.presented_token(&head)) {
        (Some(s), Some(tag), Some(token)) => Some(shared::before(s, &engine, tag, token, now / NANOS).await),
        _ => None,
    };
    let decision = match engine.begin(&head, &Env::deferred(now, &NoCountryLookup)) {
        Begun::Done(d) => d,
        Begun::Pending(pending) => {
            let answers = run_rate_steps(pending.steps(), now, shared.as_ref().map(|s| &s.store)).await;
            pending.finish(&engine, &answers)
        }
    };
    if let (Some(s), Some(slot)) = (&shared, &slot) {
        shared::after(s, &engine, slot, now / NANOS).await;
    }
    let allow = match decision {
        Decision::Allow(a) => a,
        refused => {
            return reply_response(
                Reply::for_decision(&refused).unwrap_or_else(|| Reply::refusal(ReasonCode::InternalError)),
            )
        }
    };

    // Forward: the incoming body stream goes on unchanged.
    let raw: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let headers = forward::upstream_request_headers(
        &raw,
        engine.identity_header_prefix(),
        !cfg!(feature = "middleware"),
        allow.upstream_headers(),
        peer,
        host,
    );
    let target = match target(host, scheme == "https").await {
        Ok(t) => t,
        Err(reason) => return reason_response(reason),
    };
    let outgoing = match outgoing_request(req, &method, &target, &path_with_query, &headers) {
        Ok(r) => r,
        Err(()) => return reason_response(ReasonCode::UpstreamUnavailable),
    };
    match dispatch(outgoing).await {
        Ok(resp) => relay_response(resp, &allow.response_headers, matches!(method, Method::Head)),
        Err(e) => {
            let reason = match e {
                ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
                    ReasonCode::UpstreamTimeout
                }
                _ => ReasonCode::UpstreamUnavailable,
            };
            log_problem(format!("upstream error: {e:?}"));
            reason_response(reason)
        }
    }
}

/// Where an allowed request goes: scheme and authority.
struct Target {
    scheme: Scheme,
    authority: String,
}

/// The `upstream` variable (standalone gateway).
#[cfg(not(feature = "middleware"))]
async fn target(_host: &str, _https: bool) -> Result<Target, ReasonCode> {
    let text = variable("upstream").await.unwrap_or_default();
    match forward::parse_upstream(&text) {
        Some(u) => Ok(Target { scheme: if u.https { Scheme::Https } else { Scheme::Http }, authority: u.authority }),
        None => {
            log_problem("variable `upstream` is not http(s)://host[:port]".into());
            Err(ReasonCode::UpstreamUnavailable)
        }
    }
}

/// The next handler of the middleware chain: the request keeps its own scheme and host.
#[cfg(feature = "middleware")]
async fn target(host: &str, https: bool) -> Result<Target, ReasonCode> {
    Ok(Target { scheme: if https { Scheme::Https } else { Scheme::Http }, authority: host.to_string() })
}

#[cfg(not(feature = "middleware"))]
async fn dispatch(req: types::Request) -> Result<types::Response, ErrorCode> {
    spin_sdk::wasip3::http::client::send(req).await
}

#[cfg(feature = "middleware")]
async fn dispatch(req: types::Request) -> Result<types::Response, ErrorCode> {
    let resp = spin_sdk::http::next(req).await?;
    let (_, mut body) = resp.into_parts();
    body.take_unstarted().ok_or_else(|| ErrorCode::InternalError(Some("response body already read".into())))
}

/// The upstream request around the incoming body stream. The outcome of sending it is
/// reported back as the outcome of consuming the incoming body.
fn outgoing_request(
    incoming: types::Request,
    method: &Method,
    target: &Target,
    path_with_query: &str,
    headers: &[Field],
) -> Result<types::Request, ()> {
    let (consumed_tx, consumed_rx) = wit_future::new(|| Ok(()));
    let (contents, trailers) = types::Request::consume_body(incoming, consumed_rx);
    let fields = fields_from(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    let (out, sent) = types::Request::new(fields, Some(contents), trailers, None);
    out.set_method(method)?;
    out.set_scheme(Some(&target.scheme))?;
    out.set_authority(Some(&target.authority))?;
    out.set_path_with_query(Some(path_with_query))?;
    wit_bindgen::spawn(async move {
        let _ = consumed_tx.write(sent.await).await;
    });
    Ok(out)
}

/// The upstream's response to the client: its status and body stream, its headers minus
/// hop-by-hop ones, plus the allow's `RateLimit-*` headers. The answer to a HEAD carries
/// no `content-length`: the WASI HTTP host checks a body against it, and a HEAD response
/// has none.
fn relay_response(resp: types::Response, ours: &[(String, String)], head: bool) -> types::Response {
    let status = resp.get_status_code();
    let upstream_headers = {
        let h = resp.get_headers();
        h.copy_all()
    };
    let mut headers = forward::client_response_headers(&upstream_headers, ours);
    if head {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
    }
    let (consumed_tx, consumed_rx) = wit_future::new(|| Ok(()));
    let (contents, trailers) = types::Response::consume_body(resp, consumed_rx);
    let fields = fields_from(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    let (out, sent) = types::Response::new(fields, Some(contents), trailers);
    let _ = out.set_status_code(status);
    wit_bindgen::spawn(async move {
        let _ = consumed_tx.write(sent.await).await;
    });
    out
}
