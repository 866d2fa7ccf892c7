//! examples/stock-to-listings through the real binary (docs/stock-to-listings.md): an ERP stock
//! change, signed as the ERP signs it, reaches every listing of the SKU on the mock Shopee,
//! TikTok Shop and Lazada (tests/support/mock_*.rs, which check each call's signature, timestamp
//! and token as the platforms document and record the stock per listing); a listing whose
//! marketplace failed is the only one sent again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::engine::{eventually, example_copy, Engine};
use support::marketplace::{hmac_hex, Mock};
use support::{mock_lazada, mock_shopee, mock_tiktok};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "test-erp-webhook-secret";
const SHOPEE_STOCK: &str = "/api/v2/product/update_stock";
const TIKTOK_STOCK: &str = "/product/202309/products/1729592969712207013/inventory/update";
const LAZADA_STOCK: &str = "/rest/product/price_quantity/update";

struct Markets {
    shopee: Mock,
    tiktok: Mock,
    lazada: Mock,
}

impl Markets {
    async fn start() -> Markets {
        Markets {
            shopee: mock_shopee::start(Vec::new(), 3600).await,
            tiktok: mock_tiktok::start(Vec::new(), 3600).await,
            lazada: mock_lazada::start(Vec::new(), 3600).await,
        }
    }

    /// The environment that points the example at the mocks.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SHOPEE_API_URL", self.shopee.url.clone()),
            ("SHOPEE_PARTNER_ID", mock_shopee::PARTNER_ID.into()),
            ("SHOPEE_SHOP_ID", mock_shopee::SHOP_ID.into()),
            ("SHOPEE_PARTNER_KEY", mock_shopee::PARTNER_KEY.into()),
            ("SHOPEE_REFRESH_TOKEN", mock_shopee::FIRST_REFRESH.into()),
            ("TIKTOK_API_URL", self.tiktok.url.clone()),
            ("TIKTOK_AUTH_URL", self.tiktok.url.clone()),
            ("TIKTOK_APP_KEY", mock_tiktok::APP_KEY.into()),
            ("TIKTOK_APP_SECRET", mock_tiktok::APP_SECRET.into()),
            ("TIKTOK_SHOP_CIPHER", mock_tiktok::SHOP_CIPHER.into()),
            ("TIKTOK_REFRESH_TOKEN", mock_tiktok::FIRST_REFRESH.into()),
            ("LAZADA_API_URL", self.lazada.url.clone()),
            ("LAZADA_AUTH_URL", self.lazada.url.clone()),
            ("LAZADA_APP_KEY", mock_lazada::APP_KEY.into()),
            ("LAZADA_APP_SECRET", mock_lazada::APP_SECRET.into()),
            ("LAZADA_REFRESH_TOKEN", mock_lazada::FIRST_REFRESH.into()),
            ("ERP_WEBHOOK_SECRET", SECRET.into()),
        ]
    }

    fn stock(mock: &Mock, listing: &str) -> Option<i64> {
        mock.shop.lock().unwrap().stock.get(listing)?.as_i64()
    }
}

async fn post_change(engine: &Engine, body: &str, secret: &str) -> u16 {
    let sign = hmac_hex(secret, body.as_bytes());
    engine
        .post_with("/hooks/erp/stock", body, ("X-ERP-Signature", &sign))
        .await
}

/// One change of MUG-BLUE reaches its three listings with the ERP's quantity, signed and
/// accepted by each platform. Lazada (the last listing) answers its first stock call as
/// throttled: the error names that listing by index, the event is retried, and only the Lazada
/// listing is sent again (Shopee and TikTok Shop once each). A
/// second change of TEE-M (two Shopee listings and one Lazada) and a repeat of the first change
/// (the same `change_id`: nothing sent) follow; a change signed with another secret is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_stock_change_reaches_every_listing_and_a_retry_resends_only_the_failed_one() {
    let m = Markets::start().await;
    m.lazada.shop.lock().unwrap().busy_writes = 1;
    let dir = example_copy("stock-to-listings");
    let env = m.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let engine = Engine::start_with(dir.path(), &env);

    let change = r#"{"change_id": "SC-1", "sku": "MUG-BLUE", "quantity": 37, "warehouse": "MAIN"}"#;
    assert_eq!(post_change(&engine, change, "not-the-secret").await, 401);
    assert_eq!(post_change(&engine, change, SECRET).await, 202);
    eventually("MUG-BLUE on all three marketplaces", WAIT, || async {
        (Markets::stock(&m.shopee, "800123/0") == Some(37)
            && Markets::stock(&m.tiktok, "1729592969712207013/1729592969712272549") == Some(37)
            && Markets::stock(&m.lazada, "3410283/17520093") == Some(37))
        .then_some(())
    })
    .await;
    assert_eq!(m.shopee.calls(SHOPEE_STOCK).len(), 1, "sent once");
    assert_eq!(m.tiktok.calls(TIKTOK_STOCK).len(), 1, "sent once");
    let lazada_calls = m.lazada.calls(LAZADA_STOCK);
    assert_eq!(lazada_calls.len(), 2, "refused once, then sent again");
    assert_eq!(
        lazada_calls[0].refused.as_deref(),
        Some("ApiCallLimit: The request has exceeded the limit")
    );
    assert_eq!(lazada_calls[1].refused, None);
    // The first attempt's error names the listing by its index in the SKU's list (Lazada's is
    // the third, #2); the second attempt skipped the two listings already done.
    let (_, events) = engine.admin("/api/events?pipeline=erp-stock").await;
    let id = events["items"][0]["event_id"].as_str().unwrap().to_string();
    let (_, trail) = engine.admin(&format!("/api/events/{id}")).await;
    assert_eq!(trail["attempts"], 2, "{trail}");
    let error = trail["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "lazada update_price_quantity at steps[2].each.steps[1].switch[2].steps[0]#2: "
        ),
        "{trail}"
    );
    let statuses: Vec<&str> = trail["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["skipped", "skipped", "ok"], "{trail}");
    let tiktok_body = m.tiktok.shop.lock().unwrap().received[0].clone();
    assert_eq!(
        tiktok_body["skus"][0]["inventory"][0]["warehouse_id"],
        "7068517275539719942"
    );

    // A repeat of the change is a duplicate; TEE-M's change reaches its three listings, and a
    // backorder (a negative quantity) lists none.
    assert_eq!(post_change(&engine, change, SECRET).await, 200);
    let tee = r#"{"change_id": "SC-2", "sku": "TEE-M", "quantity": -3}"#;
    assert_eq!(post_change(&engine, tee, SECRET).await, 202);
    eventually("TEE-M on its three listings", WAIT, || async {
        (Markets::stock(&m.shopee, "800777/2001") == Some(0)
            && Markets::stock(&m.shopee, "800778/0") == Some(0)
            && Markets::stock(&m.lazada, "3410999/17520456") == Some(0))
        .then_some(())
    })
    .await;
    assert_eq!(m.shopee.calls(SHOPEE_STOCK).len(), 3);
    assert_eq!(
        m.tiktok.calls(TIKTOK_STOCK).len(),
        1,
        "TEE-M is not on TikTok"
    );
    assert_eq!(m.lazada.calls(LAZADA_STOCK).len(), 3);
    // Every call but the throttled one was signed, timed and authorised as the platforms want.
    assert_eq!(m.shopee.refused(), Vec::<String>::new());
    assert_eq!(m.tiktok.refused(), Vec::<String>::new());
    assert_eq!(
        m.lazada.refused(),
        vec!["ApiCallLimit: The request has exceeded the limit"]
    );
    drop(engine);
}
