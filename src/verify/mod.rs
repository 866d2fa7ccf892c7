//! Webhook signature verification: one [`Scheme`] per provider, built from a source's `verify:`
//! config by [`build`].
//!
//! This file owns the trait, the error type, the registry of schemes ([`SCHEMES`]), config
//! validation in [`build`], and the pieces every scheme shares: header lookup, the keyed
//! HMAC-SHA256 with its constant-time comparison, signature decoding and the timestamp window.
//! Each provider's wire format lives in its own file:
//!
//! - `standard_webhooks.rs`: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`), key from a `whsec_<base64>` secret.
//! - `bigcommerce.rs`: Standard Webhooks keyed with the raw bytes of the app client secret.
//! - `shopify.rs`: base64 HMAC of the body in `X-Shopify-Hmac-Sha256` or `shopify-hmac-sha256`.
//! - `stripe.rs`: `Stripe-Signature: t=..,v1=..`, keyed with the whole `whsec_` string.
//! - `github.rs`: `X-Hub-Signature-256: sha256=<hex>`.
//! - `hmac_sha256.rs`: any header carrying an HMAC-SHA256 of the body, hex or base64.
//! - `shopee.rs`: Shopee push, `Authorization` = hex HMAC of `callback URL|body`, the body's
//!   `timestamp` (seconds) within `tolerance`.
//! - `tiktok_shop.rs`: TikTok Shop push, `Authorization` = hex HMAC of `app key + body`, the
//!   body's `timestamp` (seconds) within `tolerance`.
//! - `lazada.rs`: Lazada push, the same format as TikTok Shop's, its `timestamp` in milliseconds.
//! - `tokopedia.rs`: Tokopedia webhooks, `Authorization-Hmac` = hex HMAC of the body.
//!
//! Signatures are only ever compared through [`hmac::Mac::verify_slice`], which is constant time,
//! so a timing side channel cannot reveal how much of a forged signature was right.

mod bigcommerce;
mod github;
mod hmac_sha256;
mod lazada;
mod shopee;
mod shopify;
mod standard_webhooks;
mod stripe;
mod tiktok_shop;
mod tokopedia;

use crate::config::model::{SignatureEncoding, VerifyConfig};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

/// One signature scheme, configured for one webhook source.
pub trait Scheme: Send + Sync {
    /// Checks one delivery. `now` is the current Unix time in seconds (passed in so tests are deterministic).
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, VerifyError>;

    /// Whether the signature covers the delivery id, so that a sender without the secret
    /// cannot change it. When it does not, anyone who saw one delivery can replay it under a
    /// new id (or none), and the id alone must not decide that a delivery is new.
    fn signs_delivery_id(&self) -> bool;
}

/// What a successful verification tells the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The provider's id for this delivery, for deduplication: `webhook-id` (standard-webhooks,
    /// bigcommerce), `X-Shopify-Webhook-Id`, `X-GitHub-Delivery`, Stripe's event id (the top-level
    /// "id" of the JSON body, e.g. evt_...). None when the provider sent none.
    pub delivery_id: Option<String>,
}

/// Why a delivery was rejected. Every message is safe to return in a 401 body: none of them
/// carries the secret or the signature we expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent (or empty).
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but cannot be parsed as the scheme's format.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but no offered signature matches: wrong secret or altered content.
    #[error("no offered signature matches the configured secret")]
    Mismatch,
    /// Authentic, but signed longer ago than the tolerance allows (a replay, or a clock far off).
    #[error("timestamp is {age_secs} s old, more than the allowed {tolerance_secs} s")]
    TooOld { age_secs: i64, tolerance_secs: i64 },
    /// Authentic, but signed further in the future than the tolerance allows (clock skew).
    #[error("timestamp is {ahead_secs} s in the future, more than the allowed {tolerance_secs} s")]
    TooNew {
        ahead_secs: i64,
        tolerance_secs: i64,
    },
}

