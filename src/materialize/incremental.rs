//! Incremental models: reading their configuration (`incremental_strategy`, `unique_key`,
//! `on_schema_change`, `incremental_predicates`, `merge_*_columns`) and planning a later run:
//! stage the new rows, check their key, apply schema changes, apply the rows, all inside one
//! transaction.
//!
//! The first run, a full refresh, or a target that is missing or a view is planned like a
//! table by `materialize::plan`; this module plans only the runs that change an existing
//! table. It never looks at the database: the caller passes the columns of the target and of
//! the new rows.

use serde_json::Value as Json;

use super::microbatch::Window;
use super::{Column, Existing, Kind, Plan, Step, TMP_SUFFIX, prelude};
use crate::diagnostics::{Code, Problem};
use crate::graph::Node;

/// How new rows reach the existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Append,
    DeleteInsert,
    Merge,
    /// BigQuery's meaning: replace every `partition_by` partition present in the new rows.
    InsertOverwrite,
    /// One run per time window of `event_time` (see `microbatch`): delete the window, insert.
    Microbatch,
}

/// What to do when the model's columns no longer match the table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSchemaChange {
    Ignore,
    Fail,
    AppendNewColumns,
    SyncAllColumns,
}

/// An incremental model's configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub strategy: Strategy,
    pub unique_key: Vec<String>,
    pub on_schema_change: OnSchemaChange,
    pub predicates: Vec<String>,
    pub merge_update_columns: Option<Vec<String>>,
    pub merge_exclude_columns: Vec<String>,
    /// The partition columns (`partition_by`), for `insert_overwrite`.
    pub partition_by: Vec<String>,
}

/// What incremental configs mean on an adapter, where dbt's adapters differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdapterRules {
    /// The strategy of a model that names none: `delete+insert` on dbt-duckdb, `merge` on
    /// dbt-snowflake and dbt-bigquery.
    pub default_strategy: Strategy,
    /// `insert_overwrite` without `partition_by` replaces the whole table (dbt-snowflake);
    /// elsewhere it is a config error.
    pub whole_table_overwrite: bool,
}

impl AdapterRules {
    pub const DUCKDB: AdapterRules = AdapterRules {
        default_strategy: Strategy::DeleteInsert,
        whole_table_overwrite: false,
    };
    pub const SNOWFLAKE: AdapterRules = AdapterRules {
        default_strategy: Strategy::Merge,
        whole_table_overwrite: true,
    };
    pub const BIGQUERY: AdapterRules = AdapterRules {
        default_strategy: Strategy::Merge,
        whole_table_overwrite: false,
    };
}

const STRATEGIES: &[&str] = &[
    "append",
    "delete+insert",
    "merge",
    "insert_overwrite",
    "microbatch",
];
const SCHEMA_CHANGES: &[&str] = &["ignore", "fail", "append_new_columns", "sync_all_columns"];

/// A config problem, pointing at the `config(...)` call that sets the value when there is one.
pub(crate) fn config_problem(node: &Node, value: &str, message: String, help: &str) -> Problem {
    let p = Problem::new(Code::IncrementalConfig, message).help(help.to_string());
    match &node.file {
        Some(file) => match crate::suggest::find_call(&file.text, "config", value) {
            Some((at, len)) => p.at(file, at, len, "set here"),
            None => p,
        },
        None => p,
    }
}

/// A string or a list of strings (`unique_key`, `incremental_predicates`, ...).
pub(crate) fn string_list(node: &Node, key: &str) -> Result<Vec<String>, Problem> {
    match node.config.get(key) {
        None => Ok(Vec::new()),
        Some(Json::String(s)) => Ok(vec![s.clone()]),
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(String::from).ok_or_else(|| {
                    config_problem(
                        node,
                        key,
                        format!(
                            "`{key}` of `{}` must be a string or a list of strings, found {v}",
                            node.name
                        ),
                        "write it as 'column' or ['column_a', 'column_b']",
                    )
                })
            })
            .collect(),
        Some(other) => Err(config_problem(
            node,
            key,
            format!(
                "`{key}` of `{}` must be a string or a list of strings, found {other}",
                node.name
            ),
            "write it as 'column' or ['column_a', 'column_b']",
        )),
    }
}

