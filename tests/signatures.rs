//! Webhook signature conformance: every vector in `tests/fixtures/webhooks/*.json` (copied from
//! the shared conformance set) is run through `build` + `Scheme::verify`, and every valid one is
//! also bent into the failing cases each scheme must reject.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use crossdock::config::model::{VerifyConfig, VerifyScheme};
use crossdock::verify::{build, Scheme, Verified, VerifyError};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::Sha256;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks");
/// "Now" for schemes that sign no timestamp: any value must do.
const UNTIMED_NOW: i64 = 1_700_000_000;
/// Delivery ids the tests add for providers that send them in a header the vectors omit.
const SHOPIFY_WEBHOOK_ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
const GITHUB_DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Bigcommerce,
    Github,
    Shopify,
    Stripe,
}

/// One vector: the file's top level (the primary vector) or an entry of `extra_vectors`.
#[derive(Debug, Clone, Deserialize)]
struct Vector {
    #[serde(default)]
    name: Option<String>,
    secret: String,
    body: String,
    #[serde(default)]
    extra_headers: BTreeMap<String, String>,
    expected_header: String,
    /// true / false; null = implementation choice. Absent on the primary, which is valid.
    #[serde(default)]
    expect_valid: Option<bool>,
    #[serde(default)]
    verify_at_unix: Option<i64>,
    #[serde(default)]
    tolerance_seconds: Option<i64>,
}

#[derive(Debug, Clone)]
struct Case {
    provider: Provider,
    /// Header that carries the signature (the file's `header_name`).
    header_name: String,
    name: String,
    vector: Vector,
}

/// What a vector must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Valid,
    Mismatch,
    Malformed,
    TooOld,
    TooNew,
}

fn load(file: &str, provider: Provider) -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let header_name = root["header_name"].as_str().unwrap().to_owned();
    let mut primary: Vector = serde_json::from_value(root.clone()).unwrap();
    primary.expect_valid = Some(true);
    let extras: Vec<Vector> = serde_json::from_value(root["extra_vectors"].clone()).unwrap();
    std::iter::once(primary)
        .chain(extras)
        .enumerate()
        .map(|(index, vector)| Case {
            provider,
            header_name: header_name.clone(),
            name: format!(
                "{file}[{index}] {}",
                vector.name.as_deref().unwrap_or("primary")
            ),
            vector,
        })
        .collect()
}

fn all_cases() -> Vec<Case> {
    [
        ("bigcommerce.json", Provider::Bigcommerce),
        ("github.json", Provider::Github),
        ("shopify.json", Provider::Shopify),
        ("stripe.json", Provider::Stripe),
    ]
    .into_iter()
    .flat_map(|(file, provider)| load(file, provider))
    .collect()
}

