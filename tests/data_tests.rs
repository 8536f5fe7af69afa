//! Data tests on DuckDB: generic tests from YAML (built in, custom, overridden), singular
//! tests, severities and thresholds, `where` and `limit`, `store_failures`, `xform test`
//! selection and `xform build` skipping downstream of a failed test.

#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, rows, run, run_fails, transcript};

/// A shop with customers (ids 1-3) and orders (one of which points at customer 9, one with a
/// duplicate id, one with a null status and one with status `lost`).
fn shop() -> TempProject {
    let p = TempProject::empty("shop");
    p.write(
        "seeds/raw_customers.csv",
        "customer_id,name\n1,ann\n2,bob\n3,cy\n",
    );
    p.write(
        "seeds/raw_orders.csv",
        "order_id,customer_id,status,amount\n1,1,placed,10\n2,2,shipped,20\n3,9,shipped,30\n3,3,lost,40\n5,1,,50\n",
    );
    p.write(
        "models/customers.sql",
        "select * from {{ ref('raw_customers') }}",
    );
    p.write("models/orders.sql", "select * from {{ ref('raw_orders') }}");
    p.write(
        "models/order_totals.sql",
        "select customer_id, sum(amount) as total from {{ ref('orders') }} group by 1",
    );
    p
}

fn schema(p: &TempProject, text: &str) {
    p.write("models/schema.yml", text);
}

fn status_of(p: &TempProject, name: &str) -> (String, serde_json::Value) {
    let text = std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let result = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["unique_id"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(2)
                .is_some_and(|n| n == name)
        })
        .unwrap_or_else(|| panic!("no result for {name} in {text}"));
    (
        result["status"].as_str().unwrap().to_string(),
        result["failures"].clone(),
    )
}

fn statuses(p: &TempProject, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            let (s, f) = status_of(p, n);
            format!("{n} {s} {f}")
        })
        .collect()
}

const ALL_BUILTINS: &str = r"
models:
  - name: customers
    columns:
      - name: customer_id
        data_tests: [unique, not_null]
  - name: orders
    columns:
      - name: order_id
        data_tests:
          - unique
          - not_null:
              config:
                tags: [critical]
      - name: status
        data_tests:
          - not_null
          - accepted_values:
              arguments:
                values: [placed, shipped]
      - name: customer_id
        tests:
          - relationships:
              to: ref('customers')
              field: customer_id
";

#[test]
fn built_in_tests_pass_and_fail() {
    let p = shop();
    schema(&p, ALL_BUILTINS);
    let out = run_fails(&p, &["build"]);
    assert_eq!(
        statuses(
            &p,
            &[
                "unique_customers_customer_id",
                "not_null_customers_customer_id",
                "unique_orders_order_id",
                "not_null_orders_order_id",
                "not_null_orders_status",
                "accepted_values_orders_status__placed__shipped",
                "relationships_orders_customer_id__customer_id__ref_customers_",
            ]
        ),
        [
            "unique_customers_customer_id pass 0",
            "not_null_customers_customer_id pass 0",
            "unique_orders_order_id fail 1",
            "not_null_orders_order_id pass 0",
            "not_null_orders_status fail 1",
            "accepted_values_orders_status__placed__shipped fail 1",
            "relationships_orders_customer_id__customer_id__ref_customers_ fail 1",
        ],
        "{out}"
    );
    assert!(out.contains("exit: 1"), "{out}");
}

#[test]
fn accepted_values_quote_false_compares_numbers() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: amount
        data_tests:
          - accepted_values:
              values: [10, 20, 30, 40, 50]
              quote: false
",
    );
    run(&p, &["build"]);
    assert_eq!(
        statuses(
            &p,
            &["accepted_values_orders_amount__False__10__20__30__40__50"]
        ),
        ["accepted_values_orders_amount__False__10__20__30__40__50 pass 0"]
    );
}

#[test]
fn severity_warn_does_not_fail_the_run() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: order_id
        data_tests:
          - unique:
              config:
                severity: warn
",
    );
    let out = run(&p, &["build"]);
    assert_eq!(
        statuses(&p, &["unique_orders_order_id"]),
        ["unique_orders_order_id warn 1"]
    );
    assert!(out.contains("warned"), "{out}");
    // Downstream of a warning still builds.
    assert_eq!(status_of(&p, "order_totals").0, "success");
}

