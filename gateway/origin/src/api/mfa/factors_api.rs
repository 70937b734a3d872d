//! A user's own factors (bearer access token of the user, or the enrolment token of a
//! sign-in that must enrol first): list, enrol and confirm TOTP, register passkeys,
//! rename and remove factors, regenerate recovery codes. Once a user has a factor, every
//! change needs a session that passed MFA (`step_up_required` otherwise). And the admin
//! reset of a user's factors.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::RequestMeta;
use crate::auth_policy::MfaMethod;
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::new_id;
use crate::mfa::{passkeys, recovery, totp};
use crate::store::factors::{self, Challenge, Factor};
use crate::store::{sessions, users, Held};

use crate::api::admin::auth_policy;
use crate::api::app::App;
use crate::api::extract::{
    bearer, meta, refuse_impersonation, tenant, verify_access, AppState, Authed, JsonBody, Peer, RawBody, Tenant,
};
use crate::api::mfa::flow::{self, active_factors, not_allowed};
use crate::api::session::end_session;
use crate::api::transaction::{begin, commit, ev};

/// Who is changing their factors.
pub(crate) enum Who {
    /// A signed-in session: its user, whether it passed MFA, and whether it is an
    /// impersonation (which never changes the person's factors).
    Session { user: String, mfa: bool, impersonated: bool },
    /// A sign-in held at enrolment (the challenge it continues).
    Enrolling { user: String, challenge: Challenge },
}

impl Who {
    pub(crate) fn user(&self) -> &str {
        match self {
            Who::Session { user, .. } | Who::Enrolling { user, .. } => user,
        }
    }
}

/// Resolve the bearer (in the caller's transaction): an access token of a live session
/// of this tenant, or a live enrolment token.
pub(crate) async fn who(app: &App, t: &Tenant, h: &libsql::Connection, token: Option<&str>) -> ApiResult<Who> {
    let token =
        token.ok_or_else(|| ApiError::unauthorized("credential_missing", "a bearer access token is required"))?;
    let now = crate::now();
    if token.starts_with("ghm_") {
        let c = flow::live(h, token, &["enroll"], now).await?.ok_or_else(flow::token_invalid)?;
        let user = c.user_id.clone().ok_or_else(flow::token_invalid)?;
        return Ok(Who::Enrolling { user, challenge: c });
    }
    let c = verify_access(app, token, Some(&t.slug))?;
    let user = c.subject.clone().unwrap_or_default();
    let sid = c.custom.sid.clone();
    if !sessions::is_live(h, &sid, &user, now).await? {
        return Err(ApiError::unauthorized("session_revoked", "the session has ended"));
    }
    let amr: Vec<String> = match sessions::authentication(h, &sid).await? {
        Some((a, _)) => serde_json::from_str(&a).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Who::Session { user, mfa: amr.iter().any(|a| a == "mfa"), impersonated: c.custom.act.is_some() })
}

/// A change of factors: allowed for an enrolment token only while the user has no
/// factor, and for a session only if it passed MFA once the user has one.
async fn may_change(h: &libsql::Connection, who: &Who) -> ApiResult<()> {
    if matches!(who, Who::Session { impersonated: true, .. }) {
        return Err(refuse_impersonation());
    }
    let has = !active_factors(h, who.user()).await?.is_empty();
    match who {
        Who::Enrolling { .. } if has => Err(flow::token_invalid()),
        Who::Session { mfa: false, .. } if has => Err(ApiError::unauthorized(
            "step_up_required",
            "changing factors needs a session that passed MFA: step up first",
        )),
        _ => Ok(()),
    }
}

/// An answer holding secrets (a TOTP secret, recovery codes, tokens): never cached.
pub(crate) struct Secret<T>(pub(crate) StatusCode, pub(crate) T);

impl<T: IntoResponse> IntoResponse for Secret<T> {
    fn into_response(self) -> Response {
        let mut r = (self.0, self.1).into_response();
        r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
        r
    }
}

fn factor_json(f: &Factor) -> Value {
    json!({
        "id": f.id,
        "type": f.kind,
        "name": f.name,
        "amr": f.amr,
        "confirmed": f.confirmed_at.is_some(),
        "created_at": f.created_at,
        "last_used_at": f.last_used_at,
    })
}

struct Ctx {
    app: std::sync::Arc<App>,
    t: Tenant,
    m: RequestMeta,
    token: Option<String>,
}

async fn ctx(
    app: std::sync::Arc<App>,
    slug: &str,
    path: &str,
    headers: &HeaderMap,
    peer: &SocketAddr,
) -> ApiResult<Ctx> {
    let t = tenant(&app, slug, path).await?;
    Ok(Ctx { m: meta(headers, peer), token: bearer(headers).map(String::from), app, t })
}