fn cases(provider: Provider) -> Vec<Case> {
    all_cases()
        .into_iter()
        .filter(|case| case.provider == provider)
        .collect()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

impl Case {
    fn expectation(&self) -> Expect {
        let name = self.vector.name.as_deref().unwrap_or("primary");
        match (self.vector.expect_valid, name) {
            (Some(true), _) => Expect::Valid,
            // Implementation choice: signatures are compared as decoded bytes, so hex case is
            // irrelevant.
            (None, "uppercase hex is not what GitHub sends") => Expect::Valid,
            (Some(false), "Standard Webhooks vector, one char of signature changed must fail") => {
                Expect::Mismatch
            }
            (Some(false), "timestamp too new must fail") => Expect::TooNew,
            (Some(false), "timestamp too old must fail") => Expect::TooOld,
            (Some(false), "tampered body must fail") => Expect::Mismatch,
            (Some(false), "missing sha256= prefix") => Expect::Malformed,
            (Some(false), "re-serialised body must fail") => Expect::Mismatch,
            (Some(false), "hex instead of base64 must fail") => Expect::Malformed,
            (Some(false), "too old: same header verified 301 s later must fail") => Expect::TooOld,
            (Some(false), "signature with wrong timestamp must fail") => Expect::Mismatch,
            (Some(false), "no v1 scheme must fail") => Expect::Malformed,
            (other, _) => panic!(
                "{}: expect_valid {other:?} has no expected outcome here; add one",
                self.name
            ),
        }
    }

    /// The official Standard Webhooks vectors (a `whsec_` key) sit in bigcommerce.json; they
    /// are run through the standard-webhooks scheme, the BigCommerce ones through bigcommerce.
    fn scheme(&self) -> VerifyScheme {
        match self.provider {
            Provider::Bigcommerce if self.vector.secret.starts_with("whsec_") => {
                VerifyScheme::from("standard-webhooks")
            }
            Provider::Bigcommerce => VerifyScheme::from("bigcommerce"),
            Provider::Github => VerifyScheme::from("github"),
            Provider::Shopify => VerifyScheme::from("shopify"),
            Provider::Stripe => VerifyScheme::from("stripe"),
        }
    }

    fn timestamped(&self) -> bool {
        matches!(self.provider, Provider::Bigcommerce | Provider::Stripe)
    }

    fn tolerance(&self) -> i64 {
        self.vector.tolerance_seconds.unwrap_or(300)
    }

    fn config_with_secret(&self, secret: &str) -> VerifyConfig {
        VerifyConfig {
            scheme: self.scheme(),
            secret: secret.to_owned(),
            header: None,
            encoding: None,
            prefix: None,
            tolerance: self.timestamped().then(|| format!("{}s", self.tolerance())),
            callback_url: None,
            app_key: None,
        }
    }

    fn verifier(&self) -> Box<dyn Scheme> {
        build(&self.config_with_secret(&self.vector.secret)).unwrap()
    }

    /// A secret of the same kind as the vector's, but not it.
    fn wrong_secret(&self) -> String {
        if self.scheme() == VerifyScheme::from("standard-webhooks") {
            format!("whsec_{}", BASE64.encode("some-other-key"))
        } else {
            format!("{}-rotated", self.vector.secret)
        }
    }

    fn now(&self) -> i64 {
        self.vector.verify_at_unix.unwrap_or(UNTIMED_NOW)
    }

    fn headers(&self) -> HeaderMap {
        let mut pairs: Vec<(String, String)> = vec![(
            self.header_name.clone(),
            self.vector.expected_header.clone(),
        )];
        pairs.extend(self.vector.extra_headers.clone());
        match self.provider {
            Provider::Shopify => {
                pairs.push(("X-Shopify-Webhook-Id".into(), SHOPIFY_WEBHOOK_ID.into()));
            }
            Provider::Github => pairs.push(("X-GitHub-Delivery".into(), GITHUB_DELIVERY.into())),
            Provider::Bigcommerce | Provider::Stripe => {}
        }
        to_header_map(&pairs)
    }

    fn headers_with(&self, name: &str, value: Option<&str>) -> HeaderMap {
        let mut headers = self.headers();
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        match value {
            Some(value) => {
                headers.insert(name, HeaderValue::from_str(value).unwrap());
            }
            None => {
                assert!(
                    headers.remove(&name).is_some(),
                    "{}: no header {name}",
                    self.name
                );
            }
        }
        headers
    }

    /// The headers a delivery cannot be verified without, named as `MissingHeader` names them.
    fn required_headers(&self) -> Vec<&str> {
        match self.provider {
            Provider::Bigcommerce => vec!["webhook-id", "webhook-timestamp", "webhook-signature"],
            Provider::Github => vec!["X-Hub-Signature-256"],
            Provider::Shopify => vec!["X-Shopify-Hmac-Sha256"],
            Provider::Stripe => vec!["Stripe-Signature"],
        }
    }

    /// The signed Unix timestamp, read from wherever the scheme carries it.
    fn timestamp(&self) -> i64 {
        let text = match self.provider {
            Provider::Bigcommerce => self.vector.extra_headers["webhook-timestamp"].clone(),
            Provider::Stripe => self
                .vector
                .expected_header
                .split(',')
                .find_map(|item| item.strip_prefix("t="))
                .unwrap()
                .to_owned(),
            Provider::Github | Provider::Shopify => panic!("{}: no timestamp", self.name),
        };
        text.parse().unwrap()
    }

    fn expected_delivery_id(&self) -> Option<String> {
        match self.provider {
            Provider::Bigcommerce => Some(self.vector.extra_headers["webhook-id"].clone()),
            Provider::Github => Some(GITHUB_DELIVERY.into()),
            Provider::Shopify => Some(SHOPIFY_WEBHOOK_ID.into()),
            Provider::Stripe => {
                let body: serde_json::Value = serde_json::from_str(&self.vector.body).unwrap();
                Some(body["id"].as_str().unwrap().to_owned())
            }
        }
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        self.verifier().verify(headers, body, now)
    }

    fn verify_as_given(&self) -> Result<Verified, VerifyError> {
        self.verify(&self.headers(), self.vector.body.as_bytes(), self.now())
    }
}

fn to_header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// The vector's own outcome, then (for valid vectors) each way to break it.
fn check_vector(case: &Case) {
    let name = &case.name;
    let result = case.verify_as_given();
    match case.expectation() {
        Expect::Valid => {
            assert_eq!(
                result,
                Ok(Verified {
                    delivery_id: case.expected_delivery_id()
                }),
                "{name}"
            );
            check_failures(case);
        }
        Expect::Mismatch => assert_eq!(result, Err(VerifyError::Mismatch), "{name}"),
        Expect::Malformed => {
            assert!(
                matches!(result, Err(VerifyError::Malformed(_))),
                "{name}: {result:?}"
            );
        }
        Expect::TooOld => assert_eq!(
            result,
            Err(VerifyError::TooOld {
                age_secs: case.now() - case.timestamp(),
                tolerance_secs: case.tolerance()
            }),
            "{name}"
        ),
        Expect::TooNew => assert_eq!(
            result,
            Err(VerifyError::TooNew {
                ahead_secs: case.timestamp() - case.now(),
                tolerance_secs: case.tolerance()
            }),
            "{name}"
        ),
    }
}

fn check_failures(case: &Case) {
    let name = &case.name;
    let body = case.vector.body.as_bytes();
    let now = case.now();

    // One byte of the body changed.
    let mut tampered = body.to_vec();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    assert_eq!(
        case.verify(&case.headers(), &tampered, now),
        Err(VerifyError::Mismatch),
        "{name}: tampered body"
    );

    // Another secret of the same kind.
    let wrong = build(&case.config_with_secret(&case.wrong_secret())).unwrap();
    assert_eq!(
        wrong.verify(&case.headers(), body, now),
        Err(VerifyError::Mismatch),
        "{name}: wrong secret"
    );

    for header in case.required_headers() {
        assert_eq!(
            case.verify(&case.headers_with(header, None), body, now),
            Err(VerifyError::MissingHeader(header.to_owned())),
            "{name}: without {header}"
        );
        assert_eq!(
            case.verify(&case.headers_with(header, Some("")), body, now),
            Err(VerifyError::MissingHeader(header.to_owned())),
            "{name}: empty {header}"
        );
    }

    let garbage = case.verify(
        &case.headers_with(&case.header_name, Some("not a signature")),
        body,
        now,
    );
    assert!(
        matches!(garbage, Err(VerifyError::Malformed(_))),
        "{name}: malformed signature header gave {garbage:?}"
    );

    if case.timestamped() {
        check_time_window(case);
    }
}

fn check_time_window(case: &Case) {
    let name = &case.name;
    let body = case.vector.body.as_bytes();
    let headers = case.headers();
    let t = case.timestamp();
    let tolerance = case.tolerance();

    assert!(
        case.verify(&headers, body, t + tolerance).is_ok(),
        "{name}: oldest edge"
    );
    assert!(
        case.verify(&headers, body, t - tolerance).is_ok(),
        "{name}: newest edge"
    );
    assert_eq!(
        case.verify(&headers, body, t + tolerance + 1),
        Err(VerifyError::TooOld {
            age_secs: tolerance + 1,
            tolerance_secs: tolerance
        }),
        "{name}: stale"
    );
    assert_eq!(
        case.verify(&headers, body, t - tolerance - 1),
        Err(VerifyError::TooNew {
            ahead_secs: tolerance + 1,
            tolerance_secs: tolerance
        }),
        "{name}: future"
    );

    // A timestamp that is not a Unix time.
    let bad_time = match case.provider {
        Provider::Bigcommerce => case.headers_with("webhook-timestamp", Some("yesterday")),
        Provider::Stripe => {
            let value = case
                .vector
                .expected_header
                .replace(&format!("t={t}"), "t=yesterday");
            case.headers_with("Stripe-Signature", Some(&value))
        }
        Provider::Github | Provider::Shopify => unreachable!(),
    };
    let result = case.verify(&bad_time, body, case.now());
    assert!(
        matches!(result, Err(VerifyError::Malformed(_))),
        "{name}: bad timestamp gave {result:?}"
    );
}

#[test]
fn bigcommerce_and_standard_webhooks_vectors() {
    let cases = cases(Provider::Bigcommerce);
    assert_eq!(cases.len(), 6);
    cases.iter().for_each(check_vector);
}

#[test]
fn github_vectors() {
    let cases = cases(Provider::Github);
    assert_eq!(cases.len(), 5);
    cases.iter().for_each(check_vector);
}

#[test]
fn shopify_vectors() {
    let cases = cases(Provider::Shopify);
    assert_eq!(cases.len(), 5);
    cases.iter().for_each(check_vector);
}

#[test]
fn stripe_vectors() {
    let cases = cases(Provider::Stripe);
    assert_eq!(cases.len(), 6);
    cases.iter().for_each(check_vector);
}

#[test]
fn vector_files_include_must_fail_cases_for_every_provider() {
    for provider in [
        Provider::Bigcommerce,
        Provider::Github,
        Provider::Shopify,
        Provider::Stripe,
    ] {
        let cases = cases(provider);
        assert!(cases.iter().any(|c| c.expectation() == Expect::Valid));
        assert!(cases.iter().any(|c| c.expectation() != Expect::Valid));
    }
}

/// BigCommerce's docs say: base64-encode the client secret and give it to a Standard Webhooks
/// library. The file records that encoded key; it must verify the same delivery.
#[test]
fn bigcommerce_secret_as_standard_webhooks_key() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/bigcommerce.json")).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let key = root["secret_as_standard_webhooks_key"].as_str().unwrap();
    let case = &cases(Provider::Bigcommerce)[0];
    assert_eq!(key, BASE64.encode(&case.vector.secret));

    for secret in [format!("whsec_{key}"), key.to_owned()] {
        let scheme = build(&VerifyConfig {
            scheme: VerifyScheme::from("standard-webhooks"),
            ..case.config_with_secret(&secret)
        })
        .unwrap();
        assert_eq!(
            scheme.verify(&case.headers(), case.vector.body.as_bytes(), case.now()),
            Ok(Verified {
                delivery_id: case.expected_delivery_id()
            })
        );
    }
}

