//! The second step of a sign-in: after a first factor, a user with a factor gets a
//! short-lived single-use `mfa_token` (403 `mfa_required`); a member without one under an
//! `mfa_required` policy gets an enrolment token (403 `mfa_enrollment_required`). The
//! token is spent by `grant_type=mfa` with a TOTP code, a recovery code or a passkey
//! assertion. Step-up of a live session uses the same tokens (purpose `stepup`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::{Event, RequestMeta};
use crate::auth_policy::{AuthPolicy, MfaMethod};
use crate::error::{ApiError, ApiResult};
use crate::mfa::{passkeys, recovery, totp};
use crate::store::factors::{self, Challenge, Factor};
use crate::store::{sessions, users, Held};
use crate::tokens;

use crate::api::admin::auth_policy;
use crate::api::app::App;
use crate::api::extract::Tenant;
use crate::api::session::{issue, open_session, Session};
use crate::api::transaction::{begin, commit, ev};

/// Lifetime of an `mfa_token` (sign-in, enrolment, step-up) and of a ceremony.
pub(crate) const TOKEN_TTL: i64 = 300;
/// Longest token or code read.
const MAX_PROOF: usize = 128;

/// What a challenge carries forward.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Context {
    /// The methods of the first factor (`pwd`, `sso`, …).
    #[serde(default)]
    pub(crate) amr: Vec<String>,
    /// The SSO connection of the first factor.
    #[serde(default)]
    pub(crate) idp: Option<String>,
    /// Step-up: the session to renew.
    #[serde(default)]
    pub(crate) sid: Option<String>,
}

/// The error every wrong, reused or expired code answers (no oracle).
pub(crate) fn invalid_code() -> ApiError {
    ApiError::unauthorized("mfa_invalid_code", "the code or passkey was not accepted")
}

/// The error of an unknown, spent or expired `mfa_token`.
pub(crate) fn token_invalid() -> ApiError {
    ApiError::unauthorized("mfa_token_invalid", "the mfa_token is unknown, used or expired; sign in again")
}

pub(crate) fn not_allowed(m: &str) -> ApiError {
    ApiError::forbidden("mfa_method_not_allowed", format!("this organisation does not allow {m}"))
}

/// The confirmed factors of `user`.
pub(crate) async fn active_factors(h: &libsql::Connection, user: &str) -> ApiResult<Vec<Factor>> {
    Ok(factors::of_user(h, user).await?.into_iter().filter(|f| f.confirmed_at.is_some()).collect())
}

fn method_of(f: &Factor) -> MfaMethod {
    if f.kind == "totp" {
        MfaMethod::Totp
    } else {
        MfaMethod::Webauthn
    }
}

/// What `user` can answer a second step with under `policy`.
pub(crate) async fn methods(h: &libsql::Connection, user: &str, policy: &AuthPolicy) -> ApiResult<Vec<String>> {
    let fs = active_factors(h, user).await?;
    let mut out = Vec::new();
    for (m, name) in [(MfaMethod::Totp, "totp"), (MfaMethod::Webauthn, "webauthn")] {
        if policy.allows(m) && fs.iter().any(|f| method_of(f) == m) {
            out.push(name.to_string());
        }
    }
    if !out.is_empty() && factors::recovery_left(h, user).await? > 0 {
        out.push("recovery_code".into());
    }
    Ok(out)
}

/// A new challenge token of `purpose` for `user`, stored hashed.
pub(crate) async fn new_challenge(
    h: &libsql::Connection,
    purpose: &str,
    user: Option<&str>,
    ctx: &Context,
    ceremony: Option<String>,
    now: i64,
) -> ApiResult<String> {
    let token = tokens::opaque("ghm_");
    let c = Challenge {
        hash: tokens::secret_hash(&token),
        purpose: purpose.into(),
        user_id: user.map(String::from),
        context: serde_json::to_string(ctx)?,
        ceremony,
        expires_at: now + TOKEN_TTL,
    };
    factors::put_challenge(h, &c, now).await?;
    Ok(token)
}

