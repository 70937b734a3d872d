//! CIDR prefixes and a longest-prefix-match table over them.
//!
//! All addresses live in one 128-bit space: IPv4 `a.b.c.d` is stored as the IPv4-mapped
//! IPv6 address `::ffff:a.b.c.d`, so `10.0.0.1` and `::ffff:10.0.0.1` are the same client
//! and an IPv4 rule matches both.
//!
//! [`IpMatcher`] flattens any set of allow/deny prefixes into sorted, disjoint ranges, each
//! labelled with the action of the most specific prefix that covers it. A lookup is one
//! binary search (≈14 steps for 10,000 prefixes).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const V4_MAPPED: u128 = 0xffff_u128 << 32;

/// An address as a number in the unified 128-bit space.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => V4_MAPPED | u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Canonical form of an address: IPv4-mapped IPv6 becomes plain IPv4.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A network prefix such as `10.0.0.0/8` or `2001:db8::/32`; a bare address means a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("`{0}` is not an IP address or CIDR prefix")]
    BadAddress(String),
    /// The prefix length is not a number in range.
    #[error("`{0}`: prefix length must be 0-32 for IPv4 and 0-128 for IPv6")]
    BadLength(String),
    /// Bits beyond the prefix length are set.
    #[error("`{input}` has host bits set; did you mean `{suggestion}`?")]
    HostBitsSet {
        /// What was written.
        input: String,
        /// The prefix with host bits cleared.
        suggestion: String,
    },
}

