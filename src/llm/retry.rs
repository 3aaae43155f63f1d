//! Retries as the official Anthropic and OpenAI SDKs do them.
//!
//! Retry connection errors, timeouts and the statuses 408, 409, 429 and 5xx (529
//! included), at most [`MAX_RETRIES`] times. A server's `x-should-retry` header decides
//! first. The wait is the server's `retry-after-ms` or `retry-after` (seconds or an HTTP
//! date) when it is above 0 and at most 60 s, otherwise 0.5 s doubling per retry, capped
//! at 8 s, shortened by up to a quarter at random.

use crate::error::{ErrorCategory, NodeError};
use crate::http::header_str;
use reqwest::header::HeaderMap;
use std::time::{Duration, SystemTime};

pub(crate) const MAX_RETRIES: u32 = 2;
const MAX_SERVER_DELAY: Duration = Duration::from_secs(60);
const INITIAL_BACKOFF_SECS: f64 = 0.5;
const MAX_BACKOFF_SECS: f64 = 8.0;

pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

pub(crate) fn should_retry(status: u16, headers: &HeaderMap) -> bool {
    match header_str(headers, "x-should-retry").map(str::trim) {
        Some("true") => true,
        Some("false") => false,
        _ => retryable_status(status),
    }
}

/// The wait the server asked for, if it is usable (0 < wait <= 60 s).
pub(crate) fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = header_str(headers, "retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| secs(ms / 1000.0));
    let wait = ms.or_else(|| {
        let v = header_str(headers, "retry-after")?.trim();
        match v.parse::<f64>() {
            Ok(s) => secs(s),
            Err(_) => httpdate::parse_http_date(v).ok()?.duration_since(now).ok(),
        }
    })?;
    (wait > Duration::ZERO && wait <= MAX_SERVER_DELAY).then_some(wait)
}

fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0 && s <= MAX_SERVER_DELAY.as_secs_f64())
        .then(|| Duration::from_secs_f64(s))
}

/// The SDK backoff for retry number `retry` (0-based); `jitter` is in [0, 1).
pub(crate) fn backoff(retry: u32, jitter: f64) -> Duration {
    let base = (INITIAL_BACKOFF_SECS * 2f64.powi(retry.min(16) as i32)).min(MAX_BACKOFF_SECS);
    Duration::from_secs_f64(base * (1.0 - 0.25 * jitter.clamp(0.0, 1.0)))
}

/// What one attempt came to.
pub(crate) enum Outcome<T> {
    Done(T),
    /// Worth another try; `after` is the server's requested wait, if any.
    Retry {
        error: NodeError,
        after: Option<Duration>,
    },
    Fail(NodeError),
}

/// Run `attempt` (given the retry number) until it is done, fails for good, or the
/// retries run out. `sleep` waits between attempts and returns false when interrupted.
pub(crate) fn run<T>(
    mut attempt: impl FnMut(u32) -> Outcome<T>,
    mut sleep: impl FnMut(Duration) -> bool,
) -> Result<T, NodeError> {
    let mut retry = 0;
    loop {
        match attempt(retry) {
            Outcome::Done(v) => return Ok(v),
            Outcome::Fail(e) => return Err(e),
            Outcome::Retry { mut error, after } => {
                if retry >= MAX_RETRIES {
                    error.message =
                        format!("{} (gave up after {} attempts)", error.message, retry + 1);
                    return Err(error);
                }
                let wait = after.unwrap_or_else(|| backoff(retry, fastrand::f64()));
                if !sleep(wait) {
                    return Err(NodeError::new(ErrorCategory::Interrupted, "interrupted"));
                }
                retry += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses() {
        for s in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(should_retry(s, &HeaderMap::new()), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!should_retry(s, &HeaderMap::new()), "{s}");
        }
        assert!(!should_retry(529, &headers(&[("x-should-retry", "false")])));
        assert!(should_retry(400, &headers(&[("x-should-retry", "true")])));
    }

    #[test]
    fn server_delays() {
        let now = SystemTime::now();
        let d = |pairs: &[(&'static str, &str)]| server_delay(&headers(pairs), now);
        assert_eq!(d(&[("retry-after", "1")]), Some(Duration::from_secs(1)));
        assert_eq!(
            d(&[("retry-after", "2.5")]),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            d(&[("retry-after-ms", "50"), ("retry-after", "9")]),
            Some(Duration::from_millis(50))
        );
        assert_eq!(d(&[("retry-after", "0")]), None);
        assert_eq!(d(&[("retry-after", "61")]), None);
        assert_eq!(d(&[("retry-after", "soon")]), None);
        assert_eq!(d(&[]), None);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let got = d(&[("retry-after", &later)]).unwrap();
        assert!(
            got > Duration::from_secs(28) && got <= Duration::from_secs(30),
            "{got:?}"
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(d(&[("retry-after", &past)]), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(10, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(0, 1.0), Duration::from_millis(375));
    }

    fn retry_err() -> NodeError {
        NodeError::new(ErrorCategory::Server, "overloaded")
    }

    #[test]
    fn gives_up_after_two_retries() {
        let mut attempts = 0;
        let mut waits = Vec::new();
        let r: Result<(), _> = run(
            |_| {
                attempts += 1;
                Outcome::Retry {
                    error: retry_err(),
                    after: None,
                }
            },
            |d| {
                waits.push(d);
                true
            },
        );
        let e = r.unwrap_err();
        assert_eq!(attempts, 3);
        assert_eq!(waits.len(), 2);
        assert!(waits[0] <= Duration::from_millis(500) && waits[0] >= Duration::from_millis(375));
        assert!(waits[1] <= Duration::from_secs(1) && waits[1] >= Duration::from_millis(750));
        assert_eq!(e.category, ErrorCategory::Server);
        assert!(
            e.message.contains("gave up after 3 attempts"),
            "{}",
            e.message
        );
    }

    #[test]
    fn honours_server_wait_and_stops_on_success_or_failure() {
        let mut waits = Vec::new();
        let r = run(
            |n| match n {
                0 => Outcome::Retry {
                    error: retry_err(),
                    after: Some(Duration::from_secs(1)),
                },
                _ => Outcome::Done(n),
            },
            |d| {
                waits.push(d);
                true
            },
        );
        assert_eq!(r.unwrap(), 1);
        assert_eq!(waits, vec![Duration::from_secs(1)]);

        let mut attempts = 0;
        let r: Result<(), _> = run(
            |_| {
                attempts += 1;
                Outcome::Fail(NodeError::new(ErrorCategory::Auth, "no"))
            },
            |_| true,
        );
        assert_eq!(r.unwrap_err().category, ErrorCategory::Auth);
        assert_eq!(attempts, 1);
    }

    #[test]
    fn interrupted_sleep_stops() {
        let r: Result<(), _> = run(
            |_| Outcome::Retry {
                error: retry_err(),
                after: None,
            },
            |_| false,
        );
        assert_eq!(r.unwrap_err().category, ErrorCategory::Interrupted);
    }
}