/// Several space-separated signatures: any v1 may match; other versions are ignored.
#[test]
fn standard_webhooks_several_signatures() {
    for case in cases(Provider::Bigcommerce)
        .iter()
        .filter(|c| c.expectation() == Expect::Valid)
    {
        let valid = case
            .vector
            .expected_header
            .split(' ')
            .next_back()
            .unwrap()
            .to_owned();
        let valid_b64 = valid.strip_prefix("v1,").unwrap();
        let other = format!("v1,{}", BASE64.encode(hmac_sha256(b"old key", b"x")));
        let body = case.vector.body.as_bytes();
        let verify = |value: &str| {
            case.verify(
                &case.headers_with("webhook-signature", Some(value)),
                body,
                case.now(),
            )
        };

        assert!(verify(&format!("{other} {valid}")).is_ok(), "{}", case.name);
        assert!(verify(&format!("{valid} {other}")).is_ok(), "{}", case.name);
        assert!(
            verify(&format!("v1a,{valid_b64} {other} v2,{valid_b64} {valid}")).is_ok(),
            "{}",
            case.name
        );
        assert_eq!(
            verify(&format!("{other} v1,{}", BASE64.encode([0u8; 32]))),
            Err(VerifyError::Mismatch),
            "{}",
            case.name
        );
        // The right signature under another version tag does not count.
        assert!(
            matches!(
                verify(&format!("v2,{valid_b64}")),
                Err(VerifyError::Malformed(_))
            ),
            "{}",
            case.name
        );
    }
}

