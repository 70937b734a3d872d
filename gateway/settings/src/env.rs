//! The environment overlay: every setting of a configuration file also from an
//! environment variable, `<PREFIX>__<SECTION>__<FIELD>` (two underscores between levels),
//! applied to the file's TOML document before it is read into the server's config.
//!
//! - Names: each level is a field, lower-cased (`LISTEN__ADMIN` → `listen.admin`), or an
//!   array index (`ROUTES__0__UPSTREAM` → `routes[0].upstream`; the index after the last
//!   item appends one). A key the file already has matches whatever its case and with `-`
//!   for `_` (`REGIONS__EU_WEST` sets `regions.eu-west` when the file has it).
//! - Values: a TOML value when the text is one (`1000`, `true`, `["ip", "token"]`,
//!   `{ url = "…" }`, `"quoted"`), else the text as a string (`127.0.0.1:9`). A field the
//!   file holds as a string stays a string (`TOKEN=1234` is the text `1234`); quote a
//!   value (`'"1234"'`) to force a string anywhere.
//! - Precedence: environment over file over defaults.
//! - Relative paths given by a variable resolve against the current directory (the
//!   file's own against its folder); each loader names its path fields ([`PathField`]).
//! - A variable under the prefix that names nothing is an error naming the variable;
//!   other `GATEHOUSE_…` variables (`GATEHOUSE_LOG`, `GATEHOUSE_THREADS`, …) are not
//!   settings and are left alone.

use std::cmp::Ordering;
use std::fmt;
use std::path::Path;

use toml::{Table, Value};

use crate::FieldError;

/// The prefix of the gateway's settings (`gatehouse gateway` and `gatehouse authz`).
pub const GATEWAY_PREFIX: &str = "GATEHOUSE_GATEWAY";
/// The prefix of the origin's settings.
pub const ORIGIN_PREFIX: &str = "GATEHOUSE_ORIGIN";

/// One level of a setting's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// An array item (indices sort before names, and in numeric order).
    Index(usize),
    /// A table field, lower case.
    Field(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Index(i) => write!(f, "[{i}]"),
            Key::Field(s) => f.write_str(s),
        }
    }
}

/// A dotted field name as the validators write it (`routes[0].filters[1]`).
pub fn dotted(path: &[Key]) -> String {
    let mut out = String::new();
    for k in path {
        match k {
            Key::Index(_) => out.push_str(&k.to_string()),
            Key::Field(s) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(s);
            }
        }
    }
    out
}

/// Parse a dotted field name (`routes[0].upstream`, `limits.max_body_bytes`) into keys.
pub fn parse_dotted(field: &str) -> Vec<Key> {
    let mut keys = Vec::new();
    for part in field.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            keys.push(Key::Field(name.to_string()));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                keys.push(Key::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    keys
}

/// A setting from the environment.
#[derive(Debug, Clone)]
pub struct EnvVar {
    /// The variable's name, as set.
    pub name: String,
    /// Where it goes in the document.
    pub path: Vec<Key>,
    /// Its text.
    pub raw: String,
}

/// A field that holds a filesystem path, for resolving relative paths given by a
/// variable against the current directory: a dotted pattern where `*` stands for any
/// field or index (`routes.*.filters.*`), and a suffix the text must end with to count
/// as a path (`.wasm`; empty: any text).
#[derive(Debug, Clone, Copy)]
pub struct PathField {
    /// The pattern.
    pub pattern: &'static str,
    /// The suffix that makes a string a path here.
    pub suffix: &'static str,
}

impl PathField {
    /// A field that always holds a path.
    pub const fn any(pattern: &'static str) -> PathField {
        PathField { pattern, suffix: "" }
    }

    fn matches(&self, path: &[Key], text: &str) -> bool {
        let parts: Vec<&str> = self.pattern.split('.').collect();
        parts.len() == path.len()
            && parts.iter().zip(path).all(|(p, k)| match k {
                _ if *p == "*" => true,
                Key::Field(f) => f == p,
                Key::Index(_) => false,
            })
            && text.ends_with(self.suffix)
    }
}

/// The settings of one server found in the environment.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    vars: Vec<EnvVar>,
}

