use super::*;

fn config(yaml: serde_json::Value) -> SignConfig {
    serde_json::from_value(yaml).unwrap()
}

fn hmac_hex(key: &str, text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(list: &'a [(String, String)], name: &str) -> &'a str {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

/// Lazada Open Platform, "Signature algorithm": the published example (secret
/// `helloworld`, API `/order/get`, app_key 123456, order_id 1234, timestamp
/// 1517820392000, access_token `test`) gives the uppercase hex signature below.
#[test]
fn lazada_matches_the_published_example() {
    let signer = Signer::compile(
        &config(serde_json::json!({
            "algorithm": "hmac-sha256",
            "key": "helloworld",
            "string": "{path}{query}",
            "encoding": "hex-upper",
            "into": {"query": "sign"},
            "timestamp": "milliseconds",
            "query": {
                "app_key": "{app_key}",
                "timestamp": "{timestamp}",
                "sign_method": "sha256",
                "access_token": "{access_token}"
            }
        })),
        &values(&[("app_key", "123456")]),
        true,
    )
    .unwrap();
    let payload = vec![("order_id".to_string(), "1234".to_string())];
    let added = signer.sign(
        Call {
            method: "GET",
            path: "/order/get",
            query: &payload,
            body: b"",
        },
        "1517820392000",
        Some("test"),
    );
    assert_eq!(
        get(&added.query, "sign"),
        "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A"
    );
    assert_eq!(get(&added.query, "timestamp"), "1517820392000");
    assert_eq!(get(&added.query, "access_token"), "test");
}

/// Shopee Open Platform v2, "API calls": base string `partner_id + api_path + timestamp +
/// access_token + shop_id`, HMAC-SHA256 keyed with the partner key, lowercase hex. The
/// documented example's key is not published, so the expected value is computed here
/// from the documented base string.
#[test]
fn shopee_signs_the_documented_base_string() {
    let signer = Signer::compile(
        &config(serde_json::json!({
            "algorithm": "hmac-sha256",
            "key": "partner-key",
            "string": "{partner_id}{path}{timestamp}{access_token}{shop_id}",
            "into": {"query": "sign"},
            "query": {
                "partner_id": "{partner_id}",
                "timestamp": "{timestamp}",
                "access_token": "{access_token}",
                "shop_id": "{shop_id}"
            }
        })),
        &values(&[("partner_id", "2001887"), ("shop_id", "14701711")]),
        true,
    )
    .unwrap();
    let added = signer.sign(
        Call {
            method: "GET",
            path: "/api/v2/shop/get_shop_info",
            query: &[],
            body: b"",
        },
        "1655714431",
        Some("59777174636562737266615546704c6d"),
    );
    let base =
        "2001887/api/v2/shop/get_shop_info165571443159777174636562737266615546704c6d14701711";
    assert_eq!(get(&added.query, "sign"), hmac_hex("partner-key", base));
    assert_eq!(get(&added.query, "partner_id"), "2001887");
    assert_eq!(get(&added.query, "shop_id"), "14701711");
}

/// TikTok Shop Open API 2023-09: query parameters but `sign` and `access_token` sorted
/// as `k1v1k2v2` after the path, the body appended, wrapped in the app secret; the token
/// in `x-tts-access-token`. Checked against the computation written out here.
#[test]
fn tiktok_wraps_path_query_and_body_in_the_secret() {
    let signer = Signer::compile(
        &config(serde_json::json!({
            "algorithm": "hmac-sha256",
            "key": "app-secret",
            "string": "{key}{path}{query}{body}{key}",
            "into": {"query": "sign"},
            "exclude": ["access_token"],
            "query": {"app_key": "{app_key}", "timestamp": "{timestamp}", "shop_cipher": "{shop_cipher}"},
            "headers": {"x-tts-access-token": "{access_token}"}
        })),
        &values(&[("app_key", "38abc"), ("shop_cipher", "ROW_x")]),
        true,
    )
    .unwrap();
    let body = br#"{"order_status":"AWAITING_SHIPMENT"}"#;
    let query = vec![("page_size".to_string(), "20".to_string())];
    let added = signer.sign(
        Call {
            method: "POST",
            path: "/order/202309/orders/search",
            query: &query,
            body,
        },
        "1700000000",
        Some("tok"),
    );
    let text = format!(
        "app-secret/order/202309/orders/searchapp_key38abcpage_size20shop_cipherROW_xtimestamp1700000000{}app-secret",
        std::str::from_utf8(body).unwrap()
    );
    assert_eq!(get(&added.query, "sign"), hmac_hex("app-secret", &text));
    assert_eq!(get(&added.headers, "x-tts-access-token"), "tok");
    assert!(!added.query.iter().any(|(n, _)| n == "access_token"));
}

#[test]
fn encodings_and_plain_sha256() {
    let mut c = config(serde_json::json!({
        "algorithm": "sha256",
        "string": "{method} {query_form}",
        "encoding": "base64",
        "into": {"header": "X-Sign"}
    }));
    let q = vec![
        ("b".to_string(), "2".to_string()),
        ("a".to_string(), "1".to_string()),
    ];
    let call = Call {
        method: "GET",
        path: "/",
        query: &q,
        body: b"",
    };
    let signer = Signer::compile(&c, &BTreeMap::new(), false).unwrap();
    let added = signer.sign(call, "0", None);
    let want = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"GET a=1&b=2"));
    assert_eq!(get(&added.headers, "X-Sign"), want);
    c.encoding = Some("hex".into());
    let signer = Signer::compile(&c, &BTreeMap::new(), false).unwrap();
    assert_eq!(
        get(&signer.sign(call, "0", None).headers, "X-Sign"),
        hex::encode(Sha256::digest(b"GET a=1&b=2"))
    );
}

#[test]
fn mistakes_are_found_at_load() {
    let base = serde_json::json!({
        "algorithm": "hmac-sha256", "key": "k", "string": "{path}", "into": {"query": "sign"}
    });
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        Signer::compile(&config(c), &values(&[("partner_id", "1")]), false).unwrap_err()
    };
    let e = with("string", "{partnerid}{path}".into());
    assert_eq!(e.at, vec!["string"]);
    assert!(
        e.message.contains("did you mean `partner_id`"),
        "{}",
        e.message
    );
    let e = with("string", "{access_token}".into());
    assert!(e.message.contains("gives no token"), "{}", e.message);
    let e = with("query", serde_json::json!({"sign": "x"}));
    assert_eq!(e.at, vec!["query"]);
    let e = with("query", serde_json::json!({"q": "{body}"}));
    assert!(e.message.contains("only {timestamp}"), "{}", e.message);
    let e = with("string", "{path".into());
    assert!(e.message.contains("not closed"), "{}", e.message);
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("key");
    let e = Signer::compile(&config(c), &BTreeMap::new(), false).unwrap_err();
    assert!(e.message.contains("needs a `key`"));
}

#[test]
fn describe_hides_the_signature_and_the_token() {
    let signer = Signer::compile(
        &config(serde_json::json!({
            "algorithm": "hmac-sha256", "key": "k", "string": "{path}{timestamp}",
            "into": {"query": "sign"},
            "query": {"partner_id": "{partner_id}", "timestamp": "{timestamp}", "access_token": "{access_token}"}
        })),
        &values(&[("partner_id", "7")]),
        true,
    )
    .unwrap();
    assert_eq!(
        signer.describe(),
        "query access_token=***&partner_id=7&timestamp=<timestamp>&sign=***"
    );
}
