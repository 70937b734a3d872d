//! Compliance reports of one organisation over a period, built from its hash-chained audit
//! log and its current state: the access review, the authentication report, privileged
//! activity and the GDPR (Art. 30) record.
//!
//! Every report states the audit chain head it was built from (the tenant's last record
//! and the head the directory database keeps) and the controls it evidences
//! ([`controls`]); it renders as JSON (the [`Report`] shape), CSV ([`csv`]) or PDF
//! ([`pdf`]). Reports read ids from the records' actor and target and personal data
//! (emails, names) from the current users table only, never from the records' JSON (which
//! may be sealed).

use libsql::Connection;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::error::{bad, ApiResult};

mod access;
mod authn;
pub mod controls;
pub mod csv;
mod gdpr;
pub mod pdf;
mod privileged;
mod source;

/// The longest period one report covers (a year, leap day included).
pub const MAX_PERIOD_DAYS: i64 = 366;
/// Days without a sign-in after which an account counts as dormant, unless asked.
pub const DEFAULT_DORMANT_DAYS: i64 = 90;

/// The kinds of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Who holds which role and permission, granted when and by whom; dormant accounts.
    AccessReview,
    /// Sign-ins, failures, lockouts, methods, MFA adoption.
    Authentication,
    /// Admin changes, impersonations, key rotations.
    PrivilegedActivity,
    /// Exports and erasures of personal data, legal holds (GDPR Art. 30).
    Gdpr,
}

impl Kind {
    /// Every kind, in the order the API documents them.
    pub const ALL: &'static [Kind] = &[Kind::AccessReview, Kind::Authentication, Kind::PrivilegedActivity, Kind::Gdpr];

    /// The kind named `s` in the URL; 400 `invalid_report_kind` otherwise.
    pub fn parse(s: &str) -> ApiResult<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == s).ok_or_else(|| {
            bad("invalid_report_kind", "kind: access-review, authentication, privileged-activity or gdpr")
        })
    }

    /// Its name in URLs and files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AccessReview => "access-review",
            Kind::Authentication => "authentication",
            Kind::PrivilegedActivity => "privileged-activity",
            Kind::Gdpr => "gdpr",
        }
    }

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            Kind::AccessReview => "Access review",
            Kind::Authentication => "Authentication report",
            Kind::PrivilegedActivity => "Privileged activity",
            Kind::Gdpr => "GDPR record of processing (Art. 30)",
        }
    }
}

/// The formats a report renders in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The [`Report`] shape.
    Json,
    /// Sections, each with its header row ([`csv`]).
    Csv,
    /// A PDF document ([`pdf`]).
    Pdf,
}

impl Format {
    /// The format `?format=` names (default JSON); 400 `invalid_format` otherwise.
    pub fn parse(s: Option<&str>) -> ApiResult<Format> {
        match s.unwrap_or("json") {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "pdf" => Ok(Format::Pdf),
            _ => Err(bad("invalid_format", "format: json, csv or pdf")),
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Pdf => "pdf",
        }
    }

    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }
}

/// The period a report covers: Unix seconds, `from` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// Start (inclusive).
    pub from: i64,
    /// End (exclusive).
    pub until: i64,
}

/// What a report is asked for besides its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The period.
    pub period: Period,
    /// Days without a sign-in that make an account dormant (access review).
    pub dormant_days: i64,
}

impl Options {
    /// The options of a query: `until` defaults to `now`, `from` to 30 days before
    /// `until`, `dormant_days` to [`DEFAULT_DORMANT_DAYS`]. 400 `invalid_period` for a
    /// negative, empty, future (past a day after `now`) or longer than
    /// [`MAX_PERIOD_DAYS`] period, `invalid_dormant_days`
    /// outside 1–3650.
    pub fn new(from: Option<i64>, until: Option<i64>, dormant_days: Option<i64>, now: i64) -> ApiResult<Options> {
        let until = until.unwrap_or(now);
        let from = from.unwrap_or(until.saturating_sub(30 * 86_400).max(0));
        if from < 0 || until <= from {
            return Err(bad("invalid_period", "from must be before until (Unix seconds, from ≥ 0)"));
        }
        if until > now.saturating_add(86_400) {
            return Err(bad("invalid_period", "until: at most a day after now (the log has no future)"));
        }
        if until.saturating_sub(from) > MAX_PERIOD_DAYS * 86_400 {
            return Err(bad("invalid_period", format!("a report covers at most {MAX_PERIOD_DAYS} days")));
        }
        let dormant_days = dormant_days.unwrap_or(DEFAULT_DORMANT_DAYS);
        if !(1..=3650).contains(&dormant_days) {
            return Err(bad("invalid_dormant_days", "dormant_days: 1–3650"));
        }
        Ok(Options { period: Period { from, until }, dormant_days })
    }
}

/// A position in an audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    /// Sequence number of the last record (0: no record yet).
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// The chain heads a report was built from.
#[derive(Debug, Clone, Serialize)]
pub struct ChainHeads {
    /// The tenant database's last record (or the anchor of a purge), read with the data.
    pub tenant: Head,
    /// The head the directory database keeps for the tenant (read just before): what
    /// `audit verify` checks the chain against. `None`: no record was ever committed.
    pub directory: Option<Head>,
}

/// The organisation a report is about.
#[derive(Debug, Clone, Serialize)]
pub struct Org {
    /// Tenant id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// One key figure of a report.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Its key in the JSON `summary` object and the CSV.
    pub key: &'static str,
    /// What it counts.
    pub label: &'static str,
    /// The number (or ratio).
    pub value: Value,
}

