//! Helpers shared by the origin's integration tests.

// The skip helper of the end-to-end tests (gatehouse-cli), one copy for both crates.
#[path = "../../../cli/tests/support/skip.rs"]
mod skip;
pub use skip::skip;
