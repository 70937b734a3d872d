//! `[retention]`: the scheduler that applies each organisation's retention by itself
//! (`enabled`, `interval_secs`, `batch`, `tenants_per_run`) and the region's default
//! periods per data type (`[retention.defaults] audit_days, edge_events_days,
//! sessions_days, tokens_days, invitations_days`; absent: keep everything), which apply
//! to every organisation that has not chosen its own.

use gatehouse_settings::within;
use serde::Deserialize;

use crate::store::retention::Kind;

/// The retention scheduler and the region's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Run the scheduler (default true).
    pub enabled: bool,
    /// Seconds between runs (default 3600).
    pub interval_secs: u64,
    /// Most rows removed per data type per organisation per run (default 1000).
    pub batch: u64,
    /// Most organisations visited per run (default 100); the next run continues after the
    /// last one visited, so every organisation gets its turn.
    pub tenants_per_run: u64,
    /// Default periods for organisations without their own.
    pub defaults: RetentionDays,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            enabled: true,
            interval_secs: 3600,
            batch: 1000,
            tenants_per_run: 100,
            defaults: RetentionDays::default(),
        }
    }
}

/// One value per data type, named as in the API and the configuration
/// (`audit_days`, …); an absent field is `T::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerKind<T> {
    /// Audit records.
    #[serde(default)]
    pub audit_days: T,
    /// Edge decision events.
    #[serde(default)]
    pub edge_events_days: T,
    /// Sessions, counted from their end.
    #[serde(default)]
    pub sessions_days: T,
    /// Expired tokens, counted from their expiry.
    #[serde(default)]
    pub tokens_days: T,
    /// Accepted, revoked or expired invitations, counted from their end.
    #[serde(default)]
    pub invitations_days: T,
}

impl<T> PerKind<T> {
    /// The value of `kind`.
    pub fn of(&self, kind: Kind) -> &T {
        match kind {
            Kind::Audit => &self.audit_days,
            Kind::EdgeEvents => &self.edge_events_days,
            Kind::Sessions => &self.sessions_days,
            Kind::Tokens => &self.tokens_days,
            Kind::Invitations => &self.invitations_days,
        }
    }
}

/// A period in days per data type (`None`: keep everything).
pub type RetentionDays = PerKind<Option<i64>>;

impl RetentionDays {
    /// The period of `kind`.
    pub fn get(&self, kind: Kind) -> Option<i64> {
        *self.of(kind)
    }
}

impl RetentionSettings {
    /// Check ranges; the error names the field (`retention.batch: …`).
    pub fn validate(&self) -> Result<(), String> {
        within("retention.interval_secs", self.interval_secs, 1..=7 * 86_400)?;
        within("retention.batch", self.batch, 1..=100_000)?;
        within("retention.tenants_per_run", self.tenants_per_run, 1..=100_000)?;
        for kind in Kind::ALL {
            if let Some(days) = self.defaults.get(kind) {
                kind.check("retention.defaults.", days)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_bad_values_name_their_field() {
        let r: RetentionSettings =
            toml::from_str("interval_secs = 1\n[defaults]\naudit_days = 365\ntokens_days = 0\n").unwrap();
        r.validate().unwrap();
        assert_eq!((r.interval_secs, r.batch, r.enabled), (1, 1000, true));
        assert_eq!((r.defaults.get(Kind::Audit), r.defaults.get(Kind::Sessions)), (Some(365), None));
        for (text, field) in [
            ("interval_secs = 0\n", "retention.interval_secs"),
            ("batch = 0\n", "retention.batch"),
            ("tenants_per_run = 1000000\n", "retention.tenants_per_run"),
            ("[defaults]\naudit_days = 0\n", "retention.defaults.audit_days"),
            ("[defaults]\nsessions_days = 4000\n", "retention.defaults.sessions_days"),
            ("[defaults]\nedge_events_days = -1\n", "retention.defaults.edge_events_days"),
        ] {
            let r: RetentionSettings = toml::from_str(text).unwrap();
            let e = r.validate().unwrap_err();
            assert!(e.starts_with(field), "{text}: {e}");
        }
        assert!(toml::from_str::<RetentionSettings>("[defaults]\nusers_days = 1\n").is_err());
    }
}
