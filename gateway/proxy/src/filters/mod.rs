//! The wasmtime host for policy filter components.
//!
//! Components are compiled once (and the machine code cached on disk across restarts),
//! pre-linked (`InstancePre`) and instantiated from a pooling allocator. Instances are
//! kept in a pool per filter and reused; each holds the compiled policy of the bundle
//! revision it last loaded, so the bundle crosses into a component once per instance and
//! revision, never per request. Every call has a CPU bound (epoch interruption) and every
//! instance a memory bound; a call that traps or exceeds a bound fails that request
//! closed and its instance is thrown away.//!
//! The rooms, as wasmtime's own: [`bindings`] (generated), `host` (engine, linker,
//! stores and limits; [`FilterHost`]), `pool` (instances kept per filter) and `conv`
//! (WIT types and the context between filters).

use std::path::{Path, PathBuf};

use anyhow::anyhow;

pub mod bindings;
mod conv;
mod host;
mod pool;

pub use conv::{
    empty_context, with_context, Verdict, WitContext, WitContextParam, WitDeny, WitIdentity, WitIdentityParam,
    WitRequest,
};
pub use host::{now_nanos, tick_ms, FilterError, FilterHost, HostState, PolicyInput, Shared};

/// Resolve built-in names to files in `dir`.
pub fn builtin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("gatehouse_filter_{name}.wasm"))
}

/// Error for a missing built-in directory.
pub fn no_builtin_dir() -> anyhow::Error {
    anyhow!("filters.builtin_dir is not set and no built-in filters were found next to the binary")
}