/// The live challenge of `token` for one of `purposes`.
pub(crate) async fn live(
    h: &libsql::Connection,
    token: &str,
    purposes: &[&str],
    now: i64,
) -> ApiResult<Option<Challenge>> {
    if token.len() > MAX_PROOF || !token.starts_with("ghm_") {
        return Ok(None);
    }
    let hash = tokens::secret_hash(token);
    for p in purposes {
        if let Some(c) = factors::live_challenge(h, &hash, p, now).await? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// After a first factor (`amr`): whether a second step stands between `user` and a
/// session. `prior_failures` is the failure count from before the first factor (a
/// password success clears it; with a second step still to pass it must not, or the
/// password would reset the lockout of wrong codes).
pub(crate) async fn gate(
    h: &libsql::Connection,
    user: &str,
    amr: &[String],
    idp: Option<&str>,
    prior_failures: i64,
    now: i64,
) -> ApiResult<Option<ApiError>> {
    if amr.iter().any(|a| a == "mfa") {
        return Ok(None);
    }
    let policy = auth_policy::load(h).await?;
    if !policy.mfa_required && policy.mfa_methods.is_empty() {
        // The organisation turned every second factor off.
        return Ok(None);
    }
    let usable = methods(h, user, &policy).await?;
    let has_factor = !active_factors(h, user).await?.is_empty();
    if usable.is_empty() && !policy.mfa_required && !has_factor {
        return Ok(None);
    }
    users::set_failed_count(h, user, prior_failures).await?;
    let ctx = Context { amr: amr.to_vec(), idp: idp.map(String::from), sid: None };
    if usable.is_empty() {
        let token = new_challenge(h, "enroll", Some(user), &ctx, None, now).await?;
        let methods = policy.mfa_methods.iter().map(|m| method_name(*m).to_string()).collect();
        return Ok(Some(ApiError::SecondStep {
            code: "mfa_enrollment_required",
            message: "this organisation requires a second factor: enrol one with the mfa_token",
            mfa_token: token,
            methods,
        }));
    }
    let token = new_challenge(h, "signin", Some(user), &ctx, None, now).await?;
    Ok(Some(ApiError::SecondStep {
        code: "mfa_required",
        message: "a second factor is required: continue with the mfa_token",
        mfa_token: token,
        methods: usable,
    }))
}

pub(crate) fn method_name(m: MfaMethod) -> &'static str {
    match m {
        MfaMethod::Totp => "totp",
        MfaMethod::Webauthn => "webauthn",
    }
}

/// A second factor as presented.
#[derive(Debug, Clone)]
pub(crate) enum Proof {
    /// A TOTP code.
    Otp(String),
    /// A recovery code.
    Recovery(String),
    /// A WebAuthn assertion (`PublicKeyCredential` JSON) for the challenge's ceremony.
    Passkey(Value),
}

impl Proof {
    /// From the request's fields: exactly one of them.
    pub(crate) fn from_fields(
        otp: Option<&str>,
        recovery: Option<&str>,
        credential: Option<&Value>,
    ) -> ApiResult<Proof> {
        match (otp, recovery, credential) {
            (Some(c), None, None) => Ok(Proof::Otp(c.to_string())),
            (None, Some(c), None) => Ok(Proof::Recovery(c.to_string())),
            (None, None, Some(v)) => Ok(Proof::Passkey(credential_value(v)?)),
            _ => Err(ApiError::bad_request("invalid_request", "give exactly one of otp, recovery_code or credential")),
        }
    }
}

/// A credential given as a JSON object, or as a JSON string (from a form).
pub(crate) fn credential_value(v: &Value) -> ApiResult<Value> {
    match v {
        Value::String(s) if s.len() <= 16 * 1024 => serde_json::from_str(s)
            .map_err(|_| ApiError::bad_request("invalid_request", "credential is not a WebAuthn credential")),
        Value::Object(_) => Ok(v.clone()),
        _ => Err(ApiError::bad_request("invalid_request", "credential is not a WebAuthn credential")),
    }
}

/// Why a proof failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Wrong, reused or unknown: counts toward the lockout.
    Invalid,
    /// The organisation does not allow the method.
    NotAllowed(&'static str),
    /// The account is locked (nothing was checked).
    Locked,
}

/// Check `proof` for `user` (in the caller's transaction). Success: the RFC 8176 method
/// it adds (`otp`, `hwk`, `swk`; `None` for a recovery code) and an audit event.
pub(crate) async fn check(
    app: &App,
    t: &Tenant,
    h: &libsql::Connection,
    user: &str,
    proof: &Proof,
    ceremony: Option<&str>,
    now: i64,
) -> ApiResult<Result<(Option<String>, Event), Failure>> {
    let actor = format!("user:{user}");
    let Some((_, locked_until)) = factors::lock_state(h, user).await? else { return Ok(Err(Failure::Invalid)) };
    if locked_until > now {
        return Ok(Err(Failure::Locked));
    }
    let policy = auth_policy::load(h).await?;
    let fs = active_factors(h, user).await?;
    match proof {
        Proof::Otp(code) => {
            if !policy.allows(MfaMethod::Totp) {
                return Ok(Err(Failure::NotAllowed("totp")));
            }
            if code.len() > MAX_PROOF {
                return Ok(Err(Failure::Invalid));
            }
            let email = users::email_of(h, user).await?.unwrap_or_default();
            for f in fs.iter().filter(|f| f.kind == "totp") {
                let Some(gen) = generator(app, t, f, &email) else { continue };
                if let Some(step) = totp::verify(&gen, code, now as u64, f.last_step as u64) {
                    if factors::use_step(h, &f.id, step as i64, now).await? {
                        let e = ev(actor.clone(), "mfa.totp.verified", format!("factor:{}", f.id), None, None);
                        return Ok(Ok((Some("otp".into()), e)));
                    }
                }
            }
            Ok(Err(Failure::Invalid))
        }
        Proof::Recovery(code) => {
            let Some(hash) = recovery::code_hash(code) else { return Ok(Err(Failure::Invalid)) };
            if !factors::use_recovery(h, user, &hash, now).await? {
                return Ok(Err(Failure::Invalid));
            }
            let left = factors::recovery_left(h, user).await?;
            let e = ev(actor.clone(), "mfa.recovery_code.used", actor, None, Some(json!({ "remaining": left })));
            Ok(Ok((None, e)))
        }
        Proof::Passkey(cred) => {
            if !policy.allows(MfaMethod::Webauthn) {
                return Ok(Err(Failure::NotAllowed("webauthn")));
            }
            let Some(state) = ceremony else { return Ok(Err(Failure::Invalid)) };
            let keys: Vec<(Factor, webauthn_rs::prelude::Passkey)> = fs
                .into_iter()
                .filter(|f| f.kind == "webauthn")
                .filter_map(|f| {
                    let k = serde_json::from_str(f.credential.as_deref()?).ok()?;
                    Some((f, k))
                })
                .collect();
            let rp = passkeys::relying_party(&app.cfg.public_url)?;
            let list: Vec<_> = keys.iter().map(|(_, k)| k.clone()).collect();
            match passkeys::finish_authentication(&rp, state, cred, &list) {
                Ok(updated) => {
                    let (f, _) =
                        keys.iter().find(|(_, k)| k.cred_id() == updated.cred_id()).expect("key from the list");
                    factors::use_credential(h, &f.id, &serde_json::to_string(&updated)?, now).await?;
                    let e = ev(actor.clone(), "mfa.passkey.verified", format!("factor:{}", f.id), None, None);
                    Ok(Ok((Some(f.amr.clone().unwrap_or_else(|| "hwk".into())), e)))
                }
                Err(e) => {
                    tracing::info!(error = %e, "passkey assertion refused");
                    Ok(Err(Failure::Invalid))
                }
            }
        }
    }
}

/// The TOTP generator of factor `f` (its sealed secret opened), or `None` if it does not
/// open (then it never verifies).
pub(crate) fn generator(app: &App, t: &Tenant, f: &Factor, email: &str) -> Option<totp_rs::Totp> {
    let sealed = f.secret.as_deref()?;
    let hex_secret = app.sso_box.open(&t.id, &seal_label(&f.id), sealed)?;
    let secret = hex::decode(hex_secret).ok()?;
    totp::generator(&secret, &format!("Gatehouse {}", t.slug), email).ok()
}

/// What a TOTP secret is sealed to (the tenant and the factor: a sealed value cannot be
/// moved to another factor).
pub(crate) fn seal_label(factor: &str) -> String {
    format!("mfa-totp:{factor}")
}

/// Count a failed proof toward `user`'s lockout: the audit event (`mfa.failure`, or
/// `mfa.lockout` when this one locked the account).
pub(crate) async fn count_failure(app: &App, h: &libsql::Connection, user: &str, now: i64) -> ApiResult<Event> {
    let (failed, _) = factors::lock_state(h, user).await?.unwrap_or((0, 0));
    let failed = failed + 1;
    let actor = format!("user:{user}");
    if failed >= app.cfg.signin.max_failures as i64 {
        users::lock_out(h, user, now + app.cfg.signin.lockout_secs as i64).await?;
        return Ok(ev(actor.clone(), "mfa.lockout", actor, None, None));
    }
    users::set_failed_count(h, user, failed).await?;
    Ok(ev(actor.clone(), "mfa.failure", actor, None, None))
}

/// The failure answer of `f`, after counting and auditing it (committed: the count must
/// stick even though the request fails).
pub(crate) async fn refuse(
    app: &App,
    t: &Tenant,
    h: Held<'_>,
    m: &RequestMeta,
    user: &str,
    f: Failure,
    now: i64,
) -> ApiResult<ApiError> {
    let actor = format!("user:{user}");
    let (event, err) = match f {
        Failure::Invalid => (count_failure(app, &h, user, now).await?, invalid_code()),
        Failure::Locked => (ev(actor.clone(), "mfa.locked", actor, None, None), invalid_code()),
        Failure::NotAllowed(m) => {
            (ev(actor.clone(), "mfa.method_not_allowed", actor, None, Some(json!({ "method": m }))), not_allowed(m))
        }
    };
    commit(app, t, h, m, vec![event]).await?;
    Ok(err)
}

/// The methods of a finished sign-in: the first factor's, the second's, and `mfa`.
pub(crate) fn combined_amr(first: &[String], second: Option<&str>) -> Vec<String> {
    let mut amr: Vec<String> = first.to_vec();
    for a in second.into_iter().chain(["mfa"]) {
        if !amr.iter().any(|x| x == a) {
            amr.push(a.to_string());
        }
    }
    amr
}

/// Finish a sign-in or step-up whose second factor passed: spend the challenge, open a
/// session (or renew the stepped-up one), issue tokens and commit.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn complete(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    h: Held<'_>,
    c: &Challenge,
    second: Option<&str>,
    mut events: Vec<Event>,
    scopes: Option<Vec<String>>,
) -> ApiResult<Value> {
    let now = crate::now();
    if !factors::spend_challenge(&h, &c.hash, now).await? {
        return Err(token_invalid());
    }
    let user = c.user_id.clone().ok_or_else(token_invalid)?;
    let ctx: Context = serde_json::from_str(&c.context)?;
    users::clear_failures(&h, &user).await?;
    let (sid, family, amr) = match ctx.sid.as_deref() {
        Some(sid) => {
            // Step-up: the same session, authenticated again now (not in a suspended
            // organisation: sign-in is refused there, and so is renewing a session).
            crate::api::lifecycle::refuse_if_suspended(&h).await?;
            if !sessions::is_live(&h, sid, &user, now).await? {
                return Err(ApiError::unauthorized("session_revoked", "the session has ended"));
            }
            let before: Vec<String> = match sessions::authentication(&h, sid).await? {
                Some((a, _)) => serde_json::from_str(&a).unwrap_or_default(),
                None => Vec::new(),
            };
            let amr = combined_amr(&before, second);
            sessions::reauthenticate(&h, sid, &serde_json::to_string(&amr)?, now).await?;
            events.push(ev(
                format!("user:{user}"),
                "session.step_up",
                format!("session:{sid}"),
                None,
                Some(json!({ "amr": amr, "auth_time": now })),
            ));
            (sid.to_string(), crate::identity::new_id("f_"), amr)
        }
        None => {
            let amr = combined_amr(&ctx.amr, second);
            let actor = format!("user:{user}");
            events.push(ev(actor.clone(), "signin.success", actor, None, Some(json!({ "amr": amr }))));
            let (sid, family) = open_session(app, &h, &user, &amr, ctx.idp.as_deref(), now, &mut events).await?;
            (sid, family, amr)
        }
    };
    issue(app, t, m, Session { held: h, user, sid, family, amr, events }, scopes).await
}

