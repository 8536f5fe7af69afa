//! Materializations as dialect-neutral plans: what steps build a node (create a schema, build
//! under a temporary name, swap it in inside one transaction), without any SQL text.
//!
//! A plan is decided from the node's materialization and what already exists in the
//! warehouse; `dialect` turns its steps into statements and `adapter` runs them. Nothing here
//! executes or renders SQL.

use std::path::PathBuf;

use crate::diagnostics::{Code, Problem};
use crate::graph::{Node, ResourceType};
use crate::render::Relation;

/// The kind of an existing relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Table,
    View,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    CreateSchema {
        database: Option<String>,
        schema: String,
    },
    Drop {
        relation: Relation,
        kind: Kind,
    },
    Begin,
    Commit,
    CreateTableAs {
        relation: Relation,
        sql: String,
    },
    CreateView {
        relation: Relation,
        sql: String,
    },
    Rename {
        from: Relation,
        to: String,
        kind: Kind,
    },
    CreateTableFromCsv {
        relation: Relation,
        path: PathBuf,
        delimiter: String,
        column_types: Vec<(String, String)>,
    },
}

/// The steps that build one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The kind of relation the node ends up as.
    pub result: Option<Kind>,
}

pub const TMP_SUFFIX: &str = "__dbt_tmp";
pub const BACKUP_SUFFIX: &str = "__dbt_backup";

/// What the warehouse holds now, as a plan needs to know it.
pub trait Existing {
    fn kind_of(&self, relation: &Relation) -> Option<Kind>;
    fn schema_exists(&self, database: Option<&str>, schema: &str) -> bool;
}

/// Build the plan for a node. `sql` is the compiled SQL (models only).
pub fn plan(node: &Node, sql: &str, existing: &dyn Existing) -> Result<Plan, Problem> {
    let target = &node.relation;
    let tmp = target.with_suffix(TMP_SUFFIX);
    let mut steps = Vec::new();
    if !existing.schema_exists(target.database.as_deref(), &target.schema) {
        steps.push(Step::CreateSchema {
            database: target.database.clone(),
            schema: target.schema.clone(),
        });
    }
    // Leftovers of an interrupted earlier run.
    for leftover in [&tmp, &target.with_suffix(BACKUP_SUFFIX)] {
        if let Some(kind) = existing.kind_of(leftover) {
            steps.push(Step::Drop {
                relation: leftover.clone(),
                kind,
            });
        }
    }
    let (build, kind) = match (node.resource_type, node.materialized()) {
        (ResourceType::Seed, _) => {
            let column_types = node
                .config
                .get("column_types")
                .and_then(serde_json::Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), String::from),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                Step::CreateTableFromCsv {
                    relation: tmp.clone(),
                    path: node.seed_path.clone().unwrap_or_default(),
                    delimiter: node.config.str("delimiter").unwrap_or(",").to_string(),
                    column_types,
                },
                Kind::Table,
            )
        }
        (_, "table") => (
            Step::CreateTableAs {
                relation: tmp.clone(),
                sql: sql.to_string(),
            },
            Kind::Table,
        ),
        (_, "view") => (
            Step::CreateView {
                relation: tmp.clone(),
                sql: sql.to_string(),
            },
            Kind::View,
        ),
        (ResourceType::Source, _) | (_, "ephemeral") => return Ok(Plan::default()),
        (_, other) => {
            let p = Problem::new(
                Code::UnsupportedMaterialization,
                format!(
                    "model `{}` is materialized as `{other}`, which xform cannot build yet",
                    node.name
                ),
            )
            .help("use `table`, `view` or `ephemeral`");
            let p = match &node.file {
                Some(file) => match crate::graph::find_call(&file.text, "materialized=", other)
                    .or_else(|| file.text.find(other).map(|at| (at, other.len())))
                {
                    Some((at, len)) => p.at(file, at, len, "this materialization"),
                    None => p,
                },
                None => p,
            };
            return Err(p);
        }
    };
    steps.push(Step::Begin);
    steps.push(build);
    if let Some(old) = existing.kind_of(target) {
        steps.push(Step::Drop {
            relation: target.clone(),
            kind: old,
        });
    }
    steps.push(Step::Rename {
        from: tmp,
        to: target.identifier.clone(),
        kind,
    });
    steps.push(Step::Commit);
    Ok(Plan {
        steps,
        result: Some(kind),
    })
}
