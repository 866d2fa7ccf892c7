//! Cron expressions as pipelines write them (`schedule.cron`, `poll.cron`).
//!
//! Owns what a cron expression in the config means: five fields (minute, hour, day of month,
//! month, day of week), or six with seconds first. Times are UTC. `check` parses with
//! [`CronExpr::parse`] and the runtime computes ticks with [`CronExpr::next_after`], so both
//! agree on what is valid.
//!
//! croner reads five fields as minute-first and six as seconds-first once seconds are
//! optional; other crates (`cron`) want six or seven fields with seconds first, which would
//! read a standard five-field line wrongly. A day of month and a day of week in one line
//! match either (as classic cron does).

use chrono::{DateTime, SubsecRound, Utc};

/// A parsed cron expression, with the text it was written as.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

/// Why a text is not a cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "`{text}` is not a cron expression: it has {fields} fields; write 5 \
         (minute hour day-of-month month day-of-week) or 6 (seconds first)"
    )]
    Fields { text: String, fields: usize },
    #[error("`{text}` is not a cron expression: {reason}")]
    Invalid { text: String, reason: String },
}

// Diagnostics and the sources' own errors carry messages as text.
impl From<CronError> for String {
    fn from(e: CronError) -> String {
        e.to_string()
    }
}

impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr, CronError> {
        let fields = text.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(CronError::Fields {
                text: text.to_string(),
                fields,
            });
        }
        let cron = croner::Cron::new(text)
            .with_seconds_optional()
            .parse()
            .map_err(|e| CronError::Invalid {
                text: text.to_string(),
                reason: e.to_string(),
            })?;
        Ok(CronExpr {
            text: text.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time the expression matches strictly after `after`, in whole seconds; `None`
    /// when it never matches again (e.g. 30 February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Sub-second parts would carry into the answer: 12:00:59.5 must give 12:01:00.
        let after = after.trunc_subsecs(0);
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_fields_are_minute_first() {
        let c = CronExpr::parse("*/15 * * * *").unwrap();
        assert_eq!(
            c.next_after(at("2026-03-01T10:07:30.250Z")),
            Some(at("2026-03-01T10:15:00Z"))
        );
        // Strictly after: a tick time gives the next one.
        assert_eq!(
            c.next_after(at("2026-03-01T10:15:00Z")),
            Some(at("2026-03-01T10:30:00Z"))
        );
        let daily = CronExpr::parse("30 2 * * *").unwrap();
        assert_eq!(
            daily.next_after(at("2026-12-31T03:00:00Z")),
            Some(at("2027-01-01T02:30:00Z"))
        );
    }

    #[test]
    fn six_fields_are_seconds_first() {
        let c = CronExpr::parse("*/10 * * * * *").unwrap();
        assert_eq!(
            c.next_after(at("2026-03-01T10:07:31Z")),
            Some(at("2026-03-01T10:07:40Z"))
        );
    }

    #[test]
    fn weekdays_and_ranges() {
        // 09:00 on weekdays: Friday evening gives Monday morning.
        let c = CronExpr::parse("0 9 * * 1-5").unwrap();
        assert_eq!(
            c.next_after(at("2026-11-20T18:00:00Z")),
            Some(at("2026-11-23T09:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        assert_eq!(
            CronExpr::parse("* * * *").unwrap_err().to_string(),
            "`* * * *` is not a cron expression: it has 4 fields; write 5 (minute hour \
             day-of-month month day-of-week) or 6 (seconds first)"
        );
        for bad in ["* * * *", "* * * * * * *", "61 * * * *", "a b c d e", ""] {
            let e = CronExpr::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not a cron expression"), "{bad}: {e}");
        }
    }
}
