//! `modules.datetime`: Python's `date`, `datetime`, `time`, `timedelta` and `tzinfo` as dbt
//! exposes them, with `run_started_at` (an aware datetime in UTC).
//!
//! Values are minijinja objects with Python's attributes and methods; `{{ d }}` renders
//! Python's `str(d)` and a list of them Python's `repr()`. Comparison works between values of
//! one kind (`<`, `==`, sorting) through `Object::custom_cmp`: aware datetimes compare as
//! instants, naive ones as wall times.
//!
//! minijinja has no operator overloading for objects: a template's `d + delta` and `a - b`
//! reach `binary_op` through the rewrite in `render::arith`; `delta * 2` is written
//! `delta.__mul__(2)`. Python's dunder methods work directly too. A comparison between values
//! of different kinds (a date with a datetime, `run_started_at` with a datetime made in a
//! template) falls back to comparing their text: right for two datetimes in the same zone,
//! meaningless otherwise (Python raises). Compare `.timestamp()` values across zones, as
//! dbt-date does.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use chrono::{
    Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike,
};
use minijinja::value::{DynObject, Object, ObjectRepr, Tuple, Value};
use minijinja::{Error, ErrorKind, State};

use super::format::{self, Stamp};
use super::pytz::{TzInfo, offset_text, tz_arg};
use super::{bind, int_arg, int_or, invalid};

const MICROS_PER_SECOND: i128 = 1_000_000;
const MICROS_PER_DAY: i128 = 86_400 * MICROS_PER_SECOND;
const MAX_DELTA_DAYS: i128 = 999_999_999;

fn out_of_range() -> Error {
    invalid("date value out of range")
}

fn check_year(at: NaiveDateTime) -> Result<NaiveDateTime, Error> {
    if (1..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(out_of_range())
    }
}

fn micros(t: NaiveTime) -> u32 {
    (t.nanosecond() / 1000).min(999_999)
}

/// Python keeps microseconds: the clock's nanoseconds are cut.
fn to_micros(at: NaiveDateTime) -> NaiveDateTime {
    at.with_nanosecond(micros(at.time()) * 1000).unwrap_or(at)
}

fn make_date(year: i64, month: i64, day: i64) -> Result<NaiveDate, Error> {
    if !(1..=9999).contains(&year) {
        return Err(invalid(format!("year {year} is out of range")));
    }
    if !(1..=12).contains(&month) {
        return Err(invalid(format!("month must be in 1..12, not {month}")));
    }
    let (y, m) = (
        i32::try_from(year).expect("checked"),
        u32::try_from(month).expect("checked"),
    );
    u32::try_from(day)
        .ok()
        .and_then(|d| NaiveDate::from_ymd_opt(y, m, d))
        .ok_or_else(|| {
            invalid(format!(
                "day {day} is out of range for month {year}-{month:02}"
            ))
        })
}

fn make_time(hour: i64, minute: i64, second: i64, micro: i64) -> Result<NaiveTime, Error> {
    let field = |v: i64, max: i64, name: &str| {
        if (0..=max).contains(&v) {
            Ok(u32::try_from(v).expect("checked"))
        } else {
            Err(invalid(format!("{name} must be in 0..{max}, not {v}")))
        }
    };
    let time = NaiveTime::from_hms_micro_opt(
        field(hour, 23, "hour")?,
        field(minute, 59, "minute")?,
        field(second, 59, "second")?,
        field(micro, 999_999, "microsecond")?,
    );
    Ok(time.expect("fields in range"))
}

/// The instant a naive wall time stands for on this machine (Python reads naive values as
/// local time in `timestamp()` and `astimezone()`). A wall time the clock skips takes the
/// offset from before the change.
pub(crate) fn local_to_utc(local: NaiveDateTime) -> NaiveDateTime {
    match chrono::Local.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.naive_utc(),
        LocalResult::None => {
            let before = chrono::Local
                .offset_from_utc_datetime(&(local - chrono::TimeDelta::days(1)))
                .fix();
            local - chrono::TimeDelta::seconds(i64::from(before.local_minus_utc()))
        }
    }
}

/// This machine's wall time at an instant, and its offset.
fn utc_to_local(utc: NaiveDateTime) -> (NaiveDateTime, i32) {
    let offset = chrono::Local
        .offset_from_utc_datetime(&utc)
        .fix()
        .local_minus_utc();
    (utc + chrono::TimeDelta::seconds(i64::from(offset)), offset)
}

fn utc_now() -> NaiveDateTime {
    to_micros(chrono::Utc::now().naive_utc())
}

/// A POSIX timestamp (int or float) as a UTC time, rounded to the microsecond as Python does.
fn from_timestamp(func: &str, ts: &Value) -> Result<NaiveDateTime, Error> {
    let (secs, micro) = if ts.is_integer() {
        (int_arg(func, "timestamp", ts)?, 0)
    } else {
        let f = f64::try_from(ts.clone())
            .ok()
            .filter(|f| ts.is_number() && f.is_finite())
            .ok_or_else(|| invalid(format!("{func}(): the timestamp must be a number")))?;
        let whole = f.trunc();
        let mut secs = round_to_i128(whole).ok_or_else(out_of_range)?;
        let mut micro = round_to_i128((f - whole) * 1e6).ok_or_else(out_of_range)?;
        if micro >= MICROS_PER_SECOND {
            secs += 1;
            micro -= MICROS_PER_SECOND;
        } else if micro < 0 {
            secs -= 1;
            micro += MICROS_PER_SECOND;
        }
        (
            i64::try_from(secs).map_err(|_| out_of_range())?,
            u32::try_from(micro).expect("in 0..1e6"),
        )
    };
    let at = chrono::DateTime::from_timestamp(secs, micro * 1000).ok_or_else(out_of_range)?;
    check_year(at.naive_utc())
}

/// A float rounded half to even, as an integer, if it fits.
#[allow(clippy::cast_possible_truncation)]
fn round_to_i128(f: f64) -> Option<i128> {
    let r = f.round_ties_even();
    // i128's range is far beyond any timedelta; the bound keeps the cast exact.
    (r.is_finite() && r.abs() < 1e36).then_some(r as i128)
}

// ---------------------------------------------------------------------------------------
// timedelta

/// Python's `timedelta`: a signed duration, in microseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimeDelta {
    micros: i128,
}

impl TimeDelta {
    pub(crate) fn from_micros(micros: i128) -> Result<TimeDelta, Error> {
        let days = micros.div_euclid(MICROS_PER_DAY);
        if days.abs() > MAX_DELTA_DAYS {
            return Err(invalid(format!(
                "timedelta: days={days}; must have magnitude <= {MAX_DELTA_DAYS}"
            )));
        }
        Ok(TimeDelta { micros })
    }

    pub(crate) fn from_seconds(seconds: i64) -> TimeDelta {
        TimeDelta {
            micros: i128::from(seconds) * MICROS_PER_SECOND,
        }
    }

    /// Python's normalised fields: `days` (may be negative), `seconds` in 0..86400,
    /// `microseconds` in 0..1e6.
    fn days(self) -> i128 {
        self.micros.div_euclid(MICROS_PER_DAY)
    }

    fn seconds(self) -> i128 {
        self.micros.rem_euclid(MICROS_PER_DAY) / MICROS_PER_SECOND
    }

    fn microseconds(self) -> i128 {
        self.micros.rem_euclid(MICROS_PER_SECOND)
    }

    fn chrono(self) -> Result<chrono::TimeDelta, Error> {
        i64::try_from(self.micros)
            .map(chrono::TimeDelta::microseconds)
            .map_err(|_| out_of_range())
    }

    pub(crate) fn into_value(self) -> Value {
        Value::from_object(self)
    }

    fn value(micros: i128) -> Result<Value, Error> {
        Ok(TimeDelta::from_micros(micros)?.into_value())
    }
}

