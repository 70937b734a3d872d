//! Step-up of a live session (RFC 9470): the user proves a second factor again and gets
//! fresh tokens of the same session with a new `auth_time` and `mfa` in `amr`. And the
//! WebAuthn options of an `mfa_token` (second factor or step-up by passkey).

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{bad, ApiError, ApiResult};
use crate::mfa::passkeys;
use crate::store::{factors, sessions};

use crate::api::admin::auth_policy;
use crate::api::app::App;
use crate::api::extract::{
    bearer, meta, refuse_impersonation, residency, tenant, verify_access, AppState, JsonBody, Peer, RawBody, Tenant,
};
use crate::api::mfa::flow::{self, active_factors, Context, Proof};
use crate::api::transaction::begin;

/// Open a step-up challenge for the session of access token `token` (in its own
/// transaction): `(mfa_token, methods)`.
pub(crate) async fn open(app: &App, t: &Tenant, token: &str) -> ApiResult<(String, Vec<String>, String)> {
    let c = verify_access(app, token, Some(&t.slug))?;
    if c.custom.act.is_some() {
        return Err(refuse_impersonation());
    }
    let user = c.subject.clone().unwrap_or_default();
    let sid = c.custom.sid.clone();
    let now = crate::now();
    let h = begin(t).await?;
    if !sessions::is_live(&h, &sid, &user, now).await? {
        return Err(ApiError::unauthorized("session_revoked", "the session has ended"));
    }
    let policy = auth_policy::load(&h).await?;
    let methods = flow::methods(&h, &user, &policy).await?;
    if methods.is_empty() {
        return Err(ApiError::conflict("mfa_not_enrolled", "enrol a second factor before stepping up"));
    }
    let ctx = Context { sid: Some(sid), ..Default::default() };
    let token = flow::new_challenge(&h, "stepup", Some(&user), &ctx, None, now).await?;
    crate::store::commit(&h).await?;
    Ok((token, methods, user))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpBody {
    #[serde(default)]
    otp: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

/// `POST /t/{slug}/mfa/step-up` (bearer access token): with `otp` or `recovery_code`,
/// fresh tokens of the same session at once; without, an `mfa_token` (and the passkey
/// options when the user has passkeys) to finish with `grant_type=mfa`.
pub(crate) async fn step_up(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/mfa/step-up")).await?;
        let req: StepUpBody = if body.is_empty() {
            StepUpBody::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid JSON body: {e}")))?
        };
        let token = bearer(&headers)
            .ok_or_else(|| ApiError::unauthorized("credential_missing", "a bearer access token is required"))?;
        let (mfa_token, methods, _) = open(&app, &t, token).await?;
        let m = meta(&headers, &peer);
        if req.otp.is_none() && req.recovery_code.is_none() {
            let mut out = json!({ "mfa_token": mfa_token, "methods": methods, "expires_in": flow::TOKEN_TTL });
            if methods.iter().any(|m| m == "webauthn") {
                out["webauthn"] = webauthn_options(&app, &t, &mfa_token).await?;
            }
            return ApiResult::Ok(out);
        }
        let proof = Proof::from_fields(req.otp.as_deref(), req.recovery_code.as_deref(), None)?;
        flow::mfa_grant(&app, &t, &m, &mfa_token, proof, None).await
    };
    match run.await {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut().insert("cache-control", axum::http::HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => residency(e, &headers),
    }
}

/// Start the passkey assertion of challenge `mfa_token` (sign-in or step-up): the
/// options for `navigator.credentials.get`, the state kept with the challenge.
pub(crate) async fn webauthn_options(app: &App, t: &Tenant, mfa_token: &str) -> ApiResult<Value> {
    let now = crate::now();
    let h = begin(t).await?;
    let Some(c) = flow::live(&h, mfa_token, &["signin", "stepup"], now).await? else {
        return Err(flow::token_invalid());
    };
    let user = c.user_id.clone().ok_or_else(flow::token_invalid)?;
    if !auth_policy::load(&h).await?.allows(crate::auth_policy::MfaMethod::Webauthn) {
        return Err(flow::not_allowed("webauthn"));
    }
    let keys: Vec<webauthn_rs::prelude::Passkey> = active_factors(&h, &user)
        .await?
        .iter()
        .filter(|f| f.kind == "webauthn")
        .filter_map(|f| serde_json::from_str(f.credential.as_deref()?).ok())
        .collect();
    if keys.is_empty() {
        return Err(ApiError::conflict("passkey_none", "no passkey is registered"));
    }
    let rp = passkeys::relying_party(&app.cfg.public_url)?;
    let (options, state) = passkeys::start_authentication(&rp, &keys)?;
    factors::set_ceremony(&h, &c.hash, &state).await?;
    crate::store::commit(&h).await?;
    Ok(options)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeBody {
    mfa_token: String,
}

/// `POST /t/{slug}/mfa/challenge`: the passkey options of an `mfa_token`.
pub(crate) async fn challenge(
    State(app): AppState,
    Path(slug): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ChallengeBody>,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/mfa/challenge")).await?;
        webauthn_options(&app, &t, &req.mfa_token).await
    };
    match run.await {
        Ok(v) => Json(v).into_response(),
        Err(e) => residency(e, &headers),
    }
}

/// `POST /t/{slug}/passkeys/challenge`: start a passwordless sign-in.
pub(crate) async fn passkey_challenge(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/passkeys/challenge")).await?;
        crate::api::mfa::passkey_challenge(&app, &t).await
    };
    match run.await {
        Ok(v) => Json(v).into_response(),
        Err(e) => residency(e, &headers),
    }
}
