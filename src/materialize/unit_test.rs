//! A unit test as one query, as it runs on a warehouse (BigQuery, Snowflake): no table is
//! made. Each given input becomes a CTE of its rows (`__dbt__cte__given__<input>`, every value
//! cast to its column's type), the model reads those CTEs in place of its `ref()`s and
//! `source()`s, and the query returns the comparison of the model's rows with the expected
//! rows: one row per row of either side, marked `-` (expected, missing), `+` (returned, not
//! expected) or ` ` (both), every value as text. Rows are compared as multisets: a row expected
//! twice must be returned twice.
//!
//! DuckDB runs unit tests in scratch databases instead (`execute/unit_test.rs`); the rows'
//! SQL is shared.

use serde_json::Value as Json;

use crate::dialect::Dialect;
use crate::graph::Node;
use crate::project::TestTarget;
use crate::project::unit_tests::{Input, Rows};
use crate::relation::{Column, Relation};

/// Why rows could not be written as a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    #[error("`{column}` is not a column of {what} (its columns: {columns})")]
    NotAColumn {
        column: String,
        what: String,
        columns: String,
    },
    #[error("the columns of {0} are not known, so its rows cannot be empty")]
    NoColumns(String),
}

/// A YAML or CSV value as SQL, cast to `data_type` when it is known.
pub fn value_sql(dialect: &dyn Dialect, value: &Json, data_type: Option<&str>) -> String {
    let text = match value {
        Json::Null => "null".to_string(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => dialect.literal(s),
        other => dialect.literal(&other.to_string()),
    };
    match data_type {
        Some(t) if !t.is_empty() => dialect.cast(&text, t),
        _ => text,
    }
}

/// The rows as `(name, value)` pairs, CSV fields as strings.
pub fn pairs(rows: &Rows) -> Vec<Vec<(String, Json)>> {
    match rows {
        Rows::Dict(rows) => rows.clone(),
        Rows::Csv(rows) => rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|(k, v)| (k.clone(), v.clone().map_or(Json::Null, Json::String)))
                    .collect()
            })
            .collect(),
        Rows::Sql(_) | Rows::Missing => Vec::new(),
    }
}

/// The name of the CTE that holds a given input's rows.
pub fn fixture_name(input: &Input) -> String {
    let label = match input {
        Input::Node(TestTarget::Ref(name)) => name.clone(),
        Input::Node(TestTarget::Source(s, t)) => format!("{s}__{t}"),
        Input::This => "this".to_string(),
    };
    let plain: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("given__{plain}")
}

/// The relation a template sees for a given input: its CTE.
pub fn fixture_relation(input: &Input) -> Relation {
    Relation::cte(&fixture_name(input))
}

/// Rows as a query. With a known `shape` the query has every column of it, typed, and columns
/// the rows do not give are null; without one its columns are those given, as written.
/// `what` names the rows in errors.
pub fn rows_query(
    dialect: &dyn Dialect,
    shape: Option<&[Column]>,
    rows: &Rows,
    what: &str,
) -> Result<String, RowsError> {
    if let Rows::Sql(sql) = rows
        && !sql.trim().is_empty()
    {
        return Ok(format!("select * from (\n{}\n) as given", sql.trim()));
    }
    let given = rows.columns();
    let rows = pairs(rows);
    let Some(shape) = shape else {
        if rows.is_empty() {
            return Err(RowsError::NoColumns(what.to_string()));
        }
        let columns: Vec<(String, Option<String>)> =
            given.iter().map(|c| (c.clone(), None)).collect();
        return Ok(selects(dialect, &columns, &rows));
    };
    if let Some(stray) = given
        .iter()
        .find(|c| !shape.iter().any(|s| s.name.eq_ignore_ascii_case(c)))
    {
        let names: Vec<&str> = shape.iter().map(|c| c.name.as_str()).collect();
        return Err(RowsError::NotAColumn {
            column: stray.clone(),
            what: what.to_string(),
            columns: names.join(", "),
        });
    }
    let columns: Vec<(String, Option<String>)> = shape
        .iter()
        .map(|c| (c.name.clone(), Some(c.data_type.clone())))
        .collect();
    if rows.is_empty() {
        // No rows, typed: one row of nulls, cut.
        let one = selects(dialect, &columns, &[Vec::new()]);
        return Ok(format!("{one}\nlimit 0"));
    }
    Ok(selects(dialect, &columns, &rows))
}

