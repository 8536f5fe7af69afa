//! `xform compile` with a Snowflake or BigQuery target, no connection needed: `example_project`
//! and the warehouse options of tables and views written in each warehouse's SQL under
//! `target/run/` (golden files), every statement parsed back with sqlparser in that dialect,
//! and the commands that would run SQL refused with a diagnostic.
//!
//! What is not written yet (seeds, snapshots, incremental runs against an existing table, the
//! emulators) is said in the README; these tests cover what is.

mod common;

use std::path::Path;

use common::{TempProject, transcript};
use sqlparser::dialect::{BigQueryDialect, Dialect, SnowflakeDialect};
use sqlparser::parser::Parser;

const PROFILES: &str = "shop:\n  target: sf\n  outputs:\n    sf:\n      type: snowflake\n      \
    account: acme-xy12345\n      user: dev\n      password: \"{{ env_var('DBT_ENV_SECRET_SF_PASSWORD', 'not-a-real-password') }}\"\n      \
    role: transformer\n      warehouse: transforming\n      database: analytics\n      schema: dbt_dev\n    \
    bq:\n      type: bigquery\n      method: oauth\n      project: acme-analytics\n      dataset: dbt_dev\n      location: EU\n";

fn project() -> TempProject {
    let p =
        TempProject::from_fixture(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example_project"));
    let _ = std::fs::remove_file(p.path().join("shop.duckdb"));
    let _ = std::fs::remove_dir_all(p.path().join("target"));
    p.write("profiles.yml", PROFILES);
    // Warehouse options, as dbt-snowflake and dbt-bigquery read them.
    p.write(
        "models/marts/options.sql",
        "{% if target.type == 'snowflake' %}{{ config(transient=false) }}{% endif %}\n\
         {{ config(materialized='table', cluster_by=['order_day'], copy_grants=true,\n\
         partition_by={'field': 'order_day', 'data_type': 'date', 'granularity': 'month'},\n\
         labels={'team': 'finance'}, require_partition_filter=true) }}\n\
         select cast(order_date as date) as order_day, count(*) as orders from {{ ref('stg_orders') }} group by 1\n",
    );
    // dbt's cross-database macros, in each warehouse's SQL.
    p.write(
        "models/marts/cross_db.sql",
        "select\n\
         \x20 {{ dbt.dateadd('day', 1, 'order_date') }} as next_day,\n\
         \x20 {{ dbt.datediff('order_date', dbt.current_timestamp(), 'day') }} as age_days,\n\
         \x20 {{ dbt.date_trunc('month', 'order_date') }} as order_month,\n\
         \x20 {{ dbt.safe_cast('status', dbt.type_int()) }} as status_number,\n\
         \x20 cast(order_id as {{ dbt.type_string() }}) as order_key,\n\
         \x20 {{ dbt.hash('status') }} as status_hash,\n\
         \x20 {{ dbt.split_part('status', \"'_'\", 1) }} as status_head,\n\
         \x20 {{ dbt.position(\"'e'\", 'status') }} as e_at,\n\
         \x20 {{ dbt.right('status', 2) }} as status_tail\n\
         from {{ ref('stg_orders') }}\n",
    );
    p.write(
        "models/marts/secure_orders.sql",
        "{{ config(materialized='view', secure=true) }}\nselect order_id from {{ ref('orders') }}\n",
    );
    p
}

/// Every file under `target/run/`, by path, in order.
fn run_files(p: &TempProject) -> Vec<(String, String)> {
    let root = p.path().join("target/run");
    let mut files: Vec<(String, String)> = walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/"),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn compile_for(target: &str, dialect: &dyn Dialect) -> String {
    let p = project();
    run_sql(&p, &["compile", "--target", target], dialect)
}

/// Run `args` on `p`, then every file under `target/run/` with the path above it, each of its
/// statements parsed back in `dialect`.
fn run_sql(p: &TempProject, args: &[&str], dialect: &dyn Dialect) -> String {
    run_sql_files(p, args, dialect, 6)
}

/// `run_sql`, when at least `at_least` files are written.
fn run_sql_files(p: &TempProject, args: &[&str], dialect: &dyn Dialect, at_least: usize) -> String {
    let out = p.xform(args);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    let files = run_files(p);
    assert!(files.len() >= at_least, "{files:?}");
    let mut all = String::new();
    for (path, sql) in &files {
        // Each statement parses in the warehouse's dialect.
        for statement in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            if let Err(e) = Parser::parse_sql(dialect, statement) {
                panic!("{path}: {e}\n{statement}");
            }
        }
        assert!(!sql.contains("not-a-real-password"), "{path}");
        all.push_str("=== ");
        all.push_str(path);
        all.push('\n');
        all.push_str(sql);
        all.push('\n');
    }
    all
}

