//! Budget periods: which period a moment falls in, as an id the stores count spend under
//! (`day:2026-11-25`, `week:2026-11-23` — its Monday —, `month:2026-11`, `total`), when it
//! resets, and the minute that tokens per minute are counted in. All in UTC.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

/// How long a key's budget runs before its spend starts again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A UTC day.
    Day,
    /// A week, Monday 00:00 UTC to the next.
    Week,
    /// A calendar month (UTC).
    #[default]
    Month,
    /// Never resets.
    Total,
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" => Ok(Self::Day),
            "week" | "weekly" => Ok(Self::Week),
            "month" | "monthly" => Ok(Self::Month),
            "total" | "all" | "never" => Ok(Self::Total),
            other => Err(format!("unknown period '{other}': use day, week, month or total")),
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Total => "total",
        })
    }
}

impl Period {
    pub(crate) const ALL: [Period; 4] = [Period::Day, Period::Week, Period::Month, Period::Total];

    /// The first day of the period `now` falls in (`None` for `total`).
    fn start(self, now: OffsetDateTime) -> Option<Date> {
        let today = now.date();
        match self {
            Self::Day => Some(today),
            Self::Week => Some(today - time::Duration::days(i64::from(today.weekday().number_days_from_monday()))),
            Self::Month => Date::from_calendar_date(today.year(), today.month(), 1).ok(),
            Self::Total => None,
        }
    }

    /// The id spend in the period `now` falls in is counted under.
    pub(crate) fn id(self, now: OffsetDateTime) -> String {
        match (self, self.start(now)) {
            (Self::Month, Some(d)) => format!("month:{:04}-{:02}", d.year(), u8::from(d.month())),
            (Self::Day, Some(d)) => format!("day:{d}"),
            (Self::Week, Some(d)) => format!("week:{d}"),
            _ => "total".to_string(),
        }
    }

    /// When the period `now` falls in ends (`None` for `total`).
    pub(crate) fn resets_at(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = self.start(now)?;
        let next = match self {
            Self::Day => start.next_day()?,
            Self::Week => start + time::Duration::days(7),
            Self::Month => {
                let (year, month) = match start.month() {
                    Month::December => (start.year() + 1, Month::January),
                    m => (start.year(), m.next()),
                };
                Date::from_calendar_date(year, month, 1).ok()?
            }
            Self::Total => return None,
        };
        Some(next.with_time(Time::MIDNIGHT).assume_utc())
    }

    /// How long a store keeps the period's counters (a little past its end).
    pub(crate) fn keep(self) -> Option<Duration> {
        let days = match self {
            Self::Day => 2,
            Self::Week => 9,
            Self::Month => 33,
            Self::Total => return None,
        };
        Some(Duration::from_secs(days * 24 * 3600))
    }
}

/// The id tokens of the minute `now` falls in are counted under.
pub(crate) fn minute_id(now: OffsetDateTime) -> String {
    format!("minute:{}", now.unix_timestamp().div_euclid(60))
}

/// Time left in the minute `now` falls in.
pub(crate) fn rest_of_minute(now: OffsetDateTime) -> Duration {
    let into = now.unix_timestamp().rem_euclid(60) as u64;
    Duration::from_secs(60 - into)
}

/// RFC 3339, to the second.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn periods_have_ids_and_reset_at_their_end() {
        let now = datetime!(2026-12-31 23:59:30 UTC); // a Thursday
        assert_eq!(Period::Day.id(now), "day:2026-12-31");
        assert_eq!(Period::Week.id(now), "week:2026-12-28");
        assert_eq!(Period::Month.id(now), "month:2026-12");
        assert_eq!(Period::Total.id(now), "total");
        assert_eq!(Period::Day.resets_at(now), Some(datetime!(2027-01-01 0:00 UTC)));
        assert_eq!(Period::Week.resets_at(now), Some(datetime!(2027-01-04 0:00 UTC)));
        assert_eq!(Period::Month.resets_at(now), Some(datetime!(2027-01-01 0:00 UTC)));
        assert_eq!(Period::Total.resets_at(now), None);
        assert_eq!(rest_of_minute(now), Duration::from_secs(30));
        assert_ne!(Period::Day.id(now + time::Duration::seconds(31)), Period::Day.id(now));
    }
}
