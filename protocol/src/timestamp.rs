//! Timestamps as the messages carry them: RFC 3339 UTC strings
//! (`2026-11-25T09:00:00.000Z`) in events and status, and Ground Truth's zone-less
//! ISO 8601 `creation-date` (`2026-11-25T09:00:00.000000`) in manifest rows. This
//! module converts them to and from Unix milliseconds. Only [`now_ms`] reads the clock
//! (the one copy the workspace has); the converters take the time as an argument,
//! which keeps every message builder deterministic and testable.

use thiserror::Error;
use time::{Date, Month};

/// A timestamp string that does not have the expected shape or names an impossible
/// date. Carries the offending text so the error names it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("timestamp {input:?} {problem}")]
pub struct TimestampError {
    pub input: String,
    pub problem: &'static str,
}

const MS_PER_DAY: i64 = 86_400_000;

/// The wall clock in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision:
/// `2026-11-25T09:00:00.000Z`.
pub fn format_rfc3339_utc(unix_ms: i64) -> String {
    let (date, time_ms) = split(unix_ms);
    format!("{date}T{}.{:03}Z", hms(time_ms), time_ms % 1000)
}

/// Formats Unix milliseconds the way Ground Truth writes `creation-date`: no zone,
/// microsecond precision, UTC implied: `2026-11-25T09:00:00.000000`.
pub fn format_manifest_date(unix_ms: i64) -> String {
    let (date, time_ms) = split(unix_ms);
    format!("{date}T{}.{:06}", hms(time_ms), (time_ms % 1000) * 1000)
}

/// Parses an RFC 3339 timestamp that is in UTC (`Z`, `z` or `+00:00`) into Unix
/// milliseconds; fractions beyond milliseconds are truncated. Other offsets are
/// rejected: every timestamp in this protocol is written in UTC.
pub fn parse_rfc3339_utc(input: &str) -> Result<i64, TimestampError> {
    let (ms, zone) = parse(input)?;
    match zone {
        Zone::Utc => Ok(ms),
        Zone::Missing => Err(err(input, "has no zone (expected a trailing Z)")),
        Zone::Other => Err(err(input, "is not in UTC (expected Z or +00:00)")),
    }
}

/// Parses an ISO 8601 date-time with or without a UTC zone (a missing zone means UTC,
/// as in Ground Truth's `creation-date`) into Unix milliseconds.
pub fn parse_iso8601_utc(input: &str) -> Result<i64, TimestampError> {
    let (ms, zone) = parse(input)?;
    match zone {
        Zone::Utc | Zone::Missing => Ok(ms),
        Zone::Other => Err(err(input, "is not in UTC (expected Z, +00:00 or no zone)")),
    }
}

enum Zone {
    Utc,
    Missing,
    Other,
}

fn err(input: &str, problem: &'static str) -> TimestampError {
    TimestampError {
        input: input.chars().take(64).collect(),
        problem,
    }
}

fn split(unix_ms: i64) -> (String, i64) {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let time_ms = unix_ms.rem_euclid(MS_PER_DAY);
    let date = date_from_days(days);
    (
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ),
        time_ms,
    )
}

fn hms(time_ms: i64) -> String {
    let s = time_ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn digits(input: &str, bytes: &[u8], range: std::ops::Range<usize>) -> Result<i64, TimestampError> {
    let slice = bytes
        .get(range)
        .ok_or_else(|| err(input, "is too short for YYYY-MM-DDTHH:MM:SS"))?;
    slice.iter().try_fold(0i64, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + i64::from(b - b'0'))
        } else {
            Err(err(input, "has a non-digit where a digit belongs"))
        }
    })
}

fn expect(input: &str, bytes: &[u8], at: usize, allowed: &[u8]) -> Result<(), TimestampError> {
    match bytes.get(at) {
        None => Err(err(input, "is too short for YYYY-MM-DDTHH:MM:SS")),
        Some(b) if allowed.contains(b) => Ok(()),
        _ => Err(err(input, "does not have the shape YYYY-MM-DDTHH:MM:SS")),
    }
}

