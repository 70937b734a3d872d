//! Time-based one-time passwords (RFC 6238): SHA-1, six digits, 30-second steps, one step
//! of clock skew either way. A code is accepted once: the caller keeps the last accepted
//! step per factor and only a later step passes.

use anyhow::{anyhow, Result};
use totp_rs::{Algorithm, Builder, Totp};

/// Seconds per step.
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: u8 = 6;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;

/// A fresh random secret from the platform CSPRNG.
pub fn new_secret() -> Vec<u8> {
    let b: [u8; SECRET_LEN] = gatehouse_bundler::random::random_bytes();
    b.to_vec()
}

/// The generator of `secret`, labelled `issuer:account` in authenticator apps.
pub fn generator(secret: &[u8], issuer: &str, account: &str) -> Result<Totp> {
    // The label's parts may not hold a colon (the otpauth separator).
    let clean = |s: &str| s.replace(':', " ");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_issuer(Some(clean(issuer)))
        .with_account_name(clean(account))
        .build()
        .map_err(|e| anyhow!("TOTP parameters: {e}"))
}

/// The `otpauth://` URI an authenticator app enrols from.
pub fn uri(t: &Totp) -> Result<String> {
    t.to_url().map_err(|e| anyhow!("otpauth URI: {e}"))
}

/// The base32 secret, for typing into an app by hand.
pub fn secret_base32(secret: &[u8]) -> String {
    base32_nopad(secret)
}

fn base32_nopad(b: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(b.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &byte in b {
        buf = (buf << 8) | byte as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The URI as a QR code, an SVG document (the hosted enrolment page shows it inline).
pub fn qr_svg(uri: &str) -> Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| anyhow!("QR code: {e}"))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

/// Whether `code` is valid for `secret` at unix time `now` (±1 step) in a step after
/// `last_step`: the step it matched, to remember. Codes are compared in constant time.
pub fn verify(t: &Totp, code: &str, now: u64, last_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Every step of the window is computed, so a reused code costs what a new one does.
    let origin = now / STEP;
    let mut matched = None;
    for step in origin.saturating_sub(1)..=origin + 1 {
        if t.check(code, step * STEP).is_some_and(|s| s == step) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched.filter(|s| *s > last_step)
}

/// The code of `secret` at unix time `at` (tests and diagnostics).
pub fn code_at(t: &Totp, at: u64) -> String {
    t.generate(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector_and_base32() {
        // RFC 6238 appendix B, SHA-1, T = 59: 94287082 (eight digits); six digits: 287082.
        let t = generator(b"12345678901234567890", "Gatehouse", "ada@example.com").unwrap();
        assert_eq!(code_at(&t, 59), "287082");
        assert_eq!(secret_base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let u = uri(&t).unwrap();
        assert!(u.starts_with("otpauth://totp/Gatehouse:ada%40example.com?secret=GEZDGNBVGY3TQOJQ"), "{u}");
        let svg = qr_svg(&u).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg:.80}");
    }

    #[test]
    fn one_step_of_skew_and_no_reuse() {
        let t = generator(&new_secret(), "Gatehouse", "ada").unwrap();
        let now = 1_800_000_015u64;
        let step = now / STEP;
        assert_eq!(verify(&t, &code_at(&t, now), now, 0), Some(step));
        assert_eq!(verify(&t, &code_at(&t, now - 30), now, 0), Some(step - 1));
        assert_eq!(verify(&t, &code_at(&t, now + 30), now, 0), Some(step + 1));
        assert_eq!(verify(&t, &code_at(&t, now - 60), now, 0), None, "two steps back");
        assert_eq!(verify(&t, &code_at(&t, now + 60), now, 0), None, "two steps ahead");
        assert_eq!(verify(&t, &code_at(&t, now), now, step), None, "this step was used");
        assert_eq!(verify(&t, &code_at(&t, now - 30), now, step), None, "an earlier step after a later one");
        assert_eq!(verify(&t, &code_at(&t, now + 30), now, step), Some(step + 1));
        for bad in ["", "12345", "1234567", "12a456", " "] {
            assert_eq!(verify(&t, bad, now, 0), None, "{bad:?}");
        }
    }
}
