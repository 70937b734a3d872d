//! Narrowing-only inheritance: the rules an organisation sets that its children inherit
//! (IP, geo, MFA, SSO enforcement), a child's effective rules (its own ∩ its parent's
//! effective ones, with the organisation each rule comes from), and the refusal of a
//! child's rule that would be wider than its parent's (`wider_than_parent`).
//!
//! Intersection per field: IP allow prefixes intersected exactly and deny lists joined
//! ([`super::ip`]); geo allow intersected, deny joined; `mfa_required` and `enforce_sso`
//! ORed; allowed MFA methods intersected (the parent's when nothing is left: a child
//! cannot lock its members out of every method).

use gatehouse_core::policy::{GeoRules, IpRules};
use serde::{Deserialize, Serialize};

use crate::auth_policy::MfaMethod;
use crate::error::ApiError;

use super::ip;

/// The inheritable rules of one organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// IP allow/deny.
    pub ip: IpRules,
    /// Country allow/deny.
    pub geo: GeoRules,
    /// Every member needs a second factor.
    pub mfa_required: bool,
    /// Second factors members may use.
    pub mfa_methods: Vec<MfaMethod>,
    /// Password sign-in refused (SSO only).
    pub enforce_sso: bool,
}

/// Which organisation (slug) each effective rule comes from; lists run parallel to the
/// rules' lists. `computed`: an exact IP intersection no single organisation listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// One per `ip.allow` entry.
    pub ip_allow: Vec<String>,
    /// One per `ip.deny` entry.
    pub ip_deny: Vec<String>,
    /// One per `geo.allow` entry.
    pub geo_allow: Vec<String>,
    /// One per `geo.deny` entry.
    pub geo_deny: Vec<String>,
    /// The nearest organisation requiring MFA.
    pub mfa_required: Option<String>,
    /// The organisation whose method list is in force.
    pub mfa_methods: String,
    /// The nearest organisation enforcing SSO.
    pub enforce_sso: Option<String>,
}

/// An organisation's effective rules and their sources; stored in each child as what it
/// inherits (with `from`, the ancestors, nearest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effective {
    /// The rules in force.
    pub rules: Rules,
    /// Where each comes from.
    pub sources: Sources,
    /// The ancestors these rules were inherited through, nearest first (empty: the
    /// organisation's own rules only).
    #[serde(default)]
    pub from: Vec<String>,
}

const COMPUTED: &str = "computed";

/// The source of `entry` in the merged list: the child's own listing first (for allow
/// lists, where the child narrows) or the parent's (for deny lists, where it was first).
fn source_of<T: PartialEq>(entry: &T, first: (&[T], &[String]), second: (&[T], &[String])) -> String {
    for (list, src) in [first, second] {
        if let Some(i) = list.iter().position(|x| x == entry) {
            return src.get(i).cloned().unwrap_or_else(|| COMPUTED.into());
        }
    }
    COMPUTED.into()
}

/// The organisation's own rules as its effective ones (no parent).
pub fn own(rules: &Rules, slug: &str) -> Effective {
    let all = |n: usize| vec![slug.to_string(); n];
    Effective {
        sources: Sources {
            ip_allow: all(rules.ip.allow.len()),
            ip_deny: all(rules.ip.deny.len()),
            geo_allow: all(rules.geo.allow.len()),
            geo_deny: all(rules.geo.deny.len()),
            mfa_required: rules.mfa_required.then(|| slug.to_string()),
            mfa_methods: slug.to_string(),
            enforce_sso: rules.enforce_sso.then(|| slug.to_string()),
        },
        rules: rules.clone(),
        from: Vec::new(),
    }
}

fn geo(parent: &GeoRules, child: &GeoRules) -> GeoRules {
    let mut deny = parent.deny.clone();
    deny.extend(child.deny.iter().filter(|c| !parent.deny.contains(c)).cloned());
    let allow: Vec<String> = match (parent.allow.is_empty(), child.allow.is_empty()) {
        (true, _) => child.allow.clone(),
        (_, true) => parent.allow.clone(),
        _ => child.allow.iter().filter(|c| parent.allow.contains(c)).cloned().collect(),
    };
    if allow.is_empty() && !parent.allow.is_empty() && !child.allow.is_empty() {
        // No country in common: keep an allow list and deny all of it (admits nothing;
        // an empty allow list would admit every country).
        deny.extend(parent.allow.iter().filter(|c| !deny.contains(c)).cloned().collect::<Vec<_>>());
        return GeoRules { allow: parent.allow.clone(), deny };
    }
    GeoRules { allow, deny }
}

