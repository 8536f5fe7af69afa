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

impl Dialect for DuckDb {
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
        }
    }
}
