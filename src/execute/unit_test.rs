//! Running one unit test, for `xform test` and `xform build`.
//!
//! A unit test never touches the project's database. It opens two in-memory DuckDB databases
//! that carry the same catalog names as the target (`attach ':memory:' as shop`), so every
//! relation keeps the name the compiled SQL uses:
//!
//! 1. the *shape* database learns the columns and types of each input: seeds are loaded from
//!    their CSV files, sources are created from their declared columns, and models and
//!    snapshots are built from their real plans on top of empty parents. A source without typed
//!    columns takes the columns its relation has in the project's database (a catalog read,
//!    as dbt does for every input); failing that, an input has just the columns given;
//! 2. the *test* database holds the given rows, typed like their input (a column not given is
//!    null), with seeds that are not given loaded from their files. The model is rendered with
//!    the test's overrides, every `ref()`/`source()` resolving to those tables, and run:
//!    `expect` compares the rows its query returns; `expect_table` (xform) runs the model's
//!    materialization (an incremental step, a snapshot) on top of the given `this` and
//!    compares the table it leaves.
//!
//! The comparison ignores row order and covers the expected columns only; expected values are
//! cast to the types of the actual columns. A difference prints both sides as a diff table.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value as Json;

use super::node_plan;
use crate::adapter::{Adapter, Connection, DbError};
use crate::artifacts::{Status, sql_path, write_file};
use crate::compile::Compiler;
use crate::compile::unit_tests::{TableResolver, render_unit};
use crate::config::{Session, Target};
use crate::diagnostics::{Code, Problem};
use crate::dialect::{Dialect, Statement};
use crate::graph::{Graph, Materialization, Node, ResourceType};
use crate::materialize::unit_test::{pairs, value_sql, with_ctes};
use crate::materialize::{Column, Kind, Plan, Step, plan};
use crate::project::TestTarget;
use crate::project::unit_tests::{Input, Rows, UnitTestDef};
use crate::render::{QueryTable, Relation, spans};

/// How many rows of a diff a report shows.
const DIFF_ROWS: usize = 40;

/// What a unit test run found.
pub struct UnitOutcome {
    pub status: Status,
    /// Rows that differ (missing plus unexpected).
    pub failures: i64,
    pub sql: String,
    pub message: String,
    pub problem: Option<Problem>,
}

/// A scratch database named like the target's catalogs.
struct Db {
    warehouse: Arc<dyn Adapter>,
    worker: Arc<dyn Connection>,
    dialect: &'static dyn Dialect,
}

impl Db {
    fn open(project: &dyn Adapter, target: &Target, graph: &Graph) -> Result<Db, Problem> {
        let databases: BTreeSet<String> = graph
            .nodes
            .iter()
            .filter_map(|n| n.relation.database.clone())
            .filter(|d| !d.is_empty())
            .map(|d| d.to_lowercase())
            .collect();
        let crate::adapter::Scratch {
            adapter: warehouse,
            connection: worker,
        } = project.scratch(target, &databases)?;
        super::cancel_with(warehouse.interrupter());
        Ok(Db {
            warehouse,
            worker,
            dialect: crate::dialect::of(target),
        })
    }

    fn run(&self, statements: &[Statement]) -> Result<(), DbError> {
        self.worker.run(statements).map(|_| ())
    }

    fn create_schema(&self, relation: &Relation) -> Result<(), DbError> {
        self.run(&self.dialect.lower(&Step::CreateSchema {
            database: relation.database.clone(),
            schema: relation.schema.clone(),
        }))
    }

    /// A table of the test's own, in the scratch database's default schema, named as its
    /// dialect quotes names.
    fn relation(&self, name: &str) -> Relation {
        Relation {
            quoting: self.dialect.quoting(),
            ..Relation::new(Some(self.warehouse.database()), "main", name)
        }
    }

    /// The statements of a plan, in this database's dialect.
    fn statements(&self, plan: &Plan) -> Vec<Statement> {
        crate::dialect::lower(self.dialect, &plan.steps).statements
    }