/// The MFA methods allowed under a parent allowing `parent`: the organisation's `own`
/// that the parent allows too, or the parent's when none is left.
pub fn mfa_methods(parent: &[MfaMethod], own: &[MfaMethod]) -> Vec<MfaMethod> {
    let both: Vec<MfaMethod> = own.iter().filter(|m| parent.contains(m)).copied().collect();
    if both.is_empty() {
        parent.to_vec()
    } else {
        both
    }
}

/// The effective rules of organisation `slug` with `rules` of its own under `parent`
/// (its parent's effective rules, `None`: a root).
pub fn merge(rules: &Rules, slug: &str, parent: Option<&Effective>) -> Effective {
    let Some(p) = parent else { return own(rules, slug) };
    let mine = own(rules, slug);
    let (pr, ps, ms) = (&p.rules, &p.sources, &mine.sources);
    let ip = ip::intersect(&pr.ip, &rules.ip);
    let geo = geo(&pr.geo, &rules.geo);
    let methods = mfa_methods(&pr.mfa_methods, &rules.mfa_methods);
    let same_methods = methods.len() == pr.mfa_methods.len();
    let sources = Sources {
        ip_allow: ip
            .allow
            .iter()
            .map(|e| source_of(e, (&rules.ip.allow, &ms.ip_allow), (&pr.ip.allow, &ps.ip_allow)))
            .collect(),
        ip_deny: ip
            .deny
            .iter()
            .map(|e| source_of(e, (&pr.ip.deny, &ps.ip_deny), (&rules.ip.deny, &ms.ip_deny)))
            .collect(),
        geo_allow: geo
            .allow
            .iter()
            .map(|e| source_of(e, (&rules.geo.allow, &ms.geo_allow), (&pr.geo.allow, &ps.geo_allow)))
            .collect(),
        geo_deny: geo
            .deny
            .iter()
            .map(|e| source_of(e, (&pr.geo.deny, &ps.geo_deny), (&rules.geo.deny, &ms.geo_deny)))
            .collect(),
        mfa_required: ps.mfa_required.clone().or(ms.mfa_required.clone()),
        mfa_methods: if same_methods { ps.mfa_methods.clone() } else { slug.to_string() },
        enforce_sso: ps.enforce_sso.clone().or(ms.enforce_sso.clone()),
    };
    let rules = Rules {
        ip,
        geo,
        mfa_required: pr.mfa_required || rules.mfa_required,
        mfa_methods: methods,
        enforce_sso: pr.enforce_sso || rules.enforce_sso,
    };
    Effective { rules, sources, from: Vec::new() }
}

/// The refusal of a child's rule wider than what it inherits: 409 `wider_than_parent`
/// naming the field and the organisation that set the narrower rule.
fn wider(field: &str, what: String, by: &str) -> ApiError {
    ApiError::conflict("wider_than_parent", format!("{field}: {what} is wider than the rule set by `{by}`"))
}

/// Refuse IP and geo rules that reach outside what `parent` admits.
pub fn check_ip_geo(parent: &Effective, ip_rules: &IpRules, geo_rules: &GeoRules) -> Result<(), ApiError> {
    let by = parent.from.first().map(String::as_str).unwrap_or("the parent");
    if let Some(c) = ip::outside(&parent.rules.ip, ip_rules).first() {
        return Err(wider("ip.allow", format!("`{c}`"), by));
    }
    let pg = &parent.rules.geo;
    if let Some(c) =
        geo_rules.allow.iter().find(|c| (!pg.allow.is_empty() && !pg.allow.contains(c)) || pg.deny.contains(c))
    {
        return Err(wider("geo.allow", format!("`{c}`"), by));
    }
    Ok(())
}

/// Refuse an MFA requirement or method list wider than what `parent` imposes.
pub fn check_mfa(parent: &Effective, required: bool, methods: &[MfaMethod]) -> Result<(), ApiError> {
    let s = &parent.sources;
    if parent.rules.mfa_required && !required {
        return Err(wider("mfa_required", "`false`".into(), s.mfa_required.as_deref().unwrap_or_default()));
    }
    if let Some(m) = methods.iter().find(|m| !parent.rules.mfa_methods.contains(m)) {
        return Err(wider(
            "mfa_methods",
            format!("`{}`", serde_json::json!(m).as_str().unwrap_or("?")),
            &s.mfa_methods,
        ));
    }
    Ok(())
}

