//! Snapshots (SCD type 2) on real DuckDB over four and more runs: the test changes the source
//! table between runs and reads the snapshot table back after every step.
//!
//! The reference is dbt-core 1.11 with dbt-duckdb 1.11; each test names the behaviour it pins.

#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, relations, rows, run, run_fails, sql};

fn project(name: &str) -> TempProject {
    let p = TempProject::empty(name);
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    schema: raw\n    tables:\n      - name: people\n",
    );
    sql(
        &p,
        name,
        "create schema raw;
         create table raw.people as select * from (values
           (1, 'a', 'x', 10), (2, 'b', 'y', 20), (3, 'c', 'z', 30)) t(id, v, w, updated);",
    );
    p
}

const TIMESTAMP: &str = "{% snapshot people_ts %}
{{ config(target_schema='snaps', unique_key='id', strategy='timestamp', updated_at='updated') }}
select * from {{ source('raw', 'people') }}
{% endsnapshot %}
";

/// `id|v|valid_from|valid_to` of every version, in order.
fn versions(p: &TempProject, name: &str, table: &str) -> Vec<String> {
    rows(
        p,
        name,
        &format!(
            "select id, v, dbt_valid_from, dbt_valid_to from {table} order by id, dbt_valid_from"
        ),
    )
}

#[test]
fn timestamp_strategy_keeps_every_version_and_ignores_hard_deletes() {
    let p = project("ts");
    p.write("snapshots/people.sql", TIMESTAMP);
    p.write(
        "models/current_people.sql",
        "select id, v from {{ ref('people_ts') }} where dbt_valid_to is null\n",
    );
    // Run 1 (`build`: the snapshot, then the model that refs it).
    run(&p, &["build"]);
    let snap = "snaps.people_ts";
    assert_eq!(
        versions(&p, "ts", snap),
        ["1|a|10|null", "2|b|20|null", "3|c|30|null"]
    );
    // dbt's scd id: md5 of the key and updated_at joined with `|`; updated_at = valid_from.
    assert_eq!(
        rows(
            &p,
            "ts",
            "select dbt_scd_id = md5('1|10'), dbt_updated_at from snaps.people_ts where id = 1"
        ),
        ["true|10"]
    );
    assert_eq!(
        rows(&p, "ts", "select * from main.current_people order by id"),
        ["1|a", "2|b", "3|c"]
    );
    // Run 2: 2 changed, 4 new, 3 deleted from the source.
    sql(
        &p,
        "ts",
        "update raw.people set v = 'B', updated = 40 where id = 2;
         insert into raw.people values (4, 'd', 'q', 41);
         delete from raw.people where id = 3;",
    );
    run(&p, &["snapshot"]);
    // dbt: the closed version's valid_to is the new version's updated_at; with hard deletes
    // ignored, 3 stays current.
    let after_2 = [
        "1|a|10|null",
        "2|b|20|40",
        "2|B|40|null",
        "3|c|30|null",
        "4|d|41|null",
    ];
    assert_eq!(versions(&p, "ts", snap), after_2);
    // Run 3: nothing changed, nothing added.
    run(&p, &["snapshot"]);
    assert_eq!(versions(&p, "ts", snap), after_2);
    // Run 4: 2 changes again; a change without a newer updated_at is not a change.
    sql(
        &p,
        "ts",
        "update raw.people set v = 'BB', updated = 50 where id = 2;
         update raw.people set v = 'A' where id = 1;",
    );
    run(&p, &["build"]);
    assert_eq!(
        versions(&p, "ts", snap),
        [
            "1|a|10|null",
            "2|b|20|40",
            "2|B|40|50",
            "2|BB|50|null",
            "3|c|30|null",
            "4|d|41|null"
        ]
    );
    assert_eq!(
        rows(&p, "ts", "select * from main.current_people order by id"),
        ["1|a", "2|BB", "3|c", "4|d"]
    );
    // No staging relation is left behind; the legacy target_schema is used as given.
    assert_eq!(
        relations(&p, "ts"),
        ["main.current_people", "raw.people", "snaps.people_ts"]
    );
}

