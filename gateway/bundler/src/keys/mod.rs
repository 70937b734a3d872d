//! Key files: PEM for private and public keys, JWKS for issuer public keys, TOML for edge
//! secrets. Private key files are written with mode 0600 and never overwritten silently.
//! Bundle signing keys are here; token signing keys (for `token mint` and the origin's
//! issuance) in [`token`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use jwt_simple::prelude::*;

mod token;

pub use token::{generate_token_keys, read_token_key, TokenKey};

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

pub(crate) fn read(path: &Path) -> Result<String, KeyFileError> {
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
