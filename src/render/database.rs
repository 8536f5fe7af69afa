//! What a template can ask the database: `run_query`, `statement` / `load_result` (with the
//! agate-like tables they return) and the `adapter` object (`get_relation`,
//! `get_columns_in_relation`, `quote`, `dispatch`, `type`). Every answer comes through the
//! `Introspect` handle of the render, and marks the render as depending on its pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{
    Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueOrKwargs, from_args,
};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::boundary::QueryTable;
use super::context::{ctx, invalid, json_to_value};
use super::macros::{MacroSet, local_package};
use crate::relation::{Quoting, Relation};

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
            "columns" => Some(Value::from_object(Columns(self.0.clone()))),
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

/// A result's `columns`, as agate's: a sequence of columns that is also looked up by name, with
/// `keys()`, `values()` and `items()`.
#[derive(Debug)]
struct Columns(Arc<QueryTable>);

impl Columns {
    fn column(&self, index: usize) -> Value {
        Value::from_object(ColumnValues {
            table: self.0.clone(),
            index,
        })
    }

    fn all(&self) -> Vec<Value> {
        (0..self.0.columns.len()).map(|i| self.column(i)).collect()
    }
}

impl Object for Columns {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_usize() {
            Some(i) if i < self.0.columns.len() => Some(self.column(i)),
            Some(_) => None,
            None => {
                let name = key.as_str()?;
                let i = self.0.columns.iter().position(|c| c == name)?;
                Some(self.column(i))
            }
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.all())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "keys" => Ok(Value::from(self.0.columns.clone())),
            "values" => Ok(Value::from(self.all())),
            "items" => Ok(Value::from(
                self.0
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Value::from(vec![Value::from(c.clone()), self.column(i)]))
                    .collect::<Vec<_>>(),
            )),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("columns have no method `{method}`"),
            )),
        }
    }
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

impl ColumnObject {
    /// The answer to `is_string()`, `is_integer()`, `is_float()`, `is_numeric()` or
    /// `is_number()`; `None` for another method.
    fn is(&self, method: &str) -> Option<bool> {
        const STRING: &[&str] = &[
            "VARCHAR",
            "TEXT",
            "STRING",
            "CHAR",
            "BPCHAR",
            "CHARACTER VARYING",
        ];
        const INTEGER: &[&str] = &[
            "INTEGER",
            "BIGINT",
            "SMALLINT",
            "TINYINT",
            "HUGEINT",
            "INT",
            "UBIGINT",
            "UINTEGER",
            "USMALLINT",
            "UTINYINT",
        ];
        const FLOAT: &[&str] = &["FLOAT", "DOUBLE", "REAL"];
        const NUMERIC: &[&str] = &["DECIMAL", "NUMERIC"];
        let base = self.base_type();
        let of = |types: &[&str]| types.contains(&base.as_str());
        Some(match method {
            "is_string" => of(STRING),
            "is_integer" => of(INTEGER),
            "is_float" => of(FLOAT),
            "is_numeric" => of(NUMERIC),
            "is_number" => of(INTEGER) || of(FLOAT) || of(NUMERIC),
            _ => return None,
        })
    }

    /// The type without its parameters, upper case: `VARCHAR(20)` → `VARCHAR`.
    fn base_type(&self) -> String {
        self.data_type
            .split('(')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase()
    }
}

impl Object for ColumnObject {
    /// dbt's `Column` methods that packages call (`is_string()`, `string_size()`…).
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        if let Some(answer) = self.is(method) {
            return Ok(Value::from(answer));
        }
        match method {
            "string_size" => {
                let size = self
                    .data_type
                    .split_once('(')
                    .and_then(|(_, rest)| rest.trim_end_matches(')').trim().parse::<i64>().ok());
                Ok(Value::from(size.unwrap_or(256)))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("column has no method `{method}`"),
            )),
        }
    }

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
pub struct AdapterObject {
    pub macros: Arc<MacroSet>,
    pub adapter_type: String,
    pub quoting: Quoting,
    /// How the target's warehouse spells the statements the adapter's methods run
    /// (`drop_relation`, `create_schema`…).
    pub dialect: &'static dyn crate::dialect::Dialect,
}

impl std::fmt::Debug for AdapterObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterObject")
            .field("adapter_type", &self.adapter_type)
            .finish_non_exhaustive()
    }
}

/// Run statements on the render's connection, when executing (in the parse pass the
/// adapter's methods that change the database do nothing, as in dbt).
fn run_statements(
    state: &State<'_, '_>,
    statements: &[crate::dialect::Statement],
) -> Result<(), Error> {
    let ctx = ctx(state)?;
    ctx.mark_run_dependent();
    if let (Some(db), true) = (&ctx.introspector, ctx.execute) {
        for s in statements {
            db.query(&s.sql).map_err(invalid)?;
        }
    }
    Ok(())
}

/// A relation argument's kind in the database, when executing.
fn kind_in_database(
    state: &State<'_, '_>,
    rel: &Relation,
) -> Result<Option<crate::relation::Kind>, Error> {
    let ctx = ctx(state)?;
    match (&ctx.introspector, ctx.execute) {
        (Some(db), true) => db.relation_kind(rel).map_err(invalid),
        _ => Ok(None),
    }
}

