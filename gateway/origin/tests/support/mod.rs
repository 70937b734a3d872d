//! Helpers shared by the origin's integration tests.

// The skip helper of the end-to-end tests (gatehouse-cli), one copy for both crates;
// not every test binary skips.
#[allow(dead_code)]
#[path = "../../../cli/tests/support/skip.rs"]
mod skip;
#[allow(unused_imports)]
pub use skip::skip;
pub mod origin;
pub mod sqld;
