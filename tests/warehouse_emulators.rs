//! The statements `xform compile` writes for Snowflake and BigQuery, executed step by step on
//! local emulators of those warehouses, must leave the same rows as `xform build` on DuckDB.
//!
//! The emulators come from PyPI, in the virtual environments `.ci/run` builds
//! (`tests/emulators/*.txt`, under `$XFORM_EMULATORS`, by default `~/.cache/xform-emulators`):
//! fakesnow's server for Snowflake and bqemulator for BigQuery. Each test starts its own server
//! on a free loopback port; `tests/emulators/runner.py` runs the statements with the
//! warehouse's own client protocol (Snowflake's connector, BigQuery's REST API) and prints the
//! rows left. Outside CI a missing environment skips the test with the reason printed; in CI it
//! fails.
//!
//! The order of the steps is the project's graph (from the manifest), as `xform build` runs it.
//! Emulator limits met here, worked around in the test and never in the emitted SQL:
//! - a dataset named `main` is DuckDB's own schema under both emulators, so the warehouse
//!   targets write to `shop`, and the project's source reads `target.schema` rather than `main`;
//! - bqemulator loads DuckDB's spatial extension at start, which needs network:
//!   `tests/emulators/start_bqemulator.py` starts it without (no test reads a GEOGRAPHY);
//! - Snowflake needs its database to exist before a run (dbt never creates one): the test
//!   creates it, as an administrator would;
//! - fakesnow refuses a temporary table named with its schema: `tests/emulators/start_fakesnow.py`
//!   makes it a plain table of the same name at the emulator's door (each plan drops its
//!   staging table at its end), so `xform build` runs its own SQL there; `compile_for` does the
//!   same to compiled statements;
//! - a fakesnow session that starts in an existing schema does not find fakesnow's helper
//!   functions: the snapshot test's third run starts its session in `main`;
//! - fakesnow's server keeps its databases in memory whatever `--db_path` says:
//!   `start_fakesnow.py` makes its sessions share databases in files there, for the test that
//!   kills it mid-build and starts it again.

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

