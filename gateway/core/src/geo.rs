//! Country rules. The engine never looks countries up itself: the host passes the
//! platform's country in the request, names a trusted header, or supplies a
//! [`CountryLookup`] (e.g. a MaxMind-format database reader).

use std::net::IpAddr;

use crate::policy::GeoRules;
use crate::reason::ReasonCode;

/// An upper-case ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parse two ASCII letters (any case). `XX`, `T1` (Tor) and similar platform
    /// placeholders are returned as given; rules decide what they mean.
    pub fn parse(s: &str) -> Option<CountryCode> {
        let b = s.trim().as_bytes();
        if b.len() != 2 || !b.iter().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(CountryCode([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XX")
    }
}

/// Country lookup by client address, supplied by the host.
pub trait CountryLookup {
    /// The country of `ip`, if known.
    fn country(&self, ip: IpAddr) -> Option<CountryCode>;
}

/// A lookup that knows nothing (the country must come from the request).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCountryLookup;

impl CountryLookup for NoCountryLookup {
    fn country(&self, _ip: IpAddr) -> Option<CountryCode> {
        None
    }
}

/// Compiled allow/deny country sets.
#[derive(Debug, Clone, Default)]
pub struct GeoMatcher {
    allow: Vec<CountryCode>,
    deny: Vec<CountryCode>,
}

impl GeoMatcher {
    /// Compile validated rules.
    pub fn new(rules: &GeoRules) -> GeoMatcher {
        GeoMatcher {
            allow: rules.allow.iter().filter_map(|c| CountryCode::parse(c)).collect(),
            deny: rules.deny.iter().filter_map(|c| CountryCode::parse(c)).collect(),
        }
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Check a (possibly unknown) country. Deny wins; an allowlist refuses unknown countries.
    pub fn check(&self, country: Option<CountryCode>) -> Result<(), ReasonCode> {
        match country {
            Some(c) if self.deny.contains(&c) => Err(ReasonCode::GeoDenied),
            Some(c) if !self.allow.is_empty() && !self.allow.contains(&c) => Err(ReasonCode::GeoNotAllowed),
            None if !self.allow.is_empty() => Err(ReasonCode::GeoUnknown),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let m = GeoMatcher::new(&GeoRules { allow: vec!["DE".into(), "FR".into()], deny: vec!["FR".into()] });
        assert_eq!(m.check(CountryCode::parse("de")), Ok(()));
        assert_eq!(m.check(CountryCode::parse("FR")), Err(ReasonCode::GeoDenied));
        assert_eq!(m.check(CountryCode::parse("US")), Err(ReasonCode::GeoNotAllowed));
        assert_eq!(m.check(None), Err(ReasonCode::GeoUnknown));
        let d = GeoMatcher::new(&GeoRules { allow: vec![], deny: vec!["KP".into()] });
        assert_eq!(d.check(None), Ok(()));
        assert_eq!(d.check(CountryCode::parse("KP")), Err(ReasonCode::GeoDenied));
        assert!(CountryCode::parse("DEU").is_none());
        assert!(CountryCode::parse("D\n").is_none());
        assert!(CountryCode::parse("").is_none());
    }
}
