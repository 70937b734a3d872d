//! The whole decision in one component call: tenant, client IP, IP rules, geo, credential,
//! access and rate limits, in that order (`Check::ALL`). One call instead of four: the
//! default chain of the gateway.
use gatehouse_filter_guest::{Checks, CoreCheck, Filter};

/// Every check.
pub struct All;

impl Checks for All {
    const CHECKS: &'static [CoreCheck] = CoreCheck::ALL;
}

type AllFilter = Filter<All>;
gatehouse_filter_guest::bindings::export_filter!(AllFilter with_types_in gatehouse_filter_guest::bindings);