/// Where microbatch models' batches end, in the DuckDB build and the compile alike (the tests
/// pin the clock to 2023, before the fixtures' events).
const EVENT_TIME_END: &str = "2025-01-01";

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
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Emulator::start_on(warehouse, port, None)
    }

    /// On `port`, keeping its data in `data` (a folder) when given, so that a restarted
    /// emulator has what the killed one held.
    fn start_on(warehouse: Warehouse, port: u16, data: Option<&Path>) -> Option<Emulator> {
        let venv = venv(warehouse)?;
        let mut command = match warehouse {
            Warehouse::Snowflake => {
                let mut c = Command::new(venv.join("bin/python"));
                let start =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulators/start_fakesnow.py");
                c.arg(start).args(["-s", "--port", &port.to_string()]);
                if let Some(dir) = data {
                    c.arg("--db_path").arg(dir);
                }
                c
            }
            Warehouse::BigQuery => {
                let mut c = Command::new(venv.join("bin/python"));
                let start = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/emulators/start_bqemulator.py");
                c.arg(start).args([
                    "start",
                    "--rest-port",
                    &port.to_string(),
                    "--grpc-port",
                    "0",
                    "--project",
                    PROJECT_ID,
                    "--log-level",
                    "error",
                ]);
                if let Some(dir) = data {
                    c.args(["--persistent", "--data-dir"]).arg(dir);
                }
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
    // One test keeps its failing rows in a table, on every warehouse.
    let schema = std::fs::read_to_string(p.path().join("models/marts/schema.yml")).unwrap();
    assert!(schema.contains("data_tests: [unique, not_null]"));
    p.write(
        "models/marts/schema.yml",
        &schema.replacen(
            "data_tests: [unique, not_null]",
            "data_tests: [unique, {not_null: {config: {store_failures: true}}}]",
            1,
        ),
    );
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

/// The statements of a run file: each ends with `;` at the end of a line, except that a
/// BigQuery script is one statement: a transaction, from `begin transaction;` to
/// `commit transaction;`, and the statements from a `declare` to the first that is neither a
/// `declare` nor a `set`.
fn statements(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut script = false;
    for statement in split(sql) {
        if script {
            let last = out.last_mut().unwrap();
            last.push_str(";\n");
            last.push_str(&statement);
            script = statement.starts_with("declare ") || statement.starts_with("set ");
        } else {
            script = statement.starts_with("declare ");
            out.push(statement);
        }
    }
    out
}

fn split(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut script = false;
    for line in sql.lines() {
        current.push_str(line);
        current.push('\n');
        if line == "begin transaction;" {
            script = true;
        }
        if script && line == "commit transaction;" {
            script = false;
        }
        if !script && line.trim_end().ends_with(';') {
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
fn duckdb_rows(db: &Path, query: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let conn = duckdb::Connection::open(db).unwrap();
    let mut describe = conn.prepare(&format!("describe {query}")).unwrap();
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
        format!("select coalesce(cast(columns(*) as varchar), chr(0) || 'null') from ({query})");
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

/// The statements `xform compile --target <warehouse> <args>` wrote, node by node in graph
/// order; the query that reads each node's relation on the warehouse (or a data test's
/// failures); and the same query on the DuckDB build.
struct Compiled {
    steps: Vec<(String, Vec<String>)>,
    queries: BTreeMap<String, String>,
    relations: BTreeMap<String, String>,
}

/// The columns compared of each node (`*` unless `select` names them).
type Select<'a> = &'a dyn Fn(&str) -> Option<&'static str>;

fn compile_for(p: &TempProject, warehouse: Warehouse, args: &[&str], duck: &Value) -> Compiled {
    compile_selecting(p, warehouse, args, duck, &|_| None)
}

fn compile_selecting(
    p: &TempProject,
    warehouse: Warehouse,
    args: &[&str],
    duck: &Value,
    select: Select<'_>,
) -> Compiled {
    let mut command = vec![
        "compile",
        "--target",
        warehouse.target(),
        "--event-time-end",
        EVENT_TIME_END,
    ];
    command.extend(args);
    let out = p.xform(&command);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    let mut compiled = Compiled {
        steps: Vec::new(),
        queries: BTreeMap::new(),
        relations: BTreeMap::new(),
    };
    for (id, node, path) in run_files(p) {
        let sql = std::fs::read_to_string(&path).unwrap();
        if node["resource_type"] == "test" {
            // Storing the failing rows (`store_failures`) runs first; the count query last.
            let mut statements = statements(&sql);
            let count = statements.pop().unwrap();
            if !statements.is_empty() {
                compiled.steps.push((id.clone(), statements));
            }
            compiled.queries.insert(id, count);
            continue;
        }
        let mut statements = statements(&sql);
        if warehouse == Warehouse::Snowflake {
            // fakesnow refuses a temporary table named with its database and schema, which
            // Snowflake accepts: the emulator gets a plain table of the same name (each plan
            // drops its staging table at its end).
            for s in &mut statements {
                *s = s.replacen(
                    "create or replace temporary table ",
                    "create or replace table ",
                    1,
                );
            }
        }
        compiled.steps.push((id.clone(), statements));
        let relation = node["relation_name"].as_str().unwrap().to_string();
        let columns = select(&id).unwrap_or("*");
        compiled
            .queries
            .insert(id.clone(), format!("select {columns} from {relation}"));
        let duck_relation = duck["nodes"][&id]["relation_name"].as_str().unwrap();
        compiled
            .relations
            .insert(id, format!("select {columns} from {duck_relation}"));
    }
    compiled
}

fn build(p: &TempProject) -> Value {
    let out = p.xform(&["build", "--event-time-end", EVENT_TIME_END]);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    manifest(p)
}

/// Every step ran; every relation holds the rows of the DuckDB database `db`, and each data
/// test counts the failures of `failures` (from DuckDB's run_results.json).
fn assert_same_as_duckdb(
    warehouse: Warehouse,
    compiled: &Compiled,
    answer: &Value,
    db: &Path,
    failures: &BTreeMap<String, Value>,
) -> usize {
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
    for (id, sql) in &compiled.queries {
        let got = &answer["queries"][id];
        assert!(got["error"].is_null(), "{id}: {}\n{sql}", got["error"]);
        if let Some(relation) = compiled.relations.get(id) {
            let (columns, rows) = duckdb_rows(db, relation);
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
    compared
}

fn failures(p: &TempProject) -> BTreeMap<String, Value> {
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap(),
    )
    .unwrap();
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["failures"].clone(),
            )
        })
        .collect()
}

/// The database a warehouse's run needs before it starts (dbt never creates one).
fn setup(warehouse: Warehouse) -> Vec<(String, Vec<String>)> {
    match warehouse {
        Warehouse::Snowflake => vec![(
            "setup".into(),
            vec!["create database if not exists analytics".into()],
        )],
        Warehouse::BigQuery => Vec::new(),
    }
}

/// Build on DuckDB, compile for the warehouse, run its statements on the emulator in graph order,
/// and compare every relation and every data test's failures with the DuckDB build.
fn same_rows_as_duckdb(p: &TempProject, warehouse: Warehouse) {
    let Some(emulator) = Emulator::start(warehouse) else {
        return;
    };
    let duck = build(p);
    let compiled = compile_for(p, warehouse, &[], &duck);
    let mut steps = setup(warehouse);
    steps.extend(compiled.steps.iter().cloned());
    let answer = emulator.run(&steps, &compiled.queries);
    let compared = assert_same_as_duckdb(
        warehouse,
        &compiled,
        &answer,
        &p.db_path("shop"),
        &failures(p),
    );
    assert!(
        compared >= 15,
        "only {compared} relations and tests compared"
    );
}

/// The incremental fixture: a first run, new data, an incremental run. On the warehouse the
/// second run's statements come from `compile --assume-exists` with the columns of the first
/// DuckDB build's catalog.
fn incremental_runs_leave_the_duckdb_rows(warehouse: Warehouse) {
    let Some(emulator) = Emulator::start(warehouse) else {
        return;
    };
    let (p, first, second) = two_runs("incremental", warehouse, &|_| None);
    for (id, statements) in &second.steps {
        if id.starts_with("model.") {
            let all = statements.join(";\n");
            assert!(
                all.contains("merge into")
                    || all.contains("delete from")
                    || all.contains("insert into")
                    || all.contains("insert overwrite into"),
                "{id} is not an incremental plan:\n{all}"
            );
        }
    }
    let mut steps = setup(warehouse);
    steps.extend(first.steps.iter().cloned());
    steps.extend(second.steps.iter().cloned());
    let answer = emulator.run(&steps, &second.queries);
    let compared =
        assert_same_as_duckdb(warehouse, &second, &answer, &p.db_path("wh"), &failures(&p));
    assert_eq!(compared, 13, "every seed and model compared");
    // Without a strategy, each warehouse's dbt adapter merges.
    let default = &second
        .steps
        .iter()
        .find(|(id, _)| id.ends_with(".events_default_strategy"))
        .unwrap()
        .1;
    assert!(
        default.iter().any(|s| s.starts_with("merge into")),
        "{default:?}"
    );
}

/// `xform build` of a fixture of `tests/fixtures/warehouse/` twice on the warehouse, through
/// xform's own client, the second on `run2/`'s seeds (its incremental plans, its snapshots'
/// changes), leaves the rows two DuckDB builds leave. Each build's output names no secret.
fn builds_leave_the_duckdb_rows(fixture: &str, warehouse: Warehouse, select: Select<'_>) -> usize {
    let Some(emulator) = Emulator::start(warehouse) else {
        return 0;
    };
    let p = TempProject::from_fixture(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/warehouse")
            .join(fixture),
    );
    let live = match warehouse {
        Warehouse::Snowflake => format!(
            "    live:\n      type: snowflake\n      account: fakesnow\n      user: xform\n      \
             password: \"{{{{ env_var('WH_SECRET', '') }}}}\"\n      database: analytics\n      \
             schema: shop\n      host: 127.0.0.1\n      port: {}\n      protocol: http\n",
            emulator.port
        ),
        Warehouse::BigQuery => format!(
            "    live:\n      type: bigquery\n      method: oauth-secrets\n      \
             token: \"{{{{ env_var('WH_SECRET', '') }}}}\"\n      project: {PROJECT_ID}\n      \
             dataset: shop\n      api_endpoint: http://127.0.0.1:{}\n",
            emulator.port
        ),
    };
    p.write(
        "profiles.yml",
        &format!(
            "{}{live}",
            profiles("wh.duckdb").replacen("shop:", &format!("wh_{fixture}:"), 1)
        ),
    );
    let answer = emulator.run(&setup(warehouse), &BTreeMap::new());
    assert!(answer["steps"][0]["error"].is_null(), "{answer}");
    let secret = "wh-secret-only-in-the-env";
    let live_build = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
            .args([
                "build",
                "--target",
                "live",
                "--event-time-end",
                EVENT_TIME_END,
            ])
            .current_dir(p.path())
            .env("WH_SECRET", secret)
            .env("NO_COLOR", "1")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        let text = transcript(p.path(), &out);
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(secret), "{text}");
        text
    };
    live_build();
    build(&p);
    for entry in std::fs::read_dir(p.path().join("run2")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), p.path().join("seeds").join(entry.file_name())).unwrap();
    }
    let duck = build(&p);
    live_build();
    // The second build ran each incremental model's later plan (as `target/run/` keeps it).
    let m = manifest(&p);
    for (id, node) in m["nodes"].as_object().unwrap() {
        if node["config"]["materialized"] == "incremental" {
            let path = p
                .path()
                .join(node["compiled_path"].as_str().unwrap().replacen(
                    "target/compiled/",
                    "target/run/",
                    1,
                ));
            let all = std::fs::read_to_string(&path).unwrap().to_lowercase();
            assert!(
                [
                    "merge into",
                    "delete from",
                    "insert into",
                    "insert overwrite into"
                ]
                .iter()
                .any(|s| all.contains(s)),
                "{id} did not run an incremental plan:\n{all}"
            );
        }
    }
    let compiled = built_relations(&p, &duck, select);
    let answer = emulator.run(&[], &compiled.queries);
    assert_same_as_duckdb(
        warehouse,
        &compiled,
        &answer,
        &p.db_path("wh"),
        &BTreeMap::new(),
    )
}

/// Columns of the snapshot fixture's tables that do not depend on the clock (a check-strategy
/// version's times, a hard delete's `valid_to`): each row's state stands for them.
fn snapshot_columns(id: &str) -> Option<&'static str> {
    match id {
        "snapshot.wh_snapshot.customers_timestamp" => Some(
            "id, name, tier, updated_at, dbt_updated_at, dbt_valid_from, \
             case when dbt_valid_to is null then 'current' else 'closed' end as state",
        ),
        "snapshot.wh_snapshot.customers_check" => Some(
            "id, name, tier, dbt_is_deleted, \
             case when dbt_valid_to is null then 'current' else 'closed' end as state",
        ),
        _ => None,
    }
}