/// A figure `key` (`label`) of `value`.
pub(crate) fn figure(key: &'static str, label: &'static str, value: impl Into<Value>) -> Figure {
    Figure { key, label, value: value.into() }
}

/// A table of a report, as CSV and PDF show it (JSON has the typed rows in `details`).
#[derive(Debug, Clone)]
pub struct Table {
    /// Its name (the CSV section).
    pub name: &'static str,
    /// Its title (the PDF heading).
    pub title: &'static str,
    /// Column names.
    pub columns: Vec<&'static str>,
    /// Rows, as many cells as columns.
    pub rows: Vec<Vec<String>>,
}

/// What a kind's builder gathers.
pub(crate) struct Body {
    pub(crate) summary: Vec<Figure>,
    pub(crate) details: Value,
    pub(crate) tables: Vec<Table>,
    pub(crate) notes: Vec<String>,
}

/// A built report. Its JSON is the documented shape: `kind`, `title`, `org`, `period`,
/// `generated_at`, `generated_by`, `chain_head` (`tenant`, `directory`), `controls`
/// (`framework`, `id`, `title`, `evidence`), `summary` (figures by key), `details`
/// (the kind's rows), `notes`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The kind.
    pub kind: Kind,
    /// Its title.
    pub title: &'static str,
    /// The organisation.
    pub org: Org,
    /// The period.
    pub period: Period,
    /// Unix seconds.
    pub generated_at: i64,
    /// Who asked for it (`user:<id>`, `operator`; `user:<id> (acting: operator)` under
    /// an impersonation).
    pub generated_by: String,
    /// The chain heads it was built from.
    pub chain_head: ChainHeads,
    /// The controls it evidences.
    pub controls: Vec<controls::Evidenced>,
    /// Key figures.
    #[serde(serialize_with = "figures_by_key")]
    pub summary: Vec<Figure>,
    /// The kind's rows (users, events, …).
    pub details: Value,
    /// What the report does not cover, or where its figures come from.
    pub notes: Vec<String>,
    /// The rows as tables, for CSV and PDF.
    #[serde(skip)]
    pub tables: Vec<Table>,
}

fn figures_by_key<S: Serializer>(figures: &[Figure], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(figures.iter().map(|f| (f.key, &f.value)))
}

/// Who asked for a report, and what they saw beforehand.
pub struct Request {
    /// The organisation.
    pub org: Org,
    /// The caller (`user:<id>`, `operator`).
    pub generated_by: String,
    /// The directory database's head of the tenant's chain.
    pub directory_head: Option<(i64, String)>,
    /// Kind.
    pub kind: Kind,
    /// Period and thresholds.
    pub options: Options,
}

/// Build report `req` from the tenant database `conn` (hold its lock throughout: the
/// figures and the stated head are then one consistent view).
pub async fn build(conn: &Connection, req: Request, now: i64) -> ApiResult<Report> {
    let (seq, hash) = crate::audit::head(conn).await?;
    let o = &req.options;
    let body = match req.kind {
        Kind::AccessReview => access::build(conn, o, now).await?,
        Kind::Authentication => authn::build(conn, o, now).await?,
        Kind::PrivilegedActivity => privileged::build(conn, o).await?,
        Kind::Gdpr => gdpr::build(conn, o).await?,
    };
    Ok(Report {
        kind: req.kind,
        title: req.kind.title(),
        org: req.org,
        period: o.period,
        generated_at: now,
        generated_by: req.generated_by,
        chain_head: ChainHeads {
            tenant: Head { seq, hash },
            directory: req.directory_head.map(|(seq, hash)| Head { seq, hash }),
        },
        controls: controls::of(req.kind),
        summary: body.summary,
        details: body.details,
        notes: body.notes,
        tables: body.tables,
    })
}

/// `at` (Unix seconds) as RFC 3339 UTC, for CSV and PDF readers.
pub(crate) fn iso(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// An optional time as RFC 3339, or empty.
pub(crate) fn iso_opt(at: Option<i64>) -> String {
    at.map(iso).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_formats_and_periods_parse_or_refuse_with_codes() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()).unwrap(), *k);
        }
        assert_eq!(Kind::parse("access_review").unwrap_err().code(), "invalid_report_kind");
        assert_eq!(Kind::parse("../etc").unwrap_err().code(), "invalid_report_kind");
        assert_eq!(Format::parse(None).unwrap(), Format::Json);
        assert_eq!(Format::parse(Some("pdf")).unwrap(), Format::Pdf);
        assert_eq!(Format::parse(Some("xlsx")).unwrap_err().code(), "invalid_format");
        let now = 100 * 86_400;
        let o = Options::new(None, None, None, now).unwrap();
        assert_eq!((o.period.from, o.period.until, o.dormant_days), (70 * 86_400, now, 90));
        assert_eq!(Options::new(Some(10), Some(20), Some(7), now).unwrap().period, Period { from: 10, until: 20 });
        let mut bad =
            vec![(Some(20), Some(20)), (Some(30), Some(20)), (Some(-5), Some(20)), (Some(0), Some(367 * 86_400))];
        bad.extend([(None, Some(i64::MIN)), (None, Some(i64::MAX)), (Some(i64::MIN), Some(i64::MAX))]);
        for (f, u) in bad {
            assert_eq!(Options::new(f, u, None, now).unwrap_err().code(), "invalid_period", "{f:?} {u:?}");
        }
        for d in [0, -1, 3651] {
            assert_eq!(Options::new(None, None, Some(d), now).unwrap_err().code(), "invalid_dormant_days");
        }
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
    }
}
