//! Unit tests on DuckDB: `unit_tests:` in YAML with dict, csv and sql rows, seeds read from
//! their files when not given, sources typed from their declared columns, ephemeral inputs,
//! overrides of vars, env vars and macros, `this` for incremental models, xform's
//! `expect_table` after an incremental merge and a snapshot, repeated keys in a merge's given
//! rows, the diff of a failing test, the place of unit tests in `build`, selection, and
//! declaration errors.

#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, relations, rows, run, run_fails, sql, transcript};

/// A shop whose `orders` model reads a view, an ephemeral model over a source, a seed not given
/// in any test, a var, an env var and a macro; plus an incremental model and a snapshot.
fn shop() -> TempProject {
    let p = TempProject::empty("shop");
    p.write("xform.yml", "name: shop\nvars:\n  tax_rate: 0.2\n");
    p.write(
        "seeds/raw_orders.csv",
        "order_id,customer_id,status,amount,updated_at\n1,1,placed,10,2024-01-01 00:00:00\n2,2,shipped,20,2024-01-02 00:00:00\n",
    );
    p.write("seeds/fx_rates.csv", "currency,rate\nEUR,1.0\nUSD,0.5\n");
    p.write(
        "models/sources.yml",
        "sources:\n  - name: shop\n    schema: main\n    tables:\n      - name: payments\n        columns:\n          - {name: payment_id, data_type: integer}\n          - {name: order_id, data_type: integer}\n          - {name: amount, data_type: double}\n",
    );
    p.write(
        "models/stg_orders.sql",
        "select order_id, customer_id, status, amount, cast(updated_at as timestamp) as updated_at\nfrom {{ ref('raw_orders') }}\n",
    );
    p.write(
        "models/order_payments.sql",
        "{{ config(materialized='ephemeral') }}\nselect order_id, sum(amount) as paid\nfrom {{ source('shop', 'payments') }}\ngroup by order_id\n",
    );
    p.write(
        "macros/discount.sql",
        "{% macro discount() %}0{% endmacro %}\n",
    );
    p.write(
        "models/orders.sql",
        "{{ config(materialized='table') }}\nselect\n    o.order_id,\n    o.status,\n    o.amount,\n    coalesce(p.paid, 0) as paid,\n    round(o.amount * {{ var('tax_rate') }}, 2) as tax,\n    '{{ env_var('XF_CURRENCY', 'EUR') }}' as currency,\n    o.amount * r.rate as amount_fx,\n    {{ discount() }} as discount\nfrom {{ ref('stg_orders') }} as o\nleft join {{ ref('order_payments') }} as p on p.order_id = o.order_id\njoin {{ ref('fx_rates') }} as r on r.currency = '{{ env_var('XF_CURRENCY', 'EUR') }}'\n",
    );
    p.write(
        "models/orders_inc.sql",
        "{{ config(materialized='incremental', unique_key='order_id', incremental_strategy='merge') }}\nselect order_id, status, updated_at from {{ ref('stg_orders') }}\n{% if is_incremental() %}\nwhere updated_at > (select max(updated_at) from {{ this }})\n{% endif %}\n",
    );
    p.write(
        "snapshots/orders_snap.sql",
        "{% snapshot orders_snap %}\n{{ config(unique_key='order_id', strategy='timestamp', updated_at='updated_at', target_schema='snapshots') }}\nselect order_id, status, updated_at from {{ ref('stg_orders') }}\n{% endsnapshot %}\n",
    );
    p.write("models/unit_tests.yml", PASSING);
    p
}

