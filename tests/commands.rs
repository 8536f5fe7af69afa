//! The commands dbt users reach for beside build: `show` (a node's or inline SQL's rows),
//! `parse` (the manifest alone), `ls --output json --output-keys`, and `--empty` (refs and
//! sources read as zero rows), on the real binary and DuckDB.
#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, rows, run, run_fails};

fn small_project() -> TempProject {
    let p = TempProject::empty("shop");
    p.write(
        "models/people.sql",
        "select * from (values (1, 'ann'), (2, 'bo'), (3, null)) as t(id, name)",
    );
    p.write(
        "models/named.sql",
        "select id, upper(name) as name from {{ ref('people') }} where name is not null",
    );
    p.write(
        "models/schema.yml",
        "models:\n  - name: named\n    columns:\n      - name: id\n        data_tests: [unique]\n",
    );
    p
}

#[test]
fn show_previews_a_node_or_inline_sql_as_a_table_or_json() {
    let p = small_project();
    run(&p, &["run"]);
    let text = run(&p, &["show", "-s", "named", "--limit", "1"]);
    assert!(
        text.contains("Previewing node 'named':\n| id | name |\n| -- | ---- |\n|  1 | ANN  |\n"),
        "{text}"
    );
    // The model's tests do not come along.
    assert!(!text.contains("unique_named_id"), "{text}");

    let text = run(
        &p,
        &[
            "show",
            "--inline",
            "select count(*) as n from {{ ref('people') }}",
            "--output",
            "json",
        ],
    );
    let json_start = text.find('{').unwrap();
    let json_end = text.rfind('}').unwrap();
    let shown: serde_json::Value = serde_json::from_str(&text[json_start..=json_end]).unwrap();
    assert_eq!(
        shown,
        serde_json::json!({"node": "inline_query", "show": [{"n": 3}]})
    );

    // Nothing was built by show; a broken query is a diagnostic and a failure.
    let text = run_fails(
        &p,
        &["show", "--inline", "select nope from {{ ref('people') }}"],
    );
    assert!(text.contains("cannot preview `inline_query`"), "{text}");
    assert!(text.contains("nope"), "{text}");
}

#[test]
fn parse_writes_the_manifest_and_ls_prints_chosen_keys() {
    let p = small_project();
    let text = run(&p, &["parse"]);
    assert!(text.contains("Parsed 3 nodes"), "{text}");
    let manifest = std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap();
    assert!(manifest.contains("\"model.shop.named\""), "{manifest}");
    assert!(!p.path().join("shop.duckdb").exists());

    let text = run(
        &p,
        &[
            "ls",
            "-s",
            "named",
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "name,unique_id depends_on",
        ],
    );
    let line: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(
        line,
        serde_json::json!({
            "name": "named",
            "unique_id": "model.shop.named",
            "depends_on": {"macros": [], "nodes": ["model.shop.people"]}
        })
    );
    // Without --output-keys, dbt's default keys.
    let text = run(
        &p,
        &[
            "ls",
            "-s",
            "named",
            "--resource-type",
            "model",
            "--output",
            "json",
        ],
    );
    let line: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "alias",
            "config",
            "depends_on",
            "name",
            "original_file_path",
            "package_name",
            "resource_type",
            "tags",
            "unique_id"
        ]
    );
}

#[test]
fn empty_builds_every_relation_with_its_columns_and_no_rows() {
    let p = small_project();
    p.write(
        "models/people.sql",
        "{{ config(materialized='table') }}\nselect * from (values (1, 'ann'), (2, 'bo'), (3, null)) as t(id, name)",
    );
    p.write("models/named.sql", "{{ config(materialized='table') }}\nselect id, upper(name) as name from {{ ref('people') }} where name is not null");
    let text = run(&p, &["build", "--empty"]);
    assert!(text.contains("0 failed"), "{text}");
    // The first model has no ref: its own rows; the second reads its ref as empty.
    assert_eq!(rows(&p, "shop", "select count(*) from main.people"), ["3"]);
    assert_eq!(rows(&p, "shop", "select count(*) from main.named"), ["0"]);
    assert_eq!(
        rows(
            &p,
            "shop",
            "select column_name from information_schema.columns where table_name = 'named' order by ordinal_position"
        ),
        ["id", "name"]
    );
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/shop/models/named.sql")).unwrap();
    assert!(compiled.contains("where false limit 0"), "{compiled}");
    run(&p, &["build"]);
    assert_eq!(rows(&p, "shop", "select count(*) from main.named"), ["2"]);

    // An existing snapshot is left alone: its source read as empty would close every row.
    p.write(
        "snapshots/people_history.sql",
        "{% snapshot people_history %}\n{{ config(unique_key='id', strategy='check', check_cols='all', hard_deletes='invalidate') }}\n\
         select * from {{ ref('people') }}\n{% endsnapshot %}\n",
    );
    run(&p, &["build"]);
    run(&p, &["build", "--empty"]);
    assert_eq!(
        rows(
            &p,
            "shop",
            "select count(*) from main.people_history where dbt_valid_to is null"
        ),
        ["3"]
    );
}

