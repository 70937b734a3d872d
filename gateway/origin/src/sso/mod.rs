//! Single sign-on: each organisation's connections to identity providers (OIDC, generic
//! OAuth2 with a userinfo endpoint, or SAML 2.0), with presets for Microsoft Entra ID,
//! Google Workspace, Okta and GitHub.
//!
//! - [`Connection`]: what an administrator configures, validated at write time; the
//!   client secret is sealed with AES-256-GCM ([`SecretBox`]) and never returned;
//! - [`oidc`]: the relying party (authorization code + PKCE, state and nonce bound to a
//!   single-use transaction, ID token validation with cached discovery and keys);
//! - [`saml`]: the SAML 2.0 service provider (samael + libxmlsec1);
//! - [`http`]: the HTTP client for identity providers.
//!
//! What happens after the provider (finding or provisioning the user, the session, the
//! tokens, the audit records) is in the API's sign-in routes.

pub mod http;
pub mod oidc;
pub mod saml;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

/// Protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenID Connect: discovery, ID token.
    Oidc,
    /// OAuth 2.0 authorization code with a userinfo endpoint (no ID token).
    Oauth2,
    /// SAML 2.0: HTTP-Redirect AuthnRequest, HTTP-POST response.
    Saml,
}

impl Protocol {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Oidc => "oidc",
            Protocol::Oauth2 => "oauth2",
            Protocol::Saml => "saml",
        }
    }
}

/// A provider preset: fills in endpoints, scopes and claim names, and adds the
/// provider's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Microsoft Entra ID (OIDC). `entra_tenant` is a tenant id, or `organizations` /
    /// `common` for multi-tenant apps, whose issuer carries the token's `tid`.
    Entra,
    /// Google (OIDC or OAuth2); with `hosted_domain`, the Workspace `hd` claim must match.
    Google,
    /// Okta (OIDC); `issuer` is the Okta authorization server.
    Okta,
    /// GitHub (OAuth2): the user and their primary verified email from the REST API.
    Github,
}

/// Which claims of the ID token or userinfo answer hold what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMap {
    /// The stable user id at the provider.
    pub subject: String,
    /// Email address.
    pub email: String,
    /// Whether the provider verified the email (a boolean claim).
    pub email_verified: String,
    /// Display name.
    pub name: String,
}

impl Default for ClaimMap {
    fn default() -> Self {
        ClaimMap {
            subject: "sub".into(),
            email: "email".into(),
            email_verified: "email_verified".into(),
            name: "name".into(),
        }
    }
}

