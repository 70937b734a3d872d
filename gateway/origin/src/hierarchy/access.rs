//! An ancestor organisation's owners and admins on a child's admin API: admitted with
//! their `owner`/`admin` roles of the ancestor (membership or team-granted, as they hold
//! them now), while their session is live in the ancestor and neither is suspended.

use crate::error::{ApiError, ApiResult};
use crate::store::{self, hierarchy as tree, Store};

use super::MAX_DEPTH;

/// Who asks: a user of organisation `ancestor` (its session `sid`) on `child`.
pub struct Admin<'a> {
    /// The slug the token was issued for.
    pub ancestor: &'a str,
    /// The slug of the organisation addressed.
    pub child: &'a str,
    /// The user (of `ancestor`).
    pub user: &'a str,
    /// Their session (of `ancestor`).
    pub sid: &'a str,
}

/// The roles (`owner`, `admin`) `who` holds over `who.child` through an ancestor;
/// `None` when `who.ancestor` is no ancestor of it, or the user neither owner nor admin
/// there. Both organisations are homed in `region`.
pub async fn admin_roles(store: &Store, region: &str, who: &Admin<'_>, now: i64) -> ApiResult<Option<Vec<String>>> {
    let ancestor_id = {
        let d = store.directory.lock().await;
        let (Some(child), Some(up)) =
            (tree::node_by_slug(&d, who.child).await?, tree::node_by_slug(&d, who.ancestor).await?)
        else {
            return Ok(None);
        };
        if child.home_region != region || up.home_region != region {
            return Ok(None);
        }
        if !tree::ancestors(&d, &child.id, MAX_DEPTH).await?.iter().any(|n| n.id == up.id) {
            return Ok(None);
        }
        up.id
    };
    let db = store.tenant(&ancestor_id, false).await?;
    let h = db.lock().await;
    if !store::sessions::is_live(&h, who.sid, who.user, now).await? {
        return Err(ApiError::unauthorized("session_revoked", "the session has ended"));
    }
    if store::orgs::suspended_at(&h).await?.is_some() {
        return Err(ApiError::forbidden("tenant_suspended", "this organisation is suspended"));
    }
    let roles: Vec<String> =
        tree::roles_of(&h, who.user, now).await?.into_iter().filter(|r| r == "owner" || r == "admin").collect();
    Ok((!roles.is_empty()).then_some(roles))
}