    fn columns(&self, relation: &Relation) -> Option<Vec<Column>> {
        self.worker
            .relation_columns(relation)
            .ok()
            .filter(|c| !c.is_empty())
    }
}

/// Column lists of nodes, learnt by building them empty in the shape database. A source
/// without typed columns (or a model built on one) takes the columns its relation has in the
/// project's database, read from the catalog only; `None` when that does not have it either.
struct Shapes<'a> {
    graph: &'a Graph,
    compiler: &'a Compiler<'a>,
    resolver: Arc<TableResolver>,
    db: &'a Db,
    project: &'a dyn Connection,
    known: &'a mut HashMap<usize, Vec<Column>>,
    /// The unit test and its model: the model is rendered with the test's overrides (and its
    /// shape is not shared with other unit tests).
    unit: &'a UnitTestDef,
    tested: usize,
    /// Why a shape could not be learnt, the first time it happened.
    why: Option<String>,
}

/// The shape database and what it has learnt, shared by the unit tests of one run so that
/// each ancestor is built once. An unknown shape is not remembered: a later unit test in the
/// same build may find the relation in the project's database.
#[derive(Default)]
pub struct ShapeCache {
    db: Option<Db>,
    known: HashMap<usize, Vec<Column>>,
}

impl Shapes<'_> {
    fn of(&mut self, i: usize) -> Option<Vec<Column>> {
        if let Some(k) = self.known.get(&i) {
            return Some(k.clone());
        }
        if super::cancelled() {
            return None;
        }
        let shape = self.build(i)?;
        if i != self.tested {
            self.known.insert(i, shape.clone());
        }
        Some(shape)
    }

    /// Keep the first reason a shape is unknown, for the report.
    fn note<T, E: std::fmt::Display>(&mut self, what: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if self.why.is_none() {
                    let text = e.to_string();
                    self.why = Some(format!("{what}: {}", text.lines().next().unwrap_or(&text)));
                }
                None
            }
        }
    }

    fn build(&mut self, i: usize) -> Option<Vec<Column>> {
        let node = &self.graph.nodes[i];
        let created = self.db.create_schema(&node.relation).map_err(|e| e.message);
        self.note("cannot create a schema", created)?;
        if let Some(columns) = self.derive(i) {
            return Some(columns);
        }
        // As the project's database has it: an empty copy, for the nodes built on it.
        let columns = self
            .project
            .relation_columns(&node.relation)
            .ok()
            .filter(|c| !c.is_empty())?;
        let kind = self.db.worker.relation_kind(&node.relation).ok().flatten();
        let dialect = self.db.dialect;
        let mut statements = Vec::new();
        if let Some(kind) = kind {
            statements.push(dialect.drop(&node.relation, kind));
        }
        statements.push(dialect.create_table(&node.relation, &columns));
        let copied = self.db.run(&statements).map_err(|e| e.message);
        self.note(
            &format!("cannot copy the columns of `{}`", node.name),
            copied,
        )?;
        Some(columns)
    }

    /// The columns of a node built from what the project declares, without its database.
    fn derive(&mut self, i: usize) -> Option<Vec<Column>> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        match node.resource_type {
            ResourceType::Seed => {
                let loaded = load_seed(self.db, node).map_err(|e| e.message);
                self.note(&format!("cannot load the seed `{}`", node.name), loaded)?;
            }
            ResourceType::Source => {
                let label = node.source().map_or_else(
                    || node.name.clone(),
                    |s| format!("{}.{}", s.source_name, s.name),
                );
                let columns: Option<Vec<Column>> = node
                    .columns
                    .iter()
                    .map(|c| {
                        c.data_type.as_ref().map(|t| Column {
                            name: c.name.clone(),
                            data_type: t.clone(),
                        })
                    })
                    .collect();
                let columns = match columns {
                    Some(c) if !c.is_empty() => c,
                    _ => {
                        let missing: Result<(), String> = Err(
                            "declare its columns, each with a `data_type`, to type the rows given for it".to_string(),
                        );
                        return self.note(
                            &format!("the source `{label}` has no typed columns"),
                            missing.map(|()| Vec::new()),
                        );
                    }
                };
                let created = self
                    .db
                    .run(&[self.db.dialect.create_table(&node.relation, &columns)])
                    .map_err(|e| e.message);
                self.note(
                    &format!("the columns declared for the source `{label}` do not make a table"),
                    created,
                )?;
            }
            ResourceType::Model | ResourceType::Snapshot => {
                for p in graph.parents(i) {
                    self.of(p)?;
                }
                let unit = (i == self.tested).then_some(self.unit);
                let rendered = render_unit(
                    self.compiler,
                    node,
                    self.resolver.clone(),
                    Some(self.db.worker.clone()),
                    node.relation.clone(),
                    false,
                    unit,
                )
                .map_err(|p| p.message);
                let sql = self.note(&format!("cannot render `{}`", node.name), rendered)?;
                let built = if node.is_ephemeral() {
                    self.db
                        .run(&[self.db.dialect.create_empty_table_as(&node.relation, &sql)])
                        .map_err(|e| e.message)
                } else {
                    node_plan(
                        node,
                        &sql,
                        &*self.db.warehouse,
                        &*self.db.worker,
                        self.db.dialect,
                        false,
                        &|_, e| Problem::new(Code::Database, e.message.clone()),
                    )
                    .map_err(|p| p.message)
                    .and_then(|plan| {
                        self.db
                            .run(&self.db.statements(&plan))
                            .map_err(|e| e.message)?;
                        self.db.warehouse.record(&node.relation, plan.result);
                        Ok(())
                    })
                };
                self.note(&format!("cannot build `{}` empty", node.name), built)?;
            }
            ResourceType::Test | ResourceType::UnitTest | ResourceType::Analysis => return None,
        }
        self.db.columns(&node.relation)
    }
}

