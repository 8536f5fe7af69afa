//! What `xform compile` assumes a warehouse holds when it cannot connect to one.
//!
//! By default nothing exists (`FirstRun`): every schema is created and every model built from
//! nothing. With `--assume-exists` every relation the project builds exists as its
//! materialization leaves it (`Assumed`), so an incremental model gets its incremental plan; the
//! columns such a plan needs come from a `catalog.json`, matched by node id, so a catalog
//! written on another target (a DuckDB build of the same project) serves a warehouse target.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::Existing;
use super::incremental::AdapterRules;
use crate::diagnostics::{Code, Problem};
use crate::graph::{Graph, Materialization, Node, ResourceType};
use crate::relation::{Column, Kind, Relation};

/// Nothing exists: the plan of a first run, every schema created, on a warehouse whose
/// adapter has these rules.
pub struct FirstRun(pub AdapterRules);

impl Existing for FirstRun {
    fn kind_of(&self, _relation: &Relation) -> Option<Kind> {
        None
    }

    fn schema_exists(&self, _database: Option<&str>, _schema: &str) -> bool {
        false
    }

    fn rules(&self) -> AdapterRules {
        self.0
    }
}

/// Every relation the project builds exists, as its materialization leaves it; no leftover of
/// an interrupted run does. Columns are the catalog's.
pub struct Assumed {
    kinds: HashMap<Relation, Kind>,
    columns: HashMap<String, Vec<Column>>,
    /// Where the columns came from, for diagnostics (`None`: no catalog).
    catalog: Option<String>,
    rules: AdapterRules,
}

impl Existing for Assumed {
    fn kind_of(&self, relation: &Relation) -> Option<Kind> {
        self.kinds.get(relation).copied()
    }

    fn schema_exists(&self, _database: Option<&str>, _schema: &str) -> bool {
        true
    }

    fn rules(&self) -> AdapterRules {
        self.rules
    }
}

impl Assumed {
    /// The project's relations, with the columns of `catalog` (a `catalog.json`) when given.
    pub fn new(
        graph: &Graph,
        catalog: Option<&Path>,
        rules: AdapterRules,
    ) -> Result<Assumed, Problem> {
        let kinds = graph
            .nodes
            .iter()
            .filter(|n| n.has_relation() && n.resource_type != ResourceType::Source)
            .map(|n| {
                let kind = match n.materialized() {
                    Materialization::View => Kind::View,
                    _ => Kind::Table,
                };
                (n.relation.clone(), kind)
            })
            .collect();
        let Some(path) = catalog else {
            return Ok(Assumed {
                kinds,
                columns: HashMap::new(),
                catalog: None,
                rules,
            });
        };
        let unreadable = |why: String| {
            Problem::new(
                Code::ProjectConfig,
                format!("the catalog `{}` cannot be read: {why}", path.display()),
            )
            .help("write it with `xform docs generate` on a build of this project, or leave out --catalog")
        };
        let text = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let doc: Json = serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
        let mut columns = HashMap::new();
        for section in ["nodes", "sources"] {
            let Some(entries) = doc[section].as_object() else {
                continue;
            };
            for (id, entry) in entries {
                let mut cols: Vec<(u64, Column)> = entry["columns"]
                    .as_object()
                    .map(|c| {
                        c.values()
                            .map(|c| {
                                (
                                    c["index"].as_u64().unwrap_or(u64::MAX),
                                    Column {
                                        name: c["name"].as_str().unwrap_or_default().to_string(),
                                        data_type: c["type"]
                                            .as_str()
                                            .unwrap_or_default()
                                            .to_string(),
                                    },
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                cols.sort_by_key(|(i, _)| *i);
                columns.insert(id.clone(), cols.into_iter().map(|(_, c)| c).collect());
            }
        }
        Ok(Assumed {
            kinds,
            columns,
            catalog: Some(path.display().to_string()),
            rules,
        })
    }

    /// The columns of the node's existing relation, from the catalog.
    pub fn columns_of(&self, node: &Node) -> Result<Vec<Column>, Problem> {
        if let Some(columns) = self.columns.get(&node.unique_id).filter(|c| !c.is_empty()) {
            return Ok(columns.clone());
        }
        let (why, help) = match &self.catalog {
            Some(path) => (
                format!("the catalog `{path}` has no columns for it"),
                "write the catalog again with `xform docs generate` after building this model"
                    .to_string(),
            ),
            None => (
                "no catalog gives them".to_string(),
                "pass --catalog target/catalog.json (`xform docs generate` on a build of this project writes it)".to_string(),
            ),
        };
        let mut p = Problem::new(
            Code::ProjectConfig,
            format!(
                "the incremental plan of `{}` needs the columns of its existing table, and {why}",
                node.name
            ),
        )
        .help(help);
        if let Some(file) = &node.file {
            p = p.at(file, 0, 0, "this model");
        }
        Err(p)
    }
}