/// Key rotation: Stripe sends one v1 per active secret.
#[test]
fn stripe_key_rotation() {
    for case in cases(Provider::Stripe)
        .iter()
        .filter(|c| c.expectation() == Expect::Valid)
    {
        let t = case.timestamp();
        let body = case.vector.body.as_bytes();
        let valid = case
            .vector
            .expected_header
            .split(',')
            .filter_map(|item| item.strip_prefix("v1="))
            .next_back()
            .unwrap()
            .to_owned();
        let rolled = hex::encode(hmac_sha256(
            b"whsec_test_secret_rolled_key",
            &[t.to_string().as_bytes(), b".", body].concat(),
        ));
        let verify = |value: String| {
            case.verify(
                &case.headers_with("Stripe-Signature", Some(&value)),
                body,
                case.now(),
            )
        };

        assert_eq!(
            verify(format!("t={t},v1={rolled},v1={valid}")),
            Ok(Verified {
                delivery_id: case.expected_delivery_id()
            }),
            "{}",
            case.name
        );
        assert_eq!(
            verify(format!("t={t},v1={rolled},v1={}", hex::encode([0u8; 32]))),
            Err(VerifyError::Mismatch),
            "{}",
            case.name
        );
        // The right value under v0 is ignored, as Stripe's SDKs do.
        assert!(
            matches!(
                verify(format!("t={t},v0={valid}")),
                Err(VerifyError::Malformed(_))
            ),
            "{}",
            case.name
        );
    }
}

