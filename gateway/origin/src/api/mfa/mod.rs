//! Multi-factor authentication at the origin: the second step of a sign-in and
//! passwordless passkeys ([`flow`], this module's grants), the user's own factors
//! ([`factors`]), step-up ([`stepup`]), the admin reset, and the hosted pages ([`pages`]).
//!
//! - `grant_type=mfa` (`mfa_token` and one of `otp`, `recovery_code`, `credential`)
//!   finishes a sign-in that answered 403 `mfa_required`, or a step-up.
//! - `grant_type=passkey` (`challenge_id` from `POST /t/{slug}/passkeys/challenge` and
//!   `credential`) signs in with a discoverable passkey, no password.

use serde_json::{json, Value};

use crate::audit::RequestMeta;
use crate::auth_policy::MfaMethod;
use crate::error::{bad, ApiError, ApiResult};
use crate::mfa::passkeys;
use crate::store::{factors, users, Held};

use crate::api::admin::auth_policy;
use crate::api::app::App;
use crate::api::extract::Tenant;
use crate::api::session::{issue, open_session, Session, TokenRequest};
use crate::api::transaction::{begin, commit, ev};

pub mod factors_api;
pub mod flow;
pub mod manage;
pub mod pages;

pub mod stepup;

/// The failure count of the account with `email` before a first factor is checked.
pub(crate) async fn prior_failures(h: &libsql::Connection, email: &str) -> ApiResult<i64> {
    Ok(factors::failed_count_by_email(h, email).await?.unwrap_or(0))
}

/// After a first factor: the transaction back when no second step is needed; otherwise
/// the challenge is committed (audited) and the 403 carrying its `mfa_token` returned.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn second_step<'t>(
    app: &App,
    t: &'t Tenant,
    h: Held<'t>,
    m: &RequestMeta,
    user: &str,
    amr: &[String],
    idp: Option<&str>,
    prior_failures: i64,
) -> ApiResult<Held<'t>> {
    let now = crate::now();
    match flow::gate(&h, user, amr, idp, prior_failures, now).await? {
        None => Ok(h),
        Some(step) => {
            let actor = format!("user:{user}");
            let after = json!({ "step": step.code() });
            commit(app, t, h, m, vec![ev(actor.clone(), "signin.mfa_challenge", actor, None, Some(after))]).await?;
            Err(step)
        }
    }
}

/// After an SSO sign-in (`amr` from [`crate::api::sso::signin::session_amr`]): when the
/// provider did not report MFA and the member has a factor, or the organisation requires
/// one, the second step (or enrolment) as for a password. `events` (the sign-in's so far:
/// a provisioned or linked user) are committed with the challenge.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sso_second_step<'t>(
    app: &App,
    t: &'t Tenant,
    h: Held<'t>,
    m: &RequestMeta,
    user: &str,
    amr: &[String],
    connection: &str,
    events: &mut Vec<crate::audit::Event>,
) -> ApiResult<Held<'t>> {
    let now = crate::now();
    let (failures, _) = factors::lock_state(&h, user).await?.unwrap_or((0, 0));
    match flow::gate(&h, user, amr, Some(connection), failures, now).await? {
        None => Ok(h),
        Some(step) => {
            let actor = format!("user:{user}");
            let after = json!({ "step": step.code(), "sso": connection });
            events.push(ev(actor.clone(), "signin.mfa_challenge", actor, None, Some(after)));
            commit(app, t, h, m, std::mem::take(events)).await?;
            Err(step)
        }
    }
}

/// The `mfa` and `passkey` grants of the token endpoint.
pub(crate) async fn grant(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    req: &TokenRequest,
    scopes: Option<Vec<String>>,
) -> ApiResult<Value> {
    if req.grant_type == "passkey" {
        let (Some(id), Some(cred)) = (req.challenge_id.as_deref(), req.credential.as_ref()) else {
            return Err(bad("invalid_request", "grant_type=passkey needs challenge_id and credential"));
        };
        let answer = passwordless(app, t, m, id, &flow::credential_value(cred)?, scopes).await;
        app.metrics.signin("passkey", &answer);
        return answer;
    }
    let Some(token) = req.mfa_token.as_deref() else {
        return Err(bad("invalid_request", "grant_type=mfa needs mfa_token"));
    };
    let proof = flow::Proof::from_fields(req.otp.as_deref(), req.recovery_code.as_deref(), req.credential.as_ref())?;
    let answer = flow::mfa_grant(app, t, m, token, proof, scopes).await;
    app.metrics.signin("mfa", &answer);
    answer
}

