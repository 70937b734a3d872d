//! JWT verification: issuer keys from JWKS, the algorithm pinned per key, strict parsing,
//! claims checked against `now` passed in by the host.
//!
//! The token's own `alg` header never chooses how it is verified: the key named by `kid`
//! carries its algorithm, and a token whose `alg` differs is refused. Header members that
//! point at other keys (`jwk`, `jku`, `x5u`, `x5c`) are never read. Any `crit` member is
//! refused, since no extension is understood.
//!
//! JWKS keys are read by [`crate::jwk`] (jwt-simple's rules for its own keys); the
//! signature is checked by the host's native primitive when it offers one
//! ([`SignatureVerifier`]), else by the RustCrypto primitives jwt-simple itself is built
//! on; the claims are always checked here, in one place, whichever verified the
//! signature.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::claims::Claims;
use crate::identity::{header_safe, limits, CredentialKind, Identity};
use crate::jwk::Material;
use crate::policy::Policy;
use crate::reason::ReasonCode;
use crate::secrets::EdgeSecrets;

/// Signature algorithms Gatehouse verifies (defined with the keys that pin them, in
/// [`crate::jwk`]).
pub use crate::jwk::Alg;

/// A JWKS that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or not `{"keys": [...]}`.
    #[error("not a JWKS document: {0}")]
    Malformed(String),
    /// A key is unusable.
    #[error("key {index}{kid}: {message}")]
    Key {
        /// Position in `keys`.
        index: usize,
        /// ` (kid "...")` or empty.
        kid: String,
        /// What is wrong.
        message: String,
    },
    /// Too many keys or too large.
    #[error("JWKS too large (at most {MAX_JWKS_KEYS} keys and {MAX_JWKS_BYTES} bytes)")]
    TooLarge,
}

/// Most keys in one JWKS.
pub const MAX_JWKS_KEYS: usize = 64;
/// Largest JWKS document.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A verification key with its pinned algorithm.
pub struct VerifyKey {
    /// Key id.
    pub kid: Option<String>,
    /// The only algorithm this key verifies.
    pub alg: Alg,
    material: Material,
    /// The public key in the encoding a [`SignatureVerifier`] takes (empty for HS256).
    raw: Vec<u8>,
}

/// A native signature primitive a host may offer (for example an optimised library that
/// the WebAssembly build cannot use). The engine still makes every decision: it selects
/// the key, pins the algorithm and checks the claims; the primitive only answers whether
/// `signature` is valid for `message` under `public_key`.
///
/// Key encodings: EdDSA, the 32-byte key; ES256, the 65-byte uncompressed SEC1 point;
/// RS256 and PS256, `len(n)` as 4 big-endian bytes, then `n`, then `e`.
pub trait SignatureVerifier {
    /// `Some(valid)`, or `None` when the algorithm is not offered (the engine then
    /// verifies with its own implementation).
    fn verify(&self, alg: Alg, public_key: &[u8], message: &[u8], signature: &[u8]) -> Option<bool>;
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// Parse a JWKS (RFC 7517) into verification keys. Keys marked `"use": "enc"` are skipped;
/// private or symmetric key material is refused.
pub fn parse_jwks(json: &str, default_alg: Option<&str>) -> Result<Vec<VerifyKey>, JwksError> {
    if json.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    // Each key is read twice: as a value for the checks below, and as its own text by
    // jwt-simple (no re-serialisation of the document).
    #[derive(serde::Deserialize)]
    struct Doc<'a> {
        #[serde(borrow)]
        keys: Vec<&'a RawValue>,
    }
    let doc: Doc<'_> = serde_json::from_slice(json.as_bytes()).map_err(|e| JwksError::Malformed(e.to_string()))?;
    let keys = doc.keys;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooLarge);
    }
    let default_alg = default_alg.and_then(Alg::parse);
    let mut out = Vec::new();
    for (index, text) in keys.iter().enumerate() {
        let k: Value = serde_json::from_slice(text.get().as_bytes()).map_err(|e| JwksError::Key {
            index,
            kid: String::new(),
            message: e.to_string(),
        })?;
        let kid = k.get("kid").and_then(Value::as_str).map(str::to_string);
        let err = |message: String| JwksError::Key {
            index,
            kid: kid.as_ref().map(|k| format!(" (kid {k:?})")).unwrap_or_default(),
            message,
        };
        let obj = k.as_object().ok_or_else(|| err("not a JSON object".into()))?;
        if obj.get("use").and_then(Value::as_str) == Some("enc") {
            continue;
        }
        if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| obj.contains_key(*m)) {
            return Err(err("contains private or symmetric key material; publish only public keys".into()));
        }
        let kty = obj.get("kty").and_then(Value::as_str).unwrap_or("");
        let crv = obj.get("crv").and_then(Value::as_str).unwrap_or("");
        let stated = match obj.get("alg").and_then(Value::as_str) {
            Some(a) => {
                Some(Alg::parse(a).filter(|a| *a != Alg::HS256).ok_or_else(|| err(format!("unsupported alg `{a}`")))?)
            }
            None => None,
        };
        let natural = match (kty, crv) {
            ("OKP", "Ed25519") => Alg::EdDSA,
            ("EC", "P-256") => Alg::ES256,
            ("RSA", _) => stated
                .or(default_alg)
                .ok_or_else(|| err("RSA key without `alg`; set the issuer's `default_alg` to RS256 or PS256".into()))?,
            _ => return Err(err(format!("unsupported key type `{kty}` {crv}"))),
        };
        let alg = stated.unwrap_or(natural);
        if alg != natural && !(matches!(natural, Alg::RS256 | Alg::PS256) && matches!(alg, Alg::RS256 | Alg::PS256)) {
            return Err(err(format!("alg `{}` does not fit a {kty} key", alg.as_str())));
        }
        // A stated `alg` is checked against the pinned one, which equals it whenever the
        // key states one.
        let (material, raw) = crate::jwk::public_key(text.get(), alg).map_err(|e| err(format!("unusable key: {e}")))?;
        out.push(VerifyKey { kid, alg, material, raw });
    }
    Ok(out)
}