/// Load a seed's CSV file into `db` with its configured types, as a build would.
fn load_seed(db: &Db, node: &Node) -> Result<(), DbError> {
    let plan = plan(node, "", &*db.warehouse).map_err(|p| DbError::other(p.message))?;
    db.run(&db.statements(&plan))?;
    db.warehouse.record(&node.relation, plan.result);
    Ok(())
}

/// Why a unit test's input or expected rows could not be made into a table.
#[derive(Debug, thiserror::Error)]
enum RowsError {
    #[error("`{column}` is not a column of {what} (its columns: {columns})")]
    NotAColumn {
        column: String,
        what: String,
        columns: String,
    },
    #[error("the columns of {0} are not known, so its rows cannot be empty")]
    NoColumns(String),
    #[error("{0}")]
    Database(#[from] DbError),
}

/// Create `relation` holding `rows`. With a known shape the table has every column of it, typed,
/// and columns the rows do not give are null; without one, its columns are those given.
fn create_rows(
    db: &Db,
    relation: &Relation,
    shape: Option<&[Column]>,
    rows: &Rows,
    what: &str,
) -> Result<(), RowsError> {
    db.create_schema(relation)?;
    let dialect = db.dialect;
    let given = rows.columns();
    let values = |types: &dyn Fn(&str) -> Option<String>| -> Option<String> {
        let rows = pairs(rows);
        if rows.is_empty() {
            return None;
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                given
                    .iter()
                    .map(|c| {
                        let v = row
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(c))
                            .map_or(&Json::Null, |(_, v)| v);
                        value_sql(dialect, v, types(c).as_deref())
                    })
                    .collect()
            })
            .collect();
        Some(dialect.values(&given, &cells))
    };
    let statements = if let Some(shape) = shape {
        if let Some(stray) = given
            .iter()
            .find(|c| !shape.iter().any(|s| s.name.eq_ignore_ascii_case(c)))
        {
            let names: Vec<&str> = shape.iter().map(|c| c.name.as_str()).collect();
            return Err(RowsError::NotAColumn {
                column: stray.clone(),
                what: what.to_string(),
                columns: names.join(", "),
            });
        }
        let mut statements = vec![dialect.create_table(relation, shape)];
        let type_of = |name: &str| {
            shape
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(name))
                .map(|s| s.data_type.clone())
        };
        let select = match rows {
            Rows::Sql(sql) if !sql.trim().is_empty() => {
                Some(format!("select * from (\n{}\n) as given", sql.trim()))
            }
            Rows::Sql(_) => None,
            _ => values(&type_of),
        };
        if let Some(select) = select {
            statements.push(dialect.insert_by_name(relation, &select));
        }
        statements
    } else {
        let select = match rows {
            Rows::Sql(sql) if !sql.trim().is_empty() => {
                format!("select * from (\n{}\n) as given", sql.trim())
            }
            _ => values(&|_| None).ok_or_else(|| RowsError::NoColumns(what.to_string()))?,
        };
        vec![dialect.create_table_as(relation, &select)]
    };
    Ok(db.run(&statements)?)
}

