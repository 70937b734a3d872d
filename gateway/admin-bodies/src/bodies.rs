//! The JSON bodies of the admin API (`/v1/orgs/...`) and the checks each goes through
//! before the handler looks at the caller or the database. Each check refuses with the
//! first problem found, in the order the handler always checked them.

use gatehouse_core::policy::{valid_permission, Policy, BUILTIN_ROLES};
use serde::{Deserialize, Serialize};

use crate::names::{normalise_email, password_acceptable, valid_slug};
use crate::tenant_policy::TenantPolicy;
use crate::Refusal;

/// Longest API-key name, in bytes.
pub const MAX_KEY_NAME: usize = 100;
/// Most scopes of one API key.
pub const MAX_KEY_SCOPES: usize = 32;
/// Longest organisation or user display name, in bytes.
pub const MAX_DISPLAY_NAME: usize = 200;
/// Most permissions of one custom role.
pub const MAX_ROLE_PERMISSIONS: usize = 64;
/// Longest deletion confirmation accepted (longer ones are never looked up).
pub const MAX_CONFIRMATION: usize = 128;

/// The rank of a built-in role (0 is `owner`, the most powerful), none for a custom one.
pub fn role_rank(r: &str) -> Option<usize> {
    BUILTIN_ROLES.iter().position(|(b, _)| *b == r)
}

/// `POST /v1/orgs` (operator): a new organisation and its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// The organisation's slug (see [`valid_slug`]).
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Tier, a tier of the region's template.
    pub tier: String,
    /// Region the organisation lives in (default: this one).
    #[serde(default)]
    pub home_region: Option<String>,
    /// The first owner's email address.
    pub owner_email: String,
    /// The first owner's password.
    pub owner_password: String,
    /// Its edge policy.
    #[serde(default)]
    pub policy: TenantPolicy,
    /// The parent organisation's slug (homed in this region).
    #[serde(default)]
    pub parent: Option<String>,
}

impl CreateOrg {
    /// The slug and the display name (checked first).
    pub fn check_names(&self) -> Result<(), Refusal> {
        if !valid_slug(&self.slug) {
            return Err(Refusal::new("invalid_slug", "slug: 2–40 of a-z, 0-9, - (not at either end)"));
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_DISPLAY_NAME {
            return Err(Refusal::new("invalid_name", "name: 1–200 bytes"));
        }
        Ok(())
    }

    /// The owner's address (normalised, returned) and password (checked after the region,
    /// the policy and the parent).
    pub fn check_owner(&self) -> Result<String, Refusal> {
        let email = normalise_email(&self.owner_email)
            .ok_or_else(|| Refusal::new("invalid_email", "owner_email is not an email address"))?;
        password_acceptable(&self.owner_password).map_err(|m| Refusal::new("weak_password", m))?;
        Ok(email)
    }
}

/// `PUT /v1/orgs/{slug}/policy`: the organisation's edge policy (and, for the operator,
/// its tier). Checked by [`crate::tenant_policy::check_tenant_policy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutPolicy {
    /// A new tier (operator only).
    #[serde(default)]
    pub tier: Option<String>,
    /// The edge policy.
    pub policy: TenantPolicy,
}

/// `PUT /v1/policy/template` (operator): the region's template, a whole [`Policy`].
/// Checked by [`crate::tenant_policy::template_acceptable`].
pub type PutTemplate = Policy;

/// `PATCH /v1/orgs/{slug}`: display name and tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchOrg {
    /// A new display name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new tier (operator only).
    #[serde(default)]
    pub tier: Option<String>,
}

impl PatchOrg {
    /// The display name: 1–200 bytes after trimming, no control characters.
    pub fn check(&self) -> Result<(), Refusal> {
        if let Some(n) = &self.name {
            if n.trim().is_empty() || n.len() > MAX_DISPLAY_NAME || n.chars().any(char::is_control) {
                return Err(Refusal::new("invalid_name", "name: 1–200 bytes, no control characters"));
            }
        }
        Ok(())
    }
}

