//! Small time helpers: human durations (`5m`, `1h30m`, `500ms`) and RFC 3339 UTC
//! timestamps, without pulling a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d`, or sums such as `1h30m`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {input:?}: expected a number followed by ms, s, m, h or d (e.g. 5m, 1h30m)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {input:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => {
                return Err(format!(
                    "invalid duration {input:?}: unit {unit:?} is not one of ms, s, m, h, d"
                ));
            }
        };
        total = total.saturating_add(d);
    }
    Ok(total)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `2026-11-22T02:00:00Z` (optionally with fractional seconds).
pub fn parse_rfc3339(input: &str) -> Result<SystemTime, String> {
    let err = || {
        format!("invalid timestamp {input:?}: expected RFC 3339 UTC such as 2026-11-22T02:00:00Z")
    };
    let s = input.trim();
    let s = s.strip_suffix('Z').ok_or_else(err)?;
    let (date, time) = s.split_once('T').ok_or_else(err)?;
    let dp: Vec<&str> = date.split('-').collect();
    if dp.len() != 3 {
        return Err(err());
    }
    let (time, frac) = match time.split_once('.') {
        Some((t, f)) => (t, Some(f)),
        None => (time, None),
    };
    let tp: Vec<&str> = time.split(':').collect();
    if tp.len() != 3 {
        return Err(err());
    }
    let num = |s: &str| s.parse::<i64>().map_err(|_| err());
    let (y, mo, d) = (num(dp[0])?, num(dp[1])?, num(dp[2])?);
    let (h, mi, se) = (num(tp[0])?, num(tp[1])?, num(tp[2])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(err());
    }
    // A protobuf Timestamp (what syncz carries as last_updated) holds years
    // 0001..=9999 (google/protobuf/timestamp.proto); before 1970 is not a push
    // time istiod can report. Bounding the year first also keeps the day
    // arithmetic below far from overflow.
    if !(1970..=MAX_YEAR).contains(&y) {
        return Err(format!(
            "invalid timestamp {input:?}: the year must be 1970..{MAX_YEAR} (a protobuf Timestamp ends at 9999-12-31)"
        ));
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    let nanos = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            num(f)? * 10i64.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(err()),
        None => 0,
    };
    let secs = u64::try_from(secs).map_err(|_| err())?;
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos as u32))
        .ok_or_else(err)
}

/// The last year [`parse_rfc3339`] accepts (a protobuf Timestamp's last).
pub const MAX_YEAR: i64 = 9999;

/// `2026-11-22T02:00:00Z` (seconds precision).
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let r = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        (r % 3600) / 60,
        r % 60
    )
}

/// Seconds and nanoseconds since the Unix epoch (0 before it).
pub fn unix(t: SystemTime) -> (i64, i32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i32),
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_rfc3339("2026-11-22T02:03:04Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-22T02:03:04Z");
        assert_eq!(
            unix(parse_rfc3339("1970-01-02T00:00:00.5Z").unwrap()),
            (86400, 500_000_000)
        );
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_err());
        assert!(parse_rfc3339("yesterday").is_err());
    }

    /// Found by a hostile scenario: a far-future year panicked with
    /// "overflow when adding duration to instant" (and overflowed i64 day
    /// arithmetic in debug builds). Now each is an error naming the range.
    #[test]
    fn out_of_range_years_are_errors_not_panics() {
        for t in [
            "300000000000-01-01T00:00:00Z",
            "9223372036854775807-12-31T23:59:59Z",
            "-9223372036854775808-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            let e = parse_rfc3339(t).expect_err(t);
            assert!(e.contains(t), "{e}");
        }
        let last = parse_rfc3339("9999-12-31T23:59:59Z").expect("the last second");
        assert_eq!(format_rfc3339(last), "9999-12-31T23:59:59Z");
    }
}