#[test]
fn shopify_new_header_spelling_and_delivery_id() {
    for case in cases(Provider::Shopify)
        .iter()
        .filter(|c| c.expectation() == Expect::Valid)
    {
        let headers = to_header_map(&[
            (
                "shopify-hmac-sha256".into(),
                case.vector.expected_header.clone(),
            ),
            ("shopify-webhook-id".into(), "new-style-id".into()),
        ]);
        assert_eq!(
            case.verify(&headers, case.vector.body.as_bytes(), UNTIMED_NOW),
            Ok(Verified {
                delivery_id: Some("new-style-id".into())
            }),
            "{}",
            case.name
        );
    }
}

#[test]
fn delivery_id_is_none_when_the_provider_sent_none() {
    for case in all_cases()
        .iter()
        .filter(|c| matches!(c.provider, Provider::Github | Provider::Shopify))
        .filter(|c| c.expectation() == Expect::Valid)
    {
        let only_signature = to_header_map(&[(
            case.header_name.clone(),
            case.vector.expected_header.clone(),
        )]);
        assert_eq!(
            case.verify(&only_signature, case.vector.body.as_bytes(), UNTIMED_NOW),
            Ok(Verified { delivery_id: None }),
            "{}",
            case.name
        );
    }
}

/// A configured tolerance replaces the default five minutes.
#[test]
fn configured_tolerance_is_used() {
    let case = &cases(Provider::Stripe)[0];
    let scheme = build(&VerifyConfig {
        tolerance: Some("10s".into()),
        ..case.config_with_secret(&case.vector.secret)
    })
    .unwrap();
    let t = case.timestamp();
    let body = case.vector.body.as_bytes();
    assert!(scheme.verify(&case.headers(), body, t + 10).is_ok());
    assert_eq!(
        scheme.verify(&case.headers(), body, t + 11),
        Err(VerifyError::TooOld {
            age_secs: 11,
            tolerance_secs: 10
        })
    );
}

