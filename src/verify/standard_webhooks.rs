//! Standard Webhooks (standardwebhooks.com), also the wire format BigCommerce uses.
//!
//! Owns the three `webhook-*` headers (and Svix's `svix-*` spelling of them), the signed content `"{id}.{timestamp}.{body}"`, the
//! space-separated `v1,<base64>` signature list, and turning a `whsec_<base64>` secret into the
//! HMAC key. How BigCommerce derives its key differently is in `bigcommerce.rs`.

use base64::Engine as _;

use http::HeaderMap;

use super::shared::{check_timestamp, parse_timestamp, required_header, Signer, BASE64};
use super::{BuildError, Scheme, Verified, VerifyError};

/// The headers' names: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
const STANDARD: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};
/// Svix, whose libraries the spec grew out of, still sends the same three under its own name
/// (svix.com "Verifying payloads manually").
const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

impl Names {
    /// Svix's names when the delivery carries Svix's signature and not the standard one; the
    /// standard names otherwise, so a delivery with neither is told what the spec expects.
    fn of(headers: &HeaderMap) -> &'static Names {
        let has = |name| headers.get(name).is_some();
        if !has(STANDARD.signature) && has(SVIX.signature) {
            &SVIX
        } else {
            &STANDARD
        }
    }
}
const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug)]
pub(super) struct StandardWebhooks {
    signer: Signer,
    tolerance: i64,
}

impl StandardWebhooks {
    /// Key = base64-decoded secret after an optional `whsec_`, as the official libraries do:
    /// they also accept the bare base64 part.
    pub(super) fn from_secret(secret: &str, tolerance: i64) -> Result<Self, BuildError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = BASE64
            .decode(encoded)
            .map_err(|_| BuildError::SecretNotBase64)?;
        if key.is_empty() {
            return Err(BuildError::SecretEmptyKey);
        }
        Self::with_key(&key, tolerance)
    }

    pub(super) fn with_key(key: &[u8], tolerance: i64) -> Result<Self, BuildError> {
        Ok(Self {
            signer: Signer::new(key)?,
            tolerance,
        })
    }
}

impl Scheme for StandardWebhooks {
    /// `webhook-id` is the first part of the signed content.
    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        let names = Names::of(headers);
        let id = required_header(headers, names.id)?;
        let timestamp_text = required_header(headers, names.timestamp)?;
        let signatures = required_header(headers, names.signature)?;
        let timestamp = parse_timestamp(timestamp_text, names.timestamp)?;

        // Other versions (future schemes, e.g. asymmetric `v1a`) are skipped, as the spec says,
        // so a sender can add them without breaking this receiver.
        let offered = signatures
            .split_ascii_whitespace()
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .map(|(_, signature)| BASE64.decode(signature).ok());
        // The signature is checked before the time window, so TooOld/TooNew only ever describe
        // authentic deliveries (a replay or clock skew), never a forgery.
        self.signer.verify_any(
            &[id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body],
            offered,
            || format!("header {} has no v1,<base64> signature", names.signature),
        )?;
        check_timestamp(timestamp, now, self.tolerance)?;
        Ok(Verified {
            delivery_id: Some(id.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::*;

    const KEY_B64: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_VALUE: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const NOW: i64 = 1_614_265_331;

    fn valid_signature() -> String {
        let key = BASE64.decode(KEY_B64).unwrap();
        let content = [ID_VALUE.as_bytes(), b".", TS.as_bytes(), b".", BODY].concat();
        BASE64.encode(hmac_sha256(&key, &content))
    }

    const ID: &str = STANDARD.id;
    const TIMESTAMP: &str = STANDARD.timestamp;
    const SIGNATURE: &str = STANDARD.signature;

    fn check(scheme: &StandardWebhooks, signature: &str) -> Result<Verified, VerifyError> {
        let map = headers(&[(ID, ID_VALUE), (TIMESTAMP, TS), (SIGNATURE, signature)]);
        scheme.verify(&map, BODY, NOW)
    }

    #[test]
    fn secret_without_whsec_prefix_is_base64_too() {
        let scheme = StandardWebhooks::from_secret(KEY_B64, 300).unwrap();
        let verified = check(&scheme, &format!("v1,{}", valid_signature())).unwrap();
        assert_eq!(verified.delivery_id.as_deref(), Some(ID_VALUE));
    }

    #[test]
    fn only_other_versions_is_malformed() {
        let scheme = StandardWebhooks::from_secret(KEY_B64, 300).unwrap();
        let sig = valid_signature();
        assert_eq!(
            check(&scheme, &format!("v1a,{sig} v2,{sig}")),
            Err(VerifyError::Malformed(
                "header webhook-signature has no v1,<base64> signature".into()
            ))
        );
        assert!(matches!(
            check(&scheme, "garbage"),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn undecodable_entries_do_not_hide_a_valid_one() {
        let scheme = StandardWebhooks::from_secret(KEY_B64, 300).unwrap();
        let sig = valid_signature();
        assert!(check(&scheme, &format!("v1,!!notbase64!! v2,{sig}  v1,{sig}")).is_ok());
        assert_eq!(
            check(&scheme, "v1,!!notbase64!! v1,AAAA"),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn timestamp_must_be_digits() {
        let scheme = StandardWebhooks::from_secret(KEY_B64, 300).unwrap();
        let map = headers(&[
            (ID, ID_VALUE),
            (TIMESTAMP, "2021-02-25T15:02:10Z"),
            (SIGNATURE, &format!("v1,{}", valid_signature())),
        ]);
        assert_eq!(
            scheme.verify(&map, BODY, NOW),
            Err(VerifyError::Malformed(
                "webhook-timestamp is not a Unix timestamp".into()
            ))
        );
    }

    #[test]
    fn svix_header_names_verify_the_same_delivery() {
        let scheme = StandardWebhooks::from_secret(KEY_B64, 300).unwrap();
        let signature = format!("v1,{}", valid_signature());
        let map = headers(&[
            ("svix-id", ID_VALUE),
            ("svix-timestamp", TS),
            ("svix-signature", &signature),
        ]);
        assert_eq!(
            scheme
                .verify(&map, BODY, NOW)
                .unwrap()
                .delivery_id
                .as_deref(),
            Some(ID_VALUE)
        );
        // Svix's signature with a part of it missing names Svix's header.
        let map = headers(&[("svix-id", ID_VALUE), ("svix-signature", &signature)]);
        assert_eq!(
            scheme.verify(&map, BODY, NOW),
            Err(VerifyError::MissingHeader("svix-timestamp".into()))
        );
        // Neither spelling: the spec's names are asked for.
        assert_eq!(
            scheme.verify(&headers(&[]), BODY, NOW),
            Err(VerifyError::MissingHeader("webhook-id".into()))
        );
    }

    #[test]
    fn empty_key_is_a_config_error() {
        let error = StandardWebhooks::from_secret("whsec_", 300).unwrap_err();
        assert_eq!(error, BuildError::SecretEmptyKey);
        assert!(error.to_string().contains("empty key"), "{error}");
    }
}
