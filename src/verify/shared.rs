//! What the signature schemes share: the keyed HMAC-SHA256 and its constant-time comparison,
//! reading a header, a signature header and a body's fields, and the timestamp window.
//!
//! Holds no provider's wire format: those are in the scheme files, which build on this.

use std::borrow::Cow;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use super::{BuildError, VerifyError};
use crate::config::model::SignatureEncoding;

/// Every scheme here signs with HMAC-SHA256, whose output is this long.
pub(super) const SIGNATURE_LEN: usize = 32;

/// Standard alphabet; padding optional because some proxies and SDKs strip it.
pub(super) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// HMAC-SHA256 keyed once at build time and cloned per delivery, so the secret itself is not
/// kept around and the key schedule is not redone for each request.
#[derive(Clone)]
pub(super) struct Signer(Hmac<Sha256>);

impl Signer {
    pub(super) fn new(key: &[u8]) -> Result<Self, BuildError> {
        Hmac::<Sha256>::new_from_slice(key)
            .map(Self)
            .map_err(|_| BuildError::KeyUnusable)
    }

    /// HMAC of the concatenated `parts`, ready to be checked against offered signatures.
    pub(super) fn sign(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// Checks the single signature a scheme carries.
    pub(super) fn verify_one(&self, parts: &[&[u8]], signature: &[u8]) -> Result<(), VerifyError> {
        self.sign(parts)
            .verify_slice(signature)
            .map_err(|_| VerifyError::Mismatch)
    }

    /// Checks a list of offered signatures (providers send several while rotating keys); any one
    /// matching is enough. `None` entries were offered but could not be decoded: they match
    /// nothing, as the providers' own libraries treat them. An empty list is `Malformed`.
    pub(super) fn verify_any(
        &self,
        parts: &[&[u8]],
        offered: impl IntoIterator<Item = Option<Vec<u8>>>,
        none_offered: impl FnOnce() -> String,
    ) -> Result<(), VerifyError> {
        let mac = self.sign(parts);
        let mut any_offered = false;
        for signature in offered {
            any_offered = true;
            if signature.is_some_and(|sig| mac.clone().verify_slice(&sig).is_ok()) {
                return Ok(());
            }
        }
        if any_offered {
            Err(VerifyError::Mismatch)
        } else {
            Err(VerifyError::Malformed(none_offered()))
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

/// Looks `name` up case-insensitively. An empty value counts as absent: there is nothing in it
/// to verify or to deduplicate on.
pub(super) fn header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, VerifyError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| VerifyError::Malformed(format!("header {name} is not printable ASCII")))?
        .trim();
    Ok((!value.is_empty()).then_some(value))
}

pub(super) fn required_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<&'a str, VerifyError> {
    header(headers, name)?.ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// The first of `names` that is present. A delivery id is only a dedup hint, so an unreadable
/// one is dropped rather than failing an authentic delivery.
pub(super) fn delivery_id(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| header(headers, name).ok().flatten())
        .map(str::to_owned)
}

/// A top-level string field read by [`body_fields`], as a dedup hint: anything but a non-empty
/// string yields nothing rather than an error.
pub(super) fn string_field(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id),
        _ => None,
    }
}

/// The top-level fields `names` of an authentic JSON object body, each None when absent; None
/// when the body is not a JSON object. Only the named fields are built: the rest of the body is
/// scanned past without allocating, so a large order costs no more than its bytes. A name given
/// twice in the body counts as its last value, as a map built from the whole body would.
pub(super) fn body_fields<const N: usize>(
    body: &[u8],
    names: [&str; N],
) -> Option<[Option<serde_json::Value>; N]> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = Fields(&names).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(fields)
}

