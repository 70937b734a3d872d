//! The route table: every route with the permission it needs, and the OpenAPI document
//! generated from it.

use axum::Json;
use serde_json::{json, Value};

/// Every API route: method, path, the permission it needs (`operator`, `edge`, `peer`,
/// `public`, or a tenant permission), and what it does. The OpenAPI document and the
/// cross-tenant test are generated from this table.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("GET", "/healthz", "public", "Liveness"),
    ("GET", "/openapi.json", "public", "This API's OpenAPI document"),
    ("GET", "/readyz", "public", "Readiness: storage answers and the signing key signs (503 with a reason if not)"),
    (
        "GET",
        "/metrics",
        "operator",
        "Prometheus metrics (the operator's token or the [metrics] scrape token): sign-ins, tokens, SSO, bundles, storage, sinks, retention",
    ),
    ("GET", "/t/{slug}/.well-known/openid-configuration", "public", "OpenID discovery for the tenant's issuer"),
    ("GET", "/t/{slug}/.well-known/jwks.json", "public", "Keys that sign the tenant's tokens"),
    ("POST", "/t/{slug}/token", "public", "Token endpoint: grant_type password or refresh_token"),
    ("POST", "/t/{slug}/logout", "public", "End the session of a refresh token"),
    ("POST", "/t/{slug}/revoke", "public", "Revoke an access token (by its own bearer)"),
    ("GET", "/t/{slug}/login", "public", "Hosted sign-in page (HTML form, CSRF-protected)"),
    (
        "POST",
        "/t/{slug}/login",
        "public",
        "Sign in from the form; sets the session cookie, returns to return_to on the tenant's hosts",
    ),
    (
        "GET",
        "/t/{slug}/sso/discover",
        "public",
        "Home-realm discovery: sign in through the connection of an email's domain",
    ),
    (
        "GET",
        "/t/{slug}/sso/{id}/start",
        "public",
        "Start signing in through an SSO connection (redirect to the provider)",
    ),
    ("GET", "/t/{slug}/sso/{id}/callback", "public", "Where the provider returns the browser (code and state)"),
    ("GET", "/t/{slug}/sso/{id}/saml/metadata", "public", "SAML SP metadata of a connection (its entity id)"),
    ("POST", "/t/{slug}/sso/{id}/saml/acs", "public", "SAML Assertion Consumer Service (HTTP-POST binding)"),
    ("POST", "/t/{slug}/password/change", "public", "Change one's password (bearer access token); ends other sessions"),
    ("POST", "/t/{slug}/password/reset-request", "public", "Mail a single-use reset link (always 202)"),
    ("POST", "/t/{slug}/password/reset", "public", "Set a new password with a reset token; ends every session"),
    // Multi-factor authentication (tenant)
    ("GET", "/t/{slug}/mfa/factors", "public", "The user's factors and recovery codes left (bearer access token)"),
    ("POST", "/t/{slug}/mfa/totp", "public", "Start enrolling TOTP: secret, otpauth URI, QR code (SVG)"),
    ("POST", "/t/{slug}/mfa/totp/{id}/confirm", "public", "Confirm a TOTP enrolment with a first code"),
    ("PATCH", "/t/{slug}/mfa/factors/{id}", "public", "Rename a factor"),
    ("DELETE", "/t/{slug}/mfa/factors/{id}", "public", "Remove a factor (session that passed MFA)"),
    ("POST", "/t/{slug}/mfa/recovery-codes", "public", "Ten new recovery codes, shown once (the old set is void)"),
    ("POST", "/t/{slug}/mfa/passkeys/register", "public", "Start registering a passkey (WebAuthn options)"),
    ("POST", "/t/{slug}/mfa/passkeys", "public", "Finish registering a passkey"),
    ("POST", "/t/{slug}/mfa/challenge", "public", "Passkey options for an mfa_token (second factor, step-up)"),
    ("POST", "/t/{slug}/mfa/step-up", "public", "Step up a session: fresh tokens with a new auth_time"),
    ("POST", "/t/{slug}/passkeys/challenge", "public", "Start a passwordless passkey sign-in (grant_type=passkey)"),
    ("POST", "/t/{slug}/login/mfa", "public", "Hosted second-factor form (code, recovery code or passkey)"),
    (
        "POST",
        "/t/{slug}/login/enroll",
        "public",
        "Hosted enrolment form of a sign-in that must enrol (TOTP or passkey)",
    ),
    ("GET", "/t/{slug}/stepup", "public", "Step-up page (session cookie): return_to, max_age"),
    (
        "POST",
        "/t/{slug}/stepup",
        "public",
        "Finish a step-up: fresh session cookie, back to return_to on the tenant's hosts",
    ),
    ("GET", "/t/{slug}/mfa/webauthn.js", "public", "The hosted pages' passkey script (same origin, no inline script)"),
    ("GET", "/t/{slug}/mfa", "public", "Hosted factor page (session cookie; step-up first once the user has a factor)"),
    (
        "POST",
        "/t/{slug}/mfa/manage/factors/{id}/rename",
        "public",
        "Rename a factor from the factor page (CSRF-protected)",
    ),
    (
        "POST",
        "/t/{slug}/mfa/manage/factors/{id}/remove",
        "public",
        "Remove a factor from the factor page (CSRF-protected)",
    ),
    (
        "POST",
        "/t/{slug}/mfa/manage/totp",
        "public",
        "Add an authenticator app from the factor page: QR code and secret",
    ),
    ("POST", "/t/{slug}/mfa/manage/totp/{id}/confirm", "public", "Confirm an authenticator app from the factor page"),
    ("POST", "/t/{slug}/mfa/manage/recovery-codes", "public", "New recovery codes from the factor page (shown once)"),
    (
        "POST",
        "/t/{slug}/mfa/manage/passkeys/register",
        "public",
        "Passkey options for the factor page's script (session cookie, x-csrf-token)",
    ),
    (
        "POST",
        "/t/{slug}/mfa/manage/passkeys",
        "public",
        "Finish adding a passkey from the factor page (CSRF-protected)",
    ),
    // Mail, email verification and invitations (tenant)
    ("GET", "/t/{slug}/email/verify", "public", "Email verification page of a mailed link (confirms with a POST)"),
    ("POST", "/t/{slug}/email/verify", "public", "Verify an email address with its single-use token (form or JSON)"),
    (
        "POST",
        "/t/{slug}/email/verify-request",
        "public",
        "Mail a new verification link (bearer access token of the user; rate limited)",
    ),
    ("GET", "/t/{slug}/invite", "public", "Invitation page: set a password, continue with SSO, or use a passkey"),
    (
        "POST",
        "/t/{slug}/invite/accept",
        "public",
        "Accept an invitation: the account is created with its role and team, and signed in",
    ),
    // Account and tenant lifecycle (tenant)
    ("GET", "/t/{slug}/me", "public", "The signed-in user's profile, teams and factors (bearer access token)"),
    ("PATCH", "/t/{slug}/me", "public", "Change one's display name (bearer access token)"),
    ("GET", "/t/{slug}/me/sessions", "public", "One's live sessions: device, IP, user agent, last seen (bearer)"),
    ("DELETE", "/t/{slug}/me/sessions/{id}", "public", "End one of one's own sessions (bearer access token)"),
    ("DELETE", "/t/{slug}/me/sessions", "public", "Sign out everywhere else: end every other session of one's own"),
    ("GET", "/t/{slug}/account", "public", "Hosted account page: profile, factors, sessions (session cookie)"),
    (
        "POST",
        "/t/{slug}/account/sessions/{id}/revoke",
        "public",
        "End one of one's sessions from the account page (session cookie, CSRF-protected)",
    ),
    ("POST", "/t/{slug}/account/profile", "public", "Change one's display name from the account page (CSRF-protected)"),
    // Governance: impersonation (tenant)
    (
        "GET",
        "/t/{slug}/impersonate",
        "public",
        "Hand-off of an impersonation (single-use token): its session cookie, then the account page",
    ),
    ("GET", "/t/{slug}/me/audit", "public", "The audit records about oneself, impersonations included (bearer)"),
    // Governance: privacy, export and erasure (tenant)
    ("GET", "/t/{slug}/me/export", "public", "Export everything the organisation holds about oneself (bearer; JSON)"),
    ("POST", "/v1/orgs", "operator", "Create an organisation (tenant) homed in this region, with its owner"),
    ("GET", "/v1/orgs", "operator", "List the tenant directory (paginated)"),
    (
        "POST",
        "/v1/keys/rotate",
        "operator",
        "Rotate the region's token-signing key (old key published until its tokens expire)",
    ),
    ("GET", "/v1/orgs/{slug}", "settings:read", "Organisation and its edge policy"),
    ("PUT", "/v1/orgs/{slug}/policy", "settings:write", "Set hosts, IP and geo rules, feature overrides, limits"),
    ("GET", "/v1/orgs/{slug}/users", "members:read", "List users (paginated; filter by email)"),
    ("POST", "/v1/orgs/{slug}/users", "members:write", "Create a user with a role"),
    ("DELETE", "/v1/orgs/{slug}/users/{id}", "members:delete", "Delete a user and end their sessions"),
    ("PUT", "/v1/orgs/{slug}/users/{id}/role", "members:write", "Set a user's role (and its expiry)"),
    ("GET", "/v1/orgs/{slug}/roles", "roles:read", "List custom roles"),
    ("PUT", "/v1/orgs/{slug}/roles/{name}", "roles:write", "Create or replace a custom role"),
    ("GET", "/v1/orgs/{slug}/teams", "teams:read", "List teams"),
    ("POST", "/v1/orgs/{slug}/teams", "teams:write", "Create a team (optionally inside another)"),
    ("PUT", "/v1/orgs/{slug}/teams/{id}/members/{user}", "teams:write", "Add a user to a team"),
    ("GET", "/v1/orgs/{slug}/api-keys", "api_keys:read", "List API keys (never the keys)"),
    ("POST", "/v1/orgs/{slug}/api-keys", "api_keys:write", "Create an API key (shown once)"),
    ("POST", "/v1/orgs/{slug}/api-keys/{id}/rotate", "api_keys:write", "Replace an API key (new key shown once)"),
    ("DELETE", "/v1/orgs/{slug}/api-keys/{id}", "api_keys:delete", "Revoke an API key"),
    (
        "POST",
        "/v1/orgs/{slug}/sessions/{id}/revoke",
        "members:write",
        "End a session (reaches edges with the next bundle)",
    ),
    ("GET", "/v1/orgs/{slug}/sso/connections", "settings:read", "List SSO connections (never their secrets)"),
    (
        "POST",
        "/v1/orgs/{slug}/sso/connections",
        "settings:write",
        "Create an SSO connection: OIDC or OAuth2, presets entra, google, okta, github",
    ),
    ("GET", "/v1/orgs/{slug}/sso/connections/{id}", "settings:read", "One SSO connection"),
    (
        "PUT",
        "/v1/orgs/{slug}/sso/connections/{id}",
        "settings:write",
        "Replace an SSO connection (an absent client_secret keeps the stored one)",
    ),
    ("DELETE", "/v1/orgs/{slug}/sso/connections/{id}", "settings:write", "Delete an SSO connection"),
    ("GET", "/v1/orgs/{slug}/sso/enforcement", "settings:read", "Whether password sign-in is refused (SSO only)"),
    (
        "PUT",
        "/v1/orgs/{slug}/sso/enforcement",
        "settings:write",
        "Enforce SSO: refuse password sign-in except for a break-glass owner",
    ),
    (
        "GET",
        "/v1/orgs/{slug}/auth-policy",
        "settings:read",
        "The sign-in policy: MFA, email verification, session lifetimes",
    ),
    ("PUT", "/v1/orgs/{slug}/auth-policy", "settings:write", "Set the sign-in policy (validated; the field is named)"),
    // Multi-factor authentication (admin)
    ("POST", "/v1/orgs/{slug}/users/{id}/mfa/reset", "members:write", "Remove a user's factors; their sessions end"),
    // Mail, email verification and invitations (admin)
    (
        "GET",
        "/v1/orgs/{slug}/mail/templates/{kind}",
        "settings:read",
        "A mail template (the organisation's or the built-in one)",
    ),
    (
        "PUT",
        "/v1/orgs/{slug}/mail/templates/{kind}",
        "settings:write",
        "Set a mail template: subject, text and HTML with placeholders (validated)",
    ),
    ("DELETE", "/v1/orgs/{slug}/mail/templates/{kind}", "settings:write", "Go back to the built-in mail template"),
    ("GET", "/v1/orgs/{slug}/invitations", "users:invite", "List invitations (paginated; filter by status)"),
    (
        "POST",
        "/v1/orgs/{slug}/invitations",
        "users:invite",
        "Invite an email with a role (and team); the link is mailed",
    ),
    (
        "POST",
        "/v1/orgs/{slug}/invitations/bulk",
        "users:invite",
        "Invite from CSV (email,role,team) or JSON lines, with a result per row",
    ),
    (
        "POST",
        "/v1/orgs/{slug}/invitations/{id}/resend",
        "users:invite",
        "Mail a new invitation link (the old one stops working)",
    ),
    ("DELETE", "/v1/orgs/{slug}/invitations/{id}", "users:invite", "Revoke an invitation"),
    // Account and tenant lifecycle (admin)
    (
        "POST",
        "/v1/orgs/{slug}/users/{id}/deactivate",
        "members:write",
        "Deactivate a user: sign-in refused, sessions end, edges refuse with user_disabled",
    ),
    ("POST", "/v1/orgs/{slug}/users/{id}/reactivate", "members:write", "Reactivate a deactivated user"),
    ("POST", "/v1/orgs/{slug}/users/{id}/unlock", "members:write", "End a user's lockout after failed sign-ins"),
    (
        "GET",
        "/v1/orgs/{slug}/users/{id}/sessions",
        "members:read",
        "A user's live sessions: device, IP, user agent, created, last seen, idp, amr",
    ),
    (
        "DELETE",
        "/v1/orgs/{slug}/users/{id}/sessions",
        "members:write",
        "Sign a user out everywhere: every session and refresh token ends",
    ),
    ("PATCH", "/v1/orgs/{slug}", "settings:write", "Rename the organisation; change its tier (operator only)"),
    (
        "POST",
        "/v1/orgs/{slug}/suspend",
        "operator",
        "Suspend an organisation: sign-ins refused, edges refuse with tenant_suspended",
    ),
    ("POST", "/v1/orgs/{slug}/resume", "operator", "Resume a suspended organisation"),
    (
        "POST",
        "/v1/orgs/{slug}/deletion",
        "operator",
        "Request an organisation's deletion: a single-use confirmation token (5 minutes)",
    ),
    (
        "DELETE",
        "/v1/orgs/{slug}",
        "operator",
        "Delete an organisation ({\"confirm\": token}): its files removed, its entry tombstoned",
    ),
    (
        "GET",
        "/v1/orgs/{slug}/usage",
        "settings:read",
        "Usage: users, sessions, API keys now; sign-ins, failures, edge denies per day or hour",
    ),
    // Governance: impersonation (admin)
    (
        "POST",
        "/v1/orgs/{slug}/impersonations",
        "users:impersonate",
        "Impersonate a user (reason, minutes): tokens with `act`, the end, a hand-off URL",
    ),
    ("GET", "/v1/orgs/{slug}/impersonations", "audit:read", "Impersonations, active and past (paginated)"),
    ("DELETE", "/v1/orgs/{slug}/impersonations/{id}", "users:write", "End an impersonation now (its session revoked)"),
    ("GET", "/v1/orgs/{slug}/impersonation-policy", "settings:read", "Whether admins may impersonate, for how long"),
    (
        "PUT",
        "/v1/orgs/{slug}/impersonation-policy",
        "settings:write",
        "Set whether admins may impersonate, and the limit",
    ),
    // Governance: privacy, export and erasure (admin)
    (
        "GET",
        "/v1/orgs/{slug}/users/{id}/export",
        "privacy:read",
        "Export everything the organisation holds about a user (GDPR Art. 15/20; JSON, gatehouse.subject-export/1)",
    ),
    (
        "POST",
        "/v1/orgs/{slug}/users/{id}/erase",
        "privacy:delete",
        "Erase a user (GDPR Art. 17; {\"reason\"}): rows deleted, keys destroyed, audit records kept",
    ),
    // Governance: retention and legal holds (admin)
    ("GET", "/v1/orgs/{slug}/retention", "settings:read", "Retention per data type in force, and whose choice it is"),
    (
        "PUT",
        "/v1/orgs/{slug}/retention",
        "settings:write",
        "Set retention per data type in days (null: keep; absent: the region default)",
    ),
    ("POST", "/v1/orgs/{slug}/retention/run", "settings:write", "Apply retention to every data type now (batched)"),
    ("PUT", "/v1/orgs/{slug}/audit/retention", "settings:write", "Set audit retention in days"),
    (
        "POST",
        "/v1/orgs/{slug}/audit/holds",
        "settings:write",
        "Place a legal hold on a time range, optionally on some users and actions",
    ),
    ("GET", "/v1/orgs/{slug}/audit/holds", "audit:read", "Legal holds, live and released (paginated)"),
    ("POST", "/v1/orgs/{slug}/audit/holds/{id}/release", "settings:write", "Release a legal hold"),
    ("POST", "/v1/orgs/{slug}/audit/purge", "settings:write", "Purge audit records past retention (never held ones)"),
    // Governance: compliance reports (admin)
    (
        "GET",
        "/v1/orgs/{slug}/reports/{kind}",
        "reports:read",
        "Compliance report (access-review, authentication, privileged-activity, gdpr) as json, csv or pdf",
    ),
    // Governance: organisation hierarchy and role templates (admin)
    (
        "PUT",
        "/v1/orgs/{slug}/parent",
        "operator",
        "Attach an organisation to a parent (same region) or detach it (null)",
    ),
    ("GET", "/v1/orgs/{slug}/children", "settings:read", "The organisation's child organisations"),
    (
        "GET",
        "/v1/orgs/{slug}/effective-policy",
        "settings:read",
        "IP, geo, MFA and SSO rules in force (own ∩ inherited) and where each comes from",
    ),
    (
        "PUT",
        "/v1/orgs/{slug}/teams/{id}/roles",
        "teams:write",
        "Roles a team grants its members and the members of its descendant teams",
    ),
    ("PUT", "/v1/role-templates/{name}", "operator", "Create or change a role template; synced roles follow"),
    ("GET", "/v1/role-templates", "operator", "List the region's role templates"),
    (
        "POST",
        "/v1/orgs/{slug}/roles/{name}/from-template",
        "roles:write",
        "Make a custom role from a template: synced (follows it) or forked (a copy)",
    ),
    // Governance: audit streaming (admin)
    (
        "GET",
        "/v1/sinks",
        "operator",
        "Audit sinks: destination, delivered, failures, lag and cursor per tenant, dead letters",
    ),
    (
        "POST",
        "/v1/sinks/{name}/replay",
        "operator",
        "Send a sink's dead letters again (once each, up to 1000); delivered ones leave the list",
    ),
    ("GET", "/v1/operator/audit", "operator", "The operator's hash-chained audit log (region level)"),
    ("GET", "/v1/orgs/{slug}/audit", "audit:read", "Query the audit log (json, jsonl or csv; paginated)"),
    ("GET", "/v1/orgs/{slug}/audit/verify", "audit:read", "Verify the audit hash chain"),
    ("GET", "/v1/orgs/{slug}/audit/edge", "audit:read", "Decision events edges sent (paginated)"),
    ("GET", "/v1/bundles/{region}", "edge", "The signed bundle of the region (ETag / If-None-Match)"),
    ("POST", "/v1/audit/edge", "edge", "Batched decision events from an edge (idempotent by batch id)"),
    ("GET", "/v1/directory", "peer", "The directory entries homed in this region"),
    ("POST", "/v1/directory", "peer", "Upsert directory entries homed in the caller's region"),
];

