//! The rest of dbt's template globals: `exceptions`, `modules.datetime` and `run_started_at`
//! (date and time objects), and the JSON/YAML helpers `tojson`, `fromjson`, `toyaml`,
//! `fromyaml`.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Object, Value, from_args};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::context::{ctx, invalid, json_to_value};

/// The `exceptions` global.
#[derive(Debug)]
pub struct ExceptionsObject;

impl Object for ExceptionsObject {
    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let message = args.first().map(ToString::to_string).unwrap_or_default();
        match method {
            "raise_compiler_error" | "raise_not_implemented" => Err(invalid(message)),
            "warn" => {
                if let Ok(ctx) = ctx(state) {
                    ctx.mark_run_dependent();
                    ctx.logs
                        .lock()
                        .expect("logs lock")
                        .push(format!("warning: {message}"));
                }
                Ok(Value::from(""))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("exceptions has no method `{method}`"),
            )),
        }
    }
}

/// A point in time, as Python's `datetime` shows it to dbt templates.
#[derive(Debug, Clone)]
pub struct DateTimeObject {
    pub at: chrono::NaiveDateTime,
    pub utc: bool,
}

impl Object for DateTimeObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::{Datelike, Timelike};
        let at = self.at;
        match key.as_str()? {
            "year" => Some(Value::from(at.year())),
            "month" => Some(Value::from(at.month())),
            "day" => Some(Value::from(at.day())),
            "hour" => Some(Value::from(at.hour())),
            "minute" => Some(Value::from(at.minute())),
            "second" => Some(Value::from(at.second())),
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
            "strftime" => {
                let (fmt,): (String,) = from_args(args)?;
                Ok(Value::from(self.at.format(&fmt).to_string()))
            }
            "isoformat" => Ok(Value::from(self.iso('T'))),
            "date" => Ok(Value::from(self.at.date().format("%Y-%m-%d").to_string())),
            "timestamp" => Ok(Value::from(self.at.and_utc().timestamp())),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("datetime has no method `{method}`"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iso(' '))
    }
}

impl DateTimeObject {
    fn iso(&self, sep: char) -> String {
        let mut s = self
            .at
            .format(&format!("%Y-%m-%d{sep}%H:%M:%S%.6f"))
            .to_string();
        if self.utc {
            s.push_str("+00:00");
        }
        s
    }
}

/// `modules.datetime`: `datetime.now()`, `datetime.utcnow()`, `date.today()`.
#[derive(Debug)]
pub struct ModulesObject;

#[derive(Debug)]
struct DatetimeModule;

#[derive(Debug)]
struct DatetimeClass(bool);

impl Object for ModulesObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(DatetimeModule)),
            _ => None,
        }
    }
}

impl Object for DatetimeModule {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(DatetimeClass(false))),
            "date" => Some(Value::from_object(DatetimeClass(true))),
            _ => None,
        }
    }
}

impl Object for DatetimeClass {
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        let now = chrono::Utc::now();
        let value = match method {
            "now" => DateTimeObject {
                at: chrono::Local::now().naive_local(),
                utc: false,
            },
            "utcnow" => DateTimeObject {
                at: now.naive_utc(),
                utc: false,
            },
            "today" => {
                let day = chrono::Local::now().date_naive();
                return Ok(Value::from(day.format("%Y-%m-%d").to_string()));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("datetime has no method `{method}`"),
                ));
            }
        };
        if self.0 {
            return Ok(Value::from(value.at.date().format("%Y-%m-%d").to_string()));
        }
        Ok(Value::from_object(value))
    }
}

pub fn tojson(value: Value) -> Result<String, Error> {
    serde_json::to_string(&value).map_err(|e| invalid(e.to_string()))
}

pub fn fromjson(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_json::from_str::<Json>(&text) {
        Ok(v) => Ok(json_to_value(&v)),
        Err(e) => default.ok_or_else(|| invalid(format!("fromjson: {e}"))),
    }
}

pub fn toyaml(value: Value) -> Result<String, Error> {
    serde_yaml::to_string(&value).map_err(|e| invalid(e.to_string()))
}

pub fn fromyaml(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_yaml::from_str::<serde_yaml::Value>(&text) {
        Ok(v) => Ok(json_to_value(&crate::project::yaml_to_json(&v))),
        Err(e) => default.ok_or_else(|| invalid(format!("fromyaml: {e}"))),
    }
}
