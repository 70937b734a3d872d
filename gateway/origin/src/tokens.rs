//! Token issuance: the region's signing keys (rotated with overlap), access JWTs, and
//! opaque refresh tokens with rotation and reuse detection.

use anyhow::{anyhow, Context as _, Result};
use base64::Engine as _;
use gatehouse_bundler::keys::TokenKey;
use jwt_simple::prelude::*;
use libsql::Connection;
use sha2::{Digest, Sha256};

use crate::identity::new_id;
use crate::store::one;

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
        if one::<String>(conn, "SELECT kid FROM signing_keys WHERE retired_at IS NULL LIMIT 1", ()).await?.is_none() {
            add_key(conn, alg, now).await?;
        }
        let mut rows = conn
            .query(
                "SELECT kid, alg, private_pem, public_jwk, retired_at FROM signing_keys
                 WHERE retired_at IS NULL OR retired_at > ?1 ORDER BY created_at DESC, kid",
                [now],
            )
            .await?;
        let mut keys = Vec::new();
        let mut published = Vec::new();
        let mut current = None;
        while let Some(r) = rows.next().await? {
            let (kid, alg, pem, jwk, retired): (String, String, String, String, Option<i64>) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            keys.push(serde_json::from_str::<serde_json::Value>(&jwk)?);
            if current.is_none() && retired.is_none() {
                current = Some((kid.clone(), token_key(&alg, &pem, &kid)?));
            }
            published.push((kid.clone(), token_key(&alg, &pem, &kid)?));
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
        let meta = Token::decode_metadata(token).map_err(|e| anyhow!("{e}"))?;
        let kid = meta.key_id().ok_or_else(|| anyhow!("no kid"))?;
        let (_, key) = self.published.iter().find(|(k, _)| k == kid).ok_or_else(|| anyhow!("unknown kid"))?;
        let opts = Some(opts);
        match key {
            TokenKey::Ed(k) => k.public_key().verify_token::<C>(token, opts),
            TokenKey::Es(k) => k.public_key().verify_token::<C>(token, opts),
            _ => Err(jwt_simple::Error::msg("unsupported key")),
        }
        .map_err(|e| anyhow!("{e}"))
    }

    /// Sign claims with the current key.
    pub fn sign(&self, claims: JWTClaims<serde_json::Value>) -> Result<String> {
        self.current.sign(claims).map_err(|e| anyhow!("sign: {e}"))
    }
}

fn token_key(alg: &str, pem: &str, kid: &str) -> Result<TokenKey> {
    Ok(match alg {
        "EdDSA" => TokenKey::Ed(Ed25519KeyPair::from_pem(pem).map_err(|e| anyhow!("{e}"))?.with_key_id(kid)),
        "ES256" => TokenKey::Es(ES256KeyPair::from_pem(pem).map_err(|e| anyhow!("{e}"))?.with_key_id(kid)),
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
    conn.execute(
        "INSERT INTO signing_keys (kid, alg, private_pem, public_jwk, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        libsql::params![kid.as_str(), alg, pem, jwk, now],
    )
    .await
    .context("store signing key")?;
    Ok(kid)
}

/// Rotate: a new key signs from now on; the old ones stay published for `overlap_secs`.
pub async fn rotate(conn: &Connection, alg: &str, now: i64, overlap_secs: i64) -> Result<String> {
    conn.execute("UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL", [now + overlap_secs]).await?;
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
    /// Authentication methods (`pwd`, `mfa`, …).
    pub amr: Vec<String>,
    /// Lifetime.
    pub ttl_secs: u64,
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
    });
    if let Some(s) = &g.scopes {
        custom["scope"] = s.join(" ").into();
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
    conn.execute(
        "INSERT INTO refresh_tokens (hash, family, session_id, user_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        libsql::params![secret_hash(&token), family, session, user, now, now + ttl],
    )
    .await?;
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
    let mut rows = conn
        .query(
            "SELECT r.family, r.session_id, r.user_id, r.expires_at, r.used_at, s.revoked_at, s.expires_at
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = ?1",
            [h.as_str()],
        )
        .await?;
    let Some(r) = rows.next().await? else { return Ok(RefreshOutcome::Invalid) };
    let (family, session, user, exp, used, revoked, session_exp): (
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        i64,
    ) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
    drop(rows);
    if used.is_some() {
        // Reuse: somebody holds a copy. End the family and its session.
        conn.execute(
            "UPDATE refresh_tokens SET used_at = COALESCE(used_at, ?2) WHERE family = ?1",
            libsql::params![family.as_str(), now],
        )
        .await?;
        conn.execute(
            "UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            libsql::params![session.as_str(), now],
        )
        .await?;
        return Ok(RefreshOutcome::Reused { session, user });
    }
    if exp <= now || revoked.is_some() || session_exp <= now {
        return Ok(RefreshOutcome::Invalid);
    }
    conn.execute("UPDATE refresh_tokens SET used_at = ?2 WHERE hash = ?1", libsql::params![h, now]).await?;
    Ok(RefreshOutcome::Rotate { session, user, family })
}
