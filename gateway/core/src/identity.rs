//! Who a request acts as, once its credential is verified.

use std::sync::OnceLock;

use serde::Serialize;

/// How the identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A bearer JWT in `Authorization`.
    Jwt,
    /// A session JWT in the session cookie.
    Session,
    /// An API key.
    ApiKey,
}

impl CredentialKind {
    /// Parse the stable string form.
    pub fn parse(s: &str) -> Option<CredentialKind> {
        match s {
            "jwt" => Some(CredentialKind::Jwt),
            "session" => Some(CredentialKind::Session),
            "api_key" => Some(CredentialKind::ApiKey),
            _ => None,
        }
    }

    /// Stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::Session => "session",
            CredentialKind::ApiKey => "api_key",
        }
    }
}

/// A verified identity. Built once per verified token (then cached) or API key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// How it was established.
    pub kind: CredentialKind,
    /// Subject (`sub`, or the API key's subject).
    pub subject: String,
    /// Organisation id.
    pub org: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Scopes; `None` when the credential does not restrict scope.
    pub scopes: Option<Vec<String>>,
    /// Teams.
    pub teams: Vec<String>,
    /// Authentication methods (`amr`).
    pub amr: Vec<String>,
    /// Session id (`sid`).
    pub session_id: Option<String>,
    /// Token id (`jti`) or API key prefix.
    pub credential_id: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<u64>,
    /// When the user last authenticated (`auth_time`, Unix seconds; renewed by step-up).
    /// `None` for API keys, tokens without the claim and identities from filter records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// Authentication context class (`acr`), as the issuer stated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Who really acts when the subject is impersonated (RFC 8693 `act.sub`: `operator`,
    /// `user:<id>`). `None` for ordinary credentials and identities from filter records
    /// (the WIT identity record has no such field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Prefix of the upstream header names.
    #[serde(skip)]
    prefix: String,
    /// Headers for the upstream, computed when first asked for (a WebAssembly filter
    /// hands the identity to its host, which never needs them from the filter).
    #[serde(skip)]
    upstream_headers: DerivedHeaders,
}

/// The upstream headers of an [`Identity`], computed on first use. They follow from the
/// other fields, so they take no part in equality.
#[derive(Debug, Clone, Default)]
struct DerivedHeaders(OnceLock<Vec<(String, String)>>);

impl PartialEq for DerivedHeaders {
    fn eq(&self, _: &DerivedHeaders) -> bool {
        true
    }
}

/// Bounds on identity claims; anything larger is a malformed credential.
pub mod limits {
    /// Most entries in roles, scopes, teams or amr.
    pub const MAX_LIST: usize = 64;
    /// Longest single string.
    pub const MAX_ITEM: usize = 256;
}

/// Whether `s` may travel in a header value unchanged: printable ASCII, no separators we
/// use to join lists.
pub fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= limits::MAX_ITEM && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b',')
}

impl Identity {
    /// Assemble an identity whose upstream headers go under `prefix`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: CredentialKind,
        subject: String,
        org: String,
        roles: Vec<String>,
        scopes: Option<Vec<String>>,
        teams: Vec<String>,
        amr: Vec<String>,
        session_id: Option<String>,
        credential_id: Option<String>,
        expires_at: Option<u64>,
        prefix: &str,
    ) -> Identity {
        Identity {
            kind,
            subject,
            org,
            roles,
            scopes,
            teams,
            amr,
            session_id,
            credential_id,
            expires_at,
            auth_time: None,
            acr: None,
            actor: None,
            prefix: prefix.to_string(),
            upstream_headers: DerivedHeaders::default(),
        }
    }

    /// The same identity with the time of its latest authentication (`auth_time`) and its
    /// authentication context class (`acr`).
    pub fn with_authentication(mut self, auth_time: Option<u64>, acr: Option<String>) -> Identity {
        self.auth_time = auth_time;
        self.acr = acr;
        self
    }

    /// The same identity acted for by `actor` (an impersonation's `act.sub`).
    pub fn with_actor(mut self, actor: Option<String>) -> Identity {
        self.actor = actor;
        self
    }

    /// Whether every value may travel in a header as the engine's own identities do
    /// ([`header_safe`], lists of at most [`limits::MAX_LIST`]): what an identity from a
    /// filter component must satisfy before the gateway believes it.
    pub fn is_header_safe(&self) -> bool {
        let list = |l: &[String]| l.len() <= limits::MAX_LIST && l.iter().all(|s| header_safe(s));
        header_safe(&self.subject)
            && header_safe(&self.org)
            && list(&self.roles)
            && self.scopes.as_deref().is_none_or(list)
            && list(&self.teams)
            && list(&self.amr)
            && self.session_id.as_deref().is_none_or(header_safe)
            && self.credential_id.as_deref().is_none_or(header_safe)
            && self.acr.as_deref().is_none_or(header_safe)
            && self.actor.as_deref().is_none_or(header_safe)
    }

    /// Headers to add to the upstream request (`x-gatehouse-subject`, `-org`, `-auth`,
    /// `-roles`, `-scopes`, `-teams`, `-session`, and `-actor` under an impersonation).
    pub fn upstream_headers(&self) -> &[(String, String)] {
        self.upstream_headers.0.get_or_init(|| {
            let name = |n: &str| {
                let mut s = String::with_capacity(self.prefix.len() + n.len());
                s.push_str(&self.prefix);
                s.push_str(n);
                s
            };
            let mut h = Vec::with_capacity(8);
            h.push((name("subject"), self.subject.clone()));
            h.push((name("org"), self.org.clone()));
            h.push((name("auth"), self.kind.as_str().to_string()));
            if !self.roles.is_empty() {
                h.push((name("roles"), self.roles.join(",")));
            }
            if let Some(s) = &self.scopes {
                h.push((name("scopes"), s.join(" ")));
            }
            if !self.teams.is_empty() {
                h.push((name("teams"), self.teams.join(",")));
            }
            if let Some(sid) = &self.session_id {
                h.push((name("session"), sid.clone()));
            }
            if let Some(a) = &self.actor {
                h.push((name("actor"), a.clone()));
            }
            h
        })
    }
}

