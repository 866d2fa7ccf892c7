//! Calendar dates from the strings commerce systems send.
//!
//! State keeps order dates as `YYYY-MM-DD`, and the script functions `days_between`, `add_days`
//! and `date_of` (in `rules`) work on calendar days too; both parse here so they agree. A
//! datetime counts on the date it is written with (its own offset), not on the UTC date:
//! `2026-01-02T23:30:00-05:00` is the 2nd, the business day the shop saw.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Why a string is not a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 8601 date or datetime")]
pub struct DateError(pub String);

/// The calendar date of an ISO 8601 date (`2026-01-02`) or datetime (`2026-01-02T10:00:00Z`,
/// `2026-01-02T10:00:00.123+02:00`, `2026-01-02 10:00:00`), or of an RFC 2822 datetime
/// (`Tue, 20 Nov 2012 15:43:04 +0000`, BigCommerce's format).
pub fn parse_day(s: &str) -> Result<NaiveDate, DateError> {
    let t = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.naive_local().date());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(dt.date());
        }
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Ok(dt.naive_local().date());
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(t) {
        return Ok(dt.naive_local().date());
    }
    Err(DateError(s.to_string()))
}

/// `YYYY-MM-DD`.
pub fn format_day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_datetimes() {
        let cases = [
            ("2026-01-02", "2026-01-02"),
            ("2026-01-02T10:00:00Z", "2026-01-02"),
            ("2026-01-02T23:30:00-05:00", "2026-01-02"),
            ("2026-01-02T23:30:00.123456+02:00", "2026-01-02"),
            ("2026-01-02T23:30:00", "2026-01-02"),
            ("2026-01-02 23:30:00", "2026-01-02"),
            ("2026-01-02T23:30:00+0200", "2026-01-02"),
            ("Tue, 20 Nov 2012 15:43:04 +0000", "2012-11-20"),
        ];
        for (input, want) in cases {
            assert_eq!(format_day(parse_day(input).unwrap()), want, "{input}");
        }
        for bad in [
            "",
            "2026-13-01",
            "02/01/2026",
            "2026-01-02T25:00:00Z",
            "yesterday",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