/// A connection as the administrator writes it (create or replace).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    /// Shown on the sign-in page: "Continue with <name>".
    pub name: String,
    /// `oidc` or `oauth2` (a preset may imply it).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Provider preset.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// OIDC issuer (discovery at `{issuer}/.well-known/openid-configuration`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Entra ID tenant id, `organizations` or `common` (preset `entra`).
    #[serde(default)]
    pub entra_tenant: Option<String>,
    /// For multi-tenant Entra connections: the tenant ids (`tid`) accepted; empty = any.
    #[serde(default)]
    pub entra_allowed_tenants: Vec<String>,
    /// Google Workspace domain the `hd` claim must equal (preset `google`).
    #[serde(default)]
    pub hosted_domain: Option<String>,
    /// OAuth2: authorization endpoint.
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// OAuth2: token endpoint.
    #[serde(default)]
    pub token_url: Option<String>,
    /// OAuth2: userinfo endpoint; OIDC: ignored (discovered).
    #[serde(default)]
    pub userinfo_url: Option<String>,
    /// OIDC: also call the discovered userinfo endpoint and merge its claims.
    #[serde(default)]
    pub use_userinfo: bool,
    /// Client id at the provider (OIDC, OAuth2).
    #[serde(default)]
    pub client_id: String,
    /// SAML: the IdP's metadata XML (entity id, SSO URL, signing certificates).
    #[serde(default)]
    pub idp_metadata_xml: Option<String>,
    /// SAML: where to fetch the IdP's metadata (read once, when the connection is written).
    #[serde(default)]
    pub idp_metadata_url: Option<String>,
    /// SAML without metadata: the IdP's entity id.
    #[serde(default)]
    pub idp_entity_id: Option<String>,
    /// SAML without metadata: the IdP's HTTP-Redirect SSO URL.
    #[serde(default)]
    pub idp_sso_url: Option<String>,
    /// SAML: IdP signing certificates (PEM or base64 DER), more than one during a
    /// rollover; added to those of the metadata.
    #[serde(default)]
    pub idp_certificates: Vec<String>,
    /// SAML: sign AuthnRequests (a key pair is made for the connection; its certificate
    /// is in the SP metadata).
    #[serde(default)]
    pub sign_requests: bool,
    /// SAML: require the assertion itself to be signed, not only the response (default
    /// true).
    #[serde(default)]
    pub want_assertions_signed: Option<bool>,
    /// Client secret; on replace, absent keeps the stored one.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes requested (OIDC always includes `openid`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claim names.
    #[serde(default)]
    pub claims: Option<ClaimMap>,
    /// Refuse emails the provider does not mark verified.
    #[serde(default)]
    pub require_verified_email: Option<bool>,
    /// Email domains allowed to sign in through this connection (also used for
    /// home-realm discovery).
    pub allowed_domains: Vec<String>,
    /// Role given to users provisioned on their first sign-in.
    pub default_role: String,
    /// Create users on first sign-in (JIT); without it only existing users sign in.
    #[serde(default = "yes")]
    pub jit: bool,
    /// Link a first sign-in to an existing user of the same email (off by default). Even
    /// on, only when the provider marks the email verified, and never to an owner or
    /// admin (they keep their password sign-in).
    #[serde(default)]
    pub link_existing_users: bool,
    /// Shown on the sign-in page and used.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The identity provider side of a SAML connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlIdp {
    /// IdP entity id (the Issuer of its responses).
    pub entity_id: String,
    /// HTTP-Redirect SingleSignOnService URL.
    pub sso_url: String,
    /// Signing certificates, base64 DER.
    pub certificates: Vec<String>,
    /// AuthnRequests are signed.
    pub sign_requests: bool,
    /// The assertion must carry its own signature.
    pub want_assertions_signed: bool,
    /// The SP's certificate for signed requests (base64 DER); its key is sealed.
    pub sp_certificate: Option<String>,
}

/// A stored connection (everything but the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// `c_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Preset, if any.
    pub preset: Option<Preset>,
    /// OIDC issuer; for multi-tenant Entra the template with `{tenantid}`.
    pub issuer: Option<String>,
    /// Where OIDC discovery is fetched from (`{issuer}/.well-known/openid-configuration`,
    /// or the multi-tenant Entra endpoint).
    pub discovery_url: Option<String>,
    /// Accepted Entra tenants (multi-tenant issuers only).
    pub entra_allowed_tenants: Vec<String>,
    /// Required Workspace domain.
    pub hosted_domain: Option<String>,
    /// OAuth2 endpoints.
    pub authorize_url: Option<String>,
    /// OAuth2 token endpoint.
    pub token_url: Option<String>,
    /// Userinfo endpoint (OAuth2; OIDC discovers it).
    pub userinfo_url: Option<String>,
    /// GitHub: the emails endpoint (primary verified address).
    pub emails_url: Option<String>,
    /// OIDC: merge userinfo claims.
    pub use_userinfo: bool,
    /// Client id.
    pub client_id: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Claim names (SAML: `subject` `NameID` or an attribute name; `email` and `name`
    /// attribute names).
    pub claims: ClaimMap,
    /// SAML settings.
    #[serde(default)]
    pub saml: Option<SamlIdp>,
    /// Refuse unverified emails.
    pub require_verified_email: bool,
    /// Allowed email domains (lowercase).
    pub allowed_domains: Vec<String>,
    /// Role of provisioned users.
    pub default_role: String,
    /// JIT provisioning.
    pub jit: bool,
    /// Link first sign-ins to existing users by verified email.
    #[serde(default)]
    pub link_existing_users: bool,
    /// In use.
    pub enabled: bool,
}

/// A domain name as written in `allowed_domains` / `hosted_domain`.
pub fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && !d.starts_with('.')
        && !d.ends_with('.')
        && !d.contains("..")
        && d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

