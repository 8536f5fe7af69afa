//! `catalog.json`: what the database holds for each node's relation (its kind, columns, types
//! and comments), as dbt's `docs generate` writes it. The tables themselves are read by
//! `adapter::read_catalog`; this module only matches them to nodes and writes the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value as Json, json};

use super::{metadata, write_file};
use crate::config::RunInfo;
use crate::config::Target;
use crate::diagnostics::Problem;
use crate::graph::{Graph, Node, ResourceType};

pub const CATALOG_SCHEMA: &str = "https://schemas.getdbt.com/dbt/catalog/v1.json";

/// One table or view of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogTable {
    pub database: String,
    pub schema: String,
    pub name: String,
    /// `BASE TABLE` or `VIEW`, as `information_schema.tables` names them.
    pub kind: String,
    pub comment: Option<String>,
    /// In the order of the relation.
    pub columns: Vec<CatalogColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub name: String,
    pub data_type: String,
    /// 1-based position.
    pub index: usize,
    pub comment: Option<String>,
}

/// The database's tables by lowercased database, schema and name (DuckDB compares identifiers
/// without case).
#[derive(Debug, Default)]
pub struct Catalog {
    tables: BTreeMap<(String, String, String), CatalogTable>,
}

impl Catalog {
    pub fn new(tables: Vec<CatalogTable>) -> Self {
        Catalog {
            tables: tables
                .into_iter()
                .map(|t| {
                    let key = (
                        t.database.to_lowercase(),
                        t.schema.to_lowercase(),
                        t.name.to_lowercase(),
                    );
                    (key, t)
                })
                .collect(),
        }
    }

    /// The table or view a node builds or reads, when the database has it. Ephemeral models,
    /// tests and unit tests have none.
    pub fn table_of(&self, node: &Node, target: &Target) -> Option<&CatalogTable> {
        if !node.has_relation() {
            return None;
        }
        let r = &node.relation;
        let database = r.database.as_deref().unwrap_or(&target.database);
        self.tables.get(&(
            database.to_lowercase(),
            r.schema.to_lowercase(),
            r.identifier.to_lowercase(),
        ))
    }
}

/// Write `catalog.json`: an entry for every model, seed and snapshot (under `nodes`) and
/// source (under `sources`) whose relation the database has; columns in the relation's order.
pub fn write_catalog(
    target_dir: &Path,
    project: &str,
    target: &Target,
    run: &RunInfo,
    graph: &Graph,
    catalog: &Catalog,
) -> Result<(), Problem> {
    let mut nodes = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for node in &graph.nodes {
        let Some(table) = catalog.table_of(node, target) else {
            continue;
        };
        let entry = Entry {
            metadata: Metadata {
                kind: &table.kind,
                schema: &table.schema,
                name: &table.name,
                database: &table.database,
                comment: table.comment.as_deref(),
                owner: None,
            },
            columns: Columns(&table.columns),
            stats: json!({
                "has_stats": {
                    "id": "has_stats",
                    "label": "Has Stats?",
                    "value": false,
                    "include": false,
                    "description": "Indicates whether there are statistics for this table",
                },
            }),
            unique_id: &node.unique_id,
        };
        let into = if node.resource_type == ResourceType::Source {
            &mut sources
        } else {
            &mut nodes
        };
        into.insert(node.unique_id.as_str(), entry);
    }
    let doc = Doc {
        metadata: metadata(CATALOG_SCHEMA, project, target, run),
        nodes,
        sources,
        errors: None,
    };
    let text = serde_json::to_string(&doc).unwrap_or_default();
    write_file(&target_dir.join("catalog.json"), text.as_bytes())
}

#[derive(Serialize)]
struct Doc<'a> {
    metadata: Json,
    nodes: BTreeMap<&'a str, Entry<'a>>,
    sources: BTreeMap<&'a str, Entry<'a>>,
    errors: Option<()>,
}

#[derive(Serialize)]
struct Entry<'a> {
    metadata: Metadata<'a>,
    columns: Columns<'a>,
    stats: Json,
    unique_id: &'a str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    schema: &'a str,
    name: &'a str,
    database: &'a str,
    comment: Option<&'a str>,
    owner: Option<()>,
}

/// A relation's columns as a map by name, in the relation's order (as dbt writes them).
struct Columns<'a>(&'a [CatalogColumn]);

impl Serialize for Columns<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for c in self.0 {
            map.serialize_entry(
                &c.name,
                &json!({
                    "type": c.data_type,
                    "index": c.index,
                    "name": c.name,
                    "comment": c.comment,
                }),
            )?;
        }
        map.end()
    }
}
