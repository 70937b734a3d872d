//! What leaves for Sentry carries no personal data and no secrets: events and breadcrumbs
//! pass through here (`before_send`, `before_breadcrumb`) on their way out.
//!
//! - Whole parts dropped: the user, a request's headers, cookies, query string, body and
//!   environment (only its method and the URL's path are kept).
//! - Fields whose name says what they hold (`authorization`, `cookie`, `token`, `password`,
//!   `secret`, `api_key`, `email`, `ip`, `peer`, `x-forwarded-for`, …) become
//!   [`FILTERED`], at any depth.
//! - Every other text (messages, exception values, tags, fields, breadcrumbs) is searched
//!   for what looks like a secret or a person: `Authorization`-style pairs
//!   (`token=…`, `password: …`), bearer credentials, JWTs, Gatehouse (`gh_…`) and other
//!   well-known API keys, a URL's user info and query string, e-mail addresses, IPv4 and
//!   IPv6 addresses and long opaque strings (random secrets); each is replaced.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use sentry::protocol::{Breadcrumb, Context, Event, Map, Request, Value};

/// What a filtered value becomes.
pub const FILTERED: &str = "[Filtered]";

/// Words of a field's name that mark its value as personal or secret (the name is split at
/// every character that is not a letter or digit, and compared in lower case).
const SENSITIVE_WORDS: &[&str] = &[
    "auth",
    "authorization",
    "cookie",
    "cookies",
    "token",
    "tokens",
    "jwt",
    "bearer",
    "secret",
    "password",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "apikey",
    "key",
    "session",
    "dsn",
    "email",
    "mail",
    "ip",
    "ips",
    "addr",
    "peer",
    "forwarded",
    "xff",
    "user",
    "username",
    "phone",
];

/// Whether a field called `name` holds something that must not leave.
pub fn sensitive_name(name: &str) -> bool {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .any(|w| SENSITIVE_WORDS.iter().any(|s| s.eq_ignore_ascii_case(w)))
}

struct Pattern {
    re: Regex,
    with: &'static str,
}

/// The text patterns, applied in order (earlier ones take the longer forms: a
/// `token=<jwt>` pair goes before the JWT alone).
static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let p = |re: &str, with: &'static str| Pattern { re: Regex::new(re).expect("scrub pattern"), with };
    vec![
        // `name: value` / `name=value` pairs whose name says secret (a header line, a
        // form or query fragment, a debug print).
        p(
            r#"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie|x-api-key|api[_-]?key|(?:access|refresh|id|session)[_-]?token|client[_-]?secret|secret|password|passwd|pwd|token)(["']?\s*[:=]\s*)(?:(?:bearer|basic)\s+)?("[^"]*"|'[^']*'|[^\s,;&"']+)"#,
            "${1}${2}[Filtered]",
        ),
        // A bearer credential on its own.
        p(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*", "Bearer [Filtered]"),
        // A URL's user info (`scheme://user:password@host`, a DSN's key).
        p(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@", "${1}[Filtered]@"),
        // A query string (from `?` when it has a `name=value`).
        p(r#"\?[^\s#"'<>]*=[^\s#"'<>]*"#, "?[Filtered]"),
        // JSON Web Tokens (header and payload are base64url JSON: `eyJ…`).
        p(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*", "[jwt]"),
        // Gatehouse API keys (`gh_<prefix>_<secret>`), GitHub (`ghp_…`), Stripe, Slack.
        p(
            r"\b(?:gh[a-z]?_[A-Za-z0-9_\-]{8,}|[sr]k_(?:live|test)_[A-Za-z0-9]{8,}|xox[abprs]-[A-Za-z0-9\-]{8,})",
            "[api-key]",
        ),
        // E-mail addresses.
        p(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b", "[email]"),
    ]
});

/// Long runs of letters and digits: random secrets (passwords, keys, session ids).
static OPAQUE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z0-9_+\-]{32,}={0,2}").expect("opaque pattern"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$").expect("uuid pattern")
});

/// `s` with everything that looks like a secret or a person replaced.
pub fn text(s: &str) -> String {
    let mut out = std::borrow::Cow::Borrowed(s);
    for p in PATTERNS.iter() {
        if let std::borrow::Cow::Owned(o) = p.re.replace_all(&out, p.with) {
            out = std::borrow::Cow::Owned(o);
        }
    }
    let out = OPAQUE.replace_all(&out, |c: &regex::Captures<'_>| {
        let m = &c[0];
        let mixed = m.bytes().any(|b| b.is_ascii_digit()) && m.bytes().any(|b| b.is_ascii_alphabetic());
        if mixed && !UUID.is_match(m) {
            FILTERED.to_string()
        } else {
            m.to_string()
        }
    });
    ip_addresses(&out)
}

