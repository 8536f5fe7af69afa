//! Materializations as dialect-neutral plans: what steps build a node (create a schema, build
//! under a temporary name, swap it in inside one transaction), without any SQL text.
//!
//! A plan is decided from the node's materialization and what already exists in the
//! warehouse; `dialect` turns its steps into statements and `adapter` runs them. Nothing here
//! executes or renders SQL.

pub mod contract;
pub mod data_test;
pub mod hooks;
pub mod incremental;
pub mod microbatch;
pub mod offline;
pub mod snapshot;
pub mod unit_test;

use std::path::{Path, PathBuf};

use crate::diagnostics::{Code, Problem};
use crate::graph::{Materialization, Node};
use crate::relation::Relation;
pub use crate::relation::{Column, Kind};

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
    /// Build `relation` anew and put it in place of the `existing` relation (if any)
    /// atomically: readers see the old relation or the new one, never neither, and a failure
    /// leaves the old one. How is the dialect's (DuckDB: build under `<name>__dbt_tmp`, then
    /// drop and rename inside one transaction).
    Replace {
        relation: Relation,
        build: Build,
        existing: Option<Kind>,
        /// How a warehouse should make it (clustering, partitioning, …): what DuckDB ignores.
        options: RelationOptions,
    },
    /// Write a query's rows to files (an `external` model): `location` is a file, or with
    /// `partition_by` a folder of hive-partitioned files.
    CopyTo {
        sql: String,
        location: String,
        format: FileFormat,
        partition_by: Vec<String>,
        /// `delimiter` and the model's `options:`, as the file format's options.
        options: Vec<(String, String)>,
    },
    /// Create a table from a query (a staging table inside a plan's transaction).
    CreateTableAs {
        relation: Relation,
        sql: String,
    },
    /// Fail (and so roll back) when two rows of `relation` share a `key`.
    AssertUniqueKey {
        relation: Relation,
        key: Vec<String>,
    },
    AddColumn {
        relation: Relation,
        column: Column,
    },
    /// Add a text column (the dialect names the type): a snapshot's `dbt_is_deleted`.
    AddTextColumn {
        relation: Relation,
        column: String,
    },
    DropColumn {
        relation: Relation,
        column: String,
    },
    AlterColumnType {
        relation: Relation,
        column: Column,
    },
    /// Copy `columns` of every row of `source` into `target`.
    Insert {
        target: Relation,
        source: Relation,
        columns: Vec<String>,
    },
    /// Delete the rows of `target` whose key appears in `source` (and that match every
    /// predicate).
    DeleteMatching {
        target: Relation,
        source: Relation,
        key: Vec<String>,
        predicates: Vec<String>,
    },
    /// Replace the partitions of `target` that the rows of `source` fall in with those rows
    /// (`insert_overwrite`): the partitions of `partition_by` columns (DuckDB), of BigQuery's
    /// `partition`, or only the `partitions` listed (BigQuery's static form). No partition at
    /// all replaces the whole table (dbt-snowflake's meaning).
    InsertOverwrite {
        target: Relation,
        source: Relation,
        columns: Vec<String>,
        partition_by: Vec<String>,
        partition: Option<PartitionBy>,
        partitions: Vec<String>,
        predicates: Vec<String>,
    },
    /// Delete the rows of `target` whose `column` falls in `window` (and that match every
    /// predicate): a microbatch batch clearing its window before inserting.
    DeleteWindow {
        target: Relation,
        column: String,
        window: microbatch::Window,
        predicates: Vec<String>,
    },
    /// Update the rows of `target` matched on `key`, insert the others. No key inserts all.
    Merge {
        target: Relation,
        source: Relation,
        key: Vec<String>,
        insert_columns: Vec<String>,
        update_columns: Vec<String>,
        predicates: Vec<String>,
    },
    /// Create a snapshot table from the staged query rows, with the meta columns.
    CreateSnapshot {
        target: Relation,
        source: Relation,
        spec: snapshot::Spec,
    },
    /// Stage a snapshot run's changes: new versions to insert, current rows to close.
    StageSnapshotChanges {
        staging: Relation,
        target: Relation,
        source: Relation,
        spec: snapshot::Spec,
    },
    /// Close the current rows the staged changes replace or delete.
    CloseSnapshotRows {
        target: Relation,
        staging: Relation,
        spec: snapshot::Spec,
    },
    /// Insert the staged new versions.
    InsertSnapshotRows {
        target: Relation,
        staging: Relation,
        spec: snapshot::Spec,
    },
}

