//! Tier caps: what an organisation of a tier may hold at most (`[tiers.<tier>]` in the
//! configuration). Checked inside the transaction that would add one more, so two
//! concurrent creations cannot both pass (a tenant's writers run one at a time). At the
//! cap the answer is `409 limit_reached`, naming the cap and its limit.

use crate::error::{ApiError, ApiResult};
use crate::store::{api_keys, orgs, roles, users};

use crate::api::app::App;

/// Something a tier caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// Enabled users (`max_users`).
    Users,
    /// Custom roles (`max_custom_roles`).
    CustomRoles,
    /// Active API keys (`max_api_keys`).
    ApiKeys,
}

impl Cap {
    /// The configuration key.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Cap::Users => "max_users",
            Cap::CustomRoles => "max_custom_roles",
            Cap::ApiKeys => "max_api_keys",
        }
    }
}

/// The limit of `cap` for `tier` (`None`: unlimited).
pub(crate) fn limit(app: &App, tier: &str, cap: Cap) -> Option<u64> {
    let caps = app.cfg.tiers.get(tier)?;
    match cap {
        Cap::Users => caps.max_users,
        Cap::CustomRoles => caps.max_custom_roles,
        Cap::ApiKeys => caps.max_api_keys,
    }
}

/// How many of `cap` the organisation in `h` holds now.
pub(crate) async fn in_use(h: &libsql::Connection, cap: Cap) -> ApiResult<i64> {
    Ok(match cap {
        Cap::Users => {
            let (all, disabled) = users::counts(h).await?;
            all - disabled
        }
        Cap::CustomRoles => roles::count(h).await?,
        Cap::ApiKeys => api_keys::count_active(h, crate::now()).await?,
    })
}

/// Whether one more of `cap` fits an organisation of `tier` (in the caller's
/// transaction); `409 limit_reached` when it does not.
pub(crate) async fn check_cap(app: &App, h: &libsql::Connection, tier: &str, cap: Cap) -> ApiResult<()> {
    let Some(max) = limit(app, tier, cap) else { return Ok(()) };
    if in_use(h, cap).await? >= max as i64 {
        return Err(reached(tier, cap, max));
    }
    Ok(())
}

/// [`check_cap`] for the organisation's own tier.
pub(crate) async fn check_org_cap(app: &App, h: &libsql::Connection, cap: Cap) -> ApiResult<()> {
    let tier = orgs::get(h).await?.map(|o| o.tier).unwrap_or_default();
    check_cap(app, h, &tier, cap).await
}

/// The refusal at a cap.
pub(crate) fn reached(tier: &str, cap: Cap, max: u64) -> ApiError {
    ApiError::conflict("limit_reached", format!("{}: the tier `{tier}` allows {max}", cap.key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_cap_and_the_limit() {
        let e = reached("free", Cap::ApiKeys, 2);
        assert_eq!((e.code(), e.status().as_u16()), ("limit_reached", 409));
        assert_eq!(e.to_string(), "max_api_keys: the tier `free` allows 2");
    }

    #[tokio::test]
    async fn usage_counts_what_a_cap_counts() {
        let (_dir, _s, db) = crate::store::test_tenant().await;
        let h = db.lock().await;
        for (id, email) in [("u_1", "a@b.co"), ("u_2", "c@d.co")] {
            let u = users::NewUser { id, email, name: "", password_hash: None, created_at: 1 };
            users::insert(&h, &u).await.unwrap();
        }
        assert_eq!(in_use(&h, Cap::Users).await.unwrap(), 2);
        users::set_disabled(&h, "u_2", true).await.unwrap();
        assert_eq!(in_use(&h, Cap::Users).await.unwrap(), 1, "a deactivated user frees the seat");
        roles::upsert(&h, "auditor", "[\"audit:read\"]").await.unwrap();
        assert_eq!(in_use(&h, Cap::CustomRoles).await.unwrap(), 1);
        assert_eq!(in_use(&h, Cap::ApiKeys).await.unwrap(), 0);
    }
}
