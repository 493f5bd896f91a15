//! The one error answer beamd gives over HTTP — from the API (`daemon::http` writes it as JSON) and
//! from the gateway (`gateway::page` writes it as a small page, or JSON for a client that asks): a
//! status, a stable slug, a one-line message, and the headers some statuses carry. Its body on the wire
//! is [`super::ApiError`].

use hyper::StatusCode;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    /// A stable slug (see [`super::ApiError::code`]).
    pub code: &'static str,
    /// One line: what was wrong and how to fix it.
    pub message: String,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
    /// Seconds for `Retry-After` (the gateway's HTML page also reloads itself after them).
    pub retry_after: Option<u32>,
}

impl HttpError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, "bad_request", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(404, "not_found", m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(500, "internal", m)
    }
    /// Tell the client to try again after `seconds`.
    pub fn retry(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    /// The JSON body.
    pub fn body(&self) -> super::ApiError {
        super::ApiError { code: self.code.into(), message: self.message.clone() }
    }
}
