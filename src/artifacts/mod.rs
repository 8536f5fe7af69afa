//! Artifacts in the target folder, with dbt's top-level shape: `manifest.json`,
//! `run_results.json`, and the `compiled/` and `run/` SQL of each node.
//!
//! The only module that serializes project state. Output is deterministic: maps are ordered
//! by key and timestamps come from the run (or `SOURCE_DATE_EPOCH` when set).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use crate::config::Target;
use crate::diagnostics::Problem;
use rayon::prelude::*;

use crate::config::RunInfo;
use crate::graph::{Graph, Node, ResourceType};
use crate::project::unit_tests::Rows;

pub mod catalog;

pub const MANIFEST_SCHEMA: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";
pub const RUN_RESULTS_SCHEMA: &str = "https://schemas.getdbt.com/dbt/run-results/v6.json";

/// The outcome of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Error,
    Skipped,
    /// A test found no failing rows (or fewer than its thresholds).
    Pass,
    /// A test crossed its `error_if` threshold at severity error.
    Fail,
    /// A test crossed its `warn_if` threshold (or `error_if` at severity warn).
    Warn,
    /// A node with nothing to run in this build: a saved query with no exports.
    NoOp,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::NoOp => "no-op",
        }
    }
}

/// `NodeResult::thread` of what the run does itself, outside the workers (the project hooks):
/// dbt's thread `main`.
pub const MAIN_THREAD: usize = usize::MAX;

/// `NodeResult::thread` of `run-operation`'s macro: dbt's thread `MainThread`.
pub const OPERATION_THREAD: usize = usize::MAX - 1;

#[derive(Debug, Clone)]
pub struct NodeResult {
    pub unique_id: String,
    pub status: Status,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: chrono::DateTime<chrono::Utc>,
    pub thread: usize,
    pub rows_affected: Option<usize>,
    pub message: String,
    pub compiled_code: Option<String>,
    pub relation_name: Option<String>,
    /// For tests: the failing-row count (`fail_calc`).
    pub failures: Option<i64>,
    /// What the warehouse said of the node's statements beyond the rows (a Snowflake query
    /// id, a BigQuery job id and bytes processed), merged into `adapter_response`.
    pub response: Option<serde_json::Map<String, Json>>,
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Write a file, creating its folder, through a buffer.
pub fn write_file(path: &Path, contents: &[u8]) -> Result<(), Problem> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Problem::io(dir, &e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| Problem::io(path, &e))?;
    let mut w = std::io::BufWriter::new(file);
    let contents = mask_bytes(contents);
    w.write_all(&contents)
        .and_then(|()| w.flush())
        .map_err(|e| Problem::io(path, &e))
}

/// Bytes with every secret masked (`env::mask`); borrowed as they are when there is none.
fn mask_bytes(contents: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if crate::env::secrets().is_empty() {
        return std::borrow::Cow::Borrowed(contents);
    }
    match crate::env::mask(&String::from_utf8_lossy(contents)) {
        std::borrow::Cow::Owned(masked) => std::borrow::Cow::Owned(masked.into_bytes()),
        std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(contents),
    }
}

/// `target/compiled/<project>/<path>` or `target/run/<project>/<path>`.
pub fn sql_path(target_dir: &Path, kind: &str, project: &str, path: &str) -> PathBuf {
    target_dir.join(kind).join(project).join(path)
}

fn metadata(schema: &str, project: &str, target: &Target, run: &RunInfo) -> Json {
    json!({
        "dbt_schema_version": schema,
        "dbt_version": concat!("xform-", env!("CARGO_PKG_VERSION")),
        "generated_at": time(&run.started_at),
        "invocation_id": run.invocation_id,
        "project_name": project,
        "adapter_type": target.adapter_type(),
        "env": {},
    })
}