impl Overlay {
    /// The variables under `prefix` (`GATEHOUSE_GATEWAY`) in this process's environment.
    pub fn from_env(prefix: &str) -> Result<Overlay, FieldError> {
        Overlay::from_vars(prefix, std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v)))
    }

    /// The variables under `prefix` among `vars` (name, value).
    pub fn from_vars<V: AsRef<std::ffi::OsStr>>(
        prefix: &str,
        vars: impl IntoIterator<Item = (String, V)>,
    ) -> Result<Overlay, FieldError> {
        let start = format!("{prefix}__");
        let mut found = Vec::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(&start) else {
                if name.starts_with(prefix) && name != prefix {
                    return Err(FieldError::new(
                        &name,
                        format!("settings are named {start}<SECTION>__<FIELD> (two underscores between levels)"),
                    ));
                }
                continue;
            };
            let raw =
                value.as_ref().to_str().ok_or_else(|| FieldError::new(&name, "the value is not UTF-8"))?.to_string();
            let mut path = Vec::new();
            for seg in rest.split("__") {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(FieldError::new(
                        &name,
                        "each level is a field name (letters, digits, `_`) or an index, between `__`",
                    ));
                }
                match seg.parse::<usize>() {
                    Ok(i) if seg.bytes().all(|b| b.is_ascii_digit()) => path.push(Key::Index(i)),
                    _ => path.push(Key::Field(seg.to_ascii_lowercase())),
                }
            }
            if matches!(path.first(), Some(Key::Index(_))) {
                return Err(FieldError::new(&name, "the first level must be a section or field name"));
            }
            found.push(EnvVar { name, path, raw });
        }
        // Parents before children, indices in numeric order (so `ROUTES__2` comes after
        // `ROUTES__1`, which may append the item it continues).
        found.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.name.cmp(&b.name)));
        for w in found.windows(2) {
            if w[0].path == w[1].path {
                return Err(FieldError::new(&w[1].name, format!("sets the same field as {}", w[0].name)));
            }
        }
        Ok(Overlay { vars: found })
    }

    /// Whether no variable applies.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The variables, in the order they apply.
    pub fn vars(&self) -> &[EnvVar] {
        &self.vars
    }

    /// Apply every variable to `doc` (the file's document); relative paths in the fields
    /// `paths` name resolve against `cwd`.
    pub fn apply(&self, doc: &mut Table, paths: &[PathField], cwd: &Path) -> Result<(), FieldError> {
        for var in &self.vars {
            apply_one(doc, var, paths, cwd).map_err(|problem| FieldError::new(&var.name, problem))?;
        }
        Ok(())
    }

    /// The variable that set `field` (dotted, as validators name it), a part of it or a
    /// table holding it: the most specific one.
    pub fn var_for(&self, field: &[Key]) -> Option<&EnvVar> {
        let common = |v: &EnvVar| match v.path.len().cmp(&field.len()) {
            Ordering::Greater => v.path.starts_with(field),
            _ => field.starts_with(&v.path),
        };
        self.vars.iter().filter(|v| common(v)).max_by_key(|v| v.path.len())
    }

    /// Whether a variable set `field` itself or a table holding it.
    pub fn sets(&self, field: &[Key]) -> bool {
        self.vars.iter().any(|v| field.starts_with(&v.path))
    }

    /// A validator's message (`section.field: problem`) naming the variable the field
    /// came from, when it came from one: `section.field (GATEHOUSE_…): problem`.
    pub fn annotate(&self, message: &str) -> String {
        let Some((field, problem)) = message.split_once(": ") else { return message.to_string() };
        if field.contains(' ') || field.is_empty() {
            return message.to_string();
        }
        let path = parse_dotted(field);
        match self.vars.iter().filter(|v| path.starts_with(&v.path)).max_by_key(|v| v.path.len()) {
            Some(v) => format!("{field} (from {}): {problem}", v.name),
            None => message.to_string(),
        }
    }
}

