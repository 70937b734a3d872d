//! Fuzz the client-address resolver (`gatehouse_core::net::client_ip`): `X-Forwarded-For`,
//! RFC 7239 `Forwarded` and single-address platform headers, behind trusted proxies.
//!
//! The first bytes choose the source, the peer and `max_hops`; the rest is header
//! values, one per line (a line starting with `!` is an unrelated header).
//!
//! Invariants (a panic here is a finding):
//! - no input panics; a refusal is `client_ip_malformed` or `client_ip_too_many_hops`
//!   (the latter only for the list sources, with more than `max_hops` entries);
//! - the answer is normalised (no IPv4-mapped IPv6); from an untrusted peer, or with
//!   the `peer` source, it is the peer whatever the headers say;
//! - behind a platform header, the answer is its one address (or the peer without it);
//! - the client cannot choose its address: whatever text `C` the client puts first,
//!   with the trusted proxy appending the address it saw (`C, 198.51.100.7`, possibly
//!   followed by more trusted hops), the answer is 198.51.100.7 or a refusal; the
//!   same with the proxy's hop in a field of its own;
//! - several `X-Forwarded-For` fields are one list: joined with commas they answer the
//!   same.
#![no_main]

use std::net::IpAddr;

use gatehouse_core::net::client_ip::{ClientIpConfig, ClientIpResolver, ClientIpSource};
use gatehouse_core::{ReasonCode, RequestHead};
use libfuzzer_sys::fuzz_target;

const PEERS: &[&str] = &["10.0.0.2", "fd00::2", "::ffff:10.0.0.2", "203.0.113.9", "2001:db8::9", "::ffff:203.0.113.9"];
const REAL_CLIENT: &str = "198.51.100.7";

fn resolver(source: ClientIpSource, max_hops: usize) -> ClientIpResolver {
    ClientIpResolver::new(&ClientIpConfig {
        source,
        trusted_proxies: ["10.0.0.0/8", "fd00::/8", "192.0.2.0/24"].iter().map(|c| c.parse().expect("cidr")).collect(),
        max_hops,
    })
}

fn req<'a>(peer: IpAddr, headers: &'a [(&'a str, &'a str)]) -> RequestHead<'a> {
    RequestHead {
        method: "GET",
        scheme: "https",
        host: "acme.test",
        path: "/",
        query: None,
        headers,
        peer,
        platform_country: None,
    }
}

fn normalised(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn header_name(source: &ClientIpSource) -> &'static str {
    match source {
        ClientIpSource::XForwardedFor | ClientIpSource::Peer => "x-forwarded-for",
        ClientIpSource::Forwarded => "forwarded",
        ClientIpSource::Header(_) => "cf-connecting-ip",
    }
}

fuzz_target!(|data: &[u8]| {
    let [s, p, h, rest @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let source = match s % 4 {
        0 => ClientIpSource::XForwardedFor,
        1 => ClientIpSource::Forwarded,
        2 => ClientIpSource::Header("CF-Connecting-IP".into()),
        _ => ClientIpSource::Peer,
    };
    let max_hops = 1 + (*h as usize % 16);
    let r = resolver(source.clone(), max_hops);
    let peer: IpAddr = PEERS[*p as usize % PEERS.len()].parse().expect("peer");
    let name = header_name(&source);
    let lines: Vec<&str> = text.split('\n').collect();
    let headers: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| match l.strip_prefix('!') {
            Some(other) => ("x-other", other),
            None => (name, *l),
        })
        .collect();

    let got = r.resolve(&req(peer, &headers));
    let trusted_peer = r.is_trusted(normalised(peer));
    match got {
        Err(code) => {
            assert!(matches!(code, ReasonCode::ClientIpMalformed | ReasonCode::ClientIpTooManyHops), "{code:?}");
            assert!(trusted_peer && source != ClientIpSource::Peer, "refused the peer's own address");
            if code == ReasonCode::ClientIpTooManyHops {
                assert!(matches!(source, ClientIpSource::XForwardedFor | ClientIpSource::Forwarded));
                let entries: usize =
                    headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.split(',').count()).sum();
                assert!(entries > max_hops, "too many hops with {entries} of at most {max_hops}");
            }
        }
        Ok(ip) => {
            assert_eq!(ip, normalised(ip), "answer {ip} is not normalised");
            if !trusted_peer || source == ClientIpSource::Peer {
                assert_eq!(ip, normalised(peer), "an untrusted peer chose its address");
            } else if let ClientIpSource::Header(_) = source {
                // The platform's header names one address, trusted or not.
                let n = headers.iter().filter(|(h, _)| *h == name).count();
                assert!(n == 1 || (n == 0 && ip == normalised(peer)), "{n} platform fields gave {ip}");
            }
        }
    }

    // Several X-Forwarded-For fields are one list.
    if source == ClientIpSource::XForwardedFor {
        let values: Vec<&str> = headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v).collect();
        if values.len() > 1 {
            let joined = values.join(",");
            let one = [(name, joined.as_str())];
            assert_eq!(r.resolve(&req(peer, &one)), got, "joined fields answer differently");
        }
    }

    // The client controls only the text before the proxy's own hop.
    if matches!(source, ClientIpSource::XForwardedFor | ClientIpSource::Forwarded) {
        let client_text = text;
        let hop = |ip: &str| if source == ClientIpSource::Forwarded { format!("for={ip}") } else { ip.to_string() };
        let trusted_peer: IpAddr = "10.0.0.2".parse().expect("ip");
        let real: IpAddr = REAL_CLIENT.parse().expect("ip");
        let appended = format!("{client_text}, {}", hop(REAL_CLIENT));
        let appended_more = format!("{client_text}, {}, {}", hop(REAL_CLIENT), hop("10.0.0.3"));
        let separate = [(name, client_text), (name, &hop(REAL_CLIENT)[..])];
        for (what, fields) in [
            ("appended", vec![(name, appended.as_str())]),
            ("appended, then a trusted hop", vec![(name, appended_more.as_str())]),
            ("in a field of its own", separate.to_vec()),
        ] {
            match r.resolve(&req(trusted_peer, &fields)) {
                Ok(ip) => assert_eq!(ip, real, "the client chose its address ({what}): {fields:?}"),
                Err(code) => {
                    assert!(matches!(code, ReasonCode::ClientIpMalformed | ReasonCode::ClientIpTooManyHops))
                }
            }
        }
    }
});