/// Write many files at once: each folder is created once, the files are written in parallel,
/// and a file whose contents are already what would be written is left alone (rewriting is
/// the expensive part on most file systems, and unchanged files keep their times). A folder
/// that did not exist holds no file to compare with.
pub fn write_files(files: &[(PathBuf, &[u8])]) -> Vec<Problem> {
    let mut dirs: Vec<&Path> = files.iter().filter_map(|(p, _)| p.parent()).collect();
    dirs.sort_unstable();
    dirs.dedup();
    let mut problems = Vec::new();
    let mut created: HashSet<&Path> = HashSet::new();
    for d in dirs {
        if d.is_dir() {
            continue;
        }
        match std::fs::create_dir_all(d) {
            Ok(()) => {
                created.insert(d);
            }
            Err(e) => problems.push(Problem::io(d, &e)),
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    problems.par_extend(files.par_iter().filter_map(|(path, contents)| {
        let new_dir = path.parent().is_some_and(|d| created.contains(d));
        if !new_dir && holds(path, contents) {
            return None;
        }
        std::fs::write(path, mask_bytes(contents))
            .err()
            .map(|e| Problem::io(path, &e))
    }));
    problems
}

/// Whether the file at `path` holds exactly `contents`. A file of another length is not read;
/// one of the same length is read into a buffer each thread keeps, so comparing thousands of
/// unchanged files allocates nothing.
fn holds(path: &Path, contents: &[u8]) -> bool {
    use std::io::Read;
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != u64::try_from(contents.len()).ok() {
        return false;
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        buffer.resize(contents.len(), 0);
        file.read_exact(buffer).is_ok() && buffer.as_slice() == contents
    })
}

/// Whether a node has a relation to name in the manifest: not an ephemeral model, and a test
/// only when it stores its failures.
fn stores_relation(node: &Node) -> bool {
    match node.resource_type {
        ResourceType::Test => {
            let kind = node.config.str("store_failures_as");
            match kind {
                Some(k) => k == "table" || k == "view",
                None => node
                    .config
                    .get("store_failures")
                    .is_some_and(|v| v == &json!(true)),
            }
        }
        _ => !node.is_ephemeral(),
    }
}

/// A node's config as dbt's manifest shows it: every key dbt-core 1.10 writes for the node's
/// kind, with its default, under what the project set. Sources and unit tests show what was
/// set only. `state:modified.configs` compares these.
pub fn manifest_config(node: &Node) -> Json {
    serde_json::to_value(ManifestConfig::of(node)).unwrap_or_default()
}

/// dbt's default configs by node kind (keys sorted, as serde_json's maps are).
struct ConfigDefaults {
    model: serde_json::Map<String, Json>,
    seed: serde_json::Map<String, Json>,
    snapshot: serde_json::Map<String, Json>,
    test: serde_json::Map<String, Json>,
}

fn config_defaults() -> &'static ConfigDefaults {
    static DEFAULTS: std::sync::OnceLock<ConfigDefaults> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| {
        let node = json!({
            "enabled": true, "alias": null, "schema": null, "database": null, "tags": [],
            "meta": {}, "group": null, "incremental_strategy": null, "batch_size": null,
            "lookback": 1, "begin": null, "persist_docs": {}, "post-hook": [], "pre-hook": [],
            "quoting": {}, "column_types": {}, "full_refresh": null, "unique_key": null,
            "on_schema_change": "ignore", "on_configuration_change": "apply", "grants": {},
            "packages": [], "docs": {"show": true, "node_color": null},
            "contract": {"enforced": false, "alias_types": true}, "event_time": null,
            "concurrent_batches": null,
        });
        let with = |extra: Json| -> serde_json::Map<String, Json> {
            let mut map = node.as_object().cloned().unwrap_or_default();
            map.extend(extra.as_object().cloned().unwrap_or_default());
            map
        };
        ConfigDefaults {
            model: with(json!({"materialized": "view", "access": "protected", "freshness": null})),
            seed: with(json!({"materialized": "seed", "delimiter": ",", "quote_columns": null})),
            snapshot: with(json!({"materialized": "snapshot"})),
            test: json!({
                "enabled": true, "alias": null, "schema": "dbt_test__audit", "database": null,
                "tags": [], "meta": {}, "group": null, "materialized": "test",
                "severity": "ERROR", "store_failures": null, "store_failures_as": null,
                "where": null, "limit": null, "fail_calc": "count(*)", "warn_if": "!= 0",
                "error_if": "!= 0",
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        }
    })
}

/// A node's manifest config, serialized straight from the defaults and the node's own
/// config (what the project set wins) without building a map per node.
struct ManifestConfig<'a> {
    defaults: Option<&'static serde_json::Map<String, Json>>,
    set: &'a BTreeMap<String, Json>,
    /// A shortened test name: the test's alias unless the project gives one.
    alias: Option<&'a str>,
}

