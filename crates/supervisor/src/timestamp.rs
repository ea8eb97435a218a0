//! UTC timestamps with nanoseconds, written and read in the RFC 3339 form
//! the CRI log format and `exit.json` use (`2026-11-29T17:00:00.123456789Z`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i128);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Parses RFC 3339 (`Z` or a `±hh:mm` offset, any number of fraction
    /// digits up to nine). Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            if !t.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos: i128 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            nanos = digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32);
        }
        let offset = match &s[i..] {
            "Z" | "z" => 0,
            o if o.len() == 6
                && (o.starts_with('+') || o.starts_with('-'))
                && o.as_bytes()[3] == b':' =>
            {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                let v = oh * 3600 + om * 60;
                if o.starts_with('-') { -v } else { v }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo, d);
        let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
        Some(Timestamp(secs as i128 * 1_000_000_000 + nanos))
    }

    /// Whole seconds and the nanosecond remainder.
    fn split(self) -> (i64, u32) {
        let secs = self.0.div_euclid(1_000_000_000) as i64;
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        (secs, nanos)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_nanos() as i128),
            Err(e) => Timestamp(-(e.duration().as_nanos() as i128)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        if t.0 >= 0 {
            UNIX_EPOCH + Duration::from_nanos(t.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(t.0.unsigned_abs() as u64)
        }
    }
}

impl fmt::Display for Timestamp {
    /// Always nine fraction digits and `Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = self.split();
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nine_digits() {
        let t = Timestamp(1_795_971_600_123_456_789);
        assert_eq!(t.to_string(), "2026-11-29T17:00:00.123456789Z");
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for n in [0i128, 1, 951_782_400_000_000_000, 1_795_971_600_123_456_789] {
            let t = Timestamp(n);
            assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        }
        assert_eq!(
            Timestamp::parse("2026-11-29T19:00:00.5+02:00"),
            Timestamp::parse("2026-11-29T17:00:00.500000000Z")
        );
        assert_eq!(
            Timestamp::parse("2024-02-29T00:00:00Z").map(|t| t.to_string()),
            Some("2024-02-29T00:00:00.000000000Z".to_owned())
        );
    }

    #[test]
    fn random_mutations_never_panic() {
        let valid = "2026-11-29T19:00:00.5+02:00".as_bytes();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = valid.to_vec();
            let n = b.len();
            b[(x as usize) % n] = (x >> 32) as u8;
            b[((x >> 8) as usize) % n] = (x >> 40) as u8;
            if let Ok(s) = String::from_utf8(b) {
                let _ = Timestamp::parse(&s);
            }
        }
        assert_eq!(Timestamp::parse("2026-11-29T19:00:00.5+0é:0"), None);
    }

    #[test]
    fn refuses_malformed() {
        for s in [
            "",
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "2026-11-29T17:00:00",
            "2026-11-29T17:00:00.Z",
            "2026-11-29T17:00:00.1234567890Z",
            "2026-11-29T17:00:00+0200",
            "2026-11-29T1x:00:00Z",
        ] {
            assert_eq!(Timestamp::parse(s), None, "{s}");
        }
    }
}