fn parse(input: &str) -> Result<(i64, Zone), TimestampError> {
    let b = input.as_bytes();
    let year = digits(input, b, 0..4)?;
    expect(input, b, 4, b"-")?;
    let month = digits(input, b, 5..7)?;
    expect(input, b, 7, b"-")?;
    let day = digits(input, b, 8..10)?;
    expect(input, b, 10, b"Tt")?;
    let hour = digits(input, b, 11..13)?;
    expect(input, b, 13, b":")?;
    let minute = digits(input, b, 14..16)?;
    expect(input, b, 16, b":")?;
    let second = digits(input, b, 17..19)?;
    let month =
        Month::try_from(month as u8).map_err(|_| err(input, "has a month outside 01-12"))?;
    // Four digits: 0000..=9999, all within `time`'s range.
    let date = Date::from_calendar_date(year as i32, month, day as u8)
        .map_err(|_| err(input, "names a day that month does not have"))?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(err(input, "has an hour, minute or second out of range"));
    }
    let mut pos = 19;
    let mut millis = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start || pos - start > 9 {
            return Err(err(input, "has a fraction of second without 1-9 digits"));
        }
        let frac = &b[start..pos.min(start + 3)];
        millis = frac
            .iter()
            .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
        millis *= 10i64.pow(3 - frac.len() as u32);
    }
    let zone = match &b[pos..] {
        b"" => Zone::Missing,
        b"Z" | b"z" | b"+00:00" => Zone::Utc,
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            Zone::Other
        }
        _ => return Err(err(input, "has trailing text that is not a zone")),
    };
    let days = i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
    let ms = days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    Ok((ms, zone))
}

/// 1970-01-01 as a Julian day number (the calendar is the `time` crate's).
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The proleptic Gregorian date `days` after 1970-01-01; `time` spans the years
/// -9999..=9999 and a timestamp beyond them (no clock gives one) is held at the ends.
fn date_from_days(days: i64) -> Date {
    i32::try_from(days + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|j| Date::from_julian_day(j).ok())
        .unwrap_or(if days < 0 { Date::MIN } else { Date::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_25_2026_9AM: i64 = 1_795_597_200_000;

    #[test]
    fn formats_rfc3339_with_milliseconds_and_z() {
        assert_eq!(format_rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_utc(NOV_25_2026_9AM + 7),
            "2026-11-25T09:00:00.007Z"
        );
    }

    #[test]
    fn formats_manifest_dates_like_ground_truth() {
        assert_eq!(
            format_manifest_date(NOV_25_2026_9AM),
            "2026-11-25T09:00:00.000000"
        );
        assert_eq!(
            format_manifest_date(NOV_25_2026_9AM + 527),
            "2026-11-25T09:00:00.527000"
        );
    }

    #[test]
    fn parses_what_it_formats_across_leap_days_and_before_1970() {
        for ms in [
            0,
            -1,
            951_782_400_000, /* 2000-02-29 */
            NOV_25_2026_9AM + 999,
            -62_135_596_800_000,
        ] {
            assert_eq!(parse_rfc3339_utc(&format_rfc3339_utc(ms)), Ok(ms));
            assert_eq!(parse_iso8601_utc(&format_manifest_date(ms)), Ok(ms));
        }
    }

    #[test]
    fn accepts_utc_spellings_and_truncates_sub_millisecond_fractions() {
        assert_eq!(
            parse_rfc3339_utc("2026-11-25T09:00:00Z"),
            Ok(NOV_25_2026_9AM)
        );
        assert_eq!(
            parse_rfc3339_utc("2026-11-25t09:00:00.1234567z"),
            Ok(NOV_25_2026_9AM + 123)
        );
        assert_eq!(
            parse_rfc3339_utc("2026-11-25T09:00:00.5+00:00"),
            Ok(NOV_25_2026_9AM + 500)
        );
    }

    #[test]
    fn rejects_non_utc_missing_zone_and_impossible_dates() {
        let problem = |s: &str| parse_rfc3339_utc(s).unwrap_err().problem;
        assert!(problem("2026-11-25T09:00:00+01:00").contains("not in UTC"));
        assert!(problem("2026-11-25T09:00:00").contains("no zone"));
        assert!(problem("2026-02-29T09:00:00Z").contains("day"));
        assert!(problem("2026-13-01T09:00:00Z").contains("month"));
        assert!(problem("2026-11-25T24:00:00Z").contains("out of range"));
        assert!(problem("2026-11-25").contains("too short"));
        assert!(problem("2026-11-25 09:00:00Z").contains("shape"));
        assert!(problem("2026-11-25T09:00:00.Z").contains("fraction"));
        assert!(problem("2026-11-25T09:00:00Zjunk").contains("trailing"));
        assert!(problem("２026-11-25T09:00:00Z").contains("digit"));
    }
}
