//! What a template can call about its own model: `ref`, `source`, `config`, `var`, `env_var`,
//! `is_incremental`, `return`, `log` and `print`, and the per-model state behind them.
//!
//! Per-model state lives in `RenderCtx`, handed to the template as `__xform`; functions find it
//! through the template state, so one environment serves every model on every thread. The
//! database's functions are in `database.rs`, `exceptions`, `modules` and the JSON/YAML helpers
//! in `modules.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Object, ObjectRepr, Rest, Value, ValueOrKwargs, from_args};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::boundary::{Introspect, QueryTable, RefCall, Resolve, Resolved};
use super::macros;
use crate::project::NodeConfig;
use crate::relation::Relation;

/// Per-render state of one model.
pub struct RenderCtx {
    pub unique_id: String,
    pub execute: bool,
    pub is_incremental: bool,
    pub config: Mutex<NodeConfig>,
    pub refs: Mutex<Vec<RefCall>>,
    pub sources: Mutex<Vec<(String, String)>>,
    /// The macros the template calls itself (not those called by macros), as unique ids.
    pub macros: Mutex<Vec<String>>,
    /// How deep in macro calls the render is: a call at depth 0 is the template's own.
    pub macro_depth: std::sync::atomic::AtomicUsize,
    pub resolver: Arc<dyn Resolve>,
    pub vars: Arc<BTreeMap<String, Json>>,
    pub introspector: Option<Arc<dyn Introspect>>,
    pub statements: Mutex<BTreeMap<String, QueryTable>>,
    pub logs: Mutex<Vec<String>>,
    /// A unit test's `overrides:`: environment variables and macros (by name) replaced by values.
    pub env_overrides: BTreeMap<String, String>,
    pub macro_overrides: BTreeMap<String, Value>,
    /// Every `ref()` and `source()` call with the relation it returned.
    pub resolved: Mutex<Vec<Resolved>>,
    /// Set when the render called something whose result differs between the parse pass and
    /// the compile pass (`config.get`, introspection, `log`, a macro that reads `execute` or
    /// `model`…): its text must then not stand in for the compile pass's.
    pub run_dependent: AtomicBool,
    /// `config()` records even with `execute` true: a generic test's block is rendered once,
    /// at execution, and its `config(fail_calc=...)` calls configure the test.
    pub records_config: bool,
}

impl RenderCtx {
    /// Record a macro call of the template itself (`depends_on.macros`).
    pub fn record_macro(&self, id: String) {
        if self.macro_depth.load(Ordering::Relaxed) == 0 {
            let mut macros = self.macros.lock().expect("macros lock");
            if !macros.contains(&id) {
                macros.push(id);
            }
        }
    }

    pub fn mark_run_dependent(&self) {
        self.run_dependent.store(true, Ordering::Relaxed);
    }

    pub fn is_run_dependent(&self) -> bool {
        self.run_dependent.load(Ordering::Relaxed)
    }
}

/// Mark the render behind `state` as depending on the pass it runs in (see `RenderCtx`).
pub(super) fn mark_run_dependent(state: &State<'_, '_>) {
    if let Ok(ctx) = ctx(state) {
        ctx.mark_run_dependent();
    }
}

impl fmt::Debug for RenderCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderCtx")
            .field("unique_id", &self.unique_id)
            .finish_non_exhaustive()
    }
}

impl Object for RenderCtx {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
}

pub(super) fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

pub fn ctx(state: &State<'_, '_>) -> Result<Arc<RenderCtx>, Error> {
    state
        .lookup("__xform")
        .and_then(|v| v.downcast_object::<RenderCtx>())
        .ok_or_else(|| invalid("this function is only available while rendering a model"))
}

pub fn json_to_value(json: &Json) -> Value {
    crate::render::context::to_value(json)
}

