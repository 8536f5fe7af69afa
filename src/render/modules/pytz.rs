//! `modules.pytz` and the time zones a datetime carries (Python's `tzinfo`), on chrono-tz's
//! copy of the IANA database.
//!
//! pytz's model is kept on purpose, because dbt packages are written against it: a zone
//! object always stands for one fixed offset (one "state" of the zone). `pytz.timezone(name)`
//! is the zone's first state (its local mean time, rounded to the minute as pytz does), so
//! `datetime(…, tzinfo=pytz.timezone('America/New_York'))` is off by some minutes exactly as
//! in Python; `tz.localize(dt)`, `dt.astimezone(tz)` and `tz.normalize(dt)` pick the state in
//! force at that time. Python's `datetime.timezone` (a fixed offset, what `fromisoformat` and
//! `strptime('%z')` give) is the `Fixed` kind. There is no `zoneinfo` (dbt exposes none).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use minijinja::value::{DynObject, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

use super::datetime::{DateTime, TimeDelta, datetime_arg};
use super::{bind, function, int_arg, invalid};

/// A time zone as a datetime holds it: always one fixed offset from UTC.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum TzInfo {
    /// `pytz.utc` (`run_started_at`'s zone).
    Utc,
    /// Python's `datetime.timezone(offset[, name])`, and `pytz.FixedOffset(minutes)`.
    Fixed { seconds: i32, name: Option<String> },
    /// A pytz zone in one of its states: its total offset, the daylight-saving part of it,
    /// and the abbreviation (`EST`, `EDT`, `LMT`).
    Zone {
        zone: Tz,
        seconds: i32,
        dst: i32,
        abbr: String,
    },
}

/// pytz keeps whole minutes: an offset is rounded to the nearest minute, halves up.
fn whole_minutes(seconds: i32) -> i32 {
    (seconds + 30).div_euclid(60) * 60
}