/// The permission route `method path` needs, from [`ROUTES`] (the one place it is
/// written).
pub(crate) fn permission_of(method: &str, matched: &str) -> Option<&'static str> {
    ROUTES.iter().find(|(m, p, _, _)| *m == method && *p == matched).map(|(_, _, need, _)| *need)
}

pub(crate) async fn openapi() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for (method, path, need, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let security = match *need {
            "public" => json!([]),
            "edge" => json!([{ "edgeToken": [] }]),
            "peer" => json!([{ "peerToken": [] }]),
            "operator" => json!([{ "operatorToken": [] }]),
            _ => json!([{ "accessToken": [need] }, { "operatorToken": [] }]),
        };
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        entry[method.to_ascii_lowercase()] = json!({
            "summary": summary,
            "x-permission": need,
            "security": security,
            "parameters": params,
            "responses": {
                "200": { "description": "Success" },
                "4XX": { "description": "Refused", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": { "title": "Gatehouse origin API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": { "Error": { "type": "object", "required": ["error", "message"], "properties": {
                "error": { "type": "string", "description": "Stable reason code" },
                "message": { "type": "string" } } } },
            "securitySchemes": {
                "accessToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "operatorToken": { "type": "http", "scheme": "bearer" },
                "edgeToken": { "type": "http", "scheme": "bearer" },
                "peerToken": { "type": "http", "scheme": "bearer" }
            }
        }
    }))
}

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;
