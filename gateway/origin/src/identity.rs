//! Users, passwords and sign-in.
//!
//! Passwords are hashed with argon2id. Sign-in answers one generic error for an unknown
//! user, a wrong password and a locked account, and runs one argon2 verification on every
//! path (against a dummy hash when there is no user), so timing does not tell them apart.
//! After `max_failures` consecutive failures an account is locked for `lockout_secs`.

use crate::config::SigninSettings;
use crate::store::users;
use anyhow::{anyhow, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use libsql::Connection;

pub use crate::store::users::User;
// Slugs, addresses and password shapes: the admin bodies' checks, shared by every handler.
pub use gatehouse_admin_bodies::names::{normalise_email, password_acceptable, valid_slug, MAX_PASSWORD, MIN_PASSWORD};

/// Password hashing with the configured argon2id parameters.
pub struct Passwords {
    argon: Argon2<'static>,
    dummy: String,
}

impl Passwords {
    /// Parameters from the settings.
    pub fn new(s: &SigninSettings) -> Result<Passwords> {
        let params =
            Params::new(s.argon2_memory_kib, s.argon2_iterations, 1, None).map_err(|e| anyhow!("argon2: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut p = Passwords { argon, dummy: String::new() };
        p.dummy = p.hash("dummy password for timing equalisation")?;
        Ok(p)
    }

    /// Hash a password (PHC string with its own salt and parameters).
    pub fn hash(&self, password: &str) -> Result<String> {
        let salt_bytes: [u8; 16] = gatehouse_bundler::random::random_bytes();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow!("salt: {e}"))?;
        Ok(self.argon.hash_password(password.as_bytes(), &salt).map_err(|e| anyhow!("argon2: {e}"))?.to_string())
    }

    /// Check a password against a stored hash (`None`: against the dummy, same cost).
    pub fn verify(&self, stored: Option<&str>, password: &str) -> bool {
        let h = stored.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(h) else { return false };
        let ok = self.argon.verify_password(password.as_bytes(), &parsed).is_ok();
        ok && stored.is_some()
    }
}

/// Outcome of a password check, for the audit log (the caller answers the same error for
/// every failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigninOutcome {
    /// Signed in.
    Success(String),
    /// No such user (or disabled).
    UnknownUser,
    /// Wrong password; `locked`: this failure locked the account.
    WrongPassword {
        /// User id.
        user: String,
        /// Whether the account is now locked.
        locked: bool,
    },
    /// The account is locked.
    Locked(String),
    /// The account is deactivated and the password was right (a wrong one is
    /// [`SigninOutcome::UnknownUser`], as if there were no account).
    Disabled(String),
}

/// Check `email` / `password` in a tenant database, counting failures (in the caller's
/// transaction).
pub async fn check_password(
    conn: &Connection,
    pw: &Passwords,
    s: &SigninSettings,
    email: &str,
    password: &str,
    now: i64,
) -> Result<SigninOutcome> {
    let Some(account) = users::credentials_by_email(conn, email).await? else {
        pw.verify(None, password);
        return Ok(SigninOutcome::UnknownUser);
    };
    let users::Credentials { id, password_hash: hash, failed_count: failed, locked_until, disabled } = account;
    if disabled {
        // No failure is counted for a deactivated account; only its right password
        // learns that it is deactivated.
        return Ok(match pw.verify(hash.as_deref(), password) {
            true => SigninOutcome::Disabled(id),
            false => SigninOutcome::UnknownUser,
        });
    }
    if hash.is_none() {
        pw.verify(None, password);
        return Ok(SigninOutcome::UnknownUser);
    }
    if locked_until > now {
        pw.verify(None, password);
        return Ok(SigninOutcome::Locked(id));
    }
    if pw.verify(hash.as_deref(), password) {
        users::clear_failures(conn, &id).await?;
        return Ok(SigninOutcome::Success(id));
    }
    let failed = failed + 1;
    let locked = failed >= s.max_failures as i64;
    if locked {
        users::lock_out(conn, &id, now + s.lockout_secs as i64).await?;
    } else {
        users::set_failed_count(conn, &id, failed).await?;
    }
    Ok(SigninOutcome::WrongPassword { user: id, locked })
}

/// A random id with a prefix: `u_` + 16 hex digits of randomness… (24 for tokens).
pub fn new_id(prefix: &str) -> String {
    let b: [u8; 12] = gatehouse_bundler::random::random_bytes();
    format!("{prefix}{}", hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_passwords() {
        assert_eq!(normalise_email(" Ada@Example.COM ").as_deref(), Some("ada@example.com"));
        for bad in ["", "ada", "@x.y", "ada@", "ada@x", "a b@x.y", "a@.x", "a\"@x.y", "a<@x.y"] {
            assert!(normalise_email(bad).is_none(), "{bad}");
        }
        assert!(password_acceptable("short").is_err());
        assert!(password_acceptable(&"x".repeat(300)).is_err());
        assert!(password_acceptable("long enough pw").is_ok());
    }

    #[test]
    fn hashes_verify_and_the_dummy_never_does() {
        let s = SigninSettings { argon2_memory_kib: 64, argon2_iterations: 1, ..Default::default() };
        let p = Passwords::new(&s).unwrap();
        let h = p.hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(p.verify(Some(&h), "correct horse"));
        assert!(!p.verify(Some(&h), "wrong horse"));
        assert!(!p.verify(None, "dummy password for timing equalisation"));
        assert!(!p.verify(Some("not a hash"), "x"));
    }
}
