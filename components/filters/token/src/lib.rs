//! The token filter: the route's method, the credential (JWT bearer, session cookie or API
//! key), then access (permissions, roles, teams, MFA, features).
use gatehouse_filter_guest::{Checks, CoreCheck, Filter};

/// Checks of the token filter.
pub struct Token;

impl Checks for Token {
    const CHECKS: &'static [CoreCheck] = CoreCheck::TOKEN;
}

type TokenFilter = Filter<Token>;
gatehouse_filter_guest::bindings::export_filter!(TokenFilter with_types_in gatehouse_filter_guest::bindings);
