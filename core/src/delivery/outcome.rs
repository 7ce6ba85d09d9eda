//! What an attempt's result means for the task: delivered, try again, or give up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest `Retry-After` honoured; a receiver cannot park a task for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The classified result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 408, 429, 5xx, timeout, connection error: try again later, not before `retry_after`
    /// when the receiver said so.
    Retryable {
        /// The receiver's `Retry-After`, capped at [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    /// Any other 4xx, or a refused target: straight to the DLQ.
    Permanent {
        /// 410 Gone: the endpoint is also disabled.
        disable_endpoint: bool,
    },
}

/// Why an attempt failed, or why a task went to the DLQ without one. It travels with the
/// attempt and the task (`last_reason`); the DLQ's error class derives from it, never from an
/// error's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// A 4xx answer other than 408, 410 and 429.
    ClientError,
    /// A 3xx or other answer that is neither a success nor an error.
    Unexpected,
    /// A 5xx answer.
    ServerError,
    /// 408 Request Timeout.
    RequestTimeout,
    /// 429 Too Many Requests.
    TooManyRequests,
    /// 410 Gone: the endpoint is disabled too.
    Gone,
    /// No answer within `delivery.timeout`.
    Timeout,
    /// No connection (DNS, TCP, TLS) or it broke while sending.
    Connection,
    /// The endpoint's circuit was open: not attempted.
    CircuitOpen,
    /// The target is an internal address (the SSRF guard): not attempted.
    Refused,
    /// The endpoint was disabled or deleted: not attempted.
    EndpointUnavailable,
}

impl FailureReason {
    /// The reason of a non-2xx status.
    pub fn of_status(status: u16) -> Self {
        match status {
            408 => FailureReason::RequestTimeout,
            429 => FailureReason::TooManyRequests,
            410 => FailureReason::Gone,
            500..=599 => FailureReason::ServerError,
            400..=499 => FailureReason::ClientError,
            _ => FailureReason::Unexpected,
        }
    }

    /// Its name as serialized (`server_error`, …): a span's `error.type`.
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::ClientError => "client_error",
            FailureReason::Unexpected => "unexpected",
            FailureReason::ServerError => "server_error",
            FailureReason::RequestTimeout => "request_timeout",
            FailureReason::TooManyRequests => "too_many_requests",
            FailureReason::Gone => "gone",
            FailureReason::Timeout => "timeout",
            FailureReason::Connection => "connection",
            FailureReason::CircuitOpen => "circuit_open",
            FailureReason::Refused => "refused",
            FailureReason::EndpointUnavailable => "endpoint_unavailable",
        }
    }

    /// The reason of a request that got no answer.
    pub fn of_transport(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            FailureReason::Timeout
        } else {
            FailureReason::Connection
        }
    }
}

impl Outcome {
    /// The label used in metrics and the delivery log.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retryable { .. } => "retryable",
            Outcome::Permanent { .. } => "permanent",
        }
    }
}

/// Classifies an HTTP status, with the response's `Retry-After` header if any.
pub fn classify_status(status: u16, retry_after: Option<&str>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => {
            Outcome::Retryable { retry_after: retry_after.and_then(parse_retry_after) }
        }
        410 => Outcome::Permanent { disable_endpoint: true },
        _ => Outcome::Permanent { disable_endpoint: false },
    }
}

/// Timeouts and connection errors are always worth another try.
pub fn classify_transport_error() -> Outcome {
    Outcome::Retryable { retry_after: None }
}

/// `Retry-After` as delay-seconds (HTTP-dates are rare from webhook receivers and ignored).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reasons_label_is_its_serialized_name() {
        for r in [FailureReason::ServerError, FailureReason::TooManyRequests, FailureReason::Gone] {
            assert_eq!(serde_json::to_value(r).expect("json"), r.label(), "{r:?}");
        }
    }

    #[test]
    fn statuses_are_classified_as_the_design_says() {
        assert_eq!(classify_status(200, None), Outcome::Delivered);
        assert_eq!(classify_status(204, None), Outcome::Delivered);
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(matches!(classify_status(s, None), Outcome::Retryable { .. }), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(
                classify_status(s, None),
                Outcome::Permanent { disable_endpoint: false },
                "{s}"
            );
        }
        assert_eq!(classify_status(410, None), Outcome::Permanent { disable_endpoint: true });
        assert!(matches!(classify_status(301, None), Outcome::Permanent { .. }));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(
            classify_status(429, Some("30")),
            Outcome::Retryable { retry_after: Some(Duration::from_secs(30)) }
        );
        assert_eq!(
            classify_status(503, Some("999999")),
            Outcome::Retryable { retry_after: Some(MAX_RETRY_AFTER) }
        );
        assert_eq!(
            classify_status(503, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Outcome::Retryable { retry_after: None }
        );
    }
}