/// `DELETE /v1/orgs/{slug}` (operator): the confirmation token the deletion request gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmDeletion {
    /// The token.
    pub confirm: String,
}

impl ConfirmDeletion {
    /// A token longer than any issued one is refused without a lookup.
    pub fn check(&self) -> Result<(), Refusal> {
        if self.confirm.len() > MAX_CONFIRMATION {
            return Err(Refusal::new("confirmation_invalid", "unknown or used confirmation"));
        }
        Ok(())
    }
}

/// `POST /v1/orgs/{slug}/api-keys`: a new API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Display name.
    pub name: String,
    /// Permissions the key is limited to.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles the key carries (none above the caller's; checked by the handler).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry, Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl CreateKey {
    /// Name, scopes and expiry (after `now`, Unix seconds).
    pub fn check(&self, now: i64) -> Result<(), Refusal> {
        if self.name.trim().is_empty() || self.name.len() > MAX_KEY_NAME {
            return Err(Refusal::new("invalid_name", "name: 1–100 bytes"));
        }
        if self.scopes.len() > MAX_KEY_SCOPES || self.scopes.iter().any(|p| !valid_permission(p)) {
            return Err(Refusal::new("invalid_scope", "scopes: up to 32 `resource:action` permissions"));
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return Err(Refusal::new("invalid_expiry", "expires_at is in the past"));
        }
        Ok(())
    }
}

/// `PUT /v1/orgs/{slug}/roles/{name}`: a custom role's permissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRole {
    /// `resource:action` permissions.
    pub permissions: Vec<String>,
}

impl PutRole {
    /// The role's `name` (from the path: a slug, not a built-in role) and its permissions
    /// (1–64, each `resource:action`).
    pub fn check(&self, name: &str) -> Result<(), Refusal> {
        if role_rank(name).is_some() || !valid_slug(name) {
            return Err(Refusal::new(
                "invalid_role",
                "custom role names: 2–40 of a-z, 0-9, -, and not a built-in role",
            ));
        }
        if self.permissions.is_empty()
            || self.permissions.len() > MAX_ROLE_PERMISSIONS
            || self.permissions.iter().any(|p| !valid_permission(p))
        {
            return Err(Refusal::new("invalid_permission", "1–64 permissions of the form resource:action"));
        }
        Ok(())
    }
}

/// `POST /v1/orgs/{slug}/teams`: a new team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// The team's name, a slug.
    pub name: String,
    /// The parent team's id.
    #[serde(default)]
    pub parent_id: Option<String>,
}

impl CreateTeam {
    /// The name is a slug.
    pub fn check(&self) -> Result<(), Refusal> {
        if !valid_slug(&self.name) {
            return Err(Refusal::new("invalid_name", "team names: 2–40 of a-z, 0-9, -"));
        }
        Ok(())
    }
}

/// `POST /v1/orgs/{slug}/users`: a new member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Email address.
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// A password (none: the user signs in otherwise, or sets one by invitation).
    #[serde(default)]
    pub password: Option<String>,
    /// The member's role.
    pub role: String,
    /// When the role lapses, Unix seconds.
    #[serde(default)]
    pub role_expires_at: Option<i64>,
}

impl CreateUser {
    /// Address (normalised, returned), name and password.
    pub fn check(&self) -> Result<String, Refusal> {
        let email =
            normalise_email(&self.email).ok_or_else(|| Refusal::new("invalid_email", "not an email address"))?;
        if self.name.len() > MAX_DISPLAY_NAME {
            return Err(Refusal::new("invalid_name", "name: at most 200 bytes"));
        }
        if let Some(p) = &self.password {
            password_acceptable(p).map_err(|m| Refusal::new("weak_password", m))?;
        }
        Ok(email)
    }
}

