//! Snowflake's and BigQuery's SQL: the same plan steps DuckDB runs, written as dbt-snowflake and
//! dbt-bigquery write them. The two share most of their spelling; where they differ, a match on
//! `Flavor` says how.
//!
//! Not written yet (each refused by `unsupported` before anything is lowered): snapshots (each
//! warehouse's hash for `dbt_scd_id`), the `external` materialization (DuckDB's alone), and
//! the unit tests' and freshness queries. Seeds are a typed create and batched inserts, their
//! types inferred as dbt infers them.

use std::fmt::Write as _;

mod snapshot;

use super::{DEST, Dialect, Lowered, SOURCE, Statement, StatementKind, and_predicates, key_match};
use crate::materialize::contract::{Constraint, ConstraintKind, Contract};
use crate::materialize::{Build, Kind, RelationOptions, Step};
use crate::relation::{Quoting, Relation};

/// Which warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Snowflake,
    BigQuery,
}

impl Flavor {
    /// The warehouse of a target, `None` for DuckDB.
    pub fn of(target: &crate::config::Target) -> Option<Flavor> {
        match target.credentials {
            crate::config::Credentials::Snowflake(_) => Some(Flavor::Snowflake),
            crate::config::Credentials::BigQuery(_) => Some(Flavor::BigQuery),
            crate::config::Credentials::DuckDb(_) => None,
        }
    }
}

pub struct Snowflake;
pub struct BigQuery;

/// Check that a seed's CSV file reads whole, before it is lowered: a malformed row is a
/// problem with its line, never a row silently left out of the inserts.
pub fn check_seed(path: &std::path::Path, delimiter: &str) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter.bytes().next().unwrap_or(b','))
        .from_path(path)
        .map_err(|e| e.to_string())?;
    reader.headers().map_err(|e| e.to_string())?;
    for record in reader.records() {
        record.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What a plan may ask that this dialect does not write yet, as a sentence for a diagnostic.
pub fn unsupported(flavor: Flavor, steps: &[Step]) -> Option<String> {
    let name = match flavor {
        Flavor::Snowflake => "Snowflake",
        Flavor::BigQuery => "BigQuery",
    };
    steps.iter().find_map(|step| match step {
        Step::Replace {
            build: Build::FilesView { .. },
            ..
        }
        | Step::CopyTo { .. } => Some(format!(
            "the `external` materialization is DuckDB's; {name} has none"
        )),
        _ => None,
    })
}

/// A name as the warehouse reads it: bare when it is a plain identifier (Snowflake folds it to
/// upper case, as dbt-snowflake leaves columns unquoted), else quoted.
fn ident(flavor: Flavor, name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        return name.to_string();
    }
    match flavor {
        Flavor::Snowflake => Quoting::DOUBLE_QUOTES.quote(name),
        Flavor::BigQuery => BIGQUERY_QUOTING.quote(name),
    }
}

const SNOWFLAKE_QUOTING: Quoting = Quoting {
    character: '"',
    database: false,
    schema: false,
    identifier: false,
};

const BIGQUERY_QUOTING: Quoting = Quoting {
    character: '`',
    database: true,
    schema: true,
    identifier: true,
};

