//! End-to-end runs of the real binary on DuckDB: build projects, read the tables back.

#![cfg(feature = "duckdb")]

mod common;

use std::path::Path;

use common::{TempProject, transcript};

fn example() -> TempProject {
    TempProject::from_fixture(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example_project"))
}

fn open(path: &Path) -> duckdb::Connection {
    duckdb::Connection::open(path).unwrap()
}

fn scalar<T: duckdb::types::FromSql>(conn: &duckdb::Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every relation in the database as `schema.name kind`, sorted.
fn relations(conn: &duckdb::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("select table_schema || '.' || table_name || ' ' || table_type from information_schema.tables order by 1")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn assert_ok(project: &TempProject, out: &std::process::Output) {
    assert!(out.status.success(), "{}", transcript(project.path(), out));
}

#[test]
fn example_project_builds_end_to_end() {
    let p = example();
    let out = p.xform(&["build"]);
    assert_ok(&p, &out);
    // The data tests' unique ids are dbt's (dbt-core 1.10 `dbt parse` on the same project).
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap(),
    )
    .unwrap();
    let mut tests: Vec<&str> = manifest["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("test."))
        .collect();
    tests.sort_unstable();
    assert_eq!(
        tests,
        [
            "test.shop.accepted_values_orders_status__placed__shipped__completed__returned.69dce9e5d5",
            "test.shop.assert_no_negative_amounts",
            "test.shop.not_null_customers_customer_id.5c9bf9911d",
            "test.shop.not_null_orders_order_id.cf6c17daed",
            "test.shop.relationships_orders_customer_id__customer_id__ref_customers_.c6ec7f58f2",
            "test.shop.unique_customers_customer_id.c5af1ff4b1",
            "test.shop.unique_orders_order_id.fed79b3a6e",
        ]
    );
    // Configs carry dbt's defaults (dbt-core 1.10's manifest for the same model, verbatim).
    let dbt: serde_json::Value = serde_json::from_str(
        r#"{"enabled": true, "alias": null, "schema": null, "database": null, "tags": [], "meta": {}, "group": null, "materialized": "view", "incremental_strategy": null, "batch_size": null, "lookback": 1, "begin": null, "persist_docs": {}, "post-hook": [], "pre-hook": [], "quoting": {}, "column_types": {}, "full_refresh": null, "unique_key": null, "on_schema_change": "ignore", "on_configuration_change": "apply", "grants": {}, "packages": [], "docs": {"show": true, "node_color": null}, "contract": {"enforced": false, "alias_types": true}, "event_time": null, "concurrent_batches": null, "access": "protected", "freshness": null}"#,
    )
    .unwrap();
    assert_eq!(manifest["nodes"]["model.shop.stg_orders"]["config"], dbt);
    // Checksums of the stripped text, sources before refs, a generic test's path and code:
    // all as dbt-core 1.10 wrote them for this project.
    let nodes = &manifest["nodes"];
    assert_eq!(
        nodes["model.shop.customers"]["checksum"]["checksum"],
        "6217a596229e23775af2103c509741e56070287e9630f6fe7da4df41ba386228"
    );
    assert_eq!(
        nodes["seed.shop.raw_orders"]["checksum"]["checksum"],
        "48294d2f0bb8ef1ed28b2bbbaa76130d723a42a50a7f0e9c1ac19d668cbde4cb"
    );
    assert_eq!(
        nodes["model.shop.stg_customers"]["depends_on"]["nodes"],
        serde_json::json!(["source.shop.raw.raw_customers", "seed.shop.raw_customers"])
    );
    let not_null = &nodes["test.shop.not_null_orders_order_id.cf6c17daed"];
    assert_eq!(not_null["path"], "not_null_orders_order_id.sql");
    assert_eq!(
        not_null["raw_code"],
        "{{ test_not_null(**_dbt_generic_test_kwargs) }}"
    );
    assert_eq!(not_null["relation_name"], serde_json::Value::Null);
    assert_eq!(
        manifest["nodes"]["test.shop.accepted_values_orders_status__placed__shipped__completed__returned.69dce9e5d5"]
            ["config"]["alias"],
        "accepted_values_orders_8b08a2e3c7880954e0d6e0b54536f6b3"
    );
    let conn = open(&p.db_path("shop"));
    assert_eq!(
        relations(&conn),
        vec![
            "main.raw_customers BASE TABLE",
            "main.raw_orders BASE TABLE",
            "main.raw_payments BASE TABLE",
            "main.stg_customers VIEW",
            "main.stg_orders VIEW",
            "main.stg_payments VIEW",
            "main_marts.customers BASE TABLE",
            "main_marts.orders BASE TABLE",
        ]
    );
    assert_eq!(
        scalar::<i64>(&conn, "select count(*) from main.stg_orders"),
        34
    );
    assert_eq!(
        scalar::<i64>(&conn, "select count(*) from main_marts.orders"),
        34
    );
    assert_eq!(
        scalar::<i64>(&conn, "select count(*) from main_marts.customers"),
        15
    );
    let ltv = |id: i32| {
        scalar::<f64>(
            &conn,
            &format!(
                "select round(lifetime_value, 2) from main_marts.customers where customer_id = {id}"
            ),
        )
    };
    assert!((ltv(1) - 140.50).abs() < 1e-9);
    assert!((ltv(9) - 151.60).abs() < 1e-9);
    assert!((ltv(7) - 88.30).abs() < 1e-9);
    assert_eq!(
        scalar::<i64>(
            &conn,
            "select number_of_orders from main_marts.customers where customer_id = 1"
        ),
        4
    );
    assert!(
        (scalar::<f64>(&conn, "select round(sum(amount), 2) from main_marts.orders") - 1273.93)
            .abs()
            < 1e-9
    );
    assert_eq!(
        scalar::<String>(
            &conn,
            "select string_agg(status || '=' || n, ',' order by status) from (select status, count(*) n from main_marts.orders group by 1)"
        ),
        "completed=20,placed=4,returned=4,shipped=6"
    );
    assert_eq!(
        scalar::<String>(
            &conn,
            "select string_agg(distinct currency, ',') from main_marts.orders"
        ),
        "EUR"
    );
    // Seeds: dbt's types (INTEGER for whole numbers) and column_types from the project file.
    assert_eq!(
        scalar::<String>(
            &conn,
            "select data_type from information_schema.columns where table_name = 'raw_orders' and column_name = 'id'"
        ),
        "INTEGER"
    );
    assert_eq!(
        scalar::<String>(
            &conn,
            "select data_type from information_schema.columns where table_name = 'raw_orders' and column_name = 'order_date'"
        ),
        "DATE"
    );
    drop(conn);

    // Artifacts have dbt's shape.
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let rows = results["results"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        17,
        "3 seeds, 5 models (the ephemeral is not reported), 7 data tests and 2 unit tests"
    );
    assert!(rows.iter().all(|r| {
        let id = r["unique_id"].as_str().unwrap();
        let test = id.starts_with("test.") || id.starts_with("unit_test.");
        r["status"] == if test { "pass" } else { "success" }
    }));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/manifest.json")).unwrap())
            .unwrap();
    let orders = &manifest["nodes"]["model.shop.orders"];
    assert_eq!(orders["relation_name"], r#""shop"."main_marts"."orders""#);
    assert_eq!(orders["depends_on"]["nodes"][0], "model.shop.stg_orders");
    assert!(
        orders["compiled_code"]
            .as_str()
            .unwrap()
            .contains("__dbt__cte__int_order_payments as (")
    );
    assert!(
        p.path()
            .join("target/run/shop/models/marts/orders.sql")
            .is_file()
    );

    // A second build replaces everything in place and gives the same tables.
    let again = p.xform(&["build", "--threads", "1"]);
    assert_ok(&p, &again);
    let conn = open(&p.db_path("shop"));
    assert_eq!(relations(&conn).len(), 8);
    assert_eq!(
        scalar::<i64>(&conn, "select count(*) from main_marts.orders"),
        34
    );
}

#[test]
fn env_var_reaches_the_model() {
    let p = example();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["build"])
        .current_dir(p.path())
        .env("XFORM_SHOP_CURRENCY", "USD")
        .output()
        .unwrap();
    assert_ok(&p, &out);
    let conn = open(&p.db_path("shop"));
    assert_eq!(
        scalar::<String>(
            &conn,
            "select string_agg(distinct currency, ',') from main_marts.orders"
        ),
        "USD"
    );
}

#[test]
fn failed_model_leaves_the_previous_table_and_no_temporary_relation() {
    let p = TempProject::empty("keep");
    p.write(
        "models/totals.sql",
        "{{ config(materialized='table') }}\nselect 42 as answer\n",
    );
    p.write("models/v.sql", "select * from {{ ref('totals') }}\n");
    assert_ok(&p, &p.xform(&["run"]));

    p.write(
        "models/totals.sql",
        "{{ config(materialized='table') }}\nselect\n    answer,\n    no_such_column\nfrom (select 1 as answer)\n",
    );
    let out = p.xform(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(transcript(p.path(), &out));

    let conn = open(&p.db_path("keep"));
    assert_eq!(scalar::<i32>(&conn, "select answer from main.totals"), 42);
    assert_eq!(
        relations(&conn),
        vec!["main.totals BASE TABLE", "main.v VIEW"]
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let status: Vec<(String, String)> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        status,
        vec![
            ("model.keep.totals".to_string(), "error".to_string()),
            ("model.keep.v".to_string(), "skipped".to_string())
        ]
    );
}

#[test]
fn failure_skips_descendants_and_the_rest_still_runs() {
    let p = TempProject::empty("skips");
    p.write("models/bad.sql", "select * from no_such_table\n");
    p.write("models/child.sql", "select * from {{ ref('bad') }}\n");
    p.write(
        "models/grandchild.sql",
        "select * from {{ ref('child') }}\n",
    );
    for i in 0..6 {
        p.write(
            &format!("models/fine_{i}.sql"),
            &format!("{{{{ config(materialized='table') }}}}\nselect {i} as n\n"),
        );
    }
    let out = p.xform(&["run", "--threads", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Done in"), "{stdout}");
    assert!(stdout.contains("6 passed, 1 failed, 2 skipped"), "{stdout}");
    let conn = open(&p.db_path("skips"));
    assert_eq!(
        scalar::<i64>(
            &conn,
            "select count(*) from information_schema.tables where table_name like 'fine_%'"
        ),
        6
    );
    assert_eq!(
        scalar::<i64>(
            &conn,
            "select count(*) from information_schema.tables where table_name like '%child'"
        ),
        0
    );
}

#[test]
fn switching_between_view_and_table_replaces_the_relation() {
    let p = TempProject::empty("switch");
    p.write("models/m.sql", "select 1 as x\n");
    assert_ok(&p, &p.xform(&["run"]));
    p.write(
        "models/m.sql",
        "{{ config(materialized='table') }}\nselect 2 as x\n",
    );
    assert_ok(&p, &p.xform(&["run"]));
    {
        let conn = open(&p.db_path("switch"));
        assert_eq!(relations(&conn), vec!["main.m BASE TABLE"]);
        assert_eq!(scalar::<i32>(&conn, "select x from m"), 2);
    }
    p.write("models/m.sql", "select 3 as x\n");
    assert_ok(&p, &p.xform(&["run"]));
    let conn = open(&p.db_path("switch"));
    assert_eq!(relations(&conn), vec!["main.m VIEW"]);
    assert_eq!(scalar::<i32>(&conn, "select x from m"), 3);
}

#[test]
fn a_locked_database_is_a_clear_error() {
    let p = TempProject::empty("locked");
    p.write("models/m.sql", "select 1 as x\n");
    assert_ok(&p, &p.xform(&["run"]));
    // This test process holds the file open, so the xform process cannot take DuckDB's lock.
    let conn = open(&p.db_path("locked"));
    let out = p.xform(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("xform::database_locked"), "{stderr}");
    assert!(stderr.contains("is in use by"), "{stderr}");
    assert!(
        stderr.contains(&format!("PID {}", std::process::id())),
        "{stderr}"
    );
    drop(conn);
}

#[test]
fn profiles_choose_the_file_schema_and_threads() {
    let p = TempProject::empty("prof");
    p.write("xform.yml", "name: prof\nprofile: analytics\n");
    p.write(
        "profiles.yml",
        "analytics:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: data/dev.duckdb\n      schema: dev_schema\n      threads: 2\n    ci:\n      type: duckdb\n      path: \"{{ env_var('XFORM_TEST_CI_DB', 'ci.duckdb') }}\"\n      threads: 1\n",
    );
    p.write("models/m.sql", "{{ config(schema='extra') }}\nselect '{{ target.name }}' as t, '{{ target.schema }}' as s\n");
    assert_ok(&p, &p.xform(&["run"]));
    {
        let conn = open(&p.path().join("data/dev.duckdb"));
        assert_eq!(
            scalar::<String>(&conn, "select t || '/' || s from dev_schema_extra.m"),
            "dev/dev_schema"
        );
    }
    assert_ok(&p, &p.xform(&["run", "--target", "ci"]));
    let conn = open(&p.path().join("ci.duckdb"));
    assert_eq!(
        scalar::<String>(&conn, "select t || '/' || s from main_extra.m"),
        "ci/main"
    );
    drop(conn);
    let out = p.xform(&["debug", "--target", "ci"]);
    assert_ok(&p, &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ci.duckdb"));
    let out = p.xform(&["run", "--target", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no target `prod`"));
}

#[test]
fn introspection_queries_the_built_parents() {
    let p = TempProject::empty("intro");
    p.write("seeds/numbers.csv", "n,label\n1,one\n2,two\n5,five\n");
    p.write(
        "models/summary.sql",
        "{% set r = run_query('select max(n) as m from ' ~ ref('numbers')) %}\n{% set cols = adapter.get_columns_in_relation(ref('numbers')) %}\nselect {{ r.columns[0].values()[0] if execute else 0 }} as biggest, '{{ cols | map(attribute='name') | join(',') }}' as columns\n",
    );
    assert_ok(&p, &p.xform(&["build"]));
    {
        let conn = open(&p.db_path("intro"));
        assert_eq!(
            scalar::<String>(&conn, "select biggest || ' ' || columns from summary"),
            "5 n,label"
        );
    }
    // Once built, compile asks the database (read-only), as dbt compile does.
    std::fs::remove_dir_all(p.path().join("target")).unwrap();
    assert_ok(&p, &p.xform(&["compile"]));
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/intro/models/summary.sql")).unwrap();
    assert!(
        compiled.contains("select 5 as biggest, 'n,label' as columns"),
        "{compiled}"
    );
}

#[test]
fn selection_builds_only_what_is_chosen() {
    let p = example();
    assert_ok(&p, &p.xform(&["seed"]));
    let out = p.xform(&["run", "-s", "+stg_orders"]);
    assert_ok(&p, &out);
    let conn = open(&p.db_path("shop"));
    let rels = relations(&conn);
    assert!(rels.contains(&"main.stg_orders VIEW".to_string()));
    assert!(!rels.iter().any(|r| r.starts_with("main_marts")));
}

#[test]
fn full_refresh_reloads_seeds_with_new_columns() {
    let p = TempProject::empty("seeds");
    p.write("seeds/s.csv", "a\n1\n");
    assert_ok(&p, &p.xform(&["seed"]));
    p.write("seeds/s.csv", "a,b\n1,x\n2,y\n");
    assert_ok(&p, &p.xform(&["seed", "--full-refresh"]));
    let conn = open(&p.db_path("seeds"));
    assert_eq!(
        scalar::<i64>(&conn, "select count(*) from s where b is not null"),
        2
    );
}

#[test]
fn ctrl_c_cancels_running_queries_and_keeps_the_previous_table() {
    let p = TempProject::empty("cancel");
    p.write(
        "models/slow.sql",
        "{{ config(materialized='table') }}\nselect 1 as n\n",
    );
    assert_ok(&p, &p.xform(&["run"]));
    // Long enough that it is still running when the signal comes.
    p.write(
        "models/slow.sql",
        "{{ config(materialized='table') }}\nselect count(*) as n from range(100000000000) a\n",
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["run"])
        .current_dir(p.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run_sql = p.path().join("target/run/cancel/models/slow.sql");
    let started = std::time::Instant::now();
    while !run_sql.is_file() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        transcript(p.path(), &out)
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    assert_eq!(results["results"][0]["status"], "error");
    let conn = open(&p.db_path("cancel"));
    assert_eq!(scalar::<i32>(&conn, "select n from slow"), 1);
    assert_eq!(relations(&conn), vec!["main.slow BASE TABLE"]);
}

#[test]
fn fail_fast_skips_what_has_not_started() {
    let p = TempProject::empty("fast");
    p.write("models/a_bad.sql", "select * from no_such_table\n");
    for i in 0..3 {
        p.write(
            &format!("models/b_fine_{i}.sql"),
            &format!("select {i} as n\n"),
        );
    }
    // One thread: nodes start in id order, so the failure comes first and stops the rest.
    let out = p.xform(&["run", "--threads", "1", "-x"]);
    assert_eq!(out.status.code(), Some(1));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let statuses: Vec<String> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["unique_id"].as_str().unwrap(),
                r["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "model.fast.a_bad error",
            "model.fast.b_fine_0 skipped",
            "model.fast.b_fine_1 skipped",
            "model.fast.b_fine_2 skipped"
        ]
    );
    assert!(
        results["results"][1]["message"]
            .as_str()
            .unwrap()
            .contains("--fail-fast")
    );
    // Without -x the independent models still build.
    let out = p.xform(&["run", "--threads", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 passed, 1 failed, 0 skipped"));
}

#[test]
fn retry_reruns_what_failed_after_a_fix() {
    let p = TempProject::empty("again");
    p.write("models/base.sql", "select * from no_such_table\n");
    p.write("models/child.sql", "select * from {{ ref('base') }}\n");
    p.write("models/other.sql", "select 1 as n\n");
    let out = p.xform(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    // `result:` reads the statuses of the run whose target folder --state names.
    let ls = |selector: &str| {
        let out = p.xform(&[
            "ls", "--output", "name", "--state", "target", "-s", selector,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(ls("result:error"), "base");
    assert_eq!(ls("result:skipped"), "child");
    assert_eq!(ls("result:success"), "other");
    // After the fix, only base and child run again.
    p.write("models/base.sql", "select 2 as n\n");
    let out = p.xform(&["retry"]);
    assert_ok(&p, &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Retrying 2 nodes of the last `run`"),
        "{stdout}"
    );
    assert!(stdout.contains("2 passed, 0 failed, 0 skipped"), "{stdout}");
    let conn = open(&p.db_path("again"));
    assert_eq!(scalar::<i32>(&conn, "select n from child"), 2);
    drop(conn);
    let out = p.xform(&["retry"]);
    assert_ok(&p, &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to retry"));
}

#[test]
fn retry_without_a_previous_run_is_a_usage_error() {
    let p = TempProject::empty("fresh");
    p.write("models/m.sql", "select 1 as n\n");
    let out = p.xform(&["retry"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run_results.json") && stderr.contains("run `xform run`"),
        "{stderr}"
    );
}

#[test]
fn defer_reads_unselected_parents_from_the_state_relations() {
    let p = TempProject::empty("shop");
    p.write("xform.yml", "name: shop\nprofile: shop\n");
    // prod in its own file; dev in another that attaches prod read-only.
    p.write(
        "profiles.yml",
        "shop:\n  target: dev\n  outputs:\n    prod:\n      type: duckdb\n      path: prod.duckdb\n    dev:\n      type: duckdb\n      path: dev.duckdb\n      attach:\n        - {path: prod.duckdb, read_only: true}\n",
    );
    p.write("seeds/raw.csv", "id,amount\n1,10\n2,20\n");
    p.write(
        "models/stg.sql",
        "select id, amount * 2 as amount from {{ ref('raw') }}\n",
    );
    p.write(
        "models/totals.sql",
        "{{ config(materialized='table') }}\nselect sum(amount) as total from {{ ref('stg') }}\n",
    );
    assert_ok(&p, &p.xform(&["build", "--target", "prod"]));
    // Run xform and check what it says it defers.
    let defers = |args: &[&str], expected: &str| {
        let out = p.xform(args);
        assert_ok(&p, &out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(expected),
            "{}",
            transcript(p.path(), &out)
        );
    };
    let state = p.path().join("prod_state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(
        p.path().join("target/manifest.json"),
        state.join("manifest.json"),
    )
    .unwrap();
    // `compile --defer` before dev has a database: every unselected parent is read from the
    // state's relations (as dbt's compile does), and no database file is created.
    defers(
        &[
            "compile",
            "-s",
            "totals",
            "--defer",
            "--state",
            "prod_state",
        ],
        "Deferring 2 unselected nodes to prod_state: stg, raw",
    );
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/shop/models/totals.sql")).unwrap();
    assert!(compiled.contains("\"prod\".\"main\".\"stg\""), "{compiled}");
    assert!(!p.path().join("dev.duckdb").exists());
    // Without --defer, dev has no `stg` to read.
    let out = p.xform(&["run", "-s", "totals"]);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(p.path(), &out));
    // With it, `stg` and `raw` are read from prod, and only `totals` is built in dev.
    defers(
        &["run", "-s", "totals", "--defer", "--state", "prod_state"],
        "Deferring 2 unselected nodes to prod_state: stg, raw",
    );
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/shop/models/totals.sql")).unwrap();
    assert!(compiled.contains("\"prod\".\"main\".\"stg\""), "{compiled}");
    {
        let conn = open(&p.path().join("dev.duckdb"));
        assert_eq!(
            scalar::<String>(&conn, "select total::varchar from dev.main.totals"),
            "60"
        );
        assert_eq!(relations(&conn), vec!["main.totals BASE TABLE"]);
    }
    // A parent the target has is read from the target unless --favor-state is given.
    assert_ok(&p, &p.xform(&["seed"]));
    defers(
        &["run", "-s", "totals", "--defer", "--state", "prod_state"],
        "Deferring 1 unselected node to prod_state: stg\n",
    );
    // compile asks dev's database (read-only) what it has.
    defers(
        &[
            "compile",
            "-s",
            "totals",
            "--defer",
            "--state",
            "prod_state",
        ],
        "Deferring 1 unselected node to prod_state: stg\n",
    );
    let out = p.xform(&[
        "run",
        "-s",
        "stg",
        "totals",
        "--defer",
        "--state",
        "prod_state",
    ]);
    assert_ok(&p, &out);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Deferring"));
    defers(
        &[
            "run",
            "-s",
            "totals",
            "--defer",
            "--favor-state",
            "--state",
            "prod_state",
        ],
        "Deferring 2 unselected nodes to prod_state: stg, raw",
    );
    // --defer needs --state.
    let out = p.xform(&["run", "--defer"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn error_inside_an_ephemeral_points_at_the_ephemeral_file() {
    let p = TempProject::empty("eph");
    p.write(
        "models/base.sql",
        "{{ config(materialized='ephemeral') }}\nselect\n    1 as id,\n    missing_column as x\nfrom (select 1 as y)\n",
    );
    p.write(
        "models/final.sql",
        "{{ config(materialized='table') }}\nselect id from {{ ref('base') }}\n",
    );
    let out = p.xform(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let text = transcript(p.path(), &out);
    assert!(text.contains("╭─[models/base.sql:4:1]"), "{text}");
    assert!(
        text.contains("in the ephemeral model `base` that `final` reads"),
        "{text}"
    );
}

#[test]
fn secrets_a_profile_reads_are_masked_in_output_and_artifacts() {
    let p = TempProject::empty("shop");
    p.write(
        "profiles.yml",
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: \"{{ env_var('DBT_ENV_SECRET_FILE') }}.duckdb\"\n      schema: \"{{ env_var('DBT_ENV_SECRET_SCHEMA') }}\"\n",
    );
    p.write("models/a.sql", "select 1 as id");
    p.write("models/b.sql", "select nope from {{ ref('a') }}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["build"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .env("HOME", p.path())
        .env_remove("DBT_PROFILES_DIR")
        .env("DBT_ENV_SECRET_FILE", "topsecretfile")
        .env("DBT_ENV_SECRET_SCHEMA", "hushschema")
        .output()
        .unwrap();
    let text = common::transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // The secrets did their work: the relation is in the secret schema of the secret file.
    let conn = open(&p.path().join("topsecretfile.duckdb"));
    assert_eq!(scalar::<i64>(&conn, "select id from hushschema.a"), 1);
    drop(conn);
    assert!(text.contains("*****"), "{text}");
    for secret in ["topsecretfile", "hushschema"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
        for entry in walkdir::WalkDir::new(p.path().join("target")) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                assert!(
                    !body.contains(secret),
                    "{secret} written to {}",
                    entry.path().display()
                );
            }
        }
    }
}