#[test]
fn incremental_builds_on_bigquery_leave_the_duckdb_rows() {
    let compared = builds_leave_the_duckdb_rows("incremental", Warehouse::BigQuery, &|_| None);
    assert!(compared == 0 || compared == 13, "{compared} compared");
}

#[test]
fn incremental_builds_on_snowflake_leave_the_duckdb_rows() {
    let compared = builds_leave_the_duckdb_rows("incremental", Warehouse::Snowflake, &|_| None);
    assert!(compared == 0 || compared == 13, "{compared} compared");
}

#[test]
fn snapshot_builds_on_bigquery_leave_the_duckdb_rows() {
    let compared = builds_leave_the_duckdb_rows("snapshot", Warehouse::BigQuery, &snapshot_columns);
    assert!(compared == 0 || compared == 3, "{compared} compared");
}

#[test]
fn snapshot_builds_on_snowflake_leave_the_duckdb_rows() {
    let compared =
        builds_leave_the_duckdb_rows("snapshot", Warehouse::Snowflake, &snapshot_columns);
    assert!(compared == 0 || compared == 3, "{compared} compared");
}

/// A fixture of `tests/fixtures/warehouse/` run twice: built on DuckDB (its catalog kept), the
/// first run's statements compiled for the warehouse, every file of `run2/` copied over the
/// seed of the same name, built again on DuckDB, and the later run's statements compiled with
/// `--assume-exists` and the first build's catalog. The project, the two runs' statements, and
/// the DuckDB database name.
fn two_runs(
    fixture: &str,
    warehouse: Warehouse,
    select: Select<'_>,
) -> (TempProject, Compiled, Compiled) {
    let p = TempProject::from_fixture(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/warehouse")
            .join(fixture),
    );
    p.write(
        "profiles.yml",
        &profiles("wh.duckdb").replacen("shop:", &format!("wh_{fixture}:"), 1),
    );
    let duck = build(&p);
    let out = p.xform(&["docs", "generate"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    std::fs::rename(
        p.path().join("target/catalog.json"),
        p.path().join("catalog.json"),
    )
    .unwrap();
    let first = compile_selecting(&p, warehouse, &[], &duck, select);
    for entry in std::fs::read_dir(p.path().join("run2")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), p.path().join("seeds").join(entry.file_name())).unwrap();
    }
    let duck = build(&p);
    let second = compile_selecting(
        &p,
        warehouse,
        &["--assume-exists", "--catalog", "catalog.json"],
        &duck,
        select,
    );
    (p, first, second)
}

