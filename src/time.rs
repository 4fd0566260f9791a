//! Wall-clock time as unix milliseconds, its RFC 3339 form for JSON and CSV, and the RFC 5322
//! form of a mail's Date header.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How far past the server's clock a client's time may be (an imported run's start, a point's
/// time): clocks disagree, but not by more than this.
pub const MAX_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// A UTC instant split into calendar parts.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    /// Days since 1970-01-01 (a Thursday).
    days: i64,
    second_of_day: i64,
    millis: i64,
}

/// Howard Hinnant's civil-from-days, hand-written because it is the only date arithmetic Tora
/// needs, not worth a date crate.
fn civil(ms: i64) -> Civil {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        days,
        second_of_day,
        millis,
    }
}

/// `2026-11-26T13:05:09.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let c = civil(ms);
    let sod = c.second_of_day;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        c.millis
    )
}

/// `Thu, 26 Nov 2026 13:05:09 +0000`: the Date header of a mail (RFC 5322).
pub fn rfc5322(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(ms);
    let sod = c.second_of_day;
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[c.days.rem_euclid(7) as usize],
        c.day,
        MONTHS[(c.month - 1).clamp(0, 11) as usize],
        c.year,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{rfc3339, rfc5322};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_698_309_123), "2026-11-26T13:05:09.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322(1_795_698_309_123),
            "Thu, 26 Nov 2026 13:05:09 +0000"
        );
        assert_eq!(rfc5322(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
