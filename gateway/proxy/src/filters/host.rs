//! The wasmtime host: the engine (pooling allocator, epoch clock), the linker with WASI
//! and the `gatehouse:policy/host` imports, per-instance stores with their limits, and
//! [`FilterHost::check`], one filter call.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _, Result};
use gatehouse_core::ratelimit::Gcra;
use gatehouse_core::MemoryRateStore;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::FilterSettings;

use super::bindings::gatehouse::policy::host;
use super::bindings::{Filter, FilterPre};
use super::conv::{Verdict, WitContextParam, WitRequest};
use super::pool::{LoadedFilter, Pooled};

/// Services the host shares with every instance (and with the built-in checks on the
/// native engine).
pub struct Shared {
    /// Rate-limit state.
    pub rates: MemoryRateStore,
    /// Country database.
    pub geo: Option<maxminddb::Reader<Vec<u8>>>,
    /// The shared store the native engine counts in instead of `rates`, when
    /// `[rate_store] kind = "redis"`.
    pub remote_rates: Option<Arc<crate::rate_store::RedisRates>>,
}

impl Shared {
    /// Rate-limit state in this process and the country database, if any.
    pub fn new(rates: MemoryRateStore, geo: Option<maxminddb::Reader<Vec<u8>>>) -> Shared {
        Shared { rates, geo, remote_rates: None }
    }

    /// The same, the native engine counting in `remote` instead.
    pub fn with_remote_rates(mut self, remote: Option<Arc<crate::rate_store::RedisRates>>) -> Shared {
        self.remote_rates = remote;
        self
    }
}

impl gatehouse_core::CountryLookup for Shared {
    fn country(&self, ip: std::net::IpAddr) -> Option<gatehouse_core::CountryCode> {
        let c: Option<maxminddb::geoip2::Country> = self.geo.as_ref()?.lookup(ip).ok()?;
        c?.country?.iso_code.and_then(gatehouse_core::CountryCode::parse)
    }
}

/// Per-instance host state.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    shared: Arc<Shared>,
    filter: String,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl super::bindings::gatehouse::policy::types::Host for HostState {}
impl super::bindings::gatehouse::policy::loading::Host for HostState {}

impl host::Host for HostState {
    fn now(&mut self) -> u64 {
        now_nanos()
    }

    fn log(&mut self, level: host::Level, message: String) {
        let filter = &self.filter;
        match level {
            host::Level::Debug => tracing::debug!(target: "gatehouse::filter", filter = %filter, "{message}"),
            host::Level::Info => tracing::info!(target: "gatehouse::filter", filter = %filter, "{message}"),
            host::Level::Warn => tracing::warn!(target: "gatehouse::filter", filter = %filter, "{message}"),
            host::Level::Error => tracing::error!(target: "gatehouse::filter", filter = %filter, "{message}"),
        }
    }

    fn rate_check(&mut self, key: String, interval_ns: u64, burst: u64) -> host::RateDecision {
        let g = Gcra { interval: interval_ns.max(1), burst: burst.max(1) };
        let d = self.shared.rates.check_rendered(&key, &g, now_nanos());
        host::RateDecision {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            reset_after: d.reset_after,
            retry_after: d.retry_after,
        }
    }

