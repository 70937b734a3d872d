//! Stable, machine-readable reason codes carried by every deny.
//!
//! The string form of each code (`ReasonCode::as_str`) is part of Gatehouse's public
//! contract: it appears in responses, metrics and audit records, and never changes meaning.

use serde::{Deserialize, Serialize};

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $status:literal), )*) => {
        /// Why a request was denied or redirected. See the README for the full table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ReasonCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ReasonCode {
            /// Every reason code, in declaration order.
            pub const ALL: &'static [ReasonCode] = &[ $( ReasonCode::$variant, )* ];

            /// The stable snake_case string of this code.
            pub fn as_str(self) -> &'static str {
                match self { $( ReasonCode::$variant => $code, )* }
            }

            /// The HTTP status a deny with this code carries.
            pub fn status(self) -> u16 {
                match self { $( ReasonCode::$variant => $status, )* }
            }

            /// Parse the stable string form back into a code.
            pub fn from_str_code(s: &str) -> Option<ReasonCode> {
                match s { $( $code => Some(ReasonCode::$variant), )* _ => None }
            }
        }
    };
}

reason_codes! {
    /// No policy bundle is loaded.
    BundleMissing = ("bundle_missing", 503),
    /// The loaded policy bundle has expired (after any grace): fail closed.
    BundleExpired = ("bundle_expired", 503),
    /// An internal error in a check: fail closed.
    InternalError = ("internal_error", 503),
    /// A policy filter component trapped, ran out of time or memory: fail closed.
    FilterFailed = ("filter_failed", 503),
    /// The request body is larger than the gateway admits.
    BodyTooLarge = ("body_too_large", 413),
    /// The request head is larger than the gateway admits (bytes or header fields).
    HeadersTooLarge = ("headers_too_large", 431),
    /// The client stopped sending its request body before the gateway had all of it.
    RequestTimeout = ("request_timeout", 408),
    /// The upstream could not be reached or answered badly.
    UpstreamUnavailable = ("upstream_unavailable", 502),
    /// The upstream did not answer in time.
    UpstreamTimeout = ("upstream_timeout", 504),
    /// The shared rate-limit store (Redis) did not answer in time and the gateway is set
    /// to fail closed (`rate_store.on_error = "deny"`, the default).
    RateStoreUnavailable = ("rate_store_unavailable", 503),
    /// No gateway route serves this host and path.
    NoRoute = ("no_route", 404),
    /// The request head is malformed (bad host, path, oversized header...).
    RequestMalformed = ("request_malformed", 400),
    /// No organisation serves this host / path / token.
    TenantUnknown = ("tenant_unknown", 404),
    /// The credential belongs to another organisation than the one addressed.
    TenantMismatch = ("tenant_mismatch", 403),
    /// The organisation is suspended: none of its requests are served.
    TenantSuspended = ("tenant_suspended", 403),
    /// A forwarding header from a trusted proxy could not be parsed.
    ClientIpMalformed = ("client_ip_malformed", 400),
    /// A forwarding header listed more hops than allowed.
    ClientIpTooManyHops = ("client_ip_too_many_hops", 400),
    /// The client IP matched a deny rule.
    IpDenied = ("ip_denied", 403),
    /// An allowlist is configured and the client IP is not on it.
    IpNotAllowed = ("ip_not_allowed", 403),
    /// The client's country is blocked.
    GeoDenied = ("geo_denied", 403),
    /// A country allowlist is configured and the client's country is not on it.
    GeoNotAllowed = ("geo_not_allowed", 403),
    /// A country allowlist is configured and the country is unknown.
    GeoUnknown = ("geo_unknown", 403),
    /// No credential was presented where one is required.
    CredentialMissing = ("credential_missing", 401),
    /// More than one credential, or a malformed Authorization header.
    CredentialMalformed = ("credential_malformed", 401),
    /// The token is not a well-formed compact JWS (or uses non-canonical base64url).
    TokenMalformed = ("token_malformed", 401),
    /// The token's RFC 8693 `act` (who acts on the subject's behalf) is not an object
    /// with a header-safe `sub` of at most 256 bytes, or is a delegation chain (a nested
    /// `act`).
    TokenActInvalid = ("token_act_invalid", 401),
    /// The token exceeds the configured size bound.
    TokenTooLarge = ("token_too_large", 401),
    /// The token's `alg` is not the algorithm pinned for its key (includes `none`).
    TokenAlgorithmMismatch = ("token_algorithm_mismatch", 401),
    /// The token's `kid` is missing or names no key of a trusted issuer.
    TokenUnknownKey = ("token_unknown_key", 401),
    /// The token carries a `crit` header: no extensions are understood.
    TokenCriticalHeader = ("token_critical_header", 401),
    /// The signature does not verify.
    TokenBadSignature = ("token_bad_signature", 401),
    /// `exp` is in the past (beyond leeway).
    TokenExpired = ("token_expired", 401),
    /// `nbf` or `iat` is in the future (beyond leeway).
    TokenNotYetValid = ("token_not_yet_valid", 401),
    /// A required claim (`exp`, `sub`, `iss`) is missing or has the wrong type.
    TokenClaimMissing = ("token_claim_missing", 401),
    /// `iss` is not the issuer that owns the key.
    TokenWrongIssuer = ("token_wrong_issuer", 401),
    /// `aud` does not name an accepted audience.
    TokenWrongAudience = ("token_wrong_audience", 401),
    /// The token's `jti` is revoked.
    TokenRevoked = ("token_revoked", 401),
    /// The token's session (`sid`) is revoked.
    SessionRevoked = ("session_revoked", 401),
    /// The credential's subject (a user, or an API key's subject) is deactivated.
    UserDisabled = ("user_disabled", 401),
    /// The API key is not of the documented format.
    ApiKeyMalformed = ("api_key_malformed", 401),
    /// No API key with that prefix, or the secret does not match.
    ApiKeyInvalid = ("api_key_invalid", 401),
    /// The API key has expired.
    ApiKeyExpired = ("api_key_expired", 401),
    /// API keys cannot be checked: this edge has no API-key hashing secret.
    ApiKeyUnverifiable = ("api_key_unverifiable", 401),
    /// The identity lacks the permission the route requires.
    PermissionDenied = ("permission_denied", 403),
    /// The identity lacks the role the route requires.
    RoleRequired = ("role_required", 403),
    /// The identity is not in the team the route requires.
    TeamRequired = ("team_required", 403),
    /// The route requires a multi-factor sign-in.
    MfaRequired = ("mfa_required", 403),
    /// The route requires a multi-factor sign-in within a maximum age, and the token's is
    /// missing or older (RFC 9470 step-up: sign in again with a second factor).
    StepUpRequired = ("step_up_required", 401),
    /// The token's scopes do not cover the route's permission.
    ScopeInsufficient = ("scope_insufficient", 403),
    /// The organisation's tier (and overrides) do not enable the route's feature.
    FeatureDisabled = ("feature_disabled", 403),
    /// The route's method is not allowed.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// A rate limit is exhausted.
    RateLimited = ("rate_limited", 429),
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ReasonCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert_eq!(ReasonCode::from_str_code(code.as_str()), Some(*code));
            assert!((400..600).contains(&code.status()));
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
