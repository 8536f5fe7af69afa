//! The `microbatch` incremental strategy: time windows ("batches") of a model's `event_time`
//! column, each built on its own: the model is rendered once per batch with its
//! `event_time`-configured inputs filtered to the window, and the window's rows in the table are
//! deleted and the batch's rows inserted, in one transaction per batch.
//!
//! This module reads the configuration (`event_time`, `batch_size`, `begin`, `lookback`) and
//! cuts a time range into batches. It never looks at the database or the clock: the caller
//! passes "now" (the run's start time) and the `--event-time-start/--event-time-end` flags.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::incremental::config_problem;
use crate::diagnostics::{Code, Problem};
use crate::graph::{Materialization, Node};

/// The length of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Hour,
    Day,
    Month,
    Year,
}

impl BatchSize {
    /// The start of the batch holding `t`.
    pub fn truncate(self, t: NaiveDateTime) -> NaiveDateTime {
        let d = t.date();
        match self {
            BatchSize::Hour => d.and_time(
                NaiveTime::from_hms_opt(t.hour(), 0, 0).expect("an hour of a valid time"),
            ),
            BatchSize::Day => d.and_time(NaiveTime::MIN),
            BatchSize::Month => NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
                .expect("the first of a valid month")
                .and_time(NaiveTime::MIN),
            BatchSize::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1)
                .expect("the first of a valid year")
                .and_time(NaiveTime::MIN),
        }
    }

    /// `t` (a batch start) moved by `n` batches.
    pub fn offset(self, t: NaiveDateTime, n: i64) -> NaiveDateTime {
        match self {
            BatchSize::Hour => t + Duration::hours(n),
            BatchSize::Day => t + Duration::days(n),
            BatchSize::Month | BatchSize::Year => {
                let months = if self == BatchSize::Month { n } else { n * 12 };
                let total = i64::from(t.year()) * 12 + i64::from(t.month0()) + months;
                let year = i32::try_from(total.div_euclid(12)).unwrap_or(i32::MAX);
                let month = u32::try_from(total.rem_euclid(12)).unwrap_or(0) + 1;
                NaiveDate::from_ymd_opt(year, month, 1).map_or(t, |d| d.and_time(NaiveTime::MIN))
            }
        }
    }
}

/// A microbatch model's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The model's own time column: the batch window is deleted from the table on it.
    pub event_time: String,
    pub batch_size: BatchSize,
    /// The start of time: where the first run (or a full refresh) begins.
    pub begin: NaiveDateTime,
    /// How many batches before the current one a normal run reprocesses.
    pub lookback: u32,
}

/// One batch: rows with `start <= event_time < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

impl Window {
    /// A timestamp literal's text (`2024-01-31 00:00:00`).
    pub fn text(t: NaiveDateTime) -> String {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }

    /// `[start, end)`, as diagnostics and logs show it.
    pub fn label(&self) -> String {
        format!("[{}, {})", Self::text(self.start), Self::text(self.end))
    }

    /// The batch id dbt gives the window: its start as `YYYYMMDD` (with the hour for hourly
    /// batches).
    pub fn id(&self, size: BatchSize) -> String {
        match size {
            BatchSize::Hour => self.start.format("%Y%m%d%H").to_string(),
            _ => self.start.format("%Y%m%d").to_string(),
        }
    }
}

/// Read an ISO date or timestamp (`2024-01-31`, `2024-01-31 12:00`, `2024-01-31T12:00:00Z`).
pub fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d.and_time(NaiveTime::MIN));
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_utc());
    }
    let t = t.trim_end_matches('Z');
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Some(dt);
        }
    }
    None
}

/// Whether a node is an incremental model with the microbatch strategy.
pub fn is_microbatch(node: &Node) -> bool {
    node.materialized() == Materialization::Incremental
        && node.config.str("incremental_strategy") == Some("microbatch")
}

const SIZES: &str = "hour, day, month, year";

