//! The rest of dbt's template globals: `exceptions`, `modules` (`datetime`, `pytz`, `re`,
//! `itertools`), `run_started_at`, `set()` / `zip()` and the JSON/YAML helpers `tojson`,
//! `fromjson`, `toyaml`, `fromyaml`.
//!
//! `modules.*` follows Python's modules as dbt exposes them (same names, arguments and
//! results), written for minijinja: Python's objects become minijinja objects, iterators become
//! lists. Operators on dates are rewritten into calls (`render/arith.rs`); what is left is
//! said in `datetime.rs`.

mod datetime;
mod format;
mod itertools;
mod pytz;

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Value, from_args};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::context::{ctx, invalid, json_to_value};

pub(crate) use self::datetime::binary_op as datetime_op;
pub use self::datetime::run_started_at;

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

/// The `modules` global: `modules.datetime`, `modules.pytz`, `modules.re`,
/// `modules.itertools`.
#[derive(Debug)]
pub struct ModulesObject;

impl Object for ModulesObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(datetime::DatetimeModule)),
            "pytz" => Some(Value::from_object(pytz::PytzModule)),
            "re" => Some(Value::from_object(ReModule)),
            "itertools" => Some(Value::from_object(itertools::ItertoolsModule)),
            _ => None,
        }
    }
}

/// A module-level function of `modules.*` (`pytz.timezone`, `itertools.chain`…): a value
/// templates can call, pass around and call later, as in Python.
struct Function {
    name: &'static str,
    run: Run,
    /// Attributes that are functions themselves (`itertools.chain.from_iterable`).
    methods: &'static [(&'static str, Run)],
}

/// The body of a [`Function`].
type Run = fn(&mut State<'_, '_>, &[Value]) -> Result<Value, Error>;

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<function {}>", self.name)
    }
}

impl Object for Function {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        (self.run)(state, args)
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match self.methods.iter().find(|(name, _)| *name == method) {
            Some((_, run)) => run(state, args),
            None => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("{} has no attribute `{method}`", self.name),
            )),
        }
    }
}

fn function(name: &'static str, run: Run) -> Value {
    Value::from_object(Function {
        name,
        run,
        methods: &[],
    })
}

/// Python's binding of a call's arguments to its parameters: positional ones in order, then
/// keyword ones by name. The first `required` parameters must be given; an absent one is
/// `None` in the result, one given as `None` is `Some(none)`.
fn bind(
    func: &str,
    args: &[Value],
    params: &[&str],
    required: usize,
) -> Result<Vec<Option<Value>>, Error> {
    let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
    if positional.len() > params.len() {
        return Err(invalid(format!(
            "{func}() takes at most {} arguments ({} given)",
            params.len(),
            positional.len()
        )));
    }
    let mut bound: Vec<Option<Value>> = positional.iter().cloned().map(Some).collect();
    bound.resize(params.len(), None);
    for name in kwargs.args() {
        let Some(at) = params.iter().position(|p| *p == name) else {
            return Err(invalid(format!(
                "{func}() got an unexpected keyword argument `{name}`"
            )));
        };
        if bound[at].is_some() {
            return Err(invalid(format!(
                "{func}() got multiple values for argument `{name}`"
            )));
        }
        bound[at] = Some(kwargs.peek::<Value>(name)?);
    }
    if let Some(missing) = (0..required).find(|&i| bound[i].is_none()) {
        return Err(invalid(format!(
            "{func}() is missing the required argument `{}`",
            params[missing]
        )));
    }
    Ok(bound)
}

/// An integer argument, as Python's `int` parameters take it (no floats, no strings).
fn int_arg(func: &str, name: &str, value: &Value) -> Result<i64, Error> {
    if value.is_integer() {
        if let Some(n) = value.as_i64() {
            return Ok(n);
        }
        return Err(invalid(format!("{func}(): `{name}` is too large")));
    }
    Err(invalid(format!(
        "{func}(): `{name}` must be an integer, not {} `{value}`",
        value.kind()
    )))
}

/// An optional integer argument with its default (absent or `None` is the default).
fn int_or(func: &str, name: &str, value: Option<&Value>, default: i64) -> Result<i64, Error> {
    match value {
        None => Ok(default),
        Some(v) if v.is_none() || v.is_undefined() => Ok(default),
        Some(v) => int_arg(func, name, v),
    }
}