/// Why a source's `verify:` cannot be built: a config error, located by the caller. No message
/// carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("verify: unknown scheme `{scheme}`, expected one of {expected}")]
    UnknownScheme { scheme: String, expected: String },
    #[error("verify: scheme {scheme} needs a non-empty `secret`")]
    EmptySecret { scheme: &'static str },
    #[error("verify: `tolerance` does not apply to scheme {scheme}, which signs no timestamp")]
    ToleranceNotSigned { scheme: &'static str },
    #[error("verify: `{option}` only applies to scheme hmac-sha256, not {scheme}")]
    OptionIgnored {
        option: &'static str,
        scheme: &'static str,
    },
    #[error("verify: `tolerance: {0}` is not a duration like 5m or 300s")]
    ToleranceNotDuration(String),
    #[error("verify: `tolerance: {0}` must be whole seconds")]
    ToleranceFractional(String),
    #[error("verify: scheme hmac-sha256 needs `header` (the header that carries the signature)")]
    HeaderMissing,
    #[error("verify: `header: {0}` is not a valid header name")]
    HeaderInvalid(String),
    #[error(
        "verify: a standard-webhooks secret must be `whsec_` followed by base64, as the \
         provider shows it"
    )]
    SecretNotBase64,
    #[error("verify: the standard-webhooks secret has an empty key after `whsec_`")]
    SecretEmptyKey,
    #[error("verify: the secret cannot be used as an HMAC key")]
    KeyUnusable,
    #[error("verify: scheme {scheme} needs `{option}` ({what})")]
    OptionMissing {
        option: &'static str,
        scheme: &'static str,
        what: &'static str,
    },
    #[error("verify: scheme {scheme} takes no `{option}`")]
    OptionNotTaken {
        option: &'static str,
        scheme: &'static str,
    },
    #[error(
        "verify: `callback_url: {0}` must be the absolute http(s) URL registered with the \
         provider, e.g. https://shop.example.com/hooks/shopee"
    )]
    CallbackUrlInvalid(String),
}

/// One signature scheme as `verify:` names it. [`SCHEMES`] lists them all; [`build`], the
/// names in messages and the check of `scheme:` when flows compile are read from it.
pub struct SchemeEntry {
    /// What `scheme:` says.
    pub name: &'static str,
    /// The scheme signs a timestamp, so `tolerance` applies to it.
    pub timestamped: bool,
    /// The scheme reads `header`, `encoding` and `prefix` (only the generic one does).
    pub custom_header: bool,
    /// Which of the provider-specific options ([`EXTRA_OPTIONS`]) the scheme needs; it refuses
    /// the others.
    pub needs: &'static [&'static str],
    /// Builds the scheme from the config and the tolerance in seconds, both already checked
    /// against the flags above.
    build: BuildFn,
}

/// A scheme's constructor: the config and the tolerance in seconds.
type BuildFn = fn(&VerifyConfig, i64) -> Result<Box<dyn Scheme>, BuildError>;

/// Every signature scheme, in the order they are listed to users.
pub const SCHEMES: &[SchemeEntry] = &[
    SchemeEntry {
        name: "standard-webhooks",
        timestamped: true,
        custom_header: false,
        needs: &[],
        build: |c, tolerance| {
            let s = standard_webhooks::StandardWebhooks::from_secret(&c.secret, tolerance)?;
            Ok(Box::new(s))
        },
    },
    SchemeEntry {
        name: "bigcommerce",
        timestamped: true,
        custom_header: false,
        needs: &[],
        build: |c, tolerance| {
            let s = bigcommerce::from_client_secret(&c.secret, tolerance)?;
            Ok(Box::new(s))
        },
    },
    SchemeEntry {
        name: "shopify",
        timestamped: false,
        custom_header: false,
        needs: &[],
        build: |c, _| Ok(Box::new(shopify::Shopify::new(&c.secret)?)),
    },
    SchemeEntry {
        name: "stripe",
        timestamped: true,
        custom_header: false,
        needs: &[],
        build: |c, tolerance| Ok(Box::new(stripe::Stripe::new(&c.secret, tolerance)?)),
    },
    SchemeEntry {
        name: "github",
        timestamped: false,
        custom_header: false,
        needs: &[],
        build: |c, _| Ok(Box::new(github::Github::new(&c.secret)?)),
    },
    SchemeEntry {
        name: "hmac-sha256",
        timestamped: false,
        custom_header: true,
        needs: &[],
        build: |c, _| {
            let header = c.header.as_deref().ok_or(BuildError::HeaderMissing)?;
            Ok(Box::new(hmac_sha256::HmacSha256::new(
                &c.secret,
                header,
                c.encoding.unwrap_or(SignatureEncoding::Hex),
                c.prefix.as_deref(),
            )?))
        },
    },
    SchemeEntry {
        name: "shopee",
        timestamped: true,
        custom_header: false,
        needs: &["callback_url"],
        build: |c, tolerance| {
            let url = c.callback_url.as_deref().unwrap_or_default();
            Ok(Box::new(shopee::Shopee::new(&c.secret, url, tolerance)?))
        },
    },
    SchemeEntry {
        name: "tiktok-shop",
        timestamped: true,
        custom_header: false,
        needs: &["app_key"],
        build: |c, tolerance| {
            let app_key = c.app_key.as_deref().unwrap_or_default();
            Ok(Box::new(tiktok_shop::new(&c.secret, app_key, tolerance)?))
        },
    },
    SchemeEntry {
        name: "lazada",
        timestamped: true,
        custom_header: false,
        needs: &["app_key"],
        build: |c, tolerance| {
            let app_key = c.app_key.as_deref().unwrap_or_default();
            Ok(Box::new(lazada::new(&c.secret, app_key, tolerance)?))
        },
    },
    SchemeEntry {
        name: "tokopedia",
        timestamped: false,
        custom_header: false,
        needs: &[],
        build: |c, _| Ok(Box::new(tokopedia::new(&c.secret)?)),
    },
];