/// A unit-test problem pointing at the test's YAML entry.
pub(super) fn unit_problem(unit: &UnitTestDef, message: String, help: String) -> Problem {
    Problem::new(Code::UnitTest, message)
        .at(&unit.file, unit.offset, unit.name.len(), "this unit test")
        .help(help)
}

/// A database error while running the tested model, pointed at the model's line.
/// `untyped` lists the inputs whose columns could not be learnt (they have just the columns
/// given), which is the usual reason a column is missing.
pub(super) fn model_problem(
    dialect: &dyn Dialect,
    unit: &UnitTestDef,
    model: &Node,
    sql: &str,
    body_line: usize,
    e: &DbError,
    untyped: &[String],
) -> Problem {
    // A unique-key check that found repeated keys in the given rows (the one check a plan runs).
    let message = match &e.failure {
        crate::adapter::Failure::Check { values, total } => format!(
            "duplicate unique_key values: {}",
            crate::adapter::Failure::listed(values, *total)
        ),
        _ => e.message.clone(),
    };
    let first = message.lines().next().unwrap_or(&message);
    let mut p = Problem::new(
        Code::Database,
        format!(
            "unit test `{}`: the model `{}` failed on the given rows: {first}",
            unit.name, model.name
        ),
    );
    if let Some(file) = &model.file {
        p = match e.line {
            Some(line) if line >= body_line => {
                let at = spans::template_line(&file.text, sql, line - body_line + 1);
                p.at_line(file, at, format!("{} points here", dialect.name()))
            }
            _ => p.at(file, 0, 0, "in this model"),
        };
    }
    let mut help = format!(
        "{} says: {}\nthe unit test is in {}; a column the model reads but the test does not give is null",
        dialect.name(),
        message.trim(),
        unit.path
    );
    for u in untyped {
        help.push('\n');
        help.push_str(u);
    }
    p.help(help)
}

/// The diff as a text table: `-` expected but missing, `+` returned but not expected.
fn diff_table(t: &QueryTable) -> String {
    let rows: Vec<Vec<String>> = t
        .rows
        .iter()
        .take(DIFF_ROWS)
        .map(|r| r.iter().map(super::data_test::cell).collect())
        .collect();
    let mut header: Vec<String> = t.columns.clone();
    if let Some(first) = header.first_mut() {
        first.clear();
    }
    let mut out = super::data_test::text_table(&header, &rows);
    if t.rows.len() > DIFF_ROWS {
        out.push_str("\n… ");
        out.push_str(&(t.rows.len() - DIFF_ROWS).to_string());
        out.push_str(" more rows");
    }
    out
}

