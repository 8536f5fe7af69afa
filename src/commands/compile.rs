//! `xform compile`: parse, build the graph, render the selected models and their data tests, and write
//! `target/compiled/` and `manifest.json`. The database is opened (read-only) only when a
//! template asks an introspective question (`run_query`, `adapter.get_relation`…) and the
//! target's file exists; otherwise those calls return nothing. Every broken model is reported in
//! one run. Compiled SQL is parsed with sqlparser; what it cannot parse is a warning only, and
//! text that parsed in an earlier compile is not parsed again (`target/sql_parse_cache`).

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use sqlparser::parser::Parser;

use super::{EXIT_OK, EXIT_USAGE, Session, report};
use crate::artifacts::{sql_path, write_files, write_manifest};
use crate::cli::{CommonArgs, CompileArgs};
use crate::compile::{Compiler, parse};
use crate::diagnostics::{Code, Problem};
use crate::dialect::Dialect;
use crate::graph::{Graph, ResourceType};
use crate::materialize::incremental::AdapterRules;
use crate::materialize::microbatch::Window;
use crate::materialize::offline::{Assumed, FirstRun};

/// `xform parse`: read the project, build the graph and write `manifest.json` (without
/// compiled code), as `dbt parse` does: every project problem, no template rendered for
/// execution and no database opened.
pub fn parse_only(s: &Session) -> i32 {
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(parsed) => parsed,
        Err(problems) => {
            report(&problems);
            return EXIT_USAGE;
        }
    };
    if let Err(p) = write_manifest(
        &s.target_dir,
        &s.project.target_path,
        &s.project,
        &s.target,
        &graph,
        &BTreeMap::new(),
        &s.run,
    ) {
        report(&[p]);
        return EXIT_USAGE;
    }
    println!(
        "Parsed {} nodes to {}",
        graph.nodes.len(),
        crate::env::mask(&s.target_dir.join("manifest.json").display().to_string())
    );
    std::mem::forget(renderer);
    std::mem::forget(graph);
    EXIT_OK
}

pub fn compile(s: &Session, args: &CompileArgs) -> i32 {
    let done = match compile_selected(s, &args.common, args.assume_exists) {
        Ok(done) => done,
        Err(code) => return code,
    };
    let count = |kind: ResourceType| {
        done.sql
            .keys()
            .filter(|&&i| done.graph.nodes[i].resource_type == kind)
            .count()
    };
    let tests = count(ResourceType::Test);
    let analyses = count(ResourceType::Analysis);
    let snapshots = count(ResourceType::Snapshot);
    let models = done.sql.len() - tests - analyses - snapshots;
    // A warehouse xform does not run yet gets each model's statements in `target/run/`.
    if let Some(flavor) = crate::dialect::warehouse::Flavor::of(&s.target) {
        let problems = match assumed(s, args, &done.graph, rules(flavor)) {
            Ok(assumed) => write_warehouse_plans(s, &done, flavor, assumed.as_ref()),
            Err(p) => vec![p],
        };
        if problems.iter().any(|p| !p.warning) {
            report(&problems);
            return EXIT_USAGE;
        }
        report(&problems);
    }
    // The process ends next: freeing thousands of compiled templates and strings one by one
    // would only delay the exit.
    std::mem::forget(done);
    let tests = match tests {
        0 => String::new(),
        1 => " and 1 test".to_string(),
        n => format!(" and {n} tests"),
    };
    let tests = match analyses {
        0 => tests,
        1 => format!("{tests}, 1 analysis"),
        n => format!("{tests}, {n} analyses"),
    };
    let tests = match snapshots {
        0 => tests,
        1 => format!("{tests}, 1 snapshot"),
        n => format!("{tests}, {n} snapshots"),
    };
    println!(
        "Compiled {models} models{tests} to {}",
        s.target_dir.join("compiled").display()
    );
    EXIT_OK
}

/// A file for `target/run/` and its text.
type RunFile = (std::path::PathBuf, Vec<u8>);

