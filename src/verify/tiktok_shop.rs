//! TikTok Shop push notifications: `Authorization: <hex HMAC-SHA256>` over the app key followed
//! by the raw body, keyed with the app secret. TikTok Shop's Partner Center documents this for
//! its webhooks; the form here follows the public SDK ports (docs/runtime.md says which).
//!
//! Owns that format, which Lazada's push shares (`lazada.rs`), reading TikTok's
//! `tts_notification_id` out of the signed body as the delivery id, and the body's signed
//! `timestamp` (Unix seconds; Lazada's in milliseconds), refused outside `tolerance`.

use super::{
    body_object, body_string_field, decode_signature, required_header, BodyTime, BuildError,
    Scheme, SignatureEncoding, Signer, TimeUnit, Verified, VerifyError,
};

const SIGNATURE: &str = "Authorization";

/// An `Authorization` header carrying the hex HMAC of `app_key + body`.
#[derive(Debug)]
pub(super) struct AppKeyBody {
    signer: Signer,
    app_key: String,
    /// The top-level body field that names the delivery, when the provider sends one.
    id_field: Option<&'static str>,
    time: BodyTime,
}

impl AppKeyBody {
    pub(super) fn new(
        app_secret: &str,
        app_key: &str,
        id_field: Option<&'static str>,
        unit: TimeUnit,
        tolerance: i64,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            signer: Signer::new(app_secret.as_bytes())?,
            app_key: app_key.to_owned(),
            id_field,
            time: BodyTime {
                field: "timestamp",
                unit,
                tolerance,
            },
        })
    }
}

/// TikTok Shop: the notification id is in the body, the time in seconds.
pub(super) fn new(
    app_secret: &str,
    app_key: &str,
    tolerance: i64,
) -> Result<AppKeyBody, BuildError> {
    AppKeyBody::new(
        app_secret,
        app_key,
        Some("tts_notification_id"),
        TimeUnit::Seconds,
        tolerance,
    )
}

impl Scheme for AppKeyBody {
    /// The id, when there is one, is read from the signed body.
    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn verify(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let value = required_header(headers, SIGNATURE)?;
        let signature = decode_signature(value, SignatureEncoding::Hex, SIGNATURE)?;
        self.signer
            .verify_one(&[self.app_key.as_bytes(), body], &signature)?;
        // Only a signed body is read, once, for its time and its id.
        let object = body_object(body);
        self.time.check(object.as_ref(), now)?;
        Ok(Verified {
            delivery_id: self
                .id_field
                .and_then(|field| body_string_field(object.as_ref(), field)),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::test_support::{headers, hmac_sha256};
    use super::*;

    const SECRET: &str = "app-secret";
    const APP_KEY: &str = "6abc123";

    fn sign(body: &[u8]) -> String {
        hex::encode(hmac_sha256(
            SECRET.as_bytes(),
            &[APP_KEY.as_bytes(), body].concat(),
        ))
    }

    const SENT: i64 = 1_706_237_472;

    #[test]
    fn the_notification_id_is_the_delivery_id_and_may_be_absent() {
        let scheme = new(SECRET, APP_KEY, 300).unwrap();
        let body =
            br#"{"type":1,"tts_notification_id":"7327","shop_id":"1","timestamp":1706237472}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        assert_eq!(
            scheme
                .verify(&map, body, SENT)
                .unwrap()
                .delivery_id
                .as_deref(),
            Some("7327")
        );
        let body = br#"{"type":1,"timestamp":1706237472}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        assert_eq!(scheme.verify(&map, body, SENT), Ok(Verified::default()));
    }

    #[test]
    fn a_stale_or_timeless_push_is_refused() {
        let scheme = new(SECRET, APP_KEY, 300).unwrap();
        let body = br#"{"type":1,"timestamp":1706237472}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        assert_eq!(
            scheme.verify(&map, body, SENT + 3600),
            Err(VerifyError::TooOld {
                age_secs: 3600,
                tolerance_secs: 300
            })
        );
        let body = br#"{"type":1}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        assert!(matches!(
            scheme.verify(&map, body, SENT),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn lazada_times_are_milliseconds() {
        let scheme = super::super::lazada::new(SECRET, APP_KEY, 300).unwrap();
        let body = br#"{"message_type":0,"timestamp":1603766859530}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        assert_eq!(
            scheme.verify(&map, body, 1_603_766_859),
            Ok(Verified::default())
        );
        assert!(matches!(
            scheme.verify(&map, body, 1_603_766_859 + 301),
            Err(VerifyError::TooOld { .. })
        ));
    }

    #[test]
    fn another_app_key_does_not_verify() {
        let body = br#"{"type":1,"timestamp":1706237472}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        let other = new(SECRET, "6abc124", 300).unwrap();
        assert_eq!(other.verify(&map, body, SENT), Err(VerifyError::Mismatch));
    }
}
