//! dbt-duckdb's own features that DuckDB projects rely on, end to end: the `external`
//! materialization (files written at a location, a view over them), sources read from files
//! (`external_location`), and the profile's `extensions`, `settings` and `secrets`.
#![cfg(feature = "duckdb")]

mod common;

use common::{TempProject, rows, run, run_fails};

#[test]
fn external_models_write_files_and_sources_read_them() {
    let p = TempProject::empty("shop");
    p.write(
        "data/orders.csv",
        "id,amount,region\n1,10,eu\n2,20,us\n3,5,eu\n",
    );
    let data = p.path().join("data");
    p.write(
        "models/sources.yml",
        &format!(
            "sources:\n  - name: files\n    config:\n      external_location: \"{}/{{name}}.csv\"\n\
             \x20   tables:\n      - name: orders\n      - name: called\n\
             \x20       meta:\n          external_location: \"read_csv('{}/orders.csv', header = true)\"\n",
            data.display(),
            data.display()
        ),
    );
    p.write(
        "models/flat.sql",
        "{{ config(materialized='external', location='out/flat.csv', delimiter='|') }}\n\
         select * from {{ source('files', 'called') }} order by id",
    );
    p.write(
        "models/by_region.sql",
        "{{ config(materialized='external', format='csv', partition_by='region') }}\n\
         select region, sum(amount) as total from {{ source('files', 'orders') }} group by region",
    );
    p.write(
        "models/joined.sql",
        "select f.id, b.total from {{ ref('flat') }} f join {{ ref('by_region') }} b using (region)",
    );
    let text = run(&p, &["build"]);
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/flat.csv")).unwrap(),
        "id|amount|region\n1|10|eu\n2|20|us\n3|5|eu\n"
    );
    // Partitioned by region: a folder of hive partitions, read back through the view.
    assert!(p.path().join("by_region.csv/region=eu").is_dir());
    assert_eq!(
        rows(&p, "shop", "select * from main.joined order by id"),
        ["1|15", "2|20", "3|15"]
    );
    assert_eq!(
        rows(
            &p,
            "shop",
            "select table_type from information_schema.tables where table_name = 'flat'"
        ),
        ["VIEW"]
    );

    // A second build writes the files again from the new rows.
    p.write("data/orders.csv", "id,amount,region\n1,10,eu\n");
    run(&p, &["build"]);
    // No partition of the first build stays behind the view.
    assert_eq!(
        rows(&p, "shop", "select region, total from main.by_region"),
        ["eu|10"]
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/flat.csv")).unwrap(),
        "id|amount|region\n1|10|eu\n"
    );

    // A format xform cannot write is a diagnostic at the model.
    p.write(
        "models/flat.sql",
        "{{ config(materialized='external', format='xlsx') }}\nselect 1 as id",
    );
    let text = run_fails(&p, &["run", "-s", "flat"]);
    assert!(text.contains("has the format `xlsx`"), "{text}");
}

#[test]
fn the_profile_sets_up_extensions_settings_and_secrets() {
    let p = TempProject::empty("shop");
    p.write("xform.yml", "name: shop\nprofile: shop\n");
    p.write(
        "profiles.yml",
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: shop.duckdb\n\
         \x20     extensions: [core_functions]\n      settings:\n        default_order: desc\n",
    );
    p.write(
        "models/setting.sql",
        "{{ config(materialized='table') }}\nselect current_setting('default_order') as o",
    );
    let text = run(&p, &["run"]);
    assert!(!text.contains("is ignored"), "{text}");
    assert_eq!(rows(&p, "shop", "select * from main.setting"), ["DESC"]);

    // An extension that cannot be loaded, a setting DuckDB does not know: diagnostics.
    p.write(
        "profiles.yml",
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: shop.duckdb\n\
         \x20     extensions: [no_such_extension]\n",
    );
    let text = run_fails(&p, &["run"]);
    assert!(
        text.contains("cannot install and load the DuckDB extension `no_such_extension`"),
        "{text}"
    );
    p.write(
        "profiles.yml",
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: shop.duckdb\n\
         \x20     settings:\n        no_such_setting: 1\n",
    );
    let text = run_fails(&p, &["run"]);
    assert!(
        text.contains("cannot apply the setting `no_such_setting`"),
        "{text}"
    );

    // A secret whose type's extension is not there (no network here): the diagnostic names
    // the secret, never its values.
    p.write(
        "profiles.yml",
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: shop.duckdb\n\
         \x20     secrets:\n        - {type: no_such_type, name: lake, key_id: AKIAEXAMPLEKEY, secret: hush-hush-value}\n",
    );
    let text = run_fails(&p, &["run"]);
    assert!(text.contains("cannot create the secret lake"), "{text}");
    assert!(!text.contains("hush-hush-value"), "{text}");
    assert!(!text.contains("AKIAEXAMPLEKEY"), "{text}");
}
