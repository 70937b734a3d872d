//! Shared fixture for the benchmarks: the engine test fixture of `gatehouse-core`
//! (keys, policy, token makers), reused rather than copied.

#[path = "../../gateway/core/tests/common/mod.rs"]
pub mod common;

pub mod origin_harness;
