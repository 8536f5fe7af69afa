//! What a render may ask of the rest of xform: `Resolve` (what `ref()` and `source()` return:
//! the graph's relations) and `Introspect` (the database, for `run_query`, `statement` and
//! `adapter.get_relation`), with the calls a render records (`RefCall`, `Resolved`). The graph
//! and the adapter implement them; nothing here knows either.

use serde_json::Value as Json;

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
    /// What it names: a model, seed or snapshot, or for `ref('m', v=2)` the version's
    /// `m_v2`.
    pub name: String,
    /// `v=` / `version=` as written.
    pub version: Option<String>,
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
