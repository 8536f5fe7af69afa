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

use crate::project::blocks::{BlockKind, MacroDef, Param};

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