impl<'a> ManifestConfig<'a> {
    fn of(node: &'a Node) -> Self {
        let d = config_defaults();
        let defaults = match node.resource_type {
            ResourceType::Model => Some(&d.model),
            ResourceType::Seed => Some(&d.seed),
            ResourceType::Snapshot => Some(&d.snapshot),
            ResourceType::Test => Some(&d.test),
            ResourceType::Source | ResourceType::UnitTest | ResourceType::Analysis => None,
        };
        let alias = node.test().and_then(|test| {
            let short = test.short_name();
            (short != node.name).then_some(short)
        });
        ManifestConfig {
            defaults,
            set: &node.config.0,
            alias,
        }
    }
}

impl serde::Serialize for ManifestConfig<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let alias = self.alias.map(|a| Json::String(a.to_string()));
        let mut keys: Vec<&str> = self.set.keys().map(String::as_str).collect();
        if let Some(d) = self.defaults {
            keys.extend(d.keys().map(String::as_str));
        }
        keys.sort_unstable();
        keys.dedup();
        let mut map = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            let value = self
                .set
                .get(k)
                .or_else(|| (k == "alias").then_some(alias.as_ref()).flatten())
                .or_else(|| self.defaults.and_then(|d| d.get(k)));
            if let Some(v) = value {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

fn columns_json(node: &Node) -> serde_json::Map<String, Json> {
    node.columns
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({
                    "name": c.name,
                    "description": c.description,
                    "meta": {},
                    "data_type": c.data_type,
                    "constraints": c.constraints.iter().map(constraint_json).collect::<Vec<_>>(),
                    "quote": null,
                    "config": {"meta": {}, "tags": []},
                    "tags": [],
                    "granularity": null,
                    "doc_blocks": [],
                }),
            )
        })
        .collect()
}

/// A column constraint as dbt's manifest writes it: every field, null where unset.
fn constraint_json(c: &Json) -> Json {
    let get = |k: &str| c.get(k).cloned().unwrap_or(Json::Null);
    json!({
        "type": get("type"),
        "name": get("name"),
        "expression": get("expression"),
        "warn_unenforced": c.get("warn_unenforced").cloned().unwrap_or(json!(true)),
        "warn_unsupported": c.get("warn_unsupported").cloned().unwrap_or(json!(true)),
        "to": get("to"),
        "to_columns": c.get("to_columns").cloned().unwrap_or(json!([])),
    })
}

/// A node's entry as the manifest writes it (a source's, a unit test's or another node's),
/// without its compiled code: what `ls --output json` prints.
pub fn manifest_entry(node: &Node, target_path: &str) -> Json {
    match node.resource_type {
        crate::graph::ResourceType::Source => source_json(node),
        crate::graph::ResourceType::UnitTest => unit_json(node),
        _ => serde_json::from_str(&node_json(node, target_path, None)).unwrap_or(Json::Null),
    }
}

fn source_json(node: &Node) -> Json {
    let s = node.source();
    let freshness = s
        .and_then(|s| s.freshness.as_ref())
        .filter(|f| f.is_set())
        .map_or(
            Json::Null,
            crate::project::freshness::Freshness::criteria_json,
        );
    let loaded_at_field = s.and_then(|s| s.loaded_at_field.as_deref());
    json!({
        "unique_id": node.unique_id,
        "resource_type": "source",
        "package_name": node.package(),
        "name": node.name,
        "source_name": s.map(|s| s.source_name.as_str()),
        "source_description": s.map(|s| s.source_description.as_str()),
        "loader": s.map(|s| s.loader.as_str()),
        "identifier": node.relation.identifier,
        "schema": node.relation.schema,
        "database": node.relation.database,
        "path": node.path,
        "original_file_path": node.path,
        "fqn": node.fqn,
        "description": node.description,
        "columns": columns_json(node),
        "relation_name": node.relation.to_string(),
        // dbt's shape: null with no freshness, both thresholds (null halves included)
        // with some, so that `node.config.freshness.error_after.count` can be read.
        "freshness": freshness.clone(),
        "loaded_at_field": loaded_at_field,
        "loaded_at_query": null,
        "meta": {},
        "source_meta": {},
        "tags": [],
        "external": null,
        "quoting": {"database": null, "schema": null, "identifier": null, "column": null},
        "config": {
            "enabled": true,
            "event_time": s.and_then(|s| s.event_time.as_deref()),
            "freshness": freshness,
            "loaded_at_field": loaded_at_field,
            "loaded_at_query": null,
            "meta": {},
            "tags": [],
        },
    })
}