#[test]
fn source_freshness_measures_loads_against_the_thresholds_and_selects_fresher_sources() {
    let p = TempProject::empty("shop");
    common::sql(
        &p,
        "shop",
        "create table main.orders as select 1 as id, now()::timestamp - interval 2 hour as loaded_at;\n\
         create table main.events as select 1 as id, now()::timestamp - interval 3 day as loaded_at, 'web' as channel\n\
         union all select 2, now()::timestamp, 'app';\n\
         create table main.people as select 1 as id, now()::timestamp - interval 30 day as loaded_at;\n\
         create table main.plain as select 1 as id;",
    );
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    schema: main\n    loaded_at_field: loaded_at\n\
         \x20   freshness:\n      warn_after: {count: 1, period: hour}\n      error_after: {count: 1, period: day}\n\
         \x20   tables:\n      - name: orders\n\
         \x20     - name: events\n        freshness:\n          filter: \"channel = 'web'\"\n\
         \x20     - name: people\n        freshness: null\n\
         \x20     - name: plain\n        loaded_at_field: nope\n",
    );
    p.write(
        "models/recent.sql",
        "select * from {{ source('raw', 'orders') }}",
    );
    let text = run_fails(&p, &["source", "freshness"]);
    assert!(text.contains("WARN  freshness of raw.orders"), "{text}");
    // The filter keeps only the web rows, three days old.
    assert!(text.contains("ERROR freshness of raw.events"), "{text}");
    assert!(!text.contains("raw.people"), "{text}");
    assert!(
        text.contains("cannot check the freshness of source `raw.plain`"),
        "{text}"
    );
    assert!(text.contains("1 warned, 2 errored"), "{text}");
    let sources: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/sources.json")).unwrap())
            .unwrap();
    assert_eq!(
        sources["metadata"]["dbt_schema_version"],
        "https://schemas.getdbt.com/dbt/sources/v3.json"
    );
    let result = |id: &str| {
        sources["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == id)
            .cloned()
            .unwrap()
    };
    let orders = result("source.shop.raw.orders");
    assert_eq!(orders["unique_id"], "source.shop.raw.orders");
    assert_eq!(orders["status"], "warn");
    let age = orders["max_loaded_at_time_ago_in_s"].as_f64().unwrap();
    assert!((7000.0..7400.0).contains(&age), "{age}");
    assert_eq!(
        orders["criteria"]["warn_after"],
        serde_json::json!({"count": 1, "period": "hour"})
    );
    assert_eq!(result("source.shop.raw.plain")["status"], "runtime error");

    // One source selected, its results written where -o says.
    let text = run(
        &p,
        &[
            "source",
            "freshness",
            "-s",
            "source:raw.orders",
            "-o",
            "fresh.json",
        ],
    );
    assert!(text.contains("1 of 1 WARN"), "{text}");
    assert!(p.path().join("fresh.json").is_file());

    // source_status:fresher compares with the state's sources.json.
    let state = tempfile::tempdir().unwrap();
    run(&p, &["parse"]);
    std::fs::copy(
        p.path().join("target/manifest.json"),
        state.path().join("manifest.json"),
    )
    .unwrap();
    std::fs::copy(
        p.path().join("fresh.json"),
        state.path().join("sources.json"),
    )
    .unwrap();
    common::sql(
        &p,
        "shop",
        "insert into main.orders values (2, now()::timestamp)",
    );
    run_fails(&p, &["source", "freshness"]);
    let state_dir = state.path().to_str().unwrap();
    let text = run(
        &p,
        &[
            "ls",
            "-s",
            "source_status:fresher+",
            "--state",
            state_dir,
            "--resource-type",
            "model",
        ],
    );
    assert!(text.contains("shop.recent"), "{text}");
    std::fs::copy(
        p.path().join("target/sources.json"),
        state.path().join("sources.json"),
    )
    .unwrap();
    let text = run(
        &p,
        &[
            "ls",
            "-s",
            "source_status:fresher+",
            "--state",
            state_dir,
            "--resource-type",
            "model",
        ],
    );
    assert!(!text.contains("shop.recent"), "{text}");
}

#[test]
fn build_reports_saved_queries_as_no_op_as_dbt_does() {
    let p = small_project();
    p.write(
        "models/metrics.yml",
        "saved_queries:\n  - name: named_counts\n    query_params: {metrics: [named_count]}\n  \
         - name: off\n    config: {enabled: false}\n    query_params: {metrics: [named_count]}\n\
         exposures:\n  - name: board\n    type: dashboard\n    owner: {name: Ann}\n",
    );
    run(&p, &["build"]);
    let results = |p: &TempProject| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p.path().join("target/run_results.json")).unwrap())
            .unwrap()
    };
    let doc = results(&p);
    let saved: Vec<&serde_json::Value> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["unique_id"].as_str().unwrap().starts_with("saved_query."))
        .collect();
    assert_eq!(saved.len(), 1, "{doc:#}");
    assert_eq!(saved[0]["unique_id"], "saved_query.shop.named_counts");
    assert_eq!(saved[0]["status"], "no-op");
    assert_eq!(saved[0]["message"], "NO-OP");
    // Exposures too, as dbt 1.11 reports them.
    assert!(
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["unique_id"] == "exposure.shop.board" && r["status"] == "no-op"),
        "{doc:#}"
    );
    // `run` and a selective build have none.
    run(&p, &["build", "-s", "named"]);
    assert!(!results(&p).to_string().contains("saved_query."));
    run(&p, &["run"]);
    assert!(!results(&p).to_string().contains("saved_query."));
}

#[test]
fn a_seed_column_with_no_values_is_an_integer_column_as_dbt_infers_it() {
    let p = TempProject::empty("shop");
    p.write("seeds/campaigns.csv", "source,analytics,note\na,,x\nb,,y\n");
    p.write("seeds/header_only.csv", "id,name\n");
    run(&p, &["seed"]);
    assert_eq!(
        rows(
            &p,
            "shop",
            "select table_name || '.' || column_name || ' ' || data_type from information_schema.columns \
             where table_name in ('campaigns', 'header_only') order by table_name, ordinal_position"
        ),
        [
            "campaigns.source VARCHAR",
            "campaigns.analytics INTEGER",
            "campaigns.note VARCHAR",
            "header_only.id INTEGER",
            "header_only.name INTEGER",
        ]
    );
}