#[test]
fn snowflake_sql_for_every_model() {
    let all = compile_for("sf", &SnowflakeDialect {});
    assert!(
        all.contains("create or replace transient table analytics.dbt_dev_marts.orders"),
        "{all}"
    );
    assert!(
        all.contains("create or replace table analytics.dbt_dev_marts.options cluster by (order_day) copy grants"),
        "{all}"
    );
    assert!(
        all.contains("create or replace secure view analytics.dbt_dev_marts.secure_orders"),
        "{all}"
    );
    insta::assert_snapshot!(all);
}

#[test]
fn bigquery_sql_for_every_model() {
    let all = compile_for("bq", &BigQueryDialect {});
    assert!(
        all.contains("create or replace table `acme-analytics`.`dbt_dev_marts`.`options`\npartition by date_trunc(order_day, month)\ncluster by order_day\noptions(require_partition_filter=true, labels=[('team', 'finance')])"),
        "{all}"
    );
    insta::assert_snapshot!(all);
}

#[test]
fn an_unreachable_warehouse_is_a_diagnostic_naming_the_target() {
    let p = project();
    // Both warehouses run (tests/warehouse_emulators.rs); an endpoint nobody answers is named.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    p.write(
        "profiles.yml",
        &format!(
            "{}      api_endpoint: http://127.0.0.1:{closed}\n      method: oauth-secrets\n      token: not-a-real-token\n",
            PROFILES
                .replace(
                    "      schema: dbt_dev\n    bq:",
                    &format!("      schema: dbt_dev\n      host: 127.0.0.1\n      port: {closed}\n      protocol: http\n    bq:"),
                )
                .replace("      method: oauth\n", "")
        ),
    );
    let out = p.xform(&["build", "--target", "bq"]);
    let text = transcript(p.path(), &out).replace("\n  │ ", " ");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("target `bq` of profile `shop`: the datasets of project `acme-analytics` cannot be read at http://127.0.0.1:"),
        "{text}"
    );
    assert!(!text.contains("not-a-real-token"), "{text}");
    // Bytes scanned are BigQuery's to tell.
    let out = p.xform(&["build", "--target", "sf", "--dry-run"]);
    let text = transcript(p.path(), &out).replace("\n  │ ", " ");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(
            "--dry-run asks BigQuery what each node would scan; target `sf` is Snowflake"
        ),
        "{text}"
    );
    let out = p.xform(&["build", "--target", "sf"]);
    let text = transcript(p.path(), &out).replace("\n  │ ", " ");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("target `sf` of profile `shop`: Snowflake at http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("cannot be reached"), "{text}");
    assert!(!text.contains("not-a-real-password"), "{text}");
    // A profile that lacks what names a relation is a diagnostic at the profile.
    p.write(
        "profiles.yml",
        "shop:\n  target: sf\n  outputs:\n    sf:\n      type: snowflake\n      account: a\n      schema: s\n",
    );
    let out = p.xform(&["compile"]);
    let text = transcript(p.path(), &out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("has no `database`"), "{text}");
}

