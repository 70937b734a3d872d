//! The `[impersonation]` section: how long an impersonation may last in this region. An
//! organisation's own limit (`PUT /v1/orgs/{slug}/impersonation-policy`) is at most this.

use gatehouse_settings::within;
use serde::Deserialize;

/// Impersonation limits of the region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImpersonationSettings {
    /// Longest impersonation, in minutes (1–480; default 30). The default duration of one
    /// is 30 minutes or this, whichever is shorter.
    pub max_minutes: u64,
    /// How long the single-use hosted hand-off link of a new impersonation stays valid,
    /// in seconds (10–600; default 120).
    pub handoff_ttl_secs: u64,
}

impl Default for ImpersonationSettings {
    fn default() -> Self {
        ImpersonationSettings { max_minutes: 30, handoff_ttl_secs: 120 }
    }
}

impl ImpersonationSettings {
    /// Check ranges; the error names the field (`impersonation.max_minutes: …`).
    pub fn validate(&self) -> Result<(), String> {
        within("impersonation.max_minutes", self.max_minutes, 1..=480)?;
        within("impersonation.handoff_ttl_secs", self.handoff_ttl_secs, 10..=600)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_by_name() {
        assert_eq!(ImpersonationSettings::default().validate(), Ok(()));
        let e = ImpersonationSettings { max_minutes: 0, ..Default::default() }.validate().unwrap_err();
        assert!(e.starts_with("impersonation.max_minutes"), "{e}");
        let e = ImpersonationSettings { handoff_ttl_secs: 3600, ..Default::default() }.validate().unwrap_err();
        assert!(e.starts_with("impersonation.handoff_ttl_secs"), "{e}");
    }
}
