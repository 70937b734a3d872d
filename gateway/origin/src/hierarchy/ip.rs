//! IP rules of a child inside its parent's: the addresses both admit, as one rule set the
//! edge evaluates (longest-prefix match), and whether a child's allow range reaches
//! outside what the parent admits.
//!
//! Each rule set admits a set of addresses. Between two consecutive prefix boundaries
//! every address is covered by the same prefixes, so evaluating one address per
//! elementary interval decides the whole interval: that makes the intersection and the
//! containment checks exact, whatever the prefixes' nesting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gatehouse_core::net::{Cidr, IpAction, IpMatcher};
use gatehouse_core::policy::IpRules;

/// The IPv4-mapped block of the unified 128-bit space (`::ffff:0:0/96`).
const V4_MAPPED: u128 = 0xffff_u128 << 32;

/// Whether `rules` admit address `x` of the unified space (as the edge decides).
fn admits(m: &IpMatcher, x: u128) -> bool {
    if m.is_empty() {
        return true;
    }
    match m.lookup(IpAddr::V6(Ipv6Addr::from(x))) {
        Some(IpAction::Deny) => false,
        Some(IpAction::Allow) => true,
        None => !m.has_allow(),
    }
}

fn matcher(r: &IpRules) -> IpMatcher {
    IpMatcher::new(&r.allow, &r.deny)
}