impl Connection {
    /// Apply the preset and validate `input`: the connection to store, or what is wrong
    /// (field named). `allow_http_loopback` is the origin's [`crate::config::SsoSettings`]
    /// rule for URLs.
    pub fn from_input(id: String, mut input: ConnectionInput, allow_http_loopback: bool) -> Result<Connection, String> {
        let name = input.name.trim().to_string();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err("name: 1–100 printable characters".into());
        }
        let saml_wanted = input.protocol == Some(Protocol::Saml);
        if !saml_wanted && (input.client_id.is_empty() || input.client_id.len() > 256) {
            return Err("client_id: 1–256 bytes".into());
        }
        let mut claims = input.claims.take().unwrap_or_default();
        let mut require_verified = input.require_verified_email;
        let mut discovery_url = None;
        let mut emails_url = None;
        let mut issuer = input.issuer.take();
        if saml_wanted && input.preset.is_some() {
            return Err("preset: presets are for OIDC and OAuth2; SAML takes the IdP's metadata".into());
        }
        let protocol = match input.preset {
            None => input.protocol.ok_or("protocol: `oidc`, `oauth2` or `saml` (or a preset)")?,
            Some(Preset::Entra) => {
                if input.protocol == Some(Protocol::Oauth2) {
                    return Err("preset entra: is OIDC".into());
                }
                let tenant =
                    input.entra_tenant.take().ok_or("entra_tenant: a tenant id, `organizations` or `common`")?;
                let ok = !tenant.is_empty()
                    && tenant.len() <= 64
                    && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !ok {
                    return Err("entra_tenant: a tenant id, `organizations` or `common`".into());
                }
                if matches!(tenant.as_str(), "organizations" | "common") {
                    // Multi-tenant: the document's issuer is a template with `{tenantid}`.
                    discovery_url = Some(format!(
                        "https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"
                    ));
                    issuer = Some("https://login.microsoftonline.com/{tenantid}/v2.0".into());
                } else {
                    issuer = Some(format!("https://login.microsoftonline.com/{tenant}/v2.0"));
                }
                // Entra has no `email_verified`: its `email` is the user's `mail`
                // attribute, which any tenant's admin can set. The optional claim
                // `xms_edov` (email domain owner verified) is what stands for it; without it
                // new users may still be provisioned, but no existing user is ever linked.
                if input.claims.is_none() {
                    claims = ClaimMap { email_verified: "xms_edov".into(), ..ClaimMap::default() };
                }
                require_verified = require_verified.or(Some(false));
                if input.scopes.is_empty() {
                    input.scopes = vec!["openid".into(), "email".into(), "profile".into()];
                }
                Protocol::Oidc
            }
            Some(Preset::Google) => {
                if input.protocol == Some(Protocol::Oauth2) {
                    input.authorize_url.get_or_insert("https://accounts.google.com/o/oauth2/v2/auth".into());
                    input.token_url.get_or_insert("https://oauth2.googleapis.com/token".into());
                    input.userinfo_url.get_or_insert("https://openidconnect.googleapis.com/v1/userinfo".into());
                    if input.scopes.is_empty() {
                        input.scopes = vec!["openid".into(), "email".into(), "profile".into()];
                    }
                    Protocol::Oauth2
                } else {
                    issuer = Some("https://accounts.google.com".into());
                    if input.scopes.is_empty() {
                        input.scopes = vec!["openid".into(), "email".into(), "profile".into()];
                    }
                    Protocol::Oidc
                }
            }
            Some(Preset::Okta) => {
                if issuer.is_none() {
                    return Err(
                        "issuer: the Okta authorization server, e.g. https://acme.okta.com/oauth2/default".into()
                    );
                }
                Protocol::Oidc
            }
            Some(Preset::Github) => {
                input.authorize_url.get_or_insert("https://github.com/login/oauth/authorize".into());
                input.token_url.get_or_insert("https://github.com/login/oauth/access_token".into());
                input.userinfo_url.get_or_insert("https://api.github.com/user".into());
                emails_url = Some("https://api.github.com/user/emails".to_string());
                if input.scopes.is_empty() {
                    input.scopes = vec!["read:user".into(), "user:email".into()];
                }
                if input.claims.is_none() {
                    claims = ClaimMap { subject: "id".into(), ..ClaimMap::default() };
                }
                // The address comes from /user/emails, and only a primary verified one.
                require_verified = require_verified.or(Some(true));
                Protocol::Oauth2
            }
        };
        let url_ok = |field: &str, u: &Option<String>| -> Result<(), String> {
            match u {
                Some(u) if u.len() <= 2048 && http::url_allowed(&u.replace("{tenantid}", "t"), allow_http_loopback) => {
                    Ok(())
                }
                Some(u) => Err(format!("{field}: `{u}` must be an https URL")),
                None => Ok(()),
            }
        };
        let mut saml = None;
        match protocol {
            Protocol::Saml => {
                let (mut entity_id, mut sso_url, mut certs) = (None, None, Vec::new());
                if let Some(xml) = input.idp_metadata_xml.as_deref() {
                    if xml.len() > 512 * 1024 {
                        return Err("idp_metadata_xml: at most 512 KiB".into());
                    }
                    let (e, u, c) = saml::idp_from_metadata(xml).map_err(|m| format!("idp_metadata_xml: {m}"))?;
                    (entity_id, sso_url, certs) = (Some(e), Some(u), c);
                }
                entity_id = input.idp_entity_id.take().or(entity_id);
                sso_url = input.idp_sso_url.take().or(sso_url);
                certs.extend(input.idp_certificates.iter().cloned());
                let entity_id = entity_id
                    .filter(|e| !e.is_empty() && e.len() <= 1024)
                    .ok_or("idp_entity_id: required (or idp_metadata_xml / idp_metadata_url)")?;
                let sso_url = sso_url.ok_or("idp_sso_url: required (or idp_metadata_xml / idp_metadata_url)")?;
                url_ok("idp_sso_url", &Some(sso_url.clone()))?;
                let mut normalised = Vec::new();
                for c in &certs {
                    let n = saml::normalise_certificate(c).map_err(|m| format!("idp_certificates: {m}"))?;
                    if !normalised.contains(&n) {
                        normalised.push(n);
                    }
                }
                if normalised.is_empty() || normalised.len() > 10 {
                    return Err("idp_certificates: 1–10 IdP signing certificates".into());
                }
                if input.claims.is_none() {
                    claims = ClaimMap { subject: "NameID".into(), name: "displayName".into(), ..ClaimMap::default() };
                }
                saml = Some(SamlIdp {
                    entity_id,
                    sso_url,
                    certificates: normalised,
                    sign_requests: input.sign_requests,
                    want_assertions_signed: input.want_assertions_signed.unwrap_or(true),
                    sp_certificate: None,
                });
                issuer = None;
                input.scopes.clear();
            }
            Protocol::Oidc => {
                let i = issuer.as_ref().ok_or("issuer: required for OIDC")?;
                url_ok("issuer", &issuer)?;
                if discovery_url.is_none() {
                    discovery_url = Some(format!("{}/.well-known/openid-configuration", i.trim_end_matches('/')));
                }
                if !input.scopes.iter().any(|s| s == "openid") {
                    input.scopes.insert(0, "openid".into());
                }
            }
            Protocol::Oauth2 => {
                for (f, u) in [
                    ("authorize_url", &input.authorize_url),
                    ("token_url", &input.token_url),
                    ("userinfo_url", &input.userinfo_url),
                ] {
                    if u.is_none() {
                        return Err(format!("{f}: required for OAuth2"));
                    }
                    url_ok(f, u)?;
                }
                issuer = None;
            }
        }
        url_ok("discovery", &discovery_url)?;
        if input.scopes.len() > 20
            || input.scopes.iter().any(|s| s.is_empty() || s.len() > 100 || s.contains(char::is_whitespace))
        {
            return Err("scopes: at most 20, each 1–100 bytes without spaces".into());
        }
        for (f, c) in [
            ("claims.subject", &claims.subject),
            ("claims.email", &claims.email),
            ("claims.email_verified", &claims.email_verified),
            ("claims.name", &claims.name),
        ] {
            if c.is_empty() || c.len() > 64 {
                return Err(format!("{f}: 1–64 bytes"));
            }
        }
        let mut domains = Vec::new();
        for d in &input.allowed_domains {
            let d = d.trim().to_ascii_lowercase();
            if !valid_domain(&d) {
                return Err(format!("allowed_domains: `{d}` is not a domain name"));
            }
            domains.push(d);
        }
        if domains.is_empty() || domains.len() > 100 {
            return Err("allowed_domains: 1–100 email domains".into());
        }
        domains.sort();
        domains.dedup();
        let hosted_domain = match input.hosted_domain.take() {
            Some(h) => {
                let h = h.trim().to_ascii_lowercase();
                if input.preset != Some(Preset::Google) || !valid_domain(&h) {
                    return Err("hosted_domain: a domain name, with preset google".into());
                }
                Some(h)
            }
            None => None,
        };
        if input.entra_allowed_tenants.len() > 100 || input.entra_allowed_tenants.iter().any(|t| t.len() > 64) {
            return Err("entra_allowed_tenants: at most 100 tenant ids".into());
        }
        let multi_tenant = issuer.as_deref().is_some_and(|i| i.contains("{tenantid}"));
        if !input.entra_allowed_tenants.is_empty() && !multi_tenant {
            return Err("entra_allowed_tenants: only for multi-tenant Entra connections".into());
        }
        if multi_tenant && input.entra_allowed_tenants.is_empty() {
            // Otherwise any Entra tenant in the world could provision users here.
            return Err(
                "entra_allowed_tenants: a multi-tenant Entra connection must name the tenant ids it accepts".into()
            );
        }
        if input.default_role == "owner" || input.default_role == "admin" {
            return Err("default_role: provisioned users cannot be owners or admins".into());
        }
        if input.client_secret.as_ref().is_some_and(|s| s.is_empty() || s.len() > 1024) {
            return Err("client_secret: 1–1024 bytes".into());
        }
        Ok(Connection {
            id,
            name,
            protocol,
            preset: input.preset,
            issuer,
            discovery_url,
            entra_allowed_tenants: input.entra_allowed_tenants,
            hosted_domain,
            authorize_url: input.authorize_url,
            token_url: input.token_url,
            userinfo_url: input.userinfo_url,
            emails_url,
            use_userinfo: input.use_userinfo,
            client_id: input.client_id,
            scopes: input.scopes,
            claims,
            saml,
            require_verified_email: require_verified.unwrap_or(true),
            allowed_domains: domains,
            default_role: input.default_role,
            jit: input.jit,
            link_existing_users: input.link_existing_users,
            enabled: input.enabled,
        })
    }

    /// Whether `email`'s domain is one of the allowed domains (one `@` only).
    pub fn allows_email(&self, email: &str) -> bool {
        email.matches('@').count() == 1
            && email.rsplit_once('@').is_some_and(|(_, d)| self.allowed_domains.iter().any(|a| a == d))
    }

    /// What identifies users at this provider: a subject from one of these is not the
    /// same subject once any of them changes (links are dropped then), and a stored
    /// client secret is not sent to a changed endpoint.
    pub fn identity_fingerprint(&self) -> String {
        serde_json::json!([
            self.protocol,
            self.issuer,
            self.discovery_url,
            self.authorize_url,
            self.token_url,
            self.userinfo_url,
            self.client_id,
            self.claims.subject,
            self.saml.as_ref().map(|s| (&s.entity_id, &s.sso_url, &s.certificates)),
        ])
        .to_string()
    }
}