/// No error message may leak the secret or the signature the server expected.
#[test]
fn errors_never_reveal_the_secret_or_the_expected_signature() {
    for case in all_cases()
        .iter()
        .filter(|c| c.expectation() == Expect::Valid)
    {
        let expected = case.vector.expected_header.clone();
        let broken = case.headers_with(&case.header_name, Some("v1,AAAA t=1 sha256=00"));
        let mut tampered = case.vector.body.clone().into_bytes();
        tampered[0] ^= 0x01;
        for result in [
            case.verify(&case.headers(), &tampered, case.now()),
            case.verify(&broken, case.vector.body.as_bytes(), case.now()),
        ] {
            let message = result.unwrap_err().to_string();
            assert!(!message.contains(&case.vector.secret), "{message}");
            for part in expected.split([',', ' ', '=']).filter(|p| p.len() > 8) {
                assert!(!message.contains(part), "{message}");
            }
        }
    }
}

/// A marketplace push vector (`shopee.json`, `tiktok-shop.json`, `lazada.json`,
/// `tokopedia.json`): the primary is valid; each extra says what it must give.
#[derive(Debug, Clone, Deserialize)]
struct PushFile {
    scheme: String,
    header_name: String,
    secret: String,
    callback_url: Option<String>,
    app_key: Option<String>,
    body: String,
    expected_header: String,
    delivery_id: Option<String>,
    /// When the vector was sent plus a little: a scheme that signs the time in the body is
    /// checked at it (None: the scheme signs no time).
    verify_at_unix: Option<i64>,
    tolerance_seconds: Option<i64>,
    extra_vectors: Vec<PushVector>,
}

#[derive(Debug, Clone, Deserialize)]
struct PushVector {
    name: String,
    body: String,
    /// None: the header is left out.
    expected_header: Option<String>,
    /// When to verify it, if not at the file's `verify_at_unix` (the stale and future vectors).
    verify_at_unix: Option<i64>,
    expect: String,
}

const PUSH_FILES: [&str; 4] = [
    "shopee.json",
    "tiktok-shop.json",
    "lazada.json",
    "tokopedia.json",
];