/// The node's settings for how a warehouse makes a relation, read from its config once so
/// that a dialect reads typed fields. DuckDB uses none of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelationOptions {
    /// Snowflake: a transient table (dbt-snowflake's default) unless `transient: false`.
    pub transient: Option<bool>,
    /// Snowflake and BigQuery: `cluster_by`, one column or a list.
    pub cluster_by: Vec<String>,
    /// Snowflake: `copy_grants`.
    pub copy_grants: bool,
    /// Snowflake: a `secure` view.
    pub secure: bool,
    /// BigQuery: `partition_by` as dbt-bigquery reads it.
    pub partition_by: Option<PartitionBy>,
    /// BigQuery: `labels`.
    pub labels: Vec<(String, String)>,
    /// BigQuery: `require_partition_filter` and `partition_expiration_days`.
    pub require_partition_filter: bool,
    pub partition_expiration_days: Option<i64>,
}

/// A mapping config (`labels`, `column_types`) as `(key, value as text)` pairs.
fn text_pairs(node: &Node, key: &str) -> Vec<(String, String)> {
    node.config
        .get(key)
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
        .unwrap_or_default()
}

/// BigQuery's `partition_by`: `{field, data_type, granularity}`, or an integer `range`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionBy {
    pub field: String,
    /// `date`, `timestamp`, `datetime` or `int64`.
    pub data_type: String,
    /// `day` (the default), `hour`, `month` or `year`.
    pub granularity: String,
    /// `{start, end, interval}` for an `int64` range.
    pub range: Option<(i64, i64, i64)>,
}

impl RelationOptions {
    /// The options a node's config sets.
    pub fn of(node: &Node) -> RelationOptions {
        let config = &node.config;
        let list = |key: &str| -> Vec<String> {
            match config.get(key) {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let flag = |key: &str| config.get(key).and_then(serde_json::Value::as_bool);
        let partition_by = config
            .get("partition_by")
            .and_then(serde_json::Value::as_object)
            .and_then(|p| {
                let field = p.get("field")?.as_str()?.to_string();
                let range = p.get("range").and_then(|r| {
                    Some((
                        r.get("start")?.as_i64()?,
                        r.get("end")?.as_i64()?,
                        r.get("interval")?.as_i64()?,
                    ))
                });
                Some(PartitionBy {
                    field,
                    data_type: p
                        .get("data_type")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("date")
                        .to_lowercase(),
                    granularity: p
                        .get("granularity")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("day")
                        .to_lowercase(),
                    range,
                })
            });
        RelationOptions {
            transient: flag("transient"),
            cluster_by: list("cluster_by"),
            copy_grants: flag("copy_grants").unwrap_or(false),
            secure: flag("secure").unwrap_or(false),
            partition_by,
            labels: text_pairs(node, "labels"),
            require_partition_filter: flag("require_partition_filter").unwrap_or(false),
            partition_expiration_days: config
                .get("partition_expiration_days")
                .and_then(serde_json::Value::as_i64),
        }
    }
}

/// What a replaced relation is built from.
#[derive(Debug, Clone, PartialEq)]
pub enum Build {
    /// A table holding the rows of a query.
    Table { sql: String },
    /// A view over a query.
    View { sql: String },
    /// A view over the files an `external` model wrote.
    FilesView {
        location: String,
        format: FileFormat,
        partitioned: bool,
        options: Vec<(String, String)>,
    },
    /// A table of a model with an enforced contract: created with the contract's columns,
    /// types and constraints, then filled from the query (its columns in the contract's order).
    Contracted {
        sql: String,
        contract: contract::Contract,
    },
    /// A table loaded from a seed's CSV file (the dialect chooses how: DuckDB reads the file,
    /// a warehouse gets a typed create and batched inserts).
    Seed {
        path: PathBuf,
        delimiter: String,
        column_types: Vec<(String, String)>,
    },
}

impl Build {
    /// The kind of relation it makes.
    pub fn kind(&self) -> Kind {
        match self {
            Build::View { .. } | Build::FilesView { .. } => Kind::View,
            Build::Table { .. } | Build::Contracted { .. } | Build::Seed { .. } => Kind::Table,
        }
    }
}

/// The file format of an `external` model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
    Json,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
        }
    }

    /// The `format` config, else the location's extension, else Parquet (dbt-duckdb's order).
    pub fn of(config: Option<&str>, location: Option<&str>) -> Option<FileFormat> {
        let parse = |t: &str| match t.to_ascii_lowercase().as_str() {
            "parquet" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            "json" | "ndjson" => Some(FileFormat::Json),
            _ => None,
        };
        match config {
            Some(c) => parse(c),
            None => Some(
                location
                    .and_then(|l| l.rsplit_once('.'))
                    .and_then(|(_, ext)| parse(ext))
                    .unwrap_or(FileFormat::Parquet),
            ),
        }
    }
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

