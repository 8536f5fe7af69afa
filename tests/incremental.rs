//! Incremental models on real DuckDB, over several runs: the source table is changed between
//! runs by the test and the model's table is read back after every step.
//!
//! Where dbt-duckdb 1.11 is the reference, the test says which of its behaviours it pins.

#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, relations, rows, run, run_fails, sql};

/// A project whose model reads `raw.events` (created and changed by the test).
fn project(name: &str, model: &str) -> TempProject {
    let p = TempProject::empty(name);
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    schema: raw\n    tables:\n      - name: events\n",
    );
    p.write("models/m.sql", model);
    p
}

const EVENTS: &str = "create schema if not exists raw;
create or replace table raw.events as select * from (values
  (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)) t(id, v, updated);";

/// The rows newer than the table's latest, the usual incremental filter.
const NEWER: &str = "select * from {{ source('raw', 'events') }}
{% if is_incremental() %}where updated > (select max(updated) from {{ this }}){% endif %}
";

#[test]
fn delete_insert_is_the_default_and_replaces_rows_by_key() {
    let p = project(
        "di",
        &format!("{{{{ config(materialized='incremental', unique_key='id') }}}}\n{NEWER}"),
    );
    sql(&p, "di", EVENTS);
    // First run: the whole table.
    let first = run(&p, &["run"]);
    assert!(first.contains("incremental"), "{first}");
    let all = "select * from main.m order by id, updated";
    assert_eq!(rows(&p, "di", all), ["1|a|10", "2|b|20", "3|c|30"]);
    // New row 4, row 2 changed, row 3 deleted from the source.
    sql(
        &p,
        "di",
        "update raw.events set v = 'B', updated = 40 where id = 2;
         insert into raw.events values (4, 'd', 41);
         delete from raw.events where id = 3;",
    );
    run(&p, &["run"]);
    // dbt-duckdb: delete+insert by key; a row deleted from the source stays in the table.
    assert_eq!(
        rows(&p, "di", all),
        ["1|a|10", "2|B|40", "3|c|30", "4|d|41"]
    );
    // The run's SQL is written down and used `is_incremental()`.
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/di/models/m.sql")).unwrap();
    assert!(compiled.contains("where updated >"), "{compiled}");
    let run_sql = std::fs::read_to_string(p.path().join("target/run/di/models/m.sql")).unwrap();
    assert!(run_sql.contains("delete from"), "{run_sql}");
    // A rerun without source changes changes nothing.
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "di", all),
        ["1|a|10", "2|B|40", "3|c|30", "4|d|41"]
    );
    // --full-refresh rebuilds from the source: the deleted row is gone.
    run(&p, &["run", "--full-refresh"]);
    assert_eq!(rows(&p, "di", all), ["1|a|10", "2|B|40", "4|d|41"]);
    assert_eq!(relations(&p, "di"), ["main.m", "raw.events"]);
}

#[test]
fn delete_insert_without_a_key_appends_and_key_lists_delete_on_every_column() {
    let p = project(
        "dik",
        &format!("{{{{ config(materialized='incremental') }}}}\n{NEWER}"),
    );
    sql(&p, "dik", EVENTS);
    run(&p, &["run"]);
    sql(
        &p,
        "dik",
        "update raw.events set updated = 50 where id = 1;",
    );
    run(&p, &["run"]);
    // dbt-duckdb: delete+insert with no unique_key only inserts.
    assert_eq!(
        rows(&p, "dik", "select id, updated from main.m order by all"),
        ["1|10", "1|50", "2|20", "3|30"]
    );
    // A key list matches on every part of the key.
    p.write(
        "models/m.sql",
        &format!("{{{{ config(materialized='incremental', unique_key=['id', 'v']) }}}}\n{NEWER}"),
    );
    run(&p, &["run", "--full-refresh"]);
    sql(
        &p,
        "dik",
        "insert into raw.events values (1, 'z', 60); update raw.events set updated = 61 where id = 2;",
    );
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "dik", "select id, v, updated from main.m order by all"),
        ["1|a|50", "1|z|60", "2|b|61", "3|c|30"]
    );
}

#[test]
fn append_inserts_every_new_row() {
    let p = project(
        "app",
        &format!(
            "{{{{ config(materialized='incremental', incremental_strategy='append', unique_key='id') }}}}\n{NEWER}"
        ),
    );
    sql(&p, "app", EVENTS);
    run(&p, &["run"]);
    sql(
        &p,
        "app",
        "update raw.events set v = 'B', updated = 40 where id = 2;",
    );
    run(&p, &["run"]);
    // dbt: append ignores unique_key, so the changed row is there twice.
    assert_eq!(
        rows(&p, "app", "select * from main.m order by id, updated"),
        ["1|a|10", "2|b|20", "2|B|40", "3|c|30"]
    );
    run(&p, &["run"]);
    assert_eq!(rows(&p, "app", "select count(*) from main.m"), ["4"]);
}

