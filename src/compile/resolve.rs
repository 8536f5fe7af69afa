//! Resolvers: what `ref()` and `source()` return while rendering. The graph's relations (with
//! a microbatch window's filter on inputs that have an `event_time`), or nothing at all in the
//! parse pass, which only records the calls.

use std::collections::HashMap;
use std::sync::Arc;

use crate::dialect::Dialect;
use crate::materialize::microbatch::Window;
use crate::render::{Relation, Resolve};

/// Resolves refs and sources to the relations the graph assigned.
#[derive(Debug, Default)]
pub struct GraphResolver {
    pub(super) refs: HashMap<String, Relation>,
    pub(super) sources: HashMap<(String, String), Relation>,
    /// The `event_time` column of the models and sources that have one.
    pub(super) ref_event_times: HashMap<String, String>,
    pub(super) source_event_times: HashMap<(String, String), String>,
}

/// Resolves like the graph, but an input with an `event_time` reads only the rows of one
/// microbatch window: `(select * from <relation> where <event_time in the window>)`.
pub(super) struct BatchResolver {
    pub(super) graph: Arc<GraphResolver>,
    pub(super) window: Window,
    pub(super) dialect: &'static dyn Dialect,
}

impl BatchResolver {
    fn filtered(
        &self,
        relation: Option<Relation>,
        event_time: Option<&String>,
    ) -> Option<Relation> {
        let mut relation = relation?;
        if let Some(column) = event_time {
            relation.filter = Some(self.dialect.time_window(
                column,
                self.window.start,
                self.window.end,
            ));
        }
        Some(relation)
    }
}

impl Resolve for BatchResolver {
    fn resolve_ref(&self, package: Option<&str>, name: &str) -> Option<Relation> {
        self.filtered(
            self.graph.resolve_ref(package, name),
            self.graph.ref_event_times.get(name),
        )
    }

    fn resolve_source(&self, source: &str, table: &str) -> Option<Relation> {
        self.filtered(
            self.graph.resolve_source(source, table),
            self.graph
                .source_event_times
                .get(&(source.to_string(), table.to_string())),
        )
    }
}

impl Resolve for GraphResolver {
    fn resolve_ref(&self, _package: Option<&str>, name: &str) -> Option<Relation> {
        self.refs.get(name).cloned()
    }

    fn resolve_source(&self, source: &str, table: &str) -> Option<Relation> {
        self.sources
            .get(&(source.to_string(), table.to_string()))
            .cloned()
    }
}

/// Resolves nothing: the parse pass only records calls.
pub(super) struct NoResolver;

impl Resolve for NoResolver {
    fn resolve_ref(&self, _package: Option<&str>, _name: &str) -> Option<Relation> {
        None
    }

    fn resolve_source(&self, _source: &str, _table: &str) -> Option<Relation> {
        None
    }
}