/// The `timedelta(...)` constructor: every unit may be an int or a float; the sum is rounded
/// to the microsecond, half to even.
fn timedelta_new(args: &[Value]) -> Result<Value, Error> {
    const UNITS: [(&str, i128); 7] = [
        ("days", MICROS_PER_DAY),
        ("seconds", MICROS_PER_SECOND),
        ("microseconds", 1),
        ("milliseconds", 1000),
        ("minutes", 60 * MICROS_PER_SECOND),
        ("hours", 3600 * MICROS_PER_SECOND),
        ("weeks", 7 * MICROS_PER_DAY),
    ];
    let names = UNITS.map(|(name, _)| name);
    let bound = bind("timedelta", args, &names, 0)?;
    let mut exact: i128 = 0;
    let mut fraction = 0.0_f64;
    for (value, (name, unit)) in bound.iter().zip(UNITS) {
        let Some(value) = value else { continue };
        if value.is_integer() {
            let n = int_arg("timedelta", name, value)?;
            exact = i128::from(n)
                .checked_mul(unit)
                .and_then(|m| exact.checked_add(m))
                .ok_or_else(out_of_range)?;
        } else if let Some(f) = value
            .is_number()
            .then(|| f64::try_from(value.clone()).ok())
            .flatten()
        {
            fraction += f * unit as f64;
        } else {
            return Err(invalid(format!(
                "timedelta(): unsupported type for the {name} component: {}",
                value.kind()
            )));
        }
    }
    let fraction = round_to_i128(fraction).ok_or_else(out_of_range)?;
    TimeDelta::value(exact.checked_add(fraction).ok_or_else(out_of_range)?)
}

/// Python's `str()`: `1 day, 2:03:04.000005`, `-1 day, 23:59:59`.
impl fmt::Display for TimeDelta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.days();
        if days != 0 {
            let plural = if days.abs() == 1 { "" } else { "s" };
            write!(f, "{days} day{plural}, ")?;
        }
        let s = self.seconds();
        write!(f, "{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)?;
        match self.microseconds() {
            0 => Ok(()),
            us => write!(f, ".{us:06}"),
        }
    }
}

/// Python's `repr()`: `datetime.timedelta(days=1, seconds=5)`.
impl fmt::Debug for TimeDelta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("days", self.days()),
            ("seconds", self.seconds()),
            ("microseconds", self.microseconds()),
        ]
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
        if parts.is_empty() {
            f.write_str("datetime.timedelta(0)")
        } else {
            write!(f, "datetime.timedelta({})", parts.join(", "))
        }
    }
}

impl Object for TimeDelta {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let n = match key.as_str()? {
            "days" => self.days(),
            "seconds" => self.seconds(),
            "microseconds" => self.microseconds(),
            _ => return None,
        };
        Some(Value::from(n))
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.micros != 0
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let me = **self;
        match method {
            "total_seconds" => Ok(Value::from(me.micros as f64 / 1e6)),
            "__neg__" => TimeDelta::value(-me.micros),
            "__pos__" => Ok(me.into_value()),
            "__abs__" => TimeDelta::value(me.micros.abs()),
            "__add__" | "__radd__" | "__sub__" | "__rsub__" | "__mul__" | "__rmul__"
            | "__truediv__" | "__floordiv__" => {
                let a = bind(method, args, &["other"], 1)?;
                let other = a[0].as_ref().expect("required");
                delta_op(me, method, other)
            }
            _ => Err(no_method("datetime.timedelta", method)),
        }
    }

    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        Some(self.micros.cmp(&other.downcast_ref::<Self>()?.micros))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

fn delta_op(me: TimeDelta, method: &str, other: &Value) -> Result<Value, Error> {
    let operand = Operand::of(other);
    match (method, operand) {
        ("__add__" | "__radd__", Operand::Delta(o)) => TimeDelta::value(me.micros + o.micros),
        ("__sub__", Operand::Delta(o)) => TimeDelta::value(me.micros - o.micros),
        ("__rsub__", Operand::Delta(o)) => TimeDelta::value(o.micros - me.micros),
        ("__add__" | "__radd__", Operand::Date(d)) => {
            Ok(Date::value(date_plus_days(d, me.days())?))
        }
        ("__add__" | "__radd__", Operand::DateTime(dt)) => dt.plus(me),
        ("__mul__" | "__rmul__", _) if other.is_integer() => {
            let n = int_arg(method, "other", other)?;
            TimeDelta::value(
                me.micros
                    .checked_mul(i128::from(n))
                    .ok_or_else(out_of_range)?,
            )
        }
        ("__mul__" | "__rmul__", _) if other.is_number() => {
            let f = f64::try_from(other.clone()).map_err(|_| out_of_range())?;
            TimeDelta::value(round_to_i128(me.micros as f64 * f).ok_or_else(out_of_range)?)
        }
        ("__truediv__", Operand::Delta(o)) if o.micros != 0 => {
            Ok(Value::from(me.micros as f64 / o.micros as f64))
        }
        ("__floordiv__", Operand::Delta(o)) if o.micros != 0 => {
            Ok(Value::from(me.micros.div_euclid(o.micros)))
        }
        ("__truediv__" | "__floordiv__", _) if other.is_integer() => {
            let n = i128::from(int_arg(method, "other", other)?);
            if n == 0 {
                return Err(invalid("division by zero"));
            }
            if method == "__floordiv__" {
                TimeDelta::value(me.micros.div_euclid(n))
            } else {
                TimeDelta::value(
                    round_to_i128(me.micros as f64 / n as f64).ok_or_else(out_of_range)?,
                )
            }
        }
        ("__truediv__", _) if other.is_number() => {
            let f = f64::try_from(other.clone()).map_err(|_| out_of_range())?;
            if f == 0.0 {
                return Err(invalid("division by zero"));
            }
            TimeDelta::value(round_to_i128(me.micros as f64 / f).ok_or_else(out_of_range)?)
        }
        (_, Operand::Delta(_)) => Err(invalid("division by zero")),
        _ => Err(unsupported(method, "datetime.timedelta", other)),
    }
}

// ---------------------------------------------------------------------------------------
// date

/// Python's `date`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date(pub(crate) NaiveDate);

impl Date {
    fn value(d: NaiveDate) -> Value {
        Value::from_object(Date(d))
    }
}

fn date_plus_days(d: NaiveDate, days: i128) -> Result<NaiveDate, Error> {
    let days = i64::try_from(days).map_err(|_| out_of_range())?;
    d.checked_add_signed(chrono::TimeDelta::try_days(days).ok_or_else(out_of_range)?)
        .filter(|d| (1..=9999).contains(&d.year()))
        .ok_or_else(out_of_range)
}

fn iso_date_text(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "datetime.date({}, {}, {})", d.year(), d.month(), d.day())
    }
}

/// Methods a date and a datetime share.
fn date_method(d: NaiveDate, method: &str, args: &[Value]) -> Option<Result<Value, Error>> {
    let value = match method {
        "weekday" => Value::from(d.weekday().num_days_from_monday()),
        "isoweekday" => Value::from(d.weekday().number_from_monday()),
        "isocalendar" => {
            let week = d.iso_week();
            Value::from(Tuple::from(vec![
                Value::from(week.year()),
                Value::from(week.week()),
                Value::from(d.weekday().number_from_monday()),
            ]))
        }
        "toordinal" => Value::from(d.num_days_from_ce()),
        _ => return None,
    };
    Some(if args.is_empty() {
        Ok(value)
    } else {
        Err(invalid(format!("{method}() takes no arguments")))
    })
}

fn strftime_arg(args: &[Value]) -> Result<String, Error> {
    let a = bind("strftime", args, &["format"], 1)?;
    let fmt = a[0].as_ref().expect("required");
    fmt.as_str().map(str::to_string).ok_or_else(|| {
        invalid(format!(
            "strftime(): the format must be a string, not {}",
            fmt.kind()
        ))
    })
}

