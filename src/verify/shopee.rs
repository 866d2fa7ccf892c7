//! Shopee Open Platform push notifications: `Authorization: <hex HMAC-SHA256>` over the callback
//! URL, `|`, and the raw body, keyed with the partner key (Shopee's developer guide, "Push
//! Mechanism"; see docs/runtime.md).
//!
//! Owns that header and the signed URL. The URL is the one registered in Shopee's console, as
//! Shopee called it: a proxy in front of the engine changes the URL the engine sees, not the one
//! that was signed, so it is configured rather than read from the request. The push carries no
//! delivery id and no signed timestamp in a header: a replay is the same body, which the
//! server's body-hash dedup turns away.

use http::Uri;

use super::{
    decode_signature, required_header, BuildError, Scheme, SignatureEncoding, Signer, Verified,
    VerifyError,
};

const SIGNATURE: &str = "Authorization";

#[derive(Debug)]
pub(super) struct Shopee {
    signer: Signer,
    callback_url: String,
}

impl Shopee {
    pub(super) fn new(partner_key: &str, callback_url: &str) -> Result<Self, BuildError> {
        let valid = callback_url.parse::<Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        });
        if !valid {
            return Err(BuildError::CallbackUrlInvalid(callback_url.to_owned()));
        }
        Ok(Self {
            // The partner key is used as its UTF-8 bytes, not hex-decoded, as for API calls.
            signer: Signer::new(partner_key.as_bytes())?,
            callback_url: callback_url.to_owned(),
        })
    }
}

impl Scheme for Shopee {
    fn signs_delivery_id(&self) -> bool {
        false
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
            .verify_one(&[self.callback_url.as_bytes(), b"|", body], &signature)?;
        Ok(Verified::default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::test_support::{headers, hmac_sha256};
    use super::*;

    const KEY: &str = "partner-key-test";
    const URL: &str = "https://erp.example.com/hooks/shopee/acme";
    const BODY: &[u8] = br#"{"code":3,"shop_id":1001}"#;

    #[test]
    fn the_url_is_part_of_what_is_signed() {
        let scheme = Shopee::new(KEY, URL).unwrap();
        let content = [URL.as_bytes(), b"|", BODY].concat();
        let signature = hex::encode(hmac_sha256(KEY.as_bytes(), &content));
        let map = headers(&[("Authorization", &signature)]);
        assert_eq!(scheme.verify(&map, BODY, 0), Ok(Verified::default()));

        let elsewhere = Shopee::new(KEY, "https://erp.example.com/hooks/shopee/other").unwrap();
        assert_eq!(elsewhere.verify(&map, BODY, 0), Err(VerifyError::Mismatch));
    }

    #[test]
    fn the_callback_url_must_be_absolute_http() {
        for bad in ["/hooks/shopee", "ftp://x.example/y", "not a url", ""] {
            assert_eq!(
                Shopee::new(KEY, bad).unwrap_err(),
                BuildError::CallbackUrlInvalid(bad.to_owned()),
                "{bad}"
            );
        }
    }
}
