//! An HMAC-SHA256 of the raw body in a header: the generic scheme, for providers without one of
//! their own, and the form GitHub, Shopify and Tokopedia use, which build it with their headers.
//!
//! Owns the configurable parts: which header carries the signature, hex or base64, and an
//! optional prefix such as `sha256=`; and which headers name the delivery. Only the body is
//! signed: no timestamp, and a delivery id is not covered by the signature.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use super::shared::{delivery_id, SignatureHeader, Signer};
use super::{BuildError, Scheme, SignatureEncoding, Verified, VerifyError};

#[derive(Debug)]
pub(super) struct HmacSha256 {
    signer: Signer,
    /// Spelled as configured (or as the provider does), so messages use that spelling; lookup
    /// is case-insensitive anyway.
    signature: SignatureHeader,
    /// The headers that may name the delivery, the first present one taken.
    delivery: &'static [&'static str],
}

impl HmacSha256 {
    /// A provider's fixed form: the secret's UTF-8 bytes as the key.
    pub(super) fn new(
        secret: &str,
        signature: SignatureHeader,
        delivery: &'static [&'static str],
    ) -> Result<Self, BuildError> {
        Ok(Self {
            signer: Signer::new(secret.as_bytes())?,
            signature,
            delivery,
        })
    }
}

/// The generic scheme, as `verify:` configures it.
pub(super) fn configured(
    secret: &str,
    header: &str,
    encoding: SignatureEncoding,
    prefix: Option<&str>,
) -> Result<HmacSha256, BuildError> {
    // A name `HeaderMap` cannot hold would never be found, so every delivery would fail as
    // "missing"; better to say so at startup.
    HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| BuildError::HeaderInvalid(header.to_owned()))?;
    let signature = SignatureHeader {
        names: vec![Cow::Owned(header.to_owned())],
        encoding,
        prefix: prefix.filter(|p| !p.is_empty()).map(str::to_owned),
    };
    HmacSha256::new(secret, signature, &[])
}

impl Scheme for HmacSha256 {
    /// Only the body is signed.
    fn signs_delivery_id(&self) -> bool {
        false
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], _now: i64) -> Result<Verified, VerifyError> {
        let signature = self.signature.read(headers)?;
        self.signer.verify_one(&[body], &signature)?;
        Ok(Verified {
            delivery_id: delivery_id(headers, self.delivery),
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::super::shared::BASE64;
    use super::super::{build, VerifyConfig};
    use super::*;
    use crate::config::model::VerifyScheme;

    const SECRET: &str = "generic-s3cret";
    const BODY: &[u8] = br#"{"order":{"id":820982911946154508}}"#;

    fn scheme(
        header: &str,
        encoding: Option<SignatureEncoding>,
        prefix: Option<&str>,
    ) -> Box<dyn Scheme> {
        build(&VerifyConfig {
            scheme: VerifyScheme::from("hmac-sha256"),
            secret: SECRET.into(),
            header: Some(header.into()),
            encoding,
            prefix: prefix.map(str::to_owned),
            tolerance: None,
            callback_url: None,
            app_key: None,
        })
        .unwrap()
    }

    fn mac() -> Vec<u8> {
        hmac_sha256(SECRET.as_bytes(), BODY)
    }

    #[test]
    fn hex_is_the_default_encoding() {
        let verifier = scheme("X-Signature", None, None);
        let map = headers(&[("x-signature", &hex::encode(mac()))]);
        assert_eq!(verifier.verify(&map, BODY, 0), Ok(Verified::default()));
        assert_eq!(
            verifier.verify(&map, b"{\"order\":{}}", 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn hex_with_prefix() {
        let verifier = scheme("X-Signature", Some(SignatureEncoding::Hex), Some("sha256="));
        let map = headers(&[("X-Signature", &format!("sha256={}", hex::encode(mac())))]);
        assert!(verifier.verify(&map, BODY, 0).is_ok());
    }

    #[test]
    fn base64_with_prefix() {
        let verifier = scheme(
            "X-Webhook-Signature",
            Some(SignatureEncoding::Base64),
            Some("hmac "),
        );
        let map = headers(&[(
            "X-Webhook-Signature",
            &format!("hmac {}", BASE64.encode(mac())),
        )]);
        assert!(verifier.verify(&map, BODY, 0).is_ok());

        let wrong_key = BASE64.encode(hmac_sha256(b"other", BODY));
        let map = headers(&[("X-Webhook-Signature", &format!("hmac {wrong_key}"))]);
        assert_eq!(verifier.verify(&map, BODY, 0), Err(VerifyError::Mismatch));
    }

    #[test]
    fn a_missing_prefix_or_a_wrong_encoding_is_malformed() {
        let cases = [
            (
                scheme("X-Signature", None, Some("sha256=")),
                "header X-Signature must start with sha256=",
            ),
            (
                scheme("X-Signature", Some(SignatureEncoding::Base64), None),
                "header X-Signature is not a base64 HMAC-SHA256 signature",
            ),
        ];
        let map = headers(&[("X-Signature", &hex::encode(mac()))]);
        for (verifier, message) in cases {
            assert_eq!(
                verifier.verify(&map, BODY, 0),
                Err(VerifyError::Malformed(message.into()))
            );
        }
    }

    #[test]
    fn missing_header_uses_the_configured_name() {
        let verifier = scheme("X-Signature", None, None);
        assert_eq!(
            verifier.verify(&http::HeaderMap::new(), BODY, 0),
            Err(VerifyError::MissingHeader("X-Signature".into()))
        );
    }

    #[test]
    fn empty_prefix_means_no_prefix() {
        let verifier = scheme("X-Signature", None, Some(""));
        let map = headers(&[("X-Signature", &hex::encode(mac()))]);
        assert!(verifier.verify(&map, BODY, 0).is_ok());
    }
}