/// A node's manifest entry, borrowing the node's text (raw and compiled code are most of a
/// manifest). Fields are in alphabetical order, the order dbt's manifest (and a JSON object
/// from `json!`) has them in.
#[derive(serde::Serialize)]
struct NodeEntry<'a> {
    /// A model's `access` (dbt's default `protected`); other nodes have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<&'a str>,
    alias: &'a str,
    checksum: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    column_name: Option<Json>,
    columns: serde_json::Map<String, Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compiled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compiled_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compiled_path: Option<String>,
    config: ManifestConfig<'a>,
    /// A model's `contract` as dbt writes it at the node's top level.
    #[serde(skip_serializing_if = "Option::is_none")]
    contract: Option<Json>,
    database: Option<&'a str>,
    depends_on: DependsOn<'a>,
    /// A model's `deprecation_date` (null), as dbt writes every model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    deprecation_date: Option<Json>,
    description: &'a str,
    fqn: &'a [String],
    /// A model's `group` (null without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Json>,
    language: &'static str,
    meta: Json,
    name: &'a str,
    original_file_path: &'a str,
    package_name: &'a str,
    patch_path: Option<String>,
    path: &'a str,
    raw_code: &'a str,
    refs: Vec<RefEntry<'a>>,
    relation_name: Option<String>,
    resource_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_path: Option<Json>,
    schema: &'a str,
    sources: Vec<[&'a str; 2]>,
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_metadata: Option<Json>,
    unique_id: &'a str,
    /// A versioned model's version and its latest (numbers where they are).
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_version: Option<Json>,
}

/// A model version as dbt writes it: a number when it is one.
fn version_json(v: &str) -> Json {
    v.parse::<i64>()
        .map(Json::from)
        .or_else(|_| v.parse::<f64>().map(Json::from))
        .unwrap_or_else(|_| Json::from(v))
}

#[derive(serde::Serialize)]
struct DependsOn<'a> {
    macros: &'a [String],
    nodes: &'a [String],
}

#[derive(serde::Serialize)]
struct RefEntry<'a> {
    name: &'a str,
    package: Option<&'a str>,
    version: Option<Json>,
}