/// `target/run/<package>/<path>` for each compiled model and data test, and each seed: a
/// model's first-run statements, a test's count query, a seed's typed table and inserts, in the
/// target's dialect, as `xform build` would run them there. A node whose plan the dialect does
/// not write yet is a diagnostic naming it.
fn write_warehouse_plans(
    s: &Session,
    done: &Compiled,
    flavor: crate::dialect::warehouse::Flavor,
    assumed: Option<&Assumed>,
) -> Vec<Problem> {
    let dialect = crate::dialect::of(&s.target);
    let first_run = FirstRun(rules(flavor));
    let existing: &(dyn crate::materialize::Existing + Sync) = match assumed {
        Some(a) => a,
        None => &first_run,
    };
    // Each node's plan and statements on their own, on every core.
    let planned: Vec<Result<Option<RunFile>, Problem>> = done
        .sql
        .par_iter()
        .map(|(&i, sql)| {
            let node = &done.graph.nodes[i];
            // A data test: its count query (and the statements that keep its failing rows).
            if node.resource_type == ResourceType::Test {
                let plan =
                    crate::materialize::data_test::TestPlan::of(node, &node.config, sql, dialect)?;
                let (statements, query) = plan.statements(dialect, node, None);
                let path = sql_path(&s.target_dir, "run", node.package(), &node.compiled_file());
                return Ok(Some((
                    path,
                    crate::materialize::data_test::TestPlan::script(&statements, &query)
                        .into_bytes(),
                )));
            }
            if node.resource_type == ResourceType::Snapshot {
                let plan = match assumed {
                    // Offline the query is taken to have the table's columns, less dbt's.
                    Some(assumed) => {
                        let table = assumed.columns_of(node)?;
                        let spec = crate::materialize::snapshot::Spec::of(node, &[])?;
                        let meta = [
                            &spec.meta.scd_id,
                            &spec.meta.updated_at,
                            &spec.meta.valid_from,
                            &spec.meta.valid_to,
                            &spec.meta.is_deleted,
                        ];
                        let query: Vec<_> = table
                            .iter()
                            .filter(|c| !meta.iter().any(|m| m.eq_ignore_ascii_case(&c.name)))
                            .cloned()
                            .collect();
                        crate::materialize::snapshot::plan(
                            node,
                            sql,
                            assumed,
                            Some(&table),
                            &query,
                        )?
                    }
                    None => crate::materialize::snapshot::plan(node, sql, existing, None, &[])?,
                };
                let lowered = crate::dialect::lower(dialect, &plan.steps);
                let path = sql_path(&s.target_dir, "run", node.package(), &node.path);
                return Ok(Some((
                    path,
                    crate::dialect::script(&lowered.statements).into_bytes(),
                )));
            }
            if node.resource_type != ResourceType::Model || node.is_ephemeral() {
                return Ok(None);
            }
            if let Some(p) = warehouse_config_problem(flavor, node) {
                return Err(p);
            }
            if let Some(p) = missing_layout_column(node, sql, dialect) {
                return Err(p);
            }
            if let Some(batches) = done.batches.get(&i) {
                let path = sql_path(&s.target_dir, "run", node.package(), &node.path);
                let text = microbatch_script(s, node, batches, existing, assumed, dialect)?;
                return Ok(Some((path, text.into_bytes())));
            }
            let plan = match assumed {
                Some(assumed) if incremental_run(s, node, true) => {
                    let table = assumed.columns_of(node)?;
                    // Offline the new rows are taken to have the table's columns: a schema
                    // change is not seen.
                    crate::materialize::incremental::plan(node, sql, assumed, &table, &table, None)?
                }
                _ => crate::materialize::plan(node, sql, existing)?,
            };
            if let Some(why) = crate::dialect::warehouse::unsupported(flavor, &plan.steps) {
                return Err(Problem::new(
                    Code::UnsupportedMaterialization,
                    format!("model `{}`: {why}", node.name),
                )
                .help("compile it for DuckDB, or leave it out with --exclude"));
            }
            let lowered = crate::dialect::lower(dialect, &plan.steps);
            let path = sql_path(&s.target_dir, "run", node.package(), &node.path);
            Ok(Some((
                path,
                crate::dialect::script(&lowered.statements).into_bytes(),
            )))
        })
        .collect();
    let mut problems = Vec::new();
    let mut files: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
    // Every seed: its typed table and the inserts of its rows.
    for node in done
        .graph
        .nodes
        .iter()
        .filter(|n| n.resource_type == ResourceType::Seed)
    {
        if let Some(path) = node.seed_path()
            && let Err(why) = crate::dialect::warehouse::check_seed(
                path,
                node.config.str("delimiter").unwrap_or(","),
            )
        {
            problems.push(
                Problem::new(
                    Code::ProjectConfig,
                    format!("seed `{}` cannot be read: {why}", node.name),
                )
                .help(format!("fix the CSV file `{}`", node.path)),
            );
            continue;
        }
        match crate::materialize::plan(node, "", existing) {
            Ok(plan) => {
                let lowered = crate::dialect::lower(dialect, &plan.steps);
                let path = sql_path(&s.target_dir, "run", node.package(), &node.path);
                files.push((
                    path,
                    crate::dialect::script(&lowered.statements).into_bytes(),
                ));
            }
            Err(p) => problems.push(p),
        }
    }
    for p in planned {
        match p {
            Ok(Some(file)) => files.push(file),
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }
    for (&i, sql) in &done.units {
        match unit_test_query(&done.graph, i, sql, dialect, assumed) {
            Ok(query) => {
                let node = &done.graph.nodes[i];
                let path = sql_path(&s.target_dir, "run", node.package(), &node.compiled_file());
                files.push((path, query.into_bytes()));
            }
            Err(p) => problems.push(p),
        }
    }
    let refs: Vec<(std::path::PathBuf, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.clone(), b.as_slice()))
        .collect();
    problems.extend(write_files(&refs));
    problems
}