impl Object for Date {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let d = self.0;
        match key.as_str()? {
            "year" => Some(Value::from(d.year())),
            "month" => Some(Value::from(d.month())),
            "day" => Some(Value::from(d.day())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let d = self.0;
        if let Some(result) = date_method(d, method, args) {
            return result;
        }
        let stamp = || Stamp {
            date: d,
            time: NaiveTime::MIN,
            tz: None,
        };
        match method {
            "isoformat" | "__str__" => Ok(Value::from(iso_date_text(d))),
            "strftime" => Ok(Value::from(format::strftime(
                &strftime_arg(args)?,
                &stamp(),
            ))),
            "ctime" => Ok(Value::from(format::strftime(
                "%a %b %e %H:%M:%S %Y",
                &stamp(),
            ))),
            "replace" => {
                let a = bind("replace", args, &["year", "month", "day"], 0)?;
                Ok(Date::value(make_date(
                    int_or("replace", "year", a[0].as_ref(), i64::from(d.year()))?,
                    int_or("replace", "month", a[1].as_ref(), i64::from(d.month()))?,
                    int_or("replace", "day", a[2].as_ref(), i64::from(d.day()))?,
                )?))
            }
            "__add__" | "__radd__" | "__sub__" => {
                let a = bind(method, args, &["other"], 1)?;
                let other = a[0].as_ref().expect("required");
                match (method, Operand::of(other)) {
                    ("__add__" | "__radd__", Operand::Delta(td)) => {
                        Ok(Date::value(date_plus_days(d, td.days())?))
                    }
                    // Python subtracts the delta's whole days: `-(delta.days)`.
                    ("__sub__", Operand::Delta(td)) => {
                        Ok(Date::value(date_plus_days(d, -td.days())?))
                    }
                    ("__sub__", Operand::Date(o)) => {
                        TimeDelta::value(i128::from((d - o).num_days()) * MICROS_PER_DAY)
                    }
                    _ => Err(unsupported(method, "datetime.date", other)),
                }
            }
            _ => Err(no_method("datetime.date", method)),
        }
    }

    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&iso_date_text(self.0))
    }
}

// ---------------------------------------------------------------------------------------
// time

/// Python's `time` (naive: a time of day with a zone is not supported).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Time(NaiveTime);

#[derive(Clone, Copy)]
enum Timespec {
    Auto,
    Hours,
    Minutes,
    Seconds,
    Milliseconds,
    Microseconds,
}

impl Timespec {
    fn of(value: Option<&Value>) -> Result<Timespec, Error> {
        let Some(value) = value else {
            return Ok(Timespec::Auto);
        };
        Ok(match value.as_str() {
            Some("auto") => Timespec::Auto,
            Some("hours") => Timespec::Hours,
            Some("minutes") => Timespec::Minutes,
            Some("seconds") => Timespec::Seconds,
            Some("milliseconds") => Timespec::Milliseconds,
            Some("microseconds") => Timespec::Microseconds,
            _ => {
                return Err(invalid(format!(
                    "isoformat(): unknown timespec value `{value}`"
                )));
            }
        })
    }
}

fn iso_time_text(t: NaiveTime, spec: Timespec) -> String {
    let (h, m, s, us) = (t.hour(), t.minute(), t.second(), micros(t));
    match spec {
        Timespec::Hours => format!("{h:02}"),
        Timespec::Minutes => format!("{h:02}:{m:02}"),
        Timespec::Auto if us == 0 => format!("{h:02}:{m:02}:{s:02}"),
        Timespec::Seconds => format!("{h:02}:{m:02}:{s:02}"),
        Timespec::Milliseconds => format!("{h:02}:{m:02}:{s:02}.{:03}", us / 1000),
        Timespec::Auto | Timespec::Microseconds => format!("{h:02}:{m:02}:{s:02}.{us:06}"),
    }
}

/// The fields of Python's `repr()` of a time: trailing zero microseconds and then seconds
/// are left out.
fn repr_time_fields(t: NaiveTime) -> String {
    let mut fields = vec![t.hour(), t.minute(), t.second(), micros(t)];
    for _ in 0..2 {
        if fields.last() == Some(&0) {
            fields.pop();
        }
    }
    fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "datetime.time({})", repr_time_fields(self.0))
    }
}

fn time_value(t: NaiveTime) -> Value {
    Value::from_object(Time(t))
}

fn time_fields(t: NaiveTime, key: &str) -> Option<Value> {
    match key {
        "hour" => Some(Value::from(t.hour())),
        "minute" => Some(Value::from(t.minute())),
        "second" => Some(Value::from(t.second())),
        "microsecond" => Some(Value::from(micros(t))),
        "fold" => Some(Value::from(0)),
        _ => None,
    }
}

impl Object for Time {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "tzinfo" => Some(Value::from(())),
            key => time_fields(self.0, key),
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let t = self.0;
        match method {
            "isoformat" => {
                let a = bind("isoformat", args, &["timespec"], 0)?;
                Ok(Value::from(iso_time_text(t, Timespec::of(a[0].as_ref())?)))
            }
            "strftime" => {
                let stamp = Stamp {
                    date: NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date"),
                    time: t,
                    tz: None,
                };
                Ok(Value::from(format::strftime(&strftime_arg(args)?, &stamp)))
            }
            "replace" => {
                let a = bind(
                    "replace",
                    args,
                    &["hour", "minute", "second", "microsecond", "tzinfo", "fold"],
                    0,
                )?;
                if let Some(tz) = &a[4]
                    && tz_arg("replace", tz)?.is_some()
                {
                    return Err(invalid(
                        "modules.datetime.time: a time with a tzinfo is not supported",
                    ));
                }
                Ok(time_value(make_time(
                    int_or("replace", "hour", a[0].as_ref(), i64::from(t.hour()))?,
                    int_or("replace", "minute", a[1].as_ref(), i64::from(t.minute()))?,
                    int_or("replace", "second", a[2].as_ref(), i64::from(t.second()))?,
                    int_or(
                        "replace",
                        "microsecond",
                        a[3].as_ref(),
                        i64::from(micros(t)),
                    )?,
                )?))
            }
            "utcoffset" | "dst" | "tzname" => Ok(Value::from(())),
            _ => Err(no_method("datetime.time", method)),
        }
    }

    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&iso_time_text(self.0, Timespec::Auto))
    }
}

// ---------------------------------------------------------------------------------------
// datetime

/// Python's `datetime`: a wall time and, when aware, its zone (which fixes its offset).
#[derive(Clone)]
pub(crate) struct DateTime {
    pub(crate) local: NaiveDateTime,
    pub(crate) tz: Option<TzInfo>,
}

impl DateTime {
    pub(crate) fn value(local: NaiveDateTime, tz: Option<TzInfo>) -> Value {
        Value::from_object(DateTime { local, tz })
    }

    /// The UTC instant of an aware datetime.
    pub(crate) fn instant(&self) -> Option<NaiveDateTime> {
        let tz = self.tz.as_ref()?;
        Some(self.local - chrono::TimeDelta::seconds(i64::from(tz.offset())))
    }

    /// Python's order: aware values as instants, naive ones as wall times (Python refuses to
    /// order one against the other; here naive ones come first).
    fn sort_key(&self) -> (bool, NaiveDateTime) {
        match self.instant() {
            Some(instant) => (true, instant),
            None => (false, self.local),
        }
    }

