//! Lazada Open Platform push ("Lazada Push Mechanism"): `Authorization: <hex HMAC-SHA256>` over
//! the app key followed by the raw body, keyed with the app secret: TikTok Shop's format
//! (`tiktok_shop.rs`), the push form of `push.rs`. The body's `timestamp` is the push time in
//! Unix milliseconds, refused outside `tolerance`. Lazada's pushes carry no delivery id, so a
//! replay within the tolerance is turned away by the server's body-hash dedup.

use super::push::Push;
use super::shared::TimeUnit;
use super::BuildError;

pub(super) fn new(app_secret: &str, app_key: &str, tolerance: i64) -> Result<Push, BuildError> {
    let lead = app_key.as_bytes().to_vec();
    Push::new(app_secret, lead, None, TimeUnit::Millis, tolerance)
}
