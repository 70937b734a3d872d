//! An organisation's sign-in policy: multi-factor authentication, email verification and
//! session lifetimes. Stored as JSON in `org.auth_policy`, validated when it is set
//! (`PUT /v1/orgs/{slug}/auth-policy`), read by every sign-in path.

use serde::{Deserialize, Serialize};

/// A second factor the organisation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaMethod {
    /// Time-based one-time passwords (RFC 6238).
    Totp,
    /// Passkeys and security keys (WebAuthn).
    Webauthn,
}

/// What an unverified email address may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailVerification {
    /// Sign-in is refused until the address is verified (`email_unverified`).
    Required,
    /// Sign-in works; tokens carry `email_verified: false`.
    #[default]
    Optional,
}

/// The organisation's sign-in policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthPolicy {
    /// Every member needs a second factor: members without one are taken through
    /// enrolment at their next sign-in.
    pub mfa_required: bool,
    /// Second factors members may use (and enrol).
    pub mfa_methods: Vec<MfaMethod>,
    /// What local accounts with an unverified email may do.
    pub email_verification: EmailVerification,
    /// A session unused this long ends (seconds; `None`: only the absolute lifetime).
    pub session_idle_timeout_secs: Option<u64>,
    /// A session ends this long after sign-in, used or not (seconds; `None`: the
    /// region's `tokens.session_ttl_secs`).
    pub session_max_lifetime_secs: Option<u64>,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            mfa_required: false,
            mfa_methods: vec![MfaMethod::Totp, MfaMethod::Webauthn],
            email_verification: EmailVerification::Optional,
            session_idle_timeout_secs: None,
            session_max_lifetime_secs: None,
        }
    }
}

/// Shortest idle timeout (a minute) and longest lifetime (a year) accepted.
const MIN_IDLE: u64 = 60;
const MAX_LIFETIME: u64 = 366 * 24 * 3600;

impl AuthPolicy {
    /// Check the policy; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.mfa_required && self.mfa_methods.is_empty() {
            return Err("mfa_methods: MFA is required, so at least one method must be allowed".into());
        }
        let mut seen = self.mfa_methods.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.mfa_methods.len() {
            return Err("mfa_methods: a method is listed twice".into());
        }
        if let Some(i) = self.session_idle_timeout_secs {
            if !(MIN_IDLE..=MAX_LIFETIME).contains(&i) {
                return Err(format!("session_idle_timeout_secs: between {MIN_IDLE} and {MAX_LIFETIME}"));
            }
        }
        if let Some(l) = self.session_max_lifetime_secs {
            if !(MIN_IDLE..=MAX_LIFETIME).contains(&l) {
                return Err(format!("session_max_lifetime_secs: between {MIN_IDLE} and {MAX_LIFETIME}"));
            }
            if self.session_idle_timeout_secs.is_some_and(|i| i > l) {
                return Err("session_idle_timeout_secs: longer than session_max_lifetime_secs".into());
            }
        }
        Ok(())
    }

    /// Whether members may use `m`.
    pub fn allows(&self, m: MfaMethod) -> bool {
        self.mfa_methods.contains(&m)
    }

    /// Parse the stored JSON. A row that does not parse is an error for the caller (no
    /// silent fallback to a weaker default).
    pub fn from_stored(json: &str) -> Result<AuthPolicy, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid_and_round_trips() {
        let p = AuthPolicy::default();
        p.validate().unwrap();
        assert_eq!(AuthPolicy::from_stored("{}").unwrap(), p);
        assert_eq!(AuthPolicy::from_stored(&serde_json::to_string(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn bad_policies_name_their_field() {
        let p = AuthPolicy { mfa_required: true, mfa_methods: vec![], ..Default::default() };
        assert!(p.validate().unwrap_err().starts_with("mfa_methods"));
        let p = AuthPolicy { mfa_methods: vec![MfaMethod::Totp, MfaMethod::Totp], ..Default::default() };
        assert!(p.validate().unwrap_err().starts_with("mfa_methods"));
        let p = AuthPolicy { session_idle_timeout_secs: Some(5), ..Default::default() };
        assert!(p.validate().unwrap_err().starts_with("session_idle_timeout_secs"));
        let p = AuthPolicy {
            session_idle_timeout_secs: Some(7200),
            session_max_lifetime_secs: Some(3600),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().starts_with("session_idle_timeout_secs"));
        assert!(AuthPolicy::from_stored(r#"{"mfa_requird":true}"#).is_err());
        assert!(AuthPolicy::from_stored(r#"{"mfa_methods":["sms"]}"#).is_err());
    }
}
