//! Relation naming: where each node builds. A model's, seed's or snapshot's database, schema
//! (through the project's `generate_schema_name` macro, or dbt's default) and alias; a
//! source's declared location; a data test's audit relation for its failing rows.

use std::sync::Arc;

use minijinja::value::Value;

use super::nodes::model_value;
use super::resolve::NoResolver;
use crate::config::Target;
use crate::diagnostics::Problem;
use crate::graph::Node;
use crate::project::NodeConfig;
use crate::relation::Relation;
use crate::render::Renderer;

/// A relation of the target's warehouse: named with its dialect's quoting.
pub(super) fn in_target(
    target: &Target,
    database: Option<&str>,
    schema: &str,
    identifier: &str,
) -> Relation {
    Relation {
        quoting: crate::dialect::quoting(target),
        ..Relation::new(database, schema, identifier)
    }
}

/// Where a node builds: its `database`, its `alias` or name, and the schema from the project's
/// `generate_schema_name` macro, or dbt's default (the target schema, `_<schema>` appended).
pub(super) fn relation_for(
    renderer: &Renderer,
    target: &Target,
    node: &Node,
) -> Result<Relation, Problem> {
    if !renderer.has_macro("generate_schema_name") {
        return Ok(default_relation(target, &node.config, &node.ref_name()));
    }
    let custom = node.config.str("schema");
    let args = [
        custom.map_or(Value::from(()), Value::from),
        model_value(node),
    ];
    let schema = renderer.call_macro("generate_schema_name", &args, Arc::new(NoResolver))?;
    let database = node.config.str("database").unwrap_or(&target.database);
    let name = node.ref_name();
    let identifier = node.config.str("alias").unwrap_or(&name);
    Ok(in_target(target, Some(database), schema.trim(), identifier))
}

/// `relation_for` without a `generate_schema_name` macro.
pub(super) fn default_relation(target: &Target, config: &NodeConfig, name: &str) -> Relation {
    let schema = match config.str("schema").map(str::trim) {
        Some(c) if !c.is_empty() => format!("{}_{c}", target.schema),
        _ => target.schema.clone(),
    };
    let database = config.str("database").unwrap_or(&target.database);
    let identifier = config.str("alias").unwrap_or(name);
    in_target(target, Some(database), &schema, identifier)
}

/// Where a snapshot builds: legacy `target_schema` / `target_database` place it as given;
/// otherwise `schema` goes through `generate_schema_name` like a model's.
pub(super) fn snapshot_relation(
    renderer: &Renderer,
    target: &Target,
    node: &Node,
) -> Result<Relation, Problem> {
    Ok(match node.config.str("target_schema") {
        Some(schema) => in_target(
            target,
            Some(
                node.config
                    .str("target_database")
                    .or(node.config.str("database"))
                    .unwrap_or(&target.database),
            ),
            schema,
            node.config.str("alias").unwrap_or(&node.name),
        ),
        None => relation_for(renderer, target, node)?,
    })
}

/// Where a test stores its failing rows: `<target schema>_dbt_test__audit.<test name>`.
/// Where a test stores its failures; `name` is the test's short name (its file's).
pub(super) fn audit_relation(target: &Target, config: &NodeConfig, name: &str) -> Relation {
    let schema = match config.str("schema") {
        Some(s) => format!("{}_{s}", target.schema),
        None => format!("{}_dbt_test__audit", target.schema),
    };
    in_target(
        target,
        Some(config.str("database").unwrap_or(&target.database)),
        &schema,
        config.str("alias").unwrap_or(name),
    )
}

pub(super) fn source_relation(target: &Target, source: &crate::project::SourceTable) -> Relation {
    let database = source.database.as_deref().unwrap_or(&target.database);
    let mut relation = in_target(target, Some(database), &source.schema, &source.identifier);
    // dbt-duckdb's `external_location`: `{name}` and the other fields filled in, quoted as a
    // path unless it is a call (`read_csv(...)`) or quoted already.
    if let Some(location) = &source.external_location {
        let filled = location
            .replace("{name}", &source.name)
            .replace("{identifier}", &source.identifier)
            .replace("{schema}", &source.schema)
            .replace("{database}", database);
        relation.external = Some(if filled.contains('(') || filled.starts_with('\'') {
            filled
        } else {
            format!("'{}'", filled.replace('\'', "''"))
        });
    }
    relation
}
