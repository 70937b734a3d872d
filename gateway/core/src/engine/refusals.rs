//! How the engine refuses: denies with their `WWW-Authenticate` challenge, and the pages
//! a browser is sent to instead (sign-in, and step-up per RFC 9470).

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::{CompiledOrg, Engine};
use crate::access::CompiledRoute;
use crate::decision::{Decision, Deny, Redirect};
use crate::policy::RequireMfa;
use crate::reason::ReasonCode;
use crate::request::RequestHead;

impl Engine {
    /// A deny with the code's status and, for 401 and scope refusals, its challenge.
    pub(super) fn deny(&self, reason: ReasonCode) -> Deny {
        let mut d = Deny::new(reason);
        let realm = &self.settings.realm;
        if d.status == 401 {
            let value = match reason {
                ReasonCode::CredentialMissing => format!("Bearer realm=\"{realm}\""),
                ReasonCode::CredentialMalformed => {
                    format!("Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{reason}\"")
                }
                _ => format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{reason}\""),
            };
            d.headers.push(("www-authenticate".into(), value));
        } else if matches!(reason, ReasonCode::PermissionDenied | ReasonCode::ScopeInsufficient) {
            d.headers.push((
                "www-authenticate".into(),
                format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{reason}\""),
            ));
        }
        d
    }

    pub(super) fn missing_credential(&self, req: &RequestHead<'_>, org: &CompiledOrg) -> Decision {
        match (&org.login_url, is_browser(req)) {
            (Some(login), true) => Decision::Redirect(Redirect {
                location: page_url(login, org, req),
                reason: ReasonCode::CredentialMissing,
            }),
            _ => self.deny(ReasonCode::CredentialMissing).into(),
        }
    }

    /// RFC 9470: a browser goes to the organisation's step-up page (when it has one), with
    /// `return_to` and `max_age`; anything else gets 401 with the challenge that says what
    /// authentication is missing.
    pub(super) fn step_up(&self, req: &RequestHead<'_>, org: &CompiledOrg, route: &CompiledRoute) -> Decision {
        let max_age = match route.require_mfa {
            RequireMfa::Within { max_age_secs } => max_age_secs,
            // Only a route with a maximum age asks for step-up.
            _ => return self.deny(ReasonCode::InternalError).into(),
        };
        if let (Some(stepup), true) = (&org.stepup_url, is_browser(req)) {
            let mut location = page_url(stepup, org, req);
            location.push_str("&max_age=");
            location.push_str(itoa::Buffer::new().format(max_age));
            return Decision::Redirect(Redirect { location, reason: ReasonCode::StepUpRequired });
        }
        let mut d = Deny::new(ReasonCode::StepUpRequired);
        d.headers.push((
            "www-authenticate".into(),
            format!(
                "Bearer realm=\"{}\", error=\"insufficient_user_authentication\", \
                 error_description=\"A multi-factor sign-in within the last {max_age} seconds is required\", \
                 max_age=\"{max_age}\", acr_values=\"{STEP_UP_ACR}\"",
                self.settings.realm
            ),
        ));
        d.into()
    }
}

/// The `acr` value a step-up asks for (the origin sets it on tokens whose `amr` has `mfa`).
pub const STEP_UP_ACR: &str = "urn:gatehouse:mfa";

/// Whether a refusal should be a page to go to: a browser's navigation (`GET`/`HEAD`
/// accepting HTML).
fn is_browser(req: &RequestHead<'_>) -> bool {
    matches!(req.method, "GET" | "HEAD") && req.accepts_html()
}

/// `url` (a sign-in or step-up page; `{org}` replaced by the org id) with `return_to`
/// naming the request's own URL.
fn page_url(url: &str, org: &CompiledOrg, req: &RequestHead<'_>) -> String {
    let here = match req.query {
        Some(q) => format!("{}://{}{}?{}", req.scheme, req.host, req.path, q),
        None => format!("{}://{}{}", req.scheme, req.host, req.path),
    };
    let base = url.replace("{org}", &org.id);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}return_to={}", utf8_percent_encode(&here, NON_ALPHANUMERIC))
}