#[test]
fn a_config_the_warehouse_cannot_honour_is_a_diagnostic_naming_the_model() {
    let p = project();
    p.write(
        "models/marts/partitioned_view.sql",
        "{{ config(materialized='view', partition_by={'field': 'd', 'data_type': 'date'}) }}\nselect current_date as d\n",
    );
    let out = p.xform(&["compile", "--target", "bq"]);
    let text = transcript(p.path(), &out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("model `partitioned_view` is a view with `partition_by`"),
        "{text}"
    );
    p.write(
        "models/marts/partitioned_view.sql",
        "{{ config(materialized='table', transient=true) }}\nselect current_date as d\n",
    );
    let text = transcript(p.path(), &p.xform(&["compile", "--target", "bq"]));
    assert!(
        text.contains("model `partitioned_view` sets `transient`, which is Snowflake's"),
        "{text}"
    );
    assert!(text.contains("partitioned_view.sql"), "{text}");
    // A partition field or cluster column the query does not return.
    p.write(
        "models/marts/partitioned_view.sql",
        "{{ config(materialized='table', partition_by={'field': 'order_day', 'data_type': 'date'}) }}\nselect current_date as d, 1 as n\n",
    );
    let text = transcript(p.path(), &p.xform(&["compile", "--target", "bq"]));
    assert!(
        text.contains("model `partitioned_view` sets partition_by to `order_day`, a column its"),
        "{text}"
    );
    assert!(text.contains("the query returns: d, n"), "{text}");
    p.write(
        "models/marts/partitioned_view.sql",
        "{{ config(materialized='table', cluster_by=['nn']) }}\nselect current_date as d, 1 as n\n",
    );
    let text = transcript(p.path(), &p.xform(&["compile", "--target", "sf"]));
    assert!(text.contains("sets cluster_by to `nn`"), "{text}");
    // With `select *` the columns are unknown: nothing is reported.
    p.write(
        "models/marts/partitioned_view.sql",
        "{{ config(materialized='table', cluster_by=['nn']) }}\nselect * from {{ ref('orders') }}\n",
    );
    let out = p.xform(&["compile", "--target", "sf"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
}

#[test]
fn a_malformed_seed_is_a_diagnostic_not_a_row_left_out() {
    let p = project();
    p.write("seeds/broken.csv", "id,name\n1,ann\n2,bo,extra\n");
    let out = p.xform(&["compile", "--target", "sf"]);
    let text = transcript(p.path(), &out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("seed `broken` cannot be read"), "{text}");
    assert!(text.contains("line: 3"), "{text}");
}

/// The incremental fixture of the emulator tests, with a catalog of its tables' columns as
/// `xform docs generate` writes it (only the keys `--catalog` reads).
fn incremental_project() -> TempProject {
    let p = TempProject::from_fixture(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/warehouse/incremental"),
    );
    p.write(
        "profiles.yml",
        &PROFILES.replacen("shop:", "wh_incremental:", 1),
    );
    let columns = |names: &[&str]| {
        let entries: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "\"{n}\": {{\"name\": \"{n}\", \"type\": \"VARCHAR\", \"index\": {}}}",
                    i + 1
                )
            })
            .collect();
        format!("{{\"columns\": {{{}}}}}", entries.join(", "))
    };
    let events = columns(&["id", "customer", "amount", "status", "updated_at"]);
    let mut nodes: Vec<String> = [
        "events_append",
        "events_merge",
        "events_merge_update_columns",
        "events_merge_exclude_columns",
        "events_predicates",
        "events_delete_insert",
        "events_default_strategy",
        "events_microbatch",
    ]
    .iter()
    .map(|m| format!("\"model.wh_incremental.{m}\": {events}"))
    .collect();
    for m in ["daily_sales", "daily_sales_static"] {
        nodes.push(format!(
            "\"model.wh_incremental.{m}\": {}",
            columns(&["day", "amount", "sales"])
        ));
    }
    nodes.push(format!(
        "\"model.wh_incremental.customer_totals\": {}",
        columns(&["customer", "currency", "total", "events", "last_update"])
    ));
    p.write(
        "catalog.json",
        &format!("{{\"nodes\": {{{}}}, \"sources\": {{}}}}", nodes.join(", ")),
    );
    p
}

#[test]
fn incremental_plans_in_each_warehouse() {
    let p = incremental_project();
    // A fixed end: a microbatch model's batches run up to now by default.
    let args = [
        "--assume-exists",
        "--catalog",
        "catalog.json",
        "--event-time-end",
        "2026-01-01",
    ];
    let sf = run_sql(
        &p,
        &[&["compile", "--target", "sf"][..], &args].concat(),
        &SnowflakeDialect {},
    );
    // Snowflake commits before DDL: only the delete and the insert share a transaction.
    assert!(
        sf.contains(
            "begin;\n\ndelete from analytics.dbt_dev.events_delete_insert as DBT_INTERNAL_DEST"
        ),
        "{sf}"
    );
    insta::assert_snapshot!("incremental_snowflake", sf);
    let bq = run_sql(
        &p,
        &[&["compile", "--target", "bq"][..], &args].concat(),
        &BigQueryDialect {},
    );
    // BigQuery runs a transaction only as one script.
    assert!(bq.contains("begin transaction;\ndelete from"), "{bq}");
    insta::assert_snapshot!("incremental_bigquery", bq);
}

#[test]
fn an_incremental_plan_without_the_tables_columns_is_a_diagnostic() {
    let p = incremental_project();
    p.remove("catalog.json");
    let out = p.xform(&["compile", "--target", "sf", "--assume-exists"]);
    let text = transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("needs the columns of its"), "{text}");
    assert!(
        text.contains("pass --catalog target/catalog.json"),
        "{text}"
    );
    // A catalog that is not JSON is named.
    p.write("catalog.json", "{ not json");
    let out = p.xform(&[
        "compile",
        "--target",
        "sf",
        "--assume-exists",
        "--catalog",
        "catalog.json",
    ]);
    let text = transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("the catalog `catalog.json` cannot be"),
        "{text}"
    );
}