/// Run unit test `i`. `project` is a connection to the project's database, used only to read
/// the columns of inputs whose types the project does not declare; `warehouse` makes the
/// scratch databases.
pub(super) fn run(
    session: &Session,
    graph: &Graph,
    compiler: &Compiler<'_>,
    i: usize,
    project: &Arc<dyn Connection>,
    warehouse: &dyn Adapter,
    shape_cache: &std::sync::Mutex<ShapeCache>,
) -> Result<UnitOutcome, Problem> {
    let node = &graph.nodes[i];
    if super::cancelled() {
        return Err(Problem::new(
            Code::Interrupted,
            format!("unit test `{}` was cancelled", node.name),
        ));
    }
    let Some(unit) = node.unit() else {
        return Err(Problem::new(
            Code::UnitTest,
            format!("`{}` is not a unit test", node.name),
        ));
    };
    // Its one parent is the model (or the version of it) it tests.
    let Some(m) = graph.parents(i).into_iter().find(|&p| {
        matches!(
            graph.nodes[p].resource_type,
            crate::graph::ResourceType::Model | crate::graph::ResourceType::Snapshot
        )
    }) else {
        return Err(unit_problem(
            unit,
            format!(
                "unit test `{}`: the model `{}` is not in the project",
                unit.name, unit.model
            ),
            "fix the `model:` name".to_string(),
        ));
    };
    let model = &graph.nodes[m];
    let target = &session.target;
    let resolver = Arc::new(TableResolver::new(graph));
    let index: Vec<(Input, usize)> = graph
        .parents(m)
        .into_iter()
        .map(|p| {
            let n = &graph.nodes[p];
            let input = match (n.resource_type, n.source()) {
                (ResourceType::Source, Some(s)) => {
                    TestTarget::Source(s.source_name.clone(), s.name.clone())
                }
                _ => TestTarget::Ref(n.name.clone()),
            };
            (Input::Node(input), p)
        })
        .collect();

    // 1. Where each input goes, and its columns.
    let mut this_given = false;
    let mut places = Vec::with_capacity(unit.given.len());
    for g in &unit.given {
        let place = match &g.input {
            Input::This => {
                this_given = true;
                (model.relation.clone(), m)
            }
            other @ Input::Node(_) => match index.iter().find(|(k, _)| k == other) {
                Some(&(_, p)) => (graph.nodes[p].relation.clone(), p),
                None => {
                    return Err(unit_problem(
                        unit,
                        format!(
                            "unit test `{}` gives `{}`, which the model `{}` does not read",
                            unit.name,
                            other.label(),
                            model.name
                        ),
                        "remove that input, or fix its name".to_string(),
                    ));
                }
            },
        };
        places.push(place);
    }
    // A warehouse runs the test as one query on the given rows.
    if crate::dialect::warehouse::Flavor::of(target).is_some() {
        return super::unit_inline::run(
            session,
            graph,
            compiler,
            &super::unit_inline::Tested {
                test: node,
                index: i,
                unit,
                model: m,
                places: &places,
            },
            project,
        );
    }
    let project: &dyn Connection = &**project;
    let shapes: Vec<(Option<Vec<Column>>, Option<String>)> = {
        let mut cache = shape_cache.lock().expect("shape cache lock");
        let cache = &mut *cache;
        if cache.db.is_none() {
            cache.db = Some(Db::open(warehouse, target, graph)?);
        }
        let mut shapes = Shapes {
            graph,
            compiler,
            resolver: resolver.clone(),
            db: cache.db.as_ref().expect("opened above"),
            project,
            known: &mut cache.known,
            unit,
            tested: m,
            why: None,
        };
        places
            .iter()
            .map(|&(_, owner)| {
                shapes.why = None;
                (shapes.of(owner), shapes.why.take())
            })
            .collect()
    };
    // 2. The given rows, and seeds that are not given.
    let db = Db::open(warehouse, target, graph)?;
    // A seed read whole from its file.
    let seed_input = |n: &Node| {
        db.create_schema(&n.relation)
            .and_then(|()| load_seed(&db, n))
            .map_err(|e| {
                unit_problem(
                    unit,
                    format!(
                        "unit test `{}`: cannot load the seed `{}`: {}",
                        unit.name, n.name, e.message
                    ),
                    format!("check {}, or give the seed's rows in the test", n.path),
                )
            })
    };
    let mut untyped = Vec::new();
    for ((g, (relation, owner)), (shape, why)) in unit.given.iter().zip(&places).zip(shapes) {
        // `this` given as a query is the table exactly as the query makes it: its columns may
        // differ from the model's (to test `on_schema_change`).
        let exact =
            g.input == Input::This && matches!(&g.rows, Rows::Sql(q) if !q.trim().is_empty());
        let shape = if exact { None } else { shape };
        if shape.is_none() && !exact && g.rows != Rows::Missing {
            untyped.push(format!(
                "the columns of `{}` could not be learnt ({}): it has only the columns given",
                g.input.label(),
                why.as_deref()
                    .unwrap_or("the project's database does not have it")
            ));
        }
        // A seed given without rows is read from its file (checked when the graph is built).
        if g.rows == Rows::Missing {
            let n = &graph.nodes[*owner];
            seed_input(n)?;
            continue;
        }
        let what = format!("`{}`", g.input.label());
        create_rows(&db, relation, shape.as_deref(), &g.rows, &what).map_err(|message| {
            unit_problem(
                unit,
                format!(
                    "unit test `{}`: cannot create the input `{}`: {message}",
                    unit.name,
                    g.input.label()
                ),
                if shape.is_none() {
                    format!(
                        "its columns could not be learnt ({}), so it has just the columns given: give every column the model reads, or declare the columns of the sources upstream with a `data_type`",
                        why.as_deref().unwrap_or("the project's database does not have it")
                    )
                } else {
                    "give only columns the input has".to_string()
                },
            )
        })?;
        if matches!(g.input, Input::This) {
            db.warehouse.record(relation, Some(Kind::Table));
        }
    }
    for (input, p) in &index {
        let p = *p;
        let n = &graph.nodes[p];
        if n.resource_type == ResourceType::Seed && !unit.given.iter().any(|g| &g.input == input) {
            seed_input(n)?;
        }
    }

    // 3. Render and run the model on them.
    let incremental = unit.expect_table.is_some()
        && this_given
        && model.resource_type == ResourceType::Model
        && model.materialized() == Materialization::Incremental;
    let sql = render_unit(
        compiler,
        model,
        resolver,
        Some(db.worker.clone()),
        model.relation.clone(),
        incremental,
        Some(unit),
    )?;
    let artifact = node.compiled_file();
    write_file(
        &sql_path(&session.target_dir, "compiled", node.package(), &artifact),
        sql.as_bytes(),
    )?;
    let actual = if unit.expect_table.is_none() {
        let actual = db.relation("__xform_actual");
        let body = sql.trim_end().trim_end_matches(';');
        db.run(&[db
            .dialect
            .create_table_as(&actual, &format!("select * from (\n{body}\n) as model"))])
            .map_err(|e| model_problem(db.dialect, unit, model, &sql, 2, &e, &untyped))?;
        actual
    } else {
        if model.is_ephemeral() {
            return Err(unit_problem(
                unit,
                format!(
                    "unit test `{}`: `expect_table` needs a model that builds a relation; `{}` is ephemeral",
                    unit.name, model.name
                ),
                "use `expect:` to compare the rows the model returns".to_string(),
            ));
        }
        let plan = node_plan(
            model,
            &sql,
            &*db.warehouse,
            &*db.worker,
            db.dialect,
            incremental,
            &|_, e| model_problem(db.dialect, unit, model, &sql, 1, e, &untyped),
        )?;
        let statements = db.statements(&plan);
        db.run(&statements).map_err(|e| {
            let line = statements
                .get(e.statement)
                .and_then(|s| s.body_line)
                .unwrap_or(usize::MAX);
            model_problem(db.dialect, unit, model, &sql, line, &e, &untyped)
        })?;
        model.relation.clone()
    };

    // 4. Compare.
    let actual_columns = db.columns(&actual).unwrap_or_default();
    let rows = unit
        .expect
        .as_ref()
        .or(unit.expect_table.as_ref())
        .expect("a unit test expects rows");
    let compared = compared_columns(unit, model, rows, &*db.worker, db.dialect, &actual_columns)?;
    let expected = db.relation("__xform_expected");
    create_rows(&db, &expected, Some(&compared), rows, "the expected rows").map_err(|m| {
        unit_problem(
            unit,
            format!(
                "unit test `{}`: cannot read the expected rows: {m}",
                unit.name
            ),
            "expected values must be castable to the types of the model's columns".to_string(),
        )
    })?;
    let names: Vec<String> = compared.iter().map(|c| c.name.clone()).collect();
    let (ctes, select) = db.dialect.rows_diff(
        &db.dialect.relation(&actual),
        &db.dialect.relation(&expected),
        &names,
    );
    let diff_sql = with_ctes(&ctes, &select);
    let diff = db.worker.query(&diff_sql).map_err(|e| {
        unit_problem(
            unit,
            format!(
                "unit test `{}`: cannot compare the rows: {}",
                unit.name,
                e.message.lines().next().unwrap_or_default()
            ),
            e.message.clone(),
        )
    })?;
    Ok(outcome(unit, model, &diff, sql))
}

