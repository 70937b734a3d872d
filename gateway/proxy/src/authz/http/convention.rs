//! Which request a proxy asks about: read from the caller's conventions, bounded and
//! checked. nginx `auth_request` names it in `X-Original-URI` and `X-Original-Method`
//! (the client's host in the subrequest's `Host`, or for ingress-nginx in `X-Original-URL`);
//! Traefik `forwardAuth` and Caddy
//! `forward_auth` in `X-Forwarded-Method`, `-Uri` and `-Host`; Envoy's HTTP `ext_authz`
//! sends the original request itself, its path under the configured prefix. The
//! conventions' own fields are taken out of the headers the engine sees; `X-Forwarded-For`
//! stays (the engine believes it only from a trusted proxy, as everywhere).

use hyper::header::HeaderMap;

/// Longest original request target (path and query) a check may name.
pub const MAX_URI: usize = 16 * 1024;
/// Longest method name.
pub const MAX_METHOD: usize = 32;

/// The fields that carry a convention: never shown to the engine as the client's.
pub const CONVENTION_HEADERS: &[&str] = &[
    "x-original-uri",
    "x-original-method",
    "x-original-url",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Which proxy's convention a check request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// nginx `auth_request` (`X-Original-URI`): only 2xx, 401 and 403 pass its
    /// subrequest, so refusals travel inside a 401 or 403.
    Nginx,
    /// Traefik `forwardAuth`, Caddy `forward_auth` (`X-Forwarded-Method`, `-Uri`,
    /// `-Host`): a refusal is returned to the client as it is.
    Forwarded,
    /// Envoy HTTP `ext_authz`: the original request under the path prefix.
    Envoy,
}

impl Caller {
    /// The convention's name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Nginx => "nginx",
            Caller::Forwarded => "forwarded",
            Caller::Envoy => "envoy",
        }
    }
}

/// The original request a check asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Whose convention it came in.
    pub caller: Caller,
    /// The scheme the client used (`http` or `https`): `X-Forwarded-Proto`, or the
    /// scheme of ingress-nginx's `X-Original-URL`; `http` when the caller names none.
    pub scheme: &'static str,
    /// Method.
    pub method: String,
    /// The host the client addressed (maybe with a port; empty when none was given).
    pub authority: String,
    /// Path, as sent.
    pub path: String,
    /// Query, without `?`.
    pub query: Option<String>,
    /// The original request's fields: the check request's, less the conventions' own
    /// (and, for nginx, Traefik and Caddy, less the check request's own framing), with
    /// `host` the original authority.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What a check request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A question about `Original`.
    Ask(Original),
    /// nginx's named location asking for the refusal it was handed (`x-gatehouse-reply`).
    Replay(String),
    /// `GET /healthz` outside the conventions.
    Health,
}

/// Why a check request names no original request the engine could decide on. Each is a
/// `400 request_malformed` refusal; the variant goes to the log (never the values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConventionError {
    /// nginx's and Traefik/Caddy's fields together, or either under the Envoy prefix.
    #[error("the request carries the fields of two conventions")]
    Conflicting,
    /// A field the convention needs is absent.
    #[error("the convention's `{0}` field is missing")]
    Missing(&'static str),
    /// A field the convention reads once came more than once.
    #[error("the `{0}` field came more than once")]
    Repeated(&'static str),
    /// Not an HTTP method token of at most [`MAX_METHOD`] bytes.
    #[error("the original method is not a method")]
    BadMethod,
    /// Not an origin-form target (`/…`) of at most [`MAX_URI`] visible ASCII bytes.
    #[error("the original target is not an origin-form path")]
    BadTarget,
    /// The host is not visible ASCII.
    #[error("the original host is not a host")]
    BadHost,
    /// `X-Forwarded-Proto` (or `X-Original-URL`'s scheme) is neither `http` nor `https`.
    #[error("the original scheme is neither http nor https")]
    BadScheme,
    /// None of the conventions, and not under the Envoy prefix.
    #[error("the request follows none of the conventions (nginx, Traefik/Caddy, Envoy under the path prefix)")]
    NoConvention,
}

/// The one value of `name`, if present.
fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h [u8]>, ConventionError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v.as_bytes())),
        (Some(_), Some(_)) => Err(ConventionError::Repeated(name)),
    }
}

fn required<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h [u8], ConventionError> {
    single(headers, name)?.ok_or(ConventionError::Missing(name))
}