/// The [`Identity`] a WIT `identity` record carries, whoever generated the record's type
/// (the filter guest's `wit-bindgen` or the gateway's `wasmtime` bindings: both have the
/// record's fields by name). `None` for an unknown credential kind or a value that is not
/// [`Identity::is_header_safe`]: a filter cannot hand the gateway header text. One
/// definition of the conversion for both sides of the filter boundary.
#[macro_export]
macro_rules! identity_from_record {
    ($record:expr, $prefix:expr) => {{
        let r = $record;
        $crate::identity::CredentialKind::parse(&r.kind)
            .map(|kind| {
                $crate::identity::Identity::new(
                    kind,
                    r.subject,
                    r.org,
                    r.roles,
                    r.scopes,
                    r.teams,
                    r.amr,
                    r.session_id,
                    r.credential_id,
                    r.expires_at,
                    $prefix,
                )
            })
            .filter($crate::identity::Identity::is_header_safe)
    }};
}

/// The WIT `identity` record of type `$ty` (a generated binding) for an [`Identity`]: the
/// inverse of [`identity_from_record!`].
#[macro_export]
macro_rules! identity_to_record {
    ($ty:path, $identity:expr) => {{
        let i: &$crate::identity::Identity = $identity;
        $ty {
            kind: i.kind.as_str().into(),
            subject: i.subject.clone(),
            org: i.org.clone(),
            roles: i.roles.clone(),
            scopes: i.scopes.clone(),
            teams: i.teams.clone(),
            amr: i.amr.clone(),
            session_id: i.session_id.clone(),
            credential_id: i.credential_id.clone(),
            expires_at: i.expires_at,
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the WIT record, as both bindings generate it.
    #[derive(Debug, Clone, PartialEq)]
    struct Record {
        kind: String,
        subject: String,
        org: String,
        roles: Vec<String>,
        scopes: Option<Vec<String>>,
        teams: Vec<String>,
        amr: Vec<String>,
        session_id: Option<String>,
        credential_id: Option<String>,
        expires_at: Option<u64>,
    }

    #[test]
    fn records_round_trip_and_unknown_kinds_are_refused() {
        let r = Record {
            kind: "jwt".into(),
            subject: "alice".into(),
            org: "acme".into(),
            roles: vec!["viewer".into()],
            scopes: Some(vec!["items:read".into()]),
            teams: vec!["eng".into()],
            amr: vec!["pwd".into(), "otp".into()],
            session_id: Some("s1".into()),
            credential_id: Some("j1".into()),
            expires_at: Some(42),
        };
        let id = crate::identity_from_record!(r.clone(), "x-gatehouse-").unwrap();
        assert_eq!((id.kind, id.subject.as_str(), id.expires_at), (CredentialKind::Jwt, "alice", Some(42)));
        assert!(id.upstream_headers().iter().any(|(k, v)| k == "x-gatehouse-subject" && v == "alice"));
        assert_eq!(crate::identity_to_record!(Record, &id), r);
        assert!(crate::identity_from_record!(Record { kind: "magic".into(), ..r.clone() }, "x-").is_none());
        // Header text a filter could smuggle is refused, in every field.
        for bad in ["a\r\nx-gatehouse-org: root", "a b", "a,b", "", &"x".repeat(300)] {
            let subject = Record { subject: bad.into(), ..r.clone() };
            assert!(crate::identity_from_record!(subject, "x-").is_none(), "{bad:?}");
            let roles = Record { roles: vec!["viewer".into(), bad.into()], ..r.clone() };
            assert!(crate::identity_from_record!(roles, "x-").is_none(), "{bad:?}");
            let sid = Record { session_id: Some(bad.into()), ..r.clone() };
            assert!(crate::identity_from_record!(sid, "x-").is_none(), "{bad:?}");
        }
        let many = Record { teams: vec!["t".into(); limits::MAX_LIST + 1], ..r };
        assert!(crate::identity_from_record!(many, "x-").is_none());
    }
}