    fn isoformat(&self, sep: &str, spec: Timespec) -> String {
        let mut s = format!(
            "{}{sep}{}",
            iso_date_text(self.local.date()),
            iso_time_text(self.local.time(), spec)
        );
        if let Some(tz) = &self.tz {
            s.push_str(&offset_text(tz.offset(), ":"));
        }
        s
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            date: self.local.date(),
            time: self.local.time(),
            tz: self.tz.clone(),
        }
    }

    /// `timestamp()`: naive values are this machine's local time, as in Python.
    fn timestamp(&self) -> f64 {
        let utc = self.instant().unwrap_or_else(|| local_to_utc(self.local));
        let micros = utc.and_utc().timestamp_micros();
        micros as f64 / 1e6
    }

    /// `astimezone(tz)`: the same instant in another zone (the machine's own when `None`).
    fn astimezone(&self, tz: Option<TzInfo>) -> Result<Value, Error> {
        let utc = self.instant().unwrap_or_else(|| local_to_utc(self.local));
        let (local, tz) = if let Some(tz) = tz {
            let tz = tz.at_instant(utc);
            (utc + chrono::TimeDelta::seconds(i64::from(tz.offset())), tz)
        } else {
            let (local, seconds) = utc_to_local(utc);
            (
                local,
                TzInfo::Fixed {
                    seconds,
                    name: None,
                },
            )
        };
        Ok(DateTime::value(check_year(local)?, Some(tz)))
    }

    fn plus(&self, td: TimeDelta) -> Result<Value, Error> {
        let local = self
            .local
            .checked_add_signed(td.chrono()?)
            .ok_or_else(out_of_range)?;
        Ok(DateTime::value(check_year(local)?, self.tz.clone()))
    }

    fn minus(&self, other: &DateTime) -> Result<Value, Error> {
        let (a, b) = match (self.instant(), other.instant()) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => (self.local, other.local),
            _ => {
                return Err(invalid(
                    "can't subtract offset-naive and offset-aware datetimes",
                ));
            }
        };
        let micros = (a - b).num_microseconds().ok_or_else(out_of_range)?;
        TimeDelta::value(i128::from(micros))
    }

    fn get(&self, key: &str) -> Option<Value> {
        let d = self.local.date();
        match key {
            "year" => Some(Value::from(d.year())),
            "month" => Some(Value::from(d.month())),
            "day" => Some(Value::from(d.day())),
            "tzinfo" => Some(self.tz.clone().map_or(Value::from(()), Value::from_object)),
            key => time_fields(self.local.time(), key),
        }
    }

    fn method(&self, method: &str, args: &[Value]) -> Result<Value, Error> {
        if let Some(result) = date_method(self.local.date(), method, args) {
            return result;
        }
        let no_args = |v: Value| {
            if args.is_empty() {
                Ok(v)
            } else {
                Err(invalid(format!("{method}() takes no arguments")))
            }
        };
        let seconds_value = |s: Option<i32>| {
            s.map_or(Value::from(()), |s| {
                TimeDelta::from_seconds(i64::from(s)).into_value()
            })
        };
        match method {
            "date" => no_args(Date::value(self.local.date())),
            "time" | "timetz" => no_args(time_value(self.local.time())),
            "__str__" => no_args(Value::from(self.isoformat(" ", Timespec::Auto))),
            "isoformat" => {
                let a = bind("isoformat", args, &["sep", "timespec"], 0)?;
                let sep = a[0]
                    .as_ref()
                    .map_or_else(|| "T".to_string(), ToString::to_string);
                Ok(Value::from(
                    self.isoformat(&sep, Timespec::of(a[1].as_ref())?),
                ))
            }
            "strftime" => Ok(Value::from(format::strftime(
                &strftime_arg(args)?,
                &self.stamp(),
            ))),
            "ctime" => no_args(Value::from(format::strftime(
                "%a %b %e %H:%M:%S %Y",
                &self.stamp(),
            ))),
            "timestamp" => no_args(Value::from(self.timestamp())),
            "utcoffset" => no_args(seconds_value(self.tz.as_ref().map(TzInfo::offset))),
            "dst" => no_args(seconds_value(self.tz.as_ref().and_then(TzInfo::dst))),
            "tzname" => no_args(
                self.tz
                    .as_ref()
                    .map_or(Value::from(()), |tz| Value::from(tz.tzname())),
            ),
            "astimezone" => {
                let a = bind("astimezone", args, &["tz"], 0)?;
                let tz = match &a[0] {
                    Some(v) => tz_arg("astimezone", v)?,
                    None => None,
                };
                self.astimezone(tz)
            }
            "replace" => {
                let a = bind(
                    "replace",
                    args,
                    &[
                        "year",
                        "month",
                        "day",
                        "hour",
                        "minute",
                        "second",
                        "microsecond",
                        "tzinfo",
                        "fold",
                    ],
                    0,
                )?;
                let (d, t) = (self.local.date(), self.local.time());
                let int =
                    |i: usize, name: &str, now: i64| int_or("replace", name, a[i].as_ref(), now);
                let date = make_date(
                    int(0, "year", i64::from(d.year()))?,
                    int(1, "month", i64::from(d.month()))?,
                    int(2, "day", i64::from(d.day()))?,
                )?;
                let time = make_time(
                    int(3, "hour", i64::from(t.hour()))?,
                    int(4, "minute", i64::from(t.minute()))?,
                    int(5, "second", i64::from(t.second()))?,
                    int(6, "microsecond", i64::from(micros(t)))?,
                )?;
                let tz = match &a[7] {
                    Some(v) => tz_arg("replace", v)?,
                    None => self.tz.clone(),
                };
                Ok(DateTime::value(date.and_time(time), tz))
            }
            "__add__" | "__radd__" | "__sub__" => {
                let a = bind(method, args, &["other"], 1)?;
                let other = a[0].as_ref().expect("required");
                match (method, Operand::of(other)) {
                    ("__add__" | "__radd__", Operand::Delta(td)) => self.plus(td),
                    ("__sub__", Operand::Delta(td)) => {
                        self.plus(TimeDelta::from_micros(-td.micros)?)
                    }
                    ("__sub__", Operand::DateTime(o)) => self.minus(&o),
                    _ => Err(unsupported(method, "datetime.datetime", other)),
                }
            }
            _ => Err(no_method("datetime.datetime", method)),
        }
    }
}

/// Python's `repr()`: `datetime.datetime(2024, 1, 2, 3, 4, tzinfo=<UTC>)`.
impl fmt::Debug for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.local.date();
        write!(
            f,
            "datetime.datetime({}, {}, {}, {}",
            d.year(),
            d.month(),
            d.day(),
            repr_time_fields(self.local.time())
        )?;
        if let Some(tz) = &self.tz {
            write!(f, ", tzinfo={tz:?}")?;
        }
        f.write_str(")")
    }
}

impl Object for DateTime {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get(key.as_str()?)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        self.method(method, args)
    }

    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        Some(
            self.sort_key()
                .cmp(&other.downcast_ref::<Self>()?.sort_key()),
        )
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.isoformat(" ", Timespec::Auto))
    }
}

/// `run_started_at`: the run's start as an aware datetime in UTC, the same kind of value as
/// every datetime a template makes (so the two compare as instants).
pub fn run_started_at(at: NaiveDateTime) -> Value {
    DateTime::value(to_micros(at), Some(TzInfo::Utc))
}

// ---------------------------------------------------------------------------------------
// arguments and operands

/// A value on either side of an arithmetic method.
enum Operand {
    Date(NaiveDate),
    DateTime(DateTime),
    Delta(TimeDelta),
    Other,
}

impl Operand {
    fn of(value: &Value) -> Operand {
        if let Some(d) = value.downcast_object_ref::<Date>() {
            Operand::Date(d.0)
        } else if let Some(dt) = as_datetime(value) {
            Operand::DateTime(dt)
        } else if let Some(td) = value.downcast_object_ref::<TimeDelta>() {
            Operand::Delta(*td)
        } else {
            Operand::Other
        }
    }
}

/// Python's `a + b` (`plus`) or `a - b` when either operand is a date, datetime or timedelta
/// (a template's operators, rewritten by `render::arith`); `None` when neither is.
pub(crate) fn binary_op(plus: bool, a: &Value, b: &Value) -> Option<Result<Value, Error>> {
    let sign = if plus { "+" } else { "-" };
    let fail = || {
        Err(invalid(format!(
            "unsupported operand type(s) for {sign}: '{}' and '{}'",
            type_name(a),
            type_name(b)
        )))
    };
    Some(match (Operand::of(a), Operand::of(b)) {
        (Operand::Other, Operand::Other) => return None,
        (Operand::Delta(x), _) if plus => delta_op(x, "__add__", b),
        (Operand::Delta(x), Operand::Delta(_)) => delta_op(x, "__sub__", b),
        (_, Operand::Delta(y)) if plus => delta_op(y, "__radd__", a),
        (Operand::Date(d), Operand::Delta(td)) => date_plus_days(d, -td.days()).map(Date::value),
        (Operand::Date(d), Operand::Date(o)) => {
            TimeDelta::value(i128::from((d - o).num_days()) * MICROS_PER_DAY)
        }
        (Operand::DateTime(dt), Operand::Delta(td)) => {
            TimeDelta::from_micros(-td.micros).and_then(|neg| dt.plus(neg))
        }
        (Operand::DateTime(dt), Operand::DateTime(o)) => dt.minus(&o),
        _ => fail(),
    })
}

