//! Parent links: where a child may be attached (no cycle, at most [`MAX_DEPTH`]
//! organisations in a chain, parent and child homed in this region), and the writing of
//! what every descendant inherits after a link or an ancestor's rules changed.

use crate::error::{ApiError, ApiResult};
use crate::store::hierarchy::{self as tree, Node};
use crate::store::Store;

use super::MAX_DEPTH;

/// Check that `child` may be attached under `parent` in `region` (409 with a code:
/// `parent_other_region`, `hierarchy_cycle`, `hierarchy_too_deep`).
pub async fn check(d: &libsql::Connection, child: &Node, parent: &Node, region: &str) -> ApiResult<()> {
    if parent.home_region != region || child.home_region != region {
        return Err(ApiError::conflict(
            "parent_other_region",
            "a child organisation must be homed in its parent's region (this one)",
        ));
    }
    let above = tree::ancestors(d, &parent.id, MAX_DEPTH + 1).await?;
    if parent.id == child.id || above.iter().any(|n| n.id == child.id) {
        return Err(ApiError::conflict("hierarchy_cycle", "an organisation cannot be its own ancestor"));
    }
    let below = tree::subtree_height(d, &child.id, MAX_DEPTH + 1).await?;
    if above.len() + 2 + below > MAX_DEPTH {
        return Err(ApiError::conflict(
            "hierarchy_too_deep",
            format!("at most {MAX_DEPTH} organisations in a chain from the root down"),
        ));
    }
    Ok(())
}

/// Write what tenant `id`'s children inherit (its effective rules), and so on down.
pub async fn propagate(store: &Store, id: &str) -> ApiResult<()> {
    let mut todo = vec![id.to_string()];
    // Bounded: at most MAX_DEPTH levels, each node visited once.
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let (node, kids) = {
            let d = store.directory.lock().await;
            let Some(node) = tree::node_by_id(&d, &id).await? else { continue };
            (node, tree::children(&d, &id).await?)
        };
        if kids.is_empty() {
            continue;
        }
        let db = store.tenant(&node.id, false).await?;
        let mut eff = super::effective(&*db.lock().await, &node.slug).await?;
        eff.from.insert(0, node.slug.clone());
        let json = serde_json::to_string(&eff)?;
        for kid in kids {
            let db = store.tenant(&kid.id, false).await?;
            tree::set_inherited(&*db.lock().await, Some(&json)).await?;
            crate::store::directory::touch_policy(&*store.directory.lock().await, &kid.id).await?;
            todo.push(kid.id);
        }
    }
    Ok(())
}

/// Tenant `id` has no parent any more: it inherits nothing, nor (through it) its
/// descendants anything from its former ancestors.
pub async fn detach(store: &Store, id: &str) -> ApiResult<()> {
    let db = store.tenant(id, false).await?;
    tree::set_inherited(&*db.lock().await, None).await?;
    crate::store::directory::touch_policy(&*store.directory.lock().await, id).await?;
    propagate(store, id).await
}
