//! `catalog.json`: what the database holds for each node's relation (its kind, columns, types
//! and comments), as dbt's `docs generate` writes it. The tables themselves are read by
//! `adapter::read_catalog`; this module only matches them to nodes and writes the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value as Json, json};

use super::{metadata, write_file};
use crate::config::Target;
use crate::diagnostics::Problem;
use crate::graph::{Graph, Node, ResourceType};
use crate::render::RunInfo;

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
/// source (under `sources`) whose relation the database has.
pub fn write_catalog(
    target_dir: &Path,
    project: &str,
    target: &Target,
    run: &RunInfo,
    graph: &Graph,
    catalog: &Catalog,
) -> Result<(), Problem> {
    let mut nodes = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    for node in &graph.nodes {
        let Some(table) = catalog.table_of(node, target) else {
            continue;
        };
        let entry = json!({
            "metadata": {
                "type": table.kind,
                "schema": table.schema,
                "name": table.name,
                "database": table.database,
                "comment": table.comment,
                "owner": null,
            },
            "columns": table.columns.iter().map(|c| {
                (c.name.clone(), json!({
                    "type": c.data_type,
                    "index": c.index,
                    "name": c.name,
                    "comment": c.comment,
                }))
            }).collect::<serde_json::Map<String, Json>>(),
            "stats": {
                "has_stats": {
                    "id": "has_stats",
                    "label": "Has Stats?",
                    "value": false,
                    "include": false,
                    "description": "Indicates whether there are statistics for this table",
                },
            },
            "unique_id": node.unique_id,
        });
        let into = if node.resource_type == ResourceType::Source {
            &mut sources
        } else {
            &mut nodes
        };
        into.insert(node.unique_id.clone(), entry);
    }
    let doc = json!({
        "metadata": metadata(CATALOG_SCHEMA, project, target, run),
        "nodes": nodes,
        "sources": sources,
        "errors": null,
    });
    let text = serde_json::to_string(&doc).unwrap_or_default();
    write_file(&target_dir.join("catalog.json"), text.as_bytes())
}
