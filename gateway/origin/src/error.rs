//! API errors: every refusal is a 4xx with a JSON body `{"error": "<reason code>",
//! "message": "..."}`; unexpected failures are a 500 with `internal_error` and no detail
//! (the detail goes to the log).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input.
    #[error("{message}")]
    BadRequest {
        /// Reason code.
        code: &'static str,
        /// What is wrong, for the client.
        message: String,
    },
    /// Sign-in failed. One error for unknown user, wrong password and locked account.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A refresh token, reset token or code that is unknown, used, expired or revoked.
    #[error("the grant is invalid, expired or revoked")]
    InvalidGrant,
    /// No credential, or one that does not verify.
    #[error("{message}")]
    Unauthorized {
        /// Reason code.
        code: &'static str,
        /// What is missing or wrong, for the client.
        message: String,
    },
    /// A valid credential without the permission.
    #[error("{message}")]
    Forbidden {
        /// Reason code.
        code: &'static str,
        /// What was refused, for the client.
        message: String,
    },
    /// Nothing there (or not visible to the caller).
    #[error("{message}")]
    NotFound {
        /// Reason code.
        code: &'static str,
        /// What was not found, for the client.
        message: String,
    },
    /// Conflicts with existing state.
    #[error("{message}")]
    Conflict {
        /// Reason code.
        code: &'static str,
        /// What it conflicts with, for the client.
        message: String,
    },
    /// The first factor passed; a second step is needed (`mfa_required`) or enrolment
    /// first (`mfa_enrollment_required`). A 403 carrying the short-lived `mfa_token` that
    /// continues the sign-in, and the methods it may use.
    #[error("{message}")]
    SecondStep {
        /// Reason code.
        code: &'static str,
        /// For the client.
        message: &'static str,
        /// The single-use token of the next step.
        mfa_token: String,
        /// Methods the next step accepts (`totp`, `webauthn`, `recovery_code`).
        methods: Vec<String>,
    },
    /// The tenant lives in another region.
    #[error("tenant is served by region {region}")]
    WrongRegion {
        /// Its home region.
        region: String,
        /// That region's origin URL for the same path.
        url: String,
    },
    /// The body is larger than the API reads.
    #[error("request body too large")]
    TooLarge,
    /// No such route, or a method the route does not take.
    #[error("{message}")]
    NoRoute {
        /// 404 or 405.
        status: StatusCode,
        /// For the client.
        message: &'static str,
    },
    /// A storage statement failed: logged with its source, not shown.
    #[error("internal error")]
    Storage(#[from] libsql::Error),
    /// Anything else (bugs, keys, encoding): logged with its source chain, not shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::Internal(anyhow::Error::from(e).context("JSON"))
    }
}

impl ApiError {
    /// A 400 with reason `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// A 401 with reason `code`.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized { code, message: message.into() }
    }

    /// A 403 with reason `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Forbidden { code, message: message.into() }
    }

    /// A 404 with reason `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::NotFound { code, message: message.into() }
    }

    /// A 409 with reason `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Conflict { code, message: message.into() }
    }

    /// Whether this is the region's libSQL server being out of reach (a write forwarded to
    /// it, or an admin call): a 503 `storage_unavailable` worth retrying, not a bug.
    pub fn storage_unavailable(&self) -> bool {
        match self {
            ApiError::Storage(e) => crate::store::server::unreachable(e),
            ApiError::Internal(e) => crate::store::server::unreachable(e.as_ref()),
            _ => false,
        }
    }

    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        if self.storage_unavailable() {
            return "storage_unavailable";
        }
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::SecondStep { code, .. } => code,
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidGrant => "invalid_grant",
            ApiError::WrongRegion { .. } => "wrong_region",
            ApiError::TooLarge => "body_too_large",
            ApiError::NoRoute { status, .. } if *status == StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            ApiError::NoRoute { .. } => "no_route",
            ApiError::Storage(_) | ApiError::Internal(_) => "internal_error",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        if self.storage_unavailable() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match self {
            ApiError::BadRequest { .. } | ApiError::InvalidGrant => StatusCode::BAD_REQUEST,
            ApiError::InvalidCredentials | ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::SecondStep { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::WrongRegion { .. } => StatusCode::MISDIRECTED_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoRoute { status, .. } => *status,
            ApiError::Storage(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A body the admin checks refuse: a 400 with its reason code.
impl From<gatehouse_admin_bodies::Refusal> for ApiError {
    fn from(r: gatehouse_admin_bodies::Refusal) -> ApiError {
        ApiError::bad_request(r.code, r.message)
    }
}

/// Shorthand for a 400 ([`ApiError::bad_request`]).
pub fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, msg)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => tracing::error!(error = %format!("{e:#}"), "request failed"),
            ApiError::Storage(e) => tracing::error!(error = %e, "request failed: storage"),
            _ => {}
        }
        if self.storage_unavailable() {
            // Said without the server's address; the log has the cause.
            let message = "the region's libSQL server is unavailable; try again shortly";
            let body = serde_json::json!({ "error": self.code(), "message": message });
            let mut r = (self.status(), axum::Json(body)).into_response();
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return r;
        }
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let ApiError::WrongRegion { region, url } = &self {
            body["region"] = region.clone().into();
            body["url"] = url.clone().into();
        }
        if let ApiError::SecondStep { mfa_token, methods, .. } = &self {
            body["mfa_token"] = mfa_token.clone().into();
            body["methods"] = methods.clone().into();
        }
        let mut r = (self.status(), axum::Json(body)).into_response();
        if let ApiError::InvalidCredentials | ApiError::Unauthorized { .. } = self {
            r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer realm=\"gatehouse\""));
        }
        r
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn named_variants_answer_the_same_bodies_and_statuses() {
        let cases = [
            (ApiError::bad_request("invalid_body", "no"), 400, "invalid_body"),
            (ApiError::unauthorized("credential_missing", "no"), 401, "credential_missing"),
            (ApiError::forbidden("permission_denied", "no"), 403, "permission_denied"),
            (ApiError::not_found("user_not_found", "no"), 404, "user_not_found"),
            (ApiError::conflict("email_taken", "no"), 409, "email_taken"),
            (ApiError::NoRoute { status: StatusCode::METHOD_NOT_ALLOWED, message: "no" }, 405, "method_not_allowed"),
            (ApiError::from(libsql::Error::NullValue), 500, "internal_error"),
        ];
        for (e, status, code) in cases {
            let r = e.into_response();
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers().contains_key("www-authenticate"), status == 401);
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], code);
            let message = if status == 500 { "internal error" } else { "no" };
            assert_eq!(v["message"], message);
        }
    }

    #[tokio::test]
    async fn an_unreachable_libsql_server_is_a_503_to_retry() {
        let down = || libsql::Error::WriteDelegation("tcp connect error: Connection refused".into());
        for e in [ApiError::from(down()), ApiError::from(anyhow::Error::from(down()).context("create user"))] {
            assert_eq!((e.status().as_u16(), e.code()), (503, "storage_unavailable"));
            let r = e.into_response();
            assert_eq!(r.headers()["retry-after"], "1");
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], "storage_unavailable");
            assert!(!v["message"].as_str().unwrap().contains("tcp"), "no detail of the cause");
        }
        // A statement the server refused is not an outage.
        let refused = ApiError::from(libsql::Error::RemoteSqliteFailure(19, 2067, "UNIQUE".into()));
        assert_eq!(refused.code(), "internal_error");
    }

    #[test]
    fn storage_errors_keep_their_source() {
        let e = ApiError::from(libsql::Error::NullValue);
        assert!(std::error::Error::source(&e).is_some());
    }
}
