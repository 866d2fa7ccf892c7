//! TikTok Shop push notifications: `Authorization: <hex HMAC-SHA256>` over the app key followed
//! by the raw body, keyed with the app secret. TikTok Shop's Partner Center documents this for
//! its webhooks; the form here follows the public SDK ports (docs/runtime.md says which).
//!
//! Owns TikTok's settings of the push form (`push.rs`), which Lazada's push shares
//! (`lazada.rs`): `tts_notification_id` read out of the signed body as the delivery id, and the
//! body's signed `timestamp` in Unix seconds, refused outside `tolerance`.

use super::push::Push;
use super::shared::TimeUnit;
use super::BuildError;

pub(super) fn new(app_secret: &str, app_key: &str, tolerance: i64) -> Result<Push, BuildError> {
    let lead = app_key.as_bytes().to_vec();
    Push::new(
        app_secret,
        lead,
        Some("tts_notification_id"),
        TimeUnit::Seconds,
        tolerance,
    )
}

#[cfg(test)]
mod tests {
    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::super::{Scheme, Verified, VerifyError};
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
