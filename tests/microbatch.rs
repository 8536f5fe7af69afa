//! The `microbatch` incremental strategy on real DuckDB, over several runs: the source table is
//! changed between runs by the test and the model's table is read back after every step.
//!
//! Time is pinned with `--event-time-end` (and dates in 2024), never the clock. Each test says
//! which dbt behaviour (dbt-core 1.9+ microbatch, as dbt-duckdb runs it) it pins.

#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, rows, run, run_fails, sql};

/// A project whose source `raw.events` declares `event_time: ts`.
fn project(name: &str, model: &str) -> TempProject {
    let p = TempProject::empty(name);
    p.write(
        "models/sources.yml",
        "sources:
  - name: raw
    schema: raw
    tables:
      - name: events
        config:
          event_time: ts
",
    );
    p.write("models/m.sql", model);
    p
}

const CONFIG: &str = "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts', batch_size='day', begin='2024-01-01') }}";

/// Four events over three days.
const EVENTS: &str = "create schema if not exists raw;
create or replace table raw.events as select id, v, cast(ts as timestamp) as ts from (values
  (1, 'a', '2024-01-01 10:00'), (2, 'b', '2024-01-02 10:00'),
  (3, 'c', '2024-01-03 10:00'), (4, 'd', '2024-01-03 20:00')) t(id, v, ts);";

const ALL: &str = "select id, v from main.m order by id";

fn model() -> String {
    format!("{CONFIG}\nselect id, v, ts from {{{{ source('raw', 'events') }}}}\n")
}