struct IssuerInfo {
    iss: String,
    audiences: HashSet<String>,
    orgs: HashSet<String>,
    keys: Vec<usize>,
}

/// What a token was, after verification.
pub struct Verified {
    /// The identity it carries.
    pub identity: Identity,
}

/// Error while building a verifier (bad JWKS, missing HMAC secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// A JWKS could not be used.
    #[error("issuer `{issuer}`: {source}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// Why.
        source: JwksError,
    },
    /// Two keys share a `kid`.
    #[error("kid `{0}` is used by more than one key")]
    DuplicateKid(String),
}

/// Verifies tokens against every trusted issuer of a policy.
pub struct TokenVerifier {
    keys: Vec<(usize, VerifyKey)>,
    by_kid: HashMap<String, usize>,
    /// Keys that several issuers publish (the same `kid`, algorithm and public key: the
    /// tenants of one region sharing its signing key), by key position: every issuer that
    /// publishes it. The token's verified `iss` picks among them.
    shared: HashMap<usize, Vec<usize>>,
    issuers: Vec<IssuerInfo>,
    by_iss: HashMap<String, usize>,
    leeway: u64,
    max_bytes: usize,
    tenant_claim: String,
    header_prefix: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    cty: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
    // Read and ignored on purpose: never used to find a key. Typed as jwt-simple types
    // them, so a token is refused (or not) the same way whichever verifier runs.
    #[serde(default)]
    jwk: Option<String>,
    #[serde(default)]
    jku: Option<String>,
    #[serde(default)]
    x5u: Option<String>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
    #[serde(default)]
    x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

/// Strict base64url: no padding, only the URL-safe alphabet, zero trailing bits.
fn b64(part: &str) -> Result<Vec<u8>, ReasonCode> {
    if part.is_empty() {
        return Err(ReasonCode::TokenMalformed);
    }
    URL_SAFE_NO_PAD.decode(part).map_err(|_| ReasonCode::TokenMalformed)
}

impl TokenVerifier {
    /// Build from a policy; HS256 issuers take their secrets from `secrets` (an issuer whose
    /// secret is absent gets no HMAC key, so its tokens fail as unknown keys: fail closed).
    pub fn new(policy: &Policy, secrets: &EdgeSecrets) -> Result<TokenVerifier, VerifierError> {
        let mut v = TokenVerifier {
            keys: Vec::new(),
            by_kid: HashMap::new(),
            shared: HashMap::new(),
            issuers: Vec::new(),
            by_iss: HashMap::new(),
            leeway: policy.settings.leeway_secs,
            max_bytes: policy.settings.max_token_bytes,
            tenant_claim: policy.settings.tenant_claim.clone(),
            header_prefix: policy.settings.identity_header_prefix.clone(),
        };
        // Issuers with the same JWKS text (every tenant of an origin carries its region's
        // keys: thousands in one bundle) parse it once. Its keys, when each has a kid, are
        // then shared with the first issuer, as the same key under several issuers is.
        let mut parsed: HashMap<(&str, Option<&str>), Vec<usize>> = HashMap::new();
        for (idx, iss) in policy.issuers.iter().enumerate() {
            let memo = (iss.jwks.as_str(), iss.default_alg.as_deref());
            let known = parsed.get(&memo).cloned();
            let mut keys = if iss.jwks.is_empty() || known.is_some() {
                Vec::new()
            } else {
                parse_jwks(&iss.jwks, iss.default_alg.as_deref())
                    .map_err(|source| VerifierError::Jwks { issuer: iss.issuer.clone(), source })?
            };
            let from_jwks = keys.len();
            let all_have_kids = keys.iter().all(|k| k.kid.is_some());
            if let Some(secret) = iss.hmac_secret.as_ref().and_then(|n| secrets.hmac_key(n)) {
                keys.push(VerifyKey {
                    kid: iss.hmac_kid.clone(),
                    alg: Alg::HS256,
                    material: Material::Hs(secret.to_vec()),
                    raw: Vec::new(),
                });
            }
            let mut info = IssuerInfo {
                iss: iss.issuer.clone(),
                audiences: iss.audiences.iter().cloned().collect(),
                orgs: iss.orgs.iter().cloned().collect(),
                keys: Vec::new(),
            };
            for &p in known.iter().flatten() {
                let owner = v.keys[p].0;
                v.shared.entry(p).or_insert_with(|| vec![owner]).push(idx);
                info.keys.push(p);
            }
            for k in keys {
                let pos = v.keys.len();
                if let Some(kid) = &k.kid {
                    if let Some(&first) = v.by_kid.get(kid) {
                        // One key under several issuers is fine; two keys under one kid
                        // never are (which one signed would be the token's choice).
                        let (first_issuer, known) = &v.keys[first];
                        let same = known.alg == k.alg && !k.raw.is_empty() && known.raw == k.raw;
                        if !same || *first_issuer == idx {
                            return Err(VerifierError::DuplicateKid(kid.clone()));
                        }
                        let first_issuer = *first_issuer;
                        v.shared.entry(first).or_insert_with(|| vec![first_issuer]).push(idx);
                        info.keys.push(first);
                        continue;
                    }
                    v.by_kid.insert(kid.clone(), pos);
                }
                info.keys.push(pos);
                v.keys.push((idx, k));
            }
            if known.is_none() && from_jwks > 0 && all_have_kids {
                parsed.insert(memo, info.keys[..from_jwks].to_vec());
            }
            v.by_iss.insert(info.iss.clone(), idx);
            v.issuers.push(info);
        }
        Ok(v)
    }

