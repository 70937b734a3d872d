//! Time as the engine sees it: plain numbers passed in by the host. The engine never reads
//! a clock.

/// Nanoseconds since the Unix epoch.
pub type UnixNanos = u64;

/// Nanoseconds in a second.
pub const NANOS: u64 = 1_000_000_000;

/// Seconds since the Unix epoch, serialised as an integer; deserialised from an integer or
/// an RFC 3339 UTC string such as `"2027-01-01T00:00:00Z"`.
pub mod unix_seconds {
    use serde::{Deserializer, Serializer};

    /// Serialize as an integer.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    /// Accept an integer or an RFC 3339 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        super::number_or_text(d, super::parse_rfc3339, "a UTC timestamp like \"2027-01-01T00:00:00Z\"")
    }

    /// The same for optional fields.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serialize as an integer or nil.
        pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(v),
                None => s.serialize_none(),
            }
        }

        /// Accept an integer, an RFC 3339 string, or nothing.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            #[derive(Deserialize)]
            struct W(#[serde(with = "super")] u64);
            Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let rest = match rest.strip_prefix('.') {
        Some(frac) => {
            let n = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            &frac[n..]
        }
        None => rest,
    };
    if rest != "Z" && rest != "z" {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok()
}

/// Parse a duration such as `90s`, `15m`, `1h30m` or `7d` (units `s`, `m`, `h`, `d`, each
/// after a decimal number, largest first) into seconds. `None` for anything else, for an
/// empty text and for more than `u32::MAX` seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 10 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = match rest.as_bytes().get(digits)? {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            _ => return None,
        };
        if unit >= last_unit {
            return None;
        }
        last_unit = unit;
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[digits + 1..];
    }
    (total <= u64::from(u32::MAX)).then_some(total)
}

/// A duration in seconds, serialised as an integer; deserialised from an integer or a
/// text that [`parse_duration`] reads (`"15m"`).
pub mod duration_secs {
    use serde::{Deserializer, Serializer};

    /// Serialize as an integer.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    /// Accept an integer or a duration text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        super::number_or_text(d, super::parse_duration, "a duration like \"15m\", \"1h30m\" or \"900s\"")
    }
}

/// An integer, or a text that `parse` reads (an error naming `expected` when it cannot).
fn number_or_text<'de, D: serde::Deserializer<'de>>(
    d: D,
    parse: fn(&str) -> Option<u64>,
    expected: &str,
) -> Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(u64),
        S(String),
    }
    match <Either as serde::Deserialize>::deserialize(d)? {
        Either::N(n) => Ok(n),
        Either::S(s) => parse(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not {expected}"))),
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("900s"), Some(900));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("1d2h3m4s"), Some(93_784));
        assert_eq!(parse_duration("0s"), Some(0));
        for bad in ["", "15", "m", "15x", "1m1h", "1m1m", "-5m", "1.5h", " 5m", "5m ", "99999999999s", "50000d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_rfc3339("2026-11-25T11:14:53.123Z"), Some(1_795_605_293));
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-11-25T11:14:53+01:00",
            "2026-11-25 11:14:53Z",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