/// The TOML value of a variable's text (see the module's rules); `existing` is what the
/// file holds there.
pub fn parse_value(raw: &str, existing: Option<&Value>) -> Value {
    let text = || Value::String(raw.to_string());
    let trimmed = raw.trim();
    match trimmed.parse::<Value>() {
        Ok(Value::Datetime(_)) => text(),
        Ok(Value::String(s)) => Value::String(s),
        Ok(_) if matches!(existing, Some(Value::String(_))) => text(),
        Ok(v) => v,
        Err(_) => text(),
    }
}

fn same_key(file_key: &str, env_key: &str) -> bool {
    file_key.len() == env_key.len()
        && file_key.bytes().zip(env_key.bytes()).all(|(a, b)| {
            let a = if a == b'-' { b'_' } else { a.to_ascii_lowercase() };
            a == b
        })
}

fn apply_one(doc: &mut Table, var: &EnvVar, paths: &[PathField], cwd: &Path) -> Result<(), String> {
    let mut node = Slot::Table(doc);
    let last = var.path.len() - 1;
    let mut walked: Vec<Key> = Vec::new();
    for (i, key) in var.path.iter().enumerate() {
        let leaf = i == last;
        node = match (node, key) {
            (Slot::Table(t), Key::Field(name)) => {
                let name = t.keys().find(|k| same_key(k, name)).cloned().unwrap_or_else(|| name.clone());
                walked.push(Key::Field(name.clone()));
                if leaf {
                    let v = leaf_value(var, t.get(&name), &walked, paths, cwd);
                    t.insert(name, v);
                    break;
                }
                let next = next_level(&var.path[i + 1]);
                let entry = t.entry(name.clone()).or_insert(next);
                Slot::of(entry, &name)?
            }
            (Slot::Array(a, name), Key::Index(n)) => {
                walked.push(Key::Index(*n));
                let n = *n;
                if n > a.len() {
                    return Err(format!(
                        "`{name}` has {} item(s) here: the next index is {} (indices follow on)",
                        a.len(),
                        a.len()
                    ));
                }
                if leaf {
                    let v = leaf_value(var, a.get(n), &walked, paths, cwd);
                    if n == a.len() {
                        a.push(v);
                    } else {
                        a[n] = v;
                    }
                    break;
                }
                if n == a.len() {
                    a.push(next_level(&var.path[i + 1]));
                }
                let label = format!("{name}[{n}]");
                Slot::of(&mut a[n], &label)?
            }
            (Slot::Table(_), Key::Index(_)) => {
                return Err(format!("`{}` is a table: name its fields, not an index", dotted(&walked)))
            }
            (Slot::Array(_, name), Key::Field(_)) => {
                return Err(format!("`{name}` is an array: address its items by index (`…__0__…`)"))
            }
            (Slot::Value(name), _) => return Err(format!("`{name}` is a single value: it has no fields")),
        };
    }
    Ok(())
}

fn next_level(key: &Key) -> Value {
    match key {
        Key::Index(_) => Value::Array(Vec::new()),
        Key::Field(_) => Value::Table(Table::new()),
    }
}

fn leaf_value(var: &EnvVar, existing: Option<&Value>, at: &[Key], paths: &[PathField], cwd: &Path) -> Value {
    let mut v = parse_value(&var.raw, existing);
    resolve_paths(&mut v, &mut at.to_vec(), paths, cwd);
    v
}

/// Make relative paths among `v` (at `at`) absolute against `cwd`.
fn resolve_paths(v: &mut Value, at: &mut Vec<Key>, paths: &[PathField], cwd: &Path) {
    match v {
        Value::String(s) if Path::new(s.as_str()).is_relative() && paths.iter().any(|p| p.matches(at, s)) => {
            *s = cwd.join(&*s).to_string_lossy().into_owned();
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.push(Key::Index(i));
                resolve_paths(item, at, paths, cwd);
                at.pop();
            }
        }
        Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                at.push(Key::Field(k.clone()));
                resolve_paths(item, at, paths, cwd);
                at.pop();
            }
        }
        _ => {}
    }
}

