//! BigCommerce webhooks: Standard Webhooks on the wire, but keyed with the app's client secret.
//!
//! Owns only the key derivation. BigCommerce's docs tell integrators to base64-encode the client
//! secret and hand it to a Standard Webhooks library, which base64-decodes it again, so the HMAC
//! key is simply the secret's UTF-8 bytes. Everything else is in `standard_webhooks.rs`.

use super::standard_webhooks::StandardWebhooks;
use super::BuildError;

pub(super) fn from_client_secret(
    secret: &str,
    tolerance: i64,
) -> Result<StandardWebhooks, BuildError> {
    StandardWebhooks::with_key(secret.as_bytes(), tolerance)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::super::shared::BASE64;
    use super::super::{Scheme, VerifyError};
    use super::*;

    const SECRET: &str = "my-client-secret";
    const BODY: &[u8] = br#"{"scope":"store/order/created"}"#;

    fn delivery(key: &[u8]) -> http::HeaderMap {
        let signature = BASE64.encode(hmac_sha256(key, &[b"id-1.1000.", BODY].concat()));
        headers(&[
            ("webhook-id", "id-1"),
            ("webhook-timestamp", "1000"),
            ("webhook-signature", &format!("v1,{signature}")),
        ])
    }

    #[test]
    fn key_is_the_raw_client_secret() {
        let scheme = from_client_secret(SECRET, 300).unwrap();
        let verified = scheme
            .verify(&delivery(SECRET.as_bytes()), BODY, 1000)
            .unwrap();
        assert_eq!(verified.delivery_id.as_deref(), Some("id-1"));
    }

    #[test]
    fn same_as_standard_webhooks_with_the_base64_encoded_secret() {
        let standard =
            StandardWebhooks::from_secret(&format!("whsec_{}", BASE64.encode(SECRET)), 300)
                .unwrap();
        assert!(standard
            .verify(&delivery(SECRET.as_bytes()), BODY, 1000)
            .is_ok());
    }

    #[test]
    fn a_whsec_looking_secret_is_not_decoded() {
        // If a user pastes a `whsec_` value into a bigcommerce source it is still used verbatim,
        // so a sender keyed with the decoded bytes does not match.
        let scheme = from_client_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 300).unwrap();
        let decoded = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            scheme.verify(&delivery(&decoded), BODY, 1000),
            Err(VerifyError::Mismatch)
        );
    }
}