const PASSING: &str = r#"
unit_tests:
  - name: orders_join_payments
    description: Orders without payments have paid = 0; amounts in EUR use the seed's rate.
    model: orders
    given:
      - input: ref('stg_orders')
        rows:
          - {order_id: 1, status: placed, amount: 10}
          - {order_id: 2, status: "won't ship", amount: 20}
      - input: ref('order_payments')
        rows:
          - {order_id: 1, paid: 4}
    expect:
      rows:
        - {order_id: 1, status: placed, paid: 4, tax: 2, currency: EUR, amount_fx: 10, discount: 0}
        - {order_id: 2, status: "won't ship", paid: 0, tax: 4, currency: EUR, amount_fx: 20, discount: 0}

  - name: orders_overrides
    model: orders
    overrides:
      vars: {tax_rate: 0.5}
      env_vars: {XF_CURRENCY: USD}
      macros: {discount: 7}
    given:
      - input: ref('stg_orders')
        rows: [{order_id: 1, status: placed, amount: 10}]
      - input: ref('order_payments')
        rows: []
      - input: ref('fx_rates')
    expect:
      rows: [{order_id: 1, tax: 5, currency: USD, amount_fx: 5, discount: 7}]

  - name: orders_join_payments
    model: order_payments
    given:
      - input: source('shop', 'payments')
        rows:
          - {order_id: 1, amount: 2.5}
          - {order_id: 1, amount: 1.5}
          - {order_id: 2, amount: 3}
    expect:
      rows:
        - {order_id: 1, paid: 4}
        - {order_id: 2, paid: 3}

  - name: stg_orders_formats
    model: stg_orders
    given:
      - input: ref('raw_orders')
        format: csv
        rows: |
          order_id,status,updated_at
          7,placed,2024-03-01 10:00:00
    expect:
      format: sql
      rows: select 7 as order_id, 'placed' as status, timestamp '2024-03-01 10:00:00' as updated_at, null as amount

  - name: orders_inc_new_rows
    model: orders_inc
    overrides:
      macros: {is_incremental: true}
    given:
      - input: this
        rows: [{order_id: 1, status: placed, updated_at: 2024-01-01 00:00:00}]
      - input: ref('stg_orders')
        rows:
          - {order_id: 1, status: placed, updated_at: 2024-01-01 00:00:00}
          - {order_id: 2, status: shipped, updated_at: 2024-01-02 00:00:00}
    expect:
      rows: [{order_id: 2, status: shipped}]

  - name: orders_inc_merge_leaves
    model: orders_inc
    given:
      - input: this
        rows:
          - {order_id: 1, status: placed, updated_at: 2024-01-01 00:00:00}
          - {order_id: 2, status: placed, updated_at: 2024-01-01 00:00:00}
      - input: ref('stg_orders')
        rows:
          - {order_id: 1, status: placed, updated_at: 2024-01-01 00:00:00}
          - {order_id: 2, status: shipped, updated_at: 2024-01-03 00:00:00}
          - {order_id: 3, status: placed, updated_at: 2024-01-03 00:00:00}
    expect_table:
      rows:
        - {order_id: 1, status: placed}
        - {order_id: 2, status: shipped}
        - {order_id: 3, status: placed}

  - name: orders_snap_closes_changed_rows
    model: orders_snap
    given:
      - input: this
        rows:
          - {order_id: 1, status: placed, updated_at: 2024-01-01 00:00:00, dbt_scd_id: a1, dbt_updated_at: 2024-01-01 00:00:00, dbt_valid_from: 2024-01-01 00:00:00, dbt_valid_to: null}
      - input: ref('stg_orders')
        rows:
          - {order_id: 1, status: shipped, updated_at: 2024-01-05 00:00:00}
          - {order_id: 2, status: placed, updated_at: 2024-01-05 00:00:00}
    expect_table:
      rows:
        - {order_id: 1, status: placed, dbt_valid_from: 2024-01-01 00:00:00, dbt_valid_to: 2024-01-05 00:00:00}
        - {order_id: 1, status: shipped, dbt_valid_from: 2024-01-05 00:00:00, dbt_valid_to: null}
        - {order_id: 2, status: placed, dbt_valid_from: 2024-01-05 00:00:00, dbt_valid_to: null}
"#;

fn payments(p: &TempProject) {
    sql(
        p,
        "shop",
        "create table main.payments as select 1 as payment_id, 1 as order_id, 4.0 as amount",
    );
}

fn statuses(p: &TempProject) -> Vec<String> {
    let text = std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["unique_id"].as_str().unwrap().starts_with("unit_test."))
        .map(|r| {
            format!(
                "{} {} {}",
                r["unique_id"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["failures"]
            )
        })
        .collect()
}