/// The snapshot fixture: a first run, changed, new and deleted rows, a later run. The columns
/// compared leave out what depends on the clock (a check-strategy version's times, a hard
/// delete's `valid_to`): each row's state stands for them. Every `dbt_scd_id` is checked
/// against the expression dbt's adapter for that warehouse hashes it with.
fn snapshots_leave_the_duckdb_rows(warehouse: Warehouse) {
    let Some(emulator) = Emulator::start(warehouse) else {
        return;
    };
    let select: Select<'_> = &|id| match id {
        "snapshot.wh_snapshot.customers_timestamp" => Some(
            "id, name, tier, updated_at, dbt_updated_at, dbt_valid_from, \
             case when dbt_valid_to is null then 'current' else 'closed' end as state",
        ),
        "snapshot.wh_snapshot.customers_check" => Some(
            "id, name, tier, dbt_is_deleted, \
             case when dbt_valid_to is null then 'current' else 'closed' end as state",
        ),
        _ => None,
    };
    let (p, first, mut second) = two_runs("snapshot", warehouse, select);
    // dbt's `dbt_scd_id`: dbt-snowflake's default hash, dbt-bigquery's own.
    let hash = |a: &str, b: &str| match warehouse {
        Warehouse::Snowflake => format!(
            "md5(coalesce(cast({a} as varchar), '') || '|' || coalesce(cast({b} as varchar), ''))"
        ),
        Warehouse::BigQuery => format!(
            "to_hex(md5(concat(coalesce(cast({a} as string), ''), '|', coalesce(cast({b} as string), ''))))"
        ),
    };
    let mut checks = Vec::new();
    for (id, query) in second.queries.clone() {
        if !id.starts_with("snapshot.") {
            continue;
        }
        let relation = query.rsplit(" from ").next().unwrap().to_string();
        // A version's id hashes its key and its time; a deletion record's (`new_record`), the
        // id of the version it closed and its time.
        let expected = if id.ends_with("customers_check") {
            format!(
                "case when d.dbt_is_deleted = 'True' then (select {} from {relation} as c \
                 where c.id = d.id and c.dbt_valid_to = d.dbt_valid_from) else {} end",
                hash("c.dbt_scd_id", "d.dbt_updated_at"),
                hash("d.id", "d.dbt_updated_at")
            )
        } else {
            hash("d.id", "d.dbt_updated_at")
        };
        let check = format!("scd_id of {id}");
        second.queries.insert(
            check.clone(),
            format!(
                "select count(*) from {relation} as d where d.dbt_scd_id is null \
                 or d.dbt_scd_id <> {expected} or {expected} is null"
            ),
        );
        checks.push(check);
    }
    let mut steps = setup(warehouse);
    steps.extend(first.steps.iter().cloned());
    steps.extend(second.steps.iter().cloned());
    let answer = emulator.run(&steps, &second.queries);
    for check in &checks {
        second.queries.remove(check);
        let got = &answer["queries"][check];
        assert!(got["error"].is_null(), "{check}: {}", got["error"]);
        assert_eq!(got["rows"][0][0], "0", "{check} on {}", warehouse.name());
    }
    let compared =
        assert_same_as_duckdb(warehouse, &second, &answer, &p.db_path("wh"), &failures(&p));
    assert_eq!(compared, 3, "the seed and both snapshots compared");

    // A third run: the deleted row 3 is back with the `updated_at` it had. Its new version
    // would hash to the id of its closed one; as dbt's merge on `dbt_scd_id` does on both
    // warehouses, nothing is inserted and every id stays unique. (DuckDB inserts it, as
    // dbt-duckdb's update-then-insert does, so this run is not compared with DuckDB.)
    std::fs::copy(
        p.path().join("run3/customers.csv"),
        p.path().join("seeds/customers.csv"),
    )
    .unwrap();
    let third = compile_selecting(
        &p,
        warehouse,
        &["--assume-exists", "--catalog", "catalog.json"],
        &manifest(&p),
        select,
    );
    let relation = second.queries["snapshot.wh_snapshot.customers_timestamp"]
        .rsplit(" from ")
        .next()
        .unwrap()
        .to_string();
    assert!(
        third
            .steps
            .iter()
            .any(|(id, _)| id == "snapshot.wh_snapshot.customers_timestamp")
    );
    let queries = BTreeMap::from([
        (
            "ids".to_string(),
            format!(
                "select count(*) - count(distinct dbt_scd_id), \
                 sum(case when id = 3 and dbt_valid_to is null then 1 else 0 end) from {relation}"
            ),
        ),
        (
            "back".to_string(),
            format!(
                "select count(*) {}",
                second.queries["seed.wh_snapshot.customers"].replacen("select * ", "", 1)
                    + " where id = 3"
            ),
        ),
    ]);
    let mut steps = setup(warehouse);
    if warehouse == Warehouse::Snowflake {
        // fakesnow keeps its helper functions in the database's `main` schema, and a new
        // session that starts in an existing schema does not find them: start in `main` (every
        // statement names its schema).
        steps.push(("session".into(), vec!["use schema analytics.main".into()]));
    }
    steps.extend(third.steps);
    let answer = emulator.run(&steps, &queries);
    for step in answer["steps"].as_array().unwrap() {
        assert!(step["error"].is_null(), "{step}");
    }
    let ids = &answer["queries"]["ids"];
    assert!(ids["error"].is_null(), "{answer}");
    assert_eq!(ids["rows"][0], json!(["0", "0"]), "{answer}");
    assert_eq!(answer["queries"]["back"]["rows"][0][0], "1", "{answer}");
}

#[test]
fn snapshots_on_snowflake_leave_the_duckdb_rows() {
    snapshots_leave_the_duckdb_rows(Warehouse::Snowflake);
}

#[test]
fn snapshots_on_bigquery_leave_the_duckdb_rows() {
    snapshots_leave_the_duckdb_rows(Warehouse::BigQuery);
}

#[test]
fn incremental_strategies_on_snowflake_leave_the_duckdb_rows() {
    incremental_runs_leave_the_duckdb_rows(Warehouse::Snowflake);
}