    fn verify_signature(
        &mut self,
        alg: String,
        public_key: Vec<u8>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Option<bool> {
        use gatehouse_core::jwt::SignatureVerifier;
        let alg = gatehouse_core::jwt::Alg::parse(&alg)?;
        crate::signatures::NativeSignatures.verify(alg, &public_key, &message, &signature)
    }

    fn country(&mut self, ip: String) -> Option<String> {
        use gatehouse_core::CountryLookup;
        self.shared.country(ip.parse().ok()?).map(|c| c.as_str().to_string())
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The policy a filter instance must hold.
pub struct PolicyInput<'a> {
    /// Revision, to know when an instance is stale.
    pub revision: u64,
    /// The signed bundle.
    pub bundle: &'a [u8],
    /// The pinned public key.
    pub public_key: &'a [u8; 32],
    /// Edge secrets as JSON (may be empty).
    pub secrets_json: &'a [u8],
}

/// Why a filter call failed (the request is then denied with `filter_failed`).
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Unknown filter name.
    #[error("no filter named `{0}`")]
    Unknown(String),
    /// Instantiation failed.
    #[error("filter `{0}` could not be instantiated: {1}")]
    Instantiate(String, String),
    /// The filter refused the policy.
    #[error("filter `{0}` refused the policy: {1}")]
    Policy(String, String),
    /// The call trapped, ran out of time or memory.
    #[error("filter `{0}` failed: {1}")]
    Trap(String, String),
}

/// Every filter component the gateway uses.
pub struct FilterHost {
    engine: Engine,
    filters: HashMap<String, LoadedFilter<HostState>>,
    shared: Arc<Shared>,
    settings: FilterSettings,
    /// Period of the epoch clock, in milliseconds.
    tick_ms: u64,
    _ticker: Arc<std::sync::atomic::AtomicBool>,
}

/// The epoch clock's period for a CPU bound of `max_call_ms`: a tenth of the bound, at
/// least 1 ms and at most 10 ms (100 wakeups a second at the default bound, instead of
/// 1,000 with a 1 ms clock); bounds are enforced to within one period.
pub fn tick_ms(max_call_ms: u64) -> u64 {
    (max_call_ms / 10).clamp(1, 10)
}

/// Epoch ticks for a bound of `ms` with a clock of `tick` ms: rounded up, plus one for
/// the tick that may come right after the deadline is set.
fn deadline_ticks(ms: u64, tick: u64) -> u64 {
    ms.max(1).div_ceil(tick) + 1
}

impl Drop for FilterHost {
    fn drop(&mut self) {
        self._ticker.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn engine_config(settings: &FilterSettings, instances: u32) -> Config {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    let max_mem = (settings.max_memory_mib as usize) << 20;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 8)
        .max_memory_size(max_mem);
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Reserve only what an instance may use; bounds checks are explicit beyond that.
    cfg.memory_reservation(max_mem as u64);
    cfg.memory_guard_size(64 << 10);
    cfg
}

impl FilterHost {
    /// Load the named filters. `sources` maps a name to its component file.
    pub fn new(settings: &FilterSettings, sources: &[(String, PathBuf)], shared: Arc<Shared>) -> Result<FilterHost> {
        let instances = (settings.pool_size * sources.len().max(1) * 2 + 16) as u32;
        let engine = Engine::new(&engine_config(settings, instances))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Filter::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let mut filters = HashMap::new();
        for (name, path) in sources {
            let component = load_component(&engine, path, settings.cache_dir.as_deref())
                .with_context(|| format!("filter `{name}` ({})", path.display()))?;
            let pre = linker
                .instantiate_pre(&component)
                .and_then(FilterPre::new)
                .map_err(|e| anyhow!("filter `{name}` does not implement gatehouse:policy/filter: {e:#}"))?;
            filters.insert(name.clone(), LoadedFilter::new(pre));
        }
        // The epoch clock bounds every call.
        let tick = tick_ms(settings.max_call_ms);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (e, s) = (engine.clone(), stop.clone());
        std::thread::Builder::new().name("gatehouse-epoch".into()).spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(tick));
                e.increment_epoch();
            }
        })?;
        Ok(FilterHost { engine, filters, shared, settings: settings.clone(), tick_ms: tick, _ticker: stop })
    }

    fn instantiate(&self, name: &str, f: &LoadedFilter<HostState>) -> Result<Pooled<HostState>, FilterError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size((self.settings.max_memory_mib as usize) << 20)
            .instances(32)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits,
            shared: self.shared.clone(),
            filter: name.to_string(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(deadline_ticks(self.settings.max_call_ms * 20, self.tick_ms));
        store.epoch_deadline_trap();
        let filter =
            f.pre.instantiate(&mut store).map_err(|e| FilterError::Instantiate(name.into(), format!("{e:#}")))?;
        Ok(Pooled { store, filter, revision: None })
    }

    /// Run filter `name` on one request.
    pub fn check(
        &self,
        name: &str,
        policy: &PolicyInput<'_>,
        req: &WitRequest<'_>,
        ctx: &WitContextParam<'_>,
    ) -> Result<Verdict, FilterError> {
        let f = self.filters.get(name).ok_or_else(|| FilterError::Unknown(name.into()))?;
        let pooled = f.take();
        let mut p = match pooled {
            Some(p) => p,
            None => self.instantiate(name, f)?,
        };
        if p.revision != Some(policy.revision) {
            // Loading compiles the policy inside the instance: allow it more time.
            p.store.set_epoch_deadline(deadline_ticks(self.settings.max_call_ms * 20, self.tick_ms));
            let loaded = guarded(|| {
                p.filter.call_load_policy(&mut p.store, policy.bundle, policy.public_key, policy.secrets_json)
            });
            match loaded {
                Ok(Ok(l)) => {
                    p.revision = Some(policy.revision);
                    f.set_interest(policy.revision, l.headers);
                }
                Ok(Err(e)) => return Err(FilterError::Policy(name.into(), e)),
                Err(e) => return Err(FilterError::Trap(name.into(), e)),
            }
        }
        p.store.set_epoch_deadline(deadline_ticks(self.settings.max_call_ms, self.tick_ms));
        match guarded(|| p.filter.call_check(&mut p.store, req.clone(), ctx.clone())) {
            Ok(v) => {
                f.give_back(p, self.settings.pool_size);
                Ok(v)
            }
            // The instance is dropped: its state after a trap is not trusted.
            Err(e) => Err(FilterError::Trap(name.into(), e)),
        }
    }

    /// The request headers filter `name` reads under bundle generation `generation`, once
    /// an instance has loaded that generation and told (`None`: pass all headers — a new
    /// policy may read other headers, e.g. a renamed API-key header).
    pub fn interest(&self, name: &str, generation: u64) -> Option<Arc<Vec<String>>> {
        self.filters.get(name)?.interest(generation)
    }

    /// Whether a filter of that name is loaded.
    pub fn has(&self, name: &str) -> bool {
        self.filters.contains_key(name)
    }

    /// Where the built-in filters run.
    pub fn engine(&self) -> crate::config::FilterEngine {
        self.settings.engine
    }

    /// The services shared by the components (and the native built-in checks).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Run a call into a component, turning traps and host panics (for example a guest