#[test]
fn merge_updates_matched_rows_and_inserts_the_rest() {
    let p = project(
        "mrg",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', merge_exclude_columns=['created']) }}
select id, v, updated, updated as created from {{ source('raw', 'events') }}
{% if is_incremental() %}where updated > (select max(updated) from {{ this }}){% endif %}
",
    );
    sql(&p, "mrg", EVENTS);
    run(&p, &["run"]);
    sql(
        &p,
        "mrg",
        "update raw.events set v = 'B', updated = 40 where id = 2;
         insert into raw.events values (4, 'd', 41);",
    );
    run(&p, &["run"]);
    let all = "select * from main.m order by id";
    // `created` is excluded from the update: row 2 keeps its first value; row 4 is inserted
    // with every column.
    assert_eq!(
        rows(&p, "mrg", all),
        ["1|a|10|10", "2|B|40|20", "3|c|30|30", "4|d|41|41"]
    );
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "mrg", all),
        ["1|a|10|10", "2|B|40|20", "3|c|30|30", "4|d|41|41"]
    );

    // merge_update_columns: only `v` is updated; incremental_predicates narrow the match, so a
    // row outside them is inserted again instead of updated (dbt's documented effect).
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id',
            merge_update_columns=['v'], incremental_predicates=['DBT_INTERNAL_DEST.id > 1']) }}
select id, v, updated, updated as created from {{ source('raw', 'events') }}
{% if is_incremental() %}where updated > (select max(updated) from {{ this }}){% endif %}
",
    );
    sql(
        &p,
        "mrg",
        "update raw.events set v = 'X', updated = 50 where id in (1, 3);",
    );
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "mrg", all),
        [
            "1|a|10|10",
            "1|X|50|50",
            "2|B|40|20",
            "3|X|30|30",
            "4|d|41|41"
        ]
    );
}

#[test]
fn merge_on_a_key_list() {
    let p = project(
        "mrgk",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key=['id', 'v']) }}
select * from {{ source('raw', 'events') }}
",
    );
    sql(&p, "mrgk", EVENTS);
    run(&p, &["run"]);
    sql(
        &p,
        "mrgk",
        "update raw.events set updated = 99 where id = 1; insert into raw.events values (1, 'q', 7);",
    );
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "mrgk", "select * from main.m order by id, v"),
        ["1|a|99", "1|q|7", "2|b|20", "3|c|30"]
    );
}

#[test]
fn duplicate_keys_in_the_new_rows_are_an_error_and_nothing_is_written() {
    for strategy in ["merge", "delete+insert"] {
        let p = project(
            "dup",
            &format!(
                "{{{{ config(materialized='incremental', incremental_strategy='{strategy}', unique_key='id') }}}}\n{NEWER}"
            ),
        );
        sql(&p, "dup", EVENTS);
        run(&p, &["run"]);
        sql(
            &p,
            "dup",
            "insert into raw.events values (4, 'd', 40), (4, 'e', 41), (5, 'f', 42), (5, 'g', 43), (6, 'h', 44);",
        );
        let out = run_fails(&p, &["run"]);
        // dbt-duckdb would keep one of the duplicates silently (known flaw); xform refuses.
        assert!(out.contains("xform::duplicate_key"), "{out}");
        assert!(out.contains("unique_key id values: 4, 5"), "{out}");
        assert_eq!(
            rows(&p, "dup", "select * from main.m order by id"),
            ["1|a|10", "2|b|20", "3|c|30"]
        );
        assert_eq!(relations(&p, "dup"), ["main.m", "raw.events"]);
    }
}

#[test]
fn a_failing_incremental_step_leaves_the_table_as_it_was() {
    let p = project(
        "atom",
        "{{ config(materialized='incremental', unique_key='id', on_schema_change='append_new_columns') }}
select id, v, {% if is_incremental() %}'not a number' as updated, 1 as extra{% else %}updated{% endif %}
from {{ source('raw', 'events') }}
",
    );
    sql(&p, "atom", EVENTS);
    run(&p, &["run"]);
    // The staging table is built and `extra` is added before the insert fails on the cast
    // of `updated`: all of it is rolled back.
    let out = run_fails(&p, &["run"]);
    assert!(out.contains("xform::database"), "{out}");
    assert!(
        out.contains("the previous relation, if any, is unchanged"),
        "{out}"
    );
    assert_eq!(
        rows(&p, "atom", "select * from main.m order by id"),
        ["1|a|10", "2|b|20", "3|c|30"]
    );
    assert_eq!(
        rows(
            &p,
            "atom",
            "select column_name from information_schema.columns where table_name = 'm' order by ordinal_position"
        ),
        ["id", "v", "updated"]
    );
    assert_eq!(relations(&p, "atom"), ["main.m", "raw.events"]);
}