/// Where the walk through the document stands.
enum Slot<'a> {
    Table(&'a mut Table),
    Array(&'a mut Vec<Value>, String),
    Value(String),
}

impl<'a> Slot<'a> {
    fn of(v: &'a mut Value, name: &str) -> Result<Slot<'a>, String> {
        Ok(match v {
            Value::Table(t) => Slot::Table(t),
            Value::Array(a) => Slot::Array(a, name.to_string()),
            _ => Slot::Value(name.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(vars: &[(&str, &str)]) -> Result<Overlay, FieldError> {
        Overlay::from_vars(GATEWAY_PREFIX, vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn applied(file: &str, vars: &[(&str, &str)]) -> Result<Table, String> {
        let mut doc: Table = toml::from_str(file).unwrap();
        let o = overlay(vars).map_err(|e| e.to_string())?;
        let paths = [PathField::any("bundle.file"), PathField { pattern: "routes.*.filters.*", suffix: ".wasm" }];
        o.apply(&mut doc, &paths, Path::new("/cwd")).map_err(|e| e.to_string())?;
        Ok(doc)
    }

    #[test]
    fn names_become_paths_and_other_variables_are_left_alone() {
        let o = overlay(&[
            ("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "127.0.0.1:9"),
            ("GATEHOUSE_GATEWAY__ROUTES__10__UPSTREAM", "x"),
            ("GATEHOUSE_GATEWAY__ROUTES__2__UPSTREAM", "x"),
            ("GATEHOUSE_LOG", "debug"),
            ("GATEHOUSE_THREADS", "1"),
            ("GATEHOUSE_FILTER_DIR", "/x"),
            ("GATEHOUSE_ORIGIN__REGION", "eu"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        let names: Vec<String> = o.vars().iter().map(|v| dotted(&v.path)).collect();
        assert_eq!(names, ["listen.admin", "routes[2].upstream", "routes[10].upstream"]);
    }

    #[test]
    fn malformed_names_are_refused_naming_the_variable() {
        for (name, want) in [
            ("GATEHOUSE_GATEWAY_LISTEN__ADMIN", "two underscores"),
            ("GATEHOUSE_GATEWAY__LISTEN____ADMIN", "between `__`"),
            ("GATEHOUSE_GATEWAY__LISTEN__", "between `__`"),
            ("GATEHOUSE_GATEWAY__0__X", "first level"),
            ("GATEHOUSE_GATEWAY__LISTEN-X", "letters, digits"),
        ] {
            let e = overlay(&[(name, "1")]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{name}: ")), "{e}");
            assert!(e.contains(want), "{name}: {e}");
        }
        let e = overlay(&[("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "a"), ("GATEHOUSE_GATEWAY__listen__admin", "b")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sets the same field as"), "{e}");
    }

    #[test]
    fn values_are_toml_when_they_parse_else_text() {
        assert_eq!(parse_value("1000", None), Value::Integer(1000));
        assert_eq!(parse_value("true", None), Value::Boolean(true));
        assert_eq!(parse_value("127.0.0.1:9", None), Value::String("127.0.0.1:9".into()));
        assert_eq!(parse_value("http://x:1", None), Value::String("http://x:1".into()));
        assert_eq!(
            parse_value(r#"["ip","token"]"#, None),
            Value::Array(vec![Value::String("ip".into()), Value::String("token".into())])
        );
        assert_eq!(parse_value("\"1234\"", None), Value::String("1234".into()));
        // The file holds a string there: the text stays text.
        assert_eq!(parse_value("1234", Some(&Value::String("x".into()))), Value::String("1234".into()));
        // Dates are no setting's type: text.
        assert_eq!(parse_value("2027-01-01", None), Value::String("2027-01-01".into()));
        // Not one value: text, never a second key.
        assert_eq!(parse_value("1\nx = 2", None), Value::String("1\nx = 2".into()));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let file = "[listen]\nadmin = \"127.0.0.1:1\"\n[[routes]]\nupstream = \"http://a:1\"\n";
        let doc = applied(
            file,
            &[
                ("GATEHOUSE_GATEWAY__LISTEN__ADMIN", "127.0.0.1:9"),
                ("GATEHOUSE_GATEWAY__LIMITS__MAX_BODY_BYTES", "1000"),
                ("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", r#"["ip","token"]"#),
                ("GATEHOUSE_GATEWAY__ROUTES__1__UPSTREAM", "http://b:2"),
                ("GATEHOUSE_GATEWAY__ROUTES__1__PATH_PREFIX", "/b"),
            ],
        )
        .unwrap();
        assert_eq!(doc["listen"]["admin"].as_str(), Some("127.0.0.1:9"));
        assert_eq!(doc["limits"]["max_body_bytes"].as_integer(), Some(1000));
        let routes = doc["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0]["upstream"].as_str(), Some("http://a:1"));
        assert_eq!(routes[0]["filters"].as_array().unwrap().len(), 2);
        assert_eq!(routes[1]["upstream"].as_str(), Some("http://b:2"));
        assert_eq!(routes[1]["path_prefix"].as_str(), Some("/b"));
    }

    #[test]
    fn existing_keys_match_whatever_their_case_and_dashes() {
        let doc =
            applied("[regions]\neu-west = \"http://a\"\n", &[("GATEHOUSE_GATEWAY__REGIONS__EU_WEST", "http://b")])
                .unwrap();
        assert_eq!(doc["regions"]["eu-west"].as_str(), Some("http://b"));
        assert_eq!(doc["regions"].as_table().unwrap().len(), 1);
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused_naming_the_variable() {
        let file = "[listen]\nadmin = \"x\"\n[[routes]]\nupstream = \"http://a:1\"\n";
        for (name, want) in [
            ("GATEHOUSE_GATEWAY__ROUTES__5__UPSTREAM", "the next index is 1"),
            ("GATEHOUSE_GATEWAY__ROUTES__UPSTREAM", "address its items by index"),
            ("GATEHOUSE_GATEWAY__LISTEN__0", "name its fields"),
            ("GATEHOUSE_GATEWAY__LISTEN__ADMIN__PORT", "single value"),
        ] {
            let e = applied(file, &[(name, "1")]).unwrap_err();
            assert!(e.starts_with(&format!("{name}: ")), "{e}");
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn relative_paths_from_the_environment_resolve_against_the_current_directory() {
        let file = "[bundle]\nfile = \"b.ghb\"\n[[routes]]\nupstream = \"http://a:1\"\n";
        let doc = applied(
            file,
            &[
                ("GATEHOUSE_GATEWAY__BUNDLE__FILE", "rel/b.ghb"),
                ("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", r#"["ip", "x/custom.wasm", "/abs/y.wasm"]"#),
            ],
        )
        .unwrap();
        assert_eq!(doc["bundle"]["file"].as_str(), Some("/cwd/rel/b.ghb"));
        let f: Vec<&str> = doc["routes"][0]["filters"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(f, ["ip", "/cwd/x/custom.wasm", "/abs/y.wasm"]);
    }

    #[test]
    fn messages_name_the_variable_a_field_came_from() {
        let o = overlay(&[
            ("GATEHOUSE_GATEWAY__LIMITS__HEADER_TIMEOUT_SECS", "0"),
            ("GATEHOUSE_GATEWAY__ROUTES__0__FILTERS", "[]"),
        ])
        .unwrap();
        assert_eq!(
            o.annotate("limits.header_timeout_secs: must be between 1 and 3600"),
            "limits.header_timeout_secs (from GATEHOUSE_GATEWAY__LIMITS__HEADER_TIMEOUT_SECS): must be between 1 and 3600"
        );
        assert_eq!(
            o.annotate("routes[0].filters[1]: nope"),
            "routes[0].filters[1] (from GATEHOUSE_GATEWAY__ROUTES__0__FILTERS): nope"
        );
        assert_eq!(o.annotate("bundle.poll_secs: must be"), "bundle.poll_secs: must be");
        assert!(o.sets(&parse_dotted("routes[0].filters[3]")));
        assert!(!o.sets(&parse_dotted("routes[1].filters")));
        assert_eq!(
            parse_dotted("routes[0].filters[12]"),
            [Key::Field("routes".into()), Key::Index(0), Key::Field("filters".into()), Key::Index(12)]
        );
    }
}