/// `grant_type=mfa`: a sign-in's (or step-up's) second step. Any failure leaves the token
/// usable until it expires or the account locks.
pub(crate) async fn mfa_grant(
    app: &App,
    t: &Tenant,
    m: &RequestMeta,
    mfa_token: &str,
    proof: Proof,
    scopes: Option<Vec<String>>,
) -> ApiResult<Value> {
    let now = crate::now();
    let h = begin(t).await?;
    let Some(c) = live(&h, mfa_token, &["signin", "stepup"], now).await? else { return Err(token_invalid()) };
    let user = c.user_id.clone().ok_or_else(token_invalid)?;
    match check(app, t, &h, &user, &proof, c.ceremony.as_deref(), now).await? {
        Ok((second, event)) => complete(app, t, m, h, &c, second.as_deref(), vec![event], scopes).await,
        Err(f) => Err(refuse(app, t, h, m, &user, f, now).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_combines_without_duplicates() {
        assert_eq!(combined_amr(&["pwd".into()], Some("otp")), ["pwd", "otp", "mfa"]);
        assert_eq!(combined_amr(&["pwd".into()], None), ["pwd", "mfa"]);
        assert_eq!(combined_amr(&["pwd".into(), "otp".into(), "mfa".into()], Some("otp")), ["pwd", "otp", "mfa"]);
        assert_eq!(combined_amr(&["swk".into(), "mfa".into()], Some("hwk")), ["swk", "mfa", "hwk"]);
    }

    #[test]
    fn proofs_take_exactly_one_field_and_credentials_parse_from_strings() {
        assert!(matches!(Proof::from_fields(Some("123456"), None, None), Ok(Proof::Otp(_))));
        assert!(matches!(Proof::from_fields(None, Some("abcd"), None), Ok(Proof::Recovery(_))));
        assert!(Proof::from_fields(Some("1"), Some("2"), None).is_err());
        assert!(Proof::from_fields(None, None, None).is_err());
        let v = Value::String("{\"id\":\"x\"}".into());
        assert!(matches!(Proof::from_fields(None, None, Some(&v)), Ok(Proof::Passkey(p)) if p["id"] == "x"));
        assert!(credential_value(&Value::String("not json".into())).is_err());
        assert!(credential_value(&json!(3)).is_err());
    }
}