/// A unit test as the one query a warehouse runs (`materialize::unit_test`), without a
/// connection: an input's columns are those its YAML declares with types, else the catalog's
/// (`--assume-exists`); an input with neither has just the columns given, and expected rows
/// without known types are compared as written.
fn unit_test_query(
    graph: &Graph,
    i: usize,
    sql: &str,
    dialect: &dyn Dialect,
    assumed: Option<&Assumed>,
) -> Result<String, Problem> {
    use crate::materialize::unit_test::{comparison, declared_columns, fixture_name, rows_query};
    use crate::project::unit_tests::Rows;
    let node = &graph.nodes[i];
    let unit = node.unit().expect("a unit test node");
    let problem = |message: String| {
        Problem::new(
            Code::UnitTest,
            format!("unit test `{}`: {message}", unit.name),
        )
        .at(&unit.file, unit.offset, unit.name.len(), "this unit test")
    };
    let (m, owners) =
        crate::compile::unit_tests::given_nodes(graph, i).expect("rendered unit tests have models");
    let shape_of = |n: usize| {
        let n = &graph.nodes[n];
        // A catalog may come from another target (a DuckDB build), and YAML types may be
        // written for one: DuckDB's type names respelled.
        let mut columns =
            declared_columns(n).or_else(|| assumed.and_then(|a| a.columns_of(n).ok()))?;
        for c in &mut columns {
            c.data_type = dialect.own_type(&c.data_type);
        }
        Some(columns)
    };
    if unit.expect_table.is_some() {
        return Err(problem(
            "`expect_table` runs the model's materialization in a scratch database, which only a DuckDB target has".to_string(),
        )
        .help("use `expect:` to compare the rows the model returns, or leave it out with --exclude")
        .warning());
    }
    let mut fixtures = Vec::new();
    for (g, owner) in unit.given.iter().zip(owners) {
        if g.rows == Rows::Missing {
            continue;
        }
        let shape = owner.and_then(shape_of);
        let rows = rows_query(dialect, shape.as_deref(), &g.rows, &format!("`{}`", g.input.label()))
            .map_err(|e| {
                problem(format!("cannot write the input `{}`: {e}", g.input.label())).help(
                    "declare the input's columns with a `data_type`, or pass --assume-exists with a catalog",
                )
            })?;
        fixtures.push((fixture_name(&g.input), rows));
    }
    let rows = unit.expect.as_ref().expect("a unit test expects rows");
    let mut wanted = rows.columns();
    if let Rows::Sql(text) = rows {
        wanted =
            crate::compile::outputs::output_columns(text, &*dialect.parser()).unwrap_or_default();
    }
    let model_shape = shape_of(m);
    if wanted.is_empty() {
        wanted = model_shape
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
    }
    if wanted.is_empty() {
        return Err(problem("the columns to compare are not known".to_string())
            .help("name the expected columns, or declare the model's columns with a `data_type`"));
    }
    // Expected rows typed like the model's columns when all of them are known.
    let typed: Option<Vec<crate::relation::Column>> = model_shape.as_ref().and_then(|shape| {
        wanted
            .iter()
            .map(|w| {
                shape
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(w))
                    .cloned()
            })
            .collect()
    });
    if let Some(typed) = &typed {
        wanted = typed.iter().map(|c| c.name.clone()).collect();
    }
    let expected = rows_query(dialect, typed.as_deref(), rows, "the expected rows")
        .map_err(|e| problem(format!("cannot read the expected rows: {e}")))?;
    Ok(comparison(dialect, &fixtures, sql, &expected, &wanted))
}

