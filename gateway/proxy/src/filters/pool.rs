//! The instance pool of one filter component: the pre-linked component, instances kept
//! for reuse (each with the bundle revision it has loaded), and the request headers the
//! filter said it reads.

use std::sync::{Arc, Mutex, RwLock};

use wasmtime::Store;

use super::bindings::{Filter, FilterPre};

/// An instance between calls, with the bundle revision it holds (`None`: none yet).
pub(super) struct Pooled<T: 'static> {
    pub(super) store: Store<T>,
    pub(super) filter: Filter,
    pub(super) revision: Option<u64>,
}

/// A loaded filter component and its idle instances.
pub(super) struct LoadedFilter<T: 'static> {
    pub(super) pre: FilterPre<T>,
    pool: Mutex<Vec<Pooled<T>>>,
    /// Headers the filter said it reads, with the bundle generation it said it for
    /// (`None`: not known yet, or all).
    interest: RwLock<Option<(u64, Arc<Vec<String>>)>>,
}

impl<T: 'static> LoadedFilter<T> {
    /// A component with no instances yet.
    pub(super) fn new(pre: FilterPre<T>) -> LoadedFilter<T> {
        LoadedFilter { pre, pool: Mutex::new(Vec::new()), interest: RwLock::new(None) }
    }

    /// An idle instance, if there is one.
    pub(super) fn take(&self) -> Option<Pooled<T>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Keep `p` for the next call, unless `max` instances are idle already.
    pub(super) fn give_back(&self, p: Pooled<T>, max: usize) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < max {
            pool.push(p);
        }
    }

    /// Record the headers the filter reads under `revision` (`None`: all).
    pub(super) fn set_interest(&self, revision: u64, headers: Option<Vec<String>>) {
        *self.interest.write().unwrap_or_else(|p| p.into_inner()) = headers.map(|h| (revision, Arc::new(h)));
    }

    /// The headers the filter reads under `generation`, once known.
    pub(super) fn interest(&self, generation: u64) -> Option<Arc<Vec<String>>> {
        match &*self.interest.read().unwrap_or_else(|p| p.into_inner()) {
            Some((g, h)) if *g == generation => Some(h.clone()),
            _ => None,
        }
    }
}
