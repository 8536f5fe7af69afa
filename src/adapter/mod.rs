//! Adapters: the only code that talks to a database. An `Adapter` is one run's view of the
//! target's warehouse: it opens it (turning a held lock into a clear diagnostic), knows which
//! schemas and relations exist, and hands each worker thread its own `Connection`. A
//! connection runs a node's statements by their kind, rolling back on failure so that nothing
//! half-built stays behind, reports typed failures (`Failure`), and answers templates'
//! introspection questions.
//!
//! DuckDB (`duckdb.rs`, in-process), Snowflake (`snowflake.rs`, its HTTP API) and BigQuery
//! (`bigquery.rs`, its REST API) are the adapters; a warehouse adds one file here and one arm
//! in `open`.

#[cfg(feature = "duckdb")]
mod duckdb;

#[cfg(feature = "duckdb")]
pub use self::duckdb::LazyCatalog;

pub mod bigquery;
pub mod snowflake;

use std::sync::Arc;

use crate::config::{Credentials, Target};
use crate::diagnostics::Problem;
use crate::dialect::Statement;
use crate::materialize::{Column, Existing, Kind};
use crate::render::{Introspect, QueryError, Relation};

/// One run's warehouse.
pub trait Adapter: Existing + Send + Sync {
    /// The database (catalog) relations without one live in.
    fn database(&self) -> &str;

    /// Where the data is, as a run's first line names it (a file's path).
    fn location(&self) -> &str;

    /// A connection for one worker thread.
    fn connect(&self) -> Result<Arc<dyn Connection>, Problem>;

    /// Create every schema the run will build in, up front, before any worker starts.
    fn create_schemas(&self, schemas: &[(Option<String>, String)]) -> Result<(), Problem>;

    /// Record what a successful plan left behind (`None`: nothing).
    fn record(&self, relation: &Relation, kind: Option<Kind>);

    /// Cancels every query running on this warehouse's connections, for Ctrl-C.
    fn interrupter(&self) -> Interrupt;

    /// A scratch warehouse for a unit test: empty, with the target's database and `catalogs`
    /// as empty catalogs (so relations keep their real names), and its connection.
    fn scratch(
        &self,
        target: &Target,
        catalogs: &std::collections::BTreeSet<String>,
    ) -> Result<Scratch, Problem>;
}

/// A unit test's scratch warehouse and the connection to use it through.
pub struct Scratch {
    pub adapter: Arc<dyn Adapter>,
    pub connection: Arc<dyn Connection>,
}

/// One worker thread's connection.
pub trait Connection: Introspect {
    /// Run statements in order; the rows the counting statements reported (the most any did),
    /// or `None` when the warehouse reported none. On failure an open transaction is rolled
    /// back and the error names the failing statement.
    fn run(&self, statements: &[Statement]) -> Result<Option<usize>, DbError> {
        self.run_rendering(statements, &mut |i| {
            Err(DbError {
                statement: i,
                message: "a hook has no SQL".to_string(),
                failure: Failure::Other,
                line: None,
            })
        })
    }

    /// `run`, where a `StatementKind::PendingHook` statement is rendered by `render` (given its index)
    /// right before it runs: a post-hook sees what the statements before it did (dbt renders
    /// a hook when it runs). `render` may use this connection for introspection.
    fn run_rendering(
        &self,
        statements: &[Statement],
        render: &mut dyn FnMut(usize) -> Result<String, DbError>,
    ) -> Result<Option<usize>, DbError>;

    /// The node whose statements come next, for a warehouse that tags its jobs with it
    /// (BigQuery's labels).
    fn working_on(&self, _unique_id: &str) {}

    /// What the warehouse said of the statements run since `working_on` beyond their rows, as
    /// dbt's `adapter_response` fields (`query_id`, `job_id`, `bytes_processed`…).
    fn response(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        None
    }

    /// The columns a query returns, from a `describe` statement (the query is not run).
    fn describe(&self, statement: &Statement) -> Result<Vec<Column>, DbError>;

    /// The columns of an existing relation, in order.
    fn relation_columns(&self, relation: &Relation) -> Result<Vec<Column>, DbError>;

    /// Every table and view with its columns, for `catalog.json` and the docs site.
    fn catalog(&self) -> Result<Vec<crate::artifacts::catalog::CatalogTable>, QueryError>;
}

/// Cancels running queries; called from the Ctrl-C handler.
pub type Interrupt = Box<dyn Fn() + Send + Sync>;

/// Open the target's warehouse for a run, read-only when asked (to read its catalog only).
pub fn open(target: &Target, read_only: bool) -> Result<Arc<dyn Adapter>, Problem> {
    match &target.credentials {
        #[cfg(feature = "duckdb")]
        Credentials::DuckDb(_) => Ok(Arc::new(self::duckdb::Warehouse::open_mode(
            target, read_only,
        )?)),
        #[cfg(not(feature = "duckdb"))]
        Credentials::DuckDb(_) => {
            let _ = read_only;
            Err(Problem::new(
                crate::diagnostics::Code::Database,
                "this xform was built without DuckDB",
            )
            .help("rebuild with the default features"))
        }
        Credentials::Snowflake(sf) => {
            let _ = read_only;
            Ok(Arc::new(snowflake::Warehouse::open(target, sf)?))
        }
        Credentials::BigQuery(bq) => {
            let _ = read_only;
            Ok(Arc::new(bigquery::Warehouse::open(target, bq)?))
        }
    }
}

