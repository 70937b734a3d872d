//! Token signing keys: generated as PEM plus the public JWKS an issuer publishes, read
//! from PEM for `token mint`, and the signing itself (the origin holds its keys as
//! [`TokenKey`]s too).

use std::path::Path;

use jwt_simple::prelude::*;

use super::{read, KeyFileError};

/// A token signing key of `alg` (`EdDSA` or `ES256`) as (private PEM, public JWKS JSON).
pub fn generate_token_keys(alg: &str, kid: &str) -> Option<(String, String)> {
    let (pem, mut jwk): (String, serde_json::Value) = match alg {
        "EdDSA" => {
            let kp = Ed25519KeyPair::generate();
            (kp.to_pem(), serde_json::from_str(&kp.public_key().to_jwk()).ok()?)
        }
        "ES256" => {
            let kp = ES256KeyPair::generate();
            (kp.to_pem().ok()?, serde_json::from_str(&kp.public_key().to_jwk()).ok()?)
        }
        _ => return None,
    };
    jwk["kid"] = kid.into();
    jwk["alg"] = alg.into();
    jwk["use"] = "sig".into();
    let jwks = serde_json::json!({ "keys": [jwk] });
    Some((pem, serde_json::to_string_pretty(&jwks).ok()?))
}

/// A token signing key read from PEM, for `token mint`.
pub enum TokenKey {
    /// Ed25519.
    Ed(Ed25519KeyPair),
    /// P-256.
    Es(ES256KeyPair),
    /// RSA PKCS#1 v1.5.
    Rs(Box<RS256KeyPair>),
    /// RSA-PSS.
    Ps(Box<PS256KeyPair>),
    /// HMAC (raw secret file).
    Hs(HS256Key),
}

/// Read a token signing key for `alg` from `path` (PEM; HS256: the raw secret as base64).
pub fn read_token_key(path: &Path, alg: &str, kid: Option<&str>) -> Result<TokenKey, KeyFileError> {
    let text = read(path)?;
    let err = |expected| KeyFileError::Format { file: path.to_path_buf(), expected };
    Ok(match alg {
        "EdDSA" => {
            let k = Ed25519KeyPair::from_pem(&text).map_err(|_| err("an Ed25519 private key (PEM)"))?;
            TokenKey::Ed(match kid {
                Some(kid) => k.with_key_id(kid),
                None => k,
            })
        }
        "ES256" => {
            let k = ES256KeyPair::from_pem(&text).map_err(|_| err("a P-256 private key (PEM)"))?;
            TokenKey::Es(match kid {
                Some(kid) => k.with_key_id(kid),
                None => k,
            })
        }
        "RS256" => {
            let k = RS256KeyPair::from_pem(&text).map_err(|_| err("an RSA private key (PEM)"))?;
            TokenKey::Rs(Box::new(match kid {
                Some(kid) => k.with_key_id(kid),
                None => k,
            }))
        }
        "PS256" => {
            let k = PS256KeyPair::from_pem(&text).map_err(|_| err("an RSA private key (PEM)"))?;
            TokenKey::Ps(Box::new(match kid {
                Some(kid) => k.with_key_id(kid),
                None => k,
            }))
        }
        "HS256" => {
            let raw = gatehouse_core::secrets::decode_secret(&text)
                .map_err(|_| err("a base64 secret of at least 32 bytes"))?;
            let k = HS256Key::from_bytes(&raw);
            TokenKey::Hs(match kid {
                Some(kid) => k.with_key_id(kid),
                None => k,
            })
        }
        _ => return Err(err("a supported algorithm: EdDSA, ES256, RS256, PS256, HS256")),
    })
}

impl TokenKey {
    /// Sign claims.
    pub fn sign(&self, claims: JWTClaims<serde_json::Value>) -> Result<String, jwt_simple::Error> {
        match self {
            TokenKey::Ed(k) => k.sign(claims),
            TokenKey::Es(k) => k.sign(claims),
            TokenKey::Rs(k) => k.sign(claims),
            TokenKey::Ps(k) => k.sign(claims),
            TokenKey::Hs(k) => k.authenticate(claims),
        }
    }
}
