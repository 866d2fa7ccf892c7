//! Stripe webhooks: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`.
//!
//! Owns parsing that header, the signed content `"{t}.{body}"`, and reading the event id out of
//! the body. Unlike Standard Webhooks, the key is the whole `whsec_...` string as typed, not its
//! base64 decoding.

use http::HeaderMap;

use super::shared::{
    body_fields, check_timestamp, parse_timestamp, required_header, string_field, Signer,
};
use super::{BuildError, Scheme, Verified, VerifyError};

const SIGNATURE: &str = "Stripe-Signature";

#[derive(Debug)]
pub(super) struct Stripe {
    signer: Signer,
    tolerance: i64,
}

impl Stripe {
    pub(super) fn new(secret: &str, tolerance: i64) -> Result<Self, BuildError> {
        Ok(Self {
            signer: Signer::new(secret.as_bytes())?,
            tolerance,
        })
    }
}

impl Scheme for Stripe {
    /// The event id is read from the signed body.
    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        let value = required_header(headers, SIGNATURE)?;
        // Unknown keys (`v0`, future schemes) and stray items are skipped, as Stripe's SDKs do.
        let items = value
            .split(',')
            .filter_map(|item| item.split_once('='))
            .map(|(key, value)| (key.trim(), value.trim()));
        let timestamp_text = items
            .clone()
            .find_map(|(key, value)| (key == "t").then_some(value))
            .ok_or_else(|| {
                VerifyError::Malformed(format!("header {SIGNATURE} has no timestamp t=<unix>"))
            })?;
        let timestamp = parse_timestamp(timestamp_text, "the t= of Stripe-Signature")?;
        // Several v1 values arrive while a secret is being rolled; stripe-go treats one that is
        // not hex as simply not matching.
        let offered = items
            .filter(|(key, _)| *key == "v1")
            .map(|(_, signature)| hex::decode(signature).ok());
        // Signature before time window: TooOld then always means an authentic but late delivery.
        self.signer
            .verify_any(&[timestamp_text.as_bytes(), b".", body], offered, || {
                format!("header {SIGNATURE} has no v1 signature")
            })?;
        // Stripe's SDKs only reject old timestamps; the future side is rejected here too because
        // a delivery stamped minutes ahead can only come from a broken clock or a pre-signed
        // replay, and Standard Webhooks draws the same line.
        check_timestamp(timestamp, now, self.tolerance)?;
        Ok(Verified {
            delivery_id: event_id(body),
        })
    }
}

/// The body is authentic by now, but it is only mined for a dedup hint.
fn event_id(body: &[u8]) -> Option<String> {
    let [id] = body_fields(body, ["id"])?;
    string_field(id)
}

#[cfg(test)]
mod tests {
    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    fn sign(t: &str, body: &[u8]) -> String {
        hex::encode(hmac_sha256(
            SECRET.as_bytes(),
            &[t.as_bytes(), b".", body].concat(),
        ))
    }

    fn check(header_value: &str, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        Stripe::new(SECRET, 300)
            .unwrap()
            .verify(&headers(&[(SIGNATURE, header_value)]), body, now)
    }

    #[test]
    fn event_id_is_read_from_the_top_level_only() {
        assert_eq!(
            event_id(br#"{"id":"evt_1","data":{"id":"x"}}"#).as_deref(),
            Some("evt_1")
        );
        assert_eq!(event_id(br#"{"data":{"id":"evt_nested"}}"#), None);
        assert_eq!(event_id(br#"{"id":12}"#), None);
        assert_eq!(event_id(br#"{"id":""}"#), None);
        assert_eq!(event_id(b"not json"), None);
        assert_eq!(event_id(br#"["evt_1"]"#), None);
        // Numbers beyond f64 precision elsewhere in the body (the arbitrary_precision feature
        // keeps them as text) must not disturb reading the id.
        assert_eq!(
            event_id(br#"{"amount":820982911946154508123,"ratio":1e400,"id":"evt_big"}"#)
                .as_deref(),
            Some("evt_big")
        );
    }

    #[test]
    fn non_json_body_still_verifies_without_an_id() {
        let body = b"plain text";
        let value = format!("t=1000,v1={}", sign("1000", body));
        assert_eq!(check(&value, body, 1000), Ok(Verified::default()));
    }

    #[test]
    fn header_items_may_come_in_any_order_with_spaces() {
        let body = br#"{"id":"evt_x"}"#;
        let value = format!("v0=abc, v1={} , t=1000, extra", sign("1000", body));
        assert_eq!(
            check(&value, body, 1000).unwrap().delivery_id.as_deref(),
            Some("evt_x")
        );
    }

    #[test]
    fn missing_or_bad_timestamp_is_malformed() {
        let body = b"{}";
        assert_eq!(
            check(&format!("v1={}", sign("1000", body)), body, 1000),
            Err(VerifyError::Malformed(
                "header Stripe-Signature has no timestamp t=<unix>".into()
            ))
        );
        assert_eq!(
            check(&format!("t=soon,v1={}", sign("1000", body)), body, 1000),
            Err(VerifyError::Malformed(
                "the t= of Stripe-Signature is not a Unix timestamp".into()
            ))
        );
    }

    #[test]
    fn v1_that_is_not_hex_just_does_not_match() {
        let body = b"{}";
        assert_eq!(
            check("t=1000,v1=zz", body, 1000),
            Err(VerifyError::Mismatch)
        );
        let value = format!("t=1000,v1=zz,v1={}", sign("1000", body));
        assert!(check(&value, body, 1000).is_ok());
    }

    #[test]
    fn secret_is_used_with_its_whsec_prefix() {
        let body = b"{}";
        let without_prefix = hex::encode(hmac_sha256(b"test_secret", b"1000.{}"));
        assert_eq!(
            check(&format!("t=1000,v1={without_prefix}"), body, 1000),
            Err(VerifyError::Mismatch)
        );
    }
}