/// The `incremental_strategy` of a node when xform does not know it: a warning on a full
/// build (the table is built whole), an error once an incremental run needs it.
pub fn unknown_strategy(node: &Node) -> Option<Problem> {
    let strategy = node.config.str("incremental_strategy")?;
    if STRATEGIES.contains(&strategy) {
        return None;
    }
    Some(
        config_problem(
            node,
            strategy,
            format!(
                "incremental model `{}` has the unknown incremental_strategy `{strategy}`",
                node.name
            ),
            &format!(
                "use one of: {}; this build makes the table whole, but an incremental run will stop here",
                STRATEGIES.join(", ")
            ),
        )
        .warning(),
    )
}

impl Settings {
    pub fn of(node: &Node, rules: AdapterRules) -> Result<Settings, Problem> {
        let strategy = match node.config.str("incremental_strategy") {
            // The adapter's default.
            None => rules.default_strategy,
            Some("delete+insert") => Strategy::DeleteInsert,
            Some("append") => Strategy::Append,
            Some("merge") => Strategy::Merge,
            Some("insert_overwrite") => Strategy::InsertOverwrite,
            Some("microbatch") => {
                super::microbatch::Settings::of(node)?;
                Strategy::Microbatch
            }
            Some(other) => {
                return Err(config_problem(
                    node,
                    other,
                    format!(
                        "incremental model `{}` has the unknown incremental_strategy `{other}`",
                        node.name
                    ),
                    &format!("use one of: {}", STRATEGIES.join(", ")),
                ));
            }
        };
        let on_schema_change = match node.config.str("on_schema_change") {
            None | Some("ignore") => OnSchemaChange::Ignore,
            Some("fail") => OnSchemaChange::Fail,
            Some("append_new_columns") => OnSchemaChange::AppendNewColumns,
            Some("sync_all_columns") => OnSchemaChange::SyncAllColumns,
            Some(other) => {
                return Err(config_problem(
                    node,
                    other,
                    format!(
                        "incremental model `{}` has the unknown on_schema_change `{other}`",
                        node.name
                    ),
                    &format!("use one of: {}", SCHEMA_CHANGES.join(", ")),
                ));
            }
        };
        let merge_update_columns = match node.config.get("merge_update_columns") {
            None => None,
            Some(_) => Some(string_list(node, "merge_update_columns")?),
        };
        // `partition_by`: a column, a list, or BigQuery's `{field: ..., data_type: ...}`.
        let partition_by = match node.config.get("partition_by") {
            Some(Json::Object(m)) => m
                .get("field")
                .and_then(Json::as_str)
                .map(|f| vec![f.to_string()])
                .unwrap_or_default(),
            _ => string_list(node, "partition_by")?,
        };
        if strategy == Strategy::InsertOverwrite
            && partition_by.is_empty()
            && !rules.whole_table_overwrite
        {
            return Err(config_problem(
                node,
                "insert_overwrite",
                format!(
                    "incremental model `{}` uses insert_overwrite without `partition_by`",
                    node.name
                ),
                "set partition_by to the column (or list of columns, or {'field': ...}) whose partitions the new rows replace",
            ));
        }
        Ok(Settings {
            partition_by,
            strategy,
            unique_key: string_list(node, "unique_key")?,
            on_schema_change,
            predicates: string_list(node, "incremental_predicates")?,
            merge_update_columns,
            merge_exclude_columns: string_list(node, "merge_exclude_columns")?,
        })
    }
}

