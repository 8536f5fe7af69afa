//! What a template can call: `ref`, `source`, `config`, `var`, `env_var`, `is_incremental`,
//! `return`, `log`, `run_query`, `statement`/`load_result`, `adapter`, `exceptions`,
//! `modules.datetime`, `run_started_at` and the JSON/YAML helpers.
//!
//! Per-model state lives in `RenderCtx`, handed to the template as `__xform`; functions find it
//! through the template state, so one environment serves every model on every thread. Nothing
//! here touches the database directly: introspection goes through the `Introspect` trait that
//! the adapter implements.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use minijinja::value::{
    Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueOrKwargs, from_args,
};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::macros::{self, MacroObject};
use crate::project::NodeConfig;
use crate::relation::Quoting;
use crate::relation::{Column, Kind, Relation};

/// Resolves `ref()` and `source()` while compiling.
pub trait Resolve: Send + Sync {
    fn resolve_ref(&self, package: Option<&str>, name: &str) -> Option<Relation>;
    fn resolve_source(&self, source: &str, table: &str) -> Option<Relation>;
}

/// Rows returned by a query, in the shape dbt's agate tables are used in templates.
#[derive(Debug, Clone, Default)]
pub struct QueryTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Json>>,
}

/// The questions a template may ask the database while it is rendered for execution.
pub trait Introspect: Send + Sync {
    fn query(&self, sql: &str) -> Result<QueryTable, QueryError>;
    /// The relation's kind when it exists.
    fn relation_kind(&self, relation: &Relation) -> Result<Option<Kind>, QueryError>;
    /// The relation's columns, in order.
    fn columns(&self, relation: &Relation) -> Result<Vec<Column>, QueryError>;
}

/// An introspective question the database could not answer: its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub message: String,
}

impl From<QueryError> for String {
    fn from(e: QueryError) -> String {
        e.message
    }
}

/// A `ref()` call as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefCall {
    pub package: Option<String>,
    pub name: String,
}

/// A `ref()` or `source()` call and the relation it rendered as, so that a parse-pass render can
/// be checked against the relations the graph assigned before its text is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Ref {
        package: Option<String>,
        name: String,
        relation: Option<Relation>,
    },
    Source {
        source: String,
        table: String,
        relation: Option<Relation>,
    },
}

impl Resolved {
    /// Whether `resolver` gives the same relation for this call (and gives one at all).
    pub fn agrees_with(&self, resolver: &dyn Resolve) -> bool {
        let (seen, now) = match self {
            Resolved::Ref {
                package,
                name,
                relation,
            } => (relation, resolver.resolve_ref(package.as_deref(), name)),
            Resolved::Source {
                source,
                table,
                relation,
            } => (relation, resolver.resolve_source(source, table)),
        };
        seen.is_some() && *seen == now
    }
}

/// Per-render state of one model.
pub struct RenderCtx {
    pub unique_id: String,
    pub execute: bool,
    pub is_incremental: bool,
    pub config: Mutex<NodeConfig>,
    pub refs: Mutex<Vec<RefCall>>,
    pub sources: Mutex<Vec<(String, String)>>,
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
}

impl RenderCtx {
    pub fn mark_run_dependent(&self) {
        self.run_dependent.store(true, Ordering::Relaxed);
    }

    pub fn is_run_dependent(&self) -> bool {
        self.run_dependent.load(Ordering::Relaxed)
    }
}