/// The generic refusal of a passwordless sign-in.
fn passkey_invalid() -> ApiError {
    ApiError::unauthorized("passkey_invalid", "the passkey was not accepted")
}

/// Start a passwordless sign-in: `{challenge_id, publicKey}` for
/// `navigator.credentials.get` (any discoverable passkey of this relying party).
pub(crate) async fn passkey_challenge(app: &App, t: &Tenant) -> ApiResult<Value> {
    let now = crate::now();
    let h = begin(t).await?;
    if !auth_policy::load(&h).await?.allows(MfaMethod::Webauthn) {
        return Err(flow::not_allowed("webauthn"));
    }
    let rp = passkeys::relying_party(&app.cfg.public_url)?;
    let (options, state) = passkeys::start_discoverable(&rp)?;
    let ctx = flow::Context::default();
    let id = flow::new_challenge(&h, "passkey_signin", None, &ctx, Some(state), now).await?;
    crate::store::commit(&h).await?;
    let mut out = options;
    out["challenge_id"] = id.into();
    out["expires_in"] = flow::TOKEN_TTL.into();
    Ok(out)
}

/// Finish a passwordless sign-in: the credential names its user (the user handle) and
/// the stored passkey; user verification was required, so it counts as `mfa`.
async fn passwordless(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    challenge_id: &str,
    cred: &Value,
    scopes: Option<Vec<String>>,
) -> ApiResult<Value> {
    let now = crate::now();
    let h = begin(t).await?;
    let Some(c) = flow::live(&h, challenge_id, &["passkey_signin"], now).await? else {
        return Err(flow::token_invalid());
    };
    let rp = passkeys::relying_party(&app.cfg.public_url)?;
    let Ok((handle, cred_id)) = passkeys::identify(&rp, cred) else { return Err(passkey_invalid()) };
    let Some(f) = factors::by_credential_id(&h, &cred_id).await? else { return Err(passkey_invalid()) };
    if passkeys::user_handle(&t.id, &f.user_id) != handle {
        return Err(passkey_invalid());
    }
    let user = f.user_id.clone();
    if users::disabled(&h, &user).await? != Some(false) {
        return Err(passkey_invalid());
    }
    if !auth_policy::load(&h).await?.allows(MfaMethod::Webauthn) {
        return Err(flow::refuse(app, t, h, m, &user, flow::Failure::NotAllowed("webauthn"), now).await?);
    }
    let (_, locked_until) = factors::lock_state(&h, &user).await?.unwrap_or((0, 0));
    if locked_until > now {
        return Err(flow::refuse(app, t, h, m, &user, flow::Failure::Locked, now).await?);
    }
    let key: webauthn_rs::prelude::Passkey = serde_json::from_str(f.credential.as_deref().unwrap_or_default())?;
    let state = c.ceremony.as_deref().unwrap_or_default();
    let updated = match passkeys::finish_discoverable(&rp, state, cred, &key) {
        Ok(k) => k,
        Err(e) => {
            tracing::info!(error = %e, "passwordless assertion refused");
            flow::refuse(app, t, h, m, &user, flow::Failure::Invalid, now).await?;
            return Err(passkey_invalid());
        }
    };
    if !factors::spend_challenge(&h, &c.hash, now).await? {
        return Err(flow::token_invalid());
    }
    factors::use_credential(&h, &f.id, &serde_json::to_string(&updated)?, now).await?;
    users::clear_failures(&h, &user).await?;
    let amr = vec![f.amr.clone().unwrap_or_else(|| "hwk".into()), "mfa".to_string()];
    let actor = format!("user:{user}");
    let mut events = vec![
        ev(actor.clone(), "mfa.passkey.verified", format!("factor:{}", f.id), None, None),
        ev(actor.clone(), "signin.success", actor, None, Some(json!({ "amr": amr, "passwordless": true }))),
    ];
    let (sid, family) = open_session(app, &h, &user, &amr, None, now, &mut events).await?;
    issue(app, t, m, Session { held: h, user, sid, family, amr, events }, scopes).await
}