fn method(v: &[u8]) -> Result<String, ConventionError> {
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if v.is_empty() || v.len() > MAX_METHOD || !v.iter().all(token) {
        return Err(ConventionError::BadMethod);
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// An origin-form target split into path and query.
fn target(v: &[u8]) -> Result<(String, Option<String>), ConventionError> {
    let visible = v.iter().all(|b| (0x21..0x7f).contains(b) && *b != b'#');
    if v.first() != Some(&b'/') || v.len() > MAX_URI || !visible {
        return Err(ConventionError::BadTarget);
    }
    let text = String::from_utf8_lossy(v);
    Ok(match text.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (text.into_owned(), None),
    })
}

fn host(v: Option<&[u8]>) -> Result<String, ConventionError> {
    let v = v.unwrap_or_default();
    if v.len() > 1024 || !v.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(ConventionError::BadHost);
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// `http` or `https`, in any case.
fn scheme(v: &[u8]) -> Result<&'static str, ConventionError> {
    if v.eq_ignore_ascii_case(b"https") {
        Ok("https")
    } else if v.eq_ignore_ascii_case(b"http") {
        Ok("http")
    } else {
        Err(ConventionError::BadScheme)
    }
}

/// The authority of an absolute `http(s)://authority/...` URL.
fn url_authority(url: &[u8]) -> Result<&[u8], ConventionError> {
    let rest =
        url.strip_prefix(b"https://").or_else(|| url.strip_prefix(b"http://")).ok_or(ConventionError::BadHost)?;
    let end = rest.iter().position(|b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    match &rest[..end] {
        [] => Err(ConventionError::BadHost),
        a if a.contains(&b'@') => Err(ConventionError::BadHost),
        a => Ok(a),
    }
}

/// Read a check request: its method, path and query, fields, and the Envoy path prefix
/// of the configuration (`authz.envoy_path_prefix`).
pub fn read(
    check_method: &str,
    check_path: &str,
    check_query: Option<&str>,
    authority: Option<&str>,
    headers: &HeaderMap,
    envoy_prefix: &str,
) -> Result<Check, ConventionError> {
    if let Some(reply) = single(headers, "x-gatehouse-reply")? {
        return Ok(Check::Replay(String::from_utf8_lossy(reply).into_owned()));
    }
    let nginx = headers.contains_key("x-original-uri") || headers.contains_key("x-original-method");
    let forwarded = headers.contains_key("x-forwarded-method") || headers.contains_key("x-forwarded-uri");
    let under_prefix = check_path.strip_prefix(envoy_prefix).is_some_and(|rest| rest.starts_with('/'));
    if (nginx && forwarded) || ((nginx || forwarded) && under_prefix) {
        return Err(ConventionError::Conflicting);
    }
    let (caller, method, (path, query), authority) = if nginx {
        let m = method(required(headers, "x-original-method")?)?;
        let t = target(required(headers, "x-original-uri")?)?;
        // ingress-nginx asks with the authz Service's own `Host`: the client's is in
        // `X-Original-URL` (`scheme://host/target`) there.
        let h = match single(headers, "x-original-url")? {
            Some(url) => host(Some(url_authority(url)?))?,
            None => host(single(headers, "host")?)?,
        };
        (Caller::Nginx, m, t, h)
    } else if forwarded {
        let m = method(required(headers, "x-forwarded-method")?)?;
        let t = target(required(headers, "x-forwarded-uri")?)?;
        (Caller::Forwarded, m, t, host(Some(required(headers, "x-forwarded-host")?))?)
    } else if under_prefix {
        let rest = &check_path[envoy_prefix.len()..];
        let t = target(rest.as_bytes())?;
        let query = check_query.map(str::to_string);
        let h = match single(headers, "host")? {
            Some(h) => host(Some(h))?,
            None => host(authority.map(str::as_bytes))?,
        };
        (Caller::Envoy, method(check_method.as_bytes())?, (t.0, query), h)
    } else if check_path == "/healthz" && check_method == "GET" {
        return Ok(Check::Health);
    } else {
        return Err(ConventionError::NoConvention);
    };
    // The scheme: ingress-nginx's `X-Original-URL` names it; otherwise the proxy's
    // `X-Forwarded-Proto` (Traefik, Caddy and Envoy set it; the shipped nginx config too).
    let original_url = if caller == Caller::Nginx { single(headers, "x-original-url")? } else { None };
    let scheme = match (original_url, single(headers, "x-forwarded-proto")?) {
        (Some(url), _) => scheme(url.split(|b| *b == b':').next().unwrap_or_default())?,
        (None, Some(p)) => scheme(p)?,
        (None, None) => "http",
    };
    // The check request's own framing is not the original's (nginx, Traefik and Caddy
    // ask without a body); Envoy's check request is the original request.
    let framing = ["content-length", "transfer-encoding", "connection", "keep-alive"];
    let mut fields: Vec<(String, Vec<u8>)> = Vec::with_capacity(headers.len() + 1);
    for (k, v) in headers {
        let name = k.as_str();
        let own = CONVENTION_HEADERS.contains(&name) || name == "host";
        if own || (caller != Caller::Envoy && framing.contains(&name)) {
            continue;
        }
        fields.push((name.to_string(), v.as_bytes().to_vec()));
    }
    if !authority.is_empty() {
        fields.push(("host".into(), authority.clone().into_bytes()));
    }
    Ok(Check::Ask(Original { caller, scheme, method, authority, path, query, headers: fields }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn ask(
        method: &str,
        path: &str,
        query: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Result<Original, ConventionError> {
        match read(method, path, query, None, &map(fields), "/envoy")? {
            Check::Ask(o) => Ok(o),
            other => panic!("not a question: {other:?}"),
        }
    }

    fn names(o: &Original) -> Vec<&str> {
        o.headers.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn nginx() {
        let o = ask(
            "GET",
            "/_gatehouse/auth",
            None,
            &[
                ("x-original-uri", "/api/x?a=1&b=2"),
                ("x-original-method", "DELETE"),
                ("host", "acme.test:8080"),
                ("x-forwarded-for", "192.0.2.1"),
                ("authorization", "Bearer t"),
                ("content-length", "0"),
            ],
        )
        .unwrap();
        assert_eq!(o.caller, Caller::Nginx);
        assert_eq!((o.method.as_str(), o.path.as_str(), o.query.as_deref()), ("DELETE", "/api/x", Some("a=1&b=2")));
        assert_eq!(o.authority, "acme.test:8080");
        assert_eq!(names(&o), ["x-forwarded-for", "authorization", "host"]);
    }

    #[test]
    fn ingress_nginx_names_the_host_in_the_url() {
        let fields = [
            ("x-original-uri", "/api/x?a=1"),
            ("x-original-method", "GET"),
            ("x-original-url", "https://acme.test:8443/api/x?a=1"),
            ("host", "gatehouse-authz.gatehouse.svc:9191"),
        ];
        let o = ask("GET", "/", None, &fields).unwrap();
        assert_eq!((o.authority.as_str(), o.path.as_str()), ("acme.test:8443", "/api/x"));
        assert_eq!(names(&o), ["host"]);
        for bad in ["acme.test/x", "https:///x", "https://u@acme.test/"] {
            let fields = [("x-original-uri", "/x"), ("x-original-method", "GET"), ("x-original-url", bad)];
            assert_eq!(ask("GET", "/", None, &fields), Err(ConventionError::BadHost), "{bad}");
        }
    }

    #[test]
    fn the_scheme_is_the_one_the_proxy_reports() {
        let nginx = [("x-original-uri", "/x"), ("x-original-method", "GET"), ("host", "acme.test")];
        assert_eq!(ask("GET", "/", None, &nginx).unwrap().scheme, "http");
        let with = |extra: (&'static str, &'static str)| {
            let mut f = nginx.to_vec();
            f.push(extra);
            ask("GET", "/", None, &f)
        };
        assert_eq!(with(("x-forwarded-proto", "HTTPS")).unwrap().scheme, "https");
        assert_eq!(with(("x-original-url", "https://acme.test/x")).unwrap().scheme, "https");
        assert_eq!(with(("x-forwarded-proto", "ftp")), Err(ConventionError::BadScheme));
        let forwarded = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/x"),
            ("x-forwarded-host", "acme.test"),
            ("x-forwarded-proto", "https"),
        ];
        let o = ask("GET", "/", None, &forwarded).unwrap();
        assert_eq!(o.scheme, "https");
        assert!(!names(&o).contains(&"x-forwarded-proto"), "the engine never sees the convention's field");
        let envoy = ask("GET", "/envoy/x", None, &[("host", "acme.test"), ("x-forwarded-proto", "https")]).unwrap();
        assert_eq!(envoy.scheme, "https");
        let twice = [("x-forwarded-proto", "https"), ("x-forwarded-proto", "http")];
        let mut f = forwarded[..3].to_vec();
        f.extend(twice);
        assert_eq!(ask("GET", "/", None, &f), Err(ConventionError::Repeated("x-forwarded-proto")));
    }

    #[test]
    fn traefik_and_caddy() {
        let o = ask(
            "GET",
            "/",
            None,
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/upload"),
                ("x-forwarded-host", "acme.test"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-for", "192.0.2.1"),
                ("host", "authz:9000"),
                ("x-gatehouse-subject", "spoof"),
            ],
        )
        .unwrap();
        assert_eq!(o.caller, Caller::Forwarded);
        assert_eq!((o.method.as_str(), o.path.as_str(), o.query.as_deref()), ("POST", "/upload", None));
        assert_eq!(o.authority, "acme.test");
        // The spoofed identity stays visible: the answer tells the proxy to remove it.
        assert_eq!(names(&o), ["x-forwarded-for", "x-gatehouse-subject", "host"]);
        assert_eq!(o.headers.last().unwrap().1, b"acme.test");
    }

    #[test]
    fn envoy() {
        let o = ask("PUT", "/envoy/api/x", Some("q=1"), &[("host", "acme.test"), ("content-length", "12")]).unwrap();
        assert_eq!(o.caller, Caller::Envoy);
        assert_eq!((o.method.as_str(), o.path.as_str(), o.query.as_deref()), ("PUT", "/api/x", Some("q=1")));
        assert_eq!(names(&o), ["content-length", "host"]);
        // HTTP/2: the authority of the target.
        let h2 = read("GET", "/envoy/", None, Some("acme.test"), &HeaderMap::new(), "/envoy").unwrap();
        assert!(matches!(h2, Check::Ask(o) if o.authority == "acme.test" && o.path == "/"));
        // A prefix is a whole segment.
        assert_eq!(ask("GET", "/envoyx/a", None, &[]), Err(ConventionError::NoConvention));
        assert_eq!(ask("GET", "/envoy", None, &[]), Err(ConventionError::NoConvention));
    }

    #[test]
    fn malformed_conventions_are_refused() {
        use ConventionError::*;
        let long = format!("/{}", "a".repeat(MAX_URI));
        type Case<'c> = (Vec<(&'c str, &'c str)>, &'c str, ConventionError);
        let cases: Vec<Case> = vec![
            (vec![("x-original-uri", "/a"), ("x-original-method", "GET"), ("x-forwarded-uri", "/b")], "/", Conflicting),
            (vec![("x-forwarded-uri", "/public"), ("x-forwarded-method", "GET")], "/envoy/admin", Conflicting),
            (vec![("x-original-uri", "/public"), ("x-original-method", "GET")], "/envoy/admin", Conflicting),
            (vec![("x-original-uri", "/a")], "/", Missing("x-original-method")),
            (vec![("x-forwarded-uri", "/a"), ("x-forwarded-method", "GET")], "/", Missing("x-forwarded-host")),
            (vec![("x-original-uri", "/a"), ("x-original-method", "G T")], "/", BadMethod),
            (vec![("x-original-uri", "http://h/a"), ("x-original-method", "GET")], "/", BadTarget),
            (vec![("x-original-uri", "*"), ("x-original-method", "OPTIONS")], "/", BadTarget),
            (vec![("x-original-uri", "/a#frag"), ("x-original-method", "GET")], "/", BadTarget),
            (vec![("x-original-uri", &long), ("x-original-method", "GET")], "/", BadTarget),
            (
                vec![("x-original-uri", "/a"), ("x-original-uri", "/b"), ("x-original-method", "GET")],
                "/",
                Repeated("x-original-uri"),
            ),
            (vec![], "/anything", NoConvention),
        ];
        for (fields, path, want) in cases {
            assert_eq!(ask("GET", path, None, &fields), Err(want.clone()), "{fields:?} {path}");
        }
    }

    #[test]
    fn replay_and_health() {
        let h = map(&[("x-gatehouse-reply", "00"), ("x-original-uri", "/a")]);
        assert_eq!(read("GET", "/x", None, None, &h, "/envoy"), Ok(Check::Replay("00".into())));
        assert_eq!(read("GET", "/healthz", None, None, &HeaderMap::new(), "/envoy"), Ok(Check::Health));
        // Envoy asking about /healthz is a question, not a health check.
        assert!(matches!(read("GET", "/envoy/healthz", None, None, &HeaderMap::new(), "/envoy"), Ok(Check::Ask(_))));
    }
}