/// `GET /t/{slug}/mfa/factors`: the user's factors, recovery codes left, the policy.
pub(crate) async fn list_factors(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/factors"), &headers, &peer).await?;
    let h = c.t.db.lock().await;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    let fs = factors::of_user(&h, who.user()).await?;
    let policy = auth_policy::load(&h).await?;
    Ok(Json(json!({
        "factors": fs.iter().map(factor_json).collect::<Vec<_>>(),
        "recovery_codes_left": factors::recovery_left(&h, who.user()).await?,
        "mfa_required": policy.mfa_required,
        "methods": policy.mfa_methods.iter().map(|m| flow::method_name(*m)).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameBody {
    #[serde(default)]
    name: Option<String>,
}

fn factor_name(n: Option<&str>, default: &str) -> ApiResult<String> {
    let n = n.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(default);
    if n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(bad("invalid_name", "a factor's name has at most 64 printable characters"));
    }
    Ok(n.to_string())
}

/// Start a TOTP enrolment for `user`: the pending factor, its secret, URI and QR code.
pub(crate) async fn start_totp(
    app: &App,
    t: &Tenant,
    h: &libsql::Connection,
    user: &str,
    name: &str,
) -> ApiResult<Value> {
    if !auth_policy::load(h).await?.allows(MfaMethod::Totp) {
        return Err(not_allowed("totp"));
    }
    let now = crate::now();
    let email = users::email_of(h, user).await?.unwrap_or_default();
    let id = new_id("mf_");
    let secret = totp::new_secret();
    let sealed = app.sso_box.seal(&t.id, &flow::seal_label(&id), &hex::encode(&secret));
    // Pending enrolments never confirmed are replaced by the new one.
    for f in factors::of_user(h, user).await? {
        if f.kind == "totp" && f.confirmed_at.is_none() {
            factors::remove(h, user, &f.id).await?;
        }
    }
    let f = Factor {
        id: id.clone(),
        user_id: user.into(),
        kind: "totp".into(),
        name: name.into(),
        secret: Some(sealed),
        last_step: 0,
        credential: None,
        credential_id: None,
        amr: Some("otp".into()),
        confirmed_at: None,
        created_at: now,
        last_used_at: None,
    };
    factors::insert(h, &f).await?;
    let gen = totp::generator(&secret, &format!("Gatehouse {}", t.slug), &email)?;
    let uri = totp::uri(&gen)?;
    Ok(json!({
        "id": id,
        "type": "totp",
        "secret": totp::secret_base32(&secret),
        "otpauth_uri": uri,
        "qr_svg": totp::qr_svg(&uri)?,
        "digits": totp::DIGITS,
        "period": totp::STEP,
    }))
}

/// `POST /t/{slug}/mfa/totp`: start enrolling an authenticator app.
pub(crate) async fn enroll_totp(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Secret<Json<Value>>> {
    let req: NameBody = if body.is_empty() {
        NameBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid JSON body: {e}")))?
    };
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/totp"), &headers, &peer).await?;
    let h = begin(&c.t).await?;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    let out = begin_totp(&c.app, &c.t, &c.m, h, &who, req.name.as_deref()).await?;
    Ok(Secret(StatusCode::CREATED, Json(out)))
}

/// Start a TOTP enrolment of `who` named `name` (the API and the factor page): the
/// change rule, the name rule, the pending factor, audited.
pub(crate) async fn begin_totp(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    h: Held<'_>,
    who: &Who,
    name: Option<&str>,
) -> ApiResult<Value> {
    may_change(&h, who).await?;
    let name = factor_name(name, "Authenticator app")?;
    let out = start_totp(app, t, &h, who.user(), &name).await?;
    let actor = format!("user:{}", who.user());
    let target = format!("factor:{}", out["id"].as_str().unwrap_or_default());
    commit(app, t, h, m, vec![ev(actor, "mfa.totp.enroll_start", target, None, None)]).await?;
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmBody {
    code: String,
}

/// What a confirmed enrolment answers: the factor, the recovery codes if this was the
/// first factor (shown once), and tokens if it finished a held sign-in.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn confirmed(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    h: Held<'_>,
    who: &Who,
    f: &Factor,
    second: Option<&str>,
    mut events: Vec<crate::audit::Event>,
) -> ApiResult<Value> {
    let user = who.user();
    let now = crate::now();
    let mut out = json!({ "factor": factor_json(f) });
    if factors::recovery_left(&h, user).await? == 0 {
        let codes = recovery::new_set();
        let hashes: Vec<String> = codes.iter().filter_map(|c| recovery::code_hash(c)).collect();
        factors::replace_recovery(&h, user, &hashes, now).await?;
        events.push(ev(format!("user:{user}"), "mfa.recovery_codes.generate", format!("user:{user}"), None, None));
        out["recovery_codes"] = codes.into();
    }
    match who {
        Who::Enrolling { challenge, .. } => {
            let tokens = flow::complete(app, t, m, h, challenge, second, events, None).await?;
            out["tokens"] = tokens;
        }
        Who::Session { .. } => commit(app, t, h, m, events).await?,
    }
    Ok(out)
}

/// `POST /t/{slug}/mfa/totp/{id}/confirm`: activate a pending TOTP factor with a first
/// code (that code is spent).
pub(crate) async fn confirm_totp(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ConfirmBody>,
) -> ApiResult<Secret<Json<Value>>> {
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/totp/{id}/confirm"), &headers, &peer).await?;
    let h = begin(&c.t).await?;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    Ok(Secret(StatusCode::OK, Json(confirm_totp_inner(&c.app, &c.t, &c.m, h, who, &id, &req.code).await?)))
}

/// Confirm TOTP factor `id` of `who` with `code` (the API and the hosted enrolment page).
pub(crate) async fn confirm_totp_inner(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    h: Held<'_>,
    who: Who,
    id: &str,
    code: &str,
) -> ApiResult<Value> {
    may_change(&h, &who).await?;
    let user = who.user().to_string();
    let now = crate::now();
    let f = factors::get(&h, &user, id).await?.filter(|f| f.kind == "totp");
    let Some(f) = f.filter(|f| f.confirmed_at.is_none()) else {
        return Err(ApiError::not_found("factor_not_found", "no pending TOTP enrolment with this id"));
    };
    let email = users::email_of(&h, &user).await?.unwrap_or_default();
    let gen = flow::generator(app, t, &f, &email).ok_or_else(|| anyhow::anyhow!("TOTP secret does not open"))?;
    let Some(step) = totp::verify(&gen, code, now as u64, 0) else {
        let e = flow::count_failure(app, &h, &user, now).await?;
        commit(app, t, h, m, vec![e]).await?;
        return Err(flow::invalid_code());
    };
    if !factors::confirm(&h, &f.id, now, step as i64).await? {
        return Err(ApiError::conflict("factor_confirmed", "this factor is already confirmed"));
    }
    let f = factors::get(&h, &user, id).await?.ok_or_else(|| anyhow::anyhow!("factor vanished"))?;
    let events = vec![ev(format!("user:{user}"), "mfa.totp.enroll", format!("factor:{}", f.id), None, None)];
    confirmed(app, t, m, h, &who, &f, Some("otp"), events).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBody {
    name: String,
}

/// `PATCH /t/{slug}/mfa/factors/{id}`: rename a factor.
pub(crate) async fn rename_factor(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RenameBody>,
) -> ApiResult<Json<Value>> {
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/factors/{id}"), &headers, &peer).await?;
    let h = begin(&c.t).await?;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    Ok(Json(rename(&c.app, &c.t, &c.m, h, &who, &id, &req.name).await?))
}

/// Rename factor `id` of `who` (the API and the factor page), audited.
pub(crate) async fn rename(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    h: Held<'_>,
    who: &Who,
    id: &str,
    name: &str,
) -> ApiResult<Value> {
    may_change(&h, who).await?;
    let name = factor_name(Some(name), "")?;
    if name.is_empty() {
        return Err(bad("invalid_name", "give the factor a name"));
    }
    let user = who.user().to_string();
    let before = factors::get(&h, &user, id).await?;
    let Some(before) = before else { return Err(ApiError::not_found("factor_not_found", "no such factor")) };
    factors::rename(&h, &user, id, &name).await?;
    let after = factors::get(&h, &user, id).await?.ok_or_else(|| anyhow::anyhow!("factor vanished"))?;
    let e = ev(
        format!("user:{user}"),
        "mfa.factor.rename",
        format!("factor:{id}"),
        Some(json!({ "name": before.name })),
        Some(json!({ "name": name })),
    );
    commit(app, t, h, m, vec![e]).await?;
    Ok(factor_json(&after))
}

/// `DELETE /t/{slug}/mfa/factors/{id}`: remove a factor (with a session that passed MFA).
/// The last factor cannot go while the organisation requires MFA (`mfa_last_factor`).
pub(crate) async fn remove_factor(
    State(app): AppState,
    Path((slug, id)): Path<(String, String)>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/factors/{id}"), &headers, &peer).await?;
    let h = begin(&c.t).await?;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    remove(&c.app, &c.t, &c.m, h, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove factor `id` of `who` (the API and the factor page), audited; the last factor
/// takes the recovery codes with it.
pub(crate) async fn remove(app: &App, t: &Tenant, m: &RequestMeta, h: Held<'_>, who: &Who, id: &str) -> ApiResult<()> {
    may_change(&h, who).await?;
    let user = who.user().to_string();
    let Some(f) = factors::get(&h, &user, id).await? else {
        return Err(ApiError::not_found("factor_not_found", "no such factor"));
    };
    let active = active_factors(&h, &user).await?;
    let last = f.confirmed_at.is_some() && active.len() == 1;
    if last && auth_policy::load(&h).await?.mfa_required {
        return Err(ApiError::conflict("mfa_last_factor", "the organisation requires MFA: add another factor first"));
    }
    factors::remove(&h, &user, id).await?;
    let mut events =
        vec![ev(format!("user:{user}"), "mfa.factor.remove", format!("factor:{id}"), Some(factor_json(&f)), None)];
    if last {
        // No factor left: recovery codes of nothing would be a second password.
        factors::replace_recovery(&h, &user, &[], crate::now()).await?;
        events.push(ev(format!("user:{user}"), "mfa.recovery_codes.void", format!("user:{user}"), None, None));
    }
    commit(app, t, h, m, events).await
}

/// `POST /t/{slug}/mfa/recovery-codes`: a new set of ten codes (shown once; the old set
/// is void). Needs a factor and a session that passed MFA.
pub(crate) async fn regenerate_recovery(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Secret<Json<Value>>> {
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/recovery-codes"), &headers, &peer).await?;
    let h = begin(&c.t).await?;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    let codes = new_recovery_codes(&c.app, &c.t, &c.m, h, &who).await?;
    Ok(Secret(StatusCode::OK, Json(json!({ "recovery_codes": codes }))))
}

/// A new set of recovery codes for `who` (the API and the factor page), the old set
/// void, audited; the codes in clear are only in this answer.
pub(crate) async fn new_recovery_codes(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    h: Held<'_>,
    who: &Who,
) -> ApiResult<Vec<String>> {
    let user = who.user().to_string();
    if active_factors(&h, &user).await?.is_empty() || matches!(who, Who::Enrolling { .. }) {
        return Err(ApiError::conflict("mfa_not_enrolled", "enrol a factor first"));
    }
    may_change(&h, who).await?;
    let codes = recovery::new_set();
    let hashes: Vec<String> = codes.iter().filter_map(|c| recovery::code_hash(c)).collect();
    factors::replace_recovery(&h, &user, &hashes, crate::now()).await?;
    let e = ev(format!("user:{user}"), "mfa.recovery_codes.generate", format!("user:{user}"), None, None);
    commit(app, t, h, m, vec![e]).await?;
    Ok(codes)
}

/// `POST /t/{slug}/mfa/passkeys/register`: start registering a passkey; the options for
/// `navigator.credentials.create` and the `challenge_id` to finish with.
pub(crate) async fn passkey_register_start(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/passkeys/register"), &headers, &peer).await?;
    let h = begin(&c.t).await?;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    Ok(Json(begin_passkey(&c.app, &c.t, h, &who).await?))
}

/// Start a passkey registration of `who` (the API and the factor page): the change
/// rule, then the options and the `challenge_id`.
pub(crate) async fn begin_passkey(app: &App, t: &Tenant, h: Held<'_>, who: &Who) -> ApiResult<Value> {
    may_change(&h, who).await?;
    let out = start_passkey(app, t, &h, who).await?;
    crate::store::commit(&h).await?;
    Ok(out)
}

/// Start a passkey registration for `who` (in the caller's transaction).
pub(crate) async fn start_passkey(app: &App, t: &Tenant, h: &libsql::Connection, who: &Who) -> ApiResult<Value> {
    if !auth_policy::load(h).await?.allows(MfaMethod::Webauthn) {
        return Err(not_allowed("webauthn"));
    }
    let user = who.user();
    let now = crate::now();
    let email = users::email_of(h, user).await?.unwrap_or_default();
    let existing: Vec<webauthn_rs::prelude::Passkey> = factors::of_user(h, user)
        .await?
        .iter()
        .filter_map(|f| serde_json::from_str(f.credential.as_deref()?).ok())
        .collect();
    if existing.len() >= 20 {
        return Err(ApiError::conflict("passkey_limit", "at most 20 passkeys per user"));
    }
    let rp = passkeys::relying_party(&app.cfg.public_url)?;
    let (options, state) =
        passkeys::start_registration(&rp, passkeys::user_handle(&t.id, user), &email, &email, &existing)?;
    let ctx = flow::Context::default();
    let id = flow::new_challenge(h, "passkey_register", Some(user), &ctx, Some(state), now).await?;
    let mut out = options;
    out["challenge_id"] = id.into();
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeyFinish {
    challenge_id: String,
    credential: Value,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /t/{slug}/mfa/passkeys`: finish a registration (the passkey is active at once:
/// the ceremony proved it). Under an enrolment token, the held sign-in finishes too.
pub(crate) async fn passkey_register_finish(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PasskeyFinish>,
) -> ApiResult<Secret<Json<Value>>> {
    let c = ctx(app, &slug, &format!("/t/{slug}/mfa/passkeys"), &headers, &peer).await?;
    let h = begin(&c.t).await?;
    let who = who(&c.app, &c.t, &h, c.token.as_deref()).await?;
    let cred = flow::credential_value(&req.credential)?;
    let out = finish_passkey(&c.app, &c.t, &c.m, h, who, &req.challenge_id, &cred, req.name.as_deref()).await?;
    Ok(Secret(StatusCode::CREATED, Json(out)))
}

/// Finish a passkey registration (the API and the hosted enrolment page).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_passkey(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    h: Held<'_>,
    who: Who,
    challenge_id: &str,
    cred: &Value,
    name: Option<&str>,
) -> ApiResult<Value> {
    may_change(&h, &who).await?;
    let user = who.user().to_string();
    let now = crate::now();
    let name = factor_name(name, "Passkey")?;
    let Some(ch) = flow::live(&h, challenge_id, &["passkey_register"], now).await? else {
        return Err(flow::token_invalid());
    };
    if ch.user_id.as_deref() != Some(user.as_str()) {
        return Err(flow::token_invalid());
    }
    let rp = passkeys::relying_party(&app.cfg.public_url)?;
    let key = match passkeys::finish_registration(&rp, ch.ceremony.as_deref().unwrap_or_default(), cred) {
        Ok(k) => k,
        Err(e) => {
            tracing::info!(error = %e, "passkey registration refused");
            return Err(bad("passkey_invalid", "the passkey registration was not accepted"));
        }
    };
    factors::spend_challenge(&h, &ch.hash, now).await?;
    let cred_id = passkeys::cred_id_text(key.cred_id());
    if factors::by_credential_id(&h, &cred_id).await?.is_some() {
        return Err(ApiError::conflict("passkey_already_registered", "this passkey is already registered"));
    }
    let f = Factor {
        id: new_id("mf_"),
        user_id: user.clone(),
        kind: "webauthn".into(),
        name,
        secret: None,
        last_step: 0,
        credential: Some(serde_json::to_string(&key)?),
        credential_id: Some(cred_id),
        amr: Some(passkeys::amr_of(&key).into()),
        confirmed_at: Some(now),
        created_at: now,
        last_used_at: None,
    };
    factors::insert(&h, &f).await?;
    let events = vec![ev(format!("user:{user}"), "mfa.passkey.register", format!("factor:{}", f.id), None, None)];
    let amr = f.amr.clone();
    confirmed(app, t, m, h, &who, &f, amr.as_deref(), events).await
}

/// `POST /v1/orgs/{slug}/users/{id}/mfa/reset` (`members:write`): remove every factor
/// and recovery code of a user and end their sessions; they enrol again at next sign-in
/// if the organisation requires MFA.
pub(crate) async fn admin_reset(
    State(app): AppState,
    Path((_slug, id)): Path<(String, String)>,
    authed: Authed,
) -> ApiResult<Json<Value>> {
    let h = begin(&authed.t).await?;
    if !users::exists_id(&h, &id).await? {
        return Err(ApiError::not_found("user_not_found", "no such user"));
    }
    let before: Vec<Value> = factors::of_user(&h, &id).await?.iter().map(factor_json).collect();
    let removed = factors::reset_user(&h, &id).await?;
    let now = crate::now();
    let ended = sessions::open_of_user(&h, &id).await?;
    for sid in &ended {
        end_session(&h, sid, now).await?;
    }
    let after = json!({ "factors": 0, "sessions_ended": ended.len() });
    authed
        .commit(&app, h, "user.mfa_reset", format!("user:{id}"), Some(json!({ "factors": before })), Some(after))
        .await?;
    app.changed(&authed.t.id).await?;
    Ok(Json(json!({ "user": id, "factors_removed": removed, "sessions_ended": ended.len() })))
}
