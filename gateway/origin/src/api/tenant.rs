//! Tenant endpoints of the issuer: OpenID discovery, JWKS, the token endpoint (password
//! and refresh-token grants), logout and revocation.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::RequestMeta;
use crate::error::{bad, ApiError, ApiResult};
use crate::identity::{self, SigninOutcome};
use crate::store::{refresh_tokens, revoked_tokens, sessions};
use crate::tokens::{self, RefreshOutcome};

use crate::api::app::App;
use crate::api::extract::{
    bearer, meta, parse_body, residency, tenant, verify_access, AppState, Peer, RawBody, Tenant,
};
use crate::api::lifecycle;
use crate::api::sso::connections::sso_enforced_for;
use crate::api::transaction::{begin, commit, ev};

pub(crate) use crate::api::session::{end_session, issue, open_session, Session, TokenRequest};

pub(crate) async fn discovery(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let path = format!("/t/{slug}/.well-known/openid-configuration");
    match tenant(&app, &slug, &path).await {
        Err(e) => residency(e, &headers),
        Ok(t) => {
            let iss = app.cfg.issuer(&t.slug);
            Json(json!({
                "issuer": iss,
                "jwks_uri": format!("{iss}/.well-known/jwks.json"),
                "token_endpoint": format!("{iss}/token"),
                "revocation_endpoint": format!("{iss}/revoke"),
                "end_session_endpoint": format!("{iss}/logout"),
                "grant_types_supported": ["password", "refresh_token", "mfa", "passkey"],
                "id_token_signing_alg_values_supported": [app.cfg.tokens.alg],
                "token_endpoint_auth_methods_supported": ["none"],
                "response_types_supported": ["token"],
                "subject_types_supported": ["public"],
                "claims_supported": ["sub", "org", "roles", "scope", "teams", "sid", "amr", "acr", "auth_time", "email_verified", "jti", "iss", "aud", "exp", "iat"],
                "acr_values_supported": [tokens::ACR_MFA]
            }))
            .into_response()
        }
    }
}

pub(crate) async fn jwks(State(app): AppState, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    match tenant(&app, &slug, &format!("/t/{slug}/.well-known/jwks.json")).await {
        Err(e) => residency(e, &headers),
        Ok(_) => {
            let mut r = app.keys().jwks.clone().into_response();
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/jwk-set+json"));
            r.headers_mut().insert("cache-control", HeaderValue::from_static("max-age=300"));
            r
        }
    }
}

pub(crate) fn parse_scope(s: Option<&str>) -> ApiResult<Option<Vec<String>>> {
    let Some(s) = s else { return Ok(None) };
    let v: Vec<String> = s.split_whitespace().map(String::from).collect();
    if v.len() > 32 || v.iter().any(|p| !gatehouse_core::policy::valid_permission(p)) {
        return Err(bad("invalid_scope", "scope must be up to 32 `resource:action` permissions"));
    }
    Ok(Some(v))
}

pub(crate) async fn token(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    match token_inner(&app, &slug, &peer, &headers, &body).await {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => residency(e, &headers),
    }
}

