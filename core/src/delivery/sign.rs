//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256(secret,
//! "{id}.{timestamp}.{body}")>`, one per active secret, space-separated, so receivers keep
//! verifying while a secret rotates.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of a signing secret's text form (as Standard Webhooks libraries expect).
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("malformed signing secret: expected whsec_<base64>")]
pub struct MalformedSecret;

/// An endpoint's signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

impl SigningSecret {
    /// A new random 32-byte secret in text form (`whsec_…`), to store and show once.
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, MalformedSecret> {
        let b64 = text.strip_prefix(SECRET_PREFIX).ok_or(MalformedSecret)?;
        let key = STANDARD.decode(b64).map_err(|_| MalformedSecret)?;
        if key.is_empty() {
            return Err(MalformedSecret);
        }
        Ok(Self(key))
    }

    /// `v1,<signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets.iter().map(|s| s.sign(msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies with the Standard Webhooks project's own Rust library, not with this module.
    fn verify_independently(
        secret: &str,
        msg_id: &str,
        ts: i64,
        body: &[u8],
        header: &str,
    ) -> bool {
        let wh = standardwebhooks::Webhook::new(secret).expect("secret");
        let mut headers = http_headers();
        headers.insert("webhook-id", msg_id.parse().expect("hv"));
        headers.insert("webhook-timestamp", ts.to_string().parse().expect("hv"));
        headers.insert("webhook-signature", header.parse().expect("hv"));
        wh.verify(body, &headers).is_ok()
    }

    fn http_headers() -> axum::http::HeaderMap {
        axum::http::HeaderMap::new()
    }

    #[test]
    fn signatures_verify_with_the_reference_library() {
        let secret = SigningSecret::generate();
        let key = SigningSecret::parse(&secret).expect("parse");
        let ts = chrono::Utc::now().timestamp();
        let body = br#"{"event_type":"subscriber.created"}"#;
        let header = signature_header(&[key], "evt_1", ts, body);
        assert!(verify_independently(&secret, "evt_1", ts, body, &header));
        assert!(!verify_independently(&secret, "evt_2", ts, body, &header), "id is signed");
        assert!(!verify_independently(&secret, "evt_1", ts, b"{}", &header), "body is signed");
    }

    #[test]
    fn during_rotation_both_secrets_verify() {
        let old = SigningSecret::generate();
        let new = SigningSecret::generate();
        let keys =
            [SigningSecret::parse(&old).expect("old"), SigningSecret::parse(&new).expect("new")];
        let ts = chrono::Utc::now().timestamp();
        let header = signature_header(&keys, "evt_1", ts, b"x");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify_independently(&old, "evt_1", ts, b"x", &header));
        assert!(verify_independently(&new, "evt_1", ts, b"x", &header));
        let stranger = SigningSecret::generate();
        assert!(!verify_independently(&stranger, "evt_1", ts, b"x", &header));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(SigningSecret::parse("abc").is_err());
        assert!(SigningSecret::parse("whsec_!!!").is_err());
        assert!(SigningSecret::parse("whsec_").is_err());
    }
}
