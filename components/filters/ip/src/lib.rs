//! The IP filter: client address through trusted proxies, then org and route CIDR rules.
use gatehouse_filter_guest::{Checks, CoreCheck, Filter};

/// Checks of the IP filter.
pub struct Ip;

impl Checks for Ip {
    const CHECKS: &'static [CoreCheck] = CoreCheck::IP;
}

type IpFilter = Filter<Ip>;
gatehouse_filter_guest::bindings::export_filter!(IpFilter with_types_in gatehouse_filter_guest::bindings);
