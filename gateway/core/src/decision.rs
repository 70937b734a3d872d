//! What the engine answers.

use std::sync::Arc;

use serde::Serialize;

use crate::identity::Identity;
use crate::reason::ReasonCode;

/// Let the request through.
#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    /// The organisation the request belongs to.
    pub org: String,
    /// The route rule that matched.
    pub route: String,
    /// Who the request acts as (`None` on public or optional routes without credential).
    pub identity: Option<Arc<Identity>>,
    /// Headers for the client's response (`RateLimit-*`).
    pub response_headers: Vec<(String, String)>,
}

impl Allow {
    /// Headers to add to the upstream request.
    pub fn upstream_headers(&self) -> &[(String, String)] {
        self.identity.as_deref().map(Identity::upstream_headers).unwrap_or(&[])
    }
}

/// Refuse the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// HTTP status.
    pub status: u16,
    /// Stable reason.
    pub reason: ReasonCode,
    /// Response headers (`WWW-Authenticate`, `Retry-After`, `RateLimit-*`).
    pub headers: Vec<(String, String)>,
}

impl Deny {
    /// A deny with the code's status and no headers.
    pub fn new(reason: ReasonCode) -> Deny {
        Deny { status: reason.status(), reason, headers: Vec::new() }
    }
}

/// Send a browser to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Where to (`302 Found`).
    pub location: String,
    /// Why: `credential_missing` (to the sign-in page) or `step_up_required` (to the
    /// step-up page).
    pub reason: ReasonCode,
}

/// The engine's answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let it through.
    Allow(Allow),
    /// Refuse it.
    Deny(Deny),
    /// Redirect a browser to sign in.
    Redirect(Redirect),
}

impl From<Deny> for Decision {
    fn from(d: Deny) -> Decision {
        Decision::Deny(d)
    }
}

impl From<ReasonCode> for Decision {
    fn from(r: ReasonCode) -> Decision {
        Decision::Deny(Deny::new(r))
    }
}

impl Decision {
    /// Whether this is an allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// HTTP status to answer with (200 for allow: the upstream's status is its own).
    pub fn status(&self) -> u16 {
        match self {
            Decision::Allow(_) => 200,
            Decision::Deny(d) => d.status,
            Decision::Redirect(_) => 302,
        }
    }

    /// The reason code, for denies and redirects.
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(d) => Some(d.reason),
            Decision::Redirect(r) => Some(r.reason),
        }
    }

    /// A flat, serialisable report (the CLI's JSON output and the conformance format).
    pub fn report(&self) -> DecisionReport {
        match self {
            Decision::Allow(a) => DecisionReport {
                decision: "allow",
                status: 200,
                reason_code: None,
                org: Some(a.org.clone()),
                route: Some(a.route.clone()),
                identity: a.identity.as_deref().cloned(),
                upstream_headers: a.upstream_headers().to_vec(),
                headers: a.response_headers.clone(),
            },
            Decision::Deny(d) => DecisionReport {
                decision: "deny",
                status: d.status,
                reason_code: Some(d.reason),
                org: None,
                route: None,
                identity: None,
                upstream_headers: Vec::new(),
                headers: d.headers.clone(),
            },
            Decision::Redirect(r) => DecisionReport {
                decision: "redirect",
                status: 302,
                reason_code: Some(r.reason),
                org: None,
                route: None,
                identity: None,
                upstream_headers: Vec::new(),
                headers: vec![("location".into(), r.location.clone())],
            },
        }
    }
}

/// Serialisable form of a [`Decision`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionReport {
    /// `allow`, `deny` or `redirect`.
    pub decision: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Reason code, for deny and redirect.
    pub reason_code: Option<ReasonCode>,
    /// Organisation (allow).
    pub org: Option<String>,
    /// Route name (allow).
    pub route: Option<String>,
    /// Identity (allow with a credential).
    pub identity: Option<Identity>,
    /// Headers added to the upstream request (allow).
    pub upstream_headers: Vec<(String, String)>,
    /// Headers on the response to the client.
    pub headers: Vec<(String, String)>,
}