#[test]
fn invalidated_hard_deletes_close_the_row_and_a_revived_row_opens_a_new_version() {
    let p = project("inv");
    // The legacy spelling of hard_deletes: invalidate.
    p.write(
        "snapshots/people.sql",
        "{% snapshot people_inv %}
{{ config(target_schema='snaps', unique_key='id', strategy='timestamp', updated_at='updated', invalidate_hard_deletes=true) }}
select * from {{ source('raw', 'people') }}
{% endsnapshot %}
",
    );
    // A hard delete closes the row at the snapshot time, so updated_at must be a timestamp.
    sql(
        &p,
        "inv",
        "create or replace table raw.people as
         select id, v, w, timestamp '2024-01-01' + to_days(updated) as updated from raw.people;",
    );
    run(&p, &["snapshot"]);
    sql(&p, "inv", "delete from raw.people where id = 3;");
    run(&p, &["snapshot"]);
    let current = "select id, v from snaps.people_inv where dbt_valid_to is null order by id";
    assert_eq!(rows(&p, "inv", current), ["1|a", "2|b"]);
    assert_eq!(
        rows(&p, "inv", "select count(*) from snaps.people_inv"),
        ["3"]
    );
    // Run 3: still deleted, nothing changes.
    run(&p, &["snapshot"]);
    assert_eq!(
        rows(&p, "inv", "select count(*) from snaps.people_inv"),
        ["3"]
    );
    // Run 4: 3 comes back and opens a new version.
    sql(
        &p,
        "inv",
        "insert into raw.people values (3, 'C', 'z', timestamp '2024-02-05');",
    );
    run(&p, &["snapshot"]);
    assert_eq!(rows(&p, "inv", current), ["1|a", "2|b", "3|C"]);
    assert_eq!(
        rows(
            &p,
            "inv",
            "select v, dbt_valid_from, dbt_valid_to is null from snaps.people_inv where id = 3 order by dbt_valid_from"
        ),
        ["c|2024-01-31 00:00:00|false", "C|2024-02-05 00:00:00|true"]
    );
}

/// A YAML-defined snapshot (new style: `schema` goes through generate_schema_name) with the
/// check strategy, renamed meta columns and `hard_deletes: new_record`.
const CHECK_YAML: &str = "snapshots:
  - name: people_check
    relation: source('raw', 'people')
    config:
      schema: hist
      unique_key: id
      strategy: check
      check_cols: [v]
      hard_deletes: new_record
      snapshot_meta_column_names:
        dbt_valid_from: valid_from
        dbt_valid_to: valid_to
        dbt_is_deleted: is_deleted
";

#[test]
fn check_strategy_with_new_record_deletes_and_renamed_meta_columns() {
    let p = project("chk");
    p.write("snapshots/snapshots.yml", CHECK_YAML);
    let table = "main_hist.people_check";
    let all = format!(
        "select id, v, is_deleted, valid_to is null as open from {table} order by id, valid_from, is_deleted"
    );
    run(&p, &["snapshot"]);
    assert_eq!(
        rows(&p, "chk", &all),
        ["1|a|False|true", "2|b|False|true", "3|c|False|true"]
    );
    assert_eq!(
        rows(
            &p,
            "chk",
            "select string_agg(column_name, ',' order by ordinal_position) from information_schema.columns where table_name = 'people_check'"
        ),
        ["id,v,w,updated,dbt_scd_id,dbt_updated_at,valid_from,valid_to,is_deleted"]
    );
    // Run 2: a checked column changes (1), an unchecked one changes (2), 3 is deleted.
    sql(
        &p,
        "chk",
        "update raw.people set v = 'A' where id = 1;
         update raw.people set w = 'changed' where id = 2;
         delete from raw.people where id = 3;",
    );
    run(&p, &["snapshot"]);
    // dbt: new_record closes the deleted row and adds a deletion record flagged 'True'.
    let after_2 = [
        "1|a|False|false",
        "1|A|False|true",
        "2|b|False|true",
        "3|c|False|false",
        "3|c|True|true",
    ];
    assert_eq!(rows(&p, "chk", &all), after_2);
    // dbt's id of a deletion record: the md5 of the closed version's id and the time.
    assert_eq!(
        rows(
            &p,
            "chk",
            &format!(
                "select count(*) from {table} as d join {table} as c on c.id = d.id and c.valid_to = d.valid_from \
                 where d.is_deleted = 'True' \
                 and d.dbt_scd_id = md5(c.dbt_scd_id || '|' || cast(d.dbt_updated_at as varchar))"
            )
        ),
        ["1"]
    );
    // Run 3: unchanged source, no new rows (the deletion record is not repeated).
    run(&p, &["snapshot"]);
    assert_eq!(rows(&p, "chk", &all), after_2);
    // Run 4: 3 comes back: the deletion record is closed and a new version opens.
    sql(
        &p,
        "chk",
        "insert into raw.people values (3, 'c', 'z', 30);",
    );
    run(&p, &["snapshot"]);
    assert_eq!(
        rows(&p, "chk", &all),
        [
            "1|a|False|false",
            "1|A|False|true",
            "2|b|False|true",
            "3|c|False|false",
            "3|c|True|false",
            "3|c|False|true"
        ]
    );
    // Run 5: a new source column is added to the snapshot table; it is not a checked column,
    // so nothing changes.
    sql(
        &p,
        "chk",
        "alter table raw.people add column extra integer default 7;",
    );
    run(&p, &["snapshot"]);
    assert_eq!(
        rows(
            &p,
            "chk",
            &format!("select count(*), count(extra) from {table}")
        ),
        ["6|0"]
    );
    assert_eq!(
        rows(
            &p,
            "chk",
            &format!("select count(*) from {table} where valid_to is null")
        ),
        ["3"]
    );
}