/// Reads the named fields of one JSON object and skips the others (see [`body_fields`]).
struct Fields<'n, const N: usize>(&'n [&'n str; N]);

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for Fields<'_, N> {
    type Value = [Option<serde_json::Value>; N];

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de, const N: usize> serde::de::Visitor<'de> for Fields<'_, N> {
    type Value = [Option<serde_json::Value>; N];

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Self::Value = std::array::from_fn(|_| None);
        while let Some(slot) = map.next_key_seed(FieldName(self.0))? {
            match slot {
                Some(i) => out[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A key of the object: which of the wanted names it is, compared without copying it.
struct FieldName<'n, const N: usize>(&'n [&'n str; N]);

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for FieldName<'_, N> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de, const N: usize> serde::de::Visitor<'de> for FieldName<'_, N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
}

/// The unit of a body's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeUnit {
    Seconds,
    Millis,
}

/// Where a push signs the time it was sent: a top-level number of its body (Shopee's, TikTok
/// Shop's and Lazada's `timestamp`), checked against `now ± tolerance` once the signature
/// holds, so a captured push cannot be replayed after the window (nor the dedup window).
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyTime {
    pub field: &'static str,
    pub unit: TimeUnit,
    pub tolerance: i64,
}

impl BodyTime {
    /// `value` is the body's `field` as [`body_fields`] read it (None: the body has none, or is
    /// not an object).
    pub(super) fn check(
        &self,
        value: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<(), VerifyError> {
        let field = self.field;
        let value =
            value.ok_or_else(|| VerifyError::Malformed(format!("the body has no `{field}`")))?;
        let n = value.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            VerifyError::Malformed(format!("the body's `{field}` is not a Unix time"))
        })?;
        let seconds = match self.unit {
            TimeUnit::Seconds => n,
            TimeUnit::Millis => n / 1000,
        };
        check_timestamp(seconds, now, self.tolerance)
    }
}

/// Decodes a single HMAC-SHA256 signature. A wrong encoding or length is `Malformed` (rather
/// than `Mismatch`) because it usually means a misconfigured sender, not a forgery.
pub(super) fn decode_signature(
    value: &str,
    encoding: SignatureEncoding,
    header: &str,
) -> Result<Vec<u8>, VerifyError> {
    let (decoded, encoding_name) = match encoding {
        SignatureEncoding::Hex => (hex::decode(value).ok(), "hex"),
        SignatureEncoding::Base64 => (BASE64.decode(value).ok(), "base64"),
    };
    decoded
        .filter(|sig| sig.len() == SIGNATURE_LEN)
        .ok_or_else(|| {
            VerifyError::Malformed(format!(
                "header {header} is not a {encoding_name} HMAC-SHA256 signature"
            ))
        })
}

/// Parses a Unix-seconds timestamp. Only plain digits are accepted, so that the text that was
/// signed and the number that is checked cannot disagree (`+17`, ` 17`, `017`).
pub(super) fn parse_timestamp(value: &str, what: &str) -> Result<i64, VerifyError> {
    let malformed = || VerifyError::Malformed(format!("{what} is not a Unix timestamp"));
    let canonical = value.bytes().all(|b| b.is_ascii_digit())
        && !value.is_empty()
        && (value == "0" || !value.starts_with('0'));
    if !canonical {
        return Err(malformed());
    }
    value.parse().map_err(|_| malformed())
}

/// Rejects timestamps outside `now ± tolerance`; both edges are still accepted.
pub(super) fn check_timestamp(timestamp: i64, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    let age = now.saturating_sub(timestamp);
    if age > tolerance {
        return Err(VerifyError::TooOld {
            age_secs: age,
            tolerance_secs: tolerance,
        });
    }
    let ahead = timestamp.saturating_sub(now);
    if ahead > tolerance {
        return Err(VerifyError::TooNew {
            ahead_secs: ahead,
            tolerance_secs: tolerance,
        });
    }
    Ok(())
}

/// Where a delivery carries its one signature: a header (the first present of several
/// spellings; a delivery with none is told of the last), its encoding, and a prefix before it.
#[derive(Debug)]
pub(super) struct SignatureHeader {
    pub names: Vec<Cow<'static, str>>,
    pub encoding: SignatureEncoding,
    pub prefix: Option<String>,
}

impl SignatureHeader {
    /// One header, no prefix.
    pub(super) fn plain(name: &'static str, encoding: SignatureEncoding) -> Self {
        SignatureHeader {
            names: vec![Cow::Borrowed(name)],
            encoding,
            prefix: None,
        }
    }

    /// The signature's bytes, decoded and checked for length.
    pub(super) fn read(&self, headers: &HeaderMap) -> Result<Vec<u8>, VerifyError> {
        let (name, mut value) = self.find(headers)?;
        if let Some(prefix) = &self.prefix {
            value = value.strip_prefix(prefix.as_str()).ok_or_else(|| {
                VerifyError::Malformed(format!("header {name} must start with {prefix}"))
            })?;
        }
        decode_signature(value, self.encoding, name)
    }

    fn find<'a>(&'a self, headers: &'a HeaderMap) -> Result<(&'a str, &'a str), VerifyError> {
        for name in &self.names {
            if let Some(value) = header(headers, name)? {
                return Ok((name, value));
            }
        }
        let last = self.names.last().map_or("", |n| n.as_ref());
        Err(VerifyError::MissingHeader(last.to_owned()))
    }
}

#[cfg(test)]
pub(super) mod test_support {
    use hmac::{Hmac, Mac};
    use http::{HeaderMap, HeaderName, HeaderValue};
    use sha2::Sha256;

    /// Header names as providers spell them; `HeaderName::from_bytes` lowercases like the server.
    pub(in crate::verify) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Independent of `Signer`, so tests do not check the code against itself.
    pub(in crate::verify) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::headers;
    use super::*;

    #[test]
    fn body_fields_reads_only_top_level_names() {
        let body = br#"{"data":{"timestamp":1,"id":"inner"},"id":"evt_1","timestamp":1700000000}"#;
        let [time, id, absent] = body_fields(body, ["timestamp", "id", "nope"]).unwrap();
        assert_eq!(time.and_then(|t| t.as_i64()), Some(1_700_000_000));
        assert_eq!(string_field(id), Some("evt_1".to_owned()));
        assert_eq!(absent, None);
        // The last of a repeated name counts, as in a map of the whole body.
        let [time] = body_fields(br#"{"timestamp":1,"timestamp":2}"#, ["timestamp"]).unwrap();
        assert_eq!(time.and_then(|t| t.as_i64()), Some(2));
        // An escaped key is the same name.
        let [time] = body_fields(br#"{"time\u0073tamp":3}"#, ["timestamp"]).unwrap();
        assert_eq!(time.and_then(|t| t.as_i64()), Some(3));
        for not_an_object in [&b"[1]"[..], b"\"x\"", b"{\"a\":1} trailing", b"{", b""] {
            assert!(
                body_fields(not_an_object, ["a"]).is_none(),
                "{not_an_object:?}"
            );
        }
        assert_eq!(string_field(Some(serde_json::json!(""))), None);
        assert_eq!(string_field(Some(serde_json::json!(7))), None);
    }

    #[test]
    fn timestamp_window_includes_both_edges() {
        assert_eq!(check_timestamp(1000, 1300, 300), Ok(()));
        assert_eq!(check_timestamp(1000, 700, 300), Ok(()));
        assert_eq!(
            check_timestamp(1000, 1301, 300),
            Err(VerifyError::TooOld {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check_timestamp(1000, 699, 300),
            Err(VerifyError::TooNew {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        // Extreme values saturate instead of overflowing.
        assert!(matches!(
            check_timestamp(i64::MAX, i64::MIN, 300),
            Err(VerifyError::TooNew { .. })
        ));
        assert!(matches!(
            check_timestamp(0, i64::MAX, 300),
            Err(VerifyError::TooOld { .. })
        ));
    }

    #[test]
    fn timestamps_must_be_plain_digits() {
        assert_eq!(parse_timestamp("1614265330", "t"), Ok(1_614_265_330));
        assert_eq!(parse_timestamp("0", "t"), Ok(0));
        for bad in [
            "",
            "+1614265330",
            "-1",
            "01614265330",
            "16.5",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_timestamp(bad, "webhook-timestamp"),
                Err(VerifyError::Malformed(
                    "webhook-timestamp is not a Unix timestamp".into()
                )),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_empty_means_missing() {
        let map = headers(&[("X-GitHub-Delivery", " abc "), ("webhook-id", "")]);
        assert_eq!(header(&map, "x-github-delivery"), Ok(Some("abc")));
        assert_eq!(header(&map, "X-GITHUB-DELIVERY"), Ok(Some("abc")));
        assert_eq!(
            required_header(&map, "webhook-id"),
            Err(VerifyError::MissingHeader("webhook-id".into()))
        );
        assert_eq!(header(&map, "not a header name"), Ok(None));
    }

    #[test]
    fn non_ascii_header_is_malformed_but_only_drops_a_delivery_id() {
        let mut map = HeaderMap::new();
        map.insert(
            "x-github-delivery",
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(
            required_header(&map, "X-GitHub-Delivery"),
            Err(VerifyError::Malformed(
                "header X-GitHub-Delivery is not printable ASCII".into()
            ))
        );
        assert_eq!(delivery_id(&map, &["X-GitHub-Delivery"]), None);
    }

    #[test]
    fn signature_decoding_checks_encoding_and_length() {
        let sig = [7u8; SIGNATURE_LEN];
        assert_eq!(
            decode_signature(&hex::encode(sig), SignatureEncoding::Hex, "h"),
            Ok(sig.to_vec())
        );
        let unpadded = BASE64.encode(sig).trim_end_matches('=').to_owned();
        assert_eq!(
            decode_signature(&unpadded, SignatureEncoding::Base64, "h"),
            Ok(sig.to_vec())
        );
        assert_eq!(
            decode_signature(&hex::encode([7u8; 20]), SignatureEncoding::Hex, "X-Sig"),
            Err(VerifyError::Malformed(
                "header X-Sig is not a hex HMAC-SHA256 signature".into()
            ))
        );
        assert!(matches!(
            decode_signature("zz", SignatureEncoding::Hex, "h"),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn signer_never_shows_its_key() {
        let signer = Signer::new(b"top-secret-key").unwrap();
        assert_eq!(format!("{signer:?}"), "Signer(<redacted>)");
    }

    #[test]
    fn verify_any_distinguishes_nothing_offered_from_no_match() {
        let signer = Signer::new(b"k").unwrap();
        let good = super::test_support::hmac_sha256(b"k", b"ab");
        let parts: &[&[u8]] = &[b"a", b"b"];
        assert_eq!(
            signer.verify_any(parts, [None, Some(vec![0; 32]), Some(good)], String::new),
            Ok(())
        );
        assert_eq!(
            signer.verify_any(parts, [None, Some(vec![0; 32])], String::new),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            signer.verify_any(parts, [], || "none".to_owned()),
            Err(VerifyError::Malformed("none".into()))
        );
    }
}
