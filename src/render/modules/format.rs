//! Dates and times as text, the way Python writes and reads them: `strftime` (Python's own
//! `%f`, `%z`, `%:z`, `%Z`, the rest as glibc's C locale does it, with the `-`, `_`, `0` and
//! `^` flags), `strptime` (the directives of Python's `_strptime`, C locale names) and the
//! ISO 8601 forms `fromisoformat` accepts since Python 3.11.
//!
//! Names are English only: there is no locale, as in dbt's default C locale.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};
use minijinja::Error;

use super::invalid;
use super::pytz::{TzInfo, offset_text};

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// What `strftime` formats: a date, a time of day, and the zone when the value is aware.
pub(crate) struct Stamp {
    pub date: NaiveDate,
    pub time: NaiveTime,
    pub tz: Option<TzInfo>,
}

#[derive(Clone, Copy)]
enum Pad {
    Default,
    None,
    Space,
    Zero,
}

fn number(out: &mut String, n: i64, width: usize, default: char, pad: Pad) {
    let fill = match pad {
        Pad::Default => default,
        Pad::Space => ' ',
        Pad::Zero => '0',
        Pad::None => {
            out.push_str(&n.to_string());
            return;
        }
    };
    let digits = n.unsigned_abs().to_string();
    if n < 0 {
        out.push('-');
    }
    for _ in digits.len()..width {
        out.push(fill);
    }
    out.push_str(&digits);
}

/// Python's `strftime`.
pub(crate) fn strftime(fmt: &str, s: &Stamp) -> String {
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::from("%");
        let mut pad = Pad::Default;
        let mut upper = false;
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => pad = Pad::None,
                '_' => pad = Pad::Space,
                '0' => pad = Pad::Zero,
                '^' => upper = true,
                '#' => {}
                _ => break,
            }
            spec.push(flag);
            chars.next();
        }
        let Some(d) = chars.next() else {
            out.push_str(&spec);
            break;
        };
        let text = |out: &mut String, t: &str| {
            if upper {
                out.push_str(&t.to_uppercase());
            } else {
                out.push_str(t);
            }
        };
        let date = s.date;
        let time = s.time;
        let from_monday = date.weekday().num_days_from_monday();
        let from_sunday = date.weekday().num_days_from_sunday();
        let hour12 = match time.hour() % 12 {
            0 => 12,
            h => h,
        };
        match d {
            'a' => text(&mut out, &DAYS[from_monday as usize][..3]),
            'A' => text(&mut out, DAYS[from_monday as usize]),
            'b' | 'h' => text(&mut out, &MONTHS[date.month0() as usize][..3]),
            'B' => text(&mut out, MONTHS[date.month0() as usize]),
            'c' => out.push_str(&strftime("%a %b %e %H:%M:%S %Y", s)),
            'C' => number(&mut out, i64::from(date.year() / 100), 2, '0', pad),
            'd' => number(&mut out, i64::from(date.day()), 2, '0', pad),
            'D' | 'x' => out.push_str(&strftime("%m/%d/%y", s)),
            'e' => number(&mut out, i64::from(date.day()), 2, ' ', pad),
            'f' => number(&mut out, i64::from(time.nanosecond() / 1000), 6, '0', pad),
            'F' => out.push_str(&strftime("%Y-%m-%d", s)),
            'g' => number(
                &mut out,
                i64::from(date.iso_week().year() % 100),
                2,
                '0',
                pad,
            ),
            'G' => number(&mut out, i64::from(date.iso_week().year()), 1, '0', pad),
            'H' => number(&mut out, i64::from(time.hour()), 2, '0', pad),
            'I' => number(&mut out, i64::from(hour12), 2, '0', pad),
            'j' => number(&mut out, i64::from(date.ordinal()), 3, '0', pad),
            'k' => number(&mut out, i64::from(time.hour()), 2, ' ', pad),
            'l' => number(&mut out, i64::from(hour12), 2, ' ', pad),
            'm' => number(&mut out, i64::from(date.month()), 2, '0', pad),
            'M' => number(&mut out, i64::from(time.minute()), 2, '0', pad),
            'n' => out.push('\n'),
            'p' => out.push_str(if time.hour() < 12 { "AM" } else { "PM" }),
            'P' => out.push_str(if time.hour() < 12 { "am" } else { "pm" }),
            'r' => out.push_str(&strftime("%I:%M:%S %p", s)),
            'R' => out.push_str(&strftime("%H:%M", s)),
            // glibc reads the fields as local time, whatever the value's zone.
            's' => {
                let local = date.and_time(time);
                out.push_str(
                    &super::datetime::local_to_utc(local)
                        .and_utc()
                        .timestamp()
                        .to_string(),
                );
            }
            'S' => number(&mut out, i64::from(time.second()), 2, '0', pad),
            't' => out.push('\t'),
            'T' | 'X' => out.push_str(&strftime("%H:%M:%S", s)),
            'u' => number(&mut out, i64::from(from_monday + 1), 1, '0', pad),
            'U' => number(
                &mut out,
                i64::from((date.ordinal0() + 7 - from_sunday) / 7),
                2,
                '0',
                pad,
            ),
            'V' => number(&mut out, i64::from(date.iso_week().week()), 2, '0', pad),
            'w' => number(&mut out, i64::from(from_sunday), 1, '0', pad),
            'W' => number(
                &mut out,
                i64::from((date.ordinal0() + 7 - from_monday) / 7),
                2,
                '0',
                pad,
            ),
            'y' => number(&mut out, i64::from(date.year() % 100), 2, '0', pad),
            'Y' => number(&mut out, i64::from(date.year()), 1, '0', pad),
            'z' => {
                if let Some(tz) = &s.tz {
                    out.push_str(&offset_text(tz.offset(), ""));
                }
            }
            ':' if chars.peek() == Some(&'z') => {
                chars.next();
                if let Some(tz) = &s.tz {
                    out.push_str(&offset_text(tz.offset(), ":"));
                }
            }
            'Z' => {
                if let Some(tz) = &s.tz {
                    out.push_str(&tz.tzname());
                }
            }
            '%' => out.push('%'),
            // glibc leaves a conversion it does not know as written.
            other => {
                out.push_str(&spec);
                out.push(other);
            }
        }
    }
    out
}

