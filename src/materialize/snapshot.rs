//! Snapshots (slowly changing dimensions, type 2): reading their configuration and planning a
//! run.
//!
//! Every run stages the snapshot's query in `<name>__dbt_src` and checks it is unique on
//! `unique_key` before anything is written. The first run creates the table from it with the
//! meta columns; later runs add new source columns to the table, stage the changes (new and
//! changed rows, rows to close, hard deletes) in `<name>__dbt_tmp`, close the current rows
//! that changed, and insert the new versions, all in one transaction. The SQL of each step is
//! the dialect's; this module decides which steps run and with what.

use serde_json::Value as Json;

use super::incremental::string_list;
use super::{Column, Existing, Kind, Plan, Step, TMP_SUFFIX, prelude};
use crate::diagnostics::{Code, Problem};
use crate::graph::Node;

/// The suffix of the relation holding the snapshot query's rows during a run.
pub const SOURCE_SUFFIX: &str = "__dbt_src";

/// How a changed row is recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// The row's `updated_at` is newer than the current version's.
    Timestamp { updated_at: String },
    /// One of the columns differs from the current version (`None`: every column).
    Check { columns: Option<Vec<String>> },
}

/// What happens to a current row whose key is gone from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardDeletes {
    Ignore,
    Invalidate,
    NewRecord,
}

/// The names of the meta columns (`snapshot_meta_column_names`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetaColumns {
    pub scd_id: String,
    pub updated_at: String,
    pub valid_from: String,
    pub valid_to: String,
    pub is_deleted: String,
}

/// Everything the dialect needs to write a snapshot's SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub unique_key: Vec<String>,
    pub strategy: Strategy,
    pub hard_deletes: HardDeletes,
    pub meta: MetaColumns,
    /// `dbt_valid_to_current`: an SQL expression for the `valid_to` of current rows (null when
    /// unset).
    pub valid_to_current: Option<String>,
    /// The columns of the snapshot query, in order.
    pub columns: Vec<String>,
}

fn problem(node: &Node, key: &str, message: String, help: &str) -> Problem {
    let p = Problem::new(Code::SnapshotConfig, message).help(help.to_string());
    match &node.file {
        Some(file) => match file.text.find(key) {
            Some(at) => p.at(file, at, key.len(), "here"),
            None => p,
        },
        None => p,
    }
}

impl Spec {
    /// The meta columns of a snapshot table, in dbt's order.
    pub fn meta_columns(&self) -> Vec<String> {
        let m = &self.meta;
        let mut cols = vec![
            m.scd_id.clone(),
            m.updated_at.clone(),
            m.valid_from.clone(),
            m.valid_to.clone(),
        ];
        if self.hard_deletes == HardDeletes::NewRecord {
            cols.push(m.is_deleted.clone());
        }
        cols
    }

    /// The `valid_to` of a current row: a null of the timestamp `ts`'s type
    /// (`nullif(ts, ts)`), or `dbt_valid_to_current`.
    pub fn open_valid_to(&self, ts: &str) -> String {
        match &self.valid_to_current {
            Some(current) => format!("coalesce(nullif({ts}, {ts}), {current})"),
            None => format!("nullif({ts}, {ts})"),
        }
    }

    /// Whether a row is current, given its `valid_to` column as written.
    pub fn is_current(&self, valid_to: &str) -> String {
        match &self.valid_to_current {
            Some(current) => format!("({valid_to} is null or {valid_to} = {current})"),
            None => format!("{valid_to} is null"),
        }
    }