#[test]
fn warn_if_and_error_if_set_the_thresholds() {
    let p = shop();
    schema(
        &p,
        r#"
models:
  - name: orders
    columns:
      - name: customer_id
        data_tests:
          - relationships:
              to: ref('customers')
              field: customer_id
              config:
                warn_if: ">= 1"
                error_if: "> 1"
      - name: status
        data_tests:
          - not_null:
              config:
                error_if: ">= 5"
                warn_if: ">= 5"
"#,
    );
    run(&p, &["build"]);
    assert_eq!(
        statuses(
            &p,
            &[
                "relationships_orders_customer_id__customer_id__ref_customers_",
                "not_null_orders_status"
            ]
        ),
        [
            "relationships_orders_customer_id__customer_id__ref_customers_ warn 1",
            "not_null_orders_status pass 1",
        ]
    );
}

#[test]
fn where_narrows_and_limit_caps_the_failing_rows() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: orders
    data_tests:
      - accepted_values:
          column_name: status
          values: [placed]
          config:
            where: amount < 35
            name: only_cheap_orders_placed
      - accepted_values:
          column_name: customer_id
          values: [100]
          config:
            limit: 2
            severity: warn
            name: capped
",
    );
    run_fails(&p, &["build"]);
    assert_eq!(
        statuses(&p, &["only_cheap_orders_placed", "capped"]),
        ["only_cheap_orders_placed fail 1", "capped warn 2"]
    );
}

#[test]
fn a_long_test_name_is_shortened_as_dbt_does() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: customer_id
        data_tests:
          - accepted_values:
              values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
              config:
                store_failures: true
",
    );
    run(&p, &["build"]);
    // `accepted_values_orders` and the md5 of the full name (dbt-core 1.10 gives the same).
    let short = "accepted_values_orders_338fb7ad2f48a08996890534740dcb85";
    assert_eq!(
        rows(
            &p,
            "shop",
            "select table_name from information_schema.tables where table_schema = 'main_dbt_test__audit'"
        ),
        [short]
    );
    assert!(
        p.path()
            .join(format!(
                "target/compiled/shop/models/schema.yml/{short}.sql"
            ))
            .exists()
    );
}

#[test]
fn store_failures_writes_the_failing_rows() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: customer_id
        data_tests:
          - relationships:
              to: ref('customers')
              field: customer_id
              config:
                store_failures: true
                name: orders_have_customers
",
    );
    run_fails(&p, &["build"]);
    assert_eq!(
        rows(
            &p,
            "shop",
            "select * from main_dbt_test__audit.orders_have_customers"
        ),
        ["9"]
    );
    // store_failures_as wins over store_failures: a view replaces the table, ephemeral stores
    // nothing new, and an unknown kind is an error.
    let with = |kind: &str| {
        schema(
            &p,
            &format!(
                "
models:
  - name: orders
    columns:
      - name: customer_id
        data_tests:
          - relationships:
              to: ref('customers')
              field: customer_id
              config:
                store_failures: false
                store_failures_as: {kind}
                name: orders_have_customers
"
            ),
        );
    };
    let kind = |p: &TempProject| {
        rows(
            p,
            "shop",
            "select table_type from information_schema.tables where table_name = 'orders_have_customers'",
        )
    };
    with("view");
    run_fails(&p, &["build"]);
    assert_eq!(kind(&p), ["VIEW"]);
    with("table");
    run_fails(&p, &["test"]);
    assert_eq!(kind(&p), ["BASE TABLE"]);
    with("ephemeral");
    let out = run_fails(&p, &["test"]);
    assert!(!out.contains("all failing rows are in"), "{out}");
    with("file");
    let out = run_fails(&p, &["test"]);
    assert!(
        out.contains("has store_failures_as `file`") && out.contains("models/schema.yml:12:36"),
        "{out}"
    );
}

