//! What a data test runs, decided from its config and compiled query: the failing rows (cut to
//! `limit:`), whether they are stored (`store_failures`, `store_failures_as`), and the count
//! query's thresholds. The dialect writes the SQL; `execute` runs it, `compile` writes it for a
//! warehouse target.

use serde_json::Value as Json;

use super::Kind;
use crate::diagnostics::{Code, Problem};
use crate::dialect::{Dialect, Statement};
use crate::graph::Node;
use crate::project::NodeConfig;

/// A data test's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct TestPlan {
    /// The failing rows' query, `limit:` applied.
    pub failing: String,
    /// Where the failing rows are kept: a table, a view, or nowhere.
    pub store_as: Option<Kind>,
    pub fail_calc: String,
    pub warn_if: String,
    pub error_if: String,
}

impl TestPlan {
    /// The plan of test `node` with its final `config` and compiled `sql`.
    pub fn of(
        node: &Node,
        config: &NodeConfig,
        sql: &str,
        dialect: &dyn Dialect,
    ) -> Result<TestPlan, Problem> {
        let body = sql.trim_end().trim_end_matches(';').trim_end();
        let failing = match config.get("limit").and_then(Json::as_i64) {
            Some(n) => dialect.limit(body, n),
            None => body.to_string(),
        };
        // `store_failures_as` (table, view, ephemeral) wins over `store_failures`.
        let store_as = match config.str("store_failures_as") {
            Some("table") => Some(Kind::Table),
            Some("view") => Some(Kind::View),
            Some("ephemeral") => None,
            Some(other) => {
                let mut p = Problem::new(
                    Code::ProjectConfig,
                    format!(
                        "test `{}` has store_failures_as `{other}`, which is not table, view or ephemeral",
                        node.name
                    ),
                )
                .help("use store_failures_as: table (the failing rows are copied), view (a view over the test's query) or ephemeral (nothing is stored)");
                if let Some(def) = node.test() {
                    let at = def.file.text[def.offset..]
                        .find(other)
                        .map_or(def.offset, |x| x + def.offset);
                    let len = if at == def.offset {
                        def.test_name.len()
                    } else {
                        other.len()
                    };
                    p = p.at(&def.file, at, len, "here");
                }
                return Err(p);
            }
            None => config
                .get("store_failures")
                .is_some_and(|v| truthy(Some(v)))
                .then_some(Kind::Table),
        };
        Ok(TestPlan {
            failing,
            store_as,
            fail_calc: config.str("fail_calc").unwrap_or("count(*)").to_string(),
            warn_if: config.str("warn_if").unwrap_or("!= 0").to_string(),
            error_if: config.str("error_if").unwrap_or("!= 0").to_string(),
        })
    }

    /// The statements that store the failing rows in the test's relation (`replaces`: the
    /// relation of the other kind an earlier setting left), and the count query.
    pub fn statements(
        &self,
        dialect: &dyn Dialect,
        node: &Node,
        replaces: Option<Kind>,
    ) -> (Vec<Statement>, String) {
        let (statements, source) = match self.store_as {
            Some(store_as) => (
                dialect.store_failures(&node.relation, store_as, replaces, &self.failing),
                dialect.select_all(&node.relation),
            ),
            None => (Vec::new(), self.failing.clone()),
        };
        let query = dialect.test_counts(&source, &self.fail_calc, &self.warn_if, &self.error_if);
        (statements, query)
    }

    /// What `target/run/` shows of a test: its statements, then its count query.
    pub fn script(statements: &[Statement], query: &str) -> String {
        let mut run_sql = statements
            .iter()
            .map(|s| s.sql.as_str())
            .collect::<Vec<_>>()
            .join(";\n\n");
        if !run_sql.is_empty() {
            run_sql.push_str(";\n\n");
        }
        run_sql.push_str(query);
        run_sql.push('\n');
        run_sql
    }
}

/// A config or result value read as a flag: true, or a non-zero number.
pub fn truthy(value: Option<&Json>) -> bool {
    match value {
        Some(Json::Bool(b)) => *b,
        Some(Json::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}