#[test]
fn incremental_strategies_on_bigquery_leave_the_duckdb_rows() {
    incremental_runs_leave_the_duckdb_rows(Warehouse::BigQuery);
}

#[test]
fn example_project_on_snowflake_leaves_the_duckdb_rows() {
    same_rows_as_duckdb(&example_project(), Warehouse::Snowflake);
}

#[test]
fn example_project_on_bigquery_leaves_the_duckdb_rows() {
    same_rows_as_duckdb(&example_project(), Warehouse::BigQuery);
}

/// The unit tests of `example_project` compiled for BigQuery (one query each, the given rows
/// typed as the YAML declares them) pass on the emulator, every row on both sides; an expected
/// value changed makes that row missing and the model's row unexpected.
#[test]
fn unit_tests_on_bigquery_compare_rows_as_on_duckdb() {
    let Some(emulator) = Emulator::start(Warehouse::BigQuery) else {
        return;
    };
    let p = example_project();
    let dir = "target/run/shop/models/marts/unit_tests.yml";
    let queries = |p: &TempProject| {
        let out = p.xform(&["compile", "--target", "bq"]);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        let mut queries = BTreeMap::new();
        for (model, test) in [
            ("customers", "customers_lifetime_value_ignores_returns"),
            ("orders", "orders_without_payments_are_zero"),
        ] {
            let sql = std::fs::read_to_string(p.path().join(format!("{dir}/{model}/{test}.sql")))
                .unwrap();
            queries.insert(test.to_string(), sql);
        }
        emulator.run(&[], &queries)
    };
    let marks = |answer: &Value, test: &str| -> Vec<String> {
        let q = &answer["queries"][test];
        assert!(q["error"].is_null(), "{test}: {q}");
        q["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect()
    };
    let answer = queries(&p);
    assert_eq!(
        marks(&answer, "customers_lifetime_value_ignores_returns"),
        [" ", " "]
    );
    assert_eq!(
        marks(&answer, "orders_without_payments_are_zero"),
        [" ", " "]
    );
    let yaml = std::fs::read_to_string(p.path().join("models/marts/unit_tests.yml")).unwrap();
    p.write(
        "models/marts/unit_tests.yml",
        &yaml.replace("lifetime_value: 12.5,", "lifetime_value: 12.75,"),
    );
    let answer = queries(&p);
    let q = &answer["queries"]["customers_lifetime_value_ignores_returns"];
    assert_eq!(
        marks(&answer, "customers_lifetime_value_ignores_returns"),
        ["+", "-", " "],
        "{q}"
    );
    assert_eq!(q["rows"][1][3], "12.75", "{q}");
}

/// `xform debug` logs in to Snowflake over its HTTP API and runs one statement; an endpoint
/// nobody answers is a diagnostic naming the target. The password is in neither output.
/// (fakesnow accepts any password, so a refused login is not tested here.)
#[test]
fn debug_connects_to_snowflake_and_names_an_unreachable_endpoint() {
    let Some(emulator) = Emulator::start(Warehouse::Snowflake) else {
        return;
    };
    let p = example_project();
    let secret = "s3cr3t-from-the-env";
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = |port: u16| {
        format!(
            "    sf_{port}:\n      type: snowflake\n      account: fakesnow\n      user: xform\n      \
             password: \"{{{{ env_var('SF_PASSWORD') }}}}\"\n      database: analytics\n      \
             schema: shop\n      host: 127.0.0.1\n      port: {port}\n      protocol: http\n"
        )
    };
    p.write(
        "profiles.yml",
        &format!(
            "{}{}{}",
            profiles("shop.duckdb"),
            output(emulator.port),
            output(closed)
        ),
    );
    let run = |target: u16| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
            .args(["debug", "--target", &format!("sf_{target}")])
            .current_dir(p.path())
            .env("SF_PASSWORD", secret)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        // miette wraps long messages: one line per message again.
        let text = transcript(p.path(), &out).replace("\n  │ ", " ");
        assert!(!text.contains(secret), "{text}");
        (out.status.code(), text)
    };
    let (code, text) = run(emulator.port);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "connection:   OK (Snowflake at http://127.0.0.1:{})",
            emulator.port
        )),
        "{text}"
    );
    // Key-pair login: the JWT signed with the profile's key (fakesnow does not check it;
    // src/adapter/snowflake.rs verifies the token itself).
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snowflake/test_key.p8");
    let profiles_text = std::fs::read_to_string(p.path().join("profiles.yml")).unwrap();
    p.write(
        "profiles.yml",
        &format!(
            "{profiles_text}    sf_key:\n      type: snowflake\n      account: fakesnow\n      \
             user: xform\n      private_key_path: {}\n      database: analytics\n      \
             schema: shop\n      host: 127.0.0.1\n      port: {}\n      protocol: http\n",
            key.display(),
            emulator.port
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["debug", "--target", "sf_key"])
        .current_dir(p.path())
        .env("SF_PASSWORD", secret)
        .output()
        .unwrap();
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("connection:   OK"), "{text}");
    let (code, text) = run(closed);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!("target `sf_{closed}` of profile `shop`")),
        "{text}"
    );
    assert!(text.contains("cannot be reached"), "{text}");
}

/// The `adapter_response` of a node in `target/run_results.json`.
fn adapter_response(p: &TempProject, id: &str) -> Value {
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap(),
    )
    .unwrap();
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == id)
        .map_or(Value::Null, |r| r["adapter_response"].clone())
}

/// Queries of every model, seed and snapshot a warehouse build left (from its manifest), and of
/// the same relations in the DuckDB build, to compare.
fn built_relations(p: &TempProject, duck: &Value, select: Select<'_>) -> Compiled {
    let m = manifest(p);
    let mut compiled = Compiled {
        steps: Vec::new(),
        queries: BTreeMap::new(),
        relations: BTreeMap::new(),
    };
    for (id, node) in m["nodes"].as_object().unwrap() {
        let Some(relation) = node["relation_name"].as_str() else {
            continue;
        };
        if ["model", "seed", "snapshot"].contains(&node["resource_type"].as_str().unwrap_or("")) {
            let columns = select(id).unwrap_or("*");
            compiled
                .queries
                .insert(id.clone(), format!("select {columns} from {relation}"));
            let duck_relation = duck["nodes"][id]["relation_name"].as_str().unwrap();
            compiled
                .relations
                .insert(id.clone(), format!("select {columns} from {duck_relation}"));
        }
    }
    compiled
}