impl Settings {
    pub fn of(node: &Node) -> Result<Settings, Problem> {
        let missing = |key: &str, help: &str| {
            Problem::new(
                Code::IncrementalConfig,
                format!("microbatch model `{}` has no `{key}` config", node.name),
            )
            .help(help.to_string())
            .at_model(node)
        };
        let event_time = node.config.str("event_time").ok_or_else(|| {
            missing(
                "event_time",
                "set event_time to the column holding each row's time, e.g. config(event_time='created_at')",
            )
        })?;
        let batch_size = match node.config.str("batch_size") {
            None => {
                return Err(missing(
                    "batch_size",
                    &format!("set batch_size to one of: {SIZES}"),
                ));
            }
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "hour" => BatchSize::Hour,
                "day" => BatchSize::Day,
                "month" => BatchSize::Month,
                "year" => BatchSize::Year,
                _ => {
                    return Err(config_problem(
                        node,
                        s,
                        format!(
                            "microbatch model `{}` has the unknown batch_size `{s}`",
                            node.name
                        ),
                        &format!("use one of: {SIZES}"),
                    ));
                }
            },
        };
        let begin_text = match node.config.get("begin") {
            None => {
                return Err(missing(
                    "begin",
                    "set begin to the time of the first batch, e.g. config(begin='2024-01-01')",
                ));
            }
            Some(v) => v.as_str().map_or_else(|| v.to_string(), String::from),
        };
        let begin = parse_time(&begin_text).ok_or_else(|| {
            config_problem(
                node,
                &begin_text,
                format!(
                    "the begin `{begin_text}` of microbatch model `{}` is not a date or timestamp",
                    node.name
                ),
                "write it as an ISO date or timestamp: '2024-01-01' or '2024-01-01 06:00:00'",
            )
        })?;
        let lookback = match node.config.get("lookback") {
            None => 1,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    config_problem(
                        node,
                        "lookback",
                        format!(
                            "the lookback of microbatch model `{}` must be a whole number of batches, found {v}",
                            node.name
                        ),
                        "write it as lookback=1 (the default) or another count of batches",
                    )
                })?,
        };
        Ok(Settings {
            event_time: event_time.to_string(),
            batch_size,
            begin,
            lookback,
        })
    }

    /// The batches of one run. `end` is `--event-time-end` or now; `start` is
    /// `--event-time-start`, else `begin` on a first run (or full refresh), else the current
    /// batch and the `lookback` batches before it. Batch starts are aligned on `batch_size`;
    /// the last batch ends exactly at `end`.
    pub fn batches(
        &self,
        first_run: bool,
        start: Option<NaiveDateTime>,
        end: NaiveDateTime,
    ) -> Vec<Window> {
        let size = self.batch_size;
        let start = match start {
            Some(s) => size.truncate(s),
            None if first_run => size.truncate(self.begin),
            None => size.offset(size.truncate(end), -i64::from(self.lookback)),
        };
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let next = size.offset(at, 1);
            out.push(Window {
                start: at,
                end: next.min(end),
            });
            at = next;
        }
        out
    }
}

trait AtModel {
    fn at_model(self, node: &Node) -> Self;
}

impl AtModel for Problem {
    fn at_model(self, node: &Node) -> Problem {
        match &node.file {
            Some(file) => match crate::suggest::find_call(&file.text, "config", "microbatch") {
                Some((at, len)) => self.at(file, at, len, "the strategy is set here"),
                None => self,
            },
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        parse_time(s).unwrap()
    }

    fn settings(size: BatchSize, lookback: u32) -> Settings {
        Settings {
            event_time: "at".into(),
            batch_size: size,
            begin: t("2024-01-30"),
            lookback,
        }
    }

    fn labels(w: &[Window]) -> Vec<String> {
        w.iter().map(Window::label).collect()
    }

    #[test]
    fn times_parse_as_dates_or_timestamps() {
        assert_eq!(t("2024-01-02"), t("2024-01-02 00:00:00"));
        assert_eq!(t("2024-01-02T03:04:05Z"), t("2024-01-02 03:04:05"));
        assert_eq!(t("2024-01-02T03:04"), t("2024-01-02 03:04:00"));
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn sizes_truncate_and_offset() {
        let at = t("2024-03-15 10:30:00");
        assert_eq!(BatchSize::Hour.truncate(at), t("2024-03-15 10:00"));
        assert_eq!(BatchSize::Day.truncate(at), t("2024-03-15"));
        assert_eq!(BatchSize::Month.truncate(at), t("2024-03-01"));
        assert_eq!(BatchSize::Year.truncate(at), t("2024-01-01"));
        assert_eq!(
            BatchSize::Month.offset(t("2024-01-01"), -1),
            t("2023-12-01")
        );
        assert_eq!(BatchSize::Year.offset(t("2024-01-01"), 2), t("2026-01-01"));
    }

    #[test]
    fn first_runs_start_at_begin_and_later_runs_at_the_lookback() {
        let s = settings(BatchSize::Day, 1);
        let end = t("2024-02-02 12:00");
        assert_eq!(
            labels(&s.batches(true, None, end)),
            [
                "[2024-01-30 00:00:00, 2024-01-31 00:00:00)",
                "[2024-01-31 00:00:00, 2024-02-01 00:00:00)",
                "[2024-02-01 00:00:00, 2024-02-02 00:00:00)",
                "[2024-02-02 00:00:00, 2024-02-02 12:00:00)",
            ]
        );
        assert_eq!(
            labels(&s.batches(false, None, end)),
            [
                "[2024-02-01 00:00:00, 2024-02-02 00:00:00)",
                "[2024-02-02 00:00:00, 2024-02-02 12:00:00)",
            ]
        );
        // An explicit start wins, aligned on the batch size.
        assert_eq!(
            labels(&s.batches(false, Some(t("2024-01-31 05:00")), t("2024-02-01"))),
            ["[2024-01-31 00:00:00, 2024-02-01 00:00:00)"]
        );
        let m = settings(BatchSize::Month, 0);
        assert_eq!(
            labels(&m.batches(false, None, t("2024-03-10"))),
            ["[2024-03-01 00:00:00, 2024-03-10 00:00:00)"]
        );
        assert!(s.batches(false, Some(t("2024-02-03")), end).is_empty());
    }
}
