//! Every signature scheme (`verify`): arbitrary headers and bodies never panic a
//! scheme, and a delivery signed here the way each provider signs verifies, with its delivery
//! id, while the same delivery with one byte of the body changed does not.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use crossdock::config::model::{SignatureEncoding, VerifyConfig, VerifyScheme};
use crossdock::verify::{self, VerifyError};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

/// Every header name a scheme reads, so mutations reach the parsers and not only lookups.
const NAMES: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "shopify-hmac-sha256",
    "X-Shopify-Hmac-Sha256",
    "shopify-webhook-id",
    "X-Shopify-Webhook-Id",
    "Stripe-Signature",
    "X-Hub-Signature-256",
    "X-GitHub-Delivery",
    "X-Signature",
];

#[derive(Arbitrary, Debug)]
struct Input {
    scheme: u8,
    secret: String,
    key: Vec<u8>,
    header: Option<String>,
    base64: bool,
    prefix: Option<String>,
    tolerance: Option<String>,
    headers: Vec<(u8, String)>,
    extra: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    id: String,
    timestamp: i64,
    now: i64,
}

fuzz_target!(|input: Input| {
    let scheme = match input.scheme % 6 {
        0 => VerifyScheme::StandardWebhooks,
        1 => VerifyScheme::Bigcommerce,
        2 => VerifyScheme::Shopify,
        3 => VerifyScheme::Stripe,
        4 => VerifyScheme::Github,
        _ => VerifyScheme::HmacSha256,
    };
    let encoding = input.base64.then_some(SignatureEncoding::Base64);

    // 1. Whatever the config and the delivery, build and verify answer without panicking.
    let config = VerifyConfig {
        scheme,
        secret: input.secret.clone(),
        header: input.header.clone(),
        encoding,
        prefix: input.prefix.clone(),
        tolerance: input.tolerance.clone(),
    };
    if let Ok(built) = verify::build(&config) {
        let mut headers = HeaderMap::new();
        for (i, value) in &input.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.append(NAMES[usize::from(*i) % NAMES.len()], v);
            }
        }
        for (name, value) in &input.extra {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(n, v);
            }
        }
        let _ = built.verify(&headers, &input.body, input.now);
        let _ = built.signs_delivery_id();
    }

    // 2. A delivery signed as the provider signs it verifies.
    signed_delivery_verifies(scheme, &input);
});

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(e) => panic!("HMAC takes any key: {e}"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn signed_delivery_verifies(scheme: VerifyScheme, input: &Input) {
    let b64 = base64::engine::general_purpose::STANDARD;
    // Header values are trimmed printable ASCII: an id or secret outside that is not one a
    // provider sends, so the property is only claimed for ids it could send.
    let id: String = input.id.chars().filter(|c| c.is_ascii_graphic()).collect();
    let timestamp = input.timestamp.rem_euclid(4_000_000_000);
    let body = &input.body;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        let v = HeaderValue::from_str(&value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        headers.insert(name, v);
    };
    let mut config = VerifyConfig {
        scheme,
        secret: String::new(),
        header: None,
        encoding: None,
        prefix: None,
        tolerance: None,
    };
    let expected_id: Option<String>;
    match scheme {
        VerifyScheme::StandardWebhooks | VerifyScheme::Bigcommerce => {
            if id.is_empty() {
                return;
            }
            let key = if scheme == VerifyScheme::StandardWebhooks {
                if input.key.is_empty() {
                    return;
                }
                config.secret = format!("whsec_{}", b64.encode(&input.key));
                input.key.clone()
            } else {
                if input.secret.is_empty() {
                    return;
                }
                config.secret = input.secret.clone();
                input.secret.as_bytes().to_vec()
            };
            let ts = timestamp.to_string();
            let sig = hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            set("webhook-id", id.clone());
            set("webhook-timestamp", ts);
            set(
                "webhook-signature",
                format!("v1a,xyz v1,{}", b64.encode(sig)),
            );
            expected_id = Some(id.clone());
        }
        VerifyScheme::Shopify => {
            if input.secret.is_empty() {
                return;
            }
            config.secret = input.secret.clone();
            set(
                "X-Shopify-Hmac-Sha256",
                b64.encode(hmac(input.secret.as_bytes(), &[body])),
            );
            if !id.is_empty() {
                set("X-Shopify-Webhook-Id", id.clone());
            }
            expected_id = (!id.is_empty()).then(|| id.clone());
        }
        VerifyScheme::Stripe => {
            if input.secret.is_empty() {
                return;
            }
            config.secret = input.secret.clone();
            let ts = timestamp.to_string();
            let sig = hmac(input.secret.as_bytes(), &[ts.as_bytes(), b".", body]);
            set(
                "Stripe-Signature",
                format!("t={ts},v1={},v0=00", hex::encode(sig)),
            );
            expected_id = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                .filter(|s| !s.is_empty());
        }
        VerifyScheme::Github => {
            if input.secret.is_empty() {
                return;
            }
            config.secret = input.secret.clone();
            set(
                "X-Hub-Signature-256",
                format!(
                    "sha256={}",
                    hex::encode(hmac(input.secret.as_bytes(), &[body]))
                ),
            );
            if !id.is_empty() {
                set("X-GitHub-Delivery", id.clone());
            }
            expected_id = (!id.is_empty()).then(|| id.clone());
        }
        VerifyScheme::HmacSha256 => {
            if input.secret.is_empty() {
                return;
            }
            config.secret = input.secret.clone();
            config.header = Some("X-Signature".into());
            let prefix: String = input
                .prefix
                .as_deref()
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .collect();
            let sig = hmac(input.secret.as_bytes(), &[body]);
            let encoded = if input.base64 {
                config.encoding = Some(SignatureEncoding::Base64);
                b64.encode(sig)
            } else {
                hex::encode(sig)
            };
            if !prefix.is_empty() {
                config.prefix = Some(prefix.clone());
            }
            set("X-Signature", format!("{prefix}{encoded}"));
            expected_id = None;
        }
    }
    let built = verify::build(&config).unwrap_or_else(|e| panic!("{config:?}: {e}"));
    match built.verify(&headers, body, timestamp) {
        Ok(v) => assert_eq!(v.delivery_id, expected_id, "delivery id"),
        Err(e) => panic!("{scheme:?}: a correctly signed delivery was refused: {e}"),
    }
    // One changed byte of the body, and the signature no longer matches.
    if let Some(first) = body.first() {
        let mut altered = body.clone();
        altered[0] = first.wrapping_add(1);
        assert_eq!(
            built.verify(&headers, &altered, timestamp).err(),
            Some(VerifyError::Mismatch),
            "{scheme:?}: an altered body was not refused"
        );
    }
}
