//! Model contracts and constraints end to end on DuckDB: the query's columns are checked
//! against the YAML before anything is written (dbt's mismatch table), and the table is
//! created with the declared types and constraints, which DuckDB then enforces.
#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, rows, run, run_fails};

fn contracted_project() -> TempProject {
    let p = TempProject::empty("shop");
    p.write("models/customers.sql", "select 1 as id, 'ann' as name");
    p.write(
        "models/orders.sql",
        "select 10 as amount, 1 as order_id, 1 as customer_id",
    );
    p.write(
        "models/schema.yml",
        "models:\n  - name: customers\n    config: {materialized: table, contract: {enforced: true}}\n\
         \x20   columns:\n      - {name: id, data_type: int, constraints: [{type: primary_key}]}\n\
         \x20     - {name: name, data_type: text}\n\
         \x20 - name: orders\n    config: {materialized: table, contract: {enforced: true}}\n\
         \x20   constraints:\n      - {type: check, expression: amount > 0}\n\
         \x20   columns:\n      - {name: order_id, data_type: integer, constraints: [{type: not_null}, {type: unique}]}\n\
         \x20     - name: customer_id\n        data_type: int\n\
         \x20       constraints: [{type: foreign_key, to: \"ref('customers')\", to_columns: [id]}]\n\
         \x20     - {name: amount, data_type: int}\n",
    );
    p
}

#[test]
fn a_contracted_table_has_the_declared_columns_and_enforces_its_constraints() {
    let p = contracted_project();
    let text = run(&p, &["build"]);
    assert!(text.contains("2 passed, 0 failed"), "{text}");
    // The contract's column order, not the query's.
    assert_eq!(rows(&p, "shop", "select * from main.orders"), ["1|1|10"]);
    let constraints = rows(
        &p,
        "shop",
        "select table_name, constraint_type from duckdb_constraints() order by all",
    );
    assert!(
        constraints.contains(&"orders|FOREIGN KEY".to_string())
            && constraints.contains(&"orders|CHECK".to_string())
            && constraints.contains(&"orders|UNIQUE".to_string())
            && constraints.contains(&"customers|PRIMARY KEY".to_string()),
        "{constraints:?}"
    );
    let run_sql =
        std::fs::read_to_string(p.path().join("target/run/shop/models/orders.sql")).unwrap();
    assert!(
        run_sql.contains("references \"shop\".\"main\".\"customers\" (\"id\")"),
        "{run_sql}"
    );

    // A row breaking a constraint fails the model and leaves the previous table.
    p.write(
        "models/orders.sql",
        "select -5 as amount, 1 as order_id, 1 as customer_id",
    );
    let text = run_fails(&p, &["run", "-s", "orders"]);
    assert!(text.contains("CHECK constraint failed"), "{text}");
    assert_eq!(rows(&p, "shop", "select * from main.orders"), ["1|1|10"]);
    p.write(
        "models/orders.sql",
        "select 5 as amount, 1 as order_id, 7 as customer_id",
    );
    let text = run_fails(&p, &["run", "-s", "orders"]);
    assert!(text.contains("foreign key"), "{text}");
    assert_eq!(rows(&p, "shop", "select * from main.orders"), ["1|1|10"]);
}

#[test]
fn a_query_that_breaks_its_contract_is_stopped_before_it_is_written() {
    let p = contracted_project();
    run(&p, &["build"]);
    p.write(
        "models/orders.sql",
        "select 10 as amount, 'x' as order_id, 1 as extra",
    );
    let text = run_fails(&p, &["run", "-s", "orders"]);
    assert!(text.contains("xform::contract"), "{text}");
    for line in [
        "| column_name | definition_type | contract_type | mismatch_reason       |",
        "| order_id    | VARCHAR         | INTEGER       | data type mismatch    |",
        "| customer_id |                 | INTEGER       | missing in definition |",
        "| extra       | INTEGER         |               | missing in contract   |",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert_eq!(rows(&p, "shop", "select * from main.orders"), ["1|1|10"]);

    // Every column of a contract needs a type; an ephemeral model cannot have one.
    p.write(
        "models/schema.yml",
        "models:\n  - name: orders\n    config: {contract: {enforced: true}}\n    columns:\n      - name: amount\n",
    );
    let text = run_fails(&p, &["compile", "-s", "orders"]);
    assert!(text.contains("the column(s) `amount` have no"), "{text}");
    p.write(
        "models/schema.yml",
        "models:\n  - name: orders\n    config: {materialized: ephemeral, contract: {enforced: true}}\n",
    );
    p.write("models/uses.sql", "select * from {{ ref('orders') }}");
    let text = run_fails(&p, &["run", "-s", "orders+"]);
    assert!(
        text.contains("is ephemeral and has an enforced contract"),
        "{text}"
    );
}

#[test]
fn a_data_type_written_with_jinja_is_rendered_before_the_contract_is_checked() {
    let p = TempProject::empty("shop");
    p.write("models/m.sql", "select 1 as id");
    p.write(
        "models/schema.yml",
        "models:\n  - name: m\n    config: {materialized: table, contract: {enforced: true}}\n\
         \x20   columns:\n      - name: id\n        data_type: \"{{ 'UInt8' if target.type == 'clickhouse' else 'integer' }}\"\n",
    );
    let text = run(&p, &["build"]);
    assert!(text.contains("1 passed, 0 failed"), "{text}");
    assert_eq!(
        rows(
            &p,
            "shop",
            "select data_type from information_schema.columns where table_name = 'm'"
        ),
        ["INTEGER"]
    );
}