fn as_datetime(value: &Value) -> Option<DateTime> {
    value.downcast_object_ref::<DateTime>().cloned()
}

/// The Python type name of a value, for messages.
fn type_name(value: &Value) -> String {
    match Operand::of(value) {
        Operand::Date(_) => "datetime.date".to_string(),
        Operand::DateTime(_) => "datetime.datetime".to_string(),
        Operand::Delta(_) => "datetime.timedelta".to_string(),
        Operand::Other if value.downcast_object_ref::<Time>().is_some() => {
            "datetime.time".to_string()
        }
        Operand::Other => value.kind().to_string(),
    }
}

fn unsupported(method: &str, left: &str, right: &Value) -> Error {
    invalid(format!(
        "unsupported operand types for {method}: '{left}' and '{}'",
        type_name(right)
    ))
}

fn no_method(type_name: &str, method: &str) -> Error {
    Error::new(
        ErrorKind::UnknownMethod,
        format!("{type_name} has no method `{method}`"),
    )
}

/// A `datetime` argument (a datetime made in a template, or `run_started_at`).
pub(crate) fn datetime_arg(func: &str, value: &Value) -> Result<DateTime, Error> {
    as_datetime(value).ok_or_else(|| {
        invalid(format!(
            "{func}(): expected a datetime, got {} `{value}`",
            type_name(value)
        ))
    })
}

fn date_arg(func: &str, value: &Value) -> Result<NaiveDate, Error> {
    match Operand::of(value) {
        Operand::Date(d) => Ok(d),
        Operand::DateTime(dt) => Ok(dt.local.date()),
        _ => Err(invalid(format!(
            "{func}(): expected a date, got {} `{value}`",
            type_name(value)
        ))),
    }
}

fn string_arg<'a>(func: &str, value: &'a Value) -> Result<&'a str, Error> {
    value.as_str().ok_or_else(|| {
        invalid(format!(
            "{func}(): argument must be str, not {}",
            value.kind()
        ))
    })
}

// ---------------------------------------------------------------------------------------
// the classes and the module

/// `modules.datetime.date`, `.datetime`, `.time`, `.timedelta`, `.tzinfo`: callable to make
/// a value, with Python's class methods and `min` / `max` / `resolution`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Date,
    DateTime,
    Time,
    TimeDelta,
    TzInfo,
}

struct ClassObject(Class);

impl ClassObject {
    fn name(&self) -> &'static str {
        match self.0 {
            Class::Date => "date",
            Class::DateTime => "datetime",
            Class::Time => "time",
            Class::TimeDelta => "timedelta",
            Class::TzInfo => "tzinfo",
        }
    }
}

impl fmt::Debug for ClassObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<class 'datetime.{}'>", self.name())
    }
}

fn date_today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

