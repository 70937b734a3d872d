//! The rate filter: GCRA limits per org, route, user and API key, kept by the host's store.
use gatehouse_filter_guest::{Checks, CoreCheck, Filter};

/// Checks of the rate filter.
pub struct Rate;

impl Checks for Rate {
    const CHECKS: &'static [CoreCheck] = CoreCheck::RATE;
}

type RateFilter = Filter<Rate>;
gatehouse_filter_guest::bindings::export_filter!(RateFilter with_types_in gatehouse_filter_guest::bindings);
