//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! Owns that header and the `X-GitHub-Delivery` id. The legacy SHA-1 `X-Hub-Signature` is
//! deliberately never consulted: accepting it would let a forger fall back to the weaker hash.

use super::{
    decode_signature, delivery_id, required_header, BuildError, Scheme, SignatureEncoding, Signer,
    Verified, VerifyError,
};

const SIGNATURE: &str = "X-Hub-Signature-256";
const PREFIX: &str = "sha256=";
const DELIVERY: &str = "X-GitHub-Delivery";

#[derive(Debug)]
pub(super) struct Github {
    signer: Signer,
}

impl Github {
    pub(super) fn new(secret: &str) -> Result<Self, BuildError> {
        Ok(Self {
            signer: Signer::new(secret.as_bytes())?,
        })
    }
}

impl Scheme for Github {
    /// GitHub signs only the body, not `X-GitHub-Delivery`.
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
        let hex = value.strip_prefix(PREFIX).ok_or_else(|| {
            VerifyError::Malformed(format!("header {SIGNATURE} must start with {PREFIX}"))
        })?;
        // GitHub sends lowercase hex; uppercase decodes to the same bytes and is accepted.
        let signature = decode_signature(hex, SignatureEncoding::Hex, SIGNATURE)?;
        self.signer.verify_one(&[body], &signature)?;
        Ok(Verified {
            delivery_id: delivery_id(headers, &[DELIVERY]),
        })
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
    use super::super::test_support::{headers, hmac_sha256};
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
        let scheme = Github::new(SECRET).unwrap();
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
        let scheme = Github::new(SECRET).unwrap();
        let map = headers(&[(SIGNATURE, &valid())]);
        assert_eq!(scheme.verify(&map, BODY, 0), Ok(Verified::default()));
    }

    #[test]
    fn truncated_hex_is_malformed() {
        let scheme = Github::new(SECRET).unwrap();
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
        let scheme = Github::new(SECRET).unwrap();
        let map = headers(&[(SIGNATURE, &valid().replace("sha256=", "sha1="))]);
        assert_eq!(
            scheme.verify(&map, BODY, 0),
            Err(VerifyError::Malformed(
                "header X-Hub-Signature-256 must start with sha256=".into()
            ))
        );
    }
}
