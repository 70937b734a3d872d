//! Fuzz the core's MessagePack reader (`gatehouse_core::msgpack`) directly: the bytes
//! as a bundle body, an envelope, a policy, and as any value.
//!
//! Invariants (a panic here is a finding):
//! - no input panics or recurses without bound (nesting is refused past `MAX_DEPTH`);
//! - a value the reader accepts, written back by the origin's writer
//!   (`rmp_serde::to_vec_named`), reads back equal;
//! - the origin's own reader (`rmp_serde`) reads the same bytes to the same value: an
//!   edge never accepts a bundle body differently from the library that wrote it;
//! - a document the reader accepts as any value is one well-formed value (skipping it
//!   as `IgnoredAny` succeeds too), and its nesting is within `MAX_DEPTH`.
#![no_main]

use std::fmt::Debug;

use gatehouse_core::bundle::{BundleBody, Envelope};
use gatehouse_core::msgpack::{self, MAX_DEPTH};
use gatehouse_core::Policy;
use libfuzzer_sys::fuzz_target;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;

/// Any MessagePack value a bundle may hold (no floats, no extension types).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Array(a) => 1 + a.iter().map(Value::depth).max().unwrap_or(0),
            Value::Map(m) => 1 + m.iter().map(|(k, v)| k.depth().max(v.depth())).max().unwrap_or(0),
            _ => 0,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Nil)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Uint(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                // rmp_serde visits non-negative signed markers as signed too; compare by value.
                Ok(if v >= 0 { Value::Uint(v as u64) } else { Value::Int(v) })
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
                Ok(Value::Bin(v.to_vec()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry()? {
                    out.push((k, v));
                }
                Ok(Value::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Uint(u) => s.serialize_u64(*u),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Str(t) => s.serialize_str(t),
            Value::Bin(b) => s.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Read `data` as a `T`; if accepted, check the round trip and the origin's reader.
fn typed<T: DeserializeOwned + Serialize + PartialEq + Debug>(what: &str, data: &[u8]) -> Option<T> {
    let v: T = msgpack::from_slice(data).ok()?;
    let bytes = rmp_serde::to_vec_named(&v).unwrap_or_else(|e| panic!("{what}: accepted value does not encode: {e}"));
    let again: T = msgpack::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: re-encoded value refused: {e}"));
    assert_eq!(again, v, "{what}: re-encoded value reads differently");
    let theirs: T =
        rmp_serde::from_slice(data).unwrap_or_else(|e| panic!("{what}: rmp_serde refuses what the edge reads: {e}"));
    assert_eq!(theirs, v, "{what}: rmp_serde reads another value");
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    typed::<BundleBody>("BundleBody", data);
    typed::<Policy>("Policy", data);
    if let Ok(env) = msgpack::from_slice::<Envelope>(data) {
        // Envelope has no PartialEq: compare its encoding.
        let bytes = rmp_serde::to_vec_named(&env).expect("envelope encodes");
        let again: Envelope = msgpack::from_slice(&bytes).expect("re-encoded envelope refused");
        assert_eq!(rmp_serde::to_vec_named(&again).expect("encodes"), bytes, "envelope reads differently");
    }
    let any = msgpack::from_slice::<Value>(data);
    if let Ok(v) = &any {
        assert!(v.depth() <= MAX_DEPTH, "a value nested {} deep was accepted", v.depth());
        assert!(msgpack::from_slice::<IgnoredAny>(data).is_ok(), "a value was read but cannot be skipped");
        let bytes = rmp_serde::to_vec_named(v).expect("value encodes");
        assert_eq!(msgpack::from_slice::<Value>(&bytes).as_ref(), Ok(v), "re-encoded value reads differently");
        let theirs: Value = rmp_serde::from_slice(data).expect("rmp_serde refuses a value the edge reads");
        assert_eq!(&theirs, v, "rmp_serde reads another value");
    }
});
