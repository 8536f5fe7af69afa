//! Model contracts: a model with `contract: {enforced: true}` must return exactly the columns
//! its YAML declares, with their `data_type`s, before anything is written; a table is then
//! created with those columns, types and `constraints:` and filled from the query, as dbt does.
//!
//! This module decides and checks; the dialect writes the DDL (`Build::Contracted`).

use serde_json::Value as Json;

use crate::diagnostics::{Code, Problem};
use crate::graph::Node;
use crate::relation::Column;

/// An enforced contract: the declared columns, in their order, and the model-level
/// constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub columns: Vec<ContractColumn>,
    pub constraints: Vec<Constraint>,
}

/// A declared column: its name, its `data_type` as written, its own constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractColumn {
    pub name: String,
    pub data_type: String,
    pub constraints: Vec<Constraint>,
}

/// One constraint: what it asserts and, at model level, on which columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub kind: ConstraintKind,
    pub name: Option<String>,
    /// The columns of a model-level constraint (empty for a column's own).
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintKind {
    NotNull,
    Unique,
    PrimaryKey,
    /// `check` with its boolean expression.
    Check(String),
    /// `foreign_key`: the referenced relation and columns (`to:` with `to_columns:`), or an
    /// `expression:` as written (`other_table (id)`).
    ForeignKey {
        references: String,
        columns: Vec<String>,
    },
    /// `custom`: an expression written into the DDL as it is.
    Custom(String),
}

/// The key under which the compile stage records the relation a foreign key's `to:` names.
pub const TO_RELATION: &str = "__to_relation";

/// Whether the node's config enforces a contract.
pub fn enforced(node: &Node) -> bool {
    node.config
        .get("contract")
        .and_then(|c| c.get("enforced"))
        .and_then(Json::as_bool)
        .unwrap_or(false)
}

impl Contract {
    /// The node's enforced contract, `None` when it has none. Every declared column needs a
    /// `data_type`, and an ephemeral model cannot have one (there is no relation to check).
    pub fn of(node: &Node) -> Result<Option<Contract>, Problem> {
        if !enforced(node) {
            return Ok(None);
        }
        let at = |p: Problem| match &node.file {
            Some(file) => p.at(file, 0, 0, "this model"),
            None => p,
        };
        if node.is_ephemeral() {
            return Err(at(Problem::new(
                Code::Contract,
                format!(
                    "model `{}` is ephemeral and has an enforced contract: an ephemeral model has no relation to check",
                    node.name
                ),
            )
            .help("materialize it as a table, view or incremental model, or set `contract: {enforced: false}`")));
        }
        let untyped: Vec<&str> = node
            .columns
            .iter()
            .filter(|c| c.data_type.as_deref().is_none_or(|t| t.trim().is_empty()))
            .map(|c| c.name.as_str())
            .collect();
        if !untyped.is_empty() {
            let p = Problem::new(
                Code::Contract,
                format!(
                    "model `{}` enforces a contract, but the column(s) {} have no `data_type`",
                    node.name,
                    untyped
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .help(format!(
                "give every column of the contract a `data_type:` in {}",
                node.patch_path.as_deref().unwrap_or("the model's YAML")
            ));
            return Err(at(p));
        }
        let mut columns = Vec::with_capacity(node.columns.len());
        for c in &node.columns {
            let mut constraints = Vec::new();
            for raw in &c.constraints {
                constraints.push(constraint(node, raw, false)?);
            }
            columns.push(ContractColumn {
                name: c.name.clone(),
                data_type: c.data_type.clone().unwrap_or_default(),
                constraints,
            });
        }
        let mut constraints = Vec::new();
        for raw in &node.constraints {
            constraints.push(constraint(node, raw, true)?);
        }
        Ok(Some(Contract {
            columns,
            constraints,
        }))
    }

    /// Compare the query's columns with the contract's (`declared`: the contract's types as
    /// the warehouse names them, in order). On a mismatch, dbt's table of every difference.
    pub fn check(&self, node: &Node, query: &[Column], declared: &[Column]) -> Result<(), Problem> {
        let mut rows: Vec<[String; 4]> = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            let contract_type = declared
                .get(i)
                .map_or_else(|| c.data_type.clone(), |d| d.data_type.clone());
            match query.iter().find(|q| q.name.eq_ignore_ascii_case(&c.name)) {
                None => rows.push([
                    c.name.clone(),
                    String::new(),
                    contract_type,
                    "missing in definition".to_string(),
                ]),
                Some(q) if !same_type(&q.data_type, &contract_type, &c.data_type) => rows.push([
                    c.name.clone(),
                    q.data_type.clone(),
                    contract_type,
                    "data type mismatch".to_string(),
                ]),
                Some(_) => {}
            }
        }
        for q in query {
            if !self
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&q.name))
            {
                rows.push([
                    q.name.clone(),
                    q.data_type.clone(),
                    String::new(),
                    "missing in contract".to_string(),
                ]);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let p = Problem::new(
            Code::Contract,
            format!(
                "model `{}` has an enforced contract that failed: its query's columns differ from its YAML",
                node.name
            ),
        )
        .help(format!(
            "make the name, data_type and number of columns in {} match the model's query:\n\n{}",
            node.patch_path.as_deref().unwrap_or("the model's YAML"),
            table(&rows)
        ))
        .preformatted();
        Err(match &node.file {
            Some(file) => p.at(file, 0, 0, "this model's query"),
            None => p,
        })
    }
}

/// Whether the query's type satisfies the contract's. A contract type written without
/// parameters (`decimal`, `varchar`) accepts any parameters of that type.
fn same_type(query: &str, declared: &str, written: &str) -> bool {
    let base = |t: &str| t.split('(').next().unwrap_or(t).trim().to_ascii_uppercase();
    if query.eq_ignore_ascii_case(declared) {
        return true;
    }
    !written.contains('(') && base(query) == base(declared)
}

/// dbt's mismatch table: `| column_name | definition_type | contract_type | mismatch_reason |`.
fn table(rows: &[[String; 4]]) -> String {
    let header = [
        "column_name",
        "definition_type",
        "contract_type",
        "mismatch_reason",
    ];
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 4]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    let mut out = vec![
        line(header),
        line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str)),
    ];
    for row in rows {
        out.push(line(row.each_ref().map(String::as_str)));
    }
    out.join("\n")
}