/// `PUT /v1/orgs/{slug}/users/{id}/role`: a member's role (checked against the caller's
/// and the existing roles by the handler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// The role.
    pub role: String,
    /// When it lapses, Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).unwrap()
    }

    fn code<T>(r: Result<T, Refusal>) -> &'static str {
        r.err().map_or("ok", |e| e.code)
    }

    #[test]
    fn create_org_checks_names_then_owner() {
        let mut o: CreateOrg = json(
            r#"{"slug":"acme","name":"Acme","tier":"free","owner_email":" Ada@Acme.TEST ","owner_password":"correct horse"}"#,
        );
        assert_eq!(code(o.check_names()), "ok");
        assert_eq!(o.check_owner().unwrap(), "ada@acme.test");
        o.owner_password = "short".into();
        assert_eq!(code(o.check_owner()), "weak_password");
        o.owner_email = "nobody".into();
        assert_eq!(code(o.check_owner()), "invalid_email");
        o.name = "  ".into();
        assert_eq!(code(o.check_names()), "invalid_name");
        o.slug = "-acme".into();
        assert_eq!(code(o.check_names()), "invalid_slug");
        assert!(serde_json::from_str::<CreateOrg>(
            r#"{"slug":"a","name":"b","tier":"c","owner_email":"d","owner_password":"e","x":1}"#
        )
        .is_err());
    }

    #[test]
    fn keys_roles_teams_users_and_orgs() {
        let k: CreateKey = json(r#"{"name":"ci","scopes":["docs:read"],"expires_at":200}"#);
        assert_eq!(code(k.check(100)), "ok");
        assert_eq!(code(k.check(200)), "invalid_expiry");
        assert_eq!(code(CreateKey { name: " ".into(), ..k.clone() }.check(100)), "invalid_name");
        assert_eq!(code(CreateKey { scopes: vec!["docs".into()], ..k.clone() }.check(100)), "invalid_scope");
        assert_eq!(code(CreateKey { scopes: vec!["a:b".into(); 33], ..k }.check(100)), "invalid_scope");

        let r: PutRole = json(r#"{"permissions":["docs:read","*:write"]}"#);
        assert_eq!(code(r.check("auditor")), "ok");
        assert_eq!(code(r.check("admin")), "invalid_role");
        assert_eq!(code(r.check("Auditor")), "invalid_role");
        assert_eq!(code(PutRole { permissions: vec![] }.check("auditor")), "invalid_permission");

        assert_eq!(code(CreateTeam { name: "ops".into(), parent_id: None }.check()), "ok");
        assert_eq!(code(CreateTeam { name: "o".into(), parent_id: None }.check()), "invalid_name");

        let u: CreateUser = json(r#"{"email":"a@b.test","role":"viewer","password":"0123456789"}"#);
        assert_eq!(u.check().unwrap(), "a@b.test");
        assert_eq!(code(CreateUser { name: "n".repeat(201), ..u.clone() }.check()), "invalid_name");
        assert_eq!(code(CreateUser { password: Some("x".into()), ..u.clone() }.check()), "weak_password");
        assert_eq!(code(CreateUser { password: None, ..u }.check()), "ok");

        assert_eq!(code(PatchOrg { name: Some("Acme\u{7}".into()), tier: None }.check()), "invalid_name");
        assert_eq!(code(PatchOrg { name: None, tier: Some("team".into()) }.check()), "ok");
        assert_eq!(code(ConfirmDeletion { confirm: "c".repeat(129) }.check()), "confirmation_invalid");
        assert_eq!(code(ConfirmDeletion { confirm: "c".repeat(128) }.check()), "ok");
    }

    #[test]
    fn every_refusal_code_is_listed() {
        for c in [
            "invalid_name",
            "invalid_slug",
            "invalid_email",
            "weak_password",
            "invalid_scope",
            "invalid_expiry",
            "invalid_role",
            "invalid_permission",
            "confirmation_invalid",
        ] {
            assert!(crate::REFUSAL_CODES.contains(&c), "{c}");
        }
    }
}
