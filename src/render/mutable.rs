//! Python-style mutable lists and dicts for templates.
//!
//! dbt code builds lists with `{% set cols = [] %}{% do cols.append(c) %}`; minijinja's literals
//! are immutable. `prepare` rewrites the literal of a `{% set x = [...] %}` / `{% set x = {...} %}`
//! tag into a call to `__list(...)` / `__dict(...)`, which return these objects, and records
//! where it inserted text so that error positions can be mapped back to the user's file.

use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

#[derive(Debug, Default)]
pub struct MutableList(Mutex<Vec<Value>>);

#[derive(Debug, Default)]
pub struct MutableDict(Mutex<indexmap::IndexMap<Value, Value>>);

fn unknown(kind: &str, method: &str) -> Error {
    Error::new(
        ErrorKind::UnknownMethod,
        format!("{kind} has no method `{method}`"),
    )
}

/// A list or dict that dbt code may mutate, as a mutable one: a literal stored inside a mutable
/// dict (`{% do d.update({k: []}) %}`, then `d[k].append(x)`), a macro parameter's default
/// (`group_by_columns=[]`), a generic test's YAML argument. Other values are kept as they are.
pub fn mutable(value: Value) -> Value {
    if value.downcast_object_ref::<Vec<Value>>().is_some() {
        return new_list(Some(value.clone())).unwrap_or(value);
    }
    if value
        .downcast_object_ref::<indexmap::IndexMap<Value, Value>>()
        .is_some()
    {
        return new_dict(Some(value.clone())).unwrap_or(value);
    }
    value
}

/// Python's read-only list methods on any sequence (`cols.index('id')`, `cols.copy()`), then
/// minijinja-contrib's Python methods for the rest.
pub fn unknown_method(
    state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if value.kind() == minijinja::value::ValueKind::Seq {
        match method {
            "index" => {
                let wanted = args.first().cloned().unwrap_or_default();
                return value
                    .try_iter()?
                    .position(|v| v == wanted)
                    .map(Value::from)
                    .ok_or_else(|| {
                        Error::new(ErrorKind::InvalidOperation, "list.index(x): x not in list")
                    });
            }
            "copy" => return new_list(Some(value.clone())),
            // The item Python's `pop` returns; a list that is not mutable stays as it is
            // (`(nodes | list).pop()` reads the last item of a list made on the spot).
            "pop" => {
                let items: Vec<Value> = value.try_iter()?.collect();
                let at = match args.first() {
                    Some(i) => {
                        let i = i64::try_from(i.clone())?;
                        let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
                        usize::try_from(if i < 0 { len + i } else { i }).ok()
                    }
                    None => items.len().checked_sub(1),
                };
                return at.and_then(|i| items.get(i).cloned()).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "pop from empty list or index out of range",
                    )
                });
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

pub fn new_list(items: Option<Value>) -> Result<Value, Error> {
    let items: Vec<Value> = match items {
        Some(v) if !v.is_undefined() && !v.is_none() => v.try_iter()?.collect(),
        _ => Vec::new(),
    };
    Ok(Value::from_object(MutableList(Mutex::new(items))))
}

pub fn new_dict(items: Option<Value>) -> Result<Value, Error> {
    let mut map = indexmap::IndexMap::new();
    if let Some(v) = items.filter(|v| !v.is_undefined() && !v.is_none()) {
        for k in v.try_iter()? {
            let value = v.get_item(&k)?;
            map.insert(k, mutable(value));
        }
    }
    Ok(Value::from_object(MutableDict(Mutex::new(map))))
}

impl Object for MutableList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.0.lock().expect("list lock");
        let i = key.as_i64()?;
        let i = if i < 0 {
            i + i64::try_from(items.len()).ok()?
        } else {
            i
        };
        items.get(usize::try_from(i).ok()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.lock().expect("list lock").clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.lock().expect("list lock").len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut items = self.0.lock().expect("list lock");
        match method {
            "append" => {
                items.push(args.first().cloned().unwrap_or_default());
                Ok(Value::from(()))
            }
            "extend" => {
                if let Some(more) = args.first() {
                    items.extend(more.try_iter()?);
                }
                Ok(Value::from(()))
            }
            "insert" => {
                let at = args
                    .first()
                    .and_then(Value::as_usize)
                    .unwrap_or(0)
                    .min(items.len());
                items.insert(at, args.get(1).cloned().unwrap_or_default());
                Ok(Value::from(()))
            }
            "pop" => {
                let at = match args.first().and_then(Value::as_i64) {
                    Some(i) if i < 0 => items
                        .len()
                        .checked_sub(usize::try_from(-i).unwrap_or(usize::MAX)),
                    Some(i) => usize::try_from(i).ok(),
                    None => items.len().checked_sub(1),
                };
                match at.filter(|&a| a < items.len()) {
                    Some(a) => Ok(items.remove(a)),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "pop from an empty list",
                    )),
                }
            }
            "remove" => {
                let wanted = args.first().cloned().unwrap_or_default();
                match items.iter().position(|v| *v == wanted) {
                    Some(p) => {
                        items.remove(p);
                        Ok(Value::from(()))
                    }
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "list.remove(x): x not in list",
                    )),
                }
            }
            "index" => {
                let wanted = args.first().cloned().unwrap_or_default();
                items
                    .iter()
                    .position(|v| *v == wanted)
                    .map(Value::from)
                    .ok_or_else(|| {
                        Error::new(ErrorKind::InvalidOperation, "list.index(x): x not in list")
                    })
            }
            "count" => {
                let wanted = args.first().cloned().unwrap_or_default();
                Ok(Value::from(items.iter().filter(|v| **v == wanted).count()))
            }
            "copy" => Ok(Value::from_object(MutableList(Mutex::new(items.clone())))),
            "reverse" => {
                items.reverse();
                Ok(Value::from(()))
            }
            _ => Err(unknown("list", method)),
        }
    }
}