impl TzInfo {
    /// `pytz.timezone(name)`: `UTC` in any case is `pytz.utc`; other names are matched
    /// exactly first, then ignoring case, as pytz does.
    pub(crate) fn named(name: &str) -> Result<TzInfo, Error> {
        if name.eq_ignore_ascii_case("utc") {
            return Ok(TzInfo::Utc);
        }
        let zone = Tz::from_str(name).ok().or_else(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .copied()
                .find(|z| z.name().eq_ignore_ascii_case(name))
        });
        let Some(zone) = zone else {
            let near =
                crate::suggest::suggestions(name, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()));
            let hint = near
                .first()
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            return Err(invalid(format!(
                "modules.pytz: unknown time zone `{name}`{hint}"
            )));
        };
        // The first state, as a pytz zone object has before it is localized: the offset in
        // force before the zone's first transition.
        let first = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
            .expect("a valid date")
            .and_hms_opt(0, 0, 0)
            .expect("a valid time");
        Ok(Self::state(zone, &zone.offset_from_utc_datetime(&first)))
    }

    fn state(zone: Tz, offset: &chrono_tz::TzOffset) -> TzInfo {
        let dst = i32::try_from(offset.dst_offset().num_seconds()).unwrap_or(0);
        TzInfo::Zone {
            zone,
            seconds: whole_minutes(offset.fix().local_minus_utc()),
            dst: whole_minutes(dst),
            abbr: offset.abbreviation().unwrap_or_default().to_string(),
        }
    }

    /// The offset from UTC, in seconds (local time minus UTC).
    pub(crate) fn offset(&self) -> i32 {
        match self {
            TzInfo::Utc => 0,
            TzInfo::Fixed { seconds, .. } | TzInfo::Zone { seconds, .. } => *seconds,
        }
    }

    /// `dst()`: `None` for a plain fixed offset, as Python's `timezone` answers.
    pub(crate) fn dst(&self) -> Option<i32> {
        match self {
            TzInfo::Utc => Some(0),
            TzInfo::Fixed { .. } => None,
            TzInfo::Zone { dst, .. } => Some(*dst),
        }
    }

    /// `tzname()`: `UTC`, a fixed offset's name or `UTC+05:30`, a zone's abbreviation.
    pub(crate) fn tzname(&self) -> String {
        match self {
            TzInfo::Fixed {
                name: Some(name), ..
            } => name.clone(),
            TzInfo::Utc | TzInfo::Fixed { seconds: 0, .. } => "UTC".to_string(),
            TzInfo::Fixed { seconds, .. } => format!("UTC{}", offset_text(*seconds, ":")),
            TzInfo::Zone { abbr, .. } => abbr.clone(),
        }
    }

    /// The same zone in the state in force at the instant `utc` (pytz's `fromutc`).
    pub(crate) fn at_instant(&self, utc: NaiveDateTime) -> TzInfo {
        match self {
            TzInfo::Zone { zone, .. } => Self::state(*zone, &zone.offset_from_utc_datetime(&utc)),
            other => other.clone(),
        }
    }

    /// pytz's `localize`: the state for the wall time `local`. `is_dst` chooses in the hour
    /// a clock repeats or skips; `None` refuses both, as pytz does.
    pub(crate) fn localize(
        &self,
        local: NaiveDateTime,
        is_dst: Option<bool>,
    ) -> Result<TzInfo, Error> {
        let TzInfo::Zone { zone, .. } = self else {
            return Ok(self.clone());
        };
        let zone = *zone;
        let pick = |a: chrono_tz::TzOffset, b: chrono_tz::TzOffset, want: bool| {
            let is_summer = |o: &chrono_tz::TzOffset| o.dst_offset().num_seconds() != 0;
            if is_summer(&a) == want || is_summer(&b) != want {
                a
            } else {
                b
            }
        };
        match zone.offset_from_local_datetime(&local) {
            LocalResult::Single(offset) => Ok(Self::state(zone, &offset)),
            LocalResult::Ambiguous(a, b) => match is_dst {
                Some(want) => Ok(Self::state(zone, &pick(a, b, want))),
                None => Err(invalid(format!(
                    "modules.pytz: {local} is ambiguous in {} (AmbiguousTimeError)",
                    zone.name()
                ))),
            },
            LocalResult::None => match is_dst {
                Some(want) => {
                    // The clock skips this wall time: take the offset from before or after
                    // the change, the one whose daylight saving matches `is_dst`.
                    let day = chrono::TimeDelta::days(1);
                    let before = zone.offset_from_utc_datetime(&(local - day));
                    let after = zone.offset_from_utc_datetime(&(local + day));
                    Ok(Self::state(zone, &pick(before, after, want)))
                }
                None => Err(invalid(format!(
                    "modules.pytz: {local} does not exist in {} (NonExistentTimeError)",
                    zone.name()
                ))),
            },
        }
    }

    /// Order and equality for `==` and sorting: by kind, name and offset.
    fn key(&self) -> (u8, &str, i32, i32, &str) {
        match self {
            TzInfo::Utc => (0, "", 0, 0, ""),
            TzInfo::Fixed { seconds, name } => (1, name.as_deref().unwrap_or(""), *seconds, 0, ""),
            TzInfo::Zone {
                zone,
                seconds,
                dst,
                abbr,
            } => (2, zone.name(), *seconds, *dst, abbr),
        }
    }
}

/// `+05:30` (with `:SS` when there are seconds); `sep` is `:` or empty (`+0530`).
pub(crate) fn offset_text(seconds: i32, sep: &str) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if sec == 0 {
        format!("{sign}{h:02}{sep}{m:02}")
    } else {
        format!("{sign}{h:02}{sep}{m:02}{sep}{sec:02}")
    }
}

/// Python's `repr()`.
impl fmt::Debug for TzInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TzInfo::Utc => f.write_str("<UTC>"),
            TzInfo::Fixed {
                seconds: 0,
                name: None,
            } => f.write_str("datetime.timezone.utc"),
            TzInfo::Fixed { seconds, name } => {
                let delta = TimeDelta::from_seconds(i64::from(*seconds));
                match name {
                    Some(name) => write!(f, "datetime.timezone({delta:?}, {name:?})"),
                    None => write!(f, "datetime.timezone({delta:?})"),
                }
            }
            TzInfo::Zone {
                zone,
                seconds,
                dst,
                abbr,
            } => {
                let delta = TimeDelta::from_seconds(i64::from(*seconds));
                let kind = if *dst == 0 { "STD" } else { "DST" };
                write!(f, "<DstTzInfo '{}' {abbr}{delta} {kind}>", zone.name())
            }
        }
    }
}

/// Python's `str()`: `UTC`, the zone's name, or a fixed offset's name.
impl fmt::Display for TzInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TzInfo::Zone { zone, .. } => f.write_str(zone.name()),
            other => f.write_str(&other.tzname()),
        }
    }
}

