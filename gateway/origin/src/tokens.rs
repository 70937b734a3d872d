//! Token issuance: the region's signing keys (rotated with overlap), access JWTs, and
//! opaque refresh tokens with rotation and reuse detection.

use anyhow::{anyhow, Context as _, Result};
use base64::Engine as _;
use gatehouse_bundler::keys::TokenKey;
use jwt_simple::prelude::*;
use libsql::Connection;
use sha2::{Digest, Sha256};

use crate::identity::new_id;
use crate::store::{refresh_tokens, signing_keys};

/// The region's token-signing keys: the newest signs; every key not yet retired is
/// published (a rotated-out key stays in the JWKS until tokens it signed have expired).
pub struct SigningKeys {
    /// Key id of the signing key.
    pub current_kid: String,
    current: TokenKey,
    /// Every published key, by kid (to verify this region's own tokens).
    published: Vec<(String, TokenKey)>,
    /// JWKS JSON of every published key.
    pub jwks: String,
}

impl SigningKeys {
    /// Load from the directory database, generating the first key if there is none.
    pub async fn load(conn: &Connection, alg: &str, now: i64) -> Result<SigningKeys> {
        if !signing_keys::any_active(conn).await? {
            add_key(conn, alg, now).await?;
        }
        let mut keys = Vec::new();
        let mut published = Vec::new();
        let mut current = None;
        for k in signing_keys::published(conn, now).await? {
            keys.push(serde_json::from_str::<serde_json::Value>(&k.public_jwk)?);
            if current.is_none() && k.retired_at.is_none() {
                current = Some((k.kid.clone(), token_key(&k.alg, &k.private_pem, &k.kid)?));
            }
            published.push((k.kid.clone(), token_key(&k.alg, &k.private_pem, &k.kid)?));
        }
        let (current_kid, current) = current.ok_or_else(|| anyhow!("no active signing key"))?;
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        Ok(SigningKeys { current_kid, current, published, jwks })
    }

    /// Verify a token signed by one of the published keys (chosen by `kid`).
    pub fn verify<C: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        token: &str,
        opts: VerificationOptions,
    ) -> Result<JWTClaims<C>> {
        let meta = Token::decode_metadata(token).context("token metadata")?;
        let kid = meta.key_id().ok_or_else(|| anyhow!("no kid"))?;
        let (_, key) = self.published.iter().find(|(k, _)| k == kid).ok_or_else(|| anyhow!("unknown kid"))?;
        let opts = Some(opts);
        match key {
            TokenKey::Ed(k) => k.public_key().verify_token::<C>(token, opts),
            TokenKey::Es(k) => k.public_key().verify_token::<C>(token, opts),
            _ => Err(jwt_simple::Error::msg("unsupported key")),
        }
    }

    /// Sign claims with the current key.
    pub fn sign(&self, claims: JWTClaims<serde_json::Value>) -> Result<String> {
        self.current.sign(claims).context("sign")
    }
}

fn token_key(alg: &str, pem: &str, kid: &str) -> Result<TokenKey> {
    Ok(match alg {
        "EdDSA" => {
            TokenKey::Ed(Ed25519KeyPair::from_pem(pem).with_context(|| format!("signing key {kid}"))?.with_key_id(kid))
        }
        "ES256" => {
            TokenKey::Es(ES256KeyPair::from_pem(pem).with_context(|| format!("signing key {kid}"))?.with_key_id(kid))
        }
        other => return Err(anyhow!("unsupported signing algorithm {other}")),
    })
}

/// Create a new signing key; the previous one keeps being published for `overlap_secs`.
pub async fn add_key(conn: &Connection, alg: &str, now: i64) -> Result<String> {
    let kid = new_id("k_");
    let (pem, jwks) = gatehouse_bundler::keys::generate_token_keys(alg, &kid)
        .ok_or_else(|| anyhow!("cannot generate a {alg} key"))?;
    let doc: serde_json::Value = serde_json::from_str(&jwks)?;
    let jwk = doc["keys"][0].to_string();
    signing_keys::insert(conn, &kid, alg, &pem, &jwk, now).await.context("store signing key")?;
    Ok(kid)
}

/// Rotate: a new key signs from now on; the old ones stay published for `overlap_secs`.
pub async fn rotate(conn: &Connection, alg: &str, now: i64, overlap_secs: i64) -> Result<String> {
    signing_keys::retire_active(conn, now + overlap_secs).await?;
    add_key(conn, alg, now).await
}

/// What an access token says.
#[derive(Debug, Clone)]
pub struct AccessGrant<'a> {
    /// Issuer (`{public_url}/t/{slug}`).
    pub issuer: &'a str,
    /// Audience.
    pub audience: &'a str,
    /// User id.
    pub subject: &'a str,
    /// Organisation (slug).
    pub org: &'a str,
    /// Roles.
    pub roles: Vec<String>,
    /// Scopes (`None`: unrestricted).
    pub scopes: Option<Vec<String>>,
    /// Teams.
    pub teams: Vec<String>,
    /// Session id.
    pub sid: &'a str,
    /// Authentication methods (RFC 8176: `pwd`, `otp`, `hwk`, `swk`, `mfa`, `sso`).
    pub amr: Vec<String>,
    /// Unix seconds of the session's latest authentication (renewed by step-up).
    pub auth_time: i64,
    /// Whether the user's email address is verified.
    pub email_verified: bool,
    /// Lifetime.
    pub ttl_secs: u64,
    /// Who really acts (RFC 8693 `act.sub`), on an impersonation's tokens.
    pub act: Option<String>,
}