/// A microbatch model's statements, batch by batch, as `xform build` runs them: on a first run
/// the first batch creates the table; every other batch deletes its window and inserts its
/// rows. The insert's columns are the catalog's (`--assume-exists`), else those the first
/// batch's query names.
fn microbatch_script(
    s: &Session,
    node: &crate::graph::Node,
    batches: &[(Window, String)],
    existing: &dyn crate::materialize::Existing,
    assumed: Option<&Assumed>,
    dialect: &dyn Dialect,
) -> Result<String, Problem> {
    let first_run = !incremental_run(s, node, assumed.is_some());
    let columns = match assumed {
        Some(a) => a.columns_of(node)?,
        None => batches
            .first()
            .and_then(|(_, sql)| crate::compile::outputs::output_columns(sql, &*dialect.parser()))
            .unwrap_or_default()
            .into_iter()
            .map(|name| crate::relation::Column {
                name,
                data_type: String::new(),
            })
            .collect(),
    };
    let mut text = String::new();
    for (n, (window, sql)) in batches.iter().enumerate() {
        let plan = if first_run && n == 0 {
            crate::materialize::plan(node, sql, existing)?
        } else {
            if columns.is_empty() {
                let mut p = Problem::new(
                    Code::ProjectConfig,
                    format!(
                        "the batches of microbatch model `{}` insert its columns, which its query does not name",
                        node.name
                    ),
                )
                .help("name each column the model returns (no `select *`), or compile with --assume-exists --catalog");
                if let Some(file) = &node.file {
                    p = p.at(file, 0, 0, "this model");
                }
                return Err(p);
            }
            crate::materialize::incremental::plan(
                node,
                sql,
                existing,
                &columns,
                &columns,
                Some(window),
            )?
        };
        let lowered = crate::dialect::lower(dialect, &plan.steps);
        text.push_str("-- batch ");
        text.push_str(&window.label());
        text.push('\n');
        text.push_str(&crate::dialect::script(&lowered.statements));
        text.push('\n');
    }
    Ok(text)
}

/// A `partition_by` field or a `cluster_by` column the model's query does not return, when
/// its SQL names every column it returns (the warehouse would refuse the table).
fn missing_layout_column(
    node: &crate::graph::Node,
    sql: &str,
    dialect: &dyn Dialect,
) -> Option<Problem> {
    let options = crate::materialize::RelationOptions::of(node);
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = &options.partition_by {
        wanted.push(("partition_by", &p.field));
    }
    for c in &options.cluster_by {
        wanted.push(("cluster_by", c));
    }
    if wanted.is_empty() {
        return None;
    }
    let returned = crate::compile::outputs::output_columns(sql, &*dialect.parser())?;
    let (key, column) = wanted
        .into_iter()
        .find(|(_, c)| !returned.iter().any(|r| r.eq_ignore_ascii_case(c)))?;
    let mut p = Problem::new(
        Code::ProjectConfig,
        format!(
            "model `{}` sets {key} to `{column}`, a column its query does not return",
            node.name
        ),
    )
    .help(format!(
        "the query returns: {}; name one of them in {key}",
        returned.join(", ")
    ));
    if let Some(file) = &node.file {
        p = match file.text.find(column) {
            Some(at) => p.at(file, at, column.len(), "not a column of the query"),
            None => p.at(file, 0, 0, "this model"),
        };
    }
    Some(p)
}

