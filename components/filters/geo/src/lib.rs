//! The geo filter: the client's country (platform, trusted header or host lookup) against
//! org and route country rules.
use gatehouse_filter_guest::{Checks, CoreCheck, Filter};

/// Checks of the geo filter.
pub struct Geo;

impl Checks for Geo {
    const CHECKS: &'static [CoreCheck] = CoreCheck::GEO;
}

type GeoFilter = Filter<Geo>;
gatehouse_filter_guest::bindings::export_filter!(GeoFilter with_types_in gatehouse_filter_guest::bindings);