impl Object for ClassObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let min_date = NaiveDate::from_ymd_opt(1, 1, 1).expect("a valid date");
        let max_date = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a valid date");
        let max_time = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("a valid time");
        let value = match (self.0, key.as_str()?) {
            (Class::Date, "min") => Date::value(min_date),
            (Class::Date, "max") => Date::value(max_date),
            (Class::Date, "resolution") => TimeDelta::from_seconds(86_400).into_value(),
            (Class::DateTime, "min") => DateTime::value(min_date.and_time(NaiveTime::MIN), None),
            (Class::DateTime, "max") => DateTime::value(max_date.and_time(max_time), None),
            (Class::Time, "min") => time_value(NaiveTime::MIN),
            (Class::Time, "max") => time_value(max_time),
            (Class::DateTime | Class::Time | Class::TimeDelta, "resolution") => {
                TimeDelta { micros: 1 }.into_value()
            }
            (Class::TimeDelta, "min") => TimeDelta {
                micros: -MAX_DELTA_DAYS * MICROS_PER_DAY,
            }
            .into_value(),
            (Class::TimeDelta, "max") => TimeDelta {
                micros: (MAX_DELTA_DAYS + 1) * MICROS_PER_DAY - 1,
            }
            .into_value(),
            _ => return None,
        };
        Some(value)
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let int =
            |a: &[Option<Value>], i: usize, name: &str| int_or(self.name(), name, a[i].as_ref(), 0);
        match self.0 {
            Class::Date => {
                let a = bind("date", args, &["year", "month", "day"], 3)?;
                Ok(Date::value(make_date(
                    int(&a, 0, "year")?,
                    int(&a, 1, "month")?,
                    int(&a, 2, "day")?,
                )?))
            }
            Class::DateTime => {
                let a = bind(
                    "datetime",
                    args,
                    &[
                        "year",
                        "month",
                        "day",
                        "hour",
                        "minute",
                        "second",
                        "microsecond",
                        "tzinfo",
                        "fold",
                    ],
                    3,
                )?;
                let date = make_date(
                    int(&a, 0, "year")?,
                    int(&a, 1, "month")?,
                    int(&a, 2, "day")?,
                )?;
                let time = make_time(
                    int(&a, 3, "hour")?,
                    int(&a, 4, "minute")?,
                    int(&a, 5, "second")?,
                    int(&a, 6, "microsecond")?,
                )?;
                let tz = match &a[7] {
                    Some(v) => tz_arg("datetime", v)?,
                    None => None,
                };
                Ok(DateTime::value(date.and_time(time), tz))
            }
            Class::Time => {
                let a = bind(
                    "time",
                    args,
                    &["hour", "minute", "second", "microsecond", "tzinfo", "fold"],
                    0,
                )?;
                if let Some(tz) = &a[4]
                    && tz_arg("time", tz)?.is_some()
                {
                    return Err(invalid(
                        "modules.datetime.time: a time with a tzinfo is not supported",
                    ));
                }
                Ok(time_value(make_time(
                    int(&a, 0, "hour")?,
                    int(&a, 1, "minute")?,
                    int(&a, 2, "second")?,
                    int(&a, 3, "microsecond")?,
                )?))
            }
            Class::TimeDelta => timedelta_new(args),
            Class::TzInfo => Err(invalid(
                "modules.datetime.tzinfo is abstract: use modules.pytz.timezone(name) or modules.pytz.utc",
            )),
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let class = self.0;
        let is_datetime = class == Class::DateTime;
        // A date class method on `datetime` answers a datetime at midnight.
        let day = |d: NaiveDate| {
            if is_datetime {
                DateTime::value(d.and_time(NaiveTime::MIN), None)
            } else {
                Date::value(d)
            }
        };
        let one = |name: &str| -> Result<Value, Error> {
            let a = bind(method, args, &[name], 1)?;
            Ok(a[0].clone().expect("required"))
        };
        match (class, method) {
            (Class::Date, "today") => Ok(Date::value(date_today())),
            (Class::DateTime, "today") => {
                bind(method, args, &[], 0)?;
                Ok(DateTime::value(
                    to_micros(chrono::Local::now().naive_local()),
                    None,
                ))
            }
            (Class::DateTime, "now") => {
                let a = bind("now", args, &["tz"], 0)?;
                match a[0]
                    .as_ref()
                    .map(|v| tz_arg("now", v))
                    .transpose()?
                    .flatten()
                {
                    None => Ok(DateTime::value(
                        to_micros(chrono::Local::now().naive_local()),
                        None,
                    )),
                    Some(tz) => {
                        let utc = utc_now();
                        let tz = tz.at_instant(utc);
                        let local = utc + chrono::TimeDelta::seconds(i64::from(tz.offset()));
                        Ok(DateTime::value(local, Some(tz)))
                    }
                }
            }
            (Class::DateTime, "utcnow") => {
                bind(method, args, &[], 0)?;
                Ok(DateTime::value(utc_now(), None))
            }
            (Class::Date | Class::DateTime, "fromordinal") => {
                let n = int_arg(method, "ordinal", &one("ordinal")?)?;
                let d = i32::try_from(n)
                    .ok()
                    .filter(|n| (1..=3_652_059).contains(n))
                    .and_then(NaiveDate::from_num_days_from_ce_opt)
                    .ok_or_else(|| invalid(format!("ordinal {n} is out of range")))?;
                Ok(day(d))
            }
            (Class::Date | Class::DateTime, "fromisocalendar") => {
                let a = bind(method, args, &["year", "week", "day"], 3)?;
                let field =
                    |i: usize, name: &str| int_arg(method, name, a[i].as_ref().expect("required"));
                let (year, week, weekday) =
                    (field(0, "year")?, field(1, "week")?, field(2, "day")?);
                let found = i32::try_from(year)
                    .ok()
                    .zip(u32::try_from(week).ok())
                    .zip(
                        u8::try_from(weekday - 1)
                            .ok()
                            .and_then(|wd| chrono::Weekday::try_from(wd).ok()),
                    )
                    .and_then(|((y, w), wd)| NaiveDate::from_isoywd_opt(y, w, wd))
                    .filter(|found| (1..=9999).contains(&found.year()))
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid ISO calendar date {year}-W{week}-{weekday}"
                        ))
                    })?;
                Ok(day(found))
            }
            (Class::Date, "fromtimestamp") => {
                let utc = from_timestamp(method, &one("timestamp")?)?;
                Ok(Date::value(utc_to_local(utc).0.date()))
            }
            (Class::DateTime, "fromtimestamp") => {
                let a = bind(method, args, &["timestamp", "tz"], 1)?;
                let utc = from_timestamp(method, a[0].as_ref().expect("required"))?;
                let tz = match &a[1] {
                    Some(v) => tz_arg(method, v)?,
                    None => None,
                };
                match tz {
                    None => Ok(DateTime::value(check_year(utc_to_local(utc).0)?, None)),
                    Some(tz) => {
                        let tz = tz.at_instant(utc);
                        let local = utc + chrono::TimeDelta::seconds(i64::from(tz.offset()));
                        Ok(DateTime::value(check_year(local)?, Some(tz)))
                    }
                }
            }
            (Class::DateTime, "utcfromtimestamp") => Ok(DateTime::value(
                from_timestamp(method, &one("timestamp")?)?,
                None,
            )),
            (Class::Date, "fromisoformat") => {
                let text = one("date_string")?;
                let text = string_arg(method, &text)?;
                let d = format::iso_date(text)
                    .filter(|d| (1..=9999).contains(&d.year()))
                    .ok_or_else(|| invalid(format!("Invalid isoformat string: '{text}'")))?;
                Ok(Date::value(d))
            }
            (Class::DateTime, "fromisoformat") => {
                let text = one("date_string")?;
                let text = string_arg(method, &text)?;
                let (local, offset) = format::iso_datetime(text)
                    .filter(|(at, _)| (1..=9999).contains(&at.year()))
                    .ok_or_else(|| invalid(format!("Invalid isoformat string: '{text}'")))?;
                let tz = offset.map(|seconds| TzInfo::Fixed {
                    seconds,
                    name: None,
                });
                Ok(DateTime::value(local, tz))
            }
            (Class::Time, "fromisoformat") => {
                let text = one("time_string")?;
                let text = string_arg(method, &text)?;
                match format::iso_time(text) {
                    Some((t, None)) => Ok(time_value(t)),
                    Some((_, Some(_))) => Err(invalid(
                        "modules.datetime.time: a time with a tzinfo is not supported",
                    )),
                    None => Err(invalid(format!("Invalid isoformat string: '{text}'"))),
                }
            }
            (Class::DateTime, "strptime") => {
                let a = bind(method, args, &["date_string", "format"], 2)?;
                let text = string_arg(method, a[0].as_ref().expect("required"))?;
                let fmt = string_arg(method, a[1].as_ref().expect("required"))?;
                let (local, tz) = format::strptime(text, fmt)?;
                Ok(DateTime::value(local, tz))
            }
            (Class::DateTime, "combine") => {
                let a = bind(method, args, &["date", "time", "tzinfo"], 2)?;
                let date = date_arg(method, a[0].as_ref().expect("required"))?;
                let time_value = a[1].as_ref().expect("required");
                let time = time_value.downcast_object_ref::<Time>().ok_or_else(|| {
                    invalid(format!(
                        "combine(): expected a time, got {}",
                        type_name(time_value)
                    ))
                })?;
                let tz = match &a[2] {
                    Some(v) => tz_arg(method, v)?,
                    None => None,
                };
                Ok(DateTime::value(date.and_time(time.0), tz))
            }
            _ => Err(no_method(&format!("datetime.{}", self.name()), method)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<class 'datetime.{}'>", self.name())
    }
}

/// `modules.datetime`: what dbt exports of Python's module (`date`, `datetime`, `time`,
/// `timedelta`, `tzinfo`).
#[derive(Debug)]
pub(crate) struct DatetimeModule;

impl Object for DatetimeModule {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let class = match key.as_str()? {
            "date" => Class::Date,
            "datetime" => Class::DateTime,
            "time" => Class::Time,
            "timedelta" => Class::TimeDelta,
            "tzinfo" => Class::TzInfo,
            _ => return None,
        };
        Some(Value::from_object(ClassObject(class)))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<module 'datetime'>")
    }
}

#[cfg(test)]
mod tests {
    use super::super::render_for_test;

    /// Renders with `dt` = `modules.datetime`, `tz` = `modules.pytz.timezone`, `utc`.
    fn render(template: &str) -> String {
        let prelude = "{% set dt = modules.datetime %}{% set tz = modules.pytz.timezone %}\
                       {% set utc = modules.pytz.utc %}";
        render_for_test(&format!("{prelude}{template}"))
            .unwrap_or_else(|e| panic!("{template}: {e:#}"))
    }

