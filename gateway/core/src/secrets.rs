//! Edge-local secrets: never part of a policy bundle.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Secrets an edge holds locally (from a file or the platform's secret store).
///
/// * `api_key_secret` keys the HMAC-SHA256 under which API keys are stored in bundles;
/// * `hmac` holds HS256 keys by name, referenced by issuers' `hmac_secret`.
///
/// `Debug` never prints the secrets.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSecrets {
    /// API-key hashing secret (base64 in files).
    #[serde(default, with = "b64_opt")]
    pub api_key_secret: Option<Vec<u8>>,
    /// HS256 keys by name (base64 in files).
    #[serde(default, with = "b64_map")]
    pub hmac: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for EdgeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeSecrets")
            .field("api_key_secret", &self.api_key_secret.as_ref().map(|_| "<redacted>"))
            .field("hmac", &self.hmac.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EdgeSecrets {
    /// The HS256 key named `name`, if present.
    pub fn hmac_key(&self, name: &str) -> Option<&[u8]> {
        self.hmac.get(name).map(Vec::as_slice)
    }
}

mod b64_opt {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::decode_secret(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

mod b64_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        m.into_iter().map(|(k, v)| super::decode_secret(&v).map(|b| (k, b)).map_err(serde::de::Error::custom)).collect()
    }
}

/// Decode a base64 (standard or URL-safe) secret of at least 32 bytes.
pub fn decode_secret(s: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let s = s.trim();
    let bytes = STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map_err(|_| "secret is not base64".to_string())?;
    if bytes.len() < 32 {
        return Err("secret must be at least 32 bytes".into());
    }
    Ok(bytes)
}