#[test]
fn custom_generic_test_and_override_of_a_built_in() {
    let p = shop();
    p.write(
        "tests/generic/positive.sql",
        "{% test positive(model, column_name, strict=true) %}\n-- {{ model.identifier }}\nselect * from {{ model }} where {{ column_name }} {% if strict %}<={% else %}<{% endif %} 0\n{% endtest %}\n",
    );
    // A project test named like a built-in replaces it: this not_null never fails.
    p.write(
        "macros/my_not_null.sql",
        "{% test not_null(model, column_name) %}\nselect * from {{ model }} where false\n{% endtest %}\n",
    );
    p.write("seeds/negatives.csv", "n\n1\n-1\n");
    p.write(
        "seeds/schema.yml",
        "seeds:\n  - name: negatives\n    columns:\n      - name: n\n        data_tests: [positive]\n",
    );
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: amount
        data_tests:
          - positive:
              strict: false
      - name: status
        data_tests: [not_null]
",
    );
    run_fails(&p, &["build"]);
    assert_eq!(
        statuses(
            &p,
            &[
                "positive_orders_amount__False",
                "positive_negatives_n",
                "not_null_orders_status"
            ]
        ),
        [
            "positive_orders_amount__False pass 0",
            "positive_negatives_n fail 1",
            "not_null_orders_status pass 0",
        ]
    );
    // `model` is a relation, as in dbt.
    let sql = std::fs::read_to_string(
        p.path()
            .join("target/compiled/shop/models/schema.yml/positive_orders_amount__False.sql"),
    )
    .unwrap();
    assert!(sql.starts_with("\n-- orders\n"), "{sql:?}");
}

#[test]
fn singular_test_depends_on_what_it_refs() {
    let p = shop();
    p.write(
        "tests/assert_totals_positive.sql",
        "-- totals must stay under 60\nselect * from {{ ref('order_totals') }} where total >= 60\n",
    );
    let out = run_fails(&p, &["build"]);
    assert_eq!(
        statuses(&p, &["assert_totals_positive"]),
        ["assert_totals_positive fail 1"]
    );
    assert!(out.contains("on `order_totals`: 1 failing row"), "{out}");
    let ls = run(&p, &["ls", "-s", "test_type:singular"]);
    assert!(ls.contains("shop.assert_totals_positive"), "{ls}");
}

#[test]
fn a_failed_test_skips_downstream_and_a_warning_does_not() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: order_id
        data_tests: [unique]
",
    );
    let out = run_fails(&p, &["build"]);
    assert_eq!(status_of(&p, "order_totals").0, "skipped", "{out}");
    assert!(
        out.contains("SKIP  table") || out.contains("SKIP  view"),
        "{out}"
    );
    // A test on the customers model does not hold back the orders branch.
    assert_eq!(status_of(&p, "customers").0, "success");
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: order_id
        data_tests:
          - unique:
              severity: warn
",
    );
    run(&p, &["build"]);
    assert_eq!(status_of(&p, "order_totals").0, "success");
}

#[test]
fn relationships_test_between_a_model_and_its_own_parent_does_not_deadlock() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: order_totals
    columns:
      - name: customer_id
        data_tests:
          - relationships:
              to: ref('orders')
              field: customer_id
",
    );
    run(&p, &["build"]);
    assert_eq!(
        statuses(
            &p,
            &["relationships_order_totals_customer_id__customer_id__ref_orders_"]
        ),
        ["relationships_order_totals_customer_id__customer_id__ref_orders_ pass 0"]
    );
}