/// The model first selects (id, v, updated), then (id, updated as text, w): `v` is gone,
/// `updated` changed type, `w` is new.
fn schema_change(name: &str, mode: &str) -> TempProject {
    let p = project(
        name,
        &format!(
            "{{{{ config(materialized='incremental', unique_key='id', on_schema_change='{mode}') }}}}
{{% if is_incremental() %}}
select id, cast(updated as varchar) as updated, 'w' || id as w from {{{{ source('raw', 'events') }}}} where id > 2
{{% else %}}
select id, v, updated from {{{{ source('raw', 'events') }}}} where id <= 2
{{% endif %}}
"
        ),
    );
    sql(&p, name, EVENTS);
    run(&p, &["run"]);
    p
}

fn columns(p: &TempProject, name: &str) -> Vec<String> {
    rows(
        p,
        name,
        "select column_name || ' ' || data_type from information_schema.columns where table_name = 'm' order by ordinal_position",
    )
}

#[test]
fn on_schema_change_ignore_keeps_the_table_and_fails_on_a_missing_column() {
    let p = schema_change("osc_ignore", "ignore");
    // dbt: with `ignore` the insert names the table's columns; `v` is no longer selected, so
    // the insert fails (and is rolled back).
    let out = run_fails(&p, &["run"]);
    assert!(out.contains("xform::database"), "{out}");
    assert_eq!(
        columns(&p, "osc_ignore"),
        ["id INTEGER", "v VARCHAR", "updated INTEGER"]
    );
    // A model that only adds a column: the new column is silently left out.
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', unique_key='id') }}
select id, v, updated, 1 as extra from {{ source('raw', 'events') }}
",
    );
    run(&p, &["run"]);
    assert_eq!(
        columns(&p, "osc_ignore"),
        ["id INTEGER", "v VARCHAR", "updated INTEGER"]
    );
    assert_eq!(
        rows(&p, "osc_ignore", "select * from main.m order by id"),
        ["1|a|10", "2|b|20", "3|c|30"]
    );
}

#[test]
fn on_schema_change_fail_lists_the_differences_and_writes_nothing() {
    let p = schema_change("osc_fail", "fail");
    let out = run_fails(&p, &["run"]);
    assert!(out.contains("xform::schema_change"), "{out}");
    assert!(out.contains("new column `w` VARCHAR"), "{out}");
    assert!(out.contains("column `v` is no longer selected"), "{out}");
    assert!(
        out.contains("column `updated` changed type from INTEGER to VARCHAR"),
        "{out}"
    );
    assert_eq!(
        rows(&p, "osc_fail", "select * from main.m order by id"),
        ["1|a|10", "2|b|20"]
    );
}

#[test]
fn on_schema_change_append_new_columns_adds_and_keeps_old_ones() {
    let p = schema_change("osc_append", "append_new_columns");
    run(&p, &["run"]);
    // dbt: new columns are added; a column no longer selected stays and is null in new rows;
    // types are not changed (the text value is cast back into the INTEGER column).
    assert_eq!(
        columns(&p, "osc_append"),
        ["id INTEGER", "v VARCHAR", "updated INTEGER", "w VARCHAR"]
    );
    assert_eq!(
        rows(&p, "osc_append", "select * from main.m order by id"),
        ["1|a|10|null", "2|b|20|null", "3|null|30|w3"]
    );
}

#[test]
fn on_schema_change_sync_all_columns_adds_drops_and_retypes() {
    let p = schema_change("osc_sync", "sync_all_columns");
    run(&p, &["run"]);
    assert_eq!(
        columns(&p, "osc_sync"),
        ["id INTEGER", "updated VARCHAR", "w VARCHAR"]
    );
    assert_eq!(
        rows(&p, "osc_sync", "select * from main.m order by id"),
        ["1|10|null", "2|20|null", "3|30|w3"]
    );
    // Nothing changes on a rerun with the same columns.
    run(&p, &["run"]);
    assert_eq!(rows(&p, "osc_sync", "select count(*) from main.m"), ["3"]);
}

