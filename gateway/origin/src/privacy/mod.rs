//! GDPR at the origin: personal data in audit records sealed per person
//! (crypto-shredding, [`seal`]), the export of everything a tenant holds about one
//! person (Art. 15/20, [`export`]), and erasure (Art. 17, [`erase`]) that deletes the
//! person's rows and destroys their keys, so their audit records stay (and still verify)
//! but show [`ERASED`] where the personal data was.
//!
//! What counts as personal in a record's `before`/`after` JSON (top-level keys):
//! [`ALWAYS_PERSONAL`] always; `name` and `display_name` unless the record's target is an
//! organisation-level thing ([`PLAIN_NAME_TARGETS`]: an organisation's, team's, role's, key's
//! or connection's name is not a person's). The columns `ip` and `user_agent`, and an
//! address in `actor`/`target` (`email:<address>`, stored as `email:<pseudonym>`), are
//! personal too (see [`seal::seal_record`] for whose key each goes under).
//!
//! Records written before sealing existed stay as they were (plain text).

pub mod erase;
pub mod export;
pub mod seal;

use anyhow::Result;

use crate::api::app::App;
use crate::store::audit::Record;
pub use seal::{KeyRing, Sealer};

/// What an opened record shows where the person's key was destroyed.
pub const ERASED: &str = "erased subject";

/// What an opened record shows where sealed data does not open (tampered, moved, or
/// sealed with another region key while the subject's key is still there).
pub const UNREADABLE: &str = "unreadable sealed data";

/// Keys of `before`/`after` that are always personal data.
pub const ALWAYS_PERSONAL: &[&str] =
    &["email", "new_email", "old_email", "owner_email", "emails", "ip", "user_agent", "subject", "phone"];

/// Target kinds whose `name` is not a person's.
pub const PLAIN_NAME_TARGETS: &[&str] =
    &["org:", "team:", "role:", "apikey:", "key:", "sso:", "hold:", "template:", "role_template:", "sink:"];

/// Whether key `key` of a record about `target` holds personal data.
pub fn personal_field(key: &str, target: &str) -> bool {
    ALWAYS_PERSONAL.contains(&key)
        || (matches!(key, "name" | "display_name") && !PLAIN_NAME_TARGETS.iter().any(|p| target.starts_with(p)))
}

/// The sealer of tenant `tenant_id` in this origin (its secret is the origin's).
pub fn sealer(app: &App, tenant_id: &str) -> Sealer {
    Sealer::new(&app.secrets.sso_key, tenant_id)
}

/// Records of tenant `tenant_id` with their personal data restored ([`ERASED`] where a
/// key was destroyed): for anything that shows records outside the stored form (the
/// audit query, streaming sinks that include personal data).
pub async fn open_records(app: &App, tenant_id: &str, records: &[Record]) -> Result<Vec<Record>> {
    if records.iter().all(|r| r.sealed.is_none()) {
        return Ok(records.to_vec());
    }
    let db = app.store.tenant(tenant_id, false).await?;
    let h = db.lock().await;
    open_in(&h, &sealer(app, tenant_id), records).await
}

/// [`open_records`] on a database the caller holds.
pub async fn open_in(conn: &libsql::Connection, sealer: &Sealer, records: &[Record]) -> Result<Vec<Record>> {
    let mut ring = KeyRing::new(conn, sealer);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        out.push(ring.open_record(r).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
