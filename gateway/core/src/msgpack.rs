//! A small MessagePack reader for serde, for bundles.
//!
//! Bundles are written with `rmp_serde::to_vec_named` (structs as maps with field names,
//! unit variants as strings, other variants as one-entry maps, `serde_bytes` as `bin`).
//! This reader decodes exactly that. It exists because `rmp_serde`'s reader instantiates
//! 5–14 KB of code for every type it visits, which was a third of an edge component (the
//! Spin and filter components must stay small); here the marker decoding is one
//! non-generic function and each visited type costs a small `match`.
//!
//! Input is bounded: nesting deeper than [`MAX_DEPTH`] and lengths beyond the input are
//! refused, and every container must be read to its end.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;

/// Deepest nesting of arrays and maps accepted.
pub const MAX_DEPTH: u32 = 64;

/// Why a MessagePack document could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

fn err(msg: &str) -> Error {
    Error(msg.to_string())
}

/// Decode one value of type `T` from `bytes`, which must hold exactly that value.
pub fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
    let mut r = Reader { buf: bytes, pos: 0, depth: 0 };
    let v = T::deserialize(&mut r)?;
    if r.pos != bytes.len() {
        return Err(err("trailing bytes after the value"));
    }
    Ok(v)
}

/// One decoded marker (containers carry their length; their items follow).
enum Item<'de> {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    Str(&'de str),
    Bin(&'de [u8]),
    Array(usize),
    Map(usize),
}

struct Reader<'de> {
    buf: &'de [u8],
    pos: usize,
    depth: u32,
}

