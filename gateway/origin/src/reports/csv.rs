//! A report as CSV: sections separated by an empty line, each with its own header row,
//! and every row starting with its section's name (`report`, `controls`, `summary`, one
//! per table, `notes`), so each section parses on its own and a row says where it
//! belongs. Every field is quoted and formula-safe ([`csv_field`]).

use serde_json::Value;

use crate::api::audit::csv_field;

use super::{iso, Report};

/// One CSV line of `cells`, each quoted.
fn line(cells: impl Iterator<Item = String>) -> String {
    let mut l = cells.map(|c| csv_field(&c)).collect::<Vec<_>>().join(",");
    l.push('\n');
    l
}

/// One section: its header (after `section`) and rows.
fn section(out: &mut String, name: &str, columns: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&line(std::iter::once("section").chain(columns.iter().copied()).map(String::from)));
    for row in rows {
        out.push_str(&line(std::iter::once(name.to_string()).chain(row)));
    }
}

/// A figure's value as text (a number as written, `null` as empty).
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Render `r` as CSV.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let c = &r.chain_head;
    let dir = c.directory.as_ref();
    let fields = [
        ("kind", r.kind.name().to_string()),
        ("title", r.title.to_string()),
        ("org_id", r.org.id.clone()),
        ("org_slug", r.org.slug.clone()),
        ("org_name", r.org.name.clone()),
        ("period_from", r.period.from.to_string()),
        ("period_until", r.period.until.to_string()),
        ("period_from_utc", iso(r.period.from)),
        ("period_until_utc", iso(r.period.until)),
        ("generated_at", r.generated_at.to_string()),
        ("generated_at_utc", iso(r.generated_at)),
        ("generated_by", r.generated_by.clone()),
        ("chain_tenant_seq", c.tenant.seq.to_string()),
        ("chain_tenant_hash", c.tenant.hash.clone()),
        ("chain_directory_seq", dir.map(|h| h.seq.to_string()).unwrap_or_default()),
        ("chain_directory_hash", dir.map(|h| h.hash.clone()).unwrap_or_default()),
    ];
    section(&mut out, "report", &["field", "value"], fields.into_iter().map(|(k, v)| vec![k.to_string(), v]));
    let controls = r.controls.iter().map(|e| {
        vec![e.control.framework.to_string(), e.control.id.to_string(), e.control.title.to_string(), e.evidence.into()]
    });
    section(&mut out, "controls", &["framework", "control", "title", "evidence"], controls);
    let summary = r.summary.iter().map(|f| vec![f.key.to_string(), f.label.to_string(), value_text(&f.value)]);
    section(&mut out, "summary", &["metric", "label", "value"], summary);
    for t in &r.tables {
        section(&mut out, t.name, &t.columns, t.rows.iter().cloned());
    }
    section(&mut out, "notes", &["note"], r.notes.iter().map(|n| vec![n.clone()]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_have_their_header_and_rows_name_their_section() {
        let mut out = String::new();
        section(&mut out, "users", &["id", "email"], vec![vec!["u_1".into(), "=cmd|' /C calc'!A0".into()]]);
        section(&mut out, "notes", &["note"], vec![vec!["say \"hi\"".into()]]);
        assert_eq!(
            out,
            "\"section\",\"id\",\"email\"\n\"users\",\"u_1\",\"'=cmd|' /C calc'!A0\"\n\n\"section\",\"note\"\n\"notes\",\"say \"\"hi\"\"\"\n"
        );
        assert_eq!(value_text(&Value::Null), "");
        assert_eq!(value_text(&serde_json::json!(0.5)), "0.5");
    }
}
