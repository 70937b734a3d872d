//! The relying party: starts an authorization-code flow with PKCE (S256), `state` and
//! `nonce`, and finishes it by exchanging the code and validating what comes back.
//!
//! OIDC uses the `openidconnect` crate for discovery, keys and ID token validation (iss,
//! aud, azp, exp, nonce, signature; algorithms pinned to what the provider advertises,
//! never `none` or HMAC); generic OAuth2 uses the `oauth2` crate and the provider's userinfo
//! endpoint. Discovery documents and keys are cached per connection; an unknown `kid`
//! refetches the keys (at most once per [`KEY_REFETCH_MIN`]) and retries once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use serde_json::Value;

use super::http::IdpHttp;
use super::{Connection, Protocol};

/// Shortest time between two key refetches of one connection.
pub const KEY_REFETCH_MIN: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `iat`.
const SKEW_SECS: i64 = 120;

/// Why a flow failed; [`SsoError::reason`] is the stable reason code.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// Discovery or keys could not be fetched or are unacceptable.
    #[error("provider discovery failed: {0}")]
    Discovery(String),
    /// The token endpoint refused the code (used, expired, wrong verifier, wrong client).
    #[error("code exchange failed: {0}")]
    CodeExchange(String),
    /// No ID token in an OIDC token response.
    #[error("the token response has no ID token")]
    IdTokenMissing,
    /// The ID token failed validation.
    #[error("ID token refused: {1}")]
    IdToken(&'static str, String),
    /// Userinfo failed.
    #[error("userinfo failed: {0}")]
    Userinfo(String),
    /// A required claim is missing or malformed.
    #[error("claim missing or malformed: {0}")]
    Claims(String),
    /// The Workspace `hd` claim is not the configured domain.
    #[error("hosted domain mismatch")]
    HostedDomain,
    /// The Entra tenant of the token is not accepted.
    #[error("Entra tenant not accepted")]
    EntraTenant,
    /// Configuration of the connection is unusable (bad URL, missing secret).
    #[error("connection misconfigured: {0}")]
    Config(String),
    /// A SAML response was refused (reason code, detail).
    #[error("SAML response refused: {1}")]
    Saml(&'static str, String),
}

impl SsoError {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            SsoError::Discovery(_) => "sso_discovery_failed",
            SsoError::CodeExchange(_) => "sso_code_exchange_failed",
            SsoError::IdTokenMissing => "sso_id_token_missing",
            SsoError::IdToken(r, _) => r,
            SsoError::Userinfo(_) => "sso_userinfo_failed",
            SsoError::Claims(_) => "sso_claims_missing",
            SsoError::HostedDomain => "sso_hosted_domain_mismatch",
            SsoError::EntraTenant => "sso_tenant_not_allowed",
            SsoError::Config(_) => "sso_connection_misconfigured",
            SsoError::Saml(r, _) => r,
        }
    }
}

/// What a started flow must remember (in the sign-in transaction).
pub struct Started {
    /// Where to send the browser.
    pub url: String,
    /// The `state` value (the transaction's handle).
    pub state: String,
    /// The `nonce` (OIDC; empty for OAuth2).
    pub nonce: String,
    /// The PKCE verifier.
    pub verifier: String,
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Stable id at the provider.
    pub subject: String,
    /// Email, lowercase, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider marked it verified.
    pub email_verified: bool,
    /// Display name.
    pub name: String,
    /// Authentication methods the provider reported (`amr`).
    pub amr: Vec<String>,
    /// The token's issuer (OIDC) or the userinfo URL (OAuth2).
    pub issuer: String,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    fetched: Instant,
    keys_fetched: Instant,
}

/// The relying party: the HTTP client and the discovery cache.
pub struct RelyingParty {
    http: IdpHttp,
    ttl: Duration,
    cache: Mutex<HashMap<String, Arc<Discovered>>>,
    /// Recent discovery failures: a broken or unreachable provider is not called again
    /// for [`FAILURE_BACKOFF`] (anonymous sign-in starts must not turn into a stream of
    /// outbound calls).
    failures: Mutex<HashMap<String, (Instant, String)>>,
}

/// How long a failed discovery is remembered.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(30);

