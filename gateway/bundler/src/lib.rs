//! # gatehouse-bundler
//!
//! The human side of policies: read a TOML policy file (with errors that name the file,
//! the line and the field), resolve referenced files, validate, and compile the result
//! into a signed bundle. Also reads and writes key files.

#![warn(missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

use gatehouse_core::bundle::{self, BundleBody, FORMAT_VERSION};
use gatehouse_core::{EdgeSecrets, Policy};

pub mod keys;
pub mod random;

/// A policy or secrets file that cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or type error (the message includes line, column and key).
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The policy parsed but is invalid; one line per problem, each naming its field.
    #[error("{file}: invalid policy:\n{}", .issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        issues: Vec<gatehouse_core::policy::PolicyIssue>,
    },
}

fn read(path: &Path) -> Result<String, FileError> {
    fs::read_to_string(path).map_err(|source| FileError::Read { file: path.to_path_buf(), source })
}

/// Read a policy file, resolve `jwks_file` references (relative to the policy file), and
/// validate it.
pub fn load_policy(path: &Path) -> Result<Policy, FileError> {
    let text = read(path)?;
    let mut policy: Policy = toml::from_str(&text)
        .map_err(|e| FileError::Parse { file: path.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut issues = Vec::new();
    for (i, iss) in policy.issuers.iter_mut().enumerate() {
        if let Some(f) = iss.jwks_file.take() {
            if !iss.jwks.is_empty() {
                issues.push(gatehouse_core::policy::PolicyIssue {
                    path: format!("issuers[{i}].jwks_file"),
                    message: "give either `jwks` or `jwks_file`, not both".into(),
                });
            }
            match fs::read_to_string(dir.join(&f)) {
                Ok(t) => iss.jwks = t,
                Err(e) => issues.push(gatehouse_core::policy::PolicyIssue {
                    path: format!("issuers[{i}].jwks_file"),
                    message: format!("cannot read `{f}`: {e}"),
                }),
            }
        }
    }
    if let Err(more) = policy.validate() {
        issues.extend(more);
    }
    if !issues.is_empty() {
        return Err(FileError::Invalid { file: path.to_path_buf(), issues });
    }
    Ok(policy)
}

/// Read an edge secrets file (TOML: `api_key_secret = "<base64>"`, `[hmac] name = "<base64>"`).
pub fn load_secrets(path: &Path) -> Result<EdgeSecrets, FileError> {
    let text = read(path)?;
    toml::from_str(&text)
        .map_err(|e| FileError::Parse { file: path.to_path_buf(), message: e.to_string().trim_end().to_string() })
}

/// How to stamp a bundle.
#[derive(Debug, Clone)]
pub struct BundleStamp {
    /// Policy revision.
    pub revision: u64,
    /// Region name.
    pub region: String,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
}

/// Sign a validated policy into bundle bytes.
pub fn compile(
    policy: Policy,
    stamp: &BundleStamp,
    signing_keypair: &[u8; 64],
) -> Result<Vec<u8>, bundle::BundleError> {
    let body = BundleBody {
        format: FORMAT_VERSION,
        revision: stamp.revision,
        region: stamp.region.clone(),
        issued_at: stamp.issued_at,
        expires_at: stamp.issued_at.saturating_add(stamp.ttl_secs),
        policy,
    };
    bundle::sign(&body, signing_keypair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("policy.toml");
        fs::write(&p, "[tiers.free]\nfeatures = 3\n").unwrap();
        let e = load_policy(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:", p.display())), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("features"), "{e}");

        fs::write(&p, "[orgs.acme]\ntier = \"gold\"\nip = { allow = [\"10.0.0.1/8\"] }\n").unwrap();
        let e = load_policy(&p).unwrap_err().to_string();
        assert!(e.contains("host bits set; did you mean `10.0.0.0/8`"), "{e}");

        fs::write(&p, "[orgs.acme]\ntier = \"gold\"\n").unwrap();
        let e = load_policy(&p).unwrap_err().to_string();
        assert!(e.contains("orgs.acme.tier: names unknown tier `gold`"), "{e}");

        fs::write(&p, "[orgs.acme]\ntier = \"gold\"\ncolour = \"blue\"\n").unwrap();
        let e = load_policy(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");

        fs::write(&p, "[[issuers]]\nissuer = \"x\"\njwks_file = \"missing.json\"\n").unwrap();
        let e = load_policy(&p).unwrap_err().to_string();
        assert!(e.contains("issuers[0].jwks_file: cannot read `missing.json`"), "{e}");
    }

    /// Every policy file of the repository survives the trip through a signed bundle: the
    /// core's bundle reader returns exactly the policy, and agrees with rmp-serde's reader.
    #[test]
    fn repository_policies_round_trip_through_bundles() {
        let root =
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")).join("../..");
        let (kp, pk) = {
            let k = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([9; 32]));
            (<[u8; 64]>::try_from(&k[..]).unwrap(), <[u8; 32]>::try_from(&k.pk[..]).unwrap())
        };
        let stamp = BundleStamp { revision: 3, region: "eu".into(), issued_at: 1_000, ttl_secs: 3_600 };
        // The example policy reads the keys `gatehouse keys generate` writes beside it.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("keys")).unwrap();
        let jwk: serde_json::Value =
            serde_json::from_str(&jwt_simple::prelude::ES256KeyPair::generate().public_key().to_jwk()).unwrap();
        fs::write(dir.path().join("keys/token-signing.jwks.json"), serde_json::json!({ "keys": [jwk] }).to_string())
            .unwrap();
        let example = dir.path().join("policy.toml");
        fs::copy(root.join("examples/policy.toml"), &example).unwrap();
        for file in [example, root.join("tests/conformance/policy.toml")] {
            let file = file.display().to_string();
            let policy = load_policy(Path::new(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let bytes = compile(policy.clone(), &stamp, &kp).unwrap();
            let body = bundle::open(&bytes, &pk, 2_000).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(body.policy, policy, "{file}");
            #[derive(serde::Deserialize)]
            struct Env {
                #[serde(with = "serde_bytes")]
                body: Vec<u8>,
            }
            let env: Env = rmp_serde::from_slice(&bytes).unwrap();
            let theirs: BundleBody = rmp_serde::from_slice(&env.body).unwrap();
            assert_eq!(theirs, body, "{file}");
        }
    }
}
