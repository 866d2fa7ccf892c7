//! Shopify webhooks: base64 HMAC-SHA256 of the raw body, keyed with the app's client secret.
//!
//! Owns both header spellings: the classic `X-Shopify-*` ones and the un-prefixed `shopify-*`
//! ones Shopify added in 2026. Shopify signs neither a timestamp nor the delivery id, so a
//! replay is caught by the body's hash as well as the id (`server::webhook`), within the
//! dedup window only. The id is the event id when Shopify sends one: two subscriptions to one
//! topic deliver one event twice under different webhook ids and the same event id, which
//! Shopify's "Ignore duplicate webhooks" guidance says to deduplicate on.

use std::borrow::Cow;

use super::hmac_sha256::HmacSha256;
use super::shared::SignatureHeader;
use super::{BuildError, SignatureEncoding};

const SIGNATURE: &str = "shopify-hmac-sha256";
const LEGACY_SIGNATURE: &str = "X-Shopify-Hmac-Sha256";
const WEBHOOK_ID: &str = "shopify-webhook-id";
const LEGACY_WEBHOOK_ID: &str = "X-Shopify-Webhook-Id";
const EVENT_ID: &str = "shopify-event-id";
const LEGACY_EVENT_ID: &str = "X-Shopify-Event-Id";

/// Shopify signs only the body, not the ids. The new spelling wins when both are present, as in
/// Shopify's own SDK; a missing header is reported under the name Shopify's docs use.
pub(super) fn new(secret: &str) -> Result<HmacSha256, BuildError> {
    let signature = SignatureHeader {
        names: vec![Cow::Borrowed(SIGNATURE), Cow::Borrowed(LEGACY_SIGNATURE)],
        encoding: SignatureEncoding::Base64,
        prefix: None,
    };
    let ids = &[EVENT_ID, LEGACY_EVENT_ID, WEBHOOK_ID, LEGACY_WEBHOOK_ID];
    HmacSha256::new(secret, signature, ids)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::super::shared::BASE64;
    use super::super::{Scheme, Verified, VerifyError};
    use super::*;

    const SECRET: &str = "API_SECRET_KEY";
    const BODY: &[u8] = b"{}";

    fn valid() -> String {
        BASE64.encode(hmac_sha256(SECRET.as_bytes(), BODY))
    }

    #[test]
    fn new_header_spelling_alone_verifies() {
        let scheme = new(SECRET).unwrap();
        let map = headers(&[
            ("shopify-hmac-sha256", &valid()),
            ("shopify-webhook-id", "w-1"),
        ]);
        assert_eq!(
            scheme.verify(&map, BODY, 0),
            Ok(Verified {
                delivery_id: Some("w-1".into())
            })
        );
    }

    #[test]
    fn new_header_spelling_wins_when_both_are_sent() {
        let scheme = new(SECRET).unwrap();
        let wrong = BASE64.encode([0u8; 32]);
        let new_valid = headers(&[
            ("shopify-hmac-sha256", &valid()),
            (LEGACY_SIGNATURE, &wrong),
        ]);
        assert!(scheme.verify(&new_valid, BODY, 0).is_ok());
        let new_wrong = headers(&[
            ("shopify-hmac-sha256", &wrong),
            (LEGACY_SIGNATURE, &valid()),
        ]);
        assert_eq!(
            scheme.verify(&new_wrong, BODY, 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn delivery_id_prefers_the_new_header_and_may_be_absent() {
        let scheme = new(SECRET).unwrap();
        let both = headers(&[
            (LEGACY_SIGNATURE, &valid()),
            ("X-Shopify-Webhook-Id", "old"),
            ("shopify-webhook-id", "new"),
        ]);
        assert_eq!(
            scheme
                .verify(&both, BODY, 0)
                .unwrap()
                .delivery_id
                .as_deref(),
            Some("new")
        );
        let none = headers(&[(LEGACY_SIGNATURE, &valid())]);
        assert_eq!(scheme.verify(&none, BODY, 0), Ok(Verified::default()));
    }

    #[test]
    fn the_event_id_outranks_the_webhook_id() {
        let scheme = new(SECRET).unwrap();
        let id = |pairs: &[(&str, &str)]| {
            let mut pairs = pairs.to_vec();
            let signature = valid();
            pairs.push((LEGACY_SIGNATURE, &signature));
            scheme
                .verify(&headers(&pairs), BODY, 0)
                .unwrap()
                .delivery_id
        };
        // Two subscriptions, one event: the same id.
        for webhook in ["w-1", "w-2"] {
            assert_eq!(
                id(&[(LEGACY_WEBHOOK_ID, webhook), (LEGACY_EVENT_ID, "e-9")]).as_deref(),
                Some("e-9")
            );
        }
        assert_eq!(
            id(&[(WEBHOOK_ID, "w-1"), (EVENT_ID, "e-10")]).as_deref(),
            Some("e-10")
        );
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let scheme = new(SECRET).unwrap();
        let map = headers(&[(LEGACY_SIGNATURE, valid().trim_end_matches('='))]);
        assert!(scheme.verify(&map, BODY, 0).is_ok());
    }

    #[test]
    fn malformed_new_header_names_that_header() {
        let scheme = new(SECRET).unwrap();
        let map = headers(&[("shopify-hmac-sha256", "%%%")]);
        assert_eq!(
            scheme.verify(&map, BODY, 0),
            Err(VerifyError::Malformed(
                "header shopify-hmac-sha256 is not a base64 HMAC-SHA256 signature".into()
            ))
        );
    }
}
