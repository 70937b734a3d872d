//! # gatehouse-admin-bodies
//!
//! What the origin's admin API reads from a request body before it touches storage: the
//! body types (JSON, `deny_unknown_fields`), the names and addresses they carry
//! ([`names`]), an organisation's sign-in policy ([`auth_policy`]) and edge policy
//! ([`tenant_policy`]), and the checks each body goes through ([`bodies`]). The handlers
//! in `gatehouse-origin` run these checks first, in this order, then the ones that need
//! the caller or the database. Pure, so the fuzz targets reach every check.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth_policy;
pub mod bodies;
pub mod names;
pub mod tenant_policy;

/// A body that cannot be accepted: a 400 with a stable reason `code` and a message that
/// names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason code (one of [`REFUSAL_CODES`]).
    pub code: &'static str,
    /// What is wrong, for the person who sent it.
    pub message: String,
}

impl Refusal {
    /// A refusal with reason `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}

/// Every reason code a check of this crate refuses with.
pub const REFUSAL_CODES: &[&str] = &[
    "invalid_name",
    "invalid_slug",
    "invalid_email",
    "weak_password",
    "invalid_scope",
    "invalid_expiry",
    "invalid_role",
    "invalid_permission",
    "invalid_policy",
    "invalid_auth_policy",
    "confirmation_invalid",
];
