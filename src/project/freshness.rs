//! Source freshness: what a source table's `freshness:` and `loaded_at_field:` ask (dbt's
//! merging of a source's and a table's settings), and the status a measured age gets. The
//! measuring is `xform source freshness`'s (`commands/freshness.rs`).

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::yaml_to_json;

/// `{count: 12, period: hour}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub count: i64,
    pub period: Period,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Minute,
    Hour,
    Day,
}

impl Period {
    fn parse(text: &str) -> Option<Period> {
        match text {
            "minute" => Some(Period::Minute),
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
        }
    }
}

impl Threshold {
    pub fn seconds(self) -> i64 {
        self.count.saturating_mul(self.period.seconds())
    }
}

/// A source table's freshness criteria.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    pub warn_after: Option<Threshold>,
    pub error_after: Option<Threshold>,
    /// A condition limiting the rows whose newest `loaded_at_field` counts.
    pub filter: Option<String>,
}

/// How fresh a source table is: dbt's statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Warn,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Error => "error",
        }
    }
}

impl Freshness {
    /// The status of a table whose newest row is `age_seconds` old: `error_after` first.
    pub fn status(&self, age_seconds: f64) -> Status {
        let over = |t: Option<Threshold>| t.is_some_and(|t| age_seconds > t.seconds() as f64);
        if over(self.error_after) {
            Status::Error
        } else if over(self.warn_after) {
            Status::Warn
        } else {
            Status::Pass
        }
    }

    /// Whether there is anything to check.
    pub fn is_set(&self) -> bool {
        self.warn_after.is_some() || self.error_after.is_some()
    }

    /// The criteria as `sources.json` writes them.
    pub fn criteria_json(&self) -> Json {
        let t = |t: Option<Threshold>| match t {
            Some(t) => serde_json::json!({"count": t.count, "period": t.period.as_str()}),
            None => serde_json::json!({"count": null, "period": null}),
        };
        serde_json::json!({
            "warn_after": t(self.warn_after),
            "error_after": t(self.error_after),
            "filter": self.filter,
        })
    }
}

/// Where a freshness setting can be written: the entry itself, or its `config:` (dbt 1.9+).
fn setting<'a>(entry: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    entry
        .get("config")
        .and_then(|c| c.get(key))
        .or_else(|| entry.get(key))
}

/// A `warn_after` / `error_after` as written (`null` or an incomplete one: none).
fn threshold(value: &Yaml) -> Option<Threshold> {
    let count = value.get("count").and_then(Yaml::as_i64)?;
    let period = value
        .get("period")
        .and_then(Yaml::as_str)
        .and_then(Period::parse)?;
    Some(Threshold { count, period })
}

/// A source's and a table's `freshness:` merged as dbt merges them: the table's keys over
/// the source's; `freshness: null` on the table turns it off. `None`: no freshness.
pub fn merged(source: &Yaml, table: &Yaml) -> Option<Freshness> {
    let mut out: Option<Freshness> = None;
    for entry in [source, table] {
        match setting(entry, "freshness") {
            None => {}
            Some(Yaml::Null) => out = None,
            Some(f) => {
                let mut base = out.take().unwrap_or_default();
                if let Some(t) = f.get("warn_after") {
                    base.warn_after = threshold(t);
                }
                if let Some(t) = f.get("error_after") {
                    base.error_after = threshold(t);
                }
                if let Some(filter) = f.get("filter") {
                    base.filter = filter.as_str().map(String::from);
                }
                out = Some(base);
            }
        }
    }
    out
}

/// The table's `loaded_at_field`, else its source's.
pub fn loaded_at_field(source: &Yaml, table: &Yaml) -> Option<String> {
    [table, source]
        .iter()
        .find_map(|e| setting(e, "loaded_at_field"))
        .and_then(|v| match yaml_to_json(v) {
            Json::String(s) => Some(s),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Yaml {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn the_table_s_settings_go_over_the_source_s() {
        let source = yaml(
            "freshness: {warn_after: {count: 12, period: hour}, error_after: {count: 1, period: day}}\nloaded_at_field: loaded_at",
        );
        let table = yaml("freshness: {warn_after: {count: 30, period: minute}}");
        let f = merged(&source, &table).unwrap();
        assert_eq!(
            f.warn_after,
            Some(Threshold {
                count: 30,
                period: Period::Minute
            })
        );
        assert_eq!(f.error_after.unwrap().seconds(), 86_400);
        assert_eq!(
            loaded_at_field(&source, &table).as_deref(),
            Some("loaded_at")
        );
        assert_eq!(merged(&source, &yaml("freshness: null")), None);
        assert_eq!(merged(&yaml("name: x"), &yaml("name: y")), None);
        let config = yaml(
            "config: {freshness: {error_after: {count: 2, period: hour}}, loaded_at_field: ts}",
        );
        assert_eq!(
            merged(&yaml("name: x"), &config)
                .unwrap()
                .error_after
                .unwrap()
                .seconds(),
            7200
        );
        assert_eq!(
            loaded_at_field(&yaml("name: x"), &config).as_deref(),
            Some("ts")
        );
    }

    #[test]
    fn error_after_is_checked_before_warn_after() {
        let f = Freshness {
            warn_after: Some(Threshold {
                count: 1,
                period: Period::Hour,
            }),
            error_after: Some(Threshold {
                count: 1,
                period: Period::Day,
            }),
            filter: None,
        };
        assert_eq!(f.status(60.0), Status::Pass);
        assert_eq!(f.status(3601.0), Status::Warn);
        assert_eq!(f.status(90_000.0), Status::Error);
    }
}
