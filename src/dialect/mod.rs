//! Dialects: how one warehouse spells what a plan asks for. A `Dialect` lowers plan steps into
//! statements, each with its kind, and owns every piece of SQL spelling the rest of xform
//! needs: identifier quoting, string and timestamp literals, type names, relation text,
//! event-time filters, and the queries of data and unit tests.
//!
//! The trait's default methods write the SQL most warehouses share; a dialect file overrides
//! only what it spells differently: `duckdb.rs`, and `warehouse.rs` for Snowflake and BigQuery
//! (compile only: xform writes their SQL, it does not run it yet). Nothing here runs SQL or
//! looks at a database.

pub mod duckdb;
#[cfg(test)]
mod fixtures;
pub mod warehouse;

use crate::config::{Credentials, Target};
use crate::materialize::{Column, Kind, Step};
use crate::relation::{Quoting, Relation};

/// What a statement does, so that an adapter runs it without reading its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// Creates, alters or drops a schema or relation.
    Ddl,
    /// Changes rows, and reports how many.
    Dml,
    /// Returns rows.
    Query,
    /// Returns the rows that break a rule (repeated unique keys), as text in its first column:
    /// any row stops the statement list and rolls its transaction back.
    Check,
    /// Opens a transaction.
    Begin,
    /// Commits the open transaction.
    Commit,
    /// SQL the user wrote (a pre- or post-hook, `on-run-start`), run as written.
    Hook,
    /// A hook rendered only when it is about to run (`Connection::run_rendering`): its SQL is
    /// empty until then.
    PendingHook,
}

/// One SQL statement and, when it wraps a model's SQL, the line where that SQL starts, so that
/// a database error's line can be traced back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub kind: StatementKind,
    pub body_line: Option<usize>,
    /// A query whose single number is the statement's "rows affected" (for a statement that
    /// builds a relation, its row count).
    pub counts: Option<String>,
}

impl Statement {
    /// A statement that reports nothing and wraps no model SQL.
    pub fn new(kind: StatementKind, sql: String) -> Self {
        Statement {
            sql,
            kind,
            body_line: None,
            counts: None,
        }
    }

    pub fn ddl(sql: String) -> Self {
        Self::new(StatementKind::Ddl, sql)
    }
}

/// A plan's steps as statements, with the step each statement carries out.
pub struct Lowered {
    pub statements: Vec<Statement>,
    /// `step_of[i]`: the index of the step statement `i` belongs to.
    pub step_of: Vec<usize>,
}

/// Lower every step of a plan with `dialect`.
pub fn lower(dialect: &dyn Dialect, steps: &[Step]) -> Lowered {
    let mut statements = Vec::with_capacity(steps.len() + 4);
    let mut step_of = Vec::with_capacity(steps.len() + 4);
    for (i, step) in steps.iter().enumerate() {
        for s in dialect.lower(step) {
            statements.push(s);
            step_of.push(i);
        }
    }
    dialect.arrange(Lowered {
        statements,
        step_of,
    })
}

/// The steps every dialect spells through its own `Dialect` methods (its insert, window delete,
/// merge and unique-key check), lowered once here for all of them (`None` for any other step).
pub(crate) fn shared_step(dialect: &dyn Dialect, step: &Step) -> Option<Statement> {
    let dml = |sql: String| Statement::new(StatementKind::Dml, sql);
    Some(match step {
        Step::AssertUniqueKey { relation, key } => dialect.assert_unique_key(relation, key),
        Step::Insert {
            target,
            source,
            columns,
        } => dml(dialect.insert_columns(target, source, columns)),
        Step::DeleteWindow {
            target,
            column,
            window,
            predicates,
        } => dml(dialect.delete_window(target, column, window, predicates)),
        Step::Merge {
            target,
            source,
            key,
            insert_columns,
            update_columns,
            predicates,
        } => dml(dialect.merge(
            target,
            source,
            key,
            insert_columns,
            update_columns,
            predicates,
        )),
        _ => return None,
    })
}

