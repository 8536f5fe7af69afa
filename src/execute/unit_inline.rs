//! Running one unit test on a warehouse (BigQuery, Snowflake), as one query on the project's
//! connection: the given rows become CTEs typed like the inputs' relations in the warehouse
//! (as dbt reads them), the model reads them, and the query returns the comparison with the
//! expected rows (`materialize::unit_test`). Nothing is created in the warehouse.
//!
//! An input's columns and types come from its relation in the warehouse (the build makes the
//! parents first), else from the columns its YAML declares with a `data_type`; failing both it
//! has just the columns given. A seed given without rows is read from its relation.

use std::sync::Arc;

use super::unit_test::{UnitOutcome, compared_columns, model_problem, outcome, unit_problem};
use crate::adapter::Connection;
use crate::artifacts::{sql_path, write_file};
use crate::compile::Compiler;
use crate::compile::unit_tests::render_inline;
use crate::config::Session;
use crate::diagnostics::Problem;
use crate::graph::{Graph, Node};
use crate::materialize::Column;
use crate::materialize::unit_test::{
    actual_query, comparison, declared_columns, fixture_name, rows_query,
};
use crate::project::unit_tests::{Rows, UnitTestDef};
use crate::render::Relation;

/// The unit test being run and what it mocks.
pub(super) struct Tested<'a> {
    pub test: &'a Node,
    /// The unit test's index.
    pub index: usize,
    pub unit: &'a UnitTestDef,
    /// The tested model's index.
    pub model: usize,
    /// Each given input's relation and the index of the node it stands for.
    pub places: &'a [(Relation, usize)],
}

/// The columns of the node an input stands for: its relation's in the warehouse, else those
/// its YAML declares with types.
fn shape(project: &dyn Connection, node: &Node) -> Option<Vec<Column>> {
    project
        .relation_columns(&node.relation)
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| declared_columns(node))
}

pub(super) fn run(
    session: &Session,
    graph: &Graph,
    compiler: &Compiler<'_>,
    tested: &Tested<'_>,
    project: &Arc<dyn Connection>,
) -> Result<UnitOutcome, Problem> {
    let Tested {
        test,
        unit,
        model: m,
        places,
        ..
    } = *tested;
    let model = &graph.nodes[m];
    let dialect = crate::dialect::of(&session.target);
    if unit.expect_table.is_some() {
        return Err(unit_problem(
            unit,
            format!(
                "unit test `{}`: `expect_table` runs the model's materialization in a scratch database, which only a DuckDB target has",
                unit.name
            ),
            "use `expect:` to compare the rows the model returns, or run this unit test on a DuckDB target".to_string(),
        ));
    }

    // 1. Each given input as a CTE of its rows.
    let mut fixtures = Vec::new();
    let mut untyped = Vec::new();
    for (g, (_, owner)) in unit.given.iter().zip(places) {
        // A seed given without rows is its relation, loaded from its file by the build.
        if g.rows == Rows::Missing {
            continue;
        }
        let columns = shape(&**project, &graph.nodes[*owner]);
        if columns.is_none() {
            untyped.push(format!(
                "the columns of `{}` are not known (its relation is not in the warehouse and its YAML declares no typed columns): it has only the columns given",
                g.input.label()
            ));
        }
        let what = format!("`{}`", g.input.label());
        let rows = rows_query(dialect, columns.as_deref(), &g.rows, &what).map_err(|e| {
            unit_problem(
                unit,
                format!(
                    "unit test `{}`: cannot write the input `{}`: {e}",
                    unit.name,
                    g.input.label()
                ),
                "give only columns the input has, and at least one row when its columns are not known".to_string(),
            )
        })?;
        fixtures.push((fixture_name(&g.input), rows));
    }

    // 2. The model on them.
    let introspector: Arc<dyn crate::render::Introspect> = project.clone();
    let sql = render_inline(compiler, graph, tested.index, Some(introspector))
        .expect("a unit test of a model")?;
    let artifact = test.compiled_file();
    write_file(
        &sql_path(&session.target_dir, "compiled", test.package(), &artifact),
        sql.as_bytes(),
    )?;
    let (actual, body_line) = actual_query(&fixtures, &sql);
    let described = dialect.describe_query(&actual);
    // The describe statement wraps the query after its first line.
    let actual_columns = project
        .describe(&described)
        .map_err(|e| model_problem(dialect, unit, model, &sql, body_line + 1, &e, &untyped))?;

    // 3. The expected rows, typed like the model's columns.
    let rows = unit.expect.as_ref().expect("a unit test expects rows");
    let compared = compared_columns(unit, model, rows, &**project, dialect, &actual_columns)?;
    let expected =
        rows_query(dialect, Some(&compared), rows, "the expected rows").map_err(|e| {
            unit_problem(
                unit,
                format!(
                    "unit test `{}`: cannot read the expected rows: {e}",
                    unit.name
                ),
                "expected values must be castable to the types of the model's columns".to_string(),
            )
        })?;

    // 4. Compare, in one query, kept in `target/run/` as it ran.
    let names: Vec<String> = compared.iter().map(|c| c.name.clone()).collect();
    let query = comparison(dialect, &fixtures, &sql, &expected, &names);
    write_file(
        &sql_path(&session.target_dir, "run", test.package(), &artifact),
        query.as_bytes(),
    )?;
    let diff = project.query(&query).map_err(|e| {
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