    /// Bound on token size in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Clock skew leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// The organisation a token claims, without verifying it (used only to pick a tenant,
    /// which verification later confirms).
    pub fn peek_tenant(&self, token: &str) -> Option<String> {
        if token.len() > self.max_bytes {
            return None;
        }
        let mut parts = token.split('.');
        let _ = parts.next()?;
        let payload = b64(parts.next()?).ok()?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
        claims.get(&self.tenant_claim)?.as_str().map(str::to_string)
    }

    /// Verify `token` at `now` (Unix seconds). `kind` says where it came from.
    pub fn verify(&self, token: &str, now: u64, kind: CredentialKind) -> Result<Verified, ReasonCode> {
        self.verify_with(token, now, kind, None)
    }

    /// [`TokenVerifier::verify`], with the signature check delegated to `native` when it
    /// offers the key's algorithm.
    pub fn verify_with(
        &self,
        token: &str,
        now: u64,
        kind: CredentialKind,
        native: Option<&dyn SignatureVerifier>,
    ) -> Result<Verified, ReasonCode> {
        if token.len() > self.max_bytes {
            return Err(ReasonCode::TokenTooLarge);
        }
        let mut parts = token.split('.');
        let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None) => (h, p, s),
            _ => return Err(ReasonCode::TokenMalformed),
        };
        let header_bytes = b64(h)?;
        let payload_bytes = b64(p)?;
        let signature = b64(s)?;
        let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| ReasonCode::TokenMalformed)?;
        if header.crit.is_some() {
            return Err(ReasonCode::TokenCriticalHeader);
        }
        if let Some(typ) = &header.typ {
            let t = typ.to_ascii_lowercase();
            if t != "jwt" && t != "at+jwt" && t != "application/jwt" && t != "application/at+jwt" {
                return Err(ReasonCode::TokenMalformed);
            }
        }
        if header.cty.is_some() {
            return Err(ReasonCode::TokenMalformed); // nested JWTs are not accepted
        }
        let _ignored = (&header.jwk, &header.jku, &header.x5u, &header.x5c, &header.x5t, &header.x5t_s256);
        let key_pos = match &header.kid {
            Some(kid) => *self.by_kid.get(kid).ok_or(ReasonCode::TokenUnknownKey)?,
            None => {
                // No kid: only an issuer with exactly one key can be meant. The unverified
                // `iss` only narrows the search; the signature and `iss` check decide.
                let claims: Map<String, Value> =
                    serde_json::from_slice(&payload_bytes).map_err(|_| ReasonCode::TokenMalformed)?;
                let iss = claims.get("iss").and_then(Value::as_str).ok_or(ReasonCode::TokenUnknownKey)?;
                let info = &self.issuers[*self.by_iss.get(iss).ok_or(ReasonCode::TokenUnknownKey)?];
                match info.keys.as_slice() {
                    [one] => *one,
                    _ => return Err(ReasonCode::TokenUnknownKey),
                }
            }
        };
        let (issuer_idx, key) = &self.keys[key_pos];
        if !key.alg.accepts(&header.alg) {
            return Err(ReasonCode::TokenAlgorithmMismatch);
        }
        if matches!(key.alg, Alg::EdDSA | Alg::ES256) && signature.len() != 64 {
            return Err(ReasonCode::TokenBadSignature);
        }
        let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
        let delegated = match native {
            Some(n) if key.alg != Alg::HS256 => n.verify(key.alg, &key.raw, signing_input, &signature),
            _ => None,
        };
        if !delegated.unwrap_or_else(|| key.material.verify(signing_input, &signature)) {
            return Err(ReasonCode::TokenBadSignature);
        }
        let candidates = self.shared.get(&key_pos).map_or(std::slice::from_ref(issuer_idx), Vec::as_slice);
        let (claims, issuer) = self.check_claims(&payload_bytes, candidates, now)?;
        self.identity(claims, issuer, kind, now)
    }

    /// Claims of a token whose signature verified: times (with the leeway), issuer (one of
    /// `candidates`, the issuers that publish the key) and audience.
    fn check_claims(
        &self,
        payload: &[u8],
        candidates: &[usize],
        now: u64,
    ) -> Result<(Claims, &IssuerInfo), ReasonCode> {
        let claims = Claims::parse(payload, &self.claim_names()).map_err(|_| ReasonCode::TokenMalformed)?;
        let leeway = self.leeway;
        if claims.issued_at.is_some_and(|t| t > now + leeway) || claims.not_before.is_some_and(|t| t > now + leeway) {
            return Err(ReasonCode::TokenNotYetValid);
        }
        if claims.expires_at.is_some_and(|t| now.saturating_sub(leeway) > t) {
            return Err(ReasonCode::TokenExpired);
        }
        let issuer = match &claims.issuer {
            None => return Err(ReasonCode::TokenClaimMissing),
            // A key published by thousands of issuers (one per tenant) is looked up by
            // name rather than scanned; `candidates` is in ascending order.
            Some(i) => {
                let named = self.by_iss.get(i.as_str()).copied().filter(|c| candidates.binary_search(c).is_ok());
                let found = named.or_else(|| candidates.iter().copied().find(|&c| self.issuers[c].iss == *i));
                &self.issuers[found.ok_or(ReasonCode::TokenWrongIssuer)?]
            }
        };
        if !issuer.audiences.is_empty()
            && !claims.audiences.as_ref().is_some_and(|a| a.iter().any(|a| issuer.audiences.contains(a)))
        {
            return Err(ReasonCode::TokenWrongAudience);
        }
        Ok((claims, issuer))
    }

    fn identity(
        &self,
        mut claims: Claims,
        issuer: &IssuerInfo,
        kind: CredentialKind,
        now: u64,
    ) -> Result<Verified, ReasonCode> {
        let exp = claims.expires_at.ok_or(ReasonCode::TokenClaimMissing)?;
        let sub = claims.subject.ok_or(ReasonCode::TokenClaimMissing)?;
        if !header_safe(&sub) {
            return Err(ReasonCode::TokenMalformed);
        }
        let custom = std::mem::take(&mut claims.custom);
        let c = |name: Custom| custom.get(name as usize).and_then(Option::as_ref);
        let org = match c(Custom::Tenant) {
            Some(Value::String(o)) if crate::policy::valid_name(o) => o.clone(),
            Some(_) => return Err(ReasonCode::TokenMalformed),
            None => return Err(ReasonCode::TokenClaimMissing),
        };
        if !issuer.orgs.is_empty() && !issuer.orgs.contains(&org) {
            return Err(ReasonCode::TenantMismatch);
        }
        let roles = string_list(c(Custom::Roles))?.unwrap_or_default();
        let scopes = match c(Custom::Scope) {
            Some(v) => string_list(Some(v))?,
            None => string_list(c(Custom::Scp))?,
        };
        let teams = string_list(c(Custom::Teams))?.unwrap_or_default();
        // RFC 8176: `amr` is an array (no space-separated form, unlike `scope`).
        let amr = match c(Custom::Amr) {
            None => Vec::new(),
            Some(v @ Value::Array(_)) => string_list(Some(v))?.unwrap_or_default(),
            Some(_) => return Err(ReasonCode::TokenMalformed),
        };
        // An `auth_time` after now (beyond the leeway) would satisfy any step-up age.
        let auth_time = match c(Custom::AuthTime) {
            None => None,
            Some(v) => match seconds(v) {
                Some(t) if t > now.saturating_add(self.leeway) => return Err(ReasonCode::TokenNotYetValid),
                Some(t) => Some(t),
                None => return Err(ReasonCode::TokenMalformed),
            },
        };
        let acr = match c(Custom::Acr) {
            Some(Value::String(a)) if header_safe(a) => Some(a.clone()),
            Some(_) => return Err(ReasonCode::TokenMalformed),
            None => None,
        };
        let sid = match c(Custom::Sid) {
            Some(Value::String(s)) if header_safe(s) => Some(s.clone()),
            Some(_) => return Err(ReasonCode::TokenMalformed),
            None => None,
        };
        let actor = actor_of(c(Custom::Act))?;
        let jti = match claims.jwt_id {
            Some(j) if j.len() <= limits::MAX_ITEM => Some(j),
            Some(_) => return Err(ReasonCode::TokenMalformed),
            None => None,
        };
        Ok(Verified {
            identity: Identity::new(
                kind,
                sub,
                org,
                roles,
                scopes,
                teams,
                amr,
                sid,
                jti,
                Some(exp),
                &self.header_prefix,
            )
            .with_authentication(auth_time, acr)
            .with_actor(actor),
        })
    }
}