/// The regular expression for one `strptime` directive (`None`: not a directive).
fn directive_pattern(d: char) -> Option<String> {
    let names = |name: &str, words: Vec<String>| {
        let mut words = words;
        // Longest first, so that `June` is not read as `Jun` followed by `e`.
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        format!("(?P<{name}>{})", words.join("|"))
    };
    let group = |name: &str, re: &str| Some(format!("(?P<{name}>{re})"));
    match d {
        'd' => group("d", r"3[01]|[12]\d|0[1-9]|[1-9]| [1-9]"),
        'f' => group("f", r"[0-9]{1,6}"),
        'H' => group("H", r"2[0-3]|[0-1]\d|\d"),
        'I' => group("I", r"1[0-2]|0[1-9]|[1-9]| [1-9]"),
        'G' => group("G", r"\d\d\d\d"),
        'j' => group(
            "j",
            r"36[0-6]|3[0-5]\d|[12]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9]",
        ),
        'm' => group("m", r"1[0-2]|0[1-9]|[1-9]"),
        'M' => group("M", r"[0-5]\d|\d"),
        'S' => group("S", r"6[0-1]|[0-5]\d|\d"),
        'U' => group("U", r"5[0-3]|[0-4]\d|\d"),
        'W' => group("W", r"5[0-3]|[0-4]\d|\d"),
        'V' => group("V", r"5[0-3]|0[1-9]|[1-4]\d|\d"),
        'w' => group("w", r"[0-6]"),
        'u' => group("u", r"[1-7]"),
        'y' => group("y", r"\d\d"),
        'Y' => group("Y", r"\d\d\d\d"),
        'z' => group(
            "z",
            r"[+-]\d\d:?[0-5]\d(?::?[0-5]\d(?:\.\d{1,6})?)?|(?-i:Z)",
        ),
        'Z' => group("Z", "utc|gmt"),
        'p' => group("p", "am|pm"),
        'A' => Some(names("A", DAYS.iter().map(|s| (*s).to_string()).collect())),
        'a' => Some(names(
            "a",
            DAYS.iter().map(|s| s[..3].to_string()).collect(),
        )),
        'B' => Some(names(
            "B",
            MONTHS.iter().map(|s| (*s).to_string()).collect(),
        )),
        'b' => Some(names(
            "b",
            MONTHS.iter().map(|s| s[..3].to_string()).collect(),
        )),
        _ => None,
    }
}