/// The starts of the elementary intervals that the prefixes of `sets` cut the space into.
fn cuts(sets: &[&IpRules]) -> Vec<u128> {
    let mut v = vec![0u128];
    for r in sets {
        for c in r.allow.iter().chain(&r.deny) {
            let (s, e) = c.range();
            v.push(s);
            if e < u128::MAX {
                v.push(e + 1);
            }
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The elementary intervals `[start, end]` of `cuts` that lie within `[lo, hi]`.
fn intervals(cuts: &[u128], lo: u128, hi: u128) -> impl Iterator<Item = (u128, u128)> + '_ {
    cuts.iter().enumerate().filter_map(move |(i, &s)| {
        let e = cuts.get(i + 1).map(|n| n - 1).unwrap_or(u128::MAX);
        let (s, e) = (s.max(lo), e.min(hi));
        (s <= e).then_some((s, e))
    })
}

/// Whether `a` and `b` admit exactly the same addresses.
fn same(a: &IpRules, b: &IpRules) -> bool {
    let (ma, mb) = (matcher(a), matcher(b));
    cuts(&[a, b]).iter().all(|&x| admits(&ma, x) == admits(&mb, x))
}

/// The allow entries of `child` that reach outside what `parent` admits.
pub fn outside(parent: &IpRules, child: &IpRules) -> Vec<Cidr> {
    let mp = matcher(parent);
    let cut = cuts(&[parent, child]);
    child
        .allow
        .iter()
        .filter(|c| {
            let (lo, hi) = c.range();
            intervals(&cut, lo, hi).any(|(s, _)| !admits(&mp, s))
        })
        .copied()
        .collect()
}

/// The simple reading of both rule sets together: the allow lists intersected (an empty
/// list admits everything), the deny lists joined.
fn simple(parent: &IpRules, child: &IpRules) -> IpRules {
    let allow = match (parent.allow.is_empty(), child.allow.is_empty()) {
        (true, _) => child.allow.clone(),
        (_, true) => parent.allow.clone(),
        _ => {
            let mut v = Vec::new();
            for p in &parent.allow {
                for c in &child.allow {
                    let ((ps, pe), (cs, ce)) = (p.range(), c.range());
                    if ps <= cs && ce <= pe {
                        v.push(*c);
                    } else if cs <= ps && pe <= ce {
                        v.push(*p);
                    }
                }
            }
            v
        }
    };
    let mut deny = parent.deny.clone();
    deny.extend(child.deny.iter().filter(|d| !parent.deny.contains(d)));
    let mut allow_dedup: Vec<Cidr> = Vec::new();
    for a in allow {
        if !allow_dedup.contains(&a) {
            allow_dedup.push(a);
        }
    }
    IpRules { allow: allow_dedup, deny }
}

/// A rule set that admits nothing.
pub fn nothing() -> IpRules {
    let everything = Cidr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
    IpRules { allow: Vec::new(), deny: everything.into_iter().collect() }
}

/// The prefix of `len` unified bits at `start`, as an IPv4 prefix inside the mapped block
/// (`None` only for a misaligned `start`, which [`cover`] never makes: leaving a prefix
/// out admits less, never more).
fn cidr(start: u128, len: u8) -> Option<Cidr> {
    let v4 = len >= 96 && start & !0xffff_ffff_u128 == V4_MAPPED;
    let made = if v4 {
        Cidr::new(IpAddr::V4(Ipv4Addr::from(start as u32)), len - 96)
    } else {
        Cidr::new(IpAddr::V6(Ipv6Addr::from(start)), len)
    };
    made.ok()
}

/// The fewest prefixes covering `[s, e]` exactly.
fn cover(mut s: u128, e: u128, out: &mut Vec<Cidr>) {
    loop {
        let align = if s == 0 { 128 } else { s.trailing_zeros() };
        let span = e - s;
        let fit = if span == u128::MAX { 128 } else { 127 - (span + 1).leading_zeros() };
        let bits = align.min(fit);
        out.extend(cidr(s, (128 - bits) as u8));
        let size_minus_one = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
        if s.checked_add(size_minus_one).is_none_or(|last| last >= e) {
            return;
        }
        s += size_minus_one + 1;
    }
}

/// The rules admitting exactly what both `parent` and `child` admit. The simple reading
/// (allow lists intersected, deny lists joined) when it is exact, which is the case
/// whenever the prefixes nest plainly; otherwise the admitted addresses as allow
/// prefixes; [`nothing`] when no address is left.
pub fn intersect(parent: &IpRules, child: &IpRules) -> IpRules {
    let s = simple(parent, child);
    let both_allow = !parent.allow.is_empty() && !child.allow.is_empty();
    if !(both_allow && s.allow.is_empty()) && exact(parent, child, &s) {
        return s;
    }
    let (mp, mc) = (matcher(parent), matcher(child));
    let cut = cuts(&[parent, child]);
    let mut allow = Vec::new();
    let mut run: Option<(u128, u128)> = None;
    for (a, b) in intervals(&cut, 0, u128::MAX) {
        if admits(&mp, a) && admits(&mc, a) {
            run = match run {
                Some((rs, _)) => Some((rs, b)),
                None => Some((a, b)),
            };
        } else if let Some((rs, re)) = run.take() {
            cover(rs, re, &mut allow);
        }
    }
    if let Some((rs, re)) = run {
        cover(rs, re, &mut allow);
    }
    if allow.is_empty() {
        return nothing();
    }
    IpRules { allow, deny: Vec::new() }
}

/// Whether `merged` admits exactly the addresses both `parent` and `child` admit.
fn exact(parent: &IpRules, child: &IpRules, merged: &IpRules) -> bool {
    let (mp, mc, mm) = (matcher(parent), matcher(child), matcher(merged));
    cuts(&[parent, child, merged]).iter().all(|&x| admits(&mm, x) == (admits(&mp, x) && admits(&mc, x)))
}

/// Whether `a` admits every address `b` admits and no other (for tests and callers that
/// compare effective results).
pub fn equivalent(a: &IpRules, b: &IpRules) -> bool {
    same(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        let p = |v: &[&str]| v.iter().map(|s| s.parse::<Cidr>().unwrap()).collect();
        IpRules { allow: p(allow), deny: p(deny) }
    }

    fn ip(s: &str) -> u128 {
        gatehouse_core::net::ip_to_u128(s.parse().unwrap())
    }

    fn admitted(r: &IpRules, a: &str) -> bool {
        admits(&matcher(r), ip(a))
    }

    #[test]
    fn a_child_inside_its_parent_keeps_its_own_rules() {
        let p = rules(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        let c = rules(&["10.1.0.0/16"], &["10.1.2.0/24"]);
        let e = intersect(&p, &c);
        assert_eq!(e, rules(&["10.1.0.0/16"], &["10.9.0.0/16", "10.1.2.0/24"]));
        assert!(admitted(&e, "10.1.3.4") && !admitted(&e, "10.1.2.4") && !admitted(&e, "10.2.0.1"));
        assert!(outside(&p, &c).is_empty());
        // A child without an allow list takes the parent's.
        let e = intersect(&p, &rules(&[], &["10.5.0.0/16"]));
        assert!(admitted(&e, "10.4.0.1") && !admitted(&e, "10.5.0.1") && !admitted(&e, "10.9.0.1"));
        assert!(!admitted(&e, "192.168.0.1"));
    }

    #[test]
    fn a_child_cannot_reach_outside_and_a_stored_wider_rule_stays_narrow() {
        let p = rules(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        // Outside the parent's range, and inside the parent's deny.
        let c = rules(&["192.168.0.0/16", "10.9.1.0/24", "10.2.0.0/16"], &[]);
        let out: Vec<String> = outside(&p, &c).iter().map(|c| c.to_string()).collect();
        assert_eq!(out, ["192.168.0.0/16", "10.9.1.0/24"]);
        // The effective rules never admit what the parent refuses.
        let e = intersect(&p, &c);
        assert!(admitted(&e, "10.2.3.4"));
        for a in ["192.168.1.1", "10.9.1.1", "10.3.0.1", "8.8.8.8"] {
            assert!(!admitted(&e, a), "{a}");
        }
        // Both allow, nothing in common: nothing is admitted (not everything).
        let e = intersect(&rules(&["10.0.0.0/8"], &[]), &rules(&["172.16.0.0/12"], &[]));
        assert!(equivalent(&e, &nothing()));
        assert!(!admitted(&e, "10.0.0.1") && !admitted(&e, "172.16.0.1") && !admitted(&e, "::1"));
    }

    #[test]
    fn a_child_deny_around_a_parent_allow_still_narrows() {
        // The parent's /16 carve-out is more specific than the child's /8 deny: the simple
        // reading would admit it, the exact one does not.
        let p = rules(&["10.1.0.0/16"], &[]);
        let c = rules(&[], &["10.0.0.0/8"]);
        let e = intersect(&p, &c);
        assert!(equivalent(&e, &nothing()), "{e:?}");
        let p = rules(&[], &["10.0.0.0/8"]);
        let c = rules(&["10.1.0.0/16", "11.0.0.0/8"], &[]);
        let e = intersect(&p, &c);
        assert!(!admitted(&e, "10.1.0.1") && admitted(&e, "11.2.3.4") && !admitted(&e, "12.0.0.1"));
    }

    #[test]
    fn ipv6_and_mapped_ipv4_cover_exactly() {
        let p = rules(&["2001:db8::/32", "10.0.0.0/8"], &[]);
        let c = rules(&[], &["10.128.0.0/9", "2001:db8:8000::/33"]);
        let e = intersect(&p, &c);
        assert!(admitted(&e, "10.1.0.1") && !admitted(&e, "10.200.0.1"));
        assert!(admitted(&e, "2001:db8::1") && !admitted(&e, "2001:db8:9000::1") && !admitted(&e, "::1"));
        let mut v = Vec::new();
        cover(ip("10.0.0.0"), ip("10.0.0.255"), &mut v);
        assert_eq!(v.iter().map(|c| c.to_string()).collect::<Vec<_>>(), ["10.0.0.0/24"]);
        v.clear();
        cover(ip("10.0.0.1"), ip("10.0.0.6"), &mut v);
        assert_eq!(
            v.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        v.clear();
        cover(0, u128::MAX, &mut v);
        assert_eq!(v.len(), 1);
    }
}
