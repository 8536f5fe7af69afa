//! DuckDB's SQL for plan steps.

use super::{Dialect, Statement};
use crate::materialize::{Kind, Step};
use crate::render::relation::quote;

pub struct DuckDb;

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Table => "table",
        Kind::View => "view",
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The text DuckDB's `error()` starts with when new rows repeat a unique key; the executor
/// recognises it.
pub const DUPLICATE_KEY_MARKER: &str = "xform: duplicate unique_key values: ";

const DEST: &str = "DBT_INTERNAL_DEST";
const SOURCE: &str = "DBT_INTERNAL_SOURCE";

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn prefixed(alias: &str, columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("{alias}.{}", quote(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a.k1 = b.k1 and a.k2 = b.k2`: keys are written as the user wrote them (dbt allows
/// expressions), prefixed with each side's alias.
fn key_match(key: &[String]) -> String {
    key.iter()
        .map(|k| format!("{DEST}.{k} = {SOURCE}.{k}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn and_predicates(predicates: &[String]) -> String {
    predicates.iter().fold(String::new(), |mut out, p| {
        out.push_str(" and (");
        out.push_str(p);
        out.push(')');
        out
    })
}

impl Dialect for DuckDb {
    fn describe_query(&self, sql: &str) -> Statement {
        Statement {
            sql: format!("describe select * from (\n{sql}\n)"),
            body_line: Some(2),
        }
    }

    fn statement(&self, step: &Step) -> Statement {
        let plain = |sql: String| Statement {
            sql,
            body_line: None,
        };
        match step {
            Step::CreateSchema { database, schema } => plain(match database {
                Some(db) => format!(
                    "create schema if not exists {}.{}",
                    quote(db),
                    quote(schema)
                ),
                None => format!("create schema if not exists {}", quote(schema)),
            }),
            Step::Drop { relation, kind } => {
                plain(format!("drop {} if exists {relation}", kind_word(*kind)))
            }
            Step::Begin => plain("begin transaction".to_string()),
            Step::Commit => plain("commit".to_string()),
            Step::CreateTableAs { relation, sql } => Statement {
                sql: format!("create table {relation} as (\n{sql}\n)"),
                body_line: Some(2),
            },
            Step::CreateView { relation, sql } => Statement {
                sql: format!("create view {relation} as (\n{sql}\n)"),
                body_line: Some(2),
            },
            Step::Rename { from, to, kind } => plain(format!(
                "alter {} {from} rename to {}",
                kind_word(*kind),
                quote(to)
            )),
            Step::CreateTableFromCsv {
                relation,
                path,
                delimiter,
                column_types,
            } => {
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
                plain(format!(
                    "create table {relation} as select * from read_csv({}, {})",
                    literal(&path.to_string_lossy()),
                    options.join(", ")
                ))
            }
            Step::AssertUniqueKey { relation, key } => {
                // The key as text, `(a, b)` for a list; the first ten duplicates are named.
                let parts: Vec<String> = key
                    .iter()
                    .map(|k| format!("coalesce(cast({k} as varchar), 'null')"))
                    .collect();
                let shown = if key.len() == 1 {
                    parts[0].clone()
                } else {
                    format!("'(' || {} || ')'", parts.join(" || ', ' || "))
                };
                plain(format!(
                    "select case when count(*) > 0 then error({} || string_agg(__xform_key, ', ' order by __xform_key) filter (where __xform_n <= 10) || case when count(*) > 10 then ' and ' || (count(*) - 10) || ' more' else '' end) end from (select {shown} as __xform_key, row_number() over () as __xform_n from {relation} group by {} having count(*) > 1)",
                    literal(DUPLICATE_KEY_MARKER),
                    key.join(", ")
                ))
            }
            Step::AddColumn { relation, column } => plain(format!(
                "alter table {relation} add column {} {}",
                quote(&column.name),
                column.data_type
            )),
            Step::DropColumn { relation, column } => plain(format!(
                "alter table {relation} drop column {}",
                quote(column)
            )),
            Step::AlterColumnType { relation, column } => plain(format!(
                "alter table {relation} alter column {} type {}",
                quote(&column.name),
                column.data_type
            )),
            Step::Insert {
                target,
                source,
                columns,
            } => plain(format!(
                "insert into {target} ({cols})\nselect {cols} from {source}",
                cols = column_list(columns)
            )),
            Step::DeleteMatching {
                target,
                source,
                key,
                predicates,
            } => plain(if key.len() == 1 {
                let k = &key[0];
                format!(
                    "delete from {target} as {DEST}\nwhere ({DEST}.{k}) in (select {k} from {source}){}",
                    and_predicates(predicates)
                )
            } else {
                format!(
                    "delete from {target} as {DEST}\nusing {source} as {SOURCE}\nwhere {}{}",
                    key_match(key),
                    and_predicates(predicates)
                )
            }),
            Step::Merge {
                target,
                source,
                key,
                insert_columns,
                update_columns,
                predicates,
            } => {
                let on = if key.is_empty() {
                    "false".to_string()
                } else {
                    format!("{}{}", key_match(key), and_predicates(predicates))
                };
                let mut sql =
                    format!("merge into {target} as {DEST}\nusing {source} as {SOURCE}\non {on}\n");
                if !key.is_empty() && !update_columns.is_empty() {
                    let sets: Vec<String> = update_columns
                        .iter()
                        .map(|c| format!("{} = {SOURCE}.{}", quote(c), quote(c)))
                        .collect();
                    sql.push_str("when matched then update set ");
                    sql.push_str(&sets.join(", "));
                    sql.push('\n');
                }
                sql.push_str("when not matched then insert (");
                sql.push_str(&column_list(insert_columns));
                sql.push_str(") values (");
                sql.push_str(&prefixed(SOURCE, insert_columns));
                sql.push(')');
                plain(sql)
            }
        }
    }
}