/// Whether the target's data exists yet (DuckDB: its file does; a warehouse always is there).
/// Before the first build a compile's templates and the docs' catalog see no database at all.
pub fn data_exists(target: &Target) -> bool {
    match &target.credentials {
        Credentials::DuckDb(file) => !file.in_memory() && file.path.exists(),
        Credentials::Snowflake(_) | Credentials::BigQuery(_) => true,
    }
}

/// Open the target's warehouse to read its catalog only, for a run of nothing but unit tests:
/// read-only (another process may be writing to it), and empty when there is no data yet.
pub fn open_catalog(target: &Target) -> Result<Arc<dyn Adapter>, Problem> {
    let mut target = target.clone();
    match &mut target.credentials {
        Credentials::DuckDb(file) => {
            file.attach.clear();
            if !file.path.exists() {
                file.path = ":memory:".into();
            }
        }
        Credentials::Snowflake(_) | Credentials::BigQuery(_) => {}
    }
    open(&target, true)
}

/// What kind of failure a statement met, as the adapter tells it: nothing above the adapter
/// reads a database's error text to find out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A check statement (`StatementKind::Check`) returned rows: the first column of the first
    /// rows, and how many offending values there are in all.
    Check { values: Vec<String>, total: usize },
    /// The statement was cancelled (Ctrl-C).
    Interrupted,
    /// Another connection changed the same catalog entries at the same time; the statements
    /// were rolled back whole and may run again.
    Conflict,
    /// Anything else: the database's message says what.
    Other,
}

/// A failed statement.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    /// Index of the failing statement in what was run.
    pub statement: usize,
    pub message: String,
    pub failure: Failure,
    /// The line of the failing statement the database points at, when it says.
    pub line: Option<usize>,
}

impl Failure {
    /// A check's values as a message lists them: `a, b and 3 more`.
    pub fn listed(values: &[String], total: usize) -> String {
        let mut text = values.join(", ");
        if total > values.len() {
            text = format!("{text} and {} more", total - values.len());
        }
        text
    }
}

/// A warehouse's answer of text cells as a template's table: the cells of a column whose type
/// `numeric` accepts read as numbers.
pub(crate) fn text_table(
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Option<String>>>,
    numeric: impl Fn(&str) -> bool,
) -> crate::render::QueryTable {
    use serde_json::Value as Json;
    let numeric: Vec<bool> = columns.iter().map(|(_, t)| numeric(t)).collect();
    crate::render::QueryTable {
        columns: columns.into_iter().map(|(n, _)| n).collect(),
        rows: rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .zip(&numeric)
                    .map(|(cell, numeric)| match cell {
                        None => Json::Null,
                        Some(text) if *numeric => text
                            .parse::<i64>()
                            .map(Json::from)
                            .or_else(|_| text.parse::<f64>().map(Json::from))
                            .unwrap_or(Json::String(text)),
                        Some(text) => Json::String(text),
                    })
                    .collect()
            })
            .collect(),
    }
}

/// The failure of a `Check` statement that returned rows: the first column of each, and the
/// count of all (the first row's second column, else the rows).
pub(crate) fn check_failure(statement: usize, rows: &[Vec<Option<String>>]) -> DbError {
    let values: Vec<String> = rows
        .iter()
        .map(|r| r.first().cloned().flatten().unwrap_or_default())
        .collect();
    let total = rows
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .and_then(|t| t.parse().ok())
        .unwrap_or(values.len());
    DbError {
        statement,
        message: format!("repeated values: {}", Failure::listed(&values, total)),
        failure: Failure::Check { values, total },
        line: None,
    }
}

/// Catalog rows of one database (schema, table, table type, column, column type, position),
/// ordered by table and position, grouped into its tables.
pub(crate) fn catalog_tables(
    database: &str,
    rows: impl IntoIterator<Item = [String; 6]>,
) -> Vec<crate::artifacts::catalog::CatalogTable> {
    let mut tables: Vec<crate::artifacts::catalog::CatalogTable> = Vec::new();
    for [schema, name, kind, column, data_type, position] in rows {
        if tables
            .last()
            .is_none_or(|t| t.schema != schema || t.name != name)
        {
            tables.push(crate::artifacts::catalog::CatalogTable {
                database: database.to_string(),
                schema,
                name,
                kind,
                comment: None,
                columns: Vec::new(),
            });
        }
        let table = tables.last_mut().expect("a table was pushed");
        table
            .columns
            .push(crate::artifacts::catalog::CatalogColumn {
                name: column,
                data_type,
                index: position.parse().unwrap_or(table.columns.len() + 1),
                comment: None,
            });
    }
    tables
}

impl DbError {
    /// An error that is not a statement's (a plan that could not be made, a failed read).
    pub fn other(message: impl Into<String>) -> Self {
        DbError {
            statement: 0,
            message: message.into(),
            failure: Failure::Other,
            line: None,
        }
    }

    pub fn interrupted(&self) -> bool {
        self.failure == Failure::Interrupted
    }
}

/// A target of the given credentials, for the adapters' tests against stand-in servers.
#[cfg(test)]
pub(crate) fn test_target(database: &str, credentials: Credentials) -> Target {
    Target {
        profile_name: "p".into(),
        name: "t".into(),
        database: database.into(),
        schema: "s".into(),
        threads: 1,
        profiles_file: None,
        credentials,
        quote_policy: crate::relation::QuotePolicy::default(),
    }
}
