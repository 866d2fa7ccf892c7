//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! Owns that header and the `X-GitHub-Delivery` id. The legacy SHA-1 `X-Hub-Signature` is
//! deliberately never consulted: accepting it would let a forger fall back to the weaker hash.
//! GitHub signs only the body, not `X-GitHub-Delivery`. The verifier is the generic one
//! (`hmac_sha256.rs`) with these headers.

use std::borrow::Cow;

use super::hmac_sha256::HmacSha256;
use super::shared::SignatureHeader;
use super::{BuildError, SignatureEncoding};

const SIGNATURE: &str = "X-Hub-Signature-256";
const PREFIX: &str = "sha256=";
const DELIVERY: &str = "X-GitHub-Delivery";

pub(super) fn new(secret: &str) -> Result<HmacSha256, BuildError> {
    let signature = SignatureHeader {
        names: vec![Cow::Borrowed(SIGNATURE)],
        // GitHub sends lowercase hex; uppercase decodes to the same bytes and is accepted.
        encoding: SignatureEncoding::Hex,
        prefix: Some(PREFIX.to_owned()),
    };
    HmacSha256::new(secret, signature, &[DELIVERY])
}

#[cfg(test)]
mod tests {
    use super::super::shared::test_support::{headers, hmac_sha256};
    use super::super::{Scheme, Verified, VerifyError};
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";

    fn valid() -> String {
        format!(
            "sha256={}",
            hex::encode(hmac_sha256(SECRET.as_bytes(), BODY))
        )
    }

    #[test]
    fn legacy_sha1_header_alone_is_not_enough() {
        let scheme = new(SECRET).unwrap();
        let map = headers(&[(
            "X-Hub-Signature",
            "sha1=0123456789abcdef0123456789abcdef01234567",
        )]);
        assert_eq!(
            scheme.verify(&map, BODY, 0),
            Err(VerifyError::MissingHeader("X-Hub-Signature-256".into()))
        );
    }

    #[test]
    fn delivery_id_is_optional() {
        let scheme = new(SECRET).unwrap();
        let map = headers(&[(SIGNATURE, &valid())]);
        assert_eq!(scheme.verify(&map, BODY, 0), Ok(Verified::default()));
    }

    #[test]
    fn truncated_hex_is_malformed() {
        let scheme = new(SECRET).unwrap();
        let truncated = &valid()[..40];
        let map = headers(&[(SIGNATURE, truncated)]);
        assert_eq!(
            scheme.verify(&map, BODY, 0),
            Err(VerifyError::Malformed(
                "header X-Hub-Signature-256 is not a hex HMAC-SHA256 signature".into()
            ))
        );
    }

    #[test]
    fn sha1_prefix_is_malformed() {
        let scheme = new(SECRET).unwrap();
        let map = headers(&[(SIGNATURE, &valid().replace("sha256=", "sha1="))]);
        assert_eq!(
            scheme.verify(&map, BODY, 0),
            Err(VerifyError::Malformed(
                "header X-Hub-Signature-256 must start with sha256=".into()
            ))
        );
    }
}
