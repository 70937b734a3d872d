//! The built-in filters: named lists of the engine's checks. The filter components and
//! the native gateway's built-in chain steps run exactly these lists, so a name means the
//! same checks on every host.

use super::Check;

impl Check {
    /// The `ip` filter: tenant, client address, IP rules.
    pub const IP: &'static [Check] = &[Check::Tenant, Check::ClientIp, Check::Ip];
    /// The `geo` filter: tenant, client address, country rules.
    pub const GEO: &'static [Check] = &[Check::Tenant, Check::ClientIp, Check::Geo];
    /// The `token` filter: tenant, credential, access.
    pub const TOKEN: &'static [Check] = &[Check::Tenant, Check::Credential, Check::Access];
    /// The `rate` filter: tenant, rate limits.
    pub const RATE: &'static [Check] = &[Check::Tenant, Check::RateLimit];

    /// The built-in filters by name: `gatehouse` (every check, [`Check::ALL`]), `ip`,
    /// `geo`, `token`, `rate`.
    pub const BUILTINS: &'static [(&'static str, &'static [Check])] = &[
        ("gatehouse", Check::ALL),
        ("ip", Check::IP),
        ("geo", Check::GEO),
        ("token", Check::TOKEN),
        ("rate", Check::RATE),
    ];

    /// The checks of the built-in filter `name`, if it is one.
    pub fn builtin(name: &str) -> Option<&'static [Check]> {
        Check::BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::Check;

    #[test]
    fn the_split_filters_together_run_every_check() {
        assert_eq!(Check::builtin("gatehouse"), Some(Check::ALL));
        assert_eq!(Check::builtin("nope"), None);
        for c in Check::ALL {
            assert!(
                [Check::IP, Check::GEO, Check::TOKEN, Check::RATE].iter().any(|l| l.contains(c)),
                "{c:?} is in no single-check filter"
            );
        }
    }
}