fn strptime_pattern(fmt: &str) -> Result<String, Error> {
    let mut re = String::from("(?i)^");
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            re.push_str(r"\s+");
            continue;
        }
        if c != '%' {
            re.push_str(&regex::escape(&c.to_string()));
            continue;
        }
        let d = match chars.next() {
            None => return Err(invalid(format!("stray % in format '{fmt}'"))),
            Some(':') if chars.peek() == Some(&'z') => {
                chars.next();
                'z'
            }
            Some(d) => d,
        };
        match d {
            '%' => re.push('%'),
            'c' => re.push_str(&strptime_pattern("%a %b %d %H:%M:%S %Y")?[5..]),
            'x' => re.push_str(&strptime_pattern("%m/%d/%y")?[5..]),
            'X' => re.push_str(&strptime_pattern("%H:%M:%S")?[5..]),
            d => match directive_pattern(d) {
                Some(p) => re.push_str(&p),
                None => {
                    return Err(invalid(format!(
                        "'{d}' is a bad directive in format '{fmt}'"
                    )));
                }
            },
        }
    }
    Ok(re)
}

/// `+05:30`, `-0800`, `+05:30:15.5` or `Z` as seconds east of UTC.
fn offset_seconds(z: &str) -> Option<i32> {
    if z.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let (time, _fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let digits: String = time.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4 | 6) {
        return None;
    }
    let part = |i: usize| {
        digits
            .get(i..i + 2)
            .map_or(Some(0), |p| p.parse::<i32>().ok())
    };
    let (h, m, s) = (part(0)?, part(2)?, part(4)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + s))
}

/// A position in a short list (of days, of months) as a field value.
fn count(i: usize) -> i64 {
    i64::try_from(i).expect("a small index")
}

fn date_of(year: i32, month: u32, day: u32) -> Result<NaiveDate, Error> {
    NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| {
        invalid(format!(
            "day is out of range for month ({year}-{month:02}-{day:02})"
        ))
    })
}