#[test]
fn snapshot_plans_in_each_warehouse() {
    let p = TempProject::from_fixture(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/warehouse/snapshot"),
    );
    p.write(
        "profiles.yml",
        &PROFILES.replacen("shop:", "wh_snapshot:", 1),
    );
    let meta = [
        "dbt_scd_id",
        "dbt_updated_at",
        "dbt_valid_from",
        "dbt_valid_to",
    ];
    let columns = |names: &[&str]| {
        let entries: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "\"{n}\": {{\"name\": \"{n}\", \"type\": \"TEXT\", \"index\": {}}}",
                    i + 1
                )
            })
            .collect();
        format!("{{\"columns\": {{{}}}}}", entries.join(", "))
    };
    let timestamp = [&["id", "name", "tier", "updated_at"][..], &meta].concat();
    let check = [&["id", "name", "tier"][..], &meta, &["dbt_is_deleted"]].concat();
    p.write(
        "catalog.json",
        &format!(
            "{{\"nodes\": {{\"snapshot.wh_snapshot.customers_timestamp\": {}, \"snapshot.wh_snapshot.customers_check\": {}}}}}",
            columns(&timestamp),
            columns(&check)
        ),
    );
    let mut all = String::new();
    for (target, dialect) in [
        ("sf", &SnowflakeDialect {} as &dyn Dialect),
        ("bq", &BigQueryDialect {}),
    ] {
        for args in [&[][..], &["--assume-exists", "--catalog", "catalog.json"]] {
            let command = [
                &[
                    "compile",
                    "--select",
                    "resource_type:snapshot",
                    "--target",
                    target,
                ][..],
                args,
            ]
            .concat();
            let _ = std::fs::remove_dir_all(p.path().join("target/run"));
            all.push_str("##### ");
            all.push_str(&command.join(" "));
            all.push('\n');
            all.push_str(&run_sql_files(&p, &command, dialect, 2));
        }
    }
    // dbt-bigquery's hash and dbt-snowflake's (dbt's default).
    assert!(all.contains("to_hex(md5(concat(coalesce(cast(id as string), ''), '|', coalesce(cast(updated_at as string), ''))))"), "{all}");
    assert!(all.contains("md5(coalesce(cast(id as varchar), '') || '|' || coalesce(cast(updated_at as varchar), ''))"), "{all}");
    insta::assert_snapshot!(all);
}

#[test]
fn the_projects_quoting_config_is_honoured() {
    // dbt-snowflake quotes no part of a name; `quoting:` in the project quotes what it says.
    let p = project();
    let xform = std::fs::read_to_string(p.path().join("xform.yml")).unwrap();
    p.write(
        "xform.yml",
        &format!("{xform}\nquoting:\n  identifier: true\n  schema: false\n"),
    );
    let all = run_sql(&p, &["compile", "--target", "sf"], &SnowflakeDialect {});
    assert!(
        all.contains("create or replace transient table analytics.dbt_dev_marts.\"orders\""),
        "{all}"
    );
    assert!(
        all.contains("from analytics.dbt_dev.\"stg_payments\""),
        "{all}"
    );
}

/// Credentials Snowflake refuses (a stand-in answers the login as Snowflake does): a
/// diagnostic naming the target and Snowflake's reason, exit 2, and the password nowhere.
#[test]
fn credentials_snowflake_refuses_are_a_diagnostic_naming_the_target() {
    let p = project();
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let refusing = std::thread::spawn(move || {
        let request = server.incoming_requests().next().unwrap();
        let url = request.url().to_string();
        let body = r#"{"success": false, "code": "390100", "message": "Incorrect username or password was specified.", "data": null}"#;
        request
            .respond(tiny_http::Response::from_string(body))
            .unwrap();
        url
    });
    p.write(
        "profiles.yml",
        &PROFILES.replace(
            "      schema: dbt_dev\n    bq:",
            &format!("      schema: dbt_dev\n      host: 127.0.0.1\n      port: {port}\n      protocol: http\n    bq:"),
        ),
    );
    let out = p.xform(&["build", "--target", "sf"]);
    let text = transcript(p.path(), &out).replace("\n  │ ", " ");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("target `sf` of profile `shop`: Snowflake at http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("refused the login: Incorrect username or password was specified. (390100)"),
        "{text}"
    );
    assert!(!text.contains("not-a-real-password"), "{text}");
    let url = refusing.join().unwrap();
    assert!(url.starts_with("/session/v1/login-request"), "{url}");
    assert!(!url.contains("not-a-real-password"), "{url}");
}