/// What `--assume-exists` takes the warehouse to hold, with the columns of `--catalog`, else
/// the `--state` folder's catalog.json, else `target/catalog.json` when there is one.
fn assumed(
    s: &Session,
    args: &CompileArgs,
    graph: &Graph,
    rules: AdapterRules,
) -> Result<Option<Assumed>, Problem> {
    if !args.assume_exists {
        return Ok(None);
    }
    let catalog = args.catalog.clone().or_else(|| {
        [
            args.common.state.as_ref().map(|d| d.join("catalog.json")),
            Some(s.target_dir.join("catalog.json")),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
    });
    Assumed::new(graph, catalog.as_deref(), rules).map(Some)
}

/// What incremental configs mean on the warehouse's dbt adapter.
fn rules(flavor: crate::dialect::warehouse::Flavor) -> AdapterRules {
    match flavor {
        crate::dialect::warehouse::Flavor::Snowflake => AdapterRules::SNOWFLAKE,
        crate::dialect::warehouse::Flavor::BigQuery => AdapterRules::BIGQUERY,
    }
}

/// Whether the node is an incremental model that runs incrementally when its table exists
/// (`is_incremental()`), outside a full refresh.
fn incremental_run(s: &Session, node: &crate::graph::Node, exists: bool) -> bool {
    exists
        && node.resource_type == ResourceType::Model
        && node.materialized() == crate::graph::Materialization::Incremental
        && !crate::materialize::incremental::full_refresh(node, s.run.full_refresh)
}

/// A config the target's warehouse cannot honour, as dbt-bigquery and dbt-snowflake refuse
/// it: `transient` on BigQuery, `partition_by` on a BigQuery view, `insert_overwrite` without
/// `partition_by`.
fn warehouse_config_problem(
    flavor: crate::dialect::warehouse::Flavor,
    node: &crate::graph::Node,
) -> Option<Problem> {
    use crate::dialect::warehouse::Flavor;
    use crate::graph::Materialization;
    let config = &node.config;
    let why = match flavor {
        Flavor::BigQuery if config.get("transient").is_some() => {
            "sets `transient`, which is Snowflake's: BigQuery has no transient tables".to_string()
        }
        Flavor::BigQuery
            if node.materialized() == Materialization::View
                && config.get("partition_by").is_some() =>
        {
            "is a view with `partition_by`: only a table can be partitioned".to_string()
        }
        Flavor::BigQuery
            if config.str("incremental_strategy") == Some("insert_overwrite")
                && config.get("partition_by").is_none() =>
        {
            "uses `incremental_strategy: insert_overwrite` without `partition_by`: the partitions to replace are unknown".to_string()
        }
        _ => return None,
    };
    let mut p = Problem::new(Code::ProjectConfig, format!("model `{}` {why}", node.name))
        .help("remove the setting for this target, or set it only for the warehouse it is for");
    if let Some(file) = &node.file {
        p = p.at(file, 0, 0, "this model");
    }
    Some(p)
}

/// What a compile leaves for the command that asked for it (`docs generate` goes on to the
/// catalog and the site).
pub struct Compiled {
    pub graph: Graph,
    /// The compiled SQL of each selected model and test, by node index.
    pub sql: BTreeMap<usize, Arc<str>>,
    /// For a warehouse target, each microbatch model's batches in order: the window and its
    /// compiled SQL (the first creates the table on a first run).
    pub batches: BTreeMap<usize, Vec<(Window, String)>>,
    /// For a warehouse target, each unit test of a selected model: the model rendered on the
    /// test's given rows.
    pub units: BTreeMap<usize, String>,
}

/// Each selected microbatch model's batches, rendered for a warehouse target as `xform build`
/// would run them: from `begin` on a first run, else the last `lookback` windows before now
/// (or the `--event-time-start`/`--event-time-end` flags).
fn microbatch_batches(
    s: &Session,
    args: &CommonArgs,
    graph: &Graph,
    compiler: &Compiler,
    chosen: &[usize],
    assume_exists: bool,
    catalog: Option<&Arc<dyn crate::render::Introspect>>,
) -> Result<BTreeMap<usize, Vec<(Window, String)>>, Problem> {
    use crate::materialize::microbatch;
    let (start, end) = super::execute::event_times(args)?;
    let end = end.unwrap_or_else(|| s.run.started_at.naive_utc());
    let mut out = BTreeMap::new();
    for &i in chosen {
        let node = &graph.nodes[i];
        if node.resource_type != ResourceType::Model || !microbatch::is_microbatch(node) {
            continue;
        }
        let batching = microbatch::Settings::of(node)?;
        let first_run = !incremental_run(s, node, assume_exists);
        let mut batches = Vec::new();
        for (n, window) in batching
            .batches(first_run, start, end)
            .into_iter()
            .enumerate()
        {
            let creates = first_run && n == 0;
            let sql = compiler.compiled_batch(
                i,
                catalog,
                !creates,
                window,
                &window.id(batching.batch_size),
            )?;
            batches.push((window, sql));
        }
        out.insert(i, batches);
    }
    Ok(out)
}

/// Compile the selected models and tests: `target/compiled/`, the SQL check and
/// `manifest.json`. Problems are reported here; `Err` holds the exit code.
pub fn compile_selected(
    s: &Session,
    args: &CommonArgs,
    assume_exists: bool,
) -> Result<Compiled, i32> {
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(g) => g,
        Err(p) => {
            report(&p);
            return Err(EXIT_USAGE);
        }
    };
    let crate::select::Selection {
        nodes: chosen,
        unmatched: empty,
    } = match super::choose(
        s,
        &graph,
        args,
        &[
            ResourceType::Model,
            ResourceType::Snapshot,
            ResourceType::Test,
            ResourceType::Analysis,
        ],
    ) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return Err(EXIT_USAGE);
        }
    };
    for e in &empty {
        eprintln!("warning: the selector `{e}` matches no node");
    }
    let mut compiler = Compiler::new(&graph, &renderer, crate::dialect::of(&s.target));
    // Without a database file, templates see no database at all, as while parsing.
    #[cfg(feature = "duckdb")]
    let lazy = crate::adapter::LazyCatalog::if_built(&s.target).map(Arc::new);
    #[cfg(feature = "duckdb")]
    let catalog: Option<Arc<dyn crate::render::Introspect>> = lazy
        .clone()
        .map(|c| c as Arc<dyn crate::render::Introspect>);
    #[cfg(not(feature = "duckdb"))]
    let catalog: Option<Arc<dyn crate::render::Introspect>> = None;
    if args.defer {
        // What the target has, from its database when there is one that opens (read-only).
        #[cfg(feature = "duckdb")]
        let exists = |r: &crate::render::Relation| lazy.as_ref().and_then(|c| c.has_relation(r));
        #[cfg(not(feature = "duckdb"))]
        let exists = |_: &crate::render::Relation| None;
        let chosen_set: std::collections::HashSet<usize> = chosen.iter().copied().collect();
        if let Err(p) = super::apply_defer(
            &mut compiler,
            &graph,
            &|i| chosen_set.contains(&i),
            &exists,
            args,
        ) {
            report(&[p]);
            return Err(EXIT_USAGE);
        }
    }
    if s.run.empty {
        compiler.read_empty_inputs();
    }
    let results: Vec<(usize, Result<Arc<str>, Problem>)> = chosen
        .par_iter()
        .map(|&i| {
            let incremental = incremental_run(s, &graph.nodes[i], assume_exists);
            (i, compiler.compiled(i, catalog.as_ref(), incremental))
        })
        .collect();
    crate::timings::mark("compile pass");
    let mut problems = Vec::new();
    let mut compiled = BTreeMap::new();
    let mut warnings = Vec::new();
    for (i, r) in results {
        match r {
            Ok(sql) => {
                compiled.insert(i, sql);
            }
            Err(p) => problems.push(p),
        }
    }
    let files: Vec<(std::path::PathBuf, &[u8])> = compiled
        .iter()
        .map(|(&i, sql)| {
            let path = sql_path(
                &s.target_dir,
                "compiled",
                graph.nodes[i].package(),
                &graph.nodes[i].compiled_file(),
            );
            (path, sql.as_bytes())
        })
        .collect();
    // Every model's compiled SQL is checked with sqlparser: what it cannot read is a warning
    // (DuckDB's grammar is wider), never a failure. Lineage comes from ref() and source().
    // Each model's own SQL and each ephemeral once: injected CTEs are not parsed again.
    let bodies = compiler.compiled_bodies();
    // Tests' SQL is generated by xform itself: only models are checked. Each with the text of
    // its compiled file, to point at that file's lines.
    let models: Vec<(usize, &str, &str)> = bodies
        .iter()
        .filter(|(i, _)| graph.nodes[**i].resource_type == ResourceType::Model)
        .map(|(&i, sql)| (i, &**sql, compiled.get(&i).map_or(&**sql, |c| &**c)))
        .collect();
    // Writing the compiled files waits mostly on the file system; the SQL check and the
    // manifest are work for the processor: do them at the same time.
    let (written, (parsed, manifest)) = rayon::join(
        || write_files(&files),
        || {
            let parsed = parse_check(
                crate::dialect::of(&s.target),
                &s.target_dir,
                &graph,
                &models,
            );
            let manifest = write_manifest(
                &s.target_dir,
                &s.project.target_path,
                &s.project,
                &s.target,
                &graph,
                &compiled,
                &s.run,
            );
            (parsed, manifest)
        },
    );
    problems.extend(written);
    warnings.extend(parsed);
    if let Err(p) = manifest {
        problems.push(p);
    }
    crate::timings::mark("files, sql parse, manifest");
    report(&warnings);
    drop(files);
    drop(models);
    drop(bodies);
    if !problems.is_empty() {
        report(&problems);
        eprintln!(
            "{} of {} models failed to compile",
            problems.len(),
            chosen.len()
        );
        return Err(EXIT_USAGE);
    }
    let batches = if crate::dialect::warehouse::Flavor::of(&s.target).is_some() {
        match microbatch_batches(
            s,
            args,
            &graph,
            &compiler,
            &chosen,
            assume_exists,
            catalog.as_ref(),
        ) {
            Ok(b) => b,
            Err(p) => {
                report(&[p]);
                return Err(EXIT_USAGE);
            }
        }
    } else {
        BTreeMap::new()
    };
    let mut units = BTreeMap::new();
    if crate::dialect::warehouse::Flavor::of(&s.target).is_some() {
        let chosen: HashSet<usize> = chosen.iter().copied().collect();
        let mut problems = Vec::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            if n.resource_type != ResourceType::UnitTest
                || !crate::compile::unit_tests::given_nodes(&graph, i)
                    .is_some_and(|(m, _)| chosen.contains(&m))
            {
                continue;
            }
            match crate::compile::unit_tests::render_inline(&compiler, &graph, i, None) {
                Some(Ok(sql)) => {
                    units.insert(i, sql);
                }
                Some(Err(p)) => problems.push(p),
                None => {}
            }
        }
        if !problems.is_empty() {
            report(&problems);
            return Err(EXIT_USAGE);
        }
    }
    // As at the end of the process: dropping the compiler frees its caches one by one.
    std::mem::forget(compiler);
    std::mem::forget(renderer);
    Ok(Compiled {
        graph,
        sql: compiled,
        batches,
        units,
    })
}

