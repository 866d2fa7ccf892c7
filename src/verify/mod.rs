//! Webhook signature verification: one [`Scheme`] per provider, built from a source's `verify:`
//! config by [`build`].
//!
//! This file owns the trait, the error types, the registry of schemes ([`SCHEMES`]) and config
//! validation in [`build`]. What every scheme shares (header lookup, the keyed HMAC-SHA256 with
//! its constant-time comparison, signature decoding, the timestamp window) is in `shared.rs`;
//! the two forms several providers use are built once: the HMAC of the body in a header
//! (`hmac_sha256.rs`) and a marketplace push signed over a lead and the body (`push.rs`).
//! Each provider's wire format lives in its own file:
//!
//! - `standard_webhooks.rs`: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`), key from a `whsec_<base64>` secret.
//! - `bigcommerce.rs`: Standard Webhooks keyed with the raw bytes of the app client secret.
//! - `shopify.rs`: base64 HMAC of the body in `X-Shopify-Hmac-Sha256` or `shopify-hmac-sha256`.
//! - `stripe.rs`: `Stripe-Signature: t=..,v1=..`, keyed with the whole `whsec_` string.
//! - `github.rs`: `X-Hub-Signature-256: sha256=<hex>`.
//! - `hmac_sha256.rs`: any header carrying an HMAC-SHA256 of the body, hex or base64.
//! - `tokopedia.rs`: Tokopedia webhooks, `Authorization-Hmac` = hex HMAC of the body.
//! - `shopee.rs`: Shopee push, `Authorization` = hex HMAC of `callback URL|body`, the body's
//!   `timestamp` (seconds) within `tolerance`.
//! - `tiktok_shop.rs`: TikTok Shop push, `Authorization` = hex HMAC of `app key + body`, the
//!   body's `timestamp` (seconds) within `tolerance`.
//! - `lazada.rs`: Lazada push, the same format as TikTok Shop's, its `timestamp` in milliseconds.
//!
//! Signatures are only ever compared through [`hmac::Mac::verify_slice`], which is constant time,
//! so a timing side channel cannot reveal how much of a forged signature was right.

mod bigcommerce;
mod github;
mod hmac_sha256;
mod lazada;
mod push;
mod shared;
mod shopee;
mod shopify;
mod standard_webhooks;
mod stripe;
mod tiktok_shop;
mod tokopedia;

use crate::config::model::{SignatureEncoding, VerifyConfig};

use http::HeaderMap;

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
    #[error("stale timestamp: {age_secs} s old, more than the allowed {tolerance_secs} s")]
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
        build: |c, _| Ok(Box::new(shopify::new(&c.secret)?)),
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
        build: |c, _| Ok(Box::new(github::new(&c.secret)?)),
    },
    SchemeEntry {
        name: "hmac-sha256",
        timestamped: false,
        custom_header: true,
        needs: &[],
        build: |c, _| {
            let header = c.header.as_deref().ok_or(BuildError::HeaderMissing)?;
            Ok(Box::new(hmac_sha256::configured(
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
            Ok(Box::new(shopee::new(&c.secret, url, tolerance)?))
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

#[cfg(test)]
mod tests {
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
            "stale timestamp: 301 s old, more than the allowed 300 s"
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
