//! Invariants shared by several fuzz targets.

use gatehouse_core::{Decision, ReasonCode};

/// A reason code is one of the stable set and keeps its string form and status.
pub fn stable_reason(r: ReasonCode) {
    assert!(ReasonCode::ALL.contains(&r), "{r:?} is not in ReasonCode::ALL");
    assert_eq!(ReasonCode::from_str_code(r.as_str()), Some(r), "{r:?} does not round-trip");
    assert!((400..600).contains(&r.status()), "{r:?}: status {}", r.status());
}

/// A decision's reason (denies and redirects) is stable and its status is the code's;
/// an allow carries no reason.
pub fn stable_decision(d: &Decision) {
    match d {
        Decision::Allow(_) => assert!(d.reason().is_none()),
        Decision::Deny(deny) => {
            stable_reason(deny.reason);
            assert_eq!(deny.status, deny.reason.status(), "deny status differs from its code's");
        }
        Decision::Redirect(r) => {
            stable_reason(r.reason);
            assert!(!r.location.is_empty(), "redirect without a location");
        }
    }
}
