//! The claims of a JWT payload: the registered ones (RFC 7519 §4.1) typed, the rest kept
//! as JSON values.
//!
//! Types follow jwt-simple's `JWTClaims` (the origin issues with it): `iat`, `exp` and
//! `nbf` are numbers of seconds (integers, or a fraction, truncated; never negative, never
//! null); `iss`, `sub`, `jti` and `nonce` are strings or null; `aud` is a string or an
//! array of strings. Stricter than it in one way: no member may appear twice, registered
//! or not (two different parsers reading two different `exp` values is how duplicate
//! members are exploited).
//!
//! The payload is read in one pass into one map; registered members are taken out of it,
//! so nothing is parsed twice or copied.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// A token's claims.
#[derive(Debug, Default, PartialEq)]
pub struct Claims {
    /// `iat`, Unix seconds.
    pub issued_at: Option<u64>,
    /// `exp`, Unix seconds.
    pub expires_at: Option<u64>,
    /// `nbf`, Unix seconds.
    pub not_before: Option<u64>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud`: every audience named.
    pub audiences: Option<Vec<String>>,
    /// `jti`.
    pub jwt_id: Option<String>,
    /// Every other member.
    pub custom: Map<String, Value>,
}

/// A JSON object whose member names are all different.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
                let mut out = Map::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if out.insert(name, value).is_some() {
                        return Err(de::Error::custom("duplicate member"));
                    }
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a payload is not a claims set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

fn seconds(v: Value) -> Result<u64, Malformed> {
    let Value::Number(n) = v else { return Err(Malformed) };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    if n.as_i64().is_some() {
        return Err(Malformed); // negative
    }
    // A fraction: truncated, as jwt-simple reads it (a negative one becomes 0).
    n.as_f64().map(|f| f as u64).ok_or(Malformed)
}

fn text(v: Value) -> Result<Option<String>, Malformed> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(Malformed),
    }
}

impl Claims {
    /// Read a decoded JWT payload.
    pub fn parse(payload: &[u8]) -> Result<Claims, Malformed> {
        let UniqueObject(mut custom) = serde_json::from_slice(payload).map_err(|_| Malformed)?;
        let mut take = |name: &str| custom.remove(name);
        let issued_at = take("iat").map(seconds).transpose()?;
        let expires_at = take("exp").map(seconds).transpose()?;
        let not_before = take("nbf").map(seconds).transpose()?;
        let issuer = take("iss").map(text).transpose()?.flatten();
        let subject = take("sub").map(text).transpose()?.flatten();
        let jwt_id = take("jti").map(text).transpose()?.flatten();
        take("nonce").map(text).transpose()?;
        let audiences = match take("aud") {
            None => None,
            Some(Value::String(a)) => Some(vec![a]),
            Some(Value::Array(list)) => Some(
                list.into_iter()
                    .map(|a| match a {
                        Value::String(a) => Ok(a),
                        _ => Err(Malformed),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(Malformed),
        };
        Ok(Claims { issued_at, expires_at, not_before, issuer, subject, audiences, jwt_id, custom })
    }
}

#[cfg(test)]
mod tests {
    use jwt_simple::claims::JWTClaims;

    use super::*;

    /// Every payload is read as jwt-simple's `JWTClaims` reads it, except that duplicate
    /// members are refused.
    #[test]
    fn agrees_with_jwt_simple() {
        let payloads = [
            r#"{"iss":"i","sub":"s","aud":"a","exp":10,"nbf":5,"iat":4,"jti":"j","org":"acme"}"#,
            r#"{"aud":["a","b"],"exp":1.9,"roles":["x"],"nested":{"k":1}}"#,
            r#"{"iss":null,"sub":null,"jti":null,"nonce":null}"#,
            r#"{"exp":-1.5}"#,
            r#"{}"#,
            r#"{"aud":[]}"#,
            r#"{"exp":18446744073709551615}"#,
            // Refused by both:
            r#"{"exp":-1}"#,
            r#"{"exp":"10"}"#,
            r#"{"exp":null}"#,
            r#"{"iat":true}"#,
            r#"{"aud":null}"#,
            r#"{"aud":5}"#,
            r#"{"aud":["a",1]}"#,
            r#"{"iss":5}"#,
            r#"{"sub":["s"]}"#,
            r#"{"nonce":1}"#,
            r#"{"jti":{}}"#,
            r#"["not","an","object"]"#,
            r#""text""#,
            r#"{"exp":1e400}"#,
            r#"{"exp":10"#,
            "{\"sub\":\"\u{7f}\"}",
        ];
        for p in payloads {
            let ours = Claims::parse(p.as_bytes());
            let theirs: Result<JWTClaims<Map<String, Value>>, _> = serde_json::from_str(p);
            match (&ours, &theirs) {
                (Ok(o), Ok(t)) => {
                    // jwt-simple's clock type holds seconds up to 2^32 - 1 (the year 2106) and
                    // saturates beyond; the decision at any real `now` is the same.
                    let clamp = |t: Option<u64>| t.map(|t| t.min(u64::from(u32::MAX)));
                    assert_eq!(clamp(o.issued_at), t.issued_at.map(|x| x.as_secs()), "{p}");
                    assert_eq!(clamp(o.expires_at), t.expires_at.map(|x| x.as_secs()), "{p}");
                    assert_eq!(clamp(o.not_before), t.invalid_before.map(|x| x.as_secs()), "{p}");
                    assert_eq!(o.issuer, t.issuer, "{p}");
                    assert_eq!(o.subject, t.subject, "{p}");
                    assert_eq!(o.jwt_id, t.jwt_id, "{p}");
                    let mut ours_aud = o.audiences.clone().map(|mut a| {
                        a.sort();
                        a
                    });
                    let mut theirs_aud: Option<Vec<String>> =
                        t.audiences.clone().map(|a| a.into_set().into_iter().collect());
                    if let Some(a) = theirs_aud.as_mut() {
                        a.sort();
                    }
                    if let Some(a) = ours_aud.as_mut() {
                        a.dedup();
                    }
                    assert_eq!(ours_aud, theirs_aud, "{p}");
                    assert_eq!(o.custom, t.custom, "{p}");
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{p}: ours {:?}, jwt-simple {:?}", ours.is_ok(), theirs.is_ok()),
            }
        }
    }

    #[test]
    fn refuses_duplicate_members() {
        for p in [r#"{"exp":1,"exp":2}"#, r#"{"sub":"a","sub":"b"}"#, r#"{"org":"a","org":"b"}"#] {
            assert_eq!(Claims::parse(p.as_bytes()), Err(Malformed), "{p}");
        }
        // Nested objects are values: only the payload's own members must be unique.
        assert!(Claims::parse(br#"{"x":{"a":1}}"#).is_ok());
    }
}
