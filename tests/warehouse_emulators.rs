//! The statements `xform compile` writes for Snowflake and BigQuery, executed step by step on
//! local emulators of those warehouses, must leave the same rows as `xform build` on DuckDB.
//!
//! The emulators come from PyPI, in the virtual environments `.ci/run` builds
//! (`tests/emulators/*.txt`, under `$XFORM_EMULATORS`, by default `~/.cache/xform-emulators`):
//! fakesnow's server for Snowflake and crucible's for BigQuery. Each test starts its own server
//! on a free loopback port; `tests/emulators/runner.py` runs the statements with the
//! warehouse's own client protocol (Snowflake's connector, BigQuery's REST API) and prints the
//! rows left. Outside CI a missing environment skips the test with the reason printed; in CI it
//! fails.
//!
//! The order of the steps is the project's graph (from the manifest), as `xform build` runs it.
//! Emulator limits met here, worked around in the test and never in the emitted SQL:
//! - crucible refuses a dataset named `main` (DuckDB's own schema), so the warehouse targets
//!   write to `shop`, and the project's source reads `target.schema` rather than `main`;
//! - Snowflake needs its database to exist before a run (dbt never creates one): the test
//!   creates it, as an administrator would.

#![cfg(feature = "duckdb")]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempProject, transcript};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq)]
enum Warehouse {
    Snowflake,
    BigQuery,
}

impl Warehouse {
    fn name(self) -> &'static str {
        match self {
            Warehouse::Snowflake => "snowflake",
            Warehouse::BigQuery => "bigquery",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Warehouse::Snowflake => "sf",
            Warehouse::BigQuery => "bq",
        }
    }
}

const PROJECT_ID: &str = "xform-test";

/// The venv of one emulator, or `None` (with the reason printed) when it is absent outside CI.
fn venv(warehouse: Warehouse) -> Option<PathBuf> {
    let root = std::env::var_os("XFORM_EMULATORS").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/xform-emulators"),
        PathBuf::from,
    );
    let dir = root.join(warehouse.name());
    if dir.join("bin/python").exists() {
        return Some(dir);
    }
    let reason = format!(
        "the {} emulator's venv is missing at {} (`.ci/run` builds it from tests/emulators/{}.txt)",
        warehouse.name(),
        dir.display(),
        warehouse.name()
    );
    assert!(std::env::var_os("CI").is_none(), "{reason}");
    eprintln!("skipped: {reason}");
    None
}

/// An emulator server on a free loopback port, stopped when dropped.
struct Emulator {
    warehouse: Warehouse,
    venv: PathBuf,
    port: u16,
    child: Child,
}

impl Emulator {
    fn start(warehouse: Warehouse) -> Option<Emulator> {
        let venv = venv(warehouse)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = match warehouse {
            Warehouse::Snowflake => {
                let mut c = Command::new(venv.join("bin/fakesnow"));
                c.args(["-s", "--port", &port.to_string()]);
                c
            }
            Warehouse::BigQuery => {
                let mut c = Command::new(venv.join("bin/crucible"));
                c.args([
                    "serve",
                    "--dialect",
                    "bigquery",
                    "--port",
                    &port.to_string(),
                ]);
                c
            }
        };
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the {} emulator exited: {status}", warehouse.name());
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the {} emulator did not listen on port {port}",
                warehouse.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Emulator {
            warehouse,
            venv,
            port,
            child,
        })
    }

    /// Run the steps, then the queries; the runner's JSON answer.
    fn run(&self, steps: &[(String, Vec<String>)], queries: &BTreeMap<String, String>) -> Value {
        let steps: Vec<Value> = steps
            .iter()
            .map(|(name, statements)| json!({"name": name, "statements": statements}))
            .collect();
        let doc = json!({
            "warehouse": self.warehouse.name(),
            "port": self.port,
            "project": PROJECT_ID,
            "steps": steps,
            "queries": queries,
        });
        let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulators/runner.py");
        let mut child = Command::new(self.venv.join("bin/python"))
            .arg(runner)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(doc.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "runner failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn profiles(duckdb: &str) -> String {
    format!(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {duckdb}\n      \
         schema: main\n    sf:\n      type: snowflake\n      account: fakesnow\n      user: xform\n      \
         password: emulator\n      database: analytics\n      schema: shop\n    bq:\n      \
         type: bigquery\n      method: oauth\n      project: {PROJECT_ID}\n      dataset: shop\n"
    )
}

/// `example_project`, with its source reading the target's schema (see the module's note).
fn example_project() -> TempProject {
    let p =
        TempProject::from_fixture(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example_project"));
    let _ = std::fs::remove_file(p.path().join("shop.duckdb"));
    p.write("profiles.yml", &profiles("shop.duckdb"));
    let sources = std::fs::read_to_string(p.path().join("models/sources.yml")).unwrap();
    p.write(
        "models/sources.yml",
        &sources.replace("schema: main\n", "schema: \"{{ target.schema }}\"\n"),
    );
    p
}

fn manifest(p: &TempProject) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap())
        .unwrap()
}