/// `select v as a, w as b union all select …`: one select per row, each naming its columns (a
/// warehouse-neutral form: BigQuery has no `values` table). A column a row does not give is
/// null.
fn selects(
    dialect: &dyn Dialect,
    columns: &[(String, Option<String>)],
    rows: &[Vec<(String, Json)>],
) -> String {
    rows.iter()
        .map(|row| {
            let items: Vec<String> = columns
                .iter()
                .map(|(name, data_type)| {
                    let value = row
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map_or(&Json::Null, |(_, v)| v);
                    format!(
                        "{} as {}",
                        value_sql(dialect, value, data_type.as_deref()),
                        dialect.column(name)
                    )
                })
                .collect();
            format!("select {}", items.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\nunion all\n")
}

/// `with <fixtures> select * from (<model>) as model`: the model's rows on the given inputs,
/// for describing its columns; and the line (1-based) where the model's SQL starts in it.
pub fn actual_query(fixtures: &[(String, String)], model_sql: &str) -> (String, usize) {
    let body = model_sql.trim_end().trim_end_matches(';');
    let mut out = with_fixtures(fixtures);
    out.push_str("select * from (\n");
    let line = 1 + out.bytes().filter(|&b| b == b'\n').count();
    out.push_str(body);
    out.push_str("\n) as model");
    (out, line)
}

/// The columns a node's YAML declares, when every one has a `data_type`.
pub fn declared_columns(node: &Node) -> Option<Vec<Column>> {
    let columns: Option<Vec<Column>> = node
        .columns
        .iter()
        .map(|c| {
            c.data_type.as_ref().map(|t| Column {
                name: c.name.clone(),
                data_type: t.clone(),
            })
        })
        .collect();
    columns.filter(|c| !c.is_empty())
}

fn with_fixtures(fixtures: &[(String, String)]) -> String {
    if fixtures.is_empty() {
        return String::new();
    }
    let defs: Vec<String> = fixtures
        .iter()
        .map(|(name, body)| format!("{} as (\n{body}\n)", Relation::cte(name)))
        .collect();
    format!("with {}\n", defs.join(",\n"))
}

/// `with name as (body), … select`: CTEs named as given, in front of a query.
pub fn with_ctes(ctes: &[(String, String)], select: &str) -> String {
    if ctes.is_empty() {
        return select.to_string();
    }
    let defs: Vec<String> = ctes
        .iter()
        .map(|(name, body)| format!("{name} as (\n{body}\n)"))
        .collect();
    format!("with {}\n{select}", defs.join(",\n"))
}

/// The whole unit test as one query: the fixtures, the model's rows and the expected rows, and
/// their comparison on `columns` (the expected columns, as the model names them).
pub fn comparison(
    dialect: &dyn Dialect,
    fixtures: &[(String, String)],
    model_sql: &str,
    expected: &str,
    columns: &[String],
) -> String {
    let body = model_sql.trim_end().trim_end_matches(';');
    let mut ctes: Vec<(String, String)> = fixtures
        .iter()
        .map(|(name, body)| (Relation::cte(name).to_string(), body.clone()))
        .collect();
    ctes.push((
        "__xform_actual".to_string(),
        format!("select * from (\n{body}\n) as model"),
    ));
    ctes.push(("__xform_expected".to_string(), expected.to_string()));
    let (diff_ctes, select) = dialect.rows_diff("__xform_actual", "__xform_expected", columns);
    ctes.extend(diff_ctes);
    with_ctes(&ctes, &select)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::warehouse::{BigQuery, Snowflake};

    fn col(name: &str, t: &str) -> Column {
        Column {
            name: name.to_string(),
            data_type: t.to_string(),
        }
    }

    fn dict(rows: &[&[(&str, Json)]]) -> Rows {
        Rows::Dict(
            rows.iter()
                .map(|r| {
                    r.iter()
                        .map(|(k, v)| ((*k).to_string(), v.clone()))
                        .collect()
                })
                .collect(),
        )
    }

    #[test]
    fn typed_rows_fill_missing_columns_with_typed_nulls() {
        let shape = [col("ID", "NUMBER(38,0)"), col("NAME", "VARCHAR")];
        let rows = dict(&[
            &[("id", Json::from(1))],
            &[("id", Json::from(2)), ("name", Json::from("b"))],
        ]);
        let sql = rows_query(&Snowflake, Some(&shape), &rows, "`x`").unwrap();
        assert_eq!(
            sql,
            "select cast(1 as NUMBER(38,0)) as ID, cast(null as VARCHAR) as NAME\nunion all\nselect cast(2 as NUMBER(38,0)) as ID, cast('b' as VARCHAR) as NAME"
        );
        let empty = rows_query(&BigQuery, Some(&[col("id", "INT64")]), &dict(&[]), "`x`").unwrap();
        assert_eq!(empty, "select cast(null as INT64) as id\nlimit 0");
    }

    #[test]
    fn stray_and_untyped_rows_are_reported() {
        let rows = dict(&[&[("nope", Json::from(1))]]);
        let err = rows_query(&BigQuery, Some(&[col("id", "INT64")]), &rows, "`x`").unwrap_err();
        assert!(matches!(err, RowsError::NotAColumn { ref column, .. } if column == "nope"));
        let err = rows_query(&BigQuery, None, &dict(&[]), "`x`").unwrap_err();
        assert_eq!(err, RowsError::NoColumns("`x`".to_string()));
        // Untyped: the given columns as written.
        let sql = rows_query(&BigQuery, None, &rows, "`x`").unwrap();
        assert_eq!(sql, "select 1 as nope");
    }

    #[test]
    fn duckdb_type_names_are_respelled_for_each_warehouse() {
        assert_eq!(BigQuery.own_type("varchar"), "STRING");
        assert_eq!(BigQuery.own_type("DECIMAL(18,3)"), "NUMERIC");
        assert_eq!(BigQuery.own_type("TIMESTAMP WITH TIME ZONE"), "TIMESTAMP");
        assert_eq!(BigQuery.own_type("INT64"), "INT64");
        assert_eq!(Snowflake.own_type("timestamp"), "TIMESTAMP_NTZ");
        assert_eq!(Snowflake.own_type("NUMBER(10,2)"), "NUMBER(10,2)");
    }

    #[test]
    fn the_comparison_is_one_query_in_each_dialect() {
        let fixtures = vec![("given__orders".to_string(), "select 1 as id".to_string())];
        let sql = comparison(
            &BigQuery,
            &fixtures,
            "select id from __dbt__cte__given__orders;",
            "select cast(1 as INT64) as id",
            &["id".to_string()],
        );
        assert!(
            sql.starts_with(
                "with __dbt__cte__given__orders as (\nselect 1 as id\n),\n__xform_actual as ("
            ),
            "{sql}"
        );
        assert!(sql.contains("except distinct"), "{sql}");
        let snow = comparison(
            &Snowflake,
            &fixtures,
            "select id from x",
            "select 1 as id",
            &["id".to_string()],
        );
        assert!(
            snow.contains(" except select") && !snow.contains("distinct"),
            "{snow}"
        );
        for (dialect, sql) in [(&BigQuery as &dyn Dialect, &sql), (&Snowflake, &snow)] {
            sqlparser::parser::Parser::parse_sql(&*dialect.parser(), sql)
                .unwrap_or_else(|e| panic!("{}: {e}\n{sql}", dialect.name()));
        }
    }
}
