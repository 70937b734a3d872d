//! Reading a configuration file with the environment overlay ([`crate::env`]): the file's
//! document, the variables applied over it, then the server's config type, with errors
//! that name the file's line or the variable.

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::env::{Key, Overlay, PathField};
use crate::FieldError;

/// A configuration as read: the typed config, the document it was read from (the file
/// with the environment applied) and the variables that applied.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The configuration (not yet validated).
    pub config: T,
    /// The effective document.
    pub document: Table,
    /// The variables that applied.
    pub overlay: Overlay,
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not valid TOML, or does not fit the config (the message names the line
    /// and the field).
    #[error("{0}")]
    File(String),
    /// A variable cannot be applied, or what it sets does not fit (the message names it).
    #[error("{0}")]
    Env(#[from] FieldError),
}

/// Read `path` with the variables under `prefix` from this process's environment;
/// relative paths in variables naming `paths` resolve against the current directory.
pub fn load_toml<T: DeserializeOwned>(path: &Path, prefix: &str, paths: &[PathField]) -> Result<Loaded<T>, LoadError> {
    load_toml_with(path, Overlay::from_env(prefix)?, paths)
}

/// [`load_toml`] with the variables given.
pub fn load_toml_with<T: DeserializeOwned>(
    path: &Path,
    overlay: Overlay,
    paths: &[PathField],
) -> Result<Loaded<T>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(LoadError::Read)?;
    let file_error = |e: toml::de::Error| LoadError::File(e.to_string().trim_end().to_string());
    let mut document: Table = toml::from_str(&text).map_err(file_error)?;
    if overlay.is_empty() {
        // The file alone: its own errors, with line and column.
        let config = toml::from_str(&text).map_err(file_error)?;
        return Ok(Loaded { config, document, overlay });
    }
    let cwd = std::env::current_dir().map_err(LoadError::Read)?;
    overlay.apply(&mut document, paths, &cwd)?;
    match serde_path_to_error::deserialize::<_, T>(Value::Table(document.clone())) {
        Ok(config) => Ok(Loaded { config, document, overlay }),
        Err(e) => {
            let at = keys_of(e.path());
            let problem = e.inner().to_string().trim_end().to_string();
            if let Some(var) = overlay.var_for(&at) {
                return Err(LoadError::Env(FieldError::new(&var.name, problem)));
            }
            // Not the variables' doing: the file's own error, with its line, if it has one.
            toml::from_str::<T>(&text).map_err(file_error)?;
            Err(LoadError::File(format!("{}: {problem}", e.path())))
        }
    }
}

fn keys_of(path: &serde_path_to_error::Path) -> Vec<Key> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Key::Index(*index)),
            Segment::Map { key } => Some(Key::Field(key.clone())),
            Segment::Enum { variant } => Some(Key::Field(variant.clone())),
            _ => None,
        })
        .collect()
}

/// Key names whose string values are secrets (tokens, passwords, DSNs, keys): printed as
/// `<redacted>` by [`redacted`].
const SECRET_WORDS: &[&str] = &["token", "password", "secret", "dsn", "credential", "authorization", "api_key"];

/// `doc` with secrets replaced by `<redacted>`: string values under a key naming a secret
/// (`token`, `password`, `secret`, `dsn`, …), and every value of a `headers` table
/// (exporter headers carry API keys).
pub fn redacted(doc: &Table) -> Table {
    fn walk(v: &Value, secret: bool) -> Value {
        match v {
            Value::String(_) if secret => Value::String("<redacted>".into()),
            Value::Table(t) => Value::Table(redact_table(t, secret)),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, secret)).collect()),
            other => other.clone(),
        }
    }
    fn redact_table(t: &Table, secret: bool) -> Table {
        t.iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let is_secret = secret || lower == "headers" || SECRET_WORDS.iter().any(|w| lower.contains(w));
                (k.clone(), walk(v, is_secret))
            })
            .collect()
    }
    redact_table(doc, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::GATEWAY_PREFIX;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        listen: Listen,
        #[serde(default)]
        limits: Limits,
        #[serde(default)]
        routes: Vec<Route>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Listen {
        admin: std::net::SocketAddr,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Limits {
        max_body_bytes: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        upstream: String,
        #[serde(default)]
        filters: Vec<String>,
    }

    fn load(file: &str, vars: &[(&str, &str)]) -> Result<Loaded<Conf>, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, file).unwrap();
        let o = Overlay::from_vars(GATEWAY_PREFIX, vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .map_err(|e| e.to_string())?;
        load_toml_with(&p, o, &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn variables_fill_in_and_override_the_file() {
        let c = load(
            "[listen]\nadmin = \"127.0.0.1:1\"\n",
            &[
                ("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "127.0.0.1:9"),
                ("GATEHOUSE_GATEWAY__LIMITS__MAX_BODY_BYTES", "1000"),
                ("GATEHOUSE_GATEWAY__ROUTES__0__UPSTREAM", "http://x:1"),
                ("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", r#"["ip","token"]"#),
            ],
        )
        .unwrap();
        assert_eq!(c.config.listen.admin.port(), 9);
        assert_eq!(c.config.limits.max_body_bytes, 1000);
        assert_eq!(c.config.routes[0].upstream, "http://x:1");
        assert_eq!(c.config.routes[0].filters, ["ip", "token"]);
        // A file with no `[listen]` at all, completed from the environment.
        let c = load("", &[("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "127.0.0.1:9")]).unwrap();
        assert_eq!(c.config.listen.admin.port(), 9);
    }

    #[test]
    fn errors_name_the_variable_or_the_files_line() {
        let file = "[listen]\nadmin = \"127.0.0.1:1\"\n";
        let e = load(file, &[("GATEHOUSE_GATEWAY__LIMITS__MAX_BODDY", "1")]).unwrap_err();
        assert!(e.starts_with("GATEHOUSE_GATEWAY__LIMITS__MAX_BODDY: unknown field `max_boddy`"), "{e}");
        let e = load(file, &[("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "nowhere")]).unwrap_err();
        assert!(e.starts_with("GATEHOUSE_GATEWAY__LISTEN__ADMIN: "), "{e}");
        let e = load(file, &[("GATEHOUSE_GATEWAY__LIMITS__MAX_BODY_BYTES", "-1")]).unwrap_err();
        assert!(e.starts_with("GATEHOUSE_GATEWAY__LIMITS__MAX_BODY_BYTES: "), "{e}");
        let e = load(file, &[("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", "[\"ip\"]")]).unwrap_err();
        assert!(e.starts_with("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS: missing field `upstream`"), "{e}");
        // The file's own mistake, with the environment set: still the file's line.
        let e =
            load(&format!("{file}colour = 1\n"), &[("GATEHOUSE_GATEWAY__LIMITS__MAX_BODY_BYTES", "1")]).unwrap_err();
        assert!(e.contains("line 3") && e.contains("unknown field `colour`"), "{e}");
        let e = load("[listen\n", &[]).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let doc: Table = toml::from_str(
            "[audit]\nurl = \"http://o\"\ntoken = \"s3cr3t-token-value\"\n[telemetry.sentry]\ndsn = \"http://k@h/1\"\n[telemetry.otlp.headers]\nx-api = \"k\"\n[bundle]\norigin_token = \"t\"\npoll_secs = 2\n",
        )
        .unwrap();
        let text = toml::to_string(&redacted(&doc)).unwrap();
        for secret in ["s3cr3t", "k@h", "\"k\"", "\"t\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("url = \"http://o\"") && text.contains("poll_secs = 2"), "{text}");
    }
}
