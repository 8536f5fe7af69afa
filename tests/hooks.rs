//! Hooks on DuckDB: `on-run-start` / `on-run-end`, and `pre-hook` / `post-hook` on models and
//! seeds, run in dbt's order (inside the node's transaction unless `transaction: false`), with
//! `{{ this }}` rendered; a failing hook fails its node and rolls its changes back.
#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, rows, run, run_fails};

fn project() -> TempProject {
    let p = TempProject::empty("shop");
    p.write(
        "xform.yml",
        "name: shop\n\
         on-run-start:\n  - create table if not exists main.audit (step integer, event varchar)\n\
         on-run-end: \"insert into main.audit select 100, 'end {{ results | length }} {{ results[0].status }} {{ schemas | join(',') }}'\"\n\
         seeds:\n  shop:\n    +post-hook: \"insert into main.audit select 1, 'seed ' || (select count(*) from {{ this }})\"\n",
    );
    p.write("seeds/raw.csv", "id\n1\n2\n");
    p.write(
        "models/orders.sql",
        "{{ config(materialized='table',\n\
           pre_hook=\"insert into main.audit select 2, 'pre {{ this.identifier }}'\",\n\
           post_hook=[\"insert into main.audit select 3, 'post ' || (select count(*) from {{ this }})\",\n\
                      {'sql': \"insert into main.audit select 4, 'after commit'\", 'transaction': false}]) }}\n\
         select * from {{ ref('raw') }}\n",
    );
    p
}

#[test]
fn hooks_run_in_dbts_order_with_this_rendered() {
    let p = project();
    let text = run(&p, &["build"]);
    // The two nodes and the two project hooks, counted as dbt counts them.
    assert!(text.contains("4 passed"), "{text}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let entries: Vec<(String, String, String)> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("unique_id"), s("status"), s("thread_id"))
        })
        .collect();
    assert_eq!(
        entries.first().map(|e| (e.0.as_str(), e.2.as_str())),
        Some(("operation.shop.shop-on-run-start-0", "main"))
    );
    assert_eq!(
        entries.last().map(|e| (e.0.as_str(), e.1.as_str())),
        Some(("operation.shop.shop-on-run-end-0", "success"))
    );
    assert_eq!(
        rows(
            &p,
            "shop",
            "select step, event from main.audit order by step"
        ),
        [
            "1|seed 2",
            "2|pre orders",
            // The post-hook inside the transaction sees the new table.
            "3|post 2",
            "4|after commit",
            "100|end 2 success main",
        ]
    );
    // The run file shows the hooks where they ran.
    let run_sql =
        std::fs::read_to_string(p.path().join("target/run/shop/models/orders.sql")).unwrap();
    let pre = run_sql.find("'pre orders'").unwrap();
    let begin = run_sql.find("begin transaction").unwrap();
    let commit = run_sql.rfind("\ncommit;").unwrap();
    let after = run_sql.find("'after commit'").unwrap();
    assert!(begin < pre && pre < commit && commit < after, "{run_sql}");
}

#[test]
fn a_failing_hook_fails_its_node_and_rolls_it_back() {
    let p = project();
    run(&p, &["build"]);
    p.write(
        "models/orders.sql",
        "{{ config(materialized='table',\n\
           pre_hook=\"insert into main.audit select 2, 'pre again'\",\n\
           post_hook=\"insert into main.no_such_table values (1)\") }}\n\
         select 1 as id\n",
    );
    let text = run_fails(&p, &["run", "-s", "orders"]);
    assert!(text.contains("post-hook 1 of `orders` failed"), "{text}");
    assert!(text.contains("no_such_table"), "{text}");
    // The table and the audit rows written inside the transaction are as they were.
    assert_eq!(rows(&p, "shop", "select count(*) from main.orders"), ["2"]);
    assert_eq!(
        rows(
            &p,
            "shop",
            "select count(*) from main.audit where event = 'pre again'"
        ),
        ["0"]
    );
}

#[test]
fn a_failing_on_run_start_runs_nothing() {
    let p = project();
    p.write(
        "xform.yml",
        "name: shop\non-run-start:\n  - \"select * from main.missing_table\"\n  - \"select 1\"\n",
    );
    let text = run_fails(&p, &["build"]);
    assert!(
        text.contains("on-run-start hook 1 of `shop` failed"),
        "{text}"
    );
    assert!(!text.contains("orders"), "{text}");
    // The results name the hook that failed.
    let results = std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap();
    assert!(
        results.contains("\"operation.shop.shop-on-run-start-0\"") && results.contains("\"error\""),
        "{results}"
    );
    // As in dbt, the hooks after the failed one are reported skipped.
    assert!(
        results.contains("\"shop.on-run-start.1 skipped\""),
        "{results}"
    );
}