/// A `tzinfo` argument: a time zone or `None`.
pub(crate) fn tz_arg(func: &str, value: &Value) -> Result<Option<TzInfo>, Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(None);
    }
    match value.downcast_object_ref::<TzInfo>() {
        Some(tz) => Ok(Some(tz.clone())),
        None => Err(invalid(format!(
            "{func}(): tzinfo must be None or a time zone (modules.pytz.timezone(…)), not {} `{value}`",
            value.kind()
        ))),
    }
}

impl Object for TzInfo {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "zone" => match &**self {
                TzInfo::Utc => Some(Value::from("UTC")),
                TzInfo::Zone { zone, .. } => Some(Value::from(zone.name())),
                TzInfo::Fixed { .. } => Some(Value::from(())),
            },
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "localize" => {
                let a = bind("localize", args, &["dt", "is_dst"], 1)?;
                let dt = datetime_arg("localize", a[0].as_ref().expect("required"))?;
                if dt.tz.is_some() {
                    return Err(invalid(
                        "localize(): not a naive datetime (tzinfo is already set)",
                    ));
                }
                let is_dst = match &a[1] {
                    None => Some(false),
                    Some(v) if v.is_none() => None,
                    Some(v) => Some(v.is_true()),
                };
                let tz = self.localize(dt.local, is_dst)?;
                Ok(DateTime::value(dt.local, Some(tz)))
            }
            "normalize" | "fromutc" => {
                let a = bind(method, args, &["dt"], 1)?;
                let dt = datetime_arg(method, a[0].as_ref().expect("required"))?;
                let instant = if method == "fromutc" {
                    dt.local
                } else {
                    dt.instant()
                        .ok_or_else(|| invalid("normalize(): naive time (tzinfo is not set)"))?
                };
                let tz = self.at_instant(instant);
                let local = instant + chrono::TimeDelta::seconds(i64::from(tz.offset()));
                Ok(DateTime::value(local, Some(tz)))
            }
            "utcoffset" | "dst" | "tzname" => {
                let a = bind(method, args, &["dt", "is_dst"], 0)?;
                let state = match a[0].as_ref().filter(|v| !v.is_none()) {
                    None => (**self).clone(),
                    Some(v) => {
                        let dt = datetime_arg(method, v)?;
                        match dt.tz {
                            Some(tz) if tz == **self => tz,
                            _ => self.localize(dt.local, Some(false))?,
                        }
                    }
                };
                Ok(match method {
                    "utcoffset" => TimeDelta::from_seconds(i64::from(state.offset())).into_value(),
                    "dst" => state.dst().map_or(Value::from(()), |d| {
                        TimeDelta::from_seconds(i64::from(d)).into_value()
                    }),
                    _ => Value::from(state.tzname()),
                })
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a time zone has no method `{method}`"),
            )),
        }
    }

    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        let other = other.downcast_ref::<Self>()?;
        Some(self.key().cmp(&other.key()))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// `modules.pytz`: `timezone(name)`, `utc`, `FixedOffset(minutes)`, `all_timezones`.
#[derive(Debug)]
pub(crate) struct PytzModule;

impl Object for PytzModule {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "utc" => Some(Value::from_object(TzInfo::Utc)),
            "timezone" => Some(function("timezone", |_, args| {
                let a = bind("timezone", args, &["zone"], 1)?;
                let zone = a[0].as_ref().expect("required");
                let name = zone.as_str().ok_or_else(|| {
                    invalid(format!(
                        "timezone(): the zone must be a name, not {}",
                        zone.kind()
                    ))
                })?;
                Ok(Value::from_object(TzInfo::named(name)?))
            })),
            "FixedOffset" => Some(function("FixedOffset", |_, args| {
                let a = bind("FixedOffset", args, &["offset"], 1)?;
                let minutes = int_arg("FixedOffset", "offset", a[0].as_ref().expect("required"))?;
                if minutes == 0 {
                    return Ok(Value::from_object(TzInfo::Utc));
                }
                if minutes.abs() >= 24 * 60 {
                    return Err(invalid("FixedOffset(): the offset must be less than a day"));
                }
                let seconds = i32::try_from(minutes * 60).expect("less than a day");
                Ok(Value::from_object(TzInfo::Fixed {
                    seconds,
                    name: None,
                }))
            })),
            "all_timezones" | "all_timezones_set" => Some(Value::from(
                chrono_tz::TZ_VARIANTS
                    .iter()
                    .map(|z| Value::from(z.name()))
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<module 'pytz'>")
    }
}

#[cfg(test)]
mod tests {
    use super::super::render_for_test;

