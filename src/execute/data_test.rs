//! Running one data test on a worker's connection, for `xform test` and `xform build`.
//!
//! A test's query selects failing rows. It is wrapped in dbt's count query (`fail_calc`,
//! `warn_if`, `error_if`), and its severity turns the counts into pass, warn or fail. With
//! `store_failures` the failing rows are first written to the audit table and counted there.
//! On warn or fail the first rows are fetched again so that the report can show them. The SQL
//! is the dialect's; the scheduling (what waits for a test, what a failure skips) is the
//! scheduler's.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::adapter::Connection;
use crate::artifacts::{Status, sql_path, write_file};
use crate::compile::Compiler;
use crate::config::Session;
use crate::diagnostics::{Code, Problem};
use crate::dialect::Dialect;
use crate::graph::{Graph, Node, ResourceType};
use crate::render::{Introspect, QueryTable};

/// How many failing rows a report shows.
const SAMPLE_ROWS: usize = 5;

/// What a test run found.
pub struct TestOutcome {
    pub status: Status,
    pub failures: i64,
    pub sql: String,
    pub message: String,
    /// Whether the failing rows were stored (in the node's relation).
    pub stored: bool,
    /// The report of a warn or fail: failing-row count and sample rows.
    pub problem: Option<Problem>,
}

/// What the test reads, for the report: `orders`, or `source shop.orders`.
fn tested(graph: &Graph, i: usize) -> String {
    let names: Vec<String> = graph
        .parents(i)
        .into_iter()
        .map(|p| {
            let n = &graph.nodes[p];
            match (&n.resource_type, n.source()) {
                (ResourceType::Source, Some(s)) => format!("{}.{}", s.source_name, s.name),
                _ => n.name.clone(),
            }
        })
        .collect();
    names.join("`, `")
}