/// The statements of a run file: each ends with `;` at the end of a line.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            let s = current.trim().trim_end_matches(';').trim().to_string();
            if !s.is_empty() {
                out.push(s);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The nodes of the manifest in graph order (dependencies first, then by id), with the run file
/// `xform compile` wrote for each: seeds, models that are built, tests, snapshots.
fn run_files(p: &TempProject) -> Vec<(String, Value, PathBuf)> {
    let m = manifest(p);
    let nodes = m["nodes"].as_object().unwrap();
    let mut done: Vec<String> = Vec::new();
    let mut order: Vec<String> = Vec::new();
    let mut left: Vec<&String> = nodes.keys().collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|id| {
            let deps = nodes[id.as_str()]["depends_on"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ready = deps
                .iter()
                .filter_map(Value::as_str)
                .all(|d| !nodes.contains_key(d) || done.iter().any(|x| x == d));
            if ready {
                order.push((*id).clone());
            }
            !ready
        });
        done.clone_from(&order);
        assert!(left.len() < before, "a cycle in the manifest");
    }
    order
        .into_iter()
        .filter_map(|id| {
            let node = nodes[&id].clone();
            let file = match node["resource_type"].as_str() {
                Some("seed") => format!(
                    "target/run/{}/{}",
                    node["package_name"].as_str().unwrap(),
                    node["original_file_path"].as_str().unwrap()
                ),
                _ => node["compiled_path"]
                    .as_str()?
                    .replacen("target/compiled/", "target/run/", 1),
            };
            let path = p.path().join(file);
            path.exists().then_some((id, node, path))
        })
        .collect()
}

/// A DuckDB cell as the runner prints a warehouse's: numbers with up to 6 decimals.
fn duckdb_cell(value: &str, numeric: bool) -> Value {
    if value == "\u{0}null" {
        return Value::Null;
    }
    if numeric {
        let n: f64 = value.parse().unwrap();
        let text = format!("{n:.6}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        return Value::String(if text == "-0" {
            "0".into()
        } else {
            text.into()
        });
    }
    Value::String(value.to_string())
}

/// Every row of a DuckDB relation: lower-case column names and sorted normalised rows.
fn duckdb_rows(db: &Path, relation: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut describe = conn.prepare(&format!("describe {relation}")).unwrap();
    let mut columns = Vec::new();
    let mut result = describe.query([]).unwrap();
    while let Some(row) = result.next().unwrap() {
        let name: String = row.get(0).unwrap();
        let ty: String = row.get(1).unwrap();
        let numeric = ["INT", "DECIMAL", "DOUBLE", "FLOAT", "REAL", "NUMERIC"]
            .iter()
            .any(|t| ty.contains(t));
        columns.push((name.to_lowercase(), numeric));
    }
    let query =
        format!("select coalesce(cast(columns(*) as varchar), chr(0) || 'null') from {relation}");
    let mut stmt = conn.prepare(&query).unwrap();
    let mut result = stmt.query([]).unwrap();
    let mut rows = Vec::new();
    while let Some(row) = result.next().unwrap() {
        rows.push(
            columns
                .iter()
                .enumerate()
                .map(|(i, (_, numeric))| duckdb_cell(&row.get::<_, String>(i).unwrap(), *numeric))
                .collect::<Vec<Value>>(),
        );
    }
    rows.sort_by_key(|r| r.iter().map(Value::to_string).collect::<Vec<_>>());
    (columns.into_iter().map(|(n, _)| n).collect(), rows)
}

