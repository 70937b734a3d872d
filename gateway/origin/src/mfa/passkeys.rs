//! Passkeys (WebAuthn, `webauthn-rs`): the relying party of the region's `public_url`,
//! registration and assertion ceremonies whose state the caller keeps in the tenant
//! database between start and finish, and what a credential counts as in `amr`.

use anyhow::{anyhow, Context as _, Result};
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// The relying party for `public_url` (its host is the RP id; the URL the only origin).
pub fn relying_party(public_url: &str) -> Result<Webauthn> {
    let origin = Url::parse(public_url).context("public_url")?;
    let host = origin.host_str().ok_or_else(|| anyhow!("public_url has no host"))?.to_string();
    WebauthnBuilder::new(&host, &origin)
        .map_err(|e| anyhow!("passkeys need public_url on a domain name (not an IP address): {e}"))?
        .rp_name("Gatehouse")
        .build()
        .map_err(|e| anyhow!("WebAuthn relying party: {e}"))
}

/// The WebAuthn user handle of `user`: stable, derived from the tenant and user ids (it
/// names no personal data).
pub fn user_handle(tenant: &str, user: &str) -> Uuid {
    let d = Sha256::digest(format!("gatehouse webauthn user\0{tenant}\0{user}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid_v8(b)
}

fn uuid_v8(mut b: [u8; 16]) -> Uuid {
    // RFC 9562 version 8 (custom), variant 10.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

/// A credential id as stored and compared: base64url without padding.
pub fn cred_id_text(id: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// Start registering a passkey for `user` (`email` is the account label the
/// authenticator shows), excluding the ones already registered. The options ask for a
/// discoverable credential, so the passkey can sign in without a password too.
pub fn start_registration(
    rp: &Webauthn,
    handle: Uuid,
    email: &str,
    display: &str,
    existing: &[Passkey],
) -> Result<(Value, String)> {
    let exclude = (!existing.is_empty()).then(|| existing.iter().map(|p| p.cred_id().clone()).collect());
    let (ccr, state) = rp
        .start_passkey_registration(handle, email, display, exclude)
        .map_err(|e| anyhow!("start passkey registration: {e}"))?;
    let mut options = serde_json::to_value(&ccr)?;
    // Ask for a resident (discoverable) key; the state does not depend on it.
    if let Some(sel) = options.pointer_mut("/publicKey/authenticatorSelection") {
        sel["residentKey"] = "required".into();
        sel["requireResidentKey"] = true.into();
    }
    Ok((options, serde_json::to_string(&state)?))
}

/// Finish a registration: the new passkey, or why it was refused (for the log only).
pub fn finish_registration(rp: &Webauthn, state: &str, response: &Value) -> Result<Passkey> {
    let state: PasskeyRegistration = serde_json::from_str(state).context("registration state")?;
    let reg: RegisterPublicKeyCredential =
        serde_json::from_value(response.clone()).context("the credential is not a WebAuthn registration")?;
    rp.finish_passkey_registration(&reg, &state).map_err(|e| anyhow!("passkey registration refused: {e}"))
}

/// The RFC 8176 method a passkey stands for: `swk` for a synchronised (backup-eligible)
/// credential, `hwk` for one bound to its device.
pub fn amr_of(p: &Passkey) -> &'static str {
    let v = serde_json::to_value(p).unwrap_or_default();
    if v.pointer("/cred/backup_eligible").and_then(Value::as_bool).unwrap_or(true) {
        "swk"
    } else {
        "hwk"
    }
}

/// Start an assertion with one of `keys` (a second factor or step-up).
pub fn start_authentication(rp: &Webauthn, keys: &[Passkey]) -> Result<(Value, String)> {
    let (rcr, state) = rp.start_passkey_authentication(keys).map_err(|e| anyhow!("start passkey assertion: {e}"))?;
    Ok((serde_json::to_value(&rcr)?, serde_json::to_string(&state)?))
}

/// Finish an assertion: the credential id used and its updated passkey.
pub fn finish_authentication(rp: &Webauthn, state: &str, response: &Value, keys: &[Passkey]) -> Result<Passkey> {
    let state: PasskeyAuthentication = serde_json::from_str(state).context("assertion state")?;
    let cred: PublicKeyCredential =
        serde_json::from_value(response.clone()).context("the credential is not a WebAuthn assertion")?;
    let res = rp.finish_passkey_authentication(&cred, &state).map_err(|e| anyhow!("passkey assertion refused: {e}"))?;
    let mut key = keys.iter().find(|k| k.cred_id() == res.cred_id()).cloned().ok_or_else(|| anyhow!("unknown key"))?;
    key.update_credential(&res);
    Ok(key)
}

/// Start a passwordless sign-in: any discoverable credential of this relying party. The
/// options are for a modal `navigator.credentials.get` (no conditional mediation).
pub fn start_discoverable(rp: &Webauthn) -> Result<(Value, String)> {
    let (mut rcr, state) = rp.start_discoverable_authentication().map_err(|e| anyhow!("start discoverable: {e}"))?;
    rcr.mediation = None;
    Ok((serde_json::to_value(&rcr)?, serde_json::to_string(&state)?))
}

/// Who a passwordless assertion claims to be: (user handle, credential id text).
pub fn identify(rp: &Webauthn, response: &Value) -> Result<(Uuid, String)> {
    let cred: PublicKeyCredential =
        serde_json::from_value(response.clone()).context("the credential is not a WebAuthn assertion")?;
    let (uuid, id) = rp.identify_discoverable_authentication(&cred).map_err(|e| anyhow!("no user handle: {e}"))?;
    Ok((uuid, cred_id_text(id)))
}

/// Finish a passwordless sign-in against the stored `key` of the credential it named
/// (user verification is required by the ceremony): the updated key.
pub fn finish_discoverable(rp: &Webauthn, state: &str, response: &Value, key: &Passkey) -> Result<Passkey> {
    let state: DiscoverableAuthentication = serde_json::from_str(state).context("discoverable state")?;
    let cred: PublicKeyCredential =
        serde_json::from_value(response.clone()).context("the credential is not a WebAuthn assertion")?;
    let res = rp
        .finish_discoverable_authentication_v2(&cred, state, key)
        .map_err(|e| anyhow!("passkey assertion refused: {e}"))?;
    let mut key = key.clone();
    key.update_credential(&res);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relying_party_needs_a_domain_and_handles_are_stable() {
        assert!(relying_party("http://localhost:7400").is_ok());
        assert!(relying_party("https://id.example.com").is_ok());
        assert!(relying_party("http://127.0.0.1:7400").is_err(), "WebAuthn RP ids are domains");
        let a = user_handle("t_1", "u_1");
        assert_eq!(a, user_handle("t_1", "u_1"));
        assert_ne!(a, user_handle("t_2", "u_1"));
        assert_eq!(a.get_version_num(), 8);
        let rp = relying_party("http://localhost:7400").unwrap();
        let (opts, state) = start_registration(&rp, a, "ada@example.com", "Ada", &[]).unwrap();
        assert_eq!(opts["publicKey"]["rp"]["id"], "localhost");
        assert_eq!(opts["publicKey"]["authenticatorSelection"]["residentKey"], "required");
        assert!(state.len() > 20);
        let (opts, _) = start_discoverable(&rp).unwrap();
        assert!(opts.get("mediation").is_none());
        assert!(opts["publicKey"]["challenge"].is_string());
    }
}