/// sqlparser's message with its `Line: N` moved down by `shift` when N is `from` or later: the
/// line in the compiled file, whose injected ephemeral CTEs the parsed text did not have.
fn shift_line(message: &str, from: usize, shift: usize) -> String {
    const MARK: &str = "Line: ";
    let Some(at) = message.rfind(MARK).map(|i| i + MARK.len()) else {
        return message.to_string();
    };
    let digits = message[at..].bytes().take_while(u8::is_ascii_digit).count();
    match message[at..at + digits].parse::<usize>() {
        Ok(line) if shift > 0 && line >= from => format!(
            "{}{}{}",
            &message[..at],
            line + shift,
            &message[at + digits..]
        ),
        _ => message.to_string(),
    }
}

/// The file in `target/` that lists, by a hash of their text, the compiled models that
/// sqlparser read without error in earlier compiles.
const PARSE_CACHE: &str = "sql_parse_cache";

/// What the cache's hashes are valid for: the same text parses the same way only with the same
/// parser and dialect. Any other xform version starts afresh; change the sqlparser version here
/// with the dependency.
fn parse_cache_header(dialect: &dyn Dialect) -> Vec<u8> {
    format!(
        "xform sql parse cache 1; xform {}; sqlparser 0.64.0; {}\n",
        env!("CARGO_PKG_VERSION"),
        dialect.id()
    )
    .into_bytes()
}