/// Refuse turning SSO enforcement off while `parent` enforces it.
pub fn check_sso(parent: &Effective, enforce: bool) -> Result<(), ApiError> {
    match (&parent.sources.enforce_sso, parent.rules.enforce_sso && !enforce) {
        (Some(by), true) => Err(wider("enforce_sso", "`false`".into(), by)),
        (None, true) => Err(wider("enforce_sso", "`false`".into(), "the parent")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::net::Cidr;

    fn rules(allow: &[&str], countries: &[&str], mfa: bool, methods: &[MfaMethod], sso: bool) -> Rules {
        Rules {
            ip: IpRules { allow: allow.iter().map(|s| s.parse::<Cidr>().unwrap()).collect(), deny: vec![] },
            geo: GeoRules { allow: countries.iter().map(|s| s.to_string()).collect(), deny: vec![] },
            mfa_required: mfa,
            mfa_methods: methods.to_vec(),
            enforce_sso: sso,
        }
    }
    use MfaMethod::{Totp, Webauthn};

    #[test]
    fn a_child_inherits_narrows_and_names_the_sources() {
        let root = own(&rules(&["10.0.0.0/8"], &["DE", "FR"], true, &[Totp, Webauthn], false), "acme");
        let kid = merge(&rules(&["10.1.0.0/16"], &["FR", "IT"], false, &[Webauthn], true), "kid", Some(&root));
        assert_eq!(kid.rules.ip.allow[0].to_string(), "10.1.0.0/16");
        assert_eq!(kid.sources.ip_allow, ["kid"]);
        assert_eq!(kid.rules.geo.allow, ["FR"]);
        assert_eq!(kid.sources.geo_allow, ["kid"]);
        assert!(kid.rules.mfa_required && kid.rules.enforce_sso);
        assert_eq!(kid.sources.mfa_required.as_deref(), Some("acme"));
        assert_eq!(kid.sources.enforce_sso.as_deref(), Some("kid"));
        assert_eq!((kid.rules.mfa_methods.as_slice(), kid.sources.mfa_methods.as_str()), (&[Webauthn][..], "kid"));
        // A grandchild with no rules of its own gets everything from above.
        let g = merge(&rules(&[], &[], false, &[Totp, Webauthn], false), "g", Some(&kid));
        assert_eq!(g.rules, Rules { mfa_methods: vec![Webauthn], ..kid.rules.clone() });
        assert_eq!(g.sources.mfa_required.as_deref(), Some("acme"));
        assert_eq!(g.sources.ip_allow, ["kid"]);
    }

    #[test]
    fn wider_rules_are_refused_with_their_field() {
        let mut root = own(&rules(&["10.0.0.0/8"], &["DE"], true, &[Totp], true), "acme");
        root.from = vec!["acme".into()];
        let e =
            check_ip_geo(&root, &rules(&["11.0.0.0/8"], &[], false, &[], false).ip, &GeoRules::default()).unwrap_err();
        assert_eq!(e.code(), "wider_than_parent");
        assert!(format!("{e:?}").contains("ip.allow"));
        let g = GeoRules { allow: vec!["US".into()], deny: vec![] };
        assert!(format!("{:?}", check_ip_geo(&root, &IpRules::default(), &g).unwrap_err()).contains("geo.allow"));
        assert!(format!("{:?}", check_mfa(&root, false, &[Totp]).unwrap_err()).contains("mfa_required"));
        assert!(format!("{:?}", check_mfa(&root, true, &[Webauthn]).unwrap_err()).contains("mfa_methods"));
        assert!(format!("{:?}", check_sso(&root, false).unwrap_err()).contains("enforce_sso"));
        check_ip_geo(
            &root,
            &rules(&["10.2.0.0/16"], &[], false, &[], false).ip,
            &GeoRules { allow: vec!["DE".into()], deny: vec!["FR".into()] },
        )
        .unwrap();
        check_mfa(&root, true, &[Totp]).unwrap();
        check_sso(&root, true).unwrap();
    }

    #[test]
    fn countries_in_common_or_none_at_all() {
        let root = own(&rules(&[], &["DE"], false, &[Totp], false), "acme");
        // Stored before the parent narrowed: nothing in common admits no country.
        let kid = merge(&rules(&[], &["US"], false, &[Totp], false), "kid", Some(&root));
        let m = gatehouse_core::geo::GeoMatcher::new(&kid.rules.geo);
        for c in ["DE", "US", "FR"] {
            assert!(m.check(gatehouse_core::CountryCode::parse(c)).is_err(), "{c}");
        }
        assert!(m.check(None).is_err());
    }
}