impl<'de> Reader<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8], Error> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| err("unexpected end of input"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, n: usize) -> Result<u64, Error> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, Error> {
        usize::try_from(self.uint(n)?).map_err(|_| err("length too large"))
    }

    fn str(&mut self, n: usize) -> Result<Item<'de>, Error> {
        std::str::from_utf8(self.take(n)?).map(Item::Str).map_err(|_| err("string is not UTF-8"))
    }

    /// A container's length, checked against what input is left (every item takes at
    /// least one byte), so a forged length cannot make a visitor preallocate.
    fn container(&mut self, n: usize, per_item: usize) -> Result<usize, Error> {
        if n.saturating_mul(per_item) > self.buf.len() - self.pos {
            return Err(err("container longer than the input"));
        }
        Ok(n)
    }

    fn next(&mut self) -> Result<Item<'de>, Error> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => Item::Uint(u64::from(m)),
            0x80..=0x8f => Item::Map(self.container(usize::from(m & 0x0f), 2)?),
            0x90..=0x9f => Item::Array(self.container(usize::from(m & 0x0f), 1)?),
            0xa0..=0xbf => self.str(usize::from(m & 0x1f))?,
            0xc0 => Item::Nil,
            0xc2 => Item::Bool(false),
            0xc3 => Item::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (m - 0xc4))?;
                Item::Bin(self.take(n)?)
            }
            0xcc => Item::Uint(self.uint(1)?),
            0xcd => Item::Uint(self.uint(2)?),
            0xce => Item::Uint(self.uint(4)?),
            0xcf => Item::Uint(self.uint(8)?),
            0xd0 => Item::Int(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Item::Int(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Item::Int(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Item::Int(self.uint(8)? as i64),
            0xd9..=0xdb => {
                let n = self.len(1 << (m - 0xd9))?;
                self.str(n)?
            }
            0xdc | 0xdd => {
                let n = self.len(2 << (m - 0xdc))?;
                Item::Array(self.container(n, 1)?)
            }
            0xde | 0xdf => {
                let n = self.len(2 << (m - 0xde))?;
                Item::Map(self.container(n, 2)?)
            }
            0xe0..=0xff => Item::Int(i64::from(m as i8)),
            // 0xc1 is never used; floats and extension types are not part of any bundle.
            _ => return Err(err("unsupported MessagePack marker")),
        })
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err("nested too deeply"));
        }
        Ok(())
    }

    /// Skip one whole value.
    fn skip(&mut self) -> Result<(), Error> {
        let mut left: usize = 1;
        while left > 0 {
            left -= 1;
            match self.next()? {
                Item::Array(n) => left = left.saturating_add(n),
                Item::Map(n) => left = left.saturating_add(n.saturating_mul(2)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The items of an array, or the entries of a map.
struct Items<'a, 'de> {
    r: &'a mut Reader<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.r)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> Reader<'de> {
    fn seq<V: Visitor<'de>>(&mut self, n: usize, visitor: V) -> Result<V::Value, Error> {
        self.enter()?;
        let mut access = Items { r: self, left: n };
        let v = visitor.visit_seq(&mut access)?;
        let left = access.left;
        self.depth -= 1;
        if left != 0 {
            return Err(err("array has more items than expected"));
        }
        Ok(v)
    }

    fn map<V: Visitor<'de>>(&mut self, n: usize, visitor: V) -> Result<V::Value, Error> {
        self.enter()?;
        let mut access = Items { r: self, left: n };
        let v = visitor.visit_map(&mut access)?;
        let left = access.left;
        self.depth -= 1;
        if left != 0 {
            return Err(err("map has more entries than expected"));
        }
        Ok(v)
    }

    fn unsigned(&mut self) -> Result<u64, Error> {
        match self.next()? {
            Item::Uint(u) => Ok(u),
            Item::Int(i) if i >= 0 => Ok(i as u64),
            _ => Err(err("expected an unsigned integer")),
        }
    }

    fn signed(&mut self) -> Result<i64, Error> {
        match self.next()? {
            Item::Uint(u) => i64::try_from(u).map_err(|_| err("integer out of range")),
            Item::Int(i) => Ok(i),
            _ => Err(err("expected an integer")),
        }
    }

    fn text(&mut self) -> Result<&'de str, Error> {
        match self.next()? {
            Item::Str(s) => Ok(s),
            _ => Err(err("expected a string")),
        }
    }
}

// Each typed method calls only the one visitor method its type needs, so a visited type
// costs just that method (`deserialize_any` would instantiate every visitor method, most
// of them error paths). Only self-describing uses (untagged enums) go through `any`.
impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Item::Nil => visitor.visit_unit(),
            Item::Bool(b) => visitor.visit_bool(b),
            Item::Uint(u) => visitor.visit_u64(u),
            Item::Int(i) => visitor.visit_i64(i),
            Item::Str(s) => visitor.visit_borrowed_str(s),
            Item::Bin(b) => visitor.visit_borrowed_bytes(b),
            Item::Array(n) => self.seq(n, visitor),
            Item::Map(n) => self.map(n, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Item::Bool(b) => visitor.visit_bool(b),
            _ => Err(err("expected a boolean")),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(self.unsigned()?)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(self.signed()?)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(err("floating-point numbers are not part of a bundle"))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(err("floating-point numbers are not part of a bundle"))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.text()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Item::Bin(b) => visitor.visit_borrowed_bytes(b),
            _ => Err(err("expected binary data")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Item::Nil => visitor.visit_unit(),
            _ => Err(err("expected nil")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Item::Array(n) => self.seq(n, visitor),
            _ => Err(err("expected an array")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.next()? {
            Item::Map(n) => self.map(n, visitor),
            _ => Err(err("expected a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Bundles write structs with field names (`to_vec_named`), never positionally.
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.next()? {
            // A unit variant: its name.
            Item::Str(s) => visitor.visit_enum(s.into_deserializer()),
            // Any other variant: `{name: value}`.
            Item::Map(1) => {
                self.enter()?;
                let v = visitor.visit_enum(Variant { r: &mut *self })?;
                self.depth -= 1;
                Ok(v)
            }
            _ => Err(err("expected an enum variant (a string or a one-entry map)")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip()?;
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A variant written as a one-entry map.
struct Variant<'a, 'de> {
    r: &'a mut Reader<'de>,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let v = seed.deserialize(&mut *self.r)?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(self.r)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.r)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self.r, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self.r, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        Newtype(u32),
        Tuple(u8, String),
        Struct { a: i64, b: Option<bool> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Everything {
        small: u8,
        big: u64,
        neg: i64,
        tiny_neg: i8,
        text: String,
        long_text: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        list: Vec<u16>,
        map: BTreeMap<String, i32>,
        none: Option<String>,
        some: Option<String>,
        kinds: Vec<Kind>,
        unit: (),
        pair: (u8, bool),
    }

    fn sample() -> Everything {
        Everything {
            small: 7,
            big: u64::MAX,
            neg: -40_000_000_000,
            tiny_neg: -3,
            text: "héllo".into(),
            long_text: "x".repeat(70_000),
            bytes: (0..=255).collect(),
            list: vec![0, 127, 128, 255, 256, 65_535],
            map: [("a".to_string(), -1), ("b".to_string(), 1 << 20), ("c".to_string(), i32::MIN)].into(),
            none: None,
            some: Some(String::new()),
            kinds: vec![
                Kind::Plain,
                Kind::Newtype(300),
                Kind::Tuple(1, "t".into()),
                Kind::Struct { a: -1, b: Some(true) },
            ],
            unit: (),
            pair: (9, false),
        }
    }

    #[test]
    fn reads_what_rmp_serde_writes() {
        let bytes = rmp_serde::to_vec_named(&sample()).unwrap();
        assert_eq!(from_slice::<Everything>(&bytes).unwrap(), sample());
        // Structs are always written with their field names: positional ones are refused.
        let bytes = rmp_serde::to_vec(&sample()).unwrap();
        assert!(from_slice::<Everything>(&bytes).is_err());
        // Untagged enums (read through `deserialize_any`).
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
            L(Vec<Either>),
        }
        let v = vec![Either::N(5), Either::S("x".into()), Either::L(vec![Either::N(1)])];
        assert_eq!(from_slice::<Vec<Either>>(&rmp_serde::to_vec_named(&v).unwrap()).unwrap(), v);
    }

    #[test]
    fn refuses_bad_input() {
        let good = rmp_serde::to_vec_named(&sample()).unwrap();
        // Every truncation fails (no panic, no partial value).
        for n in 0..good.len() {
            assert!(from_slice::<Everything>(&good[..n]).is_err(), "truncated at {n}");
        }
        // Trailing bytes.
        let mut long = good.clone();
        long.push(0);
        assert!(from_slice::<Everything>(&long).is_err());
        // An unknown field under deny_unknown_fields.
        #[derive(Serialize)]
        struct Extra {
            small: u8,
            evil: bool,
        }
        assert!(from_slice::<Everything>(&rmp_serde::to_vec_named(&Extra { small: 1, evil: true }).unwrap()).is_err());
        // A length larger than the input, deep nesting, extension types, the unused marker.
        assert!(from_slice::<Vec<u8>>(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(from_slice::<BTreeMap<String, u8>>(&[0xdf, 0x7f, 0xff, 0xff, 0xff]).is_err());
        #[derive(Deserialize)]
        struct Deep(#[allow(dead_code)] Vec<Deep>);
        let deep: Vec<u8> = std::iter::repeat_n(0x91, 100).chain([0x90]).collect();
        assert!(from_slice::<Deep>(&deep).is_err());
        let shallow: Vec<u8> = std::iter::repeat_n(0x91, 10).chain([0x90]).collect();
        assert!(from_slice::<Deep>(&shallow).is_ok());
        // Skipping is iterative: any depth is skipped without recursion.
        assert!(from_slice::<serde::de::IgnoredAny>(&deep).is_ok());
        assert!(from_slice::<u8>(&[0xd4, 0x01, 0x00]).is_err());
        assert!(from_slice::<u8>(&[0xc1]).is_err());
        assert!(from_slice::<f64>(&[0xcb, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Wrong types and out-of-range numbers.
        assert!(from_slice::<u8>(&[0xcd, 0x01, 0x00]).is_err());
        assert!(from_slice::<u64>(&[0xff]).is_err());
        assert!(from_slice::<String>(&[0xa2, 0xff, 0xfe]).is_err());
        assert!(from_slice::<Kind>(&[0x82, 0xa1, b'a', 0xc0, 0xa1, b'b', 0xc0]).is_err());
        assert!(from_slice::<Kind>(&[0xa4, b'n', b'o', b'p', b'e']).is_err());
    }

    #[test]
    fn unknown_fields_are_skipped_when_allowed() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Lenient {
            small: u8,
        }
        #[derive(Serialize)]
        struct More {
            nested: Vec<BTreeMap<String, Vec<u8>>>,
            small: u8,
        }
        let bytes =
            rmp_serde::to_vec_named(&More { nested: vec![[("k".to_string(), vec![1, 2])].into()], small: 4 }).unwrap();
        assert_eq!(from_slice::<Lenient>(&bytes).unwrap(), Lenient { small: 4 });
    }
}
