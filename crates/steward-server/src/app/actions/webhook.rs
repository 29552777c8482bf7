//! The webhook action: an HTTP POST of JSON, signed with HMAC-SHA256 when the action has a secret.
//!
//! Headers: `Content-Type: application/json`, `X-Steward-Delivery` (the delivery's ID, the same on every attempt:
//! receivers deduplicate on it, as delivery is at least once), `X-Steward-Event` (the event type),
//! `X-Steward-Timestamp` (Unix seconds of this attempt, also in the body as `sent_at`) and, with a secret,
//! `X-Steward-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body bytes under the secret. The body's
//! `sent_at` is covered by the signature, so a receiver can refuse old replays.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How long one POST may take, connection included.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers a plan may not set: Steward's own and those HTTP itself manages.
pub const RESERVED_HEADERS: &[&str] =
    &["content-type", "content-length", "host", "transfer-encoding", "connection", "user-agent"];

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_key: Vec<u8> = block.iter().map(|byte| byte ^ 0x36).collect();
    let outer_key: Vec<u8> = block.iter().map(|byte| byte ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&inner_key).chain_update(message).finalize();
    Sha256::new().chain_update(&outer_key).chain_update(inner).finalize().into()
}

/// The `X-Steward-Signature` value of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), body);
    format!("sha256={}", mac.iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// Whether a header name is one a plan may set: a valid token, not reserved, not `X-Steward-*`.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)) {
        return Err(format!("{name:?} is not an HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-steward-") {
        return Err(format!("{name:?} is set by Steward itself"));
    }
    Ok(())
}

/// Why a POST failed, and whether another attempt may succeed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("POST {url} failed: {reason}")]
    Send { url: String, reason: String },
    #[error("POST {url} was answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("cannot build the request to {url}: {reason}")]
    Request { url: String, reason: String },
}

impl WebhookError {
    /// A client error (4xx) other than a timeout or rate limit will be answered the same way next time.
    pub fn is_permanent(&self) -> bool {
        match self {
            WebhookError::Status { status, .. } => (400..500).contains(status) && !matches!(status, 408 | 429),
            WebhookError::Request { .. } => true,
            WebhookError::Send { .. } => false,
        }
    }
}

/// Where and how a webhook posts.
pub struct Webhook<'a> {
    pub url: &'a str,
    pub secret: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
}

/// Sends `body` to the webhook with the headers above; `Ok` on a 2xx answer.
pub async fn post(
    client: &reqwest::Client,
    webhook: &Webhook<'_>,
    delivery: &str,
    event_type: &str,
    sent_at_seconds: i64,
    body: Vec<u8>,
) -> Result<(), WebhookError> {
    let Webhook { url, secret, headers } = *webhook;
    let mut request = client
        .post(url)
        .timeout(WEBHOOK_TIMEOUT)
        .header("content-type", "application/json")
        .header("x-steward-delivery", delivery)
        .header("x-steward-event", event_type)
        .header("x-steward-timestamp", sent_at_seconds.to_string());
    if let Some(secret) = secret {
        request = request.header("x-steward-signature", signature(secret, &body));
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(body)
        .build()
        .map_err(|error| WebhookError::Request { url: url.to_owned(), reason: crate::error_chain(&error) })?;
    let response = client
        .execute(request)
        .await
        .map_err(|error| WebhookError::Send { url: url.to_owned(), reason: crate::error_chain(&error) })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(WebhookError::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        body: text.chars().take(200).collect::<String>().trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(signature("Jefe", b"what do ya want for nothing?").starts_with("sha256=5bdcc146"));
    }

    #[test]
    fn header_names_are_checked() {
        assert!(check_header_name("Authorization").is_ok());
        assert!(check_header_name("X-Team").is_ok());
        assert!(check_header_name("bad header").is_err());
        assert!(check_header_name("Content-Type").is_err());
        assert!(check_header_name("X-Steward-Signature").is_err());
    }
}
