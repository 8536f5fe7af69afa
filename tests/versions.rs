//! Model versions end to end on DuckDB: `versions:` in YAML, files found by `<name>_v<v>` or
//! `defined_in:`, relations named `<name>_v<v>`, `ref(name)` finding the latest and
//! `ref(name, v=…)` one version, columns and tests per version, and `version:` selection.
#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, rows, run, run_fails};

fn versioned_project() -> TempProject {
    let p = TempProject::empty("shop");
    p.write(
        "models/dim_customers_v1.sql",
        "select 1 as id, 'ann' as name, 'x' as old_col",
    );
    // The latest version lives in the model's own file, through `defined_in:`.
    p.write(
        "models/dim_customers.sql",
        "select 1 as id, 'ann' as name, 'y' as new_col, '{{ model.version }}' as version",
    );
    p.write(
        "models/dim_customers_v3.sql",
        "select 1 as id, 'ann' as name, 'z' as new_col",
    );
    p.write(
        "models/report.sql",
        "select l.version, o.old_col from {{ ref('dim_customers') }} l\n\
         cross join {{ ref('dim_customers', v=1) }} o",
    );
    p.write(
        "models/schema.yml",
        "models:\n  - name: dim_customers\n    latest_version: 2\n    config:\n      materialized: table\n\
         \x20   columns:\n      - name: id\n        data_tests: [unique]\n      - name: name\n      - name: old_col\n\
         \x20   versions:\n      - v: 1\n      - v: 2\n        defined_in: dim_customers\n\
         \x20       columns:\n          - include: all\n            exclude: [old_col]\n\
         \x20         - name: new_col\n            data_tests: [not_null]\n\
         \x20     - v: 3\n        config:\n          materialized: view\n",
    );
    p
}

#[test]
fn versions_build_as_their_own_relations_and_ref_finds_the_latest() {
    let p = versioned_project();
    let text = run(&p, &["build"]);
    assert!(
        text.contains("table \"shop\".\"main\".\"dim_customers_v1\""),
        "{text}"
    );
    assert!(
        text.contains("view \"shop\".\"main\".\"dim_customers_v3\""),
        "{text}"
    );
    assert!(
        text.contains("test not_null_dim_customers_v2_new_col"),
        "{text}"
    );
    assert!(text.contains("test unique_dim_customers_v1_id"), "{text}");
    assert!(text.contains("0 failed"), "{text}");
    // `ref('dim_customers')` is version 2 (the latest, not the highest), `v=1` the first.
    assert_eq!(rows(&p, "shop", "select * from main.report"), ["2|x"]);
    assert_eq!(
        rows(&p, "shop", "select * from main.dim_customers_v2"),
        ["1|ann|y|2"]
    );

    let manifest = std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let v1 = &manifest["nodes"]["model.shop.dim_customers.v1"];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["latest_version"], 2);
    assert_eq!(v1["name"], "dim_customers");
    assert_eq!(
        v1["fqn"],
        serde_json::json!(["shop", "dim_customers", "v1"])
    );
    let refs = &manifest["nodes"]["model.shop.report"]["refs"];
    assert_eq!(
        refs[1],
        serde_json::json!({"name": "dim_customers", "package": null, "version": 1})
    );

    // Selection: by name every version, `name.v3` one, `version:` by its place.
    let ls = |selector: &str| {
        run(&p, &["ls", "--resource-type", "model", "-s", selector])
            .lines()
            .filter(|l| l.starts_with("shop."))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ls("dim_customers"),
        [
            "shop.dim_customers.v1",
            "shop.dim_customers.v2",
            "shop.dim_customers.v3"
        ]
    );
    assert_eq!(ls("dim_customers.v3"), ["shop.dim_customers.v3"]);
    assert_eq!(ls("version:latest"), ["shop.dim_customers.v2"]);
    assert_eq!(ls("version:prerelease"), ["shop.dim_customers.v3"]);
    assert_eq!(ls("version:old"), ["shop.dim_customers.v1"]);
}

#[test]
fn a_version_without_its_file_or_an_unknown_version_is_a_diagnostic() {
    let p = versioned_project();
    p.remove("models/dim_customers_v3.sql");
    let text = run_fails(&p, &["compile"]);
    assert!(
        text.contains("version 3 of model `dim_customers` has no file `dim_customers_v3.sql`"),
        "{text}"
    );
    assert!(text.contains("models/schema.yml:2"), "{text}");

    let p = versioned_project();
    p.write(
        "models/report.sql",
        "select * from {{ ref('dim_customers', v=7) }}",
    );
    let text = run_fails(&p, &["compile"]);
    assert!(text.contains("`dim_customers_v7`"), "{text}");
}

#[test]
fn the_latest_version_may_live_in_the_model_s_own_file() {
    let p = TempProject::empty("shop");
    p.write("models/dim.sql", "select 2 as v");
    p.write("models/dim_v1.sql", "select 1 as v");
    p.write(
        "models/schema.yml",
        "models:\n  - name: dim\n    versions:\n      - v: 1\n      - v: 2\n",
    );
    p.write("models/uses.sql", "select * from {{ ref('dim') }}");
    run(&p, &["run"]);
    assert_eq!(rows(&p, "shop", "select * from main.uses"), ["2"]);
    assert_eq!(rows(&p, "shop", "select * from main.dim_v2"), ["2"]);
}

#[test]
fn a_unit_test_of_a_versioned_model_tests_each_version_or_those_it_names() {
    let p = versioned_project();
    p.write(
        "models/units.yml",
        "unit_tests:\n  - name: keeps_ids\n    model: dim_customers\n    given: []\n    \
         expect:\n      rows: [{id: 1, name: ann}]\n",
    );
    let text = run(&p, &["test", "-s", "test_type:unit"]);
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    let results = std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap();
    for v in ["1", "2", "3"] {
        assert!(
            results.contains(&format!("\"unit_test.shop.dim_customers.keeps_ids_v{v}\"")),
            "{results}"
        );
    }
    // `versions: {include: [...]}` narrows them; a version that does not exist is a diagnostic.
    p.write(
        "models/units.yml",
        "unit_tests:\n  - name: keeps_ids\n    model: dim_customers\n    versions: {include: [3]}\n    \
         given: []\n    expect:\n      rows: [{id: 1, new_col: z}]\n",
    );
    let text = run(&p, &["test", "-s", "test_type:unit"]);
    assert!(text.contains("1 passed, 0 failed"), "{text}");
    p.write(
        "models/units.yml",
        "unit_tests:\n  - name: keeps_ids\n    model: dim_customers\n    versions: {include: [9]}\n    \
         given: []\n    expect:\n      rows: [{id: 1}]\n",
    );
    let text = run_fails(&p, &["test", "-s", "test_type:unit"]);
    assert!(
        text.contains("names versions of `dim_customers` that do not exist"),
        "{text}"
    );
}