/// The statements of a plan as one text, for `target/run/`.
pub fn script(statements: &[Statement]) -> String {
    statements
        .iter()
        .map(|s| format!("{};\n", s.sql))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The aliases of the target table and the staged rows in incremental statements, as dbt
/// names them.
pub(crate) const DEST: &str = "DBT_INTERNAL_DEST";
pub(crate) const SOURCE: &str = "DBT_INTERNAL_SOURCE";

/// What the change staging of a snapshot's later run matches on, as both dialects write it:
/// the unique key's columns under fixed aliases (`keys`, for the select lists), a source row
/// joined to its current version (`join`), and whether it changed (`changed`: a newer
/// timestamp, a checked column that differs, or a deletion record coming back).
pub(crate) struct SnapshotMatch {
    pub keys: String,
    pub join: String,
    pub changed: String,
}

impl SnapshotMatch {
    /// `quote` writes a column's name as the dialect does.
    pub(crate) fn of(
        spec: &crate::materialize::snapshot::Spec,
        quote: &dyn Fn(&str) -> String,
    ) -> SnapshotMatch {
        use crate::materialize::snapshot::{HardDeletes, Strategy};
        let alias = |i: usize| format!("__xform_key_{i}");
        let keys: Vec<String> = spec
            .unique_key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} as {}", alias(i)))
            .collect();
        let join: Vec<String> = (0..spec.unique_key.len())
            .map(|i| format!("t.{a} is not distinct from s.{a}", a = alias(i)))
            .collect();
        let mut changed = match &spec.strategy {
            Strategy::Timestamp { .. } => {
                format!("t.{} < s.__xform_ts", quote(&spec.meta.valid_from))
            }
            Strategy::Check { columns } => {
                let cols: Vec<String> = match columns {
                    Some(cols) => cols.clone(),
                    None => spec.columns.iter().map(|c| quote(c)).collect(),
                };
                let checks: Vec<String> = cols
                    .iter()
                    .map(|c| format!("t.{c} is distinct from s.{c}"))
                    .collect();
                format!("({})", checks.join(" or "))
            }
        };
        if spec.hard_deletes == HardDeletes::NewRecord {
            changed = format!("({changed} or t.{} = 'True')", quote(&spec.meta.is_deleted));
        }
        SnapshotMatch {
            keys: keys.join(", "),
            join: join.join(" and "),
            changed,
        }
    }
}