#[test]
fn unit_tests_pass_and_run_before_their_model() {
    let p = shop();
    payments(&p);
    let out = run(&p, &["build", "--threads", "1"]);
    let lines: Vec<&str> = out.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in\n{out}"))
    };
    // A model's unit tests run before the model itself.
    assert!(at("unit test orders.orders_join_payments") < at("table \"shop\".\"main\".\"orders\""));
    assert!(at("unit test orders_inc.orders_inc_merge_leaves") < at("\"orders_inc\""));
    assert!(out.contains("passed, 0 failed, 0 skipped"), "{out}");
    let mut got = statuses(&p);
    got.sort();
    assert_eq!(
        got,
        vec![
            "unit_test.shop.order_payments.orders_join_payments pass 0",
            "unit_test.shop.orders.orders_join_payments pass 0",
            "unit_test.shop.orders.orders_overrides pass 0",
            "unit_test.shop.orders_inc.orders_inc_merge_leaves pass 0",
            "unit_test.shop.orders_inc.orders_inc_new_rows pass 0",
            "unit_test.shop.orders_snap.orders_snap_closes_changed_rows pass 0",
            "unit_test.shop.stg_orders.stg_orders_formats pass 0",
        ]
    );
    // The project's database only holds what the build made: no fixture, no test table.
    assert_eq!(
        relations(&p, "shop"),
        vec![
            "main.fx_rates",
            "main.orders",
            "main.orders_inc",
            "main.payments",
            "main.raw_orders",
            "main.stg_orders",
            "snapshots.orders_snap",
        ]
    );
    assert_eq!(
        rows(
            &p,
            "shop",
            "select order_id, paid from main.orders order by 1"
        ),
        vec!["1|4.0", "2|0.0"]
    );
    // The manifest lists them under unit_tests, depending on their model.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap(),
    )
    .unwrap();
    let unit = &manifest["unit_tests"]["unit_test.shop.orders.orders_overrides"];
    assert_eq!(unit["model"], "orders");
    assert_eq!(unit["depends_on"]["nodes"][0], "model.shop.orders");
    assert_eq!(unit["overrides"]["env_vars"]["XF_CURRENCY"], "USD");
    assert_eq!(unit["given"][1]["input"], "ref('order_payments')");
}

#[test]
fn unit_tests_need_no_database_and_leave_none() {
    let p = shop();
    // Nothing is built: not even the source the ephemeral model reads exists.
    let out = run(&p, &["test", "-s", "test_type:unit", "--threads", "1"]);
    assert!(
        out.contains("Done in <time>: 7 passed, 0 failed, 0 skipped"),
        "{out}"
    );
    assert!(
        relations(&p, "shop").is_empty(),
        "unit tests wrote to the project's database"
    );
    // The compiled SQL of a unit test reads the inputs by their real names.
    let compiled = std::fs::read_to_string(
        p.path()
            .join("target/compiled/shop/models/unit_tests.yml/orders/orders_overrides.sql"),
    )
    .unwrap();
    assert!(
        compiled.contains("round(o.amount * 0.5, 2) as tax"),
        "{compiled}"
    );
    assert!(compiled.contains("'USD' as currency"), "{compiled}");
    assert!(compiled.contains("7 as discount"), "{compiled}");
}

