//! DuckDB's SQL: plan steps as dbt-duckdb writes them, seeds through `read_csv`, and the
//! queries of unit tests (`insert … by name`, `columns(*)`).

use std::fmt::Write as _;

use super::{DEST, Dialect, SOURCE, Statement, StatementKind, and_predicates, key_match};
use crate::materialize::contract::{Constraint, ConstraintKind, Contract};
use crate::materialize::snapshot::{HardDeletes, Spec, Strategy};
use crate::materialize::{Build, FileFormat, Kind, Step, TMP_SUFFIX};
use crate::render::Relation;

pub struct DuckDb;

fn quote(ident: &str) -> String {
    DuckDb.quote(ident)
}

fn literal(s: &str) -> String {
    DuckDb.literal(s)
}

/// How many repeated keys a failed unique-key check names.
pub const SHOWN_KEYS: usize = 10;

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The snapshot time: when a check-strategy version starts and a hard delete ends one.
const NOW: &str = "now()::timestamp";
/// Staging columns: the change kind and the snapshot query's key and timestamp.
const CHANGE: &str = "dbt_change_type";

/// `md5(key parts | timestamp)`, dbt's `dbt_scd_id`.
fn scd_hash(parts: &[String], ts: &str) -> String {
    let mut all: Vec<String> = parts
        .iter()
        .map(|p| format!("coalesce(cast({p} as varchar), '')"))
        .collect();
    all.push(format!("coalesce(cast({ts} as varchar), '')"));
    format!("md5({})", all.join(" || '|' || "))
}

fn open_valid_to(spec: &Spec, ts: &str) -> String {
    spec.open_valid_to(ts)
}

fn is_current(spec: &Spec, alias: &str) -> String {
    spec.is_current(&format!("{alias}{}", quote(&spec.meta.valid_to)))
}

fn snapshot_ts(spec: &Spec) -> String {
    match &spec.strategy {
        Strategy::Timestamp { updated_at } => updated_at.clone(),
        Strategy::Check { .. } => NOW.to_string(),
    }
}

fn create_snapshot(target: &Relation, source: &Relation, spec: &Spec) -> String {
    let ts = snapshot_ts(spec);
    let m = &spec.meta;
    let mut sql = format!(
        "create table {target} as\nselect *,\n  {} as {},\n  {ts} as {},\n  {ts} as {},\n  {} as {}",
        scd_hash(&spec.unique_key, &ts),
        quote(&m.scd_id),
        quote(&m.updated_at),
        quote(&m.valid_from),
        open_valid_to(spec, &ts),
        quote(&m.valid_to),
    );
    if spec.hard_deletes == HardDeletes::NewRecord {
        let _ = write!(sql, ",\n  'False' as {}", quote(&m.is_deleted));
    }
    let _ = write!(sql, "\nfrom {source}");
    sql
}