/// `modules.re`: Python's `re` as dbt packages use it (`sub`, `match`, `fullmatch`, `search`,
/// `findall`, `split`, `escape`, the flag constants), on fancy-regex (the regex crate, with
/// look-around and back-references added), Python's spelling translated (`python_pattern`).
#[derive(Debug)]
struct ReModule;

fn regex_of(pattern: &str) -> Result<fancy_regex::Regex, Error> {
    fancy_regex::Regex::new(&python_pattern(pattern))
        .map_err(|e| invalid(format!("modules.re: bad pattern `{pattern}`: {e}")))
}

/// A failure while matching (a backtracking limit hit), as a template error.
fn match_error(e: fancy_regex::Error) -> Error {
    invalid(format!("modules.re: {e}"))
}

/// A Python pattern in the regex crate's spelling: a `{` or `}` that is not part of a
/// repetition (`{2}`, `{1,3}`, `{,3}`) is a literal brace in Python and is escaped here, and
/// `\Z` is `\z`.
fn python_pattern(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains(['{', '}']) && !pattern.contains("\\Z") {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\\' && i + 1 < bytes.len() {
            let next = pattern[i + 1..].chars().next().unwrap_or('\\');
            if next == 'Z' {
                out.push_str("\\z");
            } else {
                out.push('\\');
                out.push(next);
            }
            i += 1 + next.len_utf8();
            continue;
        }
        if c == b'{' {
            // `{m}`, `{m,}`, `{m,n}`, `{,n}`: a repetition, copied as it is.
            let rest = &pattern[i + 1..];
            if let Some(close) = rest.find('}') {
                let inner = &rest[..close];
                let (a, b) = inner.split_once(',').unwrap_or((inner, ""));
                let digits = |t: &str| t.bytes().all(|d| d.is_ascii_digit());
                if !inner.is_empty() && digits(a) && digits(b) && (!a.is_empty() || !b.is_empty()) {
                    out.push('{');
                    out.push_str(inner);
                    out.push('}');
                    i += close + 2;
                    continue;
                }
            }
            out.push_str("\\{");
            i += 1;
            continue;
        }
        if c == b'}' {
            out.push_str("\\}");
            i += 1;
            continue;
        }
        let ch = pattern[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    std::borrow::Cow::Owned(out)
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
    fn of(caps: &fancy_regex::Captures<'_, str>) -> MatchObject {
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
    /// A match is true, as in Python (`{% if re.search(...) %}`).
    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

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

/// `re.I` and the other flags, Python's values.
const RE_FLAGS: &[(&str, i64)] = &[
    ("I", 2),
    ("IGNORECASE", 2),
    ("L", 4),
    ("LOCALE", 4),
    ("M", 8),
    ("MULTILINE", 8),
    ("S", 16),
    ("DOTALL", 16),
    ("U", 32),
    ("UNICODE", 32),
    ("X", 64),
    ("VERBOSE", 64),
    ("A", 256),
    ("ASCII", 256),
];

/// A pattern with Python's `flags` argument as inline flags (`(?i)`…).
fn with_flags(pattern: &str, flags: i64) -> String {
    let mut inline = String::new();
    for (bit, letter) in [(2, 'i'), (8, 'm'), (16, 's'), (64, 'x')] {
        if flags & bit != 0 {
            inline.push(letter);
        }
    }
    if inline.is_empty() {
        pattern.to_string()
    } else {
        format!("(?{inline}){pattern}")
    }
}

/// The `flags` argument: positional at `at`, or `flags=`.
fn flags_arg(positional: Option<i64>, kwargs: &Kwargs) -> Result<i64, Error> {
    let named: Option<i64> = kwargs.get("flags")?;
    Ok(positional.or(named).unwrap_or(0))
}

impl Object for ReModule {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        RE_FLAGS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| Value::from(*v))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let found = |caps: Option<fancy_regex::Captures<'_, str>>| {
            caps.map_or(Value::from(()), |c| Value::from_object(MatchObject::of(&c)))
        };
        match method {
            "sub" => {
                // `flags` by name only: after `count`, it is rarely given by position.
                let (pattern, repl, text, count, kwargs): (
                    String,
                    String,
                    String,
                    Option<usize>,
                    Kwargs,
                ) = from_args(args)?;
                let count = count.or(kwargs.get::<Option<usize>>("count")?);
                let flags = flags_arg(None, &kwargs)?;
                kwargs.assert_all_used()?;
                let re = regex_of(&with_flags(&pattern, flags))?;
                let repl = python_replacement(&repl);
                Ok(Value::from(
                    re.try_replacen(text.as_str(), count.unwrap_or(0), repl.as_str())
                        .map_err(match_error)?
                        .into_owned(),
                ))
            }
            "match" | "fullmatch" | "search" => {
                let (pattern, text, flags, kwargs): (String, String, Option<i64>, Kwargs) =
                    from_args(args)?;
                let flags = flags_arg(flags, &kwargs)?;
                kwargs.assert_all_used()?;
                let pattern = with_flags(&pattern, flags);
                let anchored = match method {
                    "match" => format!("^(?:{pattern})"),
                    "fullmatch" => format!("^(?:{pattern})$"),
                    _ => pattern,
                };
                Ok(found(
                    regex_of(&anchored)?
                        .captures(text.as_str())
                        .map_err(match_error)?,
                ))
            }
            "findall" => {
                let (pattern, text, flags, kwargs): (String, String, Option<i64>, Kwargs) =
                    from_args(args)?;
                let flags = flags_arg(flags, &kwargs)?;
                kwargs.assert_all_used()?;
                let re = regex_of(&with_flags(&pattern, flags))?;
                // As Python: the whole match with no group, the group with one, a tuple of
                // the groups with more; a group that did not take part is ''.
                let text_of = |m: Option<fancy_regex::Match<'_>>| {
                    Value::from(m.map_or(String::new(), |m| m.as_str().to_string()))
                };
                let mut all: Vec<Value> = Vec::new();
                for c in re.captures_iter(text.as_str()) {
                    let c = c.map_err(match_error)?;
                    all.push(match c.len() {
                        1 => text_of(c.get(0)),
                        2 => text_of(c.get(1)),
                        n => Value::from((1..n).map(|i| text_of(c.get(i))).collect::<Vec<_>>()),
                    });
                }
                Ok(Value::from(all))
            }
            "split" => {
                let (pattern, text, maxsplit, flags, kwargs): (
                    String,
                    String,
                    Option<usize>,
                    Option<i64>,
                    Kwargs,
                ) = from_args(args)?;
                let maxsplit = maxsplit.or(kwargs.get::<Option<usize>>("maxsplit")?);
                let flags = flags_arg(flags, &kwargs)?;
                kwargs.assert_all_used()?;
                let re = regex_of(&with_flags(&pattern, flags))?;
                let parts: Result<Vec<String>, Error> = match maxsplit.filter(|n| *n > 0) {
                    Some(n) => re
                        .splitn(text.as_str(), n + 1)
                        .map(|p| p.map(String::from).map_err(match_error))
                        .collect(),
                    None => re
                        .split(text.as_str())
                        .map(|p| p.map(String::from).map_err(match_error))
                        .collect(),
                };
                Ok(Value::from(parts?))
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

/// `set(items)`: the distinct items, sorted (a list: templates iterate it, test `in`, take
/// `length` and compare two sets).
pub fn set_fn(items: Option<Value>) -> Result<Value, Error> {
    let mut seen: Vec<Value> = Vec::new();
    if let Some(v) = items.filter(|v| !v.is_undefined() && !v.is_none()) {
        for item in v.try_iter()? {
            if !seen.contains(&item) {
                seen.push(item);
            }
        }
    }
    // A Python set has no order: kept sorted, two sets of the same items are equal however
    // they were made (dbt_utils' `equality` compares column sets with `!=`).
    seen.sort();
    super::mutable::new_list(Some(Value::from(seen)))
}

/// Jinja2's `round` filter, as dbt's templates call it: `round(precision=0, method='common')`,
/// where `common` is Python's `round` (halves to even) and `ceil` / `floor` round up or down.
/// An integer stays an integer under `common`; every other result is a float, as in Python.
pub fn round_filter(
    value: Value,
    precision: Option<i32>,
    method: Option<String>,
) -> Result<Value, Error> {
    let precision = precision.unwrap_or(0);
    let method = method.as_deref().unwrap_or("common");
    if !matches!(method, "common" | "ceil" | "floor") {
        return Err(invalid(
            "round: method must be 'common', 'ceil' or 'floor'".to_string(),
        ));
    }
    if method == "common" && value.is_integer() && precision >= 0 {
        return Ok(value);
    }
    let x = f64::try_from(value.clone())
        .map_err(|_| invalid(format!("round: {value} is not a number")))?;
    let scale = 10f64.powi(precision);
    let scaled = x * scale;
    let rounded = match method {
        "ceil" => scaled.ceil(),
        "floor" => scaled.floor(),
        _ => scaled.round_ties_even(),
    };
    Ok(Value::from(rounded / scale))
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

/// Renders a template with `modules` and a fixed `run_started_at`
/// (2024-01-02 03:04:05.123456 UTC), as the renderer sets them up.
#[cfg(test)]
fn render_for_test(template: &str) -> Result<String, Error> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(crate::render::mutable::unknown_method);
    env.add_global("modules", Value::from_object(ModulesObject));
    let started = chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
        .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 123_456))
        .expect("a valid time");
    env.add_global("run_started_at", run_started_at(started));
    env.render_str(template, ())
}

#[cfg(test)]
mod tests {
    use super::{python_pattern, python_replacement, regex_of};

    #[test]
    fn sets_of_the_same_items_are_equal() {
        let mut env = minijinja::Environment::new();
        env.add_function("set", super::set_fn);
        let out = env
            .render_str(
                "{{ set(['b', 'a', 'b']) == set(['a', 'b']) }} {{ set(['a']) != set(['a', 'c']) }} {{ set(['b', 'a']) | length }}",
                (),
            )
            .unwrap();
        assert_eq!(out, "True True 2");
    }

    #[test]
    fn python_patterns_become_regex_ones() {
        assert_eq!(
            python_pattern(r"a{2}b{1,3}c{,2}d{3,}"),
            r"a{2}b{1,3}c{,2}d{3,}"
        );
        assert_eq!(
            python_pattern(r#"({{\s*ref\s*\(\s*['"]?)(\)\s*}})\Z"#),
            r#"(\{\{\s*ref\s*\(\s*['"]?)(\)\s*\}\})\z"#
        );
        assert_eq!(python_pattern(r"\{x\}"), r"\{x\}");
        assert!(regex_of("(?ix) # opening {{\n ({{\\s*ref)").is_ok());
        // Look-around, which dbt-codegen's patterns use.
        let ahead = regex_of(r"(\w+)(?=\s|$)").unwrap();
        assert_eq!(ahead.find("ab cd").unwrap().map(|m| m.as_str()), Some("ab"));
    }

    #[test]
    fn round_is_jinja2_s() {
        let mut env = minijinja::Environment::new();
        env.add_filter("round", super::round_filter);
        let out = env
            .render_str(
                "{{ (7 / 2) | round(0, 'ceil') | int }} {{ 2.5 | round }} {{ 3 | round }} {{ 2.345 | round(2, 'floor') }}",
                minijinja::context! {},
            )
            .unwrap();
        assert_eq!(out, "4 2.0 3 2.34");
    }

    #[test]
    fn a_match_is_true_and_no_match_is_none() {
        let mut env = minijinja::Environment::new();
        env.add_global("re", minijinja::Value::from_object(super::ReModule));
        let out = env
            .render_str(
                "{{ 'yes' if re.search('(?i)(?s)(^.*\\s*|\\s+|,)with\\s', '-- x\n WITH a as (') else 'no' }} \
                 {{ re.search('z', 'abc') is none }} {{ re.findall('(a)(x)?', 'aa') }} \
                 {{ re.findall('b', 'aBb', re.IGNORECASE) | length }} {{ re.sub('B', '-', 'abB', flags=re.I) }}",
                minijinja::context! {},
            )
            .unwrap();
        assert_eq!(out, "yes True [['a', ''], ['a', '']] 2 a--");
    }

    #[test]
    fn python_replacements_become_regex_ones() {
        assert_eq!(python_replacement(r"\1-\2"), "${1}-${2}");
        assert_eq!(python_replacement(r"\g<word>$"), "${word}$$");
        assert_eq!(python_replacement("_a"), "_a");
    }
}