/// Whether this run rebuilds the model whole: `--full-refresh`, unless the model's
/// `full_refresh` config says otherwise (dbt's rule: the config wins over the flag).
pub fn full_refresh(node: &Node, flag: bool) -> bool {
    node.config
        .get("full_refresh")
        .and_then(Json::as_bool)
        .unwrap_or(flag)
}

/// How the new rows' columns differ from the table's.
#[derive(Debug, Default, PartialEq)]
pub struct SchemaDiff {
    /// In the new rows, not in the table.
    pub added: Vec<Column>,
    /// In the table, not in the new rows.
    pub removed: Vec<Column>,
    /// In both, with another type: (table's, new rows').
    pub changed: Vec<(Column, Column)>,
}

impl SchemaDiff {
    pub fn between(table: &[Column], new: &[Column]) -> SchemaDiff {
        let find = |cols: &[Column], name: &str| {
            cols.iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
                .cloned()
        };
        let mut diff = SchemaDiff::default();
        for c in new {
            match find(table, &c.name) {
                None => diff.added.push(c.clone()),
                Some(t) if !t.data_type.eq_ignore_ascii_case(&c.data_type) => {
                    diff.changed.push((t, c.clone()));
                }
                Some(_) => {}
            }
        }
        for c in table {
            if find(new, &c.name).is_none() {
                diff.removed.push(c.clone());
            }
        }
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One line per difference, for a message.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        for c in &self.added {
            lines.push(format!("new column `{}` {}", c.name, c.data_type));
        }
        for c in &self.removed {
            lines.push(format!("column `{}` is no longer selected", c.name));
        }
        for (t, n) in &self.changed {
            lines.push(format!(
                "column `{}` changed type from {} to {}",
                t.name, t.data_type, n.data_type
            ));
        }
        lines.join("\n")
    }
}