/// Mark the render behind `state` as depending on the pass it runs in (see `RenderCtx`).
fn mark_run_dependent(state: &State<'_, '_>) {
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

fn invalid(msg: impl Into<String>) -> Error {
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

fn value_to_json(value: &Value) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// `ref('model')`, `ref('package', 'model')`, `ref('model', v=2)`.
pub fn ref_fn(state: &State<'_, '_>, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    let _ = kwargs.get::<Option<Value>>("v");
    let _ = kwargs.get::<Option<Value>>("version");
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
    let ctx = ctx(state)?;
    ctx.refs.lock().expect("refs lock").push(RefCall {
        package: package.clone(),
        name: name.clone(),
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
        if ctx.execute {
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

fn table_value(table: QueryTable) -> Value {
    Value::from_object(TableObject(Arc::new(table)))
}

/// `run_query(sql)`: the rows of a query, or none while parsing.
pub fn run_query(state: &State<'_, '_>, sql: Value) -> Result<Value, Error> {
    let ctx = ctx(state)?;
    ctx.mark_run_dependent();
    match (&ctx.introspector, ctx.execute) {
        (Some(db), true) => db.query(&sql.to_string()).map(table_value).map_err(invalid),
        _ => Ok(Value::from(())),
    }
}

/// `{% call statement('name', fetch_result=True) %}sql{% endcall %}`.
pub fn statement_fn(state: &mut State<'_, '_>, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    let name = positional
        .first()
        .map_or_else(|| "main".to_string(), ToString::to_string);
    let fetch = kwargs.get::<Option<bool>>("fetch_result")?.unwrap_or(false);
    let _ = kwargs.get::<Option<Value>>("auto_begin");
    let caller: Value = kwargs.get("caller")?;
    let sql = caller.call(state, &[])?.to_string();
    let ctx = ctx(state)?;
    ctx.mark_run_dependent();
    if let (Some(db), true) = (&ctx.introspector, ctx.execute) {
        let table = db.query(&sql).map_err(invalid)?;
        if fetch {
            ctx.statements
                .lock()
                .expect("statements lock")
                .insert(name, table);
        }
    }
    Ok(Value::from(""))
}

pub fn load_result(state: &State<'_, '_>, name: String) -> Result<Value, Error> {
    let ctx = ctx(state)?;
    ctx.mark_run_dependent();
    let found = ctx
        .statements
        .lock()
        .expect("statements lock")
        .get(&name)
        .cloned();
    Ok(found.map_or(Value::from(()), |t| {
        let data: Vec<Value> = t
            .rows
            .iter()
            .map(|r| Value::from(r.iter().map(json_to_value).collect::<Vec<_>>()))
            .collect();
        let mut map = BTreeMap::new();
        map.insert("table", table_value(t));
        map.insert("data", Value::from(data));
        Value::from(map)
    }))
}

/// A query result: iterates as rows; `.rows`, `.columns`, `.column_names`.
#[derive(Debug)]
struct TableObject(Arc<QueryTable>);

impl Object for TableObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return self.0.rows.get(i).map(|r| row_value(r));
        }
        match key.as_str()? {
            "rows" => Some(Value::from(
                self.0.rows.iter().map(|r| row_value(r)).collect::<Vec<_>>(),
            )),
            "column_names" => Some(Value::from(self.0.columns.clone())),
            "columns" => Some(Value::from(
                (0..self.0.columns.len())
                    .map(|i| {
                        Value::from_object(ColumnValues {
                            table: self.0.clone(),
                            index: i,
                        })
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let rows: Vec<Value> = self.0.rows.iter().map(|r| row_value(r)).collect();
        Enumerator::Values(rows)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "print_table" => Ok(Value::from(())),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("table has no method `{method}`"),
            )),
        }
    }
}

fn row_value(row: &[Json]) -> Value {
    Value::from(row.iter().map(json_to_value).collect::<Vec<_>>())
}

#[derive(Debug)]
struct ColumnValues {
    table: Arc<QueryTable>,
    index: usize,
}

impl Object for ColumnValues {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" => Some(Value::from(self.table.columns[self.index].clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "values" => Ok(Value::from(
                self.table
                    .rows
                    .iter()
                    .map(|r| r.get(self.index).map_or(Value::from(()), json_to_value))
                    .collect::<Vec<_>>(),
            )),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("column has no method `{method}`"),
            )),
        }
    }
}

