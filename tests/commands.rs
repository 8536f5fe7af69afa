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
}
