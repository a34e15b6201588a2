//! DATE, TIME, DATETIME and TIMESTAMP text → BigQuery's wire integers.
//!
//! DATE is days since 1970-01-01 (int32); TIMESTAMP is microseconds since the
//! epoch, UTC (int64); TIME and DATETIME are the packed civil-time int64 of the
//! fact sheet §4.2 (java-bigquerystorage `CivilTimeEncoder`). Ranges are
//! BigQuery's: 0001-01-01 to 9999-12-31, TIMESTAMP through 23:59:59.999999 UTC.
//! Fractions beyond microseconds are truncated (BigQuery keeps microseconds).

pub(crate) mod quoted;

/// Days from 1970-01-01 to 0001-01-01 and to 9999-12-31 (fact sheet §4.1).
pub(crate) const MIN_DATE: i64 = -719_162;
pub(crate) const MAX_DATE: i64 = 2_932_896;
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in microseconds.
pub(crate) const MIN_TIMESTAMP: i64 = MIN_DATE * MICROS_PER_DAY;
pub(crate) const MAX_TIMESTAMP: i64 = (MAX_DATE + 1) * MICROS_PER_DAY - 1;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Why a date/time text was refused (the caller adds the column and value).
pub(crate) type TimeResult<T> = Result<T, &'static str>;

/// A civil date-time with microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, public domain algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // BigQuery's years (1..=9999) keep every step non-negative: unsigned
    // division by constants, cheaper than the signed general case below.
    if let Ok(y @ 1..=9999) = u32::try_from(y)
        && (1..=12).contains(&m)
        && d >= 1
    {
        let y = if m <= 2 { y - 1 } else { y };
        let (era, yoe) = (y / 400, y % 400);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return i64::from(era) * 146_097 + i64::from(doe) - 719_468;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
#[cfg(test)]
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A cursor over ASCII text.
struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn digits(&mut self, n: usize) -> TimeResult<u32> {
        let d = self.s.get(self.i..self.i + n).ok_or("too short")?;
        let mut v = 0u32;
        for &c in d {
            if !c.is_ascii_digit() {
                return Err("digit expected");
            }
            v = v * 10 + u32::from(c - b'0');
        }
        self.i += n;
        Ok(v)
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
}

fn date_part(c: &mut Cur) -> TimeResult<(i64, u32, u32)> {
    let y = c.digits(4)?;
    if !c.eat(b'-') {
        return Err("expected YYYY-MM-DD");
    }
    let m = c.digits(2)?;
    if !c.eat(b'-') {
        return Err("expected YYYY-MM-DD");
    }
    let d = c.digits(2)?;
    check_date_fields(y, m, d)
}

fn check_date_fields(y: u32, m: u32, d: u32) -> TimeResult<(i64, u32, u32)> {
    let y = i64::from(y);
    if y < 1 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err("no such date");
    }
    Ok((y, m, d))
}

/// `HH:MM[:SS[.f{1,9}]]`; hour 0-23, second 0-59 (BigQuery has no leap seconds).
fn time_part(c: &mut Cur) -> TimeResult<(u32, u32, u32, u32)> {
    let h = c.digits(2)?;
    if !c.eat(b':') {
        return Err("expected HH:MM");
    }
    let mi = c.digits(2)?;
    let (mut s, mut us) = (0, 0);
    if c.eat(b':') {
        s = c.digits(2)?;
        us = fraction(c)?;
    }
    check_time_fields(h, mi, s)?;
    Ok((h, mi, s, us))
}

/// `[.f{1,9}]` after the seconds, as microseconds (digits past six dropped).
fn fraction(c: &mut Cur) -> TimeResult<u32> {
    if !c.eat(b'.') {
        return Ok(0);
    }
    let (mut n, mut us) = (0, 0);
    while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
        if n < 6 {
            us = us * 10 + u32::from(d - b'0');
        }
        n += 1;
        c.i += 1;
    }
    if n == 0 || n > 9 {
        return Err("1 to 9 fractional digits expected");
    }
    for _ in n..6 {
        us *= 10;
    }
    Ok(us)
}

fn check_time_fields(h: u32, mi: u32, s: u32) -> TimeResult<()> {
    if h > 23 || mi > 59 || s > 59 {
        return Err("no such time of day");
    }
    Ok(())
}