/// Options only some providers' schemes read, with what each is (for the "needs" message).
pub const EXTRA_OPTIONS: [(&str, &str); 2] = [
    (
        "callback_url",
        "the public URL registered with the provider, which it signs",
    ),
    (
        "app_key",
        "the app key, which the provider signs ahead of the body",
    ),
];

/// The registered scheme called `name`.
pub fn scheme(name: &str) -> Option<&'static SchemeEntry> {
    SCHEMES.iter().find(|s| s.name == name)
}

/// The names of every scheme, in [`SCHEMES`]' order.
pub fn scheme_names() -> impl Iterator<Item = &'static str> + Clone {
    SCHEMES.iter().map(|s| s.name)
}

/// Builds the scheme a source's `verify:` asks for. Errors (e.g. a `whsec_` secret that is not
/// base64, a `hmac-sha256` without `header`, an empty secret) are config errors with a clear message.
pub fn build(config: &VerifyConfig) -> Result<Box<dyn Scheme>, BuildError> {
    let Some(entry) = scheme(config.scheme.as_str()) else {
        let names: Vec<String> = scheme_names().map(|n| format!("`{n}`")).collect();
        return Err(BuildError::UnknownScheme {
            scheme: config.scheme.as_str().to_owned(),
            expected: names.join(", "),
        });
    };
    let name = entry.name;
    if config.secret.is_empty() {
        return Err(BuildError::EmptySecret { scheme: name });
    }
    // Options a scheme would silently ignore are rejected, so a config that looks stricter than
    // it is (say a `header:` on github) fails loudly instead.
    if !entry.timestamped && config.tolerance.is_some() {
        return Err(BuildError::ToleranceNotSigned { scheme: name });
    }
    if !entry.custom_header {
        let generic_only = [
            ("header", config.header.is_some()),
            ("encoding", config.encoding.is_some()),
            ("prefix", config.prefix.is_some()),
        ];
        if let Some((field, _)) = generic_only.iter().find(|(_, set)| *set) {
            return Err(BuildError::OptionIgnored {
                option: field,
                scheme: name,
            });
        }
    }
    for (option, what) in EXTRA_OPTIONS {
        let given = match option {
            "callback_url" => config.callback_url.as_deref(),
            _ => config.app_key.as_deref(),
        }
        .is_some_and(|v| !v.is_empty());
        let needed = entry.needs.contains(&option);
        if needed && !given {
            return Err(BuildError::OptionMissing {
                option,
                scheme: name,
                what,
            });
        }
        if given && !needed {
            return Err(BuildError::OptionNotTaken {
                option,
                scheme: name,
            });
        }
    }
    let tolerance = parse_tolerance(config.tolerance.as_deref())?;
    (entry.build)(config, tolerance)
}

/// The window the Standard Webhooks and Stripe libraries use.
const DEFAULT_TOLERANCE_SECS: i64 = 300;

fn parse_tolerance(tolerance: Option<&str>) -> Result<i64, BuildError> {
    let Some(text) = tolerance else {
        return Ok(DEFAULT_TOLERANCE_SECS);
    };
    let invalid = || BuildError::ToleranceNotDuration(text.to_owned());
    let duration = humantime::parse_duration(text.trim()).map_err(|_| invalid())?;
    // Timestamps are whole seconds, so a fractional window would only be rounded behind the
    // user's back.
    if duration.subsec_nanos() != 0 {
        return Err(BuildError::ToleranceFractional(text.to_owned()));
    }
    i64::try_from(duration.as_secs()).map_err(|_| invalid())
}