/// Python's `datetime.strptime(text, format)`: the wall time, and the zone when the format
/// has `%z`.
pub(crate) fn strptime(text: &str, fmt: &str) -> Result<(NaiveDateTime, Option<TzInfo>), Error> {
    let pattern = strptime_pattern(fmt)?;
    let re = regex::Regex::new(&pattern)
        .map_err(|e| invalid(format!("strptime(): format '{fmt}' cannot be read: {e}")))?;
    let caps = re
        .captures(text)
        .ok_or_else(|| invalid(format!("time data '{text}' does not match format '{fmt}'")))?;
    let end = caps.get(0).map_or(0, |m| m.end());
    if end != text.len() {
        return Err(invalid(format!(
            "unconverted data remains: {}",
            &text[end..]
        )));
    }
    let get = |name: &str| caps.name(name).map(|m| m.as_str().trim());
    let num = |name: &str| get(name).and_then(|s| s.parse::<i64>().ok());
    let index_of = |name: &str, words: &[&str], len: Option<usize>| {
        get(name).and_then(|w| {
            words.iter().position(|full| {
                let full = len.map_or(*full, |n| &full[..n]);
                full.eq_ignore_ascii_case(w)
            })
        })
    };

    let mut year = num("Y").or_else(|| num("y").map(|y| y + if y <= 68 { 2000 } else { 1900 }));
    let mut month = num("m")
        .or_else(|| index_of("B", &MONTHS, None).map(|i| count(i) + 1))
        .or_else(|| index_of("b", &MONTHS, Some(3)).map(|i| count(i) + 1))
        .unwrap_or(1);
    let mut day = num("d").unwrap_or(1);
    let mut hour = num("H").unwrap_or(0);
    if let Some(h12) = num("I") {
        let pm = get("p").is_some_and(|p| p.eq_ignore_ascii_case("pm"));
        hour = match (h12, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    let minute = num("M").unwrap_or(0);
    let second = num("S").unwrap_or(0);
    let micros = get("f").map_or(0, |f| format!("{f:0<6}").parse::<u32>().unwrap_or(0));
    // Monday is 0, as `weekday()`.
    let weekday = index_of("A", &DAYS, None)
        .or_else(|| index_of("a", &DAYS, Some(3)))
        .map(count)
        .or_else(|| num("w").map(|w| (w + 6) % 7))
        .or_else(|| num("u").map(|u| u - 1));
    let iso_year = num("G");
    let iso_week = num("V");
    let mut julian = num("j");

    let out_of_range = || invalid(format!("time data '{text}' is out of range"));
    match (iso_year, iso_week) {
        (Some(_), _) if julian.is_some() => {
            return Err(invalid(
                "day of the year directive '%j' is not compatible with ISO year directive '%G'; use '%Y' instead",
            ));
        }
        (Some(iy), Some(iw)) if weekday.is_some() => {
            let wd = weekday.expect("checked");
            let d = NaiveDate::from_isoywd_opt(
                i32::try_from(iy).map_err(|_| out_of_range())?,
                u32::try_from(iw).map_err(|_| out_of_range())?,
                Weekday::try_from(u8::try_from(wd).map_err(|_| out_of_range())?)
                    .map_err(|_| out_of_range())?,
            )
            .ok_or_else(out_of_range)?;
            year = Some(i64::from(d.year()));
            month = i64::from(d.month());
            day = i64::from(d.day());
        }
        (Some(_), _) => {
            return Err(invalid(
                "ISO year directive '%G' must be used with the ISO week directive '%V' and a weekday directive ('%A', '%a', '%w' or '%u')",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "ISO week directive '%V' must be used with the ISO year directive '%G' and a weekday directive ('%A', '%a', '%w' or '%u')",
            ));
        }
        (None, None) => {}
    }
    let year = i32::try_from(year.unwrap_or(1900)).map_err(|_| out_of_range())?;
    let week_number = num("U")
        .map(|w| (w, true))
        .or_else(|| num("W").map(|w| (w, false)));
    if julian.is_none()
        && let (Some(wd), Some((week, sunday_first))) = (weekday, week_number)
    {
        // The day of the year from a week number (%U: weeks start on Sunday, %W: on
        // Monday; days before the first such day are week 0) and a weekday.
        let jan1 = date_of(year, 1, 1)?;
        let shift = |d: i64| if sunday_first { (d + 1) % 7 } else { d };
        let first = shift(i64::from(jan1.weekday().num_days_from_monday()));
        let wd = shift(wd);
        let week0_len = (7 - first) % 7;
        julian = Some(if week == 0 {
            1 + wd - first
        } else {
            week0_len + 7 * (week - 1) + 1 + wd
        });
    }
    let to_u32 = |n: i64| u32::try_from(n).map_err(|_| out_of_range());
    let date = match julian {
        Some(j) => {
            let jan1 = date_of(year, 1, 1)?;
            jan1.checked_add_signed(chrono::TimeDelta::days(j - 1))
                .ok_or_else(out_of_range)?
        }
        None => date_of(year, to_u32(month)?, to_u32(day)?)?,
    };
    let time =
        NaiveTime::from_hms_micro_opt(to_u32(hour)?, to_u32(minute)?, to_u32(second)?, micros)
            .ok_or_else(|| invalid(format!("second must be in 0..59 ('{text}')")))?;
    let tz = match get("z") {
        Some(z) => Some(TzInfo::Fixed {
            seconds: offset_seconds(z)
                .ok_or_else(|| invalid(format!("inconsistent use of : in {z}")))?,
            name: caps.name("Z").map(|m| m.as_str().to_string()),
        }),
        None => None,
    };
    Ok((date.and_time(time), tz))
}

fn digits(s: &str, at: usize, len: usize) -> Option<u32> {
    let part = s.get(at..at + len)?;
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())?
}

/// The date at the start of an ISO 8601 text (`2024-01-02`, `20240102`, `2024-W01-2`,
/// `2024W012`) and the rest.
fn iso_date_prefix(s: &str) -> Option<(NaiveDate, &str)> {
    let b = s.as_bytes();
    let year = i32::try_from(digits(s, 0, 4)?).ok()?;
    let week_date = |at: usize, dash: bool| {
        let week = digits(s, at, 2)?;
        let (day, len) = match (dash, b.get(at + 2), b.get(at + 3)) {
            (true, Some(b'-'), Some(d)) if d.is_ascii_digit() => (u32::from(d - b'0'), at + 4),
            (false, Some(d), _) if d.is_ascii_digit() => (u32::from(d - b'0'), at + 3),
            _ => (1, at + 2),
        };
        let weekday = Weekday::try_from(u8::try_from(day.checked_sub(1)?).ok()?).ok()?;
        Some((NaiveDate::from_isoywd_opt(year, week, weekday)?, &s[len..]))
    };
    match (b.get(4), b.get(5)) {
        (Some(b'-'), Some(b'W')) => week_date(6, true),
        (Some(b'W'), _) => week_date(5, false),
        (Some(b'-'), _) => {
            if b.get(7) != Some(&b'-') {
                return None;
            }
            let date = NaiveDate::from_ymd_opt(year, digits(s, 5, 2)?, digits(s, 8, 2)?)?;
            Some((date, &s[10..]))
        }
        _ => {
            let date = NaiveDate::from_ymd_opt(year, digits(s, 4, 2)?, digits(s, 6, 2)?)?;
            Some((date, &s[8..]))
        }
    }
}

/// `date.fromisoformat`.
pub(crate) fn iso_date(s: &str) -> Option<NaiveDate> {
    match iso_date_prefix(s)? {
        (date, "") => Some(date),
        _ => None,
    }
}

/// `time.fromisoformat`'s text: `HH[:MM[:SS[.f…]]]` or `HH[MM[SS[.f…]]]`, then an optional
/// `Z` or `±HH[:MM[:SS]]`.
pub(crate) fn iso_time(s: &str) -> Option<(NaiveTime, Option<i32>)> {
    let (clock, offset) = match s.find(['Z', 'z', '+', '-']) {
        Some(at) => (&s[..at], Some(offset_seconds(&s[at..])?)),
        None => (s, None),
    };
    let (clock, fraction) = match clock.find(['.', ',']) {
        Some(at) => (&clock[..at], Some(&clock[at + 1..])),
        None => (clock, None),
    };
    let extended = clock.contains(':');
    let step = if extended { 3 } else { 2 };
    let parts: Vec<u32> = (0..clock.len())
        .step_by(step)
        .map(|at| {
            if extended && at > 0 && clock.as_bytes().get(at - 1) != Some(&b':') {
                return None;
            }
            digits(clock, at, 2)
        })
        .collect::<Option<_>>()?;
    let expected_len = parts.len() * 2 + if extended { parts.len() - 1 } else { 0 };
    if parts.is_empty() || parts.len() > 3 || clock.len() != expected_len {
        return None;
    }
    if fraction.is_some() && parts.len() < 3 {
        return None;
    }
    let micros = match fraction {
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(f) => format!("{:0<6}", &f[..f.len().min(6)]).parse().ok()?,
        None => 0,
    };
    let at = |i: usize| parts.get(i).copied().unwrap_or(0);
    let time = NaiveTime::from_hms_micro_opt(at(0), at(1), at(2), micros)?;
    Some((time, offset))
}

/// `datetime.fromisoformat`: a date, then optionally any one separator character and a time.
pub(crate) fn iso_datetime(s: &str) -> Option<(NaiveDateTime, Option<i32>)> {
    let (date, rest) = iso_date_prefix(s)?;
    let mut rest_chars = rest.chars();
    if rest_chars.next().is_none() {
        return Some((date.and_time(NaiveTime::MIN), None));
    }
    let (time, offset) = iso_time(rest_chars.as_str())?;
    Some((date.and_time(time), offset))
}