/// Whether `key` is a plain column name (not an expression), so it can be checked.
fn is_plain_name(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Plan a run that applies new rows to the existing table `node.relation`.
/// `table` holds the table's columns, `new` the columns of the model's query. `window` is the
/// batch a microbatch model's run replaces (required for that strategy, ignored by the others).
pub fn plan(
    node: &Node,
    sql: &str,
    existing: &dyn Existing,
    table: &[Column],
    new: &[Column],
    window: Option<&Window>,
) -> Result<Plan, Problem> {
    let settings = Settings::of(node, existing.rules())?;
    let target = &node.relation;
    let staging = target.with_suffix(TMP_SUFFIX);
    for key in &settings.unique_key {
        if is_plain_name(key) && !new.iter().any(|c| c.name.eq_ignore_ascii_case(key)) {
            return Err(config_problem(
                node,
                key,
                format!(
                    "the unique_key `{key}` of `{}` is not a column of its query",
                    node.name
                ),
                &format!(
                    "the query returns: {}",
                    new.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let diff = SchemaDiff::between(table, new);
    let mut steps = prelude(target, existing);
    steps.push(Step::Begin);
    steps.push(Step::CreateTableAs {
        relation: staging.clone(),
        sql: sql.to_string(),
    });
    if !settings.unique_key.is_empty()
        && matches!(settings.strategy, Strategy::DeleteInsert | Strategy::Merge)
    {
        steps.push(Step::AssertUniqueKey {
            relation: staging.clone(),
            key: settings.unique_key.clone(),
        });
    }
    let names = |cols: &[Column]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    // dbt inserts the table's columns when schema changes are ignored (a column the model no
    // longer selects is an error), and the new rows' columns once the table was changed to
    // hold them.
    let columns = match settings.on_schema_change {
        OnSchemaChange::Ignore => names(table),
        OnSchemaChange::Fail => {
            if !diff.is_empty() {
                return Err(Problem::new(
                    Code::SchemaChange,
                    format!(
                        "the columns of incremental model `{}` no longer match {target}, and on_schema_change is `fail`",
                        node.name
                    ),
                )
                .help(format!(
                    "{}\nrun with --full-refresh to rebuild the table, or set on_schema_change to append_new_columns or sync_all_columns",
                    diff.describe()
                )));
            }
            names(table)
        }
        OnSchemaChange::AppendNewColumns => {
            for column in &diff.added {
                steps.push(Step::AddColumn {
                    relation: target.clone(),
                    column: column.clone(),
                });
            }
            names(new)
        }
        OnSchemaChange::SyncAllColumns => {
            for column in &diff.added {
                steps.push(Step::AddColumn {
                    relation: target.clone(),
                    column: column.clone(),
                });
            }
            for column in &diff.removed {
                steps.push(Step::DropColumn {
                    relation: target.clone(),
                    column: column.name.clone(),
                });
            }
            for (_, column) in &diff.changed {
                steps.push(Step::AlterColumnType {
                    relation: target.clone(),
                    column: column.clone(),
                });
            }
            names(new)
        }
    };
    let insert = Step::Insert {
        target: target.clone(),
        source: staging.clone(),
        columns: columns.clone(),
    };
    match settings.strategy {
        Strategy::Append => steps.push(insert),
        Strategy::DeleteInsert => {
            if !settings.unique_key.is_empty() {
                steps.push(Step::DeleteMatching {
                    target: target.clone(),
                    source: staging.clone(),
                    key: settings.unique_key.clone(),
                    predicates: settings.predicates.clone(),
                });
            }
            steps.push(insert);
        }
        Strategy::InsertOverwrite => steps.push(Step::InsertOverwrite {
            target: target.clone(),
            source: staging.clone(),
            columns,
            partition_by: settings.partition_by.clone(),
            partition: super::RelationOptions::of(node).partition_by,
            partitions: string_list(node, "partitions")?,
            predicates: settings.predicates.clone(),
        }),
        Strategy::Microbatch => {
            // The batch replaces its whole window of the table, whatever rows it holds now.
            let batching = super::microbatch::Settings::of(node)?;
            let Some(window) = window else {
                return Err(Problem::new(
                    Code::IncrementalConfig,
                    format!(
                        "microbatch model `{}` was planned without a batch",
                        node.name
                    ),
                ));
            };
            steps.push(Step::DeleteWindow {
                target: target.clone(),
                column: batching.event_time,
                window: *window,
                predicates: settings.predicates.clone(),
            });
            steps.push(insert);
        }
        Strategy::Merge => {
            let update_columns = match &settings.merge_update_columns {
                Some(cols) => cols.clone(),
                None => columns
                    .iter()
                    .filter(|c| {
                        !settings
                            .merge_exclude_columns
                            .iter()
                            .any(|x| x.eq_ignore_ascii_case(c))
                    })
                    .cloned()
                    .collect(),
            };
            steps.push(Step::Merge {
                target: target.clone(),
                source: staging.clone(),
                key: settings.unique_key.clone(),
                insert_columns: columns,
                update_columns,
                predicates: settings.predicates.clone(),
            });
        }
    }
    steps.push(Step::Drop {
        relation: staging,
        kind: Kind::Table,
    });
    steps.push(Step::Commit);
    Ok(Plan {
        steps,
        result: Some(Kind::Table),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_diff_finds_added_removed_and_changed_columns() {
        let table = [
            Column::new("id", "INTEGER"),
            Column::new("name", "VARCHAR"),
            Column::new("old", "INTEGER"),
        ];
        let new = [
            Column::new("ID", "INTEGER"),
            Column::new("name", "INTEGER"),
            Column::new("extra", "DATE"),
        ];
        let diff = SchemaDiff::between(&table, &new);
        assert_eq!(diff.added, vec![Column::new("extra", "DATE")]);
        assert_eq!(diff.removed, vec![Column::new("old", "INTEGER")]);
        assert_eq!(
            diff.changed,
            vec![(
                Column::new("name", "VARCHAR"),
                Column::new("name", "INTEGER")
            )]
        );
        assert!(SchemaDiff::between(&table, &table).is_empty());
    }
}