/// Seals client secrets: AES-256-GCM, a random 96-bit nonce per secret, bound (as
/// associated data) to the tenant and connection so a sealed value cannot be moved.
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    /// A box with `key`.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox { cipher: Aes256Gcm::new(key.into()) }
    }

    fn aad(tenant: &str, connection: &str) -> Vec<u8> {
        format!("gatehouse sso secret\0{tenant}\0{connection}").into_bytes()
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, tenant: &str, connection: &str, secret: &str) -> Vec<u8> {
        let nonce: [u8; 12] = gatehouse_bundler::random::random_bytes();
        let aad = Self::aad(tenant, connection);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: &aad })
            .expect("AES-GCM encryption of a bounded secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// The secret, or `None` if the value was tampered with, moved or sealed with
    /// another key.
    pub fn open(&self, tenant: &str, connection: &str, sealed: &[u8]) -> Option<String> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        let aad = Self::aad(tenant, connection);
        let pt = self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).ok()?;
        String::from_utf8(pt).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> ConnectionInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_where_they_were_sealed() {
        let b = SecretBox::new(&[7; 32]);
        let s = b.seal("t1", "c1", "hunter2-client-secret");
        assert!(!s.windows(7).any(|w| w == b"hunter2"), "the secret is not stored in clear");
        assert_eq!(b.open("t1", "c1", &s).as_deref(), Some("hunter2-client-secret"));
        assert_eq!(b.open("t2", "c1", &s), None, "moved to another tenant");
        assert_eq!(b.open("t1", "c2", &s), None, "moved to another connection");
        assert_eq!(SecretBox::new(&[8; 32]).open("t1", "c1", &s), None, "another key");
        let mut bad = s.clone();
        bad[20] ^= 1;
        assert_eq!(b.open("t1", "c1", &bad), None, "tampered");
        assert_eq!(b.open("t1", "c1", &s[..10]), None, "truncated");
    }

    #[test]
    fn presets_fill_in_and_validation_names_the_field() {
        let c = Connection::from_input(
            "c_1".into(),
            input(serde_json::json!({"name": "Entra", "preset": "entra", "entra_tenant": "organizations",
                "client_id": "x", "allowed_domains": ["Example.com"], "default_role": "viewer",
                "entra_allowed_tenants": ["tid-1"]})),
            false,
        )
        .unwrap();
        assert_eq!(c.protocol, Protocol::Oidc);
        assert_eq!(c.issuer.as_deref(), Some("https://login.microsoftonline.com/{tenantid}/v2.0"));
        assert_eq!(
            c.discovery_url.as_deref(),
            Some("https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration")
        );
        assert_eq!(c.allowed_domains, ["example.com"]);
        assert!(!c.require_verified_email);
        let g = Connection::from_input(
            "c_2".into(),
            input(serde_json::json!({"name": "GitHub", "preset": "github", "client_id": "x",
                "allowed_domains": ["example.com"], "default_role": "viewer"})),
            false,
        )
        .unwrap();
        assert_eq!((g.protocol, g.claims.subject.as_str()), (Protocol::Oauth2, "id"));
        assert_eq!(g.emails_url.as_deref(), Some("https://api.github.com/user/emails"));
        let bad = |j: serde_json::Value, want: &str| {
            let e = Connection::from_input("c".into(), input(j), false).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        };
        let base = serde_json::json!({"name": "X", "protocol": "oidc", "issuer": "https://idp.example.com",
            "client_id": "x", "allowed_domains": ["example.com"], "default_role": "viewer"});
        let with = |k: &str, v: serde_json::Value| {
            let mut j = base.clone();
            j[k] = v;
            j
        };
        bad(with("issuer", "http://idp.example.com".into()), "issuer:");
        bad(with("issuer", "http://127.0.0.1:4000".into()), "issuer:");
        bad(with("allowed_domains", serde_json::json!([])), "allowed_domains:");
        bad(with("allowed_domains", serde_json::json!(["*.example.com"])), "allowed_domains:");
        bad(with("default_role", "owner".into()), "default_role:");
        bad(with("default_role", "admin".into()), "default_role:");
        let entra_any = serde_json::json!({"name": "E", "preset": "entra", "entra_tenant": "common",
            "client_id": "x", "allowed_domains": ["example.com"], "default_role": "viewer"});
        bad(entra_any, "entra_allowed_tenants:");
        bad(with("hosted_domain", "example.com".into()), "hosted_domain:");
        bad(with("protocol", "oauth2".into()), "authorize_url:");
        bad(with("scopes", serde_json::json!(["a b"])), "scopes:");
        assert!(Connection::from_input("c".into(), input(with("issuer", "http://127.0.0.1:4000".into())), true).is_ok());
    }

    #[test]
    fn allowed_domains_match_the_whole_domain() {
        let c = Connection::from_input(
            "c".into(),
            input(serde_json::json!({"name": "X", "protocol": "oidc", "issuer": "https://idp.example.com",
                "client_id": "x", "allowed_domains": ["example.com"], "default_role": "viewer"})),
            false,
        )
        .unwrap();
        assert!(c.allows_email("a@example.com"));
        assert!(!c.allows_email("a@evil-example.com"));
        assert!(!c.allows_email("a@example.com.evil.test"));
        assert!(!c.allows_email("a@sub.example.com"));
        assert!(!c.allows_email("example.com"));
        assert!(!c.allows_email("x@evil.test@example.com"), "two @");
    }
}