/// A column of `adapter.get_columns_in_relation()`.
#[derive(Debug)]
struct ColumnObject {
    name: String,
    data_type: String,
    quoting: Quoting,
}

impl Object for ColumnObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" | "column" => Some(Value::from(self.name.clone())),
            "data_type" | "dtype" => Some(Value::from(self.data_type.clone())),
            "quoted" => Some(Value::from(self.quoting.quote(&self.name))),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["name", "data_type"])
    }
}

/// The `adapter` global.
#[derive(Debug)]
pub struct AdapterObject {
    pub macros: Arc<BTreeMap<String, Arc<MacroObject>>>,
    pub adapter_type: String,
    pub quoting: Quoting,
}

fn relation_arg(value: &Value, quoting: Quoting) -> Option<Relation> {
    if let Some(rel) = value.downcast_object_ref::<Relation>() {
        return Some(rel.clone());
    }
    let get = |k: &str| {
        value
            .get_attr(k)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
    };
    Some(Relation {
        database: get("database"),
        schema: get("schema")?,
        identifier: get("identifier")?,
        cte: false,
        filter: None,
        quoting,
    })
}

impl Object for AdapterObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "type" => Some(Value::from(self.adapter_type.clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "dispatch" => {
                let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
                let _ = kwargs.get::<Option<Value>>("macro_namespace");
                let name = positional
                    .first()
                    .map(ToString::to_string)
                    .ok_or_else(|| invalid("adapter.dispatch() needs a macro name"))?;
                let candidates = [
                    format!("{}__{name}", self.adapter_type),
                    format!("default__{name}"),
                    name.clone(),
                ];
                candidates
                    .iter()
                    .find_map(|c| self.macros.get(c))
                    .map(|m| Value::from_dyn_object(m.clone()))
                    .ok_or_else(|| {
                        invalid(format!(
                            "adapter.dispatch('{name}') found no macro `{}__{name}` or `default__{name}`",
                            self.adapter_type
                        ))
                    })
            }
            "get_relation" => {
                let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
                let pick = |i: usize, k: &str| -> Option<String> {
                    positional
                        .get(i)
                        .map(ToString::to_string)
                        .or_else(|| kwargs.get::<Option<String>>(k).ok().flatten())
                };
                let rel = Relation {
                    database: pick(0, "database"),
                    schema: pick(1, "schema").unwrap_or_default(),
                    identifier: pick(2, "identifier").unwrap_or_default(),
                    cte: false,
                    filter: None,
                    quoting: self.quoting,
                };
                let ctx = ctx(state)?;
                ctx.mark_run_dependent();
                match (&ctx.introspector, ctx.execute) {
                    (Some(db), true) => match db.relation_kind(&rel).map_err(invalid)? {
                        Some(_) => Ok(Value::from_object(rel)),
                        None => Ok(Value::from(())),
                    },
                    _ => Ok(Value::from(())),
                }
            }
            "get_columns_in_relation" => {
                let (rel,): (Value,) = from_args(args)?;
                let ctx = ctx(state)?;
                ctx.mark_run_dependent();
                let Some(rel) = relation_arg(&rel, self.quoting) else {
                    return Ok(Value::from(Vec::<Value>::new()));
                };
                match (&ctx.introspector, ctx.execute) {
                    (Some(db), true) => Ok(Value::from(
                        db.columns(&rel)
                            .map_err(invalid)?
                            .into_iter()
                            .map(|c| {
                                Value::from_object(ColumnObject {
                                    name: c.name,
                                    data_type: c.data_type,
                                    quoting: self.quoting,
                                })
                            })
                            .collect::<Vec<_>>(),
                    )),
                    _ => Ok(Value::from(Vec::<Value>::new())),
                }
            }
            "quote" => {
                let (ident,): (String,) = from_args(args)?;
                Ok(Value::from(self.quoting.quote(&ident)))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("adapter has no method `{method}`"),
            )),
        }
    }
}

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

/// Any serializable value as a template value.
pub fn to_value<T: serde::Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}
