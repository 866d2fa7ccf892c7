//! A marketplace push: `Authorization: <hex HMAC-SHA256>` over a lead the provider fixes and
//! the raw body, with the time it was sent in the signed body. Shopee (`shopee.rs`: the
//! callback URL and `|`), TikTok Shop (`tiktok_shop.rs`: the app key) and Lazada (`lazada.rs`:
//! the app key, its time in milliseconds) build it.
//!
//! Owns that header, reading the body's time (checked against `tolerance`) and, when the
//! provider sends one, its delivery id, both only once the signature holds.

use http::HeaderMap;

use super::shared::{body_fields, string_field, BodyTime, SignatureHeader, Signer, TimeUnit};
use super::{BuildError, Scheme, SignatureEncoding, Verified, VerifyError};

const SIGNATURE: &str = "Authorization";

#[derive(Debug)]
pub(super) struct Push {
    signer: Signer,
    signature: SignatureHeader,
    /// What the provider signs ahead of the body.
    lead: Vec<u8>,
    /// The top-level body field that names the delivery, when the provider sends one.
    id_field: Option<&'static str>,
    time: BodyTime,
}

impl Push {
    /// The secret is used as its UTF-8 bytes (not hex-decoded), as for the providers' API calls;
    /// the time is the body's `timestamp`, in `unit`.
    pub(super) fn new(
        secret: &str,
        lead: Vec<u8>,
        id_field: Option<&'static str>,
        unit: TimeUnit,
        tolerance: i64,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            signer: Signer::new(secret.as_bytes())?,
            signature: SignatureHeader::plain(SIGNATURE, SignatureEncoding::Hex),
            lead,
            id_field,
            time: BodyTime {
                field: "timestamp",
                unit,
                tolerance,
            },
        })
    }
}

impl Scheme for Push {
    /// The id, when there is one, is read from the signed body.
    fn signs_delivery_id(&self) -> bool {
        true
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        let signature = self.signature.read(headers)?;
        self.signer.verify_one(&[&self.lead, body], &signature)?;
        // Only a signed body is read, once, and only for its time and its id.
        let [time, id] = body_fields(body, [self.time.field, self.id_field.unwrap_or_default()])
            .unwrap_or_default();
        self.time.check(time.as_ref(), now)?;
        Ok(Verified {
            delivery_id: self.id_field.and(id).and_then(|id| string_field(Some(id))),
        })
    }
}