/// The `acr` of a session whose methods are `amr`: multi-factor when they contain `mfa`.
pub const ACR_MFA: &str = "urn:gatehouse:mfa";

/// The authentication context class of `amr` (`None`: single factor, no `acr` claim).
pub fn acr_of(amr: &[String]) -> Option<&'static str> {
    amr.iter().any(|a| a == "mfa").then_some(ACR_MFA)
}

/// Sign an access token. Returns (token, jti, expires_at).
pub fn access_token(keys: &SigningKeys, g: &AccessGrant<'_>) -> Result<(String, String, i64)> {
    let jti = new_id("j_");
    let mut custom = serde_json::json!({
        "org": g.org,
        "roles": g.roles,
        "teams": g.teams,
        "sid": g.sid,
        "amr": g.amr,
        "auth_time": g.auth_time,
        "email_verified": g.email_verified,
    });
    if let Some(acr) = acr_of(&g.amr) {
        custom["acr"] = acr.into();
    }
    if let Some(s) = &g.scopes {
        custom["scope"] = s.join(" ").into();
    }
    if let Some(a) = &g.act {
        custom["act"] = serde_json::json!({ "sub": a });
    }
    let claims = Claims::with_custom_claims(custom, Duration::from_secs(g.ttl_secs))
        .with_issuer(g.issuer)
        .with_audience(g.audience)
        .with_subject(g.subject)
        .with_jwt_id(&jti);
    let exp = claims.expires_at.map(|e| e.as_secs() as i64).unwrap_or(0);
    Ok((keys.sign(claims)?, jti, exp))
}

/// A new opaque secret with `prefix` (32 random bytes, base64url).
pub fn opaque(prefix: &str) -> String {
    let b: [u8; 32] = gatehouse_bundler::random::random_bytes();
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// How opaque secrets are stored: SHA-256, hex (they are 256-bit random, so a fast hash
/// is enough; a stolen database does not yield usable tokens).
pub fn secret_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Store a new refresh token of `family` for `session`.
pub async fn new_refresh(
    conn: &Connection,
    family: &str,
    session: &str,
    user: &str,
    now: i64,
    ttl: i64,
) -> Result<String> {
    let token = opaque("ghr_");
    let hash = secret_hash(&token);
    let row = refresh_tokens::NewRefresh {
        hash: &hash,
        family,
        session_id: session,
        user_id: user,
        created_at: now,
        expires_at: now + ttl,
    };
    refresh_tokens::insert(conn, &row).await?;
    Ok(token)
}

/// What presenting a refresh token led to.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Valid: rotate it. (session, user, family)
    Rotate {
        /// Session.
        session: String,
        /// User.
        user: String,
        /// Family.
        family: String,
    },
    /// Already used: the family is revoked (its session too).
    Reused {
        /// The revoked session.
        session: String,
        /// Its user.
        user: String,
    },
    /// Unknown, expired, or its session ended.
    Invalid,
}

/// Consume a refresh token (in the caller's transaction).
pub async fn use_refresh(conn: &Connection, token: &str, now: i64) -> Result<RefreshOutcome> {
    let h = secret_hash(token);
    let Some(r) = refresh_tokens::presented(conn, &h).await? else { return Ok(RefreshOutcome::Invalid) };
    let refresh_tokens::Presented {
        family,
        session_id: session,
        user_id: user,
        expires_at: exp,
        used_at: used,
        session_revoked_at: revoked,
        session_expires_at: session_exp,
    } = r;
    if used.is_some() {
        // Reuse: somebody holds a copy. End the family and its session.
        refresh_tokens::spend_family(conn, &family, now).await?;
        crate::store::sessions::revoke(conn, &session, now).await?;
        return Ok(RefreshOutcome::Reused { session, user });
    }
    if exp <= now || revoked.is_some() || session_exp <= now {
        return Ok(RefreshOutcome::Invalid);
    }
    refresh_tokens::mark_used(conn, &h, now).await?;
    Ok(RefreshOutcome::Rotate { session, user, family })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_is_multi_factor_only_with_mfa_in_amr() {
        assert_eq!(acr_of(&["pwd".into(), "otp".into(), "mfa".into()]), Some(ACR_MFA));
        assert_eq!(acr_of(&["hwk".into(), "mfa".into()]), Some(ACR_MFA));
        assert_eq!(acr_of(&["pwd".into(), "otp".into()]), None, "otp alone does not say multi-factor");
        assert_eq!(acr_of(&[]), None);
    }
}
