//! Dialects turn plan steps into SQL statements. DuckDB is the dialect executed today; the
//! boundary exists so that BigQuery and Snowflake can render the same plans.

pub mod duckdb;

use crate::materialize::Step;

/// One SQL statement and, when it wraps a model's SQL, the line where that SQL starts, so that
/// a database error's line can be traced back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub body_line: Option<usize>,
    /// A relation whose row count is the statement's "rows affected" (the statement builds it).
    pub counts: Option<String>,
}

pub trait Dialect {
    fn statement(&self, step: &Step) -> Statement;
    /// A statement that returns the name and type of each column of a query, without running it.
    fn describe_query(&self, sql: &str) -> Statement;
}