fn stage_snapshot(staging: &Relation, target: &Relation, source: &Relation, spec: &Spec) -> String {
    let m = &spec.meta;
    let ts = snapshot_ts(spec);
    let super::SnapshotMatch {
        keys,
        join,
        changed,
    } = super::SnapshotMatch::of(spec, &|c| quote(c));
    let prefixed = |alias: &str| {
        spec.columns
            .iter()
            .map(|c| format!("{alias}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let is_deleted = |value: &str| {
        if spec.hard_deletes == HardDeletes::NewRecord {
            format!(", '{value}' as {}", quote(&m.is_deleted))
        } else {
            String::new()
        }
    };
    let mut sql = format!(
        "create table {staging} as\n\
         with source_data as (\n  select *, {keys}, {ts} as __xform_ts, {scd} as __xform_scd from {source}\n),\n\
         snapshotted as (\n  select *, {keys} from {target} where {current}\n)\n\
         select 'insert' as {CHANGE}, {s_cols}, s.__xform_scd as {scd_id}, s.__xform_ts as {updated_at}, s.__xform_ts as {valid_from}, {open} as {valid_to}{not_deleted}\n\
         from source_data as s left join snapshotted as t on {join}\n\
         where t.{scd_id} is null or {changed}\n\
         union all by name\n\
         select 'update' as {CHANGE}, t.{scd_id} as {scd_id}, s.__xform_ts as {valid_to}\n\
         from source_data as s join snapshotted as t on {join}\n\
         where {changed}",
        scd = scd_hash(&spec.unique_key, &ts),
        current = is_current(spec, ""),
        s_cols = prefixed("s"),
        scd_id = quote(&m.scd_id),
        updated_at = quote(&m.updated_at),
        valid_from = quote(&m.valid_from),
        valid_to = quote(&m.valid_to),
        open = open_valid_to(spec, "s.__xform_ts"),
        not_deleted = is_deleted("False"),
    );
    if spec.hard_deletes != HardDeletes::Ignore {
        let mut gone = format!(
            "from snapshotted as t left join source_data as s on {join}\nwhere s.__xform_scd is null"
        );
        if spec.hard_deletes == HardDeletes::NewRecord {
            let _ = write!(
                gone,
                " and t.{} is distinct from 'True'",
                quote(&m.is_deleted)
            );
        }
        let _ = write!(
            sql,
            "\nunion all by name\nselect 'delete' as {CHANGE}, t.{scd_id} as {scd_id}, {NOW} as {valid_to}\n{gone}",
            scd_id = quote(&m.scd_id),
            valid_to = quote(&m.valid_to),
        );
        if spec.hard_deletes == HardDeletes::NewRecord {
            // dbt hashes a deletion record's id from the closed row's id and the time.
            let closed = [format!("t.{}", quote(&m.scd_id))];
            let _ = write!(
                sql,
                "\nunion all by name\nselect 'insert' as {CHANGE}, {t_cols}, {scd} as {scd_id}, {NOW} as {updated_at}, {NOW} as {valid_from}, {open} as {valid_to}{deleted}\n{gone}",
                t_cols = prefixed("t"),
                scd = scd_hash(&closed, NOW),
                scd_id = quote(&m.scd_id),
                updated_at = quote(&m.updated_at),
                valid_from = quote(&m.valid_from),
                valid_to = quote(&m.valid_to),
                open = open_valid_to(spec, NOW),
                deleted = is_deleted("True"),
            );
        }
    }
    sql
}

/// A table loaded from a seed's CSV file with DuckDB's `read_csv`.
fn load_seed(
    relation: &Relation,
    path: &std::path::Path,
    delimiter: &str,
    column_types: &[(String, String)],
) -> Statement {
    let mut options = vec![
        "header = true".to_string(),
        "auto_detect = true".to_string(),
        format!("delim = {}", literal(delimiter)),
        // dbt infers seed types from every row and calls whole numbers INTEGER
        // (BIGINT only when they do not fit); DuckDB's sniffer would pick BIGINT.
        "sample_size = -1".to_string(),
        "auto_type_candidates = ['BOOLEAN', 'INTEGER', 'BIGINT', 'DOUBLE', 'DATE', 'TIMESTAMP', 'VARCHAR']"
            .to_string(),
    ];
    if !column_types.is_empty() {
        let types: Vec<String> = column_types
            .iter()
            .map(|(c, t)| format!("{}: {}", literal(c), literal(t)))
            .collect();
        options.push(format!("types = {{{}}}", types.join(", ")));
    }
    Statement {
        sql: format!(
            "create table {relation} as select * from read_csv({}, {})",
            literal(&path.to_string_lossy()),
            options.join(", ")
        ),
        kind: StatementKind::Ddl,
        body_line: None,
        counts: Some(count(relation)),
    }
}

/// The query counting a built relation's rows (its "rows affected").
fn count(relation: &Relation) -> String {
    format!("select count(*) from {relation}")
}

/// The files an `external` model wrote, as a table function call.
fn read_files(
    location: &str,
    format: FileFormat,
    partitioned: bool,
    options: &[(String, String)],
) -> String {
    let path = if partitioned {
        format!(
            "{}/**/*.{}",
            location.trim_end_matches('/'),
            format.as_str()
        )
    } else {
        location.to_string()
    };
    let mut args = vec![literal(&path)];
    if partitioned {
        args.push("hive_partitioning = true".to_string());
    }
    match format {
        FileFormat::Parquet => format!("read_parquet({})", args.join(", ")),
        FileFormat::Json => format!("read_json({})", args.join(", ")),
        FileFormat::Csv => {
            args.push("header = true".to_string());
            for (k, v) in options {
                if k == "delimiter" {
                    args.push(format!("delim = {}", literal(v)));
                }
            }
            format!("read_csv({})", args.join(", "))
        }
    }
}

/// A table with an enforced contract, as dbt-duckdb makes it: created with the declared
/// columns, types and constraints, then filled with the query's columns in that order.
fn contracted_table(tmp: &Relation, sql: &str, contract: &Contract) -> Vec<Statement> {
    let mut items: Vec<String> = contract
        .columns
        .iter()
        .map(|c| {
            let mut item = format!("{} {}", quote(&c.name), c.data_type);
            for k in &c.constraints {
                item.push(' ');
                item.push_str(&constraint_sql(k, true));
            }
            item
        })
        .collect();
    items.extend(
        contract
            .constraints
            .iter()
            .map(|k| constraint_sql(k, false)),
    );
    let names: Vec<String> = contract.columns.iter().map(|c| quote(&c.name)).collect();
    let names = names.join(", ");
    vec![
        Statement::ddl(format!(
            "create table {tmp} (\n    {}\n)",
            items.join(",\n    ")
        )),
        Statement {
            sql: format!(
                "insert into {tmp} ({names}) (\n    select {names} from (\n{sql}\n    ) as model_subq\n)"
            ),
            kind: StatementKind::Ddl,
            body_line: Some(3),
            counts: Some(count(tmp)),
        },
    ]
}

/// One constraint in a `create table`: inline after its column, or (`inline` false) as a
/// table constraint over its columns.
fn constraint_sql(c: &Constraint, inline: bool) -> String {
    let columns = || {
        c.columns
            .iter()
            .map(|n| quote(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = match (&c.kind, inline) {
        (ConstraintKind::NotNull, true) => "not null".to_string(),
        (ConstraintKind::NotNull, false) => format!(
            "check ({})",
            c.columns
                .iter()
                .map(|n| format!("{} is not null", quote(n)))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        (ConstraintKind::Unique, true) => "unique".to_string(),
        (ConstraintKind::Unique, false) => format!("unique ({})", columns()),
        (ConstraintKind::PrimaryKey, true) => "primary key".to_string(),
        (ConstraintKind::PrimaryKey, false) => format!("primary key ({})", columns()),
        (ConstraintKind::Check(e), _) => format!("check ({e})"),
        (
            ConstraintKind::ForeignKey {
                references,
                columns: to,
            },
            inline,
        ) => {
            let target = if to.is_empty() {
                references.clone()
            } else {
                format!(
                    "{references} ({})",
                    to.iter().map(|n| quote(n)).collect::<Vec<_>>().join(", ")
                )
            };
            if inline {
                format!("references {target}")
            } else {
                format!("foreign key ({}) references {target}", columns())
            }
        }
        (ConstraintKind::Custom(e), _) => e.clone(),
    };
    match &c.name {
        Some(name) if !matches!(c.kind, ConstraintKind::NotNull) || !inline => {
            format!("constraint {} {body}", quote(name))
        }
        _ => body,
    }
}

/// `Step::Replace`: build under `<name>__dbt_tmp`, then drop the old relation and rename the
/// new one, in one transaction (DuckDB's DDL is transactional).
fn replace(relation: &Relation, build: &Build, existing: Option<Kind>) -> Vec<Statement> {
    let tmp = relation.with_suffix(TMP_SUFFIX);
    let mut out = vec![Statement::new(
        StatementKind::Begin,
        "begin transaction".to_string(),
    )];
    out.extend(match build {
        Build::Table { sql } => vec![Statement {
            sql: format!("create table {tmp} as (\n{sql}\n)"),
            kind: StatementKind::Ddl,
            body_line: Some(2),
            counts: Some(count(&tmp)),
        }],
        Build::View { sql } => vec![Statement {
            sql: format!("create view {tmp} as (\n{sql}\n)"),
            kind: StatementKind::Ddl,
            body_line: Some(2),
            counts: None,
        }],
        Build::Contracted { sql, contract } => contracted_table(&tmp, sql, contract),
        Build::FilesView {
            location,
            format,
            partitioned,
            options,
        } => vec![Statement::ddl(format!(
            "create view {tmp} as (\nselect * from {}\n)",
            read_files(location, *format, *partitioned, options)
        ))],
        Build::Seed {
            path,
            delimiter,
            column_types,
        } => vec![load_seed(&tmp, path, delimiter, column_types)],
    });
    if let Some(old) = existing {
        out.push(Statement::ddl(format!(
            "drop {} if exists {relation}",
            old.as_str()
        )));
    }
    out.push(Statement::ddl(format!(
        "alter {} {tmp} rename to {}",
        build.kind().as_str(),
        quote(&relation.identifier)
    )));
    out.push(Statement::new(StatementKind::Commit, "commit".to_string()));
    out
}

impl Dialect for DuckDb {
    fn name(&self) -> &'static str {
        "DuckDB"
    }

    fn id(&self) -> &'static str {
        "duckdb"
    }

    fn parser(&self) -> Box<dyn sqlparser::dialect::Dialect> {
        Box::new(sqlparser::dialect::DuckDbDialect {})
    }

    fn describe_query(&self, sql: &str) -> Statement {
        Statement {
            sql: format!("describe select * from (\n{sql}\n)"),
            kind: StatementKind::Query,
            body_line: Some(2),
            counts: None,
        }
    }

    fn insert_by_name(&self, relation: &Relation, query: &str) -> Statement {
        Statement::new(
            StatementKind::Dml,
            format!("insert into {} by name {query}", self.relation(relation)),
        )
    }

    fn rows_diff(
        &self,
        actual: &str,
        expected: &str,
        columns: &[String],
    ) -> (Vec<(String, String)>, String) {
        let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let list = cols.join(", ");
        // Differing rows first, each group sorted on the typed values (so that a missing row
        // and the unexpected row that replaced it stand together), then shown as DuckDB
        // writes them.
        let order: Vec<String> = std::iter::once("(d.diff = ' ')".to_string())
            .chain(cols.iter().map(|c| format!("d.{c} nulls first")))
            .chain(std::iter::once("d.diff".to_string()))
            .collect();
        let ctes = vec![
            ("a".to_string(), format!("select {list} from {actual}")),
            ("e".to_string(), format!("select {list} from {expected}")),
        ];
        let select = format!(
            "select cast(columns(*) as varchar) from ( \
             select '-' as diff, * from (select * from e except all select * from a) \
             union all select '+' as diff, * from (select * from a except all select * from e) \
             union all select ' ' as diff, * from (select * from a intersect all select * from e) \
             ) as d order by {}",
            order.join(", "),
        );
        (ctes, select)
    }

    fn lower(&self, step: &Step) -> Vec<Statement> {
        let ddl = Statement::ddl;
        let dml = |sql: String| Statement::new(StatementKind::Dml, sql);
        let one = match step {
            Step::Replace {
                relation,
                build,
                existing,
                options: _,
            } => return replace(relation, build, *existing),
            Step::CreateSchema { database, schema } => ddl(format!(
                "create schema if not exists {}",
                self.schema(database.as_deref(), schema)
            )),
            Step::Drop { relation, kind } => {
                ddl(format!("drop {} if exists {relation}", kind.as_str()))
            }
            Step::Begin => Statement::new(StatementKind::Begin, "begin transaction".to_string()),
            Step::Commit => Statement::new(StatementKind::Commit, "commit".to_string()),
            Step::CopyTo {
                sql,
                location,
                format,
                partition_by,
                options,
            } => {
                let mut opts = vec![format!("format {}", format.as_str())];
                if *format == FileFormat::Csv {
                    opts.push("header true".to_string());
                }
                if partition_by.is_empty() {
                    // Written beside and renamed at the end: a failed write leaves the old file.
                    opts.push("use_tmp_file true".to_string());
                } else {
                    let cols: Vec<String> = partition_by.iter().map(|c| quote(c)).collect();
                    opts.push(format!("partition_by ({})", cols.join(", ")));
                    // The folder is emptied first: no partition of an earlier run stays.
                    opts.push("overwrite true".to_string());
                }
                for (k, v) in options {
                    opts.push(format!("{k} {}", literal(v)));
                }
                Statement {
                    sql: format!(
                        "copy (\n{sql}\n) to {} ({})",
                        literal(location),
                        opts.join(", ")
                    ),
                    kind: StatementKind::Ddl,
                    body_line: Some(2),
                    counts: None,
                }
            }
            Step::CreateTableAs { relation, sql } => Statement {
                sql: format!("create table {relation} as (\n{sql}\n)"),
                kind: StatementKind::Ddl,
                body_line: Some(2),
                counts: Some(count(relation)),
            },
            Step::AssertUniqueKey { .. }
            | Step::Insert { .. }
            | Step::DeleteWindow { .. }
            | Step::Merge { .. } => return super::shared_step(self, step).into_iter().collect(),
            Step::AddColumn { relation, column } => ddl(format!(
                "alter table {relation} add column {} {}",
                quote(&column.name),
                column.data_type
            )),
            Step::AddTextColumn { relation, column } => ddl(format!(
                "alter table {relation} add column {} {}",
                quote(column),
                self.string_type()
            )),
            Step::DropColumn { relation, column } => ddl(format!(
                "alter table {relation} drop column {}",
                quote(column)
            )),
            Step::AlterColumnType { relation, column } => ddl(format!(
                "alter table {relation} alter column {} type {}",
                quote(&column.name),
                column.data_type
            )),
            Step::DeleteMatching {
                target,
                source,
                key,
                predicates,
            } => dml(format!(
                "delete from {target} as {DEST}\nusing {source} as {SOURCE}\nwhere {}{}",
                key_match(key),
                and_predicates(predicates)
            )),
            // The partitions the new rows fall in: deleted, then the new rows inserted.
            Step::InsertOverwrite {
                target,
                source,
                columns,
                partition_by,
                predicates,
                ..
            } => {
                let delete = if partition_by.is_empty() {
                    dml(format!("delete from {target}"))
                } else {
                    dml(format!(
                        "delete from {target} as {DEST}\nusing {source} as {SOURCE}\nwhere {}{}",
                        key_match(partition_by),
                        and_predicates(predicates)
                    ))
                };
                return vec![delete, dml(self.insert_columns(target, source, columns))];
            }
            Step::CreateSnapshot {
                target,
                source,
                spec,
            } => ddl(create_snapshot(target, source, spec)),
            Step::StageSnapshotChanges {
                staging,
                target,
                source,
                spec,
            } => ddl(stage_snapshot(staging, target, source, spec)),
            Step::CloseSnapshotRows {
                target,
                staging,
                spec,
            } => {
                let valid_to = quote(&spec.meta.valid_to);
                let scd_id = quote(&spec.meta.scd_id);
                dml(format!(
                    "update {target} as {DEST}\nset {valid_to} = {SOURCE}.{valid_to}\nfrom {staging} as {SOURCE}\nwhere {SOURCE}.{scd_id} = {DEST}.{scd_id}\n  and {SOURCE}.{CHANGE} in ('update', 'delete')\n  and {}",
                    is_current(spec, &format!("{DEST}."))
                ))
            }
            Step::InsertSnapshotRows {
                target,
                staging,
                spec,
            } => {
                let mut cols = spec.columns.clone();
                cols.extend(spec.meta_columns());
                dml(format!(
                    "insert into {target} ({cols})\nselect {cols} from {staging} where {CHANGE} = 'insert'",
                    cols = column_list(&cols)
                ))
            }
        };
        vec![one]
    }
}
