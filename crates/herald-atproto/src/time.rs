//! Times on the AT Protocol's wires.

/// An RFC 3339 time (`2026-05-25T14:23:29.132431Z`, or with an offset) as
/// microseconds since the Unix epoch; `None` if it is not one or is before
/// 1970. Digits past the microsecond are dropped.
pub fn unix_micros(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        part.iter().all(u8::is_ascii_digit).then_some(())?;
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| bytes.get(at) != Some(&c))
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // A leap second (:60) counts as the next second's start, as Unix time does.
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let count = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if count == 0 {
            return None;
        }
        let kept = &fraction[..count.min(6)];
        micros = kept.parse::<i64>().ok()? * 10i64.pow(6 - kept.len() as u32);
        rest = &fraction[count..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let offset = &rest.as_bytes()[1..];
            if offset.len() != 5 || offset[2] != b':' {
                return None;
            }
            let hours = std::str::from_utf8(&offset[..2])
                .ok()?
                .parse::<i64>()
                .ok()?;
            let minutes = std::str::from_utf8(&offset[3..])
                .ok()?
                .parse::<i64>()
                .ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    u64::try_from(seconds.checked_mul(1_000_000)?.checked_add(micros)?).ok()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `time_us` (microseconds since the Unix epoch) as RFC 3339 in UTC, with
/// `fraction_digits` digits of the second (3 for records' `createdAt`, 6
/// for a firehose `time`; at most 6).
pub fn format_rfc3339(time_us: u64, fraction_digits: u32) -> String {
    let digits = fraction_digits.min(6);
    let seconds = time_us / 1_000_000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    let fraction = time_us % 1_000_000 / 10u64.pow(6 - digits);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:0width$}Z",
        of_day / 3_600,
        of_day / 60 % 60,
        of_day % 60,
        width = digits as usize,
    )
}

/// A proleptic Gregorian date from days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_what_it_reads() {
        let time_us = 1_779_719_009_132_431;
        assert_eq!(format_rfc3339(time_us, 6), "2026-05-25T14:23:29.132431Z");
        assert_eq!(format_rfc3339(time_us, 3), "2026-05-25T14:23:29.132Z");
        assert_eq!(unix_micros(&format_rfc3339(time_us, 6)), Some(time_us));
        assert_eq!(
            format_rfc3339(951_782_400_000_000, 3),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