fn sorted_rows(answer: &Value) -> Vec<Vec<Value>> {
    let mut rows: Vec<Vec<Value>> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect();
    rows.sort_by_key(|r| r.iter().map(Value::to_string).collect::<Vec<_>>());
    rows
}

/// Build on DuckDB, compile for the warehouse, run its statements on the emulator in graph order,
/// and compare every relation and every data test's failures with the DuckDB build.
fn same_rows_as_duckdb(p: &TempProject, warehouse: Warehouse) {
    let Some(emulator) = Emulator::start(warehouse) else {
        return;
    };
    let out = p.xform(&["build"]);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    let duck = manifest(p);
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap(),
    )
    .unwrap();
    let failures: BTreeMap<String, Value> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["failures"].clone(),
            )
        })
        .collect();

    let out = p.xform(&["compile", "--target", warehouse.target()]);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    if warehouse == Warehouse::Snowflake {
        steps.push((
            "setup".into(),
            vec!["create database if not exists analytics".into()],
        ));
    }
    let mut queries = BTreeMap::new();
    let mut relations = BTreeMap::new();
    for (id, node, path) in run_files(p) {
        let sql = std::fs::read_to_string(&path).unwrap();
        if node["resource_type"] == "test" {
            queries.insert(id, sql);
        } else {
            steps.push((id.clone(), statements(&sql)));
            let relation = node["relation_name"].as_str().unwrap().to_string();
            queries.insert(id.clone(), format!("select * from {relation}"));
            let duck_relation = duck["nodes"][&id]["relation_name"].as_str().unwrap();
            relations.insert(id, duck_relation.to_string());
        }
    }
    let answer = emulator.run(&steps, &queries);
    for step in answer["steps"].as_array().unwrap() {
        assert!(
            step["error"].is_null(),
            "{} on {}: statement {} failed: {}",
            step["name"],
            warehouse.name(),
            step["statement"],
            step["error"]
        );
    }
    let mut compared = 0;
    for (id, sql) in &queries {
        let got = &answer["queries"][id];
        assert!(got["error"].is_null(), "{id}: {}\n{sql}", got["error"]);
        if let Some(relation) = relations.get(id) {
            let (columns, rows) = duckdb_rows(&p.db_path("shop"), relation);
            let got_columns: Vec<String> = got["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                got_columns,
                columns,
                "{id}: columns on {}",
                warehouse.name()
            );
            assert_eq!(sorted_rows(got), rows, "{id}: rows on {}", warehouse.name());
        } else {
            // A data test's count query: its failures as on DuckDB.
            let n = got["rows"][0][0].as_str().unwrap().parse::<i64>().unwrap();
            assert_eq!(
                Some(n),
                failures[id].as_i64(),
                "{id} on {}",
                warehouse.name()
            );
        }
        compared += 1;
    }
    assert!(
        compared >= 15,
        "only {compared} relations and tests compared"
    );
}

#[test]
fn example_project_on_snowflake_leaves_the_duckdb_rows() {
    same_rows_as_duckdb(&example_project(), Warehouse::Snowflake);
}

#[test]
fn example_project_on_bigquery_leaves_the_duckdb_rows() {
    same_rows_as_duckdb(&example_project(), Warehouse::BigQuery);
}