impl AdapterObject {
    fn relation(&self, value: &Value, method: &str) -> Result<Relation, Error> {
        relation_arg(value, self.quoting).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("adapter.{method} needs a relation, got `{value}`"),
            )
        })
    }
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
        external: None,
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
                let name = positional
                    .first()
                    .map(ToString::to_string)
                    .ok_or_else(|| invalid("adapter.dispatch() needs a macro name"))?;
                let namespace = match positional.get(1) {
                    Some(v) if !v.is_none() && !v.is_undefined() => Some(v.to_string()),
                    _ => kwargs.get::<Option<String>>("macro_namespace")?,
                };
                let _ = kwargs.get::<Option<Value>>("packages");
                if let Some((ns, member)) = name.split_once('.') {
                    return Err(invalid(format!(
                        "adapter.dispatch got the macro name `{name}`, but `.` is not part of a macro name; did you mean adapter.dispatch('{member}', macro_namespace='{ns}')?"
                    )));
                }
                let local = local_package(state);
                self.macros
                    .dispatch(&name, namespace.as_deref(), &self.adapter_type, local.as_deref())
                    .map(Value::from_dyn_object)
                    .map_err(|tried| {
                        invalid(format!(
                            "adapter.dispatch found no macro `{name}` in namespace `{}`; searched for {}",
                            namespace.as_deref().unwrap_or("(none)"),
                            tried.join(", ")
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
                    external: None,
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
            "drop_relation" => {
                let (rel,): (Value,) = from_args(args)?;
                let rel = self.relation(&rel, method)?;
                if let Some(kind) = kind_in_database(state, &rel)? {
                    let step = crate::materialize::Step::Drop {
                        relation: rel,
                        kind,
                    };
                    run_statements(state, &self.dialect.lower(&step))?;
                }
                Ok(Value::from(()))
            }
            "truncate_relation" => {
                let (rel,): (Value,) = from_args(args)?;
                let rel = self.relation(&rel, method)?;
                run_statements(state, &[self.dialect.truncate(&rel)])?;
                Ok(Value::from(()))
            }
            "rename_relation" => {
                let (from, to): (Value, Value) = from_args(args)?;
                let from = self.relation(&from, method)?;
                let to = self.relation(&to, method)?;
                if let Some(kind) = kind_in_database(state, &from)? {
                    run_statements(state, &[self.dialect.rename(&from, kind, &to.identifier)])?;
                }
                Ok(Value::from(()))
            }
            "create_schema" | "drop_schema" => {
                let (rel,): (Value,) = from_args(args)?;
                let rel = self.relation(&rel, method)?;
                let statements = if method == "create_schema" {
                    self.dialect.lower(&crate::materialize::Step::CreateSchema {
                        database: rel.database.clone(),
                        schema: rel.schema.clone(),
                    })
                } else {
                    vec![
                        self.dialect
                            .drop_schema(rel.database.as_deref(), &rel.schema),
                    ]
                };
                run_statements(state, &statements)?;
                Ok(Value::from(()))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("adapter has no method `{method}`"),
            )),
        }
    }
}

/// The `api` global: `api.Relation.create(database=, schema=, identifier=)` (a relation value,
/// as packages build them from names) and `api.Relation.add_ephemeral_prefix(name)`.
#[derive(Debug)]
pub struct ApiObject {
    pub quoting: Quoting,
}

impl Object for ApiObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "Relation" => Some(Value::from_object(RelationApi {
                quoting: self.quoting,
            })),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct RelationApi {
    quoting: Quoting,
}

impl Object for RelationApi {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let pick = |i: usize, k: &str| -> Result<Option<String>, Error> {
            Ok(match positional.get(i) {
                Some(v) if !v.is_none() => Some(v.to_string()),
                _ => kwargs
                    .get::<Option<Value>>(k)?
                    .filter(|v| !v.is_none() && !v.is_undefined())
                    .map(|v| v.to_string()),
            })
        };
        match method {
            "create" => {
                let relation = Relation {
                    database: pick(0, "database")?,
                    schema: pick(1, "schema")?.unwrap_or_default(),
                    identifier: pick(2, "identifier")?.unwrap_or_default(),
                    cte: false,
                    filter: None,
                    external: None,
                    quoting: self.quoting,
                };
                let _ = kwargs.get::<Option<Value>>("type");
                Ok(Value::from_object(relation))
            }
            "add_ephemeral_prefix" => Ok(Value::from(format!(
                "__dbt__cte__{}",
                pick(0, "name")?.unwrap_or_default()
            ))),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("api.Relation has no method `{method}`"),
            )),
        }
    }
}

/// `load_relation(relation)`: the relation when the database has it, else none (none while
/// parsing).
pub fn load_relation(state: &State<'_, '_>, relation: Value) -> Result<Value, Error> {
    let ctx = ctx(state)?;
    ctx.mark_run_dependent();
    let Some(quoting) = relation
        .downcast_object_ref::<Relation>()
        .map(|r| r.quoting)
    else {
        return Ok(Value::from(()));
    };
    let Some(rel) = relation_arg(&relation, quoting) else {
        return Ok(Value::from(()));
    };
    match (&ctx.introspector, ctx.execute) {
        (Some(db), true) => match db.relation_kind(&rel).map_err(invalid)? {
            Some(_) => Ok(Value::from_object(rel)),
            None => Ok(Value::from(())),
        },
        _ => Ok(Value::from(())),
    }
}
