//! Macros with dbt's semantics on top of minijinja.
//!
//! Each `{% macro name(args) %}…{% endmacro %}` block of a macro file becomes its own template
//! (`macro:<package>.<name>`) and a callable. Calling binds arguments (positional, keyword,
//! defaults evaluated as Jinja expressions, `varargs`/`kwargs`), hands the body the caller's
//! model context, and supports dbt's `return(x)`: `return` stores `x` in a thread-local slot and
//! stops the body with a marker error that the call turns back into the value. Macro files are
//! parsed once per run.
//!
//! Macros belong to a package: the root project, an installed package, or `dbt` (xform's own
//! versions of dbt's built-in macros). As in dbt, a name without a namespace finds the root
//! project's macro, then dbt's; `pkg.name` finds a package's; inside a package's macro its own
//! macros are found too (after those two). `adapter.dispatch` searches as dbt does
//! (`MacroSet::dispatch`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use crate::project::blocks::{BlockKind, MacroDef, Param};

/// The names a macro body sees from the model that called it.
pub const FORWARDED: &[&str] = &["__xform", "this", "model", "execute"];

/// The package of xform's versions of dbt's built-in macros.
pub const INTERNAL: &str = "dbt";

/// The name under which a macro body finds the package it belongs to.
pub const PACKAGE_VAR: &str = "__package";

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
    /// The package it belongs to (the root project, an installed package, or `dbt`).
    pub package: Arc<str>,
    pub template: String,
    pub params: Vec<Param>,
    /// The body or a default mentions `execute`, `model` or another template: a call makes
    /// the caller's render depend on its pass.
    pub reads_run_state: bool,
}

