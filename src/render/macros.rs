//! Project macros with dbt's semantics on top of minijinja.
//!
//! Each `{% macro name(args) %}…{% endmacro %}` block of a macro file becomes its own template
//! (`macro:<name>`) and a global callable `name`, so every model and macro can call it without
//! an import. Calling binds arguments (positional, keyword, defaults evaluated as Jinja
//! expressions, `varargs`/`kwargs`), hands the body the caller's model context, and supports
//! dbt's `return(x)`: `return` stores `x` in a thread-local slot and stops the body with a marker
//! error that the call turns back into the value. Macro files are parsed once per run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use crate::diagnostics::SourceFile;

/// The names a macro body sees from the model that called it.
pub const FORWARDED: &[&str] = &["__xform", "this", "model", "execute"];

const RETURN_MARKER: &str = "__xform_return__";

thread_local! {
    static RETURNED: RefCell<Option<Value>> = const { RefCell::new(None) };
}

/// `return(x)`: stop the current macro and make `x` its value.
pub fn return_value(value: Option<Value>) -> Result<Value, Error> {
    RETURNED.with(|r| *r.borrow_mut() = Some(value.unwrap_or(Value::from(()))));
    Err(Error::new(ErrorKind::InvalidOperation, RETURN_MARKER))
}

fn is_return(err: &Error) -> bool {
    err.detail() == Some(RETURN_MARKER)
}

/// One macro parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub default: Option<String>,
}

/// What kind of block defined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Macro,
    Test,
    Snapshot,
}

/// A macro found in a file.
#[derive(Debug, Clone)]
pub struct MacroDef {
    pub name: String,
    pub kind: BlockKind,
    pub params: Vec<Param>,
    pub body: String,
    pub file: SourceFile,
    /// Byte offset of the body in the file.
    pub body_offset: usize,
}

impl MacroDef {
    pub fn template_name(&self) -> String {
        match self.kind {
            BlockKind::Macro => format!("macro:{}", self.name),
            BlockKind::Test => format!("test:{}", self.name),
            BlockKind::Snapshot => format!("snapshot:{}", self.name),
        }
    }
}

/// A problem with a macro file's block structure.
#[derive(Debug)]
pub struct BlockError {
    pub offset: usize,
    pub message: String,
}

/// Find the `{% macro %}` and `{% test %}` blocks of a file.
pub fn extract(file: &SourceFile) -> Result<Vec<MacroDef>, BlockError> {
    let text = &*file.text;
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(found) = text[pos..].find("{%") {
        let start = pos + found;
        let Some(close) = text[start..].find("%}") else {
            return Err(BlockError {
                offset: start,
                message: "this tag is never closed with `%}`".to_string(),
            });
        };
        let tag_end = start + close + 2;
        let inner = text[start + 2..start + close]
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let (keyword, rest) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
        let kind = match keyword {
            "macro" => BlockKind::Macro,
            "test" => BlockKind::Test,
            "snapshot" => BlockKind::Snapshot,
            _ => {
                pos = tag_end;
                continue;
            }
        };
        let rest = rest.trim();
        let (name, params) = match rest.find('(') {
            Some(open) => {
                let Some(close_paren) = rest.rfind(')') else {
                    return Err(BlockError {
                        offset: start,
                        message: format!(
                            "the parameter list of `{keyword}` is not closed with `)`"
                        ),
                    });
                };
                (
                    rest[..open].trim(),
                    parse_params(&rest[open + 1..close_paren]),
                )
            }
            None => (rest, Vec::new()),
        };
        let end_word = format!("end{keyword}");
        let mut search = tag_end;
        let (end_start, end_tag_end) = loop {
            let Some(f) = text[search..].find("{%") else {
                return Err(BlockError {
                    offset: start,
                    message: format!("`{keyword} {name}` has no `{{% {end_word} %}}`"),
                });
            };
            let s = search + f;
            let Some(c) = text[s..].find("%}") else {
                return Err(BlockError {
                    offset: s,
                    message: "this tag is never closed with `%}`".to_string(),
                });
            };
            let word = text[s + 2..s + c]
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            if word == end_word {
                break (s, s + c + 2);
            }
            search = s + c + 2;
        };
        let mut body_start = tag_end;
        if text[start..tag_end].ends_with("-%}") {
            body_start +=
                text[body_start..end_start].len() - text[body_start..end_start].trim_start().len();
        }
        let mut body_end = end_start;
        if text[end_start..].starts_with("{%-") {
            body_end = body_start + text[body_start..end_start].trim_end().len();
        }
        out.push(MacroDef {
            name: name.to_string(),
            kind,
            params,
            body: text[body_start..body_end].to_string(),
            file: file.clone(),
            body_offset: body_start,
        });
        pos = end_tag_end;
    }
    Ok(out)
}

/// Split `a, b=1, c=[1, 2]` into parameters, respecting brackets and quotes.
fn parse_params(text: &str) -> Vec<Param> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut current = String::new();
    for ch in text.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(ch),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, d)) => Param {
                name: n.trim().to_string(),
                default: Some(d.trim().to_string()),
            },
            None => Param {
                name: p,
                default: None,
            },
        })
        .collect()
}