    fn error(template: &str) -> String {
        let prelude = "{% set dt = modules.datetime %}";
        match render_for_test(&format!("{prelude}{template}")) {
            Ok(out) => panic!("{template} rendered `{out}`, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn values_render_as_python_str() {
        assert_eq!(render("{{ dt.date(2024, 2, 28) }}"), "2024-02-28");
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 2, 3, 4, 5) }}"),
            "2024-01-02 03:04:05"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 2, 3, 4, 5, 6) }}"),
            "2024-01-02 03:04:05.000006"
        );
        assert_eq!(
            render("{{ dt.datetime(year=2024, month=1, day=2, hour=3, tzinfo=utc) }}"),
            "2024-01-02 03:00:00+00:00"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 2, 3, 4, 5, 6).isoformat() }}"),
            "2024-01-02T03:04:05.000006"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 2, 3).isoformat(timespec='minutes') }}"),
            "2024-01-02T03:00"
        );
        assert_eq!(
            render("{{ dt.time(3, 4, 5, 6000).isoformat('milliseconds') }}"),
            "03:04:05.006"
        );
        assert_eq!(render("{{ dt.time(3, 4) }}"), "03:04:00");
        // minijinja shows an object in a list as it renders it (Python would show repr()).
        assert_eq!(
            render("{{ [dt.date(2024, 1, 2), dt.datetime(2024, 1, 2), dt.time(3, 4)] }}"),
            "[2024-01-02, 2024-01-02 00:00:00, 03:04:00]"
        );
    }

    #[test]
    fn serializes_as_text() {
        assert_eq!(
            render("{{ {'d': dt.date(2024, 1, 2), 't': run_started_at} | tojson }}"),
            r#"{"d": "2024-01-02", "t": "2024-01-02 03:04:05.123456+00:00"}"#
        );
    }

    #[test]
    fn debug_is_python_repr() {
        use chrono::NaiveDate;
        let d = NaiveDate::from_ymd_opt(2024, 1, 2).expect("a valid date");
        assert_eq!(format!("{:?}", super::Date(d)), "datetime.date(2024, 1, 2)");
        let dt = super::DateTime {
            local: d.and_hms_opt(3, 4, 0).expect("a valid time"),
            tz: Some(super::TzInfo::Utc),
        };
        assert_eq!(
            format!("{dt:?}"),
            "datetime.datetime(2024, 1, 2, 3, 4, tzinfo=<UTC>)"
        );
        let td = super::TimeDelta::from_micros(93_784_000_005).expect("in range");
        assert_eq!(
            format!("{td:?}"),
            "datetime.timedelta(days=1, seconds=7384, microseconds=5)"
        );
        let ny = super::TzInfo::named("America/New_York").expect("a zone");
        assert_eq!(
            format!("{ny:?}"),
            "<DstTzInfo 'America/New_York' LMT-1 day, 19:04:00 STD>"
        );
    }

    #[test]
    fn attributes_and_calendar_methods() {
        assert_eq!(
            render(
                "{% set d = dt.datetime(2024, 1, 2, 3, 4, 5, 6) %}\
                 {{ d.year }} {{ d.month }} {{ d.day }} {{ d.hour }} {{ d.minute }} \
                 {{ d.second }} {{ d.microsecond }} {{ d.tzinfo is none }} \
                 {{ d.weekday() }} {{ d.isoweekday() }} {{ d.date() }} {{ d.time() }}"
            ),
            "2024 1 2 3 4 5 6 True 1 2 2024-01-02 03:04:05.000006"
        );
        let d = "{% set d = dt.date(2024, 1, 2) %}";
        assert_eq!(
            render(&format!(
                "{d}{{{{ d.isocalendar() }}}} {{{{ d.toordinal() }}}} \
                 {{{{ dt.date.fromordinal(738887) }}}} {{{{ d.ctime() }}}}"
            )),
            "(2024, 1, 2) 738887 2024-01-02 Tue Jan  2 00:00:00 2024"
        );
        // A date has no time fields: dbt-date tells dates from datetimes this way.
        assert_eq!(
            render(&format!(
                "{d}{{{{ d.hour is defined }}}} {{{{ d.year is defined }}}}"
            )),
            "False True"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 31, 10).replace(month=2, day=29, tzinfo=utc) }}"),
            "2024-02-29 10:00:00+00:00"
        );
        assert_eq!(
            render("{{ dt.date(2024, 1, 31).replace(day=1) }}"),
            "2024-01-01"
        );
        assert_eq!(
            render("{{ dt.datetime.min }} {{ dt.date.max }}"),
            "0001-01-01 00:00:00 9999-12-31"
        );
    }

    #[test]
    fn timedelta_follows_python() {
        assert_eq!(
            render(
                "{% set t = dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5) %}\
                 {{ t }}|{{ t.days }} {{ t.seconds }} {{ t.total_seconds() }}"
            ),
            "1 day, 2:03:04.000005|1 7384 93784.000005"
        );
        assert_eq!(
            render("{{ dt.timedelta(seconds=-1) }}|{{ dt.timedelta(seconds=-1).days }}"),
            "-1 day, 23:59:59|-1"
        );
        assert_eq!(
            render("{{ dt.timedelta(weeks=2, milliseconds=1.5) }}"),
            "14 days, 0:00:00.001500"
        );
        assert_eq!(
            render("{{ dt.timedelta(0) }}|{{ dt.timedelta() }}"),
            "0:00:00|0:00:00"
        );
        assert_eq!(
            render("{{ dt.timedelta(hours=1.5).total_seconds() }}"),
            "5400.0"
        );
        assert_eq!(render("{{ dt.timedelta(0.1) }}"), "2:24:00");
        assert_eq!(render("{{ dt.timedelta(1, 30) }}"), "1 day, 0:00:30");
        assert_eq!(
            render(
                "{{ 'yes' if dt.timedelta(0) else 'no' }} {{ 'yes' if dt.timedelta(1) else 'no' }}"
            ),
            "no yes"
        );
    }

    #[test]
    fn arithmetic_through_python_method_names() {
        let day = "{% set day = dt.timedelta(days=1) %}";
        assert_eq!(
            render(&format!("{day}{{{{ dt.date(2024, 2, 28).__add__(day) }}}}")),
            "2024-02-29"
        );
        // Python subtracts a delta's whole days from a date.
        assert_eq!(
            render(
                "{{ dt.date(2024, 3, 1).__sub__(dt.timedelta(hours=1)) }} \
                    {{ dt.date(2024, 3, 1).__add__(dt.timedelta(hours=-1)) }}"
            ),
            "2024-03-01 2024-02-29"
        );
        assert_eq!(
            render("{{ dt.date(2024, 3, 1).__sub__(dt.date(2024, 2, 1)).days }}"),
            "29"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 12, 31, 23, 30).__add__(dt.timedelta(hours=1)) }}"),
            "2025-01-01 00:30:00"
        );
        assert_eq!(
            render(
                "{{ dt.datetime(2024, 1, 2, tzinfo=utc).__sub__(\
                 tz('Asia/Tokyo').localize(dt.datetime(2024, 1, 2))) }}"
            ),
            "9:00:00"
        );
        assert_eq!(
            render(&format!(
                "{day}{{{{ day.__mul__(2.5) }}}}|{{{{ day.__truediv__(3) }}}}|\
                 {{{{ day.__floordiv__(dt.timedelta(hours=5)) }}}}|{{{{ dt.timedelta(hours=1).__neg__() }}}}|\
                 {{{{ day.__add__(dt.date(2024, 1, 1)) }}}}"
            )),
            "2 days, 12:00:00|8:00:00|4|-1 day, 23:00:00|2024-01-02"
        );
        // The portable way, which works on dbt too.
        assert_eq!(
            render("{{ dt.date.fromordinal(dt.date(2024, 2, 28).toordinal() + 2) }}"),
            "2024-03-01"
        );
        // minijinja has no operators for objects: `+` is an error, not a wrong answer.
        assert!(
            error("{{ dt.date(2024, 1, 1) + dt.timedelta(days=1) }}")
                .contains("+ operator on unsupported types")
        );
        assert!(
            error("{{ dt.datetime(2024, 1, 1).__sub__(dt.datetime(2024, 1, 1, tzinfo=modules.pytz.utc)) }}")
                .contains("offset-naive and offset-aware")
        );
    }

    #[test]
    fn comparison_and_sorting() {
        assert_eq!(
            render(
                "{{ dt.date(2024, 1, 1) < dt.date(2024, 1, 2) }} {{ dt.date(2024, 1, 2) == dt.date(2024, 1, 2) }}"
            ),
            "True True"
        );
        assert_eq!(
            render("{{ dt.timedelta(hours=1) > dt.timedelta(minutes=59) }}"),
            "True"
        );
        // Aware values compare as instants, whatever their zone.
        assert_eq!(
            render(
                "{% set a = dt.datetime(2024, 1, 1, 12, tzinfo=utc) %}\
                 {% set b = tz('America/New_York').localize(dt.datetime(2024, 1, 1, 7)) %}\
                 {{ a == b }} {{ a < b }} {{ a.__sub__(b) }}"
            ),
            "True False 0:00:00"
        );
        assert_eq!(
            render(
                "{{ [dt.date(2024, 3, 1), dt.date(2023, 12, 31), dt.date(2024, 1, 15)] | sort | join(',') }}"
            ),
            "2023-12-31,2024-01-15,2024-03-01"
        );
        assert_eq!(render("{{ dt.date(2024, 1, 1) == '2024-01-01' }}"), "False");
    }

    #[test]
    fn strftime_follows_python_and_glibc() {
        assert_eq!(
            render(
                "{{ dt.datetime(2024, 1, 2, 3, 4, 5, 6).strftime(\
                 '%Y/%m/%d %H:%M:%S.%f|%a %A %b %B|%j %U %W %w %u|%p %I|%-d %-m|%y %C|%G-W%V|%e|%c|%x %X|%%|%z|%Z|%D %F %T %R %r') }}"
            ),
            "2024/01/02 03:04:05.000006|Tue Tuesday Jan January|002 00 01 2 2|AM 03|2 1|24 20|2024-W01| 2|Tue Jan  2 03:04:05 2024|01/02/24 03:04:05|%|||01/02/24 2024-01-02 03:04:05 03:04 03:04:05 AM"
        );
        assert_eq!(
            render(
                "{{ dt.datetime(2024, 7, 1, 12, tzinfo=utc).astimezone(tz('America/New_York')).strftime('%z %Z %:z') }}"
            ),
            "-0400 EDT -04:00"
        );
        assert_eq!(
            render("{{ dt.date(2024, 1, 2).strftime('%Y%m%d %H') }}"),
            "20240102 00"
        );
        assert_eq!(
            render("{{ dt.time(13, 5).strftime('%I:%M %p') }}"),
            "01:05 PM"
        );
    }

    #[test]
    fn strptime_follows_python() {
        let cases = [
            ("2024-01-02 03:04", "%Y-%m-%d %H:%M", "2024-01-02 03:04:00"),
            (
                "Tue, 02 Jan 2024 03:04:05 +0530",
                "%a, %d %b %Y %H:%M:%S %z",
                "2024-01-02 03:04:05+05:30",
            ),
            (
                "july 4 99 1:05 pm",
                "%B %d %y %I:%M %p",
                "1999-07-04 13:05:00",
            ),
            ("2024 10 3", "%Y %W %w", "2024-03-06 00:00:00"),
            ("2024 10 3", "%Y %U %w", "2024-03-13 00:00:00"),
            ("2024-W10-3", "%G-W%V-%u", "2024-03-06 00:00:00"),
            ("2024 060", "%Y %j", "2024-02-29 00:00:00"),
            ("12.5", "%S.%f", "1900-01-01 00:00:12.500000"),
            ("2026-09-01", "%Y-%m-%d", "2026-09-01 00:00:00"),
            (
                "2024-01-02T03:04:05Z",
                "%Y-%m-%dT%H:%M:%S%z",
                "2024-01-02 03:04:05+00:00",
            ),
        ];
        for (text, fmt, expected) in cases {
            assert_eq!(
                render(&format!(
                    "{{{{ dt.datetime.strptime('{text}', '{fmt}') }}}}"
                )),
                expected,
                "{text} with {fmt}"
            );
        }
        assert!(
            error("{{ dt.datetime.strptime('2024-01', '%Y-%m-%d') }}")
                .contains("does not match format")
        );
        assert!(
            error("{{ dt.datetime.strptime('2024-01-02x', '%Y-%m-%d') }}")
                .contains("unconverted data remains: x")
        );
        assert!(
            error("{{ dt.datetime.strptime('2023-02-29', '%Y-%m-%d') }}").contains("out of range")
        );
    }

    #[test]
    fn fromisoformat_reads_python_311_forms() {
        let cases = [
            (
                "2024-01-02T03:04:05.123+05:30",
                "2024-01-02 03:04:05.123000+05:30",
            ),
            ("20240102T030405Z", "2024-01-02 03:04:05+00:00"),
            ("2024-W01-2", "2024-01-02 00:00:00"),
            ("2024-01-02 03", "2024-01-02 03:00:00"),
            ("2024-01-02T03:04:05,5", "2024-01-02 03:04:05.500000"),
            ("2026-08-15T12:00:00+00:00", "2026-08-15 12:00:00+00:00"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                render(&format!("{{{{ dt.datetime.fromisoformat('{text}') }}}}")),
                expected,
                "{text}"
            );
        }
        assert_eq!(
            render("{{ dt.datetime.fromisoformat('2026-08-15T12:00:00+00:00').tzinfo }}"),
            "UTC"
        );
        assert_eq!(
            render("{{ dt.date.fromisoformat('2024-01-02') }}"),
            "2024-01-02"
        );
        assert_eq!(
            render("{{ dt.time.fromisoformat('03:04:05.5') }}"),
            "03:04:05.500000"
        );
        assert!(
            error("{{ dt.date.fromisoformat('2024-1-2') }}").contains("Invalid isoformat string")
        );
        assert!(
            error("{{ dt.datetime.fromisoformat('2024-01-02T25:00') }}")
                .contains("Invalid isoformat string")
        );
    }

    #[test]
    fn timestamps_and_known_instants() {
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 1, tzinfo=utc).timestamp() }}"),
            "1704067200.0"
        );
        assert_eq!(
            render("{{ dt.datetime.fromtimestamp(1704067200.5, utc) }}"),
            "2024-01-01 00:00:00.500000+00:00"
        );
        assert_eq!(
            render("{{ dt.datetime.utcfromtimestamp(0) }}"),
            "1970-01-01 00:00:00"
        );
        assert_eq!(
            render("{{ dt.datetime.combine(dt.date(2024, 1, 2), dt.time(3, 4), tzinfo=utc) }}"),
            "2024-01-02 03:04:00+00:00"
        );
        assert_eq!(
            render("{{ dt.datetime.fromisocalendar(2024, 1, 2) }}"),
            "2024-01-02 00:00:00"
        );
    }

    #[test]
    fn clocks_answer_plausible_values() {
        assert_eq!(
            render(
                "{{ dt.datetime.now().year >= 2024 }} {{ dt.datetime.utcnow().tzinfo is none }} \
                 {{ dt.date.today().year >= 2024 }} {{ dt.datetime.today().hour is defined }} \
                 {{ dt.datetime.now(utc).tzinfo }} {{ dt.datetime.now(tz('Asia/Tokyo')).utcoffset() }}"
            ),
            "True True True True UTC 9:00:00"
        );
    }

    #[test]
    fn run_started_at_is_an_aware_utc_datetime() {
        assert_eq!(
            render(
                "{{ run_started_at }}|{{ run_started_at.isoformat() }}|{{ run_started_at.tzinfo }}|\
                 {{ run_started_at.strftime('%Y-%m-%d') }}|{{ run_started_at.date() }}|\
                 {{ run_started_at.hour }}|{{ run_started_at.tzinfo is none }}|{{ run_started_at.timestamp() }}"
            ),
            "2024-01-02 03:04:05.123456+00:00|2024-01-02T03:04:05.123456+00:00|UTC|2024-01-02|\
             2024-01-02|3|False|1704164645.123456"
        );
        assert_eq!(
            render("{{ run_started_at.astimezone(tz('America/New_York')) }}"),
            "2024-01-01 22:04:05.123456-05:00"
        );
        assert_eq!(
            render(
                "{{ run_started_at.__add__(dt.timedelta(days=1)).date() }} {{ run_started_at == run_started_at }}"
            ),
            "2024-01-03 True"
        );
        assert_eq!(
            render("{{ tz('Asia/Tokyo').normalize(run_started_at) }}"),
            "2024-01-02 12:04:05.123456+09:00"
        );
    }

    #[test]
    fn bad_values_are_errors_with_python_words() {
        assert!(error("{{ dt.date(2024, 13, 1) }}").contains("month must be in 1..12"));
        assert!(error("{{ dt.date(2023, 2, 29) }}").contains("out of range"));
        assert!(error("{{ dt.datetime(2024, 1, 1, 24) }}").contains("hour must be in 0..23"));
        assert!(error("{{ dt.date(2024, 1) }}").contains("missing the required argument `day`"));
        assert!(
            error("{{ dt.date(2024, 1, 1, wrong=1) }}")
                .contains("unexpected keyword argument `wrong`")
        );
        assert!(
            error("{{ dt.datetime(2024, 1, 1, tzinfo='UTC') }}")
                .contains("tzinfo must be None or a time zone")
        );
        assert!(error("{{ dt.timedelta(days='1') }}").contains("unsupported type"));
        assert!(error("{{ dt.date(2024, 1, 1).nope() }}").contains("nope"));
    }
}