impl Cidr {
    /// A prefix of `len` bits at `addr`; errors if `len` is out of range or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(CidrError::BadLength(format!("{addr}/{len}")));
        }
        let c = Cidr { addr, len };
        let (start, _) = c.range();
        if start != ip_to_u128(addr) {
            let cleared = Cidr {
                addr: match addr {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(start as u32)),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(start)),
                },
                len,
            };
            return Err(CidrError::HostBitsSet { input: format!("{addr}/{len}"), suggestion: cleared.to_string() });
        }
        Ok(c)
    }

    /// Prefix length in the unified 128-bit space.
    pub fn unified_len(&self) -> u8 {
        if self.addr.is_ipv4() {
            96 + self.len
        } else {
            self.len
        }
    }

    /// First and last address covered, in the unified space.
    pub fn range(&self) -> (u128, u128) {
        let len = self.unified_len() as u32;
        let base = ip_to_u128(self.addr);
        let host_mask: u128 = if len == 0 { u128::MAX } else { (1u128 << (128 - len)) - 1 };
        let start = base & !host_mask;
        (start, start | host_mask)
    }

    /// Whether `ip` (any form) lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (s, e) = self.range();
        let v = ip_to_u128(ip);
        s <= v && v <= e
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| CidrError::BadAddress(s.into()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => {
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::BadLength(s.into()));
                }
                l.parse::<u8>().map_err(|_| CidrError::BadLength(s.into()))?
            }
        };
        Cidr::new(addr, len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a matched prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAction {
    /// The address is on an allow list.
    Allow,
    /// The address is on a deny list.
    Deny,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u128,
    end: u128,
    action: IpAction,
}

/// Longest-prefix-match table over allow and deny prefixes.
///
/// The most specific prefix covering an address decides; a deny and an allow of exactly the
/// same prefix resolve to deny.
#[derive(Debug, Clone, Default)]
pub struct IpMatcher {
    segments: Vec<Segment>,
    has_allow: bool,
}

impl IpMatcher {
    /// Build from allow and deny prefixes.
    pub fn new(allow: &[Cidr], deny: &[Cidr]) -> IpMatcher {
        let mut ranges: Vec<(u128, u128, IpAction)> = allow
            .iter()
            .map(|c| (c, IpAction::Allow))
            .chain(deny.iter().map(|c| (c, IpAction::Deny)))
            .map(|(c, a)| {
                let (s, e) = c.range();
                (s, e, a)
            })
            .collect();
        // Outer prefixes first (same start, larger end), and for identical prefixes Deny last.
        ranges.sort_by(|a, b| {
            a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then((a.2 == IpAction::Deny).cmp(&(b.2 == IpAction::Deny)))
        });
        // Identical prefixes: keep the last (Deny wins).
        let mut dedup: Vec<(u128, u128, IpAction)> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match dedup.last_mut() {
                Some(last) if last.0 == r.0 && last.1 == r.1 => *last = r,
                _ => dedup.push(r),
            }
        }
        let mut out: Vec<Segment> = Vec::with_capacity(dedup.len() * 2);
        let mut emit = |s: u128, e: u128, a: IpAction| {
            if let Some(last) = out.last_mut() {
                if last.action == a && last.end.checked_add(1) == Some(s) {
                    last.end = e;
                    return;
                }
            }
            out.push(Segment { start: s, end: e, action: a });
        };
        // Prefixes are nested or disjoint, so a stack sweep yields disjoint segments.
        let mut stack: Vec<(u128, IpAction)> = Vec::new();
        let mut cur: Option<u128> = Some(0);
        for (s, e, a) in dedup {
            while let Some(&(te, ta)) = stack.last() {
                if te >= s {
                    break;
                }
                if let Some(c) = cur {
                    if c <= te {
                        emit(c, te, ta);
                    }
                }
                cur = Some(te + 1); // te < s, so no overflow
                stack.pop();
            }
            if let (Some(&(_, ta)), Some(c)) = (stack.last(), cur) {
                if c < s {
                    emit(c, s - 1, ta);
                }
            }
            cur = Some(s);
            stack.push((e, a));
        }
        while let Some((te, ta)) = stack.pop() {
            if let Some(c) = cur {
                if c <= te {
                    emit(c, te, ta);
                }
            }
            cur = cur.and(te.checked_add(1));
        }
        IpMatcher { segments: out, has_allow: !allow.is_empty() }
    }

    /// A matcher where every given prefix is allowed (a plain set).
    pub fn set(prefixes: &[Cidr]) -> IpMatcher {
        IpMatcher::new(prefixes, &[])
    }

    /// The action of the most specific prefix covering `ip`, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<IpAction> {
        let v = ip_to_u128(ip);
        let i = self.segments.partition_point(|s| s.start <= v);
        if i == 0 {
            return None;
        }
        let seg = &self.segments[i - 1];
        (v <= seg.end).then_some(seg.action)
    }

    /// Whether `ip` is covered by an allow prefix (for plain sets).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.lookup(ip) == Some(IpAction::Allow)
    }

    /// Whether any allow prefix was given (then unmatched addresses are refused).
    pub fn has_allow(&self) -> bool {
        self.has_allow
    }

    /// Whether no prefixes at all were given.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Number of disjoint ranges after flattening.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(c("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(c("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(c("2001:db8::/32").to_string(), "2001:db8::/32");
        assert!(matches!(
            "10.0.0.1/8".parse::<Cidr>(),
            Err(CidrError::HostBitsSet { suggestion, .. }) if suggestion == "10.0.0.0/8"
        ));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "banana",
            "10.0.0/8",
            "",
            "1.2.3.4/0008",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_ipv6_is_the_same_client() {
        let m = IpMatcher::new(&[c("10.0.0.0/8")], &[]);
        assert!(m.contains(ip("10.9.9.9")));
        assert!(m.contains(ip("::ffff:10.9.9.9")));
        assert!(!m.contains(ip("11.0.0.1")));
        assert!(!m.contains(ip("::a00:1"))); // IPv4-compatible, not mapped
        assert_eq!(normalize_ip(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }

    #[test]
    fn longest_prefix_wins_and_deny_wins_ties() {
        let m = IpMatcher::new(
            &[c("10.0.0.0/8"), c("10.1.2.3/32"), c("192.0.2.0/24")],
            &[c("10.1.0.0/16"), c("192.0.2.0/24")],
        );
        assert_eq!(m.lookup(ip("10.2.0.1")), Some(IpAction::Allow));
        assert_eq!(m.lookup(ip("10.1.0.1")), Some(IpAction::Deny));
        assert_eq!(m.lookup(ip("10.1.2.3")), Some(IpAction::Allow));
        assert_eq!(m.lookup(ip("192.0.2.7")), Some(IpAction::Deny));
        assert_eq!(m.lookup(ip("8.8.8.8")), None);
        let all = IpMatcher::new(&[c("::/0")], &[c("0.0.0.0/0")]);
        assert_eq!(all.lookup(ip("1.1.1.1")), Some(IpAction::Deny));
        assert_eq!(all.lookup(ip("2001:db8::1")), Some(IpAction::Allow));
        assert_eq!(all.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), Some(IpAction::Allow));
    }

    fn naive(allow: &[Cidr], deny: &[Cidr], ipv: IpAddr) -> Option<IpAction> {
        let mut best: Option<(u8, IpAction)> = None;
        for (list, act) in [(allow, IpAction::Allow), (deny, IpAction::Deny)] {
            for p in list {
                if p.contains(ipv) {
                    let l = p.unified_len();
                    best = match best {
                        Some((bl, ba)) if bl > l || (bl == l && ba == IpAction::Deny) => Some((bl, ba)),
                        _ => Some((l, act)),
                    };
                }
            }
        }
        best.map(|b| b.1)
    }

    fn arb_cidr() -> impl Strategy<Value = Cidr> {
        prop_oneof![
            // Small v4 space so prefixes overlap often.
            (0u32..64, 20u8..=32).prop_map(|(x, l)| {
                let a = 0x0a00_0000u32 | (x << 6);
                let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                Cidr::new(IpAddr::V4(Ipv4Addr::from(a & mask)), l).unwrap()
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(x, l)| {
                let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
                Cidr::new(IpAddr::V6(Ipv6Addr::from(x & mask)), l).unwrap()
            }),
            (0u32..64, 0u8..=8).prop_map(|(x, l)| {
                let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                Cidr::new(IpAddr::V4(Ipv4Addr::from((x << 26) & mask)), l).unwrap()
            }),
        ]
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u32..5000).prop_map(|x| IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 | x))),
            any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(x))),
            (0u32..5000).prop_map(|x| IpAddr::V6(Ipv4Addr::from(0x0a00_0000u32 | x).to_ipv6_mapped())),
            any::<u128>().prop_map(|x| IpAddr::V6(Ipv6Addr::from(x))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matcher_agrees_with_naive_reference(
            allow in proptest::collection::vec(arb_cidr(), 0..24),
            deny in proptest::collection::vec(arb_cidr(), 0..24),
            probes in proptest::collection::vec(arb_ip(), 1..64),
        ) {
            let m = IpMatcher::new(&allow, &deny);
            for p in probes {
                prop_assert_eq!(m.lookup(p), naive(&allow, &deny, p), "ip {}", p);
            }
            // Probe every range boundary as well.
            for x in allow.iter().chain(deny.iter()) {
                let (s, e) = x.range();
                for v in [s, e, s.wrapping_sub(1), e.wrapping_add(1)] {
                    let p = IpAddr::V6(Ipv6Addr::from(v));
                    prop_assert_eq!(m.lookup(p), naive(&allow, &deny, p), "boundary {}", p);
                }
            }
        }
    }
}