pub(super) fn value_to_json(value: &Value) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// `ref('model')`, `ref('package', 'model')`, `ref('model', v=2)`.
pub fn ref_fn(state: &State<'_, '_>, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    let version = match kwargs.get::<Option<Value>>("v")? {
        Some(v) if !v.is_none() => Some(v),
        _ => kwargs
            .get::<Option<Value>>("version")?
            .filter(|v| !v.is_none()),
    };
    let strings: Vec<String> = positional.iter().map(ToString::to_string).collect();
    let (package, name) = match strings.as_slice() {
        [name] => (None, name.clone()),
        [package, name] => (Some(package.clone()), name.clone()),
        _ => {
            return Err(invalid(
                "ref() takes a model name, or a package and a model name",
            ));
        }
    };
    // A version of a versioned model is found by `<name>_v<version>`.
    let version = version.map(|v| v.to_string());
    let name = match &version {
        Some(v) => crate::project::version_key(&name, v),
        None => name,
    };
    let ctx = ctx(state)?;
    ctx.refs.lock().expect("refs lock").push(RefCall {
        package: package.clone(),
        name: name.clone(),
        version,
    });
    let relation = ctx.resolver.resolve_ref(package.as_deref(), &name);
    ctx.resolved
        .lock()
        .expect("resolved lock")
        .push(Resolved::Ref {
            package,
            name: name.clone(),
            relation: relation.clone(),
        });
    match relation {
        Some(rel) => Ok(Value::from_object(rel)),
        None if !ctx.execute => Ok(Value::from_object(Relation::new(None, "main", &name))),
        None => Err(invalid(format!(
            "ref('{name}') does not name a model, seed or snapshot"
        ))),
    }
}

/// `source('source_name', 'table_name')`.
pub fn source_fn(state: &State<'_, '_>, source: String, table: String) -> Result<Value, Error> {
    let ctx = ctx(state)?;
    ctx.sources
        .lock()
        .expect("sources lock")
        .push((source.clone(), table.clone()));
    let relation = ctx.resolver.resolve_source(&source, &table);
    ctx.resolved
        .lock()
        .expect("resolved lock")
        .push(Resolved::Source {
            source: source.clone(),
            table: table.clone(),
            relation: relation.clone(),
        });
    match relation {
        Some(rel) => Ok(Value::from_object(rel)),
        None if !ctx.execute => Ok(Value::from_object(Relation::new(None, &source, &table))),
        None => Err(invalid(format!(
            "source('{source}', '{table}') is not defined"
        ))),
    }
}

/// `config(...)` as a call, and `config.get` / `config.require` as methods.
#[derive(Debug)]
pub struct ConfigObject;

impl Object for ConfigObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let ctx = ctx(state)?;
        if ctx.execute && !ctx.records_config {
            return Ok(Value::from(""));
        }
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let mut config = ctx.config.lock().expect("config lock");
        if let Some(map) = positional.first() {
            for key in map.try_iter()? {
                let value = map.get_item(&key)?;
                config.set(&key.to_string(), value_to_json(&value));
            }
        }
        for key in kwargs.args() {
            let value: Value = kwargs.get(key)?;
            config.set(key, value_to_json(&value));
        }
        Ok(Value::from(""))
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let ctx = ctx(state)?;
        // The parse pass sees the config gathered so far, the compile pass the final one.
        ctx.mark_run_dependent();
        let (key, default): (String, Option<Value>) = from_args(args)?;
        let config = ctx.config.lock().expect("config lock");
        let found = config.get(&key).map(json_to_value);
        match method {
            "get" => Ok(found.or(default).unwrap_or(Value::from(()))),
            "require" => {
                found.ok_or_else(|| invalid(format!("config `{key}` is required but not set")))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("config has no method `{method}`"),
            )),
        }
    }
}

/// `var('name')` / `var('name', default)`.
pub fn var_fn(state: &State<'_, '_>, name: String, default: Option<Value>) -> Result<Value, Error> {
    let ctx = ctx(state)?;
    match ctx.vars.get(&name) {
        Some(v) => Ok(json_to_value(v)),
        None => default.ok_or_else(|| invalid(format!("required var `{name}` is not set"))),
    }
}

