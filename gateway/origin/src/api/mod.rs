//! The origin's HTTP API.
//!
//! - Tenant endpoints (`/t/{slug}/…`): OpenID discovery, JWKS, the token endpoint
//!   (password and refresh-token grants), logout, revocation ([`tenant`]); the hosted
//!   sign-in page ([`login`]), passwords ([`password`]) and SSO ([`sso`]); email
//!   verification and the invitee's pages ([`mail`]).
//! - Admin endpoints (`/v1/orgs/…`): organisations, users, memberships, roles, API keys,
//!   policy, sessions ([`admin`]), audit ([`audit`]). Authorised by an access token of the
//!   same tenant whose roles grant the permission, or by the platform operator's token
//!   (every operator action lands in the tenant's audit log).
//! - Edge endpoints: `GET /v1/bundles/{region}` (ETag), `POST /v1/audit/edge` ([`edge`]).
//! - Peer endpoints: `/v1/directory` (directory replication between regions,
//!   [`directory`]).
//!
//! A tenant homed in another region is never served here: its requests get 421 (API) or
//! a redirect (browser) to the right region, and nothing of it is written locally.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::error::ApiError;

pub(crate) mod account;
pub mod admin;
pub mod app;
pub mod audit;
pub(crate) mod caps;
pub mod directory;
pub mod edge;
pub mod extract;
pub(crate) mod health;
pub(crate) mod hierarchy;
pub(crate) mod impersonation;
pub(crate) mod lifecycle;
pub mod login;
pub mod mail;
pub(crate) mod metrics;
pub mod mfa;
pub mod pages;
pub mod password;
pub(crate) mod privacy;
pub(crate) mod reports;
pub(crate) mod retention;
pub(crate) mod role_templates;
pub mod routes;
pub mod session;
pub mod sso;
pub mod tenant;
pub(crate) mod trace;
pub mod transaction;

pub use app::App;
pub use audit::verify_tenant_audit;
pub use routes::{MAX_BODY, ROUTES};