/// `target_path`: the target folder as configured (relative to the project), for
/// `compiled_path`.
fn node_json(node: &Node, target_path: &str, compiled: Option<&str>) -> String {
    let test_metadata = node.test().map(|test| {
        json!({"name": test.test_name, "kwargs": test.kwargs(), "namespace": test.namespace})
    });
    let path = match node.test() {
        Some(test) => format!("{}.sql", test.short_name()),
        None => node.relative.clone(),
    };
    // A generic test's code, as dbt records it: the call of its macro, and the alias it gets
    // when its name is shortened.
    let test_code = node.test().map(|test| {
        let call = match &test.namespace {
            Some(ns) => format!("{ns}.test_{}", test.test_name),
            None => format!("test_{}", test.test_name),
        };
        let short = test.short_name();
        let call = format!("{{{{ {call}(**_dbt_generic_test_kwargs) }}}}");
        if short == node.name {
            call
        } else {
            format!("{call}{{{{ config(alias=\"{short}\") }}}}")
        }
    });
    let is_model = node.resource_type == crate::graph::ResourceType::Model;
    let entry = NodeEntry {
        alias: &node.relation.identifier,
        checksum: match node.checksum() {
            Some(sum) => json!({"name": "sha256", "checksum": sum}),
            None => json!({"name": "none", "checksum": ""}),
        },
        column_name: node.test().map(|t| json!(t.column)),
        columns: columns_json(node),
        compiled: compiled.map(|_| true),
        compiled_code: compiled,
        compiled_path: compiled.map(|_| {
            format!(
                "{target_path}/compiled/{}/{}",
                node.package(),
                node.compiled_file()
            )
        }),
        config: ManifestConfig::of(node),
        database: node.relation.database.as_deref(),
        depends_on: DependsOn {
            macros: &node.depends_on_macros,
            nodes: &node.depends_on,
        },
        description: &node.description,
        fqn: &node.fqn,
        language: "sql",
        meta: node.config.get("meta").cloned().unwrap_or(json!({})),
        name: &node.name,
        original_file_path: &node.path,
        package_name: node.package(),
        patch_path: node
            .patch_path
            .as_ref()
            .map(|p| format!("{}://{p}", node.package())),
        // A generic test's path is its compiled file's name, as dbt records it.
        path: &path,
        raw_code: test_code.as_deref().unwrap_or_else(|| node.raw_code()),
        refs: node
            .refs
            .iter()
            .map(|r| RefEntry {
                // `ref('m', v=2)` is recorded as `m` with its version, as dbt does.
                name: r.version.as_ref().map_or(&r.name, |v| {
                    let key = crate::project::version_key("", v);
                    r.name.strip_suffix(&key).unwrap_or(&r.name)
                }),
                package: r.package.as_deref(),
                version: r.version.as_deref().map(version_json),
            })
            .collect(),
        relation_name: stores_relation(node).then(|| node.relation.to_string()),
        resource_type: node.resource_type.as_str(),
        root_path: node
            .seed_path()
            .map(|seed| json!(seed.parent().map(|p| p.display().to_string()))),
        schema: &node.relation.schema,
        sources: node
            .sources
            .iter()
            .map(|(s, t)| [s.as_str(), t.as_str()])
            .collect(),
        tags: node.config.tags(),
        test_metadata,
        unique_id: &node.unique_id,
        // A model has them all, null where unset, as in dbt's manifest.
        version: match &node.version {
            Some(v) => Some(version_json(&v.version)),
            None if is_model => Some(Json::Null),
            None => None,
        },
        latest_version: match &node.version {
            Some(v) => Some(version_json(&v.latest)),
            None if is_model => Some(Json::Null),
            None => None,
        },
        access: is_model.then(|| node.config.str("access").unwrap_or("protected")),
        group: is_model.then(|| node.config.str("group").map_or(Json::Null, Json::from)),
        deprecation_date: is_model.then_some(Json::Null),
        contract: is_model.then(|| {
            let enforced = node
                .config
                .get("contract")
                .and_then(|c| c.get("enforced"))
                .and_then(Json::as_bool)
                .unwrap_or(false);
            json!({"enforced": enforced, "alias_types": true, "checksum": null})
        }),
    };
    serde_json::to_string(&entry).unwrap_or_default()
}