/// Algorithms an ID token may use: asymmetric only, and only those the provider
/// advertises.
fn acceptable_algs(md: &CoreProviderMetadata) -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as A;
    md.id_token_signing_alg_values_supported()
        .iter()
        .filter(|a| {
            matches!(
                a,
                A::RsaSsaPkcs1V15Sha256
                    | A::RsaSsaPkcs1V15Sha384
                    | A::RsaSsaPkcs1V15Sha512
                    | A::RsaSsaPssSha256
                    | A::RsaSsaPssSha384
                    | A::RsaSsaPssSha512
                    | A::EcdsaP256Sha256
                    | A::EcdsaP384Sha384
                    | A::EdDsa
            )
        })
        .cloned()
        .collect()
}

/// The payload of a JWT whose signature was already verified.
fn payload(jwt: &str) -> Result<Value, SsoError> {
    let part = jwt.split('.').nth(1).ok_or_else(|| SsoError::Claims("ID token payload".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| SsoError::Claims("ID token payload".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| SsoError::Claims("ID token payload".into()))
}

fn claim_str(v: &Value, name: &str) -> Option<String> {
    match v.get(name)? {
        Value::String(s) if !s.is_empty() && s.len() <= 512 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn claim_bool(v: &Value, name: &str) -> bool {
    match v.get(name) {
        Some(Value::Bool(b)) => *b,
        // Some providers send "true" as a string.
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// Build a profile from merged claims with the connection's claim map.
fn profile_of(c: &Connection, claims: &Value, issuer: String) -> Result<Profile, SsoError> {
    let subject = claim_str(claims, &c.claims.subject).ok_or_else(|| SsoError::Claims(c.claims.subject.clone()))?;
    let email = claim_str(claims, &c.claims.email).map(|e| e.to_ascii_lowercase());
    let amr = match claims.get("amr") {
        Some(Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_str()).take(10).map(|s| s.chars().take(32).collect()).collect()
        }
        _ => Vec::new(),
    };
    Ok(Profile {
        subject,
        email,
        email_verified: claim_bool(claims, &c.claims.email_verified),
        name: claim_str(claims, &c.claims.name).unwrap_or_default().chars().take(200).collect(),
        amr,
        issuer,
    })
}

impl RelyingParty {
    /// A relying party calling providers through `http`, caching discovery for `ttl`.
    pub fn new(http: IdpHttp, ttl: Duration) -> RelyingParty {
        RelyingParty { http, ttl, cache: Mutex::new(HashMap::new()), failures: Mutex::new(HashMap::new()) }
    }

    /// The HTTP client.
    pub fn http(&self) -> &IdpHttp {
        &self.http
    }

    fn cache_key(tenant: &str, c: &Connection) -> String {
        format!("{tenant}/{}/{}", c.id, c.discovery_url.as_deref().unwrap_or(""))
    }

    /// Discovery document and keys of an OIDC connection (cached).
    async fn discovered(&self, tenant: &str, c: &Connection, force_keys: bool) -> Result<Arc<Discovered>, SsoError> {
        let key = Self::cache_key(tenant, c);
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some(d) = &cached {
            let fresh = d.fetched.elapsed() < self.ttl;
            if fresh && (!force_keys || d.keys_fetched.elapsed() < KEY_REFETCH_MIN) {
                return Ok(d.clone());
            }
        }
        if let Some((at, why)) = self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned() {
            if at.elapsed() < FAILURE_BACKOFF {
                return Err(SsoError::Discovery(format!(
                    "{why} (failed less than {}s ago)",
                    FAILURE_BACKOFF.as_secs()
                )));
            }
        }
        let fetched = self.fetch_discovery(c).await;
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let md = match fetched {
            Ok(md) => {
                failures.remove(&key);
                md
            }
            Err(e) => {
                if failures.len() >= 10_000 {
                    failures.clear();
                }
                failures.insert(key, (Instant::now(), e.to_string()));
                return Err(e);
            }
        };
        drop(failures);
        let now = Instant::now();
        let d = Arc::new(Discovered { metadata: md, fetched: now, keys_fetched: now });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(key, d.clone());
        Ok(d)
    }

    /// Fetch and check the discovery document and keys of `c`.
    async fn fetch_discovery(&self, c: &Connection) -> Result<CoreProviderMetadata, SsoError> {
        let url = c.discovery_url.as_deref().ok_or_else(|| SsoError::Config("no discovery URL".into()))?;
        let doc = self.http.get_json(url, None).await.map_err(SsoError::Discovery)?;
        let md: CoreProviderMetadata =
            serde_json::from_value(doc).map_err(|e| SsoError::Discovery(format!("discovery document: {e}")))?;
        let want = c.issuer.as_deref().unwrap_or_default();
        if md.issuer().as_str().trim_end_matches('/') != want.trim_end_matches('/') {
            return Err(SsoError::Discovery(format!("issuer `{}` is not `{want}`", md.issuer().as_str())));
        }
        for (what, u) in [
            ("authorization_endpoint", Some(md.authorization_endpoint().as_str())),
            ("token_endpoint", md.token_endpoint().map(|u| u.as_str())),
            ("jwks_uri", Some(md.jwks_uri().as_str())),
            ("userinfo_endpoint", md.userinfo_endpoint().map(|u| u.as_str())),
        ] {
            if let Some(u) = u {
                if !self.http.allows(u) {
                    return Err(SsoError::Discovery(format!("{what} `{u}` is not an https URL")));
                }
            }
        }
        if md.token_endpoint().is_none() {
            return Err(SsoError::Discovery("no token_endpoint".into()));
        }
        if acceptable_algs(&md).is_empty() {
            return Err(SsoError::Discovery("the provider advertises no asymmetric ID token algorithm".into()));
        }
        let jwks = CoreJsonWebKeySet::fetch_async(md.jwks_uri(), &self.http)
            .await
            .map_err(|e| SsoError::Discovery(format!("keys: {e}")))?;
        Ok(md.set_jwks(jwks))
    }

    /// Forget what is cached for a connection (after it is changed or deleted).
    pub fn forget(&self, tenant: &str, connection: &str) {
        let prefix = format!("{tenant}/{connection}/");
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| !k.starts_with(&prefix));
    }

    /// Start a flow: the provider URL to send the browser to, and what to remember.
    pub async fn start(&self, tenant: &str, c: &Connection, redirect_uri: &str) -> Result<Started, SsoError> {
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|e| SsoError::Config(e.to_string()))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        match c.protocol {
            Protocol::Oidc => {
                let extra_scopes = c.scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone()));
                let d = self.discovered(tenant, c, false).await?;
                let client =
                    CoreClient::from_provider_metadata(d.metadata.clone(), ClientId::new(c.client_id.clone()), None)
                        .set_redirect_uri(redirect);
                let mut req = client
                    .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
                    .add_scopes(extra_scopes)
                    .set_pkce_challenge(challenge);
                if let Some(hd) = &c.hosted_domain {
                    req = req.add_extra_param("hd", hd.clone());
                }
                let (url, state, nonce) = req.url();
                Ok(Started {
                    url: url.to_string(),
                    state: state.secret().clone(),
                    nonce: nonce.secret().clone(),
                    verifier: verifier.secret().clone(),
                })
            }
            Protocol::Saml => Err(SsoError::Config("SAML connections start in sso::saml".into())),
            Protocol::Oauth2 => {
                let client = self.oauth2_client(c, None)?.set_redirect_uri(redirect);
                // Every configured scope: only OIDC adds `openid` by itself.
                let scopes = c.scopes.iter().map(|s| oauth2::Scope::new(s.clone()));
                let mut req =
                    client.authorize_url(CsrfToken::new_random).add_scopes(scopes).set_pkce_challenge(challenge);
                if let Some(hd) = &c.hosted_domain {
                    req = req.add_extra_param("hd", hd.clone());
                }
                let (url, state) = req.url();
                Ok(Started {
                    url: url.to_string(),
                    state: state.secret().clone(),
                    nonce: String::new(),
                    verifier: verifier.secret().clone(),
                })
            }
        }
    }

    fn oauth2_client(
        &self,
        c: &Connection,
        secret: Option<&str>,
    ) -> Result<
        oauth2::basic::BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        SsoError,
    > {
        let url = |u: &Option<String>| u.clone().ok_or_else(|| SsoError::Config("missing OAuth2 endpoint".into()));
        let mut client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(c.client_id.clone()))
            .set_auth_uri(oauth2::AuthUrl::new(url(&c.authorize_url)?).map_err(|e| SsoError::Config(e.to_string()))?)
            .set_token_uri(oauth2::TokenUrl::new(url(&c.token_url)?).map_err(|e| SsoError::Config(e.to_string()))?);
        if let Some(s) = secret {
            client = client.set_client_secret(oauth2::ClientSecret::new(s.to_string()));
        }
        Ok(client)
    }

    /// Finish a flow: exchange `code` (with the transaction's PKCE verifier) and validate
    /// the answer; the signed-in profile.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        tenant: &str,
        c: &Connection,
        secret: Option<&str>,
        redirect_uri: &str,
        code: &str,
        nonce: &str,
        verifier: &str,
        now: i64,
    ) -> Result<Profile, SsoError> {
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|e| SsoError::Config(e.to_string()))?;
        match c.protocol {
            Protocol::Oidc => {
                let d = self.discovered(tenant, c, false).await?;
                let client = CoreClient::from_provider_metadata(
                    d.metadata.clone(),
                    ClientId::new(c.client_id.clone()),
                    secret.map(|s| ClientSecret::new(s.to_string())),
                )
                .set_redirect_uri(redirect);
                let token = client
                    .exchange_code(AuthorizationCode::new(code.to_string()))
                    .map_err(|e| SsoError::Config(e.to_string()))?
                    .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
                    .request_async(&self.http)
                    .await
                    .map_err(|e| SsoError::CodeExchange(describe(&e)))?;
                let id_token = token.id_token().ok_or(SsoError::IdTokenMissing)?.clone();
                let multi = c.issuer.as_deref().is_some_and(|i| i.contains("{tenantid}"));
                let check = |d: &Discovered| {
                    let client = CoreClient::from_provider_metadata(
                        d.metadata.clone(),
                        ClientId::new(c.client_id.clone()),
                        secret.map(|s| ClientSecret::new(s.to_string())),
                    );
                    let verifier = client
                        .id_token_verifier()
                        .set_allowed_algs(acceptable_algs(&d.metadata))
                        .require_issuer_match(!multi)
                        .set_issue_time_verifier_fn(move |iat| {
                            let iat = iat.timestamp();
                            if iat > now + SKEW_SECS {
                                Err(format!("issued in the future ({iat})"))
                            } else if iat < now - 3600 - SKEW_SECS {
                                Err(format!("issued too long ago ({iat})"))
                            } else {
                                Ok(())
                            }
                        });
                    id_token.claims(&verifier, &Nonce::new(nonce.to_string())).map(|_| ())
                };
                let outcome = match check(&d) {
                    Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                        // The provider may have rotated its keys: refetch once and retry.
                        tracing::info!(connection = %c.id, "unknown ID token key: refetching the provider's keys");
                        let d = self.discovered(tenant, c, true).await?;
                        check(&d)
                    }
                    other => other,
                };
                outcome.map_err(id_token_error)?;
                let jwt = id_token.to_string();
                let mut claims = payload(&jwt)?;
                let iss = claim_str(&claims, "iss").unwrap_or_default();
                // openidconnect 4.1 leaves `azp` unchecked; when present it must be us.
                if claims.get("azp").is_some() && claim_str(&claims, "azp").as_deref() != Some(c.client_id.as_str()) {
                    return Err(SsoError::IdToken("sso_id_token_wrong_audience", "azp is another client".into()));
                }
                provider_checks(c, &claims)?;
                if c.use_userinfo {
                    let url = d
                        .metadata
                        .userinfo_endpoint()
                        .ok_or_else(|| SsoError::Userinfo("the provider has no userinfo endpoint".into()))?;
                    let info = self
                        .http
                        .get_json(url.as_str(), Some(token.access_token().secret()))
                        .await
                        .map_err(SsoError::Userinfo)?;
                    // OIDC Core 5.3.2: userinfo `sub` must equal the ID token's.
                    if info.get("sub") != claims.get("sub") {
                        return Err(SsoError::Userinfo("userinfo `sub` differs from the ID token's".into()));
                    }
                    if let (Some(into), Some(from)) = (claims.as_object_mut(), info.as_object()) {
                        for (k, v) in from {
                            if !matches!(k.as_str(), "iss" | "aud" | "exp" | "iat" | "nonce" | "azp" | "sub") {
                                into.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
                profile_of(c, &claims, iss)
            }
            Protocol::Saml => Err(SsoError::Config("SAML connections finish in sso::saml".into())),
            Protocol::Oauth2 => {
                let client = self.oauth2_client(c, secret)?.set_redirect_uri(redirect);
                let token = client
                    .exchange_code(oauth2::AuthorizationCode::new(code.to_string()))
                    .set_pkce_verifier(oauth2::PkceCodeVerifier::new(verifier.to_string()))
                    .request_async(&self.http)
                    .await
                    .map_err(|e| SsoError::CodeExchange(describe(&e)))?;
                let access = token.access_token().secret();
                let userinfo = c.userinfo_url.as_deref().ok_or_else(|| SsoError::Config("no userinfo_url".into()))?;
                let mut claims = self.http.get_json(userinfo, Some(access)).await.map_err(SsoError::Userinfo)?;
                if let Some(emails) = &c.emails_url {
                    // GitHub: the primary, verified address, or none (never the profile's
                    // public email, which nobody verified).
                    let list = self.http.get_json(emails, Some(access)).await.map_err(SsoError::Userinfo)?;
                    let primary = list.as_array().and_then(|a| {
                        a.iter().find(|e| e["primary"] == Value::Bool(true) && e["verified"] == Value::Bool(true))
                    });
                    if let Some(obj) = claims.as_object_mut() {
                        obj.remove(&c.claims.email);
                        obj.remove(&c.claims.email_verified);
                        if let Some(p) = primary {
                            obj.insert(c.claims.email.clone(), p["email"].clone());
                            obj.insert(c.claims.email_verified.clone(), Value::Bool(true));
                        }
                    }
                }
                provider_checks(c, &claims)?;
                profile_of(c, &claims, userinfo.to_string())
            }
        }
    }
}

/// The provider-specific checks on verified ID token claims: a multi-tenant Entra issuer
/// (`…/{tenantid}/v2.0`) must carry the token's own `tid`, which must be an accepted
/// tenant; a Google Workspace connection's `hd` must be its domain.
fn provider_checks(c: &Connection, claims: &Value) -> Result<(), SsoError> {
    let template = c.issuer.as_deref().unwrap_or_default();
    if template.contains("{tenantid}") {
        let iss = claim_str(claims, "iss").unwrap_or_default();
        let tid = claim_str(claims, "tid").ok_or(SsoError::EntraTenant)?;
        let valid_tid = tid.len() <= 64 && tid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let want = template.replace("{tenantid}", &tid);
        if !valid_tid || iss != want {
            return Err(SsoError::IdToken("sso_id_token_wrong_issuer", format!("`{iss}` is not `{want}`")));
        }
        if !c.entra_allowed_tenants.is_empty() && !c.entra_allowed_tenants.contains(&tid) {
            return Err(SsoError::EntraTenant);
        }
    }
    if let Some(hd) = &c.hosted_domain {
        if claim_str(claims, "hd").as_deref() != Some(hd.as_str()) {
            return Err(SsoError::HostedDomain);
        }
    }
    Ok(())
}

/// An error and its sources, bounded for audit records.
fn describe<E: std::error::Error>(e: &E) -> String {
    super::http::chain(e).chars().take(500).collect()
}

fn id_token_error(e: ClaimsVerificationError) -> SsoError {
    let reason = match &e {
        ClaimsVerificationError::Expired(_) => "sso_id_token_expired",
        ClaimsVerificationError::InvalidAudience(_) => "sso_id_token_wrong_audience",
        ClaimsVerificationError::InvalidIssuer(_) => "sso_id_token_wrong_issuer",
        ClaimsVerificationError::InvalidNonce(_) => "sso_nonce_mismatch",
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey) => {
            "sso_id_token_unknown_key"
        }
        ClaimsVerificationError::SignatureVerification(_) => "sso_id_token_bad_signature",
        _ => "sso_id_token_invalid",
    };
    SsoError::IdToken(reason, describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(j: serde_json::Value) -> Connection {
        Connection::from_input("c".into(), serde_json::from_value(j).unwrap(), false).unwrap()
    }

    #[test]
    fn entra_multi_tenant_issuer_and_google_hosted_domain() {
        let entra = connection(serde_json::json!({"name": "E", "preset": "entra", "entra_tenant": "organizations",
            "client_id": "x", "allowed_domains": ["example.com"], "default_role": "viewer",
            "entra_allowed_tenants": ["11111111-2222-3333-4444-555555555555"]}));
        let tid = "11111111-2222-3333-4444-555555555555";
        let iss = format!("https://login.microsoftonline.com/{tid}/v2.0");
        assert!(provider_checks(&entra, &serde_json::json!({"iss": iss, "tid": tid})).is_ok());
        // Another tenant's issuer with our tid, or a tenant not accepted.
        let other = "https://login.microsoftonline.com/99999999-2222-3333-4444-555555555555/v2.0";
        assert_eq!(
            provider_checks(&entra, &serde_json::json!({"iss": other, "tid": tid})).unwrap_err().reason(),
            "sso_id_token_wrong_issuer"
        );
        let stranger = "99999999-2222-3333-4444-555555555555";
        let iss2 = format!("https://login.microsoftonline.com/{stranger}/v2.0");
        assert_eq!(
            provider_checks(&entra, &serde_json::json!({"iss": iss2, "tid": stranger})).unwrap_err().reason(),
            "sso_tenant_not_allowed"
        );
        assert_eq!(
            provider_checks(&entra, &serde_json::json!({"iss": iss})).unwrap_err().reason(),
            "sso_tenant_not_allowed"
        );
        // A tid that would rewrite the issuer's path is refused.
        let sneaky = "x/v2.0/../y";
        assert!(provider_checks(
            &entra,
            &serde_json::json!({"iss": format!("https://login.microsoftonline.com/{sneaky}/v2.0"), "tid": sneaky})
        )
        .is_err());
        let google = connection(serde_json::json!({"name": "G", "preset": "google", "hosted_domain": "Example.com",
            "client_id": "x", "allowed_domains": ["example.com"], "default_role": "viewer"}));
        assert!(provider_checks(&google, &serde_json::json!({"hd": "example.com"})).is_ok());
        for claims in [serde_json::json!({"hd": "evil.test"}), serde_json::json!({})] {
            assert_eq!(provider_checks(&google, &claims).unwrap_err().reason(), "sso_hosted_domain_mismatch");
        }
    }

    #[tokio::test]
    async fn a_failed_discovery_is_not_retried_at_once() {
        // Nothing listens on this port: the first start fails calling it, the second fails
        // from memory.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Connection::from_input(
            "c".into(),
            serde_json::from_value(serde_json::json!({"name": "X", "protocol": "oidc",
                "issuer": format!("http://127.0.0.1:{port}"), "client_id": "x",
                "allowed_domains": ["example.com"], "default_role": "viewer"}))
            .unwrap(),
            true,
        )
        .unwrap();
        let rp = RelyingParty::new(IdpHttp::new(Duration::from_secs(2), true), Duration::from_secs(60));
        let first = rp.start("t", &c, "https://origin.test/cb").await.err().unwrap().to_string();
        assert!(!first.contains("failed less than"), "{first}");
        let second = rp.start("t", &c, "https://origin.test/cb").await.err().unwrap().to_string();
        assert!(second.contains("failed less than 30s ago"), "{second}");
    }

    #[test]
    fn profile_uses_the_claim_map() {
        let c = Connection::from_input(
            "c".into(),
            serde_json::from_value(serde_json::json!({"name": "G", "preset": "github", "client_id": "x",
                "allowed_domains": ["example.com"], "default_role": "viewer"}))
            .unwrap(),
            false,
        )
        .unwrap();
        let p = profile_of(
            &c,
            &serde_json::json!({"id": 42, "email": "A@Example.com", "email_verified": true, "name": "A"}),
            "x".into(),
        )
        .unwrap();
        assert_eq!((p.subject.as_str(), p.email.as_deref(), p.email_verified), ("42", Some("a@example.com"), true));
        assert!(matches!(
            profile_of(&c, &serde_json::json!({"email": "a@example.com"}), "x".into()),
            Err(SsoError::Claims(_))
        ));
    }
}
