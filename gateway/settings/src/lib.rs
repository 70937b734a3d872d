//! # gatehouse-settings
//!
//! What the configuration of every Gatehouse server (the native gateway, the regional
//! origin) shares: checks that name the field they refuse, so that a bad value is reported
//! as `section.field: must be …` at load, never as a surprise at run time; and the
//! environment overlay ([`env`]): every setting also from a `GATEHOUSE_…` variable, read
//! with the file by [`load_toml`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod env;
pub mod load;

pub use env::{Overlay, PathField, GATEWAY_PREFIX, ORIGIN_PREFIX};
pub use load::{load_toml, load_toml_with, redacted, LoadError, Loaded};

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// A configuration value that cannot be used: the dotted field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field, as written in the file (`limits.body_timeout_secs`).
    pub field: String,
    /// What it must be.
    pub problem: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), problem: problem.into() }
    }
}

impl From<FieldError> for String {
    fn from(e: FieldError) -> String {
        e.to_string()
    }
}

/// `value` must lie in `range` (both ends included): `field: must be between LO and HI`.
pub fn within<T: PartialOrd + Display>(field: &str, value: T, range: RangeInclusive<T>) -> Result<(), FieldError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("must be between {} and {}", range.start(), range.end())))
    }
}

/// `value` must be at most `max`: `field: must be at most MAX`.
pub fn at_most<T: PartialOrd + Display>(field: &str, value: T, max: T) -> Result<(), FieldError> {
    if value <= max {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("must be at most {max}")))
    }
}

/// `value` must be one of `allowed`: `field: must be `a`, `b` or `c``.
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), FieldError> {
    if allowed.contains(&value) {
        return Ok(());
    }
    let quoted: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
    let list = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(FieldError::new(field, format!("must be {list}")))
}

/// Make every relative path among `paths` relative to `dir` (the configuration file's
/// folder), so a configuration means the same wherever the server is started from.
pub fn relative_to<'p>(dir: &Path, paths: impl IntoIterator<Item = &'p mut PathBuf>) {
    for p in paths {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_field_and_include_both_ends() {
        assert_eq!(within("bundle.poll_secs", 1, 1..=3600), Ok(()));
        assert_eq!(within("bundle.poll_secs", 3600, 1..=3600), Ok(()));
        let e = within("bundle.poll_secs", 0u64, 1..=3600).unwrap_err();
        assert_eq!(e.to_string(), "bundle.poll_secs: must be between 1 and 3600");
        assert_eq!(e.field, "bundle.poll_secs");
        assert!(within("x", 3601, 1..=3600).is_err());
    }

    #[test]
    fn paths_resolve_against_the_configuration_folder() {
        let mut a = PathBuf::from("keys/a.pem");
        let mut b = PathBuf::from("/etc/gatehouse/b.pem");
        let mut c: Option<PathBuf> = Some("c".into());
        relative_to(Path::new("/srv/gh"), [&mut a, &mut b].into_iter().chain(c.as_mut()));
        assert_eq!(a, Path::new("/srv/gh/keys/a.pem"));
        assert_eq!(b, Path::new("/etc/gatehouse/b.pem"));
        assert_eq!(c.unwrap(), Path::new("/srv/gh/c"));
    }

    #[test]
    fn at_most_and_one_of() {
        assert_eq!(at_most("limits.drain_secs", 3600, 3600), Ok(()));
        assert_eq!(
            at_most("limits.drain_secs", 3601, 3600).unwrap_err().to_string(),
            "limits.drain_secs: must be at most 3600"
        );
        assert_eq!(one_of("storage.synchronous", "full", &["normal", "full"]), Ok(()));
        assert_eq!(
            one_of("storage.synchronous", "off", &["normal", "full"]).unwrap_err().to_string(),
            "storage.synchronous: must be `normal` or `full`"
        );
        assert_eq!(
            one_of("tokens.alg", "RS256", &["EdDSA", "ES256", "PS256"]).unwrap_err().to_string(),
            "tokens.alg: must be `EdDSA`, `ES256` or `PS256`"
        );
    }
}