/// `xform build` on BigQuery (bqemulator) through xform's own REST client: `example_project`
/// leaves the DuckDB build's rows, its data and unit tests pass as on DuckDB, a second build
/// runs again, a model BigQuery refuses is a diagnostic at the model and leaves the tables as
/// they were, and the token is in no output and no file xform wrote.
#[test]
fn build_on_bigquery_leaves_the_duckdb_rows() {
    let Some(emulator) = Emulator::start(Warehouse::BigQuery) else {
        return;
    };
    let p = example_project();
    let secret = "bq-token-only-in-the-env";
    p.write(
        "profiles.yml",
        &format!(
            "{}    live:\n      type: bigquery\n      method: oauth-secrets\n      \
             token: \"{{{{ env_var('BQ_TOKEN', '') }}}}\"\n      project: {PROJECT_ID}\n      \
             dataset: shop\n      api_endpoint: http://127.0.0.1:{}\n",
            profiles("shop.duckdb"),
            emulator.port
        ),
    );
    let duck = build(&p);
    let duck_failures = failures(&p);
    let live = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
            .args(args)
            .current_dir(p.path())
            .env("BQ_TOKEN", secret)
            .env("NO_COLOR", "1")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        let text = transcript(p.path(), &out).replace("\n  │ ", " ");
        assert!(!text.contains(secret), "{text}");
        (out.status.code(), text)
    };
    let text = live(&["debug", "--target", "live"]).1;
    assert!(
        text.contains("connection:   OK (BigQuery at http://127.0.0.1:"),
        "{text}"
    );
    // `--dry-run` before anything exists: every query waits for what the build makes.
    let dry = ["build", "--target", "live", "--dry-run"];
    let (code, text) = live(&dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("in 0 queries, and 12 not known until their inputs are built; nothing was built or billed"),
        "{text}"
    );
    let args = ["build", "--target", "live"];
    let (code, text) = live(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("17 passed, 0 failed"), "{text}");
    // run_results.json names each node's BigQuery job, as dbt-bigquery's does.
    let response = adapter_response(&p, "model.shop.orders");
    assert!(
        response["job_id"].as_str().is_some_and(|j| !j.is_empty()),
        "{response}"
    );
    assert_eq!(response["project_id"], PROJECT_ID, "{response}");
    // Now each model's and test's query has a dry run (the emulator reports 0 bytes).
    let (code, text) = live(&dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Would scan 0 B (0 bytes) in 12 queries; nothing was built"),
        "{text}"
    );
    let compiled = built_relations(&p, &duck, &|_| None);
    let answer = emulator.run(&[], &compiled.queries);
    let compared = assert_same_as_duckdb(
        Warehouse::BigQuery,
        &compiled,
        &answer,
        &p.db_path("shop"),
        &BTreeMap::new(),
    );
    assert_eq!(compared, 8, "every seed and model compared");
    for (id, failures) in failures(&p) {
        if id.starts_with("test.") {
            assert_eq!(failures, duck_failures[&id], "{id}");
        }
    }
    let (code, text) = live(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("17 passed, 0 failed"), "{text}");
    // The catalog, from BigQuery's INFORMATION_SCHEMA.
    let (code, text) = live(&["docs", "generate", "--target", "live"]);
    assert_eq!(code, Some(0), "{text}");
    let catalog: Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("target/catalog.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        catalog["nodes"]["model.shop.orders"]["columns"]["order_id"]["type"],
        "INT64"
    );
    // A model BigQuery refuses: the tables the last build left are still there, whole.
    let orders = std::fs::read_to_string(p.path().join("models/marts/orders.sql")).unwrap();
    p.write(
        "models/marts/orders.sql",
        &orders.replace("orders.status,", "orders.no_such_status,"),
    );
    let (code, text) = live(&[
        "build",
        "--target",
        "live",
        "--select",
        "orders",
        "--dry-run",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("model `orders`: BigQuery refused its query"),
        "{text}"
    );
    let (code, text) = live(&["build", "--target", "live", "--exclude", "test_type:unit"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("model `orders` failed"), "{text}");
    assert!(text.contains("models/marts/orders.sql"), "{text}");
    assert!(text.contains("BigQuery says:"), "{text}");
    let answer = emulator.run(&[], &compiled.queries);
    assert_same_as_duckdb(
        Warehouse::BigQuery,
        &compiled,
        &answer,
        &p.db_path("shop"),
        &BTreeMap::new(),
    );
    for entry in walkdir::WalkDir::new(p.path().join("target")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// `xform build` on Snowflake (fakesnow) through xform's own HTTP client: `example_project`
/// leaves the DuckDB build's rows, its data tests pass as on DuckDB and its unit tests run as
/// one query each on the warehouse, a second build runs again, and the password is in no file
/// xform wrote.
#[test]
fn build_on_snowflake_leaves_the_duckdb_rows() {
    let Some(emulator) = Emulator::start(Warehouse::Snowflake) else {
        return;
    };
    let p = example_project();
    let secret = "pw-only-in-the-env";
    p.write(
        "profiles.yml",
        &format!(
            "{}    live:\n      type: snowflake\n      account: fakesnow\n      user: xform\n      \
             password: \"{{{{ env_var('SF_PASSWORD', '') }}}}\"\n      database: analytics\n      \
             schema: shop\n      host: 127.0.0.1\n      port: {}\n      protocol: http\n",
            profiles("shop.duckdb"),
            emulator.port
        ),
    );
    let duck = build(&p);
    let duck_failures = failures(&p);
    let answer = emulator.run(&setup(Warehouse::Snowflake), &BTreeMap::new());
    assert!(answer["steps"][0]["error"].is_null(), "{answer}");
    let live = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
            .args(args)
            .current_dir(p.path())
            .env("SF_PASSWORD", secret)
            .env("NO_COLOR", "1")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        let text = transcript(p.path(), &out);
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(secret), "{text}");
        text
    };
    let args = ["build", "--target", "live"];
    let text = live(&args);
    assert!(text.contains("17 passed, 0 failed"), "{text}");
    assert!(
        text.contains("PASS  unit test customers.customers_lifetime_value_ignores_returns"),
        "{text}"
    );
    // run_results.json names each node's last Snowflake query, as dbt-snowflake's does.
    let response = adapter_response(&p, "model.shop.orders");
    assert!(
        response["query_id"].as_str().is_some_and(|q| !q.is_empty()),
        "{response}"
    );
    // What the warehouse holds, read back with Snowflake's own client.
    let compiled = built_relations(&p, &duck, &|_| None);
    let answer = emulator.run(&[], &compiled.queries);
    let compared = assert_same_as_duckdb(
        Warehouse::Snowflake,
        &compiled,
        &answer,
        &p.db_path("shop"),
        &BTreeMap::new(),
    );
    assert_eq!(compared, 8, "every seed and model compared");
    // Each data test failed as many rows as on DuckDB.
    for (id, failures) in failures(&p) {
        if id.starts_with("test.") {
            assert_eq!(failures, duck_failures[&id], "{id}");
        }
    }
    // Values come back typed: numbers, dates and timestamps read from Snowflake's Arrow.
    let text = live(&[
        "show",
        "--target",
        "live",
        "--inline",
        "select cast(1.5 as number(10,2)) as x, cast('2024-01-02' as date) as d, \
         cast('2024-01-02 03:04:05' as timestamp_ntz) as t, null as n",
    ]);
    assert!(
        text.contains("| 1.5 | 2024-01-02 | 2024-01-02 03:04:05 |   |"),
        "{text}"
    );
    // Again: every relation exists now, and is replaced.
    let text = live(&args);
    assert!(text.contains("17 passed, 0 failed"), "{text}");
    // A unit test whose expected rows differ fails with both rows shown, and skips its model.
    let yaml = std::fs::read_to_string(p.path().join("models/marts/unit_tests.yml")).unwrap();
    p.write(
        "models/marts/unit_tests.yml",
        &yaml.replace("lifetime_value: 12.5,", "lifetime_value: 12.75,"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["build", "--target", "live", "--select", "customers"])
        .current_dir(p.path())
        .env("SF_PASSWORD", secret)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("(1 missing, 1 unexpected)"), "{text}");
    assert!(
        text.contains("- | 1           | 2                | 12.75"),
        "{text}"
    );
    assert!(
        text.contains("SKIP  table analytics.shop_marts.customers"),
        "{text}"
    );
    p.write("models/marts/unit_tests.yml", &yaml);
    // A model Snowflake refuses: a diagnostic at the model with Snowflake's error code, and
    // the table the last build left is still there, whole.
    let orders = std::fs::read_to_string(p.path().join("models/marts/orders.sql")).unwrap();
    p.write(
        "models/marts/orders.sql",
        &orders.replace("orders.status,", "orders.no_such_status,"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(args)
        .current_dir(p.path())
        .env("SF_PASSWORD", secret)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = transcript(p.path(), &out).replace("\n  │ ", " ");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("model `orders` failed"), "{text}");
    assert!(text.contains("models/marts/orders.sql"), "{text}");
    assert!(text.contains("Snowflake says:"), "{text}");
    assert!(!text.contains(secret), "{text}");
    let answer = emulator.run(&[], &compiled.queries);
    assert_same_as_duckdb(
        Warehouse::Snowflake,
        &compiled,
        &answer,
        &p.db_path("shop"),
        &BTreeMap::new(),
    );
    for entry in walkdir::WalkDir::new(p.path().join("target")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// Faults on BigQuery, each a diagnostic naming the target or the model, a non-zero exit, and
/// nothing lost:
/// - a service account's key the token endpoint refuses (a stand-in for Google's, which also
///   checks that the request carries a JWT signed for it, and then grants a token);
/// - a job longer than the profile's `job_execution_timeout_seconds`;
/// - the emulator killed in the middle of a build: the tables the last build left are there
///   when it is back, and a rerun succeeds.
#[test]
fn faults_on_bigquery_are_diagnostics_and_lose_nothing() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let Some(emulator) = Emulator::start_on(Warehouse::BigQuery, port, Some(data.path())) else {
        return;
    };
    let p = example_project();
    // A stand-in for Google's token endpoint: refuses the first request, grants the next.
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let token_uri = format!("http://{}/token", server.server_addr().to_ip().unwrap());
    let pem = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snowflake/test_key.p8"),
    )
    .unwrap();
    let key = json!({
        "type": "service_account",
        "client_email": "xform@xform-test.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": token_uri,
    });
    p.write("key.json", &key.to_string());
    let grants = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for (n, mut request) in server.incoming_requests().take(2).enumerate() {
            let mut body = String::new();
            std::io::Read::read_to_string(request.as_reader(), &mut body).unwrap();
            bodies.push(body);
            let response = if n == 0 {
                tiny_http::Response::from_string(
                    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                )
                .with_status_code(400)
            } else {
                tiny_http::Response::from_string(
                    r#"{"access_token":"granted-token","expires_in":3600,"token_type":"Bearer"}"#,
                )
            };
            request.respond(response).unwrap();
        }
        bodies
    });
    let live = |target: &str, extra: &str| {
        format!(
            "    {target}:\n      type: bigquery\n      project: {PROJECT_ID}\n      \
             dataset: shop\n      api_endpoint: http://127.0.0.1:{port}\n{extra}"
        )
    };
    p.write(
        "profiles.yml",
        &format!(
            "{}{}{}{}",
            profiles("shop.duckdb"),
            live(
                "keyed",
                "      method: service-account\n      keyfile: key.json\n"
            ),
            live("live", "      method: oauth\n"),
            live(
                "impatient",
                "      method: oauth\n      job_execution_timeout_seconds: 1\n"
            ),
        ),
    );
    let xform = |args: &[&str]| {
        let out = p.xform(args);
        let text = transcript(p.path(), &out).replace("\n  │ ", " ");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        (out.status.code(), text)
    };
    let (code, text) = xform(&["debug", "--target", "keyed"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("target `keyed` of profile `shop`: BigQuery gave no access token: the token endpoint refused the credentials (400): Invalid JWT Signature."),
        "{text}"
    );
    let (code, text) = xform(&["debug", "--target", "keyed"]);
    assert_eq!(code, Some(0), "{text}");
    let bodies = grants.join().unwrap();
    assert!(
        bodies[1].starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ey"
        ),
        "{}",
        bodies[1]
    );

    // A build, then a model that outlasts the job timeout.
    let (code, text) = xform(&["build", "--target", "live", "--exclude", "test_type:unit"]);
    assert_eq!(code, Some(0), "{text}");
    p.write(
        "models/marts/slow.sql",
        "select count(*) as n from unnest(generate_array(1, 20000000)) as a, \
         unnest(generate_array(1, 5)) as b, {{ ref('orders') }} as o where o.order_id = 1\n",
    );
    // What the build left, to find again after the emulator is killed.
    let orders = |e: &Emulator| {
        let q = BTreeMap::from([(
            "orders".to_string(),
            format!("select count(*) from `{PROJECT_ID}`.`shop_marts`.`orders`"),
        )]);
        e.run(&[], &q)["queries"]["orders"].clone()
    };
    let before = orders(&emulator);
    assert!(before["error"].is_null(), "{before}");
    let (code, text) = xform(&["run", "--target", "impatient", "--select", "slow"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("model `slow` failed"), "{text}");
    assert!(
        text.contains("the job ran longer than the profile's job_execution_timeout_seconds (1 s)"),
        "{text}"
    );

    // The emulator killed while a run of `slow` and its parents is under way.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["run", "--target", "live", "--select", "+slow"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once the first model is built, while the next runs.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut shown = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        shown.push_str(&line);
        shown.push('\n');
        if line.contains(" OK ") {
            break;
        }
    }
    drop(emulator);
    for line in lines {
        shown.push_str(&line.unwrap());
        shown.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{shown}{}", String::from_utf8_lossy(&out.stderr)).replace("\n  │ ", " ");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("1 of 4 OK"), "{text}");
    assert!(text.contains("BigQuery could not be reached"), "{text}");
    assert!(p.path().join("target/run_results.json").exists());
    let emulator = Emulator::start_on(Warehouse::BigQuery, port, Some(data.path())).unwrap();
    assert_eq!(orders(&emulator), before);
    let (code, text) = xform(&[
        "build",
        "--target",
        "live",
        "--exclude",
        "slow",
        "test_type:unit",
    ]);
    assert_eq!(code, Some(0), "{text}");
}

/// fakesnow killed in the middle of a build: the run fails naming the endpoint it lost, exits
/// 1 and writes `run_results.json`; the tables the last build left are there when the emulator
/// is back (it keeps its databases in files here), and a rerun succeeds.
#[test]
fn a_snowflake_killed_mid_build_loses_nothing() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let Some(emulator) = Emulator::start_on(Warehouse::Snowflake, port, Some(data.path())) else {
        return;
    };
    let p = example_project();
    p.write(
        "profiles.yml",
        &format!(
            "{}    live:\n      type: snowflake\n      account: fakesnow\n      user: xform\n      \
             password: emulator\n      database: analytics\n      schema: shop\n      \
             host: 127.0.0.1\n      port: {port}\n      protocol: http\n",
            profiles("shop.duckdb")
        ),
    );
    let answer = emulator.run(&setup(Warehouse::Snowflake), &BTreeMap::new());
    assert!(answer["steps"][0]["error"].is_null(), "{answer}");
    let out = p.xform(&["build", "--target", "live", "--exclude", "test_type:unit"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    // (`create database if not exists` attaches the database's file again after a restart.)
    let orders = |e: &Emulator| {
        let q = BTreeMap::from([(
            "orders".to_string(),
            "select count(*), sum(amount) from analytics.shop_marts.orders".to_string(),
        )]);
        e.run(&setup(Warehouse::Snowflake), &q)["queries"]["orders"].clone()
    };
    let before = orders(&emulator);
    assert!(before["error"].is_null(), "{before}");
    // A model that takes the emulator seconds, after `orders` in the graph.
    p.write(
        "models/marts/slow.sql",
        "{{ config(materialized='table') }}\n\
         select count(distinct random()) as n from table(generator(rowcount => 30000000)), \
         {{ ref('orders') }} as o where o.order_id = 1\n",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["run", "--target", "live", "--select", "+slow"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once the first model is built, while the next run.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut shown = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        shown.push_str(&line);
        shown.push('\n');
        if line.contains(" OK ") {
            break;
        }
    }
    drop(emulator);
    for line in lines {
        shown.push_str(&line.unwrap());
        shown.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{shown}{}", String::from_utf8_lossy(&out.stderr)).replace("\n  │ ", " ");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("1 of 4 OK"), "{text}");
    assert!(
        text.contains(&format!(
            "Snowflake at http://127.0.0.1:{port} cannot be reached"
        )),
        "{text}"
    );
    assert!(p.path().join("target/run_results.json").exists());
    let emulator = Emulator::start_on(Warehouse::Snowflake, port, Some(data.path())).unwrap();
    assert_eq!(orders(&emulator), before);
    let out = p.xform(&[
        "build",
        "--target",
        "live",
        "--exclude",
        "slow",
        "test_type:unit",
    ]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
}