/// Every scheme here signs with HMAC-SHA256, whose output is this long.
const SIGNATURE_LEN: usize = 32;

/// Standard alphabet; padding optional because some proxies and SDKs strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// HMAC-SHA256 keyed once at build time and cloned per delivery, so the secret itself is not
/// kept around and the key schedule is not redone for each request.
#[derive(Clone)]
struct Signer(Hmac<Sha256>);

impl Signer {
    fn new(key: &[u8]) -> Result<Self, BuildError> {
        Hmac::<Sha256>::new_from_slice(key)
            .map(Self)
            .map_err(|_| BuildError::KeyUnusable)
    }

    /// HMAC of the concatenated `parts`, ready to be checked against offered signatures.
    fn sign(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// Checks the single signature a scheme carries.
    fn verify_one(&self, parts: &[&[u8]], signature: &[u8]) -> Result<(), VerifyError> {
        self.sign(parts)
            .verify_slice(signature)
            .map_err(|_| VerifyError::Mismatch)
    }

    /// Checks a list of offered signatures (providers send several while rotating keys); any one
    /// matching is enough. `None` entries were offered but could not be decoded: they match
    /// nothing, as the providers' own libraries treat them. An empty list is `Malformed`.
    fn verify_any(
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
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, VerifyError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| VerifyError::Malformed(format!("header {name} is not printable ASCII")))?
        .trim();
    Ok((!value.is_empty()).then_some(value))
}

fn required_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    header(headers, name)?.ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// The first of `names` that is present. A delivery id is only a dedup hint, so an unreadable
/// one is dropped rather than failing an authentic delivery.
fn delivery_id(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| header(headers, name).ok().flatten())
        .map(str::to_owned)
}

/// A top-level string field of an authentic JSON body, as a dedup hint: a body that is not a
/// JSON object with a non-empty string there yields nothing rather than an error.
fn body_string_field(
    object: Option<&serde_json::Map<String, serde_json::Value>>,
    field: &str,
) -> Option<String> {
    match object?.get(field)? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }
}

/// An authentic JSON body's top-level fields; None when the body is not a JSON object.
fn body_object(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_slice(body).ok()
}

/// The unit of a body's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUnit {
    Seconds,
    Millis,
}

/// Where a push signs the time it was sent: a top-level number of its body (Shopee's, TikTok
/// Shop's and Lazada's `timestamp`), checked against `now ± tolerance` once the signature
/// holds, so a captured push cannot be replayed after the window (nor the dedup window).
#[derive(Debug, Clone, Copy)]
struct BodyTime {
    field: &'static str,
    unit: TimeUnit,
    tolerance: i64,
}