    fn render(template: &str) -> String {
        let prelude = "{% set dt = modules.datetime %}{% set tz = modules.pytz.timezone %}";
        render_for_test(&format!("{prelude}{template}"))
            .unwrap_or_else(|e| panic!("{template}: {e:#}"))
    }

    fn error(template: &str) -> String {
        let prelude = "{% set dt = modules.datetime %}{% set tz = modules.pytz.timezone %}";
        match render_for_test(&format!("{prelude}{template}")) {
            Ok(out) => panic!("{template} rendered `{out}`, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_zone_given_as_tzinfo_is_its_local_mean_time_as_in_pytz() {
        // What pytz answers, minutes and all (the offset before the zone's first transition).
        assert_eq!(
            render("{{ dt.datetime(1997, 9, 29, 6, 14, 0, tzinfo=tz('America/Los_Angeles')) }}"),
            "1997-09-29 06:14:00-07:53"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 1, tzinfo=tz('Asia/Tokyo')) }}"),
            "2024-01-01 00:00:00+09:19"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 1, tzinfo=tz('Asia/Kolkata')) }}"),
            "2024-01-01 00:00:00+05:53"
        );
        // localize() is the right way, and gives the offset in force.
        assert_eq!(
            render("{{ tz('America/Los_Angeles').localize(dt.datetime(1997, 9, 29, 6, 14)) }}"),
            "1997-09-29 06:14:00-07:00"
        );
    }

    #[test]
    fn localize_chooses_in_skipped_and_repeated_hours_as_pytz() {
        let ny = "{% set ny = tz('America/New_York') %}";
        assert_eq!(
            render(&format!(
                "{ny}{{{{ ny.localize(dt.datetime(2024, 3, 10, 2, 30)) }}}}|\
                 {{{{ ny.localize(dt.datetime(2024, 3, 10, 2, 30), is_dst=True) }}}}|\
                 {{{{ ny.localize(dt.datetime(2024, 11, 3, 1, 30)) }}}}|\
                 {{{{ ny.localize(dt.datetime(2024, 11, 3, 1, 30), is_dst=True) }}}}"
            )),
            "2024-03-10 02:30:00-05:00|2024-03-10 02:30:00-04:00|\
             2024-11-03 01:30:00-05:00|2024-11-03 01:30:00-04:00"
        );
        assert!(
            error(&format!(
                "{ny}{{{{ ny.localize(dt.datetime(2024, 11, 3, 1, 30), is_dst=None) }}}}"
            ))
            .contains("AmbiguousTimeError")
        );
        assert!(
            error(&format!(
                "{ny}{{{{ ny.localize(dt.datetime(2024, 3, 10, 2, 30), is_dst=None) }}}}"
            ))
            .contains("NonExistentTimeError")
        );
        assert!(
            error(&format!(
                "{ny}{{{{ ny.localize(dt.datetime(2024, 3, 10, tzinfo=modules.pytz.utc)) }}}}"
            ))
            .contains("not a naive datetime")
        );
    }

    #[test]
    fn conversions_between_zones_of_a_known_instant() {
        let noon = "{% set noon = dt.datetime(2024, 7, 1, 12, tzinfo=modules.pytz.utc) %}";
        assert_eq!(
            render(&format!(
                "{noon}{{{{ noon.astimezone(tz('America/New_York')) }}}} \
                 {{{{ noon.astimezone(tz('America/New_York')).tzname() }}}}|\
                 {{{{ noon.replace(month=1).astimezone(tz('America/New_York')) }}}} \
                 {{{{ noon.replace(month=1).astimezone(tz('America/New_York')).tzname() }}}}|\
                 {{{{ noon.astimezone(tz('Asia/Kolkata')) }}}}|\
                 {{{{ noon.astimezone(tz('Europe/London')).utcoffset() }}}} \
                 {{{{ noon.astimezone(tz('Europe/London')).dst() }}}}"
            )),
            "2024-07-01 08:00:00-04:00 EDT|2024-01-01 07:00:00-05:00 EST|\
             2024-07-01 17:30:00+05:30|1:00:00 1:00:00"
        );
        // The same instant in two zones, as timestamps.
        assert_eq!(
            render(&format!(
                "{noon}{{{{ noon.timestamp() == noon.astimezone(tz('Asia/Tokyo')).timestamp() }}}}"
            )),
            "True"
        );
    }

    #[test]
    fn zones_by_name() {
        assert_eq!(
            render(
                "{{ tz('UTC') == modules.pytz.utc }} {{ tz('utc') }} {{ tz('Europe/london') }} \
                 {{ tz('Europe/Paris').zone }} {{ modules.pytz.utc.zone }} \
                 {{ 'America/New_York' in modules.pytz.all_timezones }}"
            ),
            "True UTC Europe/London Europe/Paris UTC True"
        );
        assert_eq!(
            render("{{ dt.datetime(2024, 1, 1, tzinfo=modules.pytz.FixedOffset(330)) }}"),
            "2024-01-01 00:00:00+05:30"
        );
        let message = error("{{ tz('America/New_Yrok') }}");
        assert!(
            message.contains("unknown time zone `America/New_Yrok`"),
            "{message}"
        );
        assert!(message.contains("America/New_York"), "{message}");
    }

    /// The calls dbt-date's compile-time comparisons make (`to_compile_datetime`, then
    /// `timestamp()` compared), with the answers its integration test expects.
    #[test]
    fn dbt_date_comparisons() {
        let to_timestamp = "{% macro ts(value, zone='UTC') -%}\
            {%- set zone_info = modules.pytz.timezone(zone) -%}\
            {%- if value is string -%}\
              {%- set text = value | trim -%}\
              {%- if text | length == 10 and text[4] == '-' and text[7] == '-' -%}\
                {%- set found = zone_info.localize(modules.datetime.datetime.strptime(text, '%Y-%m-%d')) -%}\
              {%- else -%}\
                {%- set parsed = modules.datetime.datetime.fromisoformat(text | replace('Z', '+00:00')) -%}\
                {%- set found = zone_info.localize(parsed) if parsed.tzinfo is none else parsed -%}\
              {%- endif -%}\
            {%- elif value.hour is defined -%}\
              {%- set found = zone_info.localize(value) if value.tzinfo is none else value -%}\
            {%- else -%}\
              {%- set found = zone_info.localize(modules.datetime.datetime(value.year, value.month, value.day)) -%}\
            {%- endif -%}\
            {{- found.timestamp() -}}\
            {%- endmacro %}";
        let before = |value: &str, reference: &str, zone: &str| {
            render(&format!(
                "{to_timestamp}{{{{ 1 if (ts({reference}, '{zone}') | float) < (ts({value}, '{zone}') | float) else 0 }}}}"
            ))
        };
        let as_of = "'2026-08-15T12:00:00Z'";
        assert_eq!(before("'2026-09-01'", as_of, "UTC"), "1");
        assert_eq!(before("'2026-08-01'", as_of, "UTC"), "0");
        assert_eq!(before("'2026-09-01'", "'2026-09-01T00:00:00Z'", "UTC"), "0");
        assert_eq!(
            before("'2026-09-01'", "'2026-08-31T14:59:59Z'", "Asia/Tokyo"),
            "1"
        );
        assert_eq!(
            before("'2026-09-01'", "'2026-08-31T15:00:00Z'", "Asia/Tokyo"),
            "0"
        );
        assert_eq!(
            before(
                "'2026-09-01'",
                "'2026-09-01T06:59:59Z'",
                "America/Los_Angeles"
            ),
            "1"
        );
        assert_eq!(
            before(
                "'2026-09-01'",
                "'2026-09-01T07:00:00Z'",
                "America/Los_Angeles"
            ),
            "0"
        );
        assert_eq!(before("'2026-09-01 00:00:00'", as_of, "UTC"), "1");
        assert_eq!(before("dt.date(2026, 9, 1)", as_of, "UTC"), "1");
        assert_eq!(
            before(
                "dt.datetime(2026, 9, 1, 0, 0, 0, 0, tzinfo=tz('UTC'))",
                as_of,
                "UTC"
            ),
            "1"
        );
        assert_eq!(before("'9999-12-31'", "run_started_at", "UTC"), "1");
        assert_eq!(before("'1970-01-01'", "run_started_at", "UTC"), "0");
    }
}
