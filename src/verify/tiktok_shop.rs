//! TikTok Shop push notifications: `Authorization: <hex HMAC-SHA256>` over the app key followed
//! by the raw body, keyed with the app secret. TikTok Shop's Partner Center documents this for
//! its webhooks; the form here follows the public SDK ports (docs/runtime.md says which).
//!
//! Owns that format, which Lazada's push shares (`lazada.rs`), and reading TikTok's
//! `tts_notification_id` out of the signed body as the delivery id.

use super::{
    body_string_field, decode_signature, required_header, BuildError, Scheme, SignatureEncoding,
    Signer, Verified, VerifyError,
};

const SIGNATURE: &str = "Authorization";

/// An `Authorization` header carrying the hex HMAC of `app_key + body`.
#[derive(Debug)]
pub(super) struct AppKeyBody {
    signer: Signer,
    app_key: String,
    /// The top-level body field that names the delivery, when the provider sends one.
    id_field: Option<&'static str>,
}

impl AppKeyBody {
    pub(super) fn new(
        app_secret: &str,
        app_key: &str,
        id_field: Option<&'static str>,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            signer: Signer::new(app_secret.as_bytes())?,
            app_key: app_key.to_owned(),
            id_field,
        })
    }
}

/// TikTok Shop: the notification id is in the body.
pub(super) fn new(app_secret: &str, app_key: &str) -> Result<AppKeyBody, BuildError> {
    AppKeyBody::new(app_secret, app_key, Some("tts_notification_id"))
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
        _now: i64,
    ) -> Result<Verified, VerifyError> {
        let value = required_header(headers, SIGNATURE)?;
        let signature = decode_signature(value, SignatureEncoding::Hex, SIGNATURE)?;
        self.signer
            .verify_one(&[self.app_key.as_bytes(), body], &signature)?;
        Ok(Verified {
            delivery_id: self
                .id_field
                .and_then(|field| body_string_field(body, field)),
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

    #[test]
    fn the_notification_id_is_the_delivery_id_and_may_be_absent() {
        let scheme = new(SECRET, APP_KEY).unwrap();
        let body = br#"{"type":1,"tts_notification_id":"7327","shop_id":"1"}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        assert_eq!(
            scheme.verify(&map, body, 0).unwrap().delivery_id.as_deref(),
            Some("7327")
        );
        let body = br#"{"type":1}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        assert_eq!(scheme.verify(&map, body, 0), Ok(Verified::default()));
    }

    #[test]
    fn another_app_key_does_not_verify() {
        let body = br#"{"type":1}"#;
        let map = headers(&[("Authorization", &sign(body))]);
        let other = new(SECRET, "6abc124").unwrap();
        assert_eq!(other.verify(&map, body, 0), Err(VerifyError::Mismatch));
    }
}
