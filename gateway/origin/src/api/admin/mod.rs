//! Admin endpoints of an organisation, one module per resource.

pub mod auth_policy;
pub mod keys;
pub mod operator_audit;
pub mod org_lifecycle;
pub mod orgs;
pub mod roles;
pub mod sessions;
pub mod teams;
pub mod usage;
pub mod users;