impl BodyTime {
    fn check(
        &self,
        body: Option<&serde_json::Map<String, serde_json::Value>>,
        now: i64,
    ) -> Result<(), VerifyError> {
        let field = self.field;
        let value = body
            .and_then(|b| b.get(field))
            .ok_or_else(|| VerifyError::Malformed(format!("the body has no `{field}`")))?;
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
fn decode_signature(
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
fn parse_timestamp(value: &str, what: &str) -> Result<i64, VerifyError> {
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
fn check_timestamp(timestamp: i64, now: i64, tolerance: i64) -> Result<(), VerifyError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod test_support {
    use hmac::{Hmac, Mac};
    use http::{HeaderMap, HeaderName, HeaderValue};
    use sha2::Sha256;

    /// Header names as providers spell them; `HeaderName::from_bytes` lowercases like the server.
    pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
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
    pub(super) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::test_support::headers;
    use super::*;
    use crate::config::model::VerifyScheme;

    fn config(scheme: &str, secret: &str) -> VerifyConfig {
        VerifyConfig {
            scheme: VerifyScheme::from(scheme),
            secret: secret.to_owned(),
            header: None,
            encoding: None,
            prefix: None,
            tolerance: None,
            callback_url: None,
            app_key: None,
        }
    }

    fn build_err(config: &VerifyConfig) -> String {
        match build(config) {
            Ok(_) => panic!("config should be rejected: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_scheme_builds_from_a_minimal_config() {
        for scheme in [
            "standard-webhooks",
            "bigcommerce",
            "shopify",
            "stripe",
            "github",
        ] {
            assert!(build(&config(scheme, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).is_ok());
        }
        let mut generic = config("hmac-sha256", "s3cret");
        generic.header = Some("X-Signature".into());
        assert!(build(&generic).is_ok());
    }

    #[test]
    fn unknown_scheme_lists_the_registry() {
        let message = build_err(&config("shopfy", "s3cret"));
        assert_eq!(
            message,
            "verify: unknown scheme `shopfy`, expected one of `standard-webhooks`, \
             `bigcommerce`, `shopify`, `stripe`, `github`, `hmac-sha256`, `shopee`, \
             `tiktok-shop`, `lazada`, `tokopedia`"
        );
    }

    #[test]
    fn registry_names_are_unique() {
        let mut names: Vec<&str> = scheme_names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCHEMES.len());
    }

    #[test]
    fn empty_secret_is_a_config_error() {
        let message = build_err(&config("github", ""));
        assert_eq!(message, "verify: scheme github needs a non-empty `secret`");
    }

    #[test]
    fn whsec_secret_that_is_not_base64_is_a_config_error_without_the_secret() {
        let message = build_err(&config("standard-webhooks", "whsec_not*base64!"));
        assert!(message.contains("base64"), "{message}");
        assert!(!message.contains("not*base64!"), "{message}");
    }

    #[test]
    fn generic_scheme_needs_a_valid_header() {
        let message = build_err(&config("hmac-sha256", "s3cret"));
        assert!(message.contains("needs `header`"), "{message}");

        let mut bad = config("hmac-sha256", "s3cret");
        bad.header = Some("X Signature".into());
        assert!(build_err(&bad).contains("not a valid header name"));
    }

    #[test]
    fn options_a_scheme_would_ignore_are_rejected() {
        let mut github = config("github", "s3cret");
        github.header = Some("X-Other".into());
        assert_eq!(
            build_err(&github),
            "verify: `header` only applies to scheme hmac-sha256, not github"
        );

        let mut shopify = config("shopify", "s3cret");
        shopify.tolerance = Some("5m".into());
        assert!(build_err(&shopify).contains("`tolerance` does not apply to scheme shopify"));

        let mut stripe = config("stripe", "whsec_x");
        stripe.encoding = Some(SignatureEncoding::Base64);
        assert!(build_err(&stripe).contains("`encoding` only applies"));
    }

    #[test]
    fn tolerance_is_a_humantime_duration_defaulting_to_five_minutes() {
        assert_eq!(parse_tolerance(None), Ok(300));
        assert_eq!(parse_tolerance(Some("5m")), Ok(300));
        assert_eq!(parse_tolerance(Some("300s")), Ok(300));
        assert_eq!(parse_tolerance(Some("1h 30s")), Ok(3630));
        assert_eq!(parse_tolerance(Some("0s")), Ok(0));
        assert!(parse_tolerance(Some("five minutes"))
            .unwrap_err()
            .to_string()
            .contains("not a duration"));
        assert!(parse_tolerance(Some("1500ms"))
            .unwrap_err()
            .to_string()
            .contains("whole seconds"));

        let mut stripe = config("stripe", "whsec_x");
        stripe.tolerance = Some("soon".into());
        assert!(build_err(&stripe).contains("`tolerance: soon`"));
    }

    #[test]
    fn config_deserializes_from_kebab_case() {
        let config: VerifyConfig = serde_json::from_str(
            r#"{"scheme":"hmac-sha256","secret":"s","header":"X-Sig","encoding":"base64","prefix":"sha256=","tolerance":"5m"}"#,
        )
        .unwrap();
        assert_eq!(config.scheme, VerifyScheme::from("hmac-sha256"));
        assert_eq!(config.encoding, Some(SignatureEncoding::Base64));
        let config: VerifyConfig =
            serde_json::from_str(r#"{"scheme":"standard-webhooks","secret":"s"}"#).unwrap();
        assert_eq!(config.scheme, VerifyScheme::from("standard-webhooks"));
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

    #[test]
    fn error_messages_are_plain() {
        assert_eq!(
            VerifyError::MissingHeader("Stripe-Signature".into()).to_string(),
            "missing header Stripe-Signature"
        );
        assert_eq!(
            VerifyError::Mismatch.to_string(),
            "no offered signature matches the configured secret"
        );
        assert_eq!(
            VerifyError::TooOld {
                age_secs: 301,
                tolerance_secs: 300
            }
            .to_string(),
            "timestamp is 301 s old, more than the allowed 300 s"
        );
        assert_eq!(
            VerifyError::TooNew {
                ahead_secs: 301,
                tolerance_secs: 300
            }
            .to_string(),
            "timestamp is 301 s in the future, more than the allowed 300 s"
        );
    }
}