/// `env_var('NAME')` / `env_var('NAME', default)`; a unit test may override the variable.
pub fn env_var_fn(
    state: &State<'_, '_>,
    name: String,
    default: Option<Value>,
) -> Result<Value, Error> {
    // dbt keeps secrets to the files that configure connections: a model that reads one would
    // put its value into compiled SQL, the manifest and the warehouse.
    if name.starts_with(crate::env::SECRET_PREFIX) {
        return Err(invalid(format!(
            "secret environment variable `{name}` can be read only in profiles.yml and packages.yml"
        )));
    }
    if let Some(v) = ctx(state)
        .ok()
        .and_then(|c| c.env_overrides.get(&name).cloned())
    {
        return Ok(Value::from(v));
    }
    crate::env::env_var(name, default)
}

pub fn is_incremental(state: &State<'_, '_>) -> Result<bool, Error> {
    let ctx = ctx(state)?;
    // A macro in dbt, which its manifest lists among the node's macros.
    ctx.record_macro("macro.dbt.is_incremental".to_string());
    Ok(ctx.execute && ctx.is_incremental)
}

/// `log(msg)` / `log(msg, info=True)`: info messages are shown when the model is compiled.
pub fn log_fn(state: &State<'_, '_>, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (msg, info, kwargs): (Value, Option<bool>, Kwargs) = from_args(&args)?;
    let info = info
        .or(kwargs.get::<Option<bool>>("info")?)
        .unwrap_or(false);
    if info {
        // Shown only when the compile pass renders: a reused parse-pass text would lose it.
        mark_run_dependent(state);
    }
    if info
        && let Ok(ctx) = ctx(state)
        && ctx.execute
    {
        ctx.logs.lock().expect("logs lock").push(msg.to_string());
    }
    Ok(Value::from(""))
}

pub fn print_fn(state: &State<'_, '_>, msg: Value) -> Value {
    mark_run_dependent(state);
    if let Ok(ctx) = ctx(state)
        && ctx.execute
    {
        ctx.logs.lock().expect("logs lock").push(msg.to_string());
    }
    Value::from("")
}

pub fn return_fn(value: Option<Value>) -> Result<Value, Error> {
    macros::return_value(value)
}

/// Any serializable value as a template value.
pub fn to_value<T: serde::Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// `should_store_failures()`: whether the test being rendered keeps its failing rows
/// (`store_failures`, or `store_failures_as: table | view`).
pub fn should_store_failures(state: &State<'_, '_>) -> Result<Value, Error> {
    let ctx = ctx(state)?;
    let config = ctx.config.lock().expect("config lock");
    let stored = match config.str("store_failures_as") {
        Some(kind) => kind == "table" || kind == "view",
        None => config
            .get("store_failures")
            .and_then(Json::as_bool)
            .unwrap_or(false),
    };
    Ok(Value::from(stored))
}

/// The `graph` global: the project's nodes and sources as dbt's manifest describes them
/// (`graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')`), once the
/// compile stage provides them; empty maps before (dbt's parse pass).
#[derive(Debug)]
pub struct GraphObject(pub Arc<std::sync::OnceLock<Value>>);

impl Object for GraphObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.0.get() {
            Some(graph) => graph.get_item(key).ok().filter(|v| !v.is_undefined()),
            None => matches!(
                key.as_str(),
                Some(
                    "nodes"
                        | "sources"
                        | "exposures"
                        | "metrics"
                        | "groups"
                        | "semantic_models"
                        | "saved_queries"
                )
            )
            .then(|| Value::from(BTreeMap::<String, Value>::new())),
        }
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&[
            "nodes",
            "sources",
            "exposures",
            "metrics",
            "groups",
            "semantic_models",
            "saved_queries",
        ])
    }
}