/// `YYYY-MM-DD(T|t| )HH:MM:SS[.f]`, the shape nearly every timestamp has,
/// read at fixed positions. `None` (cursor unmoved) for any other shape,
/// which the general parser then reads, with the same result.
fn fixed_date_time(c: &mut Cur) -> Option<TimeResult<Civil>> {
    let p: &[u8; 19] = c.s.get(c.i..c.i + 19)?.try_into().ok()?;
    let separators = p[4] == b'-'
        && p[7] == b'-'
        && matches!(p[10], b'T' | b't' | b' ')
        && p[13] == b':'
        && p[16] == b':';
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let mut digits = true;
    for i in DIGITS {
        digits &= p[i].is_ascii_digit();
    }
    if !separators || !digits {
        return None;
    }
    let d = |i: usize| u32::from(p[i] - b'0');
    let two = |i: usize| d(i) * 10 + d(i + 1);
    let y = two(0) * 100 + two(2);
    c.i += 19;
    Some(fixed_fields(c, y, [two(5), two(8), two(11), two(14), two(17)]))
}

/// The checks and the fraction after a fixed-position date-time.
#[inline]
fn fixed_fields(c: &mut Cur, y: u32, [mo, d, h, mi, s]: [u32; 5]) -> TimeResult<Civil> {
    let (year, month, day) = check_date_fields(y, mo, d)?;
    let micros = fraction(c)?;
    check_time_fields(h, mi, s)?;
    Ok(Civil { year, month, day, hour: h, minute: mi, second: s, micros })
}

/// `YYYY-MM-DD`.
pub(crate) fn parse_date<S: AsRef<[u8]> + ?Sized>(s: &S) -> TimeResult<i64> {
    let mut c = Cur { s: s.as_ref(), i: 0 };
    let (y, m, d) = date_part(&mut c)?;
    if !c.done() {
        return Err("expected YYYY-MM-DD");
    }
    Ok(days_from_civil(y, m, d))
}

/// `HH:MM[:SS[.ffffff]]` → packed TIME.
pub(crate) fn parse_time<S: AsRef<[u8]> + ?Sized>(s: &S) -> TimeResult<i64> {
    let mut c = Cur { s: s.as_ref(), i: 0 };
    let (hour, minute, second, micros) = time_part(&mut c)?;
    if !c.done() {
        return Err("expected HH:MM[:SS[.ffffff]]");
    }
    Ok(pack_time(&Civil { hour, minute, second, micros, ..Civil::default() }))
}

fn date_time(c: &mut Cur) -> TimeResult<Civil> {
    fixed_date_time(c).unwrap_or_else(|| general_date_time(c))
}

