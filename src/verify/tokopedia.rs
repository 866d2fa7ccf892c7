//! Tokopedia webhooks ("Webhook Security" in Tokopedia's developer guide):
//! `Authorization-Hmac: <hex HMAC-SHA256 of the raw body>`, keyed with the webhook secret
//! registered with Tokopedia. That is the generic scheme with a fixed header, which this builds.
//! (Tokopedia's encrypted webhooks are signed with RSA-PSS in `TKPD-Signature` instead; they are
//! not covered.)

use super::hmac_sha256::HmacSha256;
use super::shared::SignatureHeader;
use super::{BuildError, SignatureEncoding};

const SIGNATURE: &str = "Authorization-Hmac";

pub(super) fn new(secret: &str) -> Result<HmacSha256, BuildError> {
    let signature = SignatureHeader::plain(SIGNATURE, SignatureEncoding::Hex);
    HmacSha256::new(secret, signature, &[])
}