/// A project macro as a callable value.
#[derive(Debug)]
pub struct MacroObject {
    /// The name templates call it by (`test_<name>` for a test block).
    pub name: String,
    pub template: String,
    pub params: Vec<Param>,
    /// The body or a default mentions `execute`, `model` or another template: a call makes
    /// the caller's render depend on its pass.
    pub reads_run_state: bool,
}

impl MacroObject {
    pub fn new(def: &MacroDef) -> Self {
        let reads_run_state = super::reads_run_state(&def.body)
            || def
                .params
                .iter()
                .filter_map(|p| p.default.as_deref())
                .any(super::mentions_run_state);
        MacroObject {
            name: match def.kind {
                BlockKind::Test => format!("test_{}", def.name),
                _ => def.name.clone(),
            },
            template: def.template_name(),
            params: def.params.clone(),
            reads_run_state,
        }
    }

    /// Call the macro with arguments already split; `forwarded` is the caller's model context.
    pub fn invoke(
        &self,
        state: &State<'_, '_>,
        positional: &[Value],
        kwargs: &Kwargs,
        forwarded: BTreeMap<String, Value>,
    ) -> Result<Value, Error> {
        if self.reads_run_state
            && let Ok(render) = super::context::ctx(state)
        {
            render.mark_run_dependent();
        }
        let mut ctx = forwarded;
        let mut extra_positional = Vec::new();
        for (i, value) in positional.iter().enumerate() {
            match self.params.get(i) {
                Some(p) => {
                    ctx.insert(p.name.clone(), value.clone());
                }
                None => extra_positional.push(value.clone()),
            }
        }
        let mut extra_kwargs = BTreeMap::new();
        for key in kwargs.args() {
            if key == "caller" {
                continue;
            }
            let value: Value = kwargs.get(key)?;
            if self.params.iter().any(|p| p.name == key) {
                ctx.insert(key.to_string(), value);
            } else {
                extra_kwargs.insert(key.to_string(), value);
            }
        }
        for p in &self.params {
            if ctx.contains_key(&p.name) {
                continue;
            }
            let value = match &p.default {
                Some(expr) => {
                    let compiled = state.env().compile_expression(expr)?;
                    compiled.eval(Value::from(ctx.clone()))?
                }
                None => Value::UNDEFINED,
            };
            ctx.insert(p.name.clone(), value);
        }
        ctx.insert("varargs".to_string(), Value::from(extra_positional));
        ctx.insert("kwargs".to_string(), Value::from(extra_kwargs));
        let template = state.env().get_template(&self.template)?;
        let previous = RETURNED.with(|r| r.borrow_mut().take());
        let result = template.render(Value::from(ctx));
        let returned = RETURNED.with(|r| std::mem::replace(&mut *r.borrow_mut(), previous));
        match result {
            Ok(text) => Ok(Value::from_safe_string(text)),
            Err(e) if is_return(&e) => Ok(returned.unwrap_or(Value::from(()))),
            Err(e) => Err(e),
        }
    }
}

/// The caller's model context, to hand to a macro body.
pub fn forwarded(state: &State<'_, '_>) -> BTreeMap<String, Value> {
    FORWARDED
        .iter()
        .filter_map(|name| state.lookup(name).map(|v| ((*name).to_string(), v)))
        .collect()
}

impl Object for MacroObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        // A unit test's `overrides: macros:` replace the macro by a value.
        if let Some(value) = super::context::ctx(state)
            .ok()
            .and_then(|c| c.macro_overrides.get(&self.name).cloned())
        {
            return Ok(value);
        }
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let mut ctx = forwarded(state);
        if kwargs.has("caller") {
            // The caller body must run in the caller's own state, so run it now and hand the
            // macro a function that returns its text.
            let caller: Value = kwargs.get("caller")?;
            let text = caller.call(state, &[])?;
            let text = Value::from_safe_string(text.to_string());
            ctx.insert(
                "caller".to_string(),
                Value::from_function(move |_args: &[Value]| -> Result<Value, Error> {
                    Ok(text.clone())
                }),
            );
        }
        self.invoke(state, positional, &kwargs, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_blocks_with_params_and_whitespace_control() {
        let file = SourceFile::new(
            "macros/m.sql",
            "{% macro a(x, y=1, z=[1, 2]) -%}\n  body {{ x }}\n{%- endmacro %}\n\n{% test t(model, column_name) %}select 1{% endtest %}",
        );
        let defs = extract(&file).unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0].name, "a");
        assert_eq!(defs[0].body, "body {{ x }}");
        assert_eq!(
            &file.text[defs[0].body_offset..defs[0].body_offset + 4],
            "body"
        );
        assert_eq!(defs[0].params.len(), 3);
        assert_eq!(defs[0].params[2].default.as_deref(), Some("[1, 2]"));
        assert_eq!(defs[1].kind, BlockKind::Test);
    }

    #[test]
    fn unclosed_macro_is_an_error() {
        let file = SourceFile::new("m.sql", "{% macro a() %} x");
        assert!(extract(&file).is_err());
    }
}