fn column_list(flavor: Flavor, columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| ident(flavor, c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn count(relation: &Relation) -> String {
    format!("select count(*) from {relation}")
}

/// The `cluster by` / `partition by` / `options(...)` clauses of a table.
fn table_clauses(flavor: Flavor, options: &RelationOptions) -> String {
    let mut out = String::new();
    match flavor {
        Flavor::Snowflake => {
            if !options.cluster_by.is_empty() {
                let _ = write!(out, " cluster by ({})", options.cluster_by.join(", "));
            }
            if options.copy_grants {
                out.push_str(" copy grants");
            }
        }
        Flavor::BigQuery => {
            if let Some(p) = &options.partition_by {
                let field = ident(flavor, &p.field);
                let expr = match (p.data_type.as_str(), &p.range) {
                    ("int64", Some((start, end, interval))) => {
                        format!("range_bucket({field}, generate_array({start}, {end}, {interval}))")
                    }
                    ("date", _) if p.granularity == "day" => field,
                    ("date", _) => format!("date_trunc({field}, {})", p.granularity),
                    ("timestamp", _) => format!("timestamp_trunc({field}, {})", p.granularity),
                    ("datetime", _) => format!("datetime_trunc({field}, {})", p.granularity),
                    _ => field,
                };
                let _ = write!(out, "\npartition by {expr}");
            }
            if !options.cluster_by.is_empty() {
                let _ = write!(
                    out,
                    "\ncluster by {}",
                    column_list(flavor, &options.cluster_by)
                );
            }
            let mut opts = Vec::new();
            if options.require_partition_filter {
                opts.push("require_partition_filter=true".to_string());
            }
            if let Some(days) = options.partition_expiration_days {
                opts.push(format!("partition_expiration_days={days}"));
            }
            if !options.labels.is_empty() {
                let labels: Vec<String> = options
                    .labels
                    .iter()
                    .map(|(k, v)| format!("({}, {})", literal(k), literal(v)))
                    .collect();
                opts.push(format!("labels=[{}]", labels.join(", ")));
            }
            if !opts.is_empty() {
                let _ = write!(out, "\noptions({})", opts.join(", "));
            }
        }
    }
    out
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn constraint_sql(flavor: Flavor, c: &Constraint, inline: bool) -> Option<String> {
    let cols = || column_list(flavor, &c.columns);
    // BigQuery declares only primary and foreign keys, `not enforced`; Snowflake enforces
    // `not null` and records the others. Neither has `check`.
    let body = match (&c.kind, flavor, inline) {
        (ConstraintKind::NotNull, _, true) => "not null".to_string(),
        (ConstraintKind::Unique, Flavor::Snowflake, true) => "unique".to_string(),
        (ConstraintKind::Unique, Flavor::Snowflake, false) => format!("unique ({})", cols()),
        (ConstraintKind::PrimaryKey, Flavor::Snowflake, true) => "primary key".to_string(),
        (ConstraintKind::PrimaryKey, Flavor::BigQuery, true) => {
            "primary key not enforced".to_string()
        }
        (ConstraintKind::PrimaryKey, Flavor::Snowflake, false) => {
            format!("primary key ({})", cols())
        }
        (ConstraintKind::PrimaryKey, Flavor::BigQuery, false) => {
            format!("primary key ({}) not enforced", cols())
        }
        (
            ConstraintKind::ForeignKey {
                references,
                columns: to,
            },
            _,
            _,
        ) => {
            let target = if to.is_empty() {
                references.clone()
            } else {
                format!("{references} ({})", column_list(flavor, to))
            };
            let enforced = if flavor == Flavor::BigQuery {
                " not enforced"
            } else {
                ""
            };
            if inline {
                format!("references {target}{enforced}")
            } else {
                format!("foreign key ({}) references {target}{enforced}", cols())
            }
        }
        (ConstraintKind::Custom(e), _, _) => e.clone(),
        _ => return None,
    };
    Some(match &c.name {
        Some(name) if !matches!(c.kind, ConstraintKind::NotNull) => {
            format!("constraint {} {body}", ident(flavor, name))
        }
        _ => body,
    })
}

/// A table with an enforced contract: its declared columns and constraints, filled from the
/// query's columns in that order, in one statement.
fn contracted(
    flavor: Flavor,
    head: &str,
    relation: &Relation,
    clauses: &str,
    sql: &str,
    contract: &Contract,
) -> Statement {
    let mut items: Vec<String> = contract
        .columns
        .iter()
        .map(|c| {
            let mut item = format!("{} {}", ident(flavor, &c.name), c.data_type);
            for k in &c.constraints {
                if let Some(text) = constraint_sql(flavor, k, true) {
                    item.push(' ');
                    item.push_str(&text);
                }
            }
            item
        })
        .collect();
    items.extend(
        contract
            .constraints
            .iter()
            .filter_map(|k| constraint_sql(flavor, k, false)),
    );
    let names: Vec<String> = contract.columns.iter().map(|c| c.name.clone()).collect();
    let names = column_list(flavor, &names);
    Statement {
        sql: format!(
            "{head} {relation} (\n    {}\n){clauses}\nas (\n    select {names} from (\n{sql}\n    ) as model_subq\n)",
            items.join(",\n    ")
        ),
        kind: StatementKind::Ddl,
        body_line: Some(3 + items.len() + 1),
        counts: Some(count(relation)),
    }
}

/// DuckDB's type names as this warehouse spells the same type; any other name as it is.
fn own_type(flavor: Flavor, data_type: &str) -> String {
    let upper = data_type.trim().to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or_default().trim();
    let name = match (flavor, base) {
        (Flavor::BigQuery, "VARCHAR" | "TEXT" | "CHAR" | "BPCHAR" | "UUID") => "STRING",
        (
            Flavor::BigQuery,
            "INTEGER" | "BIGINT" | "INT" | "SMALLINT" | "TINYINT" | "HUGEINT" | "UBIGINT"
            | "UINTEGER" | "USMALLINT" | "UTINYINT",
        ) => "INT64",
        (Flavor::BigQuery, "DOUBLE" | "FLOAT" | "REAL") => "FLOAT64",
        (Flavor::BigQuery, "DECIMAL") => "NUMERIC",
        (Flavor::BigQuery, "BOOLEAN") => "BOOL",
        (Flavor::BigQuery, "TIMESTAMP") => "DATETIME",
        (Flavor::BigQuery, "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ") => "TIMESTAMP",
        (Flavor::BigQuery, "BLOB") => "BYTES",
        (Flavor::Snowflake, "HUGEINT" | "UBIGINT") => "NUMBER(38,0)",
        (Flavor::Snowflake, "TIMESTAMP") => "TIMESTAMP_NTZ",
        (Flavor::Snowflake, "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ") => "TIMESTAMP_TZ",
        (Flavor::Snowflake, "BLOB") => "BINARY",
        (Flavor::Snowflake, "UUID") => "VARCHAR",
        _ => return data_type.to_string(),
    };
    name.to_string()
}

/// The rows a seed's statement inserts at most, as dbt-snowflake and dbt-bigquery batch them.
const SEED_BATCH: usize = 10_000;

/// A seed column's type as dbt infers it from every value (its first candidate that accepts them
/// all: integer, number, date, timestamp, boolean, text; a column with no value is integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SeedType {
    Integer,
    Number,
    Date,
    Timestamp,
    Boolean,
    Text,
}

fn seed_type_of(value: &str) -> SeedType {
    let v = value.trim();
    if v.parse::<i64>().is_ok() {
        SeedType::Integer
    } else if v.parse::<f64>().is_ok_and(f64::is_finite) {
        SeedType::Number
    } else if chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
        SeedType::Date
    } else if [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .any(|f| chrono::NaiveDateTime::parse_from_str(v, f).is_ok())
    {
        SeedType::Timestamp
    } else if matches!(v.to_ascii_lowercase().as_str(), "true" | "false") {
        SeedType::Boolean
    } else {
        SeedType::Text
    }
}

/// The narrowest type that holds both (text when they cannot meet).
fn widen(a: SeedType, b: SeedType) -> SeedType {
    use SeedType::{Date, Integer, Number, Text, Timestamp};
    match (a.min(b), a.max(b)) {
        (x, y) if x == y => x,
        (Integer, Number) => Number,
        (Date, Timestamp) => Timestamp,
        _ => Text,
    }
}

fn seed_type_name(flavor: Flavor, t: SeedType) -> &'static str {
    match (flavor, t) {
        (Flavor::Snowflake, SeedType::Integer) => "integer",
        (Flavor::Snowflake, SeedType::Number) => "float8",
        (Flavor::Snowflake, SeedType::Timestamp) => "timestamp_ntz",
        (Flavor::Snowflake, SeedType::Text) => "varchar",
        (Flavor::BigQuery, SeedType::Integer) => "int64",
        (Flavor::BigQuery, SeedType::Number) => "float64",
        (Flavor::BigQuery, SeedType::Timestamp) => "datetime",
        (Flavor::BigQuery, SeedType::Text) => "string",
        (Flavor::Snowflake, SeedType::Boolean) => "boolean",
        (Flavor::BigQuery, SeedType::Boolean) => "bool",
        (_, SeedType::Date) => "date",
    }
}

/// One value of a seed as SQL of its column's type; an empty cell is null.
fn seed_value(flavor: Flavor, t: SeedType, value: &str, declared: Option<&String>) -> String {
    if value.is_empty() {
        return "null".to_string();
    }
    let text = match flavor {
        Flavor::Snowflake => format!("'{}'", value.replace('\'', "''")),
        Flavor::BigQuery => literal(value),
    };
    if let Some(ty) = declared {
        // A `column_types` type: the text, cast to it (BigQuery converts no text implicitly).
        return format!("cast({text} as {ty})");
    }
    match t {
        SeedType::Integer | SeedType::Number => value.trim().to_string(),
        SeedType::Boolean => value.trim().to_ascii_lowercase(),
        SeedType::Date => format!("date {text}"),
        SeedType::Timestamp => match flavor {
            Flavor::Snowflake => format!("cast({text} as timestamp_ntz)"),
            Flavor::BigQuery => format!("datetime {text}"),
        },
        SeedType::Text => text,
    }
}

/// A seed as a warehouse loads it: a table of the inferred (or `column_types`) types, then the
/// rows in batches of inserts. Nothing when the file cannot be read: compiling checks it first.
fn seed(
    flavor: Flavor,
    table_head: &str,
    relation: &Relation,
    path: &std::path::Path,
    delimiter: &str,
    column_types: &[(String, String)],
) -> Vec<Statement> {
    let Ok(mut reader) = csv::ReaderBuilder::new()
        .delimiter(delimiter.bytes().next().unwrap_or(b','))
        .from_path(path)
    else {
        return Vec::new();
    };
    let Ok(header) = reader.headers().cloned() else {
        return Vec::new();
    };
    let rows: Vec<csv::StringRecord> = reader.records().filter_map(Result::ok).collect();
    let names: Vec<String> = header.iter().map(String::from).collect();
    let types: Vec<SeedType> = (0..names.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i).filter(|v| !v.is_empty()))
                .map(seed_type_of)
                .reduce(widen)
                .unwrap_or(SeedType::Integer)
        })
        .collect();
    let declared = |name: &str| column_types.iter().find(|(c, _)| c == name).map(|(_, t)| t);
    let columns: Vec<String> = names
        .iter()
        .zip(&types)
        .map(|(n, t)| {
            let ty = declared(n).map_or(seed_type_name(flavor, *t), String::as_str);
            format!("{} {ty}", ident(flavor, n))
        })
        .collect();
    let mut out = vec![Statement {
        sql: format!(
            "{table_head} {relation} (\n    {}\n)",
            columns.join(",\n    ")
        ),
        kind: StatementKind::Ddl,
        body_line: None,
        counts: None,
    }];
    let list = column_list(flavor, &names);
    for batch in rows.chunks(SEED_BATCH) {
        let values: Vec<String> = batch
            .iter()
            .map(|r| {
                let cells: Vec<String> = (0..names.len())
                    .map(|i| {
                        seed_value(
                            flavor,
                            types[i],
                            r.get(i).unwrap_or(""),
                            declared(&names[i]),
                        )
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        out.push(Statement {
            sql: format!(
                "insert into {relation} ({list}) values\n{}",
                values.join(",\n")
            ),
            kind: StatementKind::Dml,
            body_line: None,
            counts: None,
        });
    }
    out
}

/// `Step::Replace`: both warehouses replace a relation atomically with `create or replace`,
/// once a relation of the other kind is dropped.
fn replace(
    flavor: Flavor,
    relation: &Relation,
    build: &Build,
    existing: Option<Kind>,
    options: &RelationOptions,
) -> Vec<Statement> {
    let mut out = Vec::new();
    if let Some(old) = existing.filter(|k| *k != build.kind()) {
        out.push(Statement::ddl(format!(
            "drop {} if exists {relation}",
            old.as_str()
        )));
    }
    let table_head = match flavor {
        Flavor::Snowflake if options.transient != Some(false) => {
            "create or replace transient table"
        }
        _ => "create or replace table",
    };
    let clauses = table_clauses(flavor, options);
    match build {
        Build::Table { sql } => out.push(Statement {
            sql: format!("{table_head} {relation}{clauses}\nas (\n{sql}\n)"),
            kind: StatementKind::Ddl,
            body_line: Some(3 + clauses.matches('\n').count()),
            counts: Some(count(relation)),
        }),
        Build::Contracted { sql, contract } => {
            out.push(contracted(
                flavor, table_head, relation, &clauses, sql, contract,
            ));
        }
        Build::View { sql } => {
            let (secure, grants) = match flavor {
                Flavor::Snowflake => (
                    if options.secure { "secure " } else { "" },
                    if options.copy_grants {
                        " copy grants"
                    } else {
                        ""
                    },
                ),
                Flavor::BigQuery => ("", ""),
            };
            out.push(Statement {
                sql: format!("create or replace {secure}view {relation}{grants}\nas (\n{sql}\n)"),
                kind: StatementKind::Ddl,
                body_line: Some(3),
                counts: None,
            });
        }
        Build::Seed {
            path,
            delimiter,
            column_types,
        } => out.extend(seed(
            flavor,
            table_head,
            relation,
            path,
            delimiter,
            column_types,
        )),
        // Refused before lowering (`unsupported`).
        Build::FilesView { .. } => {}
    }
    out
}

/// BigQuery's `insert_overwrite`, as dbt-bigquery writes it: one merge that matches nothing,
/// deletes the target's rows in the replaced partitions and inserts every new row. The
/// partitions are the static `partitions` listed, or those of the new rows, gathered first into
/// a script variable so that BigQuery prunes the target's partitions it reads.
#[allow(clippy::too_many_arguments, reason = "the fields of one plan step")]
fn insert_overwrite(
    dialect: &dyn Dialect,
    target: &Relation,
    source: &Relation,
    columns: &[String],
    partition_by: &[String],
    partition: Option<&crate::materialize::PartitionBy>,
    partitions: &[String],
    predicates: &[String],
) -> String {
    // dbt-bigquery's `render`: the column itself for integer ranges and daily dates, else the
    // column truncated to the partition's granularity.
    let (field, data_type, granularity) = match partition {
        Some(p) => (
            p.field.as_str(),
            p.data_type.as_str(),
            p.granularity.as_str(),
        ),
        None => (
            partition_by.first().map_or("", String::as_str),
            "date",
            "day",
        ),
    };
    let render = |alias: &str| {
        let column = format!("{alias}{}", ident(Flavor::BigQuery, field));
        if data_type == "int64" || (data_type == "date" && granularity == "day") {
            column
        } else {
            format!("{data_type}_trunc({column}, {granularity})")
        }
    };
    let replaced = if partitions.is_empty() {
        "unnest(dbt_partitions_for_replacement)".to_string()
    } else {
        format!("({})", partitions.join(", "))
    };
    let values: Vec<String> = columns
        .iter()
        .map(|c| format!("{SOURCE}.{}", dialect.column(c)))
        .collect();
    let merge = format!(
        "merge into {target} as {DEST}\nusing {source} as {SOURCE}\non false\n\
         when not matched by source and {} in {replaced}{} then delete\n\
         when not matched then insert ({}) values ({})",
        render(&format!("{DEST}.")),
        and_predicates(predicates),
        dialect.column_list(columns),
        values.join(", ")
    );
    if !partitions.is_empty() {
        return merge;
    }
    format!(
        "declare dbt_partitions_for_replacement array<{data_type}>;\n\
         set dbt_partitions_for_replacement = (\n  select array_agg(distinct {} ignore nulls) from {source}\n);\n{merge}",
        render("")
    )
}

/// A plan's transactions as a warehouse can hold them. Snowflake commits the open transaction
/// before each DDL statement and BigQuery allows none in one, so what a plan opens with `Begin`
/// keeps only its DML inside: the statements before the first DML (the staging table, the
/// unique-key check) run before it, those after the last (dropping the staging table) after
/// it. One DML statement is atomic without a transaction. BigQuery runs a transaction only as
/// one script, so its transaction is one statement.
fn transactions(flavor: Flavor, lowered: Lowered) -> Lowered {
    let mut pairs = lowered.statements.into_iter().zip(lowered.step_of);
    let mut out: Vec<(Statement, usize)> = Vec::new();
    while let Some((statement, step)) = pairs.next() {
        if statement.kind != StatementKind::Begin {
            out.push((statement, step));
            continue;
        }
        let mut span: Vec<(Statement, usize)> = Vec::new();
        let mut commit = None;
        for (s, i) in pairs.by_ref() {
            if s.kind == StatementKind::Commit {
                commit = Some((s, i));
                break;
            }
            span.push((s, i));
        }
        let Some(commit) = commit else {
            // Not closed: left as the plan wrote it.
            out.push((statement, step));
            out.extend(span);
            continue;
        };
        let is_dml = |s: &(Statement, usize)| s.0.kind == StatementKind::Dml;
        let (Some(first), Some(last)) =
            (span.iter().position(is_dml), span.iter().rposition(is_dml))
        else {
            out.extend(span);
            continue;
        };
        let after = span.split_off(last + 1);
        let block = span.split_off(first);
        out.extend(span);
        if block.len() < 2 {
            out.extend(block);
        } else if flavor == Flavor::BigQuery {
            let mut sql = format!("{};\n", statement.sql);
            for (s, _) in &block {
                sql.push_str(&s.sql);
                sql.push_str(";\n");
            }
            sql.push_str(&commit.0.sql);
            let counts = block.iter().rev().find_map(|(s, _)| s.counts.clone());
            out.push((
                Statement {
                    sql,
                    kind: StatementKind::Dml,
                    body_line: None,
                    counts,
                },
                block[0].1,
            ));
        } else {
            out.push((statement, step));
            out.extend(block);
            out.push(commit);
        }
        out.extend(after);
    }
    let (statements, step_of) = out.into_iter().unzip();
    Lowered {
        statements,
        step_of,
    }
}

fn lower(flavor: Flavor, dialect: &dyn Dialect, step: &Step) -> Vec<Statement> {
    let ddl = Statement::ddl;
    let dml = |sql: String| Statement::new(StatementKind::Dml, sql);
    let one = match step {
        Step::Replace {
            relation,
            build,
            existing,
            options,
        } => return replace(flavor, relation, build, *existing, options),
        Step::CreateSchema { database, schema } => ddl(format!(
            "create schema if not exists {}",
            dialect.schema(database.as_deref(), schema)
        )),
        Step::Drop { relation, kind } => {
            ddl(format!("drop {} if exists {relation}", kind.as_str()))
        }
        Step::Begin => Statement::new(
            StatementKind::Begin,
            match flavor {
                Flavor::Snowflake => "begin".to_string(),
                Flavor::BigQuery => "begin transaction".to_string(),
            },
        ),
        Step::Commit => Statement::new(
            StatementKind::Commit,
            match flavor {
                Flavor::Snowflake => "commit".to_string(),
                Flavor::BigQuery => "commit transaction".to_string(),
            },
        ),
        Step::CreateTableAs { relation, sql } => Statement {
            // A staging table: Snowflake's lives for the session, BigQuery's for its script.
            sql: match flavor {
                Flavor::Snowflake => {
                    format!("create or replace temporary table {relation} as (\n{sql}\n)")
                }
                Flavor::BigQuery => format!(
                    "create or replace table {relation}\noptions(expiration_timestamp=timestamp_add(current_timestamp(), interval 12 hour))\nas (\n{sql}\n)"
                ),
            },
            kind: StatementKind::Ddl,
            body_line: Some(2),
            counts: Some(count(relation)),
        },
        Step::AssertUniqueKey { .. }
        | Step::Insert { .. }
        | Step::DeleteWindow { .. }
        | Step::Merge { .. } => return super::shared_step(dialect, step).into_iter().collect(),
        Step::AddColumn { relation, column } => ddl(format!(
            "alter table {relation} add column {} {}",
            ident(flavor, &column.name),
            column.data_type
        )),
        Step::AddTextColumn { relation, column } => ddl(format!(
            "alter table {relation} add column {} {}",
            ident(flavor, column),
            dialect.string_type()
        )),
        Step::DropColumn { relation, column } => ddl(format!(
            "alter table {relation} drop column {}",
            ident(flavor, column)
        )),
        Step::AlterColumnType { relation, column } => ddl(format!(
            "alter table {relation} alter column {} set data type {}",
            ident(flavor, &column.name),
            column.data_type
        )),
        Step::DeleteMatching {
            target,
            source,
            key,
            predicates,
        } => dml(match flavor {
            Flavor::Snowflake => format!(
                "delete from {target} as {DEST}\nusing {source} as {SOURCE}\nwhere {}{}",
                key_match(key),
                and_predicates(predicates)
            ),
            // BigQuery's delete has no `using`: the keys are looked up in the staging table.
            Flavor::BigQuery => format!(
                "delete from {target} as {DEST}\nwhere exists (select 1 from {source} as {SOURCE} where {}){}",
                key_match(key),
                and_predicates(predicates)
            ),
        }),
        Step::InsertOverwrite {
            target,
            source,
            columns,
            partition_by,
            partition,
            partitions,
            predicates,
        } => dml(match flavor {
            // dbt-snowflake's meaning: the whole table is replaced, in one statement.
            Flavor::Snowflake => {
                let list = column_list(flavor, columns);
                format!("insert overwrite into {target} ({list})\nselect {list} from {source}")
            }
            Flavor::BigQuery => insert_overwrite(
                dialect,
                target,
                source,
                columns,
                partition_by,
                partition.as_ref(),
                partitions,
                predicates,
            ),
        }),
        // A snapshot's history cannot be built again from its source: its table is permanent
        // on Snowflake too (kept by Fail-safe), where models' tables are transient.
        Step::CreateSnapshot {
            target,
            source,
            spec,
        } => Statement {
            sql: snapshot::create(flavor, "create or replace table", target, source, spec),
            kind: StatementKind::Ddl,
            body_line: None,
            counts: Some(count(target)),
        },
        Step::StageSnapshotChanges {
            staging,
            target,
            source,
            spec,
        } => {
            let stage = Step::CreateTableAs {
                relation: staging.clone(),
                sql: snapshot::stage(flavor, target, source, spec),
            };
            return lower(flavor, dialect, &stage);
        }
        Step::CloseSnapshotRows {
            target,
            staging,
            spec,
        } => dml(snapshot::close(flavor, target, staging, spec)),
        Step::InsertSnapshotRows {
            target,
            staging,
            spec,
        } => dml(snapshot::insert(flavor, target, staging, spec)),
        // Refused before lowering (`unsupported`).
        Step::CopyTo { .. } => return Vec::new(),
    };
    vec![one]
}

impl Dialect for Snowflake {
    fn name(&self) -> &'static str {
        "Snowflake"
    }

    fn id(&self) -> &'static str {
        "snowflake"
    }

    fn parser(&self) -> Box<dyn sqlparser::dialect::Dialect> {
        Box::new(sqlparser::dialect::SnowflakeDialect {})
    }

    /// dbt-snowflake quotes nothing by default: Snowflake folds the names to upper case.
    fn quoting(&self) -> Quoting {
        SNOWFLAKE_QUOTING
    }

    fn quote(&self, ident: &str) -> String {
        Quoting::DOUBLE_QUOTES.quote(ident)
    }

    fn column(&self, name: &str) -> String {
        ident(Flavor::Snowflake, name)
    }

    fn own_type(&self, data_type: &str) -> String {
        own_type(Flavor::Snowflake, data_type)
    }

    fn set_operators(&self) -> (&'static str, &'static str) {
        // Snowflake's `except` and `intersect` are distinct, and take no quantifier.
        ("except", "intersect")
    }

    fn string_type(&self) -> &'static str {
        "VARCHAR"
    }

    fn timestamp(&self, t: chrono::NaiveDateTime) -> String {
        format!("cast('{}' as timestamp_ntz)", t.format("%Y-%m-%d %H:%M:%S"))
    }

    fn lower(&self, step: &Step) -> Vec<Statement> {
        lower(Flavor::Snowflake, self, step)
    }

    fn arrange(&self, lowered: Lowered) -> Lowered {
        transactions(Flavor::Snowflake, lowered)
    }
}