#[test]
fn check_all_columns_with_valid_to_current_sees_a_new_column_as_a_change() {
    let p = project("all");
    p.write(
        "snapshots/people.sql",
        "{% snapshot people_all %}
{{ config(unique_key=['id', 'v'], strategy='check', check_cols='all', dbt_valid_to_current=\"timestamp '9999-12-31'\") }}
select id, v, w from {{ source('raw', 'people') }}
{% endsnapshot %}
",
    );
    run(&p, &["snapshot"]);
    let open = "select count(*) from main.people_all where dbt_valid_to = timestamp '9999-12-31'";
    assert_eq!(rows(&p, "all", open), ["3"]);
    assert_eq!(
        rows(
            &p,
            "all",
            "select count(*) from main.people_all where dbt_valid_to is null"
        ),
        ["0"]
    );
    sql(&p, "all", "update raw.people set w = 'new' where id = 1;");
    run(&p, &["snapshot"]);
    assert_eq!(
        rows(&p, "all", "select count(*) from main.people_all"),
        ["4"]
    );
    assert_eq!(rows(&p, "all", open), ["3"]);
    run(&p, &["snapshot"]);
    assert_eq!(
        rows(&p, "all", "select count(*) from main.people_all"),
        ["4"]
    );
    // dbt: with check_cols 'all', a newly selected column differs from the (null) stored one
    // in every row, so every row gets a new version.
    p.write(
        "snapshots/people.sql",
        "{% snapshot people_all %}
{{ config(unique_key=['id', 'v'], strategy='check', check_cols='all', dbt_valid_to_current=\"timestamp '9999-12-31'\") }}
select id, v, w, updated from {{ source('raw', 'people') }}
{% endsnapshot %}
",
    );
    run(&p, &["snapshot"]);
    assert_eq!(
        rows(&p, "all", "select count(*) from main.people_all"),
        ["7"]
    );
    assert_eq!(rows(&p, "all", open), ["3"]);
}

#[test]
fn duplicate_keys_in_the_source_are_an_error_before_anything_is_written() {
    let p = project("dupsnap");
    p.write("snapshots/people.sql", TIMESTAMP);
    sql(
        &p,
        "dupsnap",
        "insert into raw.people values (1, 'again', 'x', 11);",
    );
    let out = run_fails(&p, &["snapshot"]);
    assert!(out.contains("xform::duplicate_key"), "{out}");
    assert!(out.contains("values: 1"), "{out}");
    assert_eq!(relations(&p, "dupsnap"), ["raw.people"]);
    sql(&p, "dupsnap", "delete from raw.people where v = 'again';");
    run(&p, &["snapshot"]);
    sql(
        &p,
        "dupsnap",
        "update raw.people set updated = 99; insert into raw.people values (2, 'again', 'x', 99);",
    );
    run_fails(&p, &["snapshot"]);
    assert_eq!(
        versions(&p, "dupsnap", "snaps.people_ts"),
        ["1|a|10|null", "2|b|20|null", "3|c|30|null"]
    );
    assert_eq!(relations(&p, "dupsnap"), ["raw.people", "snaps.people_ts"]);
}

#[test]
fn snapshot_config_errors_are_clear() {
    let p = project("badsnap");
    p.write(
        "snapshots/people.sql",
        "{% snapshot s %}\n{{ config(unique_key='id', strategy='timestamp') }}\nselect * from {{ source('raw', 'people') }}\n{% endsnapshot %}\n",
    );
    let out = run_fails(&p, &["snapshot"]);
    assert!(out.contains("xform::snapshot_config"), "{out}");
    assert!(out.contains("without `updated_at`"), "{out}");
}
