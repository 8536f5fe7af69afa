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
            "re" => Some(Value::from_object(ReModule)),
            _ => None,
        }
    }
}

/// `modules.re`: Python's `re` as dbt packages use it (`sub`, `match`, `fullmatch`, `search`,
/// `findall`, `split`, `escape`), on the regex crate (no look-around or back-references, as
/// in Rust's regex).
#[derive(Debug)]
struct ReModule;

fn regex_of(pattern: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(pattern)
        .map_err(|e| invalid(format!("modules.re: bad pattern `{pattern}`: {e}")))
}

/// A Python replacement (`\1`, `\g<name>`) in the regex crate's spelling (`${1}`, `${name}`).
fn python_replacement(repl: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        group.push(d);
                        chars.next();
                    }
                    let _ = write!(out, "${{{group}}}");
                }
                Some('g') => {
                    chars.next();
                    let name: String = chars.by_ref().skip(1).take_while(|&c| c != '>').collect();
                    let _ = write!(out, "${{{name}}}");
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// A match: `group(n)`, `groups()`, `start()`, `end()`.
#[derive(Debug)]
struct MatchObject {
    groups: Vec<Option<String>>,
    span: (usize, usize),
}

impl MatchObject {
    fn of(caps: &regex::Captures<'_>) -> MatchObject {
        let whole = caps.get(0).expect("group 0");
        MatchObject {
            groups: caps
                .iter()
                .map(|g| g.map(|m| m.as_str().to_string()))
                .collect(),
            span: (whole.start(), whole.end()),
        }
    }
}

impl Object for MatchObject {
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "group" => {
                let (n,): (Option<usize>,) = from_args(args)?;
                Ok(Value::from(
                    self.groups.get(n.unwrap_or(0)).cloned().flatten(),
                ))
            }
            "groups" => Ok(Value::from(
                self.groups[1..]
                    .iter()
                    .cloned()
                    .map(Value::from)
                    .collect::<Vec<_>>(),
            )),
            "start" => Ok(Value::from(self.span.0)),
            "end" => Ok(Value::from(self.span.1)),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("a match has no method `{method}`"),
            )),
        }
    }
}

impl Object for ReModule {
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let found = |caps: Option<regex::Captures<'_>>| {
            caps.map_or(Value::from(()), |c| Value::from_object(MatchObject::of(&c)))
        };
        match method {
            "sub" => {
                let (pattern, repl, text, count): (String, String, String, Option<usize>) =
                    from_args(args)?;
                let re = regex_of(&pattern)?;
                let repl = python_replacement(&repl);
                Ok(Value::from(
                    re.replacen(&text, count.unwrap_or(0), repl.as_str())
                        .into_owned(),
                ))
            }
            "match" | "fullmatch" | "search" => {
                let (pattern, text): (String, String) = from_args(args)?;
                let anchored = match method {
                    "match" => format!("^(?:{pattern})"),
                    "fullmatch" => format!("^(?:{pattern})$"),
                    _ => pattern,
                };
                Ok(found(regex_of(&anchored)?.captures(&text)))
            }
            "findall" => {
                let (pattern, text): (String, String) = from_args(args)?;
                let re = regex_of(&pattern)?;
                let all: Vec<Value> = re
                    .captures_iter(&text)
                    .map(|c| match c.len() {
                        1 => Value::from(c[0].to_string()),
                        2 => Value::from(c.get(1).map(|m| m.as_str().to_string())),
                        _ => Value::from(
                            c.iter()
                                .skip(1)
                                .map(|m| Value::from(m.map(|m| m.as_str().to_string())))
                                .collect::<Vec<_>>(),
                        ),
                    })
                    .collect();
                Ok(Value::from(all))
            }
            "split" => {
                let (pattern, text): (String, String) = from_args(args)?;
                Ok(Value::from(
                    regex_of(&pattern)?
                        .split(&text)
                        .map(String::from)
                        .collect::<Vec<_>>(),
                ))
            }
            "escape" => {
                let (text,): (String,) = from_args(args)?;
                Ok(Value::from(regex::escape(&text)))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.re has no function `{method}`"),
            )),
        }
    }
}

/// `set(items)`: the distinct items in their first order (a list: templates iterate it, test
/// `in` and take `length`).
pub fn set_fn(items: Option<Value>) -> Result<Value, Error> {
    let mut seen: Vec<Value> = Vec::new();
    if let Some(v) = items.filter(|v| !v.is_undefined() && !v.is_none()) {
        for item in v.try_iter()? {
            if !seen.contains(&item) {
                seen.push(item);
            }
        }
    }
    super::mutable::new_list(Some(Value::from(seen)))
}

/// `zip(a, b, ...)`: lists of the items at the same place, as long as the shortest.
pub fn zip_fn(lists: minijinja::value::Rest<Value>) -> Result<Value, Error> {
    let columns: Vec<Vec<Value>> = lists
        .iter()
        .map(|l| l.try_iter().map(Iterator::collect))
        .collect::<Result<_, _>>()?;
    let n = columns.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::from(
        (0..n)
            .map(|i| Value::from(columns.iter().map(|c| c[i].clone()).collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
    ))
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

#[cfg(test)]
mod tests {
    use super::python_replacement;

    #[test]
    fn python_replacements_become_regex_ones() {
        assert_eq!(python_replacement(r"\1-\2"), "${1}-${2}");
        assert_eq!(python_replacement(r"\g<word>$"), "${word}$$");
        assert_eq!(python_replacement("_a"), "_a");
    }
}