fn results(p: &TempProject) -> Vec<(String, String, String)> {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn first_run_builds_every_batch_from_begin_and_later_runs_only_the_lookback() {
    let p = project("mb", &model());
    sql(&p, "mb", EVENTS);
    // dbt: with no table yet, batches run from `begin` to the end time, one per day.
    let first = run(&p, &["run", "--event-time-end", "2024-01-04"]);
    assert!(first.contains("batch 3 of 3 OK"), "{first}");
    assert!(!first.contains("batch 4 of"), "{first}");
    assert_eq!(rows(&p, "mb", ALL), ["1|a", "2|b", "3|c", "4|d"]);
    // An old row (day 1) and a row of the last day change; a row of the last day is deleted and
    // another added.
    sql(
        &p,
        "mb",
        "update raw.events set v = 'A' where id = 1;
         update raw.events set v = 'C' where id = 3;
         delete from raw.events where id = 4;
         insert into raw.events values (5, 'e', '2024-01-03 23:00');",
    );
    // dbt: a normal run processes the batch holding the end time and `lookback` (1) batches
    // before it. The end 2024-01-04 00:00 starts an empty batch, so only 2024-01-03 runs.
    let later = run(&p, &["run", "--event-time-end", "2024-01-04"]);
    assert!(later.contains("batch 1 of 1 OK"), "{later}");
    assert!(
        later.contains("[2024-01-03 00:00:00, 2024-01-04 00:00:00)"),
        "{later}"
    );
    // dbt: the batch replaces its whole window (delete the window, insert): row 4 is gone, row 5
    // added, row 3 updated; row 1 outside the window keeps its old value.
    assert_eq!(rows(&p, "mb", ALL), ["1|a", "2|b", "3|C", "5|e"]);
    // The run SQL deletes the window before inserting.
    let run_sql = std::fs::read_to_string(p.path().join("target/run/mb/models/m.sql")).unwrap();
    assert!(run_sql.contains("-- batch [2024-01-03"), "{run_sql}");
    assert!(
        run_sql.contains("ts >= cast('2024-01-03 00:00:00' as timestamp)"),
        "{run_sql}"
    );
    // dbt: `lookback` is the number of batches before the current one that a normal run
    // reprocesses: with 2, days 2 and 3 run, day 1 does not.
    p.write(
        "models/m.sql",
        &model().replace("begin='2024-01-01'", "begin='2024-01-01', lookback=2"),
    );
    sql(&p, "mb", "update raw.events set v = 'B' where id = 2;");
    let two = run(&p, &["run", "--event-time-end", "2024-01-04"]);
    assert!(two.contains("batch 2 of 2 OK"), "{two}");
    assert_eq!(rows(&p, "mb", ALL), ["1|a", "2|B", "3|C", "5|e"]);
    // An end inside a day makes that day the current (partial) batch, which ends exactly at the
    // end time: row 3 (10:00) is rewritten, row 5 (23:00) is outside the window and is not.
    p.write("models/m.sql", &model());
    sql(
        &p,
        "mb",
        "update raw.events set v = 'CC' where id = 3; update raw.events set v = 'E' where id = 5;",
    );
    let partial = run(&p, &["run", "--event-time-end", "2024-01-03 12:00"]);
    assert!(partial.contains("batch 2 of 2 OK"), "{partial}");
    assert!(
        partial.contains("[2024-01-03 00:00:00, 2024-01-03 12:00:00)"),
        "{partial}"
    );
    assert_eq!(rows(&p, "mb", ALL), ["1|a", "2|B", "3|CC", "5|e"]);
    // dbt: --full-refresh rebuilds every batch from `begin`.
    run(
        &p,
        &["run", "--full-refresh", "--event-time-end", "2024-01-04"],
    );
    assert_eq!(rows(&p, "mb", ALL), ["1|A", "2|B", "3|CC", "5|E"]);
    assert_eq!(results(&p)[0].1, "success");
}

#[test]
fn event_time_start_and_end_backfill_a_chosen_window() {
    let p = project("bf", &model());
    sql(&p, "bf", EVENTS);
    run(&p, &["run", "--event-time-end", "2024-01-04"]);
    sql(&p, "bf", "update raw.events set v = upper(v);");
    // dbt: --event-time-start/--event-time-end (a backfill) run exactly the batches of the
    // window, whatever the lookback, on an existing table.
    let out = run(
        &p,
        &[
            "run",
            "--event-time-start",
            "2024-01-02",
            "--event-time-end",
            "2024-01-03",
        ],
    );
    assert!(out.contains("batch 1 of 1 OK"), "{out}");
    assert_eq!(rows(&p, "bf", ALL), ["1|a", "2|B", "3|c", "4|d"]);
    // The start is aligned on the batch size; timestamps are accepted.
    run(
        &p,
        &[
            "build",
            "--event-time-start",
            "2024-01-01T06:00:00",
            "--event-time-end",
            "2024-01-02 00:00:00",
        ],
    );
    assert_eq!(rows(&p, "bf", ALL), ["1|A", "2|B", "3|c", "4|d"]);
    // A flag that is not a time, or a window that ends before it starts, is a usage error.
    let bad = p.xform(&["run", "--event-time-start", "last week"]);
    assert_eq!(bad.status.code(), Some(2));
    let text = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(text.contains("--event-time-start `last week`"), "{text}");
    let reversed = p.xform(&[
        "run",
        "--event-time-start",
        "2024-01-03",
        "--event-time-end",
        "2024-01-02",
    ]);
    assert_eq!(reversed.status.code(), Some(2));
}

#[test]
fn upstream_models_with_event_time_are_filtered_to_the_batch() {
    let p = project("up", &model());
    // `up` has an event_time: a batch sees only its rows. `dim` has none: it is read whole.
    p.write(
        "models/up.sql",
        "{{ config(materialized='table', event_time='ts') }}\nselect * from {{ source('raw', 'events') }}\n",
    );
    p.write(
        "models/dim.sql",
        "{{ config(materialized='table') }}\nselect * from {{ source('raw', 'events') }}\n",
    );
    // An ephemeral input with an event_time is filtered like any other.
    p.write(
        "models/eph.sql",
        "{{ config(materialized='ephemeral', event_time='ts') }}\nselect * from {{ ref('dim') }}\n",
    );
    p.write(
        "models/m.sql",
        &format!(
            "{CONFIG}
select u.id, u.ts,
  (select count(*) from {{{{ ref('up') }}}}) as seen_up,
  (select count(*) from {{{{ ref('dim') }}}}) as seen_dim,
  (select count(*) from {{{{ ref('eph') }}}}) as seen_eph,
  '{{{{ model.batch.id if model.batch }}}}' as batch_id
from {{{{ ref('up') }}}} u
"
        ),
    );
    sql(&p, "up", EVENTS);
    run(&p, &["run", "--event-time-end", "2024-01-04"]);
    // dbt: `ref()` of an input with `event_time` becomes
    // `(select * from <relation> where ts >= <start> and ts < <end>)` in each batch; an input
    // without one is not filtered. `model.batch.id` is the batch's start day (`model.batch` is
    // only set while a batch renders).
    assert_eq!(
        rows(
            &p,
            "up",
            "select id, seen_up, seen_dim, seen_eph, batch_id from main.m order by id"
        ),
        [
            "1|1|4|1|20240101",
            "2|1|4|1|20240102",
            "3|2|4|2|20240103",
            "4|2|4|2|20240103"
        ]
    );
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/up/models/m.sql")).unwrap();
    assert!(
        compiled.contains("(select * from \"up\".\"main\".\"up\" where ts >= cast('2024-01-03 00:00:00' as timestamp) and ts < cast('2024-01-04 00:00:00' as timestamp))"),
        "{compiled}"
    );
    // A source with `config: {event_time: ...}` is filtered the same way.
    p.write(
        "models/m.sql",
        &format!(
            "{CONFIG}\nselect id, ts, (select count(*) from {{{{ source('raw', 'events') }}}}) as seen from {{{{ source('raw', 'events') }}}}\n"
        ),
    );
    run(
        &p,
        &[
            "run",
            "-s",
            "m",
            "--full-refresh",
            "--event-time-end",
            "2024-01-04",
        ],
    );
    assert_eq!(
        rows(&p, "up", "select id, seen from main.m order by id"),
        ["1|1", "2|1", "3|2", "4|2"]
    );
    // The event_time may also be set on the whole source.
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    schema: raw\n    config:\n      event_time: ts\n    tables:\n      - name: events\n",
    );
    run(
        &p,
        &[
            "run",
            "-s",
            "m",
            "--full-refresh",
            "--event-time-end",
            "2024-01-04",
        ],
    );
    assert_eq!(
        rows(&p, "up", "select id, seen from main.m order by id"),
        ["1|1", "2|1", "3|2", "4|2"]
    );
}

