//! Lazada Open Platform push ("Lazada Push Mechanism"): `Authorization: <hex HMAC-SHA256>` over
//! the app key followed by the raw body, keyed with the app secret: TikTok Shop's format
//! (`tiktok_shop.rs`), whose verifier this builds. The body's `timestamp` is the push time in
//! Unix milliseconds, refused outside `tolerance`. Lazada's pushes carry no delivery id, so a
//! replay within the tolerance is turned away by the server's body-hash dedup.

use super::tiktok_shop::AppKeyBody;
use super::{BuildError, TimeUnit};

pub(super) fn new(
    app_secret: &str,
    app_key: &str,
    tolerance: i64,
) -> Result<AppKeyBody, BuildError> {
    AppKeyBody::new(app_secret, app_key, None, TimeUnit::Millis, tolerance)
}