/// The model's columns the expected rows are compared on: those the rows name (a query's, as
/// `connection` describes it), or all the model returns; a column it does not return is a
/// problem at the unit test.
pub(super) fn compared_columns(
    unit: &UnitTestDef,
    model: &Node,
    rows: &Rows,
    connection: &dyn Connection,
    dialect: &dyn Dialect,
    actual_columns: &[Column],
) -> Result<Vec<Column>, Problem> {
    let mut wanted = rows.columns();
    if let Rows::Sql(text) = rows
        && !text.trim().is_empty()
    {
        let described = connection
            .describe(&dialect.describe_query(text.trim()))
            .map_err(|e| {
                unit_problem(
                    unit,
                    format!(
                        "unit test `{}`: the expected rows' query fails: {}",
                        unit.name,
                        e.message.lines().next().unwrap_or_default()
                    ),
                    e.message.clone(),
                )
            })?;
        wanted = described.into_iter().map(|c| c.name).collect();
    }
    if wanted.is_empty() {
        wanted = actual_columns.iter().map(|c| c.name.clone()).collect();
    }
    wanted
        .iter()
        .map(|w| {
            actual_columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(w))
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        actual_columns.iter().map(|c| c.name.as_str()).collect();
                    unit_problem(
                        unit,
                        format!(
                            "unit test `{}` expects the column `{w}`, which the model `{}` does not return",
                            unit.name, model.name
                        ),
                        format!("the model returns: {}", names.join(", ")),
                    )
                })
        })
        .collect()
}

