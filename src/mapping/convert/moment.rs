//! `date` and `datetime`: the formats read from the input (RFC 3339, RFC 2822, plain dates and
//! date-times) and the text each type is written as. It must not know other target types.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::{fail, ConvertFailure};

/// A point in time as read from the input: a date alone, or a date and time with the offset
/// it was written with (UTC when none was written).
pub(super) enum Moment {
    Date(NaiveDate),
    At(DateTime<FixedOffset>),
}

impl Moment {
    /// The calendar date as written: no conversion to another time zone.
    pub(super) fn date(&self) -> String {
        let d = match self {
            Moment::Date(d) => *d,
            Moment::At(t) => t.date_naive(),
        };
        // Not `format("%Y-%m-%d")`: that parses the format string on every call.
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    }

    pub(super) fn datetime(&self) -> String {
        let t = match self {
            Moment::Date(d) => d.and_time(chrono::NaiveTime::MIN).and_utc().fixed_offset(),
            Moment::At(t) => *t,
        };
        t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
    }
}

pub(super) fn to_moment(v: &Value) -> Result<Moment, ConvertFailure> {
    match v {
        Value::String(s) => parse_moment(s).map_or_else(|| fail(v, None), Ok),
        // Whole numbers are Unix seconds (Stripe's `created`, Shopify's exports).
        Value::Number(n) => n
            .as_i64()
            .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
            .map(|t| Moment::At(t.fixed_offset()))
            .map_or_else(|| fail(v, Some("not Unix seconds")), Ok),
        other => fail(other, None),
    }
}

fn parse_moment(s: &str) -> Option<Moment> {
    if let Some(t) = crate::mapping::rfc2822::exact(s) {
        return Some(Moment::At(t));
    }
    if s.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(Moment::Date(d));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(Moment::At(t));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(Moment::At(t));
    }
    // ISO 8601 forms that RFC 3339 does not allow: a `+0000` offset, or no offset at all.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(Moment::At(t));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Moment::At(t.and_utc().fixed_offset()));
        }
    }
    None
}
