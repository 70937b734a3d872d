//! Names and addresses in admin bodies: slugs, email addresses, passwords.

/// Whether `s` is a slug: 2–40 of a-z, 0-9 and `-`, not at either end (organisations,
/// custom roles and teams are named so).
pub fn valid_slug(s: &str) -> bool {
    (2..=40).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// Longest password accepted (bounded work per sign-in).
pub const MAX_PASSWORD: usize = 256;

/// Check a new password's shape.
pub fn password_acceptable(p: &str) -> Result<(), &'static str> {
    if p.chars().count() < MIN_PASSWORD {
        return Err("password must have at least 10 characters");
    }
    if p.len() > MAX_PASSWORD {
        return Err("password must have at most 256 bytes");
    }
    Ok(())
}

/// Normalise and check an email address (lower-case; one `@`; bounded).
pub fn normalise_email(e: &str) -> Option<String> {
    let e = e.trim().to_ascii_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '"');
    ok.then_some(e)
}