pub(super) fn cell(v: &Json) -> String {
    match v {
        Json::Null => "null".to_string(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A small text table of sample rows.
fn table(t: &QueryTable) -> String {
    let rows: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    text_table(&t.columns, &rows)
}

/// Rows under a header, columns padded and separated by `|`.
pub(super) fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header)];
    out.push(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

fn number(v: Option<&Json>) -> i64 {
    match v {
        Some(Json::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().and_then(|f| format!("{f:.0}").parse().ok()))
            .unwrap_or(0),
        Some(Json::String(s)) => s.parse().unwrap_or(0),
        Some(Json::Bool(b)) => i64::from(*b),
        _ => 0,
    }
}

fn truthy(v: Option<&Json>) -> bool {
    match v {
        Some(Json::Bool(b)) => *b,
        Some(Json::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

fn db_problem(
    dialect: &dyn Dialect,
    node: &Node,
    compiled: &std::path::Path,
    message: &str,
) -> Problem {
    let first = message.lines().next().unwrap_or(message);
    let mut p = Problem::new(
        Code::Database,
        format!("test `{}` failed to run: {first}", node.name),
    )
    .help(format!(
        "compiled SQL: {}\n{} says: {}",
        compiled.display(),
        dialect.name(),
        message.trim()
    ));
    if let Some(file) = &node.file {
        p = p.at(file, 0, 0, "in this test");
    }
    p
}

/// Run test `i`: compile it, count its failing rows, decide its status.
pub(super) fn run(
    session: &Session,
    graph: &Graph,
    compiler: &Compiler<'_>,
    dialect: &dyn Dialect,
    i: usize,
    worker: &Arc<dyn Connection>,
) -> Result<TestOutcome, Problem> {
    let node = &graph.nodes[i];
    let introspector: Arc<dyn Introspect> = worker.clone();
    let sql = compiler
        .compiled(i, Some(&introspector), false)?
        .to_string();
    let project = node.package();
    let artifact = node.compiled_file();
    let compiled_path = sql_path(&session.target_dir, "compiled", project, &artifact);
    write_file(&compiled_path, sql.as_bytes())?;
    let config = compiler.test_config(i);
    let plan = crate::materialize::data_test::TestPlan::of(node, config, &sql, dialect)?;
    // A relation of the other kind, left by an earlier setting, is replaced.
    let replaces = match plan.store_as {
        Some(store_as) => match worker.relation_kind(&node.relation) {
            Ok(Some(old)) if old != store_as => Some(old),
            _ => None,
        },
        None => None,
    };
    let (statements, query) = plan.statements(dialect, node, replaces);
    let store = plan.store_as.is_some();
    // Where the failing rows are read back from for the report.
    let source = if store {
        dialect.select_all(&node.relation)
    } else {
        plan.failing.clone()
    };
    let (warn_if, error_if) = (plan.warn_if.clone(), plan.error_if.clone());
    write_file(
        &sql_path(&session.target_dir, "run", project, &artifact),
        crate::materialize::data_test::TestPlan::script(&statements, &query).as_bytes(),
    )?;
    if !statements.is_empty() {
        worker
            .run(&statements)
            .map_err(|e| db_problem(dialect, node, &compiled_path, &e.message))?;
    }
    let counts = worker
        .query(&query)
        .map_err(|e| db_problem(dialect, node, &compiled_path, &e.message))?;
    let row = counts.rows.first().cloned().unwrap_or_default();
    let failures = number(row.first());
    let (should_warn, should_error) = (truthy(row.get(1)), truthy(row.get(2)));
    let severity = config
        .str("severity")
        .unwrap_or("error")
        .to_ascii_lowercase();
    let status = if severity == "error" && should_error {
        Status::Fail
    } else if should_warn || (severity != "error" && should_error) {
        Status::Warn
    } else {
        Status::Pass
    };
    let message = match status {
        Status::Pass => "PASS".to_string(),
        Status::Fail => format!("Got {failures} results, configured to fail if {error_if}"),
        _ => format!("Got {failures} results, configured to warn if {warn_if}"),
    };
    let problem = (status != Status::Pass).then(|| {
        let sample = worker
            .query(&dialect.test_sample(&source, SAMPLE_ROWS))
            .map_or_else(
                |e| format!("(cannot read the failing rows: {e})"),
                |t| table(&t),
            );
        let verb = if status == Status::Fail {
            "failed"
        } else {
            "warned"
        };
        let mut help = format!("failing rows (first {SAMPLE_ROWS}):\n{sample}\n");
        if store {
            help.push_str("all failing rows are in ");
            help.push_str(&node.relation.to_string());
            help.push('\n');
        }
        help.push_str("compiled SQL: ");
        help.push_str(&compiled_path.display().to_string());
        let p = Problem::new(
            Code::TestFailed,
            format!(
                "test `{}` {verb} on `{}`: {failures} failing row{}",
                node.name,
                tested(graph, i),
                if failures == 1 { "" } else { "s" }
            ),
        )
        .help(help)
        .preformatted();
        if status == Status::Warn {
            p.warning()
        } else {
            p
        }
    });
    Ok(TestOutcome {
        status,
        failures,
        sql,
        message,
        stored: store,
        problem,
    })
}

/// The nodes that must wait for test `t` in a build: the other children of what it tests,
/// when they descend from everything the test reads (dbt's rule). A relationships test reads
/// two nodes; a child of only one of them does not wait, which keeps these extra edges going
/// down the graph, so they never form a cycle.
pub(super) fn gated_children(graph: &Graph, t: usize) -> Vec<usize> {
    let parents = graph.parents(t);
    let ancestors = |x: usize| -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = graph.parents(x);
        while let Some(p) = stack.pop() {
            if seen.insert(p) {
                stack.extend(graph.parents(p));
            }
        }
        seen
    };
    let mut out: BTreeSet<usize> = BTreeSet::new();
    for &p in &parents {
        for c in graph.children(p) {
            if c == t
                || matches!(
                    graph.nodes[c].resource_type,
                    ResourceType::Test | ResourceType::UnitTest
                )
                || out.contains(&c)
            {
                continue;
            }
            if parents.len() == 1 || {
                let up = ancestors(c);
                parents.iter().all(|q| up.contains(q))
            } {
                out.insert(c);
            }
        }
    }
    out.into_iter().collect()
}