/// The claims the engine reads besides the registered ones, as indices of
/// [`TokenVerifier::claim_names`].
#[derive(Clone, Copy)]
enum Custom {
    Tenant = 0,
    Roles = 1,
    Scope = 2,
    Scp = 3,
    Teams = 4,
    Amr = 5,
    Sid = 6,
    AuthTime = 7,
    Acr = 8,
    Act = 9,
}

impl TokenVerifier {
    /// The names of the [`Custom`] claims, in order.
    fn claim_names(&self) -> [&str; 10] {
        [&self.tenant_claim, "roles", "scope", "scp", "teams", "amr", "sid", "auth_time", "acr", "act"]
    }
}

/// Most members of an `act` object (`sub` and a few informational ones such as `iss`).
const MAX_ACT_MEMBERS: usize = 8;

/// Who acts for the subject (RFC 8693 `act`): an object whose `sub` is
/// [`header_safe`] (printable, at most 256 bytes), with at most [`MAX_ACT_MEMBERS`]
/// members and no nested `act` (a delegation chain is refused, not flattened). Anything
/// else refuses the token with `token_act_invalid`.
fn actor_of(v: Option<&Value>) -> Result<Option<String>, ReasonCode> {
    let Some(v) = v else { return Ok(None) };
    let Value::Object(m) = v else { return Err(ReasonCode::TokenActInvalid) };
    if m.len() > MAX_ACT_MEMBERS || m.contains_key("act") {
        return Err(ReasonCode::TokenActInvalid);
    }
    match m.get("sub") {
        Some(Value::String(s)) if header_safe(s) => Ok(Some(s.clone())),
        _ => Err(ReasonCode::TokenActInvalid),
    }
}

/// A NumericDate claim other than the registered ones (`auth_time`): read as
/// [`Claims`] reads `iat` (an integer, or a fraction truncated; never negative).
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

/// A claim that is a list of strings, or one space-separated string (OAuth `scope`).
fn string_list(v: Option<&Value>) -> Result<Option<Vec<String>>, ReasonCode> {
    let items: Vec<String> = match v {
        None => return Ok(None),
        Some(Value::String(s)) => s.split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or(ReasonCode::TokenMalformed))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ReasonCode::TokenMalformed),
    };
    if items.len() > limits::MAX_LIST || !items.iter().all(|s| header_safe(s)) {
        return Err(ReasonCode::TokenMalformed);
    }
    Ok(Some(items))
}