#[test]
fn is_incremental_is_false_when_the_target_is_a_view_or_missing() {
    let p = project(
        "isinc",
        "{{ config(materialized='view') }}\nselect 1 as id, {% if is_incremental() %}'yes'{% else %}'no'{% endif %} as inc\n",
    );
    sql(&p, "isinc", EVENTS);
    run(&p, &["run"]);
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', incremental_strategy='append') }}\nselect 1 as id, {% if is_incremental() %}'yes'{% else %}'no'{% endif %} as inc\n",
    );
    // The view is replaced by a table, built whole.
    run(&p, &["run"]);
    assert_eq!(rows(&p, "isinc", "select * from main.m"), ["1|no"]);
    assert_eq!(
        rows(
            &p,
            "isinc",
            "select table_type from information_schema.tables where table_name = 'm'"
        ),
        ["BASE TABLE"]
    );
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "isinc", "select * from main.m order by inc"),
        ["1|no", "1|yes"]
    );
    // `full_refresh: false` in the config wins over the flag (dbt's rule).
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', incremental_strategy='append', full_refresh=false) }}\nselect 1 as id, {% if is_incremental() %}'yes'{% else %}'no'{% endif %} as inc\n",
    );
    run(&p, &["run", "--full-refresh"]);
    assert_eq!(rows(&p, "isinc", "select count(*) from main.m"), ["3"]);
}

#[test]
fn an_unknown_strategy_warns_on_a_full_build_and_stops_an_incremental_run() {
    let p = project(
        "badstrat",
        "{{ config(materialized='incremental', incremental_strategy='upsert') }}\nselect 1 as id\n",
    );
    sql(&p, "badstrat", EVENTS);
    // The first build makes the table whole: the strategy is not needed yet (dbt-duckdb).
    let out = run(&p, &["run"]);
    assert!(
        out.contains("unknown incremental_strategy `upsert`"),
        "{out}"
    );
    assert!(out.contains("1 passed"), "{out}");
    let out = run_fails(&p, &["run"]);
    assert!(out.contains("xform::incremental_config"), "{out}");
    assert!(
        out.contains("unknown incremental_strategy `upsert`"),
        "{out}"
    );
}

#[test]
fn insert_overwrite_replaces_every_partition_in_the_new_rows() {
    // Beyond dbt-duckdb: BigQuery's insert_overwrite. Partitions `day` 1 and 2 are built, then
    // the new rows cover day 2 only (with fewer rows): day 2 is replaced whole, day 1 is kept.
    let p = project(
        "ovw",
        "{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by={'field': 'day', 'data_type': 'int64'}) }}
select id, v, updated // 20 as day from {{ source('raw', 'events') }}
{% if is_incremental() %}where updated // 20 >= 1{% endif %}
",
    );
    sql(&p, "ovw", EVENTS);
    run(&p, &["run"]);
    let all = "select * from main.m order by id";
    assert_eq!(rows(&p, "ovw", all), ["1|a|0", "2|b|1", "3|c|1"]);
    sql(
        &p,
        "ovw",
        "delete from raw.events where id = 3; update raw.events set v = 'B' where id = 2;",
    );
    run(&p, &["run"]);
    assert_eq!(rows(&p, "ovw", all), ["1|a|0", "2|B|1"]);
    run(&p, &["run"]);
    assert_eq!(rows(&p, "ovw", all), ["1|a|0", "2|B|1"]);
    // Without partition_by it is a config error.
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', incremental_strategy='insert_overwrite') }}\nselect 1 as id\n",
    );
    let out = run_fails(&p, &["run"]);
    assert!(out.contains("xform::incremental_config"), "{out}");
}

#[test]
fn null_keys_are_replaced_not_duplicated() {
    // dbt-duckdb's flaw, not pinned: with `in (...)` / `=` a NULL key never matches, so every
    // run adds the NULL-key row again. xform matches keys null-safely under both strategies.
    for strategy in ["delete+insert", "merge"] {
        let name = if strategy == "merge" { "nm" } else { "nd" };
        let p = project(
            name,
            &format!(
                "{{{{ config(materialized='incremental', incremental_strategy='{strategy}', unique_key='id') }}}}\nselect * from {{{{ source('raw', 'events') }}}}\n"
            ),
        );
        sql(
            &p,
            name,
            "create schema if not exists raw;
             create or replace table raw.events as select * from (values (1, 'a', 10), (null, 'n', 11)) t(id, v, updated);",
        );
        run(&p, &["run"]);
        sql(&p, name, "update raw.events set v = 'N' where id is null;");
        run(&p, &["run"]);
        run(&p, &["run"]);
        assert_eq!(
            rows(
                &p,
                name,
                "select coalesce(cast(id as varchar), 'null'), v from main.m order by all"
            ),
            ["1|a", "null|N"],
            "{strategy}"
        );
    }
}