    /// Read and check a snapshot's configuration. `columns` are the query's columns (none when
    /// they are unknown).
    pub fn of(node: &Node, columns: &[Column]) -> Result<Spec, Problem> {
        let unique_key = string_list(node, "unique_key")?;
        if unique_key.is_empty() {
            return Err(problem(
                node,
                "config",
                format!("snapshot `{}` has no unique_key", node.name),
                "set unique_key to the column (or list of columns) that identifies a row",
            ));
        }
        let strategy = match node.config.str("strategy") {
            Some("timestamp") => match node.config.str("updated_at") {
                Some(col) => Strategy::Timestamp {
                    updated_at: col.to_string(),
                },
                None => {
                    return Err(problem(
                        node,
                        "timestamp",
                        format!(
                            "snapshot `{}` uses the timestamp strategy without `updated_at`",
                            node.name
                        ),
                        "set updated_at to the column that says when a row last changed",
                    ));
                }
            },
            Some("check") => match node.config.get("check_cols") {
                Some(Json::String(all)) if all == "all" => Strategy::Check { columns: None },
                Some(Json::Array(_) | Json::String(_)) => Strategy::Check {
                    columns: Some(string_list(node, "check_cols")?),
                },
                _ => {
                    return Err(problem(
                        node,
                        "check",
                        format!(
                            "snapshot `{}` uses the check strategy without `check_cols`",
                            node.name
                        ),
                        "set check_cols to a list of columns, or to 'all'",
                    ));
                }
            },
            other => {
                return Err(problem(
                    node,
                    other.unwrap_or("config"),
                    match other {
                        Some(s) => {
                            format!("snapshot `{}` has the unknown strategy `{s}`", node.name)
                        }
                        None => format!("snapshot `{}` has no strategy", node.name),
                    },
                    "set strategy to 'timestamp' (with updated_at) or 'check' (with check_cols)",
                ));
            }
        };
        let legacy = node
            .config
            .get("invalidate_hard_deletes")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let hard_deletes = match node.config.str("hard_deletes") {
            None if legacy => HardDeletes::Invalidate,
            None | Some("ignore") => HardDeletes::Ignore,
            Some("invalidate") => HardDeletes::Invalidate,
            Some("new_record") => HardDeletes::NewRecord,
            Some(other) => {
                return Err(problem(
                    node,
                    other,
                    format!(
                        "snapshot `{}` has the unknown hard_deletes `{other}`",
                        node.name
                    ),
                    "use ignore, invalidate or new_record",
                ));
            }
        };
        let names = node.config.get("snapshot_meta_column_names");
        let name = |key: &str| {
            names
                .and_then(|m| m.get(key))
                .and_then(Json::as_str)
                .unwrap_or(key)
                .to_string()
        };
        let meta = MetaColumns {
            scd_id: name("dbt_scd_id"),
            updated_at: name("dbt_updated_at"),
            valid_from: name("dbt_valid_from"),
            valid_to: name("dbt_valid_to"),
            is_deleted: name("dbt_is_deleted"),
        };
        // No columns: the query's are unknown (a compile with no connection).
        for key in unique_key.iter().filter(|_| !columns.is_empty()) {
            let plain = key.chars().all(|c| c.is_alphanumeric() || c == '_');
            if plain && !columns.iter().any(|c| c.name.eq_ignore_ascii_case(key)) {
                return Err(problem(
                    node,
                    key,
                    format!(
                        "the unique_key `{key}` of snapshot `{}` is not a column of its query",
                        node.name
                    ),
                    &format!(
                        "the query returns: {}",
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(Spec {
            unique_key,
            strategy,
            hard_deletes,
            meta,
            valid_to_current: node.config.str("dbt_valid_to_current").map(String::from),
            columns: columns.iter().map(|c| c.name.clone()).collect(),
        })
    }
}

/// Plan a snapshot run. `table` holds the snapshot table's columns (`None` when it does not
/// exist yet), `query` the columns of the snapshot's query.
pub fn plan(
    node: &Node,
    sql: &str,
    existing: &dyn Existing,
    table: Option<&[Column]>,
    query: &[Column],
) -> Result<Plan, Problem> {
    let spec = Spec::of(node, query)?;
    let target = &node.relation;
    let source = target.with_suffix(SOURCE_SUFFIX);
    let staging = target.with_suffix(TMP_SUFFIX);
    let mut steps = prelude(target, existing);
    if let Some(kind) = existing.kind_of(&source) {
        steps.push(Step::Drop {
            relation: source.clone(),
            kind,
        });
    }
    steps.push(Step::Begin);
    steps.push(Step::CreateTableAs {
        relation: source.clone(),
        sql: sql.to_string(),
    });
    steps.push(Step::AssertUniqueKey {
        relation: source.clone(),
        key: spec.unique_key.clone(),
    });
    match table {
        None => steps.push(Step::CreateSnapshot {
            target: target.clone(),
            source: source.clone(),
            spec,
        }),
        Some(table) => {
            let has = |name: &str| table.iter().any(|c| c.name.eq_ignore_ascii_case(name));
            for column in query {
                if !has(&column.name) {
                    steps.push(Step::AddColumn {
                        relation: target.clone(),
                        column: column.clone(),
                    });
                }
            }
            if spec.hard_deletes == HardDeletes::NewRecord && !has(&spec.meta.is_deleted) {
                steps.push(Step::AddTextColumn {
                    relation: target.clone(),
                    column: spec.meta.is_deleted.clone(),
                });
            }
            steps.push(Step::StageSnapshotChanges {
                staging: staging.clone(),
                target: target.clone(),
                source: source.clone(),
                spec: spec.clone(),
            });
            steps.push(Step::CloseSnapshotRows {
                target: target.clone(),
                staging: staging.clone(),
                spec: spec.clone(),
            });
            steps.push(Step::InsertSnapshotRows {
                target: target.clone(),
                staging: staging.clone(),
                spec,
            });
            steps.push(Step::Drop {
                relation: staging,
                kind: Kind::Table,
            });
        }
    }
    steps.push(Step::Drop {
        relation: source,
        kind: Kind::Table,
    });
    steps.push(Step::Commit);
    Ok(Plan {
        steps,
        result: Some(Kind::Table),
    })
}
