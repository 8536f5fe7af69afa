//! `xform docs generate`: catalog.json from the database and the static site.

#![cfg(feature = "duckdb")]

mod common;

use std::path::Path;

use common::{TempProject, transcript};
use serde_json::Value;

fn example() -> TempProject {
    TempProject::from_fixture(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example_project"))
}

fn read(p: &TempProject, rel: &str) -> String {
    std::fs::read_to_string(p.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The data the page embeds, parsed back.
fn site_data(p: &TempProject) -> Value {
    let html = read(p, "target/index.html");
    let start = html
        .find(r#"<script type="application/json" id="xform-data">"#)
        .expect("the data element");
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</script>").unwrap();
    serde_json::from_str(&rest[open..close]).expect("the embedded data is JSON")
}

fn node<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

#[test]
fn docs_generate_writes_the_catalog_and_the_site() {
    let p = example();
    let out = p.xform(&["build"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    let out = p.xform(&["docs", "generate"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));

    let catalog: Value = serde_json::from_str(&read(&p, "target/catalog.json")).unwrap();
    let mut nodes: Vec<&str> = catalog["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    nodes.sort_unstable();
    assert_eq!(
        nodes,
        [
            "model.shop.customers",
            "model.shop.orders",
            "model.shop.stg_customers",
            "model.shop.stg_orders",
            "model.shop.stg_payments",
            "seed.shop.raw_customers",
            "seed.shop.raw_orders",
            "seed.shop.raw_payments",
        ],
        "every built relation, no ephemeral, no test"
    );
    let customers = &catalog["nodes"]["model.shop.customers"];
    assert_eq!(customers["metadata"]["type"], "BASE TABLE");
    assert_eq!(customers["metadata"]["schema"], "main_marts");
    assert_eq!(customers["columns"]["customer_id"]["type"], "INTEGER");
    assert_eq!(customers["columns"]["customer_id"]["index"], 1);
    assert_eq!(
        catalog["nodes"]["model.shop.stg_orders"]["metadata"]["type"],
        "VIEW"
    );
    assert_eq!(catalog["sources"].as_object().unwrap().len(), 2);
    // Columns are listed in the relation's order, as dbt lists them (last_name before email).
    let text = read(&p, "target/catalog.json");
    let entry = &text[text.find(r#""model.shop.customers":"#).unwrap()..];
    assert!(
        entry.find(r#""last_name":{"#).unwrap() < entry.find(r#""email":{"#).unwrap(),
        "{entry}"
    );

    let data = site_data(&p);
    assert_eq!(data["project"], "shop");
    let c = node(&data, "model.shop.customers");
    assert_eq!(c["materialized"], "table");
    assert_eq!(c["relation"], r#""shop"."main_marts"."customers""#);
    assert_eq!(c["columns"][0]["name"], "customer_id");
    assert_eq!(c["columns"][0]["type"], "INTEGER");
    assert_eq!(
        c["columns"][0]["description"], "Primary key of the customer.",
        "YAML descriptions join the database's columns"
    );
    assert!(
        c["compiled_code"]
            .as_str()
            .unwrap()
            .contains("\"main\".\"stg_customers\"")
    );
    assert!(
        c["raw_code"]
            .as_str()
            .unwrap()
            .contains("ref('stg_customers')")
    );
    assert_eq!(
        c["parents"],
        serde_json::json!(["model.shop.orders", "model.shop.stg_customers"])
    );
    let ephemeral = node(&data, "model.shop.int_order_payments");
    assert_eq!(ephemeral["relation"], Value::Null);

    // The same project gives the same files.
    let (html, cat) = (
        read(&p, "target/index.html"),
        read(&p, "target/catalog.json"),
    );
    let out = p.xform(&["docs", "generate"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    assert!(html == read(&p, "target/index.html"), "index.html changed");
    assert_eq!(cat, read(&p, "target/catalog.json"));
}

#[test]
fn text_from_the_project_cannot_break_out_of_the_page() {
    let p = TempProject::empty("docs");
    p.write("xform.yml", "name: docs\n");
    p.write(
        "models/m.sql",
        "select 1 as x -- </script><script>alert(1)</script>\n",
    );
    p.write(
        "models/schema.yml",
        "models:\n  - name: m\n    description: \"</script><script>alert(2)</script> <!-- & <b>\"\n",
    );
    let out = p.xform(&["docs", "generate"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no database at"),
        "{}",
        transcript(p.path(), &out)
    );
    let html = read(&p, "target/index.html");
    assert!(!html.contains("<script>alert"), "data escaped in the page");
    assert!(!html.contains("<!-- &"), "data escaped in the page");
    let data = site_data(&p);
    let m = node(&data, "model.docs.m");
    assert_eq!(
        m["description"],
        "</script><script>alert(2)</script> <!-- & <b>"
    );
    assert!(
        m["raw_code"]
            .as_str()
            .unwrap()
            .contains("</script><script>alert(1)")
    );
    // No database yet: the catalog lists nothing, the YAML still documents the model.
    let catalog: Value = serde_json::from_str(&read(&p, "target/catalog.json")).unwrap();
    assert_eq!(catalog["nodes"], serde_json::json!({}));
}