/// Parse each model's compiled SQL with sqlparser and return a warning for each that it cannot
/// read. Text that parsed in an earlier compile (the cache in `target/`) is not parsed again:
/// sqlparser costs more than everything else in a compile, and most models are unchanged
/// from one compile to the next. The cache only ever skips work whose outcome it knows.
fn parse_check(
    dialect: &dyn Dialect,
    target_dir: &Path,
    graph: &Graph,
    models: &[(usize, &str, &str)],
) -> Vec<Problem> {
    // A fixed-key hasher, so that hashes mean the same in the next process.
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let path = target_dir.join(PARSE_CACHE);
    let header = parse_cache_header(dialect);
    let known: HashSet<u64> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| {
            let rest = bytes.strip_prefix(header.as_slice())?;
            Some(
                rest.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            )
        })
        .unwrap_or_default();
    let checked: Vec<(u64, Option<Problem>)> = models
        .par_iter()
        .map(|&(i, sql, in_file)| {
            let hash = hasher.hash_one(sql);
            if known.contains(&hash) {
                return (hash, None);
            }
            let problem = Parser::parse_sql(&*dialect.parser(), sql).err().map(|e| {
                let node = &graph.nodes[i];
                let file = sql_path(
                    target_dir,
                    "compiled",
                    node.package(),
                    &node.compiled_file(),
                );
                let (from, shift) = crate::compile::injected_line_shift(sql, in_file);
                Problem::new(
                    Code::Jinja,
                    format!(
                        "the compiled SQL of `{}` does not parse: {}",
                        node.name,
                        shift_line(&e.to_string(), from, shift)
                    ),
                )
                .help(format!(
                    "the model is compiled; sqlparser's {name} dialect rejects it, {name} may \
                     still accept it. The SQL: {}",
                    file.display(),
                    name = dialect.name(),
                ))
                .warning()
            });
            (hash, problem)
        })
        .collect();
    let mut parsed: HashSet<u64> = HashSet::with_capacity(checked.len());
    let mut warnings = Vec::new();
    for (hash, problem) in checked {
        match problem {
            Some(p) => warnings.push(p),
            None => {
                parsed.insert(hash);
            }
        }
    }
    // Keep what earlier compiles learned (a `-s` compile sees few models), unless it has grown
    // far beyond the project.
    let fresh = parsed.iter().any(|h| !known.contains(h));
    if fresh || known.len() > 3 * parsed.len() + 1000 {
        if known.len() <= 3 * parsed.len() + 1000 {
            parsed.extend(&known);
        }
        let mut hashes: Vec<u64> = parsed.into_iter().collect();
        hashes.sort_unstable();
        let mut bytes = header;
        bytes.reserve(hashes.len() * 8);
        for h in hashes {
            bytes.extend_from_slice(&h.to_le_bytes());
        }
        // A cache that cannot be written only costs the next compile time.
        let _ = std::fs::create_dir_all(target_dir).and_then(|()| std::fs::write(&path, bytes));
    }
    warnings
}