impl Object for MutableDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.lock().expect("dict lock").get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.lock().expect("dict lock").keys().cloned().collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.lock().expect("dict lock").len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut map = self.0.lock().expect("dict lock");
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        match method {
            "get" => Ok(map
                .get(&arg(0))
                .cloned()
                .unwrap_or_else(|| args.get(1).cloned().unwrap_or(Value::from(())))),
            "update" => {
                if let Some(other) = args.first() {
                    for k in other.try_iter()? {
                        let v = other.get_item(&k)?;
                        map.insert(k, mutable(v));
                    }
                }
                Ok(Value::from(()))
            }
            "pop" => map
                .shift_remove(&arg(0))
                .or_else(|| args.get(1).cloned())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("key {} not in dict", arg(0)),
                    )
                }),
            "setdefault" => Ok(map.entry(arg(0)).or_insert_with(|| mutable(arg(1))).clone()),
            "keys" => Ok(Value::from(map.keys().cloned().collect::<Vec<_>>())),
            "values" => Ok(Value::from(map.values().cloned().collect::<Vec<_>>())),
            "items" => Ok(Value::from(
                map.iter()
                    .map(|(k, v)| Value::from(vec![k.clone(), v.clone()]))
                    .collect::<Vec<_>>(),
            )),
            "copy" => Ok(Value::from_object(MutableDict(Mutex::new(map.clone())))),
            _ => Err(unknown("dict", method)),
        }
    }
}

/// Where text was inserted: (offset in the rewritten text, length).
pub type Shifts = Vec<(usize, usize)>;

/// Map an offset in rewritten text back to the original text.
pub fn original_offset(shifts: &Shifts, offset: usize) -> usize {
    let mut moved = 0;
    for &(at, len) in shifts {
        if at + len <= offset {
            moved += len;
        } else if at <= offset {
            return at - moved;
        }
    }
    offset - moved
}

/// Rewrite `{% set x = [ … ] %}` and `{% set x = { … } %}` into mutable constructors, and,
/// where dates may be, binary `+` and `-` into `__xadd` / `__xsub` calls (`arith`). Every edit
/// inserts text (or replaces one character by one), so `Shifts` maps offsets back.
pub fn prepare(source: &str) -> (std::borrow::Cow<'_, str>, Shifts) {
    let mut edits = super::arith::edits(source);
    if source.contains("set ") {
        set_literal_edits(source, &mut edits);
    }
    if edits.is_empty() {
        return (std::borrow::Cow::Borrowed(source), Vec::new());
    }
    edits.sort();
    let mut out = String::with_capacity(source.len() + 16 * edits.len());
    let mut shifts = Vec::new();
    let mut pos = 0;
    for e in edits {
        out.push_str(&source[pos..e.at]);
        if e.text.len() > e.removed {
            shifts.push((out.len(), e.text.len() - e.removed));
        }
        out.push_str(e.text);
        pos = e.at + e.removed;
    }
    out.push_str(&source[pos..]);
    (std::borrow::Cow::Owned(out), shifts)
}

