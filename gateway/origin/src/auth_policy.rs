//! An organisation's sign-in policy: multi-factor authentication, email verification and
//! session lifetimes. Stored as JSON in `org.auth_policy`, validated when it is set
//! (`PUT /v1/orgs/{slug}/auth-policy`), read by every sign-in path. The type and its
//! checks live in `gatehouse-admin-bodies`, with the other admin bodies.

pub use gatehouse_admin_bodies::auth_policy::{AuthPolicy, EmailVerification, MfaMethod};