impl Dialect for BigQuery {
    fn name(&self) -> &'static str {
        "BigQuery"
    }

    fn id(&self) -> &'static str {
        "bigquery"
    }

    fn parser(&self) -> Box<dyn sqlparser::dialect::Dialect> {
        Box::new(sqlparser::dialect::BigQueryDialect {})
    }

    /// Backticks around each part: `` `project`.`dataset`.`table` ``, as dbt-bigquery writes.
    fn quoting(&self) -> Quoting {
        BIGQUERY_QUOTING
    }

    fn literal(&self, text: &str) -> String {
        literal(text)
    }

    fn column(&self, name: &str) -> String {
        ident(Flavor::BigQuery, name)
    }

    fn string_type(&self) -> &'static str {
        "STRING"
    }

    fn own_type(&self, data_type: &str) -> String {
        own_type(Flavor::BigQuery, data_type)
    }

    fn timestamp(&self, t: chrono::NaiveDateTime) -> String {
        format!("timestamp('{}')", t.format("%Y-%m-%d %H:%M:%S"))
    }

    fn lower(&self, step: &Step) -> Vec<Statement> {
        lower(Flavor::BigQuery, self, step)
    }

    fn arrange(&self, lowered: Lowered) -> Lowered {
        transactions(Flavor::BigQuery, lowered)
    }

    fn values(&self, columns: &[String], rows: &[Vec<String>]) -> String {
        // BigQuery has no `values` table: a union of selects, the first naming the columns.
        let selects: Vec<String> = rows
            .iter()
            .enumerate()
            .map(|(i, cells)| {
                let items: Vec<String> = cells
                    .iter()
                    .zip(columns)
                    .map(|(cell, c)| {
                        if i == 0 {
                            format!("{cell} as {}", self.quote(c))
                        } else {
                            cell.clone()
                        }
                    })
                    .collect();
                format!("select {}", items.join(", "))
            })
            .collect();
        selects.join("\nunion all\n")
    }
}
