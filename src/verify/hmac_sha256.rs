//! Generic HMAC-SHA256 of the raw body, for providers without a scheme of their own.
//!
//! Owns the configurable parts: which header carries the signature, hex or base64, and an
//! optional prefix such as `sha256=`. No timestamp and no delivery id: the generic scheme cannot
//! know where a provider would put them.

use http::HeaderName;

use super::{
    decode_signature, required_header, BuildError, Scheme, SignatureEncoding, Signer, Verified,
    VerifyError,
};

#[derive(Debug)]
pub(super) struct HmacSha256 {
    signer: Signer,
    /// As configured, so messages use the user's spelling; lookup is case-insensitive anyway.
    header: String,
    encoding: SignatureEncoding,
    prefix: Option<String>,
}

impl HmacSha256 {
    pub(super) fn new(
        secret: &str,
        header: &str,
        encoding: SignatureEncoding,
        prefix: Option<&str>,
    ) -> Result<Self, BuildError> {
        // A name `HeaderMap` cannot hold would never be found, so every delivery would fail
        // as "missing"; better to say so at startup.
        HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| BuildError::HeaderInvalid(header.to_owned()))?;
        Ok(Self {
            signer: Signer::new(secret.as_bytes())?,
            header: header.to_owned(),
            encoding,
            prefix: prefix.filter(|p| !p.is_empty()).map(str::to_owned),
        })
    }
}

impl Scheme for HmacSha256 {
    /// Only the body is signed (and this scheme reads no delivery id).
    fn signs_delivery_id(&self) -> bool {
        false
    }

    fn verify(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        _now: i64,
    ) -> Result<Verified, VerifyError> {
        let mut value = required_header(headers, &self.header)?;
        if let Some(prefix) = &self.prefix {
            value = value.strip_prefix(prefix.as_str()).ok_or_else(|| {
                VerifyError::Malformed(format!("header {} must start with {prefix}", self.header))
            })?;
        }
        let signature = decode_signature(value, self.encoding, &self.header)?;
        self.signer.verify_one(&[body], &signature)?;
        Ok(Verified::default())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use base64::Engine as _;

    use super::super::test_support::{headers, hmac_sha256};
    use super::super::{build, VerifyConfig, BASE64};
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
    fn missing_prefix_is_malformed() {
        let verifier = scheme("X-Signature", None, Some("sha256="));
        let map = headers(&[("X-Signature", &hex::encode(mac()))]);
        assert_eq!(
            verifier.verify(&map, BODY, 0),
            Err(VerifyError::Malformed(
                "header X-Signature must start with sha256=".into()
            ))
        );
    }

    #[test]
    fn wrong_encoding_is_malformed() {
        let verifier = scheme("X-Signature", Some(SignatureEncoding::Base64), None);
        let map = headers(&[("X-Signature", &hex::encode(mac()))]);
        assert_eq!(
            verifier.verify(&map, BODY, 0),
            Err(VerifyError::Malformed(
                "header X-Signature is not a base64 HMAC-SHA256 signature".into()
            ))
        );
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
