//! Multi-factor authentication: TOTP codes ([`totp`]), recovery codes ([`recovery`]) and
//! passkeys ([`passkeys`]). Storage is in [`crate::store::factors`]; the routes, the
//! second sign-in step, step-up and the hosted pages in `crate::api::mfa`.

pub mod passkeys;
pub mod recovery;
pub mod totp;