/// The columns of a seed's CSV file that hold no value in any row (none when the file cannot
/// be read here: loading it reports that).
fn empty_seed_columns(path: &Path, delimiter: &str) -> Vec<String> {
    let Ok(mut reader) = csv::ReaderBuilder::new()
        .delimiter(delimiter.bytes().next().unwrap_or(b','))
        .flexible(true)
        .from_path(path)
    else {
        return Vec::new();
    };
    let Ok(header) = reader.headers().cloned() else {
        return Vec::new();
    };
    let mut empty = vec![true; header.len()];
    for record in reader.records() {
        let Ok(record) = record else {
            return Vec::new();
        };
        for (i, field) in record.iter().enumerate() {
            if let Some(e) = empty.get_mut(i) {
                *e &= field.is_empty();
            }
        }
        if !empty.contains(&true) {
            return Vec::new();
        }
    }
    // With no rows every column is such a column.
    header
        .iter()
        .zip(empty)
        .filter(|(_, e)| *e)
        .map(|(h, _)| h.to_string())
        .collect()
}

/// What the warehouse holds now, as a plan needs to know it.
pub trait Existing {
    fn kind_of(&self, relation: &Relation) -> Option<Kind>;
    fn schema_exists(&self, database: Option<&str>, schema: &str) -> bool;
    /// What incremental configs mean on this warehouse's adapter, where dbt's adapters differ.
    fn rules(&self) -> incremental::AdapterRules {
        incremental::AdapterRules::DUCKDB
    }
}

/// Column lists a plan needs, answered by a live connection (or, offline, by a catalog).
pub trait Columns {
    /// The columns of an existing relation, in order.
    fn of_relation(&self, relation: &Relation) -> Result<Vec<Column>, Problem>;
    /// The columns a compiled query returns, found without running it.
    fn of_query(&self, sql: &str) -> Result<Vec<Column>, Problem>;
    /// Data types as written in YAML (`int`, `text`), as the warehouse names them (`INTEGER`,
    /// `VARCHAR`); a type it does not know is a problem.
    fn declared_types(&self, types: &[String]) -> Result<Vec<String>, Problem>;
}

/// The plan that builds `node` this run from its compiled SQL: a snapshot's, an incremental
/// step on the existing table (`incremental`: the table exists and this is no full refresh),
/// or a (re)build. A microbatch batch is planned by `microbatch`'s caller instead.
pub fn node_plan(
    node: &Node,
    sql: &str,
    existing: &dyn Existing,
    columns: &dyn Columns,
    incremental: bool,
) -> Result<Plan, Problem> {
    // An enforced contract is checked before anything is written, on every run.
    if let Some(contract) = contract::Contract::of(node)? {
        let query = columns.of_query(sql)?;
        let types: Vec<String> = contract
            .columns
            .iter()
            .map(|c| c.data_type.clone())
            .collect();
        let declared = columns.declared_types(&types)?;
        let declared: Vec<Column> = contract
            .columns
            .iter()
            .zip(declared)
            .map(|(c, data_type)| Column {
                name: c.name.clone(),
                data_type,
            })
            .collect();
        contract.check(node, &query, &declared)?;
    }
    if node.resource_type == crate::graph::ResourceType::Snapshot {
        let query = columns.of_query(sql)?;
        let table = match existing.kind_of(&node.relation) {
            Some(_) => Some(columns.of_relation(&node.relation)?),
            None => None,
        };
        snapshot::plan(node, sql, existing, table.as_deref(), &query)
    } else if incremental {
        let new = columns.of_query(sql)?;
        let table = columns.of_relation(&node.relation)?;
        incremental::plan(node, sql, existing, &table, &new, None)
    } else {
        plan(node, sql, existing)
    }
}

/// The steps before any build: create the schema if needed, drop leftovers of an interrupted
/// earlier run.
fn prelude(target: &Relation, existing: &dyn Existing) -> Vec<Step> {
    let mut steps = Vec::new();
    if !existing.schema_exists(target.database.as_deref(), &target.schema) {
        steps.push(Step::CreateSchema {
            database: target.database.clone(),
            schema: target.schema.clone(),
        });
    }
    for suffix in [TMP_SUFFIX, BACKUP_SUFFIX] {
        let leftover = target.with_suffix(suffix);
        if let Some(kind) = existing.kind_of(&leftover) {
            steps.push(Step::Drop {
                relation: leftover,
                kind,
            });
        }
    }
    steps
}