#[test]
fn failing_unit_test_shows_a_diff_and_skips_its_model() {
    let p = shop();
    payments(&p);
    p.write(
        "models/unit_tests.yml",
        r"
unit_tests:
  - name: orders_tax
    model: orders
    given:
      - input: ref('stg_orders')
        rows:
          - {order_id: 1, status: placed, amount: 10}
          - {order_id: 2, status: placed, amount: 30}
      - input: ref('order_payments')
        rows: []
    expect:
      rows:
        - {order_id: 1, tax: 2}
        - {order_id: 2, tax: 5}
",
    );
    let out = p.xform(&["build", "--threads", "1", "-s", "+orders"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(transcript(p.path(), &out));
    assert!(!relations(&p, "shop").contains(&"main.orders".to_string()));
    assert_eq!(
        statuses(&p),
        vec!["unit_test.shop.orders.orders_tax fail 2"]
    );
    // `xform test` reports the same failure and exit code, and builds nothing.
    let out = run_fails(&p, &["test", "-s", "orders_tax"]);
    assert!(out.contains("1 missing, 1 unexpected"), "{out}");
    // Once the expectation is fixed (from a fixture file), `retry` reruns the unit test of
    // the last `test`.
    p.write(
        "tests/fixtures/orders_tax_expected.csv",
        "order_id,tax\n1,2\n2,6\n",
    );
    p.write(
        "models/unit_tests.yml",
        &std::fs::read_to_string(p.path().join("models/unit_tests.yml"))
            .unwrap()
            .replace(
                "    expect:\n      rows:\n        - {order_id: 1, tax: 2}\n        - {order_id: 2, tax: 5}\n",
                "    expect:\n      format: csv\n      fixture: orders_tax_expected\n",
            ),
    );
    let out = run(&p, &["retry"]);
    assert!(out.contains("PASS  unit test orders.orders_tax"), "{out}");
    // ...and `build` now builds the model after it.
    run(&p, &["build", "-s", "+orders"]);
    assert_eq!(
        rows(
            &p,
            "shop",
            "select order_id, tax from main.orders order by 1"
        ),
        vec!["1|2.0", "2|4.0"]
    );
}

#[test]
fn model_error_on_given_rows_points_at_the_model() {
    let p = shop();
    p.write(
        "models/unit_tests.yml",
        r"
unit_tests:
  - name: stg_bad_type
    model: stg_orders
    given:
      - input: ref('raw_orders')
        format: sql
        rows: select 1 as order_id, 'not a time' as updated_at
    expect:
      rows: []
",
    );
    let out = run_fails(&p, &["test"]);
    assert!(
        out.contains("unit test `stg_bad_type`: cannot create the input `ref('raw_orders')`"),
        "{out}"
    );
    p.write(
        "models/unit_tests.yml",
        r"
unit_tests:
  - name: expects_unknown_column
    model: stg_orders
    given:
      - input: ref('raw_orders')
        rows: [{order_id: 1}]
    expect:
      rows: [{order_id: 1, colour: red}]
",
    );
    let out = run_fails(&p, &["test"]);
    assert!(
        out.contains("unit test `expects_unknown_column` expects the column `colour`"),
        "{out}"
    );
    assert!(
        out.contains("the model returns: order_id, customer_id, status, amount,"),
        "{out}"
    );
    // A database error while the model runs on the given rows points at the model.
    p.write(
        "models/codes.sql",
        "select\n    order_id,\n    cast(status as integer) as code\nfrom {{ ref('stg_orders') }}\n",
    );
    p.write(
        "models/unit_tests.yml",
        r"
unit_tests:
  - name: codes_are_numbers
    model: codes
    given:
      - input: ref('stg_orders')
        rows: [{order_id: 1, status: placed}]
    expect:
      rows: [{order_id: 1, code: 1}]
",
    );
    let out = run_fails(&p, &["test"]);
    assert!(
        out.contains("unit test `codes_are_numbers`: the model `codes` failed on the"),
        "{out}"
    );
    assert!(out.contains("models/codes.sql"), "{out}");
}

#[test]
fn unit_test_declaration_errors() {
    let p = shop();
    p.write(
        "models/unit_tests.yml",
        r"
unit_tests:
  - name: misses_an_input
    model: orders
    given:
      - input: ref('stg_orders')
        rows: []
    expect: {rows: []}
  - name: gives_a_stray_input
    model: stg_orders
    given:
      - input: ref('orders')
        rows: []
    expect: {rows: []}
  - name: tests_nothing
    model: order
    given: []
    expect: {rows: []}
  - name: misspells_rows
    model: stg_orders
    given:
      - input: ref('raw_orders')
        row: []
    expect: {rows: []}
  - name: gives_a_model_without_rows
    model: orders
    given:
      - input: ref('stg_orders')
      - input: ref('order_payments')
        rows: []
    expect: {rows: []}
",
    );
    let out = p.xform(&["compile"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(transcript(p.path(), &out));
}

#[test]
fn unit_tests_are_selected_like_tests() {
    let p = shop();
    let ls = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ls"];
        all.extend_from_slice(args);
        let out = p.xform(&all);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    };
    assert_eq!(
        ls(&["-s", "test_type:unit"]),
        vec![
            "shop.order_payments.orders_join_payments",
            "shop.orders.orders_join_payments",
            "shop.orders.orders_overrides",
            "shop.orders_inc.orders_inc_merge_leaves",
            "shop.orders_inc.orders_inc_new_rows",
            "shop.orders_snap.orders_snap_closes_changed_rows",
            "shop.stg_orders.stg_orders_formats",
        ]
    );
    // A selected model brings its unit tests along; `test_type:data` leaves them out.
    assert_eq!(
        ls(&["-s", "stg_orders"]),
        vec!["shop.stg_orders", "shop.stg_orders.stg_orders_formats"]
    );
    assert_eq!(
        ls(&["-s", "orders", "--resource-type", "unit_test"]),
        vec![
            "shop.orders.orders_join_payments",
            "shop.orders.orders_overrides"
        ]
    );
    assert!(ls(&["-s", "test_type:data"]).is_empty());
    // state:modified compares each unit test's YAML entry with the earlier manifest.
    run(&p, &["compile"]);
    let state = p.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(
        p.path().join("target/manifest.json"),
        state.join("manifest.json"),
    )
    .unwrap();
    p.write(
        "models/unit_tests.yml",
        &PASSING
            .replace("{tax_rate: 0.5}", "{tax_rate: 0.6}")
            .replace("tax: 5,", "tax: 6,"),
    );
    assert_eq!(
        ls(&[
            "-s",
            "state:modified",
            "--state",
            "state",
            "--resource-type",
            "unit_test"
        ]),
        vec!["shop.orders.orders_overrides"]
    );
}

#[test]
fn a_failed_parent_skips_the_unit_tests_and_the_model() {
    let p = shop();
    payments(&p);
    p.write(
        "models/stg_orders.sql",
        "select order_id, no_such_column from {{ ref('raw_orders') }}\n",
    );
    let out = p.xform(&["build", "--threads", "2", "-s", "+orders"]);
    assert_eq!(out.status.code(), Some(1));
    let text = transcript(p.path(), &out);
    // stg_orders' own unit test catches the broken model first; everything after it is skipped.
    for skipped in [
        "ERROR unit test stg_orders.stg_orders_formats",
        "SKIP  view \"shop\".\"main\".\"stg_orders\" (upstream stg_orders_formats failed)",
        "SKIP  unit test orders.orders_join_payments (upstream stg_orders_formats failed)",
        "SKIP  unit test orders.orders_overrides (upstream stg_orders_formats failed)",
        "SKIP  table \"shop\".\"main\".\"orders\" (upstream stg_orders_formats failed)",
    ] {
        assert!(text.contains(skipped), "{text}");
    }
    // Without it, the failed view itself skips the unit tests and the model after it.
    let out = p.xform(&[
        "build",
        "--threads",
        "2",
        "-s",
        "+orders",
        "--exclude",
        "stg_orders_formats",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = transcript(p.path(), &out);
    for skipped in [
        "SKIP  unit test orders.orders_join_payments (upstream stg_orders failed)",
        "SKIP  unit test orders.orders_overrides (upstream stg_orders failed)",
        "SKIP  table \"shop\".\"main\".\"orders\" (upstream stg_orders failed)",
    ] {
        assert!(text.contains(skipped), "{text}");
    }
    // Unit tests selected without their model run on their own, in a build too.
    p.write(
        "models/stg_orders.sql",
        "select order_id, customer_id, status, amount, cast(updated_at as timestamp) as updated_at\nfrom {{ ref('raw_orders') }}\n",
    );
    let out = run(&p, &["build", "-s", "test_type:unit"]);
    assert!(
        out.contains("Done in <time>: 7 passed, 0 failed, 0 skipped"),
        "{out}"
    );
}

#[test]
fn expect_table_checks_a_schema_change_on_an_older_this() {
    let p = shop();
    p.write(
        "models/orders_wide.sql",
        "{{ config(materialized='incremental', unique_key='order_id', on_schema_change='append_new_columns') }}\nselect order_id, status, amount from {{ ref('stg_orders') }}\n{% if is_incremental() %}where order_id > (select max(order_id) from {{ this }}){% endif %}\n",
    );
    // `this` as a query is taken as it is: here the table from before `amount` was added.
    p.write(
        "models/unit_tests.yml",
        r"
unit_tests:
  - name: new_column_is_appended
    model: orders_wide
    given:
      - input: this
        format: sql
        rows: select 1 as order_id, 'placed' as status
      - input: ref('stg_orders')
        rows:
          - {order_id: 1, status: placed, amount: 10}
          - {order_id: 2, status: shipped, amount: 20}
    expect_table:
      rows:
        - {order_id: 1, status: placed, amount: null}
        - {order_id: 2, status: shipped, amount: 20}
",
    );
    let out = run(&p, &["test", "-s", "new_column_is_appended"]);
    assert!(
        out.contains("PASS  unit test orders_wide.new_column_is_appended"),
        "{out}"
    );
}

#[test]
fn repeated_keys_in_the_given_rows_of_a_merge_name_the_keys() {
    let p = shop();
    p.write(
        "models/orders_merged.sql",
        "{{ config(materialized='incremental', unique_key='order_id', incremental_strategy='merge') }}\nselect order_id, status from {{ ref('stg_orders') }}\n",
    );
    p.write(
        "models/unit_tests.yml",
        r"
unit_tests:
  - name: keys_repeat
    model: orders_merged
    given:
      - input: this
        rows:
          - {order_id: 1, status: placed}
      - input: ref('stg_orders')
        rows:
          - {order_id: 2, status: placed}
          - {order_id: 2, status: shipped}
    expect_table:
      rows:
        - {order_id: 1, status: placed}
",
    );
    let out = p.xform(&["test", "-s", "keys_repeat"]);
    let text = transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ERROR unit test orders_merged.keys_repeat"),
        "{text}"
    );
    assert!(
        text.contains("the model `orders_merged` failed on the given"),
        "{text}"
    );
    assert!(
        text.contains("says: duplicate unique_key values: 2\n"),
        "{text}"
    );
}