impl MacroObject {
    pub fn new(def: &MacroDef, package: &Arc<str>) -> Self {
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
            package: package.clone(),
            template: def.template_name(package),
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
                    super::mutable::mutable(compiled.eval(Value::from(ctx.clone()))?)
                }
                None => Value::UNDEFINED,
            };
            ctx.insert(p.name.clone(), value);
        }
        ctx.insert("varargs".to_string(), Value::from(extra_positional));
        ctx.insert("kwargs".to_string(), Value::from(extra_kwargs));
        let template = state.env().get_template(&self.template)?;
        // A package's macro also finds its own package's macros by their bare names.
        let scope = match state
            .lookup(SET_VAR)
            .as_ref()
            .and_then(Value::downcast_object::<MacroSet>)
        {
            Some(set) if set.is_package(&self.package) => {
                ctx.insert(PACKAGE_VAR.to_string(), Value::from(&*self.package));
                Value::from_object(PackageScope {
                    values: ctx,
                    set,
                    package: self.package.clone(),
                })
            }
            _ => Value::from(ctx),
        };
        let previous = RETURNED.with(|r| r.borrow_mut().take());
        let result = template.render(scope);
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
        // A unit test's `overrides: macros:` replace the macro by a value (`name`, or
        // `package.name` for a package's macro).
        if let Ok(c) = super::context::ctx(state) {
            let found = c.macro_overrides.get(&self.name).or_else(|| {
                c.macro_overrides
                    .get(&format!("{}.{}", self.package, self.name))
            });
            if let Some(value) = found {
                return Ok(value.clone());
            }
        }
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        // The template's own calls are its `depends_on.macros`; those inside are not.
        let render = super::context::ctx(state).ok();
        if let Some(r) = &render {
            r.record_macro(format!("macro.{}.{}", self.package, self.name));
            r.macro_depth
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let result = self.call_inner(state, positional, kwargs);
        if let Some(r) = &render {
            r.macro_depth
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
}

impl MacroObject {
    fn call_inner(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        positional: &[Value],
        kwargs: Kwargs,
    ) -> Result<Value, Error> {
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

/// The global under which every macro body finds the `MacroSet`.
pub const SET_VAR: &str = "__xform_macros";

/// Every macro of a run, by package, and how names and `adapter.dispatch` find them.
#[derive(Debug, Default)]
pub struct MacroSet {
    /// The root project's name.
    pub root: String,
    /// Each package's macros by name (`test_<name>` for a test block): the root project, the
    /// installed packages, and `dbt`.
    pub packages: BTreeMap<String, BTreeMap<String, Arc<MacroObject>>>,
    /// The root project's `dispatch:` search orders by macro namespace.
    pub dispatch: BTreeMap<String, Vec<String>>,
}

impl MacroSet {
    /// Whether `package` is an installed package (neither the root project nor `dbt`).
    pub fn is_package(&self, package: &str) -> bool {
        package != self.root && package != INTERNAL && self.packages.contains_key(package)
    }

    /// A macro of one package.
    pub fn get(&self, package: &str, name: &str) -> Option<&Arc<MacroObject>> {
        self.packages.get(package)?.get(name)
    }

    /// A macro called without a namespace: the root project's, then dbt's, then the calling
    /// package's own (`local`, for a package's macro). dbt looks in the package of the node
    /// being rendered first, which is always the root project here.
    pub fn flat(&self, name: &str, local: Option<&str>) -> Option<&Arc<MacroObject>> {
        self.get(&self.root, name)
            .or_else(|| self.get(INTERNAL, name))
            .or_else(|| local.and_then(|p| self.get(p, name)))
    }

    /// The macros called without a namespace anywhere: dbt's, with the root project's over them.
    pub fn globals(&self) -> BTreeMap<String, Arc<MacroObject>> {
        let mut all = self.packages.get(INTERNAL).cloned().unwrap_or_default();
        if let Some(root) = self.packages.get(&self.root) {
            all.extend(root.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        all
    }

    /// `adapter.dispatch(name, namespace)` as dbt resolves it: the packages of the namespace's
    /// `dispatch:` search order, or the root project then the namespace, or (no namespace, or
    /// one that is no package) every macro without a namespace; in each, `<adapter>__name` then
    /// `default__name`. On failure, the names searched.
    pub fn dispatch(
        &self,
        name: &str,
        namespace: Option<&str>,
        adapter_type: &str,
        local: Option<&str>,
    ) -> Result<Arc<MacroObject>, Vec<String>> {
        let search: Vec<Option<&str>> = match namespace {
            Some(ns) => match self.dispatch.get(ns) {
                Some(order) => order.iter().map(|p| Some(p.as_str())).collect(),
                None if self.packages.contains_key(ns) => vec![Some(self.root.as_str()), Some(ns)],
                None => vec![None],
            },
            None => vec![None],
        };
        let mut tried = Vec::new();
        for package in search {
            for prefix in [adapter_type, "default"] {
                let candidate = format!("{prefix}__{name}");
                let found = match package {
                    None => self.flat(&candidate, local),
                    Some(p) => self.get(p, &candidate),
                };
                if let Some(m) = found {
                    return Ok(m.clone());
                }
                tried.push(match package {
                    None => candidate,
                    Some(p) => format!("{p}.{candidate}"),
                });
            }
        }
        Err(tried)
    }
}

impl Object for MacroSet {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
}

/// The context of a package's macro body: its arguments and the caller's model context, then
/// the macros any template finds, then its own package's macros.
#[derive(Debug)]
struct PackageScope {
    values: BTreeMap<String, Value>,
    set: Arc<MacroSet>,
    package: Arc<str>,
}

impl Object for PackageScope {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if let Some(v) = self.values.get(key) {
            return Some(v.clone());
        }
        self.set
            .flat(key, Some(&self.package))
            .map(|m| Value::from_dyn_object(m.clone()))
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.values
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// A package's name as a value: `dbt_utils.star` is its macro `star`. The `dbt` namespace also
/// answers with the functions dbt defines as macros (`dbt.run_query`).
#[derive(Debug)]
pub struct Namespace {
    pub set: Arc<MacroSet>,
    pub package: String,
    pub functions: BTreeMap<&'static str, Value>,
}

impl Object for Namespace {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        match self.set.get(&self.package, key) {
            Some(m) => Some(Value::from_dyn_object(m.clone())),
            None => self.functions.get(key).cloned(),
        }
    }
}

/// The package of the macro whose body is rendering in `state`, if it is an installed package.
pub fn local_package(state: &State<'_, '_>) -> Option<String> {
    state
        .lookup(PACKAGE_VAR)
        .and_then(|v| v.as_str().map(String::from))
}