#[test]
fn run_operation_calls_a_macro_with_its_arguments() {
    let p = project();
    run(&p, &["build"]);
    p.write(
        "macros/ops.sql",
        "{% macro record(step, event='op') %}\n\
         {% do run_query(\"insert into main.audit values (\" ~ step ~ \", '\" ~ event ~ \"')\") %}\n\
         {% endmacro %}\n",
    );
    let text = run(
        &p,
        &[
            "run-operation",
            "record",
            "--args",
            "{step: 7, event: granted}",
        ],
    );
    assert!(text.contains("Ran macro `record`"), "{text}");
    assert_eq!(
        rows(&p, "shop", "select event from main.audit where step = 7"),
        ["granted"]
    );
    // The results hold the macro's one result, as dbt writes them.
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap();
    let only = &results["results"][0];
    assert_eq!(only["unique_id"], "macro.shop.record");
    assert_eq!(only["status"], "success");
    assert_eq!(only["thread_id"], "MainThread");
    assert_eq!(results["args"]["which"], "run-operation");
    // An unknown macro is a diagnostic naming it.
    let text = run_fails(&p, &["run-operation", "no_such_macro"]);
    assert!(text.contains("no_such_macro"), "{text}");
}

#[test]
fn hooks_change_relations_and_schemas_through_the_adapter() {
    let p = TempProject::empty("shop");
    p.write(
        "models/scratch.sql",
        "{{ config(materialized='table') }}\nselect * from range(3) t(id)",
    );
    let named = |name: &str| {
        format!(
            "api.Relation.create(database=this.database, schema=this.schema, identifier='{name}')"
        )
    };
    p.write(
        "models/cleaner.sql",
        &format!(
            "{{{{ config(materialized='table', post_hook=[\n\
             \"{{% do adapter.truncate_relation(ref('scratch')) %}}\",\n\
             \"{{% do adapter.rename_relation(ref('scratch'), {}) %}}\",\n\
             \"{{% do adapter.create_schema(api.Relation.create(database=this.database, schema='extra')) %}}\"]) }}}}\n\
             select count(*) as n from {{{{ ref('scratch') }}}}",
            named("scratch_old")
        ),
    );
    p.write(
        "models/dropper.sql",
        &format!(
            "{{{{ config(post_hook=\"{{% do adapter.drop_relation({}) %}}\") }}}}\n\
             select * from {{{{ ref('cleaner') }}}}",
            named("scratch_old")
        ),
    );
    let text = run(&p, &["run", "-s", "scratch", "cleaner"]);
    assert!(text.contains("0 failed"), "{text}");
    assert_eq!(rows(&p, "shop", "select n from main.cleaner"), ["3"]);
    assert_eq!(
        rows(&p, "shop", "select count(*) from main.scratch_old"),
        ["0"]
    );
    assert_eq!(
        rows(
            &p,
            "shop",
            "select count(*) from information_schema.schemata where schema_name = 'extra'"
        ),
        ["1"]
    );
    run(&p, &["run", "-s", "dropper"]);
    assert_eq!(
        rows(
            &p,
            "shop",
            "select count(*) from information_schema.tables where table_name like 'scratch%'"
        ),
        ["0"]
    );
}

#[test]
fn hooks_that_render_to_nothing_run_as_nothing() {
    let p = TempProject::empty("shop");
    p.write(
        "xform.yml",
        "name: shop\non-run-start: \"{% if target.name == 'prod' %}select 1{% endif %}\"\n\
         on-run-end: \"{{ log('finished') }}\"\n",
    );
    p.write(
        "models/m.sql",
        "{{ config(materialized='table',\n\
           pre_hook=[\"{% if target.name == 'prod' %}select 1{% endif %}\", \"select 2\"],\n\
           post_hook=[\"{% if target.name == 'prod' %}select 3{% endif %}\", {'sql': \"{{ '' }}\", 'transaction': false}]) }}\n\
         select 1 as id\n",
    );
    let text = run(&p, &["run"]);
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    assert_eq!(rows(&p, "shop", "select * from main.m"), ["1"]);
}
