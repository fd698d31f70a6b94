//! The start time of slot 0: "now", "in 30s" (any duration humantime reads), or an RFC 3339 time,
//! quoted or as a TOML date-time.

use toml::de::DeValue;
use toml::value::{Datetime, Offset};

use super::error::Problem;

/// How far in the past an absolute start may lie: the operator's clock and the time it took to
/// write the file and run the command make a start "just now" a little late.
pub const PAST_TOLERANCE_MS: u64 = 60_000;

/// Reads the `start` value; `now_ms` is the time relative starts count from.
pub(super) fn parse(value: &DeValue<'_>, now_ms: u64) -> Result<u64, Problem> {
    match value {
        DeValue::String(text) => parse_text(text, now_ms),
        DeValue::Datetime(datetime) => absolute(datetime, &datetime.to_string(), now_ms),
        other => Err(Problem::WrongType {
            expected: "a string such as \"in 30s\" or an RFC 3339 time",
            found: other.type_str(),
        }),
    }
}

fn parse_text(text: &str, now_ms: u64) -> Result<u64, Problem> {
    let unreadable = || Problem::StartUnreadable {
        text: text.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    let relative = trimmed
        .get(..3)
        .filter(|head| head.eq_ignore_ascii_case("in "))
        .and_then(|_| trimmed.get(3..));
    if let Some(rest) = relative {
        let delay = humantime::parse_duration(rest.trim()).map_err(|_| unreadable())?;
        return u64::try_from(delay.as_millis())
            .ok()
            .and_then(|ms| now_ms.checked_add(ms))
            .ok_or_else(unreadable);
    }
    let datetime: Datetime = trimmed.parse().map_err(|_| unreadable())?;
    absolute(&datetime, text, now_ms)
}

/// Milliseconds since the Unix epoch of a full date-time with its offset, refusing one more than
/// [`PAST_TOLERANCE_MS`] before `now_ms`.
fn absolute(datetime: &Datetime, text: &str, now_ms: u64) -> Result<u64, Problem> {
    let incomplete = |missing| Problem::StartIncomplete {
        text: text.to_owned(),
        missing,
    };
    let date = datetime.date.ok_or_else(|| incomplete("date"))?;
    let time = datetime.time.ok_or_else(|| incomplete("time of day"))?;
    // A local time would start the network at different instants on machines in different zones.
    let offset_minutes = match datetime.offset.ok_or_else(|| incomplete("time zone"))? {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let ms = i128::from(seconds) * 1000 + i128::from(time.nanosecond / 1_000_000);
    let earliest = i128::from(now_ms) - i128::from(PAST_TOLERANCE_MS);
    if ms < earliest {
        let ago = i128::from(now_ms) - ms;
        return Err(Problem::StartInPast {
            text: text.to_owned(),
            ago_ms: u64::try_from(ago).unwrap_or(u64::MAX),
        });
    }
    // Years are at most 9999 in TOML, so a start after `earliest` always fits.
    u64::try_from(ms).map_err(|_| Problem::StartUnreadable {
        text: text.to_owned(),
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T00:00:00Z.
    const NOW: u64 = 1_795_392_000_000;

    fn text(s: &str) -> Result<u64, Problem> {
        parse(&DeValue::String(s.into()), NOW)
    }

    #[test]
    fn relative_starts() {
        assert_eq!(text("now").ok(), Some(NOW));
        assert_eq!(text(" NOW ").ok(), Some(NOW));
        assert_eq!(text("in 30s").ok(), Some(NOW + 30_000));
        assert_eq!(text("in 90s").ok(), Some(NOW + 90_000));
        assert_eq!(text("in 2m").ok(), Some(NOW + 120_000));
        assert_eq!(text("in 1h").ok(), Some(NOW + 3_600_000));
        assert_eq!(text("in 1m30s").ok(), Some(NOW + 90_000));
        assert_eq!(text("In 5 minutes").ok(), Some(NOW + 300_000));
    }

    #[test]
    fn absolute_starts_with_offsets() {
        assert_eq!(text("2026-12-01T20:00:00Z").ok(), Some(1_796_155_200_000));
        assert_eq!(
            text("2026-12-01T21:30:00+01:30").ok(),
            Some(1_796_155_200_000)
        );
        assert_eq!(
            text("2026-12-01 20:00:00.250Z").ok(),
            Some(1_796_155_200_250)
        );
        let toml_value: Datetime = "2026-12-01T20:00:00Z".parse().expect("a TOML date-time");
        assert_eq!(
            parse(&DeValue::Datetime(toml_value), NOW).ok(),
            Some(1_796_155_200_000)
        );
        // Half a minute late is still "now"; more than a minute is a mistake.
        assert_eq!(text("2026-11-22T23:59:30Z").ok(), Some(NOW - 30_000));
        let past = text("2026-11-22T23:00:00Z").expect_err("an hour ago");
        assert!(matches!(
            past,
            Problem::StartInPast {
                ago_ms: 3_600_000,
                ..
            }
        ));
        assert!(past.to_string().contains("60 min in the past"), "{past}");
    }

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2000, 2, 29) * 86_400_000, 951_782_400_000);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn unreadable_and_incomplete_starts() {
        for bad in ["tomorrow", "in", "in soon", "30s", "", "in -5s"] {
            assert!(
                matches!(text(bad), Err(Problem::StartUnreadable { .. })),
                "{bad:?}"
            );
        }
        let local = text("2026-12-01T20:00:00").expect_err("no zone");
        assert!(matches!(
            local,
            Problem::StartIncomplete {
                missing: "time zone",
                ..
            }
        ));
        let date = text("2026-12-01").expect_err("no time");
        assert!(matches!(
            date,
            Problem::StartIncomplete {
                missing: "time of day",
                ..
            }
        ));
        let wrong = parse(&DeValue::Boolean(true), NOW).expect_err("a boolean");
        assert_eq!(
            wrong.to_string(),
            "expected a string such as \"in 30s\" or an RFC 3339 time, found boolean"
        );
    }
}