/// One `constraints:` entry.
fn constraint(node: &Node, raw: &Json, model_level: bool) -> Result<Constraint, Problem> {
    let bad = |what: String| {
        let p = Problem::new(
            Code::Contract,
            format!("a constraint of model `{}` {what}", node.name),
        )
        .help("write constraints as `{type: not_null}`, `{type: check, expression: \"id > 0\"}` or `{type: foreign_key, to: ref('other'), to_columns: [id]}`");
        match &node.file {
            Some(file) => p.at(file, 0, 0, "this model"),
            None => p,
        }
    };
    let text = |key: &str| raw.get(key).and_then(Json::as_str).map(String::from);
    let list = |key: &str| -> Vec<String> {
        match raw.get(key) {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(Json::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let Some(kind) = text("type") else {
        return Err(bad("has no `type:`".to_string()));
    };
    let expression = text("expression");
    let kind = match kind.as_str() {
        "not_null" => ConstraintKind::NotNull,
        "unique" => ConstraintKind::Unique,
        "primary_key" => ConstraintKind::PrimaryKey,
        "check" => match expression {
            Some(e) => ConstraintKind::Check(e),
            None => return Err(bad("of type `check` has no `expression:`".to_string())),
        },
        // `to:` is resolved to a relation once the graph is built; before that (and for a `to:`
        // that is no `ref()`/`source()`) it stands as written.
        "foreign_key" => match (text(TO_RELATION).or_else(|| text("to")), expression) {
            (Some(references), _) => ConstraintKind::ForeignKey {
                references,
                columns: list("to_columns"),
            },
            (None, Some(e)) => ConstraintKind::ForeignKey {
                references: e,
                columns: Vec::new(),
            },
            (None, None) => {
                return Err(bad(
                    "of type `foreign_key` names no `to:` (with `to_columns:`) or `expression:`"
                        .to_string(),
                ));
            }
        },
        "custom" => match expression {
            Some(e) => ConstraintKind::Custom(e),
            None => return Err(bad("of type `custom` has no `expression:`".to_string())),
        },
        other => {
            return Err(bad(format!(
                "has the unknown type `{other}` (not_null, unique, primary_key, check, foreign_key or custom)"
            )));
        }
    };
    let columns = if model_level {
        list("columns")
    } else {
        Vec::new()
    };
    if model_level
        && columns.is_empty()
        && !matches!(kind, ConstraintKind::Check(_) | ConstraintKind::Custom(_))
    {
        return Err(bad("at model level names no `columns:`".to_string()));
    }
    Ok(Constraint {
        kind,
        name: text("name"),
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mismatch_table_lines_up() {
        let rows = [[
            "id".to_string(),
            "INTEGER".to_string(),
            "VARCHAR".to_string(),
            "data type mismatch".to_string(),
        ]];
        assert_eq!(
            table(&rows),
            "| column_name | definition_type | contract_type | mismatch_reason    |\n\
             | ----------- | --------------- | ------------- | ------------------ |\n\
             | id          | INTEGER         | VARCHAR       | data type mismatch |"
        );
    }

    #[test]
    fn a_type_without_parameters_accepts_any() {
        assert!(same_type("DECIMAL(10,2)", "DECIMAL(18,3)", "decimal"));
        assert!(!same_type(
            "DECIMAL(10,2)",
            "DECIMAL(18,3)",
            "decimal(18,3)"
        ));
        assert!(same_type("INTEGER", "INTEGER", "int"));
        assert!(!same_type("BIGINT", "INTEGER", "int"));
    }
}