/// Replace IPv4 and IPv6 addresses (with or without a port) by `[ip]`. A candidate is a
/// run of hex digits, `.`, `:` and `%` standing alone (not inside a word) that parses as an
/// address, or as an IPv4 address and a port.
fn ip_addresses(s: &str) -> String {
    let is_run = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':' || c == '%';
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().unwrap_or(' ');
        let starts_alone = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !(is_run(c) && starts_alone) {
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let mut end = s[i..].find(|c: char| !is_run(c)).map_or(s.len(), |n| i + n);
        if s[i..end].contains('%') {
            // An IPv6 zone is a name (`%eth0`).
            end = s[end..].find(|c: char| !c.is_ascii_alphanumeric()).map_or(s.len(), |n| end + n);
        }
        let ends_alone = end == s.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
        // Trailing punctuation belongs to the sentence (`… from 10.0.0.1.`).
        let run = s[i..end].trim_end_matches(['.', ':']);
        match address_len(run).filter(|_| ends_alone) {
            Some(n) => {
                out.push_str("[ip]");
                out.push_str(&s[i + n..end]);
            }
            None => out.push_str(&s[i..end]),
        }
        i = end;
    }
    out
}

/// How much of `run` is an address: all of it (an IPv6 address, maybe with a zone), or
/// the host of `IPv4:port`; `None` when it is no address.
fn address_len(run: &str) -> Option<usize> {
    if let Ok(ip) = run.split('%').next().unwrap_or(run).parse::<IpAddr>() {
        // `a::b` is an address only in theory: Rust paths look the same. Keep addresses
        // with a digit.
        return (ip.is_ipv4() || run.bytes().any(|b| b.is_ascii_digit())).then_some(run.len());
    }
    let (host, port) = run.rsplit_once(':')?;
    (host.parse::<std::net::Ipv4Addr>().is_ok() && port.parse::<u16>().is_ok()).then_some(host.len())
}