fn push_file(file: &str) -> PushFile {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

impl PushFile {
    fn config(&self, secret: &str) -> VerifyConfig {
        VerifyConfig {
            scheme: VerifyScheme::from(self.scheme.as_str()),
            secret: secret.to_owned(),
            header: None,
            encoding: None,
            prefix: None,
            tolerance: self.tolerance_seconds.map(|t| format!("{t}s")),
            callback_url: self.callback_url.clone(),
            app_key: self.app_key.clone(),
        }
    }

    fn now(&self) -> i64 {
        self.verify_at_unix.unwrap_or(UNTIMED_NOW)
    }

    fn verify(&self, signature: Option<&str>, body: &str) -> Result<Verified, VerifyError> {
        self.verify_at(signature, body, self.now())
    }

    fn verify_at(
        &self,
        signature: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let pairs: Vec<(String, String)> = signature
            .map(|s| (self.header_name.clone(), s.to_owned()))
            .into_iter()
            .collect();
        build(&self.config(&self.secret)).unwrap().verify(
            &to_header_map(&pairs),
            body.as_bytes(),
            now,
        )
    }
}

/// A push that signs its time in the body (Shopee, TikTok Shop, Lazada) is refused once the
/// time is past the tolerance: the vectors, sent years ago, are stale today. Tokopedia signs
/// no time, so its vector still verifies today.
#[test]
fn marketplace_pushes_are_refused_when_stale() {
    let today = chrono::Utc::now().timestamp();
    for file in PUSH_FILES {
        let push = push_file(file);
        let result = push.verify_at(Some(&push.expected_header), &push.body, today);
        let Some(at) = push.verify_at_unix else {
            assert!(result.is_ok(), "{file}: {result:?}");
            continue;
        };
        let tolerance = push.tolerance_seconds.unwrap();
        let sent = at - 10;
        assert!(
            matches!(result, Err(VerifyError::TooOld { age_secs, tolerance_secs })
                if age_secs == today - sent && tolerance_secs == tolerance),
            "{file}: {result:?}"
        );
        let edge = |now: i64| push.verify_at(Some(&push.expected_header), &push.body, now);
        assert!(edge(sent + tolerance).is_ok(), "{file}: oldest edge");
        assert!(edge(sent - tolerance).is_ok(), "{file}: newest edge");
        assert_eq!(
            edge(sent - tolerance - 1),
            Err(VerifyError::TooNew {
                ahead_secs: tolerance + 1,
                tolerance_secs: tolerance
            }),
            "{file}: from the future"
        );
    }
}

#[test]
fn marketplace_push_vectors() {
    for file in PUSH_FILES {
        let push = push_file(file);
        let valid = Ok(Verified {
            delivery_id: push.delivery_id.clone(),
        });
        assert_eq!(
            push.verify(Some(&push.expected_header), &push.body),
            valid,
            "{file} primary"
        );
        let kinds: Vec<&str> = push
            .extra_vectors
            .iter()
            .map(|v| v.expect.as_str())
            .collect();
        let timed: &[&str] = if push.verify_at_unix.is_some() {
            &["stale", "future", "malformed"]
        } else {
            &[]
        };
        for needed in ["mismatch", "missing", "valid"].iter().chain(timed) {
            assert!(kinds.contains(needed), "{file} has no `{needed}` vector");
        }
        for vector in &push.extra_vectors {
            let name = format!("{file}: {}", vector.name);
            let now = vector.verify_at_unix.unwrap_or(push.now());
            let result = push.verify_at(vector.expected_header.as_deref(), &vector.body, now);
            // Past the tolerance either way by the second that tips it.
            let beyond = push.tolerance_seconds.map_or(0, |t| t + 1);
            match vector.expect.as_str() {
                "valid" => assert_eq!(result, valid, "{name}"),
                "mismatch" => assert_eq!(result, Err(VerifyError::Mismatch), "{name}"),
                "missing" => assert_eq!(
                    result,
                    Err(VerifyError::MissingHeader(push.header_name.clone())),
                    "{name}"
                ),
                "malformed" => {
                    assert!(matches!(result, Err(VerifyError::Malformed(_))), "{name}");
                }
                "stale" => assert_eq!(
                    result,
                    Err(VerifyError::TooOld {
                        age_secs: beyond,
                        tolerance_secs: beyond - 1
                    }),
                    "{name}"
                ),
                "future" => assert_eq!(
                    result,
                    Err(VerifyError::TooNew {
                        ahead_secs: beyond,
                        tolerance_secs: beyond - 1
                    }),
                    "{name}"
                ),
                other => panic!("{name}: unknown expectation {other}"),
            }
        }
        // Beyond the file: a key of the same kind that is not the one, an empty header and
        // garbage in it.
        let wrong = build(&push.config(&format!("{}-rotated", push.secret))).unwrap();
        let headers = to_header_map(&[(push.header_name.clone(), push.expected_header.clone())]);
        assert_eq!(
            wrong.verify(&headers, push.body.as_bytes(), push.now()),
            Err(VerifyError::Mismatch),
            "{file}: wrong key"
        );
        assert_eq!(
            push.verify(Some(""), &push.body),
            Err(VerifyError::MissingHeader(push.header_name.clone())),
            "{file}: empty header"
        );
        assert!(
            matches!(
                push.verify(Some("not a signature"), &push.body),
                Err(VerifyError::Malformed(_))
            ),
            "{file}: garbage"
        );
    }
}

/// What each marketplace scheme needs besides the secret is refused when missing, and the
/// options it does not read are refused when given.
#[test]
fn marketplace_schemes_check_their_options() {
    let message = |config: &VerifyConfig| match build(config) {
        Ok(_) => panic!("{config:?} should be refused"),
        Err(e) => e.to_string(),
    };
    let shopee = push_file("shopee.json");
    let tiktok = push_file("tiktok-shop.json");
    assert_eq!(
        message(&VerifyConfig {
            callback_url: None,
            ..shopee.config("k")
        }),
        "verify: scheme shopee needs `callback_url` (the public URL registered with the \
         provider, which it signs)"
    );
    assert_eq!(
        message(&VerifyConfig {
            app_key: Some("x".into()),
            ..shopee.config("k")
        }),
        "verify: scheme shopee takes no `app_key`"
    );
    assert!(message(&VerifyConfig {
        callback_url: Some("/hooks/shopee".into()),
        ..shopee.config("k")
    })
    .contains("must be the absolute http(s) URL"));
    assert!(message(&VerifyConfig {
        app_key: None,
        ..tiktok.config("k")
    })
    .contains("needs `app_key`"));
    assert_eq!(
        message(&VerifyConfig {
            callback_url: Some("https://x.example/h".into()),
            ..tiktok.config("k")
        }),
        "verify: scheme tiktok-shop takes no `callback_url`"
    );
}

/// Svix sends the Standard Webhooks signature under its own header names.
#[test]
fn standard_webhooks_accepts_svix_header_names() {
    for case in cases(Provider::Bigcommerce)
        .iter()
        .filter(|c| c.scheme() == VerifyScheme::from("standard-webhooks"))
        .filter(|c| c.expectation() == Expect::Valid)
    {
        let extra = &case.vector.extra_headers;
        let svix = to_header_map(&[
            ("svix-id".into(), extra["webhook-id"].clone()),
            ("svix-timestamp".into(), extra["webhook-timestamp"].clone()),
            ("svix-signature".into(), case.vector.expected_header.clone()),
        ]);
        let body = case.vector.body.as_bytes();
        assert_eq!(
            case.verify(&svix, body, case.now()),
            Ok(Verified {
                delivery_id: case.expected_delivery_id()
            }),
            "{}",
            case.name
        );
        let mut tampered = body.to_vec();
        tampered[0] ^= 1;
        assert_eq!(
            case.verify(&svix, &tampered, case.now()),
            Err(VerifyError::Mismatch),
            "{}",
            case.name
        );
    }
}

/// Shopify's event id, when sent, is the dedup id: one event from two subscriptions is one.
#[test]
fn shopify_dedups_on_the_event_id() {
    let case = &cases(Provider::Shopify)[0];
    let delivered = |webhook_id: &str| {
        let headers = to_header_map(&[
            (
                case.header_name.clone(),
                case.vector.expected_header.clone(),
            ),
            ("X-Shopify-Webhook-Id".into(), webhook_id.into()),
            (
                "X-Shopify-Event-Id".into(),
                "98880550-7158-44d4-b7cd-2c97c8a091b5".into(),
            ),
        ]);
        case.verify(&headers, case.vector.body.as_bytes(), UNTIMED_NOW)
    };
    assert_eq!(delivered("subscription-a"), delivered("subscription-b"));
    assert_eq!(
        delivered("subscription-a").unwrap().delivery_id.as_deref(),
        Some("98880550-7158-44d4-b7cd-2c97c8a091b5")
    );
}
