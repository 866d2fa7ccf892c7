//! The one RFC 2822 shape storefronts send (BigCommerce's V2 API dates every order with it:
//! `Fri, 20 Nov 2026 14:03:27 +0000`), read without chrono's general parser, which took a
//! tenth of a mapping that converts two such dates.
//!
//! [`exact`] only ever answers what `DateTime::parse_from_rfc2822` answers: it reads that one
//! shape and gives up (`None`) on anything else, including what chrono would refuse, so the
//! caller falls back to chrono for every other form and for the error.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime};

const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Www, DD Mmm YYYY HH:MM:SS +HHMM` exactly (English names as written, two-digit day, seconds
/// below 60, a numeric zone), with the weekday that date falls on; `None` for anything else.
pub(crate) fn exact(s: &str) -> Option<DateTime<FixedOffset>> {
    let b: &[u8; 31] = s.as_bytes().try_into().ok()?;
    let punctuation = [
        (3, b','),
        (4, b' '),
        (7, b' '),
        (11, b' '),
        (16, b' '),
        (19, b':'),
    ];
    if punctuation.iter().any(|&(i, c)| b[i] != c) || b[22] != b':' || b[25] != b' ' {
        return None;
    }
    let digits = |from: usize, n: usize| -> Option<u32> {
        b[from..from + n].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let name = |from: usize| -> [u8; 3] { [b[from], b[from + 1], b[from + 2]] };
    let weekday = DAYS.iter().position(|d| **d == name(0))?;
    let month = MONTHS.iter().position(|m| **m == name(8))?;
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(12, 4)?).ok()?,
        u32::try_from(month).ok()? + 1,
        digits(5, 2)?,
    )?;
    if date.weekday().num_days_from_monday() as usize != weekday {
        return None;
    }
    let time = NaiveTime::from_hms_opt(digits(17, 2)?, digits(20, 2)?, digits(23, 2)?)?;
    let (hours, minutes) = (digits(27, 2)?, digits(29, 2)?);
    if minutes >= 60 {
        return None;
    }
    let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
    let offset = match b[26] {
        b'+' => FixedOffset::east_opt(seconds)?,
        b'-' => FixedOffset::west_opt(seconds)?,
        _ => return None,
    };
    date.and_time(time).and_local_timezone(offset).single()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Whatever `exact` reads, chrono reads the same.
    fn agrees(s: &str) -> bool {
        match exact(s) {
            Some(t) => {
                // DateTimes compare as instants: the offset (which decides the date) apart.
                let chrono = DateTime::parse_from_rfc2822(s).map(|c| (c, *c.offset()));
                assert_eq!(Ok((t, *t.offset())), chrono, "{s}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn reads_what_bigcommerce_sends_as_chrono_does() {
        assert!(agrees("Fri, 20 Nov 2026 14:03:27 +0000"));
        assert!(agrees("Tue, 01 Dec 2026 23:59:59 -0530"));
        assert!(agrees("Thu, 29 Feb 2024 00:00:00 +1400"));
        let mut read = 0;
        for year in [1999, 2024, 2026, 2100] {
            for (m, month) in MONTHS.iter().enumerate() {
                for day in [1, 9, 10, 28, 29, 30, 31] {
                    for (w, weekday) in DAYS.iter().enumerate() {
                        for (time, zone) in [
                            ("00:00:00", "+0000"),
                            ("12:34:56", "-0800"),
                            ("23:59:59", "+0545"),
                        ] {
                            let s = format!(
                                "{}, {day:02} {} {year} {time} {zone}",
                                std::str::from_utf8(*weekday).unwrap(),
                                std::str::from_utf8(*month).unwrap()
                            );
                            // Only the weekday the date falls on is read (else chrono's error).
                            let real = NaiveDate::from_ymd_opt(year, m as u32 + 1, day)
                                .is_some_and(|d| d.weekday().num_days_from_monday() as usize == w);
                            assert_eq!(agrees(&s), real, "{s}");
                            read += usize::from(real);
                        }
                    }
                }
            }
        }
        assert!(read > 900, "{read}");
    }

    #[test]
    fn gives_up_on_every_other_form_and_on_what_chrono_refuses() {
        for s in [
            "20 Nov 2026 14:03:27 +0000", // no weekday: chrono reads it, we leave it
            "Fri, 20 Nov 2026 14:03 +0000", // no seconds
            "Fri,  20 Nov 2026 14:03:27 +0000", // folding whitespace
            "Fri, 20 Nov 2026 14:03:27 GMT", // obsolete zone name
            "fri, 20 nov 2026 14:03:27 +0000", // lower case
            "Fri, 20 Nov 2026 14:03:27 +000a",
            "Fri, 20 Nov 2026 24:00:00 +0000",
            "Fri, 20 Nov 2026 14:60:00 +0000",
            "Fri, 20 Nov 2026 14:03:60 +0000", // a leap second: chrono's to decide
            "Fri, 20 Nov 2026 14:03:27 +0060",
            "Fri, 20 Nov 2026 14:03:27 +2400",
            "Fri, 20 Nov 2026 14:03:27 *0000",
            "Fri, 31 Nov 2026 14:03:27 +0000",
            "Sat, 20 Nov 2026 14:03:27 +0000", // the wrong weekday
            "Fri, 20 Nox 2026 14:03:27 +0000",
            "Fri, 2O Nov 2026 14:03:27 +0000",
            "Fri; 20 Nov 2026 14:03:27 +0000",
            "Fri, 20 Nov 2026 14:03:27 +0000 ",
            "Fri, 20 Nov 2026 14:03:27 +0000\u{e9}",
            "2026-11-20T14:03:27+00:00",
            "",
        ] {
            assert_eq!(exact(s), None, "{s}");
        }
    }
}