/// A field: filtered entirely when its name says so, else its text scrubbed.
pub fn value(name: &str, v: &mut Value) {
    if sensitive_name(name) && !v.is_null() {
        *v = Value::String(FILTERED.into());
        return;
    }
    match v {
        Value::String(s) => *s = text(s),
        Value::Array(items) => items.iter_mut().for_each(|i| value("", i)),
        Value::Object(fields) => fields.iter_mut().for_each(|(k, v)| value(k, v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn fields(map: &mut Map<String, Value>) {
    map.iter_mut().for_each(|(k, v)| value(k, v));
}

/// A request as it may leave: the method and the URL's path.
fn request(r: Request) -> Request {
    let url = r.url.map(|mut u| {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.set_fragment(None);
        u
    });
    Request { url, method: r.method, ..Default::default() }
}

/// An event as it may leave.
pub fn event(mut e: Event<'static>) -> Event<'static> {
    e.user = None;
    e.request = e.request.map(request);
    for s in [&mut e.message, &mut e.culprit, &mut e.transaction].into_iter().flatten() {
        *s = text(s);
    }
    if let Some(l) = &mut e.logentry {
        l.message = text(&l.message);
        l.params.iter_mut().for_each(|p| value("", p));
    }
    for (k, v) in e.tags.iter_mut() {
        *v = if sensitive_name(k) { FILTERED.into() } else { text(v) };
    }
    fields(&mut e.extra);
    // Contexts the SDK describes the machine with are kept; free-form ones (the tracing
    // event's fields among them) are scrubbed; a browser or an HTTP response has no place
    // in a server's report.
    e.contexts.retain(|_, c| !matches!(c, Context::Browser(_) | Context::Response(_)));
    for c in e.contexts.values_mut() {
        if let Context::Other(m) = c {
            fields(m);
        }
    }
    for ex in e.exception.values.iter_mut() {
        if let Some(v) = &mut ex.value {
            *v = text(v);
        }
    }
    for b in e.breadcrumbs.values.iter_mut() {
        scrub_breadcrumb(b);
    }
    e
}

fn scrub_breadcrumb(b: &mut Breadcrumb) {
    if let Some(m) = &mut b.message {
        *m = text(m);
    }
    fields(&mut b.data);
}

/// A breadcrumb as it may leave.
pub fn breadcrumb(mut b: Breadcrumb) -> Breadcrumb {
    scrub_breadcrumb(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str =
        "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsIm9yZyI6ImFjbWUifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

    #[test]
    fn secrets_and_people_are_replaced_in_text() {
        let cases = [
            (format!("Authorization: Bearer {JWT}"), "Authorization: [Filtered]"),
            (format!("token={JWT}&x=1"), "token=[Filtered]&x=1"),
            ("password: hunter2 was wrong".into(), "password: [Filtered] was wrong"),
            ("cookie=gh_session_abcdef; path=/".into(), "cookie=[Filtered]; path=/"),
            (format!("sent {JWT} twice"), "sent [jwt] twice"),
            ("bearer abc.def-ghi".into(), "Bearer [Filtered]"),
            ("key gh_abcdefghijkl_c2VjcmV0c2VjcmV0c2VjcmV0 leaked".into(), "key [api-key] leaked"),
            ("github ghp_0123456789abcdefABCDEF".into(), "github [api-key]"),
            ("mail to alice.smith+x@example.co.uk now".into(), "mail to [email] now"),
            ("GET https://idp.test/cb?code=abc&state=xyz failed".into(), "GET https://idp.test/cb?[Filtered] failed"),
            ("/v1/login?email=a&next=/x HTTP".into(), "/v1/login?[Filtered] HTTP"),
            ("dsn http://publickey@127.0.0.1:9/1".into(), "dsn http://[Filtered]@[ip]:9/1"),
            ("from 203.0.113.7, then 10.1.2.3:8080.".into(), "from [ip], then [ip]:8080."),
            ("peer [2001:db8::7]:443 and fe80::1%eth0".into(), "peer [[ip]]:443 and [ip]"),
            ("secret 0123456789abcdefABCDEF0123456789xyz end".into(), "secret [Filtered] end"),
        ];
        for (input, want) in cases {
            assert_eq!(text(&input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_kept() {
        for s in [
            "filter failed; request denied",
            "gatehouse_proxy::gateway: bundle refused at 12:30:45 (revision 3, v0.1.0)",
            "request r_0123456789abcdef01234567 took 12ms",
            "id 123e4567-e89b-12d3-a456-426614174000",
            "/root/.cache/gatehouse/target/wasm32-wasip2/release/gatehouse_example_require_header.wasm",
            "a::b and std::io::Error",
            "deadbeef is a word",
        ] {
            assert_eq!(text(s), s);
        }
    }

    #[test]
    fn field_names_decide_first() {
        for name in ["authorization", "client_ip", "x-forwarded-for", "user_email", "api_key", "peer", "Cookie"] {
            let mut v = Value::String("harmless".into());
            value(name, &mut v);
            assert_eq!(v, Value::String(FILTERED.into()), "{name}");
        }
        for name in ["request_id", "route", "reason", "error", "filter", "status"] {
            assert!(!sensitive_name(name), "{name}");
        }
        let mut nested = serde_json::json!({"ok": "from 192.0.2.1", "inner": {"token": "x", "list": ["b@c.de"]}});
        value("", &mut nested);
        assert_eq!(nested, serde_json::json!({"ok": "from [ip]", "inner": {"token": FILTERED, "list": ["[email]"]}}));
    }

    #[test]
    fn an_event_keeps_no_user_request_details_or_secrets() {
        let mut e = Event {
            user: Some(sentry::User { email: Some("a@b.cd".into()), ..Default::default() }),
            ..Default::default()
        };
        let mut r = Request {
            url: "https://u:p@app.test/path?token=x#f".parse().ok(),
            method: Some("GET".into()),
            ..Default::default()
        };
        r.headers.insert("authorization".into(), "Bearer x".into());
        r.cookies = Some("s=1".into());
        r.query_string = Some("token=x".into());
        r.data = Some("password=x".into());
        e.request = Some(r);
        e.message = Some("user a@b.cd from 198.51.100.4".into());
        e.tags.insert("request_id".into(), "r-1".into());
        e.tags.insert("session".into(), "s".into());
        let mut fields = Map::new();
        fields.insert("error".into(), Value::String(format!("bad token {JWT}")));
        fields.insert("peer".into(), Value::String("198.51.100.4".into()));
        e.contexts.insert("Rust Tracing Fields".into(), Context::Other(fields));
        e.breadcrumbs.values.push(Breadcrumb { message: Some("login a@b.cd".into()), ..Default::default() });
        e.exception.values.push(sentry::protocol::Exception {
            ty: "panic".into(),
            value: Some("password=hunter2".into()),
            ..Default::default()
        });

        let e = event(e);
        assert!(e.user.is_none());
        let r = e.request.unwrap();
        assert_eq!(r.url.unwrap().as_str(), "https://app.test/path");
        assert!(r.headers.is_empty() && r.cookies.is_none() && r.query_string.is_none() && r.data.is_none());
        assert_eq!(e.message.as_deref(), Some("user [email] from [ip]"));
        assert_eq!(e.tags["request_id"], "r-1");
        assert_eq!(e.tags["session"], FILTERED);
        let Some(Context::Other(f)) = e.contexts.get("Rust Tracing Fields") else { panic!("fields gone") };
        assert_eq!(f["error"], Value::String("bad token [jwt]".into()));
        assert_eq!(f["peer"], Value::String(FILTERED.into()));
        assert_eq!(e.breadcrumbs.values[0].message.as_deref(), Some("login [email]"));
        assert_eq!(e.exception.values[0].value.as_deref(), Some("password=[Filtered]"));
    }
}