/// writing to a WASI stream, which the synchronous WASI bindings cannot do on an async
/// worker thread) into errors, so the request fails closed instead of the connection.
fn guarded<T>(call: impl FnOnce() -> wasmtime::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "host panic during the call".into())),
    }
}

/// Compile a component, or load its machine code from the cache directory.
fn load_component(engine: &Engine, path: &Path, cache: Option<&Path>) -> Result<Component> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let compile = || Component::new(engine, &bytes).map_err(|e| anyhow!("{e:#}"));
    let Some(cache) = cache else {
        return compile();
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    bytes.hash(&mut h);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("filter");
    let cached = cache.join(format!("{stem}-{:016x}.cwasm", h.finish()));
    if cached.exists() {
        // SAFETY: the file was written by `Component::serialize` of this same engine
        // configuration (its name carries the compatibility hash) into the gateway's own
        // cache directory.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(file = %cached.display(), "ignoring unusable cached component: {e:#}"),
        }
    }
    let c = compile()?;
    std::fs::create_dir_all(cache).ok();
    let tmp = cached.with_extension("tmp");
    if let Ok(data) = c.serialize() {
        if std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, &cached)).is_err() {
            tracing::warn!(dir = %cache.display(), "cannot write the component cache");
        }
    }
    Ok(c)
}

#[cfg(test)]
mod epoch_tests {
    use super::*;

    #[test]
    fn coarse_clock_keeps_the_bound() {
        assert_eq!(tick_ms(100), 10);
        assert_eq!(tick_ms(5), 1);
        assert_eq!(tick_ms(10_000), 10);
        // 100 ms at 10 ms a tick: at least 100 ms, at most one period more.
        assert_eq!(deadline_ticks(100, 10), 11);
        assert_eq!(deadline_ticks(5, 1), 6);
        assert_eq!(deadline_ticks(0, 1), 2);
        assert_eq!(deadline_ticks(2000, 10), 201);
    }
}