/// An `external` model's steps: write the files, then the view over them. Its `location` is
/// set when the project is parsed (`external_root` and the relation's name by default).
fn external(node: &Node, sql: &str) -> Result<(Step, Build), Problem> {
    let location = node.config.str("location").unwrap_or_default().to_string();
    let Some(format) = FileFormat::of(node.config.str("format"), Some(&location)) else {
        let p = Problem::new(
            Code::UnsupportedMaterialization,
            format!(
                "external model `{}` has the format `{}`, which xform cannot write",
                node.name,
                node.config.str("format").unwrap_or_default()
            ),
        )
        .help("use format='parquet', 'csv' or 'json'");
        return Err(match &node.file {
            Some(file) => p.at(file, 0, 0, "this model"),
            None => p,
        });
    };
    let partition_by: Vec<String> = match node.config.get("partition_by") {
        Some(serde_json::Value::String(s)) => s
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let mut options: Vec<(String, String)> = Vec::new();
    if let Some(d) = node.config.str("delimiter") {
        options.push(("delimiter".to_string(), d.to_string()));
    }
    if let Some(serde_json::Value::Object(extra)) = node.config.get("options") {
        for (k, v) in extra {
            let text = v.as_str().map_or_else(|| v.to_string(), String::from);
            options.push((k.clone(), text));
        }
    }
    let partitioned = !partition_by.is_empty();
    Ok((
        Step::CopyTo {
            sql: sql.to_string(),
            location: location.clone(),
            format,
            partition_by,
            options: options.clone(),
        },
        Build::FilesView {
            location,
            format,
            partitioned,
            // Only what reading needs: the delimiter.
            options: options
                .into_iter()
                .filter(|(k, _)| k == "delimiter")
                .collect(),
        },
    ))
}

/// Build the plan for a node. `sql` is the compiled SQL (models only).
pub fn plan(node: &Node, sql: &str, existing: &dyn Existing) -> Result<Plan, Problem> {
    let target = &node.relation;
    let mut steps = prelude(target, existing);
    if node.materialized() == Materialization::Incremental {
        // Checked on the first run too, not only once the table exists; but a strategy the
        // adapter does not know matters only to an incremental run, as in dbt-duckdb (the
        // executor warns of it).
        if let Err(p) = incremental::Settings::of(node, existing.rules())
            && incremental::unknown_strategy(node).is_none()
        {
            return Err(p);
        }
    }
    let build = match node.materialized() {
        Materialization::Seed => {
            let column_types = text_pairs(node, "column_types");
            let path = node.seed_path().map(Path::to_path_buf).unwrap_or_default();
            let delimiter = node.config.str("delimiter").unwrap_or(",").to_string();
            let mut column_types: Vec<(String, String)> = column_types;
            // A column with no value at all is an integer column, as dbt's type inference
            // makes it (its first candidate type accepts only nulls); DuckDB would say text.
            for name in empty_seed_columns(&path, &delimiter) {
                if !column_types.iter().any(|(c, _)| *c == name) {
                    column_types.push((name, "INTEGER".to_string()));
                }
            }
            Build::Seed {
                path,
                delimiter,
                column_types,
            }
        }
        Materialization::Table | Materialization::Incremental => {
            match contract::Contract::of(node)? {
                Some(contract) => Build::Contracted {
                    sql: sql.to_string(),
                    contract,
                },
                None => Build::Table {
                    sql: sql.to_string(),
                },
            }
        }
        Materialization::View => Build::View {
            sql: sql.to_string(),
        },
        Materialization::External => {
            let (copy, build) = external(node, sql)?;
            steps.push(copy);
            build
        }
        Materialization::Ephemeral
        | Materialization::Source
        | Materialization::Snapshot
        | Materialization::Test
        | Materialization::Analysis
        | Materialization::UnitTest => {
            return Ok(Plan::default());
        }
        Materialization::Other(other) => {
            let other = other.as_str();
            let p = Problem::new(
                Code::UnsupportedMaterialization,
                format!(
                    "model `{}` is materialized as `{other}`, which xform cannot build yet",
                    node.name
                ),
            )
            .help("use `table`, `view`, `incremental` or `ephemeral`");
            let p = match &node.file {
                Some(file) => match crate::suggest::find_call(&file.text, "materialized=", other)
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
    let kind = build.kind();
    steps.push(Step::Replace {
        relation: target.clone(),
        build,
        existing: existing.kind_of(target),
        options: RelationOptions::of(node),
    });
    Ok(Plan {
        steps,
        result: Some(kind),
    })
}