#[test]
fn xform_test_selects_the_tests_of_a_model() {
    let p = shop();
    schema(&p, ALL_BUILTINS);
    run(&p, &["seed"]);
    run(&p, &["run"]);
    // Eager: the relationships test comes along with either of the models it reads.
    let out = run_fails(&p, &["test", "-s", "customers"]);
    assert!(out.contains("2 passed, 1 failed"), "{out}");
    let out = run_fails(
        &p,
        &[
            "test",
            "-s",
            "orders",
            "--exclude",
            "test_name:relationships",
        ],
    );
    assert!(out.contains("1 passed, 3 failed"), "{out}");
    let out = run_fails(&p, &["test", "-s", "test_name:relationships"]);
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    let out = run(
        &p,
        &[
            "test",
            "-s",
            "resource_type:test,test_type:generic,tag:critical",
        ],
    );
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn tests_on_sources_read_the_source_table() {
    let p = shop();
    p.write(
        "models/sources.yml",
        r"
sources:
  - name: shop
    schema: main
    tables:
      - name: raw_orders
        columns:
          - name: order_id
            data_tests: [not_null]
",
    );
    run(&p, &["seed"]);
    run(&p, &["test"]);
    assert_eq!(
        statuses(&p, &["source_not_null_shop_raw_orders_order_id"]),
        ["source_not_null_shop_raw_orders_order_id pass 0"]
    );
}

#[test]
fn unknown_generic_test_is_reported() {
    let p = shop();
    schema(
        &p,
        "models:\n  - name: orders\n    columns:\n      - name: amount\n        data_tests: [positive]\n      - name: order_id\n        data_tests: [uniqe]\n",
    );
    let out = p.xform(&["build"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(transcript(p.path(), &out));
}

#[test]
fn tests_on_snapshots_and_ephemeral_models() {
    let p = shop();
    p.write(
        "models/paid.sql",
        "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('orders') }} where amount > 15",
    );
    p.write(
        "snapshots/snapshots.yml",
        r"
snapshots:
  - name: orders_history
    relation: ref('orders')
    config:
      unique_key: amount
      strategy: check
      check_cols: all
    columns:
      - name: order_id
        data_tests: [unique]
",
    );
    schema(
        &p,
        r"
models:
  - name: paid
    columns:
      - name: status
        data_tests:
          - accepted_values:
              values: [shipped]
",
    );
    run_fails(&p, &["build"]);
    assert_eq!(
        statuses(
            &p,
            &[
                "unique_orders_history_order_id",
                "accepted_values_paid_status__shipped"
            ]
        ),
        [
            "unique_orders_history_order_id fail 1",
            "accepted_values_paid_status__shipped fail 1",
        ]
    );
}

#[test]
fn failure_output() {
    let p = shop();
    schema(
        &p,
        r"
models:
  - name: orders
    columns:
      - name: order_id
        data_tests: [unique, not_null]
      - name: status
        data_tests:
          - accepted_values:
              values: [placed, shipped]
              severity: warn
",
    );
    let out = p.xform(&["build", "--threads", "1"]);
    insta::assert_snapshot!(transcript(p.path(), &out));
}

#[test]
fn a_test_whose_query_fails_is_an_error() {
    let p = shop();
    schema(
        &p,
        "models:\n  - name: orders\n    columns:\n      - name: no_such_column\n        data_tests: [not_null]\n",
    );
    let out = run_fails(&p, &["build"]);
    assert_eq!(status_of(&p, "not_null_orders_no_such_column").0, "error");
    assert!(
        out.contains("test `not_null_orders_no_such_column` failed to run"),
        "{out}"
    );
    assert_eq!(status_of(&p, "order_totals").0, "skipped");
}

#[test]
fn project_config_tree_sets_test_config() {
    let p = shop();
    p.write(
        "xform.yml",
        "name: shop\ndata_tests:\n  shop:\n    +severity: warn\n",
    );
    schema(
        &p,
        "models:\n  - name: orders\n    columns:\n      - name: order_id\n        data_tests: [unique]\n",
    );
    run(&p, &["build"]);
    assert_eq!(status_of(&p, "unique_orders_order_id").0, "warn");
    let manifest = std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap();
    assert!(
        manifest
            .contains(r#""test_metadata":{"kwargs":{"column_name":"order_id","model":"{{ get_where_subquery(ref('orders')) }}"},"name":"unique""#),
        "{manifest}"
    );
}

#[test]
fn compile_writes_test_sql_where_dbt_does() {
    let p = shop();
    schema(
        &p,
        "models:\n  - name: orders\n    columns:\n      - name: order_id\n        data_tests: [not_null]\n",
    );
    let out = run(&p, &["compile"]);
    assert!(out.contains("Compiled 3 models and 1 test"), "{out}");
    let sql = std::fs::read_to_string(
        p.path()
            .join("target/compiled/shop/models/schema.yml/not_null_orders_order_id.sql"),
    )
    .unwrap();
    assert!(sql.contains(r#"from "shop"."main"."orders""#), "{sql}");
    assert!(sql.contains("where order_id is null"), "{sql}");
}

#[test]
fn crossing_relationships_tests_do_not_deadlock_a_build() {
    // t1 reads a and b and t2 reads d and e, with a built from e and d from b: if every child
    // of a tested node waited for the test, a would wait for t2, t2 for d, d for t1, t1 for a.
    let p = TempProject::empty("cross");
    p.write("models/e.sql", "select 1 as x");
    p.write("models/a.sql", "select x from {{ ref('e') }}");
    p.write("models/b.sql", "select 1 as x");
    p.write("models/d.sql", "select x from {{ ref('b') }}");
    schema(
        &p,
        r"
models:
  - name: a
    columns:
      - name: x
        data_tests: [{relationships: {to: ref('b'), field: x}}]
  - name: d
    columns:
      - name: x
        data_tests: [{relationships: {to: ref('e'), field: x}}]
",
    );
    let out = run(&p, &["build", "--threads", "1"]);
    assert!(out.contains("6 passed, 0 failed"), "{out}");
}