/// The edits that wrap the literal of each `{% set x = [...] %}` / `{% set x = {...} %}` in
/// `__list(...)` / `__dict(...)`.
fn set_literal_edits(source: &str, edits: &mut Vec<super::arith::Edit>) {
    let mut pos = 0;
    while let Some(found) = source[pos..].find("{%") {
        let tag = pos + found;
        let Some(close) = source[tag..].find("%}") else {
            break;
        };
        let end = tag + close;
        let inner_start = tag + 2 + usize::from(source[tag + 2..].starts_with('-'));
        let inner = &source[inner_start..end];
        let trimmed = inner.trim_start();
        let lead = inner.len() - trimmed.len();
        let rewrite = trimmed.strip_prefix("set ").and_then(|rest| {
            let eq = rest.find('=')?;
            let name = rest[..eq].trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
            {
                return None;
            }
            let value = &rest[eq + 1..];
            let value_trim = value.trim_start();
            let open = value_trim.chars().next()?;
            let ctor = match open {
                '[' => "__list(",
                '{' => "__dict(",
                _ => return None,
            };
            let literal_start = inner_start + lead + 4 + eq + 1 + (value.len() - value_trim.len());
            let literal_end = matching_close(source, literal_start)?;
            Some((literal_start, literal_end, ctor))
        });
        match rewrite {
            Some((start, close_at, ctor)) => {
                // Inside any `__xadd(` opened at the same place, closed before its `)`.
                edits.push(super::arith::Edit {
                    at: start,
                    order: (1, 0),
                    text: ctor,
                    removed: 0,
                });
                edits.push(super::arith::Edit {
                    at: close_at + 1,
                    order: (2, 0),
                    text: ")",
                    removed: 0,
                });
                pos = close_at + 1;
            }
            None => pos = end + 2,
        }
    }
}

/// The offset of the bracket closing the one at `open`, skipping strings.
fn matching_close(source: &str, open: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, ch) in source[open..].char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, ch) {
            // `\'` inside a string does not end it.
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(ch),
            (None, '[' | '{' | '(') => depth += 1,
            (None, ']' | '}' | ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_quotes_inside_a_set_literal_do_not_end_its_strings() {
        let src = "{% set d = {'a': '[\\'\\\"]?)', 'b': '{{ x }}'} %}{{ d.a }}";
        let (out, _) = prepare(src);
        assert_eq!(
            out,
            "{% set d = __dict({'a': '[\\'\\\"]?)', 'b': '{{ x }}'}) %}{{ d.a }}"
        );
    }

    #[test]
    fn any_list_has_python_s_index_and_copy() {
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(unknown_method);
        let out = env
            .render_str(
                "{{ cols.index('b') }} {{ cols.copy() | join(',') }} {{ 'a,b'.split(',').index('b') }} {{ cols.pop() }}{{ cols.pop(0) }}",
                minijinja::context! { cols => vec!["a", "b"] },
            )
            .unwrap();
        assert_eq!(out, "1 a,b 1 ba");
    }

    #[test]
    fn set_literals_and_date_arithmetic_rewrite_together() {
        let (out, shifts) = prepare("{# datetime #}{% set x = [1]+y %}{{ z }}");
        assert_eq!(
            out,
            "{# datetime #}{% set x = __xadd(__list([1]),y) %}{{ z }}"
        );
        let z = out.find("{{ z }}").unwrap();
        assert_eq!(
            original_offset(&shifts, z),
            "{# datetime #}{% set x = [1]+y %}".len()
        );
    }

    #[test]
    fn rewrites_set_literals_and_maps_offsets_back() {
        let src = "{% set cols = ['a', ']'] %}{{ x }}{%- set m = {'k': [1]} -%}{% set n = 3 %}";
        let (out, shifts) = prepare(src);
        assert_eq!(
            out,
            "{% set cols = __list(['a', ']']) %}{{ x }}{%- set m = __dict({'k': [1]}) -%}{% set n = 3 %}"
        );
        let x_new = out.find("{{ x }}").unwrap();
        assert_eq!(
            original_offset(&shifts, x_new),
            src.find("{{ x }}").unwrap()
        );
        let n_new = out.find("set n").unwrap();
        assert_eq!(original_offset(&shifts, n_new), src.find("set n").unwrap());
    }

    #[test]
    fn lists_mutate_in_templates() {
        let mut env = minijinja::Environment::new();
        env.add_function("__list", new_list);
        env.add_function("__dict", new_dict);
        let (src, _) = prepare(
            "{% set l = [] %}{% do l.append(1) %}{% do l.extend([2, 3]) %}{% set d = {} %}{% do d.update({'a': 1}) %}{{ l | join(',') }} {{ l | length }} {{ d['a'] }} {{ 2 in l }}",
        );
        assert_eq!(env.render_str(&src, ()).unwrap(), "1,2,3 3 1 True");
    }

    #[test]
    fn literals_stored_in_a_dict_become_mutable() {
        // dbt_utils' union_relations: `relation_columns.update({relation: []})`, then append.
        let mut env = minijinja::Environment::new();
        env.add_function("__list", new_list);
        env.add_function("__dict", new_dict);
        let (src, _) = prepare(
            "{% set d = {} %}{% do d.update({'r': []}) %}{% do d['r'].append(1) %}{% do d.setdefault('s', {}).update({'x': 2}) %}{{ d['r'] | join(',') }} {{ d['s']['x'] }}",
        );
        assert_eq!(env.render_str(&src, ()).unwrap(), "1 2");
    }
}