/// Serve the API on `listener` until `shutdown`.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let peers = app.clone();
    tokio::spawn(async move { peers.peers.pull_loop(&peers.store.directory).await });
    if app.store.admin().is_some() {
        let sweep = app.clone();
        tokio::spawn(async move {
            if let Err(e) = sweep.store.sweep_deleted_namespaces(&sweep.cfg.region).await {
                tracing::warn!(error = %format!("{e:#}"), "sweep of deleted tenants' namespaces failed; retried at the next start");
            }
        });
    }
    let sinks = crate::sinks::worker::start(app.clone());
    let retention = crate::retention::spawn(app.clone());
    let metrics = match app.cfg.metrics.listen {
        Some(addr) => {
            let l =
                tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("metrics.listen {addr}: {e}"))?;
            Some(tokio::spawn(metrics::serve_listener(app.clone(), l)))
        }
        None => None,
    };
    let served = axum::serve(listener, router(app).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    sinks.stop().await;
    if let Some(r) = retention {
        r.abort();
    }
    if let Some(m) = metrics {
        m.abort();
    }
    Ok(served?)
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    use admin::{auth_policy, keys, orgs, roles, sessions, teams, users};
    use sso::{admin as sso_admin, signin as sso_signin};
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(routes::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/t/{slug}/.well-known/openid-configuration", get(tenant::discovery))
        .route("/t/{slug}/.well-known/jwks.json", get(tenant::jwks))
        .route("/t/{slug}/token", post(tenant::token))
        .route("/t/{slug}/logout", post(tenant::logout))
        .route("/t/{slug}/revoke", post(tenant::revoke))
        .route("/t/{slug}/login", get(login::login_form).post(login::login_submit))
        .route("/t/{slug}/sso/discover", get(sso_signin::discover))
        .route("/t/{slug}/sso/{id}/start", get(sso_signin::start))
        .route("/t/{slug}/sso/{id}/callback", get(sso_signin::callback))
        .route("/t/{slug}/sso/{id}/saml/metadata", get(sso_signin::saml_metadata))
        .route("/t/{slug}/sso/{id}/saml/acs", post(sso_signin::saml_acs))
        .route("/t/{slug}/password/change", post(password::change_password))
        .route("/t/{slug}/password/reset-request", post(password::reset_request))
        .route("/t/{slug}/password/reset", post(password::reset_password))
        // Multi-factor authentication (tenant)
        .route("/t/{slug}/mfa/factors", get(mfa::factors_api::list_factors))
        .route("/t/{slug}/mfa/totp", post(mfa::factors_api::enroll_totp))
        .route("/t/{slug}/mfa/totp/{id}/confirm", post(mfa::factors_api::confirm_totp))
        .route(
            "/t/{slug}/mfa/factors/{id}",
            axum::routing::patch(mfa::factors_api::rename_factor).delete(mfa::factors_api::remove_factor),
        )
        .route("/t/{slug}/mfa/recovery-codes", post(mfa::factors_api::regenerate_recovery))
        .route("/t/{slug}/mfa/passkeys/register", post(mfa::factors_api::passkey_register_start))
        .route("/t/{slug}/mfa/passkeys", post(mfa::factors_api::passkey_register_finish))
        .route("/t/{slug}/mfa/challenge", post(mfa::stepup::challenge))
        .route("/t/{slug}/mfa/step-up", post(mfa::stepup::step_up))
        .route("/t/{slug}/passkeys/challenge", post(mfa::stepup::passkey_challenge))
        .route("/t/{slug}/login/mfa", post(mfa::pages::login_mfa))
        .route("/t/{slug}/login/enroll", post(mfa::pages::login_enroll))
        .route("/t/{slug}/stepup", get(mfa::pages::stepup_form).post(mfa::pages::stepup_submit))
        .route("/t/{slug}/mfa/webauthn.js", get(mfa::pages::script))
        .route("/t/{slug}/mfa", get(mfa::manage::manage_page))
        .route("/t/{slug}/mfa/manage/factors/{id}/rename", post(mfa::manage::rename))
        .route("/t/{slug}/mfa/manage/factors/{id}/remove", post(mfa::manage::remove))
        .route("/t/{slug}/mfa/manage/totp", post(mfa::manage::totp_start))
        .route("/t/{slug}/mfa/manage/totp/{id}/confirm", post(mfa::manage::totp_confirm))
        .route("/t/{slug}/mfa/manage/recovery-codes", post(mfa::manage::recovery_codes))
        .route("/t/{slug}/mfa/manage/passkeys/register", post(mfa::manage::passkey_start))
        .route("/t/{slug}/mfa/manage/passkeys", post(mfa::manage::passkey_finish))
        // Mail, email verification and invitations (tenant)
        .route("/t/{slug}/email/verify", get(mail::verify::verify_page).post(mail::verify::verify_submit))
        .route("/t/{slug}/email/verify-request", post(mail::verify::verify_request))
        .route("/t/{slug}/invite", get(mail::invite::invite_page))
        .route("/t/{slug}/invite/accept", post(mail::invite::accept))
        // Account and tenant lifecycle (tenant)
        .route("/t/{slug}/me", get(account::get_me).patch(account::patch_me))
        .route("/t/{slug}/me/sessions", get(account::my_sessions).delete(account::delete_my_other_sessions))
        .route("/t/{slug}/me/sessions/{id}", delete(account::delete_my_session))
        .route("/t/{slug}/account", get(account::account_page))
        .route("/t/{slug}/account/sessions/{id}/revoke", post(account::account_revoke))
        .route("/t/{slug}/account/profile", post(account::account_profile))
        // Governance: impersonation (tenant)
        .route("/t/{slug}/impersonate", get(impersonation::pages::handoff))
        .route("/t/{slug}/me/audit", get(impersonation::pages::my_audit))
        // Governance: privacy, export and erasure (tenant)
        .route("/t/{slug}/me/export", get(privacy::export_me))
        .route("/v1/orgs", post(orgs::create_org).get(orgs::list_orgs))
        .route("/v1/keys/rotate", post(orgs::rotate_keys))
        .route("/v1/policy/template", get(orgs::get_template).put(orgs::put_template))
        .route(
            "/v1/orgs/{slug}",
            get(orgs::get_org).patch(admin::org_lifecycle::patch_org).delete(admin::org_lifecycle::delete_org),
        )
        .route("/v1/orgs/{slug}/policy", put(orgs::put_policy))
        .route("/v1/orgs/{slug}/users", get(users::list_users).post(users::create_user))
        .route("/v1/orgs/{slug}/users/{id}", delete(users::delete_user))
        .route("/v1/orgs/{slug}/users/{id}/role", put(users::set_role))
        .route("/v1/orgs/{slug}/roles", get(roles::list_roles))
        .route("/v1/orgs/{slug}/roles/{name}", put(roles::put_role))
        .route("/v1/orgs/{slug}/teams", get(teams::list_teams).post(teams::create_team))
        .route("/v1/orgs/{slug}/teams/{id}/members/{user}", put(teams::add_team_member))
        .route("/v1/orgs/{slug}/api-keys", get(keys::list_keys).post(keys::create_key))
        .route("/v1/orgs/{slug}/api-keys/{id}/rotate", post(keys::rotate_key))
        .route("/v1/orgs/{slug}/api-keys/{id}", delete(keys::revoke_key))
        .route("/v1/orgs/{slug}/sessions/{id}/revoke", post(sessions::revoke_session))
        .route("/v1/orgs/{slug}/sso/connections", get(sso_admin::list).post(sso_admin::create))
        .route(
            "/v1/orgs/{slug}/sso/connections/{id}",
            get(sso_admin::get_one).put(sso_admin::replace).delete(sso_admin::remove),
        )
        .route("/v1/orgs/{slug}/sso/enforcement", get(sso_admin::get_enforcement).put(sso_admin::put_enforcement))
        .route("/v1/orgs/{slug}/auth-policy", get(auth_policy::get_auth_policy).put(auth_policy::put_auth_policy))
        // Multi-factor authentication (admin)
        .route("/v1/orgs/{slug}/users/{id}/mfa/reset", post(mfa::factors_api::admin_reset))
        // Mail, email verification and invitations (admin)
        .route(
            "/v1/orgs/{slug}/mail/templates/{kind}",
            get(mail::templates::get_template)
                .put(mail::templates::put_template)
                .delete(mail::templates::delete_template),
        )
        .route(
            "/v1/orgs/{slug}/invitations",
            get(mail::invitations::list_invitations).post(mail::invitations::create_invitation),
        )
        .route("/v1/orgs/{slug}/invitations/bulk", post(mail::bulk::bulk_invite))
        .route("/v1/orgs/{slug}/invitations/{id}/resend", post(mail::invitations::resend_invitation))
        .route("/v1/orgs/{slug}/invitations/{id}", delete(mail::invitations::revoke_invitation))
        // Account and tenant lifecycle (admin)
        .route("/v1/orgs/{slug}/users/{id}/deactivate", post(users::deactivate_user))
        .route("/v1/orgs/{slug}/users/{id}/reactivate", post(users::reactivate_user))
        .route("/v1/orgs/{slug}/users/{id}/unlock", post(users::unlock_user))
        .route(
            "/v1/orgs/{slug}/users/{id}/sessions",
            get(sessions::list_user_sessions).delete(sessions::end_user_sessions),
        )
        .route("/v1/orgs/{slug}/suspend", post(admin::org_lifecycle::suspend_org))
        .route("/v1/orgs/{slug}/resume", post(admin::org_lifecycle::resume_org))
        .route("/v1/orgs/{slug}/deletion", post(admin::org_lifecycle::request_deletion))
        .route("/v1/orgs/{slug}/usage", get(admin::usage::get_usage))
        // Governance: impersonation (admin)
        .route("/v1/orgs/{slug}/impersonations", post(impersonation::start).get(impersonation::list))
        .route("/v1/orgs/{slug}/impersonations/{id}", delete(impersonation::end))
        .route("/v1/orgs/{slug}/impersonation-policy", get(impersonation::get_policy).put(impersonation::put_policy))
        // Governance: privacy, export and erasure (admin)
        .route("/v1/orgs/{slug}/users/{id}/export", get(privacy::export_user))
        .route("/v1/orgs/{slug}/users/{id}/erase", post(privacy::erase_user))
        // Governance: retention and legal holds (admin)
        .route("/v1/orgs/{slug}/retention", get(retention::get_retention).put(retention::put_retention))
        .route("/v1/orgs/{slug}/retention/run", post(retention::run_retention))
        .route("/v1/orgs/{slug}/audit/retention", put(retention::set_audit_retention))
        .route("/v1/orgs/{slug}/audit/holds", post(retention::add_hold).get(retention::list_holds))
        .route("/v1/orgs/{slug}/audit/holds/{id}/release", post(retention::release_hold))
        .route("/v1/orgs/{slug}/audit/purge", post(retention::purge_audit))
        // Governance: compliance reports (admin)
        .route("/v1/orgs/{slug}/reports/{kind}", get(reports::get_report))
        // Governance: organisation hierarchy and role templates (admin)
        .route("/v1/orgs/{slug}/parent", put(hierarchy::put_parent))
        .route("/v1/orgs/{slug}/children", get(hierarchy::list_children))
        .route("/v1/orgs/{slug}/effective-policy", get(hierarchy::effective_policy))
        .route("/v1/orgs/{slug}/teams/{id}/roles", put(hierarchy::put_team_roles))
        .route("/v1/role-templates/{name}", put(role_templates::put_template))
        .route("/v1/role-templates", get(role_templates::list_templates))
        .route("/v1/orgs/{slug}/roles/{name}/from-template", post(role_templates::from_template))
        // Governance: audit streaming (admin)
        .route("/v1/sinks", get(crate::sinks::routes::list))
        .route("/v1/sinks/{name}/replay", post(crate::sinks::routes::replay))
        .route("/v1/operator/audit", get(admin::operator_audit::list))
        .route("/v1/orgs/{slug}/audit", get(audit::query_audit))
        .route("/v1/orgs/{slug}/audit/verify", get(audit::verify_audit))
        .route("/v1/orgs/{slug}/audit/edge", get(edge::list_edge_events))
        .route("/v1/bundles/{region}", get(edge::get_bundle))
        .route("/v1/audit/edge", post(edge::edge_audit))
        .route("/v1/directory", get(directory::get_directory).post(directory::post_directory))
        .route_layer(axum::middleware::from_fn(trace::request_span))
        .fallback(|| async { ApiError::NoRoute { status: StatusCode::NOT_FOUND, message: "no such route" } })
        .method_not_allowed_fallback(|| async {
            ApiError::NoRoute {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "this route does not take that method",
            }
        })
        .layer(axum::middleware::from_fn(extract::with_request_id))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}