/// `a.k1 = b.k1 and a.k2 = b.k2`: keys are written as the user wrote them (dbt allows
/// expressions), prefixed with each side's alias.
/// Rows match on every key column, null-safely: unlike dbt (where a NULL key never matches and
/// every run adds its row again), a NULL key replaces the row with the same NULL key.
pub(crate) fn key_match(key: &[String]) -> String {
    key.iter()
        .map(|k| format!("{DEST}.{k} is not distinct from {SOURCE}.{k}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// ` and (p1) and (p2)`: `incremental_predicates` after a condition.
pub(crate) fn and_predicates(predicates: &[String]) -> String {
    predicates.iter().fold(String::new(), |mut out, p| {
        out.push_str(" and (");
        out.push_str(p);
        out.push(')');
        out
    })
}

/// The dialect of a target's warehouse.
pub fn of(target: &Target) -> &'static dyn Dialect {
    match target.credentials {
        Credentials::DuckDb(_) => &duckdb::DuckDb,
        Credentials::Snowflake(_) => &warehouse::Snowflake,
        Credentials::BigQuery(_) => &warehouse::BigQuery,
    }
}

/// How the target's relations are quoted: its warehouse's quoting, with the project's
/// `quoting:` over it.
pub fn quoting(target: &Target) -> crate::relation::Quoting {
    target.quote_policy.over(of(target).quoting())
}

/// How a warehouse spells SQL. Defaults are ANSI-ish SQL with double-quoted identifiers.
pub trait Dialect: Sync {
    /// The warehouse's name, as messages write it (`DuckDB`).
    fn name(&self) -> &'static str;

    /// The target type that selects this dialect (`duckdb`).
    fn id(&self) -> &'static str;

    /// The sqlparser dialect that reads this warehouse's SQL, for the compile's SQL check.
    fn parser(&self) -> Box<dyn sqlparser::dialect::Dialect>;

    /// How the warehouse quotes names; every relation the run makes carries it.
    fn quoting(&self) -> Quoting {
        Quoting::DOUBLE_QUOTES
    }

    /// An identifier, quoted.
    fn quote(&self, ident: &str) -> String {
        self.quoting().quote(ident)
    }

    /// A column's name as the plans' statements write it (DuckDB: quoted).
    fn column(&self, name: &str) -> String {
        self.quote(name)
    }

    /// `a, b, c`, each as `column` writes it.
    fn column_list(&self, columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| self.column(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `Step::Merge`: update the rows matched on `key`, insert the others (all of them with no
    /// key).
    fn merge(
        &self,
        target: &Relation,
        source: &Relation,
        key: &[String],
        insert_columns: &[String],
        update_columns: &[String],
        predicates: &[String],
    ) -> String {
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
                .map(|c| format!("{} = {SOURCE}.{}", self.column(c), self.column(c)))
                .collect();
            sql.push_str("when matched then update set ");
            sql.push_str(&sets.join(", "));
            sql.push('\n');
        }
        let values: Vec<String> = insert_columns
            .iter()
            .map(|c| format!("{SOURCE}.{}", self.column(c)))
            .collect();
        sql.push_str("when not matched then insert (");
        sql.push_str(&self.column_list(insert_columns));
        sql.push_str(") values (");
        sql.push_str(&values.join(", "));
        sql.push(')');
        sql
    }

    /// `Step::AssertUniqueKey`: the key as text (`(a, b)` for a list) of the first repeated
    /// keys, and how many keys repeat in all; any row fails the check.
    fn assert_unique_key(&self, relation: &Relation, key: &[String]) -> Statement {
        let text = self.string_type();
        let parts: Vec<String> = key
            .iter()
            .map(|k| format!("coalesce(cast({k} as {text}), 'null')"))
            .collect();
        let shown = if key.len() == 1 {
            parts[0].clone()
        } else {
            format!("concat('(', {}, ')')", parts.join(", ', ', "))
        };
        Statement::new(
            StatementKind::Check,
            format!(
                "select __xform_key, count(*) over () from (select {shown} as __xform_key from {relation} group by {} having count(*) > 1) order by __xform_key limit {}",
                key.join(", "),
                duckdb::SHOWN_KEYS
            ),
        )
    }

    /// `Step::DeleteWindow`: the rows of one microbatch window.
    fn delete_window(
        &self,
        target: &Relation,
        column: &str,
        window: &crate::materialize::microbatch::Window,
        predicates: &[String],
    ) -> String {
        format!(
            "delete from {target} as {DEST}\nwhere {}{}",
            self.time_window(&format!("{DEST}.{column}"), window.start, window.end),
            and_predicates(predicates)
        )
    }

    /// `Step::Insert`: copy columns from the staged rows.
    fn insert_columns(&self, target: &Relation, source: &Relation, columns: &[String]) -> String {
        format!(
            "insert into {target} ({cols})\nselect {cols} from {source}",
            cols = self.column_list(columns)
        )
    }

    /// A string literal.
    fn literal(&self, text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }

    /// A timestamp literal.
    fn timestamp(&self, t: chrono::NaiveDateTime) -> String {
        format!("cast('{}' as timestamp)", t.format("%Y-%m-%d %H:%M:%S"))
    }

    /// `expr` cast to `data_type`.
    fn cast(&self, expr: &str, data_type: &str) -> String {
        format!("cast({expr} as {data_type})")
    }

    /// The type of a text column.
    fn string_type(&self) -> &'static str {
        "VARCHAR"
    }

    /// A relation's name as SQL: `"db"."schema"."name"` with the relation's quoting, a CTE's
    /// bare name, or a subquery when the relation is filtered (a microbatch window on an input).
    fn relation(&self, relation: &Relation) -> String {
        relation.to_string()
    }

    /// A schema's name as SQL: `"db"."schema"`.
    fn schema(&self, database: Option<&str>, schema: &str) -> String {
        let q = self.quoting();
        let part = |quoted: bool, name: &str| {
            if quoted {
                q.quote(name)
            } else {
                name.to_string()
            }
        };
        match database {
            Some(db) => format!("{}.{}", part(q.database, db), part(q.schema, schema)),
            None => part(q.schema, schema),
        }
    }

    /// The condition selecting the rows of `column` in `[start, end)`: a microbatch window.
    fn time_window(
        &self,
        column: &str,
        start: chrono::NaiveDateTime,
        end: chrono::NaiveDateTime,
    ) -> String {
        format!(
            "{column} >= {} and {column} < {}",
            self.timestamp(start),
            self.timestamp(end)
        )
    }

    /// A relation narrowed by a data test's `where:` config, as the test's `model`.
    fn where_subquery(&self, relation: &Relation, condition: &str) -> String {
        format!(
            "(select * from {} where {condition}) dbt_subquery",
            self.relation(relation)
        )
    }

    /// One plan step as the statements that carry it out (most steps are one statement).
    fn lower(&self, step: &Step) -> Vec<Statement>;

    /// The lowered statements of a whole plan, rearranged where the database needs it (a
    /// warehouse commits DDL on its own, so only DML stays in a transaction).
    fn arrange(&self, lowered: Lowered) -> Lowered {
        lowered
    }

    /// A statement that returns the name and type of each column of a query, without running
    /// it: by default the query cut to no rows, whose result set the adapter reads.
    fn describe_query(&self, sql: &str) -> Statement {
        Statement {
            sql: format!("select * from (\n{sql}\n) as described limit 0"),
            kind: StatementKind::Query,
            body_line: Some(2),
            counts: None,
        }
    }

    /// A data test's query cut to its first `n` rows (`limit:` config).
    fn limit(&self, query: &str, n: i64) -> String {
        format!("{query}\nlimit {n}")
    }

    /// The statements that keep a data test's failing rows in `relation` (`store_failures`,
    /// as a table or a view: `store_as`):
    /// its schema, the relation of the other kind an earlier setting left (`replaces`), and
    /// the relation itself over the test's query.
    fn store_failures(
        &self,
        relation: &Relation,
        store_as: Kind,
        replaces: Option<Kind>,
        query: &str,
    ) -> Vec<Statement> {
        let mut out = vec![Statement::ddl(format!(
            "create schema if not exists {}",
            self.schema(relation.database.as_deref(), &relation.schema)
        ))];
        if let Some(old) = replaces {
            out.push(self.drop(relation, old));
        }
        out.push(Statement::ddl(format!(
            "create or replace {} {} as (\n{query}\n)",
            store_as.as_str(),
            self.relation(relation)
        )));
        out
    }

    /// What a data test reads its failing rows from: the stored relation, or its own query.
    fn select_all(&self, relation: &Relation) -> String {
        format!("select * from {}", self.relation(relation))
    }

    /// A source's freshness: the newest `loaded_at` (an expression, as dbt takes it) of the
    /// rows matching `filter`, and the database's time now, both in UTC.
    fn freshness_query(
        &self,
        relation: &Relation,
        loaded_at: &str,
        filter: Option<&str>,
    ) -> String {
        let filter = filter.map_or_else(String::new, |f| format!("\nwhere {f}"));
        format!(
            "select max({loaded_at}) as max_loaded_at, current_timestamp as snapshotted_at\nfrom {}{filter}",
            self.relation(relation)
        )
    }

    /// dbt's count query around a data test's failing rows: the failure count and whether it
    /// trips `warn_if` and `error_if`.
    fn test_counts(&self, failing: &str, fail_calc: &str, warn_if: &str, error_if: &str) -> String {
        format!(
            "select\n    {fail_calc} as failures,\n    {fail_calc} {warn_if} as should_warn,\n    {fail_calc} {error_if} as should_error\nfrom (\n{failing}\n) dbt_internal_test"
        )
    }

    /// The first `n` failing rows of a data test, for its report.
    fn test_sample(&self, failing: &str, n: usize) -> String {
        format!("select * from (\n{failing}\n) dbt_internal_sample limit {n}")
    }

    /// An empty table with these columns.
    fn create_table(&self, relation: &Relation, columns: &[Column]) -> Statement {
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}", self.quote(&c.name), c.data_type))
            .collect();
        Statement::ddl(format!(
            "create table {} ({})",
            self.relation(relation),
            list.join(", ")
        ))
    }

    /// A table holding the rows of `query`.
    fn create_table_as(&self, relation: &Relation, query: &str) -> Statement {
        Statement::ddl(format!(
            "create table {} as {query}",
            self.relation(relation)
        ))
    }

    /// A table with the columns of `query` and none of its rows.
    fn create_empty_table_as(&self, relation: &Relation, query: &str) -> Statement {
        Statement::ddl(format!(
            "create table {} as select * from (\n{query}\n) limit 0",
            self.relation(relation)
        ))
    }

    /// Drop a relation of a known kind.
    fn drop(&self, relation: &Relation, kind: Kind) -> Statement {
        Statement::ddl(format!(
            "drop {} {}",
            kind.as_str(),
            self.relation(relation)
        ))
    }

    /// Give a relation another name in its schema (`adapter.rename_relation`).
    fn rename(&self, relation: &Relation, kind: Kind, identifier: &str) -> Statement {
        Statement::ddl(format!(
            "alter {} {} rename to {}",
            kind.as_str(),
            self.relation(relation),
            self.quote(identifier)
        ))
    }

    /// Delete every row of a table (`adapter.truncate_relation`).
    fn truncate(&self, relation: &Relation) -> Statement {
        Statement::new(
            StatementKind::Dml,
            format!("truncate table {}", self.relation(relation)),
        )
    }

    /// Drop a schema and what it holds (`adapter.drop_schema`).
    fn drop_schema(&self, database: Option<&str>, schema: &str) -> Statement {
        Statement::ddl(format!(
            "drop schema if exists {} cascade",
            self.schema(database, schema)
        ))
    }

    /// Insert the rows of `query` into `relation`, matching columns by name (a column `query`
    /// does not return is null). By default, where there is no `by name`, the query's columns
    /// are in the table's order.
    fn insert_by_name(&self, relation: &Relation, query: &str) -> Statement {
        Statement::new(
            StatementKind::Dml,
            format!("insert into {} {query}", self.relation(relation)),
        )
    }

    /// Rows as a query: `select * from (values (…), (…)) as given(a, b)`. Each cell is SQL.
    fn values(&self, columns: &[String], rows: &[Vec<String>]) -> String {
        let lines: Vec<String> = rows
            .iter()
            .map(|cells| format!("({})", cells.join(", ")))
            .collect();
        let names: Vec<String> = columns.iter().map(|c| self.quote(c)).collect();
        format!(
            "select * from (values {}) as given({})",
            lines.join(", "),
            names.join(", ")
        )
    }

    /// A column type as a catalog written on another target may spell it (a DuckDB build's
    /// `catalog.json` serving `compile --assume-exists` for a warehouse), in this warehouse's
    /// spelling; a type it already spells is kept.
    fn own_type(&self, data_type: &str) -> String {
        data_type.to_string()
    }

    /// The distinct `except` and `intersect` operators as the warehouse spells them.
    fn set_operators(&self) -> (&'static str, &'static str) {
        ("except distinct", "intersect distinct")
    }

    /// A unit test's comparison of the rows of `actual` and `expected` (relations or CTE names)
    /// on `columns`: one row per row of either side, marked `-` (expected, missing), `+`
    /// (returned, not expected) or ` ` (both), every value as text, differing rows first. The
    /// CTEs it needs (`name`, `body`) and the `select` that reads them, so that it can follow
    /// other CTEs.
    ///
    /// By default both sides are cast to text and each row numbered among its equals, so that
    /// the distinct set operators compare multisets: a row expected twice must be returned
    /// twice.
    fn rows_diff(
        &self,
        actual: &str,
        expected: &str,
        columns: &[String],
    ) -> (Vec<(String, String)>, String) {
        let (except_op, intersect_op) = self.set_operators();
        let text = self.string_type();
        let cols: Vec<String> = columns.iter().map(|c| self.column(c)).collect();
        let as_text: Vec<String> = cols
            .iter()
            .map(|c| format!("cast({c} as {text}) as {c}"))
            .collect();
        let list = cols.join(", ");
        let numbered = |from: &str| {
            format!(
                "select {list}, row_number() over (partition by {list} order by {list}) as __xform_n\nfrom (select {} from {from}) as t",
                as_text.join(", ")
            )
        };
        let picked: Vec<String> = cols.iter().map(|c| format!("d.{c}")).collect();
        let select = format!(
            "select d.diff, {picked} from (\n\
             select '-' as diff, x.* from (select * from __xform_e {except_op} select * from __xform_a) as x\n\
             union all select '+' as diff, y.* from (select * from __xform_a {except_op} select * from __xform_e) as y\n\
             union all select ' ' as diff, z.* from (select * from __xform_a {intersect_op} select * from __xform_e) as z\n\
             ) as d\norder by case when d.diff = ' ' then 1 else 0 end, {picked}, d.diff",
            picked = picked.join(", "),
        );
        (
            vec![
                ("__xform_a".to_string(), numbered(actual)),
                ("__xform_e".to_string(), numbered(expected)),
            ],
            select,
        )
    }
}
