//! Times as istioctl prints them: ages with k8s `duration.HumanDuration`
//! (1.23+ status cells) and RFC 3339 timestamps as protobuf JSON writes them.

use std::time::{SystemTime, UNIX_EPOCH};

/// `duration.HumanDuration(now - then)` from k8s.io/apimachinery.
pub fn human_age(now: SystemTime, then: SystemTime) -> String {
    human_duration_nanos(signed_nanos(now, then))
}

/// `now - then` in nanoseconds, saturating like Go's `time.Sub`.
fn signed_nanos(now: SystemTime, then: SystemTime) -> i64 {
    match now.duration_since(then) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos())
            .map(|n| -n)
            .unwrap_or(i64::MIN),
    }
}

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// k8s `HumanDuration` on a Go `time.Duration` (nanoseconds).
pub fn human_duration_nanos(d: i64) -> String {
    // int(d.Seconds()) truncates toward zero.
    let seconds = d / SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MINUTE;
    if minutes < 10 {
        let s = (d / SECOND) % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        let m = (d / MINUTE) % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{}h", hours / 24, h)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{}d", hours / 24 / 365, dy)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// A protobuf `Timestamp` as golang/protobuf's jsonpb writes it:
/// `2006-01-02T15:04:05Z` with 0, 3, 6 or 9 fraction digits.
pub fn rfc3339(seconds: i64, nanos: i32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    );
    let nanos = nanos.clamp(0, 999_999_999);
    if nanos != 0 {
        let mut frac = format!("{nanos:09}");
        while frac.len() > 3 && frac.ends_with("000") {
            frac.truncate(frac.len() - 3);
        }
        s.push('.');
        s.push_str(&frac);
    }
    s.push('Z');
    s
}

/// `SystemTime` as (seconds, nanos) since the epoch.
pub fn to_timestamp(t: SystemTime) -> (i64, i32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i32),
        Err(e) => {
            let d = e.duration();
            let mut secs = -(d.as_secs() as i64);
            let mut nanos = d.subsec_nanos() as i32;
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            (secs, nanos)
        }
    }
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubernetes() {
        let cases: &[(i64, &str)] = &[
            (-3 * SECOND, "<invalid>"),
            (-SECOND - 1, "0s"),
            (0, "0s"),
            (119 * SECOND, "119s"),
            (120 * SECOND, "2m"),
            (5 * MINUTE + 3 * SECOND, "5m3s"),
            (10 * MINUTE + 59 * SECOND, "10m"),
            (179 * MINUTE, "179m"),
            (3 * HOUR, "3h"),
            (7 * HOUR + 59 * MINUTE, "7h59m"),
            (47 * HOUR, "47h"),
            (48 * HOUR, "2d"),
            (50 * HOUR, "2d2h"),
            (24 * 8 * HOUR, "8d"),
            (24 * 365 * 2 * HOUR, "2y"),
            (24 * (365 * 2 + 3) * HOUR, "2y3d"),
            (24 * 365 * 9 * HOUR, "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration_nanos(*d), *want, "{d}ns");
        }
    }

    #[test]
    fn timestamps_like_jsonpb() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_718_877_600, 0), "2024-06-20T10:00:00Z");
        assert_eq!(
            rfc3339(1_718_877_600, 500_000_000),
            "2024-06-20T10:00:00.500Z"
        );
        assert_eq!(rfc3339(1_718_877_600, 1_000), "2024-06-20T10:00:00.000001Z");
        assert_eq!(rfc3339(1_718_877_600, 1), "2024-06-20T10:00:00.000000001Z");
        assert_eq!(rfc3339(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn ages_from_system_times() {
        let then = UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let now = then + std::time::Duration::from_secs(300);
        assert_eq!(human_age(now, then), "5m");
        assert_eq!(human_age(then, now), "<invalid>");
        assert_eq!(to_timestamp(then), (1000, 0));
    }
}