fn rows_json(rows: &Rows) -> Json {
    match rows {
        Rows::Dict(rows) => json!({"format": "dict", "rows": rows.iter().map(|r| {
            r.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>()}),
        Rows::Csv(rows) => json!({"format": "csv", "rows": rows.iter().map(|r| {
            r.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>()}),
        Rows::Sql(sql) => json!({"format": "sql", "rows": sql}),
        Rows::Missing => json!({"format": "dict", "rows": null}),
    }
}

/// A `unit_tests` entry of the manifest.
fn unit_json(node: &Node) -> Json {
    let Some(unit) = node.unit() else {
        return Json::Null;
    };
    let mut given: Vec<Json> = Vec::with_capacity(unit.given.len());
    for g in &unit.given {
        let mut entry = rows_json(&g.rows);
        entry["input"] = json!(g.input.label());
        given.push(entry);
    }
    let mut entry = json!({
        "unique_id": node.unique_id,
        "resource_type": "unit_test",
        "package_name": node.package(),
        "name": node.name,
        "model": unit.model,
        "path": node.relative,
        "original_file_path": node.path,
        "fqn": node.fqn,
        "description": node.description,
        "config": node.config.to_json(),
        "tags": node.config.tags(),
        "given": given,
        "overrides": {
            "vars": unit.overrides.vars,
            "env_vars": unit.overrides.env_vars,
            "macros": unit.overrides.macros,
        },
        "depends_on": {"macros": [], "nodes": node.depends_on},
        "checksum": {"name": "sha256", "checksum": unit.checksum},
    });
    if let Some(rows) = &unit.expect {
        entry["expect"] = rows_json(rows);
    }
    if let Some(rows) = &unit.expect_table {
        entry["expect_table"] = rows_json(rows);
    }
    entry
}

/// Write `{"id":value,...}` for the given nodes, serializing a chunk of them in parallel at a
/// time so that memory stays bounded however large the project is.
fn write_object(
    w: &mut impl Write,
    graph: &Graph,
    nodes: &[usize],
    value: &(dyn Fn(usize) -> String + Sync),
) -> std::io::Result<()> {
    w.write_all(b"{")?;
    let mut first = true;
    for chunk in nodes.chunks(2048) {
        let texts: Vec<String> = chunk.par_iter().map(|&i| value(i)).collect();
        for (&i, text) in chunk.iter().zip(texts) {
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            serde_json::to_writer(&mut *w, &graph.nodes[i].unique_id)?;
            w.write_all(b":")?;
            w.write_all(text.as_bytes())?;
        }
    }
    w.write_all(b"}")
}

/// Write `manifest.json` (compact, as dbt writes it). `compiled` holds the compiled SQL of the
/// nodes compiled in this run.
///
/// Nodes are serialized in parallel, a chunk at a time, and streamed to the file in node-id
/// order: no tree of the whole manifest, nor its whole text, is ever held in memory.
pub fn write_manifest(
    target_dir: &Path,
    target_path: &str,
    project: &crate::project::Project,
    target: &Target,
    graph: &Graph,
    compiled: &BTreeMap<usize, std::sync::Arc<str>>,
    run: &RunInfo,
) -> Result<(), Problem> {
    let path = target_dir.join("manifest.json");
    let ids = |v: Vec<usize>| -> String {
        let names: Vec<&str> = v
            .iter()
            .map(|&i| graph.nodes[i].unique_id.as_str())
            .collect();
        serde_json::to_string(&names).unwrap_or_default()
    };
    let (sources, nodes): (Vec<usize>, Vec<usize>) =
        (0..graph.nodes.len()).partition(|&i| graph.nodes[i].resource_type == ResourceType::Source);
    let (units, nodes): (Vec<usize>, Vec<usize>) = nodes
        .into_iter()
        .partition(|&i| graph.nodes[i].resource_type == ResourceType::UnitTest);
    let all: Vec<usize> = (0..graph.nodes.len()).collect();
    let extra = |kind: &str| resources_json(project, graph, kind).to_string();
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(target_dir)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        w.write_all(b"{\"metadata\":")?;
        serde_json::to_writer(
            &mut w,
            &metadata(MANIFEST_SCHEMA, &project.name, target, run),
        )?;
        w.write_all(b",\"nodes\":")?;
        write_object(&mut w, graph, &nodes, &|i| {
            node_json(&graph.nodes[i], target_path, compiled.get(&i).map(|c| &**c))
        })?;
        w.write_all(b",\"sources\":")?;
        write_object(&mut w, graph, &sources, &|i| {
            source_json(&graph.nodes[i]).to_string()
        })?;
        w.write_all(b",\"macros\":{},\"docs\":")?;
        w.write_all(docs_json(project).to_string().as_bytes())?;
        for (key, kind) in [
            ("exposures", "exposure"),
            ("metrics", "metric"),
            ("groups", "group"),
        ] {
            write!(w, ",\"{key}\":{}", extra(kind))?;
        }
        w.write_all(b",\"selectors\":{},\"disabled\":{},\"parent_map\":")?;
        write_object(&mut w, graph, &all, &|i| ids(graph.parents(i)))?;
        w.write_all(b",\"child_map\":")?;
        write_object(&mut w, graph, &all, &|i| ids(graph.children(i)))?;
        write!(
            w,
            ",\"group_map\":{{}},\"saved_queries\":{},\"semantic_models\":{},\"unit_tests\":",
            extra("saved_query"),
            extra("semantic_model")
        )?;
        write_object(&mut w, graph, &units, &|i| {
            unit_json(&graph.nodes[i]).to_string()
        })?;
        w.write_all(b"}")?;
        w.flush()?;
        drop(w);
        crate::env::mask_file(&path)
    };
    write().map_err(|e| Problem::io(&path, &e))
}

/// Write `run_results.json`.
pub fn write_run_results(
    target_dir: &Path,
    project: &str,
    target: &Target,
    run: &RunInfo,
    results: &[NodeResult],
    elapsed: f64,
    args: &Json,
) -> Result<(), Problem> {
    let results: Vec<Json> = results
        .iter()
        .map(|r| {
            let mut response = match r.rows_affected {
                Some(n) => json!({"_message": "OK", "rows_affected": n}),
                None => json!({}),
            };
            if let (Some(extra), Some(map)) = (&r.response, response.as_object_mut()) {
                map.extend(extra.clone());
            }
            json!({
                "unique_id": r.unique_id,
                "status": r.status.as_str(),
                "timing": if r.status == Status::Skipped { json!([]) } else { json!([
                    {"name": "compile", "started_at": time(&r.started_at), "completed_at": time(&r.started_at)},
                    {"name": "execute", "started_at": time(&r.started_at), "completed_at": time(&r.completed_at)},
                ]) },
                "thread_id": match r.thread {
                    MAIN_THREAD => "main".to_string(),
                    OPERATION_THREAD => "MainThread".to_string(),
                    n => format!("Thread-{n}"),
                },
                "execution_time": (r.completed_at - r.started_at).num_microseconds().unwrap_or(0) as f64 / 1e6,
                "adapter_response": response,
                // dbt writes null where there is nothing to say (a passing test).
                "message": if r.message.is_empty() { Json::Null } else { json!(r.message) },
                "failures": r.failures,
                "compiled_code": r.compiled_code,
                "relation_name": r.relation_name,
            })
        })
        .collect();
    let doc = json!({
        "metadata": metadata(RUN_RESULTS_SCHEMA, project, target, run),
        "results": results,
        "elapsed_time": elapsed,
        "args": args,
    });
    let text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    write_file(&target_dir.join("run_results.json"), &text)
}

/// The manifest's `docs`: every `{% docs %}` block, by `doc.<package>.<name>`.
fn docs_json(project: &crate::project::Project) -> Json {
    let mut out = serde_json::Map::new();
    for d in &project.docs {
        let id = format!("doc.{}.{}", d.package, d.name);
        out.insert(
            id.clone(),
            json!({
                "name": d.name,
                "resource_type": "doc",
                "package_name": d.package,
                "path": d.path,
                "original_file_path": d.path,
                "unique_id": id,
                "block_contents": d.text,
            }),
        );
    }
    Json::Object(out)
}

/// The `graph` global's `exposures`, `metrics`, `semantic_models`, `saved_queries` and
/// `groups`, each as the manifest writes it.
pub fn graph_resources(
    project: &crate::project::Project,
    graph: &Graph,
) -> std::collections::BTreeMap<&'static str, Json> {
    [
        ("exposures", "exposure"),
        ("metrics", "metric"),
        ("semantic_models", "semantic_model"),
        ("saved_queries", "saved_query"),
        ("groups", "group"),
    ]
    .into_iter()
    .map(|(key, kind)| (key, resources_json(project, graph, kind)))
    .collect()
}

/// The manifest's exposures, metrics, groups, saved queries or semantic models: each as its
/// YAML wrote it, with dbt's identifying fields, and for an exposure (or a semantic model's
/// `model:`) the nodes its `ref()`s name.
fn resources_json(project: &crate::project::Project, graph: &Graph, kind: &str) -> Json {
    let refs = |value: &Json| -> Vec<String> {
        let mut names = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        match value {
            Json::Array(items) => texts.extend(items.iter().filter_map(Json::as_str)),
            Json::String(s) => texts.push(s),
            _ => {}
        }
        for text in texts {
            // `source('s', 't')`: the source table's id.
            if let Some(inner) = text
                .trim()
                .strip_prefix("source(")
                .and_then(|t| t.strip_suffix(')'))
            {
                let parts: Vec<&str> = inner
                    .split(',')
                    .map(|p| p.trim().trim_matches(['\'', '"']))
                    .collect();
                if let [source, table] = parts[..]
                    && let Some(n) = graph.nodes.iter().find(|n| {
                        n.source()
                            .is_some_and(|s| s.source_name == source && s.name == table)
                    })
                {
                    names.push(n.unique_id.clone());
                }
                continue;
            }
            let Some(inner) = text
                .trim()
                .strip_prefix("ref(")
                .and_then(|t| t.strip_suffix(')'))
            else {
                continue;
            };
            let name = inner
                .rsplit(',')
                .next()
                .unwrap_or(inner)
                .trim()
                .trim_matches(['\'', '"']);
            if let Some(n) = graph.nodes.iter().find(|n| {
                n.resource_type != ResourceType::Source && n.ref_names().any(|r| r == name)
            }) {
                names.push(n.unique_id.clone());
            }
        }
        names
    };
    let mut out = serde_json::Map::new();
    for r in project.resources.iter().filter(|r| r.kind == kind) {
        let id = format!("{kind}.{}.{}", r.package, r.name);
        let mut entry = match &r.yaml {
            Json::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let mut depends_on = entry
            .get("depends_on")
            .or_else(|| entry.get("model"))
            .map(&refs)
            .unwrap_or_default();
        // Sources before refs, as dbt lists them.
        depends_on.sort_by_key(|id| !id.starts_with("source."));
        // What dbt fills in when the YAML leaves it out.
        for key in ["meta", "config"] {
            entry.entry(key.to_string()).or_insert_with(|| json!({}));
        }
        entry.entry("tags".to_string()).or_insert_with(|| json!([]));
        for (k, v) in [
            ("unique_id", json!(id)),
            ("resource_type", json!(kind)),
            ("package_name", json!(r.package)),
            ("path", json!(r.path)),
            ("original_file_path", json!(r.path)),
            ("fqn", json!([r.package, r.name])),
            ("depends_on", json!({"macros": [], "nodes": depends_on})),
        ] {
            entry.insert(k.to_string(), v);
        }
        out.insert(id, Json::Object(entry));
    }
    Json::Object(out)
}

const SOURCES_SCHEMA: &str = "https://schemas.getdbt.com/dbt/sources/v3.json";

/// `sources.json` (dbt's schema v3): one result per source table whose freshness was
/// measured (`results` as `xform source freshness` made them).
pub fn write_sources(
    path: &Path,
    project: &str,
    target: &Target,
    run: &RunInfo,
    results: Vec<Json>,
    elapsed: f64,
) -> Result<(), Problem> {
    let doc = json!({
        "metadata": metadata(SOURCES_SCHEMA, project, target, run),
        "results": results,
        "elapsed_time": elapsed,
    });
    let text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    write_file(path, &text)
}

/// A time as the artifacts write it (ISO 8601, UTC, microseconds).
pub fn iso_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    time(t)
}

#[cfg(test)]
mod tests {
    use super::{holds, write_files};

    #[test]
    fn a_file_is_rewritten_only_when_its_bytes_differ() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sql");
        assert!(!holds(&path, b"select 1"), "a missing file holds nothing");
        std::fs::write(&path, "select 1").unwrap();
        assert!(holds(&path, b"select 1"));
        assert!(!holds(&path, b"select 2"), "same length, other bytes");
        assert!(!holds(&path, b"select 10"), "another length");
        assert!(!holds(&path, b""));

        // The same bytes: left alone (its modification time stays where it was set).
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(write_files(&[(path.clone(), b"select 1")]).is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), old);
        // Same length, other bytes: written (the old text must not survive).
        assert!(write_files(&[(path.clone(), b"select 2")]).is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "select 2");
        // Shorter: the file is truncated to the new text.
        assert!(write_files(&[(path.clone(), b"x")]).is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
        // A new folder is created with its files.
        let nested = dir.path().join("a/b/c.sql");
        assert!(write_files(&[(nested.clone(), b"select 3")]).is_empty());
        assert_eq!(std::fs::read_to_string(&nested).unwrap(), "select 3");
    }
}
