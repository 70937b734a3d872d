//! Key files: PEM for private and public keys, JWKS for issuer public keys, TOML for edge
//! secrets. Private key files are written with mode 0600 and never overwritten silently.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use jwt_simple::prelude::*;

/// A key file problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Cannot read or write.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a key of the expected kind.
    #[error("{file}: not {expected}")]
    Format {
        /// The file.
        file: PathBuf,
        /// What was expected.
        expected: &'static str,
    },
    /// Exists and overwriting was not asked for.
    #[error("{0}: already exists (use --force to replace it)")]
    Exists(PathBuf),
}

fn read(path: &Path) -> Result<String, KeyFileError> {
    fs::read_to_string(path).map_err(|source| KeyFileError::Io { file: path.to_path_buf(), source })
}

/// Write `contents` to `path`; `private` files get mode 0600.
pub fn write_file(path: &Path, contents: &[u8], private: bool, force: bool) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io { file: path.to_path_buf(), source };
    if path.exists() && !force {
        return Err(KeyFileError::Exists(path.to_path_buf()));
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let _ = private;
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Read an Ed25519 private key (PKCS#8 PEM) as the 64-byte key pair bundles are signed with.
pub fn read_signing_key(path: &Path) -> Result<[u8; 64], KeyFileError> {
    let kp = Ed25519KeyPair::from_pem(&read(path)?)
        .map_err(|_| KeyFileError::Format { file: path.to_path_buf(), expected: "an Ed25519 private key (PEM)" })?;
    let bytes = kp.to_bytes();
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyFileError::Format { file: path.to_path_buf(), expected: "an Ed25519 private key (PEM)" })
}

/// Read an Ed25519 public key (SPKI PEM) as 32 bytes: the pinned bundle key.
pub fn read_public_key(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let text = read(path)?;
    let err = || KeyFileError::Format { file: path.to_path_buf(), expected: "an Ed25519 public key (PEM)" };
    let pk = Ed25519PublicKey::from_pem(&text).map_err(|_| err())?;
    pk.to_bytes().as_slice().try_into().map_err(|_| err())
}

/// A freshly generated bundle signing key pair as (private PEM, public PEM).
pub fn generate_bundle_keys() -> (String, String) {
    let kp = Ed25519KeyPair::generate();
    (kp.to_pem(), kp.public_key().to_pem())
}

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