/// What the comparison's rows (`-` missing, `+` unexpected, ` ` both) say about the unit test.
pub(super) fn outcome(
    unit: &UnitTestDef,
    model: &Node,
    diff: &QueryTable,
    sql: String,
) -> UnitOutcome {
    let count = |mark: &str| {
        diff.rows
            .iter()
            .filter(|r| r.first().and_then(Json::as_str) == Some(mark))
            .count()
    };
    let (missing, extra) = (count("-"), count("+"));
    let failures = i64::try_from(missing + extra).unwrap_or(i64::MAX);
    if failures == 0 {
        return UnitOutcome {
            status: Status::Pass,
            failures: 0,
            sql,
            message: String::new(),
            problem: None,
        };
    }
    let what = if unit.expect_table.is_some() {
        format!("the table `{}` after the run", model.name)
    } else {
        format!("the rows of `{}`", model.name)
    };
    let message = format!(
        "unit test `{}` failed: {what} differ from the expected rows ({missing} missing, {extra} unexpected)",
        unit.name
    );
    let problem = unit_problem(
        unit,
        message.clone(),
        format!(
            "- expected but missing, + returned but not expected:\n{}",
            diff_table(diff)
        ),
    );
    let mut problem = problem.preformatted();
    problem.code = Code::TestFailed;
    UnitOutcome {
        status: Status::Fail,
        failures,
        sql,
        message,
        problem: Some(problem),
    }
}
