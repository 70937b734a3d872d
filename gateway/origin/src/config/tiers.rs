//! `[tiers.<tier>]`: what each tier may hold at most (users, custom roles, API keys).
//! An absent limit is unlimited; an absent tier has no limits. Enforced by
//! [`crate::api::caps`] with `limit_reached`.

use std::collections::BTreeMap;

use gatehouse_settings::within;
use serde::Deserialize;

/// The caps of one tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierCaps {
    /// Enabled users (deactivated ones free their seat).
    pub max_users: Option<u64>,
    /// Custom roles.
    pub max_custom_roles: Option<u64>,
    /// Active API keys (revoked and expired ones do not count).
    pub max_api_keys: Option<u64>,
}

/// Largest cap accepted (a typo such as an extra digit group is refused, not obeyed).
const MAX_CAP: u64 = 10_000_000;

/// Check every tier's caps; the error names the field (`tiers.free.max_users: …`).
pub fn validate(tiers: &BTreeMap<String, TierCaps>) -> Result<(), String> {
    for (name, caps) in tiers {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!("tiers.{name}: a tier name is 1–64 of a-z, A-Z, 0-9, -, _"));
        }
        // An organisation always has its owner, so a user cap is at least 1.
        if let Some(n) = caps.max_users {
            within(&format!("tiers.{name}.max_users"), n, 1..=MAX_CAP).map_err(|e| e.to_string())?;
        }
        if let Some(n) = caps.max_custom_roles {
            within(&format!("tiers.{name}.max_custom_roles"), n, 0..=MAX_CAP).map_err(|e| e.to_string())?;
        }
        if let Some(n) = caps.max_api_keys {
            within(&format!("tiers.{name}.max_api_keys"), n, 0..=MAX_CAP).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_parse_and_bad_ones_name_their_field() {
        let t: BTreeMap<String, TierCaps> =
            toml::from_str("[free]\nmax_users = 3\nmax_api_keys = 0\n[team]\nmax_custom_roles = 10\n").unwrap();
        validate(&t).unwrap();
        assert_eq!(t["free"], TierCaps { max_users: Some(3), max_custom_roles: None, max_api_keys: Some(0) });
        for (text, field) in [
            ("[free]\nmax_users = 0\n", "tiers.free.max_users"),
            ("[free]\nmax_api_keys = 100000000\n", "tiers.free.max_api_keys"),
            ("[\"bad tier\"]\nmax_users = 1\n", "tiers.bad tier"),
        ] {
            let t: BTreeMap<String, TierCaps> = toml::from_str(text).unwrap();
            let e = validate(&t).unwrap_err();
            assert!(e.starts_with(field), "{text}: {e}");
        }
        assert!(toml::from_str::<BTreeMap<String, TierCaps>>("[free]\nmax_user = 3\n").is_err(), "unknown field");
    }
}
