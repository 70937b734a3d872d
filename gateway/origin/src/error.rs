//! API errors: every refusal is a 4xx with a JSON body `{"error": "<reason code>",
//! "message": "..."}`; unexpected failures are a 500 with `internal_error` and no detail
//! (the detail goes to the log).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input.
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// Sign-in failed. One error for unknown user, wrong password and locked account.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A refresh token, reset token or code that is unknown, used, expired or revoked.
    #[error("the grant is invalid, expired or revoked")]
    InvalidGrant,
    /// No credential, or one that does not verify.
    #[error("{1}")]
    Unauthorized(&'static str, String),
    /// A valid credential without the permission.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// Nothing there (or not visible to the caller).
    #[error("{1}")]
    NotFound(&'static str, String),
    /// Conflicts with existing state.
    #[error("{1}")]
    Conflict(&'static str, String),
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
    #[error("{1}")]
    NoRoute(StatusCode, &'static str),
    /// Anything else (storage, bugs): logged, not shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<libsql::Error> for ApiError {
    fn from(e: libsql::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl ApiError {
    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(c, _)
            | ApiError::Unauthorized(c, _)
            | ApiError::Forbidden(c, _)
            | ApiError::NotFound(c, _)
            | ApiError::Conflict(c, _) => c,
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidGrant => "invalid_grant",
            ApiError::WrongRegion { .. } => "wrong_region",
            ApiError::TooLarge => "body_too_large",
            ApiError::NoRoute(s, _) if *s == StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            ApiError::NoRoute(..) => "no_route",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(..) | ApiError::InvalidGrant => StatusCode::BAD_REQUEST,
            ApiError::InvalidCredentials | ApiError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(..) => StatusCode::FORBIDDEN,
            ApiError::NotFound(..) => StatusCode::NOT_FOUND,
            ApiError::Conflict(..) => StatusCode::CONFLICT,
            ApiError::WrongRegion { .. } => StatusCode::MISDIRECTED_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoRoute(s, _) => *s,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Shorthand for a 400.
pub fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(code, msg.into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %format!("{e:#}"), "request failed");
        }
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let ApiError::WrongRegion { region, url } = &self {
            body["region"] = region.clone().into();
            body["url"] = url.clone().into();
        }
        let mut r = (self.status(), axum::Json(body)).into_response();
        if let ApiError::InvalidCredentials | ApiError::Unauthorized(..) = self {
            r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer realm=\"gatehouse\""));
        }
        r
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
