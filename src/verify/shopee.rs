//! Shopee Open Platform push notifications: `Authorization: <hex HMAC-SHA256>` over the callback
//! URL, `|`, and the raw body, keyed with the partner key (Shopee's developer guide, "Push
//! Mechanism"; see docs/runtime.md).
//!
//! Owns that header and the signed URL. The URL is the one registered in Shopee's console, as
//! Shopee called it: a proxy in front of the engine changes the URL the engine sees, not the one
//! that was signed, so it is configured rather than read from the request. The push carries no
//! delivery id; the time it was sent is the body's `timestamp` (Unix seconds), signed with the
//! body: outside `tolerance` the push is refused, inside it a replay is the same body, which the
//! server's body-hash dedup turns away.

use http::Uri;

use super::push::Push;
use super::shared::TimeUnit;
use super::BuildError;

/// The partner key signs `callback URL|body`.
pub(super) fn new(
    partner_key: &str,
    callback_url: &str,
    tolerance: i64,
) -> Result<Push, BuildError> {
    let valid = callback_url.parse::<Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    });
    if !valid {
        return Err(BuildError::CallbackUrlInvalid(callback_url.to_owned()));
    }
    let lead = [callback_url.as_bytes(), b"|"].concat();
    Push::new(partner_key, lead, None, TimeUnit::Seconds, tolerance)
}

#[cfg(test)]
mod tests {
    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::super::{Scheme, Verified, VerifyError};
    use super::*;

    const KEY: &str = "partner-key-test";
    const URL: &str = "https://erp.example.com/hooks/shopee/acme";
    const BODY: &[u8] = br#"{"code":3,"shop_id":1001,"timestamp":1660123127}"#;
    const SENT: i64 = 1_660_123_127;

    fn signed(body: &[u8]) -> http::HeaderMap {
        let content = [URL.as_bytes(), b"|", body].concat();
        let signature = hex::encode(hmac_sha256(KEY.as_bytes(), &content));
        headers(&[("Authorization", &signature)])
    }

    #[test]
    fn the_url_is_part_of_what_is_signed() {
        let scheme = new(KEY, URL, 300).unwrap();
        let map = signed(BODY);
        assert_eq!(scheme.verify(&map, BODY, SENT), Ok(Verified::default()));

        let elsewhere = new(KEY, "https://erp.example.com/hooks/shopee/other", 300).unwrap();
        assert_eq!(
            elsewhere.verify(&map, BODY, SENT),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn the_body_timestamp_must_be_within_the_tolerance() {
        let scheme = new(KEY, URL, 300).unwrap();
        let map = signed(BODY);
        assert!(scheme.verify(&map, BODY, SENT + 300).is_ok());
        assert!(scheme.verify(&map, BODY, SENT - 300).is_ok());
        assert_eq!(
            scheme.verify(&map, BODY, SENT + 301),
            Err(VerifyError::TooOld {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            scheme.verify(&map, BODY, SENT - 301),
            Err(VerifyError::TooNew {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        for body in [
            &br#"{"code":3,"shop_id":1001}"#[..],
            br#"{"code":3,"timestamp":"1660123127"}"#,
            br#"{"code":3,"timestamp":-1}"#,
            b"not json",
        ] {
            let result = scheme.verify(&signed(body), body, SENT);
            assert!(
                matches!(result, Err(VerifyError::Malformed(_))),
                "{result:?}"
            );
        }
        // A forged body's time is never read: the signature fails first.
        let stale = br#"{"code":3,"timestamp":1}"#;
        assert_eq!(scheme.verify(&map, stale, SENT), Err(VerifyError::Mismatch));
    }

    #[test]
    fn the_callback_url_must_be_absolute_http() {
        for bad in ["/hooks/shopee", "ftp://x.example/y", "not a url", ""] {
            assert_eq!(
                new(KEY, bad, 300).unwrap_err(),
                BuildError::CallbackUrlInvalid(bad.to_owned()),
                "{bad}"
            );
        }
    }
}
