//! The claims of a JWT payload: the registered ones (RFC 7519 §4.1) typed, and the
//! other members the engine reads (the tenant claim, `roles`, `scope`, ...) as JSON values.
//!
//! Types follow jwt-simple's `JWTClaims` (the origin issues with it): `iat`, `exp` and
//! `nbf` are numbers of seconds (integers, or a fraction, truncated; never negative, never
//! null); `iss`, `sub`, `jti` and `nonce` are strings or null; `aud` is a string or an
//! array of strings. Stricter than it in one way: no member may appear twice, registered
//! or not (two parsers reading two different `exp` values is how duplicate members are
//! exploited).
//!
//! The payload is read in one pass; members nobody reads are checked for well-formedness
//! and skipped without being kept.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

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
    /// The other members asked for, in the order of the names given to [`Claims::parse`].
    pub custom: Vec<Option<Value>>,
}

/// Why a payload is not a claims set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A member name, borrowed from the payload unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// `iat`, `exp`, `nbf`: as jwt-simple reads a Unix timestamp.
struct Seconds(u64);

impl<'de> de::Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Unix timestamp")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v).map(Seconds).map_err(|_| E::custom("negative timestamp"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Seconds, E> {
                // A fraction: truncated (a negative one becomes 0), as jwt-simple reads it.
                Ok(Seconds(v as u64))
            }
        }
        d.deserialize_i64(V)
    }
}

/// `aud`: a string or an array of strings.
struct Audiences(Vec<String>);

impl<'de> de::Deserialize<'de> for Audiences {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audiences;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<Audiences, E> {
                Ok(Audiences(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audiences, A::Error> {
                let mut out = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    out.push(a);
                }
                Ok(Audiences(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The payload's members, read into [`Claims`], keeping the values of `names`.
struct Payload<'n> {
    names: &'n [&'n str],
}

impl<'de> DeserializeSeed<'de> for Payload<'_> {
    type Value = Claims;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Payload<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut c = Claims { custom: vec![None; self.names.len()], ..Claims::default() };
        let mut seen: Vec<Key<'de>> = Vec::with_capacity(16);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if seen.iter().any(|k| k.0 == key.0) {
                return Err(de::Error::custom("duplicate member"));
            }
            match key.0.as_ref() {
                "iat" => c.issued_at = Some(map.next_value::<Seconds>()?.0),
                "exp" => c.expires_at = Some(map.next_value::<Seconds>()?.0),
                "nbf" => c.not_before = Some(map.next_value::<Seconds>()?.0),
                "iss" => c.issuer = map.next_value()?,
                "sub" => c.subject = map.next_value()?,
                "jti" => c.jwt_id = map.next_value()?,
                "nonce" => {
                    map.next_value::<Option<String>>()?;
                }
                "aud" => c.audiences = Some(map.next_value::<Audiences>()?.0),
                name => match self.names.iter().position(|n| *n == name) {
                    Some(i) => c.custom[i] = Some(map.next_value()?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
            seen.push(key);
        }
        Ok(c)
    }
}

impl Claims {
    /// Read a decoded JWT payload, keeping the values of the members named in `names`
    /// (other than the registered ones) in [`Claims::custom`].
    pub fn parse(payload: &[u8], names: &[&str]) -> Result<Claims, Malformed> {
        // JSON is UTF-8 (RFC 8259 §8.1), also in the members that are only skipped (which
        // serde_json does not decode, so would not check).
        let text = std::str::from_utf8(payload).map_err(|_| Malformed)?;
        let mut d = serde_json::Deserializer::from_str(text);
        let c = Payload { names }.deserialize(&mut d).map_err(|_| Malformed)?;
        d.end().map_err(|_| Malformed)?;
        Ok(c)
    }

    /// The value of the `i`-th member asked for.
    pub fn custom(&self, i: usize) -> Option<&Value> {
        self.custom.get(i).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use jwt_simple::claims::JWTClaims;
    use serde_json::Map;

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
        let names = ["org", "roles", "nested", "nonce_like"];
        for p in payloads {
            let ours = Claims::parse(p.as_bytes(), &names);
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
                    for (i, n) in names.iter().enumerate() {
                        assert_eq!(o.custom(i), t.custom.get(*n), "{p}: {n}");
                    }
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{p}: ours {:?}, jwt-simple {:?}", ours.is_ok(), theirs.is_ok()),
            }
        }
    }

    #[test]
    fn refuses_duplicate_members() {
        for p in [r#"{"exp":1,"exp":2}"#, r#"{"sub":"a","sub":"b"}"#, r#"{"org":"a","org":"b"}"#] {
            assert_eq!(Claims::parse(p.as_bytes(), &["org"]), Err(Malformed), "{p}");
        }
        // Also when one of them has escapes.
        assert_eq!(Claims::parse(br#"{"org":"a","\u006frg":"b"}"#, &["org"]), Err(Malformed));
        // Nested objects are values: only the payload's own members must be unique.
        assert!(Claims::parse(br#"{"x":{"a":1,"a":2}}"#, &["org"]).is_ok());
        // Skipped members must still be well-formed JSON.
        assert_eq!(Claims::parse(br#"{"x":[1,}"#, &["org"]), Err(Malformed));
    }

    /// Found by fuzzing (fuzz/fuzz_targets/jwt.rs): a payload with invalid UTF-8 in a
    /// member nobody reads verified (serde_json skips it without decoding), though it is
    /// not JSON and jwt-simple refuses it.
    #[test]
    fn refuses_invalid_utf8_anywhere() {
        for p in [&b"{\"org\":\"acme\",\"sind\":\"s1\xa5\"}"[..], b"{\"x\":[\"\xff\"],\"org\":\"a\"}", b"{\"\xc3\":1}"]
        {
            assert_eq!(Claims::parse(p, &["org"]), Err(Malformed), "{p:?}");
            assert!(serde_json::from_slice::<JWTClaims<Map<String, Value>>>(p).is_err(), "jwt-simple accepts {p:?}");
        }
    }
}