#[test]
fn a_failed_batch_leaves_the_other_batches_and_fails_the_node() {
    // Day 1 holds a value that cannot be cast: only its batch fails.
    let p = project(
        "fail",
        &format!(
            "{CONFIG}\nselect id, cast(v as integer) as n, ts from {{{{ source('raw', 'events') }}}}\n"
        ),
    );
    p.write("models/after.sql", "select * from {{ ref('m') }}\n");
    p.write("models/other.sql", "select 1 as one\n");
    sql(
        &p,
        "fail",
        "create schema raw;
         create table raw.events as select id, v, cast(ts as timestamp) as ts from (values
           (1, 'x', '2024-01-01 10:00'), (2, '2', '2024-01-02 10:00'),
           (3, '3', '2024-01-03 10:00')) t(id, v, ts);",
    );
    let out = run_fails(&p, &["run", "--event-time-end", "2024-01-04"]);
    // dbt: each batch is its own step; a failed batch does not stop the others, and the model
    // ends as a partial success (reported as an error naming the failed batch).
    assert!(out.contains("batch 1 of 3 ERROR"), "{out}");
    assert!(out.contains("batch 3 of 3 OK"), "{out}");
    assert!(out.contains("xform::batch_failed"), "{out}");
    assert!(out.contains("1 of 3 batches failed: [2024-01-01"), "{out}");
    assert!(out.contains("Could not convert string 'x'"), "{out}");
    // The compiled file the diagnostic points into holds the failed batch's SQL.
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/fail/models/m.sql")).unwrap();
    assert!(
        compiled.contains("ts >= cast('2024-01-01 00:00:00' as timestamp)"),
        "{compiled}"
    );
    assert!(out.starts_with("exit: 1"), "{out}");
    // The first batch that succeeds creates the table; the batches after it land too.
    assert_eq!(
        rows(&p, "fail", "select id, n from main.m order by id"),
        ["2|2", "3|3"]
    );
    // dbt: descendants of the failed node are skipped, other nodes still run.
    let status = results(&p);
    let of = |id: &str| status.iter().find(|r| r.0 == id).unwrap().clone();
    assert_eq!(of("model.fail.after").1, "skipped");
    assert_eq!(of("model.fail.other").1, "success");
    let m = of("model.fail.m");
    assert_eq!(m.1, "error");
    assert_eq!(
        m.2,
        "microbatch model `m`: 1 of 3 batches failed: [2024-01-01 00:00:00, 2024-01-02 00:00:00)"
    );
    // Fixing the row and backfilling the failed window completes the table.
    sql(&p, "fail", "update raw.events set v = '1' where id = 1;");
    run(
        &p,
        &[
            "run",
            "--event-time-start",
            "2024-01-01",
            "--event-time-end",
            "2024-01-02",
        ],
    );
    assert_eq!(
        rows(&p, "fail", "select id, n from main.m order by id"),
        ["1|1", "2|2", "3|3"]
    );
    // A batch failing on a later run: the others of the run still land.
    sql(
        &p,
        "fail",
        "update raw.events set v = '20' where id = 2; update raw.events set v = 'y' where id = 3;",
    );
    let out = run_fails(
        &p,
        &[
            "run",
            "--event-time-start",
            "2024-01-02",
            "--event-time-end",
            "2024-01-04",
        ],
    );
    assert!(out.contains("1 of 2 batches failed: [2024-01-03"), "{out}");
    assert_eq!(
        rows(&p, "fail", "select id, n from main.m order by id"),
        ["1|1", "2|20", "3|3"]
    );
}

