//! SSO connections as both the admin API and the browser sign-in read them:
//! enforcement, the enabled connections, the stored connection, and its URLs.

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::store::{self, memberships};

use crate::api::app::App;
use crate::api::extract::Tenant;
use crate::sso::{Connection, Protocol};

/// Whether password sign-in is refused for `email` (normalised): the organisation
/// enforces SSO and `email` is not its break-glass owner.
pub(crate) async fn sso_enforced_for(h: &libsql::Connection, email: &str) -> ApiResult<bool> {
    let (enforce, break_glass) = enforcement(h).await?;
    if !enforce {
        return Ok(false);
    }
    if break_glass.as_deref() != Some(email) {
        return Ok(true);
    }
    // The break-glass exemption holds only while that user is still an owner.
    let role = memberships::role_by_email(h, email).await?;
    Ok(role.as_deref() != Some("owner"))
}

/// Whether the organisation enforces SSO (itself or through an ancestor), and its
/// break-glass email.
pub(crate) async fn enforcement(h: &libsql::Connection) -> ApiResult<(bool, Option<String>)> {
    let e = store::orgs::enforcement(h).await?.ok_or_else(|| anyhow!("org row missing"))?;
    Ok((crate::hierarchy::narrow_enforce(h, e.enforce).await?, e.break_glass))
}

/// `(id, name)` of the enabled connections, by name.
pub(crate) async fn enabled(h: &libsql::Connection) -> ApiResult<Vec<(String, String)>> {
    Ok(store::sso::enabled(h).await?)
}

/// The enabled connections, for the sign-in page.
pub(crate) async fn buttons(t: &Tenant) -> ApiResult<Vec<(String, String)>> {
    enabled(&*t.db.lock().await).await
}

/// Refuse taking connection `id` out of use when it is the last enabled one of an
/// organisation that enforces SSO (nobody but the break-glass owner could sign in).
pub(crate) async fn keep_one_enabled(h: &libsql::Connection, id: &str, what: &str) -> ApiResult<()> {
    if enforcement(h).await?.0 && enabled(h).await?.iter().all(|(other, _)| other == id) {
        return Err(ApiError::conflict(
            "sso_enforced",
            format!("the organisation enforces SSO: turn enforcement off before {what} its last connection"),
        ));
    }
    Ok(())
}

/// A stored connection and its sealed secret.
pub(crate) async fn load(h: &libsql::Connection, id: &str) -> ApiResult<Option<(Connection, Option<Vec<u8>>)>> {
    let Some(stored) = store::sso::load(h, id).await? else { return Ok(None) };
    let c: Connection = serde_json::from_str(&stored.config)?;
    Ok(Some((c, stored.secret)))
}

pub(crate) fn redirect_uri(app: &App, slug: &str, id: &str) -> String {
    format!("{}/t/{slug}/sso/{id}/callback", app.cfg.public_url)
}

/// A SAML connection's SP entity id, which is also where its SP metadata is served.
pub(crate) fn sp_entity_id(app: &App, slug: &str, id: &str) -> String {
    format!("{}/t/{slug}/sso/{id}/saml/metadata", app.cfg.public_url)
}

pub(crate) fn acs_url(app: &App, slug: &str, id: &str) -> String {
    format!("{}/t/{slug}/sso/{id}/saml/acs", app.cfg.public_url)
}

/// A connection as the API shows it: never the secret, and the redirect URI to register
/// at the provider.
pub(crate) fn view(app: &App, slug: &str, c: &Connection, has_secret: bool) -> Value {
    let mut v = json!(c);
    if c.protocol == Protocol::Saml {
        // What the IdP needs to know about this service provider.
        v["sp_entity_id"] = json!(sp_entity_id(app, slug, &c.id));
        v["acs_url"] = json!(acs_url(app, slug, &c.id));
        v["sp_metadata_url"] = json!(sp_entity_id(app, slug, &c.id));
    } else {
        v["has_client_secret"] = json!(has_secret);
        v["redirect_uri"] = json!(redirect_uri(app, slug, &c.id));
    }
    v
}

pub(crate) fn not_found() -> ApiError {
    ApiError::not_found("sso_connection_not_found", "no such SSO connection")
}
