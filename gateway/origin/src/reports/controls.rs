//! The controls the compliance reports evidence, and which report evidences which: one
//! table, so an auditor reads the mapping in one place (and the reports print it).

use serde::Serialize;

use super::Kind;

/// A control of a framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Control {
    /// `SOC 2`, `ISO/IEC 27001:2022` or `GDPR`.
    pub framework: &'static str,
    /// The control's identifier (`CC6.1`, `A.5.15`, `Art. 30`).
    pub id: &'static str,
    /// Its name.
    pub title: &'static str,
}

const SOC2: &str = "SOC 2";
const ISO: &str = "ISO/IEC 27001:2022";
const GDPR: &str = "GDPR";

/// Every control some report evidences.
pub const CONTROLS: &[Control] = &[
    Control { framework: SOC2, id: "CC6.1", title: "Logical access security: access restricted to authorised users" },
    Control { framework: SOC2, id: "CC6.2", title: "User registration, authorisation and removal" },
    Control { framework: SOC2, id: "CC6.3", title: "Role-based access, least privilege, changes to access" },
    Control {
        framework: SOC2,
        id: "CC7.2",
        title: "Monitoring of system components for anomalies and security events",
    },
    Control { framework: ISO, id: "A.5.15", title: "Access control" },
    Control { framework: ISO, id: "A.5.16", title: "Identity management" },
    Control { framework: ISO, id: "A.5.17", title: "Authentication information" },
    Control { framework: ISO, id: "A.5.18", title: "Access rights" },
    Control { framework: ISO, id: "A.8.15", title: "Logging" },
    Control { framework: GDPR, id: "Art. 30", title: "Records of processing activities" },
];

/// Which report evidences which control, and how: (report, control id, evidence).
pub const MAPPING: &[(Kind, &str, &str)] = &[
    (Kind::AccessReview, "CC6.1", "every account with its role and effective permissions, and every API key"),
    (Kind::AccessReview, "CC6.2", "when each role was granted and by whom; deactivated and dormant accounts"),
    (Kind::AccessReview, "CC6.3", "role-based permissions per user, custom roles resolved to their permissions"),
    (Kind::AccessReview, "A.5.15", "the access each identity holds, as of the report"),
    (Kind::AccessReview, "A.5.16", "the identities of the organisation: users and API keys, their state"),
    (Kind::AccessReview, "A.5.18", "access rights with their grant (actor, time), for periodic review"),
    (Kind::Authentication, "CC6.1", "sign-ins by method, second-factor use, MFA adoption"),
    (Kind::Authentication, "CC7.2", "failed sign-ins and lockouts in the period"),
    (Kind::Authentication, "A.5.17", "authentication methods used and MFA enrolment"),
    (Kind::Authentication, "A.8.15", "counted from the hash-chained audit log at the stated head"),
    (Kind::PrivilegedActivity, "CC6.2", "accounts created, removed, deactivated in the period"),
    (Kind::PrivilegedActivity, "CC6.3", "role, policy, SSO and API-key changes with their actor"),
    (Kind::PrivilegedActivity, "CC7.2", "impersonations and privileged changes, each with its audit record"),
    (Kind::PrivilegedActivity, "A.5.15", "changes to the organisation's access-control policy"),
    (Kind::PrivilegedActivity, "A.5.18", "changes to access rights: who changed what, when"),
    (Kind::PrivilegedActivity, "A.8.15", "listed from the hash-chained audit log at the stated head"),
    (Kind::Gdpr, "Art. 30", "exports and erasures of personal data, legal holds, retention"),
    (Kind::Gdpr, "A.8.15", "listed from the hash-chained audit log at the stated head"),
];

/// A control as a report states it: the control and what in the report evidences it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidenced {
    /// The control.
    #[serde(flatten)]
    pub control: Control,
    /// What in the report evidences it.
    pub evidence: &'static str,
}

/// The controls report `kind` evidences, in [`CONTROLS`] order.
pub fn of(kind: Kind) -> Vec<Evidenced> {
    CONTROLS
        .iter()
        .filter_map(|c| {
            MAPPING
                .iter()
                .find(|(k, id, _)| *k == kind && *id == c.id)
                .map(|(_, _, evidence)| Evidenced { control: *c, evidence })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapping_names_a_known_control_and_every_control_is_evidenced() {
        for (_, id, _) in MAPPING {
            assert!(CONTROLS.iter().any(|c| c.id == *id), "{id} is not in CONTROLS");
        }
        for c in CONTROLS {
            assert!(MAPPING.iter().any(|(_, id, _)| *id == c.id), "{} is evidenced by no report", c.id);
        }
        let ids = |k| of(k).iter().map(|e| e.control.id).collect::<Vec<_>>();
        assert_eq!(ids(Kind::AccessReview), ["CC6.1", "CC6.2", "CC6.3", "A.5.15", "A.5.16", "A.5.18"]);
        assert_eq!(ids(Kind::Gdpr), ["A.8.15", "Art. 30"]);
        for k in Kind::ALL {
            assert!(!of(*k).is_empty(), "{k:?}");
        }
    }
}