#[test]
fn microbatch_requires_its_config() {
    // dbt: event_time, batch_size and begin are required for microbatch models.
    let p = project(
        "cfg",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts', batch_size='day') }}\nselect 1 as id, timestamp '2024-01-01' as ts\n",
    );
    let out = run_fails(&p, &["run", "--event-time-end", "2024-01-04"]);
    assert!(out.contains("xform::incremental_config"), "{out}");
    assert!(out.contains("has no `begin` config"), "{out}");
    p.write(
        "models/m.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts', batch_size='week', begin='2024-01-01') }}\nselect 1 as id, timestamp '2024-01-01' as ts\n",
    );
    let out = run_fails(&p, &["run", "--event-time-end", "2024-01-04"]);
    assert!(out.contains("unknown batch_size `week`"), "{out}");
}

#[test]
fn without_an_end_flag_batches_end_at_the_run_start_time() {
    // dbt: the end time defaults to now. xform's "now" is the run's start time, which
    // SOURCE_DATE_EPOCH fixes: 1704198600 is 2024-01-02 12:30 UTC.
    let p = project("now", &model());
    sql(&p, "now", EVENTS);
    let xform = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
            .args(args)
            .current_dir(p.path())
            .env("NO_COLOR", "1")
            .env("HOME", p.path())
            .env("SOURCE_DATE_EPOCH", "1704198600")
            .env_remove("DBT_PROFILES_DIR")
            .output()
            .unwrap();
        let text = common::transcript(p.path(), &out);
        assert!(out.status.success(), "{text}");
        text
    };
    // First run: from `begin` to 12:30 on day 2; day 3 is in the future.
    let first = xform(&["run"]);
    assert!(first.contains("batch 2 of 2 OK"), "{first}");
    assert!(
        first.contains("[2024-01-02 00:00:00, 2024-01-02 12:30:00)"),
        "{first}"
    );
    assert_eq!(rows(&p, "now", ALL), ["1|a", "2|b"]);
    // A later run: the current day and one day of lookback.
    sql(&p, "now", "update raw.events set v = upper(v);");
    let later = xform(&["run"]);
    assert!(
        later.contains("batch 1 of 2 OK    m [2024-01-01 00:00:00"),
        "{later}"
    );
    assert_eq!(rows(&p, "now", ALL), ["1|A", "2|B"]);
}

#[test]
fn a_begin_after_the_end_runs_nothing_and_says_so() {
    let p = project("late", &model());
    sql(&p, "late", EVENTS);
    let out = run(&p, &["run", "--event-time-end", "2023-12-01"]);
    assert!(
        out.contains("warning: microbatch model `m` has no batch to run: the start (2024-01-01 00:00:00) is not before the end (2023-12-01 00:00:00)"),
        "{out}"
    );
}