pub(crate) async fn token_inner(
    app: &App,
    slug: &str,
    peer: &SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Value> {
    let t = tenant(app, slug, &format!("/t/{slug}/token")).await?;
    let req: TokenRequest = parse_body(headers, body)?;
    let m = meta(headers, peer);
    let now = crate::now();
    let scopes = parse_scope(req.scope.as_deref())?;
    match req.grant_type.as_str() {
        "password" => {
            let (Some(email), Some(password)) = (req.email.as_deref(), req.password.as_deref()) else {
                return Err(bad("invalid_request", "password grant needs email and password"));
            };
            let s = password_session(app, &t, &m, email, password).await;
            app.metrics.signin("password", &s);
            issue(app, &t, &m, s?, scopes).await
        }
        "refresh_token" => {
            let Some(rt) = req.refresh_token.as_deref() else {
                return Err(bad("invalid_request", "refresh_token grant needs refresh_token"));
            };
            if rt.len() > 128 {
                return Err(ApiError::InvalidGrant);
            }
            let h = begin(&t).await?;
            match tokens::use_refresh(&h, rt, now).await? {
                RefreshOutcome::Invalid => {
                    app.metrics.refresh("invalid");
                    Err(ApiError::InvalidGrant)
                }
                RefreshOutcome::Reused { session, user } => {
                    app.metrics.refresh("reused");
                    app.changed(&t.id).await?;
                    commit(
                        app,
                        &t,
                        h,
                        &m,
                        vec![ev(
                            "system",
                            "token.refresh_reuse",
                            format!("session:{session}"),
                            None,
                            Some(json!({ "user": user, "revoked": "session and refresh-token family" })),
                        )],
                    )
                    .await?;
                    Err(ApiError::InvalidGrant)
                }
                RefreshOutcome::Rotate { session, user, family } => {
                    let h = lifecycle::refresh_allowed(app, &t, h, &m, &session, now).await?;
                    let amr = sessions::amr(&h, &session).await?.unwrap_or_default();
                    let amr: Vec<String> = serde_json::from_str(&amr).unwrap_or_default();
                    let events =
                        vec![ev(format!("user:{user}"), "token.refresh", format!("session:{session}"), None, None)];
                    let s = Session { held: h, user, sid: session, family, amr, events };
                    let issued = issue(app, &t, &m, s, scopes).await;
                    app.metrics.refresh(if issued.is_ok() { "success" } else { "refused" });
                    issued
                }
            }
        }
        "mfa" | "passkey" => crate::api::mfa::grant(app, &t, &m, &req, scopes).await,
        _ => Err(bad("unsupported_grant_type", "grant_type must be password, refresh_token, mfa or passkey")),
    }
}

/// Check a password and open a session (the caller issues tokens and commits). Every
/// failure is the same `invalid_credentials`, and is audited.
pub(crate) async fn password_session<'t>(
    app: &App,
    t: &'t Tenant,
    m: &RequestMeta,
    email: &str,
    password: &str,
) -> ApiResult<Session<'t>> {
    if password.len() > identity::MAX_PASSWORD {
        return Err(ApiError::InvalidCredentials);
    }
    let email = identity::normalise_email(email).ok_or(ApiError::InvalidCredentials)?;
    let now = crate::now();
    let h = begin(t).await?;
    let prior_failures = crate::api::mfa::prior_failures(&h, &email).await?;
    let outcome = identity::check_password(&h, &app.passwords, &app.cfg.signin, &email, password, now).await?;
    let user = match outcome {
        SigninOutcome::Success(u) => u,
        other => {
            let (actor, action, target) = match &other {
                SigninOutcome::UnknownUser => ("anonymous".to_string(), "signin.failure", format!("email:{email}")),
                SigninOutcome::Locked(u) => (format!("user:{u}"), "signin.locked", format!("user:{u}")),
                SigninOutcome::WrongPassword { user, locked: true } => {
                    (format!("user:{user}"), "signin.lockout", format!("user:{user}"))
                }
                SigninOutcome::WrongPassword { user, .. } => {
                    (format!("user:{user}"), "signin.failure", format!("user:{user}"))
                }
                SigninOutcome::Disabled(u) => (format!("user:{u}"), "signin.disabled", format!("user:{u}")),
                SigninOutcome::Success(_) => unreachable!("handled above"),
            };
            commit(app, t, h, m, vec![ev(actor, action, target, None, None)]).await?;
            return Err(lifecycle::signin_refused(&other));
        }
    };
    // A suspended organisation signs nobody in (before any second step is asked for).
    lifecycle::refuse_if_suspended(&h).await?;
    // An organisation that enforces SSO refuses passwords, except its break-glass owner.
    // Checked after the password, so the answer says nothing to someone without it.
    if sso_enforced_for(&h, &email).await? {
        let actor = format!("user:{user}");
        commit(app, t, h, m, vec![ev(actor.clone(), "signin.sso_required", actor, None, None)]).await?;
        return Err(ApiError::forbidden("sso_required", "this organisation signs in with single sign-on"));
    }
    // Under `email_verification = "required"` an unverified local account is refused here
    // (after the password, like SSO enforcement) and mailed a fresh link.
    if crate::api::mail::verify::must_verify(&h, &user).await? {
        return Err(crate::api::mail::verify::refuse_unverified(app, t, h, m, &user, &email).await);
    }
    let h = crate::api::mfa::second_step(app, t, h, m, &user, &["pwd".to_string()], None, prior_failures).await?;
    let mut events = vec![ev(format!("user:{user}"), "signin.success", format!("user:{user}"), None, None)];
    let (sid, family) = open_session(app, &h, &user, &["pwd".to_string()], None, now, &mut events).await?;
    Ok(Session { held: h, user, sid, family, amr: vec!["pwd".to_string()], events })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

pub(crate) async fn logout(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/logout")).await?;
        let m = meta(&headers, &peer);
        let req: LogoutRequest =
            if body.is_empty() { LogoutRequest { refresh_token: None } } else { parse_body(&headers, &body)? };
        // The session: from the refresh token, or from the bearer access token.
        let h = begin(&t).await?;
        let session: Option<(String, String)> = if let Some(rt) = req.refresh_token.as_deref() {
            refresh_tokens::holder(&h, &tokens::secret_hash(rt)).await?.map(|r| (r.session_id, r.user_id))
        } else if let Some(tok) = bearer(&headers) {
            let c = verify_access(&app, tok, Some(&t.slug))?;
            Some((c.custom.sid.clone(), c.subject.clone().unwrap_or_default()))
        } else {
            return Err(bad("invalid_request", "give a refresh_token or a bearer access token"));
        };
        let Some((sid, user)) = session else { return Err(ApiError::InvalidGrant) };
        end_session(&h, &sid, crate::now()).await?;
        app.changed(&t.id).await?;
        commit(
            &app,
            &t,
            h,
            &m,
            vec![ev(format!("user:{user}"), "session.logout", format!("session:{sid}"), None, None)],
        )
        .await?;
        ApiResult::Ok(StatusCode::NO_CONTENT)
    };
    match run.await {
        Ok(s) => s.into_response(),
        Err(e) => residency(e, &headers),
    }
}

pub(crate) async fn revoke(
    State(app): AppState,
    Path(slug): Path<String>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let t = tenant(&app, &slug, &format!("/t/{slug}/revoke")).await?;
        let tok = bearer(&headers).ok_or_else(|| {
            ApiError::unauthorized("credential_missing", "send the access token to revoke as the bearer")
        })?;
        let c = verify_access(&app, tok, Some(&t.slug))?;
        let jti = c.jwt_id.clone().ok_or_else(|| bad("token_invalid", "token has no jti"))?;
        let exp = c.expires_at.map(|e| e.as_secs() as i64).unwrap_or(crate::now() + 900);
        let h = begin(&t).await?;
        revoked_tokens::insert(&h, &jti, exp).await?;
        app.changed(&t.id).await?;
        let user = c.subject.clone().unwrap_or_default();
        commit(
            &app,
            &t,
            h,
            &meta(&headers, &peer),
            vec![ev(format!("user:{user}"), "token.revoke", format!("jti:{jti}"), None, None)],
        )
        .await?;
        ApiResult::Ok(StatusCode::NO_CONTENT)
    };
    match run.await {
        Ok(s) => s.into_response(),
        Err(e) => residency(e, &headers),
    }
}