fn general_date_time(c: &mut Cur) -> TimeResult<Civil> {
    let (year, month, day) = date_part(c)?;
    let mut v = Civil { year, month, day, ..Civil::default() };
    if c.eat(b'T') || c.eat(b't') || c.eat(b' ') {
        (v.hour, v.minute, v.second, v.micros) = time_part(c)?;
    }
    Ok(v)
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]]` → packed DATETIME.
pub(crate) fn parse_datetime<S: AsRef<[u8]> + ?Sized>(s: &S) -> TimeResult<i64> {
    let mut c = Cur { s: s.as_ref(), i: 0 };
    let v = date_time(&mut c)?;
    if !c.done() {
        return Err("expected YYYY-MM-DD[ HH:MM[:SS[.ffffff]]] without a zone");
    }
    Ok(pack_datetime(&v))
}

/// RFC 3339 with any offset, or `YYYY-MM-DD HH:MM[:SS[.ffffff]][zone]`
/// (zone: `Z`, `UTC`, `±HH`, `±HH:MM`, `±HHMM`, optionally after a space;
/// none means UTC), or a bare date (midnight UTC) → microseconds since epoch.
pub(crate) fn parse_timestamp<S: AsRef<[u8]> + ?Sized>(s: &S) -> TimeResult<i64> {
    let mut c = Cur { s: s.as_ref(), i: 0 };
    let v = date_time(&mut c)?;
    c.eat(b' ');
    let offset_secs: i64 = match c.peek() {
        None => 0,
        Some(b'Z' | b'z') => {
            c.i += 1;
            0
        }
        Some(b'U') if c.s.get(c.i..c.i + 3) == Some(b"UTC") => {
            c.i += 3;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let h = c.digits(2)?;
            let m = if c.eat(b':') || c.peek().is_some_and(|d| d.is_ascii_digit()) {
                c.digits(2)?
            } else {
                0
            };
            if h > 23 || m > 59 {
                return Err("bad UTC offset");
            }
            let off = i64::from(h * 3600 + m * 60);
            if sign == b'-' { -off } else { off }
        }
        Some(_) => return Err("expected a UTC offset or zone"),
    };
    if !c.done() {
        return Err("unexpected text after the timestamp");
    }
    let days = days_from_civil(v.year, v.month, v.day);
    let secs = days * 86_400 + i64::from(v.hour * 3600 + v.minute * 60 + v.second) - offset_secs;
    let micros = secs * 1_000_000 + i64::from(v.micros);
    check_timestamp(micros)
}

pub(crate) fn check_timestamp(micros: i64) -> TimeResult<i64> {
    if (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&micros) {
        Ok(micros)
    } else {
        Err("outside 0001-01-01 .. 9999-12-31 UTC")
    }
}

pub(crate) fn check_date(days: i64) -> TimeResult<i64> {
    if (MIN_DATE..=MAX_DATE).contains(&days) {
        Ok(days)
    } else {
        Err("outside 0001-01-01 .. 9999-12-31")
    }
}

/// `(hour << 32) | (minute << 26) | (second << 20) | micros` (fact sheet §4.2).
pub(crate) fn pack_time(v: &Civil) -> i64 {
    (i64::from(v.hour) << 32)
        | (i64::from(v.minute) << 26)
        | (i64::from(v.second) << 20)
        | i64::from(v.micros)
}

/// `year << 46 | month << 42 | day << 37 | packed time` (fact sheet §4.2).
pub(crate) fn pack_datetime(v: &Civil) -> i64 {
    (v.year << 46) | (i64::from(v.month) << 42) | (i64::from(v.day) << 37) | pack_time(v)
}

pub(crate) fn unpack_time(p: i64) -> TimeResult<Civil> {
    if p & !0x1F_FFFF_FFFF != 0 {
        return Err("not a packed TIME");
    }
    let v = Civil {
        hour: ((p >> 32) & 0x1F) as u32,
        minute: ((p >> 26) & 0x3F) as u32,
        second: ((p >> 20) & 0x3F) as u32,
        micros: (p & 0xF_FFFF) as u32,
        ..Civil::default()
    };
    if v.hour > 23 || v.minute > 59 || v.second > 59 || v.micros > 999_999 {
        return Err("not a packed TIME");
    }
    Ok(v)
}

pub(crate) fn unpack_datetime(p: i64) -> TimeResult<Civil> {
    if p & !0x0FFF_FFFF_FFFF_FFFF != 0 {
        return Err("not a packed DATETIME");
    }
    let t = unpack_time(p & 0x1F_FFFF_FFFF)?;
    let v = Civil {
        year: (p >> 46) & 0x3FFF,
        month: ((p >> 42) & 0xF) as u32,
        day: ((p >> 37) & 0x1F) as u32,
        ..t
    };
    if v.year < 1
        || v.year > 9999
        || !(1..=12).contains(&v.month)
        || v.day < 1
        || v.day > days_in_month(v.year, v.month)
    {
        return Err("not a packed DATETIME");
    }
    Ok(v)
}

/// Packed DATETIME → microseconds since 1970-01-01T00:00:00 (the Arrow
/// `timestamp[us]` without zone that carries DATETIME, fact sheet §5).
pub(crate) fn datetime_to_micros(v: &Civil) -> i64 {
    let days = days_from_civil(v.year, v.month, v.day);
    (days * 86_400 + i64::from(v.hour * 3600 + v.minute * 60 + v.second)) * 1_000_000
        + i64::from(v.micros)
}

/// TIME → microseconds since midnight (Arrow `time64[us]`).
pub(crate) fn time_to_micros(v: &Civil) -> i64 {
    i64::from(v.hour * 3600 + v.minute * 60 + v.second) * 1_000_000 + i64::from(v.micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("0001-01-01"), Ok(MIN_DATE));
        assert_eq!(parse_date("9999-12-31"), Ok(MAX_DATE));
        assert_eq!(parse_date("2024-02-29"), Ok(19_782));
        for bad in
            ["2023-02-29", "0000-01-01", "2024-13-01", "2024-1-01", "2024-01-01x", "", "2024-01-32"]
        {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        // Every day of BigQuery's range, and past it (the signed path).
        for d in (MIN_DATE - 800..=MAX_DATE + 800).step_by(7).chain([MIN_DATE, -1, 0, MAX_DATE]) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn fixed_positions_read_as_the_general_parser_does() {
        for text in [
            "2024-05-06T07:08:09",
            "2024-05-06t07:08:09.5",
            "2024-05-06 07:08:09.123456789",
            "2024-02-29T23:59:59.000001Z",
            "2023-02-29T00:00:00",
            "2024-13-01T00:00:00",
            "0000-01-01T00:00:00",
            "9999-12-31T24:00:00",
            "2024-05-06T07:60:00",
            "2024-05-06T07:08:09.",
            "2024-05-06T07:08:09.1234567890",
            "2024-05-06T0a:08:09",
            "2024-05-06X07:08:09",
        ] {
            let (mut fixed, mut general) =
                (Cur { s: text.as_bytes(), i: 0 }, Cur { s: text.as_bytes(), i: 0 });
            match fixed_date_time(&mut fixed) {
                Some(v) => {
                    assert_eq!(v, general_date_time(&mut general), "{text}");
                    if v.is_ok() {
                        assert_eq!(fixed.i, general.i, "{text}");
                    }
                }
                None => assert_eq!(fixed.i, 0, "{text}: declined but moved"),
            }
        }
        assert!(fixed_date_time(&mut Cur { s: b"2024-05-06T07:08:09", i: 0 }).is_some());
    }

    #[test]
    fn timestamps_with_offsets() {
        let utc = parse_timestamp("2024-05-06T07:08:09.123456Z").unwrap();
        assert_eq!(utc, 1_714_979_289_123_456);
        assert_eq!(parse_timestamp("2024-05-06T09:08:09.123456+02:00"), Ok(utc));
        assert_eq!(parse_timestamp("2024-05-06 07:08:09.123456"), Ok(utc));
        assert_eq!(parse_timestamp("2024-05-06 07:08:09.123456789 UTC"), Ok(utc));
        assert_eq!(parse_timestamp("2024-05-06 02:08:09.123456-0500"), Ok(utc));
        assert_eq!(parse_timestamp("2024-05-06T07:08:09.123456-00"), Ok(utc));
        assert_eq!(parse_timestamp("1970-01-01"), Ok(0));
        assert_eq!(parse_timestamp("0001-01-01T00:00:00Z"), Ok(MIN_TIMESTAMP));
        assert_eq!(parse_timestamp("9999-12-31T23:59:59.999999Z"), Ok(MAX_TIMESTAMP));
        assert!(parse_timestamp("0001-01-01T00:00:00+01:00").is_err());
        assert!(parse_timestamp("9999-12-31T23:59:59-01:00").is_err());
        for bad in [
            "2024-05-06T07:08:60Z",
            "2024-05-06T07:08Z junk",
            "2024-05-06T",
            "2024-05-06T07:08:09.Z",
            "x",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn civil_packing_matches_google() {
        // CivilTimeEncoder examples: 12:34:56.789 and 2019-11-27 12:34:56.789.
        let t = parse_time("12:34:56.789").unwrap();
        assert_eq!(t, (12 << 32) | (34 << 26) | (56 << 20) | 789_000);
        let dt = parse_datetime("2019-11-27T12:34:56.789").unwrap();
        assert_eq!(dt, (2019 << 46) | (11 << 42) | (27 << 37) | t);
        assert_eq!(parse_datetime("2019-11-27"), Ok((2019 << 46) | (11 << 42) | (27 << 37)));
        assert_eq!(unpack_datetime(dt).map(|v| v.micros), Ok(789_000));
        assert!(unpack_time(24 << 32).is_err());
        assert!(parse_datetime("2019-11-27T12:34:56Z").is_err());
        assert!(parse_time("24:00").is_err());
    }
}
